// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The port table and the `event_channel_op` operations (`xen-abi.md` §3.8).
//!
//! Each method answers like Xen's `xen/common/event_channel.c`: the same
//! checks in the same order, so the same errno for the same arguments. Where
//! QEMU's emulation differs, Xen wins; the differences are noted on the
//! methods. All state sits behind one mutex; [`Upcall`] and
//! [`BackendNotify`] callbacks run after it is released.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::GuestMemoryBackend;
use xen_abi::errno::XenErrno;
use xen_abi::event_channel::{
    EVTCHN_2L_NR_CHANNELS, EVTCHN_2L_NR_CHANNELS_COMPAT, EVTCHN_FIFO_NR_CHANNELS,
    EVTCHN_FIFO_PRIORITY_DEFAULT, EvtchnStat, EvtchnStatusDetail,
};
use xen_abi::xen::{DOMID_SELF, DomId, Virq, VirqKind};

use crate::backend::BackendNotify;
use crate::fifo::{Fifo, PortRef};
use crate::state::Binding;
use crate::{Config, DOMID_BACKEND, GuestLayout, Upcall, twolevel};

// One file per concern, each adding its methods to `EventChannels`: this
// file holds the port table itself and the delivery of an event.
mod bind; // alloc_unbound and the bind_* operations that allocate a port
mod fifo_ops; // init_control, expand_array, set_priority
mod inspect; // VIRQ/PIRQ raising, injection, pending, list
mod ops; // close, send, status, bind_vcpu, unmask, reset
mod snapshot; // state() and from_state()

/// Highest back-end port number (the back ends' "dom0" uses a 2-level-sized table).
pub(crate) const BACKEND_MAX_PORT: u32 = EVTCHN_2L_NR_CHANNELS - 1;

/// Callbacks collected under the lock and run after it is released.
#[derive(Default)]
pub(crate) struct Effects {
    /// vCPUs whose `evtchn_upcall_pending` went 0 -> 1.
    pub(crate) upcalls: Vec<u32>,
    /// Ports newly set pending.
    pub(crate) raised: Vec<u32>,
    /// Back ends to notify.
    pub(crate) notify: Vec<(Arc<dyn BackendNotify>, u32)>,
}

/// One allocated guest port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Port {
    pub(crate) binding: Binding,
    pub(crate) vcpu: u32,
    pub(crate) priority: u8,
    pub(crate) fifo_pending: bool,
}

/// One VMM-side back-end end.
pub(crate) struct BackendEnd {
    pub(crate) guest_port: Option<u32>,
    pub(crate) pending: bool,
    pub(crate) notify: Option<Arc<dyn BackendNotify>>,
    pub(crate) generation: u64,
}

/// The state behind the mutex.
pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) ports: BTreeMap<u32, Port>,
    /// (VIRQ, vCPU for per-vCPU VIRQs else 0) -> port.
    virqs: HashMap<(u32, u32), u32>,
    /// PIRQ -> port.
    pirqs: HashMap<u32, u32>,
    pub(crate) backends: BTreeMap<u32, BackendEnd>,
    pub(crate) fifo: Option<Fifo>,
    pub(crate) generation: u64,
}

/// What [`EventChannels`] and back-end handles share.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    pub(crate) layout: Arc<dyn GuestLayout>,
    upcall: Arc<dyn Upcall>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic in another thread cannot leave the table half-updated in a
        // way that matters more than refusing service would.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` under the lock, then the callbacks it collected.
    pub(crate) fn run<R>(
        &self,
        f: impl FnOnce(&mut Inner, &dyn GuestLayout, &mut Effects) -> R,
    ) -> R {
        let mut fx = Effects::default();
        let r = {
            let mut inner = self.lock();
            f(&mut inner, &*self.layout, &mut fx)
        };
        for port in fx.raised {
            self.upcall.port_raised(port);
        }
        for vcpu in fx.upcalls {
            self.upcall.raise(vcpu);
        }
        for (cb, port) in fx.notify {
            cb.notify(port);
        }
        r
    }
}

fn virq_kind(virq: u32) -> VirqKind {
    Virq::try_from(virq).map_or(VirqKind::Global, Virq::kind)
}

fn virq_key(virq: u32, vcpu: u32) -> (u32, u32) {
    match virq_kind(virq) {
        VirqKind::PerVcpu => (virq, vcpu),
        _ => (virq, 0),
    }
}

impl Inner {
    fn new(config: Config) -> Self {
        Inner {
            config,
            ports: BTreeMap::new(),
            virqs: HashMap::new(),
            pirqs: HashMap::new(),
            backends: BTreeMap::new(),
            fifo: None,
            generation: 0,
        }
    }

    /// One past the highest valid port: the active ABI's limit (2-level by
    /// the *current* latched layout), capped by `max_evtchn_port`.
    pub(crate) fn limit(&self, layout: &dyn GuestLayout) -> u32 {
        let abi = if self.fifo.is_some() {
            EVTCHN_FIFO_NR_CHANNELS
        } else if layout.long_mode() {
            EVTCHN_2L_NR_CHANNELS
        } else {
            EVTCHN_2L_NR_CHANNELS_COMPAT
        };
        abi.min(self.config.max_evtchn_port.saturating_add(1))
    }

    fn check_port(&self, layout: &dyn GuestLayout, port: u32) -> Result<(), XenErrno> {
        if port < self.limit(layout) {
            Ok(())
        } else {
            Err(XenErrno::EINVAL)
        }
    }

    /// Lowest free port >= 1 (FIFO: skipping ports still LINKED, Xen's "busy").
    fn free_port<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        layout: &dyn GuestLayout,
    ) -> Result<u32, XenErrno> {
        (1..self.limit(layout))
            .find(|p| {
                !self.ports.contains_key(p)
                    && !self.fifo.as_ref().is_some_and(|f| f.is_linked(mem, *p))
            })
            .ok_or(XenErrno::ENOSPC)
    }

    fn insert(&mut self, port: u32, binding: Binding, vcpu: u32) {
        match binding {
            Binding::Virq(virq) => {
                self.virqs.insert(virq_key(virq, vcpu), port);
            }
            Binding::Pirq(pirq) => {
                self.pirqs.insert(pirq, port);
            }
            _ => {}
        }
        self.ports.insert(
            port,
            Port {
                binding,
                vcpu,
                priority: EVTCHN_FIFO_PRIORITY_DEFAULT as u8,
                fifo_pending: false,
            },
        );
    }

    /// Raises `port` on its notify vCPU with the active ABI.
    pub(crate) fn raise<M: GuestMemoryBackend>(
        &mut self,
        mem: &M,
        layout: &dyn GuestLayout,
        port: u32,
        fx: &mut Effects,
    ) {
        if port >= self.limit(layout) {
            return;
        }
        let Some(p) = self.ports.get_mut(&port) else {
            return;
        };
        match &mut self.fifo {
            None => twolevel::set_pending(mem, layout, port, p.vcpu, fx),
            Some(fifo) => fifo.set_pending(
                mem,
                layout,
                port,
                PortRef {
                    vcpu: p.vcpu,
                    priority: p.priority,
                    pending: &mut p.fifo_pending,
                },
                fx,
            ),
        }
    }

    fn is_pending<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        layout: &dyn GuestLayout,
        port: u32,
    ) -> bool {
        if port >= self.limit(layout) {
            return false;
        }
        match &self.fifo {
            None => twolevel::is_pending(mem, layout, port),
            Some(fifo) => {
                let flag = self.ports.get(&port).is_some_and(|p| p.fifo_pending);
                fifo.is_pending(mem, port, flag)
            }
        }
    }

    fn is_masked<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        layout: &dyn GuestLayout,
        port: u32,
    ) -> bool {
        // Beyond the current ABI's limit (a 32-bit layout latched after
        // ports above 1023 were bound) a port can never be delivered: Xen
        // reports it masked rather than reading past the bitmap.
        if port >= self.limit(layout) {
            return true;
        }
        match &self.fifo {
            None => twolevel::is_masked(mem, layout, port),
            Some(fifo) => fifo.is_masked(mem, port),
        }
    }

    /// Closes an allocated port (Xen `evtchn_close` + `evtchn_free`).
    pub(crate) fn close<M: GuestMemoryBackend>(
        &mut self,
        mem: &M,
        layout: &dyn GuestLayout,
        port: u32,
    ) -> Result<(), XenErrno> {
        self.check_port(layout, port)?;
        if !self.ports.contains_key(&port) {
            return Err(XenErrno::EINVAL);
        }
        close_silently(self, port);
        match &self.fifo {
            None => twolevel::clear_pending(mem, layout, port),
            Some(fifo) => fifo.clear_pending(mem, port),
        }
        Ok(())
    }
}

/// Result of [`EventChannels::status`] (`EVTCHNOP_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// The port's state.
    pub state: EvtchnStat,
    /// Notify vCPU.
    pub vcpu: u32,
    /// State-specific detail, as the guest sees it (back ends appear as
    /// domain [`DOMID_BACKEND`]).
    pub detail: EvtchnStatusDetail,
}

/// One allocated port, as [`EventChannels::list`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Port number.
    pub port: u32,
    /// Binding.
    pub binding: Binding,
    /// Notify vCPU.
    pub vcpu: u32,
    /// Pending bit (2-level bitmap or FIFO PENDING) read from guest memory.
    pub pending: bool,
    /// Mask bit (2-level bitmap or FIFO MASKED) read from guest memory.
    pub masked: bool,
    /// FIFO priority.
    pub priority: u8,
}

/// A domain's event channels: port table and delivery.
pub struct EventChannels {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for EventChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.shared.lock();
        f.debug_struct("EventChannels")
            .field("config", &inner.config)
            .field("ports", &inner.ports)
            .field("fifo", &inner.fifo)
            .finish_non_exhaustive()
    }
}

impl EventChannels {
    /// Creates an empty port table using the 2-level ABI.
    ///
    /// Fails if `config.domid` is reserved or [`DOMID_BACKEND`].
    pub fn new(
        config: Config,
        layout: Arc<dyn GuestLayout>,
        upcall: Arc<dyn Upcall>,
    ) -> crate::Result<Self> {
        config.validate()?;
        Ok(Self::with_inner(Inner::new(config), layout, upcall))
    }

    fn with_inner(inner: Inner, layout: Arc<dyn GuestLayout>, upcall: Arc<dyn Upcall>) -> Self {
        EventChannels {
            shared: Arc::new(Shared {
                inner: Mutex::new(inner),
                layout,
                upcall,
            }),
        }
    }

    /// Returns the configuration.
    pub fn config(&self) -> Config {
        self.shared.lock().config
    }

    /// True once the guest switched to the FIFO ABI.
    pub fn is_fifo(&self) -> bool {
        self.shared.lock().fifo.is_some()
    }

    /// Checks the `dom` argument of `alloc_unbound`, `status` and `reset`.
    ///
    /// `DOMID_SELF` and the guest's own id are accepted. Xen looks the domain
    /// up first (-ESRCH if it does not exist) and then lets only privileged
    /// callers name another domain: [`DOMID_BACKEND`] exists, so it is -EPERM.
    pub fn check_dom(&self, dom: DomId) -> Result<(), XenErrno> {
        let own = self.shared.lock().config.domid;
        if dom == DOMID_SELF || dom == own {
            Ok(())
        } else if dom == DOMID_BACKEND {
            Err(XenErrno::EPERM)
        } else {
            Err(XenErrno::ESRCH)
        }
    }
}

/// Removes `port` without touching guest memory.
fn close_silently(inner: &mut Inner, port: u32) {
    let Some(p) = inner.ports.remove(&port) else {
        return;
    };
    match p.binding {
        Binding::Virq(virq) => {
            inner.virqs.remove(&virq_key(virq, p.vcpu));
        }
        Binding::Pirq(pirq) => {
            inner.pirqs.remove(&pirq);
        }
        Binding::Loopback { peer } => {
            if let Some(peer) = inner.ports.get_mut(&peer) {
                peer.binding = Binding::Unbound {
                    remote_dom: inner.config.domid,
                };
            }
        }
        Binding::Backend { backend_port } => {
            if let Some(end) = inner.backends.get_mut(&backend_port) {
                end.guest_port = None;
            }
        }
        Binding::Unbound { .. } | Binding::Ipi => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::testing::{SHINFO, fx, fx_with};
    use std::sync::atomic::Ordering;

    /// The domain id of `fx()`.
    const OWN: DomId = 1;

    #[test]
    fn test_new_reserved_domid_rejected() {
        let l = crate::testing::layout(true, 1);
        let up = Arc::new(crate::NoUpcall);
        for d in [0, DOMID_SELF, 0x7fff] {
            assert_eq!(
                EventChannels::new(Config::new(d), l.clone(), up.clone()).unwrap_err(),
                Error::InvalidDomid(d)
            );
        }
    }

    #[test]
    fn test_limit_follows_current_layout() {
        let f = fx();
        for _ in 1..=1100 {
            f.ev.bind_ipi(&f.mem, 0).unwrap();
        }
        assert_eq!(f.ev.send(&f.mem, 1100), Ok(()));
        f.layout.long.store(false, Ordering::SeqCst);
        assert_eq!(f.ev.send(&f.mem, 1100), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.status(1100), Err(XenErrno::EINVAL));
        f.ev.reset(&f.mem);
        assert!(f.ev.list(&f.mem).is_empty());
    }

    #[test]
    fn test_check_dom_self_own_backend_other() {
        let f = fx();
        assert_eq!(f.ev.check_dom(DOMID_SELF), Ok(()));
        assert_eq!(f.ev.check_dom(OWN), Ok(()));
        assert_eq!(f.ev.check_dom(0), Err(XenErrno::EPERM));
        assert_eq!(f.ev.check_dom(7), Err(XenErrno::ESRCH));
    }

    #[test]
    fn test_raise_upcall_only_on_zero_to_one() {
        let f = fx();
        let ports: Vec<u32> = (0..70).map(|_| f.ev.bind_ipi(&f.mem, 0).unwrap()).collect();
        f.ev.send(&f.mem, ports[0]).unwrap();
        f.ev.send(&f.mem, ports[1]).unwrap();
        assert_eq!(f.take_upcalls(), vec![0]);
        // Same word, selector already set: nothing new.
        f.ev.send(&f.mem, ports[0]).unwrap();
        assert!(f.take_upcalls().is_empty());
        // Another word: selector bit new, but upcall_pending still 1.
        f.ev.send(&f.mem, ports[65]).unwrap();
        assert!(f.sel_bit(0, 1));
        assert!(f.take_upcalls().is_empty());
        // The guest consumes: clears upcall_pending and the selector.
        f.guest_clear_upcall(0);
        f.guest_clear_sel(0);
        f.guest_clear_pending(ports[2]);
        f.ev.send(&f.mem, ports[2]).unwrap();
        assert_eq!(f.take_upcalls(), vec![0]);
        assert_eq!(*f.rec.raised.lock().unwrap(), vec![1, 2, 66, 3]);
    }

    #[test]
    fn test_raise_masked_port_pending_without_upcall() {
        let f = fx();
        let p = f.ev.bind_ipi(&f.mem, 1).unwrap();
        f.guest_mask(p, true);
        f.ev.send(&f.mem, p).unwrap();
        assert!(f.pending_bit(p));
        assert!(!f.sel_bit(1, 0));
        assert_eq!(f.upcall_pending(1), 0);
        assert!(f.take_upcalls().is_empty());
        assert_eq!(*f.rec.raised.lock().unwrap(), vec![p]);
        assert!(f.ev.pending(&f.mem, p));
    }

    #[test]
    fn test_compat_layout_uses_32_bit_words_and_offsets() {
        let f = fx_with(false, 2, Config::new(OWN));
        let ports: Vec<u32> = (0..40).map(|_| f.ev.bind_ipi(&f.mem, 1).unwrap()).collect();
        let p = ports[32];
        assert_eq!(p, 33);
        f.ev.send(&f.mem, p).unwrap();
        assert_eq!(f.read_u32(SHINFO + 2048 + 4), 1 << 1);
        assert_eq!(f.read_u32(SHINFO + 64 + 4), 1 << 1);
        assert_eq!(f.upcall_pending(1), 1);
        // Mask lives at 2176 in the compat layout.
        f.write_u32(SHINFO + 2176, 1 << 5);
        f.ev.send(&f.mem, 5).unwrap();
        assert!(f.pending_bit(5));
        assert_eq!(f.read_u32(SHINFO + 64 + 4), 1 << 1);
        assert_eq!(f.take_upcalls(), vec![1]);
    }

    #[test]
    fn test_raise_without_shared_info_records_nothing() {
        let f = fx();
        *f.layout.shinfo.lock().unwrap() = None;
        let p = f.ev.bind_ipi(&f.mem, 0).unwrap();
        assert_eq!(f.ev.send(&f.mem, p), Ok(()));
        assert!(!f.ev.pending(&f.mem, p));
        assert!(f.take_upcalls().is_empty());
    }

    #[test]
    fn test_raise_vcpu_without_vcpu_info_stays_pending() {
        let f = fx_with(true, 40, Config::new(OWN));
        let p = f.ev.bind_ipi(&f.mem, 35).unwrap();
        f.ev.send(&f.mem, p).unwrap();
        assert!(f.pending_bit(p));
        assert!(f.take_upcalls().is_empty());
        // Once it registers one, unmask-style re-raise through bind_vcpu works.
        f.layout.vcpu_info.lock().unwrap().insert(35, 0x8000);
        let q = f.ev.alloc_unbound(&f.mem, 5).unwrap();
        f.ev.bind_vcpu(&f.mem, q, 35).unwrap();
        f.ev.inject(&f.mem, q).unwrap();
        assert_eq!(f.take_upcalls(), vec![35]);
    }

    #[test]
    fn test_raise_misaligned_vcpu_info_no_panic() {
        let f = fx();
        f.layout.vcpu_info.lock().unwrap().insert(1, 0x8003);
        f.layout.vcpu_info.lock().unwrap().insert(2, u64::MAX - 3);
        for v in [1, 2] {
            let p = f.ev.bind_ipi(&f.mem, v).unwrap();
            f.ev.send(&f.mem, p).unwrap();
            assert!(f.pending_bit(p));
        }
        assert!(f.take_upcalls().is_empty());
    }
}
