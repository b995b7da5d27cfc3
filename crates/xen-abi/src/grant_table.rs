// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `grant_table_op` hypercall (20) definitions and the shared grant-table
//! entries, mirroring `xen/include/public/grant_table.h`.
//!
//! Follows interface version 0x00041300 (Xen 4.23-unstable), `xen-abi.md`
//! §3.9. Operation structures whose layout differs between modes come as
//! `Foo` (x86_64) and `FooCompat` (x86_32); the compat ones hold no `u64` and
//! are plain `#[repr(C)]`.
//!
//! The v2 grant entry is a C union; [`GrantEntryV2`] keeps the 12 bytes after
//! the common header as raw bytes and decodes them through typed accessors.

use bitflags::bitflags;

use crate::xen::DomId;

/// A grant reference (`grant_ref_t`).
pub type GrantRef = u32;
/// A grant mapping handle (`grant_handle_t`).
pub type GrantHandle = u32;
/// A v2 grant status word (`grant_status_t`), holding `GTF_reading` /
/// `GTF_writing` bits.
pub type GrantStatus = u16;

abi_enum! {
    /// `grant_table_op` commands (`GNTTABOP_*`).
    pub enum GnttabOp: u32, "grant_table_op command" {
        /// Map grants ([`GnttabMapGrantRef`]).
        MapGrantRef = 0 => "GNTTABOP_map_grant_ref",
        /// Unmap grants ([`GnttabUnmapGrantRef`]).
        UnmapGrantRef = 1 => "GNTTABOP_unmap_grant_ref",
        /// Set up the grant table ([`GnttabSetupTable`]).
        SetupTable = 2 => "GNTTABOP_setup_table",
        /// Dump the table to the console; `-ENOSYS` for HVM.
        DumpTable = 3 => "GNTTABOP_dump_table",
        /// Transfer a page; PV only.
        Transfer = 4 => "GNTTABOP_transfer",
        /// Copy between grants or frames ([`GnttabCopy`]).
        Copy = 5 => "GNTTABOP_copy",
        /// Query the table size ([`GnttabQuerySize`]).
        QuerySize = 6 => "GNTTABOP_query_size",
        /// Unmap and replace a mapping; `-ENOSYS` for HVM.
        UnmapAndReplace = 7 => "GNTTABOP_unmap_and_replace",
        /// Select grant-table version 1 or 2 ([`GnttabSetVersion`]).
        SetVersion = 8 => "GNTTABOP_set_version",
        /// List v2 status frames ([`GnttabGetStatusFrames`]); `-ENOSYS` for HVM.
        GetStatusFrames = 9 => "GNTTABOP_get_status_frames",
        /// Read the grant-table version ([`GnttabGetVersion`]).
        GetVersion = 10 => "GNTTABOP_get_version",
        /// Swap two grant entries ([`GnttabSwapGrantRef`]).
        SwapGrantRef = 11 => "GNTTABOP_swap_grant_ref",
        /// Cache maintenance (Arm); `-ENOSYS` on x86.
        CacheFlush = 12 => "GNTTABOP_cache_flush",
    }
}

// --- reserved entries and sizes ------------------------------------------------------

/// Number of reserved grant references (`GNTTAB_NR_RESERVED_ENTRIES`).
pub const GNTTAB_NR_RESERVED_ENTRIES: GrantRef = 8;
/// Reserved reference of the console ring page (`GNTTAB_RESERVED_CONSOLE`).
pub const GNTTAB_RESERVED_CONSOLE: GrantRef = 0;
/// Reserved reference of the XenStore ring page (`GNTTAB_RESERVED_XENSTORE`).
pub const GNTTAB_RESERVED_XENSTORE: GrantRef = 1;
/// Xen's and QEMU's default maximum number of grant frames.
pub const GNTTAB_DEFAULT_MAX_FRAMES: u32 = 64;
/// v1 entries per 4 KiB grant frame.
pub const GRANT_ENTRIES_PER_FRAME_V1: u32 = 4096 / 8;
/// v2 entries per 4 KiB grant frame.
pub const GRANT_ENTRIES_PER_FRAME_V2: u32 = 4096 / 16;
/// v2 status words per 4 KiB status frame.
pub const GRANT_STATUS_PER_FRAME: u32 = 4096 / 2;

// --- GTF flags -----------------------------------------------------------------------

/// Mask of the type field in grant-entry flags (`GTF_type_mask`).
pub const GTF_TYPE_MASK: u16 = 3;

abi_enum! {
    /// Grant entry type, bits 1:0 of the flags (`GTF_invalid` ... `GTF_transitive`).
    pub enum GrantType: u16, "grant type" {
        /// The entry grants nothing.
        Invalid = 0 => "GTF_invalid",
        /// The grantee may map or copy the frame.
        PermitAccess = 1 => "GTF_permit_access",
        /// The grantee may transfer a page into the frame.
        AcceptTransfer = 2 => "GTF_accept_transfer",
        /// The grant forwards another domain's grant (v2 only).
        Transitive = 3 => "GTF_transitive",
    }
}

impl GrantType {
    /// Extracts the type from a full flags word (always succeeds: the field
    /// has two bits and all four values are defined).
    pub const fn from_flags(flags: u16) -> Self {
        match flags & GTF_TYPE_MASK {
            0 => GrantType::Invalid,
            1 => GrantType::PermitAccess,
            2 => GrantType::AcceptTransfer,
            _ => GrantType::Transitive,
        }
    }
}

bitflags! {
    /// Sub-flags of a permit-access (or transitive) grant entry (`GTF_*`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
    #[cfg_attr(feature = "serde", serde(transparent))]
    pub struct GrantFlags: u16 {
        /// The grantee may only read (`GTF_readonly`).
        const READONLY = 1 << 2;
        /// Mapped or being copied for reading; set by the hypervisor (`GTF_reading`).
        const READING = 1 << 3;
        /// Mapped or being copied for writing; set by the hypervisor (`GTF_writing`).
        const WRITING = 1 << 4;
        /// Map write-through (`GTF_PWT`).
        const PWT = 1 << 5;
        /// Map uncached (`GTF_PCD`).
        const PCD = 1 << 6;
        /// Use the PAT bit (`GTF_PAT`).
        const PAT = 1 << 7;
        /// Only part of the page is granted (v2 sub-page entry, `GTF_sub_page`).
        const SUB_PAGE = 1 << 8;
    }
}

bitflags! {
    /// Sub-flags of an accept-transfer grant entry (`GTF_transfer_*`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
    #[cfg_attr(feature = "serde", serde(transparent))]
    pub struct GrantTransferFlags: u16 {
        /// A transfer has been committed (`GTF_transfer_committed`).
        const COMMITTED = 1 << 2;
        /// The transfer has completed (`GTF_transfer_completed`).
        const COMPLETED = 1 << 3;
    }
}

/// Builds a grant-entry flags word from a type and permit sub-flags.
pub const fn grant_flags_word(kind: GrantType, flags: GrantFlags) -> u16 {
    kind as u16 | flags.bits()
}

// --- grant entries ------------------------------------------------------------------

/// `struct grant_entry_v1` (8 bytes).
///
/// Guest protocol: write `domid` and `frame`, then (after a barrier) `flags`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantEntryV1 {
    /// Type and sub-flags (`GTF_*`).
    pub flags: u16,
    /// The grantee domain.
    pub domid: DomId,
    /// The granted GFN.
    pub frame: u32,
}
abi_layout!(GrantEntryV1, 8, { flags => 0, domid => 2, frame => 4 });

/// `struct grant_entry_header` (4 bytes): the common start of a v2 entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantEntryHeader {
    /// Type and sub-flags (`GTF_*`).
    pub flags: u16,
    /// The grantee domain.
    pub domid: DomId,
}
abi_layout!(GrantEntryHeader, 4, { flags => 0, domid => 2 });

macro_rules! grant_flag_accessors {
    ($ty:ident) => {
        impl $ty {
            /// Returns the entry type.
            pub const fn grant_type(&self) -> GrantType {
                GrantType::from_flags(self.flags)
            }

            /// Returns the permit-access sub-flags (unknown bits are dropped).
            pub const fn grant_flags(&self) -> GrantFlags {
                GrantFlags::from_bits_truncate(self.flags)
            }

            /// Returns the accept-transfer sub-flags (unknown bits are dropped).
            pub const fn transfer_flags(&self) -> GrantTransferFlags {
                GrantTransferFlags::from_bits_truncate(self.flags)
            }

            /// Stores a type and permit sub-flags.
            pub fn set_grant(&mut self, kind: GrantType, flags: GrantFlags) {
                self.flags = grant_flags_word(kind, flags);
            }
        }
    };
}
grant_flag_accessors!(GrantEntryV1);
grant_flag_accessors!(GrantEntryHeader);

/// `union grant_entry_v2` (16 bytes).
///
/// The 12 bytes after the header are kept raw; [`GrantEntryV2::body`] decodes
/// them according to the header's type and `GTF_sub_page` flag. In C the union
/// is 8-byte aligned; entries are always accessed at a 16-byte stride in a
/// grant frame, so this type's smaller alignment does not matter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantEntryV2 {
    /// The common header (flags and grantee).
    pub hdr: GrantEntryHeader,
    /// Raw union bytes (entry offsets 4..16).
    pub raw: [u8; 12],
}
abi_layout!(GrantEntryV2, 16, { hdr => 0, raw => 4 });

/// The type-specific part of a [`GrantEntryV2`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum GrantEntryV2Body {
    /// `GTF_invalid`: nothing granted.
    Invalid,
    /// `full_page`: the whole frame (also used by accept-transfer entries).
    FullPage {
        /// The granted GFN (entry offset 8).
        frame: u64,
    },
    /// `sub_page`: a byte range of the frame.
    SubPage {
        /// First granted byte (entry offset 4).
        page_off: u16,
        /// Number of granted bytes (entry offset 6).
        length: u16,
        /// The granted GFN (entry offset 8).
        frame: u64,
    },
    /// `transitive`: forwards a grant of another domain.
    Transitive {
        /// Domain owning the forwarded grant (entry offset 4).
        trans_domid: DomId,
        /// The forwarded grant reference (entry offset 8).
        gref: GrantRef,
    },
}

impl GrantEntryV2 {
    // Offsets inside `raw` (entry offset minus 4).
    const OFF_U16_A: usize = 0;
    const OFF_U16_B: usize = 2;
    const OFF_WORD: usize = 4;

    fn raw_u16(&self, at: usize) -> u16 {
        u16::from_ne_bytes([self.raw[at], self.raw[at + 1]])
    }

    fn raw_u32(&self, at: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.raw[at..at + 4]);
        u32::from_ne_bytes(b)
    }

    fn raw_u64(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.raw[at..at + 8]);
        u64::from_ne_bytes(b)
    }

    /// Returns `full_page.frame` / `sub_page.frame` (entry offset 8).
    pub fn frame(&self) -> u64 {
        self.raw_u64(Self::OFF_WORD)
    }

    /// Returns `sub_page.page_off` (entry offset 4).
    pub fn page_off(&self) -> u16 {
        self.raw_u16(Self::OFF_U16_A)
    }

    /// Returns `sub_page.length` (entry offset 6).
    pub fn length(&self) -> u16 {
        self.raw_u16(Self::OFF_U16_B)
    }

    /// Returns `transitive.trans_domid` (entry offset 4).
    pub fn trans_domid(&self) -> DomId {
        self.raw_u16(Self::OFF_U16_A)
    }

    /// Returns `transitive.gref` (entry offset 8).
    pub fn trans_gref(&self) -> GrantRef {
        self.raw_u32(Self::OFF_WORD)
    }

    /// Decodes the union according to the header's type and flags.
    pub fn body(&self) -> GrantEntryV2Body {
        match self.hdr.grant_type() {
            GrantType::Invalid => GrantEntryV2Body::Invalid,
            GrantType::PermitAccess if self.hdr.grant_flags().contains(GrantFlags::SUB_PAGE) => {
                GrantEntryV2Body::SubPage {
                    page_off: self.page_off(),
                    length: self.length(),
                    frame: self.frame(),
                }
            }
            GrantType::PermitAccess | GrantType::AcceptTransfer => GrantEntryV2Body::FullPage {
                frame: self.frame(),
            },
            GrantType::Transitive => GrantEntryV2Body::Transitive {
                trans_domid: self.trans_domid(),
                gref: self.trans_gref(),
            },
        }
    }

    /// Stores the union bytes for `body` (unused bytes are zeroed). The
    /// header is not modified; set it with [`GrantEntryHeader::set_grant`].
    pub fn set_body(&mut self, body: GrantEntryV2Body) {
        self.raw = [0; 12];
        let w = Self::OFF_WORD;
        match body {
            GrantEntryV2Body::Invalid => {}
            GrantEntryV2Body::FullPage { frame } => {
                self.raw[w..w + 8].copy_from_slice(&frame.to_ne_bytes());
            }
            GrantEntryV2Body::SubPage {
                page_off,
                length,
                frame,
            } => {
                self.raw[0..2].copy_from_slice(&page_off.to_ne_bytes());
                self.raw[2..4].copy_from_slice(&length.to_ne_bytes());
                self.raw[w..w + 8].copy_from_slice(&frame.to_ne_bytes());
            }
            GrantEntryV2Body::Transitive { trans_domid, gref } => {
                self.raw[0..2].copy_from_slice(&trans_domid.to_ne_bytes());
                self.raw[w..w + 4].copy_from_slice(&gref.to_ne_bytes());
            }
        }
    }
}

// --- GNTMAP flags and GNTST status -------------------------------------------------------

bitflags! {
    /// `gnttab_map_grant_ref.flags` (`GNTMAP_*`). Bits 31:16 are free for
    /// the guest's own use; see [`GNTMAP_GUEST_AVAIL_MASK`].
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
    #[cfg_attr(feature = "serde", serde(transparent))]
    pub struct GntmapFlags: u32 {
        /// Map for device access (`GNTMAP_device_map`).
        const DEVICE_MAP = 1 << 0;
        /// Map into the host address space (`GNTMAP_host_map`).
        const HOST_MAP = 1 << 1;
        /// Map read-only (`GNTMAP_readonly`).
        const READONLY = 1 << 2;
        /// `host_addr` is an application virtual address (`GNTMAP_application_map`).
        const APPLICATION_MAP = 1 << 3;
        /// `host_addr` is the address of a PTE (`GNTMAP_contains_pte`).
        const CONTAINS_PTE = 1 << 4;
    }
}

/// Bits of the map flags left for guest use (`GNTMAP_guest_avail_mask`).
pub const GNTMAP_GUEST_AVAIL_MASK: u32 = 0xffff_0000;

abi_enum! {
    /// Per-operation grant status codes (`GNTST_*`), written into the
    /// operation structures.
    pub enum Gntst: i16, "grant status" {
        /// Success.
        Okay = 0 => "GNTST_okay",
        /// Unspecified error.
        GeneralError = -1 => "GNTST_general_error",
        /// Unknown or unreachable domain.
        BadDomain = -2 => "GNTST_bad_domain",
        /// Bad grant reference.
        BadGntref = -3 => "GNTST_bad_gntref",
        /// Bad mapping handle.
        BadHandle = -4 => "GNTST_bad_handle",
        /// Bad virtual address.
        BadVirtAddr = -5 => "GNTST_bad_virt_addr",
        /// Bad device address.
        BadDevAddr = -6 => "GNTST_bad_dev_addr",
        /// Out of I/O MMU space.
        NoDeviceSpace = -7 => "GNTST_no_device_space",
        /// The grant does not allow this access.
        PermissionDenied = -8 => "GNTST_permission_denied",
        /// Bad page.
        BadPage = -9 => "GNTST_bad_page",
        /// Copy arguments cross a page boundary or are otherwise invalid.
        BadCopyArg = -10 => "GNTST_bad_copy_arg",
        /// The address does not fit the requested width.
        AddressTooBig = -11 => "GNTST_address_too_big",
        /// Try again.
        Eagain = -12 => "GNTST_eagain",
        /// Out of space.
        NoSpace = -13 => "GNTST_no_space",
    }
}

macro_rules! gnt_status_accessors {
    ($($ty:ident),+) => {$(
        impl $ty {
            /// Decodes the `status` field.
            pub fn gnt_status(&self) -> crate::Result<Gntst> {
                Gntst::try_from(self.status)
            }

            /// Stores a status code.
            pub fn set_gnt_status(&mut self, status: Gntst) {
                self.status = status.raw();
            }
        }
    )+};
}

// --- operation arguments ----------------------------------------------------------------

/// `struct gnttab_map_grant_ref` (32 bytes, both modes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabMapGrantRef {
    /// IN: where to map (meaning depends on `flags`).
    pub host_addr: u64,
    /// IN: raw [`GntmapFlags`] plus guest-available bits.
    pub flags: u32,
    /// IN: the grant reference (`ref` in C).
    pub gref: GrantRef,
    /// IN: the granting domain.
    pub dom: DomId,
    /// OUT: raw [`Gntst`].
    pub status: i16,
    /// OUT: handle for the unmap.
    pub handle: GrantHandle,
    /// OUT: device bus address.
    pub dev_bus_addr: u64,
}
abi_layout!(GnttabMapGrantRef, 32, {
    host_addr => 0, flags => 8, gref => 12, dom => 16, status => 18, handle => 20,
    dev_bus_addr => 24,
});

impl GnttabMapGrantRef {
    /// Returns the typed map flags (guest-available and unknown bits dropped).
    pub const fn map_flags(&self) -> GntmapFlags {
        GntmapFlags::from_bits_truncate(self.flags)
    }

    /// Returns the guest-available bits 31:16 of `flags`.
    pub const fn guest_avail(&self) -> u16 {
        ((self.flags & GNTMAP_GUEST_AVAIL_MASK) >> 16) as u16
    }
}

/// `struct gnttab_unmap_grant_ref` (24 bytes, both modes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabUnmapGrantRef {
    /// IN: address the grant was mapped at.
    pub host_addr: u64,
    /// IN: device bus address of the mapping.
    pub dev_bus_addr: u64,
    /// IN: handle returned by the map.
    pub handle: GrantHandle,
    /// OUT: raw [`Gntst`].
    pub status: i16,
    /// Padding.
    pub pad: u16,
}
abi_layout!(GnttabUnmapGrantRef, 24, {
    host_addr => 0, dev_bus_addr => 8, handle => 16, status => 20, pad => 22,
});

/// `struct gnttab_setup_table`, x86_64 layout (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabSetupTable {
    /// IN: domain.
    pub dom: DomId,
    /// Padding.
    pub pad0: u16,
    /// IN: number of frames wanted.
    pub nr_frames: u32,
    /// OUT: raw [`Gntst`].
    pub status: i16,
    /// Padding.
    pub pad1: [u16; 3],
    /// Guest handle: `xen_pfn_t frame_list[nr_frames]` (OUT).
    pub frame_list: u64,
}
abi_layout!(GnttabSetupTable, 24, {
    dom => 0, pad0 => 2, nr_frames => 4, status => 8, pad1 => 10, frame_list => 16,
});

/// `struct gnttab_setup_table`, x86_32 layout (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabSetupTableCompat {
    /// IN: domain.
    pub dom: DomId,
    /// Padding.
    pub pad0: u16,
    /// IN: number of frames wanted.
    pub nr_frames: u32,
    /// OUT: raw [`Gntst`].
    pub status: i16,
    /// Padding.
    pub pad1: u16,
    /// Guest handle: `xen_pfn_t frame_list[nr_frames]` (4-byte elements, OUT).
    pub frame_list: u32,
}
abi_layout!(GnttabSetupTableCompat, 16, {
    dom => 0, pad0 => 2, nr_frames => 4, status => 8, pad1 => 10, frame_list => 12,
});

/// `struct gnttab_query_size` (16 bytes, both modes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabQuerySize {
    /// IN: domain.
    pub dom: DomId,
    /// Padding.
    pub pad0: u16,
    /// OUT: current number of frames.
    pub nr_frames: u32,
    /// OUT: maximum number of frames.
    pub max_nr_frames: u32,
    /// OUT: raw [`Gntst`].
    pub status: i16,
    /// Padding.
    pub pad1: u16,
}
abi_layout!(GnttabQuerySize, 16, {
    dom => 0, pad0 => 2, nr_frames => 4, max_nr_frames => 8, status => 12, pad1 => 14,
});

/// `struct gnttab_set_version` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabSetVersion {
    /// IN: requested version (1 or 2); OUT: version in force.
    pub version: u32,
}
abi_layout!(GnttabSetVersion, 4, { version => 0 });

/// `struct gnttab_get_version` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabGetVersion {
    /// IN: domain.
    pub dom: DomId,
    /// Padding.
    pub pad: u16,
    /// OUT: version in force.
    pub version: u32,
}
abi_layout!(GnttabGetVersion, 8, { dom => 0, pad => 2, version => 4 });

bitflags! {
    /// `gnttab_copy.flags` (`GNTCOPY_*`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
    #[cfg_attr(feature = "serde", serde(transparent))]
    pub struct GnttabCopyFlags: u16 {
        /// `source.u` is a grant reference, else a GFN (`GNTCOPY_source_gref`).
        const SOURCE_GREF = 1 << 0;
        /// `dest.u` is a grant reference, else a GFN (`GNTCOPY_dest_gref`).
        const DEST_GREF = 1 << 1;
    }
}

/// One side of a `gnttab_copy` (`struct gnttab_copy_ptr`), x86_64 layout
/// (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopyPtr {
    /// Union: grant reference (low 32 bits) or GFN (`xen_pfn_t`).
    pub u: u64,
    /// Domain owning the grant or frame.
    pub domid: DomId,
    /// Byte offset within the page.
    pub offset: u16,
    /// Padding.
    pub pad: u32,
}
abi_layout!(GnttabCopyPtr, 16, { u => 0, domid => 8, offset => 10, pad => 12 });

/// One side of a `gnttab_copy` (`struct gnttab_copy_ptr`), x86_32 layout
/// (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopyPtrCompat {
    /// Union: grant reference or GFN (both 4 bytes here).
    pub u: u32,
    /// Domain owning the grant or frame.
    pub domid: DomId,
    /// Byte offset within the page.
    pub offset: u16,
}
abi_layout!(GnttabCopyPtrCompat, 8, { u => 0, domid => 4, offset => 6 });

impl GnttabCopyPtr {
    /// Reads the union as a grant reference (its first 4 bytes).
    pub fn gref(&self) -> GrantRef {
        let b = self.u.to_ne_bytes();
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Reads the union as a GFN.
    pub const fn gmfn(&self) -> u64 {
        self.u
    }

    /// Stores a grant reference in the union (the other 4 bytes are zeroed).
    pub fn set_gref(&mut self, gref: GrantRef) {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&gref.to_ne_bytes());
        self.u = u64::from_ne_bytes(b);
    }
}

impl GnttabCopyPtrCompat {
    /// Reads the union as a grant reference.
    pub const fn gref(&self) -> GrantRef {
        self.u
    }

    /// Reads the union as a GFN.
    pub const fn gmfn(&self) -> u64 {
        self.u as u64
    }
}

/// `struct gnttab_copy`, x86_64 layout (40 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopy {
    /// IN: source.
    pub source: GnttabCopyPtr,
    /// IN: destination.
    pub dest: GnttabCopyPtr,
    /// IN: number of bytes.
    pub len: u16,
    /// IN: raw [`GnttabCopyFlags`].
    pub flags: u16,
    /// OUT: raw [`Gntst`].
    pub status: i16,
    /// Padding.
    pub pad: u16,
}
abi_layout!(GnttabCopy, 40, {
    source => 0, dest => 16, len => 32, flags => 34, status => 36, pad => 38,
});

/// `struct gnttab_copy`, x86_32 layout (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopyCompat {
    /// IN: source.
    pub source: GnttabCopyPtrCompat,
    /// IN: destination.
    pub dest: GnttabCopyPtrCompat,
    /// IN: number of bytes.
    pub len: u16,
    /// IN: raw [`GnttabCopyFlags`].
    pub flags: u16,
    /// OUT: raw [`Gntst`].
    pub status: i16,
    /// Padding.
    pub pad: u16,
}
abi_layout!(GnttabCopyCompat, 24, {
    source => 0, dest => 8, len => 16, flags => 18, status => 20, pad => 22,
});

impl GnttabCopy {
    /// Returns the typed copy flags (unknown bits are dropped).
    pub const fn copy_flags(&self) -> GnttabCopyFlags {
        GnttabCopyFlags::from_bits_truncate(self.flags)
    }
}

impl GnttabCopyCompat {
    /// Returns the typed copy flags (unknown bits are dropped).
    pub const fn copy_flags(&self) -> GnttabCopyFlags {
        GnttabCopyFlags::from_bits_truncate(self.flags)
    }
}

/// `struct gnttab_swap_grant_ref` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabSwapGrantRef {
    /// IN: first reference.
    pub ref_a: GrantRef,
    /// IN: second reference.
    pub ref_b: GrantRef,
    /// OUT: raw [`Gntst`].
    pub status: i16,
    /// Padding.
    pub pad: u16,
}
abi_layout!(GnttabSwapGrantRef, 12, { ref_a => 0, ref_b => 4, status => 8, pad => 10 });

/// `struct gnttab_get_status_frames`, x86_64 layout (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabGetStatusFrames {
    /// IN: number of frames.
    pub nr_frames: u32,
    /// IN: domain.
    pub dom: DomId,
    /// OUT: raw [`Gntst`].
    pub status: i16,
    /// Guest handle: `uint64_t frame_list[nr_frames]` (OUT).
    pub frame_list: u64,
}
abi_layout!(GnttabGetStatusFrames, 16, {
    nr_frames => 0, dom => 4, status => 6, frame_list => 8,
});

/// `struct gnttab_get_status_frames`, x86_32 layout (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabGetStatusFramesCompat {
    /// IN: number of frames.
    pub nr_frames: u32,
    /// IN: domain.
    pub dom: DomId,
    /// OUT: raw [`Gntst`].
    pub status: i16,
    /// Guest handle (32-bit): `uint64_t frame_list[nr_frames]` (OUT).
    pub frame_list: u32,
}
abi_layout!(GnttabGetStatusFramesCompat, 12, {
    nr_frames => 0, dom => 4, status => 6, frame_list => 8,
});

gnt_status_accessors!(
    GnttabMapGrantRef,
    GnttabUnmapGrantRef,
    GnttabSetupTable,
    GnttabSetupTableCompat,
    GnttabQuerySize,
    GnttabCopy,
    GnttabCopyCompat,
    GnttabSwapGrantRef,
    GnttabGetStatusFrames,
    GnttabGetStatusFramesCompat
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AbiError;
    use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

    #[test]
    fn test_gnttab_op_all_values_round_trip() {
        for &op in GnttabOp::ALL {
            assert_eq!(GnttabOp::try_from(op.raw()).unwrap(), op);
        }
        assert_eq!(GnttabOp::ALL.len(), 13);
        assert!(GnttabOp::try_from(13).is_err());
    }

    #[test]
    fn test_gntst_all_values_round_trip() {
        for &s in Gntst::ALL {
            assert_eq!(Gntst::try_from(s.raw()).unwrap(), s);
        }
        assert_eq!(Gntst::NoSpace.raw(), -13);
        assert_eq!(
            Gntst::try_from(-14),
            Err(AbiError::UnknownSignedValue {
                what: "grant status",
                value: -14
            })
        );
        assert!(Gntst::try_from(1).is_err());
    }

    #[test]
    fn test_grant_type_all_values_round_trip() {
        for &t in GrantType::ALL {
            assert_eq!(GrantType::try_from(t.raw()).unwrap(), t);
            assert_eq!(GrantType::from_flags(t.raw() | 0x1fc), t);
        }
        assert!(GrantType::try_from(4).is_err());
    }

    #[test]
    fn test_grant_entry_v1_flags_accessors_split_type_and_flags() {
        let mut e = GrantEntryV1 {
            domid: 0,
            frame: 0xfeff9,
            ..Default::default()
        };
        e.set_grant(GrantType::PermitAccess, GrantFlags::READONLY);
        assert_eq!(e.flags, 0x5);
        e.flags |= GrantFlags::READING.bits();
        assert_eq!(e.grant_type(), GrantType::PermitAccess);
        assert_eq!(e.grant_flags(), GrantFlags::READONLY | GrantFlags::READING);
        let t = GrantEntryV1 {
            flags: 2 | (1 << 3),
            ..Default::default()
        };
        assert_eq!(t.grant_type(), GrantType::AcceptTransfer);
        assert_eq!(t.transfer_flags(), GrantTransferFlags::COMPLETED);
    }

    #[test]
    fn test_grant_entry_v2_full_page_body_at_offset_8() {
        let mut e = GrantEntryV2::default();
        e.hdr
            .set_grant(GrantType::PermitAccess, GrantFlags::empty());
        e.set_body(GrantEntryV2Body::FullPage {
            frame: 0x1_2345_6789,
        });
        assert_eq!(&e.as_slice()[8..16], &0x1_2345_6789u64.to_ne_bytes());
        assert_eq!(
            e.body(),
            GrantEntryV2Body::FullPage {
                frame: 0x1_2345_6789
            }
        );
    }

    #[test]
    fn test_grant_entry_v2_sub_page_body_round_trips() {
        let mut e = GrantEntryV2::default();
        e.hdr
            .set_grant(GrantType::PermitAccess, GrantFlags::SUB_PAGE);
        let body = GrantEntryV2Body::SubPage {
            page_off: 0x100,
            length: 0x200,
            frame: 0x42,
        };
        e.set_body(body);
        assert_eq!(e.body(), body);
        assert_eq!(&e.as_slice()[4..6], &0x100u16.to_ne_bytes());
        assert_eq!(&e.as_slice()[6..8], &0x200u16.to_ne_bytes());
    }

    #[test]
    fn test_grant_entry_v2_transitive_body_round_trips() {
        let mut e = GrantEntryV2::default();
        e.hdr.set_grant(GrantType::Transitive, GrantFlags::empty());
        let body = GrantEntryV2Body::Transitive {
            trans_domid: 7,
            gref: 99,
        };
        e.set_body(body);
        assert_eq!(e.body(), body);
        assert_eq!(&e.as_slice()[8..12], &99u32.to_ne_bytes());
        e.hdr.flags = 0;
        assert_eq!(e.body(), GrantEntryV2Body::Invalid);
    }

    #[test]
    fn test_gntmap_flags_and_guest_avail_decoded() {
        let m = GnttabMapGrantRef {
            flags: 0xabcd_0000 | 0x2 | 0x4,
            ..Default::default()
        };
        assert_eq!(m.map_flags(), GntmapFlags::HOST_MAP | GntmapFlags::READONLY);
        assert_eq!(m.guest_avail(), 0xabcd);
    }

    #[test]
    fn test_gnt_status_accessors_round_trip() {
        let mut c = GnttabCopy::default();
        c.set_gnt_status(Gntst::BadCopyArg);
        assert_eq!(c.status, -10);
        assert_eq!(c.gnt_status().unwrap(), Gntst::BadCopyArg);
        c.status = -50;
        assert!(c.gnt_status().is_err());
    }

    #[test]
    fn test_gnttab_copy_ptr_gref_uses_first_four_bytes() {
        let mut p = GnttabCopyPtr::default();
        p.set_gref(0x1234);
        assert_eq!(p.gref(), 0x1234);
        assert_eq!(&p.as_slice()[0..4], &0x1234u32.to_ne_bytes());
        assert_eq!(&p.as_slice()[4..8], &[0; 4]);
        let c = GnttabCopyPtrCompat {
            u: 5,
            domid: 0,
            offset: 0,
        };
        assert_eq!((c.gref(), c.gmfn()), (5, 5));
    }

    #[test]
    fn test_gnttab_copy_write_bytes_land_at_offsets() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let c = GnttabCopy {
            source: GnttabCopyPtr {
                u: 3,
                domid: 1,
                offset: 16,
                pad: 0,
            },
            dest: GnttabCopyPtr {
                u: 0x55,
                domid: 0x7ff0,
                offset: 32,
                pad: 0,
            },
            len: 100,
            flags: GnttabCopyFlags::SOURCE_GREF.bits(),
            status: 0,
            pad: 0,
        };
        mem.write_obj(c, GuestAddress(0x80)).unwrap();
        assert_eq!(mem.read_obj::<u16>(GuestAddress(0x88)).unwrap(), 1);
        assert_eq!(mem.read_obj::<u16>(GuestAddress(0x8a)).unwrap(), 16);
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x90)).unwrap(), 0x55);
        assert_eq!(mem.read_obj::<u16>(GuestAddress(0xa0)).unwrap(), 100);
        assert_eq!(mem.read_obj::<u16>(GuestAddress(0xa2)).unwrap(), 1);
        assert_eq!(c.copy_flags(), GnttabCopyFlags::SOURCE_GREF);
    }

    #[test]
    fn test_reserved_refs_and_frame_counts_match_reference() {
        assert_eq!(GNTTAB_NR_RESERVED_ENTRIES, 8);
        assert_eq!(GNTTAB_RESERVED_CONSOLE, 0);
        assert_eq!(GNTTAB_RESERVED_XENSTORE, 1);
        assert_eq!(GRANT_ENTRIES_PER_FRAME_V1, 512);
        assert_eq!(GRANT_ENTRIES_PER_FRAME_V2, 256);
        assert_eq!(GRANT_STATUS_PER_FRAME, 2048);
    }
}
