// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The guest's ring page (`struct xenstore_domain_interface`,
//! `docs/misc/xenstore-ring.txt`, `xen-abi.md` §5.2).
//!
//! Two 1024-byte byte streams with free-running `u32` indices: requests
//! from the guest (`req_cons` is ours), replies and watch events to it
//! (`rsp_prod` is ours). Indices are read once per access with a full
//! fence before the data is touched, and the index is published after
//! the data with another fence, as C xenstored's `readchn`/`writechn`.
//! Requests and replies may be split anywhere, across wrap-around and
//! across kicks: a half-read request waits in the connection.
//!
//! A producer/consumer distance over 1024 (`XENSTORE_ERROR_RINGIDX`) or a
//! request payload over 4096 bytes (`XENSTORE_ERROR_PROTO`) stops the
//! connection: the `error` field says why, watches, transactions and
//! queued data are dropped, and nothing more is read or written until the
//! guest asks for a reconnect. A reconnect (`connection` = 1) resets the
//! connection: partial packets, queues, watches and transactions are
//! dropped, the indices restart at 0, `connection` goes back to 0 and the
//! guest is notified.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, Mutex, Weak};

use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemory, Permissions};
use xen_abi::io::xs_wire::{
    XENSTORE_PAYLOAD_MAX, XENSTORE_RING_SIZE, XenstoreConnection, XenstoreDomainInterface as Intf,
    XenstoreRingError, XenstoreServerFeatures, mask_xenstore_idx,
};
use xen_abi::xen::DomId;

use crate::store::{ConnId, Effects, Store, lock};
use crate::wire::{HEADER_LEN, Header, watch_event};
use crate::{Error, Quota, Result};

/// Size of the ring page.
const PAGE_SIZE: u64 = 4096;

/// A message waiting for ring space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OutMsg {
    /// Header and payload.
    pub(crate) bytes: Vec<u8>,
    /// A watch event (else a reply).
    pub(crate) event: bool,
}

/// Replies and events waiting for ring space, in order.
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    pub(crate) msgs: VecDeque<OutMsg>,
    /// Bytes of the first message already in the ring.
    pub(crate) written: usize,
    pub(crate) replies: usize,
    pub(crate) events: usize,
}

impl OutQueue {
    /// Appends a message.
    pub(crate) fn push(&mut self, msg: OutMsg) {
        if msg.event {
            self.events += 1;
        } else {
            self.replies += 1;
        }
        self.msgs.push_back(msg);
    }

    /// Drops everything.
    pub(crate) fn clear(&mut self) {
        *self = OutQueue::default();
    }
}

/// The guest end's request side.
#[derive(Debug, Default)]
pub(crate) struct IoState {
    /// The request read so far (header, then payload).
    pub(crate) input: Vec<u8>,
    /// Ring error that stopped the connection (0: running).
    pub(crate) failed: u32,
}

/// Services the ring page of an attached guest connection.
pub(crate) trait RingPort: Send + Sync {
    /// Writes queued output and notifies the guest.
    fn flush(&self);
}

/// The part of a guest connection the store reaches.
pub(crate) struct GuestShared {
    pub(crate) domid: DomId,
    pub(crate) conn: ConnId,
    /// Guest-physical address of the ring page.
    pub(crate) gpa: u64,
    /// Advertised features.
    pub(crate) features: XenstoreServerFeatures,
    pub(crate) io: Mutex<IoState>,
    pub(crate) queue: Mutex<OutQueue>,
    pub(crate) port: Mutex<Option<Weak<dyn RingPort>>>,
    /// The domain was released: the ring is left alone.
    pub(crate) released: AtomicBool,
}

impl GuestShared {
    pub(crate) fn new(
        domid: DomId,
        conn: ConnId,
        gpa: u64,
        features: XenstoreServerFeatures,
    ) -> Self {
        GuestShared {
            domid,
            conn,
            gpa,
            features,
            io: Mutex::new(IoState::default()),
            queue: Mutex::new(OutQueue::default()),
            port: Mutex::new(None),
            released: AtomicBool::new(false),
        }
    }

    /// Queues a watch event: too long ones are dropped (C), one identical
    /// to a queued event is dropped (C, except special paths), and beyond
    /// the `pending_events` quota new ones are dropped with a warning.
    /// Returns whether it was queued.
    pub(crate) fn push_event(
        &self,
        path: &str,
        token: &[u8],
        special: bool,
        quota: &Quota,
    ) -> bool {
        if self.released.load(Ordering::Acquire) {
            return false;
        }
        let Some(bytes) = watch_event(path, token) else {
            return false;
        };
        let mut q = lock(&self.queue);
        if !special && q.msgs.iter().any(|m| m.event && m.bytes == bytes) {
            return false;
        }
        if q.events >= quota.pending_events as usize {
            xen_abi::warn_limited!(
                "xenstore: domain {}: {} watch events pending, event for {} dropped",
                self.domid,
                q.events,
                path
            );
            return false;
        }
        q.push(OutMsg { bytes, event: true });
        true
    }

    /// Queues a reply.
    pub(crate) fn push_reply(&self, bytes: Vec<u8>) {
        lock(&self.queue).push(OutMsg {
            bytes,
            event: false,
        });
    }

    /// Replies waiting for ring space.
    pub(crate) fn outstanding(&self) -> usize {
        lock(&self.queue).replies
    }

    /// Writes queued output to the ring, if a ring is attached.
    pub(crate) fn flush(&self) {
        let port = lock(&self.port).as_ref().and_then(Weak::upgrade);
        if let Some(port) = port {
            port.flush();
        }
    }

    /// Stops servicing the ring (domain released).
    pub(crate) fn release(&self) {
        self.released.store(true, Ordering::Release);
        lock(&self.queue).clear();
    }
}

/// Guest memory access to the ring page.
struct Page<'m, M: GuestMemory + ?Sized> {
    mem: &'m M,
    gpa: u64,
}

impl<M: GuestMemory + ?Sized> Page<'_, M> {
    fn load(&self, off: usize) -> std::result::Result<u32, XenstoreRingError> {
        self.mem
            .load::<u32>(GuestAddress(self.gpa + off as u64), Ordering::Acquire)
            .map_err(|_| XenstoreRingError::Comm)
    }

    fn store(&self, off: usize, v: u32) -> std::result::Result<(), XenstoreRingError> {
        self.mem
            .store(v, GuestAddress(self.gpa + off as u64), Ordering::Release)
            .map_err(|_| XenstoreRingError::Comm)
    }

    /// Reads up to `out.len()` request bytes; returns how many.
    fn read(&self, out: &mut [u8]) -> std::result::Result<usize, XenstoreRingError> {
        let cons = self.load(Intf::REQ_CONS_OFFSET)?;
        let prod = self.load(Intf::REQ_PROD_OFFSET)?;
        fence(Ordering::SeqCst);
        let avail = prod.wrapping_sub(cons) as usize;
        if avail > XENSTORE_RING_SIZE {
            return Err(XenstoreRingError::RingIdx);
        }
        let n = out.len().min(avail);
        if n == 0 {
            return Ok(0);
        }
        let start = mask_xenstore_idx(cons);
        let first = n.min(XENSTORE_RING_SIZE - start);
        let base = self.gpa;
        self.mem
            .read_slice(&mut out[..first], GuestAddress(base + start as u64))
            .map_err(|_| XenstoreRingError::Comm)?;
        if n > first {
            self.mem
                .read_slice(&mut out[first..n], GuestAddress(base))
                .map_err(|_| XenstoreRingError::Comm)?;
        }
        fence(Ordering::SeqCst);
        self.store(Intf::REQ_CONS_OFFSET, cons.wrapping_add(n as u32))?;
        Ok(n)
    }

    /// Writes as much of `data` as fits in the reply ring; returns how
    /// much.
    fn write(&self, data: &[u8]) -> std::result::Result<usize, XenstoreRingError> {
        let cons = self.load(Intf::RSP_CONS_OFFSET)?;
        let prod = self.load(Intf::RSP_PROD_OFFSET)?;
        fence(Ordering::SeqCst);
        let used = prod.wrapping_sub(cons) as usize;
        if used > XENSTORE_RING_SIZE {
            return Err(XenstoreRingError::RingIdx);
        }
        let n = data.len().min(XENSTORE_RING_SIZE - used);
        if n == 0 {
            return Ok(0);
        }
        let start = mask_xenstore_idx(prod);
        let first = n.min(XENSTORE_RING_SIZE - start);
        let base = self.gpa + XENSTORE_RING_SIZE as u64;
        self.mem
            .write_slice(&data[..first], GuestAddress(base + start as u64))
            .map_err(|_| XenstoreRingError::Comm)?;
        if n > first {
            self.mem
                .write_slice(&data[first..n], GuestAddress(base))
                .map_err(|_| XenstoreRingError::Comm)?;
        }
        fence(Ordering::SeqCst);
        self.store(Intf::RSP_PROD_OFFSET, prod.wrapping_add(n as u32))?;
        Ok(n)
    }

    /// Empties both streams and marks the ring connected (reconnect, or a
    /// fresh connection as C `domain_conn_reset`).
    fn reset(
        &self,
        features: XenstoreServerFeatures,
    ) -> std::result::Result<(), XenstoreRingError> {
        for off in [
            Intf::REQ_CONS_OFFSET,
            Intf::REQ_PROD_OFFSET,
            Intf::RSP_CONS_OFFSET,
            Intf::RSP_PROD_OFFSET,
            Intf::ERROR_OFFSET,
        ] {
            self.store(off, 0)?;
        }
        let old = self.load(Intf::SERVER_FEATURES_OFFSET)?;
        // Features are only ever added.
        self.store(Intf::SERVER_FEATURES_OFFSET, old | features.bits())?;
        fence(Ordering::SeqCst);
        self.store(Intf::CONNECTION_OFFSET, XenstoreConnection::Connected.raw())
    }
}

/// The ring servicer of one guest.
struct GuestRing<A: GuestAddressSpace> {
    store: Arc<Store>,
    shared: Arc<GuestShared>,
    mem: A,
    notify: Arc<dyn Fn() + Send + Sync>,
}

impl<A: GuestAddressSpace> GuestRing<A> {
    /// Stops the connection after a ring error (C `ignore_connection`).
    fn fail(&self, io: &mut IoState, page: &Page<'_, A::M>, err: XenstoreRingError) {
        xen_abi::warn_limited!(
            "xenstore: domain {}: ring error {}, connection stopped",
            self.shared.domid,
            err
        );
        io.failed = err.raw();
        io.input.clear();
        if self.shared.features.contains(XenstoreServerFeatures::ERROR) {
            let _ = page.store(Intf::ERROR_OFFSET, err.raw());
        }
        lock(&self.store.inner).reset_conn(self.shared.conn);
        lock(&self.shared.queue).clear();
    }

    /// Writes queued output into the ring. Returns bytes written.
    fn write_out(&self, page: &Page<'_, A::M>) -> std::result::Result<usize, XenstoreRingError> {
        let mut guard = lock(&self.shared.queue);
        let q = &mut *guard;
        let mut total = 0;
        while let Some(front) = q.msgs.front() {
            let n = page.write(&front.bytes[q.written..])?;
            total += n;
            q.written += n;
            if q.written < front.bytes.len() {
                break;
            }
            let event = front.event;
            q.msgs.pop_front();
            q.written = 0;
            if event {
                q.events -= 1;
            } else {
                q.replies -= 1;
            }
        }
        Ok(total)
    }

    /// Reads request bytes until the current message is complete or the
    /// ring is empty. Returns the bytes consumed and the complete message.
    #[allow(clippy::type_complexity)]
    fn read_in(
        &self,
        io: &mut IoState,
        page: &Page<'_, A::M>,
    ) -> std::result::Result<(usize, Option<(Header, Vec<u8>)>), XenstoreRingError> {
        let mut consumed = 0;
        let mut buf = [0u8; XENSTORE_RING_SIZE];
        loop {
            let want = if io.input.len() < HEADER_LEN {
                HEADER_LEN - io.input.len()
            } else {
                HEADER_LEN + Header::decode(&io.input).len as usize - io.input.len()
            };
            if want == 0 {
                let msg = std::mem::take(&mut io.input);
                let hdr = Header::decode(&msg);
                return Ok((consumed, Some((hdr, msg[HEADER_LEN..].to_vec()))));
            }
            let n = page.read(&mut buf[..want.min(XENSTORE_RING_SIZE)])?;
            if n == 0 {
                return Ok((consumed, None));
            }
            consumed += n;
            io.input.extend_from_slice(&buf[..n]);
            if io.input.len() == HEADER_LEN
                && Header::decode(&io.input).len as usize > XENSTORE_PAYLOAD_MAX
            {
                return Err(XenstoreRingError::Proto);
            }
        }
    }

    /// Handles a reconnect request (`connection` = 1).
    fn reconnect(
        &self,
        io: &mut IoState,
        page: &Page<'_, A::M>,
    ) -> std::result::Result<(), XenstoreRingError> {
        io.input.clear();
        io.failed = 0;
        lock(&self.store.inner).reset_conn(self.shared.conn);
        lock(&self.shared.queue).clear();
        page.reset(self.shared.features)
    }

    /// Services the ring: see [`GuestConnection::kick`].
    fn kick(&self) {
        if self.shared.released.load(Ordering::Acquire) {
            return;
        }
        let mut fx = Effects::default();
        let mut notify = false;
        {
            let mut io = lock(&self.shared.io);
            let guard = self.mem.memory();
            let page = Page {
                mem: &*guard,
                gpa: self.shared.gpa,
            };
            if self
                .shared
                .features
                .contains(XenstoreServerFeatures::RECONNECTION)
                && page.load(Intf::CONNECTION_OFFSET) == Ok(XenstoreConnection::Reconnect.raw())
            {
                match self.reconnect(&mut io, &page) {
                    Ok(()) => notify = true,
                    Err(e) => self.fail(&mut io, &page, e),
                }
            }
            let quota = self.store.config().quota;
            while io.failed == 0 {
                let mut progress = false;
                match self.write_out(&page) {
                    Ok(n) => {
                        progress |= n > 0;
                        notify |= n > 0;
                    }
                    Err(e) => {
                        self.fail(&mut io, &page, e);
                        break;
                    }
                }
                // C xenstored stops reading while replies are pending.
                if self.shared.outstanding() >= quota.outstanding as usize {
                    break;
                }
                match self.read_in(&mut io, &page) {
                    Ok((consumed, msg)) => {
                        progress |= consumed > 0;
                        notify |= consumed > 0;
                        if let Some((hdr, payload)) = msg {
                            self.store
                                .process_guest(&self.shared, &hdr, &payload, &mut fx);
                            progress = true;
                        }
                    }
                    Err(e) => {
                        self.fail(&mut io, &page, e);
                        break;
                    }
                }
                if !progress {
                    break;
                }
            }
        }
        if notify {
            (self.notify)();
        }
        self.store.finish(fx);
    }
}

impl<A> RingPort for GuestRing<A>
where
    A: GuestAddressSpace + Send + Sync,
{
    fn flush(&self) {
        if self.shared.released.load(Ordering::Acquire) {
            return;
        }
        let wrote = {
            let mut io = lock(&self.shared.io);
            if io.failed != 0 {
                return;
            }
            let guard = self.mem.memory();
            let page = Page {
                mem: &*guard,
                gpa: self.shared.gpa,
            };
            match self.write_out(&page) {
                Ok(n) => n > 0,
                Err(e) => {
                    self.fail(&mut io, &page, e);
                    false
                }
            }
        };
        if wrote {
            (self.notify)();
        }
    }
}

/// A guest's connection to the store through its ring page.
///
/// The domain calls [`GuestConnection::kick`] when the guest signals the
/// store's event channel. Output produced by other threads (a back end
/// writing a node the guest watches) is written to the ring by those
/// threads right after their change, with the store unlocked; what does
/// not fit waits (bounded) and goes out on the next kick. Clones share
/// the connection.
pub struct GuestConnection<A: GuestAddressSpace> {
    ring: Arc<GuestRing<A>>,
}

impl<A: GuestAddressSpace> Clone for GuestConnection<A> {
    fn clone(&self) -> Self {
        GuestConnection {
            ring: self.ring.clone(),
        }
    }
}

impl<A: GuestAddressSpace> std::fmt::Debug for GuestConnection<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestConnection")
            .field("domid", &self.ring.shared.domid)
            .field("ring_gpa", &self.ring.shared.gpa)
            .finish_non_exhaustive()
    }
}

impl<A> GuestConnection<A>
where
    A: GuestAddressSpace + Send + Sync + 'static,
{
    /// Services the ring: handles a reconnect request, writes pending
    /// output, reads and answers requests (stopping while `outstanding`
    /// replies wait for space), then notifies the guest if anything moved.
    /// Cheap when there is nothing to do; never blocks on the guest.
    pub fn kick(&self) {
        self.ring.kick();
    }

    /// Writes pending output (watch events) to the ring and notifies the
    /// guest; the store calls this itself after changes from other
    /// threads.
    pub fn flush(&self) {
        RingPort::flush(&*self.ring);
    }

    /// The guest's domain id.
    pub fn domid(&self) -> DomId {
        self.ring.shared.domid
    }

    /// Guest-physical address of the ring page.
    pub fn ring_gpa(&self) -> u64 {
        self.ring.shared.gpa
    }

    /// The ring error that stopped the connection, if any.
    pub fn error(&self) -> Option<XenstoreRingError> {
        match lock(&self.ring.shared.io).failed {
            0 => None,
            e => XenstoreRingError::try_from(e).ok(),
        }
    }
}

/// Checks that the ring page is page-aligned guest RAM.
fn check_page<A: GuestAddressSpace>(mem: &A, gpa: u64) -> Result<()> {
    let guard = mem.memory();
    if !gpa.is_multiple_of(PAGE_SIZE)
        || !GuestMemory::check_range(
            &*guard,
            GuestAddress(gpa),
            PAGE_SIZE as usize,
            Permissions::ReadWrite,
        )
    {
        return Err(Error::InvalidRing(gpa));
    }
    Ok(())
}

impl Store {
    /// Connects domain `domid`'s ring page at `ring_gpa` (the page of
    /// `HVM_PARAM_STORE_PFN`), as C xenstored's `XS_INTRODUCE`: the indices
    /// and `error` are reset, `server_features` advertised, a pending
    /// reconnect request acknowledged. `notify` signals the guest's store
    /// event channel; it is called after replies or events are written and
    /// after requests are consumed, never with the store locked.
    pub fn connect_guest<A>(
        self: &Arc<Self>,
        domid: DomId,
        mem: A,
        ring_gpa: u64,
        notify: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<GuestConnection<A>>
    where
        A: GuestAddressSpace + Send + Sync + 'static,
    {
        check_page(&mem, ring_gpa)?;
        let features = self.config().features;
        let shared = self.run(|inner, _| {
            let dom = inner
                .domains
                .get(&domid)
                .ok_or(Error::UnknownDomain(domid))?;
            if dom.conn.is_some() {
                return Err(Error::AlreadyConnected(domid));
            }
            let cid = inner.next_conn;
            let shared = Arc::new(GuestShared::new(domid, cid, ring_gpa, features));
            inner.add_conn(crate::store::Conn::new(
                u32::from(domid),
                crate::store::ConnKind::Guest(shared.clone()),
            ));
            if let Some(dom) = inner.domains.get_mut(&domid) {
                dom.conn = Some(cid);
            }
            Ok(shared)
        })?;
        {
            // Reset before the ring is attached, so that no event written
            // by another thread meanwhile is wiped.
            let guard = mem.memory();
            let page = Page {
                mem: &*guard,
                gpa: ring_gpa,
            };
            if let Err(e) = page.reset(features) {
                xen_abi::warn_limited!("xenstore: domain {domid}: ring page unusable ({e})");
                lock(&shared.io).failed = e.raw();
            }
        }
        let conn = self.attach(shared, mem, notify);
        (conn.ring.notify)();
        conn.flush();
        Ok(conn)
    }

    /// Re-attaches the ring of a domain restored by [`Store::from_state`]
    /// (the page and its indices came back with guest RAM): nothing is
    /// reset, half-read requests and queued replies carry on, and the ring
    /// is kicked once.
    pub fn resume_guest<A>(
        self: &Arc<Self>,
        domid: DomId,
        mem: A,
        notify: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<GuestConnection<A>>
    where
        A: GuestAddressSpace + Send + Sync + 'static,
    {
        let shared = {
            let inner = lock(&self.inner);
            let cid = inner
                .domains
                .get(&domid)
                .ok_or(Error::UnknownDomain(domid))?
                .conn
                .ok_or(Error::NotConnected(domid))?;
            match inner.conns.get(&cid).map(|c| &c.kind) {
                Some(crate::store::ConnKind::Guest(s)) => s.clone(),
                _ => return Err(Error::NotConnected(domid)),
            }
        };
        if lock(&shared.port)
            .as_ref()
            .is_some_and(|w| w.strong_count() > 0)
        {
            return Err(Error::AlreadyConnected(domid));
        }
        check_page(&mem, shared.gpa)?;
        let conn = self.attach(shared, mem, notify);
        conn.kick();
        Ok(conn)
    }

    fn attach<A>(
        self: &Arc<Self>,
        shared: Arc<GuestShared>,
        mem: A,
        notify: Arc<dyn Fn() + Send + Sync>,
    ) -> GuestConnection<A>
    where
        A: GuestAddressSpace + Send + Sync + 'static,
    {
        let ring = Arc::new(GuestRing {
            store: self.clone(),
            shared: shared.clone(),
            mem,
            notify,
        });
        let weak: Weak<dyn RingPort> = Arc::downgrade(&ring) as Weak<dyn RingPort>;
        *lock(&shared.port) = Some(weak);
        GuestConnection { ring }
    }

    /// Answers one complete request of a guest: the reply (and, for
    /// `XS_WATCH`, the initial event after it) goes to its queue; events
    /// for others are queued too. Runs with the guest's `io` lock held, so
    /// the effects are returned in `fx` for after it is dropped.
    pub(crate) fn process_guest(
        &self,
        shared: &Arc<GuestShared>,
        hdr: &Header,
        payload: &[u8],
        fx: &mut Effects,
    ) {
        let mut inner = lock(&self.inner);
        if !inner.conns.contains_key(&shared.conn) {
            return;
        }
        let (reply, after) = inner.handle(shared.conn, hdr, payload, fx);
        shared.push_reply(reply);
        if let Some((path, token)) = after
            && shared.push_event(&path, &token, path.starts_with('@'), &inner.config.quota)
        {
            crate::store::push_unique(&mut fx.flush, shared);
        }
        self.queue_callbacks(fx);
    }
}
