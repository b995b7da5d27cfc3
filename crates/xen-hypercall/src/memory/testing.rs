// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Test helpers shared by the tests of the `memory_op` sub-modules: a VM
//! with a [`MemoryOp`] registered, argument layout in guest memory, and one
//! helper per sub-operation.

use std::sync::Arc;

use xen_abi::memory::{
    E820Entry, E820Type, XenAddToPhysmap, XenAddToPhysmapCompat, XenMapSpace, XenMemOp,
    XenMemoryDomain, XenMemoryReservation, XenMemoryReservationCompat, memory_op_cmd,
};
use xen_abi::x86::PAGE_SIZE;
use xen_abi::xen::{DOMID_SELF, DomId, HypercallNr};

use super::{GrantFrames, MemoryOp};
use crate::call::{Abi, HcResult};
use crate::domain::DomainConfig;
use crate::testing::{RAM_SIZE, TestVm};

pub(super) const ARG: u64 = 0x1000;
pub(super) const LIST: u64 = 0x2000;
pub(super) const LIST2: u64 = 0x3000;
pub(super) const ERRS: u64 = 0x4000;
pub(super) const BEYOND: u64 = RAM_SIZE + 0x1000;
pub(super) const RAM_PAGES: u64 = RAM_SIZE / PAGE_SIZE;
pub(super) const G: u64 = 0x100;
pub(super) const HOLE_AREA: u64 = 0xf0000;

pub(super) fn setup() -> (TestVm, Arc<MemoryOp>) {
    setup_with(TestVm::new(2))
}

pub(super) fn setup_with(mut vm: TestVm) -> (TestVm, Arc<MemoryOp>) {
    let m = Arc::new(MemoryOp::new(vm.domain.config(), GrantFrames::default()));
    vm.dispatcher.register(HypercallNr::MemoryOp, m.clone());
    (vm, m)
}

pub(super) fn config(map: Vec<E820Entry>) -> DomainConfig {
    DomainConfig::new(2, xen_cpuid::XenVersion::V4_10, map)
}

pub(super) fn call(vm: &TestVm, abi: Abi, op: XenMemOp, start: u64, arg: u64) -> HcResult {
    vm.call(
        0,
        abi,
        HypercallNr::MemoryOp,
        &[memory_op_cmd(op, start), arg],
    )
}

pub(super) fn write_words(vm: &TestVm, abi: Abi, gpa: u64, words: &[u64]) {
    for (i, &w) in words.iter().enumerate() {
        match abi {
            Abi::X86_64 => vm.write(gpa + 8 * i as u64, w),
            Abi::X86_32 => vm.write(gpa + 4 * i as u64, w as u32),
        }
    }
}

pub(super) fn write_reservation(
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
pub(super) fn reserve(
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

pub(super) fn decrease(vm: &TestVm, abi: Abi, gfns: &[u64]) -> HcResult {
    reserve(vm, abi, XenMemOp::DecreaseReservation, 0, gfns, 0)
}

pub(super) fn populate(vm: &TestVm, abi: Abi, gfns: &[u64]) -> HcResult {
    reserve(vm, abi, XenMemOp::PopulatePhysmap, 0, gfns, 0)
}

pub(super) fn write_xatp(
    vm: &TestVm,
    abi: Abi,
    domid: DomId,
    space: u32,
    idx: u64,
    gpfn: u64,
    size: u16,
) {
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

pub(super) fn xatp(vm: &TestVm, abi: Abi, space: XenMapSpace, idx: u64, gpfn: u64) -> HcResult {
    write_xatp(vm, abi, DOMID_SELF, space.raw(), idx, gpfn, 0);
    call(vm, abi, XenMemOp::AddToPhysmap, 0, ARG)
}

pub(super) fn query(vm: &TestVm, abi: Abi, op: XenMemOp, domid: DomId) -> HcResult {
    vm.write(ARG, XenMemoryDomain { domid });
    call(vm, abi, op, 0, ARG)
}

pub(super) fn fill_page(vm: &TestVm, gfn: u64, byte: u8) {
    vm.write_bytes(gfn * PAGE_SIZE, &[byte; PAGE_SIZE as usize]);
}

pub(super) fn page(vm: &TestVm, gfn: u64) -> Vec<u8> {
    vm.read_bytes(gfn * PAGE_SIZE, PAGE_SIZE as usize)
}

pub(super) fn three_entry_map() -> Vec<E820Entry> {
    vec![
        E820Entry::new(0, 0x9fc00, E820Type::Ram),
        E820Entry::new(0xf0000, 0x10000, E820Type::Reserved),
        E820Entry::new(0x10_0000, RAM_SIZE - 0x10_0000, E820Type::Ram),
    ]
}
