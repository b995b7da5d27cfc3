// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The whole domain's state: one plain struct (serde behind the `serde`
//! feature) with every part of the domain a guest can see, and its
//! restore into a freshly built domain ([`XenDomainBuilder::restore`]).
//!
//! What lives in guest memory (shared_info, vcpu_info, the event bits, the
//! FIFO event words, the pages of the p2m) migrates with guest RAM and is
//! not repeated here. The configuration is not state either: the VMM that
//! restores builds the domain with the same [`DomainConfig`], and restore
//! refuses a state that does not fit it. Timers are re-armed from their
//! deadlines, which are Xen system time: the restoring VMM's clock must
//! continue the saving one's (the same clock in-process; a migrated clock
//! offset across hosts).
//!
//! [`XenDomainBuilder::restore`]: crate::XenDomainBuilder::restore

use vm_memory::GuestMemoryBackend;
use xen_hypercall::time::VcpuRunstate;
use xen_hypercall::{DomainConfig, DomainState, memory, physdev, sched};

use crate::XenDomain;
use crate::pv::PvState;

/// Layout version of [`State`]; bumped on every incompatible change, and
/// checked on restore.
pub const STATE_VERSION: u32 = 2;

/// Everything of a domain a guest can see, outside guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct State {
    /// [`STATE_VERSION`] of the code that saved it.
    pub version: u32,
    /// HVM parameters, shared_info placement and layout, each vCPU's
    /// registered areas, upcall vector, timers and up/down state, the
    /// latched shutdown code, `vm_assist`.
    pub domain: DomainState,
    /// The p2m: populated RAM, reservations, grant and status frames.
    pub memory: memory::State,
    /// The port table, back-end ends and FIFO queues.
    pub evtchn: xen_evtchn::State,
    /// The PIRQ table and GSI levels.
    pub physdev: physdev::State,
    /// The watchdog slots.
    pub sched: sched::State,
    /// Each vCPU's runstate accounting and area.
    pub runstates: Vec<VcpuRunstate>,
    /// The Xen platform PCI device.
    pub platform: xen_platform_pci::State,
    /// The grant table: version, size, reserved entries, frames the guest
    /// removed.
    pub gnttab: xen_gnttab::State,
    /// The XenStore and the primary console.
    pub pv: PvState,
}

/// Why a [`State`] cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Saved by an incompatible version of this crate.
    #[error("The state has layout version {0}, this build reads {STATE_VERSION}.")]
    Version(u32),
    /// The state was saved by a domain configured otherwise.
    #[error("The state does not fit this domain's configuration: {0}.")]
    Config(&'static str),
    /// Two parts of the state contradict each other.
    #[error("The state is inconsistent: {0}.")]
    Inconsistent(&'static str),
    /// The shared state does not fit.
    #[error("The domain state is invalid")]
    Domain(#[from] xen_hypercall::StateError),
    /// The p2m is invalid.
    #[error("The memory_op state is invalid")]
    Memory(#[from] memory::Error),
    /// The port table is invalid.
    #[error("The event-channel state is invalid")]
    Evtchn(#[from] xen_evtchn::Error),
    /// The PIRQ table is invalid.
    #[error("The physdev state is invalid")]
    Physdev(#[from] physdev::StateError),
    /// The grant table's state is invalid.
    #[error("The grant-table state is invalid")]
    Gnttab(#[from] xen_gnttab::Error),
    /// The XenStore's state is invalid.
    #[error("The XenStore state is invalid")]
    Store(#[from] xen_store::Error),
    /// The platform device's state is invalid.
    #[error("The platform device state is invalid")]
    Platform(#[from] xen_platform_pci::Error),
}

impl State {
    /// Checks what can be checked against the configuration before any
    /// component is built from the state.
    pub(crate) fn check(&self, config: &DomainConfig) -> Result<(), StateError> {
        if self.version != STATE_VERSION {
            return Err(StateError::Version(self.version));
        }
        if self.evtchn.config != config.evtchn() {
            return Err(StateError::Config(
                "event-channel limits or domain id differ",
            ));
        }
        let grant = config.grant_frames();
        if self.memory.grant_frames.len() != grant.max_frames as usize
            || self.memory.status_frames.len() != grant.max_status_frames as usize
        {
            return Err(StateError::Config("grant-table frame limits differ"));
        }
        if self.runstates.len() > config.vcpus as usize {
            return Err(StateError::Config("more runstates than vCPUs"));
        }
        // shared_info, like a grant frame, replaced what was at its GFN.
        if let Some(gfn) = self.domain.shared_info_gfn {
            let on_ram = self.memory.ram.iter().any(|&(s, e)| (s..e).contains(&gfn));
            let on_grant = self
                .memory
                .grant_frames
                .iter()
                .chain(&self.memory.status_frames)
                .any(|&g| g == Some(gfn));
            if on_ram || on_grant || gfn > self.memory.max_gpfn {
                return Err(StateError::Inconsistent(
                    "shared_info shares its GFN with RAM or a grant frame",
                ));
            }
        }
        Ok(())
    }
}

impl<M: GuestMemoryBackend + Clone + Send + Sync + 'static> XenDomain<M> {
    /// The whole domain's state. Take it with the vCPUs paused (out of
    /// `KVM_RUN` or its equivalent) and the VMM's event loop stopped (the
    /// timers and eventfd ports raise events), so that nothing changes one
    /// part while another is read.
    pub fn state(&self) -> State {
        State {
            version: STATE_VERSION,
            domain: self.core.state(),
            memory: self.memory_op.state(),
            evtchn: self.channels.state(),
            physdev: self.physdev.state(),
            sched: self.sched.state(),
            runstates: self.runstates.snapshot(),
            platform: self.lock_platform().state(),
            gnttab: self.gnttab.state(),
            pv: self.pv.state(),
        }
    }

    /// Applies the parts of `state` that are restored into components the
    /// builder already made, and re-arms the timers.
    pub(crate) fn apply(&self, state: &State) -> Result<(), StateError> {
        self.physdev.restore(&state.physdev)?;
        self.sched.restore(&state.sched);
        self.runstates.restore(state.runstates.clone());
        let timers = &self.core.env.timers;
        for (vcpu, v) in state.domain.vcpus.iter().enumerate() {
            timers.set_singleshot(vcpu as u32, v.singleshot_ns);
            timers.set_periodic(vcpu as u32, v.periodic_ns);
        }
        timers.set_watchdog(self.sched.watchdog_deadline());
        Ok(())
    }
}
