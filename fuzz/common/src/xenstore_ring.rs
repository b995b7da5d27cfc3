// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Target `xenstore_ring`: a guest driving the XenStore ring page with
//! arbitrary messages, raw bytes and index values, interleaved with
//! back-end (client) operations, domain churn and save/restore.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arbitrary::{Arbitrary, Unstructured};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use xen_abi::io::xs_wire::{XenstoreDomainInterface as Intf, XsdSockmsgType, xsd_error_from_name};
use xen_store::{Access, Config, DomainInfo, GuestConnection, Perm, Quota, State, Store};

/// Where the ring page is.
const RING: u64 = 0x1000;
/// The guest.
const DOMID: u16 = 1;
/// Most bytes the test guest keeps waiting to send or to parse.
const MAX_BUF: usize = 1 << 16;

type Mem = Arc<GuestMemoryMmap<()>>;

/// Paths: mostly meaningful ones, sometimes raw bytes.
#[derive(Arbitrary, Debug)]
enum PathArg {
    Known(u8),
    Raw(Vec<u8>),
}

const PATHS: &[&str] = &[
    "data",
    "data/a",
    "data/a/b",
    "data/b",
    "name",
    "control/shutdown",
    "device/vbd/1/state",
    "/local/domain/1/data/c",
    "/local/domain/0/backend/vbd/1/0/state",
    "/local/domain/0",
    "/",
    "@introduceDomain",
    "@releaseDomain",
    "/tool/xenstored",
    "data//x",
    "data/",
];

impl PathArg {
    fn bytes(&self) -> Vec<u8> {
        match self {
            PathArg::Known(i) => PATHS[usize::from(*i) % PATHS.len()].as_bytes().to_vec(),
            PathArg::Raw(b) => b.iter().copied().take(3000).collect(),
        }
    }

    fn abs(&self) -> String {
        match self {
            PathArg::Known(i) => {
                let p = PATHS[usize::from(*i) % PATHS.len()];
                if p.starts_with('/') || p.starts_with('@') {
                    p.to_owned()
                } else {
                    format!("/local/domain/1/{p}")
                }
            }
            PathArg::Raw(b) => String::from_utf8_lossy(b).chars().take(300).collect(),
        }
    }
}

/// A transaction id: none, one the store handed out, or anything.
#[derive(Arbitrary, Debug)]
enum TxArg {
    None,
    Live(u8),
    Any(u32),
}

/// A request the guest sends (type by index into all types and a few
/// invalid ones).
#[derive(Arbitrary, Debug)]
struct Msg {
    kind: u8,
    req_id: u32,
    tx: TxArg,
    path: PathArg,
    extra: Vec<u8>,
    flag: bool,
}

/// Ring fields the guest may scribble on.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Field {
    ReqCons,
    ReqProd,
    RspCons,
    RspProd,
    Features,
    Connection,
    Error,
}

impl Field {
    fn offset(self) -> usize {
        match self {
            Field::ReqCons => Intf::REQ_CONS_OFFSET,
            Field::ReqProd => Intf::REQ_PROD_OFFSET,
            Field::RspCons => Intf::RSP_CONS_OFFSET,
            Field::RspProd => Intf::RSP_PROD_OFFSET,
            Field::Features => Intf::SERVER_FEATURES_OFFSET,
            Field::Connection => Intf::CONNECTION_OFFSET,
            Field::Error => Intf::ERROR_OFFSET,
        }
    }
}

/// One step.
#[derive(Arbitrary, Debug)]
enum Step {
    /// A well-formed request, queued for the ring.
    Send(Msg),
    /// Raw bytes queued for the ring.
    Raw(Vec<u8>),
    /// The guest writes an index or field.
    Set(Field, u32),
    /// The guest writes bytes anywhere in the page.
    Poke(u16, Vec<u8>),
    /// The guest asks for a reconnect.
    Reconnect,
    /// The guest signals the event channel.
    Kick,
    /// The guest consumes up to this many reply bytes.
    Consume(u16),
    /// A back end writes.
    ClientWrite(PathArg, Vec<u8>),
    /// A back end removes.
    ClientRm(PathArg),
    /// A back end sets permissions.
    ClientPerms(PathArg, u8),
    /// A back end watches.
    ClientWatch(PathArg),
    /// A back end drops a watch.
    ClientUnwatch(u8),
    /// A back end runs a transaction writing two nodes.
    ClientTx(PathArg, PathArg),
    /// Another domain comes or goes.
    Introduce(u8),
    /// Another domain is released.
    Release(u8),
    /// Save, restore into a fresh store, carry on there.
    SaveRestore,
}

/// Every message type a guest can name, and some it cannot.
const TYPES: &[u32] = &[
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 0xffff, 1000,
];

/// The test guest's side of the ring.
struct Guest {
    mem: Mem,
    /// Bytes waiting to go into the request ring.
    outbox: Vec<u8>,
    /// Reply bytes consumed and not yet parsed.
    inbox: Vec<u8>,
    /// The reply stream is trustworthy (the guest did not scribble on
    /// the reply side since the last reset).
    honest: bool,
    /// Transaction ids the store handed out.
    txs: Vec<u32>,
}

impl Guest {
    fn ld(&self, off: usize) -> u32 {
        self.mem
            .read_obj(GuestAddress(RING + off as u64))
            .expect("ring page")
    }

    fn st(&self, off: usize, v: u32) {
        self.mem
            .write_obj(v, GuestAddress(RING + off as u64))
            .expect("ring page");
    }

    /// Moves queued request bytes into the ring, as far as it has room
    /// (only while the guest's own indices make sense).
    fn produce(&mut self) {
        let cons = self.ld(Intf::REQ_CONS_OFFSET);
        let prod = self.ld(Intf::REQ_PROD_OFFSET);
        let used = prod.wrapping_sub(cons) as usize;
        if used > 1024 {
            return;
        }
        let n = self.outbox.len().min(1024 - used);
        for (i, b) in self.outbox[..n].iter().enumerate() {
            let at = u64::from(prod.wrapping_add(i as u32) & 1023);
            self.mem
                .write_obj(*b, GuestAddress(RING + at))
                .expect("ring");
        }
        self.outbox.drain(..n);
        self.st(Intf::REQ_PROD_OFFSET, prod.wrapping_add(n as u32));
    }

    /// Consumes up to `max` reply bytes and checks every complete message.
    fn consume(&mut self, max: usize) {
        let cons = self.ld(Intf::RSP_CONS_OFFSET);
        let prod = self.ld(Intf::RSP_PROD_OFFSET);
        let avail = prod.wrapping_sub(cons) as usize;
        if avail > 1024 {
            self.honest = false;
            return;
        }
        let n = avail.min(max);
        for i in 0..n {
            let at = u64::from(cons.wrapping_add(i as u32) & 1023);
            let b: u8 = self
                .mem
                .read_obj(GuestAddress(RING + 1024 + at))
                .expect("ring");
            self.inbox.push(b);
        }
        self.st(Intf::RSP_CONS_OFFSET, cons.wrapping_add(n as u32));
        self.parse();
    }

    /// Checks the reply stream: every message has a valid header and
    /// payload; remembers new transaction ids.
    fn parse(&mut self) {
        if !self.honest {
            self.inbox.clear();
            return;
        }
        while self.inbox.len() >= 16 {
            let w = |i: usize| u32::from_le_bytes(self.inbox[i..i + 4].try_into().unwrap());
            let (t, req_id, tx, len) = (w(0), w(4), w(8), w(12) as usize);
            assert!(len <= 4096, "reply payload {len} > 4096");
            if self.inbox.len() < 16 + len {
                break;
            }
            let p: Vec<u8> = self.inbox[16..16 + len].to_vec();
            self.inbox.drain(..16 + len);
            let ty = XsdSockmsgType::try_from(t).expect("reply of an unknown type");
            match ty {
                XsdSockmsgType::Error => {
                    assert_eq!(p.last(), Some(&0), "error without NUL");
                    let name = std::str::from_utf8(&p[..p.len() - 1]).expect("error name");
                    assert!(xsd_error_from_name(name).is_some(), "bad error {name}");
                }
                XsdSockmsgType::WatchEvent => {
                    assert_eq!((req_id, tx), (0, 0), "event with ids");
                    assert_eq!(p.iter().filter(|&&c| c == 0).count(), 2, "event {p:?}");
                    assert_eq!(p.last(), Some(&0));
                }
                XsdSockmsgType::TransactionStart => {
                    let s = std::str::from_utf8(&p[..p.len().saturating_sub(1)]).unwrap();
                    let id: u32 = s.parse().expect("transaction id");
                    assert_ne!(id, 0, "transaction id 0");
                    if self.txs.len() < 64 {
                        self.txs.push(id);
                    }
                }
                _ => {}
            }
        }
        if self.inbox.len() > MAX_BUF {
            self.inbox.clear();
        }
    }

    fn queue(&mut self, bytes: &[u8]) {
        if self.outbox.len() + bytes.len() <= MAX_BUF {
            self.outbox.extend_from_slice(bytes);
        }
    }

    fn message(&mut self, m: &Msg) {
        let t = TYPES[usize::from(m.kind) % TYPES.len()];
        let tx = match m.tx {
            TxArg::None => 0,
            TxArg::Live(i) if !self.txs.is_empty() => self.txs[usize::from(i) % self.txs.len()],
            TxArg::Live(i) => u32::from(i),
            TxArg::Any(v) => v,
        };
        let mut p = m.path.bytes();
        p.push(0);
        match t {
            // WRITE: path, value.
            11 => p.extend(m.extra.iter().take(2048)),
            // WATCH / UNWATCH: path, token (and maybe a depth).
            4 | 5 => {
                p.extend(m.extra.iter().filter(|&&c| c != 0).take(64));
                p.push(0);
                if m.flag {
                    p.extend_from_slice(b"1\0");
                }
            }
            // SET_PERMS: path, permission strings.
            14 => {
                let perms: &[&[u8]] = &[b"n1\0", b"r0\0", b"b1\0", b"n0\0", b"w1\0", b"x\0"];
                for &b in m.extra.iter().take(6) {
                    p.extend_from_slice(perms[usize::from(b) % perms.len()]);
                }
            }
            // TRANSACTION_START / RESET_WATCHES: an empty string.
            6 | 21 => p = b"\0".to_vec(),
            // TRANSACTION_END: commit or abort.
            7 => {
                p = if m.flag {
                    b"T\0".to_vec()
                } else {
                    b"F\0".to_vec()
                }
            }
            // DIRECTORY_PART: path, offset.
            22 => {
                let off = m.extra.first().copied().unwrap_or(0).to_string();
                p.extend_from_slice(off.as_bytes());
                p.push(0);
            }
            // GET_FEATURE: nothing, or a domain.
            23 if !m.flag => p.clear(),
            _ => {
                if m.flag {
                    p.extend(m.extra.iter().take(64));
                }
            }
        }
        let mut msg = Vec::with_capacity(16 + p.len());
        for v in [t, m.req_id, tx, p.len() as u32] {
            msg.extend_from_slice(&v.to_le_bytes());
        }
        msg.extend_from_slice(&p);
        self.queue(&msg);
    }
}

/// Checks what must always hold of a store's state.
fn check_bounds(state: &State, quota: &Quota) {
    for d in &state.domains {
        if let Some(c) = &d.connection {
            assert!(
                c.partial_request.len() < 16 + 4096,
                "partial request too long"
            );
            let replies = c.output.iter().filter(|m| !m.event).count();
            let events = c.output.len() - replies;
            assert!(
                replies <= quota.outstanding as usize,
                "{replies} replies queued"
            );
            assert!(
                events <= quota.pending_events as usize,
                "{events} events queued"
            );
            assert!(c.watches.len() <= quota.watches as usize);
            assert!(c.transactions.len() <= quota.transactions as usize);
        }
    }
}

/// Save and restore must give the same state, in both formats.
fn check_restore(store: &Arc<Store>) -> (State, Arc<Store>) {
    let state = store.state();
    let bytes = state.to_bytes();
    let back = State::from_bytes(&bytes).unwrap_or_else(|e| panic!("from_bytes: {e}"));
    assert_eq!(back, state, "byte round trip");
    let restored = Store::from_state(&back).unwrap_or_else(|e| panic!("from_state: {e}"));
    assert_eq!(restored.state(), state, "restored state differs");
    (state, restored)
}

/// Target `xenstore_ring`: up to 128 steps of a guest (domain 1) writing
/// well-formed or raw requests, scribbling on its ring indices and
/// fields, asking for reconnects, kicking and consuming replies, while
/// domain 0 writes, removes, sets permissions, watches and runs
/// transactions, other domains come and go, and the store is saved and
/// restored (also from a mutated byte stream).
///
/// Invariants: nothing panics; queues and buffers stay within their
/// quotas; the request consumer index never passes what the guest
/// produced, and the reply producer never overruns the guest's consumer;
/// while the guest leaves the reply side alone every reply is a
/// well-formed message (valid type, length at most 4096, error names
/// from `xs_wire.h`, events `path\0token\0` with ids 0); every snapshot
/// restores to an equal state.
pub fn xenstore_ring(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok((small, mutate)) = <(bool, Option<(u16, u8)>)>::arbitrary(&mut u) else {
        return;
    };
    let mut steps = Vec::new();
    while steps.len() < 128 && !u.is_empty() {
        let Ok(step) = Step::arbitrary(&mut u) else {
            break;
        };
        steps.push(step);
    }
    let mut config = Config::default();
    if small {
        config.quota = Quota {
            nodes: 24,
            watches: 4,
            transactions: 2,
            transaction_nodes: 16,
            outstanding: 2,
            pending_events: 3,
            ..Quota::default()
        };
    }
    let quota = config.quota;
    let mut store = Store::new(config).expect("config");
    store
        .introduce_domain(&DomainInfo::new(DOMID, "fuzz"))
        .expect("introduce");
    let mem: Mem =
        Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x4000)]).expect("guest memory"));
    let kicks = Arc::new(AtomicUsize::new(0));
    let k = kicks.clone();
    let notify: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        k.fetch_add(1, Ordering::Relaxed);
    });
    let mut conn: GuestConnection<Mem> = store
        .connect_guest(DOMID, mem.clone(), RING, notify.clone())
        .expect("connect");
    let mut client = store.client();
    let mut watches = Vec::new();
    let fired = Arc::new(AtomicUsize::new(0));
    let mut g = Guest {
        mem: mem.clone(),
        outbox: Vec::new(),
        inbox: Vec::new(),
        honest: true,
        txs: Vec::new(),
    };

    for step in &steps {
        match step {
            Step::Send(m) => {
                g.message(m);
                g.produce();
            }
            Step::Raw(b) => {
                g.queue(b);
                g.produce();
            }
            Step::Set(f, v) => {
                g.st(f.offset(), *v);
                if matches!(f, Field::RspCons | Field::RspProd) {
                    g.honest = false;
                }
            }
            Step::Poke(off, bytes) => {
                let off = usize::from(*off) % 4096;
                let len = bytes.len().min(4096 - off);
                let _ = mem.write_slice(&bytes[..len], GuestAddress(RING + off as u64));
                if off + len > 1024 {
                    g.honest = false;
                }
            }
            Step::Reconnect => {
                g.st(Intf::CONNECTION_OFFSET, 1);
                conn.kick();
                if g.ld(Intf::CONNECTION_OFFSET) == 0 {
                    g.inbox.clear();
                    g.outbox.clear();
                    g.txs.clear();
                    g.honest = true;
                }
            }
            Step::Kick => {
                let (cons, prod) = (g.ld(Intf::REQ_CONS_OFFSET), g.ld(Intf::REQ_PROD_OFFSET));
                let (rcons, rprod) = (g.ld(Intf::RSP_CONS_OFFSET), g.ld(Intf::RSP_PROD_OFFSET));
                let reconnect = g.ld(Intf::CONNECTION_OFFSET) == 1;
                conn.kick();
                if !reconnect {
                    let new_cons = g.ld(Intf::REQ_CONS_OFFSET);
                    let avail = prod.wrapping_sub(cons);
                    if avail <= 1024 {
                        assert!(
                            new_cons.wrapping_sub(cons) <= avail,
                            "req_cons moved past req_prod"
                        );
                    } else {
                        assert_eq!(new_cons, cons, "req_cons moved on bad indices");
                    }
                    let new_prod = g.ld(Intf::RSP_PROD_OFFSET);
                    if rprod.wrapping_sub(rcons) <= 1024 {
                        assert!(new_prod.wrapping_sub(rcons) <= 1024, "reply ring overrun");
                    } else {
                        assert_eq!(new_prod, rprod, "rsp_prod moved on bad indices");
                    }
                }
                if conn.error().is_some() {
                    g.honest = false;
                }
                g.produce();
            }
            Step::Consume(n) => g.consume(usize::from(*n)),
            Step::ClientWrite(p, v) => {
                let _ = client.write(&p.abs(), &v[..v.len().min(4096)]);
            }
            Step::ClientRm(p) => {
                let _ = client.rm(&p.abs());
            }
            Step::ClientPerms(p, which) => {
                let perms: &[&[Perm]] = &[
                    &[Perm::none(0), Perm::read(1)],
                    &[Perm::none(1)],
                    &[Perm::new(Access::Both, 0)],
                    &[Perm::none(0), Perm::both(1), Perm::read(3)],
                ];
                let _ = client.set_perms(&p.abs(), perms[usize::from(*which) % perms.len()]);
            }
            Step::ClientWatch(p) => {
                if watches.len() < 16 {
                    let f = fired.clone();
                    if let Ok(w) = client.watch(&p.abs(), move |_| {
                        f.fetch_add(1, Ordering::Relaxed);
                    }) {
                        watches.push(w);
                    }
                }
            }
            Step::ClientUnwatch(i) => {
                if !watches.is_empty() {
                    let w = watches.swap_remove(usize::from(*i) % watches.len());
                    w.unwatch();
                }
            }
            Step::ClientTx(a, b) => {
                let _ = client.transact(|tx| {
                    tx.write(&a.abs(), "1")?;
                    let _ = tx.read(&b.abs());
                    tx.rm(&b.abs())
                });
            }
            Step::Introduce(d) => {
                let _ = store.introduce_domain(&DomainInfo::new(2 + u16::from(*d % 3), "other"));
            }
            Step::Release(d) => {
                let _ = store.release_domain(2 + u16::from(*d % 3));
            }
            Step::SaveRestore => {
                let (state, restored) = check_restore(&store);
                // A mutated stream is refused or restores to what it says.
                if let Some((at, x)) = mutate {
                    let mut bytes = state.to_bytes();
                    let i = usize::from(at) % bytes.len();
                    bytes[i] ^= x.max(1);
                    if let Ok(s) = State::from_bytes(&bytes)
                        && let Ok(st) = Store::from_state(&s)
                    {
                        assert_eq!(st.state(), s, "mutated stream restored differently");
                    }
                }
                watches.clear();
                drop(conn);
                store = restored;
                conn = store
                    .resume_guest(DOMID, mem.clone(), notify.clone())
                    .unwrap_or_else(|e| panic!("resume: {e}"));
                client = store.client();
            }
        }
        check_bounds(&store.state(), &quota);
    }
    conn.kick();
    g.consume(usize::MAX);
    check_restore(&store);
}
