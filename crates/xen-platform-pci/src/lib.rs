// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The Xen platform PCI device (vendor 0x5853, device 0x0001) for a
//! KVM-based VMM, as guests know it from Xen and QEMU (`xen-abi.md` §7).
//!
//! Linux (and every other PV-on-HVM driver set) looks for this device
//! before it uses any PV device: the magic at I/O port 0x10 enables the PV
//! front ends, BAR1 gives the grant table its frames, and a word written to
//! port 0x10 asks the VMM to remove the emulated disks and NICs that the PV
//! devices replace.
//!
//! [`PlatformDevice`] is a bus-independent core:
//!
//! * PCI configuration space ([`PlatformDevice::read_config`] /
//!   [`PlatformDevice::write_config`], module [`pci`]);
//! * the fixed legacy ports 0x10-0x1F, BAR0 (I/O) and BAR1 (memory), through
//!   [`PlatformDevice::legacy_read`] and friends or through vm-device's
//!   [`MutDevicePio`](vm_device::MutDevicePio) and
//!   [`MutDeviceMmio`](vm_device::MutDeviceMmio) (module [`mod@bus`]);
//! * emulated-device unplug: the VMM registers its devices with a
//!   [`DeviceKind`], and the device calls [`PlatformEvents::unplug`] once for
//!   each device a guest request removes (module [`unplug`]);
//! * snapshots through [`State`].
//!
//! Nothing here does I/O or panics on guest input: bad offsets and sizes
//! read all-ones, are otherwise ignored and are counted in
//! [`Stats::bad_accesses`].
//!
//! ```
//! use xen_platform_pci::{Config, DeviceId, DeviceKind, NoEvents, PlatformDevice};
//!
//! let mut dev = PlatformDevice::new(Config::default(), NoEvents);
//! dev.register_device(DeviceId(0), DeviceKind::IdeDisk { primary_master: true }).unwrap();
//! dev.register_device(DeviceId(1), DeviceKind::Cdrom).unwrap();
//!
//! // The Linux handshake.
//! let mut magic = [0u8; 2];
//! dev.legacy_read(0, &mut magic);
//! assert_eq!(u16::from_le_bytes(magic), 0x49D2);
//! dev.legacy_write(2, &3u16.to_le_bytes()); // product: Linux
//! dev.legacy_write(0, &1u32.to_le_bytes()); // build 1
//! dev.legacy_write(0, &3u16.to_le_bytes()); // unplug IDE disks and NICs
//!
//! assert!(dev.device(DeviceId(0)).unwrap().unplugged);
//! assert!(!dev.device(DeviceId(1)).unwrap().unplugged);
//! ```

#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("xen-platform-pci supports x86-64 hosts and guests only");

pub mod bus;
pub mod device;
pub mod pci;
pub mod state;
#[cfg(test)]
mod testing;
pub mod unplug;

pub use device::{
    Config, LEGACY_PORT_BASE, LEGACY_PORT_COUNT, LOG_BUFFER_SIZE, MAGIC, MAGIC_BLACKLISTED,
    NoEvents, PFFLAG_ROM_LOCK, PRODUCT_EXPERIMENTAL, PRODUCT_GPLPV_WINDOWS, PRODUCT_LINUX,
    PRODUCT_XENSERVER_WINDOWS, PRODUCT_XENSOURCE_WINDOWS, PROTOCOL_VERSION, PlatformDevice,
    PlatformEvents, Stats, UNPLUG_HISTORY_LEN,
};
pub use state::State;
pub use unplug::{
    DeviceId, DeviceKind, RegisteredDevice, UnplugMask, UnplugRecord, UnplugRequest, UnplugSource,
};

/// Errors of device registration and snapshot restore.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The VMM registered a device id twice.
    #[error("Device {0} is already registered.")]
    DuplicateDevice(DeviceId),
    /// A saved configuration space does not hold 256 bytes.
    #[error("The saved configuration space holds {0} bytes instead of 256.")]
    ConfigSpaceLength(usize),
    /// A saved configuration space changes a read-only bit.
    #[error(
        "The saved configuration space has {found:#04x} at offset {offset:#04x}, \
         whose read-only bits must match {expected:#04x}."
    )]
    ReadOnlyConfigByte {
        /// Offset of the byte.
        offset: usize,
        /// Value at reset.
        expected: u8,
        /// Value in the state.
        found: u8,
    },
    /// Saved platform flags set bits other than the ROM lock.
    #[error("The saved platform flags {0:#04x} set bits other than the ROM lock.")]
    InvalidFlags(u8),
    /// A saved log buffer is full or holds a newline.
    #[error("The saved log buffer of {0} bytes is full or holds a newline.")]
    InvalidLog(usize),
    /// A saved unplug history is longer than the device keeps.
    #[error("The saved unplug history holds {0} records, more than the device keeps.")]
    HistoryTooLong(usize),
}

/// Result of this crate's fallible operations.
pub type Result<T> = std::result::Result<T, Error>;
