// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Runs a fuzz target without libFuzzer: over its corpus, then over
//! pseudo-random inputs for a bounded time. This is how CI exercises the
//! targets on stable Rust.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A small deterministic generator (xorshift64*), enough to vary inputs.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced by a fixed constant).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Fills a buffer of random length up to `max`.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = (self.next_u64() as usize) % (max + 1);
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// The corpus directory of a target (`fuzz/corpus/<target>`).
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(target)
}

fn files(path: &Path) -> Vec<PathBuf> {
    if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.sort();
        v
    } else {
        vec![path.to_owned()]
    }
}

/// Runs one input; on a panic saves it under `fuzz/artifacts/<target>/` so
/// it can be replayed, and returns false.
fn survives(target: &str, run: fn(&[u8]), data: &[u8]) -> bool {
    if std::panic::catch_unwind(|| run(data)).is_ok() {
        return true;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../artifacts")
        .join(target);
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    let file = dir.join(format!("crash-{hash:016x}"));
    let saved = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&file, data));
    match saved {
        Ok(()) => eprintln!("{target}: crashing input saved to {}", file.display()),
        Err(e) => eprintln!("{target}: crashing input could not be saved: {e}"),
    }
    false
}

/// Entry point of a stable target binary.
///
/// Arguments: files or directories to replay (default: the target's
/// corpus), `--seconds N` of random inputs afterwards (default 5), and
/// `--seed N`. A panic in the target aborts with a non-zero status after
/// naming the input.
pub fn main(target: &str, run: fn(&[u8])) -> ExitCode {
    let mut paths = Vec::new();
    let mut seconds = 5u64;
    let mut seed = 1u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let num = |v: Option<String>| v.and_then(|v| v.parse().ok());
        match a.as_str() {
            "--seconds" => match num(args.next()) {
                Some(n) => seconds = n,
                None => return ExitCode::from(2),
            },
            "--seed" => match num(args.next()) {
                Some(n) => seed = n,
                None => return ExitCode::from(2),
            },
            _ => paths.push(PathBuf::from(a)),
        }
    }
    if paths.is_empty() {
        paths.push(corpus_dir(target));
    }
    let mut replayed = 0;
    for p in paths.iter().flat_map(|p| files(p)) {
        let data = std::fs::read(&p).unwrap_or_default();
        if !survives(target, run, &data) {
            eprintln!("{target}: input {} panicked", p.display());
            return ExitCode::FAILURE;
        }
        replayed += 1;
    }
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut random = 0u64;
    while Instant::now() < deadline {
        let data = rng.bytes(4096);
        if !survives(target, run, &data) {
            return ExitCode::FAILURE;
        }
        random += 1;
    }
    println!(
        "{target}: {replayed} corpus inputs and {random} random inputs (seed {seed}) ran clean"
    );
    ExitCode::SUCCESS
}
