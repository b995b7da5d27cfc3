// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Xen for a harness VM: the CPUID leaves, a domain, the dispatcher and
//! `xen-kvm-accel`, wired into a [`Runner`](crate::Runner) by
//! [`Runner::xen`](crate::Runner::xen).

use std::sync::{Arc, OnceLock};

use vm_memory::GuestMemoryMmap;
use xen_cpuid::{XenCpuid, XenCpuidConfig};
use xen_evtchn::EventChannels;
use xen_hypercall::{Dispatcher, Domain, DomainConfig, Env};
use xen_kvm_accel::stack::XenStack;
use xen_kvm_accel::{Caps, KvmUpcall, Path, TimerfdTimers, TscClock, XenAccel, XenConfig};

/// How a harness VM presents Xen.
pub struct Xen {
    /// The domain (its configuration and the VMM-side environment).
    pub domain: Arc<Domain>,
    /// The dispatcher answering the guest.
    pub dispatcher: Arc<Dispatcher<GuestMemoryMmap>>,
    /// The domain's event channels (`event_channel_op` is registered).
    pub channels: Arc<EventChannels>,
    /// Path choice, hypercall MSR and trap port.
    pub config: XenConfig,
    /// The CPUID leaves (the version should match the domain's).
    pub cpuid: XenCpuid,
    /// A TSC clock to calibrate against vCPU 0, if the domain's
    /// environment uses one.
    pub clock: Option<Arc<TscClock>>,
    /// The upcall injector the event channels raise through.
    pub upcall: Arc<KvmUpcall>,
    /// PV timers raising VIRQ_TIMER, when the domain uses them.
    pub timers: Option<Arc<TimerfdTimers<GuestMemoryMmap>>>,
    /// The wired objects, for [`XenStack::attach_memory`].
    pub(crate) stack: Arc<XenStack<GuestMemoryMmap>>,
}

impl Xen {
    /// Xen 4.10 with every default: the default dispatcher for `config`
    /// plus event channels whose upcalls go through the in-kernel irqchip
    /// ([`KvmUpcall`]), a domain whose environment is `env` with a
    /// calibrated [`TscClock`] and vCPUs that really block in
    /// SCHEDOP_block/poll ([`xen_kvm_accel::KvmEvents`]; `env.events` still receives
    /// shutdowns), automatic path choice.
    pub fn new(config: DomainConfig, env: Env) -> Self {
        Self::build(config, env, false)
    }

    /// Like [`Xen::new`], with real PV timers ([`TimerfdTimers`]) in place
    /// of `env.timers`: single-shot and periodic timers raise VIRQ_TIMER.
    pub fn with_pv_timers(config: DomainConfig, env: Env) -> Self {
        Self::build(config, env, true)
    }

    fn build(config: DomainConfig, env: Env, pv_timers: bool) -> Self {
        let version = xen_cpuid::XenVersion::try_from(config.version).expect("a valid version");
        let s = Arc::new(XenStack::new(config, env, pv_timers).expect("the Xen objects"));
        Self {
            domain: s.domain.clone(),
            dispatcher: s.dispatcher.clone(),
            channels: s.channels.clone(),
            config: XenConfig::default(),
            cpuid: XenCpuid::new(XenCpuidConfig::new(version)),
            clock: Some(s.clock.clone()),
            upcall: s.upcall.clone(),
            timers: s.timers.clone(),
            stack: s,
        }
    }
}

/// A domain of `vcpus` vCPUs claiming Xen `version` (in `XENVER_version`
/// form) with `ram` bytes of RAM from address 0.
pub fn domain_config(vcpus: u32, version: u32, ram: u64) -> DomainConfig {
    let map = vec![xen_abi::memory::E820Entry::new(
        0,
        ram,
        xen_abi::memory::E820Type::Ram,
    )];
    DomainConfig::new(vcpus, version, map)
}

/// What a test can inspect after (or during) a run with Xen.
#[derive(Clone, Default)]
pub struct XenHandle(pub(crate) Arc<OnceLock<XenAccel<GuestMemoryMmap>>>);

impl XenHandle {
    /// The accelerator, once the VM exists.
    pub fn accel(&self) -> Option<&XenAccel<GuestMemoryMmap>> {
        self.0.get()
    }

    /// The hypercall path the run took.
    pub fn path(&self) -> Option<Path> {
        self.accel().map(XenAccel::path)
    }
}

/// The KVM capabilities of this host, for path decisions in tests.
pub fn caps() -> Caps {
    Caps::probe(&kvm_ioctls::Kvm::new().expect("/dev/kvm"))
}
