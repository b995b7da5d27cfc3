// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A complete domain with no hypervisor: hypercalls, events and their
//! upcall routes, SCHEDOP_poll, timers on real timerfds served by an
//! `event-manager` loop, and vCPUs parked in SCHEDOP_block.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use event_manager::{EventManager, SubscriberOps};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use xen_abi::hvm::{HvmParam, IntxPin};
use xen_abi::memory::{E820Entry, E820Type};
use xen_abi::sched::{SchedOp, SchedPoll};
use xen_abi::xen::{HypercallNr, Virq};
use xen_cpuid::XenVersion;
use xen_domain::testing::{RecordingInjector, TestDomain};
use xen_domain::{Subscriber, UpcallRoute, XenDomain};
use xen_hypercall::testing::IDENTITY_64;
use xen_hypercall::{Abi, DomainConfig, Hypercall};

/// `SCHEDOP_poll` on `ports` with `timeout` (0: none) from `vcpu`.
fn poll(d: &TestDomain, vcpu: u32, ports: &[u32], timeout: u64) -> xen_hypercall::HcResult {
    for (i, p) in ports.iter().enumerate() {
        d.write(LIST + 4 * i as u64, *p);
    }
    let arg = SchedPoll {
        ports: LIST,
        nr_ports: ports.len() as u32,
        pad: 0,
        timeout,
    };
    with_arg(d, vcpu, HypercallNr::SchedOp, SchedOp::Poll.raw(), arg).0
}

#[test]
fn test_complete_domain_hypercall_event_and_poll_without_kvm() {
    let d = TestDomain::new(2);
    // A hypercall.
    assert_eq!(
        d.call(0, Abi::X86_64, HypercallNr::XenVersion, &[0]),
        Ok(0x4000a)
    );
    // An event: shared_info, the callback vector, an IPI sent by the guest.
    place_shared_info(&d).unwrap();
    hvm_param(&d, true, HvmParam::CallbackIrq, 2 << 56 | 0xf3)
        .0
        .unwrap();
    let port = bind_ipi(&d, 1).unwrap();
    assert_eq!(send(&d, port), Ok(0));
    assert_eq!(d.injector.take(), [(1, UpcallRoute::CallbackVector(0xf3))]);
    // A poll on a pending port returns at once; on an idle one it blocks
    // (here: the VMM's events hear of it) until the timeout.
    assert_eq!(poll(&d, 1, &[port], 0), Ok(0));
    let idle = bind_ipi(&d, 0).unwrap();
    d.rec.take();
    assert_eq!(poll(&d, 0, &[idle], 5_000), Ok(0));
    assert_eq!(
        d.rec.take(),
        [xen_hypercall::testing::Event::Block(0, Some(5_000))]
    );
    // Every family is registered: a known sub-op with a pointer outside
    // RAM faults in the family (-EFAULT) instead of meeting -ENOSYS.
    let bad = 1 << 40;
    for (nr, cmd) in [
        (HypercallNr::MemoryOp, 3),
        (HypercallNr::VcpuOp, 10),
        (HypercallNr::HvmOp, 1),
        (HypercallNr::PhysdevOp, 23),
        (HypercallNr::EventChannelOp, 4),
        (HypercallNr::SchedOp, 2),
        (HypercallNr::XenVersion, 6),
    ] {
        let r = d.call(0, Abi::X86_64, nr, &[cmd, 0, bad]);
        let r = if r == Err(xen_abi::errno::XenErrno::EFAULT) {
            r
        } else {
            d.call(0, Abi::X86_64, nr, &[cmd, bad])
        };
        assert_eq!(r, Err(xen_abi::errno::XenErrno::EFAULT), "{nr:?}");
    }
}

#[test]
fn test_upcall_routes_follow_xen_priority() {
    let d = TestDomain::new(2);
    place_shared_info(&d).unwrap();
    // No callback: no route, events stay pending.
    assert_eq!(d.domain.upcall_route(0), None);
    // A GSI is vCPU 0's only.
    hvm_param(&d, true, HvmParam::CallbackIrq, 9).0.unwrap();
    assert_eq!(d.domain.upcall_route(0), Some(UpcallRoute::Line(9)));
    assert_eq!(d.domain.upcall_route(1), None);
    // Beyond the I/O APIC's 24 pins: disabled, as by Xen.
    hvm_param(&d, true, HvmParam::CallbackIrq, 24).0.unwrap();
    assert_eq!(d.domain.upcall_route(0), None);
    // The global vector serves every vCPU.
    hvm_param(&d, true, HvmParam::CallbackIrq, 2 << 56 | 0xf3)
        .0
        .unwrap();
    assert_eq!(
        d.domain.upcall_route(1),
        Some(UpcallRoute::CallbackVector(0xf3))
    );
    // A per-vCPU vector wins for its vCPU.
    d.domain.core().lock().vcpus[1].upcall_vector = Some(0xe0);
    assert_eq!(
        d.domain.upcall_route(1),
        Some(UpcallRoute::VcpuVector(0xe0))
    );
    assert_eq!(
        d.domain.upcall_route(0),
        Some(UpcallRoute::CallbackVector(0xf3))
    );
}

#[test]
fn test_pci_intx_callback_follows_the_vmm_routing() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    let map = vec![E820Entry::new(0, 16 << 20, E820Type::Ram)];
    let injector = Arc::new(RecordingInjector::default());
    let d = XenDomain::builder(DomainConfig::new(1, XenVersion::V4_17, map), mem)
        .injector(injector.clone())
        .pci_intx_routing(Arc::new(|device, pin| {
            (device == 2 && pin == IntxPin::A).then_some(28 - 10)
        }))
        .build()
        .unwrap();
    // Device 2, INTA#; device 3 has no route.
    d.core().lock().params[HvmParam::CallbackIrq.raw() as usize] = 1 << 56 | 2 << 11;
    assert_eq!(d.upcall_route(0), Some(UpcallRoute::Line(18)));
    d.core().lock().params[HvmParam::CallbackIrq.raw() as usize] = 1 << 56 | 3 << 11;
    assert_eq!(d.upcall_route(0), None);
}

#[test]
fn test_timerfd_timers_raise_virq_timer_on_the_vmm_event_loop() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    let map = vec![E820Entry::new(0, 16 << 20, E820Type::Ram)];
    let injector = Arc::new(RecordingInjector::default());
    let d = Arc::new(
        XenDomain::builder(DomainConfig::new(1, XenVersion::V4_17, map), mem.clone())
            .injector(injector.clone())
            .build()
            .unwrap(),
    );
    d.core().lock().shared_info_gfn = Some(0x100);
    d.core().lock().params[HvmParam::CallbackIrq.raw() as usize] = 2 << 56 | 0xf3;
    let port = d.channels().bind_virq(&mem, Virq::Timer.raw(), 0).unwrap();
    let mut manager = EventManager::<Subscriber>::new().unwrap();
    for s in d.subscribers() {
        manager.add_subscriber(s);
    }
    // set_timer_op 1 ms ahead, as the guest makes it.
    let now = d.core().env.clock.system_time_ns();
    let call = Hypercall {
        abi: Abi::X86_64,
        cpl: 0,
        nr: u64::from(HypercallNr::SetTimerOp.raw()),
        args: [now + 1_000_000, 0, 0, 0, 0, 0],
    };
    assert_eq!(d.hypercall(0, IDENTITY_64, &call), Ok(0));
    let t0 = Instant::now();
    while !d.channels().pending(&mem, port) && t0.elapsed() < Duration::from_secs(5) {
        manager.run_with_timeout(100).unwrap();
    }
    assert!(d.channels().pending(&mem, port), "VIRQ_TIMER never raised");
    assert_eq!(injector.take(), [(0, UpcallRoute::CallbackVector(0xf3))]);
    // The single-shot timer fired: it is no longer armed.
    assert_eq!(d.core().state().vcpus[0].singleshot_ns, None);
}

#[test]
fn test_blocked_vcpu_wakes_for_its_event() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    let map = vec![E820Entry::new(0, 16 << 20, E820Type::Ram)];
    let d = Arc::new(
        XenDomain::builder(DomainConfig::new(2, XenVersion::V4_17, map), mem.clone())
            .build()
            .unwrap(),
    );
    d.core().lock().shared_info_gfn = Some(0x100);
    let port = d.channels().bind_ipi(&mem, 1).unwrap();
    let block = Hypercall {
        abi: Abi::X86_64,
        cpl: 0,
        nr: u64::from(HypercallNr::SchedOp.raw()),
        args: [u64::from(SchedOp::Block.raw()), 0, 0, 0, 0, 0],
    };
    let (d2, woken) = (
        d.clone(),
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let w = woken.clone();
    let t0 = Instant::now();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        w.store(true, Ordering::SeqCst);
        d2.send(port).unwrap();
    });
    assert_eq!(d.hypercall(1, IDENTITY_64, &block), Ok(0));
    sender.join().unwrap();
    // It really parked until the event, and did not wait out MAX_WAIT.
    assert!(woken.load(Ordering::SeqCst));
    assert!(t0.elapsed() < xen_domain::MAX_WAIT);
}

#[test]
fn test_config_derives_cpuid_and_msr_and_is_checked() {
    let mut config = TestDomain::config(2);
    assert_eq!(config.hypercall_msr(), 0x4000_0000);
    assert_eq!(config.cpuid().base(), 0x4000_0000);
    config.hyperv = true;
    assert_eq!(config.hypercall_msr(), 0x4000_0200);
    assert_eq!(config.cpuid().base(), 0x4000_0100);
    config.vcpus = 0;
    assert!(TestDomain::with(config.clone(), None).is_err());
    config.vcpus = 2;
    config.domid = 0;
    assert!(TestDomain::with(config, None).is_err());
}
