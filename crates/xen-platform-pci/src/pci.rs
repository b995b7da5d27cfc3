// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! PCI configuration space of the Xen platform device (`xen-abi.md` §7,
//! QEMU `hw/i386/xen/xen_platform.c`).
//!
//! The 256-byte type-0 header is kept as bytes together with a write mask,
//! as QEMU does: a write keeps the old value of every bit the mask clears, so
//! read-only fields ignore writes and BAR sizing falls out naturally (writing
//! all-ones to a BAR reads back the size mask with the unchanged type bits).
//!
//! | field | value | writable |
//! |---|---|---|
//! | vendor / device | 0x5853 / 0x0001 | no |
//! | command | I/O + memory at reset | I/O, memory, bus master, SERR#, INTx disable |
//! | status | 0 | no |
//! | revision, class | 1, 0xFF80 (prog-if 0) | no |
//! | cache line size | 0 | yes |
//! | header type | 0 | no |
//! | BAR0 | I/O, 256 bytes | address bits 31:8 |
//! | BAR1 | 32-bit prefetchable memory, 16 MiB | address bits 31:24 |
//! | subsystem vendor / id | 0x5853 / 0x0001 | no |
//! | interrupt line / pin | 0 / 1 (INTA#) | line only |
//!
//! Everything else (BAR2-5, expansion ROM, capabilities, the device-specific
//! area 0x40-0xFF) reads as zero and ignores writes.

/// Size of the configuration space in bytes.
pub const CONFIG_SPACE_SIZE: usize = 256;

/// Vendor id (XenSource, "XS").
pub const VENDOR_ID: u16 = 0x5853;
/// Device id of the platform device.
pub const DEVICE_ID: u16 = 0x0001;
/// Subsystem vendor id.
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x5853;
/// Subsystem id.
pub const SUBSYSTEM_ID: u16 = 0x0001;
/// Revision id.
pub const REVISION: u8 = 1;
/// Base class code (0xFF, "device does not fit any defined class").
pub const CLASS_BASE: u8 = 0xFF;
/// Sub-class code.
pub const CLASS_SUB: u8 = 0x80;
/// Programming interface.
pub const CLASS_PROG_IF: u8 = 0;
/// Interrupt pin (1 = INTA#).
pub const INTERRUPT_PIN: u8 = 1;
/// Size of BAR0 (I/O) in bytes.
pub const BAR0_SIZE: u32 = 0x100;
/// Size of BAR1 (prefetchable memory) in bytes.
pub const BAR1_SIZE: u32 = 0x100_0000;

/// Offset of the vendor id register.
pub const REG_VENDOR_ID: u16 = 0x00;
/// Offset of the device id register.
pub const REG_DEVICE_ID: u16 = 0x02;
/// Offset of the command register.
pub const REG_COMMAND: u16 = 0x04;
/// Offset of the status register.
pub const REG_STATUS: u16 = 0x06;
/// Offset of the revision id register.
pub const REG_REVISION: u16 = 0x08;
/// Offset of the programming interface byte.
pub const REG_PROG_IF: u16 = 0x09;
/// Offset of the sub-class byte.
pub const REG_CLASS_SUB: u16 = 0x0A;
/// Offset of the base class byte.
pub const REG_CLASS_BASE: u16 = 0x0B;
/// Offset of the cache line size register.
pub const REG_CACHE_LINE_SIZE: u16 = 0x0C;
/// Offset of the header type register.
pub const REG_HEADER_TYPE: u16 = 0x0E;
/// Offset of BAR0.
pub const REG_BAR0: u16 = 0x10;
/// Offset of BAR1.
pub const REG_BAR1: u16 = 0x14;
/// Offset of the subsystem vendor id register.
pub const REG_SUBSYSTEM_VENDOR_ID: u16 = 0x2C;
/// Offset of the subsystem id register.
pub const REG_SUBSYSTEM_ID: u16 = 0x2E;
/// Offset of the expansion ROM BAR.
pub const REG_ROM: u16 = 0x30;
/// Offset of the interrupt line register.
pub const REG_INTERRUPT_LINE: u16 = 0x3C;
/// Offset of the interrupt pin register.
pub const REG_INTERRUPT_PIN: u16 = 0x3D;

/// Command register: I/O space decoding.
pub const COMMAND_IO: u16 = 1 << 0;
/// Command register: memory space decoding.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: bus mastering.
pub const COMMAND_MASTER: u16 = 1 << 2;
/// Command register: SERR# enable.
pub const COMMAND_SERR: u16 = 1 << 8;
/// Command register: INTx emulation disable.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// The command bits a guest may change (QEMU's write mask).
pub const COMMAND_WRITABLE: u16 =
    COMMAND_IO | COMMAND_MEMORY | COMMAND_MASTER | COMMAND_SERR | COMMAND_INTX_DISABLE;

/// BAR bit 0: the BAR maps I/O space.
pub const BAR_IO_SPACE: u32 = 1 << 0;
/// BAR bit 3: the memory BAR is prefetchable.
pub const BAR_MEM_PREFETCH: u32 = 1 << 3;

const fn put16(b: &mut [u8; CONFIG_SPACE_SIZE], at: u16, v: u16) {
    let v = v.to_le_bytes();
    b[at as usize] = v[0];
    b[at as usize + 1] = v[1];
}

const fn put32(b: &mut [u8; CONFIG_SPACE_SIZE], at: u16, v: u32) {
    let v = v.to_le_bytes();
    b[at as usize] = v[0];
    b[at as usize + 1] = v[1];
    b[at as usize + 2] = v[2];
    b[at as usize + 3] = v[3];
}

/// The configuration space at reset.
pub(crate) const fn reset_values() -> [u8; CONFIG_SPACE_SIZE] {
    let mut b = [0u8; CONFIG_SPACE_SIZE];
    put16(&mut b, REG_VENDOR_ID, VENDOR_ID);
    put16(&mut b, REG_DEVICE_ID, DEVICE_ID);
    put16(&mut b, REG_COMMAND, COMMAND_IO | COMMAND_MEMORY);
    b[REG_REVISION as usize] = REVISION;
    b[REG_PROG_IF as usize] = CLASS_PROG_IF;
    b[REG_CLASS_SUB as usize] = CLASS_SUB;
    b[REG_CLASS_BASE as usize] = CLASS_BASE;
    put32(&mut b, REG_BAR0, BAR_IO_SPACE);
    put32(&mut b, REG_BAR1, BAR_MEM_PREFETCH);
    put16(&mut b, REG_SUBSYSTEM_VENDOR_ID, SUBSYSTEM_VENDOR_ID);
    put16(&mut b, REG_SUBSYSTEM_ID, SUBSYSTEM_ID);
    b[REG_INTERRUPT_PIN as usize] = INTERRUPT_PIN;
    b
}

/// The bits a guest may change: a set bit is writable.
pub(crate) const WRITE_MASK: [u8; CONFIG_SPACE_SIZE] = {
    let mut b = [0u8; CONFIG_SPACE_SIZE];
    put16(&mut b, REG_COMMAND, COMMAND_WRITABLE);
    b[REG_CACHE_LINE_SIZE as usize] = 0xFF;
    put32(&mut b, REG_BAR0, !(BAR0_SIZE - 1));
    put32(&mut b, REG_BAR1, !(BAR1_SIZE - 1));
    b[REG_INTERRUPT_LINE as usize] = 0xFF;
    b
};

/// Whether `(offset, size)` is a valid configuration access: 1, 2 or 4
/// bytes, naturally aligned, inside the 256 bytes.
pub(crate) fn valid_access(offset: u16, size: u8) -> bool {
    matches!(size, 1 | 2 | 4)
        && offset.is_multiple_of(u16::from(size))
        && usize::from(offset) + usize::from(size) <= CONFIG_SPACE_SIZE
}

/// A type-0 configuration space with its write mask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConfigSpace {
    bytes: [u8; CONFIG_SPACE_SIZE],
}

impl ConfigSpace {
    /// The configuration space at reset.
    pub(crate) fn new() -> Self {
        Self {
            bytes: reset_values(),
        }
    }

    /// Restores saved bytes. The caller checked the read-only bytes.
    pub(crate) fn from_bytes(bytes: [u8; CONFIG_SPACE_SIZE]) -> Self {
        Self { bytes }
    }

    /// The raw bytes.
    pub(crate) fn bytes(&self) -> &[u8; CONFIG_SPACE_SIZE] {
        &self.bytes
    }

    /// Reads a valid access (checked by the caller).
    pub(crate) fn read(&self, offset: u16, size: u8) -> u32 {
        let at = usize::from(offset);
        self.bytes[at..at + usize::from(size)]
            .iter()
            .rev()
            .fold(0, |acc, b| (acc << 8) | u32::from(*b))
    }

    /// Writes a valid access (checked by the caller), keeping read-only bits.
    pub(crate) fn write(&mut self, offset: u16, size: u8, value: u32) {
        let at = usize::from(offset);
        for (i, byte) in value.to_le_bytes()[..usize::from(size)].iter().enumerate() {
            let mask = WRITE_MASK[at + i];
            self.bytes[at + i] = (self.bytes[at + i] & !mask) | (byte & mask);
        }
    }

    /// A 16-bit register.
    pub(crate) fn read16(&self, offset: u16) -> u16 {
        self.read(offset, 2) as u16
    }

    /// A 32-bit register.
    pub(crate) fn read32(&self, offset: u16) -> u32 {
        self.read(offset, 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_valid_access_unaligned_or_outside_rejected() {
        assert!(valid_access(0, 4));
        assert!(valid_access(0xFC, 4));
        assert!(valid_access(0xFE, 2));
        assert!(valid_access(0xFF, 1));
        assert!(!valid_access(0x02, 4));
        assert!(!valid_access(0x01, 2));
        assert!(!valid_access(0x100, 1));
        assert!(!valid_access(0, 3));
        assert!(!valid_access(0, 0));
        assert!(!valid_access(0, 8));
    }

    #[test]
    fn test_write_mask_read_only_bytes_match_reset_identity() {
        // Every byte that carries identity is fully read-only.
        for reg in [
            REG_VENDOR_ID,
            REG_DEVICE_ID,
            REG_REVISION,
            REG_CLASS_SUB,
            REG_HEADER_TYPE,
            REG_SUBSYSTEM_VENDOR_ID,
            REG_SUBSYSTEM_ID,
            REG_INTERRUPT_PIN,
        ] {
            assert_eq!(WRITE_MASK[usize::from(reg)], 0, "register {reg:#x}");
        }
    }

    #[test]
    fn test_config_space_write_keeps_read_only_bits() {
        let mut c = ConfigSpace::new();
        c.write(REG_BAR0, 4, 0x1234_5678);
        assert_eq!(c.read32(REG_BAR0), 0x1234_5601);
    }
}
