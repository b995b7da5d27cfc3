// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Snapshot state of the platform device (serde behind the `serde`
//! feature).
//!
//! The state holds everything the guest can change (configuration space,
//! flags, product and build, the pending log line, the unplug mask and
//! history) and the VMM's device registry with each device's unplugged
//! flag, so that after a restore the VMM can skip recreating unplugged
//! devices and a repeated request removes nothing twice. [`Config`] and the
//! events sink are the VMM's and are passed to
//! [`PlatformDevice::from_state`] again; counters start from zero.

use std::collections::VecDeque;

use crate::device::{LOG_BUFFER_SIZE, PFFLAG_ROM_LOCK, UNPLUG_HISTORY_LEN};
use crate::pci::{CONFIG_SPACE_SIZE, ConfigSpace, WRITE_MASK, reset_values};
use crate::unplug::{RegisteredDevice, UnplugMask, UnplugRecord};
use crate::{Config, Error, PlatformDevice, PlatformEvents, Result};

/// Complete snapshot state of a platform device.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct State {
    /// The 256 bytes of PCI configuration space.
    pub config_space: Vec<u8>,
    /// Platform flags (only [`PFFLAG_ROM_LOCK`]).
    pub flags: u8,
    /// Product number written by the drivers.
    pub product: Option<u16>,
    /// Build number written by the drivers.
    pub build: Option<u32>,
    /// Log bytes not yet terminated by a newline (fewer than
    /// [`LOG_BUFFER_SIZE`]).
    pub pending_log: Vec<u8>,
    /// The union of every honoured unplug mask.
    pub unplug_mask: UnplugMask,
    /// The newest unplug requests, oldest first (at most
    /// [`UNPLUG_HISTORY_LEN`]).
    pub unplug_history: Vec<UnplugRecord>,
    /// The VMM's registered devices, in registration order.
    pub devices: Vec<RegisteredDevice>,
}

impl<E: PlatformEvents> PlatformDevice<E> {
    /// The device's snapshot state.
    pub fn state(&self) -> State {
        State {
            config_space: self.pci.bytes().to_vec(),
            flags: self.flags,
            product: self.product,
            build: self.build,
            pending_log: self.log.clone(),
            unplug_mask: self.unplug_mask,
            unplug_history: self.history.iter().copied().collect(),
            devices: self.devices.clone(),
        }
    }

    /// A device restored from `state`. No events are raised; the VMM
    /// re-applies [`PlatformDevice::rom_locked`] itself.
    ///
    /// # Errors
    ///
    /// The state is checked as if it came from an untrusted file: the
    /// configuration space must be 256 bytes whose read-only bits equal this
    /// device's, the flags and the log buffer must be ones the device can
    /// produce, the history must fit, and device ids must be unique.
    pub fn from_state(config: Config, events: E, state: &State) -> Result<Self> {
        let bytes: [u8; CONFIG_SPACE_SIZE] = state
            .config_space
            .as_slice()
            .try_into()
            .map_err(|_| Error::ConfigSpaceLength(state.config_space.len()))?;
        let reset = reset_values();
        for (offset, ((saved, expected), mask)) in bytes
            .iter()
            .zip(reset.iter())
            .zip(WRITE_MASK.iter())
            .enumerate()
        {
            if saved & !mask != expected & !mask {
                return Err(Error::ReadOnlyConfigByte {
                    offset,
                    expected: *expected,
                    found: *saved,
                });
            }
        }
        if state.flags & !PFFLAG_ROM_LOCK != 0 {
            return Err(Error::InvalidFlags(state.flags));
        }
        if state.pending_log.len() >= LOG_BUFFER_SIZE || state.pending_log.contains(&b'\n') {
            return Err(Error::InvalidLog(state.pending_log.len()));
        }
        if state.unplug_history.len() > UNPLUG_HISTORY_LEN {
            return Err(Error::HistoryTooLong(state.unplug_history.len()));
        }
        let mut dev = Self::new(config, events);
        for d in &state.devices {
            dev.register_device(d.id, d.kind)?;
        }
        dev.devices.clone_from(&state.devices);
        dev.pci = ConfigSpace::from_bytes(bytes);
        dev.flags = state.flags;
        dev.product = state.product;
        dev.build = state.build;
        dev.log.clone_from(&state.pending_log);
        dev.unplug_mask = state.unplug_mask;
        dev.history = VecDeque::from(state.unplug_history.clone());
        Ok(dev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::{REG_BAR0, REG_BAR1, REG_INTERRUPT_LINE, REG_VENDOR_ID};
    use crate::testing::*;
    use crate::{DeviceId, DeviceKind, PRODUCT_LINUX};

    /// Saves, restores into a new device, compares the states, then runs the
    /// same accesses on both and compares what they did.
    macro_rules! snapshot_test {
        ($name:ident, $config:expr, |$d:ident| $setup:block) => {
            #[test]
            fn $name() {
                let config: Config = $config;
                let (mut $d, _) = populated(config);
                $setup
                let saved = $d.state();
                let rec = Recorder::default();
                let mut restored = PlatformDevice::from_state(config, rec.clone(), &saved).unwrap();
                assert_eq!(restored.state(), saved);

                let orig = $d.events().clone();
                let before = orig.unplugged_ids().len();
                for d in [&mut $d as &mut dyn Probe, &mut restored as &mut dyn Probe] {
                    d.run();
                }
                assert_eq!($d.state(), restored.state());
                assert_eq!(orig.unplugged_ids()[before..], rec.unplugged_ids()[..]);
                assert_eq!(orig.lines().last(), rec.lines().last());
            }
        };
    }

    /// The same accesses, on any device.
    trait Probe {
        fn run(&mut self);
    }

    impl Probe for PlatformDevice<Recorder> {
        fn run(&mut self) {
            let mut w = [0u8; 2];
            self.legacy_read(0, &mut w);
            self.legacy_write(2, b"!");
            self.legacy_write(2, b"\n");
            self.legacy_write(0, &[0x0F, 0]);
            self.write_config(REG_INTERRUPT_LINE, 1, 9);
            self.bar0_write(0, &[w[0] & 1]);
        }
    }

    snapshot_test!(
        test_state_fresh_device_round_trip,
        Config::default(),
        |d| {}
    );

    snapshot_test!(
        test_state_programmed_bars_round_trip,
        Config::default(),
        |d| {
            d.write_config(REG_BAR0, 4, 0xC000);
            d.write_config(REG_BAR1, 4, 0xF000_0000);
            d.legacy_write(0, &[1]);
        }
    );

    snapshot_test!(
        test_state_after_aux_unplug_round_trip,
        Config::default(),
        |d| {
            d.legacy_write(0, &[4, 0]);
        }
    );

    snapshot_test!(
        test_state_pending_log_and_product_round_trip,
        Config {
            unplug_ahci: true,
            blacklist: Some((PRODUCT_LINUX, 7)),
        },
        |d| {
            d.legacy_write(2, &PRODUCT_LINUX.to_le_bytes());
            d.legacy_write(0, &7u32.to_le_bytes());
            for b in b"partial" {
                d.legacy_write(2, &[*b]);
            }
        }
    );

    #[test]
    fn test_from_state_restored_unplugged_device_not_removed_again() {
        let (mut d, _) = populated(Config::default());
        d.legacy_write(0, &[2, 0]);
        let rec = Recorder::default();
        let mut r = PlatformDevice::from_state(Config::default(), rec.clone(), &d.state()).unwrap();
        r.legacy_write(0, &[2, 0]);
        assert!(rec.unplugged_ids().is_empty());
        assert!(r.device(DeviceId(NIC)).unwrap().unplugged);
    }

    fn restore(state: &State) -> Result<PlatformDevice> {
        PlatformDevice::from_state(Config::default(), crate::NoEvents, state)
    }

    #[test]
    fn test_from_state_short_config_space_rejected() {
        let mut s = PlatformDevice::default().state();
        s.config_space.pop();
        assert_eq!(restore(&s).unwrap_err(), Error::ConfigSpaceLength(255));
    }

    #[test]
    fn test_from_state_changed_read_only_byte_rejected() {
        let mut s = PlatformDevice::default().state();
        s.config_space[usize::from(REG_VENDOR_ID)] = 0x86;
        assert_eq!(
            restore(&s).unwrap_err(),
            Error::ReadOnlyConfigByte {
                offset: 0,
                expected: 0x53,
                found: 0x86
            }
        );
    }

    #[test]
    fn test_from_state_bad_flags_log_history_rejected() {
        let base = PlatformDevice::default().state();
        let mut s = base.clone();
        s.flags = 2;
        assert_eq!(restore(&s).unwrap_err(), Error::InvalidFlags(2));
        let mut s = base.clone();
        s.pending_log = vec![b'a'; LOG_BUFFER_SIZE];
        assert_eq!(restore(&s).unwrap_err(), Error::InvalidLog(LOG_BUFFER_SIZE));
        let mut s = base.clone();
        s.pending_log = b"a\nb".to_vec();
        assert_eq!(restore(&s).unwrap_err(), Error::InvalidLog(3));
        let mut s = base;
        s.unplug_history = vec![
            UnplugRecord {
                mask: UnplugMask(1),
                source: crate::UnplugSource::LegacyPort,
                refused: false
            };
            UNPLUG_HISTORY_LEN + 1
        ];
        assert_eq!(
            restore(&s).unwrap_err(),
            Error::HistoryTooLong(UNPLUG_HISTORY_LEN + 1)
        );
    }

    #[test]
    fn test_from_state_duplicate_device_rejected() {
        let mut s = PlatformDevice::default().state();
        let dev = RegisteredDevice {
            id: DeviceId(1),
            kind: DeviceKind::Nic,
            unplugged: false,
        };
        s.devices = vec![dev, dev];
        assert_eq!(
            restore(&s).unwrap_err(),
            Error::DuplicateDevice(DeviceId(1))
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn test_state_serde_json_round_trip() {
        let (mut d, _) = populated(Config::default());
        d.legacy_write(0, &[5, 0]);
        d.legacy_write(2, b"z");
        let s = d.state();
        let json = serde_json::to_string(&s).unwrap();
        let back: State = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }
}
