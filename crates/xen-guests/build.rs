// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Builds the freestanding guest programs in `guest/bin/` with the host
//! toolchain and embeds them as ELF images (the `guests` module of `src/lib.rs`).
//!
//! Each guest is a `#![no_std]` Rust binary for the host target, linked
//! statically at 1 MiB against the runtime in `guest/rt.rs`. SSE is turned
//! off because ring-0 guest code on this project's development KVM runs in
//! the instruction emulator, which does not handle most SSE instructions;
//! rustc warns that this changes the float ABI, which guests do not use.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn rustc(out: &Path) -> Command {
    let mut c = Command::new(env::var("RUSTC").unwrap_or_else(|_| "rustc".into()));
    // Keep the outer build's flags (coverage, sanitizers) away from guests.
    c.env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .args(["--edition", "2024", "--target", TARGET])
        .args([
            "-C",
            "panic=abort",
            "-C",
            "opt-level=s",
            "-C",
            "debuginfo=0",
            "-C",
            "strip=debuginfo",
        ])
        .args(["-C", "relocation-model=static", "-C", "codegen-units=1"])
        .args(["-C", "target-feature=-sse,-sse2,-avx,+soft-float"])
        .args(["-C", "force-frame-pointers=no", "-C", "no-redzone=yes"])
        .arg("-L")
        .arg(out);
    c
}

fn run(mut c: Command, what: &str) {
    let o = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run rustc for {what}: {e}"));
    if !o.status.success() {
        panic!(
            "building guest {what} failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let guest_dir = manifest.join("guest");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("guest");
    fs::create_dir_all(&out).unwrap();
    println!("cargo:rerun-if-changed=guest");
    println!("cargo:rerun-if-env-changed=RUSTC");

    let mut rt = rustc(&out);
    rt.args(["--crate-type", "rlib", "--crate-name", "xen_guest_rt"])
        .arg("--out-dir")
        .arg(&out)
        .arg(guest_dir.join("rt.rs"));
    run(rt, "runtime");

    let mut bins: Vec<PathBuf> = fs::read_dir(guest_dir.join("bin"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    bins.sort();

    let mut index = String::new();
    let mut all = Vec::new();
    for src in &bins {
        let name = src.file_stem().unwrap().to_str().unwrap().to_owned();
        let elf = out.join(&name);
        let mut c = rustc(&out);
        c.args(["--crate-type", "bin", "--crate-name"])
            .arg(name.replace('-', "_"))
            .arg("--extern")
            .arg(format!(
                "xen_guest_rt={}",
                out.join("libxen_guest_rt.rlib").display()
            ))
            .arg("-C")
            .arg(format!(
                "link-arg=-T{}",
                guest_dir.join("guest.ld").display()
            ))
            .args(["-C", "link-arg=-nostdlib", "-C", "link-arg=-static"])
            .args([
                "-C",
                "link-arg=-Wl,--build-id=none",
                "-C",
                "link-arg=-no-pie",
            ])
            .arg("-o")
            .arg(&elf)
            .arg(src);
        run(c, &name);
        let konst = name.to_uppercase().replace('-', "_");
        index.push_str(&format!(
            "/// The `{name}` guest (`guest/bin/{name}.rs`).\n\
             pub const {konst}: Guest = Guest {{ name: {name:?}, elf: include_bytes!({:?}) }};\n",
            elf.display().to_string()
        ));
        all.push(konst);
    }
    index.push_str(&format!(
        "/// Every guest, in name order.\npub const ALL: &[Guest] = &[{}];\n",
        all.join(", ")
    ));
    fs::write(out.join("index.rs"), index).unwrap();
}
