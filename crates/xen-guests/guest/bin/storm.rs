// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A hostile-guest storm from a real guest: `arg` random hypercalls (a
//! seed in the upper 32 bits of `arg`, the count in the lower), through
//! the hypercall page from 64-bit code and from a 32-bit compatibility
//! segment: random hypercall numbers (mostly the families a domU has),
//! random sub-ops, and arguments that are pointers into a scratch area,
//! pointers outside RAM, small numbers or random words.
//!
//! The guest must survive its own calls to report, so what the VMM may
//! write stays harmless: pointer arguments never point at the guest's
//! code, stack or page tables (only the scratch area, page 0, which the
//! guest does not use, or beyond RAM), and the scratch area holds words
//! with bit 31 set, so a frame number or pointer read from an argument
//! structure is always beyond RAM. The structures of calls that write to
//! frames they name (grant copies, grant-table frames placed, multicalls)
//! are re-written with such words right before the call, since what
//! earlier calls wrote back there could name the guest's own pages.
//! Interrupts stay off. Prints the count of successes, of errors with a
//! Xen errno, and of anything else.

#![no_std]
#![no_main]

use xen_guest_rt::xen::{hypercall, hypercall32, install_hypercall_page, xen_base};
use xen_guest_rt::{Start, entry, println};

/// The scratch area: 1 MiB at 16 MiB.
const SCRATCH: u64 = 16 << 20;
const SCRATCH_LEN: u64 = 1 << 20;
/// Guest RAM (the test gives the guest 32 MiB).
const RAM: u64 = 32 << 20;
/// The families a domU has.
const FAMILIES: [u64; 12] = [12, 13, 15, 17, 18, 20, 21, 24, 29, 32, 33, 34];
/// `__HYPERVISOR_iret`: only PV guests may call it.
const IRET: u64 = 23;
/// Xen's errno values go up to 133 (`ENOTRECOVERABLE` is the largest a
/// guest sees here); anything below -200 would be garbage.
const WORST_ERRNO: i64 = -200;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Fills `words` words of the scratch area, from a random place, with
/// words whose bit 31 is set.
fn scribble(rng: &mut Rng, words: u64) {
    let at = SCRATCH + rng.below(SCRATCH_LEN / 4 - words + 1) * 4;
    for w in 0..words {
        let v = (rng.next() as u32) | 0x8000_0000;
        // SAFETY: the scratch area is guest RAM nothing else uses.
        unsafe { core::ptr::write_volatile((at + 4 * w) as *mut u32, v) };
    }
}

/// Calls that name guest frames in their structures and write to them
/// (a grant copy to a frame, a grant-table frame placed at one, a
/// multicall that may make either) read those structures from words that
/// only this guest wrote, all with bit 31 set: what earlier calls wrote
/// back (small handles, zeros, ports) could otherwise name one of the
/// guest's own pages, and Xen would write there too. Their arrays are
/// kept within the fresh words.
fn fresh_frames(rng: &mut Rng, nr: u32, a: &mut [u64; 5]) {
    const WORDS: u64 = 48;
    let (ptr, count) = match (nr, a[0]) {
        (20, 5) => (1, Some(2)),   // grant_table_op(copy, uop, count)
        (12, 7 | 23) => (1, None), // memory_op(add_to_physmap(_batch), arg)
        (13, _) => (0, Some(1)),   // multicall(list, count)
        _ => return,
    };
    if let Some(c) = count {
        a[c] %= 4;
    }
    let p = a[ptr];
    let at = if p < 4096 - WORDS * 4 || (SCRATCH..SCRATCH + SCRATCH_LEN - WORDS * 4).contains(&p) {
        p
    } else {
        return;
    };
    for w in 0..WORDS {
        let v = (rng.next() as u32) | 0x8000_0000;
        // SAFETY: page 0 and the scratch area are guest RAM that nothing
        // else uses.
        unsafe { core::ptr::write_unaligned((at + 4 * w) as *mut u32, v) };
    }
}

/// An argument register's value.
fn argument(rng: &mut Rng) -> u64 {
    match rng.below(8) {
        0..=2 => SCRATCH + rng.below(SCRATCH_LEN - 256),
        3 => rng.below(16),
        4 => RAM + rng.below(1 << 30),
        5 => 0x8000_0000 | rng.next(),
        6 => rng.below(64),
        _ => rng.next() | 0x8000_0000_8000_0000,
    }
}

fn main(start: Start) -> u32 {
    let Some((base, _)) = xen_base() else {
        return 1;
    };
    install_hypercall_page(base);
    let n = start.arg & 0xffff_ffff;
    let mut rng = Rng((start.arg >> 32) | 1);
    // All of it once (the guest's RAM starts zeroed), then a little at a
    // time: on the development machines every guest instruction here is
    // emulated.
    scribble(&mut rng, SCRATCH_LEN / 4);
    let (mut ok, mut errno, mut weird) = (0u64, 0u64, 0u64);
    for i in 0..n {
        if i % 32 == 0 {
            scribble(&mut rng, 64);
        }
        let nr = match rng.below(10) {
            0..=8 => FAMILIES[rng.below(FAMILIES.len() as u64) as usize],
            // Any slot but `iret`'s, whose stub is `ud2` (on Xen too).
            _ => match rng.below(64) {
                IRET => 0,
                other => other,
            },
        } as u32;
        let cmd = if rng.below(8) < 7 {
            rng.below(40)
        } else {
            rng.next()
        };
        let mut a = [cmd, argument(&mut rng), argument(&mut rng), argument(&mut rng), argument(&mut rng)];
        fresh_frames(&mut rng, nr, &mut a);
        let r = if rng.below(4) == 0 {
            hypercall32(nr, a.map(|v| v as u32))
        } else {
            hypercall(nr, a)
        };
        match r {
            0.. => ok += 1,
            WORST_ERRNO..0 => errno += 1,
            _ => weird += 1,
        }
    }
    println!("v storm ", n, " ok ", ok, " errno ", errno, " weird ", weird);
    u32::from(weird != 0)
}

entry!(main);
