// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Xen grant tables (v1 and v2) for a KVM-based VMM.
//!
//! A [`GrantTable`] is one domain's grant table, kept where a Xen HVM guest
//! expects it: in the 4 KiB guest frames it placed the table's frames at
//! with `XENMEM_add_to_physmap` (`XENMAPSPACE_grant_table`, and
//! `XENMAPIDX_grant_table_status` for v2 status frames). Which GFN holds
//! which frame is the p2m's business; the table asks through [`FrameMap`].
//! An entry in a frame the guest has not placed reads as an invalid
//! (empty) entry.
//!
//! It serves two callers:
//!
//! * the `grant_table_op` hypercall family (`xen-abi.md` §3.9), which
//!   decodes each `GNTTABOP_*` and calls [`GrantTable::set_version`],
//!   [`GrantTable::get_version`], [`GrantTable::query_size`],
//!   [`GrantTable::setup_table`], [`GrantTable::copy`],
//!   [`GrantTable::guest_map`], [`GrantTable::guest_unmap`] and
//!   [`GrantTable::swap`], each answering as Xen's
//!   `xen/common/grant_table.c` does for an HVM domU;
//! * the VMM's own back ends (the "domain 0" end of PV devices), which map
//!   a list of grant references at once ([`GrantTable::map`], all or
//!   nothing), read and write through the [`Mapping`], unmap it, and copy
//!   to or from single grants ([`GrantTable::copy_from_grant`],
//!   [`GrantTable::copy_to_grant`]).
//!
//! The flags the guest shares with us (`GTF_reading`, `GTF_writing`) are
//! set with a bounded compare-exchange on the guest's flags word and
//! cleared with an atomic AND, as Xen does, through vm-memory's
//! `get_atomic_ref`. Nothing a guest writes can make this crate panic or
//! loop without bound.
//!
//! The p2m fills the table's frames: when a frame is placed at a GFN for
//! the first time, its page must hold what [`FrameInit::placed`] writes
//! (zeros, and the reserved entries for the console and XenStore in frame
//! 0); when it leaves the guest's physical address space, its contents go
//! to [`FrameInit::removed`] and come back when it is placed again.
//! [`GrantTable::frame_init`] is that hook.
//!
//! ```
//! use std::sync::Arc;
//! use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
//! use xen_abi::grant_table::{GrantEntryV1, GrantFlags, GrantType};
//! use xen_gnttab::{Config, FrameMap, GrantTable};
//!
//! /// The p2m: the guest placed grant frame 0 at GFN 0x80.
//! struct P2m;
//! impl FrameMap for P2m {
//!     fn shared_gfn(&self, frame: u32) -> Option<u64> { (frame == 0).then_some(0x80) }
//!     fn status_gfn(&self, _frame: u32) -> Option<u64> { None }
//! }
//!
//! let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
//! let table = GrantTable::new(Config::new(1), Arc::new(P2m)).unwrap();
//! // The guest grants GFN 0x90 to the back ends (domain 0) as ref 8.
//! let mut e = GrantEntryV1 { domid: 0, frame: 0x90, ..Default::default() };
//! e.set_grant(GrantType::PermitAccess, GrantFlags::empty());
//! mem.write_obj(e, GuestAddress(0x80 * 4096 + 8 * 8)).unwrap();
//!
//! // A back end maps it (GTF_reading|GTF_writing are set), writes, unmaps.
//! let mapping = table.map(&mem, 0, &[8], true).unwrap();
//! mapping.write(&mem, 0, b"x").unwrap();
//! table.unmap(&mem, mapping).unwrap();
//! assert_eq!(mem.read_obj::<u8>(GuestAddress(0x90 * 4096)).unwrap(), b'x');
//! assert_eq!(mem.read_obj::<GrantEntryV1>(GuestAddress(0x80 * 4096 + 64)).unwrap(), e);
//! ```

#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("xen-gnttab supports x86-64 hosts and guests only");

mod backend;
mod entry;
mod error;
mod frames;
mod guest;
#[cfg(test)]
mod model_tests;
mod state;
mod table;
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;

pub use backend::{Mapping, Segment};
pub use error::{Error, Result};
pub use guest::{CopyOp, CopySide, CopyTarget};
pub use state::{SavedFrame, State};
pub use table::GrantTable;

use xen_abi::grant_table::GNTTAB_DEFAULT_MAX_FRAMES;
use xen_abi::xen::{DomId, domid_is_regular};

/// Bytes in a grant-table frame (one 4 KiB guest page).
pub const FRAME_SIZE: usize = 4096;

/// The domain id under which VMM-side back ends appear to the guest (QEMU's
/// `DOMID_QEMU`; Linux front ends grant to the back-end domain XenStore
/// names, 0 for emulated devices).
pub const DOMID_BACKEND: DomId = 0;

/// Frames the table has before the guest asks for more (Xen's
/// `INITIAL_NR_GRANT_FRAMES` on x86).
pub const INITIAL_NR_FRAMES: u32 = 1;

/// Largest `max_frames` a [`Config`] may ask for: 2 M v1 entries, far
/// above Xen's default of 64 (which `xl` rarely raises past 256).
pub const MAX_FRAMES_LIMIT: u32 = 4096;

/// Most references one [`GrantTable::map`] takes (QEMU's limit).
pub const MAX_MAP_REFS: usize = 4096;

/// How often the compare-exchange that sets `GTF_reading`/`GTF_writing`
/// in a v1 entry is retried against a guest that keeps changing the word
/// (Xen's `_set_status_v1`: five attempts, then the guest is deemed
/// misbehaving).
pub const PIN_ATTEMPTS: u32 = 5;

/// The GFN `GNTTABOP_setup_table` reports for a frame the guest has not
/// placed (Xen's `INVALID_M2P_ENTRY`, `~0UL`; a 32-bit guest sees its low
/// half).
pub const INVALID_GFN: u64 = u64::MAX;

/// A frame of the grant table: a grant-entry ("shared") frame, or a v2
/// status frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum GrantFrame {
    /// Grant-entry frame `n` (`XENMAPSPACE_grant_table`, idx `n`).
    Shared(u32),
    /// Status frame `n` (idx `n | XENMAPIDX_grant_table_status`), v2 only.
    Status(u32),
}

/// Where the guest placed the table's frames: the p2m answers.
///
/// `xen-hypercall`'s `MemoryOp` implements it. The table calls it with its
/// own lock held; an implementation must not call back into the table.
pub trait FrameMap: Send + Sync {
    /// GFN of grant-entry frame `frame`, if the guest placed it.
    fn shared_gfn(&self, frame: u32) -> Option<u64>;
    /// GFN of v2 status frame `frame`, if the guest placed it.
    fn status_gfn(&self, frame: u32) -> Option<u64>;
    /// The table switched to version 2 (`true`) or back to 1. Status frames
    /// only exist at version 2; going back releases them (their GFNs become
    /// holes), as Xen's `gnttab_unpopulate_status_frames` does.
    fn set_v2(&self, _v2: bool) {}
}

/// How a frame's page gets its contents: the hook the p2m calls when it
/// places or removes a grant-table frame ([`GrantTable::frame_init`]).
///
/// Both run with the p2m's lock held; the table's implementation only
/// takes a lock of its own that nothing else is taken under.
pub trait FrameInit: Send + Sync {
    /// `frame` is being placed at a GFN and was nowhere before: fill `page`
    /// (one [`FRAME_SIZE`] page, zeroed by the caller) with its contents.
    /// A frame moved from one GFN to another is not placed again: the p2m
    /// copies its page.
    fn placed(&self, frame: GrantFrame, page: &mut [u8]);
    /// `frame` left the guest's physical address space (removed, or
    /// replaced by something else at its GFN); `page` holds its contents.
    fn removed(&self, frame: GrantFrame, page: &[u8]);
}

/// What a grant table is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Config {
    /// Most grant-entry frames the guest may have (`max_grant_frames`,
    /// default [`GNTTAB_DEFAULT_MAX_FRAMES`] = 64, Xen's and QEMU's).
    pub max_frames: u32,
    /// The guest's own domain id.
    pub domid: DomId,
    /// The domain VMM-side back ends appear as ([`DOMID_BACKEND`]). It is
    /// the only other domain the guest can see (its XSM checks); it has no
    /// grant table of its own.
    pub backend_domid: DomId,
    /// Highest version `GNTTABOP_set_version` accepts: 2 (Xen's default),
    /// or 1 to answer v2 with -ENOSYS as Xen's `gnttab=max-ver:1` and QEMU
    /// do.
    pub max_version: u32,
}

impl Config {
    /// Xen's defaults for domain `domid`: 64 frames, back ends as domain 0,
    /// versions 1 and 2.
    pub fn new(domid: DomId) -> Self {
        Self {
            max_frames: GNTTAB_DEFAULT_MAX_FRAMES,
            domid,
            backend_domid: DOMID_BACKEND,
            max_version: 2,
        }
    }

    /// Checks the configuration: 1 to [`MAX_FRAMES_LIMIT`] frames, distinct
    /// regular domain ids, version 1 or 2.
    pub fn validate(&self) -> Result<()> {
        if !(INITIAL_NR_FRAMES..=MAX_FRAMES_LIMIT).contains(&self.max_frames) {
            return Err(Error::InvalidConfig("max_frames out of range"));
        }
        if !domid_is_regular(self.domid)
            || !domid_is_regular(self.backend_domid)
            || self.domid == self.backend_domid
        {
            return Err(Error::InvalidConfig(
                "domain ids must be regular and distinct",
            ));
        }
        if !(1..=2).contains(&self.max_version) {
            return Err(Error::InvalidConfig("max_version must be 1 or 2"));
        }
        Ok(())
    }

    /// Status frames the table can have at version 2 (Xen's
    /// `grant_to_status_frames(max_grant_frames)`).
    pub fn max_status_frames(&self) -> u32 {
        status_frames_for(self.max_frames)
    }
}

/// v2 status frames that cover `frames` grant-entry frames (Xen's
/// `grant_to_status_frames`).
pub(crate) fn status_frames_for(frames: u32) -> u32 {
    // 256 v2 entries per frame, 2048 status words per status frame.
    frames.div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_config_new_has_xen_defaults() {
        let c = Config::new(3);
        assert_eq!(c.max_frames, 64);
        assert_eq!(c.backend_domid, 0);
        assert_eq!(c.max_version, 2);
        assert_eq!(c.max_status_frames(), 8);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn test_config_validate_refuses_bad_values() {
        let ok = Config::new(1);
        for bad in [
            Config {
                max_frames: 0,
                ..ok
            },
            Config {
                max_frames: MAX_FRAMES_LIMIT + 1,
                ..ok
            },
            Config { domid: 0, ..ok },
            Config {
                domid: xen_abi::xen::DOMID_SELF,
                ..ok
            },
            Config {
                backend_domid: 0x7ff2,
                ..ok
            },
            Config {
                max_version: 3,
                ..ok
            },
            Config {
                max_version: 0,
                ..ok
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(Error::InvalidConfig(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn test_status_frames_for_rounds_up() {
        assert_eq!(status_frames_for(1), 1);
        assert_eq!(status_frames_for(8), 1);
        assert_eq!(status_frames_for(9), 2);
        assert_eq!(status_frames_for(64), 8);
    }
}
