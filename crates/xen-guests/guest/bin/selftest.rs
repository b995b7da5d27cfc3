// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Exercises the harness itself; the argument picks the behaviour.
//!
//! | arg | behaviour |
//! |---|---|
//! | 0 | prints values of every printable kind, exits with 0x600d |
//! | 1 | panics (bounds check) |
//! | 2 | reads an unmapped address (page fault) |
//! | 3 | spins forever (the harness must time out) |
//! | 4 | prints 64 KiB in lines, exits 0 |

#![no_std]
#![no_main]

use xen_guest_rt::{Hex, Start, entry, println};

fn main(start: Start) -> u32 {
    match start.arg {
        0 => {
            println!("vcpu ", start.vcpu, " arg ", start.arg);
            println!("u8 ", 255u8, " u64 ", u64::MAX, " i32 ", i32::MIN, " i64 ", -1i64);
            println!("hex ", Hex(0xdead_beef_u32), " ", Hex(0u8), " ", Hex(u64::MAX));
            println!("str ", "x", " char ", 'é', " bool ", true, " ", false);
            0x600d
        }
        1 => {
            let a = [1u8, 2, 3];
            let i = core::hint::black_box(start.arg as usize + 9);
            println!("unreachable ", a[i]);
            0
        }
        2 => {
            // 8 GiB: beyond the 4 GiB identity map.
            let p = core::hint::black_box(8u64 << 30) as *const u64;
            // SAFETY: deliberately faulting read.
            let v = unsafe { p.read_volatile() };
            println!("unreachable ", v);
            0
        }
        3 => loop {
            core::hint::spin_loop();
        },
        4 => {
            for i in 0..1024u32 {
                println!("line ", Hex(i), " 0123456789abcdef0123456789abcdef0123456789");
            }
            0
        }
        _ => 1,
    }
}

entry!(main);
