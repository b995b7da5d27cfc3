// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The balloon operations: `increase_reservation`, `decrease_reservation`
//! and `populate_physmap`, their argument checks and the work done per
//! extent (see "Sub-operations" in the module docs of [`super`]).

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use xen_abi::errno::XenErrno;
use xen_abi::memory::{XenMemOp, XenMemf, XenMemoryReservation, XenMemoryReservationCompat};
use xen_abi::warn_limited;
use xen_abi::x86::PAGE_SIZE;

use super::p2m::{P2m, unhook};
use super::{
    MAX_EXTENT_ORDER, MAX_EXTENTS_PER_CALL, MAX_NR_EXTENTS, MAX_PAGES_PER_CALL, MemoryOp,
    read_word, target,
};
use crate::call::{Abi, HcResult};
use crate::dispatch::Ctx;

/// A page of zeros, for freshly populated pages.
static ZERO_PAGE: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];

impl MemoryOp {
    pub(super) fn reservation<M: GuestMemoryBackend>(
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
                unhook(ctx, p, s);
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
            unhook(ctx, p, s);
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
}

/// Element `i` of an extent list.
fn read_pfn<M: GuestMemoryBackend>(ctx: &Ctx<'_, M>, base: u64, i: u64) -> Result<u64, XenErrno> {
    read_word(ctx, base, i)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use xen_abi::memory::{E820Entry, E820Type, XenMapSpace};
    use xen_abi::xen::{DOMID_SELF, HypercallNr};

    use super::*;
    use crate::memory::testing::*;
    use crate::testing::{ABIS, Event, RAM_SIZE, TestVm};

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
}
