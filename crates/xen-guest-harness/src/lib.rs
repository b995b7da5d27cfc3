// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Runs small freestanding guest programs under KVM and collects what they
//! report. This is the base of the xen-on-kvm conformance suite.
//!
//! A guest is a `#![no_std]` Rust program of the `xen-guests` crate
//! (`crates/xen-guests/guest/bin/<name>.rs`), embedded there and re-exported
//! here as [`guests::NAME`](guests). [`Runner`] loads it into a fresh
//! VM (in-kernel irqchip, 64-bit mode, identity paging over 4 GiB, a GDT and
//! TSS, see [`layout`]), runs it, and returns an [`Outcome`]: the console
//! text the guest printed and how the run ended.
//!
//! ```no_run
//! use xen_guest_harness::{Runner, guests};
//! let outcome = Runner::new(guests::CPUID).run().unwrap();
//! outcome.assert_status(0);
//! for line in outcome.lines_with("cpuid ") {
//!     println!("{line}");
//! }
//! ```

#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("xen-guest-harness supports x86-64 hosts and guests only");

pub mod xen;

pub use xen::{Xen, XenHandle};
pub use xen_guests::{Guest, guests, layout};

use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use linux_loader::loader::{KernelLoader, elf::Elf};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::signal::{Killable, SIGRTMIN};
use xen_domain::XenDomain;
use xen_kvm_accel::{XenKvm, XenVcpu};

/// Port whose bytes form the guest's console (must match `guest/rt.rs`).
pub const CONSOLE_PORT: u16 = 0xe9;
/// Port whose 32-bit write ends the run (must match `guest/rt.rs`).
pub const EXIT_PORT: u16 = 0xf4;
/// The port the `exit_cost` guest writes a phase number to at each
/// boundary of what it measures ([`Runner::mark_port`]).
pub const MARK_PORT: u16 = 0xe4;
/// Status the guest runtime reports when the guest panics.
pub const STATUS_PANIC: u32 = 0xdead_0001;
/// Status base the guest runtime reports for an exception (plus vector).
pub const STATUS_EXCEPTION: u32 = 0xdead_0100;
/// Most console bytes kept from one run; a guest printing more is stopped.
pub const CONSOLE_LIMIT: usize = 16 << 20;

/// Errors of the harness itself (not of the guest).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `/dev/kvm` could not be opened.
    #[error("Cannot open /dev/kvm")]
    OpenKvm(#[source] kvm_ioctls::Error),
    /// A KVM ioctl failed.
    #[error("KVM ioctl {what} failed")]
    Kvm {
        /// Which ioctl.
        what: &'static str,
        /// The error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be created or written.
    #[error("Guest memory setup failed")]
    Memory(#[source] vm_memory::GuestMemoryError),
    /// Guest memory could not be mapped.
    #[error("Guest memory mapping failed")]
    Mmap(#[source] vm_memory::mmap::FromRangesError),
    /// The guest image could not be loaded.
    #[error("Cannot load guest image {name}")]
    Load {
        /// The guest's name.
        name: &'static str,
        /// The loader error.
        #[source]
        source: linux_loader::loader::Error,
    },
    /// The CPUID hook refused the table.
    #[error("The CPUID hook failed: {0}")]
    Cpuid(String),
    /// Xen could not be wired (no usable hypercall path, an ioctl failed).
    #[error("Xen setup failed: {0}")]
    Xen(String),
    /// The VM setup hook failed.
    #[error("The VM setup hook failed: {0}")]
    VmSetup(String),
    /// The vCPU thread died.
    #[error("The vCPU thread panicked")]
    VcpuThread,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The guest wrote this status to the exit port.
    Status(u32),
    /// The vCPU shut down (triple fault).
    Shutdown,
    /// The run exceeded its timeout.
    Timeout,
    /// KVM reported an internal error (for example an instruction its
    /// emulator cannot handle), with its sub-error code.
    InternalError(u32),
    /// VM entry failed with this hardware reason.
    FailEntry(u64),
    /// The guest printed more than [`CONSOLE_LIMIT`] bytes.
    ConsoleOverflow,
    /// Any other exit the harness does not expect.
    Unexpected(String),
}

/// Most vCPUs a harness VM runs.
pub const MAX_VCPUS: u32 = 4;

/// Counts of the exits a run took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitCounts {
    /// Port I/O exits (all ports).
    pub pio: u64,
    /// MMIO exits.
    pub mmio: u64,
    /// Port I/O to ports nobody handles.
    pub unhandled_pio: u64,
    /// Exits the test's hook handled.
    pub hooked: u64,
    /// Exits Xen handled (hypercalls, the hypercall MSR).
    pub xen: u64,
    /// Time spent handling them in the VMM, in nanoseconds.
    pub xen_ns: u64,
}

impl ExitCounts {
    fn add(&mut self, other: &ExitCounts) {
        self.pio += other.pio;
        self.mmio += other.mmio;
        self.unhandled_pio += other.unhandled_pio;
        self.hooked += other.hooked;
        self.xen += other.xen;
        self.xen_ns += other.xen_ns;
    }
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The guest that ran.
    pub guest: &'static str,
    /// Everything the guest printed on the console port.
    pub console: String,
    /// How the run ended.
    pub end: End,
    /// Exit counts.
    pub exits: ExitCounts,
    /// The guest's RIP when the run ended.
    pub rip: u64,
    /// Wall time of the run (VM creation to end).
    pub wall: Duration,
}

impl Outcome {
    /// The exit status, if the guest wrote one.
    pub fn status(&self) -> Option<u32> {
        match self.end {
            End::Status(s) => Some(s),
            _ => None,
        }
    }

    /// Panics with the guest's console unless it ended with `status`.
    #[track_caller]
    pub fn assert_status(&self, status: u32) {
        assert_eq!(
            self.end,
            End::Status(status),
            "guest {} ended badly (rip {:#x}); console:\n{}",
            self.guest,
            self.rip,
            self.console
        );
    }

    /// The guest's `v <name> <value>` report lines as a map from name to
    /// the rest of the line (the convention the Xen guests use).
    pub fn values(&self) -> std::collections::BTreeMap<&str, &str> {
        self.lines_with("v ")
            .filter_map(|l| l.split_once(' '))
            .collect()
    }

    /// Console lines starting with `prefix`, with the prefix removed.
    pub fn lines_with<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.console
            .lines()
            .filter_map(move |l| l.strip_prefix(prefix))
    }
}

/// Whether KVM-backed tests can run here. Without `/dev/kvm` this prints a
/// loud skip message and returns false, except when `CI=true`, where a
/// missing `/dev/kvm` is a failure (it panics).
pub fn kvm_available(test: &str) -> bool {
    match std::fs::metadata("/dev/kvm") {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: /dev/kvm is required in CI but unavailable: {e}");
            }
            skip(test, &format!("/dev/kvm unavailable ({e})"));
            false
        }
    }
}

/// Announces a skipped test on the process's real standard error, which
/// the test harness does not capture, so that the skip is seen even when
/// the test "passes".
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n*** SKIPPED {test}: {why} ***\n"
    );
}

/// The `KVM_CAP_XEN_HVM` flags of this host's KVM (0 when it has no Xen
/// support, as on the development machines).
pub fn xen_hvm_caps() -> Result<u32, Error> {
    let kvm = Kvm::new().map_err(Error::OpenKvm)?;
    Ok(kvm.check_extension_int(kvm_ioctls::Cap::XenHvm).max(0) as u32)
}

/// Whether this process runs inside the nested lab (`lab/run` sets
/// `XEN_ON_KVM_LAB=1`), where kernel-intercept tests must not skip.
pub fn in_lab() -> bool {
    std::env::var("XEN_ON_KVM_LAB").is_ok_and(|v| v == "1")
}

type CpuidHook = Box<dyn Fn(&mut CpuId, u32) -> Result<(), String> + Send>;
type VmHook = Box<dyn FnOnce(&VmFd, &GuestMemoryMmap) -> Result<(), String> + Send>;
type ArgFromXen = Box<dyn FnOnce(&XenKvm<GuestMemoryMmap>) -> u64 + Send>;
type VcpuHook = Box<dyn Fn(&mut VcpuFd, u32) -> Result<(), String> + Send>;
/// A handler for exits the harness does not own (everything but its console
/// and exit ports and the fatal exits): it reads the exit from the vCPU's
/// `kvm_run` (the second argument is the vCPU index) and returns whether it
/// handled it. With several vCPUs, calls are serialised.
pub type ExitHook = Box<dyn FnMut(&mut VcpuFd, u32) -> bool + Send>;

/// Runs one guest in a fresh VM.
pub struct Runner {
    guest: Guest,
    memory: usize,
    timeout: Duration,
    arg: u64,
    arg_from_xen: Option<ArgFromXen>,
    vcpus: u32,
    cpuid: Option<CpuidHook>,
    vm_setup: Option<VmHook>,
    vcpu_setup: Option<VcpuHook>,
    on_exit: Option<ExitHook>,
    xen: Option<(Xen, XenHandle)>,
}

impl Runner {
    /// A runner with 32 MiB of RAM, a 60 s timeout and KVM's supported CPUID.
    pub fn new(guest: Guest) -> Self {
        Self {
            guest,
            memory: 32 << 20,
            timeout: Duration::from_secs(60),
            arg: 0,
            arg_from_xen: None,
            vcpus: 1,
            cpuid: None,
            vm_setup: None,
            vcpu_setup: None,
            on_exit: None,
            xen: None,
        }
    }

    /// Sets the guest RAM size in bytes (at least 4 MiB).
    pub fn memory(mut self, bytes: usize) -> Self {
        self.memory = bytes.max(4 << 20);
        self
    }

    /// Sets the run's timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the argument the guest receives (`Start::arg`, RSI at entry).
    pub fn arg(mut self, arg: u64) -> Self {
        self.arg = arg;
        self
    }

    /// Computes the guest's argument from the domain once it is on the VM
    /// (for example the port of a back end bound in [`Xen::on_ready`]);
    /// replaces [`Runner::arg`] when Xen is present.
    pub fn arg_from_xen(
        mut self,
        f: impl FnOnce(&XenKvm<GuestMemoryMmap>) -> u64 + Send + 'static,
    ) -> Self {
        self.arg_from_xen = Some(Box::new(f));
        self
    }

    /// Runs `n` vCPUs (1 to [`MAX_VCPUS`]). Every vCPU enters the guest at
    /// the same entry with its index in RDI and its own stack; the run ends
    /// when vCPU 0's `guest_main` returns (or any vCPU ends it otherwise).
    pub fn vcpus(mut self, n: u32) -> Self {
        self.vcpus = n.clamp(1, MAX_VCPUS);
        self
    }

    /// Edits each vCPU's CPUID table (KVM's supported one, with the Xen
    /// leaves when [`Runner::xen`] is used) before it is set; the second
    /// argument is the vCPU index.
    pub fn cpuid(
        mut self,
        hook: impl Fn(&mut CpuId, u32) -> Result<(), String> + Send + 'static,
    ) -> Self {
        self.cpuid = Some(Box::new(hook));
        self
    }

    /// Configures the VM (after the irqchip and guest memory, before the
    /// vCPU), for example with `KVM_XEN_HVM_CONFIG` or an MSR filter.
    pub fn vm_setup(
        mut self,
        hook: impl FnOnce(&VmFd, &GuestMemoryMmap) -> Result<(), String> + Send + 'static,
    ) -> Self {
        self.vm_setup = Some(Box::new(hook));
        self
    }

    /// Configures each vCPU (with its index) after its registers are set.
    pub fn vcpu_setup(
        mut self,
        hook: impl Fn(&mut VcpuFd, u32) -> Result<(), String> + Send + 'static,
    ) -> Self {
        self.vcpu_setup = Some(Box::new(hook));
        self
    }

    /// Handles exits the harness does not own (port I/O to other ports,
    /// MSR exits, `KVM_EXIT_XEN`, ...).
    pub fn on_exit(mut self, hook: impl FnMut(&mut VcpuFd, u32) -> bool + Send + 'static) -> Self {
        self.on_exit = Some(Box::new(hook));
        self
    }

    /// Timestamps every guest write to `port`, in order (a guest marks the
    /// boundaries of what it measures there, as `exit_cost` does on
    /// [`MARK_PORT`]). This is the run's exit hook.
    pub fn mark_port(self, port: u16) -> (Self, PortMarks) {
        let marks = PortMarks::default();
        let m = marks.clone();
        let runner = self.on_exit(move |vcpu, _| {
            let run = vcpu.get_kvm_run();
            if run.exit_reason != kvm_bindings::KVM_EXIT_IO {
                return false;
            }
            // SAFETY: the exit reason says `io` is the valid member.
            let io = unsafe { run.__bindgen_anon_1.io };
            if io.port != port {
                return false;
            }
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Instant::now());
            true
        });
        (runner, marks)
    }

    /// Presents Xen to the guest: a `xen-domain` domain of `xen.config` on
    /// `xen-kvm-accel` (the path `xen.path` allows), its CPUID leaves, its
    /// hypercalls. The returned handle shows the domain on its VM once the
    /// run has begun. The test's own exit hook runs first; exits it declines
    /// go to Xen.
    pub fn xen(mut self, xen: Xen) -> (Self, XenHandle) {
        let handle = XenHandle::default();
        self.xen = Some((xen, handle.clone()));
        (self, handle)
    }

    /// Runs the guest to its end.
    pub fn run(self) -> Result<Outcome, Error> {
        let start = Instant::now();
        let kvm = Kvm::new().map_err(Error::OpenKvm)?;
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        let mem = setup_memory(&vm, self.memory)?;
        vm.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        if let Some(hook) = self.vm_setup {
            hook(&vm, &mem).map_err(Error::VmSetup)?;
        }
        let xen = match self.xen {
            Some((x, handle)) => {
                let mut domain = XenDomain::builder(x.config, mem.clone());
                for step in x.domain {
                    domain = step(domain);
                }
                let kvm_xen = XenKvm::builder(&kvm, &vm, domain)
                    .path(x.path)
                    .build()
                    .map_err(|e| Error::Xen(chain(&e)))?;
                for step in x.ready {
                    step(&kvm_xen).map_err(Error::Xen)?;
                }
                let _ = handle.0.set(kvm_xen);
                Some(handle)
            }
            None => None,
        };
        let arg = match (self.arg_from_xen, xen.as_ref().and_then(XenHandle::kvm)) {
            (Some(f), Some(x)) => f(x),
            _ => self.arg,
        };
        // Timers, the callback line and eventfd ports, served while the
        // guest runs.
        let _events = match xen.as_ref().and_then(XenHandle::kvm) {
            Some(x) => Some(x.spawn_event_thread().map_err(|e| Error::Xen(chain(&e)))?),
            None => None,
        };
        let entry = load(&mem, self.guest)?;

        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
        let mut vcpus = Vec::new();
        for index in 0..self.vcpus {
            let mut vcpu = vm
                .create_vcpu(u64::from(index))
                .map_err(kvm_err("KVM_CREATE_VCPU"))?;
            let mut cpuid = supported.clone();
            if let Some(hook) = &self.cpuid {
                hook(&mut cpuid, index).map_err(Error::Cpuid)?;
            }
            // Xen applies its leaves over the table and sets it.
            let xen_vcpu = match xen.as_ref().and_then(XenHandle::kvm) {
                Some(x) => Some(
                    x.vcpu(index, &mut vcpu, &cpuid)
                        .map_err(|e| Error::Xen(chain(&e)))?,
                ),
                None => {
                    vcpu.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
                    None
                }
            };
            let mut sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
            layout::long_mode_sregs(&mut sregs);
            vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))?;
            vcpu.set_regs(&layout::entry_regs(entry, u64::from(index), arg))
                .map_err(kvm_err("KVM_SET_REGS"))?;
            if index > 0 {
                // Application processors wait for INIT/SIPI by default; ours
                // start at the entry like the bootstrap processor.
                vcpu.set_mp_state(kvm_bindings::kvm_mp_state {
                    mp_state: kvm_bindings::KVM_MP_STATE_RUNNABLE,
                })
                .map_err(kvm_err("KVM_SET_MP_STATE"))?;
            }
            if let Some(hook) = &self.vcpu_setup {
                hook(&mut vcpu, index).map_err(Error::VmSetup)?;
            }
            vcpus.push((vcpu, xen_vcpu));
        }

        let stop = Arc::new(AtomicBool::new(false));
        let console = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done_rx) = mpsc::channel();
        let guest = self.guest.name;
        let user_hook = self.on_exit.map(|h| Arc::new(Mutex::new(h)));
        xen_kvm_accel::install_kick_handler(kick_signal())
            .expect("register the vCPU kick signal handler");
        let mut threads = Vec::new();
        for (index, (mut vcpu, mut xen_vcpu)) in vcpus.into_iter().enumerate() {
            let index = index as u32;
            let (stop, console, done_tx) = (stop.clone(), console.clone(), done_tx.clone());
            let user_hook = user_hook.clone();
            let mut hook = move |vcpu: &mut VcpuFd| {
                user_hook
                    .as_ref()
                    .is_some_and(|h| h.lock().unwrap_or_else(|e| e.into_inner())(vcpu, index))
            };
            let t = thread::Builder::new()
                .name(format!("vcpu{index}-{guest}"))
                .spawn(move || {
                    let r = vcpu_loop(&mut vcpu, &stop, &console, &mut hook, xen_vcpu.as_mut());
                    let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
                    let _ = done_tx.send(index);
                    (r, rip)
                })
                .expect("spawn vCPU thread");
            threads.push(t);
        }
        drop(done_tx);

        // The run ends with the first vCPU to end it (or the timeout); the
        // others are then stopped.
        let first = done_rx.recv_timeout(self.timeout).ok();
        stop.store(true, Ordering::SeqCst);
        let mut finished = usize::from(first.is_some());
        while finished < threads.len() {
            match done_rx.recv_timeout(Duration::from_millis(5)) {
                Ok(_) => finished += 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // The kick can land before KVM_RUN is entered: repeat it
                    // until every thread has noticed.
                    for t in &threads {
                        if !t.is_finished() {
                            let _ = t.kill(kick_signal());
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let mut results = Vec::new();
        for t in threads {
            results.push(t.join().map_err(|_| Error::VcpuThread)?);
        }
        let mut exits = ExitCounts::default();
        let mut ends = Vec::new();
        for (r, rip) in results {
            let (end, counts) = r?;
            exits.add(&counts);
            ends.push((end, rip));
        }
        let ender = first.unwrap_or(0) as usize;
        let (end, _) = ends[ender].clone();
        let rip = ends[0].1;
        drop(vm);
        let console = console.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(Outcome {
            guest,
            console: String::from_utf8_lossy(&console).into_owned(),
            end,
            exits,
            rip,
            wall: start.elapsed(),
        })
    }
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { what, source }
}

/// Gives `vm` every region of `mem` as a KVM memory slot (slot i for
/// region i, in address order).
///
/// # Safety
///
/// The VM keeps using the host mappings of `mem`: the caller must keep
/// `mem` (or a clone of it) alive for as long as the VM exists.
pub unsafe fn map_memory(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), Error> {
    for (slot, region) in mem.iter().enumerate() {
        let host = mem
            .get_host_address(region.start_addr())
            .map_err(Error::Memory)?;
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the region is mapped while `mem` lives, which the caller
        // guarantees for the VM's lifetime.
        unsafe { vm.set_user_memory_region(r) }.map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}

fn setup_memory(vm: &VmFd, size: usize) -> Result<GuestMemoryMmap, Error> {
    let mem: GuestMemoryMmap =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)]).map_err(Error::Mmap)?;
    // SAFETY: `run` keeps `mem` until the VM is dropped.
    unsafe { map_memory(vm, &mem) }?;
    layout::write_tables(&mem).map_err(Error::Memory)?;
    Ok(mem)
}

fn load<M: GuestMemoryBackend>(mem: &M, guest: Guest) -> Result<u64, Error> {
    let r = Elf::load(
        mem,
        None,
        &mut Cursor::new(guest.elf),
        Some(GuestAddress(layout::IMAGE_START)),
    )
    .map_err(|source| Error::Load {
        name: guest.name,
        source,
    })?;
    Ok(r.kernel_load.0)
}

/// Lets Xen handle the exit, timing it; returns whether it was Xen's.
fn xen_exit(x: &mut XenVcpu<GuestMemoryMmap>, vcpu: &mut VcpuFd, counts: &mut ExitCounts) -> bool {
    let t = Instant::now();
    let handled = x.handle_exit(vcpu);
    if handled {
        counts.xen += 1;
        counts.xen_ns += t.elapsed().as_nanos() as u64;
    }
    handled
}

/// An error and its causes, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut m = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        m = format!("{m}: {s}");
        src = s.source();
    }
    m
}

fn kick_signal() -> i32 {
    SIGRTMIN()
}

/// When the guest wrote to a marked port ([`Runner::mark_port`]).
pub type PortMarks = Arc<Mutex<Vec<Instant>>>;

/// What the loop does with an exit.
enum Step {
    /// Handled here; maybe the run ends.
    End(Option<End>),
    /// KVM_EXIT_INTERNAL_ERROR: read its sub-error.
    Internal,
    /// Not the harness's: ask the hook.
    Delegate,
}

type LoopResult = Result<(End, ExitCounts), Error>;

fn vcpu_loop(
    vcpu: &mut VcpuFd,
    stop: &AtomicBool,
    console: &Mutex<Vec<u8>>,
    hook: &mut dyn FnMut(&mut VcpuFd) -> bool,
    mut xen: Option<&mut XenVcpu<GuestMemoryMmap>>,
) -> LoopResult {
    let mut counts = ExitCounts::default();
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok((End::Timeout, counts));
        }
        if let Some(x) = xen.as_deref_mut() {
            x.before_run(vcpu);
        }
        let exit = match vcpu.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
            Err(source) => {
                return Err(Error::Kvm {
                    what: "KVM_RUN",
                    source,
                });
            }
        };
        // Exits the harness owns are handled here; the others are handed to
        // the hook once `exit` (which borrows the vCPU) is gone.
        let step = match exit {
            VcpuExit::IoOut(CONSOLE_PORT, data) => {
                counts.pio += 1;
                let mut console = console.lock().unwrap_or_else(|e| e.into_inner());
                console.extend_from_slice(data);
                Step::End((console.len() > CONSOLE_LIMIT).then_some(End::ConsoleOverflow))
            }
            VcpuExit::IoOut(EXIT_PORT, data) if data.len() == 4 => {
                counts.pio += 1;
                Step::End(Some(End::Status(u32::from_le_bytes(
                    data.try_into().expect("4 bytes"),
                ))))
            }
            VcpuExit::IoOut(..) => {
                counts.pio += 1;
                Step::Delegate
            }
            VcpuExit::IoIn(_, data) => {
                counts.pio += 1;
                counts.unhandled_pio += 1;
                data.fill(0xff);
                Step::End(None)
            }
            VcpuExit::MmioRead(_, data) => {
                counts.mmio += 1;
                data.fill(0xff);
                Step::End(None)
            }
            VcpuExit::MmioWrite(..) => {
                counts.mmio += 1;
                Step::End(None)
            }
            VcpuExit::Intr => Step::End(None),
            VcpuExit::Shutdown => Step::End(Some(End::Shutdown)),
            VcpuExit::FailEntry(reason, _) => Step::End(Some(End::FailEntry(reason))),
            VcpuExit::InternalError => Step::Internal,
            VcpuExit::X86Rdmsr(_) | VcpuExit::X86Wrmsr(_) | VcpuExit::Unsupported(_) => {
                Step::Delegate
            }
            other => Step::End(Some(End::Unexpected(format!("{other:?}")))),
        };
        let end = match step {
            Step::End(end) => end,
            Step::Internal => {
                // SAFETY: the exit reason says the `internal` member is valid.
                let sub = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
                Some(End::InternalError(sub))
            }
            Step::Delegate => {
                if hook(vcpu) {
                    counts.hooked += 1;
                    None
                } else if let Some(x) = xen.as_deref_mut()
                    && xen_exit(x, vcpu, &mut counts)
                {
                    None
                } else if vcpu.get_kvm_run().exit_reason == kvm_bindings::KVM_EXIT_IO {
                    counts.unhandled_pio += 1;
                    None
                } else {
                    Some(End::Unexpected(format!(
                        "exit reason {}",
                        vcpu.get_kvm_run().exit_reason
                    )))
                }
            }
        };
        if let Some(end) = end {
            return Ok((end, counts));
        }
    }
}
