// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! PV timers end to end: VCPUOP_set_singleshot_timer, set_timer_op and a
//! periodic timer fire VIRQ_TIMER as upcalls into the guest (timerfds on
//! the event-manager thread); SCHEDOP_poll returns at once on a pending
//! port and blocks until its timeout otherwise. Also prints the guest-observed send-to-upcall
//! latency beside a bare hypercall round trip (no timing assertions).

use std::time::Duration;

use xen_guest_harness::xen::domain_config;
use xen_guest_harness::{Runner, Xen, guests, kvm_available};

#[test]
fn test_guest_timer_virq_singleshot_set_timer_op_periodic() {
    if !kvm_available("test_guest_timer_virq_singleshot_set_timer_op_periodic") {
        return;
    }
    let xen = Xen::new(domain_config(1, 0x40011, 32 << 20));
    let (runner, handle) = Runner::new(guests::TIMER)
        .timeout(Duration::from_secs(30))
        .xen(xen);
    let o = runner.run().unwrap();
    println!("{}", o.console);
    o.assert_status(0);
    let v = o.values();
    assert_eq!(v["bind_virq"], "0");
    assert_eq!(v["singleshot"], "0");
    assert_eq!(v["singleshot_fired"], "true port true");
    assert_eq!(v["set_timer_op"], "0");
    assert_eq!(v["set_timer_op_fired"], "true port true");
    assert_eq!(v["periodic"], "0");
    assert_eq!(v["periodic_fired"], "true port true");
    assert_eq!(v["stop_periodic"], "0");
    assert_eq!(v["poll_pending"], "0 fast true");
    assert_eq!(v["poll_timeout_rounds_bounded"], "true waited true");
    let lat: Vec<u64> = v["tsc_hypercall"]
        .split(' ')
        .filter_map(|x| x.parse().ok())
        .collect();
    println!(
        "{:?} path: bare hypercall {} TSC ticks, send-to-upcall {} ticks (ratio {:.2})",
        handle.path(),
        lat[0],
        lat[1],
        lat[1] as f64 / lat[0] as f64
    );
}
