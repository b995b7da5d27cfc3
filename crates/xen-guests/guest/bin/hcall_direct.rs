// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Executes VMCALL and VMMCALL directly (no hypercall page), from 64-bit
//! code and from a 32-bit compatibility-mode segment, as current Linux
//! guests do since the XSA-466 change.
//!
//! With argument 0 ("echo" mode) the host answers each call with
//! `input ^ arg1` (truncated to 32 bits for a 32-bit call); otherwise each
//! call is `xen_version(XENVER_version)` and must return the argument.
//! The guest prints one `hcall <mode> <insn> <result>` line per call and
//! exits with the number of wrong answers.
//!
//! This needs a KVM that turns VMCALL/VMMCALL into `KVM_EXIT_XEN`
//! (`KVM_XEN_HVM_CONFIG` with `INTERCEPT_HCALL`); on a KVM without Xen
//! support the instruction never exits to user space.

#![no_std]
#![no_main]

use xen_guest_rt::xen::{Via, call32, call64, nr};
use xen_guest_rt::{Hex, Start, entry, println};

fn main(start: Start) -> u32 {
    let echo = start.arg == 0;
    let mut failures = 0;
    for (via, insn) in [(Via::Vmcall, "vmcall"), (Via::Vmmcall, "vmmcall")] {
        let (nr, a) = if echo {
            let nr = if via == Via::Vmmcall { 29 } else { 17 };
            (nr, core::array::from_fn(|i| 0x1111_1111_0000_0000 * (i as u64 + 1) + u64::from(nr)))
        } else {
            (nr::XEN_VERSION, [0; 6])
        };
        let r = call64(via, nr, a) as u64;
        let want = if echo { u64::from(nr) ^ a[0] } else { start.arg };
        failures += u32::from(r != want);
        println!("hcall 64 ", insn, " ", Hex(r), if r == want { " ok" } else { " MISMATCH" });
    }
    for (via, insn) in [(Via::Vmcall, "vmcall"), (Via::Vmmcall, "vmmcall")] {
        let (nr, a) = if echo {
            let nr = if via == Via::Vmmcall { 34 } else { 32 };
            (nr, core::array::from_fn(|i| 0x0101_0000 * (i as u32 + 1) + nr))
        } else {
            (nr::XEN_VERSION, [0; 6])
        };
        let r = call32(via, nr, a) as u32;
        let want = if echo { nr ^ a[0] } else { start.arg as u32 };
        failures += u32::from(r != want);
        println!("hcall 32 ", insn, " ", Hex(r), if r == want { " ok" } else { " MISMATCH" });
    }
    failures
}

entry!(main);
