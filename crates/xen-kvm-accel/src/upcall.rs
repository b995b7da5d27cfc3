// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Event-channel upcalls through KVM's in-kernel irqchip: the KVM
//! [`UpcallInjector`] of a domain.
//!
//! The domain decides the route (`xen_domain::UpcallRoute`, `xen-abi.md`
//! §4.1); this module injects it:
//!
//! 1. **Per-vCPU vector**: an edge interrupt in the vCPU's local APIC; the
//!    guest EOIs it. We send an MSI to its APIC (APIC id = vCPU index).
//! 2. **Global callback vector**: Xen injects it directly, like an ExtINT,
//!    and the guest never EOIs. Through the in-kernel LAPIC we can only send
//!    an MSI, which sets the vector's in-service bit; since no EOI ever
//!    clears it, the vCPU's exit handler clears it
//!    ([`crate::XenVcpu::before_run`]: KVM_GET_LAPIC/SET_LAPIC) once the
//!    vector has left the request register. Until then lower-priority
//!    interrupts stay blocked on that vCPU. On the kernel path KVM owns the
//!    vector ([`crate::kernel`]) and injects it at every entry while
//!    `evtchn_upcall_pending` is set, leaving no in-service bit: an upcall
//!    raised on the target vCPU's own thread (inside one of its hypercalls)
//!    then needs nothing from us, and one raised from another thread needs
//!    the vCPU to re-enter, which a **kick** does (a no-op signal to its
//!    thread, registered by the exit handler; without one the MSI is the
//!    kick, and the guest sees the vector twice).
//! 3. **Line** (GSI or PCI INTx, vCPU 0 only): level, asserted while vCPU
//!    0's `evtchn_upcall_pending` is set. Xen re-evaluates it on every VM
//!    exit, the guest's EOI included, so a handler that clears the flag and
//!    then EOIs takes exactly one interrupt. KVM's in-kernel IOAPIC handles
//!    the EOI without telling user space, so the line is an irqfd with a
//!    **resample** eventfd (`KVM_IRQFD_FLAG_RESAMPLE`): a raise writes the
//!    irqfd (KVM asserts the line); at the guest's EOI KVM deasserts it and
//!    signals the resample eventfd, and [`LineEvents`] (a subscriber on the
//!    VMM's event loop) re-asserts it only while vCPU 0's
//!    `evtchn_upcall_pending` is still 1. One event, one interrupt; no
//!    storm. Where KVM refuses a resampling irqfd (split or no in-kernel
//!    irqchip), the line falls back to `KVM_IRQ_LINE`, dropped by vCPU 0's
//!    exit handler once the guest has cleared the flag. The irqfd needs the
//!    GSI's irqchip route: keep it when changing the routing table
//!    ([`crate::routing`]).

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use event_manager::{EventOps, Events, MutEventSubscriber};
use kvm_bindings::{
    KVM_IRQFD_FLAG_DEASSIGN, KVM_IRQFD_FLAG_RESAMPLE, KVM_VCPUEVENT_VALID_SHADOW, kvm_msi,
};
use kvm_ioctls::{VcpuFd, VmFd};
use vm_memory::GuestMemoryBackend;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;
use xen_domain::{UpcallInjector, UpcallRoute, XenDomain};

use crate::kernel::KernelSync;
use crate::routing::{IrqRoutingRaw, irqfd_call};
use crate::{Error, lock};

/// LAPIC MSI address base.
const MSI_ADDR: u32 = 0xfee0_0000;
/// Offset of the in-service register in `kvm_lapic_state.regs`.
const APIC_ISR: usize = 0x100;
/// Offset of the interrupt request register.
const APIC_IRR: usize = 0x200;
/// No GSI asserted.
const NO_GSI: u32 = u32::MAX;

thread_local! {
    /// The Xen vCPU whose hypercall this thread is handling, if any.
    static CURRENT_VCPU: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Marks this thread as handling a hypercall of `vcpu` until the guard
/// is dropped.
pub(crate) struct CurrentVcpu;

impl CurrentVcpu {
    pub(crate) fn enter(vcpu: u32) -> Self {
        CURRENT_VCPU.with(|c| c.set(Some(vcpu)));
        CurrentVcpu
    }
}

impl Drop for CurrentVcpu {
    fn drop(&mut self) {
        CURRENT_VCPU.with(|c| c.set(None));
    }
}

/// Makes a vCPU thread leave `KVM_RUN`: a signal with a no-op handler, to
/// the thread each vCPU's exit handler registered.
pub(crate) struct Kicks {
    signal: i32,
    /// Per vCPU: its thread, while its exit handler lives there. The lock is
    /// held while signalling, so a thread unregistering (as it exits) waits
    /// for a kick in flight and is never signalled once gone.
    threads: Arc<KickTable>,
}

/// Per vCPU: the thread registered as its kick target.
type KickTable = Mutex<Vec<Option<libc::pthread_t>>>;

/// Forgets the registrations of the thread that owns it when that thread
/// exits (thread-local destructors run while the thread still lives), so
/// that no kick ever signals a thread that is gone, wherever the vCPU's
/// [`crate::XenVcpu`] went.
struct ThreadBindings(Vec<(Weak<KickTable>, u32)>);

impl Drop for ThreadBindings {
    fn drop(&mut self) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        for (table, vcpu) in &self.0 {
            if let Some(table) = table.upgrade()
                && let Some(t) = lock(&table).get_mut(*vcpu as usize)
                && *t == Some(me)
            {
                *t = None;
            }
        }
    }
}

thread_local! {
    static BINDINGS: RefCell<ThreadBindings> = const { RefCell::new(ThreadBindings(Vec::new())) };
}

impl Kicks {
    pub(crate) fn new(vcpus: u32, signal: i32) -> Self {
        Self {
            signal,
            threads: Arc::new(Mutex::new(vec![None; vcpus as usize])),
        }
    }

    /// Registers (`true`) or forgets the calling thread as `vcpu`'s. A
    /// registration ends at the latest when the thread exits.
    pub(crate) fn bind(&self, vcpu: u32, here: bool) {
        // SAFETY: pthread_self has no preconditions.
        let me = here.then(|| unsafe { libc::pthread_self() });
        if let Some(t) = lock(&self.threads).get_mut(vcpu as usize) {
            *t = me;
        }
        if here {
            let entry = (Arc::downgrade(&self.threads), vcpu);
            // While the thread exits its bindings are gone already, and
            // the thread will never run its vCPU again anyway.
            let _ = BINDINGS.try_with(|b| b.borrow_mut().0.push(entry));
        }
    }

    /// Kicks `vcpu`; false if no thread is registered for it.
    fn kick(&self, vcpu: u32) -> bool {
        let threads = lock(&self.threads);
        let Some(Some(t)) = threads.get(vcpu as usize) else {
            return false;
        };
        // SAFETY: `t` is a live thread: a thread's registrations end (under
        // this lock) in its thread-local destructor, before it is gone, or
        // earlier when its `XenVcpu` is dropped. The handler does nothing.
        unsafe { libc::pthread_kill(*t, self.signal) };
        true
    }
}

/// The handler of the kick signal: interrupting `KVM_RUN` is all it does.
pub(crate) extern "C" fn kick_handler(
    _: libc::c_int,
    _: *mut libc::siginfo_t,
    _: *mut libc::c_void,
) {
}

/// The callback line: its eventfds (made once) and the GSI its irqfd is
/// registered on now.
struct Line {
    trigger: EventFd,
    resample: EventFd,
    gsi: Mutex<Option<u32>>,
}

/// Injects a domain's upcalls through KVM's in-kernel irqchip; see the
/// module docs.
pub struct KvmInjector {
    vm: Option<VmFd>,
    irq: Box<dyn IrqRoutingRaw>,
    kernel: Option<Arc<KernelSync>>,
    pub(crate) kicks: Kicks,
    /// Per vCPU: a global callback vector whose in-service bit must be
    /// cleared (0 = none).
    unacked: Mutex<Vec<u8>>,
    /// Per vCPU: a global callback vector raised on that vCPU's own thread
    /// during its exit, injected directly when the exit ends (0 = none).
    deferred: Mutex<Vec<u8>>,
    /// `KVM_IRQ_LINE` fallback: the GSI asserted for vCPU 0, or `NO_GSI`.
    asserted: AtomicU32,
    line: Line,
    /// KVM refused a resampling irqfd: use `KVM_IRQ_LINE`.
    no_irqfd: AtomicBool,
}

impl std::fmt::Debug for KvmInjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmInjector")
            .field("line_gsi", &self.line_irqfd_gsi())
            .field("asserted", &self.asserted)
            .field("no_irqfd", &self.no_irqfd)
            .finish_non_exhaustive()
    }
}

impl KvmInjector {
    /// An injector for `vcpus` vCPUs over a VM: `vm` (a duplicate of the VM
    /// fd, for MSIs and `KVM_IRQ_LINE`; `None` injects nothing that way),
    /// `irq` for the callback line's irqfd, the kernel path's fast-path
    /// state if any, and the kick signal.
    pub(crate) fn new(
        vm: Option<VmFd>,
        irq: Box<dyn IrqRoutingRaw>,
        kernel: Option<Arc<KernelSync>>,
        vcpus: u32,
        kick_signal: i32,
    ) -> Result<Self, Error> {
        let fd = || {
            EventFd::new(libc::EFD_NONBLOCK).map_err(|source| Error::Host {
                what: "an eventfd for the callback line",
                source,
            })
        };
        Ok(Self {
            vm,
            irq,
            kernel,
            kicks: Kicks::new(vcpus, kick_signal),
            unacked: Mutex::new(vec![0; vcpus as usize]),
            deferred: Mutex::new(vec![0; vcpus as usize]),
            asserted: AtomicU32::new(NO_GSI),
            line: Line {
                trigger: fd()?,
                resample: fd()?,
                gsi: Mutex::new(None),
            },
            no_irqfd: AtomicBool::new(false),
        })
    }

    /// The GSI whose resampling irqfd drives the callback line now, if any.
    pub fn line_irqfd_gsi(&self) -> Option<u32> {
        *lock(&self.line.gsi)
    }

    fn msi(&self, vcpu: u32, vector: u8) {
        let Some(vm) = &self.vm else { return };
        let msi = kvm_msi {
            address_lo: MSI_ADDR | (vcpu << 12),
            data: u32::from(vector),
            ..Default::default()
        };
        if let Err(e) = vm.signal_msi(msi) {
            log::warn!("upcall MSI to vCPU {vcpu} vector {vector:#x} failed: {e}");
        }
    }

    fn set_line(&self, gsi: u32, level: bool) {
        if let Some(vm) = &self.vm
            && let Err(e) = vm.set_irq_line(gsi, level)
        {
            log::warn!("upcall GSI {gsi} level {level} failed: {e}");
        }
    }

    /// Moves the line's irqfd to `gsi` (KVM deasserts the old GSI).
    fn register_line(&self, registered: &mut Option<u32>, gsi: u32) -> Result<(), Error> {
        let l = &self.line;
        if let Some(old) = registered.take()
            && let Err(e) = irqfd_call(&*self.irq, &l.trigger, old, KVM_IRQFD_FLAG_DEASSIGN, None)
        {
            log::warn!("upcall GSI {old}: removing its irqfd failed: {e}");
        }
        irqfd_call(
            &*self.irq,
            &l.trigger,
            gsi,
            KVM_IRQFD_FLAG_RESAMPLE,
            Some(&l.resample),
        )?;
        *registered = Some(gsi);
        Ok(())
    }

    /// Asserts the callback line `gsi`: through the resampling irqfd, or
    /// with `KVM_IRQ_LINE` where KVM has no resampling irqfds.
    fn assert_line(&self, gsi: u32) {
        if !self.no_irqfd.load(Ordering::SeqCst) {
            let mut registered = lock(&self.line.gsi);
            if *registered != Some(gsi)
                && let Err(e) = self.register_line(&mut registered, gsi)
            {
                log::warn!(
                    "no resampling irqfd for the callback GSI {gsi} ({e}); its line is \
                     dropped only at vCPU 0's exits"
                );
                self.no_irqfd.store(true, Ordering::SeqCst);
            }
            if registered.is_some() {
                if let Err(e) = self.line.trigger.write(1) {
                    log::warn!("upcall GSI {gsi}: irqfd write failed: {e}");
                }
                return;
            }
        }
        let old = self.asserted.swap(gsi, Ordering::SeqCst);
        if old != NO_GSI && old != gsi {
            // The guest moved its callback GSI while the old one was up.
            self.set_line(old, false);
        }
        self.set_line(gsi, true);
    }

    /// Work an upcall left for `vcpu`'s own thread, done before it re-enters
    /// the guest: clears a global callback vector's in-service bit, and
    /// drops a `KVM_IRQ_LINE` callback line once vCPU 0 has consumed its
    /// upcall (`pending` reads vCPU 0's `evtchn_upcall_pending`).
    pub(crate) fn before_run(&self, vcpu_fd: &VcpuFd, vcpu: u32, pending: impl Fn() -> bool) {
        let vector = lock(&self.unacked).get(vcpu as usize).copied().unwrap_or(0);
        if vector != 0 {
            self.clear_in_service(vcpu_fd, vcpu, vector);
        }
        if vcpu == 0 {
            let gsi = self.asserted.load(Ordering::SeqCst);
            if gsi != NO_GSI
                && !pending()
                && self
                    .asserted
                    .compare_exchange(gsi, NO_GSI, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                self.set_line(gsi, false);
                // An event raised between the check and the drop found the
                // line still up and asserted nothing: look again.
                if pending() {
                    self.assert_line(gsi);
                }
            }
        }
    }

    fn clear_in_service(&self, vcpu_fd: &VcpuFd, vcpu: u32, vector: u8) {
        let Ok(mut lapic) = vcpu_fd.get_lapic() else {
            return;
        };
        let (reg, bit) = (usize::from(vector / 32) * 16, u32::from(vector % 32));
        let word = |regs: &[libc::c_char], base: usize| {
            u32::from_le_bytes(std::array::from_fn(|i| regs[base + reg + i] as u8))
        };
        // Still requested: not delivered yet, so its in-service bit is still
        // to come (cleared at a later exit). An in-service bit beside it is
        // an earlier delivery's and must go now: while it is set, the LAPIC
        // never delivers the requested one (same priority class).
        let requested = word(&lapic.regs, APIC_IRR) & (1 << bit) != 0;
        let isr = word(&lapic.regs, APIC_ISR);
        if isr & (1 << bit) != 0 {
            let cleared = (isr & !(1 << bit)).to_le_bytes();
            for (i, b) in cleared.iter().enumerate() {
                lapic.regs[APIC_ISR + reg + i] = *b as libc::c_char;
            }
            if let Err(e) = vcpu_fd.set_lapic(&lapic) {
                log::warn!("clearing callback vector {vector:#x} on vCPU {vcpu} failed: {e}");
                return;
            }
        }
        if !requested && let Some(v) = lock(&self.unacked).get_mut(vcpu as usize) {
            *v = 0;
        }
    }

    /// The global callback vector for `vcpu`.
    fn callback_vector(&self, vcpu: u32, vector: u8) {
        let on_own_thread = CURRENT_VCPU.with(Cell::get) == Some(vcpu);
        if self
            .kernel
            .as_ref()
            .is_some_and(|k| k.kernel_injects_global(vcpu))
            && (on_own_thread || self.kicks.kick(vcpu))
        {
            // KVM injects it as this vCPU re-enters the guest: at once if
            // this is its thread, else once the kick brought it out of
            // KVM_RUN (or its halt).
            return;
        }
        if on_own_thread && let Some(v) = lock(&self.deferred).get_mut(vcpu as usize) {
            // Injected as the exit ends ([`KvmInjector::end_exit`]).
            *v = vector;
            return;
        }
        self.callback_msi(vcpu, vector);
        // The vCPU may be in the guest, or halted in KVM, with an earlier
        // callback's in-service bit still set (the guest never EOIs it),
        // which holds this one back; kicked, it clears that bit before it
        // re-enters ([`KvmInjector::before_run`]).
        if !on_own_thread {
            self.kicks.kick(vcpu);
        }
    }

    /// The global callback vector as an MSI, whose in-service bit the
    /// vCPU's exit handler clears later.
    fn callback_msi(&self, vcpu: u32, vector: u8) {
        if let Some(v) = lock(&self.unacked).get_mut(vcpu as usize) {
            *v = vector;
        }
        self.msi(vcpu, vector);
    }

    /// The end of an exit of `vcpu` on its own thread: a callback vector
    /// raised during it is injected the way Xen injects it, directly and
    /// without the LAPIC (no in-service bit, no EOI; the guest takes it
    /// when it resumes, as an external interrupt), when the vCPU can take
    /// an interrupt at this instruction boundary; otherwise as an MSI.
    /// Costs no ioctl: the event goes back through `kvm_run`'s sync area.
    pub(crate) fn end_exit(&self, vcpu_fd: &mut VcpuFd, vcpu: u32) {
        let vector = std::mem::take(
            lock(&self.deferred)
                .get_mut(vcpu as usize)
                .unwrap_or(&mut 0),
        );
        if vector != 0 && !inject_external(vcpu_fd, vector) {
            self.callback_msi(vcpu, vector);
        }
    }
}

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

/// Injects `vector` as an external interrupt through the sync area's
/// events, if the vCPU can take one now: interrupts enabled, no interrupt
/// shadow, no other event being injected. Returns whether it did.
fn inject_external(vcpu: &mut VcpuFd, vector: u8) -> bool {
    let sync = vcpu.sync_regs();
    let e = &sync.events;
    let can = sync.regs.rflags & RFLAGS_IF != 0
        && e.interrupt.injected == 0
        && e.interrupt.shadow == 0
        && e.nmi.injected == 0
        && e.exception.injected == 0
        && e.exception.pending == 0;
    if can {
        let e = &mut vcpu.sync_regs_mut().events;
        e.interrupt.injected = 1;
        e.interrupt.nr = vector;
        e.interrupt.soft = 0;
        // KVM applies the whole block: leave out the parts other vCPUs or
        // devices may have changed since the exit (a pending NMI or SMI),
        // which the stale copy would overwrite.
        e.flags &= KVM_VCPUEVENT_VALID_SHADOW;
        vcpu.set_sync_dirty_reg(kvm_ioctls::SyncReg::VcpuEvents);
    }
    can
}

impl UpcallInjector for KvmInjector {
    fn inject(&self, vcpu: u32, route: UpcallRoute) {
        match route {
            UpcallRoute::VcpuVector(v) => self.msi(vcpu, v),
            UpcallRoute::CallbackVector(v) => self.callback_vector(vcpu, v),
            UpcallRoute::Line(gsi) => self.assert_line(gsi),
        }
    }
}

impl Drop for KvmInjector {
    fn drop(&mut self) {
        if let Some(gsi) = self.line_irqfd_gsi()
            && let Err(e) = irqfd_call(
                &*self.irq,
                &self.line.trigger,
                gsi,
                KVM_IRQFD_FLAG_DEASSIGN,
                None,
            )
        {
            log::warn!("upcall GSI {gsi}: removing its irqfd failed: {e}");
        }
    }
}

/// The `event-manager` subscriber of the callback line's resample eventfd:
/// at the guest's EOI, re-asserts the line if it is still the domain's
/// callback line and vCPU 0's `evtchn_upcall_pending` is still set (Xen's
/// level semantics).
pub struct LineEvents<M: GuestMemoryBackend + Clone + Send + Sync + 'static> {
    injector: Arc<KvmInjector>,
    domain: Arc<XenDomain<M>>,
}

impl<M: GuestMemoryBackend + Clone + Send + Sync + 'static> LineEvents<M> {
    /// The subscriber for `injector`'s line, which serves `domain`.
    pub fn new(injector: Arc<KvmInjector>, domain: Arc<XenDomain<M>>) -> Self {
        Self { injector, domain }
    }

    /// One resample: the guest EOIed the line.
    fn resampled(&self) {
        let _ = self.injector.line.resample.read();
        let line = self.injector.line_irqfd_gsi();
        if line.is_some()
            && self.domain.upcall_route(0) == line.map(UpcallRoute::Line)
            && self.domain.upcall_pending(0)
            && let Err(e) = self.injector.line.trigger.write(1)
        {
            log::warn!("upcall line {line:?}: irqfd write failed: {e}");
        }
    }
}

impl<M: GuestMemoryBackend + Clone + Send + Sync + 'static> MutEventSubscriber for LineEvents<M> {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.injector.line.resample, EventSet::IN)) {
            log::error!("the callback line's resample eventfd is not watched: {e:?}");
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        self.resampled();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
    use xen_abi::hvm::HvmParam;
    use xen_abi::memory::{E820Entry, E820Type};
    use xen_hypercall::DomainConfig;

    use super::*;
    use crate::routing::mock::MockRouting;

    const SHINFO_GFN: u64 = 0x10;

    struct Fx {
        domain: Arc<XenDomain<GuestMemoryMmap>>,
        mem: GuestMemoryMmap,
        mock: Arc<MockRouting>,
        injector: Arc<KvmInjector>,
        line: LineEvents<GuestMemoryMmap>,
    }

    fn fx(callback: u64) -> Fx {
        let map = vec![E820Entry::new(0, 1 << 20, E820Type::Ram)];
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mock = Arc::new(MockRouting::default());
        let injector = Arc::new(
            KvmInjector::new(None, Box::new(mock.clone()), None, 2, libc::SIGUSR2).unwrap(),
        );
        let domain = Arc::new(
            XenDomain::builder(
                DomainConfig::new(2, xen_cpuid::XenVersion::V4_17, map),
                mem.clone(),
            )
            .injector(injector.clone())
            .build()
            .unwrap(),
        );
        {
            let mut st = domain.core().lock();
            st.shared_info_gfn = Some(SHINFO_GFN);
            st.params[HvmParam::CallbackIrq.raw() as usize] = callback;
        }
        let line = LineEvents::new(injector.clone(), domain.clone());
        Fx {
            domain,
            mem,
            mock,
            injector,
            line,
        }
    }

    impl Fx {
        fn set_pending(&self, v: u8) {
            self.mem
                .store(v, GuestAddress(SHINFO_GFN << 12), Ordering::SeqCst)
                .unwrap();
        }

        /// Whether the line's trigger was written (and consumes it).
        fn triggered(&self) -> bool {
            self.injector.line.trigger.read().is_ok()
        }

        fn irqfds(&self) -> Vec<(u32, u32)> {
            let i = self.mock.irqfds.lock().unwrap();
            i.iter().map(|i| (i.gsi, i.flags)).collect()
        }
    }

    #[test]
    fn test_gsi_line_is_resampling_irqfd_reasserted_only_while_pending() {
        let f = fx(20);
        f.set_pending(1);
        f.domain.reassert_upcall(0);
        assert_eq!(f.irqfds(), [(20, KVM_IRQFD_FLAG_RESAMPLE)]);
        assert_eq!(f.injector.line_irqfd_gsi(), Some(20));
        assert!(f.triggered(), "asserted once");
        // The guest EOIs with evtchn_upcall_pending still set: KVM signals
        // the resample fd, and the line is asserted again.
        f.injector.line.resample.write(1).unwrap();
        f.line.resampled();
        assert!(f.triggered());
        // It cleared evtchn_upcall_pending before its EOI: nothing more.
        f.set_pending(0);
        f.injector.line.resample.write(1).unwrap();
        f.line.resampled();
        assert!(!f.triggered());
        assert_eq!(f.injector.asserted.load(Ordering::SeqCst), NO_GSI);
    }

    #[test]
    fn test_gsi_line_moves_with_callback_and_is_removed_on_drop() {
        let f = fx(20);
        f.set_pending(1);
        f.domain.reassert_upcall(0);
        f.domain.reassert_upcall(0);
        assert_eq!(f.irqfds().len(), 1, "registered once");
        f.domain.core().lock().params[HvmParam::CallbackIrq.raw() as usize] = 21;
        f.domain.reassert_upcall(0);
        while f.triggered() {}
        // A resample while the old line's EOI arrives no longer asserts
        // anything for GSI 20... but GSI 21 is the line now, and pending.
        f.line.resampled();
        assert!(f.triggered());
        let Fx {
            domain,
            mock,
            injector,
            line,
            ..
        } = f;
        drop((domain, line));
        drop(injector);
        let summary: Vec<(u32, u32)> = mock
            .irqfds
            .lock()
            .unwrap()
            .iter()
            .map(|i| (i.gsi, i.flags))
            .collect();
        assert_eq!(
            summary,
            [
                (20, KVM_IRQFD_FLAG_RESAMPLE),
                (20, KVM_IRQFD_FLAG_DEASSIGN),
                (21, KVM_IRQFD_FLAG_RESAMPLE),
                (21, KVM_IRQFD_FLAG_DEASSIGN)
            ]
        );
    }

    #[test]
    fn test_gsi_line_not_driven_for_other_vcpus_or_with_per_vcpu_vector() {
        let f = fx(20);
        f.set_pending(1);
        // vCPU 1's slot in shared_info.
        f.mem
            .store(1u8, GuestAddress((SHINFO_GFN << 12) + 64), Ordering::SeqCst)
            .unwrap();
        f.domain.reassert_upcall(1);
        f.domain.core().lock().vcpus[0].upcall_vector = Some(0xf3);
        f.domain.reassert_upcall(0);
        // The per-vCPU vector went out as an MSI (no VM here: nothing).
        assert!(f.irqfds().is_empty());
        assert_eq!(f.injector.line_irqfd_gsi(), None);
        f.line.resampled();
        assert!(!f.triggered());
    }

    #[test]
    fn test_gsi_line_falls_back_to_irq_line_when_irqfd_refused() {
        let f = fx(20);
        f.set_pending(1);
        *f.mock.fail.lock().unwrap() = Some(libc::EINVAL);
        f.domain.reassert_upcall(0);
        assert!(f.injector.no_irqfd.load(Ordering::SeqCst));
        assert_eq!(f.injector.line_irqfd_gsi(), None);
        assert_eq!(f.injector.asserted.load(Ordering::SeqCst), 20);
    }

    #[test]
    fn test_kick_without_a_registered_thread_is_refused() {
        let k = Kicks::new(2, libc::SIGUSR2);
        assert!(!k.kick(0));
        assert!(!k.kick(7));
        // A registered thread is signalled (a no-op handler for the test).
        // SAFETY: a no-op handler for a signal nothing else in the test
        // binary uses.
        unsafe {
            libc::signal(libc::SIGUSR2, libc::SIG_IGN);
        }
        k.bind(1, true);
        assert!(k.kick(1));
        k.bind(1, false);
        assert!(!k.kick(1));
        let _ = Duration::ZERO;
    }

    #[test]
    fn test_kick_target_is_forgotten_when_its_thread_exits() {
        let k = Arc::new(Kicks::new(2, libc::SIGUSR2));
        let k2 = k.clone();
        // The thread registers, never unregisters, and exits: signalling
        // its id now would be undefined behaviour.
        std::thread::spawn(move || k2.bind(1, true)).join().unwrap();
        assert_eq!(lock(&k.threads)[1], None);
        assert!(!k.kick(1));
        // A vCPU that moved on to a live thread stays with it when the
        // thread it left exits.
        let (moved, exit) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let k3 = k.clone();
        let old = std::thread::spawn(move || {
            k3.bind(0, true);
            moved.0.send(()).unwrap();
            exit.1.recv().unwrap();
        });
        moved.1.recv().unwrap();
        k.bind(0, true);
        exit.0.send(()).unwrap();
        old.join().unwrap();
        // SAFETY: pthread_self has no preconditions.
        assert_eq!(lock(&k.threads)[0], Some(unsafe { libc::pthread_self() }));
        k.bind(0, false);
    }
}
