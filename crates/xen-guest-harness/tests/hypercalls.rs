// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A guest installs the hypercall page through the MSR and calls every
//! hypercall family, from 64-bit code and from a 32-bit compatibility
//! segment. Here (no in-kernel Xen) the calls take the user-space trap
//! path; in the nested lab the same test takes the kernel-intercept path.
//! Results and memory effects are checked on both sides.

use std::collections::BTreeMap;
use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress};
use xen_abi::memory::{E820Entry, E820Type};
use xen_abi::sched::ShutdownReason;
use xen_guest_harness::{Outcome, Runner, Xen, guests, kvm_available};
use xen_hypercall::testing::{Event, Recorder};
use xen_hypercall::{Domain, DomainConfig};
use xen_kvm_accel::Path;

const RAM: u64 = 32 << 20;

struct Run {
    outcome: Outcome,
    results: BTreeMap<String, i64>,
    values: BTreeMap<String, String>,
    domain: Arc<Domain>,
    rec: Arc<Recorder>,
    path: Path,
    shinfo: Vec<u8>,
}

fn run() -> Run {
    let rec = Arc::new(Recorder::default());
    let map = vec![E820Entry::new(0, RAM, E820Type::Ram)];
    let r = rec.clone();
    let xen =
        Xen::new(DomainConfig::new(1, xen_cpuid::XenVersion::V4_10, map)).with_domain(move |d| {
            d.timers(r.clone())
                .events(r.clone())
                .console(r.clone())
                .memory_backing(r)
        });
    let (runner, handle) = Runner::new(guests::HYPERCALLS)
        .memory(RAM as usize)
        .xen(xen);
    let o = runner.run().unwrap();
    println!("{}", o.console);
    o.assert_status(0);
    let results = o
        .lines_with("r ")
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect();
    let values = o
        .lines_with("v ")
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let xen = handle.kvm().unwrap();
    let domain = xen.domain().core().clone();
    // Guest memory outlives the VM: the domain holds it.
    let mut shinfo = vec![0u8; 4096];
    let gpa = domain.shared_info_gpa().expect("shared_info placed");
    xen.domain()
        .memory()
        .read_slice(&mut shinfo, GuestAddress(gpa))
        .unwrap();
    Run {
        outcome: o,
        results,
        values,
        domain,
        rec,
        path: xen.path(),
        shinfo,
    }
}

#[test]
fn test_guest_hypercalls_every_family_both_abis() {
    if !kvm_available("test_guest_hypercalls_every_family_both_abis") {
        return;
    }
    let r = run();
    println!(
        "path {:?}; exits {:?}; wall {:?}",
        r.path, r.outcome.exits, r.outcome.wall
    );
    let want: &[(&str, i64)] = &[
        ("version", 0x4000a),
        ("extraversion", 0),
        ("get_features", 0),
        ("pagesize", 4096),
        ("version_bad_ptr", -14),
        ("add_to_physmap", 0),
        ("decrease1", 1),
        ("decrease2", 0),
        ("get_time", 0),
        ("set_callback", 0),
        ("register_vcpu_info", 0),
        ("register_vcpu_info_again", -16),
        ("is_up", 1),
        ("is_up_bad_vcpu", -2),
        ("vm_assist_runstate_flag", 0),
        ("vm_assist_4gb_segments", -22),
        ("set_timer_op", 0),
        ("console_write", 0),
        ("multicall", 0),
        ("multicall_0", 0x4000a),
        ("multicall_1", 4096),
        ("unknown", -38),
        ("sysctl", -1),
        ("version32", 0x4000a),
        ("extraversion32", 0),
        ("platform_parameters32", 0),
        ("console_write32", 0),
        // Two pages fewer: the one ballooned out, and the RAM page that
        // shared_info replaced (Xen frees it; the guest loses that page).
        ("current_reservation32", (RAM / 4096) as i64 - 2),
        ("get_callback32", 0),
        ("is_up32", 1),
        ("shutdown_code32", 0),
        ("unknown32", -38),
        ("vm_assist32", 0),
        ("multicall32", 0),
        ("multicall32_0", 0x4000a),
        ("multicall32_1", 4096),
        ("set_timer_op32_cancel", 0),
        ("shutdown", 0),
    ];
    for (k, v) in want {
        assert_eq!(r.results.get(*k), Some(v), "result of {k}");
    }
    assert_eq!(r.results.len(), want.len());
    assert_eq!(r.values["extraversion"], ".0 tail 0");
    assert_eq!(r.values["extraversion32"], ".0");
    assert_eq!(r.values["get_time_nonzero"], "true");
    assert_eq!(r.values["vcpu_info_pending"], "1");
    assert_eq!(
        u64::from_str_radix(&r.values["callback32"], 16),
        Ok((2 << 56) | 0xf3)
    );
    let features = u32::from_str_radix(&r.values["features"], 16).unwrap();
    assert_eq!(features, r.domain.config().features.bits());

    // Effects on the VMM side.
    let st = r.domain.state();
    assert_eq!(st.shared_info_gfn, Some(0x1f00));
    assert!(st.vcpus[0].vcpu_info_gpa.is_some());
    assert_eq!(st.params[0], (2 << 56) | 0xf3);
    assert_eq!(st.shutdown_code, Some(7));
    let events = r.rec.take();
    assert!(events.contains(&Event::Console(b"hello from 64-bit\n".to_vec())));
    assert!(events.contains(&Event::Console(b"hello from 32-bit\n".to_vec())));
    assert!(events.contains(&Event::Remove(0x1e00, 1)));
    assert!(events.contains(&Event::Shutdown(ShutdownReason::Poweroff, Some(7))));
    // The single-shot timer was armed about 1 s ahead, then cancelled.
    let armed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Singleshot(0, d) => Some(*d),
            _ => None,
        })
        .collect();
    assert_eq!(armed.len(), 2, "{events:?}");
    assert!(armed[0].is_some_and(|d| d > 1_000_000_000));
    assert_eq!(armed[1], None);
    // Enabled from 64-bit code, disabled again from 32-bit code.
    assert_eq!(st.vm_assist & (1 << 5), 0);
    // shared_info was placed and the wall clock published (wc_version even, > 0).
    assert_eq!(r.shinfo.len(), 4096);
    let wc_version = u32::from_le_bytes(r.shinfo[3072..3076].try_into().unwrap());
    let wc_sec = u32::from_le_bytes(r.shinfo[3076..3080].try_into().unwrap());
    assert!(
        wc_version > 0 && wc_version % 2 == 0,
        "wc_version {wc_version}"
    );
    assert!(wc_sec > 1_600_000_000, "wall clock {wc_sec}");
    assert_eq!(r.domain.config().version.raw(), 0x4000a);
}
