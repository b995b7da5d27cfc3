// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! vm-device adapters: [`MutDevicePio`] for the legacy ports and BAR0,
//! [`MutDeviceMmio`] for BAR1.
//!
//! Accesses are routed by absolute address (`base + offset`), so the VMM
//! can register the same device for port range 0x10-0x1F and for BAR0's
//! current range ([`PlatformDevice::bar0_port`]), and for BAR1's range
//! ([`PlatformDevice::bar1_address`]). The legacy ports win if BAR0 is
//! placed over them. After each configuration write the VMM compares the
//! BAR accessors with its registrations and moves them; an access that
//! reaches the device at an address no BAR decodes reads all-ones and is
//! counted as bad. `Mutex<PlatformDevice<E>>` gets vm-device's `DevicePio`
//! and `DeviceMmio` through the blanket impls, ready for `IoManager`.
//!
//! PCI configuration cycles are left to the VMM's bus (decoding CF8/CFC
//! or ECAM into a register offset): it calls
//! [`PlatformDevice::read_config`] and [`PlatformDevice::write_config`].

use vm_device::bus::{MmioAddress, MmioAddressOffset, PioAddress, PioAddressOffset};
use vm_device::{MutDeviceMmio, MutDevicePio};

use crate::device::{LEGACY_PORT_BASE, LEGACY_PORT_COUNT, PlatformDevice, PlatformEvents};
use crate::pci::{BAR0_SIZE, BAR1_SIZE};

/// Where a port access lands.
enum PioTarget {
    Legacy(u16),
    Bar0(u16),
}

impl<E: PlatformEvents> PlatformDevice<E> {
    fn route_pio(&self, base: PioAddress, offset: PioAddressOffset) -> Option<PioTarget> {
        let port = base.0.checked_add(offset)?;
        if (LEGACY_PORT_BASE..LEGACY_PORT_BASE + LEGACY_PORT_COUNT).contains(&port) {
            return Some(PioTarget::Legacy(port - LEGACY_PORT_BASE));
        }
        let bar0 = self.bar0_port()?;
        let rel = port.checked_sub(bar0)?;
        (u32::from(rel) < BAR0_SIZE).then_some(PioTarget::Bar0(rel))
    }

    fn route_mmio(&self, base: MmioAddress, offset: MmioAddressOffset) -> Option<u64> {
        let addr = base.0.checked_add(offset)?;
        let rel = addr.checked_sub(self.bar1_address()?)?;
        (rel < u64::from(BAR1_SIZE)).then_some(rel)
    }
}

impl<E: PlatformEvents> MutDevicePio for PlatformDevice<E> {
    fn pio_read(&mut self, base: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        match self.route_pio(base, offset) {
            Some(PioTarget::Legacy(o)) => self.legacy_read(o, data),
            Some(PioTarget::Bar0(o)) => self.bar0_read(o, data),
            None => {
                data.fill(0xFF);
                self.bad_access("port read", u64::from(base.0), data.len());
            }
        }
    }

    fn pio_write(&mut self, base: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        match self.route_pio(base, offset) {
            Some(PioTarget::Legacy(o)) => self.legacy_write(o, data),
            Some(PioTarget::Bar0(o)) => self.bar0_write(o, data),
            None => self.bad_access("port write", u64::from(base.0), data.len()),
        }
    }
}

impl<E: PlatformEvents> MutDeviceMmio for PlatformDevice<E> {
    fn mmio_read(&mut self, base: MmioAddress, offset: MmioAddressOffset, data: &mut [u8]) {
        match self.route_mmio(base, offset) {
            Some(rel) => self.bar1_read(rel, data),
            None => {
                data.fill(0xFF);
                self.bad_access("memory read", base.0, data.len());
            }
        }
    }

    fn mmio_write(&mut self, base: MmioAddress, offset: MmioAddressOffset, data: &[u8]) {
        match self.route_mmio(base, offset) {
            Some(rel) => self.bar1_write(rel, data),
            None => self.bad_access("memory write", base.0, data.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use proptest::prelude::*;
    use vm_device::{DeviceMmio, DevicePio};

    use super::*;
    use crate::pci::{REG_BAR0, REG_BAR1, REG_COMMAND};
    use crate::testing::*;
    use crate::{Config, DeviceId, NoEvents};

    fn programmed() -> PlatformDevice<NoEvents> {
        let mut d = PlatformDevice::default();
        d.write_config(REG_BAR0, 4, 0xC000);
        d.write_config(REG_BAR1, 4, 0xF000_0000);
        d
    }

    #[test]
    fn test_pio_legacy_range_routed_by_base() {
        let mut d = programmed();
        let mut w = [0u8; 2];
        d.pio_read(PioAddress(0x10), 0, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x49D2);
        let mut b = [0u8; 1];
        d.pio_read(PioAddress(0x10), 2, &mut b);
        assert_eq!(b, [1]);
        d.pio_write(PioAddress(0x12), 0, &[3, 0]);
        assert_eq!(d.product(), Some(3));
    }

    #[test]
    fn test_pio_bar0_routed_when_decoded() {
        let mut d = programmed();
        d.pio_write(PioAddress(0xC000), 0, &[1]);
        assert!(d.rom_locked());
        let mut b = [0u8; 1];
        d.pio_read(PioAddress(0xC000), 0, &mut b);
        assert_eq!(b, [1]);
        d.write_config(REG_COMMAND, 2, 0);
        d.pio_read(PioAddress(0xC000), 0, &mut b);
        assert_eq!(b, [0xFF]);
        assert_eq!(d.stats().bad_accesses, 1);
        // The legacy ports stay decoded.
        let mut w = [0u8; 2];
        d.pio_read(PioAddress(0x10), 0, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x49D2);
    }

    #[test]
    fn test_pio_bar0_unplug_through_mutex() {
        let (mut d, rec) = populated(Config::default());
        d.write_config(REG_BAR0, 4, 0xC100);
        let m = Mutex::new(d);
        m.pio_write(PioAddress(0xC100), 8, &[2]);
        assert_eq!(rec.unplugged_ids(), vec![NIC, NIC2]);
        assert!(m.lock().unwrap().device(DeviceId(NIC)).unwrap().unplugged);
    }

    #[test]
    fn test_pio_unrouted_port_counted() {
        let mut d = programmed();
        let mut b = [0u8; 2];
        d.pio_read(PioAddress(0x20), 0, &mut b);
        assert_eq!(b, [0xFF; 2]);
        d.pio_write(PioAddress(0xFFFF), 0xFFFF, &[0]);
        d.pio_write(PioAddress(0xC100), 0, &[0]);
        assert_eq!(d.stats().bad_accesses, 3);
    }

    #[test]
    fn test_mmio_bar1_reads_zero_through_mutex() {
        let m = Mutex::new(programmed());
        let mut q = [0xAAu8; 8];
        m.mmio_write(MmioAddress(0xF000_0000), 0x10, &[1; 8]);
        m.mmio_read(MmioAddress(0xF000_0000), 0x10, &mut q);
        assert_eq!(q, [0; 8]);
        m.mmio_read(MmioAddress(0xF000_0000), u64::from(BAR1_SIZE), &mut q);
        assert_eq!(q, [0xFF; 8]);
        assert_eq!(m.lock().unwrap().stats().bad_accesses, 1);
    }

    #[test]
    fn test_mmio_memory_decode_off_counted() {
        let mut d = programmed();
        d.write_config(REG_COMMAND, 2, 1);
        let mut q = [0u8; 4];
        d.mmio_read(MmioAddress(0xF000_0000), 0, &mut q);
        assert_eq!(q, [0xFF; 4]);
        d.mmio_write(MmioAddress(0xF000_0000), 0, &q);
        assert_eq!(d.stats().bad_accesses, 2);
    }

    proptest! {
        #[test]
        fn test_pio_arbitrary_access_never_panics(
            base in any::<u16>(), offset in any::<u16>(),
            data in proptest::collection::vec(any::<u8>(), 0..10), write in any::<bool>(),
        ) {
            let (mut d, _) = populated(Config::default());
            d.write_config(REG_BAR0, 4, 0xC000);
            let before = d.stats().bad_accesses;
            let mut buf = data.clone();
            if write {
                d.pio_write(PioAddress(base), offset, &data);
            } else {
                d.pio_read(PioAddress(base), offset, &mut buf);
            }
            prop_assert!(d.stats().bad_accesses - before <= 1);
            prop_assert_eq!(buf.len(), data.len());
            prop_assert_eq!(d.read_config(0, 4), 0x0001_5853);
        }

        #[test]
        fn test_mmio_arbitrary_access_never_panics(
            base in any::<u64>(), offset in any::<u64>(), near in any::<bool>(),
            data in proptest::collection::vec(any::<u8>(), 0..17), write in any::<bool>(),
        ) {
            let mut d = programmed();
            let base = if near { 0xF000_0000 } else { base };
            let offset = if near { offset % (2 * u64::from(BAR1_SIZE)) } else { offset };
            let mut buf = data.clone();
            if write {
                d.mmio_write(MmioAddress(base), offset, &data);
            } else {
                d.mmio_read(MmioAddress(base), offset, &mut buf);
                prop_assert!(buf.iter().all(|b| *b == 0) || buf.iter().all(|b| *b == 0xFF));
            }
            prop_assert!(d.stats().bad_accesses <= 1);
        }

        #[test]
        fn test_config_arbitrary_access_keeps_identity(
            ops in proptest::collection::vec((any::<u16>(), any::<u8>(), any::<u32>()), 1..32),
        ) {
            let mut d = PlatformDevice::default();
            for (offset, size, value) in ops {
                let offset = offset % 0x110;
                let size = size % 9;
                let valid = matches!(size, 1 | 2 | 4)
                    && offset.is_multiple_of(u16::from(size))
                    && usize::from(offset) + usize::from(size) <= 256;
                let before = d.stats().bad_accesses;
                d.write_config(offset, size, value);
                let read = d.read_config(offset, size);
                if !valid {
                    prop_assert_eq!(read, u32::MAX);
                    prop_assert_eq!(d.stats().bad_accesses, before + 2);
                }
            }
            prop_assert_eq!(d.read_config(0x00, 4), 0x0001_5853);
            prop_assert_eq!(d.read_config(0x08, 4), 0xFF80_0001);
            prop_assert_eq!(d.read_config(0x2C, 4), 0x0001_5853);
            prop_assert_eq!(d.read_config(0x3D, 1), 1);
            prop_assert_eq!(d.read_config(0x10, 4) & 0xFF, 1);
            prop_assert_eq!(d.read_config(0x14, 4) & 0xFF_FFFF, 8);
        }
    }
}
