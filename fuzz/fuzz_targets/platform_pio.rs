// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Arbitrary port, MMIO and config-space accesses to the Xen platform device.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| xen_fuzz_common::platform_pio(data));

#[cfg(not(fuzzing))]
fn main() -> std::process::ExitCode {
    xen_fuzz_common::replay::main("platform_pio", xen_fuzz_common::platform_pio)
}
