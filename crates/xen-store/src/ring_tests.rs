// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Ring protocol tests: wrap-around, split messages, bad indices and
//! payloads, reconnect, back-pressure and bounded queues.

use std::sync::atomic::Ordering;

use xen_abi::io::xs_wire::{
    XenstoreDomainInterface as Intf, XenstoreRingError, XsdSockmsgType as T,
};

use crate::testing::{TestGuest, ld, st, z};
use crate::wire::message;
use crate::{Config, Quota};

fn read_req(id: u32, path: &str) -> Vec<u8> {
    message(T::Read.raw(), id, 0, &z(path))
}

/// Moves all four indices to `v` (the guest may start anywhere).
fn set_indices(g: &TestGuest, v: u32) {
    for off in [
        Intf::REQ_CONS_OFFSET,
        Intf::REQ_PROD_OFFSET,
        Intf::RSP_CONS_OFFSET,
        Intf::RSP_PROD_OFFSET,
    ] {
        st(&g.mem, off, v);
    }
}

#[test]
fn test_ring_connect_advertises_features_and_resets() {
    let g = TestGuest::new();
    assert_eq!(ld(&g.mem, Intf::SERVER_FEATURES_OFFSET), 7);
    assert_eq!(ld(&g.mem, Intf::CONNECTION_OFFSET), 0);
    assert_eq!(ld(&g.mem, Intf::ERROR_OFFSET), 0);
    assert!(g.notified.load(Ordering::SeqCst) >= 1);
}

#[test]
fn test_ring_requests_and_replies_wrap_around() {
    let mut g = TestGuest::new();
    // Indices near the 32-bit wrap and not at a 1024 boundary.
    set_indices(&g, u32::MAX - 5);
    for round in 0..50 {
        assert_eq!(g.read("name").unwrap(), b"guest", "round {round}");
    }
    assert!(ld(&g.mem, Intf::REQ_PROD_OFFSET) < 5000);
    let long = "v".repeat(1500);
    g.write("data/long", &long).unwrap();
    assert_eq!(g.read("data/long").unwrap(), long.as_bytes());
}

#[test]
fn test_ring_header_and_payload_split_across_kicks() {
    let mut g = TestGuest::new();
    let msg = read_req(7, "name");
    for chunk in [&msg[..5], &msg[5..16], &msg[16..18]] {
        g.push_bytes(chunk);
        g.conn.kick();
        assert!(g.pull().is_empty());
    }
    g.push_bytes(&msg[18..]);
    g.conn.kick();
    let got = g.pull();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0.req_id, got[0].1.as_slice()), (7, &b"guest"[..]));
}

#[test]
fn test_ring_payload_larger_than_ring_arrives_in_pieces() {
    let mut g = TestGuest::new();
    let value = "x".repeat(2000);
    let mut payload = z("data/big");
    payload.extend_from_slice(value.as_bytes());
    assert_eq!(g.call(T::Write, 0, &payload).unwrap(), b"OK\0");
    assert_eq!(g.read("data/big").unwrap().len(), 2000);
}

#[test]
fn test_ring_bad_request_indices_set_ringidx() {
    let mut g = TestGuest::new();
    st(&g.mem, Intf::REQ_PROD_OFFSET, 2000);
    g.conn.kick();
    assert_eq!(
        ld(&g.mem, Intf::ERROR_OFFSET),
        XenstoreRingError::RingIdx.raw()
    );
    assert_eq!(g.conn.error(), Some(XenstoreRingError::RingIdx));
    assert_eq!(ld(&g.mem, Intf::REQ_CONS_OFFSET), 0);
    // No longer serviced.
    st(&g.mem, Intf::REQ_PROD_OFFSET, 0);
    g.push_bytes(&read_req(1, "name"));
    g.conn.kick();
    assert!(g.pull().is_empty());
}

#[test]
fn test_ring_bad_reply_indices_set_ringidx() {
    let g = TestGuest::new();
    st(&g.mem, Intf::RSP_CONS_OFFSET, 5000);
    g.push_bytes(&read_req(1, "name"));
    g.conn.kick();
    assert_eq!(g.conn.error(), Some(XenstoreRingError::RingIdx));
    assert_eq!(ld(&g.mem, Intf::RSP_PROD_OFFSET), 0);
}

#[test]
fn test_ring_oversize_payload_sets_proto() {
    let mut g = TestGuest::new();
    let mut hdr = message(T::Write.raw(), 1, 0, &[]);
    hdr[12..16].copy_from_slice(&4097u32.to_le_bytes());
    g.push_bytes(&hdr);
    g.conn.kick();
    assert_eq!(
        ld(&g.mem, Intf::ERROR_OFFSET),
        XenstoreRingError::Proto.raw()
    );
    assert!(g.pull().is_empty());
}

#[test]
fn test_ring_error_drops_watches_and_transactions() {
    let mut g = TestGuest::new();
    g.watch("data", "w").unwrap();
    g.tx_start().unwrap();
    st(
        &g.mem,
        Intf::REQ_PROD_OFFSET,
        ld(&g.mem, Intf::REQ_CONS_OFFSET).wrapping_add(1025),
    );
    g.conn.kick();
    let s = g.store.state();
    let c = s.domains[0].connection.as_ref().unwrap();
    assert!(c.watches.is_empty() && c.transactions.is_empty() && c.output.is_empty());
    assert_eq!(c.error, XenstoreRingError::RingIdx.raw());
}

#[test]
fn test_ring_reconnect_resets_connection() {
    let mut g = TestGuest::new();
    g.watch("data", "w").unwrap();
    let tx = g.tx_start().unwrap();
    g.take_events();
    // A half-sent request, then a reconnect request.
    g.push_bytes(&read_req(5, "name")[..9]);
    g.conn.kick();
    st(&g.mem, Intf::CONNECTION_OFFSET, 1);
    let before = g.notified.load(Ordering::SeqCst);
    g.conn.kick();
    assert_eq!(ld(&g.mem, Intf::CONNECTION_OFFSET), 0);
    assert!(g.notified.load(Ordering::SeqCst) > before);
    for off in [
        Intf::REQ_CONS_OFFSET,
        Intf::REQ_PROD_OFFSET,
        Intf::RSP_CONS_OFFSET,
        Intf::RSP_PROD_OFFSET,
    ] {
        assert_eq!(ld(&g.mem, off), 0);
    }
    // A fresh connection: no watch, no transaction, no half request.
    g.store
        .client()
        .write("/local/domain/1/data/x", "1")
        .unwrap();
    assert!(g.take_events().is_empty());
    assert_eq!(g.read_tx(tx, "name"), Err("ENOENT".into()));
    assert_eq!(g.read("name").unwrap(), b"guest");
}

#[test]
fn test_ring_reconnect_recovers_from_error() {
    let mut g = TestGuest::new();
    st(&g.mem, Intf::REQ_PROD_OFFSET, 3000);
    g.conn.kick();
    assert!(g.conn.error().is_some());
    st(&g.mem, Intf::CONNECTION_OFFSET, 1);
    g.conn.kick();
    assert_eq!(g.conn.error(), None);
    assert_eq!(ld(&g.mem, Intf::ERROR_OFFSET), 0);
    assert_eq!(g.read("name").unwrap(), b"guest");
}

#[test]
fn test_ring_reconnect_pending_at_connect_is_acknowledged() {
    let store = crate::testing::store_with(Config::default(), 1);
    let mem = crate::testing::mem();
    st(&mem, Intf::CONNECTION_OFFSET, 1);
    st(&mem, Intf::REQ_PROD_OFFSET, 77);
    let _c = store
        .connect_guest(
            1,
            mem.clone(),
            crate::testing::RING_GPA,
            std::sync::Arc::new(|| {}),
        )
        .unwrap();
    assert_eq!(ld(&mem, Intf::CONNECTION_OFFSET), 0);
    assert_eq!(ld(&mem, Intf::REQ_PROD_OFFSET), 0);
}

#[test]
fn test_ring_full_reply_ring_queues_events_until_kick() {
    let mut g = TestGuest::new();
    g.watch("data", "tok").unwrap();
    g.take_events();
    let c = g.store.client();
    // Each event is 16 + "data/nNN" + "tok" + NULs = 29 bytes: ~35 fit.
    for i in 0..60 {
        c.write(&format!("/local/domain/1/data/n{i:02}"), "")
            .unwrap();
    }
    let used = ld(&g.mem, Intf::RSP_PROD_OFFSET).wrapping_sub(ld(&g.mem, Intf::RSP_CONS_OFFSET));
    assert!(used > 1000, "ring filled without a kick: {used}");
    let queued = g.store.state().domains[0]
        .connection
        .as_ref()
        .unwrap()
        .output
        .len();
    assert!(queued > 0);
    // The guest drains the ring and kicks: the rest arrives.
    let mut got = g.take_events();
    g.conn.kick();
    got.extend(g.take_events());
    g.conn.kick();
    got.extend(g.take_events());
    assert_eq!(got.len(), 60);
    assert_eq!(got[59].0, "data/n59");
}

#[test]
fn test_ring_pending_events_bounded() {
    let cfg = Config {
        quota: Quota {
            pending_events: 4,
            ..Quota::default()
        },
        ..Config::default()
    };
    let mut g = TestGuest::with_config(cfg);
    g.watch("data", "tok").unwrap();
    g.take_events();
    let c = g.store.client();
    for i in 0..200 {
        c.write(&format!("/local/domain/1/data/n{i:03}"), "")
            .unwrap();
    }
    let output = g.store.state().domains[0]
        .connection
        .clone()
        .unwrap()
        .output;
    assert!(output.len() <= 4);
    let mut got = g.take_events();
    g.conn.kick();
    got.extend(g.take_events());
    assert!(got.len() < 200 && got.len() > 30, "{}", got.len());
}

#[test]
fn test_ring_duplicate_pending_events_merged() {
    let mut g = TestGuest::new();
    g.watch("data", "tok").unwrap();
    g.take_events();
    // Fill the ring with other traffic so events queue.
    let c = g.store.client();
    for i in 0..40 {
        c.write(&format!("/local/domain/1/data/n{i:02}"), "")
            .unwrap();
    }
    for _ in 0..10 {
        c.write("/local/domain/1/data/same", "x").unwrap();
    }
    let out = g.store.state().domains[0]
        .connection
        .clone()
        .unwrap()
        .output;
    let same = out
        .iter()
        .filter(|m| m.message.windows(9).any(|w| w == b"data/same"))
        .count();
    assert_eq!(same, 1);
}

#[test]
fn test_ring_outstanding_quota_stops_reading() {
    let cfg = Config {
        quota: Quota {
            outstanding: 2,
            ..Quota::default()
        },
        ..Config::default()
    };
    let mut g = TestGuest::with_config(cfg);
    g.write("data/v", &"x".repeat(1000)).unwrap();
    let mut all = Vec::new();
    for i in 0..5 {
        all.extend(read_req(100 + i, "data/v"));
    }
    g.push_bytes(&all);
    g.conn.kick();
    // One reply in the ring, two queued, the rest still unread.
    let s = g.store.state();
    let c = s.domains[0].connection.as_ref().unwrap();
    assert_eq!(c.output.len(), 2);
    assert!(ld(&g.mem, Intf::REQ_CONS_OFFSET) != ld(&g.mem, Intf::REQ_PROD_OFFSET));
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.extend(g.pull().into_iter().map(|(h, _)| h.req_id));
        g.conn.kick();
    }
    assert_eq!(ids, [100, 101, 102, 103, 104]);
}

#[test]
fn test_ring_reply_order_events_before_ack_watch_event_after() {
    let mut g = TestGuest::new();
    let mut p = z("data");
    p.extend(z("w"));
    g.push_bytes(&message(T::Watch.raw(), 1, 0, &p));
    let mut w = z("data/x");
    w.extend_from_slice(b"1");
    g.push_bytes(&message(T::Write.raw(), 2, 0, &w));
    g.conn.kick();
    let kinds: Vec<(u32, u32)> = g.pull().iter().map(|(h, _)| (h.type_, h.req_id)).collect();
    assert_eq!(
        kinds,
        [(4, 1), (15, 0), (15, 0), (11, 2)],
        "WATCH ack, initial event, write event, WRITE ack"
    );
}

#[test]
fn test_ring_kick_without_work_does_not_notify() {
    let g = TestGuest::new();
    let before = g.notified.load(Ordering::SeqCst);
    g.conn.kick();
    g.conn.flush();
    assert_eq!(g.notified.load(Ordering::SeqCst), before);
}

#[test]
fn test_ring_concurrent_backend_writes_and_guest_requests() {
    let mut g = TestGuest::new();
    g.watch("data", "w").unwrap();
    g.take_events();
    let store = g.store.clone();
    let writer = std::thread::spawn(move || {
        let c = store.client();
        for i in 0..300 {
            c.write(&format!("/local/domain/1/data/k{}", i % 20), i.to_string())
                .unwrap();
        }
    });
    let mut answered = 0;
    for i in 0..200 {
        let v = g.read(&format!("data/k{}", i % 20));
        assert!(v.is_ok() || v == Err("ENOENT".into()));
        answered += 1;
        g.take_events();
    }
    writer.join().unwrap();
    g.conn.kick();
    let events = g.take_events();
    assert_eq!(answered, 200);
    assert!(
        events
            .iter()
            .all(|(p, t)| p.starts_with("data/k") && t == "w")
    );
}

#[test]
fn test_store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<crate::Store>();
    check::<crate::Client>();
    check::<crate::GuestConnection<crate::testing::Mem>>();
}
