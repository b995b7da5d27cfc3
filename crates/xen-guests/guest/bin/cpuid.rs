// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Reports every hypervisor CPUID leaf the guest sees.
//!
//! Prints one line per leaf of `0x40000000..0x40000200` and sub-leaf 0..4,
//! `cpuid <leaf> <subleaf> <eax> <ebx> <ecx> <edx>` in hex, then the Xen
//! base found the way Linux's `xen_cpuid_base()` looks for it
//! (`xen-base <hex>`, 0 if none).

#![no_std]
#![no_main]

use xen_guest_rt::{Hex, Start, cpuid, entry, println};

const SUBLEAVES: u32 = 4;
const XEN_SIGNATURE: (u32, u32, u32) = (0x566e_6558, 0x6558_4d4d, 0x4d4d_566e);

fn main(_start: Start) -> u32 {
    for leaf in 0x4000_0000u32..0x4000_0200 {
        for sub in 0..SUBLEAVES {
            let r = cpuid(leaf, sub);
            println!(
                "cpuid ", Hex(leaf), " ", Hex(sub), " ", Hex(r.eax), " ", Hex(r.ebx), " ",
                Hex(r.ecx), " ", Hex(r.edx)
            );
        }
    }
    // Linux: the first 0x100-aligned base with the signature and at least
    // two leaves after it.
    let mut base = 0;
    for b in (0x4000_0000u32..0x4001_0000).step_by(0x100) {
        let r = cpuid(b, 0);
        let leaves = r.eax.wrapping_sub(b);
        if (r.ebx, r.ecx, r.edx) == XEN_SIGNATURE && (2..0x100).contains(&leaves) {
            base = b;
            break;
        }
    }
    println!("xen-base ", Hex(base));
    0
}

entry!(main);
