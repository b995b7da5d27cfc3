// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Takes event-channel upcalls in an IDT handler, as Linux does with a
//! per-vCPU upcall vector (`HVMOP_set_evtchn_upcall_vector`, vector 0xf3):
//! the handler clears `evtchn_upcall_pending`, swaps the selector to 0,
//! scans `pending & ~mask`, records and clears each port, and EOIs the
//! local APIC. Prints `v <name> <value>` lines.

#![no_std]
#![no_main]

use core::arch::{asm, global_asm};
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use xen_guest_rt::xen::{hypercall, install_hypercall_page, nr, xen_base};
use xen_guest_rt::{Start, entry, println, set_gate};

const DOMID_SELF: u64 = 0x7ff0;
const SHINFO: u64 = 0x1f00 << 12;
const VECTOR: u8 = 0xf3;
const LAPIC: u64 = 0xfee0_0000;
const EVTCHNOP_SEND: u64 = 4;
const EVTCHNOP_BIND_IPI: u64 = 7;
const EVTCHNOP_UNMASK: u64 = 9;

static UPCALLS: AtomicU32 = AtomicU32::new(0);
/// Bit p set: port p was handled.
static SEEN: AtomicU64 = AtomicU64::new(0);

#[repr(C, align(4096))]
struct Page([u64; 512]);
static mut ARG: Page = Page([0; 512]);

fn arg() -> u64 {
    (&raw const ARG) as u64
}

fn put(i: usize, v: u64) {
    // SAFETY: inside ARG.
    unsafe { write_volatile((arg() as *mut u64).add(i), v) }
}

fn get(i: usize) -> u64 {
    // SAFETY: inside ARG.
    unsafe { read_volatile((arg() as *const u64).add(i)) }
}

fn mmio32(addr: u64, v: u32) {
    // SAFETY: the local APIC's registers, identity-mapped.
    unsafe { write_volatile(addr as *mut u32, v) }
}

fn shared(off: u64) -> &'static AtomicU64 {
    // SAFETY: shared_info is guest RAM placed below; the VMM changes these
    // words only atomically, as this guest does.
    unsafe { &*((SHINFO + off) as *const AtomicU64) }
}

global_asm!(
    ".section .text",
    ".global upcall_entry",
    "upcall_entry:",
    "    push rax", "push rcx", "push rdx", "push rsi", "push rdi",
    "    push r8", "push r9", "push r10", "push r11",
    "    cld",
    "    call {handler}",
    "    pop r11", "pop r10", "pop r9", "pop r8",
    "    pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rax",
    "    iretq",
    handler = sym upcall_handler,
);

unsafe extern "C" {
    fn upcall_entry();
}

/// The upcall, as Linux's `xen_evtchn_do_upcall` (2-level) does it.
extern "C" fn upcall_handler() {
    UPCALLS.fetch_add(1, Ordering::SeqCst);
    // vCPU 0's vcpu_info is its slot in shared_info.
    // SAFETY: byte 0 of vcpu_info is evtchn_upcall_pending.
    unsafe { write_volatile(SHINFO as *mut u8, 0) };
    let sel = shared(8).swap(0, Ordering::SeqCst);
    for w in 0..64u64 {
        if sel & (1 << w) == 0 {
            continue;
        }
        let pending = shared(2048 + w * 8);
        let mask = shared(2560 + w * 8).load(Ordering::SeqCst);
        let ready = pending.load(Ordering::SeqCst) & !mask;
        for b in 0..64u64 {
            if ready & (1 << b) != 0 {
                pending.fetch_and(!(1 << b), Ordering::SeqCst);
                let port = w * 64 + b;
                if port < 64 {
                    SEEN.fetch_or(1 << port, Ordering::SeqCst);
                }
            }
        }
    }
    // Per-vCPU vectors are LAPIC interrupts: EOI.
    mmio32(LAPIC + 0xb0, 0);
}

fn evtchn(cmd: u64) -> i64 {
    hypercall(nr::EVENT_CHANNEL_OP, [cmd, arg(), 0, 0, 0])
}

/// Waits (with interrupts on) until `n` upcalls have been taken. Each halt
/// ends with an interrupt; if none comes the harness's timeout ends the run.
fn wait_upcalls(n: u32) -> bool {
    for _ in 0..1000 {
        // SAFETY: interrupts off while checking, then `sti; hlt` atomically.
        unsafe { asm!("cli") };
        if UPCALLS.load(Ordering::SeqCst) >= n {
            unsafe { asm!("sti") };
            return true;
        }
        // SAFETY: see above; an upcall wakes the hlt.
        unsafe { asm!("sti", "hlt") };
    }
    false
}

fn main(_start: Start) -> u32 {
    let Some((base, _)) = xen_base() else {
        return 1;
    };
    install_hypercall_page(base);
    put(0, DOMID_SELF);
    put(1, 0);
    put(2, SHINFO >> 12);
    println!("v add_shinfo ", hypercall(nr::MEMORY_OP, [7, arg(), 0, 0, 0]));

    // The local APIC on (software enable, spurious vector 0xff), the
    // handler in the IDT.
    mmio32(LAPIC + 0xf0, 0x1ff);
    set_gate(VECTOR, upcall_entry as usize as u64);
    // HVMOP_set_evtchn_upcall_vector {vcpu 0, vector}.
    put(0, u64::from(VECTOR) << 32);
    println!("v upcall_vector ", hypercall(nr::HVM_OP, [23, arg(), 0, 0, 0]));
    // Linux then sets CALLBACK_IRQ to GSI 1 only to look "enlightened";
    // the VMM must not drive that line.
    put(0, DOMID_SELF);
    put(1, 0);
    println!("v callback_gsi1 ", hypercall(nr::HVM_OP, [0, arg(), 0, 0, 0]));

    // The registration's spurious upcall is not delivered here (no
    // vcpu_info registration in this guest); start from a clean state.
    put(0, 0);
    println!("v bind_ipi ", evtchn(EVTCHNOP_BIND_IPI));
    let port = get(0) >> 32;
    put(0, port);
    println!("v send ", evtchn(EVTCHNOP_SEND));
    println!("v upcall_taken ", wait_upcalls(1), " count ", UPCALLS.load(Ordering::SeqCst));
    println!("v seen ", SEEN.load(Ordering::SeqCst) == 1 << port, " port ", port);

    // Masked: pending without an upcall; unmask delivers it.
    shared(2560).fetch_or(1 << port, Ordering::SeqCst);
    put(0, port);
    evtchn(EVTCHNOP_SEND);
    for _ in 0..2000 {
        core::hint::spin_loop();
    }
    println!("v masked_count ", UPCALLS.load(Ordering::SeqCst));
    SEEN.store(0, Ordering::SeqCst);
    // As Linux does for a pending port: leave the mask set and let the
    // hypercall clear it, so that the hypervisor re-raises the event.
    put(0, port);
    println!("v unmask ", evtchn(EVTCHNOP_UNMASK));
    println!("v unmask_taken ", wait_upcalls(2), " seen ", SEEN.load(Ordering::SeqCst) == 1 << port);
    0
}

entry!(main);
