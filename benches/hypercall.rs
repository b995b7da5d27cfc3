// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The paths a guest sees, over the real code of several crates:
//!
//! * `vmm/*`: a user-path hypercall in the VMM, from the exit's registers
//!   (`kvm_regs`/`kvm_sregs`, as `kvm_run`'s sync area holds them) through
//!   decode, the complete domain's dispatch and the result's write-back
//!   into RAX (`xen_kvm_accel::exit::trap_hypercall`): `xen_version`, an
//!   event send that delivers (2-level bits and the upcall), and a
//!   multicall of four `xen_version`s;
//! * `evtchn/*`: a delivering send, 2-level and FIFO, in the event
//!   channels alone;
//! * `kvm/*` (with `/dev/kvm`): the KVM calls an upcall adds on the
//!   user-space path (the injecting MSI, the LAPIC read and write that
//!   clear a callback vector's in-service bit);
//! * `guest/*` (with `/dev/kvm`): what the guest sees, timed by the host
//!   between the `exit_cost` guest's phase marks: a bare port-I/O exit
//!   round trip, a hypercall the VMM answers, and send-to-upcall round
//!   trips on the callback vector and on a per-vCPU vector.
//!
//! The ratios that matter (VMM cost per hypercall against one bare exit,
//! send-to-upcall against a hypercall) come from one run of this binary:
//! `cargo bench --bench hypercall`. CI runs each once as a test.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use kvm_bindings::{kvm_regs, kvm_sregs};
use vm_memory::{Bytes, GuestAddress};
use xen_abi::event_channel::EvtchnOp;
use xen_abi::hvm::HvmParam;
use xen_abi::x86::{CR0_PE, EFER_LMA, EFER_LME};
use xen_abi::xen::{HypercallNr, MulticallEntry};
use xen_domain::testing::TestDomain;
use xen_guest_harness::xen::domain_config;
use xen_guest_harness::{MARK_PORT, Runner, Xen, guests};
use xen_kvm_accel::exit::trap_hypercall;

const SHINFO_GFN: u64 = 0x200;
const ARG: u64 = 0x10_0000;
const LIST: u64 = 0x10_1000;

/// A vCPU in 64-bit mode at CPL 0, paging off in the VMM's eyes.
fn long_mode() -> kvm_sregs {
    let mut s = kvm_sregs {
        cr0: CR0_PE,
        efer: EFER_LMA | EFER_LME,
        ..Default::default()
    };
    s.cs.l = 1;
    s
}

fn regs(nr: HypercallNr, a0: u64, a1: u64) -> kvm_regs {
    kvm_regs {
        rax: u64::from(nr.raw()),
        rdi: a0,
        rsi: a1,
        ..Default::default()
    }
}

/// A domain with shared_info placed, the callback vector set and a bound
/// self-IPI, as a guest leaves it once it takes upcalls.
fn domain() -> (TestDomain, u32) {
    let d = TestDomain::new(1);
    d.domain.core().lock().shared_info_gfn = Some(SHINFO_GFN);
    d.domain.core().lock().params[HvmParam::CallbackIrq.raw() as usize] = 2 << 56 | 0xf3;
    let port = d.domain.channels().bind_ipi(&d.mem, 0).unwrap();
    (d, port)
}

/// What the guest's upcall handler does: clears `evtchn_upcall_pending`,
/// the selector and the pending word, so the next send delivers again.
fn consume(d: &TestDomain) {
    let si = SHINFO_GFN << 12;
    d.mem.write_obj(0u8, GuestAddress(si)).unwrap();
    d.mem.write_obj(0u64, GuestAddress(si + 8)).unwrap();
    d.mem.write_obj(0u64, GuestAddress(si + 2048)).unwrap();
}

fn vmm(c: &mut Criterion) {
    let (d, port) = domain();
    let sregs = long_mode();
    let version = regs(HypercallNr::XenVersion, 0, 0);
    c.bench_function("vmm/xen_version (exit registers to RAX)", |b| {
        b.iter(|| {
            let mut r = version;
            trap_hypercall(&d.domain, 0, black_box(&mut r), &sregs)
        })
    });
    d.write(ARG, port);
    let send = regs(
        HypercallNr::EventChannelOp,
        u64::from(EvtchnOp::Send.raw()),
        ARG,
    );
    c.bench_function("vmm/event send, delivering (exit registers to RAX)", |b| {
        b.iter_batched(
            || consume(&d),
            |()| {
                let mut r = send;
                trap_hypercall(&d.domain, 0, black_box(&mut r), &sregs)
            },
            BatchSize::SmallInput,
        )
    });
    for i in 0..4 {
        d.write(
            LIST + i * 64,
            MulticallEntry {
                op: u64::from(HypercallNr::XenVersion.raw()),
                ..Default::default()
            },
        );
    }
    let multi = regs(HypercallNr::Multicall, LIST, 4);
    c.bench_function(
        "vmm/multicall of 4 xen_version (exit registers to RAX)",
        |b| {
            b.iter(|| {
                let mut r = multi;
                trap_hypercall(&d.domain, 0, black_box(&mut r), &sregs)
            })
        },
    );
}

fn evtchn(c: &mut Criterion) {
    let (d, port) = domain();
    let ch = d.domain.channels().clone();
    c.bench_function("evtchn/2-level send, delivering", |b| {
        b.iter_batched(
            || consume(&d),
            |()| ch.send(&d.mem, black_box(port)),
            BatchSize::SmallInput,
        )
    });
    // FIFO: control block at 0x300000, one event-array page at 0x301000,
    // every word masked but the port's, as Linux sets them up.
    let (control, array) = (0x30_0000u64, 0x30_1000u64);
    for w in 0..1024u64 {
        d.write(array + 4 * w, 1u32 << 30);
    }
    ch.init_control(&d.mem, control >> 12, 0, 0).unwrap();
    ch.expand_array(&d.mem, array >> 12).unwrap();
    d.write(array + 4 * u64::from(port), 0u32);
    c.bench_function("evtchn/FIFO send, delivering", |b| {
        b.iter_batched(
            || {
                // The guest's handler: READY, the queue head, the word.
                d.write(control, 0u32);
                d.write(control + 8 + 4 * 7, 0u32);
                d.write(array + 4 * u64::from(port), 0u32);
                d.mem
                    .write_obj(0u8, GuestAddress(SHINFO_GFN << 12))
                    .unwrap();
            },
            |()| ch.send(&d.mem, black_box(port)),
            BatchSize::SmallInput,
        )
    });
}

/// The exit_cost guest's phases, timed by the host: the mean of `phase`
/// (0 bare exit, 1 hypercall, 2 callback-vector round trip, 3 per-vCPU
/// vector round trip) over `rounds` rounds.
fn guest_phase(phase: usize, rounds: u64) -> Duration {
    let xen = Xen::new(domain_config(1, 0x4000a, 32 << 20));
    let (runner, _) = Runner::new(guests::EXIT_COST).arg(rounds.max(1)).xen(xen);
    let (runner, marks) = runner.mark_port(MARK_PORT);
    runner
        .run()
        .expect("the exit_cost guest runs")
        .assert_status(0);
    let marks = marks.lock().unwrap();
    marks[phase + 1] - marks[phase]
}

/// The KVM calls an upcall costs the VMM on the user-space path, beside
/// the domain's own work above: the MSI that injects a vector, and the
/// LAPIC read and write that clear a callback vector's in-service bit.
fn kvm(c: &mut Criterion) {
    if !xen_guest_harness::kvm_available("benches/hypercall kvm/*") {
        return;
    }
    let kvm = kvm_ioctls::Kvm::new().unwrap();
    let vm = kvm.create_vm().unwrap();
    vm.create_irq_chip().unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    let msi = kvm_bindings::kvm_msi {
        address_lo: 0xfee0_0000,
        data: 0xf3,
        ..Default::default()
    };
    c.bench_function("kvm/KVM_SIGNAL_MSI (inject an upcall vector)", |b| {
        b.iter(|| vm.signal_msi(black_box(msi)))
    });
    c.bench_function(
        "kvm/KVM_GET_LAPIC + KVM_SET_LAPIC (clear an in-service bit)",
        |b| {
            b.iter(|| {
                let l = vcpu.get_lapic().unwrap();
                vcpu.set_lapic(black_box(&l)).unwrap();
            })
        },
    );
}

fn guest(c: &mut Criterion) {
    if !xen_guest_harness::kvm_available("benches/hypercall guest/*") {
        return;
    }
    let mut g = c.benchmark_group("guest");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (phase, name) in [
        "bare port-I/O exit round trip",
        "hypercall round trip (xen_version, VMM-answered)",
        "send-to-upcall round trip, callback vector",
        "send-to-upcall round trip, per-vCPU vector",
    ]
    .into_iter()
    .enumerate()
    {
        g.bench_function(name, |b| b.iter_custom(|iters| guest_phase(phase, iters)));
    }
    g.finish();
}

criterion_group!(benches, vmm, evtchn, kvm, guest);
criterion_main!(benches);
