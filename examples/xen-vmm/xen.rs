// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Everything Xen, behind the small interface the rest of the VMM calls:
//! the CPUID leaves (`xen-cpuid`), the domain with its dispatcher, event
//! channels, PV timers and upcalls (`xen-kvm-accel`'s `XenStack`), and
//! the hypercall path (`XenAccel`). The VMM hands it the VM, guest memory,
//! a way to stop the VM and a way to kick a vCPU out of `KVM_RUN`; it
//! hands back CPUID leaves, per-vCPU set-up, an exit handler for the
//! exits no device took, and the event channels for the monitor.

use std::sync::Arc;

use anyhow::{Context, Result};
use kvm_bindings::CpuId;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;
use xen_abi::sched::ShutdownReason;
use xen_cpuid::{XenCpuid, XenCpuidConfig, XenVersion};
use xen_evtchn::EventChannels;
use xen_hypercall::env::{Console, DomainEvents};
use xen_hypercall::{DomainConfig, Env, HcResult, Hypercall};
use xen_kvm_accel::stack::XenStack;
use xen_kvm_accel::{Caps, XenAccel, XenConfig};

use crate::boot::e820;
use crate::devices::print;
use crate::options::Options;
use crate::vm::{Stop, Stopper};

/// Makes vCPU n leave `KVM_RUN`, so that KVM injects a callback vector it
/// owns as the vCPU re-enters (kernel path).
pub(crate) type Kick = Box<dyn Fn(u32) + Send + Sync>;

/// Handles one exit of a vCPU that no device took; false if not Xen's.
pub(crate) type ExitHandler = Box<dyn FnMut(&mut VcpuFd) -> bool + Send>;

/// One domain's Xen, wired to the VM.
pub(crate) struct Xen {
    stack: XenStack<GuestMemoryMmap>,
    accel: Arc<XenAccel<GuestMemoryMmap>>,
    cpuid: XenCpuid,
}

/// Where the domain's `console_io` text and shutdown requests go.
struct Guest(Stopper);

impl Console for Guest {
    fn write(&self, bytes: &[u8]) {
        print(bytes);
    }
}

impl DomainEvents for Guest {
    fn shutdown(&self, reason: ShutdownReason, code: Option<u32>) {
        // No vCPU re-enters the guest after this, as Xen deschedules them.
        self.0.defer(Stop::Shutdown(reason, code));
    }
}

impl Xen {
    /// Builds the domain and attaches it to `vm` (before its vCPUs exist).
    /// `version` is the Xen to present; `o` says how (vCPUs, memory, path,
    /// trace, vAPIC flags).
    pub(crate) fn new(
        kvm: &Kvm,
        vm: &VmFd,
        mem: &GuestMemoryMmap,
        version: XenVersion,
        o: &Options,
        stop: Stopper,
        kick: Kick,
    ) -> Result<Self> {
        let guest = Arc::new(Guest(stop));
        let env = Env {
            console: guest.clone(),
            events: guest,
            ..Env::default()
        };
        let domain = DomainConfig::new(o.cpus, version.raw(), e820(o.memory));
        let stack = XenStack::new(domain, env, true).context("Xen setup")?;
        let config = XenConfig {
            path: o.accel,
            ..XenConfig::default()
        };
        let (domain, dispatcher) = (stack.domain.clone(), stack.dispatcher.clone());
        let mut accel = XenAccel::new(&Caps::probe(kvm), config, domain, dispatcher, mem.clone())?;
        accel.setup_vm(vm).context("Xen setup")?;
        stack.upcall.attach(kvm, vm).context("Xen upcalls")?;
        stack.upcall.set_kicker(kick);
        accel.set_upcall(stack.upcall.clone());
        if o.trace {
            accel.set_trace(Box::new(|v, call, r| {
                eprintln!("{}", trace_line(v, call, r))
            }));
        }
        stack.attach_memory(mem);
        let cpuid = XenCpuid::new(XenCpuidConfig {
            vapic: o.vapic,
            ..XenCpuidConfig::new(version)
        });
        let accel = Arc::new(accel);
        Ok(Self {
            stack,
            accel,
            cpuid,
        })
    }

    /// The hypercall path and why it was chosen.
    pub(crate) fn path(&self) -> String {
        format!("{:?} path: {}", self.accel.path(), self.accel.path_reason())
    }

    /// Replaces KVM's leaves in `cpuid` with Xen's, for vCPU `vcpu`.
    pub(crate) fn apply_cpuid(&self, cpuid: &mut CpuId, vcpu: u32) -> Result<()> {
        self.cpuid.apply(cpuid, vcpu).context("Xen CPUID leaves")
    }

    /// Sets up vCPU `id` once its registers are set (vCPU 0 calibrates
    /// Xen's clock).
    pub(crate) fn setup_vcpu(&self, vcpu: &mut VcpuFd, id: u32) -> Result<()> {
        self.accel.setup_vcpu(vcpu);
        if id == 0 {
            self.stack
                .clock
                .calibrate(vcpu)
                .context("TSC calibration")?;
        }
        Ok(())
    }

    /// The handler for vCPU `id`'s exits that no device took.
    pub(crate) fn exit_handler(&self, id: u32) -> ExitHandler {
        let accel = self.accel.clone();
        Box::new(move |vcpu| accel.handle_exit(vcpu, id))
    }

    /// The domain's event channels.
    pub(crate) fn channels(&self) -> Arc<EventChannels> {
        self.stack.channels.clone()
    }
}

/// Trace line for one hypercall: names, arguments, result.
fn trace_line(vcpu: u32, call: &Hypercall, r: HcResult) -> String {
    let (name, sub) = call.names();
    let name = name.map_or_else(
        || format!("hypercall {}", call.nr),
        |n| n.trim_start_matches("__HYPERVISOR_").to_owned(),
    );
    let sub = sub.map(|s| format!(" {s}")).unwrap_or_default();
    let args: Vec<String> = call.args.iter().map(|a| format!("{a:#x}")).collect();
    let result = match r {
        Ok(v) => format!("{v:#x}"),
        Err(e) => format!("-{} ({e:?})", e as i32),
    };
    format!(
        "xen-vmm: vcpu{vcpu} {name}{sub}({}) = {result}",
        args.join(", ")
    )
}
