// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Xen for guests: find Xen in CPUID, install the hypercall page, call it
//! from 64-bit code or from a 32-bit compatibility-mode segment.

use core::arch::{asm, global_asm};

use crate::{cpuid, wrmsr};

/// Hypercall numbers the guests use.
pub mod nr {
    /// `memory_op`.
    pub const MEMORY_OP: u32 = 12;
    /// `multicall`.
    pub const MULTICALL: u32 = 13;
    /// `set_timer_op`.
    pub const SET_TIMER_OP: u32 = 15;
    /// `xen_version`.
    pub const XEN_VERSION: u32 = 17;
    /// `console_io`.
    pub const CONSOLE_IO: u32 = 18;
    /// `vm_assist`.
    pub const VM_ASSIST: u32 = 21;
    /// `vcpu_op`.
    pub const VCPU_OP: u32 = 24;
    /// `sched_op`.
    pub const SCHED_OP: u32 = 29;
    /// `hvm_op`.
    pub const HVM_OP: u32 = 34;
    /// `sysctl` (privileged).
    pub const SYSCTL: u32 = 35;
}

/// A page-aligned page for the hypercall stubs.
#[repr(C, align(4096))]
pub struct Page(pub [u8; 4096]);

/// The guest's hypercall page.
pub static mut HYPERCALL_PAGE: Page = Page([0; 4096]);

/// Finds the Xen CPUID base the way Linux does; returns (base, max leaf).
pub fn xen_base() -> Option<(u32, u32)> {
    for b in (0x4000_0000u32..0x4001_0000).step_by(0x100) {
        let r = cpuid(b, 0);
        let leaves = r.eax.wrapping_sub(b);
        if (r.ebx, r.ecx, r.edx) == (0x566e_6558, 0x6558_4d4d, 0x4d4d_566e) && (2..0x100).contains(&leaves) {
            return Some((b, r.eax));
        }
    }
    None
}

/// Installs the hypercall page through the MSR of leaf base+2; returns the
/// MSR used.
pub fn install_hypercall_page(base: u32) -> u32 {
    let msr = cpuid(base + 2, 0).ebx;
    wrmsr(msr, page_addr());
    msr
}

/// Guest-physical (= linear) address of the hypercall page.
pub fn page_addr() -> u64 {
    (&raw const HYPERCALL_PAGE) as u64
}

/// A 64-bit hypercall through the page: `nr` with five arguments.
pub fn hypercall(nr: u32, a: [u64; 5]) -> i64 {
    let entry = page_addr() + u64::from(nr) * 32;
    let ret: i64;
    // SAFETY: the stub only traps and returns; it clobbers RAX (the result)
    // and, in Xen debug builds, the argument registers (declared clobbered).
    unsafe {
        asm!("call {e}", e = in(reg) entry,
             inout("rax") u64::from(nr) => ret,
             inout("rdi") a[0] => _, inout("rsi") a[1] => _, inout("rdx") a[2] => _,
             inout("r10") a[3] => _, inout("r8") a[4] => _,
             out("rcx") _, out("r11") _, out("r9") _);
    }
    ret
}

/// Arguments and result of a 32-bit call, shared with the assembly below.
#[repr(C)]
struct Compat {
    nr: u32,
    args: [u32; 5],
    target: u32,
    result: u32,
}

// xen_compat_call(rdi = &mut Compat): loads EAX and EBX, ECX, EDX, ESI,
// EDI from the struct, far-calls the 32-bit segment 0x18, which calls the
// page stub at `target`, and stores EAX back.
global_asm!(
    ".section .text",
    ".global xen_compat_call",
    "xen_compat_call:",
    "    push rbx",
    "    push rbp",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    push rdi",
    "    mov eax, [rdi + 24]",
    "    mov [rip + xen_compat_target], eax",
    "    mov eax, [rdi]",
    "    mov ebx, [rdi + 4]",
    "    mov ecx, [rdi + 8]",
    "    mov edx, [rdi + 12]",
    "    mov esi, [rdi + 16]",
    "    mov edi, [rdi + 20]",
    "    call fword ptr [rip + xen_compat_fp]",
    "    pop rdi",
    "    mov [rdi + 28], eax",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbp",
    "    pop rbx",
    "    ret",
    ".code32",
    "xen_compat_entry:",
    "    call dword ptr [xen_compat_target]",
    "    retf",
    ".code64",
    ".section .rodata",
    ".balign 8",
    "xen_compat_fp:",
    "    .long xen_compat_entry",
    "    .word 0x18",
    ".section .data",
    ".balign 4",
    "xen_compat_target:",
    "    .long 0",
);

unsafe extern "C" {
    fn xen_compat_call(call: *mut Compat);
}

/// A hypercall from a 32-bit compatibility-mode segment through the page:
/// the 32-bit ABI (EBX, ECX, EDX, ESI, EDI; 32-bit pointers). Returns EAX
/// sign-extended.
pub fn hypercall32(nr: u32, a: [u32; 5]) -> i64 {
    let mut c = Compat {
        nr,
        args: a,
        target: (page_addr() + u64::from(nr) * 32) as u32,
        result: 0,
    };
    // SAFETY: `c` is valid; the routine saves every callee-saved register
    // and returns to 64-bit mode.
    unsafe { xen_compat_call(&mut c) };
    i64::from(c.result as i32)
}
