// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Measures exits: `arg` bare port-I/O exits (a 4-byte `out` to port
//! 0xe5, which nobody handles), then `arg` `xen_version` hypercalls
//! through the hypercall page. A 1-byte `out` to port 0xe4 marks the
//! phase boundaries (0, 1, 2) so that the host can time each phase.

#![no_std]
#![no_main]

use xen_guest_rt::xen::{hypercall, install_hypercall_page, nr, xen_base};
use xen_guest_rt::{Start, entry, out8, out32, println};

const MARK_PORT: u16 = 0xe4;
const BARE_PORT: u16 = 0xe5;

fn main(start: Start) -> u32 {
    let Some((base, _)) = xen_base() else {
        return 1;
    };
    install_hypercall_page(base);
    let n = start.arg;
    out8(MARK_PORT, 0);
    for _ in 0..n {
        out32(BARE_PORT, 0);
    }
    out8(MARK_PORT, 1);
    let mut bad = 0u64;
    for _ in 0..n {
        bad += u64::from(hypercall(nr::XEN_VERSION, [0; 5]) <= 0);
    }
    out8(MARK_PORT, 2);
    println!("done ", n, " bad ", bad);
    u32::from(bad != 0)
}

entry!(main);
