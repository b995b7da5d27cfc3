// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Installs the hypercall page through the MSR and calls every hypercall
//! family through it, from 64-bit code and from a 32-bit compatibility
//! segment. Prints `r <name> <result>` per call (results in decimal,
//! negative for errors) plus a few `v <name> <value>` lines for data the
//! calls returned in memory; the host test checks them and the effects.

#![no_std]
#![no_main]

use xen_guest_rt::xen::{hypercall, hypercall32, install_hypercall_page, nr, xen_base};
use xen_guest_rt::{Hex, Start, entry, println, rdtsc};

const DOMID_SELF: u64 = 0x7ff0;
/// Where the guest places shared_info (a RAM page of the 32 MiB guest).
const SHINFO_GFN: u64 = 0x1f00;
/// A RAM page the guest gives back with decrease_reservation.
const BALLOON_GFN: u64 = 0x1e00;

#[repr(C, align(4096))]
struct Scratch([u8; 4096]);
static mut SCRATCH: Scratch = Scratch([0; 4096]);
/// The per-vCPU vcpu_info the guest registers (64-byte aligned).
#[repr(C, align(64))]
struct VcpuInfo([u8; 64]);
static mut VCPU_INFO: VcpuInfo = VcpuInfo([0; 64]);

fn scratch() -> &'static mut [u8; 4096] {
    // SAFETY: single-threaded guest; no other reference is alive.
    unsafe { &mut (*(&raw mut SCRATCH)).0 }
}

fn addr<T>(p: *const T) -> u64 {
    p as u64
}

fn put(buf: &mut [u8], off: usize, v: &[u8]) {
    buf[off..off + v.len()].copy_from_slice(v);
}

fn cstr(b: &[u8]) -> &str {
    let n = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    core::str::from_utf8(&b[..n]).unwrap_or("?")
}

fn r(name: &str, v: i64) {
    println!("r ", name, " ", v);
}

/// Reads the pvclock in the registered vcpu_info like Linux's xen
/// clocksource and checks it against `HVMOP_get_time` read before and after.
fn pvclock(sp: u64) {
    let s = scratch();
    s[..16].fill(0);
    hypercall(nr::HVM_OP, [10, sp, 0, 0, 0]);
    let before = u64::from_le_bytes(s[..8].try_into().unwrap());
    let vi = &raw const VCPU_INFO;
    let (mut now, mut mul, mut shift);
    loop {
        // SAFETY: the VMM writes the time fields; volatile reads follow
        // the version protocol (odd while it writes).
        let t = |o: usize| unsafe { core::ptr::read_volatile((vi as *const u8).add(32 + o)) };
        let ver = u32::from_le_bytes([t(0), t(1), t(2), t(3)]);
        let tsc_ts = u64::from_le_bytes(core::array::from_fn(|i| t(8 + i)));
        let sys = u64::from_le_bytes(core::array::from_fn(|i| t(16 + i)));
        mul = u32::from_le_bytes([t(24), t(25), t(26), t(27)]);
        shift = t(28) as i8;
        let delta = rdtsc().wrapping_sub(tsc_ts);
        let d = if shift >= 0 { delta << shift } else { delta >> -shift };
        now = sys + ((u128::from(d) * u128::from(mul)) >> 32) as u64;
        let ver2 = u32::from_le_bytes([t(0), t(1), t(2), t(3)]);
        if ver & 1 == 0 && ver == ver2 {
            break;
        }
    }
    s[..16].fill(0);
    hypercall(nr::HVM_OP, [10, sp, 0, 0, 0]);
    let after = u64::from_le_bytes(s[..8].try_into().unwrap());
    println!("v pvclock_mul ", Hex(mul), " shift ", shift);
    println!("v pvclock_in_order ", before <= now && now <= after);
}

fn main(_start: Start) -> u32 {
    let Some((base, max)) = xen_base() else {
        println!("no Xen in CPUID");
        return 1;
    };
    let msr = install_hypercall_page(base);
    println!("v base ", Hex(base), " max ", Hex(max), " msr ", Hex(msr));
    let s = scratch();
    let sp = addr(s.as_ptr());

    // xen_version.
    r("version", hypercall(nr::XEN_VERSION, [0, 0, 0, 0, 0]));
    s[..16].fill(0xaa);
    r("extraversion", hypercall(nr::XEN_VERSION, [1, sp, 0, 0, 0]));
    println!("v extraversion ", cstr(&s[..16]), " tail ", s[15]);
    put(s, 0, &[0; 8]);
    r("get_features", hypercall(nr::XEN_VERSION, [6, sp, 0, 0, 0]));
    println!("v features ", Hex(u32::from_le_bytes([s[4], s[5], s[6], s[7]])));
    r("pagesize", hypercall(nr::XEN_VERSION, [7, 0, 0, 0, 0]));
    r("version_bad_ptr", hypercall(nr::XEN_VERSION, [1, 0xdead_0000_0000, 0, 0, 0]));

    // memory_op: place shared_info, balloon a page out twice.
    s[..24].fill(0);
    put(s, 0, &(DOMID_SELF as u16).to_le_bytes());
    put(s, 8, &0u64.to_le_bytes()); // space 0 (shared_info) at 4, idx 0
    put(s, 16, &SHINFO_GFN.to_le_bytes());
    r("add_to_physmap", hypercall(nr::MEMORY_OP, [7, sp, 0, 0, 0]));
    let list = sp + 512;
    put(s, 512, &BALLOON_GFN.to_le_bytes());
    s[..32].fill(0);
    put(s, 0, &list.to_le_bytes()); // extent_start
    put(s, 8, &1u64.to_le_bytes()); // nr_extents
    put(s, 24, &(DOMID_SELF as u16).to_le_bytes());
    r("decrease1", hypercall(nr::MEMORY_OP, [1, sp, 0, 0, 0]));
    r("decrease2", hypercall(nr::MEMORY_OP, [1, sp, 0, 0, 0]));

    // hvm_op: get_time, the callback parameter.
    s[..16].fill(0);
    r("get_time", hypercall(nr::HVM_OP, [10, sp, 0, 0, 0]));
    let now = u64::from_le_bytes(s[..8].try_into().unwrap());
    println!("v get_time_nonzero ", now > 0);
    s[..16].fill(0);
    put(s, 0, &(DOMID_SELF as u16).to_le_bytes());
    put(s, 4, &0u32.to_le_bytes()); // HVM_PARAM_CALLBACK_IRQ
    put(s, 8, &((2u64 << 56) | 0xf3).to_le_bytes());
    r("set_callback", hypercall(nr::HVM_OP, [0, sp, 0, 0, 0]));

    // vcpu_op: register vcpu_info, is_up.
    let vi = addr(&raw const VCPU_INFO);
    s[..16].fill(0);
    put(s, 0, &(vi >> 12).to_le_bytes());
    put(s, 8, &((vi & 0xfff) as u32).to_le_bytes());
    r("register_vcpu_info", hypercall(nr::VCPU_OP, [10, 0, sp, 0, 0]));
    r("register_vcpu_info_again", hypercall(nr::VCPU_OP, [10, 0, sp, 0, 0]));
    // SAFETY: the VMM wrote it during the call; nothing else aliases it.
    let pending = unsafe { (*(&raw const VCPU_INFO)).0[0] };
    println!("v vcpu_info_pending ", pending);
    pvclock(sp);
    r("is_up", hypercall(nr::VCPU_OP, [3, 0, 0, 0, 0]));
    r("is_up_bad_vcpu", hypercall(nr::VCPU_OP, [3, 99, 0, 0, 0]));

    // vm_assist: only runstate_update_flag (5) exists for HVM.
    r("vm_assist_runstate_flag", hypercall(nr::VM_ASSIST, [0, 5, 0, 0, 0]));
    r("vm_assist_4gb_segments", hypercall(nr::VM_ASSIST, [0, 0, 0, 0, 0]));
    // set_timer_op: an absolute deadline 1 s from now.
    r("set_timer_op", hypercall(nr::SET_TIMER_OP, [now + 1_000_000_000, 0, 0, 0, 0]));

    // console_io, multicall, unknown and privileged calls.
    let msg = b"hello from 64-bit\n";
    put(s, 0, msg);
    r("console_write", hypercall(nr::CONSOLE_IO, [0, msg.len() as u64, sp, 0, 0]));
    // Two entries of 64 bytes: xen_version(0) and xen_version(pagesize).
    s[..128].fill(0);
    put(s, 0, &u64::from(nr::XEN_VERSION).to_le_bytes());
    put(s, 64, &u64::from(nr::XEN_VERSION).to_le_bytes());
    put(s, 80, &7u64.to_le_bytes());
    r("multicall", hypercall(nr::MULTICALL, [sp, 2, 0, 0, 0]));
    r("multicall_0", i64::from_le_bytes(s[8..16].try_into().unwrap()));
    r("multicall_1", i64::from_le_bytes(s[72..80].try_into().unwrap()));
    r("unknown", hypercall(60, [0; 5]));
    r("sysctl", hypercall(nr::SYSCTL, [sp, 0, 0, 0, 0]));

    // The same families from 32-bit code: 32-bit registers and pointers,
    // compat layouts.
    let sp32 = sp as u32;
    r("version32", hypercall32(nr::XEN_VERSION, [0, 0, 0, 0, 0]));
    s[..16].fill(0xaa);
    r("extraversion32", hypercall32(nr::XEN_VERSION, [1, sp32, 0, 0, 0]));
    println!("v extraversion32 ", cstr(&s[..16]));
    put(s, 0, &[0; 8]);
    r("platform_parameters32", hypercall32(nr::XEN_VERSION, [5, sp32, 0, 0, 0]));
    let msg = b"hello from 32-bit\n";
    put(s, 0, msg);
    r("console_write32", hypercall32(nr::CONSOLE_IO, [0, msg.len() as u32, sp32, 0, 0]));
    s[..2].copy_from_slice(&(DOMID_SELF as u16).to_le_bytes());
    r("current_reservation32", hypercall32(nr::MEMORY_OP, [3, sp32, 0, 0, 0]));
    s[..16].fill(0);
    put(s, 0, &(DOMID_SELF as u16).to_le_bytes());
    r("get_callback32", hypercall32(nr::HVM_OP, [1, sp32, 0, 0, 0]));
    println!("v callback32 ", Hex(u64::from_le_bytes(s[8..16].try_into().unwrap())));
    r("is_up32", hypercall32(nr::VCPU_OP, [3, 0, 0, 0, 0]));
    put(s, 0, &7u32.to_le_bytes());
    r("shutdown_code32", hypercall32(nr::SCHED_OP, [5, sp32, 0, 0, 0]));
    r("unknown32", hypercall32(61, [0; 5]));
    r("vm_assist32", hypercall32(nr::VM_ASSIST, [1, 5, 0, 0, 0]));
    // A compat multicall: 32-byte entries {op, result, args[6]} of u32.
    s[..64].fill(0);
    put(s, 0, &nr::XEN_VERSION.to_le_bytes());
    put(s, 32, &nr::XEN_VERSION.to_le_bytes());
    put(s, 40, &7u32.to_le_bytes());
    r("multicall32", hypercall32(nr::MULTICALL, [sp32, 2, 0, 0, 0]));
    r("multicall32_0", i64::from(i32::from_le_bytes(s[4..8].try_into().unwrap())));
    r("multicall32_1", i64::from(i32::from_le_bytes(s[36..40].try_into().unwrap())));
    // set_timer_op(0) from 32-bit code cancels: the u64 spans EBX:ECX.
    r("set_timer_op32_cancel", hypercall32(nr::SET_TIMER_OP, [0, 0, 0, 0, 0]));

    // Power off: the VMM records the request; this guest then exits.
    put(s, 0, &0u32.to_le_bytes());
    r("shutdown", hypercall(nr::SCHED_OP, [2, sp, 0, 0, 0]));
    0
}

entry!(main);
