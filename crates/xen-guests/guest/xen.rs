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
    /// `event_channel_op`.
    pub const EVENT_CHANNEL_OP: u32 = 32;
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

/// `event_channel_op` commands the guests use (`xen-abi.md` §3.8).
pub mod evtchnop {
    /// `EVTCHNOP_bind_interdomain`.
    pub const BIND_INTERDOMAIN: u64 = 0;
    /// `EVTCHNOP_bind_virq`.
    pub const BIND_VIRQ: u64 = 1;
    /// `EVTCHNOP_send`.
    pub const SEND: u64 = 4;
    /// `EVTCHNOP_status`.
    pub const STATUS: u64 = 5;
    /// `EVTCHNOP_alloc_unbound`.
    pub const ALLOC_UNBOUND: u64 = 6;
    /// `EVTCHNOP_bind_ipi`.
    pub const BIND_IPI: u64 = 7;
    /// `EVTCHNOP_unmask`.
    pub const UNMASK: u64 = 9;
    /// `EVTCHNOP_init_control`.
    pub const INIT_CONTROL: u64 = 11;
    /// `EVTCHNOP_expand_array`.
    pub const EXPAND_ARRAY: u64 = 12;
}

/// Scratch pages for hypercall arguments, one per vCPU.
#[repr(C, align(4096))]
struct Scratch([[u64; 512]; 4]);

static mut SCRATCH: Scratch = Scratch([[0; 512]; 4]);

/// Address of `vcpu`'s scratch argument page (vCPU indexes wrap at 4).
pub fn arg(vcpu: u64) -> u64 {
    (&raw const SCRATCH) as u64 + (vcpu % 4) * 4096
}

/// Writes 64-bit word `i` of `vcpu`'s scratch page.
pub fn put(vcpu: u64, i: usize, v: u64) {
    // SAFETY: inside the scratch page (index masked to its 512 words).
    unsafe { core::ptr::write_volatile((arg(vcpu) as *mut u64).add(i % 512), v) }
}

/// Reads 64-bit word `i` of `vcpu`'s scratch page.
pub fn get(vcpu: u64, i: usize) -> u64 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile((arg(vcpu) as *const u64).add(i % 512)) }
}

/// `event_channel_op(cmd, ...)` with `vcpu`'s scratch page as argument.
pub fn evtchn(vcpu: u64, cmd: u64) -> i64 {
    hypercall(nr::EVENT_CHANNEL_OP, [cmd, arg(vcpu), 0, 0, 0])
}

/// The 64-bit word at byte `off` of the shared_info page at `shinfo`.
pub fn shared_word(shinfo: u64, off: u64) -> &'static core::sync::atomic::AtomicU64 {
    // SAFETY: shared_info is guest RAM the guest placed; the VMM and KVM
    // change its words only atomically, as guests do.
    unsafe { &*((shinfo + off) as *const core::sync::atomic::AtomicU64) }
}

/// `HVMOP_set_evtchn_upcall_vector {vcpu, vector}`, called from vCPU
/// `caller` (with its scratch page).
pub fn set_upcall_vector(caller: u64, vcpu: u64, vector: u8) -> i64 {
    put(caller, 0, u64::from(vector) << 32 | vcpu);
    hypercall(nr::HVM_OP, [23, arg(caller), 0, 0, 0])
}

/// Shortcuts for guests that make their calls from vCPU 0 only.
pub mod bsp {
    /// vCPU 0's scratch argument page.
    pub fn arg() -> u64 {
        super::arg(0)
    }

    /// Writes word `i` of vCPU 0's scratch page.
    pub fn put(i: usize, v: u64) {
        super::put(0, i, v)
    }

    /// Reads word `i` of vCPU 0's scratch page.
    pub fn get(i: usize) -> u64 {
        super::get(0, i)
    }

    /// `event_channel_op(cmd, ...)` from vCPU 0.
    pub fn evtchn(cmd: u64) -> i64 {
        super::evtchn(0, cmd)
    }
}

/// Places shared_info at `gfn` (`XENMEM_add_to_physmap`, space
/// shared_info) from `vcpu`; returns the hypercall's result.
pub fn place_shared_info(vcpu: u64, gfn: u64) -> i64 {
    put(vcpu, 0, 0x7ff0); // DOMID_SELF; space 0 (shared_info)
    put(vcpu, 1, 0); // idx 0
    put(vcpu, 2, gfn);
    hypercall(nr::MEMORY_OP, [7, arg(vcpu), 0, 0, 0])
}

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

/// How a call reaches the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Through the installed hypercall page.
    Page,
    /// A direct `vmcall` (no page), as Linux does since XSA-466 on Intel.
    Vmcall,
    /// A direct `vmmcall` (no page), as Linux does on AMD.
    Vmmcall,
}

/// A 64-bit hypercall: RAX = `nr`, RDI, RSI, RDX, R10, R8, R9 = `a`.
pub fn call64(via: Via, nr: u32, a: [u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: each route only traps and returns; it clobbers RAX (the
    // result) and, in Xen debug builds, the argument registers (declared
    // clobbered).
    unsafe {
        match via {
            Via::Page => {
                let entry = page_addr() + u64::from(nr) * 32;
                asm!("call {e}", e = in(reg) entry,
                     inout("rax") u64::from(nr) => ret,
                     inout("rdi") a[0] => _, inout("rsi") a[1] => _, inout("rdx") a[2] => _,
                     inout("r10") a[3] => _, inout("r8") a[4] => _, inout("r9") a[5] => _,
                     out("rcx") _, out("r11") _);
            }
            Via::Vmcall => asm!("vmcall",
                     inout("rax") u64::from(nr) => ret,
                     inout("rdi") a[0] => _, inout("rsi") a[1] => _, inout("rdx") a[2] => _,
                     inout("r10") a[3] => _, inout("r8") a[4] => _, inout("r9") a[5] => _,
                     options(nostack)),
            Via::Vmmcall => asm!("vmmcall",
                     inout("rax") u64::from(nr) => ret,
                     inout("rdi") a[0] => _, inout("rsi") a[1] => _, inout("rdx") a[2] => _,
                     inout("r10") a[3] => _, inout("r8") a[4] => _, inout("r9") a[5] => _,
                     options(nostack)),
        }
    }
    ret
}

/// A 64-bit hypercall through the page: `nr` with five arguments.
pub fn hypercall(nr: u32, a: [u64; 5]) -> i64 {
    call64(Via::Page, nr, [a[0], a[1], a[2], a[3], a[4], 0])
}

/// Arguments and result of a 32-bit call, shared with the assembly below.
#[repr(C)]
struct Compat {
    nr: u32,
    args: [u32; 6],
    target: u32,
    result: u32,
}

// xen_compat_call(rdi = &mut Compat): loads EAX and EBX, ECX, EDX, ESI,
// EDI, EBP from the struct, far-calls the 32-bit segment 0x18, which calls
// `target` (a page stub, or one of the direct stubs below), and stores EAX
// back.
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
    "    mov eax, [rdi + 28]",
    "    mov [rip + xen_compat_target], eax",
    "    mov eax, [rdi]",
    "    mov ebx, [rdi + 4]",
    "    mov ecx, [rdi + 8]",
    "    mov edx, [rdi + 12]",
    "    mov esi, [rdi + 16]",
    "    mov ebp, [rdi + 24]",
    "    mov edi, [rdi + 20]",
    "    call fword ptr [rip + xen_compat_fp]",
    "    pop rdi",
    "    mov [rdi + 32], eax",
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
    ".global xen_compat_vmcall",
    "xen_compat_vmcall:",
    "    vmcall",
    "    ret",
    ".global xen_compat_vmmcall",
    "xen_compat_vmmcall:",
    "    vmmcall",
    "    ret",
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
    fn xen_compat_vmcall();
    fn xen_compat_vmmcall();
}

/// A hypercall from a 32-bit compatibility-mode segment: the 32-bit ABI
/// (EAX = `nr`; EBX, ECX, EDX, ESI, EDI, EBP = `a`; 32-bit pointers).
/// Returns EAX sign-extended.
pub fn call32(via: Via, nr: u32, a: [u32; 6]) -> i64 {
    let target = match via {
        Via::Page => page_addr() + u64::from(nr) * 32,
        Via::Vmcall => xen_compat_vmcall as usize as u64,
        Via::Vmmcall => xen_compat_vmmcall as usize as u64,
    };
    let mut c = Compat {
        nr,
        args: a,
        target: target as u32,
        result: 0,
    };
    // SAFETY: `c` is valid; the routine saves every callee-saved register
    // and returns to 64-bit mode.
    unsafe { xen_compat_call(&mut c) };
    i64::from(c.result as i32)
}

/// A 32-bit hypercall through the page with five arguments.
pub fn hypercall32(nr: u32, a: [u32; 5]) -> i64 {
    call32(Via::Page, nr, [a[0], a[1], a[2], a[3], a[4], 0])
}

/// Event-channel upcalls taken in an IDT handler, as Linux's
/// `xen_evtchn_do_upcall` does for the 2-level ABI with a per-vCPU upcall
/// vector. Each vCPU's vcpu_info is its slot in shared_info (vCPU < 32);
/// the handler finds its vCPU from the local APIC id.
pub mod upcall {
    use core::arch::asm;
    use core::ptr::{read_volatile, write_volatile};
    use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

    use crate::set_gate;

    /// The local APIC's MMIO base.
    pub const LAPIC: u64 = 0xfee0_0000;
    /// vCPUs the counters cover.
    pub const MAX_VCPUS: usize = 4;
    /// Upcalls taken so far, per vCPU.
    pub static UPCALLS: [AtomicU32; MAX_VCPUS] = [const { AtomicU32::new(0) }; MAX_VCPUS];
    /// Bit p set: port p (< 64) was handled, per vCPU.
    pub static SEEN: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];
    /// The TSC when the last upcall entered the handler, per vCPU.
    pub static LAST_TSC: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];
    static SHINFO: AtomicU64 = AtomicU64::new(0);
    /// Each vCPU's registered vcpu_info, or 0 for its shared_info slot.
    static VCPU_INFO: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];
    /// FIFO mode: this vCPU's control block and the (one-page) event array,
    /// or 0 for the 2-level ABI.
    static FIFO_CONTROL: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];
    static FIFO_ARRAY: AtomicU64 = AtomicU64::new(0);
    /// The vCPU each port (< 64) is bound to, as far as this guest knows
    /// ([`claim`]); ports never claimed are vCPU 0's, as in Linux.
    static OWNER: [AtomicU8; 64] = [const { AtomicU8::new(0) }; 64];

    /// FIFO event-word bits.
    const PENDING: u32 = 1 << 31;
    const MASKED: u32 = 1 << 30;
    const LINKED: u32 = 1 << 29;
    const LINK_MASK: u32 = (1 << 17) - 1;

    crate::irq_entry!("xen_upcall_entry", handler);

    unsafe extern "C" {
        fn xen_upcall_entry();
    }

    /// This vCPU's index: its local APIC id.
    pub fn this_vcpu() -> usize {
        // SAFETY: the local APIC id register, identity-mapped.
        let id = unsafe { read_volatile((LAPIC + 0x20) as *const u32) } >> 24;
        (id as usize).min(MAX_VCPUS - 1)
    }

    extern "C" fn handler() {
        let v = this_vcpu();
        LAST_TSC[v].store(crate::rdtsc(), Ordering::SeqCst);
        UPCALLS[v].fetch_add(1, Ordering::SeqCst);
        let info = match VCPU_INFO[v].load(Ordering::Relaxed) {
            0 => SHINFO.load(Ordering::Relaxed) + 64 * v as u64,
            registered => registered,
        };
        // SAFETY: byte 0 of this vCPU's vcpu_info is evtchn_upcall_pending.
        unsafe { write_volatile(info as *mut u8, 0) };
        let control = FIFO_CONTROL[v].load(Ordering::Relaxed);
        if control != 0 {
            fifo_consume(v, control);
        } else {
            two_level_consume(v, info);
        }
        // A per-vCPU vector is a LAPIC interrupt: EOI.
        // SAFETY: the local APIC's EOI register.
        unsafe { write_volatile((LAPIC + 0xb0) as *mut u32, 0) };
    }

    fn record(v: usize, port: u64) {
        if port < 64 {
            SEEN[v].fetch_or(1 << port, Ordering::SeqCst);
        }
    }

    /// Records that `port` is bound to `vcpu` (the vCPU its
    /// `EVTCHNOP_bind_ipi` or `bind_virq` named, or `bind_vcpu` moved it
    /// to), so that only that vCPU's handler takes it.
    pub fn claim(port: u64, vcpu: u64) {
        if let Some(o) = OWNER.get(port as usize) {
            o.store(vcpu as u8, Ordering::SeqCst);
        }
    }

    /// Whether `port` is bound to vCPU `v`.
    fn owned_by(port: u64, v: usize) -> bool {
        OWNER
            .get(port as usize)
            .map_or(v == 0, |o| usize::from(o.load(Ordering::SeqCst)) == v)
    }

    /// 2-level: swap the selector (in the vcpu_info at `info`), scan
    /// `pending & ~mask` of each word for this vCPU's ports.
    fn two_level_consume(v: usize, info: u64) {
        let shinfo = SHINFO.load(Ordering::Relaxed);
        two_level_scan(shinfo, info, |port| owned_by(port, v), |port| record(v, port));
    }

    /// What Linux's `xen_evtchn_do_upcall` does for the 2-level ABI, after
    /// clearing `evtchn_upcall_pending`: swaps the selector of the
    /// vcpu_info at `info` to 0 and, for each word it names, clears and
    /// hands `found` every port of `pending & ~mask` in the shared_info at
    /// `shinfo` that is `mine` (bound to this vCPU: the selector is
    /// per-vCPU, the pending words are not, so a vCPU taking every ready
    /// port would steal other vCPUs' events, which Linux's per-CPU
    /// `cpu_evtchn_mask` prevents).
    pub fn two_level_scan(
        shinfo: u64,
        info: u64,
        mine: impl Fn(u64) -> bool,
        mut found: impl FnMut(u64),
    ) {
        // SAFETY: the selector word of this vCPU's vcpu_info, guest RAM the
        // VMM changes only atomically.
        let sel = unsafe { &*((info + 8) as *const AtomicU64) }.swap(0, Ordering::SeqCst);
        for w in 0..64u64 {
            if sel & (1 << w) == 0 {
                continue;
            }
            let pending = crate::xen::shared_word(shinfo, 2048 + w * 8);
            let mask = crate::xen::shared_word(shinfo, 2560 + w * 8);
            let ready = pending.load(Ordering::SeqCst) & !mask.load(Ordering::SeqCst);
            for b in 0..64u64 {
                if ready & (1 << b) != 0 && mine(w * 64 + b) {
                    pending.fetch_and(!(1 << b), Ordering::SeqCst);
                    found(w * 64 + b);
                }
            }
        }
    }

    fn fifo_word(port: u32) -> Option<&'static AtomicU32> {
        let array = FIFO_ARRAY.load(Ordering::Relaxed);
        (array != 0 && port < 1024).then(|| {
            // SAFETY: the guest's own event-array page (1024 words).
            unsafe { &*((array + u64::from(port) * 4) as *const AtomicU32) }
        })
    }

    /// FIFO: take the ready queues, highest priority first; walk each
    /// queue from its head, unlinking every word (clearing LINKED and LINK
    /// atomically) and handling it if pending and not masked.
    fn fifo_consume(v: usize, control: u64) {
        // SAFETY: the guest's own control block: `ready` at 0, head[16] at 8.
        let ready = unsafe { &*(control as *const AtomicU32) }.swap(0, Ordering::SeqCst);
        for q in 0..16u64 {
            if ready & (1 << q) == 0 {
                continue;
            }
            // SAFETY: head[q] of the control block.
            let head = unsafe { &*((control + 8 + 4 * q) as *const AtomicU32) };
            let mut port = head.swap(0, Ordering::SeqCst);
            let mut steps = 0;
            while port != 0 && steps < 1024 {
                let Some(w) = fifo_word(port) else { break };
                let old = w.fetch_and(!(LINKED | LINK_MASK), Ordering::SeqCst);
                if old & PENDING != 0 && old & MASKED == 0 {
                    w.fetch_and(!PENDING, Ordering::SeqCst);
                    record(v, u64::from(port));
                }
                port = old & LINK_MASK;
                steps += 1;
            }
        }
    }

    /// Switches vCPU 0 to the FIFO ABI as Linux does: every word of the
    /// event-array page at `array` MASKED, `EVTCHNOP_init_control` with the
    /// control block at `control` (page-aligned), `EVTCHNOP_expand_array`
    /// with the array page, then the handler follows ([`use_fifo`]).
    /// Returns the two hypercalls' results.
    pub fn fifo_init(control: u64, array: u64) -> (i64, i64) {
        for w in 0..1024u64 {
            // SAFETY: the caller's event-array page.
            unsafe { write_volatile((array + 4 * w) as *mut u32, MASKED) };
        }
        crate::xen::put(0, 0, control >> 12);
        crate::xen::put(0, 1, 0);
        crate::xen::put(0, 2, 0);
        let init = crate::xen::evtchn(0, crate::xen::evtchnop::INIT_CONTROL);
        crate::xen::put(0, 0, array >> 12);
        let expand = crate::xen::evtchn(0, crate::xen::evtchnop::EXPAND_ARRAY);
        use_fifo(control, array);
        (init, expand)
    }

    /// Switches this vCPU's handler to the FIFO ABI: `control` is its
    /// control block, `array` the event-array page (ports 0..1024).
    pub fn use_fifo(control: u64, array: u64) {
        FIFO_ARRAY.store(array, Ordering::SeqCst);
        FIFO_CONTROL[this_vcpu()].store(control, Ordering::SeqCst);
    }

    /// Enables this vCPU's local APIC and routes `vector` to the handler,
    /// which finds shared_info at `shinfo`. Every vCPU that takes upcalls
    /// calls it.
    pub fn install(vector: u8, shinfo: u64) {
        SHINFO.store(shinfo, Ordering::SeqCst);
        // SAFETY: the spurious-vector register: software enable, vector 0xff.
        unsafe { write_volatile((LAPIC + 0xf0) as *mut u32, 0x1ff) };
        set_gate(vector, xen_upcall_entry as usize as u64);
    }

    /// Tells the handler that this vCPU registered its vcpu_info at `gpa`
    /// (`VCPUOP_register_vcpu_info`).
    pub fn set_vcpu_info(gpa: u64) {
        VCPU_INFO[this_vcpu()].store(gpa, Ordering::SeqCst);
    }

    /// Upcalls this vCPU has taken.
    pub fn count() -> u32 {
        UPCALLS[this_vcpu()].load(Ordering::SeqCst)
    }

    /// Takes (and clears) the ports this vCPU has seen.
    pub fn take_seen() -> u64 {
        SEEN[this_vcpu()].swap(0, Ordering::SeqCst)
    }

    /// The TSC at the entry of this vCPU's last upcall.
    pub fn last_tsc() -> u64 {
        LAST_TSC[this_vcpu()].load(Ordering::SeqCst)
    }

    /// Waits with interrupts on until this vCPU has taken `n` upcalls. Each
    /// halt ends with an interrupt; if none comes, the harness's timeout
    /// ends the run.
    pub fn wait(n: u32) -> bool {
        let v = this_vcpu();
        loop {
            // SAFETY: interrupts off while checking, then `sti; hlt`, which
            // takes no interrupt between the two instructions.
            unsafe { asm!("cli") };
            if UPCALLS[v].load(Ordering::SeqCst) >= n {
                // SAFETY: back to interrupts on.
                unsafe { asm!("sti") };
                return true;
            }
            // SAFETY: see above.
            unsafe { asm!("sti", "hlt") };
        }
    }
}
