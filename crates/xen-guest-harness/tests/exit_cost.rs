// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Counts and times exits: a bare port-I/O exit against a full hypercall
//! (exit, decode, dispatch, result) in the same run. Prints the figures;
//! asserts only the counts (performance is never a test assertion).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use kvm_ioctls::Kvm;
use vm_memory::GuestMemoryMmap;
use xen_abi::memory::{E820Entry, E820Type};
use xen_cpuid::{XenCpuid, XenCpuidConfig};
use xen_guest_harness::{Runner, guests, kvm_available};
use xen_hypercall::{Domain, DomainConfig, Env};
use xen_kvm_accel::{Caps, XenAccel, XenConfig};

const N: u64 = 2000;

#[test]
fn test_exit_cost_bare_pio_versus_hypercall() {
    if !kvm_available("test_exit_cost_bare_pio_versus_hypercall") {
        return;
    }
    let config = DomainConfig::new(1, 0x4000a, vec![E820Entry::new(0, 32 << 20, E820Type::Ram)]);
    let dispatcher = Arc::new(xen_hypercall::default_dispatcher::<GuestMemoryMmap>(
        &config,
    ));
    let domain = Arc::new(Domain::new(config, Env::default()));
    let caps = Caps::probe(&Kvm::new().unwrap());
    let accel: Arc<OnceLock<XenAccel<GuestMemoryMmap>>> = Arc::new(OnceLock::new());
    let marks = Arc::new(Mutex::new(Vec::new()));
    let handling = Arc::new(Mutex::new(std::time::Duration::ZERO));
    let h = handling.clone();
    let xen = XenCpuid::new(XenCpuidConfig::new("4.10".parse().unwrap()));
    let (a1, a2, a3, m) = (accel.clone(), accel.clone(), accel.clone(), marks.clone());
    let o = Runner::new(guests::EXIT_COST)
        .arg(N)
        .cpuid(move |c| xen.apply(c, 0).map_err(|e| e.to_string()))
        .vm_setup(move |vm, mem| {
            let x = XenAccel::new(&caps, XenConfig::default(), domain, dispatcher, mem.clone())
                .map_err(|e| e.to_string())?;
            x.setup_vm(vm).map_err(|e| e.to_string())?;
            let _ = a1.set(x);
            Ok(())
        })
        .vcpu_setup(move |vcpu| {
            a2.get().unwrap().setup_vcpu(vcpu);
            Ok(())
        })
        .on_exit(move |vcpu| {
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
            let handled = a3.get().unwrap().handle_exit(vcpu, 0);
            *h.lock().unwrap() += t.elapsed();
            handled
        })
        .run()
        .unwrap();
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
        "exit cost over {N} each: bare port-I/O exit {bare:.0} ns, xen_version hypercall {hcall:.0} ns \
         (ratio {:.2}); of which decode + dispatch + result in the VMM {vmm:.0} ns",
        hcall / bare
    );
}
