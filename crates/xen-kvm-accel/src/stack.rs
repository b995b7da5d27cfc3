// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The Xen pieces of one domain, built and wired together once.
//!
//! A VMM that wants "Xen as QEMU's `-accel kvm,xen-version=...` offers it"
//! needs the same dozen objects connected the same way: a [`Domain`] whose
//! clock is a calibrated [`TscClock`], a dispatcher with every hypercall
//! family, event channels whose upcalls go through the in-kernel irqchip
//! ([`KvmUpcall`]) and wake vCPUs parked in `SCHEDOP_block`/`poll`
//! ([`Blocker`]), and optionally PV timers on timerfds. [`XenStack::new`]
//! builds exactly that; every piece stays public so a VMM can reach in
//! (inspect the event channels, share the dispatcher, snapshot the domain).
//!
//! ```no_run
//! use vm_memory::{GuestAddress, GuestMemoryMmap};
//! use xen_hypercall::{DomainConfig, Env};
//! use xen_kvm_accel::stack::XenStack;
//!
//! let map = vec![xen_abi::memory::E820Entry::new(0, 64 << 20, xen_abi::memory::E820Type::Ram)];
//! let stack: XenStack<GuestMemoryMmap> =
//!     XenStack::new(DomainConfig::new(1, 0x4000a, map), Env::default(), true).unwrap();
//! assert_eq!(stack.domain.config().vcpus, 1);
//! ```

use std::sync::{Arc, OnceLock};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use xen_abi::xen::HypercallNr;
use xen_evtchn::EventChannels;
use xen_evtchn::Upcall;
use xen_hypercall::{
    Dispatcher, Domain, DomainConfig, Env, EvtchnOp, HvmEvents, HvmOp, SchedOp, default_dispatcher,
};

use crate::{Blocker, Error, KvmEvents, KvmUpcall, TimerfdTimers, TscClock, WakingUpcall};

/// One domain's Xen objects, wired.
pub struct XenStack<M: GuestMemoryBackend + Send + Sync + 'static> {
    /// The domain: configuration, vCPU state, the VMM-side environment.
    pub domain: Arc<Domain>,
    /// Every hypercall family, `event_channel_op` and a FIFO-aware
    /// `sched_op` included.
    pub dispatcher: Arc<Dispatcher<M>>,
    /// The domain's event channels.
    pub channels: Arc<EventChannels>,
    /// Xen system time from the guest TSC; calibrate it against vCPU 0
    /// ([`TscClock::calibrate`]) before the guest runs.
    pub clock: Arc<TscClock>,
    /// The upcall injector (attach it to the VM, hand it to `XenAccel`).
    pub upcall: Arc<KvmUpcall>,
    /// Where vCPUs park in `SCHEDOP_block` and `SCHEDOP_poll`.
    pub blocker: Arc<Blocker>,
    /// PV timers raising VIRQ_TIMER, when asked for (started by
    /// [`XenStack::attach_memory`]).
    pub timers: Option<Arc<TimerfdTimers<M>>>,
    vector: Arc<RaiseIfPending<M>>,
}

impl<M: GuestMemoryBackend + Send + Sync + 'static> XenStack<M> {
    /// Builds the objects for a domain of `config`. `env` supplies the
    /// console, the shutdown handler and the RAM-backing hooks; its clock
    /// is replaced by a [`TscClock`], its `events` are wrapped so that
    /// block/poll really park the vCPU thread (shutdown still reaches
    /// `env.events`), and with `pv_timers` its timers become timerfds.
    pub fn new(config: DomainConfig, env: Env, pv_timers: bool) -> Result<Self, Error> {
        let clock = Arc::new(TscClock::new());
        let timers = if pv_timers {
            Some(Arc::new(TimerfdTimers::new(config.vcpus, clock.clone())?))
        } else {
            None
        };
        let blocker = Arc::new(Blocker::new(config.vcpus, clock.clone()));
        let env = Env {
            clock: clock.clone(),
            events: Arc::new(KvmEvents::new(blocker.clone(), env.events.clone())),
            timers: match &timers {
                Some(t) => t.clone(),
                None => env.timers.clone(),
            },
            ..env
        };
        let mut dispatcher = default_dispatcher(&config);
        let domid = config.domid;
        let domain = Arc::new(Domain::new(config, env));
        let upcall = Arc::new(KvmUpcall::new(domain.clone()));
        // Every raise also wakes a vCPU blocked in SCHEDOP_block/poll.
        let waking = Arc::new(WakingUpcall::new(upcall.clone(), blocker.clone()));
        let channels = Arc::new(EventChannels::new(
            xen_evtchn::Config::new(domid),
            domain.clone(),
            waking.clone(),
        )?);
        let vector = Arc::new(RaiseIfPending {
            domain: domain.clone(),
            upcall: waking,
            mem: OnceLock::new(),
        });
        dispatcher.register(
            HypercallNr::HvmOp,
            Arc::new(HvmOp::with_events(vector.clone())),
        );
        dispatcher.register(
            HypercallNr::EventChannelOp,
            Arc::new(EvtchnOp::new(channels.clone())),
        );
        // SCHEDOP_poll asks the event channels, so it works in FIFO mode.
        dispatcher.register(
            HypercallNr::SchedOp,
            Arc::new(SchedOp::with_channels(channels.clone())),
        );
        Ok(Self {
            domain,
            dispatcher: Arc::new(dispatcher),
            channels,
            clock,
            upcall,
            blocker,
            timers,
            vector,
        })
    }

    /// Connects the pieces that touch guest memory once it exists: starts
    /// the PV timers and lets a new upcall vector see pending events.
    /// Call it once, before the guest runs.
    pub fn attach_memory(&self, mem: &M)
    where
        M: Clone,
    {
        if let Some(t) = &self.timers {
            t.attach(self.channels.clone(), mem.clone());
        }
        let _ = self.vector.mem.set(mem.clone());
    }
}

/// Re-evaluates a vCPU's pending upcall when it gets a per-vCPU vector
/// (`HVMOP_set_evtchn_upcall_vector`): if its `evtchn_upcall_pending` is
/// already set (`VCPUOP_register_vcpu_info` sets it, or events arrived
/// before the guest had a vector), the new vector is raised at once.
/// Otherwise the next send, finding `evtchn_upcall_pending` set, would
/// raise nothing and the guest would wait forever. Xen raises the vector
/// unconditionally here (`hvm_assert_evtchn_irq`); KVM's kernel path raises
/// it only while `evtchn_upcall_pending` is set, and so do we, so both
/// paths behave alike and no guest sees a gratuitous upcall.
struct RaiseIfPending<M> {
    domain: Arc<Domain>,
    upcall: Arc<WakingUpcall>,
    mem: OnceLock<M>,
}

impl<M: GuestMemoryBackend + Send + Sync> HvmEvents for RaiseIfPending<M> {
    fn upcall_vector_changed(&self, vcpu: u32, _vector: u8) {
        let (Some(mem), Some(gpa)) = (self.mem.get(), self.domain.vcpu_info_gpa(vcpu)) else {
            return;
        };
        // Byte 0 of vcpu_info is evtchn_upcall_pending.
        if mem.read_obj::<u8>(GuestAddress(gpa)).is_ok_and(|p| p != 0) {
            self.upcall.raise(vcpu);
        }
    }
}
