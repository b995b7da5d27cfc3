// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `physdev_op` hypercall (33) definitions, mirroring
//! `xen/include/public/physdev.h`.
//!
//! Follows interface version 0x00041300 (Xen 4.23-unstable), `xen-abi.md`
//! §3.12. HVM guests only reach the PIRQ operations (and only when the domain
//! has PIRQ emulation, i.e. `XENFEAT_hvm_pirqs`). The compat (x86_32)
//! [`PhysdevMapPirqCompat`] has its `u64` at offset 28 and is therefore
//! `#[repr(C, packed(4))]`, matching the i386 alignment of `uint64_t`.

use bitflags::bitflags;

use crate::xen::DomId;

abi_enum! {
    /// `physdev_op` commands (`PHYSDEVOP_*`).
    pub enum PhysdevOp: u32, "physdev_op command" {
        /// Query an IRQ's status ([`PhysdevIrqStatusQuery`]).
        IrqStatusQuery = 5 => "PHYSDEVOP_irq_status_query",
        /// Set the I/O privilege level (PV).
        SetIopl = 6 => "PHYSDEVOP_set_iopl",
        /// Set the I/O port bitmap (PV).
        SetIobitmap = 7 => "PHYSDEVOP_set_iobitmap",
        /// Read an IO-APIC register (hardware domain).
        ApicRead = 8 => "PHYSDEVOP_apic_read",
        /// Write an IO-APIC register (hardware domain).
        ApicWrite = 9 => "PHYSDEVOP_apic_write",
        /// Allocate an IRQ vector (hardware domain).
        AllocIrqVector = 10 => "PHYSDEVOP_alloc_irq_vector",
        /// Free an IRQ vector (hardware domain).
        FreeIrqVector = 11 => "PHYSDEVOP_free_irq_vector",
        /// Signal end of interrupt ([`PhysdevEoi`]).
        Eoi = 12 => "PHYSDEVOP_eoi",
        /// Map a GSI or MSI to a PIRQ ([`PhysdevMapPirq`]).
        MapPirq = 13 => "PHYSDEVOP_map_pirq",
        /// Unmap a PIRQ ([`PhysdevUnmapPirq`]).
        UnmapPirq = 14 => "PHYSDEVOP_unmap_pirq",
        /// Report a PCI device (hardware domain).
        ManagePciAdd = 15 => "PHYSDEVOP_manage_pci_add",
        /// Remove a PCI device (hardware domain).
        ManagePciRemove = 16 => "PHYSDEVOP_manage_pci_remove",
        /// Register the PIRQ EOI bitmap page, v1 semantics ([`PhysdevPirqEoiGmfn`]).
        PirqEoiGmfnV1 = 17 => "PHYSDEVOP_pirq_eoi_gmfn_v1",
        /// Restore a device's MSI state (hardware domain).
        RestoreMsi = 19 => "PHYSDEVOP_restore_msi",
        /// Report a PCI device with extra information (hardware domain).
        ManagePciAddExt = 20 => "PHYSDEVOP_manage_pci_add_ext",
        /// Configure a GSI's trigger and polarity (hardware domain).
        SetupGsi = 21 => "PHYSDEVOP_setup_gsi",
        /// Allocate a free PIRQ ([`PhysdevGetFreePirq`]).
        GetFreePirq = 23 => "PHYSDEVOP_get_free_pirq",
        /// Report a reserved MMCFG region (hardware domain).
        PciMmcfgReserved = 24 => "PHYSDEVOP_pci_mmcfg_reserved",
        /// Add a PCI device (hardware domain).
        PciDeviceAdd = 25 => "PHYSDEVOP_pci_device_add",
        /// Remove a PCI device (hardware domain).
        PciDeviceRemove = 26 => "PHYSDEVOP_pci_device_remove",
        /// Restore a device's MSI state, with segment (hardware domain).
        RestoreMsiExt = 27 => "PHYSDEVOP_restore_msi_ext",
        /// Register the PIRQ EOI bitmap page, v2 semantics ([`PhysdevPirqEoiGmfn`]).
        PirqEoiGmfnV2 = 28 => "PHYSDEVOP_pirq_eoi_gmfn_v2",
        /// USB debug port operations (hardware domain).
        DbgpOp = 29 => "PHYSDEVOP_dbgp_op",
        /// Prepare MSI-X use (hardware domain).
        PrepareMsix = 30 => "PHYSDEVOP_prepare_msix",
        /// Release MSI-X use (hardware domain).
        ReleaseMsix = 31 => "PHYSDEVOP_release_msix",
    }
}

impl PhysdevOp {
    /// True for the operations Xen lets any HVM guest with PIRQ emulation use
    /// (`map_pirq` and `unmap_pirq` always; `eoi`, `irq_status_query` and
    /// `get_free_pirq` only when the domain has PIRQs).
    pub const fn is_hvm_pirq_op(self) -> bool {
        matches!(
            self,
            PhysdevOp::MapPirq
                | PhysdevOp::UnmapPirq
                | PhysdevOp::Eoi
                | PhysdevOp::IrqStatusQuery
                | PhysdevOp::GetFreePirq
        )
    }
}

abi_enum! {
    /// `physdev_map_pirq.type` values (`MAP_PIRQ_TYPE_*`).
    pub enum MapPirqType: i32, "map_pirq type" {
        /// An MSI (bus in the low 16 bits of `bus`).
        Msi = 0 => "MAP_PIRQ_TYPE_MSI",
        /// A GSI (`index` is the GSI).
        Gsi = 1 => "MAP_PIRQ_TYPE_GSI",
        /// Unknown source.
        Unknown = 2 => "MAP_PIRQ_TYPE_UNKNOWN",
        /// An MSI with the PCI segment in the high 16 bits of `bus`.
        MsiSeg = 3 => "MAP_PIRQ_TYPE_MSI_SEG",
        /// Several MSI vectors (`entry_nr` = count), segment in `bus` 31:16.
        MultiMsi = 4 => "MAP_PIRQ_TYPE_MULTI_MSI",
    }
}

/// `struct physdev_map_pirq`, x86_64 layout (40 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevMapPirq {
    /// Target domain.
    pub domid: DomId,
    /// Padding.
    pub pad0: u16,
    /// IN: raw [`MapPirqType`].
    pub type_: i32,
    /// IN: GSI, or MSI-X entry index.
    pub index: i32,
    /// IN/OUT: the PIRQ (negative on input: allocate one).
    pub pirq: i32,
    /// IN: PCI bus in bits 15:0; PCI segment in bits 31:16 for
    /// [`MapPirqType::MsiSeg`] and [`MapPirqType::MultiMsi`].
    pub bus: i32,
    /// IN: PCI device/function.
    pub devfn: i32,
    /// IN: MSI-X entry number, or vector count for multi-MSI.
    pub entry_nr: i32,
    /// Padding.
    pub pad1: u32,
    /// IN: MSI-X table base address.
    pub table_base: u64,
}
abi_layout!(PhysdevMapPirq, 40, {
    domid => 0, pad0 => 2, type_ => 4, index => 8, pirq => 12, bus => 16, devfn => 20,
    entry_nr => 24, pad1 => 28, table_base => 32,
});

/// `struct physdev_map_pirq`, x86_32 layout (36 bytes).
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevMapPirqCompat {
    /// Target domain.
    pub domid: DomId,
    /// Padding.
    pub pad0: u16,
    /// IN: raw [`MapPirqType`].
    pub type_: i32,
    /// IN: GSI, or MSI-X entry index.
    pub index: i32,
    /// IN/OUT: the PIRQ (negative on input: allocate one).
    pub pirq: i32,
    /// IN: PCI bus in bits 15:0; PCI segment in bits 31:16 for
    /// [`MapPirqType::MsiSeg`] and [`MapPirqType::MultiMsi`].
    pub bus: i32,
    /// IN: PCI device/function.
    pub devfn: i32,
    /// IN: MSI-X entry number, or vector count for multi-MSI.
    pub entry_nr: i32,
    /// IN: MSI-X table base address.
    pub table_base: u64,
}
abi_layout!(PhysdevMapPirqCompat, 36, {
    domid => 0, pad0 => 2, type_ => 4, index => 8, pirq => 12, bus => 16, devfn => 20,
    entry_nr => 24, table_base => 28,
});

macro_rules! map_pirq_accessors {
    ($ty:ident) => {
        impl $ty {
            /// Decodes `type_`.
            pub fn map_type(&self) -> crate::Result<MapPirqType> {
                MapPirqType::try_from(self.type_)
            }

            /// PCI bus number (bits 15:0 of `bus`).
            pub const fn pci_bus(&self) -> u16 {
                self.bus as u16
            }

            /// PCI segment (bits 31:16 of `bus`); meaningful for
            /// [`MapPirqType::MsiSeg`] and [`MapPirqType::MultiMsi`] only.
            pub const fn pci_segment(&self) -> u16 {
                (self.bus as u32 >> 16) as u16
            }

            /// PCI device number (bits 7:3 of `devfn`).
            pub const fn pci_device(&self) -> u8 {
                ((self.devfn as u32 >> 3) & 0x1f) as u8
            }

            /// PCI function number (bits 2:0 of `devfn`).
            pub const fn pci_function(&self) -> u8 {
                (self.devfn as u32 & 7) as u8
            }
        }
    };
}
map_pirq_accessors!(PhysdevMapPirq);
map_pirq_accessors!(PhysdevMapPirqCompat);

impl From<PhysdevMapPirqCompat> for PhysdevMapPirq {
    fn from(c: PhysdevMapPirqCompat) -> Self {
        PhysdevMapPirq {
            domid: c.domid,
            pad0: 0,
            type_: c.type_,
            index: c.index,
            pirq: c.pirq,
            bus: c.bus,
            devfn: c.devfn,
            entry_nr: c.entry_nr,
            pad1: 0,
            table_base: c.table_base,
        }
    }
}

/// `struct physdev_unmap_pirq` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevUnmapPirq {
    /// Target domain.
    pub domid: DomId,
    /// Padding.
    pub pad: u16,
    /// The PIRQ to unmap.
    pub pirq: i32,
}
abi_layout!(PhysdevUnmapPirq, 8, { domid => 0, pad => 2, pirq => 4 });

/// `struct physdev_eoi` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevEoi {
    /// IN: the IRQ (PIRQ) to EOI.
    pub irq: u32,
}
abi_layout!(PhysdevEoi, 4, { irq => 0 });

bitflags! {
    /// `physdev_irq_status_query.flags` (`XENIRQSTAT_*`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
    #[cfg_attr(feature = "serde", serde(transparent))]
    pub struct XenIrqStatFlags: u32 {
        /// The guest must issue `PHYSDEVOP_eoi` (`XENIRQSTAT_needs_eoi`).
        const NEEDS_EOI = 1 << 0;
        /// The IRQ is shared with other domains (`XENIRQSTAT_shared`).
        const SHARED = 1 << 1;
    }
}

/// `struct physdev_irq_status_query` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevIrqStatusQuery {
    /// IN: the IRQ.
    pub irq: u32,
    /// OUT: raw [`XenIrqStatFlags`].
    pub flags: u32,
}
abi_layout!(PhysdevIrqStatusQuery, 8, { irq => 0, flags => 4 });

impl PhysdevIrqStatusQuery {
    /// Returns the typed flags (unknown bits are dropped).
    pub const fn status_flags(&self) -> XenIrqStatFlags {
        XenIrqStatFlags::from_bits_truncate(self.flags)
    }

    /// Stores typed flags.
    pub fn set_status_flags(&mut self, flags: XenIrqStatFlags) {
        self.flags = flags.bits();
    }
}

/// `struct physdev_get_free_pirq` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevGetFreePirq {
    /// IN: raw [`MapPirqType`] (GSI or MSI).
    pub type_: i32,
    /// OUT: the allocated PIRQ.
    pub pirq: u32,
}
abi_layout!(PhysdevGetFreePirq, 8, { type_ => 0, pirq => 4 });

impl PhysdevGetFreePirq {
    /// Decodes `type_`.
    pub fn map_type(&self) -> crate::Result<MapPirqType> {
        MapPirqType::try_from(self.type_)
    }
}

/// `struct physdev_pirq_eoi_gmfn`, x86_64 layout (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevPirqEoiGmfn {
    /// IN: GFN of the PIRQ EOI bitmap page.
    pub gmfn: u64,
}
abi_layout!(PhysdevPirqEoiGmfn, 8, { gmfn => 0 });

/// `struct physdev_pirq_eoi_gmfn`, x86_32 layout (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevPirqEoiGmfnCompat {
    /// IN: GFN of the PIRQ EOI bitmap page.
    pub gmfn: u32,
}
abi_layout!(PhysdevPirqEoiGmfnCompat, 4, { gmfn => 0 });

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::ByteValued;

    #[test]
    fn test_physdev_op_all_values_round_trip() {
        for &op in PhysdevOp::ALL {
            assert_eq!(PhysdevOp::try_from(op.raw()).unwrap(), op);
        }
        assert!(PhysdevOp::try_from(18).is_err());
        assert!(PhysdevOp::try_from(22).is_err());
        assert!(PhysdevOp::MapPirq.is_hvm_pirq_op());
        assert!(!PhysdevOp::SetupGsi.is_hvm_pirq_op());
    }

    #[test]
    fn test_map_pirq_type_all_values_round_trip() {
        for &t in MapPirqType::ALL {
            assert_eq!(MapPirqType::try_from(t.raw()).unwrap(), t);
        }
        assert!(MapPirqType::try_from(5).is_err());
        assert!(MapPirqType::try_from(-1).is_err());
    }

    #[test]
    fn test_map_pirq_accessors_split_bus_and_devfn() {
        let m = PhysdevMapPirq {
            type_: 3,
            bus: (2 << 16) | 0x3a,
            devfn: (4 << 3) | 1,
            ..Default::default()
        };
        assert_eq!(m.map_type().unwrap(), MapPirqType::MsiSeg);
        assert_eq!(m.pci_bus(), 0x3a);
        assert_eq!(m.pci_segment(), 2);
        assert_eq!(m.pci_device(), 4);
        assert_eq!(m.pci_function(), 1);
    }

    #[test]
    fn test_map_pirq_compat_table_base_at_offset_28() {
        let c = PhysdevMapPirqCompat {
            domid: 0x7ff0,
            type_: 0,
            index: -1,
            pirq: -1,
            bus: 0,
            devfn: 8,
            entry_nr: 0,
            table_base: 0xfebf_0000,
            ..Default::default()
        };
        assert_eq!(&c.as_slice()[28..36], &0xfebf_0000u64.to_ne_bytes());
        let n = PhysdevMapPirq::from(c);
        assert_eq!(&n.as_slice()[32..40], &0xfebf_0000u64.to_ne_bytes());
        assert_eq!(n.pci_device(), 1);
    }

    #[test]
    fn test_irq_status_query_flags_round_trip() {
        let mut q = PhysdevIrqStatusQuery::default();
        q.set_status_flags(XenIrqStatFlags::NEEDS_EOI | XenIrqStatFlags::SHARED);
        assert_eq!(q.flags, 3);
        q.flags = 0x1 | 0x80;
        assert_eq!(q.status_flags(), XenIrqStatFlags::NEEDS_EOI);
    }

    #[test]
    fn test_get_free_pirq_type_decoded() {
        let g = PhysdevGetFreePirq { type_: 1, pirq: 0 };
        assert_eq!(g.map_type().unwrap(), MapPirqType::Gsi);
    }
}
