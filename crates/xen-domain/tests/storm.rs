// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A hostile-guest storm against a complete domain, in-process: at least a
//! million random hypercalls (random numbers, sub-ops, registers, paging,
//! pointers inside and outside RAM, both ABIs, every CPL) from four vCPU
//! threads at once, over guest memory the storm keeps scribbling on.
//!
//! Nothing may panic or hang; every answer is a value or a Xen errno, a
//! call from CPL > 0 is -EPERM and a number beyond Xen's table -ENOSYS;
//! and afterwards the domain's invariants still hold: its whole state
//! restores into a fresh domain (which checks the port table's peers and
//! bindings, the p2m's ranges and special frames, the PIRQ table, the
//! platform device), the restored state is the same, and the reservation
//! the guest sees matches the p2m.
//!
//! `XEN_STORM_CALLS` sets the number of calls (default 1,000,000) and
//! `XEN_STORM_SEED` the seed (printed, for replaying a failure).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use vm_memory::{Bytes, GuestAddress};
use xen_abi::errno::XenErrno;
use xen_abi::hvm::HVM_NR_PARAMS;
use xen_abi::memory::XenMemOp;
use xen_abi::xen::HypercallNr;
use xen_domain::testing::TestDomain;
use xen_hypercall::guest::PagingRegs;
use xen_hypercall::testing::{IDENTITY_64, RAM_SIZE};
use xen_hypercall::{Abi, Hypercall};

const VCPUS: u32 = 4;
/// Each vCPU's own scratch area (arguments, lists, page tables): 64 KiB
/// at 8 MiB + 64 KiB × vCPU.
const SCRATCH: u64 = 8 << 20;
const SCRATCH_SIZE: u64 = 64 << 10;
/// Longest the storm may take before it counts as a hang.
const DEADLINE: Duration = Duration::from_secs(900);

/// The storm's random source: `rand`'s small, fast, seedable generator.
struct Rng(SmallRng);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.random()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0.random_range(0..n)
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.0.random_ratio(percent, 100)
    }
}

/// A pointer argument: mostly this vCPU's scratch area, else anywhere in
/// RAM, just outside it, the last bytes of RAM, or anything at all.
fn pointer(rng: &mut Rng, scratch: u64) -> u64 {
    match rng.below(10) {
        0..=4 => scratch + rng.below(SCRATCH_SIZE - 64),
        5 => rng.below(RAM_SIZE),
        6 => RAM_SIZE - rng.below(64),
        7 => RAM_SIZE + rng.below(1 << 20),
        8 => 0,
        _ => rng.next(),
    }
}

/// A hypercall number: mostly the families a domU has, sometimes any.
fn number(rng: &mut Rng) -> u64 {
    const FAMILIES: [u64; 12] = [12, 13, 15, 17, 18, 20, 21, 24, 29, 32, 33, 34];
    match rng.below(10) {
        0..=7 => FAMILIES[rng.below(FAMILIES.len() as u64) as usize],
        8 => rng.below(64),
        _ => rng.next(),
    }
}

/// Paging: mostly none (linear = physical), sometimes random registers
/// over page tables made of the scratch area's random bytes.
fn paging(rng: &mut Rng, scratch: u64) -> PagingRegs {
    if rng.chance(85) {
        return IDENTITY_64;
    }
    PagingRegs {
        cr0: rng.next() | 1,
        cr3: scratch + rng.below(16) * 4096,
        cr4: rng.next() & 0x10_30,
        efer: rng.next() & 0x500,
    }
}

/// Successful calls per hypercall number (below 64), for the report.
type Successes = Vec<u64>;

/// One vCPU's storm; returns how many calls it made and which succeeded.
fn storm(d: &TestDomain, vcpu: u32, seed: u64, calls: u64, done: &AtomicU64) -> (u64, Successes) {
    let mut ok = vec![0u64; 64];
    let mut rng = Rng(SmallRng::seed_from_u64(seed ^ (u64::from(vcpu) << 56)));
    let scratch = SCRATCH + u64::from(vcpu) * SCRATCH_SIZE;
    let mut buf = vec![0u8; 4096];
    let mut plausible = [0u8; 8];
    for i in 0..calls {
        if i % 64 == 0 {
            // Scribble over a page of the scratch area: random bytes,
            // sparse small bytes, zeros, or plausible words (counts, GFNs
            // of RAM, pointers into the scratch area) so that argument
            // structures often hold values the families accept.
            let kind = rng.below(4);
            for (i, b) in buf.iter_mut().enumerate() {
                *b = match kind {
                    0 => rng.next() as u8,
                    1 => (rng.below(8) as u8) * u8::from(rng.chance(25)),
                    2 => 0,
                    _ if i % 8 == 0 => {
                        let word = match rng.below(3) {
                            0 => rng.below(16),
                            1 => rng.below(RAM_SIZE >> 12),
                            _ => scratch + rng.below(SCRATCH_SIZE),
                        };
                        let bytes = word.to_le_bytes();
                        // The rest of the word follows below.
                        plausible = bytes;
                        bytes[0]
                    }
                    _ => plausible[i % 8],
                };
            }
            let at = scratch + rng.below(SCRATCH_SIZE / 4096) * 4096;
            d.mem.write_slice(&buf, GuestAddress(at)).unwrap();
        }
        let abi = if rng.chance(70) {
            Abi::X86_64
        } else {
            Abi::X86_32
        };
        let cpl = if rng.chance(97) {
            0
        } else {
            rng.below(4) as u8
        };
        let nr = number(&mut rng);
        let mut args = [0u64; 6];
        args[0] = if rng.chance(85) {
            rng.below(40)
        } else {
            rng.next()
        };
        for a in args.iter_mut().skip(1) {
            *a = match rng.below(3) {
                0 => pointer(&mut rng, scratch),
                1 => rng.below(16),
                _ => rng.next(),
            };
        }
        let call = Hypercall {
            abi,
            cpl,
            nr: abi.word(nr),
            args: args.map(|a| abi.word(a)),
        };
        let r = d.domain.hypercall(vcpu, paging(&mut rng, scratch), &call);
        if cpl != 0 {
            assert_eq!(r, Err(XenErrno::EPERM), "{call:?}");
        } else if call.nr >= 64 {
            assert_eq!(r, Err(XenErrno::ENOSYS), "{call:?}");
        }
        match r {
            Err(e) => assert!(XenErrno::from_ret(e.neg()) == Some(e), "{e:?}"),
            Ok(_) => ok[call.nr as usize] += 1,
        }
        if i % 1024 == 0 {
            done.fetch_add(1024, Ordering::Relaxed);
            // Keep the recorder from growing without bound.
            if vcpu == 0 {
                d.rec.take();
                d.injector.take();
            }
            // The VMM's side meanwhile: timers fire, the watchdog is polled.
            d.domain
                .timer_fired(vcpu, xen_domain::TimerKind::Singleshot);
            d.domain.check_watchdog();
        }
    }
    (calls, ok)
}

#[test]
fn test_hostile_guest_storm_keeps_the_domain_sound() {
    let calls: u64 = std::env::var("XEN_STORM_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = std::env::var("XEN_STORM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("storm: {calls} calls from {VCPUS} vCPUs, XEN_STORM_SEED={seed}");
    let d = Arc::new(TestDomain::new(VCPUS));
    let done = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let (tx, rx) = mpsc::channel();
    for vcpu in 0..VCPUS {
        let (d, done, tx) = (d.clone(), done.clone(), tx.clone());
        let per = calls.div_ceil(u64::from(VCPUS));
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                storm(&d, vcpu, seed, per, &done)
            }));
            let _ = tx.send((vcpu, r.map_err(|_| ())));
        });
    }
    drop(tx);
    let (mut made, mut ok) = (0, vec![0u64; 64]);
    for _ in 0..VCPUS {
        let left = DEADLINE.saturating_sub(t0.elapsed());
        let (vcpu, r) = rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "storm hung: {} of {calls} calls done after {:?} (seed {seed})",
                done.load(Ordering::Relaxed),
                t0.elapsed()
            )
        });
        let (n, s) = r.unwrap_or_else(|()| panic!("vCPU {vcpu} panicked (seed {seed})"));
        made += n;
        ok.iter_mut().zip(s).for_each(|(a, b)| *a += b);
    }
    let took = t0.elapsed();
    println!(
        "storm: {made} hypercalls in {took:?} ({:.1} µs each, one thread)",
        took.as_secs_f64() * 1e6 * f64::from(VCPUS) / made as f64
    );
    assert!(made >= calls);
    let succeeded: Vec<String> = ok
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(nr, n)| format!("{}: {n}", xen_hypercall::dispatch::name(nr as u64)))
        .collect();
    println!("storm: successes by hypercall: {}", succeeded.join(", "));

    // The domain's invariants.
    let state = d.domain.state();
    assert_eq!(state.domain.params.len(), HVM_NR_PARAMS as usize);
    assert_eq!(state.domain.vcpus.len(), VCPUS as usize);
    let restored = TestDomain::with(TestDomain::config(VCPUS), Some(&state))
        .unwrap_or_else(|e| panic!("the state after the storm does not restore: {e:?}"));
    assert_eq!(restored.domain.state(), state);
    let pages: u64 = state.memory.ram.iter().map(|(s, e)| e - s).sum();
    let reservation = common_reservation(&d);
    assert_eq!(reservation, pages + state.memory.unmapped_pages);
    println!(
        "storm: afterwards {} ports, {} PIRQs, {} RAM pages + {} unmapped, FIFO {}",
        state.evtchn.ports.len(),
        state.physdev.pirqs.len(),
        pages,
        state.memory.unmapped_pages,
        state.evtchn.fifo.is_some()
    );
}

/// `XENMEM_current_reservation` as the guest asks it.
fn common_reservation(d: &TestDomain) -> u64 {
    let at = 0x1000;
    d.write(at, 0x7ff0u16);
    d.call(
        0,
        Abi::X86_64,
        HypercallNr::MemoryOp,
        &[u64::from(XenMemOp::CurrentReservation.raw()), at],
    )
    .expect("current_reservation")
}
