// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `xen-vmm`: a thin example VMM that hosts a Xen HVM guest on KVM with
//! the xen-on-kvm crates.
//!
//! ```text
//! cargo run --release --example xen-vmm                 # the embedded flow guest
//! cargo run --release --example xen-vmm -- --cpus 2 --trace
//! cargo run --release --example xen-vmm -- --elf kernel.elf --cmdline "..."
//! ```
//!
//! `vm.rs` builds the VM and runs one thread per vCPU: guest memory, the
//! in-kernel irqchip and PIT, the devices on vm-device's `IoManager`
//! (`devices.rs`, `rtc.rs`), an MP table (`mptable.rs`) and the image
//! (`boot.rs`, on linux-loader). All of the Xen wiring is in `xen.rs`.
//! `options.rs` parses the command line with clap, `monitor.rs` serves a
//! monitor socket. The guest's `SCHEDOP_shutdown` reason becomes the exit
//! status (see `--help`).

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
use xen_abi::sched::ShutdownReason as Reason;

/// The exit status and message for how the VM stopped.
fn outcome(stop: &Stop) -> (u8, String) {
    match stop {
        Stop::Shutdown(reason, code) => {
            let code = code.map(|c| format!(", shutdown code {c}"));
            let code = code.unwrap_or_default();
            let status = match reason {
                Reason::Poweroff => return (0, format!("the guest powered off{code}")),
                Reason::Crash => {
                    return (
                        3,
                        format!("the guest crashed (SCHEDOP_shutdown: crash{code})"),
                    );
                }
                Reason::Reboot => 5,
                Reason::Suspend => 6,
                Reason::Watchdog => 7,
                Reason::SoftReset => 8,
            };
            let (what, no) = (reason.name(), "this VMM does not restart guests");
            (
                status,
                format!("the guest shut down with reason {what}{code}; {no}"),
            )
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
    let status = match vm::run(&options) {
        Ok(stop) => match outcome(&stop) {
            (0, msg) => {
                println!("xen-vmm: {msg}");
                0
            }
            (status, msg) => {
                eprintln!("xen-vmm: {msg} (exit status {status})");
                status
            }
        },
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
    std::process::exit(status.into())
}
