// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Arbitrary sequences of grant-table operations, guest entry writes and
//! back-end maps, unmaps and copies, against a reference model.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| xen_fuzz_common::gnttab_ops(data));

#[cfg(not(fuzzing))]
fn main() -> std::process::ExitCode {
    xen_fuzz_common::replay::main("gnttab_ops", xen_fuzz_common::gnttab_ops)
}
