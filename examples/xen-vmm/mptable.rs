// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! An Intel MultiProcessor Specification 1.4 table, so that a guest booted
//! without ACPI finds its CPUs, the IOAPIC and the interrupt routing: the
//! floating pointer ("_MP_") at 0xf0000, in the BIOS area `boot::e820`
//! reserves, and the configuration table ("PCMP") right after it.
//!
//! Entries, in the order the specification asks for: one processor per
//! vCPU (APIC id = index, vCPU 0 the BSP), bus 0 "PCI", bus 1 "ISA", one
//! IOAPIC (id = number of vCPUs), ISA IRQs 0-15 on IOAPIC pins 0-15,
//! INTA#-INTD# of PCI bus 0 devices 1-31 on pins 16-19 (swizzled by
//! device), and ExtINT on LINT0, NMI on LINT1 of every LAPIC.
//!
//! IRQ 0 is identity-mapped too: the VMM installs no GSI routing, so KVM's
//! default applies and the in-kernel PIT drives IOAPIC pin 0. The "IRQ 0
//! on pin 2" override of real chipsets (and QEMU, which routes to match)
//! would point the guest at a pin the PIT never drives.

use anyhow::{Context, Result};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use xen_abi::hvm::IntxPin;

/// The floating pointer; the configuration table follows it.
const MPTABLE_START: u64 = 0xf_0000;
const LAPIC_ADDR: u32 = 0xfee0_0000;
const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// CPUID.1 EAX (family 6, model 15, stepping 1) and EDX (FPU, TSC, MSR,
/// CX8, APIC) for the processor entries.
const CPU_SIGNATURE: u32 = 6 << 8 | 15 << 4 | 1;
const CPU_FEATURES: u32 = 1 << 0 | 1 << 4 | 1 << 5 | 1 << 8 | 1 << 9;
/// Interrupt entry flags: 0 conforms to the bus; PCI is level, active low.
const PCI_LEVEL_LOW: u8 = 0xf;

/// The byte that makes `bytes` sum to zero (mod 256).
/// The GSI (IOAPIC pin) of INTx pin `pin` of bus 0 device `slot`, as the
/// table below wires it: pins 16-19, swizzled by device. Device 0 (the
/// host bridge) and slots past 31 have none.
pub(crate) fn pci_intx_gsi(slot: u8, pin: IntxPin) -> Option<u32> {
    (1..32)
        .contains(&slot)
        .then(|| u32::from((slot + pin.raw()) % 4 + 16))
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_sub(b))
}

/// The configuration table: header, then entries.
fn config_table(cpus: u8) -> Vec<u8> {
    let ioapic = cpus;
    let mut t = vec![0u8; 44];
    for id in 0..cpus {
        let flags = if id == 0 { 3 } else { 1 }; // enabled, BSP
        t.extend([0, id, 0x14, flags]);
        t.extend(CPU_SIGNATURE.to_le_bytes());
        t.extend(CPU_FEATURES.to_le_bytes());
        t.extend([0; 8]);
    }
    t.extend(*b"\x01\x00PCI   \x01\x01ISA   ");
    t.extend([2, ioapic, 0x11, 1]);
    t.extend(IOAPIC_ADDR.to_le_bytes());
    // I/O interrupts (type 3): kind INT, flags, bus, source IRQ, IOAPIC, pin.
    for irq in 0..16 {
        t.extend([3, 0, 0, 0, 1, irq, ioapic, irq]);
    }
    for slot in 1..32u8 {
        for &pin in IntxPin::ALL {
            let gsi = pci_intx_gsi(slot, pin).unwrap_or_default() as u8;
            t.extend([
                3,
                0,
                PCI_LEVEL_LOW,
                0,
                0,
                slot << 2 | pin.raw(),
                ioapic,
                gsi,
            ]);
        }
    }
    // Local interrupts (type 4): ExtINT on LINT0, NMI on LINT1.
    t.extend([4, 3, 0, 0, 1, 0, 0xff, 0, 4, 1, 0, 0, 1, 0, 0xff, 1]);
    let entries = u16::from(cpus) + 2 + 1 + 16 + 31 * 4 + 2;
    let len = t.len() as u16;
    t[..4].copy_from_slice(b"PCMP");
    t[4..6].copy_from_slice(&len.to_le_bytes());
    t[6] = 4; // revision 1.4
    t[8..28].copy_from_slice(b"XENKVM  XEN-VMM     ");
    t[34..36].copy_from_slice(&entries.to_le_bytes());
    t[36..40].copy_from_slice(&LAPIC_ADDR.to_le_bytes());
    t[7] = checksum(&t);
    t
}

/// Writes the MP table for `cpus` vCPUs (1 to 254).
pub(crate) fn write_mptable(mem: &GuestMemoryMmap, cpus: u32) -> Result<()> {
    let cpus = u8::try_from(cpus)
        .ok()
        .filter(|n| (1..=254).contains(n))
        .with_context(|| format!("the MP table takes 1 to 254 vCPUs, not {cpus}"))?;
    let table_at = MPTABLE_START + 16;
    let mut f = [0u8; 16];
    f[..4].copy_from_slice(b"_MP_");
    f[4..8].copy_from_slice(&(table_at as u32).to_le_bytes());
    f[8] = 1; // length in 16-byte units
    f[9] = 4; // revision 1.4; no default configuration, no IMCR
    f[10] = checksum(&f);
    mem.write_slice(&config_table(cpus), GuestAddress(table_at))
        .and_then(|()| mem.write_slice(&f, GuestAddress(MPTABLE_START)))
        .context("cannot write the MP table")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |s, &x| s.wrapping_add(x))
    }

    #[test]
    fn test_mptable_checksums_and_processors() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        for cpus in [1u8, 2, 4, 254] {
            write_mptable(&mem, cpus.into()).unwrap();
            let mut f = [0u8; 16];
            mem.read_slice(&mut f, GuestAddress(MPTABLE_START)).unwrap();
            assert_eq!((&f[..4], sum(&f)), (&b"_MP_"[..], 0));
            let at = u32::from_le_bytes(f[4..8].try_into().unwrap());
            let mut head = [0u8; 44];
            mem.read_slice(&mut head, GuestAddress(at.into())).unwrap();
            let mut t = vec![0u8; u16::from_le_bytes([head[4], head[5]]).into()];
            mem.read_slice(&mut t, GuestAddress(at.into())).unwrap();
            assert_eq!((&t[..4], sum(&t)), (&b"PCMP"[..], 0));
            assert!(u64::from(at) + t.len() as u64 <= 0x10_0000);
            // Walk the entries: processors are 20 bytes, the rest 8.
            let (mut off, mut count, mut procs) = (44, 0, Vec::new());
            let mut platform_inta = None;
            while off < t.len() {
                if t[off] == 0 {
                    procs.push((t[off + 1], t[off + 3]));
                }
                if t[off] == 3 && t[off + 4] == 0 && t[off + 5] == 2 << 2 {
                    platform_inta = Some(t[off + 7]);
                }
                off += if t[off] == 0 { 20 } else { 8 };
                count += 1;
            }
            assert_eq!(off, t.len());
            // The platform device's INTA# (device 2) is on the pin the
            // Xen domain routes a PCI INTx callback to.
            assert_eq!(platform_inta.map(u32::from), pci_intx_gsi(2, IntxPin::A));
            assert_eq!(u16::from_le_bytes([t[34], t[35]]), count);
            assert_eq!(procs.len(), usize::from(cpus));
            assert!(
                procs
                    .iter()
                    .enumerate()
                    .all(|(i, p)| *p == (i as u8, 1 + 2 * u8::from(i == 0)))
            );
        }
        assert!(write_mptable(&mem, 255).is_err());
        assert_eq!(pci_intx_gsi(2, IntxPin::A), Some(18));
        assert_eq!(pci_intx_gsi(3, IntxPin::D), Some(18));
        assert_eq!(
            (pci_intx_gsi(0, IntxPin::A), pci_intx_gsi(32, IntxPin::A)),
            (None, None)
        );
    }
}
