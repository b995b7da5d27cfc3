// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `memory_op` hypercall (12) definitions, mirroring
//! `xen/include/public/memory.h` (and the x86 `e820entry` of
//! `arch-x86/hvm/e820.h`).
//!
//! Follows interface version 0x00041300 (Xen 4.23-unstable), `xen-abi.md`
//! §3.6. The `cmd` argument packs the sub-operation in bits 5:0 and a
//! continuation start extent above them; see [`split_memory_op_cmd`].
//!
//! Every compat (x86_32) structure here holds only 2- and 4-byte fields, so all
//! of them are plain `#[repr(C)]`. The e820 record is the one exception to
//! natural alignment: Xen declares it packed (20 bytes, no tail padding), so
//! [`E820Entry`] is `#[repr(C, packed)]` to match arrays of it in guest memory.

use bitflags::bitflags;

use crate::xen::DomId;

abi_enum! {
    /// `memory_op` sub-operations (`XENMEM_*`), i.e. bits 5:0 of `cmd`.
    pub enum XenMemOp: u32, "memory_op command" {
        /// Populate extents into the domain (returns extents done).
        IncreaseReservation = 0 => "XENMEM_increase_reservation",
        /// Release the listed GFNs (balloon out).
        DecreaseReservation = 1 => "XENMEM_decrease_reservation",
        /// Returns the highest machine frame number.
        MaximumRamPage = 2 => "XENMEM_maximum_ram_page",
        /// Returns the domain's current page count ([`XenMemoryDomain`]).
        CurrentReservation = 3 => "XENMEM_current_reservation",
        /// Returns the domain's maximum page count ([`XenMemoryDomain`]).
        MaximumReservation = 4 => "XENMEM_maximum_reservation",
        /// PV machine-to-phys frame list.
        MachphysMfnList = 5 => "XENMEM_machphys_mfn_list",
        /// Populate the listed GFNs (balloon in).
        PopulatePhysmap = 6 => "XENMEM_populate_physmap",
        /// Map a special frame at a GFN ([`XenAddToPhysmap`]).
        AddToPhysmap = 7 => "XENMEM_add_to_physmap",
        /// Read the domain's pseudo-physical memory map ([`XenMemoryMap`]).
        MemoryMap = 9 => "XENMEM_memory_map",
        /// Read the machine memory map (privileged).
        MachineMemoryMap = 10 => "XENMEM_machine_memory_map",
        /// Exchange extents (PV).
        Exchange = 11 => "XENMEM_exchange",
        /// PV machphys mapping; `-ENOSYS` for HVM.
        MachphysMapping = 12 => "XENMEM_machphys_mapping",
        /// Set a domain's memory map (toolstack).
        SetMemoryMap = 13 => "XENMEM_set_memory_map",
        /// Returns the highest GFN ([`XenMemoryDomain`]).
        MaximumGpfn = 14 => "XENMEM_maximum_gpfn",
        /// Unmap a GFN ([`XenRemoveFromPhysmap`]).
        RemoveFromPhysmap = 15 => "XENMEM_remove_from_physmap",
        /// Set the populate-on-demand target (toolstack).
        SetPodTarget = 16 => "XENMEM_set_pod_target",
        /// Get the populate-on-demand target (toolstack).
        GetPodTarget = 17 => "XENMEM_get_pod_target",
        /// Memory-sharing statistics (tools).
        GetSharingFreedPages = 18 => "XENMEM_get_sharing_freed_pages",
        /// Memory-sharing statistics (tools).
        GetSharingSharedPages = 19 => "XENMEM_get_sharing_shared_pages",
        /// Paging operations (tools).
        PagingOp = 20 => "XENMEM_paging_op",
        /// Memory-access operations (tools).
        AccessOp = 21 => "XENMEM_access_op",
        /// Memory-sharing operations (tools).
        SharingOp = 22 => "XENMEM_sharing_op",
        /// Batched add-to-physmap ([`XenAddToPhysmapBatch`]).
        AddToPhysmapBatch = 23 => "XENMEM_add_to_physmap_batch",
        /// Claim pages (privileged).
        ClaimPages = 24 => "XENMEM_claim_pages",
        /// PV compat machphys frame list.
        MachphysCompatMfnList = 25 => "XENMEM_machphys_compat_mfn_list",
        /// Read the virtual NUMA topology.
        GetVnumainfo = 26 => "XENMEM_get_vnumainfo",
        /// Reserved device memory map (tools).
        ReservedDeviceMemoryMap = 27 => "XENMEM_reserved_device_memory_map",
        /// Acquire a resource for mapping (device model).
        AcquireResource = 28 => "XENMEM_acquire_resource",
    }
}

/// Bit position of the continuation start extent in the `memory_op` command.
pub const MEMOP_EXTENT_SHIFT: u32 = 6;
/// Mask of the sub-operation bits in the `memory_op` command.
pub const MEMOP_CMD_MASK: u64 = (1 << MEMOP_EXTENT_SHIFT) - 1;

/// Splits a `memory_op` command into `(sub-operation, start extent)`.
///
/// The sub-operation is returned raw; decode it with
/// [`XenMemOp::try_from`] (unknown ones must get `-ENOSYS`).
pub const fn split_memory_op_cmd(cmd: u64) -> (u32, u64) {
    ((cmd & MEMOP_CMD_MASK) as u32, cmd >> MEMOP_EXTENT_SHIFT)
}

/// Builds a `memory_op` command from a sub-operation and a start extent
/// (the inverse of [`split_memory_op_cmd`]).
pub const fn memory_op_cmd(op: XenMemOp, start_extent: u64) -> u64 {
    (start_extent << MEMOP_EXTENT_SHIFT) | op as u64
}

// --- add_to_physmap ----------------------------------------------------------------

abi_enum! {
    /// `xen_add_to_physmap.space` values (`XENMAPSPACE_*`).
    pub enum XenMapSpace: u32, "map space" {
        /// The shared-info page (`idx` must be 0).
        SharedInfo = 0 => "XENMAPSPACE_shared_info",
        /// A grant-table frame (`idx` = frame, bit 31 selects status frames).
        GrantTable = 1 => "XENMAPSPACE_grant_table",
        /// Move a RAM page (`idx` = source GFN).
        Gmfn = 2 => "XENMAPSPACE_gmfn",
        /// Move a range of RAM pages (uses `size`; not for batches).
        GmfnRange = 3 => "XENMAPSPACE_gmfn_range",
        /// A foreign domain's page (batch only, privileged).
        GmfnForeign = 4 => "XENMAPSPACE_gmfn_foreign",
        /// Device MMIO (Arm only).
        DevMmio = 5 => "XENMAPSPACE_dev_mmio",
    }
}

/// Bit of a grant-table `idx` that selects a v2 status frame instead of a
/// grant frame (`XENMAPIDX_grant_table_status`).
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

/// A decoded `idx` of a [`XenMapSpace::GrantTable`] mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GrantFrameIdx {
    /// Frame number within the grant table (or status table).
    pub frame: u64,
    /// True for a v2 status frame, false for a grant-entry frame.
    pub status: bool,
}

impl GrantFrameIdx {
    /// Decodes a raw `idx`.
    pub const fn from_idx(idx: u64) -> Self {
        GrantFrameIdx {
            frame: idx & !XENMAPIDX_GRANT_TABLE_STATUS,
            status: idx & XENMAPIDX_GRANT_TABLE_STATUS != 0,
        }
    }

    /// Encodes the raw `idx`.
    pub const fn to_idx(self) -> u64 {
        if self.status {
            self.frame | XENMAPIDX_GRANT_TABLE_STATUS
        } else {
            self.frame
        }
    }
}

/// `struct xen_add_to_physmap`, x86_64 layout (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenAddToPhysmap {
    /// Target domain (must be `DOMID_SELF` or the caller).
    pub domid: DomId,
    /// Number of pages, for [`XenMapSpace::GmfnRange`] only.
    pub size: u16,
    /// Raw [`XenMapSpace`].
    pub space: u32,
    /// Index within `space`.
    pub idx: u64,
    /// GFN where the frame is to appear.
    pub gpfn: u64,
}
abi_layout!(XenAddToPhysmap, 24, {
    domid => 0, size => 2, space => 4, idx => 8, gpfn => 16,
});

/// `struct xen_add_to_physmap`, x86_32 layout (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenAddToPhysmapCompat {
    /// Target domain (must be `DOMID_SELF` or the caller).
    pub domid: DomId,
    /// Number of pages, for [`XenMapSpace::GmfnRange`] only.
    pub size: u16,
    /// Raw [`XenMapSpace`].
    pub space: u32,
    /// Index within `space`.
    pub idx: u32,
    /// GFN where the frame is to appear.
    pub gpfn: u32,
}
abi_layout!(XenAddToPhysmapCompat, 16, {
    domid => 0, size => 2, space => 4, idx => 8, gpfn => 12,
});

impl XenAddToPhysmap {
    /// Decodes `space`.
    pub fn map_space(&self) -> crate::Result<XenMapSpace> {
        XenMapSpace::try_from(self.space)
    }

    /// Decodes `idx` as a grant-table frame index.
    pub const fn grant_frame(&self) -> GrantFrameIdx {
        GrantFrameIdx::from_idx(self.idx)
    }
}

impl XenAddToPhysmapCompat {
    /// Decodes `space`.
    pub fn map_space(&self) -> crate::Result<XenMapSpace> {
        XenMapSpace::try_from(self.space)
    }

    /// Decodes `idx` as a grant-table frame index.
    pub const fn grant_frame(&self) -> GrantFrameIdx {
        GrantFrameIdx::from_idx(self.idx as u64)
    }
}

impl From<XenAddToPhysmapCompat> for XenAddToPhysmap {
    fn from(c: XenAddToPhysmapCompat) -> Self {
        XenAddToPhysmap {
            domid: c.domid,
            size: c.size,
            space: c.space,
            idx: u64::from(c.idx),
            gpfn: u64::from(c.gpfn),
        }
    }
}

/// `struct xen_add_to_physmap_batch`, x86_64 layout (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenAddToPhysmapBatch {
    /// Target domain.
    pub domid: DomId,
    /// Raw [`XenMapSpace`] (16 bits here).
    pub space: u16,
    /// Number of entries in the three arrays.
    pub size: u16,
    /// Source domain for [`XenMapSpace::GmfnForeign`] (union `u`).
    pub foreign_domid: DomId,
    /// Guest handle: `xen_ulong_t idxs[size]`.
    pub idxs: u64,
    /// Guest handle: `xen_pfn_t gpfns[size]`.
    pub gpfns: u64,
    /// Guest handle: `int errs[size]` (OUT, per entry).
    pub errs: u64,
}
abi_layout!(XenAddToPhysmapBatch, 32, {
    domid => 0, space => 2, size => 4, foreign_domid => 6, idxs => 8, gpfns => 16, errs => 24,
});

/// `struct xen_add_to_physmap_batch`, x86_32 layout (20 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenAddToPhysmapBatchCompat {
    /// Target domain.
    pub domid: DomId,
    /// Raw [`XenMapSpace`] (16 bits here).
    pub space: u16,
    /// Number of entries in the three arrays.
    pub size: u16,
    /// Source domain for [`XenMapSpace::GmfnForeign`] (union `u`).
    pub foreign_domid: DomId,
    /// Guest handle: `xen_ulong_t idxs[size]` (4-byte elements).
    pub idxs: u32,
    /// Guest handle: `xen_pfn_t gpfns[size]` (4-byte elements).
    pub gpfns: u32,
    /// Guest handle: `int errs[size]` (OUT, per entry).
    pub errs: u32,
}
abi_layout!(XenAddToPhysmapBatchCompat, 20, {
    domid => 0, space => 2, size => 4, foreign_domid => 6, idxs => 8, gpfns => 12, errs => 16,
});

impl XenAddToPhysmapBatch {
    /// Decodes `space`.
    pub fn map_space(&self) -> crate::Result<XenMapSpace> {
        XenMapSpace::try_from(u32::from(self.space))
    }
}

impl XenAddToPhysmapBatchCompat {
    /// Decodes `space`.
    pub fn map_space(&self) -> crate::Result<XenMapSpace> {
        XenMapSpace::try_from(u32::from(self.space))
    }
}

// --- memory reservations ---------------------------------------------------------

bitflags! {
    /// Single-bit flags of `xen_memory_reservation.mem_flags` (`XENMEMF_*`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
    #[cfg_attr(feature = "serde", serde(transparent))]
    pub struct XenMemf: u32 {
        /// Populate-on-demand allocation (`XENMEMF_populate_on_demand`).
        const POPULATE_ON_DEMAND = 1 << 16;
        /// Fail rather than fall back to another node (`XENMEMF_exact_node_request`).
        const EXACT_NODE_REQUEST = 1 << 17;
        /// The node field is a virtual node (`XENMEMF_vnode`).
        const VNODE = 1 << 18;
    }
}

/// The whole `mem_flags` word of a memory reservation: address-width limit in
/// bits 7:0, NUMA node + 1 in bits 15:8, and [`XenMemf`] bits above.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct MemFlags(pub u32);

impl MemFlags {
    /// Builds a flags word. `address_bits` 0 means "no restriction"; `node`
    /// `None` means "any node" (nodes ≥ 255 cannot be encoded).
    pub fn new(address_bits: u8, node: Option<u8>, flags: XenMemf) -> crate::Result<Self> {
        let node_field = match node {
            None => 0,
            Some(n) if n < u8::MAX => u32::from(n) + 1,
            Some(n) => {
                return Err(crate::AbiError::OutOfRange {
                    what: "NUMA node",
                    value: u64::from(n),
                    max: u64::from(u8::MAX - 1),
                });
            }
        };
        Ok(MemFlags(
            u32::from(address_bits) | (node_field << 8) | flags.bits(),
        ))
    }

    /// Maximum address width in bits the extents may use; 0 = unrestricted.
    pub const fn address_bits(self) -> u8 {
        self.0 as u8
    }

    /// Requested NUMA node, if any (bits 15:8 hold node + 1).
    pub const fn node(self) -> Option<u8> {
        match (self.0 >> 8) as u8 {
            0 => None,
            n => Some(n - 1),
        }
    }

    /// The single-bit flags (unknown bits are dropped).
    pub const fn flags(self) -> XenMemf {
        XenMemf::from_bits_truncate(self.0)
    }

    /// Bits above 18 that no flag defines.
    pub const fn unknown_bits(self) -> u32 {
        self.0 & !(0xffff | XenMemf::all().bits())
    }
}

/// `struct xen_memory_reservation`, x86_64 layout (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryReservation {
    /// Guest handle: `xen_pfn_t extent_start[nr_extents]`.
    pub extent_start: u64,
    /// Number of extents.
    pub nr_extents: u64,
    /// Size of each extent as a power-of-two number of pages.
    pub extent_order: u32,
    /// Raw [`MemFlags`].
    pub mem_flags: u32,
    /// Target domain.
    pub domid: DomId,
    /// Padding.
    pub pad: [u16; 3],
}
abi_layout!(XenMemoryReservation, 32, {
    extent_start => 0, nr_extents => 8, extent_order => 16, mem_flags => 20,
    domid => 24, pad => 26,
});

/// `struct xen_memory_reservation`, x86_32 layout (20 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryReservationCompat {
    /// Guest handle: `xen_pfn_t extent_start[nr_extents]` (4-byte elements).
    pub extent_start: u32,
    /// Number of extents.
    pub nr_extents: u32,
    /// Size of each extent as a power-of-two number of pages.
    pub extent_order: u32,
    /// Raw [`MemFlags`].
    pub mem_flags: u32,
    /// Target domain.
    pub domid: DomId,
    /// Padding.
    pub pad: u16,
}
abi_layout!(XenMemoryReservationCompat, 20, {
    extent_start => 0, nr_extents => 4, extent_order => 8, mem_flags => 12,
    domid => 16, pad => 18,
});

impl XenMemoryReservation {
    /// Returns the typed `mem_flags`.
    pub const fn flags(&self) -> MemFlags {
        MemFlags(self.mem_flags)
    }
}

impl XenMemoryReservationCompat {
    /// Returns the typed `mem_flags`.
    pub const fn flags(&self) -> MemFlags {
        MemFlags(self.mem_flags)
    }
}

impl From<XenMemoryReservationCompat> for XenMemoryReservation {
    fn from(c: XenMemoryReservationCompat) -> Self {
        XenMemoryReservation {
            extent_start: u64::from(c.extent_start),
            nr_extents: u64::from(c.nr_extents),
            extent_order: c.extent_order,
            mem_flags: c.mem_flags,
            domid: c.domid,
            pad: [0; 3],
        }
    }
}

// --- memory map --------------------------------------------------------------------

/// `struct xen_memory_map`, x86_64 layout (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryMap {
    /// IN: capacity of `buffer` in entries; OUT: entries written.
    pub nr_entries: u32,
    /// Padding.
    pub pad: u32,
    /// Guest handle of an array of [`E820Entry`].
    pub buffer: u64,
}
abi_layout!(XenMemoryMap, 16, { nr_entries => 0, pad => 4, buffer => 8 });

/// `struct xen_memory_map`, x86_32 layout (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryMapCompat {
    /// IN: capacity of `buffer` in entries; OUT: entries written.
    pub nr_entries: u32,
    /// Guest handle of an array of [`E820Entry`].
    pub buffer: u32,
}
abi_layout!(XenMemoryMapCompat, 8, { nr_entries => 0, buffer => 4 });

abi_enum! {
    /// e820 region types.
    pub enum E820Type: u32, "e820 type" {
        /// Usable RAM.
        Ram = 1 => "E820_RAM",
        /// Reserved.
        Reserved = 2 => "E820_RESERVED",
        /// ACPI reclaimable.
        Acpi = 3 => "E820_ACPI",
        /// ACPI NVS.
        Nvs = 4 => "E820_NVS",
        /// Unusable.
        Unusable = 5 => "E820_UNUSABLE",
    }
}

/// One e820 record (`struct e820entry`, 20 bytes, both modes).
///
/// Xen declares this record packed, so arrays of it have a 20-byte stride and
/// `size` sits at offset 8 with no tail padding. `#[repr(C, packed)]` gives the
/// same layout (alignment 1); read fields by value.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// Raw [`E820Type`].
    pub type_: u32,
}
abi_layout!(E820Entry, 20, { addr => 0, size => 8, type_ => 16 });

impl E820Entry {
    /// Builds an entry.
    pub const fn new(addr: u64, size: u64, kind: E820Type) -> Self {
        E820Entry {
            addr,
            size,
            type_: kind as u32,
        }
    }

    /// Decodes the region type.
    pub fn kind(&self) -> crate::Result<E820Type> {
        E820Type::try_from(self.type_)
    }
}

// --- remove_from_physmap, memory domain -----------------------------------------

/// `struct xen_remove_from_physmap`, x86_64 layout (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenRemoveFromPhysmap {
    /// Target domain.
    pub domid: DomId,
    /// Padding.
    pub pad: [u16; 3],
    /// GFN to unmap.
    pub gpfn: u64,
}
abi_layout!(XenRemoveFromPhysmap, 16, { domid => 0, pad => 2, gpfn => 8 });

/// `struct xen_remove_from_physmap`, x86_32 layout (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenRemoveFromPhysmapCompat {
    /// Target domain.
    pub domid: DomId,
    /// Padding.
    pub pad: u16,
    /// GFN to unmap.
    pub gpfn: u32,
}
abi_layout!(XenRemoveFromPhysmapCompat, 8, { domid => 0, pad => 2, gpfn => 4 });

/// `struct xen_memory_domain` (2 bytes, both modes): the argument of
/// `current_reservation`, `maximum_reservation` and `maximum_gpfn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryDomain {
    /// Target domain.
    pub domid: DomId,
}
abi_layout!(XenMemoryDomain, 2, { domid => 0 });

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AbiError;
    use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

    #[test]
    fn test_xen_mem_op_all_values_round_trip() {
        for &op in XenMemOp::ALL {
            assert_eq!(XenMemOp::try_from(op.raw()).unwrap(), op);
        }
        assert!(XenMemOp::try_from(8).is_err());
        assert!(XenMemOp::try_from(29).is_err());
    }

    #[test]
    fn test_memory_op_cmd_split_returns_subop_and_extent() {
        assert_eq!(split_memory_op_cmd(7), (7, 0));
        assert_eq!(split_memory_op_cmd((5 << 6) | 1), (1, 5));
        let cmd = memory_op_cmd(XenMemOp::PopulatePhysmap, 1234);
        assert_eq!(split_memory_op_cmd(cmd), (6, 1234));
    }

    #[test]
    fn test_map_space_all_values_round_trip() {
        for &s in XenMapSpace::ALL {
            assert_eq!(XenMapSpace::try_from(s.raw()).unwrap(), s);
        }
        assert!(XenMapSpace::try_from(6).is_err());
    }

    #[test]
    fn test_grant_frame_idx_status_bit_decoded() {
        let a = XenAddToPhysmap {
            domid: crate::xen::DOMID_SELF,
            space: 1,
            idx: 0x8000_0003,
            gpfn: 0xf0000,
            ..Default::default()
        };
        assert_eq!(a.map_space().unwrap(), XenMapSpace::GrantTable);
        assert_eq!(
            a.grant_frame(),
            GrantFrameIdx {
                frame: 3,
                status: true
            }
        );
        assert_eq!(a.grant_frame().to_idx(), 0x8000_0003);
        assert_eq!(GrantFrameIdx::from_idx(2).to_idx(), 2);
    }

    #[test]
    fn test_add_to_physmap_compat_converts_to_native() {
        let c = XenAddToPhysmapCompat {
            domid: 0x7ff0,
            size: 0,
            space: 0,
            idx: 0,
            gpfn: 0x1234,
        };
        let n = XenAddToPhysmap::from(c);
        assert_eq!(n.gpfn, 0x1234);
        assert_eq!(n.map_space().unwrap(), XenMapSpace::SharedInfo);
        assert_eq!(&c.as_slice()[12..16], &0x1234u32.to_ne_bytes());
    }

    #[test]
    fn test_add_to_physmap_write_bytes_land_at_offsets() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x2000)]).unwrap();
        let a = XenAddToPhysmap {
            domid: 0x7ff0,
            size: 9,
            space: 1,
            idx: 0x11,
            gpfn: 0x22,
        };
        mem.write_obj(a, GuestAddress(0x40)).unwrap();
        assert_eq!(mem.read_obj::<u16>(GuestAddress(0x40)).unwrap(), 0x7ff0);
        assert_eq!(mem.read_obj::<u16>(GuestAddress(0x42)).unwrap(), 9);
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x44)).unwrap(), 1);
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x48)).unwrap(), 0x11);
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x50)).unwrap(), 0x22);
    }

    #[test]
    fn test_batch_map_space_decoded_from_u16() {
        let b = XenAddToPhysmapBatch {
            space: 4,
            ..Default::default()
        };
        assert_eq!(b.map_space().unwrap(), XenMapSpace::GmfnForeign);
        let c = XenAddToPhysmapBatchCompat {
            space: 9,
            ..Default::default()
        };
        assert!(c.map_space().is_err());
    }

    #[test]
    fn test_mem_flags_accessors_decode_fields() {
        let f = MemFlags(32 | (3 << 8) | (1 << 17));
        assert_eq!(f.address_bits(), 32);
        assert_eq!(f.node(), Some(2));
        assert_eq!(f.flags(), XenMemf::EXACT_NODE_REQUEST);
        assert_eq!(MemFlags(0).node(), None);
        assert_eq!(MemFlags(1 << 20).unknown_bits(), 1 << 20);
    }

    #[test]
    fn test_mem_flags_new_round_trips() {
        let f = MemFlags::new(40, Some(0), XenMemf::POPULATE_ON_DEMAND | XenMemf::VNODE).unwrap();
        assert_eq!(f.0, 40 | (1 << 8) | (1 << 16) | (1 << 18));
        assert_eq!(f.node(), Some(0));
        assert_eq!(f.address_bits(), 40);
        assert_eq!(MemFlags::new(0, None, XenMemf::empty()).unwrap().0, 0);
    }

    #[test]
    fn test_mem_flags_new_node_255_rejected() {
        assert_eq!(
            MemFlags::new(0, Some(255), XenMemf::empty()),
            Err(AbiError::OutOfRange {
                what: "NUMA node",
                value: 255,
                max: 254
            })
        );
    }

    #[test]
    fn test_memory_reservation_compat_converts_to_native() {
        let c = XenMemoryReservationCompat {
            extent_start: 0x1000,
            nr_extents: 4,
            extent_order: 9,
            mem_flags: 32,
            domid: 0x7ff0,
            pad: 0,
        };
        let n = XenMemoryReservation::from(c);
        assert_eq!(n.nr_extents, 4);
        assert_eq!(n.flags().address_bits(), 32);
        assert_eq!(c.flags(), n.flags());
    }

    #[test]
    fn test_e820_entry_array_has_20_byte_stride() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x2000)]).unwrap();
        let a = E820Entry::new(0, 0x9fc00, E820Type::Ram);
        let b = E820Entry::new(0x10_0000, 0x100_0000, E820Type::Reserved);
        mem.write_obj(a, GuestAddress(0x100)).unwrap();
        mem.write_obj(b, GuestAddress(0x100 + 20)).unwrap();
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x108)).unwrap(), 0x9fc00);
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x110)).unwrap(), 1);
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x114)).unwrap(), 0x10_0000);
        let back: E820Entry = mem.read_obj(GuestAddress(0x114)).unwrap();
        assert_eq!(back.kind().unwrap(), E820Type::Reserved);
        assert_eq!(core::mem::align_of::<E820Entry>(), 1);
    }

    #[test]
    fn test_e820_type_all_values_round_trip() {
        for &t in E820Type::ALL {
            assert_eq!(E820Type::try_from(t.raw()).unwrap(), t);
        }
        assert!(E820Type::try_from(0).is_err());
    }
}
