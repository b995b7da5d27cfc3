// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Event-channel upcalls through KVM's in-kernel irqchip (user-space path).
//!
//! Xen raises the upcall for vCPU v in priority order (`xen-abi.md` §4.1):
//!
//! 1. **Per-vCPU vector** (`HVMOP_set_evtchn_upcall_vector`): an edge
//!    interrupt in v's local APIC; the guest EOIs it. We send an MSI to v's
//!    APIC (APIC id = vCPU index).
//! 2. **Global callback vector** (`CALLBACK_IRQ` type 2): Xen injects it
//!    directly, like an ExtINT, and the guest never EOIs. Through the
//!    in-kernel LAPIC we can only send an MSI, which sets the vector's
//!    in-service bit; since no EOI ever clears it, [`KvmUpcall::after_exit`]
//!    clears it on v's next exit to user space (KVM_GET_LAPIC/SET_LAPIC),
//!    once the vector has left the request register. Until that exit, lower
//!    priority interrupts stay blocked on v; the kernel path avoids this
//!    (KVM injects the vector itself when it owns delivery).
//! 3. **GSI** (type 0) and **PCI INTx** (type 1): only vCPU 0 is notified;
//!    the line is level, asserted while vCPU 0's `evtchn_upcall_pending`
//!    is set. Xen re-evaluates it on every VM exit, the guest's EOI included, so
//!    a handler that clears `evtchn_upcall_pending` and then EOIs takes
//!    exactly one interrupt, and one that EOIs with it still set takes it
//!    again. KVM's in-kernel IOAPIC handles the EOI without telling user
//!    space, so the line is an irqfd with a **resample** eventfd
//!    (`KVM_IRQFD_FLAG_RESAMPLE`): a raise writes the irqfd (KVM asserts
//!    the line); at the guest's EOI KVM deasserts it and signals the
//!    resample eventfd, and an [`EventLoop`] thread re-asserts it only if
//!    vCPU 0's `evtchn_upcall_pending` is still 1 (read from guest memory,
//!    see [`KvmUpcall::attach_memory`]). One event, one interrupt; no
//!    storm. Where KVM refuses a resampling irqfd (split or no in-kernel
//!    irqchip), the line falls back to `KVM_IRQ_LINE`, dropped by
//!    [`KvmUpcall::after_exit`] at vCPU 0's next exit to user space once
//!    the guest has cleared `evtchn_upcall_pending` (until then the IOAPIC
//!    re-delivers at each EOI). The irqfd needs the GSI's irqchip route:
//!    keep it when changing the routing table ([`crate::routing`]). INTx
//!    needs the VMM's PCI routing: the VMM resolves it to a GSI with
//!    [`KvmUpcall::set_intx_gsi`].
//! 4. No callback: nothing is injected; the bits stay pending.
//!
//! On the kernel path with `KVM_CAP_XEN_HVM` `SHARED_INFO`, KVM owns the
//! global vector ([`crate::kernel`]): it injects it at every entry while
//! the vCPU's `evtchn_upcall_pending` is set, leaving no in-service bit.
//! An upcall raised on the target vCPU's own thread (during one of its
//! hypercalls) then needs nothing from us; one raised from another thread
//! needs the vCPU to re-enter, which the VMM's kicker does
//! ([`KvmUpcall::set_kicker`]; without one, the MSI is the kick).

use std::cell::Cell;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use kvm_bindings::kvm_msi;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_sys_util::eventfd::EventFd;
use xen_abi::hvm::CallbackVia;
use xen_evtchn::Upcall;
use xen_hypercall::{Domain, callback_via};

use crate::Error;
use crate::evloop::{EventLoop, WatchId};
use crate::ioctls::XenVmHandle;
use crate::routing::{IrqRoutingRaw, irqfd_call};
use kvm_bindings::{KVM_IRQFD_FLAG_DEASSIGN, KVM_IRQFD_FLAG_RESAMPLE};

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

/// Reads vCPU 0's `evtchn_upcall_pending` from guest memory.
type PendingProbe = Box<dyn Fn() -> bool + Send + Sync>;

/// What the callback line's resample handler needs (shared with the
/// event-loop thread).
struct LineState {
    domain: Arc<Domain>,
    /// The GSI the VMM's PCI routing gives the platform device's INTx.
    intx_gsi: AtomicU32,
    probe: OnceLock<PendingProbe>,
}

impl LineState {
    /// The GSI the domain's callback drives now, if any: not when vCPU 0
    /// has a per-vCPU vector (which wins, as in Xen).
    fn gsi(&self) -> Option<u32> {
        let per_vcpu = self
            .domain
            .lock()
            .vcpus
            .first()
            .and_then(|v| v.upcall_vector);
        if per_vcpu.is_some() {
            return None;
        }
        match callback_via(&self.domain) {
            CallbackVia::Gsi(gsi) => Some(u32::from(gsi)),
            CallbackVia::PciIntx { .. } => {
                let gsi = self.intx_gsi.load(Ordering::SeqCst);
                (gsi != NO_GSI).then_some(gsi)
            }
            _ => None,
        }
    }

    /// vCPU 0's `evtchn_upcall_pending` (false while memory is unknown).
    fn pending(&self) -> bool {
        self.probe.get().is_some_and(|p| p())
    }
}

/// The callback line as a resampling irqfd.
struct LineFd {
    gsi: u32,
    trigger: Arc<EventFd>,
    resample: Arc<EventFd>,
    watch: WatchId,
}

/// Injects upcalls through the in-kernel irqchip.
pub struct KvmUpcall {
    domain: Arc<Domain>,
    vm: OnceLock<VmFd>,
    /// Per vCPU: a global callback vector whose in-service bit must be
    /// cleared (0 = none).
    unacked: Mutex<Vec<u8>>,
    /// `KVM_IRQ_LINE` fallback: the GSI currently asserted for vCPU 0, or
    /// `NO_GSI`.
    asserted: AtomicU32,
    line_state: Arc<LineState>,
    /// The irqfd ioctls (a duplicate of the VM fd, or a test's recorder).
    irq: OnceLock<Box<dyn IrqRoutingRaw>>,
    /// The callback line's irqfd, once a line was raised.
    line_fd: Mutex<Option<LineFd>>,
    /// KVM refused a resampling irqfd: use `KVM_IRQ_LINE`.
    no_irqfd: AtomicBool,
    /// Serves the resample eventfd (started with the first line).
    events: OnceLock<EventLoop>,
    /// Set on the kernel path: who injects the global vector per vCPU.
    kernel: OnceLock<Arc<crate::kernel::KernelSync>>,
    /// Makes a vCPU leave `KVM_RUN` (the VMM's, see [`KvmUpcall::set_kicker`]).
    kicker: OnceLock<Kicker>,
}

/// Makes vCPU `n` return from `KVM_RUN` soon (for example a signal to its
/// thread); see [`KvmUpcall::set_kicker`].
pub type Kicker = Box<dyn Fn(u32) + Send + Sync>;

impl std::fmt::Debug for KvmUpcall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmUpcall")
            .field("asserted", &self.asserted)
            .field("line_gsi", &self.lock_line().as_ref().map(|l| l.gsi))
            .field("no_irqfd", &self.no_irqfd)
            .finish_non_exhaustive()
    }
}

impl KvmUpcall {
    /// An injector for `domain`; [`KvmUpcall::attach`] gives it the VM.
    pub fn new(domain: Arc<Domain>) -> Self {
        let vcpus = domain.config().vcpus as usize;
        Self {
            line_state: Arc::new(LineState {
                domain: domain.clone(),
                intx_gsi: AtomicU32::new(NO_GSI),
                probe: OnceLock::new(),
            }),
            domain,
            vm: OnceLock::new(),
            unacked: Mutex::new(vec![0; vcpus]),
            asserted: AtomicU32::new(NO_GSI),
            irq: OnceLock::new(),
            line_fd: Mutex::new(None),
            no_irqfd: AtomicBool::new(false),
            events: OnceLock::new(),
            kernel: OnceLock::new(),
            kicker: OnceLock::new(),
        }
    }

    /// Lets the callback line read vCPU 0's `evtchn_upcall_pending` in
    /// `mem` when the guest EOIs it ([`crate::XenAccel::set_upcall`] does
    /// this). Without it, an EOI with `evtchn_upcall_pending` still set
    /// does not re-deliver.
    pub fn attach_memory<M: GuestMemoryBackend + Send + Sync + 'static>(&self, mem: M) {
        let domain = self.domain.clone();
        let _ = self.line_state.probe.set(Box::new(move || {
            domain
                .vcpu_info_gpa(0)
                .and_then(|gpa| mem.load::<u8>(GuestAddress(gpa), Ordering::SeqCst).ok())
                .is_some_and(|p| p != 0)
        }));
    }

    /// The GSI whose resampling irqfd drives the callback line now, if any.
    pub fn line_irqfd_gsi(&self) -> Option<u32> {
        self.lock_line().as_ref().map(|l| l.gsi)
    }

    fn lock_line(&self) -> std::sync::MutexGuard<'_, Option<LineFd>> {
        self.line_fd.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The kernel path's fast-path state, which says when KVM injects the
    /// global vector itself.
    pub(crate) fn set_kernel(&self, kernel: Arc<crate::kernel::KernelSync>) {
        let _ = self.kernel.set(kernel);
    }

    /// Keeps a handle on the VM (a duplicate of its file descriptor), so
    /// upcalls can be raised from any thread.
    pub fn attach(&self, kvm: &Kvm, vm: &VmFd) -> Result<(), Error> {
        // SAFETY: dup() of a valid, open VM file descriptor; the result is
        // checked before use.
        let fd = unsafe { libc::dup(vm.as_raw_fd()) };
        if fd < 0 {
            return Err(Error::Kvm {
                what: "dup(VM fd)",
                source: vmm_sys_util::errno::Error::last(),
            });
        }
        // SAFETY: `fd` is a fresh duplicate of a VM file descriptor that
        // nothing else owns; the VmFd takes ownership of it.
        let dup = unsafe { kvm.create_vmfd_from_rawfd(fd) }.map_err(|source| Error::Kvm {
            what: "KVM_GET_VCPU_MMAP_SIZE",
            source,
        })?;
        let _ = self.vm.set(dup);
        let irq = XenVmHandle::new(vm).map_err(|source| Error::Host {
            what: "a duplicate of the VM fd",
            source,
        })?;
        let _ = self.irq.set(Box::new(irq));
        Ok(())
    }

    /// Gives the injector a way to make a vCPU leave `KVM_RUN`, such as a
    /// signal to its thread whose handler does nothing (the VMM's loop
    /// sees `EINTR` and re-enters). On the kernel path, when KVM owns the
    /// global callback vector, an upcall raised from another thread then
    /// becomes a kick: KVM injects the vector itself as the vCPU re-enters
    /// (it checks `evtchn_upcall_pending` at every entry, halted or not),
    /// exactly once and with no in-service bit left behind, as on Xen.
    /// Without a kicker such an upcall is sent as an MSI, which a halted
    /// vCPU also wakes for, but the guest then sees it twice and its
    /// in-service bit stays set until the vCPU's next exit. Set it once;
    /// later calls are ignored.
    pub fn set_kicker(&self, kicker: Kicker) {
        let _ = self.kicker.set(kicker);
    }

    /// The GSI that the platform device's INTx pin is routed to, for a
    /// `CALLBACK_IRQ` of type PCI INTx.
    pub fn set_intx_gsi(&self, gsi: u32) {
        self.line_state.intx_gsi.store(gsi, Ordering::SeqCst);
    }

    /// Asserts the callback line `gsi` for vCPU 0: through its resampling
    /// irqfd, created (and any other line's dropped) on first use, or with
    /// `KVM_IRQ_LINE` where KVM has no resampling irqfds.
    fn assert_line(&self, gsi: u32) {
        if !self.no_irqfd.load(Ordering::SeqCst) {
            let mut line = self.lock_line();
            if line.as_ref().is_some_and(|l| l.gsi != gsi)
                && let Some(old) = line.take()
            {
                self.drop_line(old);
            }
            if line.is_none() {
                match self.new_line(gsi) {
                    Ok(l) => *line = Some(l),
                    Err(e) => {
                        log::warn!(
                            "no resampling irqfd for the callback GSI {gsi} ({e}); its \
                             line is dropped only at vCPU 0's exits"
                        );
                        self.no_irqfd.store(true, Ordering::SeqCst);
                    }
                }
            }
            if let Some(l) = line.as_ref() {
                if let Err(e) = l.trigger.write(1) {
                    log::warn!("upcall GSI {gsi}: irqfd write failed: {e}");
                }
                return;
            }
        }
        self.asserted.store(gsi, Ordering::SeqCst);
        self.line(gsi, true);
    }

    fn new_line(&self, gsi: u32) -> Result<LineFd, Error> {
        let irq = self.irq.get().ok_or(Error::Host {
            what: "the callback line (no VM attached)",
            source: std::io::Error::from_raw_os_error(libc::ENODEV),
        })?;
        let fd = || {
            EventFd::new(libc::EFD_NONBLOCK)
                .map(Arc::new)
                .map_err(|source| Error::Host {
                    what: "an eventfd for the callback line",
                    source,
                })
        };
        let (trigger, resample) = (fd()?, fd()?);
        irqfd_call(
            &**irq,
            &trigger,
            gsi,
            KVM_IRQFD_FLAG_RESAMPLE,
            Some(&resample),
        )?;
        let events = match self.events.get() {
            Some(e) => e,
            None => {
                let e = EventLoop::new("xen-callback-line");
                match e {
                    Ok(e) => self.events.get_or_init(|| e),
                    Err(err) => {
                        let _ = irqfd_call(&**irq, &trigger, gsi, KVM_IRQFD_FLAG_DEASSIGN, None);
                        return Err(err);
                    }
                }
            }
        };
        // At the guest's EOI KVM has deasserted the line: re-assert it if
        // this is still the callback line and vCPU 0 still has an upcall
        // pending (Xen's level semantics).
        let (state, again) = (self.line_state.clone(), trigger.clone());
        let watch = events.watch(
            resample.clone(),
            Arc::new(move |_| {
                if state.gsi() == Some(gsi)
                    && state.pending()
                    && let Err(e) = again.write(1)
                {
                    log::warn!("upcall GSI {gsi}: irqfd write failed: {e}");
                }
            }),
        );
        Ok(LineFd {
            gsi,
            trigger,
            resample,
            watch,
        })
    }

    /// Unregisters a line's irqfd (KVM deasserts it).
    fn drop_line(&self, line: LineFd) {
        if let Some(events) = self.events.get() {
            events.unwatch(line.watch);
        }
        if let Some(irq) = self.irq.get()
            && let Err(e) = irqfd_call(
                &**irq,
                &line.trigger,
                line.gsi,
                KVM_IRQFD_FLAG_DEASSIGN,
                None,
            )
        {
            log::warn!("upcall GSI {}: removing its irqfd failed: {e}", line.gsi);
        }
        drop(line.resample);
    }

    fn msi(&self, vcpu: u32, vector: u8) {
        let Some(vm) = self.vm.get() else { return };
        let msi = kvm_msi {
            address_lo: MSI_ADDR | (vcpu << 12),
            data: u32::from(vector),
            ..Default::default()
        };
        if let Err(e) = vm.signal_msi(msi) {
            log::warn!("upcall MSI to vCPU {vcpu} vector {vector:#x} failed: {e}");
        }
    }

    fn line(&self, gsi: u32, level: bool) {
        if let Some(vm) = self.vm.get()
            && let Err(e) = vm.set_irq_line(gsi, level)
        {
            log::warn!("upcall GSI {gsi} level {level} failed: {e}");
        }
    }

    /// Work left by an upcall, done on `vcpu`'s thread after each of its
    /// exits: clears a global callback vector's in-service bit, and drops
    /// the GSI line once vCPU 0 has consumed its upcall.
    pub fn after_exit<M: GuestMemoryBackend>(&self, vcpu_fd: &VcpuFd, vcpu: u32, mem: &M) {
        let vector = self
            .unacked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(vcpu as usize)
            .copied()
            .unwrap_or(0);
        if vector != 0 {
            self.clear_in_service(vcpu_fd, vcpu, vector);
        }
        if vcpu == 0 {
            let gsi = self.asserted.load(Ordering::SeqCst);
            if gsi != NO_GSI {
                let pending = self
                    .domain
                    .vcpu_info_gpa(0)
                    .and_then(|gpa| mem.load::<u8>(GuestAddress(gpa), Ordering::SeqCst).ok())
                    .unwrap_or(0);
                if pending == 0
                    && self
                        .asserted
                        .compare_exchange(gsi, NO_GSI, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                {
                    self.line(gsi, false);
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
        if requested {
            return;
        }
        if let Some(v) = self
            .unacked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(vcpu as usize)
        {
            *v = 0;
        }
    }
}

impl Upcall for KvmUpcall {
    fn raise(&self, vcpu: u32) {
        let per_vcpu = self
            .domain
            .lock()
            .vcpus
            .get(vcpu as usize)
            .and_then(|v| v.upcall_vector);
        if let Some(vector) = per_vcpu {
            self.msi(vcpu, vector);
            return;
        }
        match callback_via(&self.domain) {
            CallbackVia::Vector(_)
                if self
                    .kernel
                    .get()
                    .is_some_and(|k| k.kernel_injects_global(vcpu))
                    && (CURRENT_VCPU.with(Cell::get) == Some(vcpu)
                        || self.kicker.get().is_some()) =>
            {
                // KVM injects it as this vCPU re-enters the guest: now if
                // this is its thread, else once the kick makes it leave
                // KVM_RUN (or its halt) and come back.
                if CURRENT_VCPU.with(Cell::get) != Some(vcpu)
                    && let Some(kick) = self.kicker.get()
                {
                    kick(vcpu);
                }
            }
            CallbackVia::Vector(vector) => {
                if let Some(v) = self
                    .unacked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(vcpu as usize)
                {
                    *v = vector;
                }
                self.msi(vcpu, vector);
            }
            CallbackVia::Gsi(_) | CallbackVia::PciIntx { .. } if vcpu == 0 => {
                if let Some(gsi) = self.line_state.gsi() {
                    self.assert_line(gsi);
                }
            }
            _ => {}
        }
    }
}

impl Drop for KvmUpcall {
    fn drop(&mut self) {
        if let Some(line) = self.lock_line().take() {
            self.drop_line(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use kvm_bindings::{KVM_IRQFD_FLAG_DEASSIGN, KVM_IRQFD_FLAG_RESAMPLE};
    use vm_memory::GuestMemoryMmap;
    use xen_abi::hvm::HvmParam;
    use xen_abi::memory::{E820Entry, E820Type};
    use xen_hypercall::{DomainConfig, Env};

    use super::*;
    use crate::routing::mock::MockRouting;

    const SHINFO_GFN: u64 = 0x10;

    fn fx(gsi: u64) -> (Arc<Domain>, GuestMemoryMmap, Arc<MockRouting>, KvmUpcall) {
        let map = vec![E820Entry::new(0, 1 << 20, E820Type::Ram)];
        let d = Arc::new(Domain::new(
            DomainConfig::new(1, 0x4_0011, map),
            Env::default(),
        ));
        d.lock().shared_info_gfn = Some(SHINFO_GFN);
        d.lock().params[HvmParam::CallbackIrq.raw() as usize] = gsi;
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let m = Arc::new(MockRouting::default());
        let u = KvmUpcall::new(d.clone());
        let _ = u.irq.set(Box::new(m.clone()));
        u.attach_memory(mem.clone());
        (d, mem, m, u)
    }

    fn set_pending(mem: &GuestMemoryMmap, v: u8) {
        mem.store(v, GuestAddress(SHINFO_GFN << 12), Ordering::SeqCst)
            .unwrap();
    }

    /// The line's eventfds (trigger, resample).
    fn fds(u: &KvmUpcall) -> (Arc<EventFd>, Arc<EventFd>) {
        let l = u.lock_line();
        let l = l.as_ref().unwrap();
        (l.trigger.clone(), l.resample.clone())
    }

    fn asserted_within(fd: &EventFd, d: Duration) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < d {
            if fd.read().is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn test_gsi_line_is_resampling_irqfd_reasserted_only_while_pending() {
        let (_d, mem, m, u) = fx(20);
        set_pending(&mem, 1);
        u.raise(0);
        let i = m.irqfds.lock().unwrap().clone();
        assert_eq!(i.len(), 1);
        assert_eq!((i[0].gsi, i[0].flags), (20, KVM_IRQFD_FLAG_RESAMPLE));
        assert_eq!(u.line_irqfd_gsi(), Some(20));
        let (trigger, resample) = fds(&u);
        assert_eq!(trigger.read().unwrap(), 1, "asserted once");
        // The guest EOIs with evtchn_upcall_pending still set: KVM signals
        // the resample fd, and the line is asserted again.
        resample.write(1).unwrap();
        assert!(asserted_within(&trigger, Duration::from_secs(5)));
        // It cleared evtchn_upcall_pending before its EOI: nothing more.
        set_pending(&mem, 0);
        resample.write(1).unwrap();
        assert!(!asserted_within(&trigger, Duration::from_millis(50)));
        assert_eq!(u.asserted.load(Ordering::SeqCst), NO_GSI);
    }

    #[test]
    fn test_gsi_line_moves_with_callback_and_is_removed_on_drop() {
        let (d, mem, m, u) = fx(20);
        set_pending(&mem, 1);
        u.raise(0);
        u.raise(0);
        assert_eq!(m.irqfds.lock().unwrap().len(), 1, "registered once");
        let (_, old_resample) = fds(&u);
        d.lock().params[HvmParam::CallbackIrq.raw() as usize] = 21;
        u.raise(0);
        let (trigger, _) = fds(&u);
        // An EOI of the old line no longer asserts anything.
        old_resample.write(1).unwrap();
        assert_eq!(trigger.read().unwrap(), 1);
        assert!(!asserted_within(&trigger, Duration::from_millis(50)));
        drop(u);
        let i = m.irqfds.lock().unwrap().clone();
        let summary: Vec<(u32, u32)> = i.iter().map(|i| (i.gsi, i.flags)).collect();
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
        let (d, _mem, m, u) = fx(20);
        u.raise(1);
        d.lock().vcpus[0].upcall_vector = Some(0xf3);
        u.raise(0);
        // The per-vCPU vector went out as an MSI (no VM here: nothing).
        assert!(m.irqfds.lock().unwrap().is_empty());
        assert_eq!(u.line_irqfd_gsi(), None);
    }

    #[test]
    fn test_gsi_line_falls_back_to_irq_line_when_irqfd_refused() {
        let (_d, _mem, m, u) = fx(20);
        *m.fail.lock().unwrap() = Some(libc::EINVAL);
        u.raise(0);
        assert!(u.no_irqfd.load(Ordering::SeqCst));
        assert_eq!(u.line_irqfd_gsi(), None);
        assert_eq!(u.asserted.load(Ordering::SeqCst), 20);
    }
}
