// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What the xen-on-kvm fuzz targets do with their input, kept in a normal
//! crate so that it is unit-tested, writes the seed corpora, and replays
//! crash reproducers on stable Rust.
//!
//! Each target function takes raw bytes, decodes them with `arbitrary`, runs
//! the code under test, and asserts the invariants that must hold for every
//! input (a failed assertion is a finding, like a panic inside the crate).

mod abi_decode;
mod cpuid_apply;
mod evtchn_ops;
mod gnttab_ops;
mod hypercall_dispatch;
mod platform_pio;
pub mod replay;
mod xenstore_ring;

pub use abi_decode::abi_decode;
pub use cpuid_apply::cpuid_apply;
pub use evtchn_ops::evtchn_ops;
pub use gnttab_ops::gnttab_ops;
pub use hypercall_dispatch::hypercall_dispatch;
pub use platform_pio::platform_pio;
pub use xenstore_ring::xenstore_ring;

#[cfg(test)]
mod tests;
