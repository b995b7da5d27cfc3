// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The harness itself under KVM: status, printing, panics, faults, timeouts.

use std::time::Duration;
use xen_guest_harness::{End, Runner, STATUS_EXCEPTION, STATUS_PANIC, guests, kvm_available};

/// Mode 3 spins forever and must hit the short timeout; the others get
/// the default one, which leaves room for slow hosts (the nested lab runs
/// under TCG and may share the CPU with a build).
fn selftest(arg: u64) -> Option<xen_guest_harness::Outcome> {
    kvm_available("harness selftest").then(|| {
        let runner = Runner::new(guests::SELFTEST).arg(arg);
        let runner = if arg == 3 {
            runner.timeout(SPIN_TIMEOUT)
        } else {
            runner
        };
        runner.run().unwrap()
    })
}

const SPIN_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn test_harness_guest_prints_and_exits_with_status() {
    let Some(o) = selftest(0) else { return };
    o.assert_status(0x600d);
    let lines: Vec<&str> = o.console.lines().collect();
    assert_eq!(
        lines,
        [
            "vcpu 0 arg 0",
            "u8 255 u64 18446744073709551615 i32 -2147483648 i64 -1",
            "hex deadbeef 0 ffffffffffffffff",
            "str x char é bool true false",
        ]
    );
    assert!(o.exits.pio > 0);
    assert_eq!(o.exits.unhandled_pio, 0);
}

#[test]
fn test_harness_guest_panic_reports_location() {
    let Some(o) = selftest(1) else { return };
    assert_eq!(o.end, End::Status(STATUS_PANIC), "{}", o.console);
    assert!(o.console.contains("PANIC at "), "{}", o.console);
    assert!(o.console.contains("selftest.rs:"), "{}", o.console);
}

#[test]
fn test_harness_guest_page_fault_reports_vector_and_address() {
    let Some(o) = selftest(2) else { return };
    assert_eq!(o.end, End::Status(STATUS_EXCEPTION + 14), "{}", o.console);
    assert!(o.console.contains("EXCEPTION: vector 14"), "{}", o.console);
    assert!(o.console.contains("cr2 0x200000000"), "{}", o.console);
}

#[test]
fn test_harness_spinning_guest_times_out() {
    let Some(o) = selftest(3) else { return };
    assert_eq!(o.end, End::Timeout);
    assert!(o.wall >= SPIN_TIMEOUT);
}

#[test]
fn test_harness_long_output_arrives_whole() {
    let Some(o) = selftest(4) else { return };
    o.assert_status(0);
    let lines: Vec<&str> = o.lines_with("line ").collect();
    assert_eq!(lines.len(), 1024);
    assert_eq!(
        lines[0x3ff],
        "3ff 0123456789abcdef0123456789abcdef0123456789"
    );
}
