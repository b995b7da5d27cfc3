// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Xen for a harness VM: a domain of `xen-domain` on `xen-kvm-accel`,
//! built when the VM exists and wired into a [`Runner`](crate::Runner) by
//! [`Runner::xen`](crate::Runner::xen).

use std::sync::{Arc, OnceLock};

use vm_memory::GuestMemoryMmap;
use xen_domain::XenDomainBuilder;
use xen_hypercall::DomainConfig;
use xen_kvm_accel::{Caps, Path, PathChoice, XenKvm};

/// A step that adds the test's services or options to the domain builder.
pub type DomainStep =
    Box<dyn FnOnce(XenDomainBuilder<GuestMemoryMmap>) -> XenDomainBuilder<GuestMemoryMmap> + Send>;

/// A step run once the domain is on the VM, before any vCPU runs.
pub type ReadyStep = Box<dyn FnOnce(&XenKvm<GuestMemoryMmap>) -> Result<(), String> + Send>;

/// How a harness VM presents Xen: the domain's configuration, the path,
/// and what the test adds to the domain.
pub struct Xen {
    /// The domain's configuration (its vCPU count should match the
    /// runner's).
    pub config: DomainConfig,
    /// Which hypercall path to use (default: automatic).
    pub path: PathChoice,
    pub(crate) domain: Vec<DomainStep>,
    pub(crate) ready: Vec<ReadyStep>,
}

impl Xen {
    /// Xen as `xen-kvm-accel` presents it by default: every hypercall
    /// family, event channels whose upcalls go through the in-kernel
    /// irqchip, a calibrated TSC clock, PV timers on timerfds, vCPUs that
    /// really block in `SCHEDOP_block`/`poll`, automatic path choice.
    pub fn new(config: DomainConfig) -> Self {
        Self {
            config,
            path: PathChoice::Auto,
            domain: Vec::new(),
            ready: Vec::new(),
        }
    }

    /// Adds the test's services or options to the domain's builder (a
    /// console, a shutdown recorder, PCI INTx routing, ...).
    pub fn with_domain(
        mut self,
        step: impl FnOnce(XenDomainBuilder<GuestMemoryMmap>) -> XenDomainBuilder<GuestMemoryMmap>
        + Send
        + 'static,
    ) -> Self {
        self.domain.push(Box::new(step));
        self
    }

    /// Runs `step` once the domain is on the VM and before any vCPU runs
    /// (to bind back ends, inspect what KVM was given, ...).
    pub fn on_ready(
        mut self,
        step: impl FnOnce(&XenKvm<GuestMemoryMmap>) -> Result<(), String> + Send + 'static,
    ) -> Self {
        self.ready.push(Box::new(step));
        self
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
    let version = xen_cpuid::XenVersion::try_from(version).expect("a valid Xen version");
    DomainConfig::new(vcpus, version, map)
}

/// What a test can inspect after (or during) a run with Xen.
#[derive(Clone, Default)]
pub struct XenHandle(pub(crate) Arc<OnceLock<XenKvm<GuestMemoryMmap>>>);

impl XenHandle {
    /// The domain on its VM, once the VM exists.
    pub fn kvm(&self) -> Option<&XenKvm<GuestMemoryMmap>> {
        self.0.get()
    }

    /// The hypercall path the run took.
    pub fn path(&self) -> Option<Path> {
        self.kvm().map(XenKvm::path)
    }
}

/// The KVM capabilities of this host, for path decisions in tests.
pub fn caps() -> Caps {
    Caps::probe(&kvm_ioctls::Kvm::new().expect("/dev/kvm"))
}
