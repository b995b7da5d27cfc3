// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Dispatches arbitrary hypercalls over arbitrary guest memory and paging state.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| xen_fuzz_common::hypercall_dispatch(data));

#[cfg(not(fuzzing))]
fn main() -> std::process::ExitCode {
    xen_fuzz_common::replay::main("hypercall_dispatch", xen_fuzz_common::hypercall_dispatch)
}
