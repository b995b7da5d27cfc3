// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The node database and the operations on it, live or inside a
//! transaction, as C xenstored's `core.c` and `transaction.c` do them.
//!
//! Every node has a generation: a global counter bumped by every write or
//! delete (live or transactional). A transaction records each node it
//! looks up, with the generation it saw (or none for a node that did not
//! exist) and its own copy of the node; later lookups in the transaction
//! see that copy, writes change it. At commit every recorded node must
//! still have the generation seen, or the commit is `EAGAIN`: only nodes
//! the transaction read (which includes every node it wrote, the parents
//! whose child lists it changed and the ancestors it walked for error
//! codes) can conflict, as in the worked examples of `transaction.c`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use xen_abi::errno::XenErrno;

use crate::Quota;
use crate::path::{basename, child_path, parent};
use crate::perms::{PERM_OWNER, PERM_READ, PERM_WRITE, Perm, owner, perm_for};

/// One node (C `struct node`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    /// Generation of the last write.
    pub(crate) generation: u64,
    /// Permissions; entry 0 is the owner.
    pub(crate) perms: Vec<Perm>,
    /// The value.
    pub(crate) data: Vec<u8>,
    /// Child names, in creation order.
    pub(crate) children: Vec<String>,
}

impl Node {
    /// A node without value or children.
    pub(crate) fn new(perms: Vec<Perm>) -> Node {
        Node {
            generation: 0,
            perms,
            data: Vec::new(),
            children: Vec::new(),
        }
    }

    /// The size the `node-size` quota counts (C `calc_node_acc_size`): a
    /// 16-byte header, 8 bytes per permission, the value, the child names
    /// with their NULs.
    pub(crate) fn size(&self) -> usize {
        16 + 8 * self.perms.len()
            + self.data.len()
            + self.children.iter().map(|c| c.len() + 1).sum::<usize>()
    }

    /// The child names as the wire lists them: each followed by a NUL.
    pub(crate) fn children_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for c in &self.children {
            v.extend_from_slice(c.as_bytes());
            v.push(0);
        }
        v
    }
}

/// The committed database.
#[derive(Debug, Default)]
pub(crate) struct Db {
    /// Every node by canonical path, special `@` nodes included.
    pub(crate) nodes: HashMap<String, Node>,
    /// The global generation counter.
    pub(crate) generation: u64,
    /// Nodes owned per domain.
    pub(crate) counts: HashMap<u32, u32>,
    /// Domains that exist: 0 and the introduced ones.
    pub(crate) known: BTreeSet<u32>,
}

impl Db {
    /// Next generation (incremented before use, as C does).
    pub(crate) fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Adjusts the node count of `domid`.
    pub(crate) fn count_add(&mut self, domid: u32, delta: i64) {
        let c = self.counts.entry(domid).or_default();
        *c = (i64::from(*c) + delta).clamp(0, i64::from(u32::MAX)) as u32;
        if *c == 0 {
            self.counts.remove(&domid);
        }
    }

    /// Recomputes the owner counts from the nodes.
    pub(crate) fn recount(&mut self) {
        self.counts.clear();
        let owners: Vec<u32> = self.nodes.values().map(|n| owner(&n.perms)).collect();
        for o in owners {
            self.count_add(o, 1);
        }
    }
}

/// How a watch matches a fired path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Match {
    /// Only watches on exactly this path (descendants of a removed node).
    Exact,
    /// Watches on this path or any ancestor (within their depth).
    Subtree,
}

/// A node a transaction touched (C `struct accessed_node`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Accessed {
    /// Canonical path.
    pub(crate) path: String,
    /// Live generation at first access; `None`: the node did not exist.
    pub(crate) seen: Option<u64>,
    /// The transaction's version of the node; `None`: absent or deleted.
    pub(crate) node: Option<Node>,
    /// Written or deleted in the transaction.
    pub(crate) modified: bool,
    /// Live permissions at first access, for watch filtering at commit.
    pub(crate) orig_perms: Option<Vec<Perm>>,
    /// Watch event to fire at commit.
    pub(crate) fire: Option<Match>,
}

/// An open transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tx {
    /// Its id on its connection (never 0).
    pub(crate) id: u32,
    /// Global generation when it started.
    pub(crate) generation: u64,
    /// Touched nodes, in first-access order.
    pub(crate) accessed: Vec<Accessed>,
    /// Index into `accessed` by path.
    pub(crate) index: HashMap<String, usize>,
    /// Something failed that cannot be undone: commit is refused.
    pub(crate) failed: bool,
    /// A node was created (the node quota is checked at commit).
    pub(crate) node_created: bool,
    /// Node-count changes per owner, applied at commit.
    pub(crate) delta: BTreeMap<u32, i64>,
}

impl Tx {
    /// Rebuilds `index` from `accessed`.
    pub(crate) fn reindex(&mut self) {
        self.index = self
            .accessed
            .iter()
            .enumerate()
            .map(|(i, a)| (a.path.clone(), i))
            .collect();
    }

    /// Queues a watch event for commit; a subtree event replaces an exact
    /// one (C `queue_watches`).
    fn queue_fire(&mut self, path: &str, m: Match) {
        match self.index.get(path) {
            Some(&i) => {
                let a = &mut self.accessed[i];
                if a.fire.is_none() || m == Match::Subtree {
                    a.fire = Some(m);
                }
            }
            None => self.failed = true,
        }
    }
}

/// Who performs an operation.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    /// The caller's domain.
    pub(crate) domid: u32,
    /// Domain 0 (the VMM side): no permission checks, no quotas.
    pub(crate) privileged: bool,
}

/// A watch event to deliver: the path, how it matches, and the permission
/// sets of which at least one must let a watcher read (C
/// `watch_permitted`: old permissions, the node, its parent).
#[derive(Clone, Debug)]
pub(crate) struct Fired {
    pub(crate) path: String,
    pub(crate) matching: Match,
    pub(crate) perm_sets: Vec<Vec<Perm>>,
}

impl Fired {
    /// True if `domid` may see this event.
    pub(crate) fn permitted(&self, privileged: bool, domid: u32) -> bool {
        privileged
            || self
                .perm_sets
                .iter()
                .any(|s| perm_for(false, domid, s) & PERM_READ != 0)
    }
}

/// The permission sets for an event on `path` in the committed database:
/// `old`, then the node's and its parent's if the node exists.
pub(crate) fn perm_sets(db: &Db, path: &str, old: Option<Vec<Perm>>) -> Vec<Vec<Perm>> {
    let mut sets: Vec<Vec<Perm>> = old.into_iter().collect();
    if let Some(n) = db.nodes.get(path) {
        sets.push(n.perms.clone());
        if let Some(p) = db.nodes.get(parent(path)) {
            sets.push(p.perms.clone());
        }
    }
    sets
}

/// One operation on the database, live or in a transaction.
pub(crate) struct Op<'a> {
    pub(crate) db: &'a mut Db,
    pub(crate) tx: Option<&'a mut Tx>,
    pub(crate) who: &'a Caller,
    pub(crate) quota: &'a Quota,
    /// Events of a live operation, delivered after it.
    pub(crate) fired: Vec<Fired>,
}

impl<'a> Op<'a> {
    /// An operation by `who`, in `tx` if given.
    pub(crate) fn new(
        db: &'a mut Db,
        tx: Option<&'a mut Tx>,
        who: &'a Caller,
        quota: &'a Quota,
    ) -> Self {
        Op {
            db,
            tx,
            who,
            quota,
            fired: Vec::new(),
        }
    }

    /// Looks a node up; in a transaction records the access (C
    /// `read_node` + `access_node`), which may exceed the
    /// transaction-nodes quota (`ENOSPC`, the transaction fails).
    pub(crate) fn lookup(&mut self, path: &str) -> Result<Option<&Node>, XenErrno> {
        match self.tx.as_deref_mut() {
            None => Ok(self.db.nodes.get(path)),
            Some(tx) => {
                let i = match tx.index.get(path) {
                    Some(&i) => i,
                    None => {
                        if !self.who.privileged
                            && tx.accessed.len() + 1 > self.quota.transaction_nodes as usize
                        {
                            tx.failed = true;
                            return Err(XenErrno::ENOSPC);
                        }
                        let live = self.db.nodes.get(path);
                        tx.accessed.push(Accessed {
                            path: path.to_owned(),
                            seen: live.map(|n| n.generation),
                            node: live.cloned(),
                            modified: false,
                            orig_perms: live.map(|n| n.perms.clone()),
                            fire: None,
                        });
                        tx.index.insert(path.to_owned(), tx.accessed.len() - 1);
                        tx.accessed.len() - 1
                    }
                };
                Ok(tx.accessed[i].node.as_ref())
            }
        }
    }

    /// A copy of a node that must exist (looked up before).
    fn node(&mut self, path: &str) -> Result<Node, XenErrno> {
        self.lookup(path)?.cloned().ok_or(XenErrno::EIO)
    }

    /// Nodes owned by `domid`, with this transaction's changes.
    fn count(&self, domid: u32) -> i64 {
        let live = i64::from(self.db.counts.get(&domid).copied().unwrap_or(0));
        live + self
            .tx
            .as_deref()
            .and_then(|t| t.delta.get(&domid).copied())
            .unwrap_or(0)
    }

    fn count_add(&mut self, domid: u32, delta: i64) {
        match self.tx.as_deref_mut() {
            Some(tx) => *tx.delta.entry(domid).or_default() += delta,
            None => self.db.count_add(domid, delta),
        }
    }

    /// Writes a node (new generation).
    fn store(&mut self, path: &str, mut node: Node) {
        node.generation = self.db.next_generation();
        match self.tx.as_deref_mut() {
            Some(tx) => {
                if let Some(&i) = tx.index.get(path) {
                    tx.accessed[i].node = Some(node);
                    tx.accessed[i].modified = true;
                } else {
                    tx.failed = true;
                }
            }
            None => {
                self.db.nodes.insert(path.to_owned(), node);
            }
        }
    }

    /// Deletes a node (bumps the generation, as C `access_node`).
    fn delete(&mut self, path: &str) {
        self.db.next_generation();
        match self.tx.as_deref_mut() {
            Some(tx) => {
                if let Some(&i) = tx.index.get(path) {
                    tx.accessed[i].node = None;
                    tx.accessed[i].modified = true;
                } else {
                    tx.failed = true;
                }
            }
            None => {
                self.db.nodes.remove(path);
            }
        }
    }

    /// Fires watches for `path`: queued in a transaction, collected for
    /// delivery otherwise (with the permissions as they are now).
    fn fire(&mut self, path: &str, m: Match, old: Option<Vec<Perm>>) {
        match self.tx.as_deref_mut() {
            Some(tx) => tx.queue_fire(path, m),
            None => {
                let perm_sets = perm_sets(self.db, path, old);
                self.fired.push(Fired {
                    path: path.to_owned(),
                    matching: m,
                    perm_sets,
                });
            }
        }
    }

    /// The node-size quota of an unprivileged write; in a transaction a
    /// failed write fails the transaction (C `write_node`).
    fn check_size(&mut self, node: &Node) -> Result<(), XenErrno> {
        if !self.who.privileged && node.size() > self.quota.node_size as usize {
            if let Some(tx) = self.tx.as_deref_mut() {
                tx.failed = true;
            }
            return Err(XenErrno::ENOSPC);
        }
        Ok(())
    }

    /// Checks that `name` exists and the caller has `perm` on it. Errors
    /// are hidden as C `get_node_chk_perm` hides them: a missing node is
    /// `ENOENT` only if the first existing ancestor grants some of `perm`,
    /// `EACCES` otherwise.
    pub(crate) fn check(&mut self, name: &str, perm: u8) -> Result<(), XenErrno> {
        let (privileged, domid) = (self.who.privileged, self.who.domid);
        let err = match self.lookup(name)? {
            Some(n) if perm_for(privileged, domid, &n.perms) & perm == perm => return Ok(()),
            Some(_) => XenErrno::EACCES,
            None => XenErrno::ENOENT,
        };
        let mut p = name;
        loop {
            p = parent(p);
            if let Some(n) = self.lookup(p)? {
                let allowed = perm_for(privileged, domid, &n.perms) & perm != 0;
                return Err(if allowed { err } else { XenErrno::EACCES });
            }
            if p == "/" {
                return Err(XenErrno::EACCES);
            }
        }
    }

    /// `XS_READ`.
    pub(crate) fn read(&mut self, name: &str) -> Result<Vec<u8>, XenErrno> {
        self.check(name, PERM_READ)?;
        Ok(self.node(name)?.data)
    }

    /// `XS_DIRECTORY` (and the node behind `XS_DIRECTORY_PART`).
    pub(crate) fn get(&mut self, name: &str) -> Result<Node, XenErrno> {
        self.check(name, PERM_READ)?;
        self.node(name)
    }

    /// `XS_WRITE`: creates missing parents; fires on `name`.
    pub(crate) fn write(&mut self, name: &str, data: &[u8]) -> Result<(), XenErrno> {
        match self.check(name, PERM_WRITE) {
            Ok(()) => {
                let mut node = self.node(name)?;
                node.data = data.to_vec();
                self.check_size(&node)?;
                self.store(name, node);
            }
            Err(XenErrno::ENOENT) => self.create(name, data)?,
            Err(e) => return Err(e),
        }
        self.fire(name, Match::Subtree, None);
        Ok(())
    }

    /// `XS_MKDIR`: nothing if the node exists.
    pub(crate) fn mkdir(&mut self, name: &str) -> Result<(), XenErrno> {
        match self.check(name, PERM_WRITE) {
            Ok(()) => Ok(()),
            Err(XenErrno::ENOENT) => {
                self.create(name, &[])?;
                self.fire(name, Match::Subtree, None);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Creates `name` and its missing ancestors (C `create_node`): new
    /// nodes inherit the permissions of their parent, and an unprivileged
    /// creator owns them.
    fn create(&mut self, name: &str, data: &[u8]) -> Result<(), XenErrno> {
        let mut missing: Vec<String> = vec![name.to_owned()];
        let mut p = parent(name).to_owned();
        let mut parent_node = loop {
            if let Some(n) = self.lookup(&p)? {
                break n.clone();
            }
            if p == "/" {
                return Err(XenErrno::EIO);
            }
            missing.push(p.clone());
            p = parent(&p).to_owned();
        };
        missing.reverse();
        let mut perms = parent_node.perms.clone();
        if !self.who.privileged
            && let Some(o) = perms.first_mut()
        {
            o.domid = self.who.domid;
        }
        let new_owner = owner(&perms);
        let last = missing.len() - 1;
        let nodes: Vec<Node> = (0..missing.len())
            .map(|k| Node {
                generation: 0,
                perms: perms.clone(),
                data: if k == last { data.to_vec() } else { Vec::new() },
                children: match missing.get(k + 1) {
                    Some(c) => vec![basename(c).to_owned()],
                    None => Vec::new(),
                },
            })
            .collect();
        parent_node.children.push(basename(&missing[0]).to_owned());
        if !self.who.privileged {
            if self.count(self.who.domid) + missing.len() as i64 > i64::from(self.quota.nodes) {
                return Err(XenErrno::ENOSPC);
            }
            for n in nodes.iter().chain(std::iter::once(&parent_node)) {
                self.check_size(n)?;
            }
        }
        // Written bottom-up, as C does.
        for (path, node) in missing.iter().zip(nodes).rev() {
            self.store(path, node);
            self.count_add(new_owner, 1);
        }
        self.store(&p, parent_node);
        if let Some(tx) = self.tx.as_deref_mut() {
            tx.node_created = true;
        }
        Ok(())
    }

    /// `XS_RM`: a missing node is fine if its parent exists.
    pub(crate) fn rm(&mut self, name: &str) -> Result<(), XenErrno> {
        match self.check(name, PERM_WRITE) {
            Ok(()) => {}
            Err(XenErrno::ENOENT) => {
                return match self.lookup(parent(name))? {
                    Some(_) => Ok(()),
                    None => Err(XenErrno::ENOENT),
                };
            }
            Err(e) => return Err(e),
        }
        if name == "/" {
            return Err(XenErrno::EINVAL);
        }
        self.rm_node(name)
    }

    /// Removes `name` and its subtree (C `rm_node`): children before
    /// parents; watches on each removed descendant fire exactly, watches
    /// on `name` and above fire once for `name`.
    pub(crate) fn rm_node(&mut self, name: &str) -> Result<(), XenErrno> {
        let pname = parent(name).to_owned();
        let Some(mut pnode) = self.lookup(&pname)?.cloned() else {
            return Err(XenErrno::EINVAL);
        };
        let root = self.node(name)?;
        // Depth first, children in order, each node removed after its
        // children and then from its parent's list (C `walk_node_tree`
        // with `delnode_sub`). Entries: path, node, next child, changed.
        let mut stack: Vec<(String, Node, usize, bool)> = vec![(name.to_owned(), root, 0, false)];
        while let Some(top) = stack.last_mut() {
            if let Some(c) = top.1.children.get(top.2) {
                let child = child_path(&top.0, c);
                top.2 += 1;
                match self.lookup(&child)?.cloned() {
                    Some(n) => stack.push((child, n, 0, false)),
                    None => {
                        // A transaction's stale list names a child gone
                        // since: C stops the walk with EIO, keeping what
                        // it removed so far.
                        for (p, n, _, changed) in stack {
                            if changed {
                                self.store(&p, n);
                            }
                        }
                        return Err(XenErrno::EIO);
                    }
                }
                continue;
            }
            let Some((path, node, _, _)) = stack.pop() else {
                break;
            };
            self.count_add(owner(&node.perms), -1);
            let m = if path == name {
                Match::Subtree
            } else {
                Match::Exact
            };
            self.fire(&path, m, None);
            self.delete(&path);
            if let Some(up) = stack.last_mut() {
                let base = basename(&path);
                if let Some(i) = up.1.children.iter().position(|c| c == base) {
                    up.1.children.remove(i);
                    if i < up.2 {
                        up.2 -= 1;
                    }
                    up.3 = true;
                }
            }
        }
        let base = basename(name);
        if let Some(i) = pnode.children.iter().position(|c| c == base) {
            pnode.children.remove(i);
        }
        self.store(&pname, pnode);
        Ok(())
    }

    /// `XS_GET_PERMS`.
    pub(crate) fn get_perms(&mut self, name: &str) -> Result<Vec<Perm>, XenErrno> {
        self.check(name, PERM_READ)?;
        Ok(self.node(name)?.perms)
    }

    /// `XS_SET_PERMS` with parsed permissions: only the owner (or domain
    /// 0) may, and only domain 0 may change the owner.
    pub(crate) fn set_perms(&mut self, name: &str, perms: Vec<Perm>) -> Result<(), XenErrno> {
        self.check(name, PERM_WRITE | PERM_OWNER)?;
        let mut node = self.node(name)?;
        let old_owner = owner(&node.perms);
        if !self.who.privileged && owner(&perms) != old_owner {
            return Err(XenErrno::EPERM);
        }
        let old = std::mem::replace(&mut node.perms, perms);
        self.check_size(&node)?;
        self.count_add(old_owner, -1);
        self.count_add(owner(&node.perms), 1);
        self.store(name, node);
        self.fire(name, Match::Subtree, Some(old));
        Ok(())
    }
}

/// Commits `tx` into `db` (C `do_transaction_end` with `T`): `ENOMEM` if
/// it failed, `ENOSPC` if an unprivileged caller's created nodes exceed
/// the node quota, `EAGAIN` if a node it touched changed since. On
/// success returns the events to fire.
pub(crate) fn commit(
    db: &mut Db,
    tx: Tx,
    who: &Caller,
    quota: &Quota,
) -> Result<Vec<Fired>, XenErrno> {
    if tx.failed {
        return Err(XenErrno::ENOMEM);
    }
    if !who.privileged && tx.node_created {
        for (&domid, &delta) in &tx.delta {
            let live = i64::from(db.counts.get(&domid).copied().unwrap_or(0));
            if domid != 0 && delta > 0 && live + delta > i64::from(quota.nodes) {
                return Err(XenErrno::ENOSPC);
            }
        }
    }
    for a in &tx.accessed {
        if db.nodes.get(&a.path).map(|n| n.generation) != a.seen {
            return Err(XenErrno::EAGAIN);
        }
    }
    let mut fired_paths = Vec::new();
    for a in tx.accessed {
        if a.modified {
            let old = match a.node {
                Some(mut node) => {
                    node.generation = db.next_generation();
                    let new_owner = owner(&node.perms);
                    let old = db.nodes.insert(a.path.clone(), node);
                    db.count_add(new_owner, 1);
                    old
                }
                None => db.nodes.remove(&a.path),
            };
            if let Some(old) = old {
                db.count_add(owner(&old.perms), -1);
            }
        }
        if let Some(m) = a.fire {
            fired_paths.push((a.path, m, a.orig_perms));
        }
    }
    Ok(fired_paths
        .into_iter()
        .map(|(path, matching, old)| {
            let perm_sets = perm_sets(db, &path, old);
            Fired {
                path,
                matching,
                perm_sets,
            }
        })
        .collect())
}
