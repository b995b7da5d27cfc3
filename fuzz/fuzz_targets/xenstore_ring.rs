// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A guest driving the XenStore ring, interleaved with back-end client
//! operations and save/restore.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| xen_fuzz_common::xenstore_ring(data));

#[cfg(not(fuzzing))]
fn main() -> std::process::ExitCode {
    xen_fuzz_common::replay::main("xenstore_ring", xen_fuzz_common::xenstore_ring)
}
