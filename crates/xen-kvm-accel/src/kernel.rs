// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The kernel fast paths of the kernel-intercept path: what of the domain's
//! Xen state is handed to KVM, under which `KVM_CAP_XEN_HVM` flag, and how
//! KVM's writers and ours share guest memory.
//!
//! # What is handed over ([`FastPaths`])
//!
//! | flag | handed to KVM | effect |
//! |---|---|---|
//! | `SHARED_INFO` (5.12) | `LONG_MODE`, `SHARED_INFO` (GFN), per-vCPU `VCPU_INFO` and `VCPU_TIME_INFO`, the global `UPCALL_VECTOR` | KVM keeps the pvclocks and wall clock, and injects the global callback vector itself, like an ExtINT: no LAPIC in-service bit is left behind (the no-EOI problem of the user-space path) |
//! | `RUNSTATE` (5.12) | per-vCPU `RUNSTATE_ADDR` | KVM accounts and writes runstate on every schedule in/out |
//! | `EVTCHN_SEND` (5.19) | `XEN_VERSION`, per-vCPU `VCPU_ID`, per-vCPU `UPCALL_VECTOR`, per-vCPU `TIMER` (the VIRQ_TIMER port) | `XENVER_version`, `set_timer_op` and the single-shot `vcpu_op`s never leave the kernel; [`crate::XenKvm::kernel_send`] raises ports through `KVM_XEN_HVM_EVTCHN_SEND` |
//!
//! | `EVTCHN_2LEVEL` (5.17) | `KVM_IRQ_ROUTING_XEN_EVTCHN` GSI routes | an eventfd of a VMM back end raises its guest port without leaving the kernel ([`crate::eventfd_ports`]), while KVM delivers the port's vCPU ([`KernelSync::kernel_delivers`]) |
//!
//! A kernel with only `HYPERCALL_MSR | INTERCEPT_HCALL | SHARED_INFO`
//! (Linux 5.12) gets the first row; everything else stays in user space.
//! The state is taken from the [`Domain`] after every hypercall that left
//! the kernel: VM attributes at once (any thread may issue them), per-vCPU
//! attributes on that vCPU's own thread (a vCPU ioctl waits for the vCPU to
//! leave `KVM_RUN`, so another thread must not issue it), at its next exit.
//!
//! The in-kernel timer is used only while the guest's upcall is a vector
//! (KVM cannot drive a GSI or INTx callback), the channels are 2-level
//! (KVM knows no FIFO) and the vCPU's vcpu_info is KVM's; otherwise its
//! port is set to 0 and an armed deadline moves back to the user-space
//! timers. `KVM_XEN_HVM_CONFIG_EVTCHN_SEND` itself (the promise to deliver
//! *every* event through KVM, which arms KVM's in-kernel `SCHEDOP_poll`) is
//! not set: `xen-evtchn` delivers its own events by writing guest memory,
//! so an in-kernel poller would sleep through a masked port raised by us.
//! Without the flag KVM answers `SCHEDOP_poll` as a yield, a spurious
//! wake-up the ABI allows.
//!
//! # Two writers of the same event bits
//!
//! With shared_info and vcpu_info handed over, KVM (its timer, its
//! `EVTCHN_SEND`) and `xen-evtchn` (everything else) both deliver 2-level
//! events into the same guest pages. They coexist because both follow
//! Xen's protocol with atomic read-modify-writes on the same words (KVM
//! through its kernel mapping of the page, we through the VMM's mapping of
//! the same RAM; x86 locked operations are coherent between them):
//!
//! 1. `test_and_set` the port's pending bit: whoever sets it owns the rest
//!    of the delivery, the other sees it already set and stops. An event is
//!    therefore never delivered twice, and never lost, because the owner
//!    goes on.
//! 2. if unmasked, `test_and_set` the selector bit in the vcpu_info;
//!    again only the one that set it continues, and
//! 3. sets `evtchn_upcall_pending` and injects.
//!
//! Injection is where the two differ and must agree: KVM injects the
//! global vector at every entry while `evtchn_upcall_pending` is set, so
//! when we set it on the target vCPU's own thread (inside a hypercall) KVM
//! injects it as the vCPU re-enters, and [`crate::KvmInjector`] sends nothing.
//! From another thread [`crate::KvmInjector`] kicks the vCPU's thread out
//! of `KVM_RUN` (or its halt) with a signal, so that KVM checks again as
//! it re-enters; only a vCPU whose thread is not known yet gets the vector
//! as an MSI (the guest may then see one extra, spurious upcall; the
//! in-service bit is cleared at its next exit as on the user-space path).
//! A per-vCPU vector
//! is an ordinary LAPIC interrupt for both writers.
//!
//! The pvclock in vcpu_info is also written by both: by us when the guest
//! registers an area, by KVM from then on. [`crate::XenKvmBuilder::build`]
//! sets kvmclock to the domain clock's system time, so both write the same
//! time base.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Weak};

use kvm_bindings::{
    KVM_XEN_HVM_CONFIG_EVTCHN_2LEVEL, KVM_XEN_HVM_CONFIG_EVTCHN_SEND,
    KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL, KVM_XEN_HVM_CONFIG_RUNSTATE,
    KVM_XEN_HVM_CONFIG_SHARED_INFO,
};
use vm_memory::GuestMemoryBackend;
use xen_abi::event_channel::EvtchnOp;
use xen_abi::hvm::CallbackVia;
use xen_abi::xen::{HYPERVISOR_EVENT_CHANNEL_OP, Virq};
use xen_hypercall::domain::GuestArea;
use xen_hypercall::guest::GuestVirt;
use xen_hypercall::time::{RUNSTATE_SIZE, RUNSTATE_SIZE_COMPAT, SplitArea};
use xen_hypercall::{Domain, HcResult, Hypercall, callback_via};

use crate::ioctls::{
    KVM_XEN_PRIO_2LEVEL, XenHvmAttr, XenHvmAttrKind, XenVcpuAttr, XenVcpuAttrKind, XenVcpuIoctls,
    XenVcpuRaw, XenVmIoctls, XenVmRaw,
};

/// The fast paths a kernel offers, from its `KVM_CAP_XEN_HVM` flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastPaths {
    /// `SHARED_INFO`: long mode, shared_info, vcpu_info, time info, the
    /// global upcall vector.
    pub shared_info: bool,
    /// `RUNSTATE`: the runstate area.
    pub runstate: bool,
    /// `EVTCHN_SEND`: Xen version, vCPU ids, per-vCPU vectors, timers and
    /// `KVM_XEN_HVM_EVTCHN_SEND`.
    pub evtchn_send: bool,
    /// `EVTCHN_2LEVEL`: `KVM_IRQ_ROUTING_XEN_EVTCHN` GSI routes.
    pub evtchn_2level: bool,
}

impl FastPaths {
    /// The fast paths `flags` advertise.
    pub fn from_flags(flags: u32) -> Self {
        Self {
            shared_info: flags & KVM_XEN_HVM_CONFIG_SHARED_INFO != 0,
            runstate: flags & KVM_XEN_HVM_CONFIG_RUNSTATE != 0,
            evtchn_send: flags & KVM_XEN_HVM_CONFIG_EVTCHN_SEND != 0,
            evtchn_2level: flags & KVM_XEN_HVM_CONFIG_EVTCHN_2LEVEL != 0,
        }
    }

    /// The `KVM_XEN_HVM_CONFIG` flags we set (see the module docs for why
    /// `EVTCHN_SEND` is not among them).
    pub fn config_flags(&self) -> u32 {
        KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL
    }
}

/// What KVM was last given, per vCPU (`None`: never set).
#[derive(Clone, Debug, Default)]
struct VcpuSync {
    id_set: bool,
    vcpu_info: Option<Option<u64>>,
    time_info: Option<Option<u64>>,
    runstate: Option<Option<u64>>,
    vector: Option<u8>,
    timer_port: Option<u32>,
    /// The runstate registration last seen in the domain, and its GPA if
    /// KVM can take it (translated on the registering vCPU's thread).
    runstate_seen: Option<GuestArea>,
    runstate_gpa: Option<u64>,
    /// The VIRQ_TIMER port bound for this vCPU (0: none).
    virq_timer: u32,
}

#[derive(Clone, Debug, Default)]
struct VmSync {
    long_mode: Option<bool>,
    shared_info: Option<Option<u64>>,
    vector: Option<u8>,
    fifo: bool,
}

/// Told when what KVM can deliver changed (see [`KernelSync::kernel_delivers`]).
pub(crate) trait DeliveryListener: Send + Sync {
    /// Re-evaluates the listener's kernel routes.
    fn delivery_changed(&self);
}

/// Keeps KVM's copy of the domain's Xen state in step with the domain.
pub struct KernelSync {
    paths: FastPaths,
    vm: Mutex<VmSync>,
    vcpus: Mutex<Vec<VcpuSync>>,
    /// Per vCPU: KVM injects the global vector for it (it owns the vector
    /// and has the vCPU's vcpu_info).
    global: Vec<AtomicBool>,
    /// Something listeners care about changed since the last flush.
    dirty: AtomicBool,
    listeners: Mutex<Vec<Weak<dyn DeliveryListener>>>,
}

impl std::fmt::Debug for KernelSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelSync")
            .field("paths", &self.paths)
            .field("vm", &self.vm)
            .field("vcpus", &self.vcpus)
            .finish_non_exhaustive()
    }
}

fn warn(what: &str, e: impl std::fmt::Display) {
    xen_abi::warn_limited!("KVM Xen fast path: {what}: {e}");
}

impl KernelSync {
    /// A synchroniser for `vcpus` vCPUs and the fast paths `paths`.
    pub fn new(paths: FastPaths, vcpus: u32) -> Self {
        Self {
            paths,
            vm: Mutex::new(VmSync::default()),
            vcpus: Mutex::new(vec![VcpuSync::default(); vcpus as usize]),
            global: (0..vcpus).map(|_| AtomicBool::new(false)).collect(),
            dirty: AtomicBool::new(false),
            listeners: Mutex::new(Vec::new()),
        }
    }

    /// Whether KVM itself delivers a 2-level event to Xen vCPU `vcpu`, so
    /// that a `KVM_IRQ_ROUTING_XEN_EVTCHN` route to it works: the kernel
    /// has `EVTCHN_2LEVEL`, the channels are 2-level, KVM has shared_info
    /// and the vCPU's vcpu_info, and injects its upcall (its per-vCPU
    /// vector, or the global vector). KVM cannot drive a GSI / INTx
    /// callback: with one, events must go through user space.
    pub fn kernel_delivers(&self, vcpu: u32) -> bool {
        if !self.paths.evtchn_2level || !self.paths.shared_info {
            return false;
        }
        {
            let vm = self.vm.lock().unwrap_or_else(|e| e.into_inner());
            if vm.fifo || !matches!(vm.shared_info, Some(Some(_))) {
                return false;
            }
        }
        let vcpus = self.vcpus.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = vcpus.get(vcpu as usize) else {
            return false;
        };
        matches!(s.vcpu_info, Some(Some(_)))
            && (s.vector.is_some_and(|v| v != 0) || self.kernel_injects_global(vcpu))
    }

    /// Registers `listener` for changes of what KVM delivers and of port
    /// bindings (held weakly).
    pub(crate) fn add_listener(&self, listener: Weak<dyn DeliveryListener>) {
        let mut l = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        l.retain(|w| w.strong_count() > 0);
        l.push(listener);
    }

    fn changed(&self) {
        self.dirty.store(true, Ordering::SeqCst);
    }

    /// Tells the listeners if anything changed since the last call. Called
    /// with no lock held, after each batch of syncs.
    pub fn flush_changes(&self) {
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return;
        }
        let listeners: Vec<_> = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for l in listeners {
            l.delivery_changed();
        }
    }

    /// The fast paths in use.
    pub fn paths(&self) -> FastPaths {
        self.paths
    }

    /// Whether KVM injects the global callback vector into `vcpu`.
    pub fn kernel_injects_global(&self, vcpu: u32) -> bool {
        self.global
            .get(vcpu as usize)
            .is_some_and(|g| g.load(Ordering::SeqCst))
    }

    /// Whether the channels switched to FIFO (KVM delivers 2-level only).
    pub fn fifo(&self) -> bool {
        self.vm.lock().unwrap_or_else(|e| e.into_inner()).fifo
    }

    /// Setup once per VM: the Xen version KVM answers `XENVER_version`
    /// with, and the VM attributes.
    pub fn setup_vm(&self, vm: &dyn XenVmRaw, domain: &Domain) {
        if self.paths.evtchn_send
            && let Err(e) =
                vm.xen_hvm_set_attr(XenHvmAttr::XenVersion(domain.config().version.raw()))
        {
            warn("XEN_VERSION", e);
        }
        self.sync_vm(vm, domain);
    }

    /// A hypercall exit in `longmode` (KVM's view of the caller): if it
    /// disagrees with the layout given to KVM, KVM may have latched it
    /// itself (on a write of the hypercall MSR); adopt KVM's value.
    pub fn observe_call_mode(&self, vm: &dyn XenVmRaw, domain: &Domain, longmode: bool) {
        if !self.paths.shared_info {
            return;
        }
        let mut st = self.vm.lock().unwrap_or_else(|e| e.into_inner());
        if st.long_mode.is_none_or(|lm| lm == longmode) {
            return;
        }
        match vm.xen_hvm_get_attr(XenHvmAttrKind::LongMode) {
            Ok(XenHvmAttr::LongMode(kernel)) if Some(kernel) != st.long_mode => {
                st.long_mode = Some(kernel);
                drop(st);
                domain.latch_mode(kernel);
            }
            Ok(_) => {}
            Err(e) => warn("LONG_MODE read", e),
        }
    }

    /// Records what a handled hypercall changed that the domain does not
    /// show: the VIRQ_TIMER port of each vCPU, and a switch to FIFO.
    /// `gv` reads the caller's (hostile) arguments; failures are ignored.
    pub fn note_call<M: GuestMemoryBackend>(
        &self,
        gv: &GuestVirt<'_, M>,
        call: &Hypercall,
        result: HcResult,
    ) {
        if call.nr != u64::from(HYPERVISOR_EVENT_CHANNEL_OP) || result.is_err() {
            return;
        }
        let Ok(op) = EvtchnOp::try_from(call.arg(0) as u32) else {
            return;
        };
        let arg = call.arg(1);
        if matches!(
            op,
            EvtchnOp::Close
                | EvtchnOp::BindVcpu
                | EvtchnOp::BindInterdomain
                | EvtchnOp::Reset
                | EvtchnOp::InitControl
        ) {
            // Port bindings or the ABI changed: kernel routes may be stale.
            self.changed();
        }
        let mut vcpus = self.vcpus.lock().unwrap_or_else(|e| e.into_inner());
        match op {
            EvtchnOp::BindVirq => {
                // struct evtchn_bind_virq { u32 virq, vcpu; u32 port (out) }
                if let Ok([virq, vcpu, port]) = gv.read_obj::<[u32; 3]>(arg)
                    && virq == Virq::Timer.raw()
                    && let Some(v) = vcpus.get_mut(vcpu as usize)
                {
                    v.virq_timer = port;
                }
            }
            EvtchnOp::Close => {
                if let Ok(port) = gv.read_obj::<u32>(arg) {
                    for v in vcpus.iter_mut().filter(|v| v.virq_timer == port) {
                        v.virq_timer = 0;
                    }
                }
            }
            EvtchnOp::Reset => vcpus.iter_mut().for_each(|v| v.virq_timer = 0),
            EvtchnOp::InitControl => {
                drop(vcpus);
                self.vm.lock().unwrap_or_else(|e| e.into_inner()).fifo = true;
            }
            _ => {}
        }
    }

    /// Brings the VM attributes in step: long mode first (it decides where
    /// KVM writes the wall clock), then shared_info, then the global vector.
    pub fn sync_vm(&self, vm: &dyn XenVmRaw, domain: &Domain) {
        if !self.paths.shared_info {
            return;
        }
        let (long_mode, gfn) = {
            let st = domain.lock();
            (st.long_mode, st.shared_info_gfn)
        };
        let vector = match callback_via(domain) {
            CallbackVia::Vector(v) => v,
            _ => 0,
        };
        let mut st = self.vm.lock().unwrap_or_else(|e| e.into_inner());
        if st.long_mode != Some(long_mode) {
            self.changed();
            st.long_mode = Some(long_mode);
            if let Err(e) = vm.xen_hvm_set_attr(XenHvmAttr::LongMode(long_mode)) {
                warn("LONG_MODE", e);
            }
        }
        if st.shared_info != Some(gfn) {
            self.changed();
            st.shared_info = Some(gfn);
            if let Err(e) = vm.xen_hvm_set_attr(XenHvmAttr::SharedInfoGfn(gfn)) {
                warn("SHARED_INFO", e);
            }
        }
        if st.vector != Some(vector) {
            self.changed();
            st.vector = Some(vector);
            if let Err(e) = vm.xen_hvm_set_attr(XenHvmAttr::UpcallVector(vector)) {
                warn("UPCALL_VECTOR", e);
                st.vector = Some(0);
            }
        }
        let owns = st.vector.is_some_and(|v| v != 0);
        drop(st);
        let vcpus = self.vcpus.lock().unwrap_or_else(|e| e.into_inner());
        for (i, v) in vcpus.iter().enumerate() {
            let has_info = matches!(v.vcpu_info, Some(Some(_)))
                && v.vcpu_info == Some(domain.vcpu_info_gpa(i as u32));
            self.global[i].store(owns && has_info, Ordering::SeqCst);
        }
    }

    /// Translates runstate areas registered since the last call, with the
    /// calling vCPU's paging (`gv`): KVM takes a GPA, and assumes a
    /// straddling area continues in the next guest frame, so an area whose
    /// frames are not contiguous, or whose layout is not the latched one,
    /// stays with the user-space writer.
    pub fn sync_areas<M: GuestMemoryBackend>(&self, gv: &GuestVirt<'_, M>, domain: &Domain) {
        if !self.paths.runstate {
            return;
        }
        let (areas, latched): (Vec<Option<GuestArea>>, bool) = {
            let st = domain.lock();
            (st.vcpus.iter().map(|v| v.runstate).collect(), st.long_mode)
        };
        let mut vcpus = self.vcpus.lock().unwrap_or_else(|e| e.into_inner());
        for (v, area) in vcpus.iter_mut().zip(areas) {
            if v.runstate_seen == area {
                continue;
            }
            v.runstate_seen = area;
            v.runstate_gpa = area.and_then(|a| runstate_gpa(gv, a, latched));
        }
    }

    /// Brings `vcpu_id`'s attributes in step; runs on that vCPU's thread.
    /// `rearm` receives a single-shot deadline KVM held when its timer is
    /// taken away, for the user-space timers.
    pub fn sync_vcpu(
        &self,
        vcpu: &dyn XenVcpuRaw,
        vcpu_id: u32,
        domain: &Domain,
        rearm: &dyn Fn(u32, u64),
    ) {
        if !self.paths.shared_info {
            return;
        }
        let (info, time, vector) = {
            let info = domain.vcpu_info_gpa(vcpu_id);
            let st = domain.lock();
            let Some(v) = st.vcpus.get(vcpu_id as usize) else {
                return;
            };
            (
                info,
                v.time_area.filter(|a| a.physical).map(|a| a.addr),
                v.upcall_vector.unwrap_or(0),
            )
        };
        let vector_callback = vector != 0 || matches!(callback_via(domain), CallbackVia::Vector(_));
        let fifo = self.fifo();
        let mut vcpus = self.vcpus.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = vcpus.get_mut(vcpu_id as usize) else {
            return;
        };
        let set = |attr: XenVcpuAttr| {
            if let Err(e) = vcpu.xen_vcpu_set_attr(attr) {
                warn(&format!("vCPU {vcpu_id} {}", attr.name()), e);
            }
        };
        if self.paths.evtchn_send && !s.id_set {
            s.id_set = true;
            set(XenVcpuAttr::VcpuId(vcpu_id));
        }
        if s.vcpu_info != Some(info) {
            self.changed();
            s.vcpu_info = Some(info);
            set(XenVcpuAttr::VcpuInfoGpa(info));
        }
        if s.time_info != Some(time) {
            s.time_info = Some(time);
            set(XenVcpuAttr::TimeInfoGpa(time));
        }
        if self.paths.runstate && s.runstate != Some(s.runstate_gpa) {
            s.runstate = Some(s.runstate_gpa);
            set(XenVcpuAttr::RunstateAddr(s.runstate_gpa));
        }
        if self.paths.evtchn_send {
            if s.vector != Some(vector) {
                self.changed();
                s.vector = Some(vector);
                set(XenVcpuAttr::UpcallVector(vector));
            }
            let port = if !fifo && vector_callback && info.is_some() {
                s.virq_timer
            } else {
                0
            };
            if s.timer_port.unwrap_or(0) != port {
                if port == 0 {
                    // Hand an armed deadline back to the user-space timers.
                    match vcpu.xen_vcpu_get_attr(XenVcpuAttrKind::Timer) {
                        Ok(XenVcpuAttr::Timer { expires_ns, .. }) if expires_ns != 0 => {
                            rearm(vcpu_id, expires_ns)
                        }
                        Ok(_) => {}
                        Err(e) => warn(&format!("vCPU {vcpu_id} TIMER read"), e),
                    }
                }
                s.timer_port = Some(port);
                set(XenVcpuAttr::Timer {
                    port,
                    priority: KVM_XEN_PRIO_2LEVEL,
                    expires_ns: 0,
                });
            }
        }
        drop(vcpus);
        let owns = self
            .vm
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .vector
            .is_some_and(|v| v != 0);
        if let Some(g) = self.global.get(vcpu_id as usize) {
            g.store(owns && info.is_some(), Ordering::SeqCst);
        }
    }
}

/// The GPA KVM can take for a runstate area, if any.
fn runstate_gpa<M: GuestMemoryBackend>(
    gv: &GuestVirt<'_, M>,
    area: GuestArea,
    latched: bool,
) -> Option<u64> {
    if area.long_mode != latched && area.physical {
        return None;
    }
    let size = if latched {
        RUNSTATE_SIZE
    } else {
        RUNSTATE_SIZE_COMPAT
    };
    let map = if area.physical {
        SplitArea::physical(area.addr)
    } else {
        SplitArea::translate(gv, area.addr, size, RUNSTATE_SIZE).ok()?
    };
    // KVM maps the rest of a straddling area from the next guest frame.
    let contiguous =
        map.first_len() >= RUNSTATE_SIZE || map.next_page == SplitArea::physical(map.gpa).next_page;
    contiguous.then_some(map.gpa)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::undocumented_unsafe_blocks)]
    use std::sync::Arc;

    use kvm_bindings::{
        KVM_XEN_ATTR_TYPE_LONG_MODE, KVM_XEN_ATTR_TYPE_SHARED_INFO,
        KVM_XEN_ATTR_TYPE_UPCALL_VECTOR, KVM_XEN_ATTR_TYPE_XEN_VERSION,
        KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADDR, KVM_XEN_VCPU_ATTR_TYPE_TIMER,
        KVM_XEN_VCPU_ATTR_TYPE_UPCALL_VECTOR, KVM_XEN_VCPU_ATTR_TYPE_VCPU_ID,
        KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO, KVM_XEN_VCPU_ATTR_TYPE_VCPU_TIME_INFO,
    };
    use vm_memory::{GuestAddress, GuestMemoryMmap};
    use xen_abi::hvm::HvmParam;
    use xen_abi::memory::{E820Entry, E820Type};
    use xen_hypercall::guest::PagingRegs;
    use xen_hypercall::{Abi, DomainConfig, Env};

    use super::*;
    use crate::ioctls::mock::Mock;

    const FLAGS_ALL: u32 = 0x1ff;
    /// Linux 5.12: HYPERCALL_MSR | INTERCEPT_HCALL | SHARED_INFO.
    const FLAGS_5_12: u32 = 0x7;

    fn domain(vcpus: u32) -> Arc<Domain> {
        let map = vec![E820Entry::new(0, 1 << 20, E820Type::Ram)];
        Arc::new(Domain::new(
            DomainConfig::new(vcpus, xen_cpuid::XenVersion::V4_17, map),
            Env::default(),
        ))
    }

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn hvm_types(m: &Mock) -> Vec<u32> {
        m.hvm_sets().iter().map(|a| u32::from(a.type_)).collect()
    }

    fn vcpu_types(m: &Mock) -> Vec<u32> {
        m.vcpu_sets().iter().map(|a| u32::from(a.type_)).collect()
    }

    fn set_callback_vector(d: &Domain, vector: u8) {
        // HVM_PARAM_CALLBACK_IRQ type 2 (vector) in bits 63:56.
        d.lock().params[HvmParam::CallbackIrq.raw() as usize] = 2 << 56 | u64::from(vector);
    }

    #[test]
    fn test_fast_paths_from_all_flags_enables_everything_but_sets_only_intercept() {
        let p = FastPaths::from_flags(FLAGS_ALL);
        assert!(p.shared_info && p.runstate && p.evtchn_send);
        assert_eq!(p.config_flags(), KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL);
    }

    #[test]
    fn test_fast_paths_from_5_12_flags_has_shared_info_only() {
        let p = FastPaths::from_flags(FLAGS_5_12);
        assert_eq!(
            p,
            FastPaths {
                shared_info: true,
                runstate: false,
                evtchn_send: false,
                evtchn_2level: false
            }
        );
        assert_eq!(FastPaths::from_flags(0x3), FastPaths::default());
    }

    #[test]
    fn test_setup_vm_all_flags_sets_version_long_mode_shinfo_vector() {
        let (m, d) = (Mock::default(), domain(1));
        KernelSync::new(FastPaths::from_flags(FLAGS_ALL), 1).setup_vm(&m, &d);
        assert_eq!(
            hvm_types(&m),
            [
                KVM_XEN_ATTR_TYPE_XEN_VERSION,
                KVM_XEN_ATTR_TYPE_LONG_MODE,
                KVM_XEN_ATTR_TYPE_SHARED_INFO,
                KVM_XEN_ATTR_TYPE_UPCALL_VECTOR
            ]
        );
        assert_eq!(unsafe { m.hvm_sets()[0].u.xen_version }, 0x4_0011);
        assert_eq!(unsafe { m.hvm_sets()[2].u.shared_info.gfn }, u64::MAX);
    }

    #[test]
    fn test_setup_vm_5_12_flags_sets_no_version() {
        let (m, d) = (Mock::default(), domain(1));
        KernelSync::new(FastPaths::from_flags(FLAGS_5_12), 1).setup_vm(&m, &d);
        assert!(!hvm_types(&m).contains(&KVM_XEN_ATTR_TYPE_XEN_VERSION));
    }

    #[test]
    fn test_setup_vm_without_shared_info_flag_sets_nothing() {
        let (m, d) = (Mock::default(), domain(1));
        KernelSync::new(FastPaths::from_flags(0x3), 1).setup_vm(&m, &d);
        assert!(m.hvm_sets().is_empty());
    }

    #[test]
    fn test_sync_vm_only_sends_changes() {
        let (m, d) = (Mock::default(), domain(1));
        let k = KernelSync::new(FastPaths::from_flags(FLAGS_ALL), 1);
        k.sync_vm(&m, &d);
        m.clear();
        k.sync_vm(&m, &d);
        assert!(m.hvm_sets().is_empty());
        d.lock().shared_info_gfn = Some(0x1f00);
        set_callback_vector(&d, 0xf3);
        k.sync_vm(&m, &d);
        assert_eq!(
            hvm_types(&m),
            [
                KVM_XEN_ATTR_TYPE_SHARED_INFO,
                KVM_XEN_ATTR_TYPE_UPCALL_VECTOR
            ]
        );
        assert_eq!(unsafe { m.hvm_sets()[0].u.shared_info.gfn }, 0x1f00);
        assert_eq!(unsafe { m.hvm_sets()[1].u.vector }, 0xf3);
    }

    #[test]
    fn test_sync_vm_gsi_callback_gives_kernel_no_vector() {
        let (m, d) = (Mock::default(), domain(1));
        let k = KernelSync::new(FastPaths::from_flags(FLAGS_ALL), 1);
        d.lock().params[HvmParam::CallbackIrq.raw() as usize] = 5; // GSI 5
        k.sync_vm(&m, &d);
        let v = m.hvm_sets()[2];
        assert_eq!(unsafe { v.u.vector }, 0);
        assert!(!k.kernel_injects_global(0));
    }

    #[test]
    fn test_observe_call_mode_adopts_kernel_latch() {
        let (m, d) = (Mock::default(), domain(1));
        let k = KernelSync::new(FastPaths::from_flags(FLAGS_ALL), 1);
        k.sync_vm(&m, &d);
        // The guest wrote the hypercall MSR from 32-bit code: KVM latched.
        m.xen_hvm_set_attr(XenHvmAttr::LongMode(false)).unwrap();
        k.observe_call_mode(&m, &d, false);
        assert!(!d.lock().long_mode);
        // A 32-bit call after that is no mismatch: no read.
        m.clear();
        k.observe_call_mode(&m, &d, false);
        assert!(m.calls.lock().unwrap().is_empty());
    }

    #[test]
    fn test_observe_call_mode_compat_call_does_not_flip_layout() {
        let (m, d) = (Mock::default(), domain(1));
        let k = KernelSync::new(FastPaths::from_flags(FLAGS_ALL), 1);
        k.sync_vm(&m, &d);
        k.observe_call_mode(&m, &d, false);
        assert!(d.lock().long_mode);
    }

    type Rearmed = Arc<Mutex<Vec<(u32, u64)>>>;

    fn timers_rearm() -> (Rearmed, impl Fn(u32, u64)) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (seen, move |v, t| s.lock().unwrap().push((v, t)))
    }

    #[test]
    fn test_sync_vcpu_all_flags_sets_id_info_time_vector() {
        let (m, d) = (Mock::default(), domain(2));
        let k = KernelSync::new(FastPaths::from_flags(FLAGS_ALL), 2);
        d.lock().shared_info_gfn = Some(0x10);
        {
            let mut st = d.lock();
            st.vcpus[1].upcall_vector = Some(0xf3);
            st.vcpus[1].time_area = Some(GuestArea {
                addr: 0x3000,
                physical: true,
                long_mode: true,
            });
        }
        let (_, rearm) = timers_rearm();
        k.sync_vcpu(&m, 1, &d, &rearm);
        assert_eq!(
            vcpu_types(&m),
            [
                KVM_XEN_VCPU_ATTR_TYPE_VCPU_ID,
                KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO,
                KVM_XEN_VCPU_ATTR_TYPE_VCPU_TIME_INFO,
                KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADDR,
                KVM_XEN_VCPU_ATTR_TYPE_UPCALL_VECTOR,
            ]
        );
        let s = m.vcpu_sets();
        assert_eq!(unsafe { s[0].u.vcpu_id }, 1);
        assert_eq!(unsafe { s[1].u.gpa }, 0x10040);
        assert_eq!(unsafe { s[2].u.gpa }, 0x3000);
        assert_eq!(unsafe { s[3].u.gpa }, u64::MAX);
        assert_eq!(unsafe { s[4].u.vector }, 0xf3);
        m.clear();
        k.sync_vcpu(&m, 1, &d, &rearm);
        assert!(m.vcpu_sets().is_empty());
    }

    #[test]
    fn test_sync_vcpu_5_12_flags_sets_areas_only() {
        let (m, d) = (Mock::default(), domain(1));
        let k = KernelSync::new(FastPaths::from_flags(FLAGS_5_12), 1);
        d.lock().shared_info_gfn = Some(0x10);
        d.lock().vcpus[0].upcall_vector = Some(0xf3);
        let (_, rearm) = timers_rearm();
        k.sync_vcpu(&m, 0, &d, &rearm);
        assert_eq!(
            vcpu_types(&m),
            [
                KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO,
                KVM_XEN_VCPU_ATTR_TYPE_VCPU_TIME_INFO
            ]
        );
    }

    fn bind_virq_timer(k: &KernelSync, mem: &GuestMemoryMmap, vcpu: u32, port: u32) {
        use vm_memory::Bytes;
        mem.write_obj([0u32, vcpu, port], GuestAddress(0x8000))
            .unwrap();
        let gv = GuestVirt::new(mem, PagingRegs::default());
        let call = Hypercall {
            abi: Abi::X86_64,
            cpl: 0,
            nr: u64::from(HYPERVISOR_EVENT_CHANNEL_OP),
            args: [EvtchnOp::BindVirq.raw() as u64, 0x8000, 0, 0, 0, 0],
        };
        k.note_call(&gv, &call, Ok(0));
    }

    #[test]
    fn test_timer_handed_to_kernel_after_virq_bind_with_vector_callback() {
        let (m, d, mem) = (Mock::default(), domain(1), mem());
        let k = KernelSync::new(FastPaths::from_flags(FLAGS_ALL), 1);
        d.lock().shared_info_gfn = Some(0x10);
        d.lock().vcpus[0].upcall_vector = Some(0xf3);
        bind_virq_timer(&k, &mem, 0, 5);
        let (rearmed, rearm) = timers_rearm();
        k.sync_vcpu(&m, 0, &d, &rearm);
        let t = *m.vcpu_sets().last().unwrap();
        assert_eq!(u32::from(t.type_), KVM_XEN_VCPU_ATTR_TYPE_TIMER);
        assert_eq!(
            unsafe { (t.u.timer.port, t.u.timer.priority) },
            (5, u32::MAX)
        );

        // FIFO: the timer leaves the kernel, its deadline moves to us.
        m.xen_vcpu_set_attr(XenVcpuAttr::Timer {
            port: 5,
            priority: u32::MAX,
            expires_ns: 777,
        })
        .unwrap();
        let gv = GuestVirt::new(&mem, PagingRegs::default());
        let init = Hypercall {
            abi: Abi::X86_64,
            cpl: 0,
            nr: u64::from(HYPERVISOR_EVENT_CHANNEL_OP),
            args: [EvtchnOp::InitControl.raw() as u64, 0x8000, 0, 0, 0, 0],
        };
        k.note_call(&gv, &init, Ok(0));
        m.clear();
        k.sync_vcpu(&m, 0, &d, &rearm);
        let t = *m.vcpu_sets().last().unwrap();
        assert_eq!(unsafe { t.u.timer.port }, 0);
        assert_eq!(*rearmed.lock().unwrap(), [(0, 777)]);
    }

    #[test]
    fn test_timer_stays_in_user_space_with_gsi_callback_or_old_kernel() {
        let (m, d, mem) = (Mock::default(), domain(1), mem());
        d.lock().shared_info_gfn = Some(0x10);
        d.lock().params[HvmParam::CallbackIrq.raw() as usize] = 5;
        let (_, rearm) = timers_rearm();
        let k = KernelSync::new(FastPaths::from_flags(FLAGS_ALL), 1);
        bind_virq_timer(&k, &mem, 0, 5);
        k.sync_vcpu(&m, 0, &d, &rearm);
        assert!(!vcpu_types(&m).contains(&KVM_XEN_VCPU_ATTR_TYPE_TIMER));

        let m = Mock::default();
        let k = KernelSync::new(FastPaths::from_flags(FLAGS_5_12), 1);
        set_callback_vector(&d, 0xf3);
        bind_virq_timer(&k, &mem, 0, 5);
        k.sync_vcpu(&m, 0, &d, &rearm);
        assert!(!vcpu_types(&m).contains(&KVM_XEN_VCPU_ATTR_TYPE_TIMER));
    }

    #[test]
    fn test_hostile_bind_virq_for_unknown_vcpu_is_ignored() {
        let (d, mem) = (domain(1), mem());
        let k = KernelSync::new(FastPaths::from_flags(FLAGS_ALL), 1);
        bind_virq_timer(&k, &mem, u32::MAX, 5);
        let gv = GuestVirt::new(&mem, PagingRegs::default());
        let call = Hypercall {
            abi: Abi::X86_64,
            cpl: 0,
            nr: u64::from(HYPERVISOR_EVENT_CHANNEL_OP),
            // An argument outside guest memory.
            args: [EvtchnOp::BindVirq.raw() as u64, u64::MAX - 3, 0, 0, 0, 0],
        };
        k.note_call(&gv, &call, Ok(0));
        let (m, (_, rearm)) = (Mock::default(), timers_rearm());
        k.sync_vcpu(&m, 7, &d, &rearm);
        assert!(m.vcpu_sets().is_empty());
    }

    #[test]
    fn test_global_vector_injected_by_kernel_once_vcpu_info_is_its() {
        let (m, d) = (Mock::default(), domain(1));
        let k = KernelSync::new(FastPaths::from_flags(FLAGS_5_12), 1);
        d.lock().shared_info_gfn = Some(0x10);
        set_callback_vector(&d, 0xf3);
        k.sync_vm(&m, &d);
        assert!(!k.kernel_injects_global(0));
        let (_, rearm) = timers_rearm();
        k.sync_vcpu(&m, 0, &d, &rearm);
        assert!(k.kernel_injects_global(0));
        assert!(!k.kernel_injects_global(9));
    }

    #[test]
    fn test_runstate_physical_area_handed_over_when_contiguous() {
        let (m, d, mem) = (Mock::default(), domain(1), mem());
        let k = KernelSync::new(FastPaths::from_flags(FLAGS_ALL), 1);
        d.lock().vcpus[0].runstate = Some(GuestArea {
            addr: 0x4ff1,
            physical: true,
            long_mode: true,
        });
        k.sync_areas(&GuestVirt::new(&mem, PagingRegs::default()), &d);
        let (_, rearm) = timers_rearm();
        k.sync_vcpu(&m, 0, &d, &rearm);
        let r = m
            .vcpu_sets()
            .into_iter()
            .find(|a| u32::from(a.type_) == KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADDR)
            .unwrap();
        assert_eq!(unsafe { r.u.gpa }, 0x4ff1);
    }

    #[test]
    fn test_runstate_of_other_layout_stays_in_user_space() {
        let (m, d, mem) = (Mock::default(), domain(1), mem());
        let k = KernelSync::new(FastPaths::from_flags(FLAGS_ALL), 1);
        d.lock().vcpus[0].runstate = Some(GuestArea {
            addr: 0x4000,
            physical: true,
            long_mode: false,
        });
        k.sync_areas(&GuestVirt::new(&mem, PagingRegs::default()), &d);
        let (_, rearm) = timers_rearm();
        k.sync_vcpu(&m, 0, &d, &rearm);
        let r = m
            .vcpu_sets()
            .into_iter()
            .find(|a| u32::from(a.type_) == KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADDR)
            .unwrap();
        assert_eq!(unsafe { r.u.gpa }, u64::MAX);
    }

    #[test]
    fn test_failed_set_is_not_retried_every_exit() {
        let (m, d) = (Mock::default(), domain(1));
        let k = KernelSync::new(FastPaths::from_flags(FLAGS_5_12), 1);
        d.lock().shared_info_gfn = Some(0xffff_ffff);
        *m.fail.lock().unwrap() = Some(14);
        k.sync_vm(&m, &d);
        m.clear();
        k.sync_vm(&m, &d);
        assert!(m.hvm_sets().is_empty());
    }
}
