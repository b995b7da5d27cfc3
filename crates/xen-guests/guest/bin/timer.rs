// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! PV timers and upcall latency: binds VIRQ_TIMER, arms the single-shot
//! timer with VCPUOP_set_singleshot_timer and with set_timer_op, then a
//! periodic timer, taking each as an upcall on vector 0xf3. Also measures,
//! in TSC ticks, a bare hypercall round trip and the time from
//! EVTCHNOP_send on a self-IPI to the handler's entry. Prints
//! `v <name> <value>` lines.

#![no_std]
#![no_main]

use core::ptr::{read_volatile, write_volatile};

use xen_guest_rt::xen::bsp::{arg, put, get};
use xen_guest_rt::xen::{self, evtchnop, hypercall, install_hypercall_page, nr, upcall, xen_base};
use xen_guest_rt::{Start, entry, println, rdtsc};

const SHINFO: u64 = 0x1f00 << 12;
const VECTOR: u8 = 0xf3;
const ROUNDS: u64 = 200;

fn now() -> u64 {
    put(0, 0);
    hypercall(nr::HVM_OP, [10, arg(), 0, 0, 0]);
    get(0)
}

fn seen(port: u64) -> bool {
    upcall::take_seen() & (1 << port) != 0
}

fn main(_start: Start) -> u32 {
    let Some((base, _)) = xen_base() else {
        return 1;
    };
    install_hypercall_page(base);
    println!("v add_shinfo ", xen::place_shared_info(0, SHINFO >> 12));
    upcall::install(VECTOR, SHINFO);
    println!("v upcall_vector ", xen::set_upcall_vector(0, 0, VECTOR));

    // EVTCHNOP_bind_virq {virq 0 (timer), vcpu 0}.
    put(0, 0);
    put(1, 0);
    println!("v bind_virq ", hypercall(nr::EVENT_CHANNEL_OP, [evtchnop::BIND_VIRQ, arg(), 0, 0, 0]));
    let port = get(1);

    // VCPUOP_set_singleshot_timer(vcpu 0, {now + 2 ms, flags 0}).
    put(0, now() + 2_000_000);
    put(1, 0);
    println!("v singleshot ", hypercall(nr::VCPU_OP, [8, 0, arg(), 0, 0]));
    println!("v singleshot_fired ", upcall::wait(1), " port ", seen(port));

    // set_timer_op(now + 1 ms).
    println!("v set_timer_op ", hypercall(nr::SET_TIMER_OP, [now() + 1_000_000, 0, 0, 0, 0]));
    println!("v set_timer_op_fired ", upcall::wait(2), " port ", seen(port));

    // VCPUOP_set_periodic_timer(vcpu 0, {1 ms}); five ticks, then stop.
    put(0, 1_000_000);
    println!("v periodic ", hypercall(nr::VCPU_OP, [6, 0, arg(), 0, 0]));
    println!("v periodic_fired ", upcall::wait(7), " port ", seen(port));
    println!("v stop_periodic ", hypercall(nr::VCPU_OP, [7, 0, 0, 0, 0]));

    // SCHEDOP_poll on the (masked, so no upcall) timer port: with the port
    // pending it returns at once; without, it blocks until the timeout.
    let mask = (SHINFO + 2560) as *mut u64;
    // SAFETY: the guest's own mask word in shared_info; nothing else
    // writes it.
    unsafe { write_volatile(mask, read_volatile(mask) | 1 << port) };
    put(0, now() + 1_000_000);
    hypercall(nr::SET_TIMER_OP, [get(0), 0, 0, 0, 0]);
    let poll = |timeout: u64| {
        put(8, port);
        put(0, arg() + 64);
        put(1, 1);
        put(2, timeout);
        hypercall(nr::SCHED_OP, [3, arg(), 0, 0, 0])
    };
    // Wait (polling without a timeout: spurious returns are allowed) until
    // the timer has made the port pending.
    let mut polls = 0;
    let pending = (SHINFO + 2048) as *const u64;
    // SAFETY: reading the pending word of shared_info.
    while unsafe { read_volatile(pending) } & (1 << port) == 0 && polls < 1000 {
        poll(0);
        polls += 1;
    }
    let t = now();
    let r = poll(t + 1_000_000_000);
    println!("v poll_pending ", r, " fast ", now() - t < 500_000_000);
    // Consume it, then poll with a 5 ms timeout until that time has passed.
    // SAFETY: as above; the guest clears its own pending bit.
    unsafe { core::ptr::write_volatile(pending as *mut u64, read_volatile(pending) & !(1 << port)) };
    let t = now();
    let mut rounds = 0;
    while now() < t + 5_000_000 && rounds < 1000 {
        poll(t + 5_000_000);
        rounds += 1;
    }
    println!("v poll_timeout_rounds_bounded ", rounds < 1000, " waited ", now() - t >= 5_000_000);
    // SAFETY: unmask again.
    unsafe { write_volatile(mask, read_volatile(mask) & !(1 << port)) };

    // Latency, in TSC ticks: a bare hypercall round trip, and EVTCHNOP_send
    // on a self-IPI to the entry of the upcall handler.
    let t0 = rdtsc();
    for _ in 0..ROUNDS {
        hypercall(nr::XEN_VERSION, [0; 5]);
    }
    let hcall = (rdtsc() - t0) / ROUNDS;
    put(0, 0);
    hypercall(nr::EVENT_CHANNEL_OP, [evtchnop::BIND_IPI, arg(), 0, 0, 0]);
    let ipi = get(0) >> 32;
    let mut total = 0;
    for i in 0..ROUNDS {
        put(0, ipi);
        let before = upcall::count();
        let t = rdtsc();
        hypercall(nr::EVENT_CHANNEL_OP, [evtchnop::SEND, arg(), 0, 0, 0]);
        upcall::wait(before + 1);
        total += upcall::last_tsc().wrapping_sub(t);
        let _ = i;
    }
    println!("v tsc_hypercall ", hcall, " tsc_send_to_upcall ", total / ROUNDS);
    0
}

entry!(main);
