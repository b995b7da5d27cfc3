// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Target `platform_pio`: arbitrary port, MMIO and configuration
//! accesses to the Xen platform PCI device.

use arbitrary::{Arbitrary, Unstructured};

/// Where a port access goes.
#[derive(Arbitrary, Debug)]
enum PortChoice {
    Legacy(u8),
    Bar0(u8),
    Any(u16),
}

impl PortChoice {
    fn port(&self) -> u16 {
        match *self {
            PortChoice::Legacy(o) => 0x10 + u16::from(o % 16),
            PortChoice::Bar0(o) => PLATFORM_BAR0 + u16::from(o),
            PortChoice::Any(p) => p,
        }
    }
}

/// Where `platform_pio` programs BAR0 and BAR1 when it enables decoding.
const PLATFORM_BAR0: u16 = 0xc000;
const PLATFORM_BAR1: u32 = 0xf000_0000;

/// One access to the platform device as the fuzzer describes it.
#[derive(Arbitrary, Debug)]
enum PlatformAccess {
    /// A port read or write: the legacy ports, BAR0 (programmed at
    /// 0xc000 when the input enables decoding) or anywhere.
    Pio {
        write: bool,
        port: PortChoice,
        len: u8,
        value: u32,
    },
    /// An MMIO access around BAR1.
    Mmio {
        write: bool,
        addr: u64,
        len: u8,
        value: u32,
    },
    /// A configuration-space access.
    Config {
        write: bool,
        offset: u16,
        size: u8,
        value: u32,
    },
    /// The VMM registers one of its devices.
    Register { id: u8, kind: u8, primary: bool },
    /// Snapshot and restore into a fresh device.
    Snapshot,
}

/// Target `platform_pio`: arbitrary port, MMIO and configuration accesses
/// (any offset, any length) to the Xen platform device through its
/// vm-device impls, with device registrations and snapshots in between.
///
/// Invariants: nothing panics; reads fill every byte asked for; every
/// access either works or is counted as bad; a device is unplugged at most
/// once; a snapshot restores to an equal state.
pub fn platform_pio(data: &[u8]) {
    use std::sync::{Arc, Mutex};
    use vm_device::bus::{MmioAddress, PioAddress};
    use vm_device::{MutDeviceMmio, MutDevicePio};
    use xen_platform_pci::{
        Config, DeviceId, DeviceKind, PlatformDevice, PlatformEvents, UnplugRequest,
    };

    #[derive(Default)]
    struct Seen(Mutex<Vec<DeviceId>>);
    impl PlatformEvents for Seen {
        fn unplug(&self, request: &UnplugRequest) {
            let mut seen = self.0.lock().unwrap();
            assert!(
                !seen.contains(&request.device),
                "{request:?} unplugged twice"
            );
            seen.push(request.device);
        }
    }

    let mut u = Unstructured::new(data);
    let Ok(unplug_ahci) = bool::arbitrary(&mut u) else {
        return;
    };
    let config = Config {
        unplug_ahci,
        ..Config::default()
    };
    let events = Arc::new(Seen::default());
    let mut dev = PlatformDevice::new(config, events.clone());
    if bool::arbitrary(&mut u).unwrap_or(false) {
        // Program the BARs and enable decoding, as firmware would.
        dev.write_config(0x10, 4, u32::from(PLATFORM_BAR0));
        dev.write_config(0x14, 4, PLATFORM_BAR1);
        dev.write_config(0x04, 2, 0x3);
    }
    let mut steps = 0;
    while !u.is_empty() && steps < 256 {
        let Ok(access) = PlatformAccess::arbitrary(&mut u) else {
            break;
        };
        steps += 1;
        match access {
            PlatformAccess::Pio {
                write,
                port,
                len,
                value,
            } => {
                let len = usize::from(len % 9);
                let bytes = value.to_le_bytes();
                let mut buf = vec![0x5a; len];
                let port = port.port();
                let base = PioAddress(port & 0xff00);
                let offset = port & 0xff;
                if write {
                    buf.iter_mut()
                        .zip(bytes.iter().cycle())
                        .for_each(|(b, v)| *b = *v);
                    dev.pio_write(base, offset, &buf);
                } else {
                    dev.pio_read(base, offset, &mut buf);
                }
            }
            PlatformAccess::Mmio {
                write,
                addr,
                len,
                value,
            } => {
                let len = usize::from(len % 9);
                let mut buf = vec![0x5a; len];
                let base = MmioAddress(addr & !0xff_ffff);
                let offset = addr & 0xff_ffff;
                if write {
                    buf.iter_mut()
                        .zip(value.to_le_bytes().iter().cycle())
                        .for_each(|(b, v)| *b = *v);
                    dev.mmio_write(base, offset, &buf);
                } else {
                    dev.mmio_read(base, offset, &mut buf);
                }
            }
            PlatformAccess::Config {
                write,
                offset,
                size,
                value,
            } => {
                if write {
                    dev.write_config(offset, size, value);
                } else {
                    let _ = dev.read_config(offset, size);
                }
            }
            PlatformAccess::Register { id, kind, primary } => {
                let kind = match kind % 8 {
                    0 => DeviceKind::IdeDisk {
                        primary_master: primary,
                    },
                    1 => DeviceKind::AhciDisk,
                    2 => DeviceKind::ScsiDisk,
                    3 => DeviceKind::NvmeDisk,
                    4 => DeviceKind::Nic,
                    5 => DeviceKind::Cdrom,
                    6 => DeviceKind::Passthrough,
                    _ => DeviceKind::Other,
                };
                let _ = dev.register_device(DeviceId(u64::from(id)), kind);
            }
            PlatformAccess::Snapshot => {
                let state = dev.state();
                let restored = PlatformDevice::from_state(config, events.clone(), &state)
                    .expect("a device's own state restores");
                assert_eq!(restored.state(), state);
                dev = restored;
            }
        }
    }
    let unplugged = events.0.lock().unwrap();
    for id in unplugged.iter() {
        let kind = dev.device(*id).map(|d| d.kind);
        assert!(
            !matches!(
                kind,
                Some(DeviceKind::Passthrough | DeviceKind::Cdrom | DeviceKind::Other)
            ),
            "{kind:?} must never be unplugged"
        );
    }
}
