// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Hypercall page builders (`xen-abi.md` §1.2).
//!
//! A hypercall page is 4096 bytes of 128 stubs, 32 bytes each, filled with
//! `int3` (0xCC) first. Stub `i` loads `i` into EAX and traps:
//!
//! | flavour | stub | who catches it |
//! |---|---|---|
//! | [`Trap::Vmcall`] | `mov eax, i; vmcall; ret` | Intel guests, kernel intercept |
//! | [`Trap::Vmmcall`] | `mov eax, i; vmmcall; ret` | AMD guests, kernel intercept |
//! | [`Trap::Port`] | `mov eax, i; out imm8, eax; ret` | user-space trap path (a port-I/O exit) |
//!
//! Stub 23 (`__HYPERVISOR_iret`, PV only) is `ud2` as Xen fills it.
//!
//! The port-trap flavour needs an 8-bit I/O port that no device decodes;
//! [`DEFAULT_TRAP_PORT`] is 0xE6. It avoids 0x80 (POST), 0x7E, 0xE9 (Xen's
//! debug console), the platform device's 0x10..0x1F, the PIC, PIT, CMOS,
//! keyboard, serial and PCI ports. Because `out` writes EAX, the VMM sees
//! the hypercall number in the exit's data and the rest in the registers.

use xen_abi::xen::HYPERVISOR_IRET;

/// Bytes in a hypercall page (one guest page).
const PAGE_BYTES: usize = xen_abi::x86::PAGE_SIZE as usize;
/// Bytes per stub.
pub const STUB_SIZE: usize = 32;
/// Stubs per page.
pub const STUBS: usize = PAGE_BYTES / STUB_SIZE;
/// The I/O port the port-trap stubs write to unless the VMM picks another.
pub const DEFAULT_TRAP_PORT: u8 = 0xe6;

/// How the stubs trap to the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trap {
    /// Intel's `vmcall` (0F 01 C1).
    Vmcall,
    /// AMD's `vmmcall` (0F 01 D9).
    Vmmcall,
    /// `out imm8, eax` (E7 ib) to this port.
    Port(u8),
}

impl Trap {
    fn bytes(self) -> ([u8; 3], usize) {
        match self {
            Trap::Vmcall => ([0x0f, 0x01, 0xc1], 3),
            Trap::Vmmcall => ([0x0f, 0x01, 0xd9], 3),
            Trap::Port(p) => ([0xe7, p, 0], 2),
        }
    }
}

/// Builds a hypercall page.
pub fn build(trap: Trap) -> [u8; PAGE_BYTES] {
    let mut page = [0xccu8; PAGE_BYTES];
    let (insn, len) = trap.bytes();
    for (i, stub) in page.chunks_exact_mut(STUB_SIZE).enumerate() {
        if i == HYPERVISOR_IRET as usize {
            stub[..2].copy_from_slice(&[0x0f, 0x0b]);
            continue;
        }
        stub[0] = 0xb8;
        stub[1..5].copy_from_slice(&(i as u32).to_le_bytes());
        stub[5..5 + len].copy_from_slice(&insn[..len]);
        stub[5 + len] = 0xc3;
    }
    page
}

/// The hypercall number a port-trap stub reported, from the exit's data
/// (the `out` writes EAX, which holds the number).
pub fn port_trap_nr(data: &[u8]) -> Option<u64> {
    let bytes: [u8; 4] = data.try_into().ok()?;
    Some(u64::from(u32::from_le_bytes(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_build_vmcall_stub_layout() {
        let p = build(Trap::Vmcall);
        assert_eq!(&p[0..9], &[0xb8, 0, 0, 0, 0, 0x0f, 0x01, 0xc1, 0xc3]);
        assert!(p[9..32].iter().all(|b| *b == 0xcc));
        // Stub 17 (xen_version) at offset 0x220.
        assert_eq!(
            &p[0x220..0x229],
            &[0xb8, 17, 0, 0, 0, 0x0f, 0x01, 0xc1, 0xc3]
        );
    }

    #[test]
    fn test_build_vmmcall_stub_layout() {
        let p = build(Trap::Vmmcall);
        assert_eq!(
            &p[0x7e0..0x7e9],
            &[0xb8, 63, 0, 0, 0, 0x0f, 0x01, 0xd9, 0xc3]
        );
    }

    #[test]
    fn test_build_port_stub_writes_eax_to_port() {
        let p = build(Trap::Port(0xe6));
        assert_eq!(&p[32..40], &[0xb8, 1, 0, 0, 0, 0xe7, 0xe6, 0xc3]);
        assert!(p[40..64].iter().all(|b| *b == 0xcc));
        let last = &p[PAGE_BYTES - STUB_SIZE..];
        assert_eq!(&last[..8], &[0xb8, 127, 0, 0, 0, 0xe7, 0xe6, 0xc3]);
    }

    #[test]
    fn test_build_iret_stub_is_ud2_in_every_flavour() {
        for t in [Trap::Vmcall, Trap::Vmmcall, Trap::Port(0xe6)] {
            let p = build(t);
            assert_eq!(&p[0x2e0..0x2e2], &[0x0f, 0x0b]);
            assert!(p[0x2e2..0x300].iter().all(|b| *b == 0xcc));
        }
    }

    #[test]
    fn test_port_trap_nr_needs_four_bytes() {
        assert_eq!(port_trap_nr(&[17, 0, 0, 0]), Some(17));
        assert_eq!(port_trap_nr(&[17]), None);
    }
}
