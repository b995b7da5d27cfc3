// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The XenStore and PV console rings from the guest's side, edge cases
//! included: requests and replies that wrap around the 1 KiB rings, a
//! request written a few bytes at a time with a notification after each
//! piece, values larger than the ring, a watch, a producer index more
//! than a ring ahead (the store sets `error` and stops answering), a
//! reconnect that brings it back, and console output that wraps its ring.
//! Reports `v <name> <value>` lines; the host test checks them and the
//! console bytes.

#![no_std]
#![no_main]

use core::sync::atomic::Ordering;

use xen_guest_rt::pv::{console, send, xs};
use xen_guest_rt::xen::{install_hypercall_page, xen_base};
use xen_guest_rt::{Start, entry, println};

fn report(name: &str, r: Result<(), xs::Error>) {
    match r {
        Ok(()) => println!("v ", name, " ok"),
        Err(e) => println!("v ", name, " ", *e.name()),
    }
}

/// A value of `len` bytes that differs with `seed`.
fn pattern(buf: &mut [u8], len: usize, seed: usize) -> &[u8] {
    for (i, b) in buf[..len].iter_mut().enumerate() {
        *b = b'a' + ((i * 7 + seed) % 26) as u8;
    }
    &buf[..len]
}

/// Writes and reads back `count` values of growing size: the indices of
/// both rings wrap around many times, and requests and replies straddle
/// the wrap point.
fn wrap_around(count: usize) -> Result<(), xs::Error> {
    let mut v = [0u8; 700];
    let mut out = [0u8; 700];
    for i in 0..count {
        let len = 1 + i * 37 % 690;
        let value = pattern(&mut v, len, i);
        xs::write(0, b"data/wrap", value)?;
        let n = xs::read(0, b"data/wrap", &mut out)?;
        if &out[..n] != value {
            return Err(xs::Error::Protocol);
        }
    }
    Ok(())
}

/// A READ whose header and payload go out a few bytes at a time, each
/// piece notified on its own.
fn partial_request() -> Result<(), xs::Error> {
    xs::write(0, b"data/partial", b"pieces")?;
    let path = b"data/partial\0";
    let mut msg = [0u8; 16 + 13];
    for (i, v) in [xs::READ, 0x77, 0, path.len() as u32].iter().enumerate() {
        msg[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    msg[16..].copy_from_slice(path);
    let req = xs::requests();
    for piece in msg.chunks(3) {
        if !req.write(xs::port(), piece) {
            return Err(xs::Error::Timeout);
        }
    }
    let mut out = [0u8; 32];
    let (ty, id, len) = xs::receive(&mut out)?;
    if (ty, id, &out[..len]) != (xs::READ, 0x77, &b"pieces"[..]) {
        return Err(xs::Error::Protocol);
    }
    Ok(())
}

/// A value larger than the ring both ways.
fn big_value() -> Result<(), xs::Error> {
    let mut v = [0u8; 2000];
    let mut out = [0u8; 2000];
    let value = pattern(&mut v, 2000, 3);
    xs::write(0, b"data/big", value)?;
    let n = xs::read(0, b"data/big", &mut out)?;
    if &out[..n] != value {
        return Err(xs::Error::Protocol);
    }
    Ok(())
}

/// A watch: the initial event, then one for a write.
fn watch() -> Result<(), xs::Error> {
    let seen = xs::events();
    xs::watch(b"data/watched", b"tok")?;
    if !xs::wait_event(seen) {
        return Err(xs::Error::Timeout);
    }
    let seen = xs::events();
    xs::write(0, b"data/watched/child", b"x")?;
    if !xs::wait_event(seen) {
        return Err(xs::Error::Timeout);
    }
    let ev = xs::last_event();
    if ev != b"data/watched/child\0tok\0" {
        println!("v watch_event ", *ev);
        return Err(xs::Error::Protocol);
    }
    Ok(())
}

/// A request producer 2000 bytes ahead of the consumer: more than the
/// ring holds. The store must flag it and not answer; a reconnect
/// (`connection` = 1) must bring the ring back.
fn bad_index_then_reconnect() {
    let req = xs::requests();
    let rsp_before = xs::responses().pending();
    let cons = xs::field(2048).load(Ordering::Acquire);
    xs::field(2052).store(cons.wrapping_add(2000), Ordering::Release);
    send(xs::port());
    let error = xs::field(xs::ERROR_OFFSET).load(Ordering::Acquire);
    let answered = xs::responses().pending() != rsp_before;
    println!("v bad_index error ", error, " answered ", answered);
    // Reconnect: the store resets the ring and says CONNECTED again.
    xs::field(xs::CONNECTION_OFFSET).store(1, Ordering::Release);
    send(xs::port());
    let mut spins = 0u64;
    while xs::field(xs::CONNECTION_OFFSET).load(Ordering::Acquire) != 0 && spins < 100_000_000 {
        core::hint::spin_loop();
        spins += 1;
    }
    let connection = xs::field(xs::CONNECTION_OFFSET).load(Ordering::Acquire);
    let (error, pending) = (
        xs::field(xs::ERROR_OFFSET).load(Ordering::Acquire),
        req.pending(),
    );
    println!(
        "v reconnect connection ",
        connection,
        " error ",
        error,
        " req_pending ",
        pending
    );
    let mut out = [0u8; 16];
    let r = xs::read(0, b"domid", &mut out).map(|_| ());
    report("after_reconnect", r);
}

fn main(start: Start) -> u32 {
    if start.vcpu != 0 {
        return 0;
    }
    let Some((base, _)) = xen_base() else {
        println!("no Xen");
        return 1;
    };
    install_hypercall_page(base);
    match xs::init() {
        Ok((pfn, port)) => println!("v store pfn ", pfn, " port ", port),
        Err(rc) => {
            println!("v store error ", rc);
            return 2;
        }
    }
    let features = xs::field(xs::FEATURES_OFFSET).load(Ordering::Acquire);
    println!("v server_features ", features);
    let mut id = [0u8; 8];
    let n = xs::read(0, b"domid", &mut id).unwrap_or(0);
    println!("v domid ", *&id[..n]);
    report("wrap_around", wrap_around(200));
    report("partial_request", partial_request());
    report("big_value", big_value());
    report("watch", watch());
    let mut huge = [b'h'; 3000];
    huge[0] = b'H';
    report("oversize_value", xs::write(0, b"data/huge", &huge));
    let mut out = [0u8; 8];
    report("read_missing", xs::read(0, b"data/missing", &mut out).map(|_| ()));
    report("write_readonly", xs::write(0, b"domid", b"7"));
    bad_index_then_reconnect();

    // The console: 3000 bytes through its 2 KiB ring, then a line.
    match console::init() {
        Ok((pfn, port)) => {
            println!("v console pfn ", pfn, " port ", port);
            let mut text = [0u8; 3000];
            for (i, b) in text.iter_mut().enumerate() {
                *b = b'A' + (i % 26) as u8;
            }
            console::write(&text);
            console::write(b"\nconsole done\n");
        }
        Err(rc) => println!("v console error ", rc),
    }
    0
}

entry!(main);
