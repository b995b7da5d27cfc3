// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Everything of xen-on-kvm that touches KVM.
//!
//! [`XenAccel`] connects a VM's vCPUs to the `xen-hypercall` dispatcher by
//! one of two paths ([`caps::Path`]):
//!
//! * **User-space trap** (any KVM with `KVM_CAP_X86_USER_SPACE_MSR`,
//!   `KVM_CAP_X86_MSR_FILTER` and `KVM_CAP_SYNC_REGS`, including kernels
//!   without `CONFIG_KVM_XEN`): an MSR filter sends the hypercall MSR to
//!   user space; on the guest's WRMSR we write a page of
//!   `mov eax, N; out imm8, eax; ret` stubs; each hypercall is then one
//!   port-I/O exit, whose registers come from `kvm_run`'s sync area (no
//!   extra ioctl), and whose result goes back the same way.
//! * **Kernel intercept** (`KVM_CAP_XEN_HVM` with `INTERCEPT_HCALL`): KVM
//!   fills the page itself and turns every VMCALL/VMMCALL into
//!   `KVM_EXIT_XEN`, which we decode into the same [`Hypercall`].
//!
//! A VMM calls [`XenAccel::setup_vm`] once, [`XenAccel::setup_vcpu`] per
//! vCPU, and [`XenAccel::handle_exit`] after every `KVM_RUN` exit: it
//! handles the exit if it is Xen's and says whether it did.
//!
//! On the kernel path, the in-kernel fast paths the kernel advertises
//! (shared_info, vcpu_info and pvclock upkeep, runstate, the global and
//! per-vCPU upcall vectors, `XENVER_version`, PV timers) are handed the
//! domain's state as the guest sets it up; [`kernel`] explains which, under
//! which flag, and how KVM and the user-space event channels share guest
//! memory.
//!
//! Interrupts: [`KvmUpcall`] raises event-channel upcalls through the
//! in-kernel irqchip ([`upcall`]; a GSI / PCI INTx callback is a
//! resampling irqfd, so it is level like Xen's without an interrupt
//! storm); [`eventfd_ports`] lets a VMM back end raise a guest port by
//! writing an eventfd (in the kernel through `KVM_IRQ_ROUTING_XEN_EVTCHN`
//! where KVM offers it, else on an [`evloop::EventLoop`] thread); and
//! [`routing::GsiRouting`] is the one model of the VM's GSI routing table
//! that every route goes through ([`XenAccel::routing`]).

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod block;
pub mod caps;
pub mod clock;
pub mod eventfd_ports;
pub mod evloop;
pub mod ioctls;
pub mod kernel;
pub mod routing;
pub mod stack;
pub mod timers;
pub mod upcall;

use std::sync::Arc;

use kvm_bindings::{
    KVM_CAP_X86_USER_SPACE_MSR, KVM_EXIT_IO, KVM_EXIT_IO_OUT, KVM_EXIT_X86_RDMSR,
    KVM_EXIT_X86_WRMSR, KVM_EXIT_XEN, KVM_MSR_EXIT_REASON_FILTER, kvm_clock_data, kvm_enable_cap,
    kvm_sregs, kvm_xen_hvm_config,
};
use std::sync::OnceLock;

use ioctls::{IoctlError, XenVmHandle, XenVmIoctls};
use kvm_ioctls::{
    MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, SyncReg, VcpuFd, VmFd,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use xen_abi::x86::{CR0_PE, EFER_LMA};
use xen_hypercall::guest::{GuestVirt, PagingRegs};
use xen_hypercall::page::{self, Trap};
use xen_hypercall::{
    Abi, Dispatcher, Domain, GpRegs, HcResult, Hypercall, result_value, set_result,
};

pub use block::{Blocker, KvmEvents, WakingUpcall};
pub use caps::{Caps, Path, PathChoice, PathError};
pub use clock::TscClock;
pub use eventfd_ports::{Delivery, EventfdPorts, PortTarget};
pub use evloop::EventLoop;
pub use kernel::{FastPaths, KernelSync};
pub use routing::GsiRouting;
pub use timers::TimerfdTimers;
pub use upcall::KvmUpcall;

/// `kvm_xen_exit.type` of a hypercall exit.
const KVM_XEN_EXIT_HCALL: u32 = 1;

/// Errors of the VMM-side setup (never of the guest).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The requested path is not available on this KVM.
    #[error("Cannot use the requested hypercall path")]
    Path(#[from] PathError),
    /// A host facility (timerfd, eventfd, a thread) could not be set up.
    #[error("Setting up {what} failed")]
    Host {
        /// What was being set up.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The domain's event channels refused their configuration.
    #[error("Cannot create the event channels")]
    Evtchn(#[from] xen_evtchn::Error),
    /// A KVM ioctl failed.
    #[error("KVM ioctl {what} failed")]
    Kvm {
        /// Which ioctl.
        what: &'static str,
        /// The error.
        #[source]
        source: vmm_sys_util::errno::Error,
    },
    /// A KVM Xen attribute ioctl failed.
    #[error("A KVM Xen attribute ioctl failed")]
    XenAttr(#[from] IoctlError),
    /// The GSI routing table or an irqfd was refused.
    #[error("GSI routing failed")]
    Routing(#[from] routing::RoutingError),
    /// [`XenAccel::setup_vm`] has not run yet.
    #[error("The VM is not set up yet")]
    NotSetUp,
}

/// How the VMM wants Xen wired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenConfig {
    /// The hypercall-page MSR (`xen_cpuid::XenCpuid::hypercall_msr`).
    pub hypercall_msr: u32,
    /// The I/O port of the user-space trap stubs (see `xen_hypercall::page`).
    pub trap_port: u8,
    /// Which path to use.
    pub path: PathChoice,
}

impl Default for XenConfig {
    fn default() -> Self {
        Self {
            hypercall_msr: xen_abi::cpuid::XEN_HYPERCALL_MSR,
            trap_port: page::DEFAULT_TRAP_PORT,
            path: PathChoice::Auto,
        }
    }
}

/// A traced hypercall: vCPU, the call, its result.
pub type TraceFn = Box<dyn Fn(u32, &Hypercall, HcResult) + Send + Sync>;

/// One VM's Xen wiring.
pub struct XenAccel<M: GuestMemoryBackend> {
    config: XenConfig,
    path: Path,
    reason: String,
    domain: Arc<Domain>,
    dispatcher: Arc<Dispatcher<M>>,
    mem: M,
    trace: Option<TraceFn>,
    upcall: Option<Arc<KvmUpcall>>,
    /// Kernel path: the fast paths and what KVM was given.
    kernel: Option<Arc<KernelSync>>,
    /// Kernel path: a duplicate of the VM fd for the VM-level Xen ioctls.
    vm: OnceLock<XenVmHandle>,
    /// The VM's GSI routing table (both paths), from `setup_vm`.
    routing: OnceLock<Arc<GsiRouting>>,
}

impl<M: GuestMemoryBackend + Clone + Send + Sync + 'static> XenAccel<M> {
    /// Uses `upcall` (the injector the event channels raise through) for
    /// its per-exit work (clearing an un-EOI'd callback vector, dropping a
    /// fallback GSI line) and gives it guest memory, where its GSI /
    /// INTx line reads vCPU 0's `evtchn_upcall_pending` at each EOI (see
    /// [`upcall`]).
    pub fn set_upcall(&mut self, upcall: Arc<KvmUpcall>) {
        if let Some(k) = &self.kernel {
            upcall.set_kernel(k.clone());
        }
        upcall.attach_memory(self.mem.clone());
        self.upcall = Some(upcall);
    }

    /// Eventfd-to-port connections for `channels` (the domain's event
    /// channels), after [`XenAccel::setup_vm`]: routed in the kernel on the
    /// kernel path when KVM advertises `EVTCHN_2LEVEL`, served by `events`
    /// otherwise (see [`eventfd_ports`]).
    pub fn eventfd_ports(
        &self,
        channels: Arc<xen_evtchn::EventChannels>,
        events: Arc<EventLoop>,
    ) -> Result<EventfdPorts<M>, Error> {
        let routing = self.routing.get().ok_or(Error::NotSetUp)?.clone();
        Ok(EventfdPorts::new(
            routing,
            channels,
            self.mem.clone(),
            events,
            self.kernel.clone(),
        ))
    }
}

impl<M: GuestMemoryBackend> XenAccel<M> {
    /// Picks the path from `caps` and `config.path`.
    pub fn new(
        caps: &Caps,
        config: XenConfig,
        domain: Arc<Domain>,
        dispatcher: Arc<Dispatcher<M>>,
        mem: M,
    ) -> Result<Self, Error> {
        let (path, reason) = caps.choose(config.path)?;
        let kernel = (path == Path::Kernel).then(|| {
            Arc::new(KernelSync::new(
                FastPaths::from_flags(caps.xen_hvm),
                domain.config().vcpus,
            ))
        });
        Ok(Self {
            config,
            path,
            reason,
            domain,
            dispatcher,
            mem,
            trace: None,
            upcall: None,
            kernel,
            vm: OnceLock::new(),
            routing: OnceLock::new(),
        })
    }

    /// The kernel fast paths in use (none on the user-space path).
    pub fn fast_paths(&self) -> FastPaths {
        self.kernel.as_ref().map(|k| k.paths()).unwrap_or_default()
    }

    /// The VM handle for Xen VM ioctls, on the kernel path once
    /// [`XenAccel::setup_vm`] has run (for example to read back what KVM
    /// was given).
    pub fn kernel_vm(&self) -> Option<&XenVmHandle> {
        self.vm.get()
    }

    /// Raises 2-level `port` for Xen vCPU `vcpu` through
    /// `KVM_XEN_HVM_EVTCHN_SEND`, as KVM's own deliveries do: pending bit,
    /// selector, `evtchn_upcall_pending`, injection, and the wake-up of an
    /// in-kernel poller. Returns `Ok(false)` when that path is not
    /// available (user-space path, no `EVTCHN_SEND`, FIFO channels); the
    /// caller then raises the port through its `xen_evtchn::EventChannels`.
    pub fn kernel_send(&self, port: u32, vcpu: u32) -> Result<bool, Error> {
        match (&self.kernel, self.vm.get()) {
            (Some(k), Some(vm)) if k.paths().evtchn_send && !k.fifo() => {
                vm.xen_hvm_evtchn_send(port, vcpu)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Kernel path: gives KVM vCPU `vcpu_id`'s Xen identity and areas now
    /// (`handle_exit` also does it at the vCPU's exits). Call it on the
    /// vCPU's own thread or before the vCPU runs.
    pub fn setup_xen_vcpu(&self, vcpu: &VcpuFd, vcpu_id: u32) {
        if let Some(k) = &self.kernel {
            k.sync_vcpu(vcpu, vcpu_id, &self.domain, &|v, t| {
                self.domain.env.timers.set_singleshot(v, Some(t))
            });
            k.flush_changes();
        }
    }

    /// The path in use.
    pub fn path(&self) -> Path {
        self.path
    }

    /// Why this path was chosen, as a sentence.
    pub fn path_reason(&self) -> &str {
        &self.reason
    }

    /// Guest memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The domain.
    pub fn domain(&self) -> &Arc<Domain> {
        &self.domain
    }

    /// The VM's GSI routing table, once [`XenAccel::setup_vm`] has run:
    /// the VMM's own routes must go through it (see [`routing`]).
    pub fn routing(&self) -> Option<&Arc<GsiRouting>> {
        self.routing.get()
    }

    /// Calls `f` for every hypercall handled (`--trace`).
    pub fn set_trace(&mut self, f: TraceFn) {
        self.trace = Some(f);
    }

    /// Configures the VM: the MSR filter (user-space path) or
    /// `KVM_XEN_HVM_CONFIG` with `INTERCEPT_HCALL` (kernel path). On the
    /// kernel path with `SHARED_INFO`, it also sets kvmclock to the
    /// domain clock's system time (KVM's pvclocks and timers then share
    /// the domain's time base) and gives KVM the VM attributes.
    pub fn setup_vm(&self, vm: &VmFd) -> Result<(), Error> {
        if self.routing.get().is_none() {
            let routing = GsiRouting::for_vm(vm).map_err(|source| Error::Host {
                what: "the GSI routing table",
                source,
            })?;
            let _ = self.routing.set(Arc::new(routing));
        }
        match self.path {
            Path::User => {
                let mut cap = kvm_enable_cap {
                    cap: KVM_CAP_X86_USER_SPACE_MSR,
                    ..Default::default()
                };
                cap.args[0] = u64::from(KVM_MSR_EXIT_REASON_FILTER);
                vm.enable_cap(&cap).map_err(|source| Error::Kvm {
                    what: "KVM_ENABLE_CAP(X86_USER_SPACE_MSR)",
                    source,
                })?;
                // One MSR, bit clear: reads and writes are denied in the
                // kernel and therefore exit to user space.
                let range = MsrFilterRange {
                    flags: MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE,
                    base: self.config.hypercall_msr,
                    msr_count: 1,
                    bitmap: &[0],
                };
                vm.set_msr_filter(MsrFilterDefaultAction::ALLOW, &[range])
                    .map_err(|source| Error::Kvm {
                        what: "KVM_X86_SET_MSR_FILTER",
                        source,
                    })
            }
            Path::Kernel => {
                let paths = self.fast_paths();
                // KVM arms its Xen hooks only with a hypercall MSR set.
                let cfg = kvm_xen_hvm_config {
                    flags: paths.config_flags(),
                    msr: self.config.hypercall_msr,
                    ..Default::default()
                };
                vm.xen_hvm_config(&cfg).map_err(|source| Error::Kvm {
                    what: "KVM_XEN_HVM_CONFIG",
                    source,
                })?;
                let handle = XenVmHandle::new(vm).map_err(|source| Error::Host {
                    what: "a duplicate of the VM fd",
                    source,
                })?;
                if paths.shared_info {
                    let clock = kvm_clock_data {
                        clock: self.domain.env.clock.system_time_ns(),
                        ..Default::default()
                    };
                    if let Err(e) = vm.set_clock(&clock) {
                        log::warn!("KVM_SET_CLOCK to the domain's system time failed: {e}");
                    }
                }
                if let Some(k) = &self.kernel {
                    k.setup_vm(&handle, &self.domain);
                    k.flush_changes();
                }
                let _ = self.vm.set(handle);
                Ok(())
            }
        }
    }

    /// Configures a vCPU: its general and system registers come back in
    /// `kvm_run` on every exit, so a hypercall costs no register ioctl.
    pub fn setup_vcpu(&self, vcpu: &mut VcpuFd) {
        vcpu.set_sync_valid_reg(SyncReg::Register);
        vcpu.set_sync_valid_reg(SyncReg::SystemRegister);
    }

    /// Handles the exit `vcpu` just took if it is Xen's; `vcpu_id` is the
    /// Xen vCPU id. Returns whether it was.
    pub fn handle_exit(&self, vcpu: &mut VcpuFd, vcpu_id: u32) -> bool {
        if let Some(u) = &self.upcall {
            u.after_exit(vcpu, vcpu_id, &self.mem);
        }
        let reason = vcpu.get_kvm_run().exit_reason;
        match reason {
            KVM_EXIT_IO if self.path == Path::User => {
                // SAFETY: the exit reason says `io` is the valid member.
                let io = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.io };
                if io.direction as u32 != KVM_EXIT_IO_OUT
                    || io.port != u16::from(self.config.trap_port)
                    || io.size != 4
                    || io.count != 1
                {
                    return false;
                }
                self.trap_hypercall(vcpu, vcpu_id);
                true
            }
            KVM_EXIT_X86_WRMSR | KVM_EXIT_X86_RDMSR if self.path == Path::User => {
                let write = reason == KVM_EXIT_X86_WRMSR;
                let sregs = vcpu.sync_regs().sregs;
                let run = vcpu.get_kvm_run();
                // SAFETY: the exit reason says `msr` is the valid member.
                let msr = unsafe { &mut run.__bindgen_anon_1.msr };
                if msr.index != self.config.hypercall_msr {
                    return false;
                }
                if write {
                    msr.error = u8::from(!self.install_page(msr.data, &sregs));
                } else {
                    // Xen's hypercall MSR reads as 0.
                    msr.data = 0;
                    msr.error = 0;
                }
                true
            }
            KVM_EXIT_XEN => {
                let sync = vcpu.sync_regs();
                let (rax, paging) = (sync.regs.rax, paging(&sync.sregs));
                let run = vcpu.get_kvm_run();
                // SAFETY: the exit reason says `xen` is the valid member.
                let xen = unsafe { &mut run.__bindgen_anon_1.xen };
                if xen.type_ != KVM_XEN_EXIT_HCALL {
                    return false;
                }
                // SAFETY: type HCALL says `hcall` is the valid member.
                let h = unsafe { &mut xen.u.hcall };
                let call =
                    Hypercall::from_kvm_exit(h.longmode != 0, h.cpl as u8, h.input, h.params);
                if let (Some(k), Some(vm)) = (&self.kernel, self.vm.get()) {
                    k.observe_call_mode(vm, &self.domain, h.longmode != 0);
                }
                let r = {
                    let _current = upcall::CurrentVcpu::enter(vcpu_id);
                    self.dispatch(vcpu_id, paging, &call)
                };
                // KVM writes the whole RAX; keep Xen's 32-bit behaviour of
                // leaving its upper half alone.
                let mut regs = GpRegs {
                    rax,
                    ..Default::default()
                };
                set_result(&mut regs, call.abi, result_value(r));
                h.result = regs.rax;
                self.kernel_sync(vcpu, vcpu_id, paging, &call, r);
                true
            }
            _ => false,
        }
    }

    /// After a hypercall KVM left to us: hands KVM what the guest changed.
    fn kernel_sync(
        &self,
        vcpu: &VcpuFd,
        vcpu_id: u32,
        paging: PagingRegs,
        call: &Hypercall,
        r: HcResult,
    ) {
        let (Some(k), Some(vm)) = (&self.kernel, self.vm.get()) else {
            return;
        };
        let gv = GuestVirt::new(&self.mem, paging);
        k.note_call(&gv, call, r);
        k.sync_vm(vm, &self.domain);
        k.sync_areas(&gv, &self.domain);
        k.sync_vcpu(vcpu, vcpu_id, &self.domain, &|v, t| {
            self.domain.env.timers.set_singleshot(v, Some(t))
        });
        k.flush_changes();
    }

    fn dispatch(&self, vcpu_id: u32, paging: PagingRegs, call: &Hypercall) -> HcResult {
        let gv = GuestVirt::new(&self.mem, paging);
        let r = self.dispatcher.dispatch(&self.domain, vcpu_id, &gv, call);
        if let Some(t) = &self.trace {
            t(vcpu_id, call, r);
        }
        r
    }

    fn trap_hypercall(&self, vcpu: &mut VcpuFd, vcpu_id: u32) {
        let sync = vcpu.sync_regs();
        let (r, s) = (sync.regs, sync.sregs);
        let abi = Abi::from_mode(s.efer & EFER_LMA != 0, s.cs.l != 0);
        let cpl = if s.cr0 & CR0_PE == 0 {
            0
        } else {
            (s.cs.selector & 3) as u8
        };
        let mut regs = GpRegs {
            rax: r.rax,
            rbx: r.rbx,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            rbp: r.rbp,
            r8: r.r8,
            r9: r.r9,
            r10: r.r10,
        };
        let call = Hypercall::from_regs(&regs, abi, cpl);
        let result = self.dispatch(vcpu_id, paging(&s), &call);
        set_result(&mut regs, abi, result_value(result));
        vcpu.sync_regs_mut().regs.rax = regs.rax;
        vcpu.set_sync_dirty_reg(SyncReg::Register);
    }

    /// The guest wrote the hypercall MSR: page-address | index. Only index
    /// 0 exists and the page must be guest RAM; anything else is a #GP, as
    /// on Xen. Writing latches the shared_info layout from the caller's mode.
    fn install_page(&self, value: u64, sregs: &kvm_sregs) -> bool {
        let (gpa, index) = (value & !0xfff, value & 0xfff);
        if index != 0 {
            xen_abi::warn_limited!("hypercall MSR write {value:#x}: page index {index} is not 0");
            return false;
        }
        let stubs = page::build(Trap::Port(self.config.trap_port));
        if self.mem.write_slice(&stubs, GuestAddress(gpa)).is_err() {
            xen_abi::warn_limited!("hypercall MSR write {value:#x}: not guest RAM");
            return false;
        }
        self.domain
            .latch_mode(sregs.efer & EFER_LMA != 0 && sregs.cs.l != 0);
        true
    }
}

fn paging(s: &kvm_sregs) -> PagingRegs {
    PagingRegs {
        cr0: s.cr0,
        cr3: s.cr3,
        cr4: s.cr4,
        efer: s.efer,
    }
}
