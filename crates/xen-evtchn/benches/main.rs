// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! In-process cost of raising an event (2-level), against a bare atomic
//! `fetch_or` on the same guest-memory word.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileMemory};
use xen_evtchn::testing::{SHINFO, layout};
use xen_evtchn::{Config, EventChannels, NoUpcall};

/// A bare atomic operation on a guest word, reached the same way the crate
/// reaches it (slice lookup, atomic reference).
fn atomic<M: GuestMemoryBackend, R>(mem: &M, gpa: u64, f: impl FnOnce(&AtomicU64) -> R) -> R {
    let slice = mem.get_slice(GuestAddress(gpa), 8).unwrap();
    f(slice.get_atomic_ref::<AtomicU64>(0).unwrap())
}

fn send(c: &mut Criterion) {
    let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let ch = EventChannels::new(Config::new(1), layout(true, 1), Arc::new(NoUpcall)).unwrap();
    let port = ch.bind_ipi(&mem, 0).unwrap();
    let pending = SHINFO + 2048;
    let sel = SHINFO + 8;
    let consume = || {
        atomic(&mem, pending, |a| a.store(0, Ordering::SeqCst));
        atomic(&mem, sel, |a| a.store(0, Ordering::SeqCst));
        mem.write_obj(0u8, GuestAddress(SHINFO)).unwrap();
    };

    c.bench_function("evtchn send (full 2-level delivery)", |b| {
        b.iter(|| {
            // The guest consumes the event, so every send delivers again.
            consume();
            ch.send(&mem, black_box(port)).unwrap();
        })
    });
    c.bench_function("evtchn send (already pending)", |b| {
        b.iter(|| ch.send(&mem, black_box(port)).unwrap())
    });
    c.bench_function("bare atomic fetch_or on the pending word", |b| {
        b.iter(|| {
            atomic(&mem, pending, |a| {
                a.fetch_or(black_box(1 << port), Ordering::SeqCst)
            })
        })
    });
    c.bench_function("bare consume (3 stores, as in the first bench)", |b| {
        b.iter(consume)
    });
}

criterion_group!(benches, send);
criterion_main!(benches);
