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
    EVTCHN_2L_NR_CHANNELS, EVTCHN_2L_NR_CHANNELS_COMPAT, EVTCHN_FIFO_EVENT_WORDS_PER_PAGE,
    EVTCHN_FIFO_LINK_BITS, EVTCHN_FIFO_LINK_MASK, EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES,
    EVTCHN_FIFO_NR_CHANNELS, EVTCHN_FIFO_PRIORITY_DEFAULT, EVTCHN_FIFO_PRIORITY_MIN, EvtchnStat,
    EvtchnStatusDetail,
};
use xen_abi::x86::PAGE_SIZE;
use xen_abi::xen::{DOMID_SELF, DomId, NR_VIRQS, Virq, VirqKind};

use crate::backend::BackendNotify;
use crate::fifo::{Fifo, PortRef};
use crate::state::{BackendState, Binding, FifoState, PortState, State};
use crate::{Config, DOMID_BACKEND, Error, GuestLayout, Upcall, twolevel};

/// Size of the FIFO control block.
const CONTROL_BLOCK_SIZE: u32 = 72;
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

    fn export(&self) -> State {
        State {
            config: self.config,
            ports: self
                .ports
                .iter()
                .map(|(&port, p)| PortState {
                    port,
                    binding: p.binding,
                    vcpu: p.vcpu,
                    priority: p.priority,
                    fifo_pending: p.fifo_pending,
                })
                .collect(),
            backends: self
                .backends
                .iter()
                .map(|(&port, b)| BackendState {
                    port,
                    guest_port: b.guest_port,
                    pending: b.pending,
                })
                .collect(),
            fifo: self.fifo.as_ref().map(|f| FifoState {
                control: f.control.clone(),
                tails: f.tails.clone(),
                array_pages: f.pages.clone(),
            }),
        }
    }

    fn import(state: &State) -> crate::Result<Self> {
        state.config.validate()?;
        let mut inner = Inner::new(state.config);
        let max = state
            .config
            .max_evtchn_port
            .min(EVTCHN_FIFO_NR_CHANNELS - 1);
        for p in &state.ports {
            if p.port == 0 || p.port > max || inner.ports.contains_key(&p.port) {
                return Err(Error::InvalidPort(p.port));
            }
            if u32::from(p.priority) > EVTCHN_FIFO_PRIORITY_MIN {
                return Err(Error::InvalidPriority(p.port));
            }
            let bad = match p.binding {
                Binding::Virq(virq) => {
                    virq >= NR_VIRQS || inner.virqs.contains_key(&virq_key(virq, p.vcpu))
                }
                Binding::Pirq(pirq) => {
                    pirq >= state.config.nr_pirqs || inner.pirqs.contains_key(&pirq)
                }
                _ => false,
            };
            if bad {
                return Err(Error::InvalidBinding(p.port));
            }
            inner.insert(p.port, p.binding, p.vcpu);
            if let Some(port) = inner.ports.get_mut(&p.port) {
                port.priority = p.priority;
                port.fifo_pending = p.fifo_pending;
            }
        }
        for b in &state.backends {
            if b.port == 0 || b.port > BACKEND_MAX_PORT || inner.backends.contains_key(&b.port) {
                return Err(Error::InvalidPort(b.port));
            }
            inner.generation += 1;
            inner.backends.insert(
                b.port,
                BackendEnd {
                    guest_port: b.guest_port,
                    pending: b.pending,
                    notify: None,
                    generation: inner.generation,
                },
            );
        }
        for (&port, p) in &inner.ports {
            let ok = match p.binding {
                Binding::Loopback { peer } => {
                    peer != port
                        && inner.ports.get(&peer).map(|q| q.binding)
                            == Some(Binding::Loopback { peer: port })
                }
                Binding::Backend { backend_port } => {
                    inner.backends.get(&backend_port).map(|b| b.guest_port) == Some(Some(port))
                }
                _ => true,
            };
            if !ok {
                return Err(Error::InconsistentPeer(port));
            }
        }
        for (&bport, b) in &inner.backends {
            if let Some(g) = b.guest_port
                && inner.ports.get(&g).map(|p| p.binding)
                    != Some(Binding::Backend {
                        backend_port: bport,
                    })
            {
                return Err(Error::InconsistentPeer(g));
            }
        }
        if let Some(f) = &state.fifo {
            if f.control.len() != f.tails.len()
                || f.array_pages.len() > EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES as usize
                || f.tails.iter().flatten().any(|&t| t > EVTCHN_FIFO_LINK_MASK)
            {
                return Err(Error::InvalidFifo);
            }
            inner.fifo = Some(Fifo {
                control: f.control.clone(),
                tails: f.tails.clone(),
                pages: f.array_pages.clone(),
            });
        }
        Ok(inner)
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

    /// Returns the snapshot state (guest-memory bits are not included).
    pub fn state(&self) -> State {
        self.shared.lock().export()
    }

    /// Rebuilds event channels from a snapshot, after validating it.
    ///
    /// Back ends are restored without callbacks; each device reclaims its
    /// end with [`EventChannels::backend_attach`].
    pub fn from_state(
        state: &State,
        layout: Arc<dyn GuestLayout>,
        upcall: Arc<dyn Upcall>,
    ) -> crate::Result<Self> {
        Ok(Self::with_inner(Inner::import(state)?, layout, upcall))
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

    /// `EVTCHNOP_alloc_unbound`: allocates a port that `remote_dom` may
    /// connect to, notifying vCPU 0.
    ///
    /// `DOMID_SELF` means the guest itself (loopback). Like Xen, any other
    /// `remote_dom` is accepted and only recorded (QEMU refuses all but self
    /// and 0 with -EPERM); only the guest and [`DOMID_BACKEND`] can ever
    /// connect. Full table: -ENOSPC.
    pub fn alloc_unbound<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        remote_dom: DomId,
    ) -> Result<u32, XenErrno> {
        self.shared.run(|inner, layout, _| {
            let port = inner.free_port(mem, layout)?;
            let remote_dom = if remote_dom == DOMID_SELF {
                inner.config.domid
            } else {
                remote_dom
            };
            inner.insert(port, Binding::Unbound { remote_dom }, 0);
            Ok(port)
        })
    }

    /// `EVTCHNOP_bind_interdomain`: connects a new local port to
    /// `remote_port` of `remote_dom` and sets the new port pending.
    ///
    /// `remote_dom` is the guest itself (`DOMID_SELF` or its id: loopback) or
    /// [`DOMID_BACKEND`] (a back end's unbound port); any other domain is
    /// -ESRCH. A full table is -ENOSPC (checked first, as in Xen); a remote
    /// port that is not unbound or does not accept the guest is -EINVAL.
    pub fn bind_interdomain<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        remote_dom: DomId,
        remote_port: u32,
    ) -> Result<u32, XenErrno> {
        self.shared.run(|inner, layout, fx| {
            let own = inner.config.domid;
            let loopback = remote_dom == DOMID_SELF || remote_dom == own;
            if !loopback && remote_dom != DOMID_BACKEND {
                return Err(XenErrno::ESRCH);
            }
            let lport = inner.free_port(mem, layout)?;
            if loopback {
                inner.check_port(layout, remote_port)?;
                let remote = inner.ports.get_mut(&remote_port).ok_or(XenErrno::EINVAL)?;
                if remote.binding != (Binding::Unbound { remote_dom: own }) {
                    return Err(XenErrno::EINVAL);
                }
                remote.binding = Binding::Loopback { peer: lport };
                inner.insert(lport, Binding::Loopback { peer: remote_port }, 0);
            } else {
                let end = inner
                    .backends
                    .get_mut(&remote_port)
                    .filter(|e| e.guest_port.is_none())
                    .ok_or(XenErrno::EINVAL)?;
                end.guest_port = Some(lport);
                inner.insert(
                    lport,
                    Binding::Backend {
                        backend_port: remote_port,
                    },
                    0,
                );
            }
            inner.raise(mem, layout, lport, fx);
            Ok(lport)
        })
    }

    /// `EVTCHNOP_bind_virq`: binds `virq` (raw number) for `vcpu`.
    ///
    /// Checks, in Xen's order: `virq` >= `NR_VIRQS` -EINVAL; a global or
    /// per-domain VIRQ on a vCPU other than 0 -EINVAL; unknown vCPU -ENOENT;
    /// already bound (for that vCPU) -EEXIST; full table -ENOSPC. Numbers
    /// without a name are treated as global. The guest may bind every global
    /// VIRQ: the VMM plays the role of Xen's global VIRQ handler.
    pub fn bind_virq<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        virq: u32,
        vcpu: u32,
    ) -> Result<u32, XenErrno> {
        self.shared.run(|inner, layout, _| {
            if virq >= NR_VIRQS {
                return Err(XenErrno::EINVAL);
            }
            if virq_kind(virq) != VirqKind::PerVcpu && vcpu != 0 {
                return Err(XenErrno::EINVAL);
            }
            if vcpu >= layout.vcpus() {
                return Err(XenErrno::ENOENT);
            }
            if inner.virqs.contains_key(&virq_key(virq, vcpu)) {
                return Err(XenErrno::EEXIST);
            }
            let port = inner.free_port(mem, layout)?;
            inner.insert(port, Binding::Virq(virq), vcpu);
            Ok(port)
        })
    }

    /// `EVTCHNOP_bind_ipi`: allocates a port notifying `vcpu` (unknown vCPU
    /// -ENOENT, full table -ENOSPC).
    pub fn bind_ipi<M: GuestMemoryBackend>(&self, mem: &M, vcpu: u32) -> Result<u32, XenErrno> {
        self.shared.run(|inner, layout, _| {
            if vcpu >= layout.vcpus() {
                return Err(XenErrno::ENOENT);
            }
            let port = inner.free_port(mem, layout)?;
            inner.insert(port, Binding::Ipi, vcpu);
            Ok(port)
        })
    }

    /// `EVTCHNOP_bind_pirq`: binds `pirq`, notifying vCPU 0.
    ///
    /// `pirq` >= `nr_pirqs` -EINVAL; already bound -EEXIST (Xen; QEMU says
    /// -EBUSY); full table -ENOSPC. `will_share` only matters for PV
    /// domains in Xen and is ignored.
    pub fn bind_pirq<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        pirq: u32,
        will_share: bool,
    ) -> Result<u32, XenErrno> {
        let _ = will_share;
        self.shared.run(|inner, layout, _| {
            if pirq >= inner.config.nr_pirqs {
                return Err(XenErrno::EINVAL);
            }
            if inner.pirqs.contains_key(&pirq) {
                return Err(XenErrno::EEXIST);
            }
            let port = inner.free_port(mem, layout)?;
            inner.insert(port, Binding::Pirq(pirq), 0);
            Ok(port)
        })
    }

    /// `EVTCHNOP_close`: frees `port`, clearing its pending bit.
    ///
    /// A connected peer (loopback port or back end) reverts to unbound,
    /// accepting the guest again. A port out of range or not allocated
    /// (including port 0) is -EINVAL (QEMU says -ENOENT for the latter).
    pub fn close<M: GuestMemoryBackend>(&self, mem: &M, port: u32) -> Result<(), XenErrno> {
        self.shared
            .run(|inner, layout, _| inner.close(mem, layout, port))
    }

    /// `EVTCHNOP_send`: notifies the other end of `port`.
    ///
    /// Loopback: the peer port is raised. Back end: its callback runs (or,
    /// with no callback attached, the send is remembered until
    /// [`EventChannels::backend_attach`]). IPI: the port itself is raised.
    /// Unbound: dropped, success. Anything else, closed or out of range:
    /// -EINVAL.
    pub fn send<M: GuestMemoryBackend>(&self, mem: &M, port: u32) -> Result<(), XenErrno> {
        self.shared.run(|inner, layout, fx| {
            inner.check_port(layout, port)?;
            let p = inner.ports.get(&port).ok_or(XenErrno::EINVAL)?;
            match p.binding {
                Binding::Loopback { peer } => inner.raise(mem, layout, peer, fx),
                Binding::Ipi => inner.raise(mem, layout, port, fx),
                Binding::Unbound { .. } => {}
                Binding::Backend { backend_port } => {
                    if let Some(end) = inner.backends.get_mut(&backend_port) {
                        match &end.notify {
                            Some(cb) => fx.notify.push((Arc::clone(cb), backend_port)),
                            None => end.pending = true,
                        }
                    }
                }
                Binding::Virq(_) | Binding::Pirq(_) => return Err(XenErrno::EINVAL),
            }
            Ok(())
        })
    }

    /// `EVTCHNOP_status`: reports `port` (out of range -EINVAL; free ports
    /// and port 0 report closed with vCPU 0).
    pub fn status(&self, port: u32) -> Result<Status, XenErrno> {
        let inner = self.shared.lock();
        inner.check_port(&*self.shared.layout, port)?;
        let Some(p) = inner.ports.get(&port) else {
            return Ok(Status {
                state: EvtchnStat::Closed,
                vcpu: 0,
                detail: EvtchnStatusDetail::Closed,
            });
        };
        let detail = match p.binding {
            Binding::Unbound { remote_dom } => EvtchnStatusDetail::Unbound { dom: remote_dom },
            Binding::Loopback { peer } => EvtchnStatusDetail::Interdomain {
                dom: inner.config.domid,
                port: peer,
            },
            Binding::Backend { backend_port } => EvtchnStatusDetail::Interdomain {
                dom: DOMID_BACKEND,
                port: backend_port,
            },
            Binding::Virq(v) => EvtchnStatusDetail::Virq(v),
            Binding::Pirq(v) => EvtchnStatusDetail::Pirq(v),
            Binding::Ipi => EvtchnStatusDetail::Ipi,
        };
        Ok(Status {
            state: detail.stat(),
            vcpu: p.vcpu,
            detail,
        })
    }

    /// `EVTCHNOP_bind_vcpu`: changes the notify vCPU of `port`.
    ///
    /// Unknown vCPU -ENOENT (checked first, as in Xen); bad or free port,
    /// IPI and per-vCPU VIRQ -EINVAL. Unlike Xen (like QEMU), a pending,
    /// unmasked event is re-raised on the new vCPU, so an event whose old
    /// vCPU went offline is not lost; the extra upcall is harmless.
    pub fn bind_vcpu<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        port: u32,
        vcpu: u32,
    ) -> Result<(), XenErrno> {
        self.shared.run(|inner, layout, fx| {
            if vcpu >= layout.vcpus() {
                return Err(XenErrno::ENOENT);
            }
            inner.check_port(layout, port)?;
            let p = inner.ports.get_mut(&port).ok_or(XenErrno::EINVAL)?;
            match p.binding {
                Binding::Virq(v) if virq_kind(v) == VirqKind::PerVcpu => {
                    return Err(XenErrno::EINVAL);
                }
                Binding::Ipi => return Err(XenErrno::EINVAL),
                _ => {}
            }
            p.vcpu = vcpu;
            let (priority, ptr) = (p.priority, &mut p.fifo_pending);
            match &mut inner.fifo {
                None => twolevel::reraise(mem, layout, port, vcpu, fx),
                Some(fifo) => {
                    if fifo.is_pending(mem, port, *ptr) && fifo.word_gpa(port).is_some() {
                        fifo.set_pending(
                            mem,
                            layout,
                            port,
                            PortRef {
                                vcpu,
                                priority,
                                pending: ptr,
                            },
                            fx,
                        );
                    }
                }
            }
            Ok(())
        })
    }

    /// `EVTCHNOP_unmask`: clears the mask of `port` and re-raises it if
    /// pending (out of range -EINVAL; a free port is unmasked too, as in Xen).
    pub fn unmask<M: GuestMemoryBackend>(&self, mem: &M, port: u32) -> Result<(), XenErrno> {
        self.shared.run(|inner, layout, fx| {
            inner.check_port(layout, port)?;
            let mut scratch = false;
            let (vcpu, priority, pending) = match inner.ports.get_mut(&port) {
                Some(p) => (p.vcpu, p.priority, &mut p.fifo_pending),
                None => (0, EVTCHN_FIFO_PRIORITY_DEFAULT as u8, &mut scratch),
            };
            match &mut inner.fifo {
                None => twolevel::unmask(mem, layout, port, vcpu, fx),
                Some(fifo) => fifo.unmask(
                    mem,
                    layout,
                    port,
                    PortRef {
                        vcpu,
                        priority,
                        pending,
                    },
                    fx,
                ),
            }
            Ok(())
        })
    }

    /// `EVTCHNOP_reset`: closes every port (connected back ends revert to
    /// unbound) and reverts FIFO to 2-level.
    pub fn reset<M: GuestMemoryBackend>(&self, mem: &M) {
        self.shared.run(|inner, layout, _| {
            let ports: Vec<u32> = inner.ports.keys().copied().collect();
            for port in ports {
                if inner.close(mem, layout, port).is_err() {
                    // Above the current limit (layout switched to 32-bit):
                    // drop it without touching memory.
                    close_silently(inner, port);
                }
            }
            inner.fifo = None;
        });
    }

    /// `EVTCHNOP_init_control`: registers `vcpu`'s FIFO control block at
    /// byte `offset` of `control_gfn`; the first call switches the domain
    /// to FIFO, carrying pending 2-level bits over. Returns `link_bits` (17).
    ///
    /// Unknown vCPU -ENOENT; block crossing the page or `offset` not
    /// 8-aligned -EINVAL; vCPU already registered -EINVAL; `control_gfn` not
    /// RAM -EINVAL.
    pub fn init_control<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        control_gfn: u64,
        offset: u32,
        vcpu: u32,
    ) -> Result<u8, XenErrno> {
        self.shared.run(|inner, layout, _| {
            if vcpu >= layout.vcpus() {
                return Err(XenErrno::ENOENT);
            }
            if offset > PAGE_SIZE as u32 - CONTROL_BLOCK_SIZE || !offset.is_multiple_of(8) {
                return Err(XenErrno::EINVAL);
            }
            if inner
                .fifo
                .as_ref()
                .and_then(|f| f.control.get(vcpu as usize))
                .is_some_and(Option::is_some)
            {
                return Err(XenErrno::EINVAL);
            }
            let page = page_gpa(mem, control_gfn).ok_or(XenErrno::EINVAL)?;
            if inner.fifo.is_none() {
                let fifo = Fifo::new(layout.vcpus());
                for (&port, p) in inner.ports.iter_mut() {
                    p.priority = EVTCHN_FIFO_PRIORITY_DEFAULT as u8;
                    p.fifo_pending = twolevel::is_pending(mem, layout, port);
                }
                inner.fifo = Some(fifo);
            }
            let Some(fifo) = inner.fifo.as_mut() else {
                return Err(XenErrno::EINVAL);
            };
            let v = vcpu as usize;
            if fifo.control.len() <= v {
                fifo.control.resize(v + 1, None);
                fifo.tails.resize(v + 1, Default::default());
            }
            fifo.control[v] = Some(page + u64::from(offset));
            Ok(EVTCHN_FIFO_LINK_BITS as u8)
        })
    }

    /// `EVTCHNOP_expand_array`: adds the next event-array page and raises
    /// the ports of that page that became pending while it was missing.
    ///
    /// Before `init_control` -EOPNOTSUPP; 128 pages already -ENOSPC;
    /// `array_gfn` not RAM -EINVAL.
    pub fn expand_array<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        array_gfn: u64,
    ) -> Result<(), XenErrno> {
        self.shared.run(|inner, layout, fx| {
            let fifo = inner.fifo.as_mut().ok_or(XenErrno::EOPNOTSUPP)?;
            if fifo.pages.len() >= EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES as usize {
                return Err(XenErrno::ENOSPC);
            }
            let page = page_gpa(mem, array_gfn).ok_or(XenErrno::EINVAL)?;
            let first = fifo.pages.len() as u32 * EVTCHN_FIFO_EVENT_WORDS_PER_PAGE;
            fifo.pages.push(page);
            let waiting: Vec<u32> = inner
                .ports
                .range(first..first + EVTCHN_FIFO_EVENT_WORDS_PER_PAGE)
                .filter(|(_, p)| p.fifo_pending)
                .map(|(&port, _)| port)
                .collect();
            for port in waiting {
                if let Some(p) = inner.ports.get_mut(&port) {
                    p.fifo_pending = false;
                }
                inner.raise(mem, layout, port, fx);
            }
            Ok(())
        })
    }

    /// `EVTCHNOP_set_priority`: sets the FIFO queue of `port` for future
    /// raises. Bad port -EINVAL; 2-level -ENOSYS; priority > 15 -EINVAL.
    pub fn set_priority(&self, port: u32, priority: u32) -> Result<(), XenErrno> {
        self.shared.run(|inner, layout, _| {
            inner.check_port(layout, port)?;
            if inner.fifo.is_none() {
                return Err(XenErrno::ENOSYS);
            }
            if priority > EVTCHN_FIFO_PRIORITY_MIN {
                return Err(XenErrno::EINVAL);
            }
            if let Some(p) = inner.ports.get_mut(&port) {
                p.priority = priority as u8;
            }
            Ok(())
        })
    }

    /// Raises the port bound to `virq` (for `vcpu` if the VIRQ is per-vCPU);
    /// returns whether one is bound.
    pub fn raise_virq<M: GuestMemoryBackend>(&self, mem: &M, virq: Virq, vcpu: u32) -> bool {
        self.shared.run(|inner, layout, fx| {
            let Some(&port) = inner.virqs.get(&virq_key(virq.raw(), vcpu)) else {
                return false;
            };
            inner.raise(mem, layout, port, fx);
            true
        })
    }

    /// Raises the port bound to `pirq`; returns whether one is bound.
    pub fn raise_pirq<M: GuestMemoryBackend>(&self, mem: &M, pirq: u32) -> bool {
        self.shared.run(|inner, layout, fx| {
            let Some(&port) = inner.pirqs.get(&pirq) else {
                return false;
            };
            inner.raise(mem, layout, port, fx);
            true
        })
    }

    /// Returns the port bound to `virq` (for `vcpu` if per-vCPU).
    pub fn virq_port(&self, virq: Virq, vcpu: u32) -> Option<u32> {
        self.shared
            .lock()
            .virqs
            .get(&virq_key(virq.raw(), vcpu))
            .copied()
    }

    /// Sets `port` pending as if its sender had sent (debugging and tests).
    /// Out of range or free: -EINVAL.
    pub fn inject<M: GuestMemoryBackend>(&self, mem: &M, port: u32) -> Result<(), XenErrno> {
        self.shared.run(|inner, layout, fx| {
            inner.check_port(layout, port)?;
            if !inner.ports.contains_key(&port) {
                return Err(XenErrno::EINVAL);
            }
            inner.raise(mem, layout, port, fx);
            Ok(())
        })
    }

    /// True if `port` is pending (for `SCHEDOP_poll`); masked ports count.
    pub fn pending<M: GuestMemoryBackend>(&self, mem: &M, port: u32) -> bool {
        self.shared
            .lock()
            .is_pending(mem, &*self.shared.layout, port)
    }

    /// True if any of `ports` is pending.
    pub fn is_pending_any<M: GuestMemoryBackend>(&self, mem: &M, ports: &[u32]) -> bool {
        let inner = self.shared.lock();
        ports
            .iter()
            .any(|&p| inner.is_pending(mem, &*self.shared.layout, p))
    }

    /// Lists the allocated ports, with pending and mask bits read from guest
    /// memory.
    pub fn list<M: GuestMemoryBackend>(&self, mem: &M) -> Vec<PortInfo> {
        let inner = self.shared.lock();
        let layout = &*self.shared.layout;
        inner
            .ports
            .iter()
            .map(|(&port, p)| PortInfo {
                port,
                binding: p.binding,
                vcpu: p.vcpu,
                pending: inner.is_pending(mem, layout, port),
                masked: inner.is_masked(mem, layout, port),
                priority: p.priority,
            })
            .collect()
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

/// Guest-physical address of page `gfn` if the whole page is RAM.
fn page_gpa<M: GuestMemoryBackend>(mem: &M, gfn: u64) -> Option<u64> {
    let gpa = gfn.checked_mul(PAGE_SIZE)?;
    gpa.checked_add(PAGE_SIZE)?;
    mem.check_range(vm_memory::GuestAddress(gpa), PAGE_SIZE as usize)
        .then_some(gpa)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{SHINFO, fx, fx_with};
    use std::sync::atomic::Ordering;

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
    fn test_alloc_unbound_lowest_free_port_first() {
        let f = fx();
        assert_eq!(f.ev.alloc_unbound(&f.mem, DOMID_SELF), Ok(1));
        assert_eq!(f.ev.alloc_unbound(&f.mem, DOMID_SELF), Ok(2));
        assert_eq!(f.ev.alloc_unbound(&f.mem, DOMID_SELF), Ok(3));
        f.ev.close(&f.mem, 2).unwrap();
        assert_eq!(f.ev.alloc_unbound(&f.mem, DOMID_SELF), Ok(2));
    }

    #[test]
    fn test_alloc_unbound_remote_dom_recorded() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        let b = f.ev.alloc_unbound(&f.mem, 5).unwrap();
        let s = f.ev.status(a).unwrap();
        assert_eq!(s.detail, EvtchnStatusDetail::Unbound { dom: OWN });
        assert_eq!((s.state, s.vcpu), (EvtchnStat::Unbound, 0));
        assert_eq!(
            f.ev.status(b).unwrap().detail,
            EvtchnStatusDetail::Unbound { dom: 5 }
        );
    }

    #[test]
    fn test_alloc_unbound_full_table_enospc() {
        let mut c = Config::new(OWN);
        c.max_evtchn_port = 3;
        let f = fx_with(true, 1, c);
        for p in 1..=3 {
            assert_eq!(f.ev.alloc_unbound(&f.mem, 0), Ok(p));
        }
        assert_eq!(f.ev.alloc_unbound(&f.mem, 0), Err(XenErrno::ENOSPC));
        assert_eq!(f.ev.bind_ipi(&f.mem, 0), Err(XenErrno::ENOSPC));
        assert_eq!(f.ev.status(4), Err(XenErrno::EINVAL));
    }

    #[test]
    fn test_alloc_unbound_compat_layout_limit_1024() {
        let f = fx_with(false, 1, Config::new(OWN));
        for p in 1..1024 {
            assert_eq!(f.ev.bind_ipi(&f.mem, 0), Ok(p));
        }
        assert_eq!(f.ev.bind_ipi(&f.mem, 0), Err(XenErrno::ENOSPC));
        assert_eq!(f.ev.send(&f.mem, 1024), Err(XenErrno::EINVAL));
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
    fn test_bind_interdomain_loopback_new_port_pending() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        let b = f.ev.bind_interdomain(&f.mem, DOMID_SELF, a).unwrap();
        assert_eq!(b, 2);
        assert!(f.pending_bit(b));
        assert!(!f.pending_bit(a));
        assert!(f.sel_bit(0, 0));
        assert_eq!(f.take_upcalls(), vec![0]);
        assert_eq!(
            f.ev.status(a).unwrap().detail,
            EvtchnStatusDetail::Interdomain { dom: OWN, port: b }
        );
        assert_eq!(
            f.ev.status(b).unwrap().detail,
            EvtchnStatusDetail::Interdomain { dom: OWN, port: a }
        );
    }

    #[test]
    fn test_bind_interdomain_own_domid_is_loopback() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, OWN).unwrap();
        assert_eq!(f.ev.bind_interdomain(&f.mem, OWN, a), Ok(2));
    }

    #[test]
    fn test_bind_interdomain_bad_remote_errnos() {
        let f = fx();
        let other = f.ev.alloc_unbound(&f.mem, 5).unwrap();
        let ipi = f.ev.bind_ipi(&f.mem, 0).unwrap();
        assert_eq!(
            f.ev.bind_interdomain(&f.mem, 9, other),
            Err(XenErrno::ESRCH)
        );
        assert_eq!(
            f.ev.bind_interdomain(&f.mem, DOMID_SELF, other),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            f.ev.bind_interdomain(&f.mem, DOMID_SELF, ipi),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            f.ev.bind_interdomain(&f.mem, DOMID_SELF, 40),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            f.ev.bind_interdomain(&f.mem, DOMID_SELF, 5000),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(f.ev.bind_interdomain(&f.mem, 0, 1), Err(XenErrno::EINVAL));
        // Nothing was allocated by the failures.
        assert_eq!(f.ev.list(&f.mem).len(), 2);
    }

    #[test]
    fn test_bind_interdomain_full_table_enospc_first() {
        let mut c = Config::new(OWN);
        c.max_evtchn_port = 1;
        let f = fx_with(true, 1, c);
        f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        assert_eq!(
            f.ev.bind_interdomain(&f.mem, DOMID_SELF, 1),
            Err(XenErrno::ENOSPC)
        );
    }

    #[test]
    fn test_bind_interdomain_loopback_twice_einval() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        f.ev.bind_interdomain(&f.mem, DOMID_SELF, a).unwrap();
        assert_eq!(
            f.ev.bind_interdomain(&f.mem, DOMID_SELF, a),
            Err(XenErrno::EINVAL)
        );
    }

    #[test]
    fn test_close_loopback_reverts_peer_to_unbound() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        let b = f.ev.bind_interdomain(&f.mem, DOMID_SELF, a).unwrap();
        f.ev.close(&f.mem, b).unwrap();
        assert!(!f.pending_bit(b));
        assert_eq!(
            f.ev.status(a).unwrap().detail,
            EvtchnStatusDetail::Unbound { dom: OWN }
        );
        assert_eq!(f.ev.status(b).unwrap().state, EvtchnStat::Closed);
        assert_eq!(f.ev.bind_interdomain(&f.mem, DOMID_SELF, a), Ok(b));
    }

    #[test]
    fn test_send_loopback_raises_peer_on_its_vcpu() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        f.ev.bind_vcpu(&f.mem, a, 2).unwrap();
        let b = f.ev.bind_interdomain(&f.mem, DOMID_SELF, a).unwrap();
        f.guest_clear_pending(b);
        f.take_upcalls();
        f.ev.send(&f.mem, b).unwrap();
        assert!(f.pending_bit(a));
        assert!(f.sel_bit(2, 0));
        assert_eq!(f.take_upcalls(), vec![2]);
        f.ev.send(&f.mem, a).unwrap();
        assert!(f.pending_bit(b));
    }

    #[test]
    fn test_send_ipi_across_vcpus_raises_target() {
        let f = fx();
        let p1 = f.ev.bind_ipi(&f.mem, 1).unwrap();
        let p3 = f.ev.bind_ipi(&f.mem, 3).unwrap();
        f.ev.send(&f.mem, p3).unwrap();
        assert_eq!(f.take_upcalls(), vec![3]);
        assert!(f.sel_bit(3, 0) && !f.sel_bit(1, 0) && !f.sel_bit(0, 0));
        assert_eq!(f.upcall_pending(3), 1);
        f.ev.send(&f.mem, p1).unwrap();
        assert_eq!(f.take_upcalls(), vec![1]);
        assert_eq!(f.ev.status(p1).unwrap().detail, EvtchnStatusDetail::Ipi);
        assert_eq!(f.ev.status(p1).unwrap().vcpu, 1);
    }

    #[test]
    fn test_send_unbound_dropped_ok() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        assert_eq!(f.ev.send(&f.mem, a), Ok(()));
        assert!(!f.pending_bit(a));
        assert!(f.take_upcalls().is_empty());
    }

    #[test]
    fn test_send_virq_pirq_closed_einval() {
        let f = fx();
        let v = f.ev.bind_virq(&f.mem, 0, 0).unwrap();
        let p = f.ev.bind_pirq(&f.mem, 3, false).unwrap();
        for port in [v, p, 0, 9, 4096, u32::MAX] {
            assert_eq!(
                f.ev.send(&f.mem, port),
                Err(XenErrno::EINVAL),
                "port {port}"
            );
        }
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
    fn test_unmask_pending_port_redelivers() {
        let f = fx();
        let p = f.ev.bind_ipi(&f.mem, 1).unwrap();
        f.guest_mask(p, true);
        f.ev.send(&f.mem, p).unwrap();
        f.ev.unmask(&f.mem, p).unwrap();
        assert!(!f.mask_bit(p));
        assert!(f.sel_bit(1, 0));
        assert_eq!(f.take_upcalls(), vec![1]);
    }

    #[test]
    fn test_unmask_not_pending_or_not_masked_no_upcall() {
        let f = fx();
        let p = f.ev.bind_ipi(&f.mem, 1).unwrap();
        f.guest_mask(p, true);
        f.ev.unmask(&f.mem, p).unwrap();
        assert!(!f.mask_bit(p));
        f.ev.send(&f.mem, p).unwrap();
        f.take_upcalls();
        f.guest_clear_upcall(1);
        f.guest_clear_sel(1);
        // Not masked: Xen only re-raises if the mask bit was set.
        f.ev.unmask(&f.mem, p).unwrap();
        assert!(f.take_upcalls().is_empty());
        assert_eq!(f.ev.unmask(&f.mem, 4096), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.unmask(&f.mem, 77), Ok(()));
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

    #[test]
    fn test_bind_virq_errnos() {
        let f = fx();
        assert_eq!(f.ev.bind_virq(&f.mem, 24, 0), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.bind_virq(&f.mem, u32::MAX, 0), Err(XenErrno::EINVAL));
        assert_eq!(
            f.ev.bind_virq(&f.mem, Virq::Console.raw(), 1),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            f.ev.bind_virq(&f.mem, Virq::Argo.raw(), 2),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            f.ev.bind_virq(&f.mem, Virq::Timer.raw(), 4),
            Err(XenErrno::ENOENT)
        );
        assert_eq!(f.ev.bind_virq(&f.mem, Virq::Console.raw(), 0), Ok(1));
        assert_eq!(
            f.ev.bind_virq(&f.mem, Virq::Console.raw(), 0),
            Err(XenErrno::EEXIST)
        );
        assert_eq!(f.ev.bind_virq(&f.mem, 5, 0), Ok(2));
    }

    #[test]
    fn test_bind_virq_per_vcpu_on_each_vcpu() {
        let f = fx();
        for v in 0..4 {
            assert_eq!(f.ev.bind_virq(&f.mem, Virq::Timer.raw(), v), Ok(v + 1));
        }
        assert_eq!(
            f.ev.bind_virq(&f.mem, Virq::Timer.raw(), 2),
            Err(XenErrno::EEXIST)
        );
        assert_eq!(f.ev.virq_port(Virq::Timer, 2), Some(3));
        assert!(f.ev.raise_virq(&f.mem, Virq::Timer, 2));
        assert!(f.pending_bit(3));
        assert_eq!(f.take_upcalls(), vec![2]);
        assert!(!f.ev.raise_virq(&f.mem, Virq::Debug, 2));
        let s = f.ev.status(3).unwrap();
        assert_eq!((s.detail, s.vcpu), (EvtchnStatusDetail::Virq(0), 2));
    }

    #[test]
    fn test_raise_virq_global_uses_notify_vcpu() {
        let f = fx();
        let p = f.ev.bind_virq(&f.mem, Virq::Console.raw(), 0).unwrap();
        f.ev.bind_vcpu(&f.mem, p, 3).unwrap();
        assert!(f.ev.raise_virq(&f.mem, Virq::Console, 1));
        assert_eq!(f.take_upcalls(), vec![3]);
        f.ev.close(&f.mem, p).unwrap();
        assert!(!f.ev.raise_virq(&f.mem, Virq::Console, 0));
        assert_eq!(f.ev.bind_virq(&f.mem, Virq::Console.raw(), 0), Ok(p));
    }

    #[test]
    fn test_bind_pirq_errnos_and_raise() {
        let f = fx();
        assert_eq!(f.ev.bind_pirq(&f.mem, 256, false), Err(XenErrno::EINVAL));
        let p = f.ev.bind_pirq(&f.mem, 9, true).unwrap();
        assert_eq!(f.ev.bind_pirq(&f.mem, 9, false), Err(XenErrno::EEXIST));
        assert_eq!(f.ev.status(p).unwrap().detail, EvtchnStatusDetail::Pirq(9));
        assert!(f.ev.raise_pirq(&f.mem, 9));
        assert!(!f.ev.raise_pirq(&f.mem, 10));
        assert_eq!(f.take_upcalls(), vec![0]);
    }

    #[test]
    fn test_bind_ipi_unknown_vcpu_enoent() {
        let f = fx();
        assert_eq!(f.ev.bind_ipi(&f.mem, 4), Err(XenErrno::ENOENT));
    }

    #[test]
    fn test_bind_vcpu_errnos() {
        let f = fx();
        let ipi = f.ev.bind_ipi(&f.mem, 0).unwrap();
        let timer = f.ev.bind_virq(&f.mem, 0, 0).unwrap();
        let unbound = f.ev.alloc_unbound(&f.mem, 0).unwrap();
        let pirq = f.ev.bind_pirq(&f.mem, 1, false).unwrap();
        assert_eq!(f.ev.bind_vcpu(&f.mem, 99, 9), Err(XenErrno::ENOENT));
        assert_eq!(f.ev.bind_vcpu(&f.mem, ipi, 1), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.bind_vcpu(&f.mem, timer, 1), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.bind_vcpu(&f.mem, 99, 1), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.bind_vcpu(&f.mem, 0, 1), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.bind_vcpu(&f.mem, 4096, 1), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.bind_vcpu(&f.mem, unbound, 1), Ok(()));
        assert_eq!(f.ev.bind_vcpu(&f.mem, pirq, 2), Ok(()));
        assert_eq!(f.ev.status(pirq).unwrap().vcpu, 2);
    }

    #[test]
    fn test_bind_vcpu_pending_event_reraised_on_new_vcpu() {
        let f = fx();
        let p = f.ev.bind_pirq(&f.mem, 1, false).unwrap();
        f.ev.raise_pirq(&f.mem, 1);
        assert_eq!(f.take_upcalls(), vec![0]);
        f.ev.bind_vcpu(&f.mem, p, 2).unwrap();
        assert!(f.sel_bit(2, 0));
        assert_eq!(f.take_upcalls(), vec![2]);
        // Masked: no re-raise.
        f.guest_mask(p, true);
        f.ev.bind_vcpu(&f.mem, p, 3).unwrap();
        assert!(f.take_upcalls().is_empty());
    }

    #[test]
    fn test_status_closed_and_out_of_range() {
        let f = fx();
        let s = f.ev.status(0).unwrap();
        assert_eq!(
            (s.state, s.vcpu, s.detail),
            (EvtchnStat::Closed, 0, EvtchnStatusDetail::Closed)
        );
        assert_eq!(f.ev.status(4095).unwrap().state, EvtchnStat::Closed);
        assert_eq!(f.ev.status(4096), Err(XenErrno::EINVAL));
    }

    #[test]
    fn test_close_errnos_and_clears_pending() {
        let f = fx();
        let p = f.ev.bind_ipi(&f.mem, 1).unwrap();
        f.guest_mask(p, true);
        f.ev.send(&f.mem, p).unwrap();
        assert_eq!(f.ev.close(&f.mem, 0), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.close(&f.mem, 4096), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.close(&f.mem, p), Ok(()));
        assert!(!f.pending_bit(p));
        assert!(f.mask_bit(p), "freeing leaves the mask alone");
        assert_eq!(f.ev.close(&f.mem, p), Err(XenErrno::EINVAL));
        // A new port starts on vCPU 0.
        let q = f.ev.alloc_unbound(&f.mem, 0).unwrap();
        assert_eq!((q, f.ev.status(q).unwrap().vcpu), (p, 0));
    }

    #[test]
    fn test_reset_closes_everything() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        let b = f.ev.bind_interdomain(&f.mem, DOMID_SELF, a).unwrap();
        f.ev.bind_virq(&f.mem, 0, 1).unwrap();
        f.ev.bind_pirq(&f.mem, 4, false).unwrap();
        f.ev.reset(&f.mem);
        assert!(f.ev.list(&f.mem).is_empty());
        assert!(!f.pending_bit(b));
        assert_eq!(f.ev.bind_virq(&f.mem, 0, 1), Ok(1));
        assert_eq!(f.ev.bind_pirq(&f.mem, 4, false), Ok(2));
    }

    #[test]
    fn test_set_priority_two_level_enosys() {
        let f = fx();
        let p = f.ev.bind_ipi(&f.mem, 0).unwrap();
        assert_eq!(f.ev.set_priority(p, 3), Err(XenErrno::ENOSYS));
        assert_eq!(f.ev.set_priority(4096, 3), Err(XenErrno::EINVAL));
    }

    #[test]
    fn test_inject_pending_list() {
        let f = fx();
        let a = f.ev.bind_ipi(&f.mem, 1).unwrap();
        let b = f.ev.alloc_unbound(&f.mem, 0).unwrap();
        f.guest_mask(b, true);
        assert_eq!(f.ev.inject(&f.mem, 50), Err(XenErrno::EINVAL));
        f.ev.inject(&f.mem, b).unwrap();
        assert!(f.ev.pending(&f.mem, b));
        assert!(!f.ev.pending(&f.mem, a));
        assert!(f.ev.is_pending_any(&f.mem, &[a, b]));
        assert!(!f.ev.is_pending_any(&f.mem, &[a, 9999]));
        let l = f.ev.list(&f.mem);
        assert_eq!(l.len(), 2);
        assert_eq!(
            l[1],
            PortInfo {
                port: b,
                binding: Binding::Unbound { remote_dom: 0 },
                vcpu: 0,
                pending: true,
                masked: true,
                priority: 7
            }
        );
        assert_eq!(l[0].binding, Binding::Ipi);
    }

    #[test]
    fn test_state_round_trip_behaves_the_same() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        let _b = f.ev.bind_interdomain(&f.mem, DOMID_SELF, a).unwrap();
        f.ev.bind_virq(&f.mem, 0, 2).unwrap();
        f.ev.bind_pirq(&f.mem, 7, false).unwrap();
        let ipi = f.ev.bind_ipi(&f.mem, 3).unwrap();
        f.ev.alloc_unbound(&f.mem, 0).unwrap();
        f.ev.close(&f.mem, 1).unwrap();
        let state = f.ev.state();

        let g = fx();
        let restored = EventChannels::from_state(&state, g.layout.clone(), g.rec.clone()).unwrap();
        assert_eq!(restored.state(), state);
        // Same memory on both sides, then the same operations.
        let mut buf = vec![0u8; 0x2000];
        vm_memory::Bytes::read_slice(&f.mem, &mut buf, vm_memory::GuestAddress(0)).unwrap();
        vm_memory::Bytes::write_slice(&g.mem, &buf, vm_memory::GuestAddress(0)).unwrap();
        f.take_upcalls();
        for (ev, mem) in [(&f.ev, &f.mem), (&restored, &g.mem)] {
            assert_eq!(ev.send(mem, ipi), Ok(()));
            assert_eq!(ev.alloc_unbound(mem, DOMID_SELF), Ok(1));
            assert_eq!(ev.bind_interdomain(mem, DOMID_SELF, 1), Ok(7));
            assert!(ev.raise_virq(mem, Virq::Timer, 2));
        }
        let mut other = vec![0u8; 0x2000];
        vm_memory::Bytes::read_slice(&f.mem, &mut buf, vm_memory::GuestAddress(0)).unwrap();
        vm_memory::Bytes::read_slice(&g.mem, &mut other, vm_memory::GuestAddress(0)).unwrap();
        assert_eq!(buf, other);
        assert_eq!(f.ev.state(), restored.state());
        assert_eq!(f.take_upcalls(), g.take_upcalls());
    }

    #[test]
    fn test_from_state_inconsistent_rejected() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        f.ev.bind_interdomain(&f.mem, DOMID_SELF, a).unwrap();
        f.ev.bind_pirq(&f.mem, 3, false).unwrap();
        let good = f.ev.state();
        let l = f.layout.clone();
        let up = f.rec.clone();
        let check = |s: &State, e: Error| {
            assert_eq!(
                EventChannels::from_state(s, l.clone(), up.clone()).unwrap_err(),
                e
            );
        };
        let mut s = good.clone();
        s.ports[0].binding = Binding::Loopback { peer: 3 };
        check(&s, Error::InconsistentPeer(1));
        let mut s = good.clone();
        s.ports[1].port = 1;
        check(&s, Error::InvalidPort(1));
        let mut s = good.clone();
        s.ports[0].port = 0;
        check(&s, Error::InvalidPort(0));
        let mut s = good.clone();
        s.ports[2].binding = Binding::Pirq(999);
        check(&s, Error::InvalidBinding(3));
        let mut s = good.clone();
        s.ports[2].priority = 16;
        check(&s, Error::InvalidPriority(3));
        let mut s = good.clone();
        s.ports[2].binding = Binding::Backend { backend_port: 1 };
        check(&s, Error::InconsistentPeer(3));
        let mut s = good.clone();
        s.config.domid = 0;
        check(&s, Error::InvalidDomid(0));
        let mut s = good.clone();
        s.fifo = Some(FifoState {
            control: vec![None],
            tails: vec![],
            array_pages: vec![],
        });
        check(&s, Error::InvalidFifo);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn test_state_serde_traits_implemented() {
        fn assert_serde<T: serde::Serialize + serde::de::DeserializeOwned>() {}
        assert_serde::<State>();
    }
}
