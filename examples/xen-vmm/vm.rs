// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The VM: KVM objects, guest memory, devices, Xen (`xen.rs`), one thread
//! per vCPU.
//!
//! Guest memory is RAM (below 3 GiB and above 4 GiB), Xen's special pages
//! at 0xfeff8000, and the platform device's 16 MiB BAR1 at 0xf0000000.
//! BAR1 is memory rather than trapped: guests place shared_info and grant
//! frames at GFNs inside it (Linux's platform-pci driver does), so those
//! pages must be ordinary memory to the guest (a KVM slot) and to the
//! hypercall and event-channel code (a region of the same
//! `GuestMemoryMmap`). A guest that moves the BAR loses that backing.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Instant;

use anyhow::{Context, Result};
use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY, KVM_SYSTEM_EVENT_RESET};
use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;
use xen_abi::sched::ShutdownReason;
use xen_kvm_accel::XenVcpu;

use crate::boot::{self, PLATFORM_BAR1, PLATFORM_BAR1_SIZE, SPECIAL_PAGES};
use crate::devices::{Bus, COM1_IRQ, print};
use crate::monitor::Monitor;
use crate::options::{ConsoleChoice, Options};
use crate::xen::Xen;

/// Why the VM stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// `SCHEDOP_shutdown` (or the watchdog).
    Shutdown(ShutdownReason, Option<u32>),
    /// A vCPU triple-faulted or asked KVM for a reset.
    Fault(String),
    /// The guest wrote this status to the debug-exit port.
    Status(u32),
    /// `--timeout` expired.
    Timeout,
    /// The monitor's `quit`.
    Quit,
    /// A VMM-side failure while running.
    Error(String),
}

/// Ends the VM: the main thread waits for the first stop.
#[derive(Clone)]
pub(crate) struct Stopper {
    tx: Sender<Stop>,
    stopping: Arc<AtomicBool>,
    deferred: Arc<Mutex<Option<Stop>>>,
}

impl Stopper {
    pub(crate) fn new() -> (Self, Receiver<Stop>) {
        let (tx, rx) = mpsc::channel();
        let (stopping, deferred) = Default::default();
        (
            Self {
                tx,
                stopping,
                deferred,
            },
            rx,
        )
    }

    /// Ends the VM now.
    pub(crate) fn stop(&self, stop: Stop) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.tx.send(stop);
    }

    /// Ends the VM once the exit being handled is done (a hypercall's
    /// trace line is then complete): no vCPU re-enters the guest, and the
    /// next vCPU thread to look reports the stop.
    pub(crate) fn defer(&self, stop: Stop) {
        lock(&self.deferred).get_or_insert(stop);
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub(crate) fn take_deferred(&self) -> Option<Stop> {
        lock(&self.deferred).take()
    }
}

/// Locks `m`, whether or not a thread panicked holding it.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Guest memory: RAM, BAR1, the special pages; each a KVM slot.
fn memory(vm: &VmFd, ram: u64) -> Result<GuestMemoryMmap> {
    let mut ranges = boot::ram_ranges(ram);
    ranges.extend([
        (PLATFORM_BAR1, PLATFORM_BAR1_SIZE),
        (SPECIAL_PAGES, 8 << 12),
    ]);
    ranges.sort_unstable();
    let ranges: Vec<_> = ranges
        .iter()
        .map(|&(a, n)| (GuestAddress(a), n as usize))
        .collect();
    let mem = GuestMemoryMmap::from_ranges(&ranges)
        .with_context(|| format!("cannot allocate {ram} bytes of guest memory"))?;
    for (slot, region) in mem.iter().enumerate() {
        let mut r = kvm_userspace_memory_region::default();
        (r.slot, r.guest_phys_addr) = (slot as u32, region.start_addr().0);
        (r.memory_size, r.userspace_addr) = (region.len(), region.as_ptr() as u64);
        // SAFETY: the region stays mapped while `mem` or a clone of it
        // lives, and every vCPU thread keeps one until the process exits,
        // which ends the VM.
        unsafe { vm.set_user_memory_region(r) }.context("KVM_SET_USER_MEMORY_REGION")?;
    }
    Ok(mem)
}

/// Runs the VM until it stops; the caller turns the answer into an exit
/// status.
pub(crate) fn run(o: &Options) -> Result<Stop> {
    let started = Instant::now();
    // Files first: a missing image is reported before any KVM work.
    let read = |p: &std::path::Path, what| {
        std::fs::read(p).with_context(|| format!("cannot read {what} {}", p.display()))
    };
    let image = match (&o.kernel, &o.elf) {
        (Some(p), _) => Some((p, read(p, "kernel")?, true)),
        (_, Some(p)) => Some((p, read(p, "ELF image")?, false)),
        _ => None,
    };
    let initrd = o.initrd.as_deref().map(|p| read(p, "initrd")).transpose()?;
    let kvm = Kvm::new().context("cannot open /dev/kvm")?;
    let vm = kvm.create_vm().context("KVM_CREATE_VM")?;
    let mem = memory(&vm, o.memory)?;
    vm.create_irq_chip().context("KVM_CREATE_IRQCHIP")?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).context("KVM_CREATE_PIT2")?;
    // CPUs, the IOAPIC and interrupt routing for guests without ACPI.
    crate::mptable::write_mptable(&mem, o.cpus)?;
    let (stop, stop_rx) = Stopper::new();
    let xen = match o.xen {
        None => None,
        Some(version) => {
            let xen = Xen::new(&kvm, &vm, &mem, version, o, stop.clone())?;
            let (vcpus, mib, path) = (o.cpus, o.memory >> 20, xen.path());
            let line =
                format!("Xen {version} for {vcpus} vCPU(s), {mib} MiB; hypercalls on the {path}");
            print(format!("xen-vmm: {line}\n").as_bytes());
            Some(xen)
        }
    };

    // The image, with its command line and initrd.
    let (cmdline, ram) = (o.cmdline.as_str(), o.memory);
    let (entry, start_info) = match &image {
        Some((path, bytes, bzimage)) => {
            boot::load(&mem, bytes, *bzimage, cmdline, initrd.as_deref(), ram)
                .with_context(|| format!("cannot load {}", path.display()))?
        }
        None => boot::load(
            &mem,
            xen_guests::guests::FLOW.elf,
            false,
            cmdline,
            None,
            ram,
        )
        .context("the embedded guest")?,
    };
    print(format!("xen-vmm: booting {entry}\n").as_bytes());

    // vCPUs: vCPU 0 at the entry, the others waiting for INIT/SIPI.
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .context("CPUID")?;
    let mut vcpus = Vec::new();
    for id in 0..o.cpus {
        let mut vcpu = vm.create_vcpu(id.into()).context("KVM_CREATE_VCPU")?;
        let mut cpuid = supported.clone();
        for e in cpuid.as_mut_slice() {
            // The initial APIC id (leaf 1) and x2APIC id (leaves 0xb, 0x1f).
            match e.function {
                1 => e.ebx = (e.ebx & 0x00ff_ffff) | id << 24,
                0xb | 0x1f => e.edx = id,
                _ => {}
            }
        }
        // Xen sets the CPUID with its leaves (and readies the vCPU).
        let xen_vcpu = match &xen {
            Some(x) => Some(x.kvm.vcpu(id, &mut vcpu, &cpuid).context("Xen vCPU")?),
            None => {
                vcpu.set_cpuid2(&cpuid).context("KVM_SET_CPUID2")?;
                None
            }
        };
        if id == 0 {
            let mut sregs = vcpu.get_sregs().context("KVM_GET_SREGS")?;
            let regs = boot::boot_regs(&mem, entry, start_info, &mut sregs)?;
            vcpu.set_sregs(&sregs).context("KVM_SET_SREGS")?;
            vcpu.set_regs(&regs).context("KVM_SET_REGS")?;
        }
        vcpus.push((vcpu, xen_vcpu));
    }

    // Devices, with the serial interrupt on an irqfd.
    let serial_irq = EventFd::new(libc::EFD_NONBLOCK).context("eventfd")?;
    vm.register_irqfd(&serial_irq, COM1_IRQ)
        .context("KVM_IRQFD")?;
    let domain = xen.as_ref().map(|x| x.kvm.domain().clone());
    let platform = domain.as_ref().map(|d| d.platform().clone());
    let serial_out = o.console != ConsoleChoice::None;
    let bus = Arc::new(Bus::new(
        serial_irq,
        stop.clone(),
        platform,
        o.trace,
        serial_out,
    )?);
    if let Some(path) = &o.monitor {
        let (stop, options) = (stop.clone(), o.clone());
        Monitor {
            domain,
            stop,
            options,
        }
        .serve(path)?;
    }
    // The threads are never joined: the process exits with the VM.
    for (id, (mut vcpu, mut xen_vcpu)) in (0..).zip(vcpus) {
        let (bus, stop) = (bus.clone(), stop.clone());
        // Each vCPU thread keeps guest memory mapped while it may run.
        let mem = mem.clone();
        let run = move || {
            let _mem = &mem;
            let run = || vcpu_loop(&mut vcpu, id, &bus, xen_vcpu.as_mut(), &stop);
            let why = panic::catch_unwind(AssertUnwindSafe(run));
            stop.stop(why.unwrap_or_else(|_| Stop::Error(format!("vCPU {id} panicked"))));
        };
        thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(run)?;
    }

    Ok(match o.timeout {
        Some(t) => {
            let left = t.saturating_sub(started.elapsed());
            stop_rx.recv_timeout(left).unwrap_or(Stop::Timeout)
        }
        None => stop_rx
            .recv()
            .unwrap_or(Stop::Error("every vCPU thread ended".into())),
    })
}

/// One vCPU's `KVM_RUN` loop; returns why it stopped.
fn vcpu_loop(
    vcpu: &mut VcpuFd,
    id: u32,
    bus: &Bus,
    mut xen: Option<&mut XenVcpu<GuestMemoryMmap>>,
    stop: &Stopper,
) -> Stop {
    loop {
        if stop.is_set() {
            if let Some(why) = stop.take_deferred() {
                return why;
            }
            // Another vCPU ended the VM; the main thread exits the process.
            loop {
                thread::park();
            }
        }
        if let Some(x) = xen.as_deref_mut() {
            x.before_run(vcpu);
        }
        let unowned = match vcpu.run() {
            Err(e) if matches!(e.errno(), libc::EINTR | libc::EAGAIN) => continue,
            Err(e) => return Stop::Error(format!("vCPU {id}: KVM_RUN failed: {e}")),
            Ok(VcpuExit::Shutdown) => {
                return Stop::Fault(format!("vCPU {id} triple-faulted (KVM_EXIT_SHUTDOWN)"));
            }
            Ok(VcpuExit::SystemEvent(kind, _)) => {
                let what = match kind {
                    KVM_SYSTEM_EVENT_RESET => "a reset",
                    _ => "a system event",
                };
                return Stop::Fault(format!("vCPU {id} asked KVM for {what} ({kind})"));
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                let why = format!("VM entry failed (reason {reason:#x}, cpu {cpu})");
                return Stop::Fault(format!("vCPU {id}: {why}"));
            }
            Ok(VcpuExit::InternalError) => {
                // SAFETY: the exit reason says `internal` is the valid member.
                let sub = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
                let rip = vcpu.get_regs().map_or(0, |r| r.rip);
                let why = format!("KVM internal error {sub} at rip {rip:#x}");
                let hint = "an instruction KVM cannot emulate?";
                return Stop::Fault(format!("vCPU {id}: {why} ({hint})"));
            }
            Ok(exit) if xen.as_deref().is_some_and(|x| x.claims(&exit)) => {
                if let Some(x) = xen.as_deref_mut() {
                    x.handle_exit(vcpu);
                }
                continue;
            }
            Ok(exit) => bus.exit(exit),
        };
        if let Err(port) = unowned {
            let Some(port) = port else {
                let reason = vcpu.get_kvm_run().exit_reason;
                return Stop::Error(format!("vCPU {id}: unexpected KVM exit {reason}"));
            };
            bus.ignored_write(port);
        }
    }
}
