// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Counts and times exits, on every hypercall path this KVM has, in one
//! run each: a bare port-I/O exit against a hypercall the VMM answers
//! (exit, decode, dispatch, result), and a send-to-upcall round trip on
//! the global callback vector and on a per-vCPU vector. Prints the figures
//! and their ratios; asserts only the counts (performance is never a test
//! assertion). The figures mean most in the nested lab, where guest code
//! runs natively; on the development machines guest ring-0 code is
//! emulated and dominates.

use xen_guest_harness::xen::{caps, domain_config};
use xen_guest_harness::{MARK_PORT, Runner, Xen, guests, kvm_available};
use xen_kvm_accel::PathChoice;

const N: u64 = 2000;

/// What one run measured, per round, in nanoseconds.
#[derive(Debug)]
struct Costs {
    bare: f64,
    hypercall: f64,
    callback_round: f64,
    vcpu_round: f64,
    vmm: f64,
}

fn measure(path: PathChoice) -> Costs {
    let mut xen = Xen::new(domain_config(1, 0x4000a, 32 << 20));
    xen.path = path;
    let (runner, handle) = Runner::new(guests::EXIT_COST).arg(N).xen(xen);
    // The mark hook runs before the runner's own Xen handling (which the
    // runner times).
    let (runner, marks) = runner.mark_port(MARK_PORT);
    let o = runner.run().unwrap();
    println!("{}", o.console);
    o.assert_status(0);
    let marks = marks.lock().unwrap();
    assert_eq!(marks.len(), 5);
    // N bare exits were unhandled; N hypercalls and 4N upcall-phase
    // hypercalls went to Xen (the user path also takes the MSR write and
    // the set-up calls).
    assert_eq!(o.exits.unhandled_pio, N);
    assert!(o.exits.xen >= 3 * N, "{:?}", o.exits);
    let per = |a: usize, b: usize| (marks[b] - marks[a]).as_nanos() as f64 / N as f64;
    let c = Costs {
        bare: per(0, 1),
        hypercall: per(1, 2),
        callback_round: per(2, 3),
        vcpu_round: per(3, 4),
        vmm: o.exits.xen_ns as f64 / o.exits.xen as f64,
    };
    println!(
        "exit costs over {N} rounds each, {:?} path: bare port-I/O exit {:.0} ns; hypercall \
         {:.0} ns ({:.2}x the bare exit); VMM time per Xen exit, all phases and their KVM \
         calls included, {:.0} ns ({:.1}% of a bare exit); send-to-upcall round trip: \
         callback vector {:.0} ns ({:.2}x the hypercall), per-vCPU vector {:.0} ns ({:.2}x)",
        handle.path(),
        c.bare,
        c.hypercall,
        c.hypercall / c.bare,
        c.vmm,
        100.0 * c.vmm / c.bare,
        c.callback_round,
        c.callback_round / c.hypercall,
        c.vcpu_round,
        c.vcpu_round / c.hypercall
    );
    c
}

#[test]
fn test_exit_cost_bare_pio_hypercall_and_upcall_round_trips() {
    if !kvm_available("test_exit_cost_bare_pio_hypercall_and_upcall_round_trips") {
        return;
    }
    measure(PathChoice::User);
    if caps().kernel_path() {
        measure(PathChoice::Kernel);
    }
}
