// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A two-vCPU guest: event-channel IPIs in both directions, each taken as
//! an upcall on the other vCPU.

use std::collections::BTreeMap;
use std::time::Duration;

use xen_abi::memory::{E820Entry, E820Type};
use xen_guest_harness::{Runner, Xen, guests, kvm_available};
use xen_hypercall::{DomainConfig, Env};

#[test]
fn test_guest_two_vcpus_exchange_ipis() {
    if !kvm_available("test_guest_two_vcpus_exchange_ipis") {
        return;
    }
    let map = vec![E820Entry::new(0, 32 << 20, E820Type::Ram)];
    let xen = Xen::new(DomainConfig::new(2, 0x40011, map), Env::default());
    let (runner, _) = Runner::new(guests::IPI2)
        .vcpus(2)
        .timeout(Duration::from_secs(30))
        .xen(xen);
    let o = runner.run().unwrap();
    println!("{}", o.console);
    o.assert_status(0);
    let v: BTreeMap<&str, &str> = o
        .lines_with("v ")
        .filter_map(|l| l.split_once(' '))
        .collect();
    assert_eq!(v["add_shinfo"], "0");
    assert_eq!(v["upcall_vector0"], "0");
    assert_eq!(v["upcall_vector1"], "0");
    assert_eq!(v["bind_ipi0"], "0");
    assert_eq!(v["bind_ipi1"], "0");
    assert_eq!(v["send_to_ap"], "0");
    assert_eq!(v["ap_saw_its_port"], "true ap_send 0");
    assert_eq!(v["bsp_took"], "true saw_its_port true");
}
