// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Two vCPUs exchange event-channel IPIs. vCPU 0 places shared_info, sets
//! the per-vCPU upcall vector for both vCPUs and binds one IPI port per
//! vCPU; vCPU 1 (which prints nothing) enables its APIC and waits; vCPU 0
//! sends to vCPU 1, whose handler sees the port; vCPU 1 then sends back
//! from its own hypercall, and vCPU 0's handler sees that port. vCPU 0
//! prints `v <name> <value>` lines.

#![no_std]
#![no_main]

use core::hint::spin_loop;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use xen_guest_rt::xen::{self, evtchnop, hypercall, install_hypercall_page, nr, upcall, xen_base};
use xen_guest_rt::{Start, entry, println};

const SHINFO: u64 = 0x1f00 << 12;
const VECTOR: u8 = 0xf3;

/// Progress flags between the vCPUs.
static STAGE: AtomicU32 = AtomicU32::new(0);
/// Port that notifies vCPU 0, and vCPU 1.
static PORT0: AtomicU64 = AtomicU64::new(0);
static PORT1: AtomicU64 = AtomicU64::new(0);
/// What vCPU 1 saw (bit mask of ports) and the result of its send.
static AP_SEEN: AtomicU64 = AtomicU64::new(0);
static AP_SEND: AtomicU64 = AtomicU64::new(u64::MAX);

fn arg(vcpu: usize) -> u64 {
    xen::arg(vcpu as u64)
}

fn put(vcpu: usize, i: usize, v: u64) {
    xen::put(vcpu as u64, i, v)
}

fn get(vcpu: usize, i: usize) -> u64 {
    xen::get(vcpu as u64, i)
}

fn wait_stage(n: u32) {
    while STAGE.load(Ordering::SeqCst) < n {
        spin_loop();
    }
}

fn send(vcpu: usize, port: u64) -> i64 {
    put(vcpu, 0, port);
    hypercall(nr::EVENT_CHANNEL_OP, [evtchnop::SEND, arg(vcpu), 0, 0, 0])
}

fn ap() -> u32 {
    wait_stage(1);
    upcall::install(VECTOR, SHINFO);
    STAGE.store(2, Ordering::SeqCst);
    upcall::wait(1);
    AP_SEEN.store(upcall::take_seen(), Ordering::SeqCst);
    AP_SEND.store(send(1, PORT0.load(Ordering::SeqCst)) as u64, Ordering::SeqCst);
    STAGE.store(3, Ordering::SeqCst);
    0
}

fn main(start: Start) -> u32 {
    if start.vcpu != 0 {
        return ap();
    }
    let Some((base, _)) = xen_base() else {
        return 1;
    };
    install_hypercall_page(base);
    println!("v add_shinfo ", xen::place_shared_info(0, SHINFO >> 12));
    upcall::install(VECTOR, SHINFO);
    for v in 0..2u64 {
        println!("v upcall_vector", v, " ", xen::set_upcall_vector(0, v, VECTOR));
        put(0, 0, v);
        println!("v bind_ipi", v, " ", hypercall(nr::EVENT_CHANNEL_OP, [evtchnop::BIND_IPI, arg(0), 0, 0, 0]));
        let port = get(0, 0) >> 32;
        upcall::claim(port, v);
        if v == 0 {
            PORT0.store(port, Ordering::SeqCst);
        } else {
            PORT1.store(port, Ordering::SeqCst);
        }
    }
    STAGE.store(1, Ordering::SeqCst);
    wait_stage(2);
    let p1 = PORT1.load(Ordering::SeqCst);
    println!("v send_to_ap ", send(0, p1));
    wait_stage(3);
    let p0 = PORT0.load(Ordering::SeqCst);
    println!("v ap_saw_its_port ", AP_SEEN.load(Ordering::SeqCst) == 1 << p1, " ap_send ", AP_SEND.load(Ordering::SeqCst) as i64);
    println!("v bsp_took ", upcall::wait(1), " saw_its_port ", upcall::take_seen() == 1 << p0);
    0
}

entry!(main);
