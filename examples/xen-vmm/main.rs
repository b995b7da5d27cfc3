// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `xen-vmm`: a thin example VMM that hosts a Xen HVM guest on KVM with the
//! xen-on-kvm crates.
//!
//! ```text
//! cargo run --release --example xen-vmm                 # the embedded flow guest
//! cargo run --release --example xen-vmm -- --cpus 2 --trace
//! cargo run --release --example xen-vmm -- --elf kernel.elf --cmdline "..."
//! ```
//!
//! What it wires (see `vm.rs`): guest memory with an e820 map reserving
//! Xen's special pages; the in-kernel irqchip and PIT; a 16550 serial
//! port, a CMOS clock (`rtc.rs`) and PCI configuration space with the Xen
//! platform device (`devices.rs`); an MP table for guests without ACPI
//! (`mptable.rs`); CPUID from `xen-cpuid`; the domain, dispatcher, event channels, PV
//! timers and hypercall path from `xen-kvm-accel`'s `XenStack` and
//! `XenAccel`; one thread per vCPU; a monitor socket (`monitor.rs`). The
//! guest's `SCHEDOP_shutdown` reason becomes the exit status (`--help`).

mod boot;
mod devices;
mod monitor;
mod mptable;
mod options;
mod rtc;
mod vm;
mod xen;

use options::Options;
use vm::Stop;
use xen_abi::sched::ShutdownReason;

/// The exit status and message for how the VM stopped.
fn outcome(stop: &Stop) -> (u8, String) {
    match stop {
        Stop::Shutdown(reason, code) => {
            let status = match reason {
                ShutdownReason::Poweroff => 0,
                ShutdownReason::Crash => 3,
                ShutdownReason::Reboot => 5,
                ShutdownReason::Suspend => 6,
                ShutdownReason::Watchdog => 7,
                ShutdownReason::SoftReset => 8,
            };
            let code = code
                .map(|c| format!(", shutdown code {c}"))
                .unwrap_or_default();
            let msg = match reason {
                ShutdownReason::Poweroff => format!("the guest powered off{code}"),
                ShutdownReason::Crash => {
                    format!("the guest crashed (SCHEDOP_shutdown: crash{code})")
                }
                r => format!(
                    "the guest shut down with reason {}{code}; this VMM does not {}",
                    r.name(),
                    "restart guests"
                ),
            };
            (status, msg)
        }
        Stop::Fault(m) => (4, format!("guest fault: {m}")),
        Stop::Status(0) => (
            0,
            "the guest reported success on the debug-exit port".into(),
        ),
        Stop::Status(s) => (
            9,
            format!("the guest reported failure {s:#x} on the debug-exit port"),
        ),
        Stop::Timeout => (
            124,
            "the guest did not shut down before --timeout; stopped it".into(),
        ),
        Stop::Quit => (0, "stopped by the monitor's quit".into()),
        Stop::Error(m) => (1, m.clone()),
    }
}

fn main() {
    let options = Options::from_env();
    let code = match vm::run(&options) {
        Ok(stop) => {
            let (status, msg) = outcome(&stop);
            if status == 0 {
                println!("xen-vmm: {msg}");
            } else {
                eprintln!("xen-vmm: {msg} (exit status {status})");
            }
            status
        }
        Err(e) => {
            eprintln!("xen-vmm: error: {e:#}");
            1
        }
    };
    if let Some(p) = &options.monitor {
        let _ = std::fs::remove_file(p);
    }
    // vCPU threads may still sit in KVM_RUN: exit the process, which ends
    // them with it.
    std::process::exit(i32::from(code))
}
