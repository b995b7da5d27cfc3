// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `memory_op` (hypercall 12): the domain's physical memory map.
//!
//! Follows `xen/include/public/memory.h` and `xen-abi.md` §3.6, with the
//! semantics of `xen/common/memory.c` and x86's `xenmem_add_to_physmap_one`
//! (`xen/arch/x86/mm/p2m.c`). [`MemoryOp`] keeps a real p2m: which GFNs hold
//! domain RAM (a bitmap over the GFNs that can hold RAM), where the special
//! frames are mapped (shared_info, whose location lives in
//! [`DomainState::shared_info_gfn`](crate::DomainState), grant-table frames
//! and v2 status frames), how many pages the domain owns
//! (`current_reservation`) and the highest GFN ever mapped
//! (`maximum_gpfn`). Changes to RAM reach the VMM through
//! [`MemoryBacking`](crate::env::MemoryBacking): `remove` when a RAM page
//! leaves the guest physical address space, `add` when one appears.
//!
//! # Sub-operations
//!
//! | cmd | sub-op | answer |
//! |---|---|---|
//! | 0 | `increase_reservation` | extents done; pages are owned but not mapped (auto-translated guest) |
//! | 1 | `decrease_reservation` | extents done; stops at the first page that is not mapped |
//! | 2 | `maximum_ram_page` | the RAM limit in pages |
//! | 3, 4 | `current_reservation`, `maximum_reservation` | pages |
//! | 6 | `populate_physmap` | extents done; pages come zeroed, RAM already there is replaced and stays charged |
//! | 7 | `add_to_physmap` | 0 or -errno |
//! | 9 | `memory_map` | 0; the e820 map from [`DomainConfig::memory_map`] |
//! | 14 | `maximum_gpfn` | highest GFN ever mapped |
//! | 15 | `remove_from_physmap` | 0 or -errno; a RAM page is unmapped but stays charged |
//! | 23 | `add_to_physmap_batch` | 0 and a result per entry |
//! | 26 | `get_vnumainfo` | -EOPNOTSUPP (no virtual NUMA) |
//! | others | | -ENOSYS |
//!
//! The reservation operations answer as Xen does: any problem with the
//! arguments (unreadable structure, foreign domain, more than
//! `UINT_MAX >> 6` extents, an order above 9, address_bits ≤ 12, an exact
//! NUMA node request, populate-on-demand on itself) returns the start
//! extent, and the work stops at the first extent that fails, returning
//! how many were done. Xen would
//! preempt a long call and continue it transparently; this crate cannot
//! continue a call, so one call does at most [`MAX_EXTENTS_PER_CALL`]
//! extents and [`MAX_PAGES_PER_CALL`] pages and returns the count so far
//! (the legal partial-progress answer), which real guests never reach:
//! Linux sends at most one page of GFNs per call.
//!
//! # Where this differs from QEMU
//!
//! QEMU implements only `add_to_physmap(_batch)` for shared_info and grant
//! frames and answers -ENOSYS to everything else, so the balloon driver
//! cannot work. Here:
//!
//! * the balloon operations, the reservation queries, `maximum_gpfn`,
//!   `memory_map` and `remove_from_physmap` are implemented;
//! * `XENMAPSPACE_gmfn` and `gmfn_range` really move RAM pages (the 4 KiB
//!   contents are copied to the new GFN, the old one becomes a hole); QEMU
//!   returns -ENOTSUP;
//! * `gmfn_foreign` is -ENOSYS in `add_to_physmap` and -EPERM per entry in
//!   a batch, `dev_mmio` is -EACCES (Xen's answers to a domU); QEMU
//!   returns -EPERM for both;
//! * a special frame placed over RAM frees that RAM page as Xen does
//!   (`MemoryBacking::remove`, one page less in `current_reservation`) and
//!   moving it leaves a hole behind; QEMU overlays the page and the RAM
//!   reappears when the overlay moves.
//!
//! # Where this differs from Xen
//!
//! * Only the RAM entries of the memory map start as domain RAM; reserved
//!   and ACPI ranges belong to the VMM (Xen populates them too).
//! * RAM can only appear below the RAM limit (by default the end of the
//!   highest RAM entry, see [`MemoryOp::with_ram_limit`]) and inside the
//!   guest memory the VMM has mapped: `populate_physmap` stops there, and
//!   moving a RAM page there gets -EINVAL. Special frames may go anywhere
//!   up to [`MemoryOp::with_max_gpfn`] (default: 48-bit guest-physical
//!   addresses, as Xen's 4-level EPT).
//! * When the VMM refuses a backing change the operation fails without
//!   changing anything: reservation operations stop, `add_to_physmap` gets
//!   -ENOMEM (refused `add`) or -EBUSY (refused `remove`).
//! * `maximum_ram_page` returns the RAM limit rather than the host's
//!   highest machine frame.
//! * The only other domain that exists is domain 0 (the VMM's side): a
//!   domid naming it gets Xen's XSM answer (-EPERM), any other -ESRCH.
//!
//! The lock inside [`MemoryOp`] is held while a call runs, including while
//! it calls [`MemoryBacking`](crate::env::MemoryBacking); the VMM's backing
//! must not call back into this family.

use std::sync::{Mutex, MutexGuard};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use xen_abi::errno::XenErrno;
use xen_abi::memory::{
    E820Entry, E820Type, GrantFrameIdx, MEMOP_EXTENT_SHIFT, XenAddToPhysmap, XenAddToPhysmapBatch,
    XenAddToPhysmapBatchCompat, XenAddToPhysmapCompat, XenMapSpace, XenMemOp, XenMemf,
    XenMemoryDomain, XenMemoryMap, XenMemoryMapCompat, XenMemoryReservation,
    XenMemoryReservationCompat, XenRemoveFromPhysmap, XenRemoveFromPhysmapCompat,
    split_memory_op_cmd,
};
use xen_abi::xen::{DOMID_SELF, DomId};

use crate::call::{Abi, HcResult, Hypercall};
use crate::dispatch::{Ctx, Family};
use crate::domain::DomainConfig;
use xen_abi::warn_limited;
use xen_abi::x86::PAGE_SIZE;

/// Grant-table frames a guest may map by default (QEMU's and Xen's default
/// `max_grant_frames`).
pub const DEFAULT_MAX_GRANT_FRAMES: u32 = 64;
/// Largest extent order a domU may use (Xen's `CONFIG_DOMU_MAX_ORDER` on
/// x86): 2 MiB extents.
pub const MAX_EXTENT_ORDER: u32 = 9;
/// Highest GFN a frame may be mapped at by default: 48-bit guest-physical
/// addresses, the reach of Xen's 4-level EPT.
pub const DEFAULT_MAX_GPFN: u64 = (1 << 36) - 1;
/// Upper bound of the RAM limit in pages (16 TiB of guest-physical space,
/// a 512 MiB bitmap); a larger request is clamped.
pub const MAX_RAM_LIMIT: u64 = 1 << 32;
/// Most extents one reservation call processes (see the module docs).
pub const MAX_EXTENTS_PER_CALL: u64 = 1 << 16;
/// Most pages one reservation call processes (see the module docs).
pub const MAX_PAGES_PER_CALL: u64 = 1 << 18;
/// Most extents a reservation may name (`UINT_MAX >> MEMOP_EXTENT_SHIFT`:
/// Xen must be able to encode the continuation).
pub const MAX_NR_EXTENTS: u64 = (u32::MAX >> MEMOP_EXTENT_SHIFT) as u64;

/// Size of `struct xen_vnuma_topology_info` in both ABIs.
const VNUMA_TOPOLOGY_INFO_SIZE: usize = 40;
/// A page of zeros, for freshly populated pages.
static ZERO_PAGE: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];

/// Errors of this module (host side: restoring state).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A snapshot that cannot describe a p2m.
    #[error("Invalid memory_op state: {0}.")]
    InvalidState(&'static str),
}

/// How many grant-table frames the VMM lets the guest map (in Xen:
/// `max_grant_frames`; the platform device's BAR must hold them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GrantFrames {
    /// Grant-entry frames: `idx` must be below this.
    pub max_frames: u32,
    /// v2 status frames: `idx & !XENMAPIDX_grant_table_status` must be below
    /// this.
    pub max_status_frames: u32,
}

impl GrantFrames {
    /// Limits for `max_frames` grant frames; status frames are sized as
    /// Xen does (a v2 status frame covers eight v2 grant frames).
    pub fn new(max_frames: u32) -> Self {
        Self {
            max_frames,
            max_status_frames: max_frames.div_ceil(8),
        }
    }
}

impl Default for GrantFrames {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_GRANT_FRAMES)
    }
}

/// A snapshot of [`MemoryOp`]. The shared_info location is not here: it
/// lives in [`DomainState`](crate::DomainState), snapshotted with the
/// domain.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct State {
    /// Populated RAM as sorted, disjoint `[start, end)` GFN ranges.
    pub ram: Vec<(u64, u64)>,
    /// GFNs below this may hold RAM.
    pub ram_limit: u64,
    /// Highest GFN a frame may be mapped at.
    pub max_gpfn: u64,
    /// Pages the domain owns that are mapped nowhere (from
    /// `increase_reservation`, replaced and removed pages).
    pub unmapped_pages: u64,
    /// Highest GFN ever mapped (`maximum_gpfn`).
    pub max_mapped_gfn: u64,
    /// GFN of each grant-entry frame (index = frame).
    pub grant_frames: Vec<Option<u64>>,
    /// GFN of each v2 status frame (index = frame).
    pub status_frames: Vec<Option<u64>>,
    /// Whether the grant table is at version 2 (status frames mappable).
    pub grant_v2: bool,
}

/// A fixed-size bitmap that counts its set bits.
#[derive(Clone, Debug, Default)]
struct Bitmap {
    words: Vec<u64>,
    len: u64,
    ones: u64,
}

impl Bitmap {
    fn new(len: u64) -> Self {
        Self {
            words: vec![0; len.div_ceil(64) as usize],
            len,
            ones: 0,
        }
    }

    fn get(&self, i: u64) -> bool {
        i < self.len && self.words[(i / 64) as usize] >> (i % 64) & 1 == 1
    }

    /// Sets `[start, start + n)` (clamped to the bitmap) to `val`.
    fn fill(&mut self, start: u64, n: u64, val: bool) {
        let end = start.saturating_add(n).min(self.len);
        let mut i = start;
        while i < end {
            let (w, b) = ((i / 64) as usize, i % 64);
            let k = (64 - b).min(end - i);
            let mask = if k == 64 { !0 } else { ((1u64 << k) - 1) << b };
            let old = self.words[w];
            let new = if val { old | mask } else { old & !mask };
            self.ones = self.ones + u64::from(new.count_ones()) - u64::from(old.count_ones());
            self.words[w] = new;
            i += k;
        }
    }

    /// Set bits in `[start, start + n)`.
    fn count(&self, start: u64, n: u64) -> u64 {
        let end = start.saturating_add(n).min(self.len);
        let mut i = start;
        let mut c = 0;
        while i < end {
            let (w, b) = ((i / 64) as usize, i % 64);
            let k = (64 - b).min(end - i);
            let mask = if k == 64 { !0 } else { ((1u64 << k) - 1) << b };
            c += u64::from((self.words[w] & mask).count_ones());
            i += k;
        }
        c
    }

    /// Length of the run of bits equal to `val` from `start`, at most
    /// `max`. Bits past the end read as clear.
    fn run(&self, start: u64, max: u64, val: bool) -> u64 {
        let end = start.saturating_add(max);
        let mut i = start;
        while i < end {
            if i >= self.len {
                if !val {
                    i = end;
                }
                break;
            }
            let (w, b) = ((i / 64) as usize, i % 64);
            let word = if val { self.words[w] } else { !self.words[w] };
            let take = u64::from((!(word >> b)).trailing_zeros());
            i += take;
            if take < 64 - b {
                break;
            }
        }
        i.min(end) - start
    }

    /// Runs of bits equal to `val` in `[start, end)`, as `(start, len)`.
    fn runs(&self, start: u64, end: u64, val: bool) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut i = start;
        while i < end {
            let r = self.run(i, end - i, val);
            if r > 0 {
                out.push((i, r));
                i += r;
            }
            i += self.run(i, end - i, !val);
        }
        out
    }

    /// Changes the length; bits past the new end are dropped.
    fn resize(&mut self, len: u64) {
        self.words.resize(len.div_ceil(64) as usize, 0);
        if !len.is_multiple_of(64)
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u64 << (len % 64)) - 1;
        }
        self.len = len;
        self.ones = self.words.iter().map(|w| u64::from(w.count_ones())).sum();
    }
}

/// A frame that is not domain RAM but can be mapped into the p2m.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Special {
    SharedInfo,
    Grant(usize),
    Status(usize),
}

/// What a GFN holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Hole,
    Ram,
    Special(Special),
}

/// The p2m behind the lock.
#[derive(Clone, Debug)]
struct P2m {
    ram: Bitmap,
    max_gpfn: u64,
    unmapped: u64,
    max_mapped: u64,
    grant: Vec<Option<u64>>,
    status: Vec<Option<u64>>,
    grant_v2: bool,
    /// Working copy of `DomainState::shared_info_gfn` during a call.
    shared_info: Option<u64>,
}

impl P2m {
    fn tot_pages(&self) -> u64 {
        self.ram.ones.saturating_add(self.unmapped)
    }

    fn location(&self, s: Special) -> Option<u64> {
        match s {
            Special::SharedInfo => self.shared_info,
            Special::Grant(i) => self.grant[i],
            Special::Status(i) => self.status[i],
        }
    }

    fn set_location(&mut self, s: Special, gfn: Option<u64>) {
        match s {
            Special::SharedInfo => self.shared_info = gfn,
            Special::Grant(i) => self.grant[i] = gfn,
            Special::Status(i) => self.status[i] = gfn,
        }
        if let Some(g) = gfn {
            self.max_mapped = self.max_mapped.max(g);
        }
    }

    /// Special frames mapped in `[start, end)`, sorted by GFN.
    fn specials_in(&self, start: u64, end: u64) -> Vec<(u64, Special)> {
        let si = self.shared_info.map(|g| (g, Special::SharedInfo));
        let grants = self
            .grant
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.map(|g| (g, Special::Grant(i))));
        let status = self
            .status
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.map(|g| (g, Special::Status(i))));
        let mut v: Vec<_> = si
            .into_iter()
            .chain(grants)
            .chain(status)
            .filter(|(g, _)| (start..end).contains(g))
            .collect();
        v.sort_unstable_by_key(|(g, _)| *g);
        v
    }

    fn slot(&self, gfn: u64) -> Slot {
        match self.specials_in(gfn, gfn.saturating_add(1)).first() {
            Some(&(_, s)) => Slot::Special(s),
            None if self.ram.get(gfn) => Slot::Ram,
            None => Slot::Hole,
        }
    }
}

/// Where an `add_to_physmap` frame comes from.
enum Source {
    Ram(u64),
    Special(Special),
}

/// The pointers and sizes of a batch, whichever ABI it came in.
struct Batch {
    domid: DomId,
    space: u16,
    size: u16,
    idxs: u64,
    gpfns: u64,
    errs: u64,
}

/// The `memory_op` family (hypercall 12). See the module docs.
#[derive(Debug)]
pub struct MemoryOp {
    grant_limits: GrantFrames,
    p2m: Mutex<P2m>,
}

impl MemoryOp {
    /// A p2m for a domain described by `config`: the pages of its RAM
    /// entries are populated, nothing else is mapped, and grant frames are
    /// limited by `grant`.
    pub fn new(config: &DomainConfig, grant: GrantFrames) -> Self {
        let ram_entries: Vec<(u64, u64)> = config
            .memory_map
            .iter()
            .filter(|e| e.kind() == Ok(E820Type::Ram))
            .map(page_range)
            .collect();
        let ram_limit = ram_entries
            .iter()
            .map(|&(_, end)| end)
            .max()
            .unwrap_or(0)
            .min(MAX_RAM_LIMIT)
            .min(DEFAULT_MAX_GPFN + 1);
        let mut ram = Bitmap::new(ram_limit);
        for &(start, end) in &ram_entries {
            ram.fill(start, end.saturating_sub(start), true);
        }
        let max_mapped = config
            .memory_map
            .iter()
            .map(page_range)
            .filter(|&(s, e)| e > s)
            .map(|(_, e)| e - 1)
            .max()
            .unwrap_or(0)
            .min(DEFAULT_MAX_GPFN);
        Self {
            grant_limits: grant,
            p2m: Mutex::new(P2m {
                ram,
                max_gpfn: DEFAULT_MAX_GPFN,
                unmapped: 0,
                max_mapped,
                grant: vec![None; grant.max_frames as usize],
                status: vec![None; grant.max_status_frames as usize],
                grant_v2: false,
                shared_info: None,
            }),
        }
    }

    /// Lets RAM exist below GFN `limit` (e.g. for memory hot-plug above the
    /// memory map), clamped to [`MAX_RAM_LIMIT`] and the maximum GPFN.
    /// Populated pages above a lowered limit are dropped.
    pub fn with_ram_limit(self, limit: u64) -> Self {
        {
            let mut p = self.lock();
            let limit = limit.min(MAX_RAM_LIMIT).min(p.max_gpfn.saturating_add(1));
            p.ram.resize(limit);
        }
        self
    }

    /// Sets the highest GFN a frame may be mapped at (the guest's
    /// physical-address width); the RAM limit is clamped to it.
    pub fn with_max_gpfn(self, max_gpfn: u64) -> Self {
        {
            let mut p = self.lock();
            p.max_gpfn = max_gpfn;
            if p.ram.len > max_gpfn.saturating_add(1) {
                p.ram.resize(max_gpfn.saturating_add(1));
            }
        }
        self
    }

    fn lock(&self) -> MutexGuard<'_, P2m> {
        self.p2m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The grant-frame limits.
    pub fn grant_frames(&self) -> GrantFrames {
        self.grant_limits
    }

    /// GFN where the guest mapped grant-entry frame `frame`, if it did.
    pub fn grant_frame_gfn(&self, frame: u64) -> Option<u64> {
        let p = self.lock();
        usize::try_from(frame)
            .ok()
            .and_then(|i| p.grant.get(i).copied().flatten())
    }

    /// GFN where the guest mapped v2 status frame `frame`, if it did.
    pub fn status_frame_gfn(&self, frame: u64) -> Option<u64> {
        let p = self.lock();
        usize::try_from(frame)
            .ok()
            .and_then(|i| p.status.get(i).copied().flatten())
    }

    /// Tells the p2m which grant-table version is in force (the grant-table
    /// code calls this on `GNTTABOP_set_version`). Status frames can only be
    /// mapped at version 2; going back to version 1 unmaps them, as Xen
    /// does, and returns the GFNs that became holes.
    pub fn set_grant_v2(&self, v2: bool) -> Vec<u64> {
        let mut p = self.lock();
        p.grant_v2 = v2;
        if v2 {
            return Vec::new();
        }
        p.status.iter_mut().filter_map(Option::take).collect()
    }

    /// Whether `gfn` holds domain RAM.
    pub fn is_populated(&self, gfn: u64) -> bool {
        self.lock().ram.get(gfn)
    }

    /// Pages the domain owns (`current_reservation`).
    pub fn current_pages(&self) -> u64 {
        self.lock().tot_pages()
    }

    /// A snapshot of the p2m.
    pub fn state(&self) -> State {
        let p = self.lock();
        State {
            ram: p
                .ram
                .runs(0, p.ram.len, true)
                .into_iter()
                .map(|(s, n)| (s, s + n))
                .collect(),
            ram_limit: p.ram.len,
            max_gpfn: p.max_gpfn,
            unmapped_pages: p.unmapped,
            max_mapped_gfn: p.max_mapped,
            grant_frames: p.grant.clone(),
            status_frames: p.status.clone(),
            grant_v2: p.grant_v2,
        }
    }

    /// Rebuilds a p2m from a snapshot.
    pub fn from_state(state: &State) -> Result<Self, Error> {
        if state.ram_limit > MAX_RAM_LIMIT || state.ram_limit > state.max_gpfn.saturating_add(1) {
            return Err(Error::InvalidState("RAM limit too large"));
        }
        let (Ok(max_frames), Ok(max_status_frames)) = (
            u32::try_from(state.grant_frames.len()),
            u32::try_from(state.status_frames.len()),
        ) else {
            return Err(Error::InvalidState("too many grant frames"));
        };
        let in_range = |g: &Option<u64>| g.is_none_or(|g| g <= state.max_gpfn);
        if !state.grant_frames.iter().all(in_range) || !state.status_frames.iter().all(in_range) {
            return Err(Error::InvalidState("grant frame beyond the maximum GPFN"));
        }
        let mut ram = Bitmap::new(state.ram_limit);
        let mut prev_end = 0;
        for &(start, end) in &state.ram {
            if start < prev_end || start >= end || end > state.ram_limit {
                return Err(Error::InvalidState(
                    "RAM ranges unsorted, overlapping or out of range",
                ));
            }
            ram.fill(start, end - start, true);
            prev_end = end;
        }
        Ok(Self {
            grant_limits: GrantFrames {
                max_frames,
                max_status_frames,
            },
            p2m: Mutex::new(P2m {
                ram,
                max_gpfn: state.max_gpfn,
                unmapped: state.unmapped_pages,
                max_mapped: state.max_mapped_gfn,
                grant: state.grant_frames.clone(),
                status: state.status_frames.clone(),
                grant_v2: state.grant_v2,
                shared_info: None,
            }),
        })
    }

    /// Runs `f` on the locked p2m with the domain's shared_info location
    /// loaded, and stores that location back if `f` moved it.
    fn with_p2m<M: GuestMemoryBackend, R>(
        &self,
        ctx: &Ctx<'_, M>,
        f: impl FnOnce(&mut P2m) -> R,
    ) -> R {
        let mut p = self.lock();
        let before = ctx.domain.lock().shared_info_gfn;
        p.shared_info = before;
        let r = f(&mut p);
        let now = p.shared_info;
        if now != before {
            ctx.domain.lock().shared_info_gfn = now;
        }
        drop(p);
        if now != before && now.is_some() {
            // Xen's shared_info is always current: the page the guest maps
            // already holds the wall clock and every vCPU's time.
            crate::time::update_wallclock(ctx.domain, ctx.phys());
            for vcpu in 0..ctx.domain.config().vcpus {
                crate::time::update_vcpu_time(ctx.domain, ctx.phys(), vcpu);
            }
        }
        r
    }

    // --- reservations ------------------------------------------------------

    fn reservation<M: GuestMemoryBackend>(
        &self,
        ctx: &Ctx<'_, M>,
        op: XenMemOp,
        start: u64,
        arg: u64,
    ) -> HcResult {
        let r = match ctx.abi {
            Abi::X86_64 => ctx.read::<XenMemoryReservation>(arg),
            Abi::X86_32 => ctx.read::<XenMemoryReservationCompat>(arg).map(Into::into),
        };
        let Ok(r) = r else {
            return Ok(start);
        };
        let flags = r.flags();
        let refused = if r.nr_extents > MAX_NR_EXTENTS {
            Some("too many extents")
        } else if start >= r.nr_extents {
            return Ok(start);
        } else if target(ctx, r.domid).is_err() {
            Some("foreign domain")
        } else if (1..=12).contains(&flags.address_bits()) {
            Some("address_bits below a page")
        } else if !flags.flags().contains(XenMemf::VNODE)
            && flags.node().is_some()
            && flags.flags().contains(XenMemf::EXACT_NODE_REQUEST)
        {
            Some("exact NUMA node request")
        } else if r.extent_order > MAX_EXTENT_ORDER {
            Some("extent order above 9")
        } else if op == XenMemOp::PopulatePhysmap
            && flags.flags().contains(XenMemf::POPULATE_ON_DEMAND)
        {
            Some("populate-on-demand on itself")
        } else {
            None
        };
        if let Some(why) = refused {
            warn_limited!(
                "vCPU {}: {op} of {} extents (order {}) refused: {why}",
                ctx.vcpu,
                r.nr_extents,
                r.extent_order
            );
            return Ok(start);
        }
        let pages = 1u64 << r.extent_order;
        let last = r
            .nr_extents
            .min(start + MAX_EXTENTS_PER_CALL)
            .min(start + (MAX_PAGES_PER_CALL >> r.extent_order));
        self.with_p2m(ctx, |p| match op {
            XenMemOp::IncreaseReservation => {
                let room =
                    ctx.domain.config().max_pages.saturating_sub(p.tot_pages()) >> r.extent_order;
                let done = (last - start).min(room);
                p.unmapped += done << r.extent_order;
                Ok(start + done)
            }
            XenMemOp::DecreaseReservation => {
                let mut i = start;
                while i < last {
                    match read_pfn(ctx, r.extent_start, i) {
                        Ok(gfn) if self.decrease_extent(ctx, p, gfn, pages) => i += 1,
                        _ => break,
                    }
                }
                Ok(i)
            }
            _ => {
                let mut i = start;
                while i < last {
                    match read_pfn(ctx, r.extent_start, i) {
                        Ok(gfn) if self.populate_extent(ctx, p, gfn, pages) => i += 1,
                        _ => break,
                    }
                }
                Ok(i)
            }
        })
    }

    /// Frees `n` pages from `gfn` as Xen's `guest_remove_page` does, page
    /// by page: stops (false) at the first page that is not mapped, or when
    /// the VMM refuses; pages freed before stay freed.
    fn decrease_extent<M: GuestMemoryBackend>(
        &self,
        ctx: &Ctx<'_, M>,
        p: &mut P2m,
        gfn: u64,
        n: u64,
    ) -> bool {
        let Some(end) = gfn.checked_add(n) else {
            warn_limited!(
                "vCPU {}: decrease_reservation of GFN {gfn:#x} wraps",
                ctx.vcpu
            );
            return false;
        };
        let specials = p.specials_in(gfn, end);
        let mut g = gfn;
        while g < end {
            if let Some(&(_, s)) = specials.iter().find(|(sg, _)| *sg == g) {
                p.set_location(s, None);
                g += 1;
                continue;
            }
            let limit = specials
                .iter()
                .map(|(sg, _)| *sg)
                .find(|&sg| sg > g)
                .unwrap_or(end);
            let run = p.ram.run(g, limit - g, true);
            if run == 0 {
                warn_limited!(
                    "vCPU {}: decrease_reservation of unpopulated GFN {g:#x}",
                    ctx.vcpu
                );
                return false;
            }
            if !ctx.domain.env.backing.remove(g, run) {
                warn_limited!(
                    "vCPU {}: VMM refused to drop {run} pages at GFN {g:#x}",
                    ctx.vcpu
                );
                return false;
            }
            p.ram.fill(g, run, false);
            g += run;
        }
        true
    }

    /// Populates `n` fresh (zeroed) pages from `gfn`. RAM already there is
    /// replaced and stays charged to the domain, as in Xen; special frames
    /// there are unmapped.
    fn populate_extent<M: GuestMemoryBackend>(
        &self,
        ctx: &Ctx<'_, M>,
        p: &mut P2m,
        gfn: u64,
        n: u64,
    ) -> bool {
        let end = match gfn.checked_add(n) {
            Some(end) if end <= p.ram.len => end,
            _ => {
                warn_limited!(
                    "vCPU {}: populate_physmap of GFN {gfn:#x} beyond the RAM limit",
                    ctx.vcpu
                );
                return false;
            }
        };
        let gpa = GuestAddress(gfn * PAGE_SIZE);
        if !GuestMemoryBackend::check_range(ctx.phys(), gpa, (n * PAGE_SIZE) as usize) {
            warn_limited!(
                "vCPU {}: populate_physmap of GFN {gfn:#x} outside guest memory",
                ctx.vcpu
            );
            return false;
        }
        if p.tot_pages().saturating_add(n) > ctx.domain.config().max_pages {
            return false;
        }
        let backing = &ctx.domain.env.backing;
        let holes = p.ram.runs(gfn, end, false);
        for (k, &(s, len)) in holes.iter().enumerate() {
            if !backing.add(s, len) {
                warn_limited!(
                    "vCPU {}: VMM refused to back {len} pages at GFN {s:#x}",
                    ctx.vcpu
                );
                for &(s, len) in &holes[..k] {
                    backing.remove(s, len);
                }
                return false;
            }
        }
        for (_, s) in p.specials_in(gfn, end) {
            p.set_location(s, None);
        }
        p.unmapped += p.ram.count(gfn, n);
        p.ram.fill(gfn, n, true);
        p.max_mapped = p.max_mapped.max(end - 1);
        for k in 0..n {
            if ctx
                .phys()
                .write_slice(&ZERO_PAGE, GuestAddress(gpa.0 + k * PAGE_SIZE))
                .is_err()
            {
                warn_limited!("populate_physmap: clearing GFN {:#x} failed", gfn + k);
            }
        }
        true
    }

    // --- add_to_physmap ----------------------------------------------------

    fn add_to_physmap<M: GuestMemoryBackend>(
        &self,
        ctx: &Ctx<'_, M>,
        start: u64,
        arg: u64,
    ) -> HcResult {
        let start = u16::try_from(start).map_err(|_| XenErrno::EDOM)?;
        let x: XenAddToPhysmap = match ctx.abi {
            Abi::X86_64 => ctx.read(arg)?,
            Abi::X86_32 => ctx.read::<XenAddToPhysmapCompat>(arg)?.into(),
        };
        if x.space == XenMapSpace::GmfnForeign.raw() {
            warn_limited!(
                "vCPU {}: add_to_physmap of a foreign page (batch only)",
                ctx.vcpu
            );
            return Err(XenErrno::ENOSYS);
        }
        target(ctx, x.domid)?;
        permission(ctx, x.space)?;
        let r = self.with_p2m(ctx, |p| {
            if x.space != XenMapSpace::GmfnRange.raw() {
                return self.map_one(ctx, p, x.space, x.idx, x.gpfn);
            }
            if x.size < start {
                return Err(XenErrno::EILSEQ);
            }
            for k in u64::from(start)..u64::from(x.size) {
                let (Some(idx), Some(gpfn)) = (x.idx.checked_add(k), x.gpfn.checked_add(k)) else {
                    return Err(XenErrno::EINVAL);
                };
                self.map_one(ctx, p, XenMapSpace::Gmfn.raw(), idx, gpfn)?;
            }
            Ok(())
        });
        if let Err(e) = r {
            warn_limited!(
                "vCPU {}: add_to_physmap space {} idx {:#x} at GFN {:#x}: {e}",
                ctx.vcpu,
                x.space,
                x.idx,
                x.gpfn
            );
        }
        r.map(|()| 0)
    }

    fn add_to_physmap_batch<M: GuestMemoryBackend>(
        &self,
        ctx: &Ctx<'_, M>,
        start: u64,
        arg: u64,
    ) -> HcResult {
        let start = u16::try_from(start).map_err(|_| XenErrno::EDOM)?;
        let b = match ctx.abi {
            Abi::X86_64 => {
                let b: XenAddToPhysmapBatch = ctx.read(arg)?;
                Batch {
                    domid: b.domid,
                    space: b.space,
                    size: b.size,
                    idxs: b.idxs,
                    gpfns: b.gpfns,
                    errs: b.errs,
                }
            }
            Abi::X86_32 => {
                let b: XenAddToPhysmapBatchCompat = ctx.read(arg)?;
                Batch {
                    domid: b.domid,
                    space: b.space,
                    size: b.size,
                    idxs: u64::from(b.idxs),
                    gpfns: u64::from(b.gpfns),
                    errs: u64::from(b.errs),
                }
            }
        };
        if u32::from(b.space) == XenMapSpace::GmfnRange.raw() {
            warn_limited!("vCPU {}: add_to_physmap_batch of gmfn_range", ctx.vcpu);
            return Err(XenErrno::EOPNOTSUPP);
        }
        target(ctx, b.domid)?;
        permission(ctx, u32::from(b.space))?;
        if b.size < start || (b.size == start && start != 0) {
            return Err(XenErrno::EILSEQ);
        }
        self.with_p2m(ctx, |p| {
            for k in u64::from(start)..u64::from(b.size) {
                let idx = read_word(ctx, b.idxs, k)?;
                let gpfn = read_word(ctx, b.gpfns, k)?;
                let rc = match self.map_one(ctx, p, u32::from(b.space), idx, gpfn) {
                    Ok(()) => 0,
                    Err(e) => {
                        warn_limited!("vCPU {}: add_to_physmap_batch entry {k}: {e}", ctx.vcpu);
                        e.neg() as i32
                    }
                };
                ctx.write(ctx.abi.word(b.errs.wrapping_add(k * 4)), &rc)?;
            }
            Ok(0)
        })
    }

    /// Maps one frame of `space` at `gpfn` (x86 `xenmem_add_to_physmap_one`).
    fn map_one<M: GuestMemoryBackend>(
        &self,
        ctx: &Ctx<'_, M>,
        p: &mut P2m,
        space: u32,
        idx: u64,
        gpfn: u64,
    ) -> Result<(), XenErrno> {
        let source = match XenMapSpace::try_from(space) {
            Ok(XenMapSpace::SharedInfo) if idx == 0 => Source::Special(Special::SharedInfo),
            Ok(XenMapSpace::GrantTable) => {
                let f = GrantFrameIdx::from_idx(idx);
                // With grant v1 the status bit is just part of a (huge) frame number.
                let (frame, table) = if f.status && p.grant_v2 {
                    (f.frame, &p.status)
                } else {
                    (idx, &p.grant)
                };
                match usize::try_from(frame) {
                    Ok(i) if i < table.len() && f.status && p.grant_v2 => {
                        Source::Special(Special::Status(i))
                    }
                    Ok(i) if i < table.len() => Source::Special(Special::Grant(i)),
                    _ => return Err(XenErrno::EINVAL),
                }
            }
            Ok(XenMapSpace::Gmfn | XenMapSpace::GmfnRange) => match p.slot(idx) {
                Slot::Hole => return Err(XenErrno::EINVAL),
                Slot::Ram => Source::Ram(idx),
                Slot::Special(s) => Source::Special(s),
            },
            // p2m_add_foreign: only the hardware domain may map foreign pages.
            Ok(XenMapSpace::GmfnForeign) => return Err(XenErrno::EPERM),
            Ok(XenMapSpace::DevMmio) => return Err(XenErrno::EACCES),
            Ok(XenMapSpace::SharedInfo) | Err(_) => return Err(XenErrno::EINVAL),
        };
        if gpfn > p.max_gpfn {
            return Err(XenErrno::EINVAL);
        }
        match source {
            Source::Ram(from) => self.move_ram(ctx, p, from, gpfn),
            Source::Special(s) => place_special(ctx, p, s, gpfn),
        }
    }

    /// Moves the RAM page at `from` to `to`, contents included; `from`
    /// becomes a hole and whatever was at `to` is freed or unmapped.
    fn move_ram<M: GuestMemoryBackend>(
        &self,
        ctx: &Ctx<'_, M>,
        p: &mut P2m,
        from: u64,
        to: u64,
    ) -> Result<(), XenErrno> {
        if from == to {
            return Ok(());
        }
        let to_gpa = GuestAddress(to * PAGE_SIZE);
        if to >= p.ram.len
            || !GuestMemoryBackend::check_range(ctx.phys(), to_gpa, PAGE_SIZE as usize)
        {
            return Err(XenErrno::EINVAL);
        }
        let mut page = [0u8; PAGE_SIZE as usize];
        if ctx
            .phys()
            .read_slice(&mut page, GuestAddress(from * PAGE_SIZE))
            .is_err()
        {
            return Err(XenErrno::EINVAL);
        }
        let prev = p.slot(to);
        let backing = &ctx.domain.env.backing;
        let need_add = prev != Slot::Ram;
        if need_add && !backing.add(to, 1) {
            return Err(XenErrno::ENOMEM);
        }
        if !backing.remove(from, 1) {
            if need_add {
                backing.remove(to, 1);
            }
            return Err(XenErrno::EBUSY);
        }
        if ctx.phys().write_slice(&page, to_gpa).is_err() {
            warn_limited!("add_to_physmap: copying GFN {from:#x} to {to:#x} failed");
        }
        if let Slot::Special(s) = prev {
            p.set_location(s, None);
        }
        p.ram.fill(from, 1, false);
        p.ram.fill(to, 1, true);
        p.max_mapped = p.max_mapped.max(to);
        Ok(())
    }

    // --- queries and the rest ----------------------------------------------

    fn remove_from_physmap<M: GuestMemoryBackend>(
        &self,
        ctx: &Ctx<'_, M>,
        start: u64,
        arg: u64,
    ) -> HcResult {
        if start != 0 {
            return Err(XenErrno::EINVAL);
        }
        let (domid, gpfn) = match ctx.abi {
            Abi::X86_64 => {
                let x: XenRemoveFromPhysmap = ctx.read(arg)?;
                (x.domid, x.gpfn)
            }
            Abi::X86_32 => {
                let x: XenRemoveFromPhysmapCompat = ctx.read(arg)?;
                (x.domid, u64::from(x.gpfn))
            }
        };
        target(ctx, domid)?;
        self.with_p2m(ctx, |p| match p.slot(gpfn) {
            Slot::Hole => {
                warn_limited!(
                    "vCPU {}: remove_from_physmap of empty GFN {gpfn:#x}",
                    ctx.vcpu
                );
                Err(XenErrno::ENOENT)
            }
            Slot::Ram => {
                if !ctx.domain.env.backing.remove(gpfn, 1) {
                    warn_limited!("vCPU {}: VMM refused to drop GFN {gpfn:#x}", ctx.vcpu);
                    return Err(XenErrno::EBUSY);
                }
                // Xen only unmaps: the page stays allocated to the domain.
                p.ram.fill(gpfn, 1, false);
                p.unmapped += 1;
                Ok(0)
            }
            Slot::Special(s) => {
                p.set_location(s, None);
                Ok(0)
            }
        })
    }

    fn domain_query<M: GuestMemoryBackend>(
        &self,
        ctx: &Ctx<'_, M>,
        op: XenMemOp,
        start: u64,
        arg: u64,
    ) -> HcResult {
        if start != 0 {
            return Err(XenErrno::EINVAL);
        }
        let d: XenMemoryDomain = ctx.read(arg)?;
        target(ctx, d.domid)?;
        let p = self.lock();
        Ok(match op {
            XenMemOp::CurrentReservation => p.tot_pages(),
            XenMemOp::MaximumReservation => ctx.domain.config().max_pages,
            _ => p.max_mapped,
        })
    }

    fn memory_map<M: GuestMemoryBackend>(
        &self,
        ctx: &Ctx<'_, M>,
        start: u64,
        arg: u64,
    ) -> HcResult {
        // x86's arch_memory_op matches the whole command word.
        if start != 0 {
            return Err(XenErrno::ENOSYS);
        }
        enum Arg {
            Native(XenMemoryMap),
            Compat(XenMemoryMapCompat),
        }
        let (m, capacity, buffer) = match ctx.abi {
            Abi::X86_64 => {
                let m: XenMemoryMap = ctx.read(arg)?;
                (Arg::Native(m), m.nr_entries, m.buffer)
            }
            Abi::X86_32 => {
                let m: XenMemoryMapCompat = ctx.read(arg)?;
                (Arg::Compat(m), m.nr_entries, u64::from(m.buffer))
            }
        };
        let map = &ctx.domain.config().memory_map;
        if map.is_empty() {
            return Err(XenErrno::ENOSYS);
        }
        let n = map.len().min(capacity as usize);
        let stride = std::mem::size_of::<E820Entry>() as u64;
        for (i, e) in map[..n].iter().enumerate() {
            ctx.write(ctx.abi.word(buffer.wrapping_add(i as u64 * stride)), e)?;
        }
        // Xen copies its own copy of the structure back, count updated.
        match m {
            Arg::Native(m) => ctx.write(
                arg,
                &XenMemoryMap {
                    nr_entries: n as u32,
                    ..m
                },
            )?,
            Arg::Compat(m) => ctx.write(
                arg,
                &XenMemoryMapCompat {
                    nr_entries: n as u32,
                    ..m
                },
            )?,
        }
        Ok(0)
    }

    fn get_vnumainfo<M: GuestMemoryBackend>(
        &self,
        ctx: &Ctx<'_, M>,
        start: u64,
        arg: u64,
    ) -> HcResult {
        if start != 0 {
            return Err(XenErrno::EINVAL);
        }
        let mut t = [0u8; VNUMA_TOPOLOGY_INFO_SIZE];
        ctx.read_bytes(arg, &mut t)?;
        let (domid, pad) = (
            u16::from_ne_bytes([t[0], t[1]]),
            u16::from_ne_bytes([t[2], t[3]]),
        );
        if pad != 0 {
            return Err(XenErrno::EINVAL);
        }
        target(ctx, domid)?;
        Err(XenErrno::EOPNOTSUPP)
    }
}

impl<M: GuestMemoryBackend> Family<M> for MemoryOp {
    fn call(&self, ctx: &mut Ctx<'_, M>, call: &Hypercall) -> HcResult {
        let ctx: &Ctx<'_, M> = ctx;
        let (raw, start) = split_memory_op_cmd(ctx.abi.word(call.arg(0)));
        let arg = ctx.abi.word(call.arg(1));
        let Ok(op) = XenMemOp::try_from(raw) else {
            warn_limited!("vCPU {}: unknown memory_op {raw}", ctx.vcpu);
            return Err(XenErrno::ENOSYS);
        };
        match op {
            XenMemOp::IncreaseReservation
            | XenMemOp::DecreaseReservation
            | XenMemOp::PopulatePhysmap => self.reservation(ctx, op, start, arg),
            XenMemOp::MaximumRamPage if start != 0 => Err(XenErrno::EINVAL),
            XenMemOp::MaximumRamPage => Ok(self.lock().ram.len),
            XenMemOp::CurrentReservation | XenMemOp::MaximumReservation | XenMemOp::MaximumGpfn => {
                self.domain_query(ctx, op, start, arg)
            }
            XenMemOp::AddToPhysmap => self.add_to_physmap(ctx, start, arg),
            XenMemOp::AddToPhysmapBatch => self.add_to_physmap_batch(ctx, start, arg),
            XenMemOp::RemoveFromPhysmap => self.remove_from_physmap(ctx, start, arg),
            XenMemOp::MemoryMap => self.memory_map(ctx, start, arg),
            XenMemOp::GetVnumainfo => self.get_vnumainfo(ctx, start, arg),
            // Refused for every HVM guest (hvm_memory_op).
            XenMemOp::MachphysMapping | XenMemOp::MachineMemoryMap => Err(XenErrno::ENOSYS),
            _ => {
                warn_limited!("vCPU {}: unimplemented {op}", ctx.vcpu);
                Err(XenErrno::ENOSYS)
            }
        }
    }
}

/// Places special frame `s` at `to`, unmapping it from where it was. RAM at
/// `to` is freed (Xen's `guest_remove_page`), another special frame there
/// is unhooked.
fn place_special<M: GuestMemoryBackend>(
    ctx: &Ctx<'_, M>,
    p: &mut P2m,
    s: Special,
    to: u64,
) -> Result<(), XenErrno> {
    if p.location(s) == Some(to) {
        return Ok(());
    }
    match p.slot(to) {
        Slot::Ram => {
            if !ctx.domain.env.backing.remove(to, 1) {
                return Err(XenErrno::EBUSY);
            }
            p.ram.fill(to, 1, false);
        }
        Slot::Special(other) => p.set_location(other, None),
        Slot::Hole => {}
    }
    p.set_location(s, Some(to));
    Ok(())
}

/// Whether `domid` names the caller: DOMID_SELF or its own id. Domain 0
/// (the VMM's side) exists but is not the caller's to touch (XSM: -EPERM);
/// no other domain exists (-ESRCH).
fn target<M: GuestMemoryBackend>(ctx: &Ctx<'_, M>, domid: DomId) -> Result<(), XenErrno> {
    if domid == DOMID_SELF || domid == ctx.domain.config().domid {
        return Ok(());
    }
    warn_limited!("vCPU {}: memory_op on domain {domid}", ctx.vcpu);
    Err(if domid == 0 {
        XenErrno::EPERM
    } else {
        XenErrno::ESRCH
    })
}

/// Xen's `xatp_permission_check`: only the hardware domain maps device MMIO.
fn permission<M: GuestMemoryBackend>(ctx: &Ctx<'_, M>, space: u32) -> Result<(), XenErrno> {
    if space == XenMapSpace::DevMmio.raw() {
        warn_limited!("vCPU {}: add_to_physmap of device MMIO", ctx.vcpu);
        return Err(XenErrno::EACCES);
    }
    Ok(())
}

/// Element `i` of a guest array of `xen_ulong_t` / `xen_pfn_t`.
fn read_word<M: GuestMemoryBackend>(ctx: &Ctx<'_, M>, base: u64, i: u64) -> Result<u64, XenErrno> {
    let gva = ctx
        .abi
        .word(base.wrapping_add(i.wrapping_mul(ctx.abi.word_size())));
    match ctx.abi {
        Abi::X86_64 => ctx.read::<u64>(gva),
        Abi::X86_32 => ctx.read::<u32>(gva).map(u64::from),
    }
}

/// Element `i` of an extent list.
fn read_pfn<M: GuestMemoryBackend>(ctx: &Ctx<'_, M>, base: u64, i: u64) -> Result<u64, XenErrno> {
    read_word(ctx, base, i)
}

/// The pages an e820 entry touches, as `[start, end)` GFNs.
fn page_range(e: &E820Entry) -> (u64, u64) {
    let (addr, size) = (e.addr, e.size);
    let end = addr.saturating_add(size);
    (addr / PAGE_SIZE, end.div_ceil(PAGE_SIZE))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use proptest::prelude::*;
    use xen_abi::memory::{XENMAPIDX_GRANT_TABLE_STATUS, memory_op_cmd};
    use xen_abi::xen::HypercallNr;

    use super::*;
    use crate::testing::ABIS;
    use crate::testing::{Event, RAM_SIZE, TestVm};

    const ARG: u64 = 0x1000;
    const LIST: u64 = 0x2000;
    const LIST2: u64 = 0x3000;
    const ERRS: u64 = 0x4000;
    const BEYOND: u64 = RAM_SIZE + 0x1000;
    const RAM_PAGES: u64 = RAM_SIZE / PAGE_SIZE;
    const G: u64 = 0x100;
    const HOLE_AREA: u64 = 0xf0000;

    fn setup() -> (TestVm, Arc<MemoryOp>) {
        setup_with(TestVm::new(2))
    }

    fn setup_with(mut vm: TestVm) -> (TestVm, Arc<MemoryOp>) {
        let m = Arc::new(MemoryOp::new(vm.domain.config(), GrantFrames::default()));
        vm.dispatcher.register(HypercallNr::MemoryOp, m.clone());
        (vm, m)
    }

    fn config(map: Vec<E820Entry>) -> DomainConfig {
        DomainConfig::new(2, 0x4000a, map)
    }

    fn call(vm: &TestVm, abi: Abi, op: XenMemOp, start: u64, arg: u64) -> HcResult {
        vm.call(
            0,
            abi,
            HypercallNr::MemoryOp,
            &[memory_op_cmd(op, start), arg],
        )
    }

    fn write_words(vm: &TestVm, abi: Abi, gpa: u64, words: &[u64]) {
        for (i, &w) in words.iter().enumerate() {
            match abi {
                Abi::X86_64 => vm.write(gpa + 8 * i as u64, w),
                Abi::X86_32 => vm.write(gpa + 4 * i as u64, w as u32),
            }
        }
    }

    fn write_reservation(
        vm: &TestVm,
        abi: Abi,
        list: u64,
        nr: u64,
        order: u32,
        flags: u32,
        domid: DomId,
    ) {
        match abi {
            Abi::X86_64 => vm.write(
                ARG,
                XenMemoryReservation {
                    extent_start: list,
                    nr_extents: nr,
                    extent_order: order,
                    mem_flags: flags,
                    domid,
                    pad: [0; 3],
                },
            ),
            Abi::X86_32 => vm.write(
                ARG,
                XenMemoryReservationCompat {
                    extent_start: list as u32,
                    nr_extents: nr as u32,
                    extent_order: order,
                    mem_flags: flags,
                    domid,
                    pad: 0,
                },
            ),
        }
    }

    /// Runs a reservation op on `gfns` (extent list at LIST).
    fn reserve(
        vm: &TestVm,
        abi: Abi,
        op: XenMemOp,
        start: u64,
        gfns: &[u64],
        order: u32,
    ) -> HcResult {
        write_words(vm, abi, LIST, gfns);
        write_reservation(vm, abi, LIST, gfns.len() as u64, order, 0, DOMID_SELF);
        call(vm, abi, op, start, ARG)
    }

    fn decrease(vm: &TestVm, abi: Abi, gfns: &[u64]) -> HcResult {
        reserve(vm, abi, XenMemOp::DecreaseReservation, 0, gfns, 0)
    }

    fn populate(vm: &TestVm, abi: Abi, gfns: &[u64]) -> HcResult {
        reserve(vm, abi, XenMemOp::PopulatePhysmap, 0, gfns, 0)
    }

    fn write_xatp(vm: &TestVm, abi: Abi, domid: DomId, space: u32, idx: u64, gpfn: u64, size: u16) {
        match abi {
            Abi::X86_64 => vm.write(
                ARG,
                XenAddToPhysmap {
                    domid,
                    size,
                    space,
                    idx,
                    gpfn,
                },
            ),
            Abi::X86_32 => vm.write(
                ARG,
                XenAddToPhysmapCompat {
                    domid,
                    size,
                    space,
                    idx: idx as u32,
                    gpfn: gpfn as u32,
                },
            ),
        }
    }

    fn xatp(vm: &TestVm, abi: Abi, space: XenMapSpace, idx: u64, gpfn: u64) -> HcResult {
        write_xatp(vm, abi, DOMID_SELF, space.raw(), idx, gpfn, 0);
        call(vm, abi, XenMemOp::AddToPhysmap, 0, ARG)
    }

    fn write_batch(vm: &TestVm, abi: Abi, domid: DomId, space: u16, size: u16, errs: u64) {
        match abi {
            Abi::X86_64 => vm.write(
                ARG,
                XenAddToPhysmapBatch {
                    domid,
                    space,
                    size,
                    foreign_domid: 0,
                    idxs: LIST,
                    gpfns: LIST2,
                    errs,
                },
            ),
            Abi::X86_32 => vm.write(
                ARG,
                XenAddToPhysmapBatchCompat {
                    domid,
                    space,
                    size,
                    foreign_domid: 0,
                    idxs: LIST as u32,
                    gpfns: LIST2 as u32,
                    errs: errs as u32,
                },
            ),
        }
    }

    fn batch(
        vm: &TestVm,
        abi: Abi,
        space: XenMapSpace,
        start: u64,
        idxs: &[u64],
        gpfns: &[u64],
    ) -> HcResult {
        write_words(vm, abi, LIST, idxs);
        write_words(vm, abi, LIST2, gpfns);
        write_batch(
            vm,
            abi,
            DOMID_SELF,
            space.raw() as u16,
            idxs.len() as u16,
            ERRS,
        );
        call(vm, abi, XenMemOp::AddToPhysmapBatch, start, ARG)
    }

    fn errs(vm: &TestVm, n: usize) -> Vec<i32> {
        (0..n)
            .map(|i| vm.read::<i32>(ERRS + 4 * i as u64))
            .collect()
    }

    fn query(vm: &TestVm, abi: Abi, op: XenMemOp, domid: DomId) -> HcResult {
        vm.write(ARG, XenMemoryDomain { domid });
        call(vm, abi, op, 0, ARG)
    }

    fn fill_page(vm: &TestVm, gfn: u64, byte: u8) {
        vm.write_bytes(gfn * PAGE_SIZE, &[byte; PAGE_SIZE as usize]);
    }

    fn page(vm: &TestVm, gfn: u64) -> Vec<u8> {
        vm.read_bytes(gfn * PAGE_SIZE, PAGE_SIZE as usize)
    }

    // --- decrease / populate / increase -------------------------------------

    #[test]
    fn test_decrease_reservation_same_gfn_thrice_returns_1_0_0() {
        for abi in ABIS {
            let (vm, m) = setup();
            assert_eq!(decrease(&vm, abi, &[G]), Ok(1));
            assert_eq!(decrease(&vm, abi, &[G]), Ok(0));
            assert_eq!(decrease(&vm, abi, &[G]), Ok(0));
            assert_eq!(vm.rec.take(), vec![Event::Remove(G, 1)]);
            assert!(!m.is_populated(G));
            assert_eq!(m.current_pages(), RAM_PAGES - 1);
        }
    }

    #[test]
    fn test_populate_physmap_after_decrease_brings_back_zeroed_page() {
        for abi in ABIS {
            let (vm, m) = setup();
            fill_page(&vm, G, 0xaa);
            assert_eq!(decrease(&vm, abi, &[G]), Ok(1));
            assert_eq!(populate(&vm, abi, &[G]), Ok(1));
            assert_eq!(vm.rec.take(), vec![Event::Remove(G, 1), Event::Add(G, 1)]);
            assert!(m.is_populated(G));
            assert_eq!(page(&vm, G), vec![0; PAGE_SIZE as usize]);
            assert_eq!(
                query(&vm, abi, XenMemOp::CurrentReservation, DOMID_SELF),
                Ok(RAM_PAGES)
            );
        }
    }

    #[test]
    fn test_populate_physmap_beyond_max_pages_stops_at_limit() {
        let (vm, m) = setup();
        assert_eq!(decrease(&vm, Abi::X86_64, &[G, G + 1]), Ok(2));
        assert_eq!(decrease(&vm, Abi::X86_64, &[G + 2]), Ok(1));
        vm.rec.take();
        // max_pages is the RAM size: three pages of room.
        assert_eq!(populate(&vm, Abi::X86_64, &[G, G + 1]), Ok(2));
        assert_eq!(populate(&vm, Abi::X86_64, &[G + 2, G + 3]), Ok(1));
        assert_eq!(populate(&vm, Abi::X86_64, &[G + 4]), Ok(0));
        assert_eq!(m.current_pages(), RAM_PAGES);
        assert_eq!(
            vm.rec.take(),
            vec![Event::Add(G, 1), Event::Add(G + 1, 1), Event::Add(G + 2, 1)]
        );
    }

    #[test]
    fn test_populate_physmap_populated_gfn_replaces_page_and_charges_reservation() {
        let (vm, m) = setup();
        assert_eq!(decrease(&vm, Abi::X86_64, &[G]), Ok(1));
        vm.rec.take();
        fill_page(&vm, G + 1, 0x55);
        assert_eq!(populate(&vm, Abi::X86_64, &[G + 1]), Ok(1));
        assert_eq!(vm.rec.take(), vec![]);
        assert_eq!(page(&vm, G + 1), vec![0; PAGE_SIZE as usize]);
        // The replaced page stays charged: no room left for G.
        assert_eq!(m.current_pages(), RAM_PAGES);
        assert_eq!(populate(&vm, Abi::X86_64, &[G]), Ok(0));
        assert_eq!(m.state().unmapped_pages, 1);
    }

    #[test]
    fn test_populate_physmap_beyond_ram_limit_stops() {
        let (vm, _m) = setup();
        assert_eq!(decrease(&vm, Abi::X86_64, &[G]), Ok(1));
        assert_eq!(populate(&vm, Abi::X86_64, &[RAM_PAGES]), Ok(0));
        assert_eq!(populate(&vm, Abi::X86_64, &[u64::MAX]), Ok(0));
        assert_eq!(populate(&vm, Abi::X86_64, &[G, RAM_PAGES]), Ok(1));
        assert_eq!(vm.rec.take(), vec![Event::Remove(G, 1), Event::Add(G, 1)]);
    }

    #[test]
    fn test_populate_physmap_with_ram_limit_above_map_reaches_guest_memory() {
        let map = vec![E820Entry::new(0, RAM_SIZE / 2, E820Type::Ram)];
        let vm = TestVm::with_config(config(map));
        let (vm, m) = setup_with(vm);
        let high = RAM_PAGES / 2 + 7;
        assert_eq!(decrease(&vm, Abi::X86_64, &[G]), Ok(1));
        assert_eq!(populate(&vm, Abi::X86_64, &[high]), Ok(0));
        let mut vm = vm;
        let m2 = Arc::new(
            MemoryOp::from_state(&m.state())
                .unwrap()
                .with_ram_limit(RAM_PAGES * 2),
        );
        vm.dispatcher.register(HypercallNr::MemoryOp, m2.clone());
        // Below the new limit but outside guest memory: still refused.
        assert_eq!(populate(&vm, Abi::X86_64, &[RAM_PAGES + 1]), Ok(0));
        assert_eq!(populate(&vm, Abi::X86_64, &[high]), Ok(1));
        assert!(m2.is_populated(high));
        assert_eq!(m2.state().ram_limit, RAM_PAGES * 2);
    }

    #[test]
    fn test_populate_physmap_order_9_extent_adds_only_holes() {
        let (vm, m) = setup();
        let base = 0x400;
        assert_eq!(decrease(&vm, Abi::X86_64, &[base + 3]), Ok(1));
        assert_eq!(decrease(&vm, Abi::X86_64, &[base + 100, base + 101]), Ok(2));
        vm.rec.take();
        // Room for 3 pages only: an order-9 extent does not fit.
        assert_eq!(
            reserve(&vm, Abi::X86_64, XenMemOp::PopulatePhysmap, 0, &[base], 9),
            Ok(0)
        );
        assert_eq!(
            reserve(
                &vm,
                Abi::X86_64,
                XenMemOp::DecreaseReservation,
                0,
                &[0x800],
                9
            ),
            Ok(1)
        );
        vm.rec.take();
        assert_eq!(
            reserve(&vm, Abi::X86_64, XenMemOp::PopulatePhysmap, 0, &[base], 9),
            Ok(1)
        );
        assert_eq!(
            vm.rec.take(),
            vec![Event::Add(base + 3, 1), Event::Add(base + 100, 2)]
        );
        // 512 pages charged against 515 free; the 509 replaced ones stay owned.
        assert_eq!(m.current_pages(), RAM_PAGES - 3);
        assert_eq!(m.state().unmapped_pages, 509);
    }

    #[test]
    fn test_populate_physmap_populate_on_demand_on_self_returns_start() {
        let (vm, _m) = setup();
        assert_eq!(decrease(&vm, Abi::X86_64, &[G]), Ok(1));
        write_words(&vm, Abi::X86_64, LIST, &[G]);
        write_reservation(
            &vm,
            Abi::X86_64,
            LIST,
            1,
            0,
            XenMemf::POPULATE_ON_DEMAND.bits(),
            DOMID_SELF,
        );
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::PopulatePhysmap, 0, ARG),
            Ok(0)
        );
    }

    #[test]
    fn test_reservation_foreign_domid_returns_start_extent() {
        for abi in ABIS {
            let (vm, m) = setup();
            write_words(&vm, abi, LIST, &[G, G + 1]);
            for domid in [0, 5, 0x7ff1] {
                write_reservation(&vm, abi, LIST, 2, 0, 0, domid);
                assert_eq!(call(&vm, abi, XenMemOp::DecreaseReservation, 0, ARG), Ok(0));
                assert_eq!(call(&vm, abi, XenMemOp::DecreaseReservation, 1, ARG), Ok(1));
            }
            // The domain's own id works like DOMID_SELF.
            write_reservation(&vm, abi, LIST, 2, 0, 0, 1);
            assert_eq!(call(&vm, abi, XenMemOp::DecreaseReservation, 0, ARG), Ok(2));
            assert_eq!(m.current_pages(), RAM_PAGES - 2);
        }
    }

    #[test]
    fn test_reservation_order_above_9_returns_start() {
        let (vm, m) = setup();
        for op in [
            XenMemOp::DecreaseReservation,
            XenMemOp::PopulatePhysmap,
            XenMemOp::IncreaseReservation,
        ] {
            assert_eq!(reserve(&vm, Abi::X86_64, op, 0, &[0], 10), Ok(0));
        }
        assert_eq!(m.current_pages(), RAM_PAGES);
        assert_eq!(vm.rec.take(), vec![]);
    }

    #[test]
    fn test_reservation_struct_beyond_ram_returns_start_extent() {
        for abi in ABIS {
            let (vm, _m) = setup();
            assert_eq!(
                call(&vm, abi, XenMemOp::DecreaseReservation, 0, BEYOND),
                Ok(0)
            );
            assert_eq!(call(&vm, abi, XenMemOp::PopulatePhysmap, 3, BEYOND), Ok(3));
        }
    }

    #[test]
    fn test_reservation_bad_mem_flags_return_start() {
        let (vm, m) = setup();
        write_words(&vm, Abi::X86_64, LIST, &[G]);
        // address_bits of 12 or less cannot be satisfied.
        write_reservation(&vm, Abi::X86_64, LIST, 1, 0, 12, DOMID_SELF);
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::DecreaseReservation, 0, ARG),
            Ok(0)
        );
        // An exact NUMA node request is refused to a domU.
        let exact = (1 << 8) | XenMemf::EXACT_NODE_REQUEST.bits();
        write_reservation(&vm, Abi::X86_64, LIST, 1, 0, exact, DOMID_SELF);
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::DecreaseReservation, 0, ARG),
            Ok(0)
        );
        // address_bits 32 and a plain node hint are accepted and ignored.
        write_reservation(&vm, Abi::X86_64, LIST, 1, 0, 32 | (1 << 8), DOMID_SELF);
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::DecreaseReservation, 0, ARG),
            Ok(1)
        );
        assert_eq!(m.current_pages(), RAM_PAGES - 1);
    }

    #[test]
    fn test_reservation_continuation_start_extent_skips_done_extents() {
        for abi in ABIS {
            let (vm, m) = setup();
            let gfns = [G, G + 1, G + 2];
            assert_eq!(
                reserve(&vm, abi, XenMemOp::DecreaseReservation, 1, &gfns, 0),
                Ok(3)
            );
            assert!(m.is_populated(G));
            assert!(!m.is_populated(G + 1) && !m.is_populated(G + 2));
            assert_eq!(
                reserve(&vm, abi, XenMemOp::PopulatePhysmap, 2, &gfns, 0),
                Ok(3)
            );
            assert!(m.is_populated(G + 2) && !m.is_populated(G + 1));
        }
    }

    #[test]
    fn test_reservation_start_at_or_beyond_nr_extents_returns_start() {
        let (vm, m) = setup();
        assert_eq!(
            reserve(
                &vm,
                Abi::X86_64,
                XenMemOp::DecreaseReservation,
                2,
                &[G, G + 1],
                0
            ),
            Ok(2)
        );
        assert_eq!(
            reserve(
                &vm,
                Abi::X86_64,
                XenMemOp::DecreaseReservation,
                9,
                &[G, G + 1],
                0
            ),
            Ok(9)
        );
        assert_eq!(m.current_pages(), RAM_PAGES);
    }

    #[test]
    fn test_decrease_reservation_huge_nr_extents_returns_quickly() {
        for abi in ABIS {
            let (vm, m) = setup();
            let t = Instant::now();
            // More than Xen can encode in a continuation: nothing done.
            let huge = match abi {
                Abi::X86_64 => 1 << 60,
                Abi::X86_32 => MAX_NR_EXTENTS + 1,
            };
            write_reservation(&vm, abi, LIST, huge, 0, 0, DOMID_SELF);
            assert_eq!(call(&vm, abi, XenMemOp::DecreaseReservation, 0, ARG), Ok(0));
            // The largest legal count over a zeroed list: GFN 0 once, then
            // it is a hole and the call stops.
            vm.write_bytes(LIST, &[0; 64]);
            write_reservation(&vm, abi, LIST, MAX_NR_EXTENTS, 0, 0, DOMID_SELF);
            assert_eq!(call(&vm, abi, XenMemOp::DecreaseReservation, 0, ARG), Ok(1));
            assert_eq!(call(&vm, abi, XenMemOp::IncreaseReservation, 0, ARG), Ok(1));
            assert!(t.elapsed() < Duration::from_secs(2));
            assert_eq!(m.current_pages(), RAM_PAGES);
        }
    }

    #[test]
    fn test_populate_physmap_huge_nr_extents_capped_per_call() {
        let mut cfg = config(vec![E820Entry::new(0, RAM_SIZE, E820Type::Ram)]);
        cfg.max_pages = u64::MAX;
        let (vm, m) = setup_with(TestVm::with_config(cfg));
        vm.write_bytes(LIST, &[0; 64]);
        let t = Instant::now();
        // Every extent names GFN 0, which is replaced again and again.
        write_reservation(&vm, Abi::X86_64, LIST, MAX_NR_EXTENTS, 0, 0, DOMID_SELF);
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::PopulatePhysmap, 0, ARG),
            Ok(MAX_EXTENTS_PER_CALL)
        );
        write_reservation(&vm, Abi::X86_64, LIST, MAX_NR_EXTENTS, 9, 0, DOMID_SELF);
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::PopulatePhysmap, 0, ARG),
            Ok(MAX_PAGES_PER_CALL >> 9)
        );
        write_reservation(&vm, Abi::X86_64, LIST, MAX_NR_EXTENTS, 0, 0, DOMID_SELF);
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::IncreaseReservation, 5, ARG),
            Ok(5 + MAX_EXTENTS_PER_CALL)
        );
        assert!(t.elapsed() < Duration::from_secs(20));
        assert_eq!(
            m.current_pages(),
            RAM_PAGES + 2 * MAX_EXTENTS_PER_CALL + MAX_PAGES_PER_CALL
        );
    }

    #[test]
    fn test_decrease_reservation_backing_refusal_stops() {
        let (vm, m) = setup();
        vm.rec.refuse_backing.store(true, Ordering::SeqCst);
        assert_eq!(decrease(&vm, Abi::X86_64, &[G, G + 1]), Ok(0));
        assert!(m.is_populated(G));
        assert_eq!(m.current_pages(), RAM_PAGES);
        assert_eq!(vm.rec.take(), vec![Event::Remove(G, 1)]);
    }

    #[test]
    fn test_populate_physmap_backing_refusal_stops() {
        let (vm, m) = setup();
        assert_eq!(decrease(&vm, Abi::X86_64, &[G]), Ok(1));
        vm.rec.refuse_backing.store(true, Ordering::SeqCst);
        assert_eq!(populate(&vm, Abi::X86_64, &[G]), Ok(0));
        assert!(!m.is_populated(G));
        assert_eq!(m.current_pages(), RAM_PAGES - 1);
    }

    #[test]
    fn test_populate_physmap_refusal_mid_extent_undoes_earlier_adds() {
        struct RefuseSecond(std::sync::Mutex<Vec<Event>>);
        impl crate::env::MemoryBacking for RefuseSecond {
            fn add(&self, gfn: u64, count: u64) -> bool {
                let mut v = self.0.lock().unwrap();
                v.push(Event::Add(gfn, count));
                v.len() < 2
            }
            fn remove(&self, gfn: u64, count: u64) -> bool {
                self.0.lock().unwrap().push(Event::Remove(gfn, count));
                true
            }
        }
        let (mut vm, m) = setup();
        assert_eq!(
            decrease(&vm, Abi::X86_64, &[0x200, 0x202, 0x300, 0x301]),
            Ok(4)
        );
        let rec = Arc::new(RefuseSecond(Default::default()));
        let mut env = vm.domain.env.clone();
        env.backing = rec.clone();
        vm.domain = std::sync::Arc::new(crate::Domain::new(vm.domain.config().clone(), env));
        assert_eq!(
            reserve(&vm, Abi::X86_64, XenMemOp::PopulatePhysmap, 0, &[0x200], 2),
            Ok(0)
        );
        assert_eq!(
            *rec.0.lock().unwrap(),
            vec![
                Event::Add(0x200, 1),
                Event::Add(0x202, 1),
                Event::Remove(0x200, 1)
            ]
        );
        assert!(!m.is_populated(0x200));
    }

    #[test]
    fn test_decrease_reservation_order_1_with_hole_stops_after_first_page() {
        let (vm, m) = setup();
        assert_eq!(decrease(&vm, Abi::X86_64, &[G + 1]), Ok(1));
        vm.rec.take();
        assert_eq!(
            reserve(&vm, Abi::X86_64, XenMemOp::DecreaseReservation, 0, &[G], 1),
            Ok(0)
        );
        // As in Xen, the pages before the hole were freed anyway.
        assert_eq!(vm.rec.take(), vec![Event::Remove(G, 1)]);
        assert!(!m.is_populated(G));
        assert_eq!(
            reserve(
                &vm,
                Abi::X86_64,
                XenMemOp::DecreaseReservation,
                0,
                &[G + 2],
                1
            ),
            Ok(1)
        );
        assert_eq!(vm.rec.take(), vec![Event::Remove(G + 2, 2)]);
    }

    #[test]
    fn test_decrease_reservation_extent_list_fault_stops() {
        for abi in ABIS {
            let (vm, m) = setup();
            write_reservation(&vm, abi, BEYOND, 2, 0, 0, DOMID_SELF);
            assert_eq!(call(&vm, abi, XenMemOp::DecreaseReservation, 0, ARG), Ok(0));
            assert_eq!(call(&vm, abi, XenMemOp::PopulatePhysmap, 0, ARG), Ok(0));
            assert_eq!(m.current_pages(), RAM_PAGES);
        }
    }

    #[test]
    fn test_decrease_reservation_wrapping_gfn_stops() {
        let (vm, _m) = setup();
        assert_eq!(
            reserve(
                &vm,
                Abi::X86_64,
                XenMemOp::DecreaseReservation,
                0,
                &[u64::MAX],
                1
            ),
            Ok(0)
        );
        assert_eq!(vm.rec.take(), vec![]);
    }

    #[test]
    fn test_increase_reservation_charges_unmapped_pages_up_to_max() {
        for abi in ABIS {
            let (vm, m) = setup();
            assert_eq!(decrease(&vm, abi, &[G, G + 1, G + 2]), Ok(3));
            vm.rec.take();
            write_reservation(&vm, abi, 0, 5, 0, 0, DOMID_SELF);
            assert_eq!(call(&vm, abi, XenMemOp::IncreaseReservation, 0, ARG), Ok(3));
            assert_eq!(m.current_pages(), RAM_PAGES);
            assert_eq!(vm.rec.take(), vec![]);
            assert!(!m.is_populated(G));
            assert_eq!(decrease(&vm, abi, &[G + 3, G + 4, G + 5]), Ok(3));
            write_reservation(&vm, abi, 0, 2, 1, 0, DOMID_SELF);
            assert_eq!(call(&vm, abi, XenMemOp::IncreaseReservation, 0, ARG), Ok(1));
            assert_eq!(m.current_pages(), RAM_PAGES - 1);
        }
    }

    #[test]
    fn test_decrease_reservation_on_special_frames_unmaps_them() {
        let (vm, m) = setup();
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::SharedInfo, 0, HOLE_AREA),
            Ok(0)
        );
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::GrantTable, 0, HOLE_AREA + 1),
            Ok(0)
        );
        assert_eq!(
            reserve(
                &vm,
                Abi::X86_64,
                XenMemOp::DecreaseReservation,
                0,
                &[HOLE_AREA],
                1
            ),
            Ok(1)
        );
        assert_eq!(vm.domain.shared_info_gpa(), None);
        assert_eq!(m.grant_frame_gfn(0), None);
        assert_eq!(vm.rec.take(), vec![]);
        assert_eq!(m.current_pages(), RAM_PAGES);
    }

    // --- add_to_physmap ---------------------------------------------------------------

    #[test]
    fn test_add_to_physmap_shared_info_on_ram_frees_page() {
        for abi in ABIS {
            let (vm, m) = setup();
            assert_eq!(xatp(&vm, abi, XenMapSpace::SharedInfo, 0, G), Ok(0));
            assert_eq!(vm.domain.shared_info_gpa(), Some(G * PAGE_SIZE));
            assert_eq!(vm.rec.take(), vec![Event::Remove(G, 1)]);
            assert!(!m.is_populated(G));
            assert_eq!(
                query(&vm, abi, XenMemOp::CurrentReservation, DOMID_SELF),
                Ok(RAM_PAGES - 1)
            );
        }
    }

    #[test]
    fn test_add_to_physmap_shared_info_moved_leaves_old_gfn_a_hole() {
        let (vm, m) = setup();
        assert_eq!(xatp(&vm, Abi::X86_64, XenMapSpace::SharedInfo, 0, G), Ok(0));
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::SharedInfo, 0, G + 1),
            Ok(0)
        );
        assert_eq!(vm.domain.shared_info_gpa(), Some((G + 1) * PAGE_SIZE));
        assert_eq!(
            vm.rec.take(),
            vec![Event::Remove(G, 1), Event::Remove(G + 1, 1)]
        );
        // The old GFN holds nothing at all now.
        assert_eq!(decrease(&vm, Abi::X86_64, &[G]), Ok(0));
        write_xatp(&vm, Abi::X86_64, DOMID_SELF, 0, 0, 0, 0);
        vm.write(
            ARG,
            XenRemoveFromPhysmap {
                domid: DOMID_SELF,
                pad: [0; 3],
                gpfn: G,
            },
        );
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::RemoveFromPhysmap, 0, ARG),
            Err(XenErrno::ENOENT)
        );
        assert_eq!(m.current_pages(), RAM_PAGES - 2);
        // Outside RAM no backing changes at all.
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::SharedInfo, 0, HOLE_AREA),
            Ok(0)
        );
        assert_eq!(vm.rec.take(), vec![]);
        assert_eq!(populate(&vm, Abi::X86_64, &[G]), Ok(1));
        assert_eq!(vm.rec.take(), vec![Event::Add(G, 1)]);
    }

    #[test]
    fn test_add_to_physmap_shared_info_same_gfn_twice_changes_nothing() {
        let (vm, m) = setup();
        assert_eq!(xatp(&vm, Abi::X86_64, XenMapSpace::SharedInfo, 0, G), Ok(0));
        vm.rec.take();
        assert_eq!(xatp(&vm, Abi::X86_64, XenMapSpace::SharedInfo, 0, G), Ok(0));
        assert_eq!(vm.rec.take(), vec![]);
        assert_eq!(m.current_pages(), RAM_PAGES - 1);
    }

    #[test]
    fn test_add_to_physmap_shared_info_nonzero_idx_is_einval() {
        for abi in ABIS {
            let (vm, _m) = setup();
            assert_eq!(
                xatp(&vm, abi, XenMapSpace::SharedInfo, 1, G),
                Err(XenErrno::EINVAL)
            );
            assert_eq!(vm.domain.shared_info_gpa(), None);
        }
    }

    #[test]
    fn test_add_to_physmap_other_domains_are_esrch_or_eperm() {
        for abi in ABIS {
            let (vm, _m) = setup();
            for (domid, e) in [
                (2, XenErrno::ESRCH),
                (0x7ff2, XenErrno::ESRCH),
                (0, XenErrno::EPERM),
            ] {
                write_xatp(&vm, abi, domid, 0, 0, G, 0);
                assert_eq!(call(&vm, abi, XenMemOp::AddToPhysmap, 0, ARG), Err(e));
            }
            write_xatp(&vm, abi, 1, 0, 0, G, 0);
            assert_eq!(call(&vm, abi, XenMemOp::AddToPhysmap, 0, ARG), Ok(0));
        }
    }

    #[test]
    fn test_add_to_physmap_grant_frame_records_and_moves_gfn() {
        for abi in ABIS {
            let (vm, m) = setup();
            assert_eq!(
                xatp(&vm, abi, XenMapSpace::GrantTable, 3, HOLE_AREA + 3),
                Ok(0)
            );
            assert_eq!(m.grant_frame_gfn(3), Some(HOLE_AREA + 3));
            assert_eq!(
                xatp(&vm, abi, XenMapSpace::GrantTable, 3, HOLE_AREA + 9),
                Ok(0)
            );
            assert_eq!(m.grant_frame_gfn(3), Some(HOLE_AREA + 9));
            // A grant frame mapped over another one unhooks it.
            assert_eq!(
                xatp(&vm, abi, XenMapSpace::GrantTable, 4, HOLE_AREA + 9),
                Ok(0)
            );
            assert_eq!(
                (m.grant_frame_gfn(3), m.grant_frame_gfn(4)),
                (None, Some(HOLE_AREA + 9))
            );
            assert_eq!(
                query(&vm, abi, XenMemOp::MaximumGpfn, DOMID_SELF),
                Ok(HOLE_AREA + 9)
            );
            assert_eq!(vm.rec.take(), vec![]);
            assert_eq!(m.grant_frame_gfn(99), None);
        }
    }

    #[test]
    fn test_add_to_physmap_grant_frame_beyond_max_is_einval() {
        for abi in ABIS {
            let (vm, m) = setup();
            let max = u64::from(DEFAULT_MAX_GRANT_FRAMES);
            assert_eq!(
                xatp(&vm, abi, XenMapSpace::GrantTable, max, HOLE_AREA),
                Err(XenErrno::EINVAL)
            );
            assert_eq!(
                xatp(&vm, abi, XenMapSpace::GrantTable, max - 1, HOLE_AREA),
                Ok(0)
            );
            // Status frames need grant table v2.
            let status0 = XENMAPIDX_GRANT_TABLE_STATUS;
            assert_eq!(
                xatp(&vm, abi, XenMapSpace::GrantTable, status0, HOLE_AREA + 1),
                Err(XenErrno::EINVAL)
            );
            assert!(m.set_grant_v2(true).is_empty());
            assert_eq!(
                xatp(&vm, abi, XenMapSpace::GrantTable, status0, HOLE_AREA + 1),
                Ok(0)
            );
            assert_eq!(m.status_frame_gfn(0), Some(HOLE_AREA + 1));
            let max_status = u64::from(m.grant_frames().max_status_frames);
            assert_eq!(
                xatp(
                    &vm,
                    abi,
                    XenMapSpace::GrantTable,
                    status0 | max_status,
                    HOLE_AREA + 2
                ),
                Err(XenErrno::EINVAL)
            );
            assert_eq!(m.set_grant_v2(false), vec![HOLE_AREA + 1]);
            assert_eq!(m.status_frame_gfn(0), None);
        }
    }

    #[test]
    fn test_add_to_physmap_gmfn_moves_page_contents_into_hole() {
        for abi in ABIS {
            let (vm, m) = setup();
            assert_eq!(decrease(&vm, abi, &[G + 1]), Ok(1));
            vm.rec.take();
            fill_page(&vm, G, 0x5a);
            assert_eq!(xatp(&vm, abi, XenMapSpace::Gmfn, G, G + 1), Ok(0));
            assert_eq!(
                vm.rec.take(),
                vec![Event::Add(G + 1, 1), Event::Remove(G, 1)]
            );
            assert_eq!(page(&vm, G + 1), vec![0x5a; PAGE_SIZE as usize]);
            assert!(!m.is_populated(G) && m.is_populated(G + 1));
            assert_eq!(m.current_pages(), RAM_PAGES - 1);
        }
    }

    #[test]
    fn test_add_to_physmap_gmfn_onto_ram_frees_target_page() {
        let (vm, m) = setup();
        fill_page(&vm, G, 0x11);
        fill_page(&vm, G + 1, 0x22);
        assert_eq!(xatp(&vm, Abi::X86_64, XenMapSpace::Gmfn, G, G + 1), Ok(0));
        assert_eq!(vm.rec.take(), vec![Event::Remove(G, 1)]);
        assert_eq!(page(&vm, G + 1), vec![0x11; PAGE_SIZE as usize]);
        assert_eq!(m.current_pages(), RAM_PAGES - 1);
        // Moving a page onto itself changes nothing.
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::Gmfn, G + 1, G + 1),
            Ok(0)
        );
        assert_eq!(vm.rec.take(), vec![]);
    }

    #[test]
    fn test_add_to_physmap_gmfn_onto_shared_info_unhooks_it() {
        let (vm, m) = setup();
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::SharedInfo, 0, G + 1),
            Ok(0)
        );
        vm.rec.take();
        assert_eq!(xatp(&vm, Abi::X86_64, XenMapSpace::Gmfn, G, G + 1), Ok(0));
        assert_eq!(vm.domain.shared_info_gpa(), None);
        assert_eq!(
            vm.rec.take(),
            vec![Event::Add(G + 1, 1), Event::Remove(G, 1)]
        );
        assert!(m.is_populated(G + 1));
    }

    #[test]
    fn test_add_to_physmap_gmfn_of_shared_info_moves_it() {
        let (vm, _m) = setup();
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::SharedInfo, 0, HOLE_AREA),
            Ok(0)
        );
        assert_eq!(
            xatp(
                &vm,
                Abi::X86_64,
                XenMapSpace::Gmfn,
                HOLE_AREA,
                HOLE_AREA + 1
            ),
            Ok(0)
        );
        assert_eq!(
            vm.domain.shared_info_gpa(),
            Some((HOLE_AREA + 1) * PAGE_SIZE)
        );
    }

    #[test]
    fn test_add_to_physmap_gmfn_unpopulated_source_is_einval() {
        for abi in ABIS {
            let (vm, _m) = setup();
            assert_eq!(decrease(&vm, abi, &[G]), Ok(1));
            vm.rec.take();
            assert_eq!(
                xatp(&vm, abi, XenMapSpace::Gmfn, G, G + 1),
                Err(XenErrno::EINVAL)
            );
            assert_eq!(
                xatp(&vm, abi, XenMapSpace::Gmfn, RAM_PAGES + 5, G + 1),
                Err(XenErrno::EINVAL)
            );
            assert_eq!(vm.rec.take(), vec![]);
        }
    }

    #[test]
    fn test_add_to_physmap_gmfn_target_outside_ram_is_einval() {
        let (vm, m) = setup();
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::Gmfn, G, RAM_PAGES),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(vm.rec.take(), vec![]);
        assert!(m.is_populated(G));
    }

    #[test]
    fn test_add_to_physmap_gmfn_range_moves_every_page() {
        for abi in ABIS {
            let (vm, m) = setup();
            for k in 0..3 {
                fill_page(&vm, G + k, k as u8 + 1);
            }
            write_xatp(
                &vm,
                abi,
                DOMID_SELF,
                XenMapSpace::GmfnRange.raw(),
                G,
                G + 0x10,
                3,
            );
            assert_eq!(call(&vm, abi, XenMemOp::AddToPhysmap, 0, ARG), Ok(0));
            for k in 0..3 {
                assert_eq!(
                    page(&vm, G + 0x10 + k),
                    vec![k as u8 + 1; PAGE_SIZE as usize]
                );
                assert!(!m.is_populated(G + k));
            }
            assert_eq!(
                vm.rec.take(),
                vec![
                    Event::Remove(G, 1),
                    Event::Remove(G + 1, 1),
                    Event::Remove(G + 2, 1)
                ]
            );
            // A continuation starts at its extent: only the last page moves.
            write_xatp(
                &vm,
                abi,
                DOMID_SELF,
                XenMapSpace::GmfnRange.raw(),
                G + 0x10,
                G + 0x20,
                3,
            );
            assert_eq!(call(&vm, abi, XenMemOp::AddToPhysmap, 2, ARG), Ok(0));
            assert_eq!(vm.rec.take(), vec![Event::Remove(G + 0x12, 1)]);
            assert!(m.is_populated(G + 0x10) && m.is_populated(G + 0x22));
        }
    }

    #[test]
    fn test_add_to_physmap_gmfn_range_stops_at_first_error() {
        let (vm, m) = setup();
        assert_eq!(decrease(&vm, Abi::X86_64, &[G + 1]), Ok(1));
        vm.rec.take();
        write_xatp(
            &vm,
            Abi::X86_64,
            DOMID_SELF,
            XenMapSpace::GmfnRange.raw(),
            G,
            G + 0x10,
            3,
        );
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::AddToPhysmap, 0, ARG),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(vm.rec.take(), vec![Event::Remove(G, 1)]);
        assert!(m.is_populated(G + 2));
    }

    #[test]
    fn test_add_to_physmap_gmfn_range_start_beyond_size_is_eilseq() {
        let (vm, _m) = setup();
        write_xatp(
            &vm,
            Abi::X86_64,
            DOMID_SELF,
            XenMapSpace::GmfnRange.raw(),
            G,
            G + 0x10,
            3,
        );
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::AddToPhysmap, 4, ARG),
            Err(XenErrno::EILSEQ)
        );
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::AddToPhysmap, 3, ARG),
            Ok(0)
        );
        assert_eq!(vm.rec.take(), vec![]);
    }

    #[test]
    fn test_add_to_physmap_start_extent_above_u16_is_edom() {
        let (vm, _m) = setup();
        write_xatp(&vm, Abi::X86_64, DOMID_SELF, 0, 0, G, 0);
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::AddToPhysmap, 0x1_0000, ARG),
            Err(XenErrno::EDOM)
        );
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::AddToPhysmapBatch, 0x1_0000, ARG),
            Err(XenErrno::EDOM)
        );
    }

    #[test]
    fn test_add_to_physmap_refused_spaces_return_xen_errnos() {
        for abi in ABIS {
            let (vm, _m) = setup();
            assert_eq!(
                xatp(&vm, abi, XenMapSpace::GmfnForeign, G, G + 1),
                Err(XenErrno::ENOSYS)
            );
            assert_eq!(
                xatp(&vm, abi, XenMapSpace::DevMmio, G, G + 1),
                Err(XenErrno::EACCES)
            );
            write_xatp(&vm, abi, DOMID_SELF, 6, G, G + 1, 0);
            assert_eq!(
                call(&vm, abi, XenMemOp::AddToPhysmap, 0, ARG),
                Err(XenErrno::EINVAL)
            );
            assert_eq!(vm.rec.take(), vec![]);
        }
    }

    #[test]
    fn test_add_to_physmap_gpfn_beyond_max_gpfn_is_einval() {
        let (vm, _m) = setup();
        let too_far = DEFAULT_MAX_GPFN + 1;
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::SharedInfo, 0, too_far),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            xatp(
                &vm,
                Abi::X86_64,
                XenMapSpace::SharedInfo,
                0,
                DEFAULT_MAX_GPFN
            ),
            Ok(0)
        );
        let (mut vm, m) = setup();
        let m2 = Arc::new(
            MemoryOp::from_state(&m.state())
                .unwrap()
                .with_max_gpfn(0xfffff),
        );
        vm.dispatcher.register(HypercallNr::MemoryOp, m2);
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::GrantTable, 0, 0x100000),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::GrantTable, 0, 0xfffff),
            Ok(0)
        );
    }

    #[test]
    fn test_add_to_physmap_struct_beyond_ram_is_efault() {
        for abi in ABIS {
            let (vm, _m) = setup();
            assert_eq!(
                call(&vm, abi, XenMemOp::AddToPhysmap, 0, BEYOND),
                Err(XenErrno::EFAULT)
            );
            assert_eq!(
                call(&vm, abi, XenMemOp::AddToPhysmapBatch, 0, BEYOND),
                Err(XenErrno::EFAULT)
            );
        }
    }

    #[test]
    fn test_add_to_physmap_backing_refusal_changes_nothing() {
        let (vm, m) = setup();
        assert_eq!(decrease(&vm, Abi::X86_64, &[G + 1]), Ok(1));
        vm.rec.refuse_backing.store(true, Ordering::SeqCst);
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::SharedInfo, 0, G),
            Err(XenErrno::EBUSY)
        );
        assert_eq!(vm.domain.shared_info_gpa(), None);
        assert!(m.is_populated(G));
        // Into a hole the VMM will not back.
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::Gmfn, G, G + 1),
            Err(XenErrno::ENOMEM)
        );
        // Onto RAM, but the source cannot be dropped.
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::Gmfn, G, G + 2),
            Err(XenErrno::EBUSY)
        );
        assert!(m.is_populated(G) && m.is_populated(G + 2) && !m.is_populated(G + 1));
        assert_eq!(m.current_pages(), RAM_PAGES - 1);
    }

    // --- add_to_physmap_batch ----------------------------------------------------------

    #[test]
    fn test_add_to_physmap_batch_reports_errs_per_entry() {
        for abi in ABIS {
            let (vm, m) = setup();
            let r = batch(
                &vm,
                abi,
                XenMapSpace::GrantTable,
                0,
                &[0, 64, 1],
                &[HOLE_AREA, HOLE_AREA + 1, HOLE_AREA + 2],
            );
            assert_eq!(r, Ok(0));
            assert_eq!(errs(&vm, 3), vec![0, -22, 0]);
            assert_eq!(m.grant_frame_gfn(0), Some(HOLE_AREA));
            assert_eq!(m.grant_frame_gfn(1), Some(HOLE_AREA + 2));
        }
    }

    #[test]
    fn test_add_to_physmap_batch_gmfn_moves_pages() {
        let (vm, m) = setup();
        fill_page(&vm, G, 0x77);
        assert_eq!(
            batch(
                &vm,
                Abi::X86_32,
                XenMapSpace::Gmfn,
                0,
                &[G, G + 5],
                &[G + 1, G + 2]
            ),
            Ok(0)
        );
        assert_eq!(errs(&vm, 2), vec![0, 0]);
        assert_eq!(page(&vm, G + 1), vec![0x77; PAGE_SIZE as usize]);
        assert!(!m.is_populated(G) && !m.is_populated(G + 5));
    }

    #[test]
    fn test_add_to_physmap_batch_gmfn_range_is_eopnotsupp() {
        let (vm, _m) = setup();
        assert_eq!(
            batch(&vm, Abi::X86_64, XenMapSpace::GmfnRange, 0, &[G], &[G + 1]),
            Err(XenErrno::EOPNOTSUPP)
        );
    }

    #[test]
    fn test_add_to_physmap_batch_foreign_entries_are_eperm() {
        for abi in ABIS {
            let (vm, _m) = setup();
            assert_eq!(
                batch(&vm, abi, XenMapSpace::GmfnForeign, 0, &[1, 2], &[G, G + 1]),
                Ok(0)
            );
            assert_eq!(errs(&vm, 2), vec![-1, -1]);
            assert_eq!(
                batch(&vm, abi, XenMapSpace::DevMmio, 0, &[1], &[G]),
                Err(XenErrno::EACCES)
            );
        }
    }

    #[test]
    fn test_add_to_physmap_batch_start_extent_skips_entries() {
        for abi in ABIS {
            let (vm, m) = setup();
            vm.write(ERRS, 0x7777_i32);
            let gpfns = [HOLE_AREA, HOLE_AREA + 1, HOLE_AREA + 2];
            assert_eq!(
                batch(&vm, abi, XenMapSpace::GrantTable, 1, &[0, 1, 2], &gpfns),
                Ok(0)
            );
            assert_eq!(errs(&vm, 3), vec![0x7777, 0, 0]);
            assert_eq!(m.grant_frame_gfn(0), None);
            assert_eq!(m.grant_frame_gfn(2), Some(HOLE_AREA + 2));
            assert_eq!(
                batch(&vm, abi, XenMapSpace::GrantTable, 3, &[0, 1, 2], &gpfns),
                Err(XenErrno::EILSEQ)
            );
            assert_eq!(
                batch(&vm, abi, XenMapSpace::GrantTable, 4, &[0, 1, 2], &gpfns),
                Err(XenErrno::EILSEQ)
            );
            assert_eq!(batch(&vm, abi, XenMapSpace::GrantTable, 0, &[], &[]), Ok(0));
        }
    }

    #[test]
    fn test_add_to_physmap_batch_bad_pointers_are_efault() {
        for abi in ABIS {
            let (vm, m) = setup();
            write_words(&vm, abi, LIST, &[0, 1]);
            write_words(&vm, abi, LIST2, &[HOLE_AREA, HOLE_AREA + 1]);
            write_batch(
                &vm,
                abi,
                DOMID_SELF,
                XenMapSpace::GrantTable.raw() as u16,
                2,
                BEYOND,
            );
            assert_eq!(
                call(&vm, abi, XenMemOp::AddToPhysmapBatch, 0, ARG),
                Err(XenErrno::EFAULT)
            );
            // The entry was processed before its result could not be stored.
            assert_eq!(m.grant_frame_gfn(0), Some(HOLE_AREA));
            write_batch(&vm, abi, 7, XenMapSpace::GrantTable.raw() as u16, 2, ERRS);
            assert_eq!(
                call(&vm, abi, XenMemOp::AddToPhysmapBatch, 0, ARG),
                Err(XenErrno::ESRCH)
            );
        }
    }

    // --- memory_map, remove_from_physmap, queries ----------------------------------

    fn three_entry_map() -> Vec<E820Entry> {
        vec![
            E820Entry::new(0, 0x9fc00, E820Type::Ram),
            E820Entry::new(0xf0000, 0x10000, E820Type::Reserved),
            E820Entry::new(0x10_0000, RAM_SIZE - 0x10_0000, E820Type::Ram),
        ]
    }

    fn write_map_arg(vm: &TestVm, abi: Abi, capacity: u32, buffer: u64) {
        match abi {
            Abi::X86_64 => vm.write(
                ARG,
                XenMemoryMap {
                    nr_entries: capacity,
                    pad: 0,
                    buffer,
                },
            ),
            Abi::X86_32 => vm.write(
                ARG,
                XenMemoryMapCompat {
                    nr_entries: capacity,
                    buffer: buffer as u32,
                },
            ),
        }
    }

    #[test]
    fn test_memory_map_writes_entries_and_count() {
        for abi in ABIS {
            let map = three_entry_map();
            let (vm, _m) = setup_with(TestVm::with_config(config(map.clone())));
            write_map_arg(&vm, abi, 8, LIST);
            assert_eq!(call(&vm, abi, XenMemOp::MemoryMap, 0, ARG), Ok(0));
            assert_eq!(vm.read::<u32>(ARG), 3);
            for (i, e) in map.iter().enumerate() {
                assert_eq!(vm.read::<E820Entry>(LIST + 20 * i as u64), *e);
            }
        }
    }

    #[test]
    fn test_memory_map_small_capacity_truncates() {
        for abi in ABIS {
            let map = three_entry_map();
            let (vm, _m) = setup_with(TestVm::with_config(config(map.clone())));
            vm.write_bytes(LIST, &[0xee; 60]);
            write_map_arg(&vm, abi, 2, LIST);
            assert_eq!(call(&vm, abi, XenMemOp::MemoryMap, 0, ARG), Ok(0));
            assert_eq!(vm.read::<u32>(ARG), 2);
            assert_eq!(vm.read::<E820Entry>(LIST + 20), map[1]);
            assert_eq!(vm.read_bytes(LIST + 40, 20), vec![0xee; 20]);
            write_map_arg(&vm, abi, 0, LIST);
            assert_eq!(call(&vm, abi, XenMemOp::MemoryMap, 0, ARG), Ok(0));
            assert_eq!(vm.read::<u32>(ARG), 0);
        }
    }

    #[test]
    fn test_memory_map_buffer_over_its_struct_keeps_xens_copy() {
        for abi in ABIS {
            let (vm, _m) = setup();
            write_map_arg(&vm, abi, 1, ARG);
            assert_eq!(call(&vm, abi, XenMemOp::MemoryMap, 0, ARG), Ok(0));
            assert_eq!(vm.read::<u32>(ARG), 1);
            match abi {
                Abi::X86_64 => assert_eq!(vm.read::<u64>(ARG + 8), ARG),
                Abi::X86_32 => assert_eq!(vm.read::<u32>(ARG + 4), ARG as u32),
            }
        }
    }

    #[test]
    fn test_memory_op_32_bit_ignores_upper_register_halves() {
        let (vm, _m) = setup();
        write_words(&vm, Abi::X86_32, LIST, &[G]);
        write_reservation(&vm, Abi::X86_32, LIST, 1, 0, 0, DOMID_SELF);
        let cmd = memory_op_cmd(XenMemOp::DecreaseReservation, 0) | 0xffff_0000_0000_0000;
        let r = vm.call(
            0,
            Abi::X86_32,
            HypercallNr::MemoryOp,
            &[cmd, ARG | 0x1234_0000_0000],
        );
        assert_eq!(r, Ok(1));
    }

    #[test]
    fn test_memory_map_bad_pointers_are_efault() {
        for abi in ABIS {
            let (vm, _m) = setup();
            assert_eq!(
                call(&vm, abi, XenMemOp::MemoryMap, 0, BEYOND),
                Err(XenErrno::EFAULT)
            );
            write_map_arg(&vm, abi, 4, BEYOND);
            assert_eq!(
                call(&vm, abi, XenMemOp::MemoryMap, 0, ARG),
                Err(XenErrno::EFAULT)
            );
            assert_eq!(vm.read::<u32>(ARG), 4);
        }
    }

    #[test]
    fn test_memory_map_empty_map_or_start_extent_is_enosys() {
        let (vm, _m) = setup_with(TestVm::with_config(config(vec![])));
        write_map_arg(&vm, Abi::X86_64, 4, LIST);
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::MemoryMap, 0, ARG),
            Err(XenErrno::ENOSYS)
        );
        let (vm, _m) = setup();
        write_map_arg(&vm, Abi::X86_64, 4, LIST);
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::MemoryMap, 1, ARG),
            Err(XenErrno::ENOSYS)
        );
    }

    fn remove(vm: &TestVm, abi: Abi, domid: DomId, gpfn: u64, start: u64) -> HcResult {
        match abi {
            Abi::X86_64 => vm.write(
                ARG,
                XenRemoveFromPhysmap {
                    domid,
                    pad: [0; 3],
                    gpfn,
                },
            ),
            Abi::X86_32 => vm.write(
                ARG,
                XenRemoveFromPhysmapCompat {
                    domid,
                    pad: 0,
                    gpfn: gpfn as u32,
                },
            ),
        }
        call(vm, abi, XenMemOp::RemoveFromPhysmap, start, ARG)
    }

    #[test]
    fn test_remove_from_physmap_ram_unmaps_but_keeps_reservation() {
        for abi in ABIS {
            let (vm, m) = setup();
            assert_eq!(remove(&vm, abi, DOMID_SELF, G, 0), Ok(0));
            assert_eq!(vm.rec.take(), vec![Event::Remove(G, 1)]);
            assert!(!m.is_populated(G));
            assert_eq!(m.current_pages(), RAM_PAGES);
            assert_eq!(remove(&vm, abi, DOMID_SELF, G, 0), Err(XenErrno::ENOENT));
        }
    }

    #[test]
    fn test_remove_from_physmap_special_frames_are_unhooked() {
        let (vm, m) = setup();
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::SharedInfo, 0, HOLE_AREA),
            Ok(0)
        );
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::GrantTable, 2, HOLE_AREA + 1),
            Ok(0)
        );
        assert_eq!(remove(&vm, Abi::X86_32, DOMID_SELF, HOLE_AREA, 0), Ok(0));
        assert_eq!(
            remove(&vm, Abi::X86_32, DOMID_SELF, HOLE_AREA + 1, 0),
            Ok(0)
        );
        assert_eq!(vm.domain.shared_info_gpa(), None);
        assert_eq!(m.grant_frame_gfn(2), None);
        assert_eq!(vm.rec.take(), vec![]);
    }

    #[test]
    fn test_remove_from_physmap_errors() {
        for abi in ABIS {
            let (vm, m) = setup();
            assert_eq!(remove(&vm, abi, DOMID_SELF, G, 1), Err(XenErrno::EINVAL));
            assert_eq!(remove(&vm, abi, 7, G, 0), Err(XenErrno::ESRCH));
            assert_eq!(
                call(&vm, abi, XenMemOp::RemoveFromPhysmap, 0, BEYOND),
                Err(XenErrno::EFAULT)
            );
            vm.rec.refuse_backing.store(true, Ordering::SeqCst);
            assert_eq!(remove(&vm, abi, DOMID_SELF, G, 0), Err(XenErrno::EBUSY));
            assert!(m.is_populated(G));
        }
    }

    #[test]
    fn test_reservation_queries_report_pages() {
        for abi in ABIS {
            let (vm, _m) = setup();
            assert_eq!(
                query(&vm, abi, XenMemOp::CurrentReservation, DOMID_SELF),
                Ok(RAM_PAGES)
            );
            assert_eq!(
                query(&vm, abi, XenMemOp::MaximumReservation, 1),
                Ok(RAM_PAGES)
            );
            assert_eq!(
                query(&vm, abi, XenMemOp::MaximumGpfn, DOMID_SELF),
                Ok(RAM_PAGES - 1)
            );
            for op in [
                XenMemOp::CurrentReservation,
                XenMemOp::MaximumReservation,
                XenMemOp::MaximumGpfn,
            ] {
                assert_eq!(query(&vm, abi, op, 9), Err(XenErrno::ESRCH));
                assert_eq!(query(&vm, abi, op, 0), Err(XenErrno::EPERM));
                assert_eq!(call(&vm, abi, op, 1, ARG), Err(XenErrno::EINVAL));
                assert_eq!(call(&vm, abi, op, 0, BEYOND), Err(XenErrno::EFAULT));
            }
        }
    }

    #[test]
    fn test_maximum_gpfn_never_shrinks() {
        let (vm, _m) = setup();
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::GrantTable, 0, HOLE_AREA),
            Ok(0)
        );
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::GrantTable, 0, HOLE_AREA - 1),
            Ok(0)
        );
        assert_eq!(decrease(&vm, Abi::X86_64, &[RAM_PAGES - 1]), Ok(1));
        assert_eq!(
            query(&vm, Abi::X86_64, XenMemOp::MaximumGpfn, DOMID_SELF),
            Ok(HOLE_AREA)
        );
    }

    #[test]
    fn test_maximum_ram_page_returns_ram_limit() {
        for abi in ABIS {
            let (vm, _m) = setup();
            assert_eq!(
                call(&vm, abi, XenMemOp::MaximumRamPage, 0, 0),
                Ok(RAM_PAGES)
            );
            assert_eq!(
                call(&vm, abi, XenMemOp::MaximumRamPage, 1, 0),
                Err(XenErrno::EINVAL)
            );
        }
    }

    #[test]
    fn test_memory_op_unimplemented_subops_are_enosys() {
        for abi in ABIS {
            let (vm, _m) = setup();
            for raw in [5, 8, 10, 11, 12, 13, 16, 24, 28, 29, 63] {
                assert_eq!(
                    vm.call(0, abi, HypercallNr::MemoryOp, &[raw, ARG]),
                    Err(XenErrno::ENOSYS)
                );
            }
        }
    }

    #[test]
    fn test_get_vnumainfo_without_vnuma_is_eopnotsupp() {
        let (vm, _m) = setup();
        vm.write_bytes(ARG, &[0; VNUMA_TOPOLOGY_INFO_SIZE]);
        vm.write(ARG, DOMID_SELF);
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::GetVnumainfo, 0, ARG),
            Err(XenErrno::EOPNOTSUPP)
        );
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::GetVnumainfo, 1, ARG),
            Err(XenErrno::EINVAL)
        );
        vm.write(ARG + 2, 1u16);
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::GetVnumainfo, 0, ARG),
            Err(XenErrno::EINVAL)
        );
        vm.write(ARG, 3u32);
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::GetVnumainfo, 0, ARG),
            Err(XenErrno::ESRCH)
        );
        let end = RAM_SIZE - 8;
        assert_eq!(
            call(&vm, Abi::X86_64, XenMemOp::GetVnumainfo, 0, end),
            Err(XenErrno::EFAULT)
        );
    }

    // --- construction and state -------------------------------------------------------

    #[test]
    fn test_new_populates_only_ram_entries() {
        let (vm, m) = setup_with(TestVm::with_config(config(three_entry_map())));
        assert!(m.is_populated(0x9f) && !m.is_populated(0xa0));
        assert!(!m.is_populated(0xf0) && m.is_populated(0x100));
        assert_eq!(m.current_pages(), 0xa0 + RAM_PAGES - 0x100);
        assert_eq!(
            query(&vm, Abi::X86_64, XenMemOp::MaximumGpfn, DOMID_SELF),
            Ok(RAM_PAGES - 1)
        );
        // Reserved ranges are not domain RAM.
        assert_eq!(decrease(&vm, Abi::X86_64, &[0xf0]), Ok(0));
    }

    #[test]
    fn test_state_restore_behaves_identically() {
        let (vm, m) = setup();
        assert_eq!(decrease(&vm, Abi::X86_64, &[G, G + 1, G + 2]), Ok(3));
        assert_eq!(populate(&vm, Abi::X86_64, &[G + 3]), Ok(1));
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::SharedInfo, 0, G + 4),
            Ok(0)
        );
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::GrantTable, 5, HOLE_AREA),
            Ok(0)
        );
        m.set_grant_v2(true);
        assert_eq!(
            xatp(
                &vm,
                Abi::X86_64,
                XenMapSpace::GrantTable,
                XENMAPIDX_GRANT_TABLE_STATUS,
                HOLE_AREA + 1
            ),
            Ok(0)
        );
        let saved = m.state();
        let restored = Arc::new(MemoryOp::from_state(&saved).unwrap());
        assert_eq!(restored.state(), saved);
        let mut vm2 = TestVm::new(2);
        vm2.dispatcher
            .register(HypercallNr::MemoryOp, restored.clone());
        vm2.domain.restore(vm.domain.state()).unwrap();
        vm.rec.take();
        for v in [&vm, &vm2] {
            assert_eq!(decrease(v, Abi::X86_64, &[G + 4, G + 5, G]), Ok(2));
            assert_eq!(populate(v, Abi::X86_64, &[G, G + 1, G + 2]), Ok(3));
            assert_eq!(xatp(v, Abi::X86_64, XenMapSpace::Gmfn, G, G + 1), Ok(0));
            assert_eq!(
                query(v, Abi::X86_64, XenMemOp::CurrentReservation, DOMID_SELF),
                Ok(RAM_PAGES - 2)
            );
        }
        assert_eq!(restored.state(), m.state());
        assert_eq!(vm2.domain.state(), vm.domain.state());
        assert_eq!(vm2.rec.take(), vm.rec.take());
        assert_eq!(restored.status_frame_gfn(0), Some(HOLE_AREA + 1));
    }

    #[test]
    fn test_from_state_rejects_inconsistent_snapshots() {
        let (_vm, m) = setup();
        let good = m.state();
        let mut s = good.clone();
        s.ram.push((0, 1));
        assert!(MemoryOp::from_state(&s).is_err());
        let mut s = good.clone();
        s.ram = vec![(5, 5)];
        assert!(MemoryOp::from_state(&s).is_err());
        let mut s = good.clone();
        s.ram = vec![(0, RAM_PAGES + 1)];
        assert!(MemoryOp::from_state(&s).is_err());
        let mut s = good.clone();
        s.ram_limit = MAX_RAM_LIMIT + 1;
        s.max_gpfn = u64::MAX;
        assert_eq!(
            MemoryOp::from_state(&s).unwrap_err(),
            Error::InvalidState("RAM limit too large")
        );
        let mut s = good.clone();
        s.grant_frames[0] = Some(s.max_gpfn + 1);
        assert!(MemoryOp::from_state(&s).is_err());
        assert!(MemoryOp::from_state(&good).is_ok());
    }

    #[test]
    fn test_grant_frames_default_sizes_status_frames() {
        assert_eq!(
            GrantFrames::default(),
            GrantFrames {
                max_frames: 64,
                max_status_frames: 8
            }
        );
        assert_eq!(GrantFrames::new(9).max_status_frames, 2);
    }

    // --- bitmap --------------------------------------------------------------------------

    proptest! {
        #[test]
        fn test_bitmap_ops_match_a_bool_model(
            len in 0u64..300,
            ops in proptest::collection::vec((0u64..320, 0u64..140, any::<bool>()), 0..20),
        ) {
            let mut b = Bitmap::new(len);
            let mut model = vec![false; len as usize];
            for (start, n, val) in ops {
                b.fill(start, n, val);
                for i in start..(start + n).min(len) {
                    model[i as usize] = val;
                }
                let ones = model.iter().filter(|&&x| x).count() as u64;
                prop_assert_eq!(b.ones, ones);
                let count = (start..(start + n).min(len)).filter(|&i| model[i as usize]).count() as u64;
                prop_assert_eq!(b.count(start, n), count);
                for val in [true, false] {
                    let run = (start..start + n)
                        .take_while(|&i| model.get(i as usize).copied().unwrap_or(false) == val)
                        .count() as u64;
                    prop_assert_eq!(b.run(start, n, val), run);
                }
            }
            let ranges = b.runs(0, len, true);
            let total: u64 = ranges.iter().map(|r| r.1).sum();
            prop_assert_eq!(total, b.ones);
            let shrunk = len / 2;
            b.resize(shrunk);
            let ones = model[..shrunk as usize].iter().filter(|&&x| x).count() as u64;
            prop_assert_eq!(b.ones, ones);
        }

        #[test]
        fn test_memory_op_arbitrary_calls_never_panic(
            calls in proptest::collection::vec(
                (0u64..64, 0u64..8, any::<bool>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 64)),
                1..6,
            ),
            list in proptest::collection::vec(0u64..0x4100, 16),
            raw_cmd in any::<u64>(),
            raw_arg in any::<u64>(),
        ) {
            let (vm, m) = setup();
            for (i, g) in list.iter().enumerate() {
                vm.write(LIST + 8 * i as u64, *g);
            }
            for (op, start, abi64, ptrs, bytes) in calls {
                let abi = if abi64 { Abi::X86_64 } else { Abi::X86_32 };
                vm.write_bytes(ARG, &bytes);
                if ptrs {
                    // Point the structure's handles at the list, for more depth.
                    match abi {
                        Abi::X86_64 => { vm.write(ARG, LIST); vm.write(ARG + 8, 4u64); vm.write(ARG + 16, 0u32); }
                        Abi::X86_32 => { vm.write(ARG, LIST as u32); vm.write(ARG + 4, 4u32); vm.write(ARG + 8, 0u32); }
                    }
                }
                let _ = vm.call(0, abi, HypercallNr::MemoryOp, &[op | (start << MEMOP_EXTENT_SHIFT), ARG]);
                prop_assert!(m.current_pages() <= RAM_PAGES);
            }
            let _ = vm.call(0, Abi::X86_64, HypercallNr::MemoryOp, &[raw_cmd, raw_arg]);
            let _ = vm.call(0, Abi::X86_32, HypercallNr::MemoryOp, &[raw_cmd, raw_arg]);
            let s = m.state();
            prop_assert!(MemoryOp::from_state(&s).is_ok());
        }
    }
}
