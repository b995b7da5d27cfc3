// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Emulated-device unplug (`xen-abi.md` §7, Xen
//! `docs/misc/hvm-emulated-unplug.pandoc`, QEMU `xen_platform.c`).
//!
//! PV drivers ask the VMM to remove the emulated devices that duplicate
//! their PV devices, so that a disk is not reachable both ways. The VMM
//! registers each of its devices with a [`DeviceKind`]; an [`UnplugMask`]
//! then selects devices by kind ([`DeviceKind::unplugged_by`]):
//!
//! | bit | name | removes |
//! |---|---|---|
//! | 0 (1) | `ALL_IDE_DISKS` | IDE and SCSI disks; AHCI disks if [`Config::unplug_ahci`](crate::Config::unplug_ahci) |
//! | 1 (2) | `ALL_NICS` | emulated NICs |
//! | 2 (4) | `AUX_IDE_DISKS` | IDE disks except the primary master; ignored when bit 0 is set |
//! | 3 (8) | `NVME_DISKS` | NVMe disks |
//!
//! CD-ROMs are not disks and pass-through (VFIO) devices are never removed.

use std::fmt;

/// A set of unplug bits as written by the guest (unknown bits are kept and
/// ignored).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct UnplugMask(pub u16);

impl UnplugMask {
    /// Bit 0: all IDE and SCSI disks (not CD-ROMs).
    pub const ALL_IDE_DISKS: Self = Self(1 << 0);
    /// Bit 1: all emulated NICs.
    pub const ALL_NICS: Self = Self(1 << 1);
    /// Bit 2: IDE disks except the primary master (overridden by bit 0).
    pub const AUX_IDE_DISKS: Self = Self(1 << 2);
    /// Bit 3: NVMe disks.
    pub const NVME_DISKS: Self = Self(1 << 3);
    /// The bits with a meaning.
    pub const KNOWN: Self = Self(0xF);

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of both masks.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl fmt::Display for UnplugMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#06x}", self.0)
    }
}

/// The VMM's name for one of its emulated devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct DeviceId(pub u64);

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What an emulated device is, as far as unplug is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum DeviceKind {
    /// A disk on an emulated IDE controller (PIIX); the primary master
    /// (channel 0, unit 0) survives `AUX_IDE_DISKS`.
    IdeDisk {
        /// Whether the disk is the primary master.
        primary_master: bool,
    },
    /// A disk on an emulated AHCI (SATA) controller; removed by
    /// `ALL_IDE_DISKS` only when the VMM opts in.
    AhciDisk,
    /// A disk on an emulated SCSI controller.
    ScsiDisk,
    /// An emulated NVMe disk.
    NvmeDisk,
    /// An emulated NIC (the VMM also drops its network back end).
    Nic,
    /// A CD-ROM on any controller: never removed.
    Cdrom,
    /// A pass-through (VFIO) device: never removed.
    Passthrough,
    /// Anything else (virtio, USB, ...): never removed.
    Other,
}

impl DeviceKind {
    /// Whether a device of this kind is removed by `mask`. `unplug_ahci`
    /// says whether AHCI disks count as IDE disks (current QEMU) or are
    /// exempt (QEMU 8.0 documentation, the default here).
    ///
    /// ```
    /// use xen_platform_pci::{DeviceKind, UnplugMask};
    /// let aux = UnplugMask::AUX_IDE_DISKS;
    /// assert!(!DeviceKind::IdeDisk { primary_master: true }.unplugged_by(aux, false));
    /// assert!(DeviceKind::IdeDisk { primary_master: false }.unplugged_by(aux, false));
    /// assert!(!DeviceKind::Cdrom.unplugged_by(UnplugMask(0xFFFF), true));
    /// ```
    pub fn unplugged_by(self, mask: UnplugMask, unplug_ahci: bool) -> bool {
        let all_disks = mask.contains(UnplugMask::ALL_IDE_DISKS);
        let aux = mask.contains(UnplugMask::AUX_IDE_DISKS) && !all_disks;
        match self {
            DeviceKind::IdeDisk { primary_master } => all_disks || (aux && !primary_master),
            DeviceKind::AhciDisk => unplug_ahci && all_disks,
            DeviceKind::ScsiDisk => all_disks,
            DeviceKind::NvmeDisk => mask.contains(UnplugMask::NVME_DISKS),
            DeviceKind::Nic => mask.contains(UnplugMask::ALL_NICS),
            DeviceKind::Cdrom | DeviceKind::Passthrough | DeviceKind::Other => false,
        }
    }
}

/// A device the VMM registered, and whether it has been unplugged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RegisteredDevice {
    /// The VMM's id.
    pub id: DeviceId,
    /// Its kind.
    pub kind: DeviceKind,
    /// Whether a guest request removed it.
    pub unplugged: bool,
}

/// Which guest access carried an unplug request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum UnplugSource {
    /// Word write to legacy port 0x10 (the documented protocol).
    LegacyPort,
    /// Write of 1 to BAR0 offset 4 (old SUSE/Novell drivers).
    Bar0Legacy,
    /// Write of 1 or 2 to BAR0 offset 8 (old VMDP drivers).
    Bar0,
}

/// One unplug request as recorded in the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct UnplugRecord {
    /// The mask requested (BAR0 requests are translated to mask bits).
    pub mask: UnplugMask,
    /// Where it came from.
    pub source: UnplugSource,
    /// Whether it was refused because the drivers are blacklisted.
    pub refused: bool,
}

/// One device the guest's request removes, handed to
/// [`PlatformEvents::unplug`](crate::PlatformEvents::unplug).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnplugRequest {
    /// The VMM's device.
    pub device: DeviceId,
    /// Its registered kind.
    pub kind: DeviceKind,
    /// The mask that removed it.
    pub mask: UnplugMask,
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDE_PM: DeviceKind = DeviceKind::IdeDisk {
        primary_master: true,
    };
    const IDE_AUX: DeviceKind = DeviceKind::IdeDisk {
        primary_master: false,
    };

    #[test]
    fn test_unplugged_by_all_ide_disks_removes_ide_and_scsi() {
        let m = UnplugMask::ALL_IDE_DISKS;
        assert!(IDE_PM.unplugged_by(m, false));
        assert!(IDE_AUX.unplugged_by(m, false));
        assert!(DeviceKind::ScsiDisk.unplugged_by(m, false));
        assert!(!DeviceKind::NvmeDisk.unplugged_by(m, false));
        assert!(!DeviceKind::Nic.unplugged_by(m, false));
    }

    #[test]
    fn test_unplugged_by_ahci_depends_on_option() {
        let m = UnplugMask::ALL_IDE_DISKS;
        assert!(!DeviceKind::AhciDisk.unplugged_by(m, false));
        assert!(DeviceKind::AhciDisk.unplugged_by(m, true));
        assert!(!DeviceKind::AhciDisk.unplugged_by(UnplugMask::AUX_IDE_DISKS, true));
    }

    #[test]
    fn test_unplugged_by_aux_keeps_primary_master_and_scsi() {
        let m = UnplugMask::AUX_IDE_DISKS;
        assert!(!IDE_PM.unplugged_by(m, false));
        assert!(IDE_AUX.unplugged_by(m, false));
        assert!(!DeviceKind::ScsiDisk.unplugged_by(m, false));
    }

    #[test]
    fn test_unplugged_by_all_and_aux_all_wins() {
        let m = UnplugMask::ALL_IDE_DISKS.union(UnplugMask::AUX_IDE_DISKS);
        assert!(IDE_PM.unplugged_by(m, false));
    }

    #[test]
    fn test_unplugged_by_nics_and_nvme_only_their_bit() {
        assert!(DeviceKind::Nic.unplugged_by(UnplugMask::ALL_NICS, false));
        assert!(!IDE_AUX.unplugged_by(UnplugMask::ALL_NICS, false));
        assert!(DeviceKind::NvmeDisk.unplugged_by(UnplugMask::NVME_DISKS, false));
        assert!(!IDE_AUX.unplugged_by(UnplugMask::NVME_DISKS, false));
    }

    #[test]
    fn test_unplugged_by_exempt_kinds_never_removed() {
        for kind in [
            DeviceKind::Cdrom,
            DeviceKind::Passthrough,
            DeviceKind::Other,
        ] {
            for bits in 0..=u16::MAX {
                assert!(!kind.unplugged_by(UnplugMask(bits), true));
            }
        }
    }

    #[test]
    fn test_unplug_mask_display_hex() {
        assert_eq!(UnplugMask(3).to_string(), "0x0003");
        assert_eq!(DeviceId(7).to_string(), "7");
    }
}
