// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The low-memory layout and 64-bit CPU state a harness guest starts with.
//!
//! | GPA | what |
//! |---|---|
//! | 0x1000 | GDT: null, 64-bit code 0x08, data 0x10, 32-bit code 0x18, TSS 0x20 |
//! | 0x2000 | 64-bit TSS |
//! | 0x9000 | PML4 |
//! | 0xa000 | PDPT |
//! | 0xb000..0xf000 | four page directories: 0..4 GiB in 2 MiB pages |
//! | 0x100000 | the guest image (see `guest/guest.ld`) |

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

/// GPA of the GDT.
pub const GDT_ADDR: u64 = 0x1000;
/// GPA of the TSS.
pub const TSS_ADDR: u64 = 0x2000;
/// GPA of the PML4.
pub const PML4_ADDR: u64 = 0x9000;
/// GPA of the PDPT.
pub const PDPT_ADDR: u64 = 0xa000;
/// GPA of the first page directory.
pub const PD_ADDR: u64 = 0xb000;
/// Lowest address a guest image may occupy.
pub const IMAGE_START: u64 = 0x10_0000;
/// Bytes of address space the identity map covers.
pub const IDENTITY_MAP_SIZE: u64 = 4 << 30;

/// 64-bit code selector.
pub const SEL_CODE64: u16 = 0x08;
/// Flat data selector.
pub const SEL_DATA: u16 = 0x10;
/// 32-bit (compatibility-mode) code selector.
pub const SEL_CODE32: u16 = 0x18;
/// TSS selector.
pub const SEL_TSS: u16 = 0x20;

use xen_abi::x86::{
    CR0_ET, CR0_MP, CR0_NE, CR0_PE, CR0_PG, CR0_WP, CR4_OSFXSR, CR4_OSXMMEXCPT, CR4_PAE, EFER_LMA,
    EFER_LME, PTE_P, PTE_PS, PTE_RW,
};

/// A segment descriptor for the GDT and the matching `kvm_segment`.
fn descriptor(s: &kvm_segment) -> u64 {
    let base = s.base;
    let limit = if s.g != 0 { s.limit >> 12 } else { s.limit };
    let access = u64::from(s.type_)
        | u64::from(s.s) << 4
        | u64::from(s.dpl) << 5
        | u64::from(s.present) << 7;
    let flags = u64::from(s.avl) | u64::from(s.l) << 1 | u64::from(s.db) << 2 | u64::from(s.g) << 3;
    (u64::from(limit) & 0xffff)
        | (base & 0xff_ffff) << 16
        | access << 40
        | (u64::from(limit) >> 16 & 0xf) << 48
        | flags << 52
        | (base >> 24 & 0xff) << 56
}

fn segment(selector: u16, type_: u8, l: u8, db: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db,
        s: 1,
        l,
        g: 1,
        avl: 0,
        ..Default::default()
    }
}

/// The 64-bit code segment.
pub fn code64() -> kvm_segment {
    segment(SEL_CODE64, 0xb, 1, 0)
}

/// The 32-bit compatibility-mode code segment.
pub fn code32() -> kvm_segment {
    segment(SEL_CODE32, 0xb, 0, 1)
}

/// The flat data segment.
pub fn data() -> kvm_segment {
    segment(SEL_DATA, 0x3, 0, 1)
}

/// The busy 64-bit TSS.
pub fn tss() -> kvm_segment {
    kvm_segment {
        base: TSS_ADDR,
        limit: 0x67,
        selector: SEL_TSS,
        type_: 0xb,
        present: 1,
        s: 0,
        ..Default::default()
    }
}

/// Writes the GDT, TSS and identity page tables into guest memory.
pub fn write_tables<M: GuestMemoryBackend>(mem: &M) -> Result<(), vm_memory::GuestMemoryError> {
    let t = tss();
    let tss_lo = descriptor(&t);
    let tss_hi = t.base >> 32;
    let gdt = [
        0u64,
        descriptor(&code64()),
        descriptor(&data()),
        descriptor(&code32()),
        tss_lo,
        tss_hi,
    ];
    for (i, d) in gdt.iter().enumerate() {
        mem.write_obj(*d, GuestAddress(GDT_ADDR + 8 * i as u64))?;
    }
    // An all-zero TSS with the I/O bitmap offset past its limit.
    mem.write_slice(&[0u8; 0x68], GuestAddress(TSS_ADDR))?;
    mem.write_obj(0x68u16, GuestAddress(TSS_ADDR + 0x66))?;

    mem.write_obj(PDPT_ADDR | PTE_P | PTE_RW, GuestAddress(PML4_ADDR))?;
    let dirs = IDENTITY_MAP_SIZE >> 30;
    for d in 0..dirs {
        let pd = PD_ADDR + d * 0x1000;
        mem.write_obj(pd | PTE_P | PTE_RW, GuestAddress(PDPT_ADDR + d * 8))?;
        for e in 0..512u64 {
            let page = (d << 30) | (e << 21);
            mem.write_obj(page | PTE_P | PTE_RW | PTE_PS, GuestAddress(pd + e * 8))?;
        }
    }
    Ok(())
}

/// Puts `sregs` in 64-bit mode with the tables from [`write_tables`].
pub fn long_mode_sregs(sregs: &mut kvm_sregs) {
    flat_segments(sregs, code64());
    sregs.cr3 = PML4_ADDR;
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.efer = EFER_LME | EFER_LMA;
}

/// System registers for 32-bit flat protected mode with paging off, as the
/// PVH boot protocol enters a kernel: CS a 32-bit code segment
/// ([`SEL_CODE32`]) and the other segments [`data`], all base 0 and limit
/// 4 GiB; CR0 = PE (and ET); CR4 and EFER zero; the GDT of
/// [`write_tables`] loaded (PVH leaves it undefined: the guest loads its
/// own before reloading a segment).
pub fn flat32_sregs(sregs: &mut kvm_sregs) {
    flat_segments(sregs, code32());
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.cr0 = CR0_PE | CR0_ET;
    sregs.efer = 0;
}

/// `code` in CS, [`data`] in every data segment, the TSS, the GDT of
/// [`write_tables`] and an empty IDT.
fn flat_segments(sregs: &mut kvm_sregs, code: kvm_segment) {
    sregs.cs = code;
    let d = data();
    sregs.ds = d;
    sregs.es = d;
    sregs.fs = d;
    sregs.gs = d;
    sregs.ss = d;
    sregs.tr = tss();
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = 6 * 8 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
}

/// General registers at entry: RIP at the image entry, RDI = vCPU index,
/// RSI = the test's argument.
pub fn entry_regs(entry: u64, vcpu: u64, arg: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rdi: vcpu,
        rsi: arg,
        rflags: 0x2,
        rsp: 0,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn test_descriptor_code64_matches_canonical_value() {
        assert_eq!(descriptor(&code64()), 0x00af_9b00_0000_ffff);
        assert_eq!(descriptor(&data()), 0x00cf_9300_0000_ffff);
        assert_eq!(descriptor(&code32()), 0x00cf_9b00_0000_ffff);
    }

    #[test]
    fn test_write_tables_identity_maps_4gib() {
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_tables(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_ADDR)).unwrap();
        assert_eq!(pml4, PDPT_ADDR | 3);
        let pdpt3: u64 = mem.read_obj(GuestAddress(PDPT_ADDR + 24)).unwrap();
        assert_eq!(pdpt3, (PD_ADDR + 0x3000) | 3);
        // The last 2 MiB page of the 4th GiB maps to itself.
        let last: u64 = mem
            .read_obj(GuestAddress(PD_ADDR + 0x3000 + 511 * 8))
            .unwrap();
        assert_eq!(last, ((4u64 << 30) - (2 << 20)) | 0x83);
    }
}
