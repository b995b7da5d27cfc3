// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Measures exits. `arg` rounds of each phase, with a 1-byte `out` to
//! port 0xe4 marking the phase boundaries (0 to 4) so that the host can
//! time each phase:
//!
//! 1. bare port-I/O exits (a 4-byte `out` to port 0xe5, which nobody
//!    handles);
//! 2. hypercalls the VMM answers (`xen_version(XENVER_pagesize)`: on the
//!    kernel path KVM answers `XENVER_version` itself);
//! 3. send-to-upcall round trips on the global callback vector (Linux's):
//!    `EVTCHNOP_send` on a self-IPI, then `sti; hlt` until the upcall
//!    handler has run (on the development machines' KVM a spinning ring-0
//!    guest is emulated and takes a pending interrupt only much later);
//! 4. the same on a per-vCPU upcall vector.
//!
//! Also prints, in TSC ticks, the average time from just before each send
//! to its return, to the handler's entry and to the round's end, per
//! upcall phase.

#![no_std]
#![no_main]

use xen_guest_rt::xen::bsp::{arg, get, put};
use xen_guest_rt::xen::{
    self, evtchnop, hypercall, install_hypercall_page, nr, upcall, xen_base,
};
use xen_guest_rt::{Start, entry, out8, out32, println, rdtsc};

const MARK_PORT: u16 = 0xe4;
const BARE_PORT: u16 = 0xe5;
const SHINFO: u64 = 0x1f00 << 12;
const VECTOR: u8 = 0xf3;
const DOMID_SELF: u64 = 0x7ff0;
const XENVER_PAGESIZE: u64 = 7;

/// Average TSC ticks of a send-to-upcall round, from just before the
/// send: to the send's return, to the handler's entry, to the round's end.
struct Ticks {
    sent: u64,
    handler: u64,
    done: u64,
}

/// `rounds` send-to-upcall round trips on `port`.
fn upcall_rounds(port: u64, rounds: u64) -> Ticks {
    let (mut sent, mut handler, mut done) = (0u64, 0u64, 0u64);
    for _ in 0..rounds {
        let before = upcall::count();
        put(0, port);
        let t = rdtsc();
        hypercall(nr::EVENT_CHANNEL_OP, [evtchnop::SEND, arg(), 0, 0, 0]);
        let t1 = rdtsc();
        upcall::wait(before + 1);
        let t3 = rdtsc();
        sent = sent.wrapping_add(t1.wrapping_sub(t));
        handler = handler.wrapping_add(upcall::last_tsc().wrapping_sub(t));
        done = done.wrapping_add(t3.wrapping_sub(t));
    }
    let n = rounds.max(1);
    Ticks {
        sent: sent / n,
        handler: handler / n,
        done: done / n,
    }
}

fn main(start: Start) -> u32 {
    let Some((base, _)) = xen_base() else {
        return 1;
    };
    install_hypercall_page(base);
    let n = start.arg;
    let mut bad = 0u64;
    // Upcalls: shared_info, the handler, a self-IPI.
    bad += u64::from(xen::place_shared_info(0, SHINFO >> 12) != 0);
    upcall::install(VECTOR, SHINFO);
    put(0, 0);
    bad += u64::from(hypercall(nr::EVENT_CHANNEL_OP, [evtchnop::BIND_IPI, arg(), 0, 0, 0]) != 0);
    let port = get(0) >> 32;
    // HVM_PARAM_CALLBACK_IRQ = vector (type 2).
    put(0, DOMID_SELF);
    put(1, 2 << 56 | u64::from(VECTOR));
    bad += u64::from(hypercall(nr::HVM_OP, [0, arg(), 0, 0, 0]) != 0);

    out8(MARK_PORT, 0);
    for _ in 0..n {
        out32(BARE_PORT, 0);
    }
    out8(MARK_PORT, 1);
    for _ in 0..n {
        bad += u64::from(hypercall(nr::XEN_VERSION, [XENVER_PAGESIZE, 0, 0, 0, 0]) != 4096);
    }
    out8(MARK_PORT, 2);
    let callback_ticks = upcall_rounds(port, n);
    out8(MARK_PORT, 3);
    // A per-vCPU vector wins over the callback from now on.
    bad += u64::from(xen::set_upcall_vector(0, 0, VECTOR) != 0);
    let vcpu_ticks = upcall_rounds(port, n);
    out8(MARK_PORT, 4);
    for (name, t) in [("callback", callback_ticks), ("vcpu_vector", vcpu_ticks)] {
        println!(
            "v ticks_", name, " sent ", t.sent, " handler ", t.handler, " done ", t.done
        );
    }
    println!("done ", n, " bad ", bad);
    u32::from(bad != 0)
}

entry!(main);
