// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Takes event-channel upcalls in an IDT handler, as Linux does with a
//! per-vCPU upcall vector (`HVMOP_set_evtchn_upcall_vector`, vector 0xf3):
//! the runtime's handler (`xen::upcall`) clears `evtchn_upcall_pending`,
//! swaps the selector to 0, scans `pending & ~mask`, records and clears
//! each port, and EOIs the local APIC. Prints `v <name> <value>` lines.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use xen_guest_rt::xen::bsp::{arg, put, get, evtchn};
use xen_guest_rt::xen::{self, evtchnop, hypercall, install_hypercall_page, nr, upcall, xen_base};
use xen_guest_rt::{Start, entry, println};

const DOMID_SELF: u64 = 0x7ff0;
const SHINFO: u64 = 0x1f00 << 12;
const VECTOR: u8 = 0xf3;

fn shared(off: u64) -> &'static AtomicU64 {
    xen::shared_word(SHINFO, off)
}

fn main(_start: Start) -> u32 {
    let Some((base, _)) = xen_base() else {
        return 1;
    };
    install_hypercall_page(base);
    println!("v add_shinfo ", xen::place_shared_info(0, SHINFO >> 12));

    upcall::install(VECTOR, SHINFO);
    // HVMOP_set_evtchn_upcall_vector {vcpu 0, vector}.
    println!("v upcall_vector ", xen::set_upcall_vector(0, 0, VECTOR));
    // Linux then sets CALLBACK_IRQ to GSI 1 only to look "enlightened";
    // the VMM must not drive that line.
    put(0, DOMID_SELF);
    put(1, 0);
    println!("v callback_gsi1 ", hypercall(nr::HVM_OP, [0, arg(), 0, 0, 0]));

    // The registration's spurious upcall is not delivered here (no
    // vcpu_info registration in this guest); start from a clean state.
    put(0, 0);
    println!("v bind_ipi ", evtchn(evtchnop::BIND_IPI));
    let port = get(0) >> 32;
    put(0, port);
    println!("v send ", evtchn(evtchnop::SEND));
    println!("v upcall_taken ", upcall::wait(1), " count ", upcall::count());
    println!("v seen ", upcall::take_seen() == 1 << port, " port ", port);

    // Masked: pending without an upcall; unmask delivers it.
    shared(2560).fetch_or(1 << port, Ordering::SeqCst);
    put(0, port);
    evtchn(evtchnop::SEND);
    for _ in 0..2000 {
        core::hint::spin_loop();
    }
    println!("v masked_count ", upcall::count());
    // As Linux does for a pending port: leave the mask set and let the
    // hypercall clear it, so that the hypervisor re-raises the event.
    put(0, port);
    println!("v unmask ", evtchn(evtchnop::UNMASK));
    println!("v unmask_taken ", upcall::wait(2), " seen ", upcall::take_seen() == 1 << port);

    // The same through FIFO: control block and one event-array page (every
    // word MASKED, as Linux initialises new pages), a fresh IPI port that
    // the guest unmasks itself (it is not pending), then a send.
    let ctrl = (&raw const FIFO_PAGES) as u64;
    let array = ctrl + 4096;
    let (init, expand) = upcall::fifo_init(ctrl, array);
    println!("v init_control ", init);
    println!("v expand_array ", expand);
    put(0, 0);
    evtchn(evtchnop::BIND_IPI);
    let fport = get(0) >> 32;
    // SAFETY: the port's event word; not pending, so the guest may unmask.
    unsafe { core::ptr::write_volatile((array + 4 * fport) as *mut u32, 0) };
    put(0, fport);
    println!("v fifo_send ", evtchn(evtchnop::SEND));
    println!("v fifo_taken ", upcall::wait(3), " seen ", upcall::take_seen() == 1 << fport);
    0
}

/// The FIFO control block and event-array page.
#[repr(C, align(4096))]
struct FifoPages([u8; 8192]);
static mut FIFO_PAGES: FifoPages = FifoPages([0; 8192]);

entry!(main);
