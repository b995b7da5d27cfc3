// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Snapshot state of a [`Store`], and its byte format.
//!
//! [`State`] is plain data (serde behind the `serde` feature): the
//! configuration, every node with its generation, permissions and
//! children, and for each introduced domain its ring connection: the
//! half-read request, the replies and events not yet in the ring, the
//! watches and the open transactions with every node they touched. The
//! ring page itself (indices included) travels with guest RAM.
//!
//! Not saved: client (domain 0) connections, whose watch callbacks are
//! code; back ends register their watches again after a restore, as
//! QEMU's do.
//!
//! [`State::to_bytes`] writes a stream modelled on Xen's
//! `docs/designs/xenstore-migration.md`: a big-endian header (`xenstore`,
//! version, flags = 0 for little-endian records), then records of
//! `type: u32, len: u32, body`, each padded to 8 bytes, ending with `END`.
//! The Xen record types are used for what they describe (`GLOBAL_DATA` 1,
//! `CONNECTION_DATA` 2, `WATCH_DATA` 3, `TRANSACTION_DATA` 4, `NODE_DATA`
//! 5, `WATCH_DATA_EXTENDED` 8) with bodies extended by what this store
//! keeps (generations, children order, wider domids); domain, output and
//! transaction-node records have private types (`0x10000`..).
//! [`State::from_bytes`] treats its input as untrusted: every length is
//! bounded, and [`Store::from_state`] checks
//! the whole state for consistency before building anything.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use xen_abi::io::xs_wire::{
    XENSTORE_ABS_PATH_MAX, XENSTORE_PAYLOAD_MAX, XenstoreRingError, XenstoreServerFeatures,
};
use xen_abi::xen::DOMID_INVALID;

pub use crate::op::Match;
use crate::op::{Accessed, Node, Tx};
use crate::path::{PathLimit, canonicalize, child_path, is_special, parent};
use crate::perms::{Access, Perm};
use crate::ring::{GuestShared, OutMsg};
use crate::store::{Conn, ConnKind, Domain, Inner, Store, lock};
use crate::wire::{HEADER_LEN, Header};
use crate::{Config, DomainInfo, Error, Quota, Result};

/// Version of [`State`] and of its byte format.
pub const STATE_VERSION: u32 = 1;

/// Most permission entries of one node in a state.
pub const MAX_PERMS: usize = 1024;

/// A node.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NodeState {
    /// Canonical path.
    pub path: String,
    /// Generation of its last write.
    pub generation: u64,
    /// Permissions (entry 0: owner).
    pub perms: Vec<Perm>,
    /// Value.
    pub value: Vec<u8>,
    /// Child names in order.
    pub children: Vec<String>,
}

/// A message waiting for ring space.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OutputState {
    /// A watch event (else a reply).
    pub event: bool,
    /// Header and payload.
    pub message: Vec<u8>,
}

/// A guest watch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WatchState {
    /// The path as the guest gave it (relative or absolute).
    pub path: String,
    /// The token.
    pub token: Vec<u8>,
    /// Depth limit.
    pub depth: Option<u32>,
}

/// A node an open transaction touched.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AccessedState {
    /// Canonical path.
    pub path: String,
    /// Generation seen at first access (`None`: did not exist).
    pub seen: Option<u64>,
    /// The transaction's version (`None`: absent or deleted); its `path`
    /// equals `path`.
    pub node: Option<NodeState>,
    /// Written or deleted.
    pub modified: bool,
    /// Permissions at first access.
    pub orig_perms: Option<Vec<Perm>>,
    /// Event to fire at commit.
    pub fire: Option<Match>,
}

/// An open transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TransactionState {
    /// Id (not 0).
    pub id: u32,
    /// Generation at start.
    pub generation: u64,
    /// Commit will be refused.
    pub failed: bool,
    /// A node was created.
    pub node_created: bool,
    /// Touched nodes, in order.
    pub accessed: Vec<AccessedState>,
    /// Node-count changes per owning domain.
    pub delta: Vec<(u32, i64)>,
}

/// A guest's ring connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConnectionState {
    /// Guest-physical address of the ring page.
    pub ring_gpa: u64,
    /// Ring error that stopped it (0: running).
    pub error: u32,
    /// Next transaction id to try.
    pub next_tx_id: u32,
    /// Bytes of the request being read (header, then payload).
    pub partial_request: Vec<u8>,
    /// Replies and events not yet in the ring, in order.
    pub output: Vec<OutputState>,
    /// Bytes of the first output message already in the ring.
    pub output_written: u32,
    /// Watches in registration order.
    pub watches: Vec<WatchState>,
    /// Open transactions by id.
    pub transactions: Vec<TransactionState>,
}

/// An introduced domain.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DomainState {
    /// What it was introduced with.
    pub info: DomainInfo,
    /// Its ring, once connected.
    pub connection: Option<ConnectionState>,
}

/// Everything needed to rebuild a [`Store`] (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct State {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// The store's configuration.
    pub config: Config,
    /// The global generation counter.
    pub generation: u64,
    /// Every node, sorted by path.
    pub nodes: Vec<NodeState>,
    /// Introduced domains by id.
    pub domains: Vec<DomainState>,
}

fn bad(what: impl Into<String>) -> Error {
    Error::InvalidState(what.into())
}

fn node_state(path: &str, n: &Node) -> NodeState {
    NodeState {
        path: path.to_owned(),
        generation: n.generation,
        perms: n.perms.clone(),
        value: n.data.clone(),
        children: n.children.clone(),
    }
}

fn node_from(s: &NodeState) -> Node {
    Node {
        generation: s.generation,
        perms: s.perms.clone(),
        data: s.value.clone(),
        children: s.children.clone(),
    }
}

impl Store {
    /// The whole state. Client connections are not part of it.
    pub fn state(&self) -> State {
        loop {
            let guests = guest_list(&lock(&self.inner));
            let ios: Vec<_> = guests.iter().map(|g| lock(&g.io)).collect();
            let inner = lock(&self.inner);
            let now = guest_list(&inner);
            if now.len() != guests.len() || now.iter().zip(&guests).any(|(a, b)| !Arc::ptr_eq(a, b))
            {
                continue;
            }
            let mut nodes: Vec<NodeState> = inner
                .db
                .nodes
                .iter()
                .map(|(p, n)| node_state(p, n))
                .collect();
            nodes.sort_by(|a, b| a.path.cmp(&b.path));
            let domains = inner
                .domains
                .values()
                .map(|d| {
                    let connection = d.conn.and_then(|cid| {
                        let conn = inner.conns.get(&cid)?;
                        let ConnKind::Guest(shared) = &conn.kind else {
                            return None;
                        };
                        let i = guests.iter().position(|g| Arc::ptr_eq(g, shared))?;
                        Some(connection_state(conn, shared, &ios[i]))
                    });
                    DomainState {
                        info: d.info.clone(),
                        connection,
                    }
                })
                .collect();
            return State {
                version: STATE_VERSION,
                config: inner.config,
                generation: inner.db.generation,
                nodes,
                domains,
            };
        }
    }

    /// A store rebuilt from `state` after checking it. Guest rings are
    /// re-attached with [`Store::resume_guest`]; until then their output
    /// waits (bounded) in the store.
    pub fn from_state(state: &State) -> Result<Arc<Store>> {
        state.validate()?;
        let mut inner = Inner::empty(state.config);
        inner.db.generation = state.generation;
        inner.db.known.insert(0);
        for d in &state.domains {
            inner.db.known.insert(u32::from(d.info.domid));
        }
        for n in &state.nodes {
            inner.db.nodes.insert(n.path.clone(), node_from(n));
        }
        inner.db.recount();
        for d in &state.domains {
            let mut dom = Domain {
                info: d.info.clone(),
                conn: None,
            };
            if let Some(c) = &d.connection {
                let cid = inner.next_conn;
                let shared = Arc::new(GuestShared::new(
                    d.info.domid,
                    cid,
                    c.ring_gpa,
                    state.config.features,
                ));
                {
                    let mut io = lock(&shared.io);
                    io.input = c.partial_request.clone();
                    io.failed = c.error;
                    let mut q = lock(&shared.queue);
                    for m in &c.output {
                        q.push(OutMsg {
                            bytes: m.message.clone(),
                            event: m.event,
                        });
                    }
                    q.written = c.output_written as usize;
                }
                let mut conn = Conn::new(u32::from(d.info.domid), ConnKind::Guest(shared));
                conn.next_tx_id = c.next_tx_id;
                for t in &c.transactions {
                    let mut tx = Tx {
                        id: t.id,
                        generation: t.generation,
                        failed: t.failed,
                        node_created: t.node_created,
                        delta: t.delta.iter().copied().collect(),
                        ..Tx::default()
                    };
                    tx.accessed = t
                        .accessed
                        .iter()
                        .map(|a| Accessed {
                            path: a.path.clone(),
                            seen: a.seen,
                            node: a.node.as_ref().map(node_from),
                            modified: a.modified,
                            orig_perms: a.orig_perms.clone(),
                            fire: a.fire,
                        })
                        .collect();
                    tx.reindex();
                    conn.txs.insert(t.id, tx);
                }
                let cid = inner.add_conn(conn);
                for w in &c.watches {
                    inner
                        .add_watch(cid, w.path.as_bytes(), &w.token, w.depth, None)
                        .map_err(|e| bad(format!("watch {}: {e}", w.path)))?;
                }
                dom.conn = Some(cid);
            }
            inner.domains.insert(d.info.domid, dom);
        }
        Ok(Arc::new(Store::from_inner(inner)))
    }
}

/// The guest connections, by domain.
fn guest_list(inner: &Inner) -> Vec<Arc<GuestShared>> {
    inner
        .domains
        .values()
        .filter_map(|d| match &inner.conns.get(&d.conn?)?.kind {
            ConnKind::Guest(s) => Some(s.clone()),
            ConnKind::Client => None,
        })
        .collect()
}

fn connection_state(
    conn: &Conn,
    shared: &GuestShared,
    io: &crate::ring::IoState,
) -> ConnectionState {
    let q = lock(&shared.queue);
    ConnectionState {
        ring_gpa: shared.gpa,
        error: io.failed,
        next_tx_id: conn.next_tx_id,
        partial_request: io.input.clone(),
        output: q
            .msgs
            .iter()
            .map(|m| OutputState {
                event: m.event,
                message: m.bytes.clone(),
            })
            .collect(),
        output_written: q.written as u32,
        watches: conn
            .watches
            .iter()
            .map(|w| WatchState {
                path: w.given_path().to_owned(),
                token: w.token.clone(),
                depth: w.depth,
            })
            .collect(),
        transactions: conn
            .txs
            .values()
            .map(|t| TransactionState {
                id: t.id,
                generation: t.generation,
                failed: t.failed,
                node_created: t.node_created,
                accessed: t
                    .accessed
                    .iter()
                    .map(|a| AccessedState {
                        path: a.path.clone(),
                        seen: a.seen,
                        node: a.node.as_ref().map(|n| node_state(&a.path, n)),
                        modified: a.modified,
                        orig_perms: a.orig_perms.clone(),
                        fire: a.fire,
                    })
                    .collect(),
                delta: t.delta.iter().map(|(&d, &v)| (d, v)).collect(),
            })
            .collect(),
    }
}

/// Checks a canonical absolute or special path.
fn check_path(p: &str) -> Result<()> {
    let ok = p == "/"
        || canonicalize(p.as_bytes(), "/", PathLimit::Absolute, true).is_ok_and(|c| c == p);
    if ok && (p.starts_with('/') || is_special(p)) {
        Ok(())
    } else {
        Err(bad(format!("bad path {p:?}")))
    }
}

fn check_perms(perms: &[Perm]) -> Result<()> {
    if perms.is_empty() || perms.len() > MAX_PERMS {
        return Err(bad("bad permission list"));
    }
    Ok(())
}

/// Checks one node's own fields.
fn check_node(n: &NodeState, max_gen: u64) -> Result<()> {
    check_path(&n.path)?;
    check_perms(&n.perms)?;
    if n.value.len() > XENSTORE_PAYLOAD_MAX || n.generation > max_gen {
        return Err(bad(format!("bad node {}", n.path)));
    }
    let mut seen = HashSet::new();
    for c in &n.children {
        if c.is_empty() || !seen.insert(c.as_str()) {
            return Err(bad(format!("bad children of {}", n.path)));
        }
        check_path(&child_path(&n.path, c)).map_err(|_| bad(format!("bad child of {}", n.path)))?;
        if c.contains('/') {
            return Err(bad(format!("bad child of {}", n.path)));
        }
    }
    Ok(())
}

/// Checks a message waiting for the ring.
fn check_message(m: &[u8]) -> bool {
    m.len() >= HEADER_LEN && {
        let h = Header::decode(m);
        h.len as usize <= XENSTORE_PAYLOAD_MAX && HEADER_LEN + h.len as usize == m.len()
    }
}

impl State {
    /// Checks the state for consistency (done by [`Store::from_state`]).
    pub fn validate(&self) -> Result<()> {
        if self.version != STATE_VERSION {
            return Err(bad(format!("version {}", self.version)));
        }
        self.config.validate()?;
        let q: &Quota = &self.config.quota;
        // Lists are in the order `Store::state` writes them, so that a
        // restored store's state equals the one it came from.
        let sorted = self.nodes.windows(2).all(|w| w[0].path < w[1].path)
            && self
                .domains
                .windows(2)
                .all(|w| w[0].info.domid < w[1].info.domid);
        if !sorted {
            return Err(bad("nodes or domains out of order"));
        }
        let mut nodes: HashMap<&str, &NodeState> = HashMap::new();
        for n in &self.nodes {
            check_node(n, self.generation)?;
            nodes.insert(&n.path, n);
        }
        if !nodes.contains_key("/") {
            return Err(bad("no root node"));
        }
        // Every node is listed by its parent, and every child exists.
        for n in &self.nodes {
            for c in &n.children {
                if !nodes.contains_key(child_path(&n.path, c).as_str()) {
                    return Err(bad(format!("missing child {c} of {}", n.path)));
                }
            }
            if n.path != "/" && !is_special(&n.path) {
                let listed = nodes.get(parent(&n.path)).is_some_and(|p| {
                    p.children
                        .iter()
                        .any(|c| *c == crate::path::basename(&n.path))
                });
                if !listed {
                    return Err(bad(format!("orphan node {}", n.path)));
                }
            }
        }
        for d in &self.domains {
            d.info.validate()?;
            let Some(c) = &d.connection else {
                continue;
            };
            if c.ring_gpa % 4096 != 0 || XenstoreRingError::try_from(c.error).is_err() {
                return Err(bad("bad ring"));
            }
            let p = &c.partial_request;
            let incomplete = if p.len() < HEADER_LEN {
                true
            } else {
                let len = Header::decode(p).len as usize;
                len <= XENSTORE_PAYLOAD_MAX && p.len() < HEADER_LEN + len
            };
            if !incomplete {
                return Err(bad("bad partial request"));
            }
            let replies = c.output.iter().filter(|m| !m.event).count();
            let events = c.output.len() - replies;
            if replies > q.outstanding as usize
                || events > q.pending_events as usize
                || c.output.iter().any(|m| !check_message(&m.message))
                || c.output_written as usize >= c.output.first().map_or(1, |m| m.message.len())
            {
                return Err(bad("bad pending output"));
            }
            if c.watches.len() > q.watches as usize
                || c.watches.iter().any(|w| w.token.contains(&0))
            {
                return Err(bad("bad watches"));
            }
            if c.transactions.len() > q.transactions as usize {
                return Err(bad("too many transactions"));
            }
            if !c.transactions.windows(2).all(|w| w[0].id < w[1].id) {
                return Err(bad("transactions out of order"));
            }
            for t in &c.transactions {
                if t.id == 0 || t.generation > self.generation {
                    return Err(bad("bad transaction id"));
                }
                if t.accessed.len() > q.transaction_nodes as usize {
                    return Err(bad("transaction too large"));
                }
                let mut paths = HashSet::new();
                for a in &t.accessed {
                    check_path(&a.path)?;
                    if !paths.insert(a.path.as_str()) || a.seen.is_some_and(|g| g > self.generation)
                    {
                        return Err(bad(format!("bad transaction node {}", a.path)));
                    }
                    if let Some(n) = &a.node {
                        check_node(n, self.generation)?;
                        if n.path != a.path {
                            return Err(bad("transaction node path mismatch"));
                        }
                    }
                    if let Some(p) = &a.orig_perms {
                        check_perms(p)?;
                    }
                }
                let limit = t.accessed.len() as u64;
                if !t.delta.windows(2).all(|w| w[0].0 < w[1].0)
                    || t.delta.iter().any(|&(_, v)| v.unsigned_abs() > limit)
                {
                    return Err(bad("bad transaction counts"));
                }
            }
        }
        Ok(())
    }

    /// Encodes the state (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.out.extend_from_slice(b"xenstore");
        w.out.extend_from_slice(&STATE_VERSION.to_be_bytes());
        w.out.extend_from_slice(&0u32.to_be_bytes());
        w.record(REC_GLOBAL, |w| {
            w.u32(self.version);
            w.u64(self.generation);
            let q = &self.config.quota;
            for v in [
                q.nodes,
                q.node_size,
                q.watches,
                q.transactions,
                q.transaction_nodes,
                q.node_permissions,
                q.path_max,
                q.outstanding,
                q.pending_events,
                self.config.features.bits(),
            ] {
                w.u32(v);
            }
        });
        for n in &self.nodes {
            w.record(REC_NODE, |w| {
                w.u32(0);
                w.u32(0);
                w.node(n);
            });
        }
        for d in &self.domains {
            let id = u32::from(d.info.domid);
            w.record(REC_DOMAIN, |w| {
                let i = &d.info;
                w.u32(id);
                w.bytes(i.name.as_bytes());
                w.out.extend_from_slice(&i.uuid);
                w.u64(i.max_memory_kib);
                w.u64(i.target_memory_kib);
                w.u64(i.video_memory_kib.unwrap_or(u64::MAX));
                w.u32(i.vcpus);
                w.u32(i.online_vcpus);
                w.u64(i.store_gfn);
                w.u32(i.store_port);
                let flags = u32::from(i.acpi)
                    | u32::from(i.acpi_s3) << 1
                    | u32::from(i.acpi_s4) << 2
                    | u32::from(i.acpi_laptop_slate) << 3;
                w.u32(flags);
            });
            let Some(c) = &d.connection else {
                continue;
            };
            w.record(REC_CONNECTION, |w| {
                w.u32(id);
                w.u16(0); // conn-type: shared ring
                w.u16(0); // flags
                w.u16(d.info.domid);
                w.u16(DOMID_INVALID);
                w.u32(d.info.store_port);
                w.bytes(&c.partial_request);
                w.u64(c.ring_gpa);
                w.u32(c.error);
                w.u32(c.next_tx_id);
                w.u32(c.output_written);
            });
            for m in &c.output {
                w.record(REC_OUTPUT, |w| {
                    w.u32(id);
                    w.u32(u32::from(m.event));
                    w.bytes(&m.message);
                });
            }
            for wa in &c.watches {
                let kind = if wa.depth.is_some() {
                    REC_WATCH_EXT
                } else {
                    REC_WATCH
                };
                w.record(kind, |w| {
                    w.u32(id);
                    w.bytes(wa.path.as_bytes());
                    w.bytes(&wa.token);
                    if let Some(depth) = wa.depth {
                        w.u32(depth);
                    }
                });
            }
            for t in &c.transactions {
                w.record(REC_TRANSACTION, |w| {
                    w.u32(id);
                    w.u32(t.id);
                    w.u64(t.generation);
                    w.u32(u32::from(t.failed) | u32::from(t.node_created) << 1);
                    w.u32(t.delta.len() as u32);
                    for &(domid, v) in &t.delta {
                        w.u32(domid);
                        w.u64(v as u64);
                    }
                });
                for a in &t.accessed {
                    w.record(REC_TX_NODE, |w| {
                        w.u32(id);
                        w.u32(t.id);
                        w.bytes(a.path.as_bytes());
                        let fire = match a.fire {
                            None => 0,
                            Some(Match::Exact) => 1,
                            Some(Match::Subtree) => 2,
                        };
                        w.u32(u32::from(a.modified) | fire << 1);
                        w.opt_u64(a.seen);
                        w.u8(u8::from(a.node.is_some()));
                        if let Some(n) = &a.node {
                            w.node(n);
                        }
                        w.u8(u8::from(a.orig_perms.is_some()));
                        if let Some(p) = &a.orig_perms {
                            w.perms(p);
                        }
                    });
                }
            }
        }
        w.record(REC_END, |_| {});
        w.out
    }

    /// Decodes bytes written by [`State::to_bytes`]. The result still
    /// needs [`State::validate`] (which [`Store::from_state`] runs).
    pub fn from_bytes(bytes: &[u8]) -> Result<State> {
        let mut r = Reader { b: bytes, at: 0 };
        if r.take(8)? != b"xenstore" {
            return Err(bad("not a xenstore stream"));
        }
        let version = u32::from_be_bytes(r.array()?);
        let flags = u32::from_be_bytes(r.array()?);
        if version != STATE_VERSION || flags != 0 {
            return Err(bad(format!(
                "unsupported stream version {version} flags {flags}"
            )));
        }
        let mut state: Option<State> = None;
        let mut conns: BTreeMap<u32, usize> = BTreeMap::new();
        loop {
            let kind = r.u32()?;
            let len = r.u32()? as usize;
            let body = r.take(len)?;
            r.take((8 - len % 8) % 8)?;
            let mut b = Reader { b: body, at: 0 };
            if kind == REC_END {
                break;
            }
            if kind == REC_GLOBAL {
                if state.is_some() {
                    return Err(bad("second global record"));
                }
                let version = b.u32()?;
                let generation = b.u64()?;
                let mut v = [0u32; 10];
                for x in &mut v {
                    *x = b.u32()?;
                }
                let quota = Quota {
                    nodes: v[0],
                    node_size: v[1],
                    watches: v[2],
                    transactions: v[3],
                    transaction_nodes: v[4],
                    node_permissions: v[5],
                    path_max: v[6],
                    outstanding: v[7],
                    pending_events: v[8],
                };
                let features = XenstoreServerFeatures::from_bits(v[9])
                    .ok_or_else(|| bad("unknown features"))?;
                state = Some(State {
                    version,
                    config: Config { quota, features },
                    generation,
                    nodes: Vec::new(),
                    domains: Vec::new(),
                });
                b.end()?;
                continue;
            }
            let st = state
                .as_mut()
                .ok_or_else(|| bad("record before global data"))?;
            match kind {
                REC_NODE => {
                    if b.u32()? != 0 || b.u32()? != 0 {
                        return Err(bad("transaction node in NODE_DATA"));
                    }
                    st.nodes.push(b.node()?);
                }
                REC_DOMAIN => {
                    let domid = u16::try_from(b.u32()?).map_err(|_| bad("bad domid"))?;
                    let name = b.string()?;
                    let mut info = DomainInfo::new(domid, &name);
                    info.uuid = b.array()?;
                    info.max_memory_kib = b.u64()?;
                    info.target_memory_kib = b.u64()?;
                    info.video_memory_kib = Some(b.u64()?).filter(|&v| v != u64::MAX);
                    info.vcpus = b.u32()?;
                    info.online_vcpus = b.u32()?;
                    info.store_gfn = b.u64()?;
                    info.store_port = b.u32()?;
                    let f = b.u32()?;
                    if f > 0xf {
                        return Err(bad("bad platform flags"));
                    }
                    info.acpi = f & 1 != 0;
                    info.acpi_s3 = f & 2 != 0;
                    info.acpi_s4 = f & 4 != 0;
                    info.acpi_laptop_slate = f & 8 != 0;
                    st.domains.push(DomainState {
                        info,
                        connection: None,
                    });
                }
                REC_CONNECTION => {
                    let id = b.u32()?;
                    let (ctype, cflags, domid) = (b.u16()?, b.u16()?, b.u16()?);
                    let _tdomid = b.u16()?;
                    let _evtchn = b.u32()?;
                    let i = st
                        .domains
                        .iter()
                        .position(|d| u32::from(d.info.domid) == id && d.info.domid == domid)
                        .ok_or_else(|| bad("connection of an unknown domain"))?;
                    if ctype != 0 || cflags != 0 || st.domains[i].connection.is_some() {
                        return Err(bad("bad connection record"));
                    }
                    let partial_request = b.bytes()?.to_vec();
                    st.domains[i].connection = Some(ConnectionState {
                        partial_request,
                        ring_gpa: b.u64()?,
                        error: b.u32()?,
                        next_tx_id: b.u32()?,
                        output_written: b.u32()?,
                        output: Vec::new(),
                        watches: Vec::new(),
                        transactions: Vec::new(),
                    });
                    conns.insert(id, i);
                }
                REC_OUTPUT | REC_WATCH | REC_WATCH_EXT | REC_TRANSACTION | REC_TX_NODE => {
                    let id = b.u32()?;
                    let i = *conns
                        .get(&id)
                        .ok_or_else(|| bad("record of an unknown connection"))?;
                    let c = st.domains[i]
                        .connection
                        .as_mut()
                        .ok_or_else(|| bad("record of an unknown connection"))?;
                    match kind {
                        REC_OUTPUT => {
                            let event = match b.u32()? {
                                0 => false,
                                1 => true,
                                _ => return Err(bad("bad output kind")),
                            };
                            let message = b.bytes()?.to_vec();
                            c.output.push(OutputState { event, message });
                        }
                        REC_WATCH | REC_WATCH_EXT => {
                            let path = b.string()?;
                            let token = b.bytes()?.to_vec();
                            let depth = if kind == REC_WATCH_EXT {
                                Some(b.u32()?)
                            } else {
                                None
                            };
                            c.watches.push(WatchState { path, token, depth });
                        }
                        REC_TRANSACTION => {
                            let tid = b.u32()?;
                            let generation = b.u64()?;
                            let f = b.u32()?;
                            if f > 3 {
                                return Err(bad("bad transaction flags"));
                            }
                            let n = b.u32()?;
                            let mut delta = Vec::new();
                            for _ in 0..n {
                                delta.push((b.u32()?, b.u64()? as i64));
                            }
                            c.transactions.push(TransactionState {
                                id: tid,
                                generation,
                                failed: f & 1 != 0,
                                node_created: f & 2 != 0,
                                accessed: Vec::new(),
                                delta,
                            });
                        }
                        _ => {
                            let tid = b.u32()?;
                            let t = c
                                .transactions
                                .iter_mut()
                                .find(|t| t.id == tid)
                                .ok_or_else(|| bad("node of an unknown transaction"))?;
                            let path = b.string()?;
                            let f = b.u32()?;
                            let fire = match f >> 1 {
                                0 => None,
                                1 => Some(Match::Exact),
                                2 => Some(Match::Subtree),
                                _ => return Err(bad("bad transaction node flags")),
                            };
                            let seen = b.opt_u64()?;
                            let node = if b.flag()? { Some(b.node()?) } else { None };
                            let orig_perms = if b.flag()? { Some(b.perms()?) } else { None };
                            t.accessed.push(AccessedState {
                                path,
                                seen,
                                node,
                                modified: f & 1 != 0,
                                orig_perms,
                                fire,
                            });
                        }
                    }
                }
                _ => return Err(bad(format!("unknown record type {kind:#x}"))),
            }
            b.end()?;
        }
        if r.at != bytes.len() {
            return Err(bad("data after END"));
        }
        state.ok_or_else(|| bad("no global data"))
    }
}

const REC_END: u32 = 0;
const REC_GLOBAL: u32 = 1;
const REC_CONNECTION: u32 = 2;
const REC_WATCH: u32 = 3;
const REC_TRANSACTION: u32 = 4;
const REC_NODE: u32 = 5;
const REC_WATCH_EXT: u32 = 8;
const REC_DOMAIN: u32 = 0x1_0000;
const REC_OUTPUT: u32 = 0x1_0001;
const REC_TX_NODE: u32 = 0x1_0002;

#[derive(Default)]
struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn opt_u64(&mut self, v: Option<u64>) {
        self.u8(u8::from(v.is_some()));
        self.u64(v.unwrap_or(0));
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.out.extend_from_slice(b);
    }
    fn perms(&mut self, perms: &[Perm]) {
        self.u32(perms.len() as u32);
        for p in perms {
            self.u8(p.access.letter() as u8);
            self.u8(u8::from(p.ignored));
            self.u16(0);
            self.u32(p.domid);
        }
    }
    fn node(&mut self, n: &NodeState) {
        self.bytes(n.path.as_bytes());
        self.u64(n.generation);
        self.perms(&n.perms);
        self.bytes(&n.value);
        self.u32(n.children.len() as u32);
        for c in &n.children {
            self.bytes(c.as_bytes());
        }
    }
    fn record(&mut self, kind: u32, body: impl FnOnce(&mut Writer)) {
        let mut w = Writer::default();
        body(&mut w);
        self.u32(kind);
        self.u32(w.out.len() as u32);
        self.out.extend_from_slice(&w.out);
        let pad = (8 - w.out.len() % 8) % 8;
        self.out.extend(std::iter::repeat_n(0, pad));
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| bad("truncated"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn flag(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(bad("bad flag")),
        }
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn opt_u64(&mut self) -> Result<Option<u64>> {
        let some = self.flag()?;
        let v = self.u64()?;
        Ok(some.then_some(v))
    }
    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String> {
        let b = self.bytes()?;
        if b.len() > XENSTORE_ABS_PATH_MAX.max(XENSTORE_PAYLOAD_MAX) {
            return Err(bad("string too long"));
        }
        String::from_utf8(b.to_vec()).map_err(|_| bad("bad string"))
    }
    fn perms(&mut self) -> Result<Vec<Perm>> {
        let n = self.u32()? as usize;
        if n > MAX_PERMS {
            return Err(bad("too many permissions"));
        }
        let mut v = Vec::new();
        for _ in 0..n {
            let access = Access::from_letter(self.u8()?).ok_or_else(|| bad("bad permission"))?;
            let ignored = self.flag()?;
            self.u16()?;
            let domid = self.u32()?;
            v.push(Perm {
                access,
                domid,
                ignored,
            });
        }
        Ok(v)
    }
    fn node(&mut self) -> Result<NodeState> {
        let path = self.string()?;
        let generation = self.u64()?;
        let perms = self.perms()?;
        let value = self.bytes()?.to_vec();
        let n = self.u32()?;
        let mut children = Vec::new();
        for _ in 0..n {
            children.push(self.string()?);
        }
        Ok(NodeState {
            path,
            generation,
            perms,
            value,
            children,
        })
    }
    fn end(&self) -> Result<()> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            Err(bad("record longer than its fields"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_from_bytes_rejects_garbage() {
        assert!(State::from_bytes(b"").is_err());
        assert!(State::from_bytes(b"xenstorX\0\0\0\x01\0\0\0\0").is_err());
        let mut ok = b"xenstore".to_vec();
        ok.extend_from_slice(&1u32.to_be_bytes());
        ok.extend_from_slice(&0u32.to_be_bytes());
        ok.extend_from_slice(&[0; 8]); // END
        assert!(matches!(
            State::from_bytes(&ok),
            Err(Error::InvalidState(s)) if s == "no global data"
        ));
    }

    #[test]
    fn test_fresh_store_state_round_trips_bytes() {
        let store = Store::new(Config::default()).unwrap();
        let s = store.state();
        let back = State::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(back, s);
        let again = Store::from_state(&back).unwrap();
        assert_eq!(again.state(), s);
    }

    #[test]
    fn test_validate_rejects_orphans_and_missing_children() {
        let store = Store::new(Config::default()).unwrap();
        let mut s = store.state();
        s.nodes.push(NodeState {
            path: "/nowhere/x".into(),
            generation: 0,
            perms: vec![Perm::none(0)],
            value: vec![],
            children: vec![],
        });
        assert!(s.validate().is_err());
        let mut s = store.state();
        let root = s.nodes.iter_mut().find(|n| n.path == "/").unwrap();
        root.children.push("ghost".into());
        assert!(s.validate().is_err());
    }
}
