// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `xen-shutdown [poweroff|reboot|crash|probe]`: the lab's L2 /init powers
//! off through Xen with it. Linux HVM guests have no path from `poweroff`
//! to `SCHEDOP_shutdown` without ACPI, so this issues the hypercall through
//! the privcmd driver (`/dev/xen/privcmd`, IOCTL_PRIVCMD_HYPERCALL), as a
//! Xen toolstack would. In a domU, Linux 6.12 allows that ioctl only when
//! privcmd was loaded with `unrestricted=1`: restricted, it answers EPERM.
//! `probe` makes the harmless `xen_version(XENVER_version)` call instead
//! and exits 0 when it passed, 3 on EPERM. Built static by lab/run; std only.

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
const HYPERVISOR_XEN_VERSION: u64 = 17;
const XENVER_VERSION: u64 = 0;
const EPERM: i64 = 1;
const SCHEDOP_SHUTDOWN: u64 = 2;
const SYS_IOCTL: u64 = 16;

fn main() {
    // struct sched_shutdown { u32 reason; }, or None to probe.
    let shutdown: Option<u32> = match std::env::args().nth(1).as_deref() {
        None | Some("poweroff") => Some(0),
        Some("reboot") => Some(1),
        Some("crash") => Some(3),
        Some("probe") => None,
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
    let call = match &shutdown {
        Some(reason) => PrivcmdHypercall {
            op: HYPERVISOR_SCHED_OP,
            arg: [SCHEDOP_SHUTDOWN, reason as *const u32 as u64, 0, 0, 0],
        },
        None => PrivcmdHypercall { op: HYPERVISOR_XEN_VERSION, arg: [XENVER_VERSION, 0, 0, 0, 0] },
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
    match (shutdown, ret) {
        (None, 0..) => {
            println!("xen-shutdown: privcmd passes hypercalls: Xen {}.{}", ret >> 16, ret & 0xffff);
            std::process::exit(0);
        }
        (_, r) if r == -EPERM => {
            println!("xen-shutdown: privcmd refused the hypercall (EPERM): it is restricted");
            std::process::exit(3);
        }
        // Only reached if the hypervisor returned.
        _ => eprintln!("xen-shutdown: the hypercall returned {ret}"),
    }
    std::process::exit(1);
}
