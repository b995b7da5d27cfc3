// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A VMM back end raises the guest's end of an inter-domain channel by
//! writing an eventfd (`xen_kvm_accel::EventfdPorts`): in the kernel
//! through a `KVM_IRQ_ROUTING_XEN_EVTCHN` route where KVM has one, else on
//! the VMM's event-loop thread.
//!
//! The argument: bits 3:0 pick the upcall (1: per-vCPU vector through
//! `HVMOP_set_evtchn_upcall_vector`, 2: the global callback vector through
//! `HVM_PARAM_CALLBACK_IRQ`, both 0xf3); bits 31:8 are the back end's port,
//! which the host allocated unbound for this domain.
//!
//! The guest binds it (`EVTCHNOP_bind_interdomain(0, port)`; the new port
//! starts pending, one upcall), then in rounds sends on its port (the
//! host's back end answers each send by writing its eventfd once, from
//! another thread) and waits halted for the upcall: one per write, on its
//! port. Then it masks the port: the write sets it pending without an
//! upcall, and `EVTCHNOP_unmask` delivers it. Last it switches to FIFO
//! (KVM routes only 2-level events, so the VMM must fall back to user
//! space) and takes one more round. Prints `v <name> <value>` lines.

#![no_std]
#![no_main]

use core::ptr::write_volatile;
use core::sync::atomic::{AtomicU64, Ordering};

use xen_guest_rt::xen::bsp::{arg, put, get, evtchn};
use xen_guest_rt::xen::{self, evtchnop, hypercall, install_hypercall_page, nr, upcall, xen_base};
use xen_guest_rt::{Start, entry, println, rdtsc};

const DOMID_SELF: u64 = 0x7ff0;
const SHINFO: u64 = 0x1f00 << 12;
const VECTOR: u8 = 0xf3;
/// Eventfd writes answered with exactly one upcall each.
const ROUNDS: u32 = 4;

#[repr(C, align(4096))]
struct Pages([u8; 8192]);
static mut FIFO_PAGES: Pages = Pages([0; 8192]);

fn shared(off: u64) -> &'static AtomicU64 {
    xen::shared_word(SHINFO, off)
}

fn send(port: u64) -> i64 {
    put(0, port);
    evtchn(evtchnop::SEND)
}

/// Spins (interrupts on) until `until()` or about `cycles` TSC cycles.
fn spin_until(cycles: u64, until: impl Fn() -> bool) -> bool {
    let t0 = rdtsc();
    while rdtsc().wrapping_sub(t0) < cycles {
        if until() {
            return true;
        }
        core::hint::spin_loop();
    }
    until()
}

fn main(start: Start) -> u32 {
    let Some((base, _)) = xen_base() else {
        println!("v error no_xen");
        return 1;
    };
    install_hypercall_page(base);
    println!("v add_shinfo ", xen::place_shared_info(0, SHINFO >> 12));
    upcall::install(VECTOR, SHINFO);
    let mode = start.arg & 0xf;
    let r = if mode == 1 {
        // HVMOP_set_evtchn_upcall_vector {vcpu 0, vector}.
        xen::set_upcall_vector(0, 0, VECTOR)
    } else {
        // HVMOP_set_param(CALLBACK_IRQ, type 2 vector).
        put(0, DOMID_SELF);
        put(1, 2 << 56 | u64::from(VECTOR));
        hypercall(nr::HVM_OP, [0, arg(), 0, 0, 0])
    };
    println!("v callback ", r);

    // struct evtchn_bind_interdomain { u16 remote_dom; u32 remote_port;
    // u32 local_port (out) }: the back end is domain 0.
    let be = (start.arg >> 8) & 0xff_ffff;
    put(0, be << 32);
    put(1, 0);
    let r = evtchn(evtchnop::BIND_INTERDOMAIN);
    let port = get(1) & 0xffff_ffff;
    println!("v bind ", r, " port ", port);
    // The new local port starts pending: its upcall.
    let taken = upcall::wait(1);
    println!(
        "v bind_upcall ",
        taken,
        " seen ",
        upcall::take_seen() == 1 << port
    );

    // Each send makes the back end write its eventfd once.
    let mut ok = 0;
    for i in 0..ROUNDS {
        send(port);
        if upcall::wait(2 + i) && upcall::take_seen() == 1 << port {
            ok += 1;
        }
    }
    // Nothing more arrives.
    spin_until(20_000_000, || false);
    println!("v rounds ", ok, " count ", upcall::count());

    // Masked: the write sets the port pending, no upcall; unmask delivers.
    let (word, bit) = (u64::from(port / 64) * 8, 1u64 << (port % 64));
    shared(2560 + word).fetch_or(bit, Ordering::SeqCst);
    send(port);
    let pending = spin_until(2_000_000_000, || {
        shared(2048 + word).load(Ordering::SeqCst) & bit != 0
    });
    spin_until(20_000_000, || false);
    println!("v masked_pending ", pending, " count ", upcall::count());
    put(0, port);
    println!("v unmask ", evtchn(evtchnop::UNMASK));
    let taken = upcall::wait(2 + ROUNDS);
    println!(
        "v unmask_taken ",
        taken,
        " seen ",
        upcall::take_seen() == 1 << port
    );

    // FIFO: control block and one event-array page (every word MASKED, as
    // Linux initialises new pages); the port is not pending, so the guest
    // unmasks it itself.
    let ctrl = (&raw const FIFO_PAGES) as u64;
    let array = ctrl + 4096;
    let (init, expand) = upcall::fifo_init(ctrl, array);
    println!("v init_control ", init);
    println!("v expand_array ", expand);
    // SAFETY: the port's event word, inside the array page (port < 1024).
    unsafe { write_volatile((array + 4 * port) as *mut u32, 0) };
    send(port);
    let taken = upcall::wait(3 + ROUNDS);
    println!(
        "v fifo_taken ",
        taken,
        " seen ",
        upcall::take_seen() == 1 << port
    );
    spin_until(20_000_000, || false);
    println!("v count_final ", upcall::count());
    0
}

entry!(main);
