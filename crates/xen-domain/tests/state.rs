// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Whole-domain save and restore: a domain is driven by a guest's
//! hypercalls, saved mid-activity, restored into a fresh domain over a copy
//! of its RAM, and then both run the same operations: every answer, every
//! byte of RAM, every upcall and the whole state must agree.
//!
//! One test per component with guest-visible state (each made by
//! [`snapshot_test!`]) and one over all of them at once.

mod common;

use common::*;
use xen_abi::errno::XenErrno;
use xen_abi::hvm::HvmParam;
use xen_abi::memory::{XenMapSpace, XenMemOp};
use xen_abi::sched::ShutdownReason;
use xen_abi::xen::Virq;
use xen_domain::testing::TestDomain;
use xen_domain::{StateError, TimerKind};
use xen_hypercall::testing::Event;

/// An operation's observable result, for comparing two domains.
type Answers = Vec<String>;

/// Saves `a`, restores a fresh domain from the state over a copy of its
/// RAM, checks the restored state is the same, and returns both.
fn save_and_restore(a: &TestDomain) -> TestDomain {
    let state = a.domain.state();
    let b = TestDomain::with(TestDomain::config(2), Some(&state)).expect("restore");
    b.copy_memory_from(a);
    b.clock
        .set(a.clock.now.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(b.domain.state(), state, "the restored state differs");
    b
}

/// Runs `ops` on both domains and checks that they answer, write, inject
/// and end up the same.
fn same_behaviour(a: &TestDomain, b: &TestDomain, ops: fn(&TestDomain) -> Answers) {
    a.injector.take();
    b.injector.take();
    let (ra, rb) = (ops(a), ops(b));
    assert_eq!(ra, rb, "answers differ");
    assert_eq!(a.injector.take(), b.injector.take(), "upcalls differ");
    assert_eq!(ram_digest(a), ram_digest(b), "guest memory differs");
    assert_eq!(a.domain.state(), b.domain.state(), "states differ");
}

/// A round-trip test: `setup` drives a fresh two-vCPU domain, which is
/// saved and restored; `ops` then runs on both.
macro_rules! snapshot_test {
    ($name:ident, $setup:expr, $ops:expr) => {
        #[test]
        fn $name() {
            let a = TestDomain::new(2);
            let setup: fn(&TestDomain) = $setup;
            setup(&a);
            let b = save_and_restore(&a);
            same_behaviour(&a, &b, $ops);
        }
    };
}

fn answers<T: std::fmt::Debug>(items: impl IntoIterator<Item = T>) -> Answers {
    items.into_iter().map(|i| format!("{i:?}")).collect()
}

snapshot_test!(
    test_snapshot_event_channels_ports_and_pending_bits,
    |d| {
        place_shared_info(d).unwrap();
        hvm_param(d, true, HvmParam::CallbackIrq, 2 << 56 | 0xf3)
            .0
            .unwrap();
        let ipi = bind_ipi(d, 1).unwrap();
        bind_virq(d, Virq::Timer, 0).unwrap();
        loopback(d).unwrap();
        send(d, ipi).unwrap();
    },
    |d| {
        let (a, b) = loopback(d).unwrap();
        answers([
            send(d, 1),
            send(d, b),
            close(d, a),
            unmask(d, 2),
            Ok(u64::from(bind_ipi(d, 0).unwrap())),
            Ok(u64::from(d.domain.raise_virq(Virq::Timer, 0))),
        ])
        .into_iter()
        .chain((1..8).map(|p| format!("{:?}", status(d, p))))
        .collect()
    }
);

snapshot_test!(
    test_snapshot_memory_reservations_and_grant_frames,
    |d| {
        place_shared_info(d).unwrap();
        reservation(d, XenMemOp::DecreaseReservation, 0x300).unwrap();
        add_to_physmap(d, XenMapSpace::GrantTable, 0, 0x5000).unwrap();
    },
    |d| {
        answers([
            current_reservation(d),
            reservation(d, XenMemOp::DecreaseReservation, 0x300),
            reservation(d, XenMemOp::PopulatePhysmap, 0x300),
            add_to_physmap(d, XenMapSpace::GrantTable, 1, 0x5001),
            add_to_physmap(d, XenMapSpace::GrantTable, 0, 0x5002),
            current_reservation(d),
        ])
    }
);

snapshot_test!(
    test_snapshot_pirqs_and_their_ports,
    |d| {
        place_shared_info(d).unwrap();
        let pirq = map_gsi(d, 20).unwrap();
        bind_pirq(d, pirq as u32).unwrap();
        free_pirq(d).unwrap();
        d.domain.physdev().set_gsi_level(&d.mem, 20, true);
    },
    |d| {
        answers([
            format!("{:?}", map_gsi(d, 20)),
            format!("{:?}", map_gsi(d, 21)),
            format!("{:?}", free_pirq(d)),
            format!("{}", d.domain.physdev().gsi_asserted(&d.mem, 20)),
        ])
    }
);

snapshot_test!(
    test_snapshot_watchdogs,
    |d| {
        d.clock.set(1_000_000_000);
        watchdog(d, 0, 30).unwrap();
        watchdog(d, 0, 5).unwrap();
    },
    |d| {
        d.rec.take();
        d.clock.set(7_000_000_000);
        d.domain.check_watchdog();
        let shutdowns = d
            .rec
            .take()
            .into_iter()
            .filter(|e| matches!(e, Event::Shutdown(..)))
            .collect::<Vec<_>>();
        assert_eq!(shutdowns, [Event::Shutdown(ShutdownReason::Watchdog, None)]);
        answers([watchdog(d, 0, 1), watchdog(d, 2, 0), watchdog(d, 0, 1)])
    }
);

snapshot_test!(
    test_snapshot_timers_and_vcpu_registrations,
    |d| {
        place_shared_info(d).unwrap();
        register_vcpu_info(d).unwrap();
        register_runstate(d).unwrap();
        hvm_param(d, true, HvmParam::CallbackIrq, 2 << 56 | 0xf3)
            .0
            .unwrap();
        bind_virq(d, Virq::Timer, 1).unwrap();
        d.clock.set(5_000);
        singleshot(d, 1, 50_000).unwrap();
        periodic(d, 0, 10_000_000).unwrap();
    },
    |d| {
        d.clock.set(60_000);
        d.domain.timer_fired(1, TimerKind::Singleshot);
        answers([
            format!("{:?}", d.domain.upcall_route(1)),
            format!("{:?}", d.domain.core().state().vcpus[1]),
            format!("{}", d.domain.upcall_pending(1)),
            format!("{:?}", register_vcpu_info(d)),
        ])
    }
);

snapshot_test!(
    test_snapshot_platform_device,
    |d| {
        let mut p = d.domain.lock_platform();
        // The guest's product, an unplug of disks and NICs, and half a
        // line of its log (the rest is pending in the device).
        use vm_device::MutDevicePio;
        use vm_device::bus::PioAddress;
        p.pio_write(PioAddress(0x12), 0, &3u16.to_le_bytes());
        p.pio_write(PioAddress(0x10), 0, &0x3u16.to_le_bytes());
        for b in b"half a li" {
            p.pio_write(PioAddress(0x12), 0, &[*b]);
        }
    },
    |d| {
        let p = d.domain.lock_platform();
        answers([
            format!("{:?}", p.unplug_mask()),
            format!("{:?}", p.product()),
            format!("{}", p.unplug_history().len()),
            String::from_utf8_lossy(p.pending_log()).into_owned(),
        ])
    }
);

#[test]
fn test_snapshot_whole_domain_mid_activity() {
    let a = TestDomain::new(2);
    // Everything at once, on both vCPUs.
    place_shared_info(&a).unwrap();
    hvm_param(&a, true, HvmParam::CallbackIrq, 2 << 56 | 0xf3)
        .0
        .unwrap();
    register_vcpu_info(&a).unwrap();
    register_runstate(&a).unwrap();
    let ipi = bind_ipi(&a, 1).unwrap();
    bind_virq(&a, Virq::Timer, 0).unwrap();
    let (_, lb) = loopback(&a).unwrap();
    let pirq = map_gsi(&a, 22).unwrap();
    bind_pirq(&a, pirq as u32).unwrap();
    reservation(&a, XenMemOp::DecreaseReservation, 0x310).unwrap();
    add_to_physmap(&a, XenMapSpace::GrantTable, 0, 0x6000).unwrap();
    a.clock.set(2_000_000_000);
    watchdog(&a, 0, 60).unwrap();
    singleshot(&a, 0, 2_500_000_000).unwrap();
    periodic(&a, 1, 4_000_000).unwrap();
    send(&a, ipi).unwrap();
    send(&a, lb).unwrap();

    let b = save_and_restore(&a);
    // The restored domain re-armed its timers from the saved deadlines.
    let rearmed = b.rec.take();
    assert!(rearmed.contains(&Event::Singleshot(0, Some(2_500_000_000))));
    assert!(rearmed.contains(&Event::Periodic(1, Some(4_000_000))));
    assert!(rearmed.contains(&Event::Watchdog(Some(62_000_000_000))));
    same_behaviour(&a, &b, |d| {
        let mut v = answers([
            send(d, 1),
            unmask(d, 1),
            current_reservation(d),
            reservation(d, XenMemOp::PopulatePhysmap, 0x310),
            hvm_param(d, false, HvmParam::CallbackIrq, 0).0,
        ]);
        v.push(format!("{:?}", loopback(d)));
        v.push(format!("{:?}", map_gsi(d, 22)));
        v.push(format!("{:?}", bind_ipi(d, 0)));
        d.domain.timer_fired(0, TimerKind::Singleshot);
        v.extend((1..10).map(|p| format!("{:?}", status(d, p))));
        v
    });
}

#[test]
fn test_restore_refuses_a_state_that_does_not_fit() {
    let a = TestDomain::new(2);
    place_shared_info(&a).unwrap();
    let good = a.domain.state();
    let refused = |state: &xen_domain::State, vcpus: u32| {
        TestDomain::with(TestDomain::config(vcpus), Some(state))
            .err()
            .map(|e| e.to_string())
    };
    // Another vCPU count.
    assert!(refused(&good, 3).is_some());
    // Another layout version.
    let mut s = good.clone();
    s.version += 1;
    assert!(matches!(
        TestDomain::with(TestDomain::config(2), Some(&s)),
        Err(xen_domain::Error::State(StateError::Version(_)))
    ));
    // shared_info on a RAM page.
    let mut s = good.clone();
    s.domain.shared_info_gfn = Some(0x10);
    assert!(matches!(
        TestDomain::with(TestDomain::config(2), Some(&s)),
        Err(xen_domain::Error::State(StateError::Inconsistent(_)))
    ));
    // Another domain id in the event channels.
    let mut s = good.clone();
    s.evtchn.config.domid = 7;
    assert!(refused(&s, 2).is_some());
    // A port table that contradicts itself.
    let mut s = good.clone();
    s.evtchn.ports.push(
        s.evtchn
            .ports
            .first()
            .copied()
            .unwrap_or(xen_evtchn::PortState {
                port: 1,
                binding: xen_evtchn::Binding::Ipi,
                vcpu: 9,
                priority: 7,
                fifo_pending: false,
            }),
    );
    assert!(refused(&s, 2).is_some());
    // The good state still restores.
    assert!(refused(&good, 2).is_none());
    let _ = XenErrno::EINVAL;
}

#[cfg(feature = "serde")]
#[test]
fn test_state_survives_serde_round_trip() {
    let a = TestDomain::new(2);
    place_shared_info(&a).unwrap();
    bind_ipi(&a, 0).unwrap();
    map_gsi(&a, 20).unwrap();
    let state = a.domain.state();
    let json = serde_json::to_string(&state).unwrap();
    let back: xen_domain::State = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);
    assert!(TestDomain::with(TestDomain::config(2), Some(&back)).is_ok());
}
