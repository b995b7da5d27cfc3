// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Executes VMCALL and VMMCALL directly (no hypercall page), from 64-bit
//! code and from a 32-bit compatibility-mode segment, as current Linux
//! guests do since the XSA-466 change.
//!
//! The host answers each call with `input ^ arg1` (truncated to 32 bits for
//! a 32-bit call); the guest prints one `hcall <mode> <insn> <result>`
//! line per call and exits 0 only if every result matched.
//!
//! This needs a KVM that turns VMCALL/VMMCALL into `KVM_EXIT_XEN`
//! (`KVM_XEN_HVM_CONFIG` with `INTERCEPT_HCALL`); on a KVM without Xen
//! support the instruction never exits to user space.

#![no_std]
#![no_main]

use core::arch::{asm, global_asm};
use xen_guest_rt::{Hex, Start, entry, println};

/// Arguments and result of a 32-bit call, shared with the assembly below.
#[repr(C)]
struct Compat {
    nr: u32,
    args: [u32; 6],
    result: u32,
}

// compat_hcall(rdi = &mut Compat, esi = 0 for VMCALL / 1 for VMMCALL):
// loads EAX and EBX, ECX, EDX, ESI, EDI, EBP from the struct, far-calls a
// 32-bit code segment (selector 0x18) that traps, and stores EAX back.
global_asm!(
    ".section .text",
    ".global compat_hcall",
    "compat_hcall:",
    "    push rbx",
    "    push rbp",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    push rdi",
    "    mov r11d, esi",
    "    mov eax, [rdi]",
    "    mov ebx, [rdi + 4]",
    "    mov ecx, [rdi + 8]",
    "    mov edx, [rdi + 12]",
    "    mov esi, [rdi + 16]",
    "    mov ebp, [rdi + 24]",
    "    test r11d, r11d",
    "    mov edi, [rdi + 20]",
    "    jnz 1f",
    "    call fword ptr [rip + compat_fp_vmcall]",
    "    jmp 2f",
    "1:  call fword ptr [rip + compat_fp_vmmcall]",
    "2:  pop rdi",
    "    mov [rdi + 28], eax",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbp",
    "    pop rbx",
    "    ret",
    ".code32",
    "compat_vmcall:",
    "    vmcall",
    "    retf",
    "compat_vmmcall:",
    "    vmmcall",
    "    retf",
    ".code64",
    ".section .rodata",
    ".balign 8",
    "compat_fp_vmcall:",
    "    .long compat_vmcall",
    "    .word 0x18",
    ".balign 8",
    "compat_fp_vmmcall:",
    "    .long compat_vmmcall",
    "    .word 0x18",
);

unsafe extern "C" {
    fn compat_hcall(call: *mut Compat, vmmcall: u32);
}

fn hcall64(vmmcall: bool, nr: u64, a: [u64; 6]) -> u64 {
    let ret: u64;
    // SAFETY: the host handles the trap and only writes RAX.
    unsafe {
        if vmmcall {
            asm!("vmmcall", inout("rax") nr => ret, in("rdi") a[0], in("rsi") a[1],
                 in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5], options(nostack));
        } else {
            asm!("vmcall", inout("rax") nr => ret, in("rdi") a[0], in("rsi") a[1],
                 in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5], options(nostack));
        }
    }
    ret
}

fn main(_start: Start) -> u32 {
    let mut failures = 0;
    for (vmmcall, insn) in [(false, "vmcall"), (true, "vmmcall")] {
        let nr = if vmmcall { 29 } else { 17 };
        let a = core::array::from_fn(|i| 0x1111_1111_0000_0000 * (i as u64 + 1) + nr);
        let r = hcall64(vmmcall, nr, a);
        let ok = r == nr ^ a[0];
        failures += u32::from(!ok);
        println!("hcall 64 ", insn, " ", Hex(r), if ok { " ok" } else { " MISMATCH" });
    }
    for (vmmcall, insn) in [(false, "vmcall"), (true, "vmmcall")] {
        let nr = if vmmcall { 34 } else { 32 };
        let mut c = Compat {
            nr,
            args: core::array::from_fn(|i| 0x0101_0000 * (i as u32 + 1) + nr),
            result: 0,
        };
        // SAFETY: `c` is a valid Compat; the routine restores every
        // callee-saved register.
        unsafe { compat_hcall(&mut c, u32::from(vmmcall)) };
        let ok = c.result == nr ^ c.args[0];
        failures += u32::from(!ok);
        println!("hcall 32 ", insn, " ", Hex(c.result), if ok { " ok" } else { " MISMATCH" });
    }
    failures
}

entry!(main);
