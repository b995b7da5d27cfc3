// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Seed corpora and crash reproducers, replayed on stable.

use super::abi_decode::ABI_KINDS;
use super::*;
use replay::{Rng, corpus_dir};
use std::path::Path;

/// A target: its name, its function, and its seed generator.
type Target = (&'static str, fn(&[u8]), fn(u64) -> Vec<u8>);

/// Every target, with how to make its seeds.
fn targets() -> Vec<Target> {
    vec![
        ("cpuid_apply", cpuid_apply, cpuid_seed),
        ("abi_decode", abi_decode, abi_seed),
        ("hypercall_dispatch", hypercall_dispatch, dispatch_seed),
        ("platform_pio", platform_pio, platform_seed),
        ("evtchn_ops", evtchn_ops, evtchn_seed),
        ("gnttab_ops", gnttab_ops, gnttab_seed),
        ("xenstore_ring", xenstore_ring, xenstore_seed),
    ]
}

/// A `cpuid_apply` seed: random bytes (the `Parts` version encoding makes
/// most of them valid configurations).
fn cpuid_seed(n: u64) -> Vec<u8> {
    Rng::new(n + 1).bytes(512)
}

/// An `abi_decode` seed: kind `n`, random bytes (kinds beyond the seeds
/// are reached by the fuzzer and by the unit test below).
fn abi_seed(n: u64) -> Vec<u8> {
    let mut v = vec![n as u8];
    v.extend(Rng::new(n + 100).bytes(4096));
    v
}

/// A `hypercall_dispatch` seed: random bytes.
fn dispatch_seed(n: u64) -> Vec<u8> {
    Rng::new(n + 1000).bytes(2048)
}

/// An `evtchn_ops` seed: random bytes.
fn evtchn_seed(n: u64) -> Vec<u8> {
    Rng::new(n + 2000).bytes(2048)
}

/// A `xenstore_ring` seed: random bytes.
fn xenstore_seed(n: u64) -> Vec<u8> {
    Rng::new(n + 4000).bytes(2048)
}

/// A `gnttab_ops` seed: random bytes.
fn gnttab_seed(n: u64) -> Vec<u8> {
    Rng::new(n + 5000).bytes(2048)
}

/// A `platform_pio` seed: random bytes.
fn platform_seed(n: u64) -> Vec<u8> {
    Rng::new(n + 3000).bytes(1024)
}

const SEEDS: u64 = 8;

#[test]
fn test_seed_corpora_exist_and_run_clean() {
    for (name, run, seed) in targets() {
        let dir = corpus_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        for n in 0..SEEDS {
            let path = dir.join(format!("seed-{n}"));
            if !path.exists() {
                std::fs::write(&path, seed(n)).unwrap();
            }
        }
        let mut count = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            run(&std::fs::read(e.unwrap().path()).unwrap());
            count += 1;
        }
        assert!(count >= SEEDS, "{name}: only {count} seeds");
    }
}

#[test]
fn test_crash_reproducers_run_clean() {
    for (name, run, _) in targets() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../artifacts")
            .join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            run(&std::fs::read(e.unwrap().path()).unwrap());
        }
    }
}

#[test]
fn test_abi_decode_every_kind_runs_clean() {
    for kind in 0..=ABI_KINDS as u64 {
        abi_decode(&abi_seed(kind));
    }
}

#[test]
fn test_cpuid_apply_random_inputs_run_clean() {
    let mut rng = Rng::new(42);
    for n in 0..2000 {
        cpuid_apply(&cpuid_seed(n ^ rng.next_u64()));
    }
}

#[test]
fn test_gnttab_ops_random_inputs_run_clean() {
    let mut rng = Rng::new(13);
    for n in 0..1000 {
        gnttab_ops(&gnttab_seed(n ^ rng.next_u64()));
    }
}

#[test]
fn test_evtchn_ops_random_inputs_run_clean() {
    let mut rng = Rng::new(7);
    for n in 0..2000 {
        evtchn_ops(&evtchn_seed(n ^ rng.next_u64()));
    }
}

#[test]
fn test_xenstore_ring_random_inputs_run_clean() {
    let mut rng = Rng::new(11);
    for n in 0..500 {
        xenstore_ring(&xenstore_seed(n ^ rng.next_u64()));
    }
}
