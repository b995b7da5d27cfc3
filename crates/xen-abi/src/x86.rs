// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The x86 architectural constants Xen's ABI leans on: the page size every
//! frame number counts in, and the control-register, EFER and
//! paging-entry bits that decide how a vCPU translates addresses and which
//! hypercall ABI it uses (Intel SDM vol. 3A §2.5, §4). One definition here serves every crate.

/// log2 of a guest page (Xen's `XEN_PAGE_SHIFT`).
pub const PAGE_SHIFT: u32 = 12;
/// Size of a guest page in bytes (Xen's `XEN_PAGE_SIZE`).
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// CR0.PE: protected mode.
pub const CR0_PE: u64 = 1 << 0;
/// CR0.MP: monitor coprocessor.
pub const CR0_MP: u64 = 1 << 1;
/// CR0.ET: extension type (always 1 on modern CPUs).
pub const CR0_ET: u64 = 1 << 4;
/// CR0.NE: native x87 error reporting.
pub const CR0_NE: u64 = 1 << 5;
/// CR0.WP: supervisor writes honour read-only pages.
pub const CR0_WP: u64 = 1 << 16;
/// CR0.PG: paging.
pub const CR0_PG: u64 = 1 << 31;

/// CR4.PSE: 4 MiB pages with 32-bit paging.
pub const CR4_PSE: u64 = 1 << 4;
/// CR4.PAE: physical address extension (required by long mode).
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.OSFXSR: FXSAVE/FXRSTOR and SSE enabled.
pub const CR4_OSFXSR: u64 = 1 << 9;
/// CR4.OSXMMEXCPT: unmasked SSE exceptions.
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
/// CR4.LA57: 5-level paging.
pub const CR4_LA57: u64 = 1 << 12;

/// Paging-structure entry: present.
pub const PTE_P: u64 = 1 << 0;
/// Paging-structure entry: writable.
pub const PTE_RW: u64 = 1 << 1;
/// Paging-structure entry: page size (the entry maps a large page).
pub const PTE_PS: u64 = 1 << 7;

/// EFER.LME: long mode enable.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_page_size_is_4k() {
        assert_eq!(PAGE_SIZE, 4096);
        assert_eq!(PAGE_SIZE, 1 << PAGE_SHIFT);
    }
}
