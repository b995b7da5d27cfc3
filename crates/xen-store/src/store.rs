// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The shared store: the database, the connections (guest rings and
//! in-process clients) with their watches and transactions, the
//! introduced domains, and the delivery of watch events.
//!
//! # Locks
//!
//! `Store::inner` guards everything above. Each guest ring has two more
//! locks: `io` (its half-read request; held while the ring is serviced)
//! and `queue` (replies and events waiting for ring space). The order is
//! `io` → `inner` → `queue` → `delivery`. Guest memory is written with
//! `io` (and `queue`) held but never `inner`; the guest's `notify` and the
//! watch callbacks of clients run with no lock held.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use xen_abi::errno::XenErrno;
use xen_abi::xen::DomId;

use crate::domain::{DomainInfo, build_domain_tree};
use crate::op::{Caller, Db, Fired, Match, Node, Op, Tx, commit, perm_sets};
use crate::path::{
    INTRODUCE_DOMAIN, PathLimit, RELEASE_DOMAIN, canonicalize, domain_path, is_child,
};
use crate::perms::{Perm, owner};
use crate::ring::GuestShared;
use crate::{Config, Error, Result};

/// Identifies a connection inside the store.
pub(crate) type ConnId = u64;

/// Most client watch events waiting for delivery.
const MAX_DELIVERY: usize = 1 << 16;

/// Locks a mutex, ignoring poisoning (the data stays consistent: every
/// critical section completes its changes before anything can panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A client's watch callback.
pub(crate) struct ClientWatch {
    /// Set on unwatch: pending events are then dropped.
    pub(crate) removed: AtomicBool,
    /// Called with the path that fired.
    pub(crate) callback: Box<dyn Fn(&str) + Send + Sync>,
}

/// A registered watch.
pub(crate) struct Watch {
    /// Unique id (clients unwatch by it).
    pub(crate) id: u64,
    /// Canonical watched path.
    pub(crate) node: String,
    /// The token sent back in events.
    pub(crate) token: Vec<u8>,
    /// Bytes stripped from event paths (relative watches).
    pub(crate) prefix_len: usize,
    /// Levels below `node` that match (`None`: all).
    pub(crate) depth: Option<u32>,
    /// For a client watch: the callback.
    pub(crate) callback: Option<Arc<ClientWatch>>,
}

impl Watch {
    /// The path as registered (relative watches without the home prefix).
    pub(crate) fn given_path(&self) -> &str {
        self.node.get(self.prefix_len..).unwrap_or(&self.node)
    }
}

/// What is at the other end of a connection.
pub(crate) enum ConnKind {
    /// A guest ring.
    Guest(Arc<GuestShared>),
    /// An in-process client (domain 0).
    Client,
}

/// A connection: who it is, its watches and transactions.
pub(crate) struct Conn {
    pub(crate) caller: Caller,
    pub(crate) home: String,
    pub(crate) kind: ConnKind,
    pub(crate) watches: Vec<Watch>,
    pub(crate) txs: BTreeMap<u32, Tx>,
    pub(crate) next_tx_id: u32,
}

impl Conn {
    /// A connection with nothing registered.
    pub(crate) fn new(domid: u32, kind: ConnKind) -> Conn {
        Conn {
            caller: Caller {
                domid,
                privileged: domid == 0,
            },
            home: domain_path(domid),
            kind,
            watches: Vec::new(),
            txs: BTreeMap::new(),
            next_tx_id: 1,
        }
    }
}

/// An introduced domain.
pub(crate) struct Domain {
    pub(crate) info: DomainInfo,
    /// Its guest ring connection, once connected.
    pub(crate) conn: Option<ConnId>,
}

/// Work to do once `inner` is unlocked.
#[derive(Default)]
pub(crate) struct Effects {
    /// Guest rings with new output.
    pub(crate) flush: Vec<Arc<GuestShared>>,
    /// Client callbacks to run.
    pub(crate) callbacks: Vec<(Arc<ClientWatch>, String)>,
}

/// Everything behind the store lock.
pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) db: Db,
    pub(crate) conns: BTreeMap<ConnId, Conn>,
    pub(crate) domains: BTreeMap<DomId, Domain>,
    pub(crate) next_conn: ConnId,
    pub(crate) next_watch: u64,
}

impl Inner {
    /// A store with C xenstored's initial nodes and domain 0's home.
    pub(crate) fn new(config: Config) -> Inner {
        let mut inner = Inner::empty(config);
        let db = &mut inner.db;
        db.known.insert(0);
        let mut root = Node::new(vec![Perm::none(0)]);
        root.children.push("tool".into());
        let mut tool = Node::new(vec![Perm::none(0)]);
        tool.children.push("xenstored".into());
        for (path, node) in [
            ("/", root),
            ("/tool", tool),
            ("/tool/xenstored", Node::new(vec![Perm::none(0)])),
            (RELEASE_DOMAIN, Node::new(vec![Perm::none(0)])),
            (INTRODUCE_DOMAIN, Node::new(vec![Perm::none(0)])),
        ] {
            let mut node = node;
            node.generation = db.next_generation();
            db.nodes.insert(path.to_owned(), node);
        }
        let who = Caller {
            domid: 0,
            privileged: true,
        };
        let quota = inner.config.quota;
        let mut op = Op::new(&mut inner.db, None, &who, &quota);
        for (path, value) in [
            ("/local/domain/0/name", "Domain-0"),
            ("/local/domain/0/domid", "0"),
        ] {
            // Privileged writes of valid paths cannot fail.
            let _ = op.write(path, value.as_bytes());
        }
        let _ = op.mkdir("/vm");
        inner.db.recount();
        inner
    }

    /// A store without nodes (for restores).
    pub(crate) fn empty(config: Config) -> Inner {
        Inner {
            config,
            db: Db::default(),
            conns: BTreeMap::new(),
            domains: BTreeMap::new(),
            next_conn: 1,
            next_watch: 1,
        }
    }

    /// Registers a connection.
    pub(crate) fn add_conn(&mut self, conn: Conn) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(id, conn);
        id
    }

    /// The path limit of a caller.
    pub(crate) fn limit(&self, caller: &Caller) -> PathLimit {
        if caller.privileged {
            PathLimit::Absolute
        } else {
            PathLimit::Relative(self.config.quota.path_max as usize)
        }
    }

    /// Canonicalizes a path for connection `cid`.
    pub(crate) fn canon(
        &self,
        cid: ConnId,
        raw: &[u8],
        special: bool,
    ) -> std::result::Result<String, XenErrno> {
        let conn = self.conns.get(&cid).ok_or(XenErrno::EIO)?;
        canonicalize(raw, &conn.home, self.limit(&conn.caller), special)
    }

    /// Runs `f` as connection `cid`, in its transaction `tx` if given
    /// (`ENOENT` if unknown), then delivers the events of a live change.
    pub(crate) fn with_op<R>(
        &mut self,
        cid: ConnId,
        tx_id: Option<u32>,
        fx: &mut Effects,
        f: impl FnOnce(&mut Op) -> std::result::Result<R, XenErrno>,
    ) -> std::result::Result<R, XenErrno> {
        let conn = self.conns.get_mut(&cid).ok_or(XenErrno::EIO)?;
        let caller = conn.caller.clone();
        let mut tx = match tx_id {
            Some(id) => Some(conn.txs.remove(&id).ok_or(XenErrno::ENOENT)?),
            None => None,
        };
        let quota = self.config.quota;
        let mut op = Op::new(&mut self.db, tx.as_mut(), &caller, &quota);
        let r = f(&mut op);
        let fired = std::mem::take(&mut op.fired);
        if let (Some(tx), Some(conn)) = (tx, self.conns.get_mut(&cid)) {
            conn.txs.insert(tx.id, tx);
        }
        self.deliver(fired, fx);
        r
    }

    /// Sends events to every watch they match, if the watcher may read
    /// (C `fire_watches`).
    pub(crate) fn deliver(&self, fired: Vec<Fired>, fx: &mut Effects) {
        for f in fired {
            for conn in self.conns.values() {
                if !f.permitted(conn.caller.privileged, conn.caller.domid) {
                    continue;
                }
                for w in &conn.watches {
                    let hit = match f.matching {
                        Match::Exact => w.node == f.path,
                        Match::Subtree => is_child(&f.path, &w.node, w.depth),
                    };
                    if hit {
                        self.emit(conn, w, &f.path, fx);
                    }
                }
            }
        }
    }

    /// Sends one event for watch `w` of `conn`.
    pub(crate) fn emit(&self, conn: &Conn, w: &Watch, path: &str, fx: &mut Effects) {
        let path = path.get(w.prefix_len..).unwrap_or(path);
        match (&conn.kind, &w.callback) {
            (ConnKind::Guest(shared), _) => {
                let special = path.starts_with('@');
                if shared.push_event(path, &w.token, special, &self.config.quota) {
                    push_unique(&mut fx.flush, shared);
                }
            }
            (ConnKind::Client, Some(cb)) => fx.callbacks.push((cb.clone(), path.to_owned())),
            (ConnKind::Client, None) => {}
        }
    }

    /// Fires a special watch node (`@introduceDomain`, `@releaseDomain`).
    pub(crate) fn fire_special(&self, name: &str, fx: &mut Effects) {
        let fired = Fired {
            path: name.to_owned(),
            matching: Match::Exact,
            perm_sets: perm_sets(&self.db, name, None),
        };
        self.deliver(vec![fired], fx);
    }

    /// Starts a transaction (C `do_transaction_start`).
    pub(crate) fn tx_start(&mut self, cid: ConnId) -> std::result::Result<u32, XenErrno> {
        let quota = self.config.quota.transactions as usize;
        let generation = self.db.next_generation();
        let conn = self.conns.get_mut(&cid).ok_or(XenErrno::EIO)?;
        if !conn.caller.privileged && conn.txs.len() + 1 > quota {
            return Err(XenErrno::ENOSPC);
        }
        // Ids are never 0 and never reused while live.
        let mut id = conn.next_tx_id;
        while id == 0 || conn.txs.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        conn.next_tx_id = id.wrapping_add(1);
        conn.txs.insert(
            id,
            Tx {
                id,
                generation,
                ..Tx::default()
            },
        );
        Ok(id)
    }

    /// Ends a transaction: commits (with `commit`) or aborts it. The
    /// transaction is gone afterwards, whatever the result.
    pub(crate) fn tx_end(
        &mut self,
        cid: ConnId,
        id: u32,
        do_commit: bool,
        fx: &mut Effects,
    ) -> std::result::Result<(), XenErrno> {
        let conn = self.conns.get_mut(&cid).ok_or(XenErrno::EIO)?;
        let tx = conn.txs.remove(&id).ok_or(XenErrno::ENOENT)?;
        if !do_commit {
            return Ok(());
        }
        let caller = conn.caller.clone();
        let fired = commit(&mut self.db, tx, &caller, &self.config.quota)?;
        self.deliver(fired, fx);
        Ok(())
    }

    /// Drops all watches and transactions of a connection.
    pub(crate) fn reset_conn(&mut self, cid: ConnId) {
        if let Some(conn) = self.conns.get_mut(&cid) {
            for w in conn.watches.drain(..) {
                if let Some(cb) = w.callback {
                    cb.removed.store(true, Ordering::Release);
                }
            }
            conn.txs.clear();
        }
    }

    /// Removes a connection.
    pub(crate) fn remove_conn(&mut self, cid: ConnId) {
        self.reset_conn(cid);
        self.conns.remove(&cid);
    }

    /// Registers a watch (C `do_watch` after argument parsing). Returns
    /// the path of the initial event.
    pub(crate) fn add_watch(
        &mut self,
        cid: ConnId,
        raw: &[u8],
        token: &[u8],
        depth: Option<u32>,
        callback: Option<Arc<ClientWatch>>,
    ) -> std::result::Result<(u64, String), XenErrno> {
        let relative = !raw.starts_with(b"/") && !raw.starts_with(b"@");
        let node = self.canon(cid, raw, true)?;
        let quota = self.config.quota.watches as usize;
        let id = self.next_watch;
        let conn = self.conns.get_mut(&cid).ok_or(XenErrno::EIO)?;
        if conn
            .watches
            .iter()
            .any(|w| w.node == node && w.token == token)
        {
            return Err(XenErrno::EEXIST);
        }
        if !conn.caller.privileged && conn.watches.len() + 1 > quota {
            return Err(XenErrno::ENOSPC);
        }
        self.next_watch += 1;
        let prefix_len = if relative { conn.home.len() + 1 } else { 0 };
        let w = Watch {
            id,
            node,
            token: token.to_vec(),
            prefix_len,
            depth,
            callback,
        };
        let initial = w.given_path().to_owned();
        conn.watches.push(w);
        Ok((id, initial))
    }

    /// Introduces a domain: records it and writes its tree as libxl does,
    /// then fires `@introduceDomain`.
    pub(crate) fn introduce(&mut self, info: &DomainInfo, fx: &mut Effects) -> Result<()> {
        info.validate()?;
        if self.domains.contains_key(&info.domid) {
            return Err(Error::DomainExists(info.domid));
        }
        self.db.known.insert(u32::from(info.domid));
        let who = Caller {
            domid: 0,
            privileged: true,
        };
        let quota = self.config.quota;
        let mut op = Op::new(&mut self.db, None, &who, &quota);
        let r = build_domain_tree(&mut op, info);
        let fired = std::mem::take(&mut op.fired);
        if let Err(e) = r {
            self.db.known.remove(&u32::from(info.domid));
            return Err(Error::Tree(info.domid, e));
        }
        self.deliver(fired, fx);
        self.domains.insert(
            info.domid,
            Domain {
                info: info.clone(),
                conn: None,
            },
        );
        self.fire_special(INTRODUCE_DOMAIN, fx);
        Ok(())
    }

    /// Releases a domain: drops its connection, removes its tree and every
    /// node it owns (C xenstored's orphan removal), forgets its
    /// permissions, fires `@releaseDomain`.
    pub(crate) fn release(&mut self, domid: DomId, fx: &mut Effects) -> Result<()> {
        let dom = self
            .domains
            .remove(&domid)
            .ok_or(Error::UnknownDomain(domid))?;
        if let Some(cid) = dom.conn {
            if let Some(ConnKind::Guest(shared)) = self.conns.get(&cid).map(|c| &c.kind) {
                shared.release();
            }
            self.remove_conn(cid);
        }
        let who = Caller {
            domid: 0,
            privileged: true,
        };
        let quota = self.config.quota;
        let id = u32::from(domid);
        let mut op = Op::new(&mut self.db, None, &who, &quota);
        let _ = op.rm(&domain_path(id));
        let _ = op.rm(&dom.info.vm_path());
        let mut orphans: Vec<String> = op
            .db
            .nodes
            .iter()
            .filter(|(p, n)| owner(&n.perms) == id && !p.starts_with('@'))
            .map(|(p, _)| p.clone())
            .collect();
        orphans.sort();
        for p in orphans {
            if op.db.nodes.contains_key(&p) {
                let _ = op.rm_node(&p);
            }
        }
        let fired = std::mem::take(&mut op.fired);
        self.deliver(fired, fx);
        for node in self.db.nodes.values_mut() {
            for p in node.perms.iter_mut().skip(1) {
                if p.domid == id {
                    p.ignored = true;
                }
            }
        }
        // A special node owned by the domain goes back to domain 0.
        for name in [INTRODUCE_DOMAIN, RELEASE_DOMAIN] {
            if let Some(n) = self.db.nodes.get_mut(name)
                && owner(&n.perms) == id
                && let Some(o) = n.perms.first_mut()
            {
                o.domid = 0;
            }
        }
        self.db.recount();
        self.db.known.remove(&id);
        self.fire_special(RELEASE_DOMAIN, fx);
        Ok(())
    }

    /// Parses wire permissions for a caller: marks entries for domains
    /// that do not exist as ignored (C `domain_alloc_permrefs`); an
    /// ignored owner is `ENOENT`.
    pub(crate) fn resolve_perms(
        &self,
        mut perms: Vec<Perm>,
    ) -> std::result::Result<Vec<Perm>, XenErrno> {
        for p in &mut perms {
            p.ignored = !self.db.known.contains(&p.domid);
        }
        match perms.first() {
            Some(p) if !p.ignored => Ok(perms),
            _ => Err(XenErrno::ENOENT),
        }
    }
}

/// Adds `s` to `v` unless already there.
pub(crate) fn push_unique(v: &mut Vec<Arc<GuestShared>>, s: &Arc<GuestShared>) {
    if !v.iter().any(|x| Arc::ptr_eq(x, s)) {
        v.push(s.clone());
    }
}

/// Client callbacks waiting to run.
#[derive(Default)]
struct Delivery {
    queue: VecDeque<(Arc<ClientWatch>, String)>,
    active: bool,
}

/// Clears `Delivery::active` even if a callback panics.
struct ActiveGuard<'a>(&'a Mutex<Delivery>);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        lock(self.0).active = false;
    }
}

/// A XenStore: the database with its connections, shared by the guest
/// rings and the VMM's back ends (`Send + Sync`, used as `Arc<Store>`).
pub struct Store {
    config: Config,
    pub(crate) inner: Mutex<Inner>,
    delivery: Mutex<Delivery>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A store holding C xenstored's initial nodes (`/`, `/tool/xenstored`,
    /// the special watch nodes), `/local/domain/0` (`name` = `Domain-0`,
    /// `domid` = `0`) and `/vm`.
    pub fn new(config: Config) -> Result<Arc<Store>> {
        config.validate()?;
        Ok(Arc::new(Store::from_inner(Inner::new(config))))
    }

    pub(crate) fn from_inner(inner: Inner) -> Store {
        Store {
            config: inner.config,
            inner: Mutex::new(inner),
            delivery: Mutex::new(Delivery::default()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> Config {
        self.config
    }

    /// Runs `f` on the locked store, then the effects with it unlocked.
    pub(crate) fn run<R>(&self, f: impl FnOnce(&mut Inner, &mut Effects) -> R) -> R {
        let mut fx = Effects::default();
        let r = {
            let mut inner = lock(&self.inner);
            let r = f(&mut inner, &mut fx);
            self.queue_callbacks(&mut fx);
            r
        };
        self.finish(fx);
        r
    }

    /// Queues the client callbacks of `fx` (with `inner` still locked, so
    /// they stay in the order the changes happened).
    pub(crate) fn queue_callbacks(&self, fx: &mut Effects) {
        if fx.callbacks.is_empty() {
            return;
        }
        let mut d = lock(&self.delivery);
        for cb in fx.callbacks.drain(..) {
            if d.queue.len() >= MAX_DELIVERY {
                xen_abi::warn_limited!(
                    "xenstore: client watch queue full, event for {} dropped",
                    cb.1
                );
                continue;
            }
            d.queue.push_back(cb);
        }
    }

    /// Flushes the touched guest rings and runs the queued callbacks;
    /// called with no lock held.
    pub(crate) fn finish(&self, fx: Effects) {
        for shared in fx.flush {
            shared.flush();
        }
        self.deliver();
    }

    /// Runs queued client callbacks, unless another call is already doing
    /// so (callbacks never nest: one that changes the store has its own
    /// events run by the loop below, after it returns).
    fn deliver(&self) {
        {
            let mut d = lock(&self.delivery);
            if d.active || d.queue.is_empty() {
                return;
            }
            d.active = true;
        }
        let _guard = ActiveGuard(&self.delivery);
        loop {
            let Some((cb, path)) = lock(&self.delivery).queue.pop_front() else {
                break;
            };
            if !cb.removed.load(Ordering::Acquire) {
                (cb.callback)(&path);
            }
        }
    }

    /// Introduces domain `info.domid` as a toolstack does: writes
    /// `/local/domain/<domid>` and `/vm/<uuid>` (see [`DomainInfo`]), then
    /// fires `@introduceDomain`. Permissions naming the domain become
    /// valid from here on.
    pub fn introduce_domain(&self, info: &DomainInfo) -> Result<()> {
        self.run(|inner, fx| inner.introduce(info, fx))
    }

    /// Releases a domain: its ring is no longer serviced and its watches
    /// and transactions are dropped, `/local/domain/<domid>`,
    /// `/vm/<uuid>` and every other node it owns are removed, permission
    /// entries naming it stop matching, and `@releaseDomain` fires.
    pub fn release_domain(&self, domid: DomId) -> Result<()> {
        self.run(|inner, fx| inner.release(domid, fx))
    }

    /// True if `domid` is introduced (and not released).
    pub fn is_introduced(&self, domid: DomId) -> bool {
        lock(&self.inner).domains.contains_key(&domid)
    }
}
