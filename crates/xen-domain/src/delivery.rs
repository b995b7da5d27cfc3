// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Where an event upcall goes: Xen's routing, decided here, and the VMM's
//! interrupt controller, which only injects.
//!
//! The event channels call [`Upcall::raise`] when a vCPU's
//! `evtchn_upcall_pending` goes from 0 to 1. Xen then picks the route in a
//! fixed order (`xen-abi.md` §4.1), which is pure Xen semantics and needs
//! no hypervisor, so it lives in this crate:
//!
//! 1. a per-vCPU vector (`HVMOP_set_evtchn_upcall_vector`), an edge LAPIC
//!    interrupt the guest acknowledges with an EOI;
//! 2. else the domain's `HVM_PARAM_CALLBACK_IRQ`: a global vector injected
//!    like ExtINT (no EOI), or, for vCPU 0 only, a GSI or the INTx line of a
//!    PCI device (level, asserted while vCPU 0's `evtchn_upcall_pending` is
//!    set);
//! 3. else nothing: the bits stay pending until the guest looks.
//!
//! The VMM's [`UpcallInjector`] receives the resolved [`UpcallRoute`]. Every
//! raise also wakes the vCPU if it is parked in `SCHEDOP_block`/`poll`
//! ([`crate::Blocker`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use xen_abi::hvm::{CallbackVia, IntxPin};
use xen_evtchn::Upcall;
use xen_hypercall::physdev::NR_GSIS;
use xen_hypercall::{Domain, HvmEvents, callback_via};

use crate::Blocker;

/// The route of one vCPU's upcall, as the guest configured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpcallRoute {
    /// A per-vCPU vector: an edge interrupt in that vCPU's local APIC, which
    /// the guest EOIs.
    VcpuVector(u8),
    /// The global callback vector (`CALLBACK_IRQ` type 2): Xen injects it
    /// directly, like ExtINT, and the guest never EOIs it.
    CallbackVector(u8),
    /// A level line to the I/O APIC, only ever for vCPU 0: `CALLBACK_IRQ`
    /// type 0 (this GSI, below the I/O APIC's 24 pins) or type 1 (a PCI INTx pin, resolved to its GSI by
    /// the VMM's [`PciIntxRouting`]). It must stay asserted while
    /// [`crate::XenDomain::upcall_pending`] of vCPU 0 is true, and drop when
    /// the guest clears it.
    Line(u32),
}

/// The VMM's interrupt controller, as the domain's upcalls need it.
///
/// Called without any lock of the domain held, from whichever thread
/// raised the event (a vCPU thread inside a hypercall, a timer, a back
/// end), so it may call back into the domain.
pub trait UpcallInjector: Send + Sync {
    /// Injects `vcpu`'s upcall by `route`.
    fn inject(&self, vcpu: u32, route: UpcallRoute);
}

/// An injector that injects nothing: events stay pending in guest memory
/// (a domain without an interrupt controller, or a test).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoInjector;

impl UpcallInjector for NoInjector {
    fn inject(&self, _vcpu: u32, _route: UpcallRoute) {}
}

/// The GSI the INTx pin of PCI device `device` (bus 0) is wired to in the
/// VMM, for `CALLBACK_IRQ` type 1. Without one such a callback stays
/// silent.
pub type PciIntxRouting = Arc<dyn Fn(u8, IntxPin) -> Option<u32> + Send + Sync>;

/// The route of `vcpu`'s upcall now, if it has one.
pub(crate) fn route(
    domain: &Domain,
    intx: Option<&PciIntxRouting>,
    vcpu: u32,
) -> Option<UpcallRoute> {
    let per_vcpu = domain
        .lock()
        .vcpus
        .get(vcpu as usize)
        .and_then(|v| v.upcall_vector);
    if let Some(v) = per_vcpu {
        return Some(UpcallRoute::VcpuVector(v));
    }
    match callback_via(domain).limit_gsi(NR_GSIS) {
        CallbackVia::Vector(v) => Some(UpcallRoute::CallbackVector(v)),
        CallbackVia::Gsi(gsi) if vcpu == 0 => Some(UpcallRoute::Line(u32::from(gsi))),
        CallbackVia::PciIntx { device, pin, .. } if vcpu == 0 => {
            intx.and_then(|f| f(device, pin)).map(UpcallRoute::Line)
        }
        _ => None,
    }
}

/// Whether `vcpu`'s `evtchn_upcall_pending` is set in guest memory (false
/// while it has no vcpu_info, or one outside RAM).
pub(crate) fn upcall_pending<M: GuestMemoryBackend>(domain: &Domain, mem: &M, vcpu: u32) -> bool {
    // Byte 0 of vcpu_info is evtchn_upcall_pending.
    domain
        .vcpu_info_gpa(vcpu)
        .and_then(|gpa| mem.load::<u8>(GuestAddress(gpa), Ordering::Acquire).ok())
        .is_some_and(|p| p != 0)
}

/// The domain's [`Upcall`]: routes, injects, wakes.
pub(crate) struct Delivery {
    pub(crate) domain: Arc<Domain>,
    pub(crate) injector: Arc<dyn UpcallInjector>,
    pub(crate) blocker: Arc<Blocker>,
    pub(crate) intx: Option<PciIntxRouting>,
}

impl Delivery {
    /// Raises `vcpu`'s upcall by its current route.
    pub(crate) fn raise(&self, vcpu: u32) {
        if let Some(r) = route(&self.domain, self.intx.as_ref(), vcpu) {
            self.injector.inject(vcpu, r);
        }
        self.blocker.wake(vcpu);
    }
}

impl Upcall for Delivery {
    fn raise(&self, vcpu: u32) {
        Delivery::raise(self, vcpu);
    }

    fn port_raised(&self, _port: u32) {
        // A poller may wait on this port from any vCPU.
        self.blocker.wake_all();
    }
}

/// What `hvm_op` tells the domain: a new per-vCPU vector re-evaluates that
/// vCPU's pending upcall. `VCPUOP_register_vcpu_info` sets
/// `evtchn_upcall_pending`, and events may have arrived before the guest
/// had a vector; without this the next send would find the flag set, raise
/// nothing, and the guest would wait forever. Xen raises the vector
/// unconditionally here (`hvm_assert_evtchn_irq`); KVM's kernel path only
/// while `evtchn_upcall_pending` is set, and so do we, so no guest sees a
/// gratuitous upcall.
pub(crate) struct UpcallVectorEvents<M> {
    pub(crate) delivery: Arc<Delivery>,
    pub(crate) mem: M,
}

impl<M: GuestMemoryBackend + Send + Sync> HvmEvents for UpcallVectorEvents<M> {
    fn upcall_vector_changed(&self, vcpu: u32, _vector: u8) {
        if upcall_pending(&self.delivery.domain, &self.mem, vcpu) {
            self.delivery.raise(vcpu);
        }
    }
}
