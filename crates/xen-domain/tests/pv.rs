// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The toolstack's part of a domain: the XenStore and the primary console
//! as a guest finds them (HVM parameters, ports, grant refs 0 and 1, the
//! store's tree), their rings driven by the guest's sends, what a build
//! refuses, and both through a save and restore.

mod common;

use common::*;
use xen_abi::errno::XenErrno;
use xen_abi::event_channel::EvtchnStatusDetail;
use xen_abi::grant_table::GrantEntryV1;
use xen_abi::hvm::HvmParam;
use xen_abi::memory::XenMapSpace;
use xen_domain::testing::{SharedBuffer as Sink, TestDomain};
use xen_domain::{ConsoleSetup, Error, StateError, StoreSetup, XenDomainBuilder};

type Builder = XenDomainBuilder<xen_domain::testing::Mem>;

/// The ring pages: the last two pages of the test domain's RAM.
const STORE_GFN: u64 = 0x3ffe;
const CONSOLE_GFN: u64 = 0x3fff;
/// Where the test guest maps grant frame 0.
const GRANT_GFN: u64 = 0x300;

fn toolstack(sink: &Sink) -> impl FnOnce(Builder) -> Builder {
    let writer = sink.clone();
    move |b| {
        b.xenstore(StoreSetup {
            gfn: STORE_GFN,
            name: "guest".into(),
        })
        .pv_console(ConsoleSetup {
            gfn: CONSOLE_GFN,
            writer: Box::new(writer),
        })
    }
}

fn domain(sink: &Sink) -> TestDomain {
    TestDomain::with_steps(TestDomain::config(1), None, toolstack(sink)).unwrap()
}

/// The guest's side of the XenStore ring: writes one request, sends on
/// the store's port, reads one reply (type, payload).
fn xs_request(d: &TestDomain, ty: u32, payload: &[u8]) -> (u32, Vec<u8>) {
    let ring = STORE_GFN << 12;
    let prod: u32 = d.read(ring + 2052);
    let mut msg = Vec::new();
    for w in [ty, 7, 0, payload.len() as u32] {
        msg.extend_from_slice(&w.to_le_bytes());
    }
    msg.extend_from_slice(payload);
    for (i, b) in msg.iter().enumerate() {
        d.write(ring + u64::from(prod.wrapping_add(i as u32) & 1023), *b);
    }
    d.write(ring + 2052, prod.wrapping_add(msg.len() as u32));
    send(d, 1).unwrap();
    let cons: u32 = d.read(ring + 2056);
    let rprod: u32 = d.read(ring + 2060);
    let bytes: Vec<u8> = (0..rprod.wrapping_sub(cons))
        .map(|i| d.read(ring + 1024 + u64::from(cons.wrapping_add(i) & 1023)))
        .collect();
    d.write(ring + 2056, rprod);
    assert!(bytes.len() >= 16, "no reply");
    let ty = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    (ty, bytes[16..].to_vec())
}

/// The guest writes `text` to its console ring and sends on its port.
fn console_write(d: &TestDomain, text: &[u8]) {
    let ring = CONSOLE_GFN << 12;
    let prod: u32 = d.read(ring + 3084);
    for (i, b) in text.iter().enumerate() {
        d.write(
            ring + 1024 + u64::from(prod.wrapping_add(i as u32) & 2047),
            *b,
        );
    }
    d.write(ring + 3084, prod.wrapping_add(text.len() as u32));
    send(d, 2).unwrap();
}

#[test]
fn test_toolstack_parameters_ports_and_reserved_grants() {
    let sink = Sink::default();
    let d = domain(&sink);
    for (param, want) in [
        (HvmParam::StorePfn, STORE_GFN),
        (HvmParam::StoreEvtchn, 1),
        (HvmParam::ConsolePfn, CONSOLE_GFN),
        (HvmParam::ConsoleEvtchn, 2),
    ] {
        assert_eq!(hvm_param(&d, false, param, 0), (Ok(0), want), "{param}");
    }
    // Each guest port is bound to a back-end port.
    for port in [1, 2] {
        let (rc, state, _) = status(&d, port);
        assert_eq!(
            (rc, state),
            (Ok(0), 2),
            "port {port}: EVTCHNSTAT_interdomain"
        );
    }
    let st = d.domain.channels().status(1).unwrap();
    assert!(matches!(
        st.detail,
        EvtchnStatusDetail::Interdomain { dom: 0, .. }
    ));
    // Grant frame 0, once placed, holds the toolstack's refs 0 and 1.
    add_to_physmap(&d, XenMapSpace::GrantTable, 0, GRANT_GFN).unwrap();
    let e0: GrantEntryV1 = d.read(GRANT_GFN << 12);
    let e1: GrantEntryV1 = d.read((GRANT_GFN << 12) + 8);
    assert_eq!(
        (e0.flags, e0.domid, u64::from(e0.frame)),
        (1, 0, CONSOLE_GFN)
    );
    assert_eq!((e1.flags, e1.domid, u64::from(e1.frame)), (1, 0, STORE_GFN));
    // The store's tree, as libxl writes it.
    let c = d.domain.store_client().unwrap();
    let read = |p: &str| String::from_utf8(c.read(p).unwrap()).unwrap();
    assert_eq!(read("/local/domain/1/domid"), "1");
    assert_eq!(read("/local/domain/1/name"), "guest");
    assert_eq!(read("/local/domain/1/store/port"), "1");
    assert_eq!(
        read("/local/domain/1/store/ring-ref"),
        STORE_GFN.to_string()
    );
    assert_eq!(read("/local/domain/1/console/port"), "2");
    assert_eq!(
        read("/local/domain/1/console/ring-ref"),
        CONSOLE_GFN.to_string()
    );
    assert_eq!(read("/local/domain/1/memory/static-max"), "65536");
}

#[test]
fn test_guest_sends_drive_the_store_and_console_rings() {
    let sink = Sink::default();
    let d = domain(&sink);
    assert_eq!(xs_request(&d, 2, b"domid\0"), (2, b"1".to_vec()));
    assert_eq!(xs_request(&d, 11, b"data/x\0v"), (11, b"OK\0".to_vec()));
    // The console is read-only to the guest.
    assert_eq!(
        xs_request(&d, 11, b"console/port\0"),
        (16, b"EACCES\0".to_vec())
    );
    console_write(&d, b"hello from hvc0\n");
    assert_eq!(sink.contents(), b"hello from hvc0\n");
    assert_eq!(d.domain.pv_console().unwrap().counters().bytes_out, 16);
    // Input from the VMM lands in the guest's input ring.
    d.domain.pv_console().unwrap().input(b"ls\n");
    let in_prod: u32 = d.read((CONSOLE_GFN << 12) + 3076);
    assert_eq!(in_prod, 3);
}

#[test]
fn test_request_shutdown_writes_control_shutdown() {
    let sink = Sink::default();
    let d = domain(&sink);
    d.domain.request_shutdown("poweroff").unwrap();
    let c = d.domain.store_client().unwrap();
    assert_eq!(
        c.read("/local/domain/1/control/shutdown").unwrap(),
        b"poweroff"
    );
    // No XenStore, no request.
    let plain = TestDomain::new(1);
    assert_eq!(
        plain.domain.request_shutdown("poweroff"),
        Err(XenErrno::ENODEV)
    );
    assert!(plain.domain.store_client().is_none());
    assert!(plain.domain.pv_console().is_none());
    // ... and the guest finds neither.
    for param in [HvmParam::StorePfn, HvmParam::ConsolePfn] {
        assert_eq!(
            hvm_param(&plain, false, param, 0).0,
            Err(XenErrno::EINVAL),
            "{param}"
        );
    }
}

#[test]
fn test_build_refuses_ring_pages_outside_guest_memory() {
    let r = TestDomain::with_steps(TestDomain::config(1), None, |b| {
        b.xenstore(StoreSetup {
            gfn: 0x10_0000,
            name: "guest".into(),
        })
    });
    match r {
        Err(Error::Pv { what, why }) => {
            assert_eq!(what, "the XenStore page");
            assert!(why.contains("0x100000"), "{why}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn test_state_round_trip_keeps_store_console_and_their_ports() {
    let sink = Sink::default();
    let a = domain(&sink);
    assert_eq!(xs_request(&a, 11, b"data/k\0v1"), (11, b"OK\0".to_vec()));
    // Input the guest has not taken yet: the ring is full.
    a.write((CONSOLE_GFN << 12) + 3076, 1024u32);
    a.domain.pv_console().unwrap().input(b"queued");
    let state = a.domain.state();
    let store = state.pv.store.as_ref().unwrap();
    assert_eq!(store.backend_port, 1);
    assert_eq!(
        state.pv.console.as_ref().unwrap().console.pending_input,
        b"queued"
    );

    let sink_b = Sink::default();
    let b = TestDomain::with_steps(TestDomain::config(1), Some(&state), toolstack(&sink_b))
        .expect("restore");
    b.copy_memory_from(&a);
    assert_eq!(b.domain.state(), state, "the restored state differs");
    // The restored store answers through the same ring and port.
    assert_eq!(xs_request(&b, 2, b"data/k\0"), (2, b"v1".to_vec()));
    console_write(&b, b"after restore\n");
    assert_eq!(sink_b.contents(), b"after restore\n");

    // A builder without the saved domain's devices refuses the state.
    let r = TestDomain::with(TestDomain::config(1), Some(&state));
    assert!(
        matches!(r, Err(Error::State(StateError::Config(_)))),
        "{:?}",
        r.map(|_| ())
    );
}
