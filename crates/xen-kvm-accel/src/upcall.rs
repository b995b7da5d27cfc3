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
//!    the line is asserted while vCPU 0's `evtchn_upcall_pending` is 1 and
//!    dropped by [`KvmUpcall::after_exit`] once the guest clears it (Xen
//!    checks on every exit too). INTx needs the VMM's PCI routing: the VMM
//!    resolves it to a GSI with [`KvmUpcall::set_intx_gsi`].
//! 4. No callback: nothing is injected; the bits stay pending.
//!
//! On the kernel path with `KVM_CAP_XEN_HVM` `SHARED_INFO`, KVM owns the
//! global vector ([`crate::kernel`]): it injects it at every entry while
//! the vCPU's `evtchn_upcall_pending` is set, leaving no in-service bit.
//! An upcall raised on the target vCPU's own thread (during one of its
//! hypercalls) then needs nothing from us; one raised from another thread
//! still gets the MSI, as a kick for a halted vCPU.

use std::cell::Cell;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use kvm_bindings::kvm_msi;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use xen_abi::hvm::CallbackVia;
use xen_evtchn::Upcall;
use xen_hypercall::{Domain, callback_via};

use crate::Error;

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

/// Injects upcalls through the in-kernel irqchip.
#[derive(Debug)]
pub struct KvmUpcall {
    domain: Arc<Domain>,
    vm: OnceLock<VmFd>,
    /// Per vCPU: a global callback vector whose in-service bit must be
    /// cleared (0 = none).
    unacked: Mutex<Vec<u8>>,
    /// The GSI currently asserted for vCPU 0, or `NO_GSI`.
    asserted: AtomicU32,
    /// The GSI the VMM's PCI routing gives the platform device's INTx.
    intx_gsi: AtomicU32,
    /// Set on the kernel path: who injects the global vector per vCPU.
    kernel: OnceLock<Arc<crate::kernel::KernelSync>>,
}

impl KvmUpcall {
    /// An injector for `domain`; [`KvmUpcall::attach`] gives it the VM.
    pub fn new(domain: Arc<Domain>) -> Self {
        let vcpus = domain.config().vcpus as usize;
        Self {
            domain,
            vm: OnceLock::new(),
            unacked: Mutex::new(vec![0; vcpus]),
            asserted: AtomicU32::new(NO_GSI),
            intx_gsi: AtomicU32::new(NO_GSI),
            kernel: OnceLock::new(),
        }
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
        Ok(())
    }

    /// The GSI that the platform device's INTx pin is routed to, for a
    /// `CALLBACK_IRQ` of type PCI INTx.
    pub fn set_intx_gsi(&self, gsi: u32) {
        self.intx_gsi.store(gsi, Ordering::SeqCst);
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
            .state()
            .vcpus
            .get(vcpu as usize)
            .and_then(|v| v.upcall_vector);
        if let Some(vector) = per_vcpu {
            self.msi(vcpu, vector);
            return;
        }
        match callback_via(&self.domain) {
            CallbackVia::Vector(_)
                if CURRENT_VCPU.with(Cell::get) == Some(vcpu)
                    && self
                        .kernel
                        .get()
                        .is_some_and(|k| k.kernel_injects_global(vcpu)) =>
            {
                // KVM injects it as this vCPU re-enters the guest.
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
            CallbackVia::Gsi(gsi) if vcpu == 0 => {
                self.asserted.store(u32::from(gsi), Ordering::SeqCst);
                self.line(u32::from(gsi), true);
            }
            CallbackVia::PciIntx { .. } if vcpu == 0 => {
                let gsi = self.intx_gsi.load(Ordering::SeqCst);
                if gsi != NO_GSI {
                    self.asserted.store(gsi, Ordering::SeqCst);
                    self.line(gsi, true);
                }
            }
            _ => {}
        }
    }
}
