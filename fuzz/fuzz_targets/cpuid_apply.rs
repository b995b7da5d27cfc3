// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Applies the Xen leaves to arbitrary CPUID tables and configurations.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| xen_fuzz_common::cpuid_apply(data));

#[cfg(not(fuzzing))]
fn main() -> std::process::ExitCode {
    xen_fuzz_common::replay::main("cpuid_apply", xen_fuzz_common::cpuid_apply)
}
