// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `add_to_physmap_batch`: many frames of one space in one call, with a
//! result per entry written back to the guest.

use vm_memory::GuestMemoryBackend;
use xen_abi::errno::XenErrno;
use xen_abi::memory::{XenAddToPhysmapBatch, XenAddToPhysmapBatchCompat, XenMapSpace};
use xen_abi::warn_limited;
use xen_abi::xen::DomId;

use super::{MemoryOp, permission, read_word, target};
use crate::call::{Abi, HcResult};
use crate::dispatch::Ctx;

/// The pointers and sizes of a batch, whichever ABI it came in.
struct Batch {
    domid: DomId,
    space: u16,
    size: u16,
    idxs: u64,
    gpfns: u64,
    errs: u64,
}

impl MemoryOp {
    pub(super) fn add_to_physmap_batch<M: GuestMemoryBackend>(
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
}

#[cfg(test)]
mod tests {
    use xen_abi::memory::XenMemOp;
    use xen_abi::x86::PAGE_SIZE;
    use xen_abi::xen::DOMID_SELF;

    use super::*;
    use crate::memory::testing::*;
    use crate::testing::{ABIS, TestVm};

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
}
