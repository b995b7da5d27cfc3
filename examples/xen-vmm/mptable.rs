// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! An Intel MultiProcessor Specification 1.4 table, so that a guest booted
//! without ACPI finds its CPUs, the IOAPIC and the interrupt routing.
//!
//! Layout (all inside the BIOS area that `boot::e820` reserves):
//!
//! ```text
//! 0xf0000  MP floating pointer structure (16 bytes, "_MP_")
//! 0xf0010  MP configuration table ("PCMP"): 44-byte header, then entries
//! ```
//!
//! Entries, in the order the specification asks for: one processor per
//! vCPU (APIC id = index, vCPU 0 the BSP), bus 0 "PCI", bus 1 "ISA", one
//! IOAPIC (id = number of vCPUs), I/O interrupt assignments for the ISA
//! IRQs 0-15 and for INTA#-INTD# of PCI bus 0 devices 1-31, and local
//! interrupt assignments (ExtINT on LINT0, NMI on LINT1, every LAPIC).
//!
//! ISA IRQs are identity-mapped to IOAPIC pins, IRQ 0 included. The VMM
//! does not install a GSI routing table, so KVM's default routing applies:
//! GSI n drives IOAPIC pin n (and, below 16, PIC pin n), and the in-kernel
//! PIT raises GSI 0, i.e. IOAPIC pin 0. The "IRQ 0 on pin 2" override of
//! real chipsets (and QEMU, which installs its own routing to match) would
//! point the guest at a pin the PIT never drives. Change [`TIMER_PIN`] if
//! the VMM ever routes GSI 0 elsewhere.

use anyhow::{Context, Result, bail};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The MP floating pointer structure (16-byte aligned, in 0xf0000-0xfffff,
/// where Linux searches for "_MP_").
pub(crate) const MPTABLE_START: u64 = 0xf_0000;
/// End (exclusive) of the BIOS area the table must stay inside.
const BIOS_END: u64 = 0x10_0000;
/// The configuration table follows the floating pointer.
const CONFIG_START: u64 = MPTABLE_START + FLOATING_LEN as u64;

/// The most vCPUs: 8-bit xAPIC ids, 0xff is the broadcast id, and the
/// IOAPIC takes id `cpus`.
pub(crate) const MAX_CPUS: u32 = 254;

/// The local APIC and IOAPIC base addresses (x86 defaults, as KVM's
/// in-kernel irqchip models them).
const LAPIC_ADDR: u32 = 0xfee0_0000;
const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// Versions: an integrated (xAPIC) LAPIC and an 82093AA-style IOAPIC.
const LAPIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;

/// Specification revision 1.4.
const SPEC_REV: u8 = 4;
const FLOATING_LEN: usize = 16;
const HEADER_LEN: usize = 44;
const PROCESSOR_LEN: usize = 20;
const ENTRY_LEN: usize = 8;

// Entry types.
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INT: u8 = 3;
const ENTRY_LOCAL_INT: u8 = 4;

// Interrupt types of I/O and local interrupt entries.
const INT_INT: u8 = 0;
const INT_NMI: u8 = 1;
const INT_EXTINT: u8 = 3;

/// Processor entry flags.
const CPU_ENABLED: u8 = 1 << 0;
const CPU_BSP: u8 = 1 << 1;
/// IOAPIC entry flags.
const IOAPIC_ENABLED: u8 = 1 << 0;

/// Interrupt entry flags: polarity in bits 0-1, trigger mode in bits 2-3;
/// 0 in both means "conforms to the bus".
const FLAGS_CONFORMING: u16 = 0;
const FLAGS_ACTIVE_LOW_LEVEL: u16 = 0b11 | 0b11 << 2;

/// CPU signature (CPUID.1 EAX layout): family 6, model 15, stepping 1.
const CPU_SIGNATURE: u32 = 6 << 8 | 15 << 4 | 1;
/// Feature flags (CPUID.1 EDX layout): FPU, TSC, MSR, CX8, APIC.
const CPU_FEATURES: u32 = 1 << 0 | 1 << 4 | 1 << 5 | 1 << 8 | 1 << 9;

const BUS_PCI: u8 = 0;
const BUS_ISA: u8 = 1;
/// ISA IRQs 0-15.
const ISA_IRQS: u8 = 16;
/// The IOAPIC pin of ISA IRQ 0 (the PIT); see the module documentation.
const TIMER_PIN: u8 = 0;
/// PCI devices 1-31 of bus 0 (0 is the host bridge).
const PCI_SLOTS: std::ops::RangeInclusive<u8> = 1..=31;
/// The first IOAPIC pin for PCI INTx.
const PCI_PIN_BASE: u8 = 16;
/// Local interrupt entries aimed at every LAPIC.
const ALL_LAPICS: u8 = 0xff;

const OEM_ID: &[u8; 8] = b"XENKVM  ";
const PRODUCT_ID: &[u8; 12] = b"XEN-VMM     ";

/// The byte that makes `bytes` sum to zero (mod 256).
fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |s, &b| s.wrapping_add(b))
        .wrapping_neg()
}

/// The IOAPIC pin of PCI bus 0 device `slot`'s INTx (`pin` 0 = INTA#).
fn pci_irq_pin(slot: u8, pin: u8) -> u8 {
    (slot + pin) % 4 + PCI_PIN_BASE
}

/// The configuration table's entries, counted as they are added.
struct Entries {
    bytes: Vec<u8>,
    count: u16,
}

impl Entries {
    fn push(&mut self, entry: &[u8]) {
        self.bytes.extend_from_slice(entry);
        self.count += 1;
    }

    fn processor(&mut self, apic_id: u8, flags: u8) {
        let mut e = [0u8; PROCESSOR_LEN];
        e[0] = ENTRY_PROCESSOR;
        e[1] = apic_id;
        e[2] = LAPIC_VERSION;
        e[3] = flags;
        e[4..8].copy_from_slice(&CPU_SIGNATURE.to_le_bytes());
        e[8..12].copy_from_slice(&CPU_FEATURES.to_le_bytes());
        // Bytes 12-19 are reserved.
        self.push(&e);
    }

    fn bus(&mut self, id: u8, kind: &[u8; 6]) {
        let mut e = [0u8; ENTRY_LEN];
        e[0] = ENTRY_BUS;
        e[1] = id;
        e[2..8].copy_from_slice(kind);
        self.push(&e);
    }

    fn ioapic(&mut self, id: u8) {
        let mut e = [0u8; ENTRY_LEN];
        e[0] = ENTRY_IOAPIC;
        e[1] = id;
        e[2] = IOAPIC_VERSION;
        e[3] = IOAPIC_ENABLED;
        e[4..8].copy_from_slice(&IOAPIC_ADDR.to_le_bytes());
        self.push(&e);
    }

    /// An I/O (`ENTRY_IO_INT`) or local (`ENTRY_LOCAL_INT`) interrupt
    /// assignment: both share one layout.
    #[allow(clippy::too_many_arguments)]
    fn interrupt(&mut self, entry: u8, kind: u8, flags: u16, bus: u8, irq: u8, dest: u8, pin: u8) {
        let mut e = [0u8; ENTRY_LEN];
        e[0] = entry;
        e[1] = kind;
        e[2..4].copy_from_slice(&flags.to_le_bytes());
        e[4] = bus;
        e[5] = irq;
        e[6] = dest;
        e[7] = pin;
        self.push(&e);
    }
}

/// The configuration table (header and entries) for `cpus` vCPUs.
fn config_table(cpus: u8) -> Result<Vec<u8>> {
    let mut t = Entries {
        bytes: vec![0; HEADER_LEN],
        count: 0,
    };
    for id in 0..cpus {
        let bsp = if id == 0 { CPU_BSP } else { 0 };
        t.processor(id, CPU_ENABLED | bsp);
    }
    t.bus(BUS_PCI, b"PCI   ");
    t.bus(BUS_ISA, b"ISA   ");
    let ioapic = cpus;
    t.ioapic(ioapic);
    for irq in 0..ISA_IRQS {
        let pin = if irq == 0 { TIMER_PIN } else { irq };
        t.interrupt(
            ENTRY_IO_INT,
            INT_INT,
            FLAGS_CONFORMING,
            BUS_ISA,
            irq,
            ioapic,
            pin,
        );
    }
    for slot in PCI_SLOTS {
        for pin in 0..4 {
            t.interrupt(
                ENTRY_IO_INT,
                INT_INT,
                FLAGS_ACTIVE_LOW_LEVEL,
                BUS_PCI,
                slot << 2 | pin,
                ioapic,
                pci_irq_pin(slot, pin),
            );
        }
    }
    for (kind, lint) in [(INT_EXTINT, 0), (INT_NMI, 1)] {
        t.interrupt(
            ENTRY_LOCAL_INT,
            kind,
            FLAGS_CONFORMING,
            BUS_ISA,
            0,
            ALL_LAPICS,
            lint,
        );
    }

    let mut b = t.bytes;
    let len = u16::try_from(b.len())
        .with_context(|| format!("the MP table ({} bytes) is too long", b.len()))?;
    b[0..4].copy_from_slice(b"PCMP");
    b[4..6].copy_from_slice(&len.to_le_bytes());
    b[6] = SPEC_REV;
    // b[7]: the checksum, below.
    b[8..16].copy_from_slice(OEM_ID);
    b[16..28].copy_from_slice(PRODUCT_ID);
    // OEM table pointer and size (28..34): none.
    b[34..36].copy_from_slice(&t.count.to_le_bytes());
    b[36..40].copy_from_slice(&LAPIC_ADDR.to_le_bytes());
    // Extended table length and checksum, reserved (40..44): none.
    b[7] = checksum(&b);
    Ok(b)
}

/// The floating pointer structure for a configuration table at `table`.
fn floating_pointer(table: u32) -> [u8; FLOATING_LEN] {
    let mut f = [0u8; FLOATING_LEN];
    f[0..4].copy_from_slice(b"_MP_");
    f[4..8].copy_from_slice(&table.to_le_bytes());
    f[8] = 1; // length in 16-byte units
    f[9] = SPEC_REV;
    // f[10]: the checksum. Feature byte 1 = 0: a configuration table is
    // present (no default configuration). Feature byte 2 bit 7 = 0: no
    // IMCR, virtual wire mode.
    f[10] = checksum(&f);
    f
}

/// Writes the MP floating pointer and configuration table for `cpus`
/// vCPUs at [`MPTABLE_START`].
pub(crate) fn write_mptable(mem: &GuestMemoryMmap, cpus: u32) -> Result<()> {
    let n = u8::try_from(cpus)
        .ok()
        .filter(|&n| (1..=MAX_CPUS).contains(&u32::from(n)))
        .with_context(|| format!("the MP table takes 1 to {MAX_CPUS} vCPUs, not {cpus}"))?;
    let table = config_table(n)?;
    let end = CONFIG_START + table.len() as u64;
    if end > BIOS_END {
        bail!(
            "the MP table ({} bytes at {CONFIG_START:#x}) does not fit below {BIOS_END:#x}",
            table.len()
        );
    }
    let write = |bytes: &[u8], at: u64| {
        mem.write_slice(bytes, GuestAddress(at)).with_context(|| {
            format!(
                "cannot write the MP table ({} bytes at {at:#x})",
                bytes.len()
            )
        })
    };
    write(&table, CONFIG_START)?;
    write(&floating_pointer(CONFIG_START as u32), MPTABLE_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap()
    }

    fn read(m: &GuestMemoryMmap, at: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        m.read_slice(&mut v, GuestAddress(at)).unwrap();
        v
    }

    fn u16_at(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |s, &x| s.wrapping_add(x))
    }

    /// Linux's `smp_scan_config` over the BIOS area: "_MP_" on a 16-byte
    /// boundary, length 1, revision 1 or 4, bytes summing to zero.
    fn scan(m: &GuestMemoryMmap) -> Vec<u64> {
        let area = read(m, 0xf_0000, 0x1_0000);
        (0..area.len())
            .step_by(16)
            .filter(|&o| {
                let f = &area[o..o + 16];
                &f[0..4] == b"_MP_" && f[8] == 1 && matches!(f[9], 1 | 4) && sum(f) == 0
            })
            .map(|o| 0xf_0000 + o as u64)
            .collect()
    }

    /// A parsed table: the raw configuration table and its entries.
    struct Parsed {
        table: Vec<u8>,
        entries: Vec<Vec<u8>>,
    }

    impl Parsed {
        fn of_type(&self, t: u8) -> Vec<&Vec<u8>> {
            self.entries.iter().filter(|e| e[0] == t).collect()
        }
    }

    /// Finds the table as a guest would and checks its framing.
    fn parse(m: &GuestMemoryMmap) -> Parsed {
        let found = scan(m);
        assert_eq!(found, [MPTABLE_START], "exactly one floating pointer");
        let f = read(m, found[0], 16);
        assert_eq!(f[9], 4, "spec revision 1.4");
        assert_eq!(&f[11..16], &[0; 5], "feature bytes");
        let at = u32_at(&f, 4);
        assert_eq!(u64::from(at), MPTABLE_START + 16);
        let head = read(m, at.into(), HEADER_LEN);
        assert_eq!(&head[0..4], b"PCMP");
        let len = usize::from(u16_at(&head, 4));
        let table = read(m, at.into(), len);
        assert_eq!(sum(&table), 0, "configuration table checksum");
        assert_eq!(table[6], 4);
        assert_eq!(&table[8..16], OEM_ID);
        assert_eq!(&table[16..28], PRODUCT_ID);
        assert_eq!(u32_at(&table, 28), 0, "no OEM table");
        assert_eq!(u32_at(&table, 36), 0xfee0_0000);
        assert_eq!(u16_at(&table, 40), 0, "no extended table");
        assert!(u64::from(at) + len as u64 <= 0x10_0000);
        let mut entries = Vec::new();
        let mut off = HEADER_LEN;
        while off < len {
            let size = if table[off] == ENTRY_PROCESSOR { 20 } else { 8 };
            assert!(table[off] <= ENTRY_LOCAL_INT, "entry type {}", table[off]);
            entries.push(table[off..off + size].to_vec());
            off += size;
        }
        assert_eq!(off, len, "entries end at the base table length");
        assert_eq!(usize::from(u16_at(&table, 34)), entries.len());
        let types: Vec<u8> = entries.iter().map(|e| e[0]).collect();
        assert!(types.is_sorted(), "entries in type order: {types:?}");
        Parsed { table, entries }
    }

    #[test]
    fn test_processors_and_bsp() {
        for cpus in [1u32, 2, 4] {
            let m = mem();
            write_mptable(&m, cpus).unwrap();
            let p = parse(&m);
            let procs = p.of_type(ENTRY_PROCESSOR);
            assert_eq!(procs.len(), cpus as usize);
            for (i, e) in procs.iter().enumerate() {
                assert_eq!(usize::from(e[1]), i, "APIC id");
                assert_eq!(e[2], 0x14, "LAPIC version");
                let flags = if i == 0 { 3 } else { 1 };
                assert_eq!(e[3], flags, "enabled, BSP only on 0");
                assert_eq!(u32_at(e, 4) >> 8 & 0xf, 6, "family 6");
                assert_ne!(u32_at(e, 8) & 1 << 9, 0, "APIC feature");
            }
            let n = cpus as usize;
            assert_eq!(p.entries.len(), n + 2 + 1 + 16 + 31 * 4 + 2);
            assert_eq!(p.table.len(), 44 + 20 * n + 8 * (2 + 1 + 16 + 124 + 2));
        }
    }

    #[test]
    fn test_buses_and_ioapic() {
        let m = mem();
        write_mptable(&m, 4).unwrap();
        let p = parse(&m);
        let buses = p.of_type(ENTRY_BUS);
        assert_eq!(buses.len(), 2);
        assert_eq!((buses[0][1], &buses[0][2..8]), (0, &b"PCI   "[..]));
        assert_eq!((buses[1][1], &buses[1][2..8]), (1, &b"ISA   "[..]));
        let ioapics = p.of_type(ENTRY_IOAPIC);
        assert_eq!(ioapics.len(), 1);
        let io = ioapics[0];
        assert_eq!(io[1], 4, "IOAPIC id = cpus");
        assert_eq!(io[2], 0x11);
        assert_eq!(io[3], 1, "enabled");
        assert_eq!(u32_at(io, 4), 0xfec0_0000);
    }

    #[test]
    fn test_interrupt_assignments() {
        let m = mem();
        write_mptable(&m, 2).unwrap();
        let p = parse(&m);
        let ioapic = 2;
        let io = p.of_type(ENTRY_IO_INT);
        let isa: Vec<_> = io.iter().filter(|e| e[4] == BUS_ISA).collect();
        assert_eq!(isa.len(), 16);
        for (irq, e) in isa.iter().enumerate() {
            assert_eq!(e[1], INT_INT);
            assert_eq!(u16_at(e, 2), 0, "ISA: conforming");
            assert_eq!(usize::from(e[5]), irq);
            assert_eq!(e[6], ioapic);
            let pin = if irq == 0 { TIMER_PIN } else { irq as u8 };
            assert_eq!(e[7], pin);
        }
        // COM1 on IRQ 4 reaches pin 4, as KVM's default routing does.
        assert_eq!(isa[4][7], 4);
        let pci: Vec<_> = io.iter().filter(|e| e[4] == BUS_PCI).collect();
        assert_eq!(pci.len(), 31 * 4);
        for e in &pci {
            let (slot, pin) = (e[5] >> 2, e[5] & 3);
            assert!((1..=31).contains(&slot));
            assert_eq!(e[1], INT_INT);
            assert_eq!(u16_at(e, 2), 0xf, "PCI: level, active low");
            assert_eq!(e[6], ioapic);
            assert_eq!(e[7], (slot + pin) % 4 + 16);
            assert!((16..=23).contains(&e[7]));
        }
        // Each (slot, pin) once.
        let mut srcs: Vec<u8> = pci.iter().map(|e| e[5]).collect();
        srcs.sort_unstable();
        srcs.dedup();
        assert_eq!(srcs.len(), 124);
        // The platform device (slot 2) INTA# lands on pin 18.
        assert!(pci.iter().any(|e| e[5] == 2 << 2 && e[7] == 18));
        let local = p.of_type(ENTRY_LOCAL_INT);
        assert_eq!(local.len(), 2);
        assert_eq!(
            (local[0][1], local[0][6], local[0][7]),
            (INT_EXTINT, 0xff, 0)
        );
        assert_eq!((local[1][1], local[1][6], local[1][7]), (INT_NMI, 0xff, 1));
    }

    #[test]
    fn test_largest_table_fits() {
        let m = mem();
        write_mptable(&m, MAX_CPUS).unwrap();
        let p = parse(&m);
        assert_eq!(p.of_type(ENTRY_PROCESSOR).len(), 254);
        assert_eq!(p.of_type(ENTRY_IOAPIC)[0][1], 254);
        assert!(p.table.len() < 0x1_0000 - 16);
    }

    #[test]
    fn test_rewrite_is_idempotent() {
        let m = mem();
        write_mptable(&m, 4).unwrap();
        let first = read(&m, 0xf_0000, 0x1_0000);
        write_mptable(&m, 4).unwrap();
        assert_eq!(read(&m, 0xf_0000, 0x1_0000), first);
    }

    #[test]
    fn test_errors_are_messages() {
        let m = mem();
        for cpus in [0, 255, 256, u32::MAX] {
            let e = format!("{:#}", write_mptable(&m, cpus).unwrap_err());
            assert!(e.contains("1 to 254"), "{e}");
        }
        assert!(scan(&m).is_empty(), "nothing written on error");
        // Memory that ends below the BIOS area.
        let small = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x8_0000)]).unwrap();
        let e = format!("{:#}", write_mptable(&small, 1).unwrap_err());
        assert!(e.contains("cannot write the MP table"), "{e}");
        // Memory that ends inside the table.
        let short = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0xf_0100)]).unwrap();
        let e = format!("{:#}", write_mptable(&short, 4).unwrap_err());
        assert!(e.contains("cannot write the MP table"), "{e}");
    }

    #[test]
    fn test_checksum_helper() {
        for bytes in [&b""[..], b"\x01", b"_MP_\xff\xff", &[0x80; 300]] {
            let mut v = bytes.to_vec();
            v.push(checksum(bytes));
            assert_eq!(sum(&v), 0);
        }
    }
}
