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
//! * a grant-table frame is the guest page at its GFN and its contents go
//!   with it: placed for the first time it is filled by the grant table's
//!   hook ([`MemoryOp::set_grant_frame_init`]; zeros and the reserved
//!   console/XenStore entries), moved it is copied, taken out (removed,
//!   replaced, ballooned, covered by RAM) its page goes to the hook and
//!   comes back when it is placed again. The `grant_table_op` family
//!   ([`crate::gnttab`]) reads the table through [`MemoryOp`] as its
//!   `xen_gnttab::FrameMap`.
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

use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::GuestMemoryBackend;
use xen_abi::errno::XenErrno;
use xen_abi::memory::{
    E820Entry, E820Type, MEMOP_EXTENT_SHIFT, XenMapSpace, XenMemOp, split_memory_op_cmd,
};
use xen_abi::xen::{DOMID_SELF, DomId};
use xen_gnttab::FrameInit;

use crate::call::{Abi, HcResult, Hypercall};
use crate::dispatch::{Ctx, Family};
use crate::domain::DomainConfig;
use xen_abi::warn_limited;
use xen_abi::x86::PAGE_SIZE;

use p2m::{Bitmap, FrameHook, P2m};

// One file per concern, each adding its methods to `MemoryOp`: this file
// holds the type, its state and the decoding of the sub-op.
mod batch; // add_to_physmap_batch
mod p2m; // the p2m itself: RAM bitmap, special frames
mod physmap; // add_to_physmap, remove_from_physmap
mod query; // reservation queries, maximum_gpfn, memory_map, vNUMA
mod reservation; // increase/decrease_reservation, populate_physmap
#[cfg(test)]
mod testing;

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
                hook: FrameHook::default(),
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

    /// Installs the grant table's frame hook
    /// (`xen_gnttab::GrantTable::frame_init`): a grant or status frame
    /// placed for the first time gets its page from it (zeros without a
    /// hook), and a frame taken out of the p2m (removed, replaced, or
    /// covered by RAM) hands it its page, to get it back when placed again.
    /// A frame moved to another GFN keeps its page (it is copied). The
    /// hook is not part of [`State`]: install it again after a restore.
    pub fn set_grant_frame_init(&self, hook: Arc<dyn FrameInit>) {
        self.lock().hook = FrameHook(Some(hook));
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
        if !state.grant_v2 && state.status_frames.iter().any(Option::is_some) {
            return Err(Error::InvalidState(
                "status frames mapped at grant version 1",
            ));
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
        // A special frame replaces whatever was at its GFN: it is never RAM
        // too, and two never share a GFN.
        let mut specials: Vec<u64> = state
            .grant_frames
            .iter()
            .chain(&state.status_frames)
            .flatten()
            .copied()
            .collect();
        specials.sort_unstable();
        if specials.windows(2).any(|w| w[0] == w[1]) || specials.iter().any(|&g| ram.get(g)) {
            return Err(Error::InvalidState(
                "grant frames share a GFN with each other or with RAM",
            ));
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
                hook: FrameHook::default(),
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

/// The pages an e820 entry touches, as `[start, end)` GFNs.
fn page_range(e: &E820Entry) -> (u64, u64) {
    let (addr, size) = (e.addr, e.size);
    let end = addr.saturating_add(size);
    (addr / PAGE_SIZE, end.div_ceil(PAGE_SIZE))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use xen_abi::memory::{XENMAPIDX_GRANT_TABLE_STATUS, memory_op_cmd};
    use xen_abi::xen::HypercallNr;

    use super::testing::*;
    use super::*;
    use crate::testing::{ABIS, TestVm};

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
        // Grant frames on RAM, or on each other.
        let mut s = good.clone();
        s.grant_frames[0] = Some(s.ram[0].0);
        assert!(MemoryOp::from_state(&s).is_err());
        let mut s = good.clone();
        s.grant_frames[0] = Some(s.ram_limit + 1);
        s.grant_frames[1] = Some(s.ram_limit + 1);
        assert!(MemoryOp::from_state(&s).is_err());
        s.grant_frames[1] = Some(s.ram_limit + 2);
        assert!(MemoryOp::from_state(&s).is_ok());
        // Status frames only exist at version 2.
        let mut s = good.clone();
        s.status_frames[0] = Some(s.ram_limit + 1);
        assert!(MemoryOp::from_state(&s).is_err());
        s.grant_v2 = true;
        assert!(MemoryOp::from_state(&s).is_ok());
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

    proptest! {
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
