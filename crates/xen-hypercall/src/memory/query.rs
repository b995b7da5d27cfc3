// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The read-only sub-operations: `current_reservation`,
//! `maximum_reservation`, `maximum_gpfn`, `memory_map` and
//! `get_vnumainfo`. (`maximum_ram_page` only reads the RAM limit and is
//! answered where the sub-operation is decoded, in [`super`].)

use vm_memory::GuestMemoryBackend;
use xen_abi::errno::XenErrno;
use xen_abi::memory::{E820Entry, XenMemOp, XenMemoryDomain, XenMemoryMap, XenMemoryMapCompat};

use super::{MemoryOp, target};
use crate::call::{Abi, HcResult};
use crate::dispatch::Ctx;

/// Size of `struct xen_vnuma_topology_info` in both ABIs.
const VNUMA_TOPOLOGY_INFO_SIZE: usize = 40;

impl MemoryOp {
    pub(super) fn domain_query<M: GuestMemoryBackend>(
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

    pub(super) fn memory_map<M: GuestMemoryBackend>(
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

    pub(super) fn get_vnumainfo<M: GuestMemoryBackend>(
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

#[cfg(test)]
mod tests {
    use xen_abi::memory::XenMapSpace;
    use xen_abi::xen::DOMID_SELF;

    use super::*;
    use crate::memory::testing::*;
    use crate::testing::{ABIS, RAM_SIZE, TestVm};

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
}
