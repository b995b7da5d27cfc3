// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The per-domain state the hypercall families share.
//!
//! Each family keeps its own private state; what several of them need
//! lives here behind one lock: where shared_info is, which layout is
//! latched (64- or 32-bit, `xen-abi.md` §1.2), the HVM parameters, each
//! vCPU's registered areas and timers, the latched shutdown code.
//! The lock is never held across a guest-memory access that can fault
//! back into the VMM or across `KVM_RUN`.

use std::sync::{Mutex, MutexGuard};

use xen_abi::features::XenFeatures;
use xen_abi::hvm::{HVM_EVTCHN_UPCALL_VECTOR_MIN, HVM_NR_PARAMS};
use xen_abi::memory::{E820Entry, E820Type};
use xen_abi::vcpu::VCPU_PERIODIC_TIMER_MIN_NS;
use xen_abi::x86::PAGE_SIZE;
use xen_abi::xen::{DomId, HVM_MAX_VCPUS, XEN_LEGACY_MAX_VCPUS};

use xen_cpuid::{TscConfig, XenCpuid, XenCpuidConfig, XenVersion};

use crate::env::Env;
use crate::memory::{DEFAULT_MAX_GRANT_FRAMES, GrantFrames};
use crate::vcpu::PERIODIC_TIMER_MAX_NS;

/// Bytes of one `vcpu_info` inside shared_info.
pub const VCPU_INFO_SIZE: u64 = 64;

/// How the VMM describes the domain (configuration, not state: it is not
/// part of a snapshot; the destination VMM is configured the same way).
#[derive(Clone, Debug)]
pub struct DomainConfig {
    /// The guest's domain id (never 0, which is the VMM's side).
    pub domid: DomId,
    /// Number of vCPUs; Xen vCPU ids are `0..vcpus`.
    pub vcpus: u32,
    /// The Xen version the guest sees (`XENVER_version`, the CPUID leaves).
    pub version: XenVersion,
    /// `XENVER_extraversion`, e.g. ".0".
    pub extraversion: String,
    /// The feature bits `XENVER_get_features` reports (submap 0).
    pub features: XenFeatures,
    /// The guest's memory map (`XENMEM_memory_map`).
    pub memory_map: Vec<E820Entry>,
    /// Most pages the domain may hold (`XENMEM_maximum_reservation`).
    pub max_pages: u64,
    /// Domain handle (`XENVER_guest_handle`).
    pub uuid: [u8; 16],
    /// Xen command line (`XENVER_commandline`).
    pub commandline: String,
    /// Grant-table frames the guest may map (Xen's `max_grant_frames`;
    /// the platform device's BAR must hold them).
    pub max_grant_frames: u32,
    /// Highest event-channel port the toolstack allows (Xen's
    /// `max_evtchn_port`).
    pub max_evtchn_port: u32,
    /// PIRQs the guest may bind.
    pub nr_pirqs: u32,
    /// Hyper-V is offered beside Xen: the Xen CPUID leaves move to
    /// 0x40000100 and the hypercall MSR to 0x40000200.
    pub hyperv: bool,
    /// Advertise virtualised APIC access in the HVM CPUID leaf.
    pub vapic: bool,
    /// What the TSC CPUID leaf reports.
    pub tsc: TscConfig,
}

impl DomainConfig {
    /// A domain of `vcpus` vCPUs claiming Xen `version` with this memory
    /// map; features are those xen-on-kvm implements, including
    /// `XENFEAT_hvm_callback_vector` (event-channel upcalls through a
    /// vector, which needs xen-evtchn and an upcall injector such as
    /// xen-kvm-accel's: a VMM without them should clear that bit, or Linux
    /// waits for upcalls that never come).
    pub fn new(vcpus: u32, version: XenVersion, memory_map: Vec<E820Entry>) -> Self {
        let ram_pages = memory_map
            .iter()
            .filter(|e| e.kind() == Ok(E820Type::Ram))
            .map(|e| e.size / PAGE_SIZE)
            .sum();
        Self {
            domid: 1,
            vcpus,
            version,
            extraversion: ".0".into(),
            features: XenFeatures::WRITABLE_PAGE_TABLES
                | XenFeatures::AUTO_TRANSLATED_PHYSMAP
                | XenFeatures::HVM_CALLBACK_VECTOR
                | XenFeatures::HVM_SAFE_PVCLOCK,
            memory_map,
            max_pages: ram_pages,
            uuid: [0; 16],
            commandline: String::new(),
            max_grant_frames: DEFAULT_MAX_GRANT_FRAMES,
            max_evtchn_port: xen_evtchn::Config::new(1).max_evtchn_port,
            nr_pirqs: xen_evtchn::DEFAULT_NR_PIRQS,
            hyperv: false,
            vapic: false,
            tsc: TscConfig::default(),
        }
    }

    /// The Xen CPUID leaves this domain presents (base 0x40000000, or
    /// 0x40000100 beside Hyper-V), derived from this configuration.
    pub fn cpuid(&self) -> XenCpuid {
        XenCpuid::new(XenCpuidConfig {
            version: self.version,
            vapic: self.vapic,
            hyperv: self.hyperv,
            domid: self.domid,
            tsc: self.tsc,
        })
    }

    /// The MSR whose write installs the hypercall page (0x40000000, or
    /// 0x40000200 beside Hyper-V), as the CPUID leaves advertise it.
    pub fn hypercall_msr(&self) -> u32 {
        self.cpuid().hypercall_msr()
    }

    /// The event channels' configuration: domain id and limits.
    pub fn evtchn(&self) -> xen_evtchn::Config {
        xen_evtchn::Config {
            domid: self.domid,
            max_evtchn_port: self.max_evtchn_port,
            nr_pirqs: self.nr_pirqs,
        }
    }

    /// The grant-frame limits of `memory_op`.
    pub fn grant_frames(&self) -> GrantFrames {
        GrantFrames::new(self.max_grant_frames)
    }

    /// Checks the configuration as Xen's toolstack would refuse it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=HVM_MAX_VCPUS).contains(&self.vcpus) {
            return Err(ConfigError::Vcpus(self.vcpus));
        }
        self.evtchn()
            .validate()
            .map_err(|_| ConfigError::Domid(self.domid))?;
        if self
            .memory_map
            .iter()
            .all(|e| e.kind() != Ok(E820Type::Ram))
        {
            return Err(ConfigError::NoRam);
        }
        if !(1..=MAX_GRANT_FRAMES_LIMIT).contains(&self.max_grant_frames) {
            return Err(ConfigError::GrantFrames(self.max_grant_frames));
        }
        Ok(())
    }
}

/// Most grant-table frames a domain may be configured with (Xen's
/// `opt_max_grant_frames` ceiling for a domU is far lower; this bounds the
/// VMM's tables).
pub const MAX_GRANT_FRAMES_LIMIT: u32 = 4096;

/// A [`DomainConfig`] that no domain can be built from.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// vCPUs outside 1 to `HVM_MAX_VCPUS`.
    #[error("A domain has 1 to {HVM_MAX_VCPUS} vCPUs, not {0}.")]
    Vcpus(u32),
    /// A reserved domain id, or 0 (the VMM's own side).
    #[error("Domain id {0:#x} cannot be a guest's.")]
    Domid(DomId),
    /// The memory map has no RAM.
    #[error("The memory map has no RAM.")]
    NoRam,
    /// Grant frames outside 1 to [`MAX_GRANT_FRAMES_LIMIT`].
    #[error("A domain has 1 to {MAX_GRANT_FRAMES_LIMIT} grant frames, not {0}.")]
    GrantFrames(u32),
}

/// Why a [`DomainState`] cannot be restored into a [`Domain`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The state describes another number of vCPUs.
    #[error("The state has {state} vCPUs, the domain {config}.")]
    VcpuCount {
        /// vCPUs in the state.
        state: usize,
        /// vCPUs in the configuration.
        config: u32,
    },
    /// The HVM parameter table has the wrong length.
    #[error("The state has {0} HVM parameters.")]
    Params(usize),
    /// A vCPU's registration is one no hypercall would have accepted.
    #[error("vCPU {vcpu}: {what}.")]
    Vcpu {
        /// The vCPU.
        vcpu: usize,
        /// What is wrong.
        what: &'static str,
    },
}

/// A guest area registered by address (runstate, secondary time info).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GuestArea {
    /// The address the guest gave (linear, re-translated on each update as
    /// Xen does, or physical for the `*_phys_area` ops).
    pub addr: u64,
    /// Whether `addr` is guest-physical.
    pub physical: bool,
    /// Whether the guest registered it with the 64-bit layout.
    pub long_mode: bool,
}

/// What one vCPU has registered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct VcpuState {
    /// GPA of the vcpu_info registered with `VCPUOP_register_vcpu_info`.
    pub vcpu_info_gpa: Option<u64>,
    /// Per-vCPU upcall vector (`HVMOP_set_evtchn_upcall_vector`).
    pub upcall_vector: Option<u8>,
    /// Runstate area.
    pub runstate: Option<GuestArea>,
    /// Secondary vcpu_time_info area.
    pub time_area: Option<GuestArea>,
    /// Whether the vCPU is up (`VCPUOP_is_up`).
    pub up: bool,
    /// Armed single-shot deadline (system time, ns).
    pub singleshot_ns: Option<u64>,
    /// Periodic timer period (ns).
    pub periodic_ns: Option<u64>,
}

/// The shared, lock-protected part of a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DomainState {
    /// GFN where the guest placed shared_info (`XENMEM_add_to_physmap`).
    pub shared_info_gfn: Option<u64>,
    /// The latched shared_info layout: true = 64-bit (the default).
    pub long_mode: bool,
    /// HVM parameters by index.
    pub params: Vec<u64>,
    /// Per-vCPU state, indexed by Xen vCPU id.
    pub vcpus: Vec<VcpuState>,
    /// `SCHEDOP_shutdown_code` (first one wins).
    pub shutdown_code: Option<u32>,
    /// Enabled `vm_assist` types (bit per type).
    pub vm_assist: u64,
}

/// One domain: its configuration, shared state and environment.
#[derive(Debug)]
pub struct Domain {
    config: DomainConfig,
    state: Mutex<DomainState>,
    /// The VMM's side.
    pub env: Env,
}

impl Domain {
    /// A fresh domain: every vCPU up, nothing registered.
    pub fn new(config: DomainConfig, env: Env) -> Self {
        let state = DomainState {
            shared_info_gfn: None,
            long_mode: true,
            params: vec![0; HVM_NR_PARAMS as usize],
            vcpus: (0..config.vcpus)
                .map(|_| VcpuState {
                    up: true,
                    ..Default::default()
                })
                .collect(),
            shutdown_code: None,
            vm_assist: 0,
        };
        Self {
            config,
            state: Mutex::new(state),
            env,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DomainConfig {
        &self.config
    }

    /// Locks the shared state for the hypercall families. A poisoned lock
    /// (a panic elsewhere) is recovered: the state is plain data and stays
    /// consistent per field. Never hold it across a guest-memory access that
    /// can fault back into the VMM or across `KVM_RUN`.
    pub fn lock(&self) -> MutexGuard<'_, DomainState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the shared state (for snapshots).
    pub fn state(&self) -> DomainState {
        self.lock().clone()
    }

    /// Replaces the shared state (restore from a snapshot). The vCPU count
    /// and the parameter table must match the configuration, and each
    /// vCPU's upcall vector and timer period must be ones `hvm_op` and
    /// `vcpu_op` accept (a 1 ns period would spin the timers).
    pub fn restore(&self, state: DomainState) -> Result<(), StateError> {
        for (vcpu, v) in state.vcpus.iter().enumerate() {
            if v.upcall_vector
                .is_some_and(|x| x < HVM_EVTCHN_UPCALL_VECTOR_MIN)
            {
                let what = "upcall vector below 0x10";
                return Err(StateError::Vcpu { vcpu, what });
            }
            let periods = VCPU_PERIODIC_TIMER_MIN_NS..=PERIODIC_TIMER_MAX_NS;
            if v.periodic_ns.is_some_and(|p| !periods.contains(&p)) {
                let what = "periodic timer period out of range";
                return Err(StateError::Vcpu { vcpu, what });
            }
        }
        if state.vcpus.len() != self.config.vcpus as usize {
            return Err(StateError::VcpuCount {
                state: state.vcpus.len(),
                config: self.config.vcpus,
            });
        }
        if state.params.len() != HVM_NR_PARAMS as usize {
            return Err(StateError::Params(state.params.len()));
        }
        *self.lock() = state;
        Ok(())
    }

    /// Whether `vcpu` names one of this domain's vCPUs.
    pub fn has_vcpu(&self, vcpu: u64) -> bool {
        vcpu < u64::from(self.config.vcpus)
    }

    /// Latches the shared_info layout from the caller's mode (hypercall
    /// page write, `HVM_PARAM_CALLBACK_IRQ`).
    pub fn latch_mode(&self, long_mode: bool) {
        self.lock().long_mode = long_mode;
    }

    /// GPA of shared_info, if placed.
    pub fn shared_info_gpa(&self) -> Option<u64> {
        self.lock()
            .shared_info_gfn
            .and_then(|g| g.checked_mul(PAGE_SIZE))
    }

    /// GPA of `vcpu`'s vcpu_info: the registered one, else its slot in
    /// shared_info for vCPUs below 32, else none.
    pub fn vcpu_info_gpa(&self, vcpu: u32) -> Option<u64> {
        let st = self.lock();
        let v = st.vcpus.get(vcpu as usize)?;
        v.vcpu_info_gpa.or_else(|| {
            (vcpu < XEN_LEGACY_MAX_VCPUS as u32)
                .then_some(())
                .and(st.shared_info_gfn)
                .and_then(|g| g.checked_mul(PAGE_SIZE))
                .map(|base| base + u64::from(vcpu) * VCPU_INFO_SIZE)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(vcpus: u32) -> Domain {
        let map = vec![E820Entry::new(0, 64 << 20, E820Type::Ram)];
        Domain::new(
            DomainConfig::new(vcpus, XenVersion::V4_10, map),
            Env::default(),
        )
    }

    #[test]
    fn test_config_max_pages_counts_ram_only() {
        let map = vec![
            E820Entry::new(0, 0xa0000, E820Type::Ram),
            E820Entry::new(0xf0000, 0x10000, E820Type::Reserved),
            E820Entry::new(1 << 20, 15 << 20, E820Type::Ram),
        ];
        assert_eq!(
            DomainConfig::new(1, XenVersion::V4_10, map).max_pages,
            0xa0 + 15 * 256
        );
    }

    #[test]
    fn test_vcpu_info_gpa_defaults_to_shared_info_slot() {
        let d = domain(40);
        assert_eq!(d.vcpu_info_gpa(0), None);
        d.lock().shared_info_gfn = Some(0x10);
        assert_eq!(d.vcpu_info_gpa(0), Some(0x10000));
        assert_eq!(d.vcpu_info_gpa(31), Some(0x10000 + 31 * 64));
        assert_eq!(d.vcpu_info_gpa(32), None);
        assert_eq!(d.vcpu_info_gpa(40), None);
        d.lock().vcpus[32].vcpu_info_gpa = Some(0x5040);
        assert_eq!(d.vcpu_info_gpa(32), Some(0x5040));
    }

    #[test]
    fn test_restore_rejects_mismatched_vcpu_count() {
        let a = domain(2);
        let b = domain(3);
        a.lock().shutdown_code = Some(7);
        assert_eq!(
            b.restore(a.state()),
            Err(StateError::VcpuCount {
                state: 2,
                config: 3
            })
        );
        let c = domain(2);
        assert_eq!(c.restore(a.state()), Ok(()));
        assert_eq!(c.state(), a.state());
    }

    #[test]
    fn test_restore_rejects_registrations_no_hypercall_accepts() {
        let a = domain(2);
        let refused = |edit: fn(&mut VcpuState)| {
            let mut st = a.state();
            edit(&mut st.vcpus[1]);
            matches!(a.restore(st), Err(StateError::Vcpu { vcpu: 1, .. }))
        };
        assert!(refused(|v| v.upcall_vector = Some(0x0f)));
        assert!(refused(|v| v.periodic_ns = Some(1)));
        assert!(refused(|v| v.periodic_ns = Some(PERIODIC_TIMER_MAX_NS + 1)));
        let mut st = a.state();
        st.vcpus[1].upcall_vector = Some(0x10);
        st.vcpus[1].periodic_ns = Some(VCPU_PERIODIC_TIMER_MIN_NS);
        assert_eq!(a.restore(st.clone()), Ok(()));
        assert_eq!(a.state(), st);
    }

    #[test]
    fn test_new_domain_has_every_vcpu_up_and_64_bit_layout() {
        let d = domain(4);
        let s = d.state();
        assert!(s.long_mode);
        assert!(s.vcpus.iter().all(|v| v.up));
        assert!(d.has_vcpu(3) && !d.has_vcpu(4));
    }
}
