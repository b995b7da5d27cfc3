// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `xen-shutdown [poweroff|crash]`: the lab's L2 /init powers off through
//! Xen with it. Linux HVM guests have no path from `poweroff` to
//! `SCHEDOP_shutdown` without ACPI, so this issues the hypercall through
//! the privcmd driver (`/dev/xen/privcmd`, IOCTL_PRIVCMD_HYPERCALL), as a
//! Xen toolstack would. Built static by lab/run; std only.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

/// `struct privcmd_hypercall { u64 op; u64 arg[5]; }`.
#[repr(C)]
struct PrivcmdHypercall {
    op: u64,
    arg: [u64; 5],
}

/// `_IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall))`.
const IOCTL_PRIVCMD_HYPERCALL: u64 = (b'P' as u64) << 8 | (48 << 16);
const HYPERVISOR_SCHED_OP: u64 = 29;
const SCHEDOP_SHUTDOWN: u64 = 2;
const SYS_IOCTL: u64 = 16;

fn main() {
    let reason: u32 = match std::env::args().nth(1).as_deref() {
        None | Some("poweroff") => 0,
        Some("reboot") => 1,
        Some("crash") => 3,
        Some(other) => {
            eprintln!("xen-shutdown: unknown reason {other}");
            std::process::exit(2);
        }
    };
    let dev = match OpenOptions::new().read(true).write(true).open("/dev/xen/privcmd") {
        Ok(f) => f,
        Err(e) => {
            eprintln!("xen-shutdown: /dev/xen/privcmd: {e}");
            std::process::exit(1);
        }
    };
    // struct sched_shutdown { u32 reason; }
    let shutdown = reason;
    let call = PrivcmdHypercall {
        op: HYPERVISOR_SCHED_OP,
        arg: [SCHEDOP_SHUTDOWN, &shutdown as *const u32 as u64, 0, 0, 0],
    };
    let ret: i64;
    // SAFETY: ioctl(2) on an fd we own, with a pointer to a live
    // privcmd_hypercall whose argument points to a live u32.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_IOCTL as i64 => ret,
            in("rdi") dev.as_raw_fd() as u64,
            in("rsi") IOCTL_PRIVCMD_HYPERCALL,
            in("rdx") &call as *const PrivcmdHypercall as u64,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    // Only reached if the hypervisor returned.
    eprintln!("xen-shutdown: SCHEDOP_shutdown returned {ret}");
    std::process::exit(1);
}
