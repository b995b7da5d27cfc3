// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The in-process client for back ends: a privileged (domain 0)
//! connection, like a toolstack's socket connection to C xenstored.
//!
//! It bypasses permission checks and quotas. Relative paths are relative
//! to `/local/domain/0`. Errors are the errno a wire client would get
//! (`ENOENT`, `EINVAL`, `EAGAIN` on a conflicting commit, ...).
//!
//! Watch callbacks receive the path that fired (as registered: relative
//! if the watch path was). They run after the change that fired them,
//! on the thread that made it, with the store unlocked; a callback that
//! changes the store does not run nested callbacks, they run after it
//! returns. Like Xen, a watch fires once when it is registered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use xen_abi::errno::XenErrno;
use xen_abi::xen::DomId;

use crate::op::Op;
use crate::perms::Perm;
use crate::store::{ClientWatch, Conn, ConnId, ConnKind, Store, lock};

/// Results of client calls.
pub type XsResult<T> = std::result::Result<T, XenErrno>;

/// Most attempts of [`Client::transact`].
pub const TRANSACT_ATTEMPTS: u32 = 64;

struct ClientShared {
    store: Arc<Store>,
    conn: ConnId,
}

impl Drop for ClientShared {
    fn drop(&mut self) {
        lock(&self.store.inner).remove_conn(self.conn);
    }
}

/// A privileged connection to the store for VMM back ends. Clones share
/// the connection (its watches and transactions); it closes when the last
/// clone and the last [`WatchHandle`] are gone.
#[derive(Clone)]
pub struct Client {
    shared: Arc<ClientShared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("conn", &self.shared.conn)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A new client connection (domain 0).
    pub fn client(self: &Arc<Self>) -> Client {
        let conn = lock(&self.inner).add_conn(Conn::new(0, ConnKind::Client));
        Client {
            shared: Arc::new(ClientShared {
                store: self.clone(),
                conn,
            }),
        }
    }
}

impl Client {
    fn op<R>(
        &self,
        tx: Option<u32>,
        path: &str,
        special: bool,
        f: impl FnOnce(&mut Op, &str) -> XsResult<R>,
    ) -> XsResult<R> {
        let cid = self.shared.conn;
        self.shared.store.run(|inner, fx| {
            let name = inner.canon(cid, path.as_bytes(), special)?;
            inner.with_op(cid, tx, fx, |op| f(op, &name))
        })
    }

    /// The store this client is connected to.
    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }

    /// `/local/domain/<domid>`.
    pub fn domain_path(domid: DomId) -> String {
        crate::path::domain_path(u32::from(domid))
    }

    /// Reads a node's value.
    pub fn read(&self, path: &str) -> XsResult<Vec<u8>> {
        self.op(None, path, false, |op, n| op.read(n))
    }

    /// Reads a node's value as text (invalid UTF-8 replaced).
    pub fn read_string(&self, path: &str) -> XsResult<String> {
        self.read(path)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// True if the node exists.
    pub fn exists(&self, path: &str) -> bool {
        self.read(path).is_ok()
    }

    /// Writes a node's value, creating it and its missing parents (new
    /// nodes inherit their parent's permissions); fires watches.
    pub fn write(&self, path: &str, value: impl AsRef<[u8]>) -> XsResult<()> {
        self.op(None, path, false, |op, n| op.write(n, value.as_ref()))
    }

    /// Creates a node (and parents) if missing.
    pub fn mkdir(&self, path: &str) -> XsResult<()> {
        self.op(None, path, false, |op, n| op.mkdir(n))
    }

    /// Removes a node and its subtree; a missing node is fine if its
    /// parent exists.
    pub fn rm(&self, path: &str) -> XsResult<()> {
        self.op(None, path, false, |op, n| op.rm(n))
    }

    /// The names of a node's children, in creation order.
    pub fn directory(&self, path: &str) -> XsResult<Vec<String>> {
        self.op(None, path, false, |op, n| Ok(op.get(n)?.children))
    }

    /// A node's permissions (entry 0: owner and default).
    pub fn get_perms(&self, path: &str) -> XsResult<Vec<Perm>> {
        self.op(None, path, true, |op, n| op.get_perms(n))
    }

    /// Sets a node's permissions. Entries naming domains that are not
    /// introduced are kept but ignored; an owner that is not introduced
    /// is `ENOENT`, an empty list `EINVAL`.
    pub fn set_perms(&self, path: &str, perms: &[Perm]) -> XsResult<()> {
        self.set_perms_in(None, path, perms)
    }

    fn set_perms_in(&self, tx: Option<u32>, path: &str, perms: &[Perm]) -> XsResult<()> {
        if perms.is_empty() {
            return Err(XenErrno::EINVAL);
        }
        let cid = self.shared.conn;
        self.shared.store.run(|inner, fx| {
            let perms = inner.resolve_perms(perms.to_vec())?;
            let name = inner.canon(cid, path.as_bytes(), true)?;
            inner.with_op(cid, tx, fx, |op| op.set_perms(&name, perms))
        })
    }

    /// Watches `path` and everything below it; `callback` gets the path
    /// that fired, once at once and then after every change. The watch
    /// lasts until the handle is dropped (or [`WatchHandle::unwatch`]).
    pub fn watch(
        &self,
        path: &str,
        callback: impl Fn(&str) + Send + Sync + 'static,
    ) -> XsResult<WatchHandle> {
        self.watch_depth(path, None, callback)
    }

    /// As [`Client::watch`], matching at most `depth` levels below `path`
    /// (`Some(0)`: the node only).
    pub fn watch_depth(
        &self,
        path: &str,
        depth: Option<u32>,
        callback: impl Fn(&str) + Send + Sync + 'static,
    ) -> XsResult<WatchHandle> {
        let cb = Arc::new(ClientWatch {
            removed: AtomicBool::new(false),
            callback: Box::new(callback),
        });
        let cid = self.shared.conn;
        let id = self.shared.store.run(|inner, fx| {
            let token = format!("client-{}", inner.next_watch).into_bytes();
            let (id, initial) =
                inner.add_watch(cid, path.as_bytes(), &token, depth, Some(cb.clone()))?;
            fx.callbacks.push((cb.clone(), initial));
            Ok::<_, XenErrno>(id)
        })?;
        Ok(WatchHandle {
            client: self.shared.clone(),
            id,
            cb,
        })
    }

    /// Starts a transaction. Its reads see nodes as they were when first
    /// read; its writes are invisible outside until [`Transaction::commit`].
    pub fn transaction(&self) -> XsResult<Transaction<'_>> {
        let cid = self.shared.conn;
        let id = self.shared.store.run(|inner, _| inner.tx_start(cid))?;
        Ok(Transaction {
            client: self,
            id,
            done: false,
        })
    }

    /// Runs `f` in a transaction and commits it, retrying from scratch
    /// when the commit conflicts (`EAGAIN`), at most
    /// [`TRANSACT_ATTEMPTS`] times. An error from `f` aborts.
    pub fn transact<R>(&self, mut f: impl FnMut(&Transaction<'_>) -> XsResult<R>) -> XsResult<R> {
        for _ in 0..TRANSACT_ATTEMPTS {
            let tx = self.transaction()?;
            let r = f(&tx)?;
            match tx.commit() {
                Ok(()) => return Ok(r),
                Err(XenErrno::EAGAIN) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(XenErrno::EAGAIN)
    }
}

/// A client transaction; dropped without [`Transaction::commit`] it is
/// aborted.
pub struct Transaction<'a> {
    client: &'a Client,
    id: u32,
    done: bool,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction").field("id", &self.id).finish()
    }
}

impl Transaction<'_> {
    /// The transaction id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Reads a node in the transaction.
    pub fn read(&self, path: &str) -> XsResult<Vec<u8>> {
        self.client
            .op(Some(self.id), path, false, |op, n| op.read(n))
    }

    /// Reads a node as text in the transaction.
    pub fn read_string(&self, path: &str) -> XsResult<String> {
        self.read(path)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// Writes a node in the transaction.
    pub fn write(&self, path: &str, value: impl AsRef<[u8]>) -> XsResult<()> {
        self.client.op(Some(self.id), path, false, |op, n| {
            op.write(n, value.as_ref())
        })
    }

    /// Creates a node in the transaction.
    pub fn mkdir(&self, path: &str) -> XsResult<()> {
        self.client
            .op(Some(self.id), path, false, |op, n| op.mkdir(n))
    }

    /// Removes a subtree in the transaction.
    pub fn rm(&self, path: &str) -> XsResult<()> {
        self.client.op(Some(self.id), path, false, |op, n| op.rm(n))
    }

    /// Lists children in the transaction.
    pub fn directory(&self, path: &str) -> XsResult<Vec<String>> {
        self.client
            .op(Some(self.id), path, false, |op, n| Ok(op.get(n)?.children))
    }

    /// Reads permissions in the transaction.
    pub fn get_perms(&self, path: &str) -> XsResult<Vec<Perm>> {
        self.client
            .op(Some(self.id), path, true, |op, n| op.get_perms(n))
    }

    /// Sets permissions in the transaction.
    pub fn set_perms(&self, path: &str, perms: &[Perm]) -> XsResult<()> {
        self.client.set_perms_in(Some(self.id), path, perms)
    }

    /// Commits: `EAGAIN` if a node the transaction read changed meanwhile
    /// (retry the whole transaction), nothing changed then. Watches fire
    /// on success.
    pub fn commit(mut self) -> XsResult<()> {
        self.end(true)
    }

    /// Aborts.
    pub fn abort(mut self) {
        let _ = self.end(false);
    }

    fn end(&mut self, commit: bool) -> XsResult<()> {
        self.done = true;
        let cid = self.client.shared.conn;
        let id = self.id;
        self.client
            .shared
            .store
            .run(|inner, fx| inner.tx_end(cid, id, commit, fx))
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.end(false);
        }
    }
}

/// A registered client watch; dropping it unwatches.
#[must_use = "dropping the handle removes the watch"]
pub struct WatchHandle {
    client: Arc<ClientShared>,
    id: u64,
    cb: Arc<ClientWatch>,
}

impl std::fmt::Debug for WatchHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHandle").field("id", &self.id).finish()
    }
}

impl WatchHandle {
    /// Removes the watch; events not yet delivered are dropped.
    pub fn unwatch(self) {}
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.cb.removed.store(true, Ordering::Release);
        let mut inner = lock(&self.client.store.inner);
        if let Some(conn) = inner.conns.get_mut(&self.client.conn) {
            conn.watches.retain(|w| w.id != self.id);
        }
    }
}
