// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! [`XenDomain`]: one built domain and what a VMM does with it.

use std::sync::{Arc, Mutex, MutexGuard};

use event_manager::MutEventSubscriber;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use xen_abi::errno::XenErrno;
use xen_abi::sched::ShutdownReason;
use xen_abi::xen::Virq;
use xen_evtchn::EventChannels;
use xen_hypercall::guest::{GuestVirt, PagingRegs};
use xen_hypercall::memory::MemoryOp;
use xen_hypercall::page::{self, Trap};
use xen_hypercall::{
    Dispatcher, Domain, DomainConfig, HcResult, Hypercall, PhysdevOp, Runstates, SchedOp,
};
use xen_platform_pci::{PlatformDevice, PlatformEvents};

use xen_console::PvConsole;
use xen_gnttab::GrantTable;
use xen_store::{Client, GuestConnection, Store};

use crate::delivery::{self, Delivery, PciIntxRouting, UpcallRoute};
use crate::pv::Pv;
use crate::timers::{TimerEvents, TimerKind, TimerfdTimers};
use crate::{Blocker, XenDomainBuilder};

/// The platform device a domain owns, as the VMM's bus sees it.
pub type Platform = Mutex<PlatformDevice<Arc<dyn PlatformEvents + Send + Sync>>>;

/// An `event-manager` subscriber a domain hands to the VMM's event loop.
pub type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// Called for every hypercall handled: the calling vCPU, the call and its
/// result (for traces).
pub type TraceFn = Box<dyn Fn(u32, &Hypercall, HcResult) + Send + Sync>;

/// One Xen HVM domain: every hypercall family, the event channels and
/// their upcall routing, timers, blocking, the platform device, over one
/// guest memory. Hypervisor-neutral: the VMM's interrupt controller,
/// clock, console and shutdown handling come in as the small traits of
/// [`XenDomainBuilder`]. See the crate documentation for an example.
pub struct XenDomain<M: GuestMemoryBackend> {
    pub(crate) core: Arc<Domain>,
    pub(crate) mem: M,
    pub(crate) dispatcher: Dispatcher<M>,
    pub(crate) channels: Arc<EventChannels>,
    pub(crate) memory_op: Arc<MemoryOp>,
    pub(crate) gnttab: Arc<GrantTable>,
    pub(crate) pv: Pv<M>,
    pub(crate) physdev: Arc<PhysdevOp>,
    pub(crate) sched: Arc<SchedOp>,
    pub(crate) runstates: Arc<Runstates>,
    pub(crate) platform: Arc<Platform>,
    pub(crate) delivery: Arc<Delivery>,
    pub(crate) timerfds: Option<Arc<TimerfdTimers>>,
    pub(crate) intx: Option<PciIntxRouting>,
    pub(crate) trace: Option<TraceFn>,
}

impl<M: GuestMemoryBackend> std::fmt::Debug for XenDomain<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenDomain")
            .field("config", self.core.config())
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl<M: GuestMemoryBackend + Clone + Send + Sync + 'static> XenDomain<M> {
    /// Starts describing a domain of `config` over guest memory `mem`.
    pub fn builder(config: DomainConfig, mem: M) -> XenDomainBuilder<M> {
        XenDomainBuilder::new(config, mem)
    }

    /// The configuration.
    pub fn config(&self) -> &DomainConfig {
        self.core.config()
    }

    /// The per-domain state the hypercall families share (parameters,
    /// vCPU registrations, shared_info placement) and the services they
    /// call (`env`).
    pub fn core(&self) -> &Arc<Domain> {
        &self.core
    }

    /// Guest memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Handles one hypercall from `vcpu`, whose paging registers translate
    /// its pointer arguments. Every answer is a value or a Xen errno; guest
    /// mistakes never panic.
    pub fn hypercall(&self, vcpu: u32, paging: PagingRegs, call: &Hypercall) -> HcResult {
        let gv = GuestVirt::new(&self.mem, paging);
        let r = self.dispatcher.dispatch(&self.core, vcpu, &gv, call);
        if let Some(t) = &self.trace {
            t(vcpu, call, r);
        }
        r
    }

    /// The dispatcher, with every family registered.
    pub fn dispatcher(&self) -> &Dispatcher<M> {
        &self.dispatcher
    }

    /// The guest wrote `value` (page address | page index) to the
    /// hypercall MSR: writes a hypercall page of `trap` stubs there and
    /// latches the shared_info layout from the writer's mode, as Xen does.
    /// Only page index 0 exists and the page must be in guest memory (a
    /// region of `M`); otherwise nothing is written and the VMM injects a
    /// #GP (returns false).
    pub fn write_hypercall_page(&self, value: u64, trap: Trap, long_mode: bool) -> bool {
        let (gpa, index) = (value & !0xfff, value & 0xfff);
        if index != 0 {
            xen_abi::warn_limited!("hypercall MSR write {value:#x}: page index {index} is not 0");
            return false;
        }
        if self
            .mem
            .write_slice(&page::build(trap), GuestAddress(gpa))
            .is_err()
        {
            xen_abi::warn_limited!("hypercall MSR write {value:#x}: not guest RAM");
            return false;
        }
        self.core.latch_mode(long_mode);
        true
    }

    /// The event channels.
    pub fn channels(&self) -> &Arc<EventChannels> {
        &self.channels
    }

    /// Raises guest port `port` as if its remote end had sent (the
    /// monitor's `evtchn-inject`, a back end without a `BackendPort`).
    pub fn send(&self, port: u32) -> Result<(), XenErrno> {
        self.channels.inject(&self.mem, port)
    }

    /// Raises `virq` for `vcpu`, if the guest bound it; returns whether.
    pub fn raise_virq(&self, virq: Virq, vcpu: u32) -> bool {
        self.channels.raise_virq(&self.mem, virq, vcpu)
    }

    /// The p2m (`memory_op`): populated RAM, reservations, grant frames.
    pub fn memory_op(&self) -> &Arc<MemoryOp> {
        &self.memory_op
    }

    /// The grant table (back ends map the guest's grants through it).
    pub fn grant_table(&self) -> &Arc<GrantTable> {
        &self.gnttab
    }

    /// The XenStore, if the domain has one
    /// ([`XenDomainBuilder::xenstore`]).
    pub fn xenstore(&self) -> Option<&Arc<Store>> {
        self.pv.store.as_ref().map(|s| &s.store)
    }

    /// A XenStore client with the back-end domain's rights (domain 0:
    /// every node, no quota), for back ends and the VMM's monitor.
    pub fn store_client(&self) -> Option<Client> {
        self.xenstore().map(|s| s.client())
    }

    /// The guest's XenStore ring connection, if any.
    pub fn store_connection(&self) -> Option<&Arc<GuestConnection<Arc<M>>>> {
        self.pv.store.as_ref().map(|s| &s.conn)
    }

    /// The primary PV console, if the domain has one
    /// ([`XenDomainBuilder::pv_console`]): input goes in with
    /// [`PvConsole::input`], counters come out.
    pub fn pv_console(&self) -> Option<&Arc<PvConsole<M>>> {
        self.pv.console.as_ref().map(|c| &c.console)
    }

    /// Asks the guest to shut down the way a toolstack does (`xl
    /// shutdown`/`reboot`): writes `command` (`poweroff`, `reboot`,
    /// `suspend`, `halt`, ...) to `control/shutdown`, which the guest
    /// watches. Without a XenStore -ENODEV.
    pub fn request_shutdown(&self, command: &str) -> Result<(), XenErrno> {
        let client = self.store_client().ok_or(XenErrno::ENODEV)?;
        let path = format!(
            "{}/control/shutdown",
            Client::domain_path(self.core.config().domid)
        );
        client.write(&path, command)
    }

    /// The PIRQ table (`physdev_op`), for a VMM that routes GSIs or MSIs
    /// of emulated devices to PIRQs.
    pub fn physdev(&self) -> &Arc<PhysdevOp> {
        &self.physdev
    }

    /// `sched_op`: the watchdog slots.
    pub fn sched(&self) -> &Arc<SchedOp> {
        &self.sched
    }

    /// The vCPUs' runstate accounting: the VMM reports state changes here.
    pub fn runstates(&self) -> &Arc<Runstates> {
        &self.runstates
    }

    /// The Xen platform PCI device (5853:0001), for the VMM's PCI bus and
    /// port I/O (`Mutex<PlatformDevice>` implements vm-device's
    /// `DevicePio`/`DeviceMmio`).
    pub fn platform(&self) -> &Arc<Platform> {
        &self.platform
    }

    /// Locks the platform device.
    pub fn lock_platform(
        &self,
    ) -> MutexGuard<'_, PlatformDevice<Arc<dyn PlatformEvents + Send + Sync>>> {
        self.platform.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where vCPUs park in `SCHEDOP_block`/`SCHEDOP_poll`; a VMM stopping
    /// the domain wakes them all.
    pub fn blocker(&self) -> &Arc<Blocker> {
        &self.delivery.blocker
    }

    /// The route `vcpu`'s upcall takes now, if any.
    pub fn upcall_route(&self, vcpu: u32) -> Option<UpcallRoute> {
        delivery::route(&self.core, self.intx.as_ref(), vcpu)
    }

    /// Whether `vcpu`'s `evtchn_upcall_pending` is set in guest memory.
    /// A VMM driving a level callback line ([`UpcallRoute::Line`]) keeps
    /// it asserted while this is true for vCPU 0.
    pub fn upcall_pending(&self, vcpu: u32) -> bool {
        delivery::upcall_pending(&self.core, &self.mem, vcpu)
    }

    /// Raises `vcpu`'s upcall again if `evtchn_upcall_pending` is still set
    /// (for a VMM re-evaluating a level line at the guest's EOI, or after
    /// a restore). Returns whether it did.
    pub fn reassert_upcall(&self, vcpu: u32) -> bool {
        let pending = self.upcall_pending(vcpu);
        if pending {
            self.delivery.raise(vcpu);
        }
        pending
    }

    /// A timer of `vcpu` fired (the VMM's own [`Timers`] service calls
    /// this; the default timerfds do it through [`XenDomain::subscribers`]):
    /// raises `VIRQ_TIMER`. A fired single-shot timer is no longer armed.
    ///
    /// [`Timers`]: xen_hypercall::env::Timers
    pub fn timer_fired(&self, vcpu: u32, kind: TimerKind) {
        if kind == TimerKind::Singleshot {
            let now = self.core.env.clock.system_time_ns();
            if let Some(v) = self.core.lock().vcpus.get_mut(vcpu as usize)
                && v.singleshot_ns.is_some_and(|d| d <= now)
            {
                v.singleshot_ns = None;
            }
        }
        self.raise_virq(Virq::Timer, vcpu);
    }

    /// The watchdog timer fired: shuts the domain down with
    /// `SHUTDOWN_watchdog` if a watchdog really expired, as Xen's
    /// `domain_watchdog_timeout`, and re-arms the timer for the next
    /// deadline.
    pub fn check_watchdog(&self) {
        let now = self.core.env.clock.system_time_ns();
        if self.sched.expired_watchdog(now) {
            log::warn!("domain {}: watchdog expired", self.config().domid);
            let code = self.core.lock().shutdown_code;
            self.core
                .env
                .events
                .shutdown(ShutdownReason::Watchdog, code);
        }
        self.core
            .env
            .timers
            .set_watchdog(self.sched.watchdog_deadline());
    }

    /// The `event-manager` subscribers the VMM registers on its own event
    /// loop: the timerfds of the default timers (none when the VMM gave its
    /// own [`Timers`](xen_hypercall::env::Timers)).
    pub fn subscribers(self: &Arc<Self>) -> Vec<Subscriber> {
        let mut v: Vec<Subscriber> = Vec::new();
        if let Some(t) = &self.timerfds {
            v.push(Arc::new(Mutex::new(TimerEvents::new(
                self.clone(),
                t.clone(),
            ))));
        }
        v
    }
}
