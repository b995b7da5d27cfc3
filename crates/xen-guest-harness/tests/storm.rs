// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A hostile-guest storm from a real guest under KVM (guest `storm`, which
//! documents what it sends): 100,000 random hypercalls through the
//! hypercall page, from 64-bit and from 32-bit code, on the user-space
//! path (and on the kernel path where KVM has it). The guest must live to
//! report that every answer was a value or a Xen errno; the VMM must not
//! panic or hang; and afterwards the domain's whole state must still
//! restore into a fresh domain and be the same there.

use std::time::Duration;

use vm_memory::{GuestAddress, GuestMemoryMmap};
use xen_domain::XenDomain;
use xen_guest_harness::xen::{caps, domain_config};
use xen_guest_harness::{Runner, Xen, guests, kvm_available};
use xen_kvm_accel::PathChoice;

const CALLS: u64 = 100_000;
const RAM: u64 = 32 << 20;

fn storm(path: PathChoice, seed: u32) {
    let mut xen = Xen::new(domain_config(1, 0x40011, RAM)).with_domain(|d| {
        // SCHEDOP_block and poll return at once (a spurious wake-up, which
        // the ABI allows) instead of parking the vCPU thread for up to
        // 100 ms each.
        d.park_blocked_vcpus(false)
    });
    xen.path = path;
    let (runner, handle) = Runner::new(guests::STORM)
        .memory(RAM as usize)
        .arg(u64::from(seed) << 32 | CALLS)
        .timeout(Duration::from_secs(300))
        .xen(xen);
    let o = runner.run().unwrap();
    println!("{}", o.console);
    println!(
        "storm {path:?} (seed {seed}, XEN_STORM_SEED to replay): {} hypercall exits to the VMM in {:?}",
        o.exits.xen, o.wall
    );
    o.assert_status(0);
    let v = o.values();
    let counts: Vec<u64> = v["storm"]
        .split(' ')
        .filter_map(|w| w.parse().ok())
        .collect();
    let [n, ok, errno, weird] = counts[..] else {
        panic!("storm line {:?}", v["storm"]);
    };
    assert_eq!((n, weird), (CALLS, 0));
    assert_eq!(ok + errno, CALLS);

    // The domain's invariants: its state restores, unchanged.
    let xen = handle.kvm().unwrap();
    let state = xen.domain().state();
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
    let fresh = XenDomain::builder(xen.domain().config().clone(), mem)
        .restore(&state)
        .unwrap_or_else(|e| panic!("the state after the storm does not restore: {e:?}"));
    assert_eq!(fresh.state(), state);
}

#[test]
fn test_guest_storm_of_random_hypercalls() {
    if !kvm_available("test_guest_storm_of_random_hypercalls") {
        return;
    }
    // XEN_STORM_SEED replays a failed run's seed (printed with it).
    let seed = std::env::var("XEN_STORM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        });
    storm(PathChoice::User, seed);
    if caps().kernel_path() {
        storm(PathChoice::Kernel, seed);
    }
}
