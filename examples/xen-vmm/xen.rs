// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Everything Xen. The VMM describes the domain once (`DomainConfig`:
//! vCPUs, version, memory map, vAPIC flags), says where the guest's
//! console text, shutdown requests and platform-device events go
//! (`Guest`), and how its MP table wires PCI INTx pins; like a Xen
//! toolstack it gives the guest a XenStore and (`--console xen`) a PV
//! console on Xen's special pages, stdin feeding the console; `xen-kvm-accel`
//! builds the `xen-domain` domain on the VM and hands back one `XenVcpu`
//! per vCPU for the vCPU loop (`vm.rs`). The domain's timers and the
//! callback line are served on an event thread of their own.

use std::sync::Arc;

use anyhow::{Context, Result};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::GuestMemoryMmap;
use xen_abi::sched::ShutdownReason;
use xen_console::PvConsole;
use xen_cpuid::XenVersion;
use xen_domain::{ConsoleSetup, DomainConfig, StoreSetup, XenDomain};
use xen_hypercall::env::{Console, DomainEvents};
use xen_hypercall::{HcResult, Hypercall};
use xen_kvm_accel::{EventThread, XenKvm};
use xen_platform_pci::PlatformEvents;

use crate::boot::{CONSOLE_GFN, STORE_GFN, e820};
use crate::devices::print;
use crate::mptable::pci_intx_gsi;
use crate::options::{ConsoleChoice, Options};
use crate::vm::{Stop, Stopper};

/// One domain's Xen on the VM, and the thread serving its events.
pub(crate) struct Xen {
    pub(crate) kvm: XenKvm<GuestMemoryMmap>,
    _events: EventThread,
}

/// Where the guest's console text, shutdown requests and platform-device
/// log lines go.
struct Guest(Stopper);

impl Console for Guest {
    fn write(&self, bytes: &[u8]) {
        print(bytes);
    }
}

impl DomainEvents for Guest {
    fn shutdown(&self, reason: ShutdownReason, code: Option<u32>) {
        let stop = Stop::Shutdown(reason, code);
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("vcpu"))
        {
            // SCHEDOP_shutdown: reported once the hypercall is done (and
            // traced); no vCPU re-enters the guest, as Xen deschedules them.
            self.0.defer(stop);
        } else {
            // The watchdog, on the event thread: the vCPUs may never leave
            // the guest by themselves (that is what a watchdog is for).
            self.0.stop(stop);
        }
    }
}

impl PlatformEvents for Guest {
    fn log_line(&self, line: &str) {
        print(format!("xen-vmm: platform log: {line}\n").as_bytes());
    }
}

impl Xen {
    /// Builds the domain on `vm` (after its irqchip, before its vCPUs).
    pub(crate) fn new(
        kvm: &Kvm,
        vm: &VmFd,
        mem: &GuestMemoryMmap,
        version: XenVersion,
        o: &Options,
        stop: Stopper,
    ) -> Result<Self> {
        let guest = Arc::new(Guest(stop));
        let config = DomainConfig {
            vapic: o.vapic,
            ..DomainConfig::new(o.cpus, version, e820(o.memory))
        };
        let mut domain = XenDomain::builder(config, mem.clone())
            .console(guest.clone())
            .events(guest.clone())
            .platform(Default::default(), guest)
            .pci_intx_routing(Arc::new(pci_intx_gsi))
            .xenstore(StoreSetup {
                gfn: STORE_GFN,
                name: "xen-vmm-guest".into(),
            });
        if o.console == ConsoleChoice::Xen {
            domain = domain.pv_console(ConsoleSetup {
                gfn: CONSOLE_GFN,
                writer: Box::new(GuestText),
            });
        }
        if o.trace {
            domain = domain.trace(Box::new(|v, call, r| {
                eprintln!("{}", trace_line(v, call, r))
            }));
        }
        let kvm = XenKvm::builder(kvm, vm, domain)
            .path(o.accel)
            .build()
            .context("Xen setup")?;
        let events = kvm.spawn_event_thread().context("Xen's event thread")?;
        if let Some(console) = kvm.domain().pv_console() {
            forward_stdin(console.clone())?;
        }
        Ok(Self {
            kvm,
            _events: events,
        })
    }

    /// The hypercall path and why it was chosen.
    pub(crate) fn path(&self) -> String {
        format!("{:?} path: {}", self.kvm.path(), self.kvm.path_reason())
    }
}

/// The PV console's output: the guest's text, on stdout as it comes.
struct GuestText;

impl std::io::Write for GuestText {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        print(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Feeds stdin to the PV console (the guest's `hvc0` input) on a thread,
/// until end of file.
fn forward_stdin(console: Arc<PvConsole<GuestMemoryMmap>>) -> Result<()> {
    let read = move || {
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        while let Ok(n @ 1..) = std::io::Read::read(&mut stdin, &mut buf) {
            console.input(&buf[..n]);
        }
    };
    std::thread::Builder::new()
        .name("console-input".into())
        .spawn(read)
        .context("the console input thread")?;
    Ok(())
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
