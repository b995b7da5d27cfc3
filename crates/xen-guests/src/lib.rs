// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The freestanding guest programs of xen-on-kvm, embedded as ELF images,
//! and the boot layout they are linked against.
//!
//! A guest is a `#![no_std]` Rust program in `guest/bin/<name>.rs`, built
//! by this crate's build script with the host toolchain against the runtime
//! in `guest/rt.rs`, linked at 1 MiB and embedded as
//! [`guests::NAME`](guests). Every guest carries a Xen PVH entry note, so a
//! VMM can enter it in 32-bit flat mode (the runtime then enters long mode
//! itself) or, with the tables of [`layout`], directly in 64-bit mode at
//! its ELF entry.
//!
//! `xen-guest-harness` runs them as conformance tests; the example VMM
//! boots [`guests::FLOW`], which walks the whole Xen HVM flow.
//!
//! ```
//! use xen_guests::guests;
//!
//! assert_eq!(&guests::FLOW.elf[..4], b"\x7fELF");
//! assert!(guests::ALL.iter().any(|g| g.name == "flow"));
//! ```

pub mod layout;

/// A guest program embedded in this crate.
#[derive(Clone, Copy, Debug)]
pub struct Guest {
    /// Its name (the file stem under `guest/bin/`).
    pub name: &'static str,
    /// The linked ELF64 image.
    pub elf: &'static [u8],
}

/// The guests built from `guest/bin/`.
pub mod guests {
    use super::Guest;
    include!(concat!(env!("OUT_DIR"), "/guest/index.rs"));
}
