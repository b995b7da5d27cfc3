// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `xen_guest_rt`: the runtime every harness guest links against.
//!
//! The harness enters `_start` in 64-bit mode at CPL 0 with identity paging
//! over the first 4 GiB, a flat GDT (see `src/layout.rs` on the host side)
//! RDI = the vCPU index and RSI = the test's argument. The runtime sets a stack, installs an IDT whose
//! exception handlers report the fault and exit, calls the guest's
//! `guest_main(vcpu) -> u32`, and reports its result on the exit port.
//!
//! Guests report through two I/O ports: bytes written to [`CONSOLE_PORT`]
//! form the console text, and a 32-bit write to [`EXIT_PORT`] ends the run
//! with that status. Everything here avoids `int n`, SSE and 32-bit paging,
//! which this project's development KVM cannot run (DESIGN.md).

#![no_std]
#![allow(clippy::missing_safety_doc)]

use core::arch::{asm, global_asm};

pub mod pv;
pub mod xen;

/// Port whose bytes form the guest's console (Xen's HVM debug port).
pub const CONSOLE_PORT: u16 = 0xe9;
/// Port whose 32-bit write ends the run with that status.
pub const EXIT_PORT: u16 = 0xf4;
/// Exit status the runtime uses when the guest panics.
pub const STATUS_PANIC: u32 = 0xdead_0001;
/// Exit status base for an unexpected exception (vector is added).
pub const STATUS_EXCEPTION: u32 = 0xdead_0100;

global_asm!(
    ".section .text.boot, \"ax\"",
    ".global _start",
    "_start:",
    // Each vCPU (index in RDI) gets its own 16 KiB of the stack area.
    "    lea rsp, [rip + __stack_top]",
    "    mov rax, rdi",
    "    shl rax, 14",
    "    sub rsp, rax",
    "    xor ebp, ebp",
    "    call {entry}",
    "2:  hlt",
    "    jmp 2b",
    entry = sym rt_entry,
);

// PVH boot (any VMM that loads ELF kernels the way Xen loads PVH guests,
// such as the example VMM): the VMM enters `pvh_start` in 32-bit flat
// protected mode with paging off and EBX pointing at `hvm_start_info`.
// The runtime builds its own identity map of 4 GiB (2 MiB pages), loads a
// GDT laid out like the harness's (64-bit code 0x08, data 0x10, 32-bit
// code 0x18), enables long mode and continues at `_start` as vCPU 0 with
// the start-info address as the argument. Application processors started
// by INIT/SIPI run `ap_trampoline` (copied below 1 MiB by the guest, see
// `AP_TRAMPOLINE`) and join the same path with their APIC id as index.
global_asm!(
    r#"
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 4, 4, 18          # XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .long pvh_start
    .balign 4
    .popsection

    .pushsection .text.pvh, "ax", @progbits
    .code32
    .global pvh_start
pvh_start:
    cli
    movl %ebx, %esi
    xorl %edi, %edi
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, pvh_pd(,%ecx,8)
    movl %ecx, %eax
    shrl $11, %eax
    movl %eax, pvh_pd+4(,%ecx,8)
    incl %ecx
    cmpl $2048, %ecx
    jne 1b
    xorl %ecx, %ecx
2:  movl %ecx, %eax
    shll $12, %eax
    addl $pvh_pd, %eax
    orl $3, %eax
    movl %eax, pvh_pdpt(,%ecx,8)
    movl $0, pvh_pdpt+4(,%ecx,8)
    incl %ecx
    cmpl $4, %ecx
    jne 2b
    movl $pvh_pdpt, %eax
    orl $3, %eax
    movl %eax, pvh_pml4
    movl $0, pvh_pml4+4
pvh_long:
    lgdtl pvh_gdtr
    movl $pvh_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x620, %eax
    movl %eax, %cr4
    movl $0xc0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80010033, %eax
    movl %eax, %cr0
    ljmpl $0x08, $pvh_64
pvh_ap32:
    movl $0x10, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $1, %eax
    cpuid
    shrl $24, %ebx
    movl %ebx, %edi
    xorl %esi, %esi
    jmp pvh_long
    .code64
pvh_64:
    movl $0x10, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl %edi, %edi
    movl %esi, %esi
    jmp _start
    .popsection

    .pushsection .rodata.trampoline, "a", @progbits
    .code16
    .global ap_trampoline
    .global ap_trampoline_end
ap_trampoline:
    cli
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (ap_gdtr - ap_trampoline)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x18, $pvh_ap32
ap_gdtr:
    .word 31
    .long pvh_gdt
ap_trampoline_end:
    .code64
    .popsection

    .pushsection .data.pvh, "aw", @progbits
    .balign 16
pvh_gdt:
    .quad 0
    .quad 0x00af9b000000ffff
    .quad 0x00cf93000000ffff
    .quad 0x00cf9b000000ffff
pvh_gdtr:
    .word 31
    .long pvh_gdt
    .popsection

    .pushsection .bss.pvh, "aw", @nobits
    .balign 4096
pvh_pml4:
    .skip 4096
pvh_pdpt:
    .skip 4096
pvh_pd:
    .skip 16384
    .popsection
"#,
    options(att_syntax)
);

/// Guest-physical address where [`start_ap`] copies the AP trampoline
/// (SIPI vector 0x08).
pub const AP_TRAMPOLINE: u64 = 0x8000;

unsafe extern "C" {
    static ap_trampoline: u8;
    static ap_trampoline_end: u8;
}

/// Starts application processor `apic_id` the way firmware does: copies
/// the real-mode trampoline to [`AP_TRAMPOLINE`], then sends INIT and two
/// STARTUP IPIs through the local APIC. The AP enters `guest_main` with
/// `Start::vcpu` = its APIC id (at most 3: the runtime has four stacks).
pub fn start_ap(apic_id: u32) {
    let start = (&raw const ap_trampoline) as usize;
    let end = (&raw const ap_trampoline_end) as usize;
    // SAFETY: the trampoline is `end - start` bytes of this image, copied
    // to a low page nothing else uses (the PVH layout keeps 0x8000 free).
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, AP_TRAMPOLINE as *mut u8, end - start)
    };
    const LAPIC: u64 = 0xfee0_0000;
    let icr = |high: u32, low: u32| {
        // SAFETY: the local APIC's ICR, identity-mapped; high half first.
        unsafe {
            core::ptr::write_volatile((LAPIC + 0x310) as *mut u32, high << 24);
            core::ptr::write_volatile((LAPIC + 0x300) as *mut u32, low);
        }
    };
    icr(apic_id, 0x4500); // INIT, assert
    icr(apic_id, 0x4600 | (AP_TRAMPOLINE >> 12) as u32); // STARTUP
    icr(apic_id, 0x4600 | (AP_TRAMPOLINE >> 12) as u32);
}

/// What the harness hands the guest at entry.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Start {
    /// Index of this vCPU (RDI at entry).
    pub vcpu: u64,
    /// The test's argument (`Runner::arg`, RSI at entry).
    pub arg: u64,
}

unsafe extern "C" {
    fn guest_main(start: Start) -> u32;
}

extern "C" fn rt_entry(vcpu: u64, arg: u64) -> ! {
    idt::install();
    // SAFETY: `guest_main` is defined by the guest through `entry!`.
    let status = unsafe { guest_main(Start { vcpu, arg }) };
    if vcpu != 0 {
        // Only vCPU 0 ends the run; the others park once done.
        park();
    }
    exit(status)
}

/// Stops this vCPU for good (interrupts off, halted).
pub fn park() -> ! {
    loop {
        // SAFETY: halting with interrupts off parks the vCPU.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// Defines a 64-bit interrupt entry `$name` (a global symbol) that saves
/// the caller-saved registers, calls `extern "C" fn $handler()` and
/// returns with `iretq` (which the development KVM runs; 32-bit `iret`
/// does not). Route a vector to it with [`set_gate`].
#[macro_export]
macro_rules! irq_entry {
    ($name:literal, $handler:path) => {
        ::core::arch::global_asm!(
            ".section .text",
            concat!(".global ", $name),
            concat!($name, ":"),
            "    push rax", "push rcx", "push rdx", "push rsi", "push rdi",
            "    push r8", "push r9", "push r10", "push r11",
            "    cld",
            "    call {handler}",
            "    pop r11", "pop r10", "pop r9", "pop r8",
            "    pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rax",
            "    iretq",
            handler = sym $handler,
        );
    };
}

/// Declares the guest's main function: `fn(Start) -> u32`; its result is
/// the run's exit status.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn guest_main(start: $crate::Start) -> u32 {
            $main(start)
        }
    };
}

/// Writes a byte to an I/O port.
#[inline(always)]
pub fn out8(port: u16, v: u8) {
    // SAFETY: port I/O has no memory effects in the guest.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nostack, preserves_flags)) }
}

/// Writes a word to an I/O port.
#[inline(always)]
pub fn out16(port: u16, v: u16) {
    // SAFETY: port I/O has no memory effects in the guest.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") v, options(nostack, preserves_flags)) }
}

/// Writes a dword to an I/O port.
#[inline(always)]
pub fn out32(port: u16, v: u32) {
    // SAFETY: port I/O has no memory effects in the guest.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nostack, preserves_flags)) }
}

/// Reads a byte from an I/O port.
#[inline(always)]
pub fn in8(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port I/O has no memory effects in the guest.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nostack, preserves_flags)) }
    v
}

/// Reads a word from an I/O port.
#[inline(always)]
pub fn in16(port: u16) -> u16 {
    let v: u16;
    // SAFETY: port I/O has no memory effects in the guest.
    unsafe { asm!("in ax, dx", in("dx") port, out("ax") v, options(nostack, preserves_flags)) }
    v
}

/// Reads a dword from an I/O port.
#[inline(always)]
pub fn in32(port: u16) -> u32 {
    let v: u32;
    // SAFETY: port I/O has no memory effects in the guest.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") v, options(nostack, preserves_flags)) }
    v
}

/// Writes a buffer to a port with one string instruction (`rep outsb`),
/// which costs a single exit for the whole buffer.
pub fn outs8(port: u16, buf: &[u8]) {
    // SAFETY: reads `buf.len()` bytes from `buf`, which is valid for them.
    unsafe {
        asm!("rep outsb", in("dx") port, inout("rsi") buf.as_ptr() => _,
             inout("rcx") buf.len() => _, options(nostack, preserves_flags, readonly))
    }
}

/// The four registers a CPUID leaf returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpuid {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// Executes CPUID for `leaf` / `subleaf`.
pub fn cpuid(leaf: u32, subleaf: u32) -> Cpuid {
    let (eax, ebx, ecx, edx): (u32, u32, u32, u32);
    // SAFETY: CPUID only writes the named registers; RBX is saved by hand
    // because LLVM reserves it.
    unsafe {
        asm!("mov {tmp:r}, rbx", "cpuid", "xchg {tmp:r}, rbx",
             tmp = out(reg) ebx, inout("eax") leaf => eax, inout("ecx") subleaf => ecx,
             out("edx") edx, options(nostack, preserves_flags))
    }
    Cpuid { eax, ebx, ecx, edx }
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC only writes EDX:EAX.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) }
    u64::from(hi) << 32 | u64::from(lo)
}

/// Reads an MSR.
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDMSR only writes EDX:EAX (or faults into our IDT).
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nostack)) }
    u64::from(hi) << 32 | u64::from(lo)
}

/// Writes an MSR.
pub fn wrmsr(msr: u32, v: u64) {
    // SAFETY: the caller picks an MSR whose write is meaningful to the test.
    unsafe { asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nostack)) }
}

/// Ends the run with `status`; never returns.
pub fn exit(status: u32) -> ! {
    console().flush();
    loop {
        out32(EXIT_PORT, status);
        // SAFETY: halting with interrupts off parks the vCPU for good.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// A line-buffered writer to the console port.
pub struct Console {
    buf: [u8; 256],
    len: usize,
}

impl Console {
    /// Sends what is buffered (to the sink set by [`set_console_sink`],
    /// or to [`CONSOLE_PORT`]).
    pub fn flush(&mut self) {
        if self.len > 0 {
            let sink = CONSOLE_SINK.load(core::sync::atomic::Ordering::SeqCst);
            if sink == 0 {
                outs8(CONSOLE_PORT, &self.buf[..self.len]);
            } else {
                // SAFETY: only `set_console_sink` stores here, and it
                // stores a `fn(&[u8])`.
                let f: fn(&[u8]) = unsafe { core::mem::transmute::<usize, fn(&[u8])>(sink) };
                f(&self.buf[..self.len]);
            }
            self.len = 0;
        }
    }

    /// Appends bytes, flushing at each newline and when the buffer fills.
    pub fn write_bytes(&mut self, s: &[u8]) {
        for &b in s {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
            if b == b'\n' {
                self.flush();
            }
        }
    }
}

static mut CONSOLE: Console = Console { buf: [0; 256], len: 0 };

static CONSOLE_SINK: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Sends console text to `sink` instead of [`CONSOLE_PORT`] from now on
/// (for example to the Xen console through `console_io`).
pub fn set_console_sink(sink: fn(&[u8])) {
    console().flush();
    CONSOLE_SINK.store(sink as usize, core::sync::atomic::Ordering::SeqCst);
}

/// The console. It is one buffer: in a multi-vCPU guest only one vCPU
/// (by convention vCPU 0) prints; the others report through memory.
#[allow(static_mut_refs)]
pub fn console() -> &'static mut Console {
    // SAFETY: one vCPU prints at a time (see above); no other reference
    // outlives a print call.
    unsafe { &mut CONSOLE }
}

/// Something [`print!`] can write.
///
/// The precompiled `core` for the host target uses SSE in `core::fmt`,
/// which the development KVM's instruction emulator cannot run at ring 0,
/// so guests never use `core::fmt`: they print values through this trait,
/// whose impls are compiled with the guest's own (SSE-free) flags.
pub trait Emit {
    /// Writes `self` to the console.
    fn emit(&self, out: &mut Console);
}

impl Emit for str {
    fn emit(&self, out: &mut Console) {
        out.write_bytes(self.as_bytes());
    }
}

impl Emit for &str {
    fn emit(&self, out: &mut Console) {
        out.write_bytes(self.as_bytes());
    }
}

impl Emit for [u8] {
    fn emit(&self, out: &mut Console) {
        out.write_bytes(self);
    }
}

impl Emit for char {
    fn emit(&self, out: &mut Console) {
        let mut b = [0u8; 4];
        let n = encode_utf8(*self, &mut b);
        out.write_bytes(&b[..n]);
    }
}

impl Emit for bool {
    fn emit(&self, out: &mut Console) {
        out.write_bytes(if *self { b"true" } else { b"false" });
    }
}

fn encode_utf8(c: char, b: &mut [u8; 4]) -> usize {
    let c = c as u32;
    if c < 0x80 {
        b[0] = c as u8;
        1
    } else if c < 0x800 {
        b[0] = 0xc0 | (c >> 6) as u8;
        b[1] = 0x80 | (c & 0x3f) as u8;
        2
    } else if c < 0x10000 {
        b[0] = 0xe0 | (c >> 12) as u8;
        b[1] = 0x80 | ((c >> 6) & 0x3f) as u8;
        b[2] = 0x80 | (c & 0x3f) as u8;
        3
    } else {
        b[0] = 0xf0 | (c >> 18) as u8;
        b[1] = 0x80 | ((c >> 12) & 0x3f) as u8;
        b[2] = 0x80 | ((c >> 6) & 0x3f) as u8;
        b[3] = 0x80 | (c & 0x3f) as u8;
        4
    }
}

fn emit_u64(mut v: u64, out: &mut Console) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.write_bytes(&digits[i..]);
}

macro_rules! emit_unsigned {
    ($($t:ty),*) => {$(
        impl Emit for $t {
            fn emit(&self, out: &mut Console) {
                emit_u64(*self as u64, out);
            }
        }
    )*};
}
emit_unsigned!(u8, u16, u32, u64, usize);

macro_rules! emit_signed {
    ($($t:ty),*) => {$(
        impl Emit for $t {
            fn emit(&self, out: &mut Console) {
                if *self < 0 {
                    out.write_bytes(b"-");
                }
                emit_u64((*self as i64).unsigned_abs(), out);
            }
        }
    )*};
}
emit_signed!(i8, i16, i32, i64, isize);

/// Prints its value in lower-case hex without a prefix.
#[derive(Clone, Copy, Debug)]
pub struct Hex<T>(pub T);

impl<T: Copy + Into<u64>> Emit for Hex<T> {
    fn emit(&self, out: &mut Console) {
        let v: u64 = self.0.into();
        let mut digits = [0u8; 16];
        let mut i = digits.len();
        let mut x = v;
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[(x & 0xf) as usize];
            x >>= 4;
            if x == 0 {
                break;
            }
        }
        out.write_bytes(&digits[i..]);
    }
}

/// Prints each argument in turn: `print!("x = ", x, " at ", Hex(addr))`.
#[macro_export]
macro_rules! print {
    ($($e:expr),* $(,)?) => {{
        let _c = $crate::console();
        $( $crate::Emit::emit(&$e, _c); )*
    }};
}

/// Like [`print!`], then a newline.
#[macro_export]
macro_rules! println {
    ($($e:expr),* $(,)?) => {{
        $crate::print!($($e,)* "\n");
    }};
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // The message would need core::fmt; the location is enough to find it.
    match info.location() {
        Some(l) => println!("PANIC at ", l.file(), ":", l.line(), ":", l.column()),
        None => println!("PANIC"),
    }
    exit(STATUS_PANIC)
}

/// The exception IDT: every CPU exception reports itself and exits.
mod idt {
    use super::*;

    #[repr(C, align(16))]
    struct Idt([u64; 512]);

    static mut IDT: Idt = Idt([0; 512]);

    /// The frame the common stub hands to Rust.
    #[repr(C)]
    struct Frame {
        vector: u64,
        error: u64,
        rip: u64,
        cs: u64,
        rflags: u64,
    }

    // 32 stubs: each pushes a zero error code where the CPU pushes none,
    // then the vector, and joins the common path.
    global_asm!(
        ".section .text",
        ".macro EXC_NOERR n",
        "exc_\\n: push 0",
        "    push \\n",
        "    jmp exc_common",
        ".endm",
        ".macro EXC_ERR n",
        "exc_\\n: push \\n",
        "    jmp exc_common",
        ".endm",
        "EXC_NOERR 0", "EXC_NOERR 1", "EXC_NOERR 2", "EXC_NOERR 3",
        "EXC_NOERR 4", "EXC_NOERR 5", "EXC_NOERR 6", "EXC_NOERR 7",
        "EXC_ERR 8", "EXC_NOERR 9", "EXC_ERR 10", "EXC_ERR 11",
        "EXC_ERR 12", "EXC_ERR 13", "EXC_ERR 14", "EXC_NOERR 15",
        "EXC_NOERR 16", "EXC_ERR 17", "EXC_NOERR 18", "EXC_NOERR 19",
        "EXC_NOERR 20", "EXC_ERR 21", "EXC_NOERR 22", "EXC_NOERR 23",
        "EXC_NOERR 24", "EXC_NOERR 25", "EXC_NOERR 26", "EXC_NOERR 27",
        "EXC_NOERR 28", "EXC_ERR 29", "EXC_ERR 30", "EXC_NOERR 31",
        "exc_common:",
        "    mov rdi, rsp",
        "    and rsp, -16",
        "    call {handler}",
        "3:  hlt",
        "    jmp 3b",
        ".section .rodata",
        ".balign 8",
        ".global exc_table",
        "exc_table:",
        ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
        ".quad exc_\\n",
        ".endr",
        handler = sym exception,
    );

    unsafe extern "C" {
        static exc_table: [u64; 32];
    }

    extern "C" fn exception(frame: &Frame) -> ! {
        let cr2: u64;
        // SAFETY: reading CR2 has no side effects.
        unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) }
        println!(
            "EXCEPTION: vector ", frame.vector, " error 0x", Hex(frame.error), " rip 0x",
            Hex(frame.rip), " cs 0x", Hex(frame.cs), " rflags 0x", Hex(frame.rflags),
            " cr2 0x", Hex(cr2)
        );
        exit(STATUS_EXCEPTION + frame.vector as u32)
    }

    /// Sets an interrupt gate for `vector` to `handler` (ring 0, CS 0x08).
    pub fn set_gate(vector: u8, handler: u64) {
        let lo = (handler & 0xffff)
            | (0x08 << 16)
            | (0x8e00u64 << 32)
            | ((handler >> 16) & 0xffff) << 48;
        let hi = handler >> 32;
        let i = usize::from(vector) * 2;
        // SAFETY: single writer at start-up or from the test's own vCPU.
        unsafe {
            let idt = &raw mut IDT;
            (*idt).0[i] = lo;
            (*idt).0[i + 1] = hi;
        }
    }

    pub fn install() {
        for v in 0..32u8 {
            // SAFETY: `exc_table` is a constant table defined above.
            let h = unsafe { exc_table[usize::from(v)] };
            set_gate(v, h);
        }
        #[repr(C, packed)]
        struct Idtr {
            limit: u16,
            base: u64,
        }
        let idtr = Idtr { limit: (512 * 8 - 1) as u16, base: (&raw const IDT) as u64 };
        // SAFETY: the IDT is static and fully initialised for vectors 0..32;
        // the others are not-present gates.
        unsafe { asm!("lidt [{}]", in(reg) &idtr, options(readonly, nostack)) }
    }
}

pub use idt::set_gate;

/// Copies `n` bytes (the compiler emits calls to this).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid and disjoint.
    unsafe {
        asm!("rep movsb", inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") n => _,
             options(nostack, preserves_flags))
    }
    dst
}

/// Copies `n` bytes between possibly overlapping ranges.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
        // SAFETY: a forward copy is safe when dst is below src or disjoint.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: copy backwards with the direction flag set, then clear it.
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
             inout("rcx") n => _, options(nostack))
    }
    dst
}

/// Fills `n` bytes with `c`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range is valid.
    unsafe {
        asm!("rep stosb", inout("rdi") dst => _, inout("rcx") n => _, in("al") c as u8,
             options(nostack, preserves_flags))
    }
    dst
}

/// Compares `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the caller guarantees both ranges are valid; volatile reads
        // keep the compiler from turning this loop into a memcmp call.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// Same as [`memcmp`] (the compiler may emit either).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// The precompiled `core` for the host target is built for unwinding and
/// names this symbol; guests abort on panic, so it is never called.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
