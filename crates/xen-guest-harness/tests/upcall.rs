// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Event-channel upcalls taken by a guest's IDT handler: per-vCPU vector,
//! masked delivery and unmask re-delivery (2-level), then the same upcall
//! through a FIFO queue.

use xen_guest_harness::xen::domain_config;
use xen_guest_harness::{Runner, Xen, guests, kvm_available};

#[test]
fn test_guest_upcall_per_vcpu_vector_masking_and_unmask() {
    if !kvm_available("test_guest_upcall_per_vcpu_vector_masking_and_unmask") {
        return;
    }
    let (runner, handle) = Runner::new(guests::UPCALL)
        .timeout(std::time::Duration::from_secs(20))
        .xen(Xen::new(domain_config(1, 0x40011, 32 << 20)));
    let o = runner.run().unwrap();
    println!("{}", o.console);
    o.assert_status(0);
    let v = o.values();
    assert_eq!(v["add_shinfo"], "0");
    assert_eq!(v["upcall_vector"], "0");
    assert_eq!(v["callback_gsi1"], "0");
    assert_eq!(v["bind_ipi"], "0");
    assert_eq!(v["send"], "0");
    assert_eq!(v["upcall_taken"], "true count 1");
    assert_eq!(v["seen"], "true port 1");
    assert_eq!(v["masked_count"], "1");
    assert_eq!(v["unmask"], "0");
    assert_eq!(v["unmask_taken"], "true seen true");
    // FIFO: the upcall comes through the ready queue, the handler walks it.
    assert_eq!(v["init_control"], "0");
    assert_eq!(v["expand_array"], "0");
    assert_eq!(v["fifo_send"], "0");
    assert_eq!(v["fifo_taken"], "true seen true");
    println!("path {:?}", handle.path());
}
