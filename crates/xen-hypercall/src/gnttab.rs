// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `grant_table_op` (20): `grant_table_op(unsigned cmd, void *uop, unsigned
//! count)`, decoded for the domain's [`GrantTable`] (crate `xen-gnttab`),
//! answering as Xen does for an HVM domU (`xen-abi.md` §3.9;
//! `hvm_grant_table_op` in `xen/arch/x86/hvm/hypercall.c`, then
//! `do_grant_table_op` or `compat_grant_table_op`).
//!
//! | cmd | op | answer |
//! |---|---|---|
//! | 0 | `map_grant_ref` | 0; per entry a status (see below), the whole entry written back |
//! | 1 | `unmap_grant_ref` | 0; per entry `GNTST_bad_handle` |
//! | 2 | `setup_table` | count ≠ 1: -EINVAL; 0 and a status; the frames' GFNs |
//! | 5 | `copy` | 0; per entry a status |
//! | 6 | `query_size` | count ≠ 1: -EINVAL; 0 and a status, sizes |
//! | 8 | `set_version` | 0, -EINVAL, -EBUSY, -ERANGE; version in force written back |
//! | 10 | `get_version` | 0, -EPERM (back-end domain), -ESRCH |
//! | 11 | `swap_grant_ref` | 0; per entry a status |
//! | 3, 4, 7, 9, 12 and anything else | | -ENOSYS (Xen: "need auditing" for HVM) |
//!
//! As in Xen, `cmd` is a 32-bit value compared whole (a continuation
//! argument in its upper bits makes it an unknown command, -ENOSYS), a
//! `count` above `INT_MAX` is -EINVAL, a fault reading or writing an entry
//! stops the call with -EFAULT (entries before it keep their effect), and
//! statuses go into each entry's `status` field. In the 32-bit ABI,
//! `setup_table` with a count of 0 does nothing and returns 0, its frame
//! list is written only on success and faults on it are ignored, and
//! `copy` reads its entries in batches of 204 (Xen's translation area)
//! before running them, so a fault in a batch runs none of it.
//!
//! # Where this differs from Xen
//!
//! * Xen would continue a long call after preempting it; this crate cannot
//!   continue a call, so a list of more than [`MAX_OPS_PER_CALL`] entries
//!   gets -EINVAL before anything is done. Guests batch far fewer (Linux:
//!   at most a few hundred).
//! * A guest mapping one of its own grants gets `GNTST_general_error` once
//!   every check of Xen's passes: a VMM cannot alias a page in the p2m
//!   (see `xen_gnttab`'s guest module); no guest mapping ever exists.
//! * Only the guest has a grant table: copies and maps naming another
//!   domain get `GNTST_bad_domain`; `setup_table`/`query_size` naming the
//!   back-end domain (which exists) get `GNTST_permission_denied`, as Xen's
//!   XSM answers for another existing domain.
//!
//! [`MemoryOp`] is the table's [`FrameMap`]: grant frames are where the
//! guest's `XENMEM_add_to_physmap` put them, and a version change releases
//! or enables status frames in the p2m.

use std::sync::Arc;

use vm_memory::{ByteValued, GuestMemoryBackend};
use xen_abi::errno::XenErrno;
use xen_abi::grant_table::{
    Gntst, GnttabCopy, GnttabCopyCompat, GnttabCopyFlags, GnttabGetVersion, GnttabMapGrantRef,
    GnttabOp as Cmd, GnttabQuerySize, GnttabSetVersion, GnttabSetupTable, GnttabSetupTableCompat,
    GnttabSwapGrantRef, GnttabUnmapGrantRef,
};
use xen_abi::warn_limited;
use xen_gnttab::{CopyOp, CopySide, CopyTarget, FrameMap, GrantTable};

use crate::call::{Abi, HcResult, Hypercall};
use crate::dispatch::{Ctx, Family};
use crate::domain::DomainConfig;
use crate::memory::MemoryOp;

/// Most entries one call processes (see the module docs).
pub const MAX_OPS_PER_CALL: u32 = 4096;
/// `gnttab_copy` entries a 32-bit call translates at once (Xen's
/// `COMPAT_ARG_XLAT_SIZE / sizeof(struct gnttab_copy)`: 8192 / 40).
pub const COMPAT_COPY_BATCH: u32 = 204;

impl FrameMap for MemoryOp {
    fn shared_gfn(&self, frame: u32) -> Option<u64> {
        self.grant_frame_gfn(u64::from(frame))
    }

    fn status_gfn(&self, frame: u32) -> Option<u64> {
        self.status_frame_gfn(u64::from(frame))
    }

    fn set_v2(&self, v2: bool) {
        self.set_grant_v2(v2);
    }
}

impl DomainConfig {
    /// The grant table's configuration: `max_grant_frames`, this domain,
    /// back ends as domain 0, versions 1 and 2.
    pub fn gnttab(&self) -> xen_gnttab::Config {
        xen_gnttab::Config {
            max_frames: self.max_grant_frames,
            ..xen_gnttab::Config::new(self.domid)
        }
    }
}

/// The `grant_table_op` family.
#[derive(Clone, Debug)]
pub struct GnttabOp {
    table: Arc<GrantTable>,
}

impl GnttabOp {
    /// The family over a domain's grant table.
    pub fn new(table: Arc<GrantTable>) -> Self {
        Self { table }
    }

    /// The grant table.
    pub fn table(&self) -> &Arc<GrantTable> {
        &self.table
    }
}

/// Element `i` of an array of `size`-byte entries at `base`.
fn elem(abi: Abi, base: u64, i: u32, size: usize) -> u64 {
    abi.word(base.wrapping_add(u64::from(i) * size as u64))
}

fn size<T>() -> usize {
    std::mem::size_of::<T>()
}

/// Runs `f` on each of `count` entries of type `T` at `uop`, as Xen's
/// per-op loops do: read (fault: -EFAULT), run, write back (fault:
/// -EFAULT).
fn each<M: GuestMemoryBackend, T: ByteValued>(
    ctx: &Ctx<'_, M>,
    uop: u64,
    count: u32,
    mut f: impl FnMut(&Ctx<'_, M>, u64, T) -> Result<(), XenErrno>,
) -> HcResult {
    for i in 0..count {
        let gva = elem(ctx.abi, uop, i, size::<T>());
        let v: T = ctx.read(gva)?;
        f(ctx, gva, v)?;
    }
    Ok(0)
}

fn copy_side(u: u64, domid: u16, offset: u16, gref: bool) -> CopySide {
    CopySide {
        target: if gref {
            CopyTarget::Gref(u as u32)
        } else {
            CopyTarget::Gmfn(u)
        },
        domid,
        offset,
    }
}

fn copy_op(c: &GnttabCopy) -> CopyOp {
    let f = c.copy_flags();
    CopyOp {
        source: copy_side(
            c.source.u,
            c.source.domid,
            c.source.offset,
            f.contains(GnttabCopyFlags::SOURCE_GREF),
        ),
        dest: copy_side(
            c.dest.u,
            c.dest.domid,
            c.dest.offset,
            f.contains(GnttabCopyFlags::DEST_GREF),
        ),
        len: c.len,
    }
}

fn copy_op_compat(c: &GnttabCopyCompat) -> CopyOp {
    let f = c.copy_flags();
    CopyOp {
        source: copy_side(
            u64::from(c.source.u),
            c.source.domid,
            c.source.offset,
            f.contains(GnttabCopyFlags::SOURCE_GREF),
        ),
        dest: copy_side(
            u64::from(c.dest.u),
            c.dest.domid,
            c.dest.offset,
            f.contains(GnttabCopyFlags::DEST_GREF),
        ),
        len: c.len,
    }
}

impl GnttabOp {
    fn setup_table<M: GuestMemoryBackend>(
        &self,
        ctx: &Ctx<'_, M>,
        uop: u64,
        count: u32,
    ) -> HcResult {
        match ctx.abi {
            Abi::X86_64 => {
                if count != 1 {
                    return Err(XenErrno::EINVAL);
                }
                let op: GnttabSetupTable = ctx.read(uop)?;
                let status = match self.table.setup_table(op.dom, op.nr_frames) {
                    Ok(gfns) => {
                        let mut status = Gntst::Okay;
                        for (i, gfn) in gfns.iter().enumerate() {
                            let gva = elem(ctx.abi, op.frame_list, i as u32, 8);
                            if ctx.write(gva, gfn).is_err() {
                                status = Gntst::BadVirtAddr;
                            }
                        }
                        status
                    }
                    Err(s) => s,
                };
                ctx.write(ctx.abi.word(uop + 8), &status.raw())?;
            }
            Abi::X86_32 => {
                // compat_grant_table_op: more than one is -EINVAL, none is
                // nothing to do.
                if count > 1 {
                    return Err(XenErrno::EINVAL);
                }
                if count == 0 {
                    return Ok(0);
                }
                let mut op: GnttabSetupTableCompat = ctx.read(uop)?;
                let status = match self.table.setup_table(op.dom, op.nr_frames) {
                    Ok(gfns) => {
                        for (i, &gfn) in gfns.iter().enumerate() {
                            let gva = elem(ctx.abi, u64::from(op.frame_list), i as u32, 4);
                            // Xen ignores faults on the 32-bit list.
                            let _ = ctx.write(gva, &(gfn as u32));
                        }
                        Gntst::Okay
                    }
                    Err(s) => s,
                };
                op.set_gnt_status(status);
                ctx.write(uop, &op)?;
            }
        }
        Ok(0)
    }

    fn copy<M: GuestMemoryBackend>(&self, ctx: &Ctx<'_, M>, uop: u64, count: u32) -> HcResult {
        let mem = ctx.phys();
        match ctx.abi {
            Abi::X86_64 => each(ctx, uop, count, |ctx, gva, c: GnttabCopy| {
                let status = self.table.copy(mem, &copy_op(&c));
                ctx.write(ctx.abi.word(gva + 36), &status.raw())
            }),
            Abi::X86_32 => {
                let mut i = 0;
                while i < count {
                    let n = COMPAT_COPY_BATCH.min(count - i);
                    let mut batch = Vec::with_capacity(n as usize);
                    for k in i..i + n {
                        let gva = elem(ctx.abi, uop, k, size::<GnttabCopyCompat>());
                        batch.push(ctx.read::<GnttabCopyCompat>(gva)?);
                    }
                    let statuses: Vec<Gntst> = batch
                        .iter()
                        .map(|c| self.table.copy(mem, &copy_op_compat(c)))
                        .collect();
                    // Written back last to first; a fault fails the call but
                    // the other statuses are still written.
                    let mut r = Ok(0);
                    for (k, status) in statuses.iter().enumerate().rev() {
                        let gva = elem(ctx.abi, uop, i + k as u32, size::<GnttabCopyCompat>());
                        if let Err(e) = ctx.write(ctx.abi.word(gva + 20), &status.raw()) {
                            r = Err(e);
                        }
                    }
                    r?;
                    i += n;
                }
                Ok(0)
            }
        }
    }
}

impl<M: GuestMemoryBackend> Family<M> for GnttabOp {
    fn call(&self, ctx: &mut Ctx<'_, M>, call: &Hypercall) -> HcResult {
        let ctx: &Ctx<'_, M> = ctx;
        let raw = call.arg(0) as u32;
        let uop = ctx.abi.word(call.arg(1));
        let count = call.arg(2) as u32;
        let Ok(cmd) = Cmd::try_from(raw) else {
            warn_limited!("vCPU {}: unknown grant_table_op {raw:#x}", ctx.vcpu);
            return Err(XenErrno::ENOSYS);
        };
        match cmd {
            Cmd::MapGrantRef
            | Cmd::UnmapGrantRef
            | Cmd::SetupTable
            | Cmd::Copy
            | Cmd::QuerySize
            | Cmd::SetVersion
            | Cmd::GetVersion
            | Cmd::SwapGrantRef => {}
            _ => {
                warn_limited!("vCPU {}: {cmd} is not available to HVM guests", ctx.vcpu);
                return Err(XenErrno::ENOSYS);
            }
        }
        if (count as i32) < 0 {
            return Err(XenErrno::EINVAL);
        }
        let listed = matches!(
            cmd,
            Cmd::MapGrantRef | Cmd::UnmapGrantRef | Cmd::Copy | Cmd::SwapGrantRef
        );
        if listed && count > MAX_OPS_PER_CALL {
            warn_limited!(
                "vCPU {}: {cmd} of {count} entries refused (at most {MAX_OPS_PER_CALL})",
                ctx.vcpu
            );
            return Err(XenErrno::EINVAL);
        }
        let mem = ctx.phys();
        let table = &self.table;
        match cmd {
            Cmd::MapGrantRef => each(ctx, uop, count, |ctx, gva, mut op: GnttabMapGrantRef| {
                op.set_gnt_status(table.guest_map(mem, &op));
                ctx.write(gva, &op)
            }),
            Cmd::UnmapGrantRef => each(ctx, uop, count, |ctx, gva, op: GnttabUnmapGrantRef| {
                ctx.write(ctx.abi.word(gva + 20), &table.guest_unmap(op.handle).raw())
            }),
            Cmd::SwapGrantRef => each(ctx, uop, count, |ctx, gva, op: GnttabSwapGrantRef| {
                ctx.write(
                    ctx.abi.word(gva + 8),
                    &table.swap(mem, op.ref_a, op.ref_b).raw(),
                )
            }),
            Cmd::Copy => self.copy(ctx, uop, count),
            Cmd::SetupTable => self.setup_table(ctx, uop, count),
            Cmd::QuerySize => {
                if count != 1 {
                    return Err(XenErrno::EINVAL);
                }
                let mut op: GnttabQuerySize = ctx.read(uop)?;
                match table.query_size(op.dom) {
                    Ok((nr, max)) => {
                        op.nr_frames = nr;
                        op.max_nr_frames = max;
                        op.set_gnt_status(Gntst::Okay);
                    }
                    Err(s) => op.set_gnt_status(s),
                }
                ctx.write(uop, &op)?;
                Ok(0)
            }
            Cmd::SetVersion => {
                let mut op: GnttabSetVersion = ctx.read(uop)?;
                let (r, version) = table.set_version(mem, op.version);
                op.version = version;
                ctx.write(uop, &op)?;
                r.map(|()| 0)
            }
            Cmd::GetVersion => {
                let op: GnttabGetVersion = ctx.read(uop)?;
                let version = table.get_version(op.dom)?;
                ctx.write(ctx.abi.word(uop + 4), &version)?;
                Ok(0)
            }
            _ => Err(XenErrno::ENOSYS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::GrantFrames;
    use crate::testing::{ABIS, BAD, BUF, TestVm};
    use xen_abi::grant_table::{
        GntmapFlags, GnttabCopyPtr, GnttabCopyPtrCompat, GrantEntryV1, GrantEntryV2,
        GrantEntryV2Body, GrantFlags, GrantType,
    };
    use xen_abi::memory::{
        XENMAPIDX_GRANT_TABLE_STATUS, XenAddToPhysmap, XenMapSpace, XenMemOp, XenRemoveFromPhysmap,
        memory_op_cmd,
    };
    use xen_abi::x86::PAGE_SIZE;
    use xen_abi::xen::{DOMID_SELF, HypercallNr};

    const CONSOLE: u64 = 0xfeff8;
    const STORE: u64 = 0xfeff9;
    /// Where tests place grant frame 0 (RAM, so it starts with garbage).
    const F0: u64 = 0x800;
    const LIST: u64 = 0x20_0000;

    struct Gt {
        vm: TestVm,
        memop: Arc<MemoryOp>,
        table: Arc<GrantTable>,
    }

    fn setup() -> Gt {
        let mut vm = TestVm::new(2);
        let config = vm.domain.config().clone();
        let memop = Arc::new(MemoryOp::new(&config, GrantFrames::default()));
        let table = Arc::new(GrantTable::new(config.gnttab(), memop.clone()).unwrap());
        table.seed_reserved(Some(CONSOLE), Some(STORE)).unwrap();
        memop.set_grant_frame_init(table.frame_init());
        vm.dispatcher.register(HypercallNr::MemoryOp, memop.clone());
        vm.dispatcher.register(
            HypercallNr::GrantTableOp,
            Arc::new(GnttabOp::new(table.clone())),
        );
        Gt { vm, memop, table }
    }

    impl Gt {
        fn op(&self, abi: Abi, cmd: u64, uop: u64, count: u64) -> HcResult {
            self.vm
                .call(0, abi, HypercallNr::GrantTableOp, &[cmd, uop, count])
        }

        fn place(&self, idx: u64, gfn: u64) -> HcResult {
            self.vm.write(
                BUF + 0x800,
                XenAddToPhysmap {
                    domid: DOMID_SELF,
                    size: 0,
                    space: XenMapSpace::GrantTable.raw(),
                    idx,
                    gpfn: gfn,
                },
            );
            let cmd = memory_op_cmd(XenMemOp::AddToPhysmap, 0);
            self.vm
                .call(0, Abi::X86_64, HypercallNr::MemoryOp, &[cmd, BUF + 0x800])
        }

        fn remove(&self, gfn: u64) -> HcResult {
            self.vm.write(
                BUF + 0x800,
                XenRemoveFromPhysmap {
                    domid: DOMID_SELF,
                    pad: [0; 3],
                    gpfn: gfn,
                },
            );
            let cmd = memory_op_cmd(XenMemOp::RemoveFromPhysmap, 0);
            self.vm
                .call(0, Abi::X86_64, HypercallNr::MemoryOp, &[cmd, BUF + 0x800])
        }

        fn entry(&self, gfn: u64, gref: u64) -> GrantEntryV1 {
            self.vm.read(gfn * PAGE_SIZE + gref * 8)
        }

        fn grant(&self, gfn: u64, gref: u64, domid: u16, frame: u32, flags: GrantFlags) {
            let mut e = GrantEntryV1 {
                domid,
                frame,
                ..Default::default()
            };
            e.set_grant(GrantType::PermitAccess, flags);
            self.vm.write(gfn * PAGE_SIZE + gref * 8, e);
        }

        fn set_version(&self, abi: Abi, v: u32) -> (HcResult, u32) {
            self.vm.write(BUF, GnttabSetVersion { version: v });
            let r = self.op(abi, 8, BUF, 1);
            (r, self.vm.read::<GnttabSetVersion>(BUF).version)
        }
    }

    #[test]
    fn test_frame0_placed_over_ram_is_zeroed_and_seeded() {
        let g = setup();
        g.vm.write_bytes(F0 * PAGE_SIZE, &[0xee; PAGE_SIZE as usize]);
        assert_eq!(g.place(0, F0), Ok(0));
        let seed = |frame| GrantEntryV1 {
            flags: 1,
            domid: 0,
            frame,
        };
        assert_eq!(g.entry(F0, 0), seed(CONSOLE as u32));
        assert_eq!(g.entry(F0, 1), seed(STORE as u32));
        let rest =
            g.vm.read_bytes(F0 * PAGE_SIZE + 16, PAGE_SIZE as usize - 16);
        assert!(rest.iter().all(|&b| b == 0));
        // Another frame starts all zeros.
        g.vm.write_bytes((F0 + 1) * PAGE_SIZE, &[0xee; PAGE_SIZE as usize]);
        assert_eq!(g.place(1, F0 + 1), Ok(0));
        let page = g.vm.read_bytes((F0 + 1) * PAGE_SIZE, PAGE_SIZE as usize);
        assert!(page.iter().all(|&b| b == 0));
    }

    #[test]
    fn test_moved_frame_keeps_its_contents_and_removed_frame_comes_back() {
        let g = setup();
        assert_eq!(g.place(0, F0), Ok(0));
        g.grant(F0, 9, 0, 0x123, GrantFlags::READONLY);
        assert_eq!(g.place(0, F0 + 5), Ok(0));
        assert_eq!(g.entry(F0 + 5, 9).frame, 0x123);
        assert_eq!(g.entry(F0 + 5, 1).frame, STORE as u32);
        assert_eq!(g.memop.grant_frame_gfn(0), Some(F0 + 5));
        // Removed, then placed again elsewhere: the entries come back.
        assert_eq!(g.remove(F0 + 5), Ok(0));
        assert_eq!(g.place(0, F0 + 7), Ok(0));
        assert_eq!(g.entry(F0 + 7, 9).frame, 0x123);
        // A back end maps through the table at the new place.
        let m = g.table.map(&g.vm.mem, 0, &[9], false).unwrap();
        assert_eq!(m.segments()[0].addr.0, 0x123 * PAGE_SIZE);
        assert_eq!(g.entry(F0 + 7, 9).flags, 1 | (1 << 2) | (1 << 3));
        g.table.unmap(&g.vm.mem, m).unwrap();
    }

    #[test]
    fn test_query_size_reports_growth_and_checks_domain_and_count() {
        for abi in ABIS {
            let g = setup();
            let q = |dom| {
                g.vm.write(
                    BUF,
                    GnttabQuerySize {
                        dom,
                        nr_frames: 77,
                        ..Default::default()
                    },
                );
                let r = g.op(abi, 6, BUF, 1);
                (r, g.vm.read::<GnttabQuerySize>(BUF))
            };
            let (r, s) = q(DOMID_SELF);
            assert_eq!(
                (r, s.nr_frames, s.max_nr_frames, s.status),
                (Ok(0), 1, 64, 0)
            );
            assert_eq!(g.place(3, F0), Ok(0));
            assert_eq!(q(1).1.nr_frames, 4);
            let (r, s) = q(0);
            assert_eq!((r, s.status), (Ok(0), Gntst::PermissionDenied.raw()));
            assert_eq!(s.nr_frames, 77);
            assert_eq!(q(9).1.status, Gntst::BadDomain.raw());
            assert_eq!(g.op(abi, 6, BUF, 2), Err(XenErrno::EINVAL));
            assert_eq!(g.op(abi, 6, BUF, 0), Err(XenErrno::EINVAL));
            assert_eq!(g.op(abi, 6, BAD, 1), Err(XenErrno::EFAULT));
        }
    }

    #[test]
    fn test_set_and_get_version_keep_the_p2m_in_sync() {
        for abi in ABIS {
            let g = setup();
            assert_eq!(g.place(0, F0), Ok(0));
            // Status frames need version 2.
            let status0 = XENMAPIDX_GRANT_TABLE_STATUS;
            assert_eq!(g.place(status0, F0 + 1), Err(XenErrno::EINVAL));
            assert_eq!(g.set_version(abi, 2), (Ok(0), 2));
            assert_eq!(g.place(status0, F0 + 1), Ok(0));
            assert_eq!(g.memop.status_frame_gfn(0), Some(F0 + 1));
            // The reserved entries are now v2 entries.
            let e: GrantEntryV2 = g.vm.read(F0 * PAGE_SIZE + 16);
            assert_eq!(e.body(), GrantEntryV2Body::FullPage { frame: STORE });
            g.vm.write(
                BUF,
                GnttabGetVersion {
                    dom: DOMID_SELF,
                    pad: 0,
                    version: 0,
                },
            );
            assert_eq!(g.op(abi, 10, BUF, 0), Ok(0));
            assert_eq!(g.vm.read::<GnttabGetVersion>(BUF).version, 2);
            assert_eq!(g.set_version(abi, 1), (Ok(0), 1));
            assert_eq!(g.memop.status_frame_gfn(0), None);
            assert_eq!(g.entry(F0, 1).frame, STORE as u32);
            assert_eq!(g.set_version(abi, 3), (Err(XenErrno::EINVAL), 1));
            assert_eq!(g.set_version(abi, 1), (Ok(0), 1));
            assert_eq!(g.op(abi, 8, BAD, 1), Err(XenErrno::EFAULT));
        }
    }

    #[test]
    fn test_set_version_busy_while_a_back_end_maps() {
        let g = setup();
        assert_eq!(g.place(0, F0), Ok(0));
        g.grant(F0, 10, 0, 0x100, GrantFlags::empty());
        let m = g.table.map(&g.vm.mem, 0, &[10], true).unwrap();
        assert_eq!(g.set_version(Abi::X86_64, 2), (Err(XenErrno::EBUSY), 1));
        g.table.unmap(&g.vm.mem, m).unwrap();
        assert_eq!(g.set_version(Abi::X86_64, 2), (Ok(0), 2));
    }

    #[test]
    fn test_get_version_errors() {
        let g = setup();
        for (dom, want) in [
            (0, Err(XenErrno::EPERM)),
            (5, Err(XenErrno::ESRCH)),
            (1, Ok(0)),
        ] {
            g.vm.write(
                BUF,
                GnttabGetVersion {
                    dom,
                    pad: 0,
                    version: 9,
                },
            );
            assert_eq!(g.op(Abi::X86_32, 10, BUF, 0), want);
        }
        assert_eq!(g.vm.read::<GnttabGetVersion>(BUF).version, 1);
        assert_eq!(g.op(Abi::X86_64, 10, BAD, 0), Err(XenErrno::EFAULT));
    }

    #[test]
    fn test_setup_table_64_lists_gfns_and_grows() {
        let g = setup();
        assert_eq!(g.place(1, F0), Ok(0));
        let setup = |dom, nr, list| {
            g.vm.write(
                BUF,
                GnttabSetupTable {
                    dom,
                    nr_frames: nr,
                    frame_list: list,
                    ..Default::default()
                },
            );
            let r = g.op(Abi::X86_64, 2, BUF, 1);
            (r, g.vm.read::<GnttabSetupTable>(BUF).status)
        };
        assert_eq!(setup(DOMID_SELF, 3, LIST), (Ok(0), 0));
        assert_eq!(g.vm.read::<u64>(LIST), u64::MAX);
        assert_eq!(g.vm.read::<u64>(LIST + 8), F0);
        assert_eq!(g.table.nr_frames(), 3);
        assert_eq!(setup(DOMID_SELF, 65, LIST).1, Gntst::GeneralError.raw());
        assert_eq!(setup(0, 1, LIST).1, Gntst::PermissionDenied.raw());
        assert_eq!(setup(3, 1, LIST).1, Gntst::BadDomain.raw());
        assert_eq!(setup(DOMID_SELF, 2, BAD).1, Gntst::BadVirtAddr.raw());
        assert_eq!(g.op(Abi::X86_64, 2, BUF, 0), Err(XenErrno::EINVAL));
        assert_eq!(g.op(Abi::X86_64, 2, BUF, 2), Err(XenErrno::EINVAL));
        assert_eq!(g.op(Abi::X86_64, 2, BAD, 1), Err(XenErrno::EFAULT));
    }

    #[test]
    fn test_setup_table_32_truncates_and_follows_compat_rules() {
        let g = setup();
        assert_eq!(g.place(0, F0), Ok(0));
        let write = |nr, list: u64| {
            g.vm.write(
                BUF,
                GnttabSetupTableCompat {
                    dom: DOMID_SELF,
                    nr_frames: nr,
                    frame_list: list as u32,
                    ..Default::default()
                },
            );
        };
        write(2, LIST);
        assert_eq!(g.op(Abi::X86_32, 2, BUF, 1), Ok(0));
        assert_eq!(g.vm.read::<u32>(LIST), F0 as u32);
        assert_eq!(g.vm.read::<u32>(LIST + 4), u32::MAX);
        assert_eq!(g.vm.read::<GnttabSetupTableCompat>(BUF).status, 0);
        // Faults on the list are ignored; count 0 does nothing.
        write(2, BAD);
        assert_eq!(g.op(Abi::X86_32, 2, BUF, 1), Ok(0));
        assert_eq!(g.vm.read::<GnttabSetupTableCompat>(BUF).status, 0);
        write(9, LIST);
        assert_eq!(g.op(Abi::X86_32, 2, BUF, 0), Ok(0));
        assert_eq!(g.table.nr_frames(), 2);
        assert_eq!(g.op(Abi::X86_32, 2, BUF, 2), Err(XenErrno::EINVAL));
        assert_eq!(g.op(Abi::X86_32, 2, BAD, 1), Err(XenErrno::EFAULT));
    }

    fn copy64(g: &Gt, at: u64, src: u64, dst: u64, len: u16, flags: u16) {
        let p = |u| GnttabCopyPtr {
            u,
            domid: DOMID_SELF,
            offset: 0,
            pad: 0,
        };
        g.vm.write(
            at,
            GnttabCopy {
                source: p(src),
                dest: p(dst),
                len,
                flags,
                status: 99,
                pad: 0,
            },
        );
    }

    fn copy32(g: &Gt, at: u64, src: u32, dst: u32, len: u16, flags: u16) {
        let p = |u| GnttabCopyPtrCompat {
            u,
            domid: DOMID_SELF,
            offset: 0,
        };
        g.vm.write(
            at,
            GnttabCopyCompat {
                source: p(src),
                dest: p(dst),
                len,
                flags,
                status: 99,
                pad: 0,
            },
        );
    }

    #[test]
    fn test_copy_64_writes_each_status() {
        let g = setup();
        assert_eq!(g.place(0, F0), Ok(0));
        g.grant(F0, 8, 1, 0x300, GrantFlags::empty());
        g.vm.write_bytes(0x300 * PAGE_SIZE, &[7; 64]);
        copy64(&g, LIST, 8, 0x301, 64, 1);
        copy64(&g, LIST + 40, 0x300, 9, 64, 2);
        copy64(&g, LIST + 80, 0x300, 0x302, 4097, 0);
        assert_eq!(g.op(Abi::X86_64, 5, LIST, 3), Ok(0));
        let st = |i: u64| g.vm.read::<GnttabCopy>(LIST + 40 * i).status;
        assert_eq!(
            (st(0), st(1), st(2)),
            (0, Gntst::GeneralError.raw(), Gntst::BadCopyArg.raw())
        );
        assert_eq!(g.vm.read_bytes(0x301 * PAGE_SIZE, 64), vec![7; 64]);
        assert_eq!(g.entry(F0, 8).flags, 1);
    }

    #[test]
    fn test_copy_fault_semantics_differ_between_abis() {
        let g = setup();
        let last = crate::testing::RAM_SIZE;
        // 64-bit: the first entry runs, the second faults.
        g.vm.write_bytes(0x300 * PAGE_SIZE, &[5; 8]);
        copy64(&g, last - 40, 0x300, 0x301, 8, 0);
        assert_eq!(g.op(Abi::X86_64, 5, last - 40, 2), Err(XenErrno::EFAULT));
        assert_eq!(g.vm.read_bytes(0x301 * PAGE_SIZE, 8), vec![5; 8]);
        // 32-bit: the batch is read first, so nothing runs.
        copy32(&g, last - 24, 0x300, 0x302, 8, 0);
        assert_eq!(g.op(Abi::X86_32, 5, last - 24, 2), Err(XenErrno::EFAULT));
        assert_eq!(g.vm.read_bytes(0x302 * PAGE_SIZE, 8), vec![0; 8]);
        assert_eq!(g.vm.read::<GnttabCopyCompat>(last - 24).status, 99);
    }

    #[test]
    fn test_copy_32_runs_batches_of_204() {
        let g = setup();
        g.vm.write_bytes(0x300 * PAGE_SIZE, &[3; 8]);
        for i in 0..205 {
            copy32(&g, LIST + 24 * i, 0x300, 0x301, 8, 0);
        }
        assert_eq!(g.op(Abi::X86_32, 5, LIST, 205), Ok(0));
        assert!((0..205).all(|i| g.vm.read::<GnttabCopyCompat>(LIST + 24 * i).status == 0));
        // A fault in the second batch: the first batch ran and reported.
        let top = crate::testing::RAM_SIZE - 24 * 204;
        for i in 0..204 {
            copy32(&g, top + 24 * i, 0x300, 0x303, 8, 0);
        }
        assert_eq!(g.op(Abi::X86_32, 5, top, 205), Err(XenErrno::EFAULT));
        assert_eq!(g.vm.read::<GnttabCopyCompat>(top).status, 0);
        assert_eq!(g.vm.read_bytes(0x303 * PAGE_SIZE, 8), vec![3; 8]);
    }

    #[test]
    fn test_map_and_unmap_from_the_guest() {
        for abi in ABIS {
            let g = setup();
            assert_eq!(g.place(0, F0), Ok(0));
            g.grant(F0, 8, 1, 0x300, GrantFlags::empty());
            let map = |gref, flags: GntmapFlags, dom| GnttabMapGrantRef {
                host_addr: 0x400 * PAGE_SIZE,
                flags: flags.bits(),
                gref,
                dom,
                status: 5,
                handle: 0x77,
                dev_bus_addr: 0x88,
            };
            g.vm.write(LIST, map(8, GntmapFlags::HOST_MAP, 1));
            g.vm.write(LIST + 32, map(8, GntmapFlags::HOST_MAP, DOMID_SELF));
            g.vm.write(LIST + 64, map(9000, GntmapFlags::HOST_MAP, 1));
            assert_eq!(g.op(abi, 0, LIST, 3), Ok(0));
            let got = |i: u64| g.vm.read::<GnttabMapGrantRef>(LIST + 32 * i);
            assert_eq!(got(0).status, Gntst::GeneralError.raw());
            assert_eq!((got(0).handle, got(0).dev_bus_addr), (0x77, 0x88));
            assert_eq!(got(1).status, Gntst::BadDomain.raw());
            assert_eq!(got(2).status, Gntst::BadGntref.raw());
            assert_eq!(g.entry(F0, 8).flags, 1);
            g.vm.write(
                LIST,
                GnttabUnmapGrantRef {
                    handle: 0,
                    ..Default::default()
                },
            );
            assert_eq!(g.op(abi, 1, LIST, 1), Ok(0));
            assert_eq!(
                g.vm.read::<GnttabUnmapGrantRef>(LIST).status,
                Gntst::BadHandle.raw()
            );
            assert_eq!(g.op(abi, 0, BAD, 1), Err(XenErrno::EFAULT));
            assert_eq!(g.op(abi, 1, BAD, 1), Err(XenErrno::EFAULT));
            assert_eq!(g.op(abi, 0, BAD, 0), Ok(0));
        }
    }

    #[test]
    fn test_swap_from_the_guest() {
        let g = setup();
        assert_eq!(g.place(0, F0), Ok(0));
        g.grant(F0, 8, 0, 0x300, GrantFlags::empty());
        g.vm.write(
            LIST,
            GnttabSwapGrantRef {
                ref_a: 8,
                ref_b: 9,
                status: 7,
                pad: 0,
            },
        );
        g.vm.write(
            LIST + 12,
            GnttabSwapGrantRef {
                ref_a: 8,
                ref_b: 4096,
                status: 7,
                pad: 0,
            },
        );
        assert_eq!(g.op(Abi::X86_32, 11, LIST, 2), Ok(0));
        assert_eq!(g.vm.read::<GnttabSwapGrantRef>(LIST).status, 0);
        assert_eq!(
            g.vm.read::<GnttabSwapGrantRef>(LIST + 12).status,
            Gntst::BadGntref.raw()
        );
        assert_eq!(g.entry(F0, 9).frame, 0x300);
        assert_eq!(g.entry(F0, 8), GrantEntryV1::default());
    }

    #[test]
    fn test_refused_and_unknown_commands_and_counts() {
        for abi in ABIS {
            let g = setup();
            for cmd in [3, 4, 7, 9, 12, 13, 99, 0x1006, 0x1000 | 5, u64::MAX] {
                assert_eq!(g.op(abi, cmd, BUF, 1), Err(XenErrno::ENOSYS), "{cmd:#x}");
            }
            for cmd in [0, 1, 2, 5, 6, 8, 10, 11] {
                assert_eq!(g.op(abi, cmd, BUF, 0x8000_0000), Err(XenErrno::EINVAL));
            }
            let too_many = u64::from(MAX_OPS_PER_CALL) + 1;
            for cmd in [0, 1, 5, 11] {
                assert_eq!(g.op(abi, cmd, BUF, too_many), Err(XenErrno::EINVAL));
            }
        }
    }

    #[test]
    fn test_domain_config_gnttab_follows_max_grant_frames() {
        let mut c = TestVm::new(1).domain.config().clone();
        c.max_grant_frames = 32;
        let g = c.gnttab();
        assert_eq!((g.max_frames, g.domid, g.backend_domid), (32, c.domid, 0));
    }
}
