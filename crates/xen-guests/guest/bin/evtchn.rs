// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Event channels seen from the guest, without upcalls: binds ports,
//! sends, masks and unmasks, and reads the 2-level bitmaps in shared_info
//! and the vCPU's selector and upcall flag; then switches to FIFO and reads
//! the event word and control block. Prints `v <name> <value>` lines.

#![no_std]
#![no_main]

use core::ptr::{read_volatile, write_volatile};

use xen_guest_rt::xen::{evtchnop, hypercall, install_hypercall_page, nr, xen_base};
use xen_guest_rt::{Hex, Start, entry, println};

const DOMID_SELF: u16 = 0x7ff0;
const SHINFO_GFN: u64 = 0x1f00;
const SHINFO: u64 = SHINFO_GFN << 12;

#[repr(C, align(4096))]
struct Page([u8; 4096]);
static mut ARG: Page = Page([0; 4096]);
static mut CONTROL: Page = Page([0; 4096]);
static mut ARRAY: Page = Page([0; 4096]);

fn arg() -> u64 {
    (&raw const ARG) as u64
}

fn put32(off: u64, v: u32) {
    // SAFETY: inside the ARG page.
    unsafe { write_volatile((arg() + off) as *mut u32, v) }
}

fn get32(addr: u64) -> u32 {
    // SAFETY: callers pass addresses in guest RAM (identity-mapped).
    unsafe { read_volatile(addr as *const u32) }
}

fn get64(addr: u64) -> u64 {
    // SAFETY: as above.
    unsafe { read_volatile(addr as *const u64) }
}

fn evtchn(cmd: u64) -> i64 {
    hypercall(nr::EVENT_CHANNEL_OP, [cmd, arg(), 0, 0, 0])
}

fn pending(port: u32) -> bool {
    get64(SHINFO + 2048 + u64::from(port / 64) * 8) & (1 << (port % 64)) != 0
}

fn set_mask(port: u32, on: bool) {
    let a = (SHINFO + 2560 + u64::from(port / 64) * 8) as *mut u64;
    // SAFETY: shared_info is guest RAM; single vCPU, no concurrent writer
    // of this word but the VMM's atomics (which only touch pending bits).
    unsafe {
        let w = read_volatile(a);
        let bit = 1u64 << (port % 64);
        write_volatile(a, if on { w | bit } else { w & !bit });
    }
}

/// vCPU 0's vcpu_info in shared_info: (upcall_pending, pending_sel).
fn vcpu0() -> (u8, u64) {
    // SAFETY: shared_info is guest RAM.
    let up = unsafe { read_volatile(SHINFO as *const u8) };
    (up, get64(SHINFO + 8))
}

fn ack_vcpu0() {
    // SAFETY: as above; the guest consumes its own flags.
    unsafe {
        write_volatile(SHINFO as *mut u8, 0);
        write_volatile((SHINFO + 8) as *mut u64, 0);
    }
}

fn bind_ipi() -> u32 {
    put32(0, 0);
    let r = evtchn(evtchnop::BIND_IPI);
    if r != 0 {
        println!("v bind_ipi_error ", r);
        return 0;
    }
    get32(arg() + 4)
}

fn send(port: u32) -> i64 {
    put32(0, port);
    evtchn(evtchnop::SEND)
}

fn main(_start: Start) -> u32 {
    let Some((base, _)) = xen_base() else {
        return 1;
    };
    install_hypercall_page(base);
    // Place shared_info.
    let a = arg() as *mut u64;
    // SAFETY: ARG is ours.
    unsafe {
        write_volatile(a, u64::from(DOMID_SELF));
        write_volatile(a.add(1), 0);
        write_volatile(a.add(2), SHINFO_GFN);
    }
    println!("v add_shinfo ", hypercall(nr::MEMORY_OP, [7, arg(), 0, 0, 0]));

    // IPI to ourselves: pending bit, selector, upcall flag.
    let p1 = bind_ipi();
    println!("v ipi_port ", p1, " pending_before ", pending(p1));
    println!("v send ", send(p1));
    let (up, sel) = vcpu0();
    println!("v ipi_pending ", pending(p1), " upcall ", up, " sel ", Hex(sel));
    ack_vcpu0();

    // A masked port stays pending without an upcall; unmask re-delivers.
    let p2 = bind_ipi();
    set_mask(p2, true);
    send(p2);
    let (up, _) = vcpu0();
    println!("v masked_pending ", pending(p2), " upcall ", up);
    put32(0, p2);
    println!("v unmask ", evtchn(evtchnop::UNMASK));
    let (up, sel) = vcpu0();
    println!("v unmasked_upcall ", up, " sel ", Hex(sel));
    ack_vcpu0();

    // Loopback: alloc_unbound(self) and bind_interdomain to it.
    put32(0, u32::from(DOMID_SELF) | u32::from(DOMID_SELF) << 16);
    put32(4, 0);
    println!("v alloc_unbound ", evtchn(evtchnop::ALLOC_UNBOUND));
    let pa = get32(arg() + 4);
    put32(0, u32::from(DOMID_SELF));
    put32(4, pa);
    put32(8, 0);
    println!("v bind_interdomain ", evtchn(evtchnop::BIND_INTERDOMAIN));
    let pb = get32(arg() + 8);
    println!("v loop_ports ", pa, " ", pb, " local_pending ", pending(pb));
    send(pb);
    println!("v loop_remote_pending ", pending(pa));
    put32(0, u32::from(DOMID_SELF));
    put32(4, pa);
    println!("v status ", evtchn(evtchnop::STATUS), " state ", get32(arg() + 8));

    // FIFO: control block for vCPU 0, one event-array page.
    let ctrl = (&raw const CONTROL) as u64;
    let array = (&raw const ARRAY) as u64;
    // SAFETY: ARG is ours; the 24-byte init_control argument.
    unsafe {
        write_volatile(a, ctrl >> 12);
        write_volatile(a.add(1), 0);
        write_volatile(a.add(2), 0);
    }
    println!("v init_control ", evtchn(evtchnop::INIT_CONTROL), " link_bits ", get32(arg() + 16) & 0xff);
    // Every event word starts MASKED, as Linux initialises new pages.
    for w in 0..1024u64 {
        // SAFETY: inside ARRAY.
        unsafe { write_volatile((array + w * 4) as *mut u32, 1 << 30) };
    }
    // SAFETY: ARG is ours.
    unsafe { write_volatile(a, array >> 12) };
    println!("v expand_array ", evtchn(evtchnop::EXPAND_ARRAY));
    let p3 = bind_ipi();
    // Unmask it the guest way (not pending yet), then send.
    // SAFETY: inside ARRAY.
    unsafe { write_volatile((array + u64::from(p3) * 4) as *mut u32, 0) };
    send(p3);
    let word = get32(array + u64::from(p3) * 4);
    let ready = get32(ctrl);
    let head7 = get32(ctrl + 8 + 7 * 4);
    println!("v fifo_port ", p3, " word ", Hex(word), " ready ", Hex(ready), " head7 ", head7);
    0
}

entry!(main);
