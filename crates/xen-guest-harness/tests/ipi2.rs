// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A two-vCPU guest: event-channel IPIs in both directions, each taken as
//! an upcall on the other vCPU.

use std::time::Duration;

use xen_guest_harness::xen::domain_config;
use xen_guest_harness::{Runner, Xen, guests, kvm_available};

#[test]
fn test_guest_two_vcpus_exchange_ipis() {
    if !kvm_available("test_guest_two_vcpus_exchange_ipis") {
        return;
    }
    let xen = Xen::new(domain_config(2, 0x40011, 32 << 20));
    let (runner, _) = Runner::new(guests::IPI2)
        .vcpus(2)
        .timeout(Duration::from_secs(30))
        .xen(xen);
    let o = runner.run().unwrap();
    println!("{}", o.console);
    o.assert_status(0);
    let v = o.values();
    assert_eq!(v["add_shinfo"], "0");
    assert_eq!(v["upcall_vector0"], "0");
    assert_eq!(v["upcall_vector1"], "0");
    assert_eq!(v["bind_ipi0"], "0");
    assert_eq!(v["bind_ipi1"], "0");
    assert_eq!(v["send_to_ap"], "0");
    assert_eq!(v["ap_saw_its_port"], "true ap_send 0");
    assert_eq!(v["bsp_took"], "true saw_its_port true");
}
