// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Counts and times exits: a bare port-I/O exit against a full hypercall
//! (exit, decode, dispatch, result) in the same run. Prints the figures;
//! asserts only the counts (performance is never a test assertion).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xen_abi::memory::{E820Entry, E820Type};
use xen_guest_harness::{Runner, Xen, guests, kvm_available};
use xen_hypercall::{DomainConfig, Env};

const N: u64 = 2000;

#[test]
fn test_exit_cost_bare_pio_versus_hypercall() {
    if !kvm_available("test_exit_cost_bare_pio_versus_hypercall") {
        return;
    }
    let config = DomainConfig::new(1, 0x4000a, vec![E820Entry::new(0, 32 << 20, E820Type::Ram)]);
    let marks = Arc::new(Mutex::new(Vec::new()));
    let handling = Arc::new(Mutex::new(Duration::ZERO));
    let (runner, handle) = Runner::new(guests::EXIT_COST)
        .arg(N)
        .xen(Xen::new(config, Env::default()));
    let (m, h, x) = (marks.clone(), handling.clone(), handle.clone());
    // This hook runs before the runner's own Xen handling: it takes the
    // phase marks, and times the accelerator's work on every other exit.
    let runner = runner.on_exit(move |vcpu, index| {
        let run = vcpu.get_kvm_run();
        if run.exit_reason == kvm_bindings::KVM_EXIT_IO {
            // SAFETY: the exit reason says `io` is the valid member.
            let io = unsafe { run.__bindgen_anon_1.io };
            if io.port == 0xe4 {
                m.lock().unwrap().push(Instant::now());
                return true;
            }
        }
        let t = Instant::now();
        let handled = x.accel().unwrap().handle_exit(vcpu, index);
        *h.lock().unwrap() += t.elapsed();
        handled
    });
    let o = runner.run().unwrap();
    o.assert_status(0);
    let marks = marks.lock().unwrap();
    assert_eq!(marks.len(), 3);
    // N bare exits were unhandled, N hypercall exits were handled (plus
    // the MSR write and the three marks).
    assert_eq!(o.exits.unhandled_pio, N);
    let bare = (marks[1] - marks[0]).as_nanos() as f64 / N as f64;
    let hcall = (marks[2] - marks[1]).as_nanos() as f64 / N as f64;
    let vmm = handling.lock().unwrap().as_nanos() as f64 / N as f64;
    println!(
        "exit cost over {N} each ({:?} path): bare port-I/O exit {bare:.0} ns, xen_version \
         hypercall {hcall:.0} ns (ratio {:.2}), of which decode + dispatch + result in the \
         VMM {vmm:.0} ns",
        handle.path(),
        hcall / bare
    );
}
