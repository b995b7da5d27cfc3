// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Everything of xen-on-kvm that touches KVM: a small layer that puts a
//! `xen-domain` [`XenDomain`] on a KVM VM.
//!
//! [`XenKvm::builder`] takes the VM and the domain's description up front
//! (its [`XenDomainBuilder`], which holds the guest memory) and returns a
//! ready [`XenKvm`]: the hypercall path chosen and configured, the domain
//! built with KVM's services (the upcall injector, a TSC clock), and the
//! event subscribers to register on the VMM's own `event-manager` loop.
//! Each vCPU then gets a [`XenVcpu`] ([`XenKvm::vcpu`]), which owns what
//! that vCPU needs: its Xen CPUID leaves, sync registers, the trap port,
//! its kick, and the handling of every Xen exit:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use kvm_ioctls::{Kvm, VcpuExit};
//! # use vm_memory::{GuestAddress, GuestMemoryMmap};
//! # use xen_abi::memory::{E820Entry, E820Type};
//! # use xen_domain::XenDomain;
//! # use xen_hypercall::DomainConfig;
//! # use xen_kvm_accel::XenKvm;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kvm = Kvm::new()?;
//! let vm = kvm.create_vm()?;
//! vm.create_irq_chip()?;
//! let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 64 << 20)])?;
//! // ... give `mem` to the VM as memory slots, load the guest ...
//! let map = vec![E820Entry::new(0, 64 << 20, E820Type::Ram)];
//! let config = DomainConfig::new(1, xen_cpuid::XenVersion::V4_10, map);
//! let xen = XenKvm::builder(&kvm, &vm, XenDomain::builder(config, mem)).build()?;
//! let _events = xen.spawn_event_thread()?; // or register xen.subscribers()
//! let mut vcpu = vm.create_vcpu(0)?;
//! let supported = kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)?;
//! let mut xen_vcpu = xen.vcpu(0, &mut vcpu, &supported)?;
//! loop {
//!     xen_vcpu.before_run(&vcpu);
//!     match vcpu.run() {
//!         Ok(exit) if xen_vcpu.claims(&exit) => {
//!             xen_vcpu.handle_exit(&mut vcpu);
//!         }
//!         Ok(VcpuExit::Hlt) => break,
//!         Ok(_) => { /* the VMM's own exits */ }
//!         Err(e) if e.errno() == libc::EINTR => {}
//!         Err(e) => return Err(e.into()),
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Two paths carry hypercalls ([`caps::Path`]), chosen from the probed
//! capabilities and the VMM's [`PathChoice`]:
//!
//! * **User-space trap** (any KVM with `KVM_CAP_X86_USER_SPACE_MSR`,
//!   `KVM_CAP_X86_MSR_FILTER` and `KVM_CAP_SYNC_REGS`, including kernels
//!   without `CONFIG_KVM_XEN`): an MSR filter sends the hypercall MSR to
//!   user space; on the guest's WRMSR the domain writes a page of
//!   `mov eax, N; out imm8, eax; ret` stubs; each hypercall is then one
//!   port-I/O exit, whose registers come from `kvm_run`'s sync area (no
//!   extra ioctl), and whose result goes back the same way ([`exit`]).
//! * **Kernel intercept** (`KVM_CAP_XEN_HVM` with `INTERCEPT_HCALL`): KVM
//!   fills the page itself and turns every VMCALL/VMMCALL into
//!   `KVM_EXIT_XEN`, decoded into the same [`Hypercall`]. The in-kernel
//!   fast paths the kernel advertises (shared_info, vcpu_info and pvclock
//!   upkeep, runstate, the upcall vectors, `XENVER_version`, PV timers) are
//!   handed the domain's state as the guest sets it up; [`kernel`] explains
//!   which, under which flag, and how KVM and the user-space event channels
//!   share guest memory.
//!
//! Interrupts: [`KvmInjector`] injects the domain's upcalls through the
//! in-kernel irqchip ([`upcall`]; a GSI / PCI INTx callback is a
//! resampling irqfd, so it is level like Xen's without an interrupt
//! storm); [`eventfd_ports`] lets a VMM back end raise a guest port by
//! writing an eventfd (in the kernel through `KVM_IRQ_ROUTING_XEN_EVTCHN`
//! where KVM offers it, else on the VMM's event loop); and
//! [`routing::GsiRouting`] is the one model of the VM's GSI routing table
//! that every route goes through ([`XenKvm::routing`]).

#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("xen-kvm-accel supports x86-64 hosts and guests only");

pub mod caps;
pub mod clock;
pub mod eventfd_ports;
pub mod evloop;
pub mod exit;
pub mod ioctls;
pub mod kernel;
pub mod routing;
pub mod upcall;

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use kvm_bindings::{
    CpuId, KVM_CAP_X86_USER_SPACE_MSR, KVM_EXIT_IO, KVM_EXIT_IO_OUT, KVM_EXIT_X86_RDMSR,
    KVM_EXIT_X86_WRMSR, KVM_EXIT_XEN, KVM_MSR_EXIT_REASON_FILTER, kvm_clock_data, kvm_enable_cap,
    kvm_xen_hvm_config,
};
use kvm_ioctls::{
    Kvm, MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, SyncReg, VcpuExit, VcpuFd,
    VmFd,
};
use vm_memory::GuestMemoryBackend;
use vmm_sys_util::signal::{SIGRTMIN, register_signal_handler};
use xen_domain::{Subscriber, XenDomain, XenDomainBuilder};
use xen_hypercall::Hypercall;
use xen_hypercall::guest::GuestVirt;
use xen_hypercall::page::{self, Trap};

use ioctls::{IoctlError, XenVmHandle, XenVmIoctls};

pub use caps::{Caps, Path, PathChoice, PathError};
pub use clock::TscClock;
pub use eventfd_ports::{Delivery, EventfdPorts, PortTarget};
pub use evloop::{EventThread, EventWatches};
pub use kernel::{FastPaths, KernelSync};
pub use routing::GsiRouting;
pub use upcall::{KvmInjector, LineEvents};

/// `kvm_xen_exit.type` of a hypercall exit.
const KVM_XEN_EXIT_HCALL: u32 = 1;

/// Errors of the VMM-side setup (never of the guest).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The requested path is not available on this KVM.
    #[error("Cannot use the requested hypercall path")]
    Path(#[from] PathError),
    /// The domain could not be built.
    #[error("Cannot build the Xen domain")]
    Domain(#[from] xen_domain::Error),
    /// A host facility (an eventfd, a thread, a signal) could not be set up.
    #[error("Setting up {what} failed")]
    Host {
        /// What was being set up.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A KVM ioctl failed.
    #[error("KVM ioctl {what} failed")]
    Kvm {
        /// Which ioctl.
        what: &'static str,
        /// The error.
        #[source]
        source: vmm_sys_util::errno::Error,
    },
    /// The Xen CPUID leaves could not be applied.
    #[error("Cannot apply the Xen CPUID leaves")]
    Cpuid(#[from] xen_cpuid::Error),
    /// A KVM Xen attribute ioctl failed.
    #[error("A KVM Xen attribute ioctl failed")]
    XenAttr(#[from] IoctlError),
    /// The GSI routing table or an irqfd was refused.
    #[error("GSI routing failed")]
    Routing(#[from] routing::RoutingError),
}

fn kvm_err(what: &'static str) -> impl FnOnce(vmm_sys_util::errno::Error) -> Error {
    move |source| Error::Kvm { what, source }
}

fn host_err(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Host { what, source }
}

/// Everything up front for [`XenKvm`]: the VM, the domain's description,
/// and the few KVM choices, each with a default.
pub struct XenKvmBuilder<'a, M> {
    kvm: &'a Kvm,
    vm: &'a VmFd,
    domain: XenDomainBuilder<M>,
    path: PathChoice,
    trap_port: u8,
    kick_signal: i32,
}

impl<M> std::fmt::Debug for XenKvmBuilder<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenKvmBuilder")
            .field("path", &self.path)
            .field("trap_port", &self.trap_port)
            .finish_non_exhaustive()
    }
}

impl<'a, M: GuestMemoryBackend + Clone + Send + Sync + 'static> XenKvmBuilder<'a, M> {
    /// Which hypercall path to use (default: the kernel's when it has one).
    pub fn path(mut self, path: PathChoice) -> Self {
        self.path = path;
        self
    }

    /// The I/O port of the user-space trap stubs (default
    /// [`page::DEFAULT_TRAP_PORT`]; see `xen_hypercall::page` for the ports
    /// to avoid). Its exits are the handler's, not the VMM's devices'.
    pub fn trap_port(mut self, port: u8) -> Self {
        self.trap_port = port;
        self
    }

    /// The signal that kicks a vCPU thread out of `KVM_RUN` (default
    /// `SIGRTMIN`); this crate installs a handler that does nothing.
    pub fn kick_signal(mut self, signal: i32) -> Self {
        self.kick_signal = signal;
        self
    }

    /// Chooses the path, builds the domain with KVM's services and
    /// configures the VM: the MSR filter (user-space path) or
    /// `KVM_XEN_HVM_CONFIG` with `INTERCEPT_HCALL` (kernel path; with
    /// `SHARED_INFO`, kvmclock is also set to the domain clock's system
    /// time, so that KVM's pvclocks and timers share the domain's time
    /// base). The VM's in-kernel irqchip, if any, must exist already.
    pub fn build(self) -> Result<XenKvm<M>, Error> {
        let caps = Caps::probe(self.kvm);
        let (path, reason) = caps.choose(self.path)?;
        let config = self.domain.config();
        let (vcpus, hypercall_msr) = (config.vcpus, config.hypercall_msr());
        let kernel = (path == Path::Kernel)
            .then(|| Arc::new(KernelSync::new(FastPaths::from_flags(caps.xen_hvm), vcpus)));
        let routing =
            Arc::new(GsiRouting::for_vm(self.vm).map_err(host_err("the GSI routing table"))?);
        let injector = Arc::new(KvmInjector::new(
            Some(dup_vm(self.kvm, self.vm)?),
            Box::new(XenVmHandle::new(self.vm).map_err(host_err("a duplicate of the VM fd"))?),
            kernel.clone(),
            vcpus,
            self.kick_signal,
        )?);
        let mut domain = self.domain.injector(injector.clone());
        let tsc = (!domain.has_clock()).then(|| Arc::new(TscClock::new()));
        if let Some(t) = &tsc {
            domain = domain.clock(t.clone());
        }
        let domain = Arc::new(domain.build()?);
        install_kick_handler(self.kick_signal)?;

        let vm_handle = match path {
            Path::User => {
                user_path_filter(self.vm, hypercall_msr)?;
                None
            }
            Path::Kernel => Some(kernel_path_config(
                self.vm,
                &domain,
                kernel.as_deref(),
                hypercall_msr,
            )?),
        };
        let watches = Arc::new(EventWatches::new()?);
        let eventfd_ports = EventfdPorts::new(
            routing.clone(),
            domain.channels().clone(),
            domain.memory().clone(),
            watches.clone(),
            kernel.clone(),
        );
        Ok(XenKvm {
            shared: Arc::new(Shared {
                domain,
                path,
                reason,
                hypercall_msr,
                trap_port: self.trap_port,
                kernel,
                vm: vm_handle,
                injector,
                routing,
                tsc,
                watches,
            }),
            eventfd_ports,
        })
    }
}

/// Locks `m`, whether or not a thread panicked holding it (the state the
/// locks here guard stays consistent at every unlock).
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A second `VmFd` on the same VM, so upcalls can be raised from any thread.
fn dup_vm(kvm: &Kvm, vm: &VmFd) -> Result<VmFd, Error> {
    // SAFETY: dup() of a valid, open VM file descriptor; the result is
    // checked before use.
    let fd = unsafe { libc::dup(vm.as_raw_fd()) };
    if fd < 0 {
        return Err(Error::Host {
            what: "dup(VM fd)",
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: `fd` is a fresh duplicate of a VM file descriptor that
    // nothing else owns; the VmFd takes ownership of it.
    unsafe { kvm.create_vmfd_from_rawfd(fd) }.map_err(kvm_err("KVM_GET_VCPU_MMAP_SIZE"))
}

/// Installs the no-op handler of the kick signal `signal`, whose only
/// effect is to interrupt `KVM_RUN`. [`XenKvmBuilder::build`] installs it
/// for its own signal; a VMM that kicks its vCPU threads itself (to stop
/// them, say) with the same signal may call it too: installing it again
/// is harmless.
pub fn install_kick_handler(signal: i32) -> Result<(), Error> {
    register_signal_handler(signal, upcall::kick_handler).map_err(|e| Error::Host {
        what: "the vCPU kick signal handler",
        source: std::io::Error::from_raw_os_error(e.errno()),
    })
}

/// User-space path: the hypercall MSR (reads and writes) exits to user
/// space; every other MSR stays KVM's.
fn user_path_filter(vm: &VmFd, msr: u32) -> Result<(), Error> {
    let mut cap = kvm_enable_cap {
        cap: KVM_CAP_X86_USER_SPACE_MSR,
        ..Default::default()
    };
    cap.args[0] = u64::from(KVM_MSR_EXIT_REASON_FILTER);
    vm.enable_cap(&cap)
        .map_err(kvm_err("KVM_ENABLE_CAP(X86_USER_SPACE_MSR)"))?;
    // One MSR, bit clear: reads and writes are denied in the kernel and
    // therefore exit to user space.
    let range = MsrFilterRange {
        flags: MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE,
        base: msr,
        msr_count: 1,
        bitmap: &[0],
    };
    vm.set_msr_filter(MsrFilterDefaultAction::ALLOW, &[range])
        .map_err(kvm_err("KVM_X86_SET_MSR_FILTER"))
}

/// Kernel path: `KVM_XEN_HVM_CONFIG`, kvmclock on the domain's time base,
/// and the VM attributes KVM can own now.
fn kernel_path_config<M: GuestMemoryBackend + Clone + Send + Sync + 'static>(
    vm: &VmFd,
    domain: &XenDomain<M>,
    kernel: Option<&KernelSync>,
    msr: u32,
) -> Result<XenVmHandle, Error> {
    let paths = kernel.map(|k| k.paths()).unwrap_or_default();
    // KVM arms its Xen hooks only with a hypercall MSR set.
    let cfg = kvm_xen_hvm_config {
        flags: paths.config_flags(),
        msr,
        ..Default::default()
    };
    vm.xen_hvm_config(&cfg)
        .map_err(kvm_err("KVM_XEN_HVM_CONFIG"))?;
    let handle = XenVmHandle::new(vm).map_err(host_err("a duplicate of the VM fd"))?;
    if paths.shared_info {
        let clock = kvm_clock_data {
            clock: domain.core().env.clock.system_time_ns(),
            ..Default::default()
        };
        if let Err(e) = vm.set_clock(&clock) {
            log::warn!("KVM_SET_CLOCK to the domain's system time failed: {e}");
        }
    }
    if let Some(k) = kernel {
        k.setup_vm(&handle, domain.core());
        k.flush_changes();
    }
    Ok(handle)
}

/// What the VM and all its vCPU handlers share.
struct Shared<M: GuestMemoryBackend> {
    domain: Arc<XenDomain<M>>,
    path: Path,
    reason: String,
    hypercall_msr: u32,
    trap_port: u8,
    /// Kernel path: the fast paths and what KVM was given.
    kernel: Option<Arc<KernelSync>>,
    /// Kernel path: a duplicate of the VM fd for the VM-level Xen ioctls.
    vm: Option<XenVmHandle>,
    injector: Arc<KvmInjector>,
    routing: Arc<GsiRouting>,
    /// The domain's clock, when this crate chose it (calibrated at vCPU 0).
    tsc: Option<Arc<TscClock>>,
    watches: Arc<EventWatches>,
}

/// A Xen domain on a KVM VM; see the crate documentation.
pub struct XenKvm<M: GuestMemoryBackend + Clone + Send + Sync + 'static> {
    shared: Arc<Shared<M>>,
    eventfd_ports: EventfdPorts<M>,
}

impl<M: GuestMemoryBackend + Clone + Send + Sync + 'static> std::fmt::Debug for XenKvm<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenKvm")
            .field("path", &self.shared.path)
            .field("domain", &self.shared.domain)
            .finish_non_exhaustive()
    }
}

impl<M: GuestMemoryBackend + Clone + Send + Sync + 'static> XenKvm<M> {
    /// Starts describing the Xen side of `vm`: `domain` holds the guest
    /// memory, configuration and the VMM's services.
    pub fn builder<'a>(
        kvm: &'a Kvm,
        vm: &'a VmFd,
        domain: XenDomainBuilder<M>,
    ) -> XenKvmBuilder<'a, M> {
        XenKvmBuilder {
            kvm,
            vm,
            domain,
            path: PathChoice::Auto,
            trap_port: page::DEFAULT_TRAP_PORT,
            kick_signal: SIGRTMIN(),
        }
    }

    /// The domain.
    pub fn domain(&self) -> &Arc<XenDomain<M>> {
        &self.shared.domain
    }

    /// The path in use.
    pub fn path(&self) -> Path {
        self.shared.path
    }

    /// Why this path was chosen, as a sentence.
    pub fn path_reason(&self) -> &str {
        &self.shared.reason
    }

    /// The kernel fast paths in use (none on the user-space path).
    pub fn fast_paths(&self) -> FastPaths {
        self.shared
            .kernel
            .as_ref()
            .map(|k| k.paths())
            .unwrap_or_default()
    }

    /// The VM handle for Xen VM ioctls on the kernel path (for example to
    /// read back what KVM was given).
    pub fn kernel_vm(&self) -> Option<&XenVmHandle> {
        self.shared.vm.as_ref()
    }

    /// The VM's GSI routing table: the VMM's own routes must go through
    /// it (see [`routing`]).
    pub fn routing(&self) -> &Arc<GsiRouting> {
        &self.shared.routing
    }

    /// The upcall injector the domain raises through.
    pub fn injector(&self) -> &Arc<KvmInjector> {
        &self.shared.injector
    }

    /// Eventfd-to-port connections for the VMM's back ends: routed in the
    /// kernel on the kernel path when KVM advertises `EVTCHN_2LEVEL`,
    /// served on the VMM's event loop otherwise (see [`eventfd_ports`]).
    pub fn eventfd_ports(&self) -> &EventfdPorts<M> {
        &self.eventfd_ports
    }

    /// Raises 2-level `port` for Xen vCPU `vcpu` through
    /// `KVM_XEN_HVM_EVTCHN_SEND`, as KVM's own deliveries do. Returns
    /// `Ok(false)` when that path is not available (user-space path, no
    /// `EVTCHN_SEND`, FIFO channels); the caller then raises the port
    /// through the domain.
    pub fn kernel_send(&self, port: u32, vcpu: u32) -> Result<bool, Error> {
        match (&self.shared.kernel, &self.shared.vm) {
            (Some(k), Some(vm)) if k.paths().evtchn_send && !k.fifo() => {
                vm.xen_hvm_evtchn_send(port, vcpu)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The `event-manager` subscribers to register on the VMM's event loop:
    /// the domain's timers, the callback line's resample eventfd, and the
    /// eventfd watches of [`XenKvm::eventfd_ports`].
    pub fn subscribers(&self) -> Vec<Subscriber> {
        let s = &self.shared;
        let mut v = s.domain.subscribers();
        v.push(Arc::new(Mutex::new(LineEvents::new(
            s.injector.clone(),
            s.domain.clone(),
        ))));
        v.push(Arc::new(Mutex::new(s.watches.clone())));
        v
    }

    /// Serves [`XenKvm::subscribers`] on a thread of their own (until the
    /// returned handle is dropped), for a VMM without an event loop.
    pub fn spawn_event_thread(&self) -> Result<EventThread, Error> {
        EventThread::spawn("xen-events", self.subscribers())
    }

    /// Prepares vCPU `id` (its index; KVM vCPU id = Xen vCPU id = APIC id)
    /// for Xen, before it first runs: sets its CPUID to `cpuid` with the
    /// domain's Xen leaves applied, makes its registers come back in
    /// `kvm_run` on every exit (so a hypercall costs no register ioctl),
    /// calibrates the domain's TSC clock against vCPU 0, and on the kernel
    /// path gives KVM the vCPU's Xen identity.
    pub fn vcpu(&self, id: u32, vcpu: &mut VcpuFd, cpuid: &CpuId) -> Result<XenVcpu<M>, Error> {
        let s = &self.shared;
        let mut cpuid = cpuid.clone();
        s.domain.config().cpuid().apply(&mut cpuid, id)?;
        vcpu.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
        vcpu.set_sync_valid_reg(SyncReg::Register);
        vcpu.set_sync_valid_reg(SyncReg::SystemRegister);
        vcpu.set_sync_valid_reg(SyncReg::VcpuEvents);
        if id == 0
            && let Some(t) = &s.tsc
        {
            t.calibrate(vcpu)?;
        }
        let mut v = XenVcpu {
            id,
            shared: s.clone(),
            thread: None,
        };
        v.kernel_sync_vcpu(vcpu);
        Ok(v)
    }
}

/// One vCPU's Xen side: created by [`XenKvm::vcpu`], used on the vCPU's
/// own thread around every `KVM_RUN`.
pub struct XenVcpu<M: GuestMemoryBackend + Clone + Send + Sync + 'static> {
    id: u32,
    shared: Arc<Shared<M>>,
    /// The thread registered as this vCPU's kick target.
    thread: Option<libc::pthread_t>,
}

impl<M: GuestMemoryBackend + Clone + Send + Sync + 'static> std::fmt::Debug for XenVcpu<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenVcpu")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<M: GuestMemoryBackend + Clone + Send + Sync + 'static> XenVcpu<M> {
    /// The vCPU's index.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Call before every `KVM_RUN`, on the vCPU's thread: makes that thread
    /// the vCPU's kick target (a global callback vector raised on another
    /// thread kicks the vCPU out of the guest or its halt, so that KVM
    /// injects it as the vCPU re-enters, or so that this call clears the
    /// previous one's in-service bit first), and does what upcalls left
    /// for this vCPU (clearing an un-EOI'd callback vector's in-service
    /// bit, dropping a `KVM_IRQ_LINE` callback line).
    pub fn before_run(&mut self, vcpu: &VcpuFd) {
        let s = &self.shared;
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        if self.thread != Some(me) {
            s.injector.kicks.bind(self.id, true);
            self.thread = Some(me);
        }
        s.injector
            .before_run(vcpu, self.id, || s.domain.upcall_pending(0));
    }

    /// Whether `exit` is Xen's: the trap port's stub (user-space path), the
    /// hypercall MSR, or `KVM_EXIT_XEN`. The VMM hands such an exit to
    /// [`XenVcpu::handle_exit`] instead of its own devices.
    pub fn claims(&self, exit: &VcpuExit) -> bool {
        let s = &self.shared;
        match (exit, s.path) {
            (VcpuExit::IoOut(port, data), Path::User) => {
                *port == u16::from(s.trap_port) && data.len() == 4
            }
            (VcpuExit::X86Rdmsr(m), Path::User) => m.index == s.hypercall_msr,
            (VcpuExit::X86Wrmsr(m), Path::User) => m.index == s.hypercall_msr,
            (VcpuExit::Unsupported(reason), _) => *reason == KVM_EXIT_XEN,
            _ => false,
        }
    }

    /// Handles the exit the vCPU just took if it is Xen's (the hypercall,
    /// or the hypercall-page MSR); returns whether it was.
    pub fn handle_exit(&mut self, vcpu: &mut VcpuFd) -> bool {
        let reason = vcpu.get_kvm_run().exit_reason;
        let handled = match (reason, self.shared.path) {
            (KVM_EXIT_IO, Path::User) => self.trap(vcpu),
            (KVM_EXIT_X86_WRMSR | KVM_EXIT_X86_RDMSR, Path::User) => self.msr(vcpu),
            (KVM_EXIT_XEN, _) => self.kernel_hypercall(vcpu),
            _ => false,
        };
        if handled {
            self.shared.injector.end_exit(vcpu, self.id);
        }
        handled
    }

    /// A port-trap hypercall (user-space path).
    fn trap(&mut self, vcpu: &mut VcpuFd) -> bool {
        // SAFETY: the exit reason says `io` is the valid member.
        let io = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.io };
        if io.direction as u32 != KVM_EXIT_IO_OUT
            || io.port != u16::from(self.shared.trap_port)
            || io.size != 4
            || io.count != 1
        {
            return false;
        }
        let sync = vcpu.sync_regs();
        let (mut regs, sregs) = (sync.regs, sync.sregs);
        {
            let _current = upcall::CurrentVcpu::enter(self.id);
            let _answered = exit::trap_hypercall(&self.shared.domain, self.id, &mut regs, &sregs);
        }
        vcpu.sync_regs_mut().regs.rax = regs.rax;
        vcpu.set_sync_dirty_reg(SyncReg::Register);
        true
    }

    /// The hypercall MSR (user-space path): a write installs the page
    /// (index > 0 or a page outside RAM is a #GP, as on Xen), reads are 0.
    fn msr(&mut self, vcpu: &mut VcpuFd) -> bool {
        let write = vcpu.get_kvm_run().exit_reason == KVM_EXIT_X86_WRMSR;
        let sregs = vcpu.sync_regs().sregs;
        let s = &self.shared;
        let run = vcpu.get_kvm_run();
        // SAFETY: the exit reason says `msr` is the valid member.
        let msr = unsafe { &mut run.__bindgen_anon_1.msr };
        if msr.index != s.hypercall_msr {
            return false;
        }
        if write {
            let trap = Trap::Port(s.trap_port);
            let ok = s
                .domain
                .write_hypercall_page(msr.data, trap, exit::long_mode(&sregs));
            msr.error = u8::from(!ok);
        } else {
            // Xen's hypercall MSR reads as 0.
            msr.data = 0;
            msr.error = 0;
        }
        true
    }

    /// A kernel-intercepted hypercall (`KVM_EXIT_XEN`).
    fn kernel_hypercall(&mut self, vcpu: &mut VcpuFd) -> bool {
        let s = self.shared.clone();
        let sync = vcpu.sync_regs();
        let (rax, paging) = (sync.regs.rax, exit::paging(&sync.sregs));
        let run = vcpu.get_kvm_run();
        // SAFETY: the exit reason says `xen` is the valid member.
        let xen = unsafe { &mut run.__bindgen_anon_1.xen };
        if xen.type_ != KVM_XEN_EXIT_HCALL {
            return false;
        }
        // SAFETY: type HCALL says `hcall` is the valid member.
        let h = unsafe { &mut xen.u.hcall };
        let call = Hypercall::from_kvm_exit(h.longmode != 0, h.cpl as u8, h.input, h.params);
        if let (Some(k), Some(vm)) = (&s.kernel, &s.vm) {
            k.observe_call_mode(vm, s.domain.core(), h.longmode != 0);
        }
        let r = {
            let _current = upcall::CurrentVcpu::enter(self.id);
            s.domain.hypercall(self.id, paging, &call)
        };
        h.result = exit::kernel_result(rax, call.abi, r);
        // After a hypercall KVM left to us: hand KVM what the guest changed.
        if let (Some(k), Some(vm)) = (&s.kernel, &s.vm) {
            let gv = GuestVirt::new(s.domain.memory(), paging);
            k.note_call(&gv, &call, r);
            k.sync_vm(vm, s.domain.core());
            k.sync_areas(&gv, s.domain.core());
        }
        self.kernel_sync_vcpu(vcpu);
        true
    }

    /// Kernel path: gives KVM this vCPU's Xen identity and areas as the
    /// domain has them now (on the vCPU's own thread, or before it runs).
    fn kernel_sync_vcpu(&mut self, vcpu: &VcpuFd) {
        let s = &self.shared;
        if let Some(k) = &s.kernel {
            let timers = &s.domain.core().env.timers;
            k.sync_vcpu(vcpu, self.id, s.domain.core(), &|v, t| {
                timers.set_singleshot(v, Some(t))
            });
            k.flush_changes();
        }
    }
}

impl<M: GuestMemoryBackend + Clone + Send + Sync + 'static> Drop for XenVcpu<M> {
    fn drop(&mut self) {
        // This thread is no longer the vCPU's: never signal it again.
        self.shared.injector.kicks.bind(self.id, false);
    }
}
