// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Changes to the physmap: `add_to_physmap` (one frame, or a `gmfn_range`)
//! and `remove_from_physmap`, with [`MemoryOp::map_one`], which maps one
//! frame of any space (also for `add_to_physmap_batch`), and
//! [`MemoryOp::move_ram`], which moves a RAM page.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use xen_abi::errno::XenErrno;
use xen_abi::memory::{
    GrantFrameIdx, XenAddToPhysmap, XenAddToPhysmapCompat, XenMapSpace, XenRemoveFromPhysmap,
    XenRemoveFromPhysmapCompat,
};
use xen_abi::warn_limited;
use xen_abi::x86::PAGE_SIZE;

use super::p2m::{P2m, Slot, Special, place_special, unhook};
use super::{MemoryOp, permission, target};
use crate::call::{Abi, HcResult};
use crate::dispatch::Ctx;

/// Where an `add_to_physmap` frame comes from.
enum Source {
    Ram(u64),
    Special(Special),
}

impl MemoryOp {
    pub(super) fn add_to_physmap<M: GuestMemoryBackend>(
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

    /// Maps one frame of `space` at `gpfn` (x86 `xenmem_add_to_physmap_one`).
    pub(super) fn map_one<M: GuestMemoryBackend>(
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
        if let Slot::Special(s) = prev {
            unhook(ctx, p, s);
        }
        if ctx.phys().write_slice(&page, to_gpa).is_err() {
            warn_limited!("add_to_physmap: copying GFN {from:#x} to {to:#x} failed");
        }
        p.ram.fill(from, 1, false);
        p.ram.fill(to, 1, true);
        p.max_mapped = p.max_mapped.max(to);
        Ok(())
    }

    pub(super) fn remove_from_physmap<M: GuestMemoryBackend>(
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
                unhook(ctx, p, s);
                Ok(0)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use xen_abi::memory::{XENMAPIDX_GRANT_TABLE_STATUS, XenMemOp};
    use xen_abi::xen::{DOMID_SELF, DomId, HypercallNr};

    use super::*;
    use crate::memory::testing::*;
    use crate::memory::{DEFAULT_MAX_GPFN, DEFAULT_MAX_GRANT_FRAMES};
    use crate::testing::{ABIS, Event, TestVm};

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

    /// A frame hook that fills a new frame with its index + 1 and records
    /// what it is given back.
    #[derive(Default)]
    struct Hook {
        removed: std::sync::Mutex<Vec<(xen_gnttab::GrantFrame, u8)>>,
    }

    impl xen_gnttab::FrameInit for Hook {
        fn placed(&self, frame: xen_gnttab::GrantFrame, page: &mut [u8]) {
            let v = match frame {
                xen_gnttab::GrantFrame::Shared(i) => i as u8 + 1,
                xen_gnttab::GrantFrame::Status(i) => 0x80 | i as u8,
            };
            page.fill(v);
        }
        fn removed(&self, frame: xen_gnttab::GrantFrame, page: &[u8]) {
            assert!(page.iter().all(|&b| b == page[0]));
            self.removed.lock().unwrap().push((frame, page[0]));
        }
    }

    /// A RAM GFN the tests place grant frames at.
    const F: u64 = G + 0x20;

    fn hooked() -> (TestVm, Arc<MemoryOp>, Arc<Hook>) {
        let (vm, m) = setup();
        let hook = Arc::new(Hook::default());
        m.set_grant_frame_init(hook.clone());
        (vm, m, hook)
    }

    #[test]
    fn test_grant_frame_first_placement_without_hook_is_zeroed() {
        let (vm, _m) = setup();
        fill_page(&vm, G, 0xee);
        assert_eq!(xatp(&vm, Abi::X86_64, XenMapSpace::GrantTable, 2, G), Ok(0));
        assert_eq!(page(&vm, G), vec![0; PAGE_SIZE as usize]);
        // shared_info pages are left alone.
        fill_page(&vm, G + 1, 0xee);
        assert_eq!(
            xatp(&vm, Abi::X86_64, XenMapSpace::SharedInfo, 0, G + 1),
            Ok(0)
        );
        assert_eq!(page(&vm, G + 1)[2100], 0xee);
    }

    #[test]
    fn test_grant_frame_first_placement_takes_the_hook_contents() {
        for abi in ABIS {
            let (vm, m, hook) = hooked();
            assert_eq!(xatp(&vm, abi, XenMapSpace::GrantTable, 2, G), Ok(0));
            assert_eq!(page(&vm, G), vec![3; PAGE_SIZE as usize]);
            m.set_grant_v2(true);
            let status1 = XENMAPIDX_GRANT_TABLE_STATUS | 1;
            assert_eq!(
                xatp(&vm, abi, XenMapSpace::GrantTable, status1, G + 1),
                Ok(0)
            );
            assert_eq!(page(&vm, G + 1), vec![0x81; PAGE_SIZE as usize]);
            assert!(hook.removed.lock().unwrap().is_empty());
        }
    }

    #[test]
    fn test_grant_frame_moved_keeps_its_page() {
        for abi in ABIS {
            let (vm, _m, hook) = hooked();
            assert_eq!(xatp(&vm, abi, XenMapSpace::GrantTable, 0, F), Ok(0));
            fill_page(&vm, F, 0x42);
            assert_eq!(xatp(&vm, abi, XenMapSpace::GrantTable, 0, G), Ok(0));
            assert_eq!(page(&vm, G), vec![0x42; PAGE_SIZE as usize]);
            // Moved again through XENMAPSPACE_gmfn (idx = its GFN).
            assert_eq!(xatp(&vm, abi, XenMapSpace::Gmfn, G, F + 4), Ok(0));
            assert_eq!(page(&vm, F + 4), vec![0x42; PAGE_SIZE as usize]);
            assert!(hook.removed.lock().unwrap().is_empty());
        }
    }

    #[test]
    fn test_grant_frame_taken_out_hands_its_page_to_the_hook() {
        let (vm, m, hook) = hooked();
        let frame = |i| xen_gnttab::GrantFrame::Shared(i);
        // Removed.
        assert_eq!(xatp(&vm, Abi::X86_64, XenMapSpace::GrantTable, 0, F), Ok(0));
        fill_page(&vm, F, 0x10);
        assert_eq!(remove(&vm, Abi::X86_64, DOMID_SELF, F, 0), Ok(0));
        // Replaced by another grant frame.
        assert_eq!(xatp(&vm, Abi::X86_64, XenMapSpace::GrantTable, 1, F), Ok(0));
        fill_page(&vm, F, 0x11);
        assert_eq!(xatp(&vm, Abi::X86_64, XenMapSpace::GrantTable, 2, F), Ok(0));
        // Covered by RAM moved there.
        fill_page(&vm, F, 0x12);
        fill_page(&vm, G, 0x99);
        m.set_grant_v2(false);
        let (vm2, _m2, hook2) = hooked();
        assert_eq!(
            xatp(&vm2, Abi::X86_64, XenMapSpace::GrantTable, 3, G + 1),
            Ok(0)
        );
        fill_page(&vm2, G + 1, 0x13);
        fill_page(&vm2, G, 0x99);
        assert_eq!(xatp(&vm2, Abi::X86_64, XenMapSpace::Gmfn, G, G + 1), Ok(0));
        assert_eq!(page(&vm2, G + 1), vec![0x99; PAGE_SIZE as usize]);
        // Ballooned out, and populated over.
        assert_eq!(
            xatp(&vm2, Abi::X86_64, XenMapSpace::GrantTable, 4, G + 2),
            Ok(0)
        );
        fill_page(&vm2, G + 2, 0x14);
        assert_eq!(decrease(&vm2, Abi::X86_64, &[G + 2]), Ok(1));
        assert_eq!(
            xatp(&vm2, Abi::X86_64, XenMapSpace::GrantTable, 5, G + 3),
            Ok(0)
        );
        fill_page(&vm2, G + 3, 0x15);
        assert_eq!(populate(&vm2, Abi::X86_64, &[G + 3]), Ok(1));
        assert_eq!(
            *hook.removed.lock().unwrap(),
            vec![(frame(0), 0x10), (frame(1), 0x11)]
        );
        assert_eq!(
            *hook2.removed.lock().unwrap(),
            vec![(frame(3), 0x13), (frame(4), 0x14), (frame(5), 0x15)]
        );
        let _ = vm;
    }
}
