// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! In-process cost of one hypercall through the dispatcher.
//!
//! Compare with the cost of one bare port-I/O exit measured by the
//! `exit_cost` guest test in the same run (CONTRIBUTING.md, "Benchmarks").

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use vm_memory::Bytes;
use xen_abi::xen::HypercallNr;
use xen_hypercall::testing::TestVm;
use xen_hypercall::{Abi, Hypercall};

fn vm() -> TestVm {
    let mut vm = TestVm::new(1);
    vm.dispatcher = xen_hypercall::default_dispatcher(vm.domain.config());
    vm
}

fn call(nr: HypercallNr, args: [u64; 6]) -> Hypercall {
    Hypercall {
        abi: Abi::X86_64,
        cpl: 0,
        nr: u64::from(nr.raw()),
        args,
    }
}

fn dispatch(c: &mut Criterion) {
    let vm = vm();
    let version = call(HypercallNr::XenVersion, [0; 6]);
    c.bench_function("dispatch xen_version(version)", |b| {
        b.iter(|| vm.call_raw(0, black_box(&version)))
    });
    // get_features reads and writes an 8-byte argument in guest memory.
    let features = call(HypercallNr::XenVersion, [6, 0x1000, 0, 0, 0, 0]);
    c.bench_function("dispatch xen_version(get_features)", |b| {
        b.iter(|| vm.call_raw(0, black_box(&features)))
    });
    let time = call(HypercallNr::HvmOp, [10, 0x1000, 0, 0, 0, 0]);
    c.bench_function("dispatch hvm_op(get_time)", |b| {
        b.iter(|| vm.call_raw(0, black_box(&time)))
    });
    // A multicall of 8 xen_version calls.
    for i in 0..8u64 {
        vm.mem
            .write_obj(
                u64::from(HypercallNr::XenVersion.raw()),
                vm_memory::GuestAddress(0x2000 + i * 64),
            )
            .unwrap();
    }
    let multi = call(HypercallNr::Multicall, [0x2000, 8, 0, 0, 0, 0]);
    c.bench_function("dispatch multicall(8 x xen_version)", |b| {
        b.iter(|| vm.call_raw(0, black_box(&multi)))
    });
    let unknown = call(HypercallNr::Arch7, [0; 6]);
    c.bench_function("dispatch unknown (-ENOSYS)", |b| {
        b.iter(|| vm.call_raw(0, black_box(&unknown)))
    });
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
