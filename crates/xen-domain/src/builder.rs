// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! [`XenDomainBuilder`]: everything a domain needs, given up front, and the
//! one place where the parts are wired together.

use std::sync::{Arc, Mutex};

use vm_memory::GuestMemoryBackend;
use xen_abi::xen::HypercallNr;
use xen_evtchn::EventChannels;
use xen_hypercall::env::{Clock, Console, DomainEvents, HostClock, MemoryBacking, Nop, Timers};
use xen_hypercall::memory::MemoryOp;
use xen_hypercall::{
    ConsoleIo, Dispatcher, Domain, DomainConfig, Env, EvtchnOp, HvmOp, PhysdevOp, SchedOp,
    SetTimerOp, VcpuOp, VmAssist, XenVersionOp,
};
use xen_platform_pci::{NoEvents, PlatformDevice, PlatformEvents};

use xen_gnttab::{FrameMap, GrantTable};
use xen_hypercall::GnttabOp;

use crate::block::BlockingEvents;
use crate::delivery::{Delivery, NoInjector, PciIntxRouting, UpcallInjector, UpcallVectorEvents};
use crate::pv::{ConsoleSetup, Pv, PvParts, StoreSetup};
use crate::state::{State, StateError};
use crate::timers::TimerfdTimers;
use crate::{Blocker, Error, TraceFn, XenDomain};

/// Describes a [`XenDomain`]: its configuration, its guest memory and the
/// VMM's services, each with a default that does nothing observable, so a
/// VMM sets only what it has. [`XenDomainBuilder::build`] (or
/// [`XenDomainBuilder::restore`]) then assembles the domain in one step.
pub struct XenDomainBuilder<M> {
    config: DomainConfig,
    mem: M,
    clock: Option<Arc<dyn Clock>>,
    timers: Option<Arc<dyn Timers>>,
    events: Arc<dyn DomainEvents>,
    park_blocked: bool,
    console: Arc<dyn Console>,
    backing: Arc<dyn MemoryBacking>,
    injector: Arc<dyn UpcallInjector>,
    intx: Option<PciIntxRouting>,
    platform_config: xen_platform_pci::Config,
    platform_events: Arc<dyn PlatformEvents + Send + Sync>,
    version: XenVersionOp,
    trace: Option<TraceFn>,
    store: Option<StoreSetup>,
    pv_console: Option<ConsoleSetup>,
}

impl<M> std::fmt::Debug for XenDomainBuilder<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenDomainBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<M: GuestMemoryBackend + Clone + Send + Sync + 'static> XenDomainBuilder<M> {
    /// A domain of `config` over `mem`, with every service at its default:
    /// host monotonic clock, timerfd timers ([`XenDomain::subscribers`]),
    /// vCPUs that park in `SCHEDOP_block`/`poll`, shutdowns and console
    /// output dropped, no upcall injection, RAM backing changes accepted.
    pub fn new(config: DomainConfig, mem: M) -> Self {
        Self {
            config,
            mem,
            clock: None,
            timers: None,
            events: Arc::new(Nop),
            park_blocked: true,
            console: Arc::new(Nop),
            backing: Arc::new(Nop),
            injector: Arc::new(NoInjector),
            intx: None,
            platform_config: xen_platform_pci::Config::default(),
            platform_events: Arc::new(NoEvents),
            version: XenVersionOp::new(),
            trace: None,
            store: None,
            pv_console: None,
        }
    }

    /// The configuration being built.
    pub fn config(&self) -> &DomainConfig {
        &self.config
    }

    /// Whether a clock was given ([`XenDomainBuilder::clock`]).
    pub fn has_clock(&self) -> bool {
        self.clock.is_some()
    }

    /// Guest time (pvclock, timers, `HVMOP_get_time`).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The VMM's own PV timers instead of the default timerfds; when one
    /// fires, the VMM calls [`XenDomain::timer_fired`] (and
    /// [`XenDomain::check_watchdog`] for the watchdog).
    pub fn timers(mut self, timers: Arc<dyn Timers>) -> Self {
        self.timers = Some(timers);
        self
    }

    /// Where `SCHEDOP_shutdown` (and a watchdog expiry) goes.
    pub fn events(mut self, events: Arc<dyn DomainEvents>) -> Self {
        self.events = events;
        self
    }

    /// Whether `SCHEDOP_block`/`SCHEDOP_poll` park the calling thread until
    /// an event, the deadline or [`crate::MAX_WAIT`] (default), or return at
    /// once (a spurious wake-up, which the ABI allows) and leave blocking
    /// to the VMM's `events`.
    pub fn park_blocked_vcpus(mut self, park: bool) -> Self {
        self.park_blocked = park;
        self
    }

    /// Where `console_io` writes go and reads come from.
    pub fn console(mut self, console: Arc<dyn Console>) -> Self {
        self.console = console;
        self
    }

    /// The VMM's RAM backing, for ballooning and physmap moves.
    pub fn memory_backing(mut self, backing: Arc<dyn MemoryBacking>) -> Self {
        self.backing = backing;
        self
    }

    /// The VMM's interrupt controller, which injects event upcalls.
    pub fn injector(mut self, injector: Arc<dyn UpcallInjector>) -> Self {
        self.injector = injector;
        self
    }

    /// How the VMM wires PCI INTx pins to GSIs, for a `CALLBACK_IRQ` of
    /// type PCI INTx.
    pub fn pci_intx_routing(mut self, routing: PciIntxRouting) -> Self {
        self.intx = Some(routing);
        self
    }

    /// The platform device's options and where its requests (unplug, guest
    /// log lines, ROM lock) go.
    pub fn platform(
        mut self,
        config: xen_platform_pci::Config,
        events: Arc<dyn PlatformEvents + Send + Sync>,
    ) -> Self {
        self.platform_config = config;
        self.platform_events = events;
        self
    }

    /// `xen_version`'s build details (compile info, changeset, build id).
    pub fn version_info(mut self, version: XenVersionOp) -> Self {
        self.version = version;
        self
    }

    /// Calls `trace` for every hypercall handled.
    pub fn trace(mut self, trace: TraceFn) -> Self {
        self.trace = Some(trace);
        self
    }

    /// Gives the domain a XenStore, as a toolstack does: the ring on page
    /// `setup.gfn` (`HVM_PARAM_STORE_PFN`), an event channel
    /// (`HVM_PARAM_STORE_EVTCHN`, the guest's first port), grant ref 1,
    /// and the domain's tree (`/local/domain/<domid>/...`). Without it the
    /// guest finds no XenStore (both parameters -EINVAL).
    pub fn xenstore(mut self, setup: StoreSetup) -> Self {
        self.store = Some(setup);
        self
    }

    /// Gives the domain a primary PV console (Linux's `hvc0`): the ring on
    /// page `setup.gfn` (`HVM_PARAM_CONSOLE_PFN`), an event channel
    /// (`HVM_PARAM_CONSOLE_EVTCHN`), grant ref 0 and, with a XenStore, its
    /// `console/` keys; the guest's output goes to `setup.writer`
    /// ([`XenDomain::pv_console`] takes input). Without it both parameters
    /// are -EINVAL.
    pub fn pv_console(mut self, setup: ConsoleSetup) -> Self {
        self.pv_console = Some(setup);
        self
    }

    /// Builds the domain: every vCPU up, nothing registered, and only the
    /// toolstack's ports bound (XenStore, console).
    pub fn build(self) -> Result<XenDomain<M>, Error> {
        self.assemble(None)
    }

    /// Builds the domain from a saved [`State`] (the whole-domain
    /// counterpart of [`XenDomain::state`]), refusing one that does not fit
    /// the configuration. Timers are re-armed from their saved deadlines.
    /// Guest RAM must hold the saved contents already; once the vCPUs'
    /// interrupt controllers are restored too, the VMM calls
    /// [`XenDomain::reassert_upcall`] for each vCPU, so that an upcall
    /// pending at the save is delivered.
    pub fn restore(self, state: &State) -> Result<XenDomain<M>, Error> {
        state.check(&self.config)?;
        self.assemble(Some(state))
    }

    fn assemble(self, state: Option<&State>) -> Result<XenDomain<M>, Error> {
        let config = self.config;
        config.validate()?;
        let vcpus = config.vcpus;
        let clock = self
            .clock
            .unwrap_or_else(|| Arc::new(HostClock::new()) as Arc<dyn Clock>);
        let (timers, timerfds) = match self.timers {
            Some(t) => (t, None),
            None => {
                let t = Arc::new(TimerfdTimers::new(vcpus, clock.clone())?);
                (t.clone() as Arc<dyn Timers>, Some(t))
            }
        };
        let blocker = Arc::new(Blocker::new(vcpus, clock.clone()));
        let events: Arc<dyn DomainEvents> = if self.park_blocked {
            Arc::new(BlockingEvents {
                blocker: blocker.clone(),
                vmm: self.events,
            })
        } else {
            self.events
        };
        let env = Env {
            clock,
            timers,
            events,
            console: self.console,
            backing: self.backing,
        };
        let core = Arc::new(Domain::new(config.clone(), env));
        if let Some(s) = state {
            // First: the event channels read the restored layout.
            core.restore(s.domain.clone()).map_err(StateError::from)?;
        }
        let delivery = Arc::new(Delivery {
            domain: core.clone(),
            injector: self.injector,
            blocker,
            intx: self.intx.clone(),
        });
        let channels = Arc::new(match state {
            Some(s) => EventChannels::from_state(&s.evtchn, core.clone(), delivery.clone())
                .map_err(StateError::from)?,
            None => EventChannels::new(config.evtchn(), core.clone(), delivery.clone())?,
        });
        let memory_op = Arc::new(match state {
            Some(s) => MemoryOp::from_state(&s.memory).map_err(StateError::from)?,
            None => MemoryOp::new(&config, config.grant_frames()),
        });
        let gnttab_config = config.gnttab();
        let frames: Arc<dyn FrameMap> = memory_op.clone();
        let gnttab = Arc::new(match state {
            Some(s) => GrantTable::from_state(gnttab_config, frames, &s.gnttab)
                .map_err(StateError::from)?,
            None => GrantTable::new(gnttab_config, frames)?,
        });
        memory_op.set_grant_frame_init(gnttab.frame_init());
        let physdev = Arc::new(PhysdevOp::new(channels.clone()));
        let sched = Arc::new(SchedOp::new(channels.clone()));
        let vcpu_op = Arc::new(VcpuOp::new());
        let runstates = vcpu_op.runstates().clone();
        let hvm = HvmOp::with_events(Arc::new(UpcallVectorEvents {
            delivery: delivery.clone(),
            mem: self.mem.clone(),
        }));

        let mut dispatcher = Dispatcher::empty();
        dispatcher.register(HypercallNr::MemoryOp, memory_op.clone());
        dispatcher.register(HypercallNr::SetTimerOp, Arc::new(SetTimerOp));
        dispatcher.register(HypercallNr::XenVersion, Arc::new(self.version));
        dispatcher.register(HypercallNr::ConsoleIo, Arc::new(ConsoleIo::new()));
        dispatcher.register(HypercallNr::VmAssist, Arc::new(VmAssist::new()));
        dispatcher.register(HypercallNr::VcpuOp, vcpu_op);
        dispatcher.register(HypercallNr::SchedOp, sched.clone());
        dispatcher.register(HypercallNr::HvmOp, Arc::new(hvm));
        dispatcher.register(
            HypercallNr::EventChannelOp,
            Arc::new(EvtchnOp::new(channels.clone())),
        );
        dispatcher.register(HypercallNr::PhysdevOp, physdev.clone());
        dispatcher.register(
            HypercallNr::GrantTableOp,
            Arc::new(GnttabOp::new(gnttab.clone())),
        );
        let pv = Pv::assemble(
            PvParts {
                config: &config,
                mem: &self.mem,
                core: &core,
                channels: &channels,
                gnttab: &gnttab,
            },
            self.store,
            self.pv_console,
            state.map(|s| &s.pv),
        )?;

        let platform = match state {
            Some(s) => {
                PlatformDevice::from_state(self.platform_config, self.platform_events, &s.platform)
                    .map_err(StateError::from)?
            }
            None => PlatformDevice::new(self.platform_config, self.platform_events),
        };
        let domain = XenDomain {
            core,
            mem: self.mem,
            dispatcher,
            channels,
            memory_op,
            gnttab,
            pv,
            physdev,
            sched,
            runstates,
            platform: Arc::new(Mutex::new(platform)),
            delivery,
            timerfds,
            intx: self.intx,
            trace: self.trace,
        };
        if let Some(s) = state {
            domain.apply(s)?;
        }
        Ok(domain)
    }
}
