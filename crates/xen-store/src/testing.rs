// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A test guest: writes requests into a ring page in a `GuestMemoryMmap`,
//! kicks, and reads replies and watch events back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use xen_abi::io::xs_wire::{XenstoreDomainInterface as Intf, XsdSockmsgType as T};

use crate::wire::{HEADER_LEN, Header, message};
use crate::{Config, DomainInfo, GuestConnection, Store};

/// Where the test ring page lives.
pub(crate) const RING_GPA: u64 = 0x1000;

pub(crate) type Mem = Arc<GuestMemoryMmap<()>>;

/// A guest speaking the wire protocol through its ring.
#[allow(dead_code)]
pub(crate) struct TestGuest {
    pub(crate) store: Arc<Store>,
    pub(crate) mem: Mem,
    pub(crate) conn: GuestConnection<Mem>,
    pub(crate) notified: Arc<AtomicUsize>,
    pub(crate) domid: u16,
    next_req: u32,
    /// Bytes read from the reply ring not yet forming a message.
    partial: Vec<u8>,
    /// Watch events received, as (path, token).
    pub(crate) events: Vec<(String, String)>,
    /// Replies received out of band (for other req ids).
    pub(crate) replies: Vec<(Header, Vec<u8>)>,
}

pub(crate) fn mem() -> Mem {
    Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap())
}

pub(crate) fn ld(mem: &Mem, off: usize) -> u32 {
    mem.read_obj(GuestAddress(RING_GPA + off as u64)).unwrap()
}

pub(crate) fn st(mem: &Mem, off: usize, v: u32) {
    mem.write_obj(v, GuestAddress(RING_GPA + off as u64))
        .unwrap()
}

/// A store with default configuration and domain `domid` introduced.
pub(crate) fn store_with(config: Config, domid: u16) -> Arc<Store> {
    let store = Store::new(config).unwrap();
    store
        .introduce_domain(&DomainInfo::new(domid, "guest"))
        .unwrap();
    store
}

impl TestGuest {
    /// Domain 1 on a fresh default store.
    pub(crate) fn new() -> TestGuest {
        Self::with_config(Config::default())
    }

    /// Domain 1 on a fresh store with `config`.
    pub(crate) fn with_config(config: Config) -> TestGuest {
        Self::attach(store_with(config, 1), 1)
    }

    /// Connects domain `domid` (introduced) of `store`.
    pub(crate) fn attach(store: Arc<Store>, domid: u16) -> TestGuest {
        let mem = mem();
        let notified = Arc::new(AtomicUsize::new(0));
        let n = notified.clone();
        let conn = store
            .connect_guest(
                domid,
                mem.clone(),
                RING_GPA,
                Arc::new(move || {
                    n.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .unwrap();
        TestGuest {
            store,
            mem,
            conn,
            notified,
            domid,
            next_req: 1,
            partial: Vec::new(),
            events: Vec::new(),
            replies: Vec::new(),
        }
    }

    /// A test guest over an existing connection.
    pub(crate) fn from_parts(
        store: Arc<Store>,
        mem: Mem,
        conn: GuestConnection<Mem>,
        domid: u16,
    ) -> TestGuest {
        TestGuest {
            store,
            mem,
            conn,
            notified: Arc::new(AtomicUsize::new(0)),
            domid,
            next_req: 1000,
            partial: Vec::new(),
            events: Vec::new(),
            replies: Vec::new(),
        }
    }

    /// Continues request ids from `n` (to compare two guests).
    pub(crate) fn next_req_sync(&mut self, n: u32) {
        self.next_req = n;
    }

    /// Free space in the request ring.
    pub(crate) fn req_space(&self) -> usize {
        1024 - ld(&self.mem, Intf::REQ_PROD_OFFSET)
            .wrapping_sub(ld(&self.mem, Intf::REQ_CONS_OFFSET)) as usize
    }

    /// Writes bytes into the request ring (as much as fits) and publishes
    /// them; returns how many.
    pub(crate) fn push_bytes(&self, bytes: &[u8]) -> usize {
        let prod = ld(&self.mem, Intf::REQ_PROD_OFFSET);
        let n = bytes.len().min(self.req_space());
        for (i, b) in bytes[..n].iter().enumerate() {
            let at = (prod.wrapping_add(i as u32) & 1023) as u64;
            self.mem.write_obj(*b, GuestAddress(RING_GPA + at)).unwrap();
        }
        st(
            &self.mem,
            Intf::REQ_PROD_OFFSET,
            prod.wrapping_add(n as u32),
        );
        n
    }

    /// Consumes every byte of the reply ring; returns the complete
    /// messages.
    pub(crate) fn pull(&mut self) -> Vec<(Header, Vec<u8>)> {
        let cons = ld(&self.mem, Intf::RSP_CONS_OFFSET);
        let prod = ld(&self.mem, Intf::RSP_PROD_OFFSET);
        let n = prod.wrapping_sub(cons);
        assert!(n <= 1024, "reply ring overrun: {n}");
        for i in 0..n {
            let at = (cons.wrapping_add(i) & 1023) as u64;
            let b: u8 = self
                .mem
                .read_obj(GuestAddress(RING_GPA + 1024 + at))
                .unwrap();
            self.partial.push(b);
        }
        st(&self.mem, Intf::RSP_CONS_OFFSET, prod);
        let mut out = Vec::new();
        while self.partial.len() >= HEADER_LEN {
            let h = Header::decode(&self.partial);
            assert!(h.len <= 4096, "reply too long");
            let total = HEADER_LEN + h.len as usize;
            if self.partial.len() < total {
                break;
            }
            let payload = self.partial[HEADER_LEN..total].to_vec();
            self.partial.drain(..total);
            out.push((h, payload));
        }
        out
    }

    /// Pulls, filing events into `events` and returning the rest.
    pub(crate) fn pull_sorted(&mut self) -> Vec<(Header, Vec<u8>)> {
        let mut rest = Vec::new();
        for (h, p) in self.pull() {
            if h.type_ == T::WatchEvent.raw() {
                let parts: Vec<String> = p
                    .split(|&c| c == 0)
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect();
                assert_eq!(parts.len(), 3, "event {p:?}");
                self.events.push((parts[0].clone(), parts[1].clone()));
            } else {
                rest.push((h, p));
            }
        }
        rest
    }

    /// Sends a request, kicks, and returns its reply.
    pub(crate) fn request_tx(&mut self, t: u32, tx: u32, payload: &[u8]) -> (Header, Vec<u8>) {
        let req_id = self.next_req;
        self.next_req += 1;
        let msg = message(t, req_id, tx, payload);
        let mut sent = 0;
        for _ in 0..64 {
            sent += self.push_bytes(&msg[sent..]);
            self.conn.kick();
            let got = self.pull_sorted();
            self.replies.extend(got);
            if let Some(i) = self.replies.iter().position(|(h, _)| h.req_id == req_id) {
                return self.replies.remove(i);
            }
        }
        panic!("no reply to request {req_id}");
    }

    /// A request outside transactions.
    #[allow(dead_code)]
    pub(crate) fn request(&mut self, t: T, payload: &[u8]) -> (Header, Vec<u8>) {
        self.request_tx(t.raw(), 0, payload)
    }

    /// A request's answer: `Ok(payload)` or `Err(error name)`.
    pub(crate) fn call(&mut self, t: T, tx: u32, payload: &[u8]) -> Result<Vec<u8>, String> {
        let (h, p) = self.request_tx(t.raw(), tx, payload);
        if h.type_ == T::Error.raw() {
            let name = String::from_utf8_lossy(&p[..p.len().saturating_sub(1)]).into_owned();
            return Err(name);
        }
        assert_eq!(h.type_, t.raw(), "reply type");
        Ok(p)
    }

    pub(crate) fn read_tx(&mut self, tx: u32, path: &str) -> Result<Vec<u8>, String> {
        self.call(T::Read, tx, &z(path))
    }
    pub(crate) fn read(&mut self, path: &str) -> Result<Vec<u8>, String> {
        self.read_tx(0, path)
    }
    pub(crate) fn write_tx(&mut self, tx: u32, path: &str, value: &str) -> Result<(), String> {
        let mut p = z(path);
        p.extend_from_slice(value.as_bytes());
        self.call(T::Write, tx, &p).map(ok)
    }
    pub(crate) fn write(&mut self, path: &str, value: &str) -> Result<(), String> {
        self.write_tx(0, path, value)
    }
    pub(crate) fn mkdir(&mut self, path: &str) -> Result<(), String> {
        self.call(T::Mkdir, 0, &z(path)).map(ok)
    }
    pub(crate) fn rm_tx(&mut self, tx: u32, path: &str) -> Result<(), String> {
        self.call(T::Rm, tx, &z(path)).map(ok)
    }
    pub(crate) fn rm(&mut self, path: &str) -> Result<(), String> {
        self.rm_tx(0, path)
    }
    pub(crate) fn dir(&mut self, path: &str) -> Result<Vec<String>, String> {
        self.call(T::Directory, 0, &z(path)).map(|p| split(&p))
    }
    pub(crate) fn get_perms(&mut self, path: &str) -> Result<Vec<String>, String> {
        self.call(T::GetPerms, 0, &z(path)).map(|p| split(&p))
    }
    pub(crate) fn set_perms(&mut self, path: &str, perms: &[&str]) -> Result<(), String> {
        let mut p = z(path);
        for s in perms {
            p.extend(z(s));
        }
        self.call(T::SetPerms, 0, &p).map(ok)
    }
    pub(crate) fn watch(&mut self, path: &str, token: &str) -> Result<(), String> {
        let mut p = z(path);
        p.extend(z(token));
        self.call(T::Watch, 0, &p).map(ok)
    }
    pub(crate) fn unwatch(&mut self, path: &str, token: &str) -> Result<(), String> {
        let mut p = z(path);
        p.extend(z(token));
        self.call(T::Unwatch, 0, &p).map(ok)
    }
    pub(crate) fn tx_start(&mut self) -> Result<u32, String> {
        let p = self.call(T::TransactionStart, 0, b"\0")?;
        Ok(split(&p)[0].parse().unwrap())
    }
    pub(crate) fn tx_end(&mut self, tx: u32, commit: bool) -> Result<(), String> {
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.call(T::TransactionEnd, tx, arg).map(ok)
    }

    /// Events received so far (drained).
    pub(crate) fn take_events(&mut self) -> Vec<(String, String)> {
        let got = self.pull_sorted();
        self.replies.extend(got);
        std::mem::take(&mut self.events)
    }
}

/// `s` with a NUL.
pub(crate) fn z(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// NUL-terminated strings of a payload.
pub(crate) fn split(p: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = p
        .split(|&c| c == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    v.pop();
    v
}

fn ok(p: Vec<u8>) {
    assert_eq!(p, b"OK\0");
}
