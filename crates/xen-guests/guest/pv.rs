// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Xen PV I/O for guests, as a Linux front end does it: the toolstack's
//! HVM parameters, the XenStore ring (`xen-abi.md` §5), the PV console
//! ring (§6.1) and grant-table set-up (§3.9). vCPU 0 only (it uses vCPU
//! 0's scratch page and one set of statics); rings are reached through the
//! identity map, so a ring's GFN times 4096 is its address.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use crate::rdtsc;
use crate::xen::{arg, evtchnop, get, hypercall, nr, put};

/// `HVM_PARAM_STORE_PFN`.
pub const PARAM_STORE_PFN: u32 = 1;
/// `HVM_PARAM_STORE_EVTCHN`.
pub const PARAM_STORE_EVTCHN: u32 = 2;
/// `HVM_PARAM_CONSOLE_PFN`.
pub const PARAM_CONSOLE_PFN: u32 = 17;
/// `HVM_PARAM_CONSOLE_EVTCHN`.
pub const PARAM_CONSOLE_EVTCHN: u32 = 18;

/// How long a ring wait spins before giving up (TSC ticks, ~1-4 s).
const WAIT_TICKS: u64 = 4_000_000_000;

/// `grant_table_op` hypercall number.
pub const GRANT_TABLE_OP: u32 = 20;

/// `HVMOP_get_param(index)`: the value, or the hypercall's error.
pub fn get_param(index: u32) -> Result<u64, i64> {
    put(0, 0, u64::from(index) << 32 | 0x7ff0);
    put(0, 1, 0);
    let rc = hypercall(nr::HVM_OP, [1, arg(0), 0, 0, 0]);
    if rc < 0 { Err(rc) } else { Ok(get(0, 1)) }
}

/// `EVTCHNOP_send(port)`.
pub fn send(port: u32) -> i64 {
    put(0, 0, u64::from(port));
    hypercall(nr::EVENT_CHANNEL_OP, [evtchnop::SEND, arg(0), 0, 0, 0])
}

fn word(addr: u64) -> &'static AtomicU32 {
    // SAFETY: ring indices are 4-byte aligned words of a ring page the
    // toolstack gave this guest; the back end changes them only atomically.
    unsafe { &*(addr as *const AtomicU32) }
}

fn byte_write(addr: u64, b: u8) {
    // SAFETY: inside a ring page (callers mask the offset).
    unsafe { core::ptr::write_volatile(addr as *mut u8, b) }
}

fn byte_read(addr: u64) -> u8 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(addr as *const u8) }
}

/// Spins (with `pause`) until `ready()` or the deadline; false on timeout.
fn wait(mut ready: impl FnMut() -> bool) -> bool {
    let start = rdtsc();
    while !ready() {
        if rdtsc().wrapping_sub(start) > WAIT_TICKS {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// One byte stream of a ring: a buffer of `size` bytes at `data`, indices
/// at `cons`/`prod`.
#[derive(Clone, Copy)]
pub struct Stream {
    /// Address of the data bytes.
    pub data: u64,
    /// Size of the data buffer (a power of two).
    pub size: u32,
    /// Address of the consumer index.
    pub cons: u64,
    /// Address of the producer index.
    pub prod: u64,
}

impl Stream {
    /// Writes all of `bytes` as the producer, notifying `port` after each
    /// chunk that fits; false if the consumer stopped making room.
    pub fn write(&self, port: u32, bytes: &[u8]) -> bool {
        let mut done = 0;
        while done < bytes.len() {
            let mut room = 0;
            let ok = wait(|| {
                let used = word(self.prod)
                    .load(Ordering::Acquire)
                    .wrapping_sub(word(self.cons).load(Ordering::Acquire));
                room = self.size.saturating_sub(used);
                room > 0
            });
            if !ok {
                return false;
            }
            let prod = word(self.prod).load(Ordering::Relaxed);
            let n = (room as usize).min(bytes.len() - done);
            for (i, &b) in bytes[done..done + n].iter().enumerate() {
                let at = prod.wrapping_add(i as u32) & (self.size - 1);
                byte_write(self.data + u64::from(at), b);
            }
            fence(Ordering::Release);
            word(self.prod).store(prod.wrapping_add(n as u32), Ordering::Release);
            send(port);
            done += n;
        }
        true
    }

    /// Fills `buf` as the consumer, notifying `port` once it has taken the
    /// bytes; false if the producer did not deliver them in time.
    pub fn read(&self, port: u32, buf: &mut [u8]) -> bool {
        let mut done = 0;
        while done < buf.len() {
            let mut avail = 0;
            let ok = wait(|| {
                avail = word(self.prod)
                    .load(Ordering::Acquire)
                    .wrapping_sub(word(self.cons).load(Ordering::Acquire));
                avail > 0
            });
            if !ok {
                return false;
            }
            fence(Ordering::Acquire);
            let cons = word(self.cons).load(Ordering::Relaxed);
            let n = (avail as usize).min(buf.len() - done);
            for (i, b) in buf[done..done + n].iter_mut().enumerate() {
                let at = cons.wrapping_add(i as u32) & (self.size - 1);
                *b = byte_read(self.data + u64::from(at));
            }
            word(self.cons).store(cons.wrapping_add(n as u32), Ordering::Release);
            send(port);
            done += n;
        }
        true
    }

    /// Bytes produced and not yet consumed.
    pub fn pending(&self) -> u32 {
        word(self.prod)
            .load(Ordering::Acquire)
            .wrapping_sub(word(self.cons).load(Ordering::Acquire))
    }
}

/// The PV console: `console::init()` once, then `console::write`.
pub mod console {
    use super::*;

    static RING: AtomicU64 = AtomicU64::new(0);
    static PORT: AtomicU32 = AtomicU32::new(0);

    /// Finds the console from the HVM parameters; the error of the first
    /// parameter that is missing.
    pub fn init() -> Result<(u64, u32), i64> {
        let pfn = get_param(PARAM_CONSOLE_PFN)?;
        let port = get_param(PARAM_CONSOLE_EVTCHN)? as u32;
        RING.store(pfn << 12, Ordering::SeqCst);
        PORT.store(port, Ordering::SeqCst);
        Ok((pfn, port))
    }

    /// The console's output stream (`out`, 2048 bytes at 1024).
    pub fn out() -> Stream {
        let r = RING.load(Ordering::SeqCst);
        Stream {
            data: r + 1024,
            size: 2048,
            cons: r + 3080,
            prod: r + 3084,
        }
    }

    /// Writes `bytes` to the PV console (nothing before `init`).
    pub fn write(bytes: &[u8]) {
        if RING.load(Ordering::SeqCst) != 0 {
            out().write(PORT.load(Ordering::SeqCst), bytes);
        }
    }
}

/// The XenStore client.
pub mod xs {
    use super::*;

    /// `XS_DIRECTORY`.
    pub const DIRECTORY: u32 = 1;
    /// `XS_READ`.
    pub const READ: u32 = 2;
    /// `XS_GET_PERMS`.
    pub const GET_PERMS: u32 = 3;
    /// `XS_WATCH`.
    pub const WATCH: u32 = 4;
    /// `XS_UNWATCH`.
    pub const UNWATCH: u32 = 5;
    /// `XS_TRANSACTION_START`.
    pub const TRANSACTION_START: u32 = 6;
    /// `XS_TRANSACTION_END`.
    pub const TRANSACTION_END: u32 = 7;
    /// `XS_GET_DOMAIN_PATH`.
    pub const GET_DOMAIN_PATH: u32 = 10;
    /// `XS_WRITE`.
    pub const WRITE: u32 = 11;
    /// `XS_RM`.
    pub const RM: u32 = 13;
    /// `XS_WATCH_EVENT`.
    pub const WATCH_EVENT: u32 = 15;
    /// `XS_ERROR`.
    pub const ERROR: u32 = 16;

    /// Offset of the `error` field of the ring page.
    pub const ERROR_OFFSET: u64 = 2072;
    /// Offset of the `connection` field.
    pub const CONNECTION_OFFSET: u64 = 2068;
    /// Offset of `server_features`.
    pub const FEATURES_OFFSET: u64 = 2064;

    static RING: AtomicU64 = AtomicU64::new(0);
    static PORT: AtomicU32 = AtomicU32::new(0);
    static REQ_ID: AtomicU32 = AtomicU32::new(1);
    /// Watch events received while waiting for a reply: count, and the
    /// last one's bytes.
    static EVENTS: AtomicU32 = AtomicU32::new(0);
    static mut LAST_EVENT: [u8; 256] = [0; 256];
    static LAST_EVENT_LEN: AtomicU32 = AtomicU32::new(0);

    /// What went wrong with a request.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Error {
        /// The store answered `XS_ERROR` with this name (NUL-padded).
        Xs([u8; 16]),
        /// The ring did not move in time.
        Timeout,
        /// A reply of the wrong type or size.
        Protocol,
    }

    impl Error {
        /// The error name (`"ENOENT"`), or what went wrong.
        pub fn name(&self) -> &[u8] {
            match self {
                Error::Xs(n) => {
                    let len = n.iter().position(|&b| b == 0).unwrap_or(n.len());
                    &n[..len]
                }
                Error::Timeout => b"timeout",
                Error::Protocol => b"protocol",
            }
        }
    }

    /// Finds the store from the HVM parameters and catches up with
    /// anything left in the response ring (as Linux does at attach).
    pub fn init() -> Result<(u64, u32), i64> {
        let port = get_param(PARAM_STORE_EVTCHN)? as u32;
        let pfn = get_param(PARAM_STORE_PFN)?;
        RING.store(pfn << 12, Ordering::SeqCst);
        PORT.store(port, Ordering::SeqCst);
        let rsp = responses();
        word(rsp.cons).store(word(rsp.prod).load(Ordering::Acquire), Ordering::Release);
        Ok((pfn, port))
    }

    /// The ring page's address.
    pub fn ring() -> u64 {
        RING.load(Ordering::SeqCst)
    }

    /// The store's event channel.
    pub fn port() -> u32 {
        PORT.load(Ordering::SeqCst)
    }

    /// The request stream (guest → store).
    pub fn requests() -> Stream {
        let r = ring();
        Stream {
            data: r,
            size: 1024,
            cons: r + 2048,
            prod: r + 2052,
        }
    }

    /// The response stream (store → guest).
    pub fn responses() -> Stream {
        let r = ring();
        Stream {
            data: r + 1024,
            size: 1024,
            cons: r + 2056,
            prod: r + 2060,
        }
    }

    /// A word of the ring page's trailer (`ERROR_OFFSET`, ...).
    pub fn field(off: u64) -> &'static AtomicU32 {
        word(ring() + off)
    }

    /// Watch events seen so far.
    pub fn events() -> u32 {
        EVENTS.load(Ordering::SeqCst)
    }

    /// The last watch event's `path\0token\0`.
    #[allow(static_mut_refs)]
    pub fn last_event() -> &'static [u8] {
        let len = LAST_EVENT_LEN.load(Ordering::SeqCst) as usize;
        // SAFETY: vCPU 0 only; written before the length is published.
        unsafe { &LAST_EVENT[..len] }
    }

    /// Sends a 16-byte header and `parts` as one message.
    pub fn send_message(ty: u32, tx: u32, parts: &[&[u8]]) -> Result<u32, Error> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let id = REQ_ID.fetch_add(1, Ordering::SeqCst);
        let mut h = [0u8; 16];
        for (i, v) in [ty, id, tx, len as u32].iter().enumerate() {
            h[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        let req = requests();
        if !req.write(port(), &h) {
            return Err(Error::Timeout);
        }
        for p in parts {
            if !req.write(port(), p) {
                return Err(Error::Timeout);
            }
        }
        Ok(id)
    }

    /// Receives one message header: type, request id, payload length.
    pub fn receive_header() -> Result<(u32, u32, usize), Error> {
        let mut h = [0u8; 16];
        if !responses().read(port(), &mut h) {
            return Err(Error::Timeout);
        }
        let w = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let len = w(12) as usize;
        if len > 4096 {
            return Err(Error::Protocol);
        }
        Ok((w(0), w(4), len))
    }

    /// Receives a `len`-byte payload into `out` (bytes beyond it are
    /// dropped); how many were kept.
    pub fn receive_body(len: usize, out: &mut [u8]) -> Result<usize, Error> {
        let rsp = responses();
        let keep = len.min(out.len());
        if !rsp.read(port(), &mut out[..keep]) {
            return Err(Error::Timeout);
        }
        let mut rest = len - keep;
        let mut sink = [0u8; 64];
        while rest > 0 {
            let n = rest.min(sink.len());
            if !rsp.read(port(), &mut sink[..n]) {
                return Err(Error::Timeout);
            }
            rest -= n;
        }
        Ok(keep)
    }

    /// Receives one message into `out`, watch events included: its type,
    /// request id and the length kept.
    pub fn receive(out: &mut [u8]) -> Result<(u32, u32, usize), Error> {
        let (ty, id, len) = receive_header()?;
        Ok((ty, id, receive_body(len, out)?))
    }

    /// Receives one message; a watch event is recorded (see
    /// [`last_event`]) and reported with length 0.
    fn receive_reply(out: &mut [u8]) -> Result<(u32, u32, usize), Error> {
        let (ty, id, len) = receive_header()?;
        if ty == WATCH_EVENT {
            let mut ev = [0u8; 256];
            let n = receive_body(len, &mut ev)?;
            record_event(&ev[..n]);
            return Ok((ty, id, 0));
        }
        Ok((ty, id, receive_body(len, out)?))
    }

    #[allow(static_mut_refs)]
    fn record_event(body: &[u8]) {
        let n = body.len().min(256);
        // SAFETY: vCPU 0 only.
        unsafe { LAST_EVENT[..n].copy_from_slice(&body[..n]) };
        LAST_EVENT_LEN.store(n as u32, Ordering::SeqCst);
        EVENTS.fetch_add(1, Ordering::SeqCst);
    }

    /// One request and its reply (watch events met on the way are
    /// recorded): the reply's length in `out`.
    pub fn request(ty: u32, tx: u32, parts: &[&[u8]], out: &mut [u8]) -> Result<usize, Error> {
        let id = send_message(ty, tx, parts)?;
        loop {
            let (rty, rid, len) = receive_reply(out)?;
            if rty == WATCH_EVENT {
                continue;
            }
            if rid != id {
                return Err(Error::Protocol);
            }
            if rty == ERROR {
                let mut name = [0u8; 16];
                let n = len.min(16);
                name[..n].copy_from_slice(&out[..n]);
                if let Some(z) = name.iter().position(|&b| b == 0) {
                    name[z..].fill(0);
                }
                return Err(Error::Xs(name));
            }
            if rty != ty {
                return Err(Error::Protocol);
            }
            return Ok(len);
        }
    }

    /// Waits for the next watch event (or returns at once if one came in
    /// since `seen`); false on timeout.
    pub fn wait_event(seen: u32) -> bool {
        while events() == seen {
            if responses().pending() == 0 && !wait(|| responses().pending() > 0) {
                return false;
            }
            match receive_reply(&mut []) {
                Ok((WATCH_EVENT, _, _)) => {}
                _ => return false,
            }
        }
        true
    }

    fn ok(r: Result<usize, Error>, out: &[u8]) -> Result<(), Error> {
        match r {
            Ok(3) if &out[..3] == b"OK\0" => Ok(()),
            Ok(_) => Err(Error::Protocol),
            Err(e) => Err(e),
        }
    }

    /// `XS_READ path` in transaction `tx`: the value's length in `out`.
    pub fn read(tx: u32, path: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        request(READ, tx, &[path, b"\0"], out)
    }

    /// `XS_WRITE path value` in transaction `tx`.
    pub fn write(tx: u32, path: &[u8], value: &[u8]) -> Result<(), Error> {
        let mut out = [0u8; 16];
        ok(request(WRITE, tx, &[path, b"\0", value], &mut out), &out)
    }

    /// `XS_RM path` in transaction `tx`.
    pub fn rm(tx: u32, path: &[u8]) -> Result<(), Error> {
        let mut out = [0u8; 16];
        ok(request(RM, tx, &[path, b"\0"], &mut out), &out)
    }

    /// `XS_WATCH path token` (the initial event is recorded when it comes).
    pub fn watch(path: &[u8], token: &[u8]) -> Result<(), Error> {
        let mut out = [0u8; 16];
        ok(
            request(WATCH, 0, &[path, b"\0", token, b"\0"], &mut out),
            &out,
        )
    }

    /// `XS_TRANSACTION_START`: the new transaction's id.
    pub fn start() -> Result<u32, Error> {
        let mut out = [0u8; 16];
        let len = request(TRANSACTION_START, 0, &[b"\0"], &mut out)?;
        let mut id = 0u32;
        for &b in &out[..len] {
            match b {
                b'0'..=b'9' => id = id * 10 + u32::from(b - b'0'),
                0 => break,
                _ => return Err(Error::Protocol),
            }
        }
        Ok(id)
    }

    /// `XS_TRANSACTION_END` (commit or abort).
    pub fn end(tx: u32, commit: bool) -> Result<(), Error> {
        let mut out = [0u8; 16];
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        ok(request(TRANSACTION_END, tx, &[arg], &mut out), &out)
    }
}

/// Grant-table set-up.
pub mod gnttab {
    use super::*;

    /// `GNTTABOP_query_size`.
    pub const QUERY_SIZE: u64 = 6;
    /// `GNTTABOP_set_version`.
    pub const SET_VERSION: u64 = 8;
    /// `GNTTABOP_get_version`.
    pub const GET_VERSION: u64 = 10;

    /// `GNTTABOP_set_version(version)`: the hypercall's result and the
    /// version the table is at.
    pub fn set_version(version: u32) -> (i64, u32) {
        put(0, 0, u64::from(version));
        let rc = hypercall(GRANT_TABLE_OP, [SET_VERSION, arg(0), 1, 0, 0]);
        (rc, get(0, 0) as u32)
    }

    /// `GNTTABOP_get_version(DOMID_SELF)`.
    pub fn get_version() -> (i64, u32) {
        put(0, 0, 0x7ff0);
        let rc = hypercall(GRANT_TABLE_OP, [GET_VERSION, arg(0), 1, 0, 0]);
        (rc, (get(0, 0) >> 32) as u32)
    }

    /// `GNTTABOP_query_size(DOMID_SELF)`: result, frames, max frames,
    /// status.
    pub fn query_size() -> (i64, u32, u32, i16) {
        put(0, 0, 0x7ff0);
        put(0, 1, 0);
        let rc = hypercall(GRANT_TABLE_OP, [QUERY_SIZE, arg(0), 1, 0, 0]);
        let (w0, w1) = (get(0, 0), get(0, 1));
        (rc, (w0 >> 32) as u32, w1 as u32, (w1 >> 32) as i16)
    }

    /// `XENMEM_add_to_physmap(XENMAPSPACE_grant_table, idx, gfn)`.
    pub fn map_frame(idx: u64, gfn: u64) -> i64 {
        put(0, 0, 1 << 32 | 0x7ff0); // DOMID_SELF, space 1 (grant_table)
        put(0, 1, idx);
        put(0, 2, gfn);
        hypercall(nr::MEMORY_OP, [7, arg(0), 0, 0, 0])
    }

    /// The v1 entry `gref` of a table whose frame 0 is at `frame0`:
    /// (flags, domid, frame).
    pub fn entry_v1(frame0: u64, gref: u64) -> (u16, u16, u32) {
        // SAFETY: frame 0 is a page of the guest's own address space.
        let e = unsafe { core::ptr::read_volatile((frame0 + gref * 8) as *const u64) };
        (e as u16, (e >> 16) as u16, (e >> 32) as u32)
    }
}
