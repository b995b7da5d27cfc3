// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Event channels from a guest under KVM (no upcall injection yet): the
//! guest binds, sends, masks, unmasks, loops back and switches to FIFO,
//! reading the bits the VMM sets in its memory.

use xen_guest_harness::xen::domain_config;
use xen_guest_harness::{Runner, Xen, guests, kvm_available};

#[test]
fn test_guest_evtchn_2level_and_fifo_bits() {
    if !kvm_available("test_guest_evtchn_2level_and_fifo_bits") {
        return;
    }
    let xen = Xen::new(domain_config(1, 0x4000a, 32 << 20));
    let (runner, handle) = Runner::new(guests::EVTCHN).xen(xen);
    let o = runner.run().unwrap();
    println!("{}", o.console);
    o.assert_status(0);
    let v = o.values();
    assert_eq!(v["add_shinfo"], "0");
    assert_eq!(v["ipi_port"], "1 pending_before false");
    assert_eq!(v["send"], "0");
    assert_eq!(v["ipi_pending"], "true upcall 1 sel 1");
    assert_eq!(v["masked_pending"], "true upcall 0");
    assert_eq!(v["unmask"], "0");
    assert_eq!(v["unmasked_upcall"], "1 sel 1");
    assert_eq!(v["alloc_unbound"], "0");
    assert_eq!(v["bind_interdomain"], "0");
    assert_eq!(v["loop_ports"], "3 4 local_pending true");
    assert_eq!(v["loop_remote_pending"], "true");
    assert_eq!(v["status"], "0 state 2");
    assert_eq!(v["init_control"], "0 link_bits 17");
    assert_eq!(v["expand_array"], "0");
    // PENDING | LINKED, queue 7 (the default priority) ready, at its head.
    assert_eq!(v["fifo_port"], "5 word a0000000 ready 80 head7 5");
    // The VMM's view agrees.
    let domain = handle.kvm().unwrap().domain();
    let ports = domain.channels().list(domain.memory());
    assert_eq!(ports.len(), 5, "{ports:?}");
}
