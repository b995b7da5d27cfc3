// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Guest-virtual (linear) memory access for hypercall pointer arguments.
//!
//! Pointer arguments of Xen hypercalls are guest *linear* addresses, valid
//! in the calling vCPU's current address space. Xen resolves them with
//! `copy_from_guest`/`copy_to_guest`, which for HVM guests end up in
//! `hvm_copy_from_guest_linear`/`hvm_copy_to_guest_linear`: the area is
//! walked one page at a time, each page is translated separately through the
//! guest's page tables, and any fault makes the whole hypercall fail with
//! `-EFAULT`. This module mirrors that:
//!
//! * [`translate`] walks the x86 paging structures (Intel SDM vol. 3, ch. 4)
//!   for one linear address: paging off, 32-bit paging (with PSE and
//!   PSE-36), PAE paging, and 4-level and 5-level (LA57) paging.
//! * [`GuestVirt`] copies buffers and objects to and from guest-virtual
//!   memory page by page, so a buffer may straddle any number of pages
//!   mapped to unrelated guest frames.
//!
//! Accesses are treated as supervisor (CPL 0) accesses, since hypercalls
//! come from the guest kernel: the U/S bit is not checked, and a read-only
//! mapping is writable when CR0.WP is clear. Like Xen's HVM copy path, the
//! walk does not set the Accessed or Dirty bits of the entries it uses.
//! Protection keys, SMAP/SMEP and the NX bit do not apply to these accesses
//! and are ignored.
//!
//! Nothing here panics on any guest-controlled value: page-table contents,
//! register values, addresses and lengths only ever produce a [`Fault`].

use std::fmt;
use std::ops::Range;

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend};

use xen_abi::x86::{
    CR0_PE, CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, CR4_PSE, EFER_LMA, PAGE_SIZE, PTE_P, PTE_PS, PTE_RW,
};

/// Mask of the offset within a 4 KiB page.
const PAGE_OFFSET_MASK: u64 = PAGE_SIZE - 1;
/// Physical-address bits 51:12 of a 64-bit entry (MAXPHYADDR assumed 52).
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Physical-address bits 31:12 of a 32-bit paging entry or CR3.
const ADDR_MASK_32: u64 = 0xffff_f000;
/// Bits 31:5 of CR3 in PAE mode: the PDPT address.
const CR3_PAE_MASK: u64 = 0xffff_ffe0;
/// Bits 31:22 of a 32-bit PDE mapping a 4 MiB page.
const PSE_BASE_MASK: u64 = 0xffc0_0000;
/// Offset within a 4 MiB page.
const PSE_OFFSET_MASK: u64 = 0x3f_ffff;

/// The paging registers of the calling vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagingRegs {
    /// CR0: PE (bit 0), WP (bit 16) and PG (bit 31) are used.
    pub cr0: u64,
    /// CR3: the root of the paging structures.
    pub cr3: u64,
    /// CR4: PSE (bit 4), PAE (bit 5) and LA57 (bit 12) are used.
    pub cr4: u64,
    /// IA32_EFER: LMA (bit 10) is used.
    pub efer: u64,
}

/// Why an access faulted.
///
/// Xen turns every one of these into `-EFAULT` for the hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// A paging-structure entry or the final page is not present.
    #[error("Guest linear address {gva:#x} is not mapped.")]
    NotPresent {
        /// The linear address being translated.
        gva: u64,
    },
    /// A write hit a read-only mapping (the R/W bit is clear at some level of
    /// the walk and CR0.WP is set).
    #[error("Guest linear address {gva:#x} is mapped read-only.")]
    ReadOnly {
        /// The linear address being written.
        gva: u64,
    },
    /// A reserved bit was set in a paging-structure entry (only the PS bit
    /// of PML5Es, PML4Es and PAE PDPTEs is checked).
    #[error("Reserved bit set while translating guest linear address {gva:#x}.")]
    Reserved {
        /// The linear address being translated.
        gva: u64,
    },
    /// The address is not canonical (4-level: bits 63:47 not all equal;
    /// 5-level: bits 63:56 not all equal), or the accessed area wraps around
    /// the end of the 64-bit address space.
    #[error("Guest linear address {gva:#x} is not canonical.")]
    NonCanonical {
        /// The offending linear address (for a wrapping area: its start).
        gva: u64,
    },
    /// The translated guest-physical address is not backed by guest RAM (or a
    /// paging structure lives outside RAM).
    #[error("Guest physical address {gpa:#x} is not in guest RAM.")]
    NoMemory {
        /// The guest-physical address that is not backed: a paging-structure
        /// entry, or the start of the data chunk being copied.
        gpa: u64,
    },
    /// The paging mode is not supported (CR0.PG without CR0.PE, or
    /// EFER.LMA with paging on but without CR4.PAE).
    #[error("The vCPU paging mode is not supported.")]
    Unsupported,
}

/// The kind of access being translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A read: only the present bits matter.
    Read,
    /// A write: read-only mappings fault when CR0.WP is set.
    Write,
}

/// Result of a successful page walk.
#[derive(Clone, Copy, Debug)]
struct Walk {
    /// The guest-physical address.
    gpa: u64,
    /// Whether the R/W bit was set at every level that has one.
    writable: bool,
}

/// Translates one linear address to a guest-physical address.
///
/// The walk uses the paging mode selected by `regs`: no paging when CR0.PG
/// is clear (the address is truncated to 32 bits unless EFER.LMA is set),
/// 32-bit paging, PAE paging, or 4/5-level paging when EFER.LMA is set. For
/// 32-bit and PAE paging only the low 32 bits of `gva` are used.
///
/// The returned address is not checked against guest RAM: only the paging
/// structures must live in RAM. Faults are reported with `gva` as given.
pub fn translate<M: GuestMemoryBackend>(
    mem: &M,
    regs: &PagingRegs,
    gva: u64,
    access: Access,
) -> Result<u64, Fault> {
    let long_mode = regs.efer & EFER_LMA != 0;
    if regs.cr0 & CR0_PG == 0 {
        // Real mode or protected mode without paging: linear = physical.
        return Ok(if long_mode { gva } else { gva & 0xffff_ffff });
    }
    if regs.cr0 & CR0_PE == 0 {
        return Err(Fault::Unsupported);
    }
    let walk = if long_mode {
        if regs.cr4 & CR4_PAE == 0 {
            return Err(Fault::Unsupported);
        }
        walk_long(mem, regs, gva)?
    } else if regs.cr4 & CR4_PAE != 0 {
        walk_pae(mem, regs, gva)?
    } else {
        walk_32(mem, regs, gva)?
    };
    if access == Access::Write && !walk.writable && regs.cr0 & CR0_WP != 0 {
        return Err(Fault::ReadOnly { gva });
    }
    Ok(walk.gpa)
}

/// Reads a 64-bit little-endian paging-structure entry at `gpa`.
fn read_entry64<M: GuestMemoryBackend>(mem: &M, gpa: u64) -> Result<u64, Fault> {
    mem.read_obj::<u64>(GuestAddress(gpa))
        .map(u64::from_le)
        .map_err(|_| Fault::NoMemory { gpa })
}

/// Reads a 32-bit little-endian paging-structure entry at `gpa`.
fn read_entry32<M: GuestMemoryBackend>(mem: &M, gpa: u64) -> Result<u64, Fault> {
    mem.read_obj::<u32>(GuestAddress(gpa))
        .map(|e| u64::from(u32::from_le(e)))
        .map_err(|_| Fault::NoMemory { gpa })
}

/// 32-bit paging: a page directory and page tables of 1024 4-byte entries.
fn walk_32<M: GuestMemoryBackend>(mem: &M, regs: &PagingRegs, gva: u64) -> Result<Walk, Fault> {
    let la = gva & 0xffff_ffff;
    let pde_gpa = (regs.cr3 & ADDR_MASK_32) + ((la >> 22) << 2);
    let pde = read_entry32(mem, pde_gpa)?;
    if pde & PTE_P == 0 {
        return Err(Fault::NotPresent { gva });
    }
    let mut writable = pde & PTE_RW != 0;
    if pde & PTE_PS != 0 && regs.cr4 & CR4_PSE != 0 {
        // 4 MiB page; PSE-36 puts physical-address bits 39:32 in bits 20:13.
        let high = ((pde >> 13) & 0xff) << 32;
        let gpa = high | (pde & PSE_BASE_MASK) | (la & PSE_OFFSET_MASK);
        return Ok(Walk { gpa, writable });
    }
    let pte_gpa = (pde & ADDR_MASK_32) + (((la >> 12) & 0x3ff) << 2);
    let pte = read_entry32(mem, pte_gpa)?;
    if pte & PTE_P == 0 {
        return Err(Fault::NotPresent { gva });
    }
    writable &= pte & PTE_RW != 0;
    Ok(Walk {
        gpa: (pte & ADDR_MASK_32) | (la & PAGE_OFFSET_MASK),
        writable,
    })
}

/// PAE paging: a 4-entry PDPT, then 512-entry page directories and tables.
fn walk_pae<M: GuestMemoryBackend>(mem: &M, regs: &PagingRegs, gva: u64) -> Result<Walk, Fault> {
    let la = gva & 0xffff_ffff;
    let pdpte_gpa = (regs.cr3 & CR3_PAE_MASK) + ((la >> 30) << 3);
    let pdpte = read_entry64(mem, pdpte_gpa)?;
    if pdpte & PTE_P == 0 {
        return Err(Fault::NotPresent { gva });
    }
    if pdpte & PTE_PS != 0 {
        return Err(Fault::Reserved { gva });
    }
    // PAE PDPTEs have no R/W bit (bit 1 is reserved), so they do not take
    // part in write protection.
    walk_levels(mem, pdpte & ADDR_MASK, gva, la, 2)
}

/// 4-level or 5-level paging, after the canonical-address check.
fn walk_long<M: GuestMemoryBackend>(mem: &M, regs: &PagingRegs, gva: u64) -> Result<Walk, Fault> {
    let levels: u32 = if regs.cr4 & CR4_LA57 != 0 { 5 } else { 4 };
    // Bits above the translated ones (47 or 56) must copy that bit.
    let unused = 64 - (12 + 9 * levels);
    if (((gva << unused) as i64) >> unused) as u64 != gva {
        return Err(Fault::NonCanonical { gva });
    }
    walk_levels(mem, regs.cr3 & ADDR_MASK, gva, gva, levels)
}

/// Walks 512-entry tables of 8-byte entries from `level` (1 = page table)
/// down, starting at the table at `table`. `la` is the linear address whose
/// bits index the tables; `gva` is what faults report.
fn walk_levels<M: GuestMemoryBackend>(
    mem: &M,
    mut table: u64,
    gva: u64,
    la: u64,
    mut level: u32,
) -> Result<Walk, Fault> {
    let mut writable = true;
    loop {
        let shift = 12 + 9 * (level - 1);
        let entry_gpa = table + (((la >> shift) & 0x1ff) << 3);
        let entry = read_entry64(mem, entry_gpa)?;
        if entry & PTE_P == 0 {
            return Err(Fault::NotPresent { gva });
        }
        writable &= entry & PTE_RW != 0;
        let large = entry & PTE_PS != 0;
        if large && level >= 4 {
            // PS is reserved in PML4Es and PML5Es.
            return Err(Fault::Reserved { gva });
        }
        // In a PTE bit 7 is PAT, not PS. In PDEs/PDPTEs PS maps a 2 MiB/1 GiB
        // page, whose PAT bit (12) lies below the base-address bits used.
        if level == 1 || large {
            let offset_mask = (1u64 << shift) - 1;
            let gpa = (entry & ADDR_MASK & !offset_mask) | (la & offset_mask);
            return Ok(Walk { gpa, writable });
        }
        table = entry & ADDR_MASK;
        level -= 1;
    }
}

/// Calls `f` for each page-bounded chunk of the `len`-byte area at `gva`,
/// with the chunk's linear address and its range within the area.
///
/// Nothing is called for `len == 0`. An area whose end would wrap past the
/// end of the 64-bit address space faults with `NonCanonical` at its start
/// before `f` is called at all.
fn for_each_page(
    gva: u64,
    len: usize,
    mut f: impl FnMut(u64, Range<usize>) -> Result<(), Fault>,
) -> Result<(), Fault> {
    if len == 0 {
        return Ok(());
    }
    let last = u64::try_from(len - 1).map_err(|_| Fault::NonCanonical { gva })?;
    gva.checked_add(last).ok_or(Fault::NonCanonical { gva })?;
    let mut done = 0usize;
    while done < len {
        // Cannot wrap: the whole area fits below 2^64.
        let addr = gva.wrapping_add(done as u64);
        // 1..=PAGE_SIZE, so it fits in any usize.
        let room = (PAGE_SIZE - (addr & PAGE_OFFSET_MASK)) as usize;
        let chunk = room.min(len - done);
        f(addr, done..done + chunk)?;
        done += chunk;
    }
    Ok(())
}

/// Guest-virtual access for one vCPU's current paging state.
///
/// Holds the guest memory and a snapshot of the vCPU's paging registers;
/// build a new one per hypercall (the guest may switch page tables between
/// hypercalls).
pub struct GuestVirt<'a, M: GuestMemoryBackend> {
    /// Guest-physical memory holding the paging structures and the data.
    mem: &'a M,
    /// The calling vCPU's paging registers.
    regs: PagingRegs,
}

impl<M: GuestMemoryBackend> Clone for GuestVirt<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: GuestMemoryBackend> Copy for GuestVirt<'_, M> {}

impl<M: GuestMemoryBackend> fmt::Debug for GuestVirt<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestVirt")
            .field("regs", &self.regs)
            .finish_non_exhaustive()
    }
}

impl<'a, M: GuestMemoryBackend> GuestVirt<'a, M> {
    /// Creates an accessor for guest memory `mem` as seen through `regs`.
    pub fn new(mem: &'a M, regs: PagingRegs) -> Self {
        Self { mem, regs }
    }

    /// Returns the paging registers this accessor translates with.
    pub fn regs(&self) -> &PagingRegs {
        &self.regs
    }

    /// Returns the guest-physical memory.
    pub fn memory(&self) -> &'a M {
        self.mem
    }

    /// Copies `buf.len()` bytes from `gva`, page by page (each page translated
    /// separately; a buffer may straddle any number of pages).
    ///
    /// On a fault `buf` may have been partly filled. An empty `buf` accesses
    /// nothing and always succeeds. With 32-bit linear addresses (paging off
    /// outside long mode, 32-bit and PAE paging) an area running past 4 GiB
    /// wraps to linear address 0, as on hardware; an area running past 2^64
    /// faults with [`Fault::NonCanonical`] at `gva` before any access.
    pub fn read(&self, gva: u64, buf: &mut [u8]) -> Result<(), Fault> {
        for_each_page(gva, buf.len(), |addr, range| {
            let gpa = translate(self.mem, &self.regs, addr, Access::Read)?;
            self.mem
                .read_slice(&mut buf[range], GuestAddress(gpa))
                .map_err(|_| Fault::NoMemory { gpa })
        })
    }

    /// Copies `buf` into guest memory at `gva`, page by page, requiring
    /// writable mappings.
    ///
    /// All pages are translated, and their frames checked to be guest RAM,
    /// before anything is written, so a fault writes nothing. The copy is not
    /// atomic with respect to other vCPUs. An empty `buf` accesses nothing
    /// and always succeeds. Address wrapping is as for [`GuestVirt::read`].
    pub fn write(&self, gva: u64, buf: &[u8]) -> Result<(), Fault> {
        let mut chunks: Vec<(u64, Range<usize>)> = Vec::new();
        for_each_page(gva, buf.len(), |addr, range| {
            let gpa = translate(self.mem, &self.regs, addr, Access::Write)?;
            if !GuestMemoryBackend::check_range(self.mem, GuestAddress(gpa), range.len()) {
                return Err(Fault::NoMemory { gpa });
            }
            chunks.push((gpa, range));
            Ok(())
        })?;
        for (gpa, range) in chunks {
            self.mem
                .write_slice(&buf[range], GuestAddress(gpa))
                .map_err(|_| Fault::NoMemory { gpa })?;
        }
        Ok(())
    }

    /// Reads a `T` from `gva`, which may straddle pages and need not be
    /// aligned.
    pub fn read_obj<T: ByteValued>(&self, gva: u64) -> Result<T, Fault> {
        let mut val = T::zeroed();
        self.read(gva, val.as_mut_slice())?;
        Ok(val)
    }

    /// Writes `val` to `gva`, which may straddle pages and need not be
    /// aligned. A fault writes nothing.
    pub fn write_obj<T: ByteValued>(&self, gva: u64, val: &T) -> Result<(), Fault> {
        self.write(gva, val.as_slice())
    }

    /// Translates a `len`-byte area that must lie within one page (e.g. a
    /// `vcpu_info` being registered).
    ///
    /// Returns `Ok(None)` if the area crosses a page boundary (checked first,
    /// without touching memory), `Ok(Some(gpa))` with the guest-physical
    /// address of its first byte otherwise, and `Err` if the translation
    /// faults or the area is not in guest RAM ([`Fault::NoMemory`]). For
    /// `len == 0` the byte at `gva` is translated and must be in RAM.
    pub fn translate_area(&self, gva: u64, len: u64, access: Access) -> Result<Option<u64>, Fault> {
        if len > PAGE_SIZE - (gva & PAGE_OFFSET_MASK) {
            return Ok(None);
        }
        let gpa = translate(self.mem, &self.regs, gva, access)?;
        // len <= PAGE_SIZE here, so it fits in any usize.
        let count = len.max(1) as usize;
        if !GuestMemoryBackend::check_range(self.mem, GuestAddress(gpa), count) {
            return Err(Fault::NoMemory { gpa });
        }
        Ok(Some(gpa))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vm_memory::GuestMemoryMmap;
    use xen_abi::x86::EFER_LME;

    type Mem = GuestMemoryMmap<()>;

    const MEM_SIZE: u64 = 16 << 20;
    /// Flags of intermediate and leaf entries built by default.
    const PRW: u64 = PTE_P | PTE_RW;

    fn new_mem(size: u64) -> Mem {
        Mem::from_ranges(&[(GuestAddress(0), size as usize)]).unwrap()
    }

    fn regs_32(cr3: u64, pse: bool) -> PagingRegs {
        PagingRegs {
            cr0: CR0_PE | CR0_PG | CR0_WP,
            cr3,
            cr4: if pse { CR4_PSE } else { 0 },
            efer: 0,
        }
    }

    fn regs_pae(cr3: u64) -> PagingRegs {
        PagingRegs {
            cr0: CR0_PE | CR0_PG | CR0_WP,
            cr3,
            cr4: CR4_PAE,
            efer: 0,
        }
    }

    fn regs_long(cr3: u64, la57: bool) -> PagingRegs {
        PagingRegs {
            cr0: CR0_PE | CR0_PG | CR0_WP,
            cr3,
            cr4: CR4_PAE | if la57 { CR4_LA57 } else { 0 },
            efer: EFER_LME | EFER_LMA,
        }
    }

    /// Test-only page-table builder over 16 MiB of guest RAM. Tables are
    /// allocated from 1 MiB upwards; tests put data frames at 8 MiB and up.
    struct Builder {
        mem: Mem,
        next: u64,
    }

    impl Builder {
        fn new() -> Self {
            Self {
                mem: new_mem(MEM_SIZE),
                next: 0x10_0000,
            }
        }

        fn alloc(&mut self) -> u64 {
            let page = self.next;
            self.next += PAGE_SIZE;
            page
        }

        fn w64(&self, gpa: u64, val: u64) {
            self.mem.write_obj(val, GuestAddress(gpa)).unwrap();
        }

        fn r64(&self, gpa: u64) -> u64 {
            self.mem.read_obj(GuestAddress(gpa)).unwrap()
        }

        fn w32(&self, gpa: u64, val: u32) {
            self.mem.write_obj(val, GuestAddress(gpa)).unwrap();
        }

        fn r32(&self, gpa: u64) -> u32 {
            self.mem.read_obj(GuestAddress(gpa)).unwrap()
        }

        fn fill(&self, gpa: u64, len: usize, byte: u8) {
            self.mem
                .write_slice(&vec![byte; len], GuestAddress(gpa))
                .unwrap();
        }

        fn bytes(&self, gpa: u64, len: usize) -> Vec<u8> {
            let mut v = vec![0; len];
            self.mem.read_slice(&mut v, GuestAddress(gpa)).unwrap();
            v
        }

        /// Address of the 8-byte entry for `gva` at `level` of a hierarchy of
        /// `levels` levels rooted at `root`, following (and creating, with
        /// `PRW`) the tables above it. For PAE pass `levels == 3`.
        fn entry64(&mut self, root: u64, levels: u32, gva: u64, level: u32) -> u64 {
            let mut table = root;
            let mut l = levels;
            loop {
                let shift = 12 + 9 * (l - 1);
                let entry = table + (((gva >> shift) & 0x1ff) << 3);
                if l == level {
                    return entry;
                }
                let mut val = self.r64(entry);
                if val & PTE_P == 0 {
                    val = self.alloc() | PRW;
                    self.w64(entry, val);
                }
                table = val & ADDR_MASK;
                l -= 1;
            }
        }

        /// Maps `gva` to `gpa` with a leaf at `leaf_level` (1: 4 KiB, 2: 2 MiB,
        /// 3: 1 GiB) carrying `flags`.
        fn map64(
            &mut self,
            root: u64,
            levels: u32,
            gva: u64,
            gpa: u64,
            leaf_level: u32,
            flags: u64,
        ) {
            let entry = self.entry64(root, levels, gva, leaf_level);
            let ps = if leaf_level > 1 { PTE_PS } else { 0 };
            self.w64(entry, gpa | flags | ps);
        }

        /// Clears `bits` in the entry for `gva` at `level`.
        fn clear64(&mut self, root: u64, levels: u32, gva: u64, level: u32, bits: u64) {
            let entry = self.entry64(root, levels, gva, level);
            let val = self.r64(entry);
            self.w64(entry, val & !bits);
        }

        /// 32-bit paging: maps `gva` to `gpa` (4 KiB, or a 4 MiB PSE page).
        fn map32(&mut self, pd: u64, gva: u64, gpa: u64, large: bool, flags: u32) {
            let pde = pd + ((gva >> 22) << 2);
            if large {
                let high = (((gpa >> 32) & 0xff) << 13) as u32;
                self.w32(
                    pde,
                    (gpa as u32 & 0xffc0_0000) | high | flags | PTE_PS as u32,
                );
                return;
            }
            let mut val = self.r32(pde);
            if val & 1 == 0 {
                val = self.alloc() as u32 | PRW as u32;
                self.w32(pde, val);
            }
            let pte = u64::from(val & 0xffff_f000) + (((gva >> 12) & 0x3ff) << 2);
            self.w32(pte, gpa as u32 | flags);
        }

        fn virt(&self, regs: PagingRegs) -> GuestVirt<'_, Mem> {
            GuestVirt::new(&self.mem, regs)
        }
    }

    /// Builds 4-level (or 5-level) tables and returns (builder, regs).
    fn long_setup(la57: bool) -> (Builder, PagingRegs, u32) {
        let mut b = Builder::new();
        let root = b.alloc();
        (b, regs_long(root, la57), if la57 { 5 } else { 4 })
    }

    #[test]
    fn test_translate_paging_off_legacy_truncates_to_32_bits() {
        let mem = new_mem(MEM_SIZE);
        let real = PagingRegs::default();
        assert_eq!(
            translate(&mem, &real, 0x1_0000_1234, Access::Read),
            Ok(0x1234)
        );
        let prot = PagingRegs {
            cr0: CR0_PE,
            ..Default::default()
        };
        assert_eq!(
            translate(&mem, &prot, 0xffff_ffff_ffff_fffe, Access::Write),
            Ok(0xffff_fffe)
        );
    }

    #[test]
    fn test_translate_paging_off_long_mode_is_identity() {
        let mem = new_mem(MEM_SIZE);
        let regs = PagingRegs {
            cr0: CR0_PE,
            efer: EFER_LMA,
            ..Default::default()
        };
        assert_eq!(
            translate(&mem, &regs, 0x1_0000_1234, Access::Read),
            Ok(0x1_0000_1234)
        );
    }

    #[test]
    fn test_guestvirt_read_paging_off_copies_physical_bytes() {
        let b = Builder::new();
        b.fill(0x2000, 16, 0x5a);
        let v = b.virt(PagingRegs::default());
        let mut buf = [0u8; 16];
        v.read(0x1_0000_2000, &mut buf).unwrap();
        assert_eq!(buf, [0x5a; 16]);
    }

    #[test]
    fn test_translate_pg_without_pe_is_unsupported() {
        let mem = new_mem(MEM_SIZE);
        let regs = PagingRegs {
            cr0: CR0_PG,
            ..Default::default()
        };
        assert_eq!(
            translate(&mem, &regs, 0x1000, Access::Read),
            Err(Fault::Unsupported)
        );
    }

    #[test]
    fn test_translate_long_mode_without_pae_is_unsupported() {
        let mem = new_mem(MEM_SIZE);
        let regs = PagingRegs {
            cr0: CR0_PE | CR0_PG,
            efer: EFER_LMA,
            ..Default::default()
        };
        assert_eq!(
            translate(&mem, &regs, 0x1000, Access::Read),
            Err(Fault::Unsupported)
        );
    }

    #[test]
    fn test_translate_32bit_4k_page_maps() {
        let mut b = Builder::new();
        let pd = b.alloc();
        b.map32(pd, 0xc012_3000, 0x80_5000, false, PRW as u32);
        let regs = regs_32(pd, false);
        assert_eq!(
            translate(&b.mem, &regs, 0xc012_3abc, Access::Write),
            Ok(0x80_5abc)
        );
        // Only the low 32 bits of the address are used.
        assert_eq!(
            translate(&b.mem, &regs, 0x7_c012_3abc, Access::Read),
            Ok(0x80_5abc)
        );
        assert_eq!(
            translate(&b.mem, &regs, 0xc012_4000, Access::Read),
            Err(Fault::NotPresent { gva: 0xc012_4000 })
        );
    }

    #[test]
    fn test_translate_32bit_pse_4m_page_maps() {
        let mut b = Builder::new();
        let pd = b.alloc();
        b.map32(
            pd,
            0xc040_0000,
            0x0000_0012_0080_0000 & !0x3f_ffff,
            true,
            PRW as u32,
        );
        let regs = regs_32(pd, true);
        // PSE-36: physical bits 39:32 come from PDE bits 20:13.
        assert_eq!(
            translate(&b.mem, &regs, 0xc07f_fff8, Access::Read),
            Ok(0x0000_0012_00bf_fff8)
        );
    }

    #[test]
    fn test_translate_32bit_ps_without_pse_uses_page_table() {
        let mut b = Builder::new();
        let pd = b.alloc();
        let pt = b.alloc();
        // PS set but CR4.PSE clear: the PDE points to a page table.
        b.w32(
            pd + ((0xc040_0000u64 >> 22) << 2),
            pt as u32 | PRW as u32 | PTE_PS as u32,
        );
        b.w32(pt + 4, 0x90_0000 | PRW as u32);
        let regs = regs_32(pd, false);
        assert_eq!(
            translate(&b.mem, &regs, 0xc040_1010, Access::Read),
            Ok(0x90_0010)
        );
    }

    #[test]
    fn test_translate_32bit_not_present_each_level_faults() {
        let mut b = Builder::new();
        let pd = b.alloc();
        let gva = 0x0040_1000;
        b.map32(pd, gva, 0x80_0000, false, PRW as u32);
        let regs = regs_32(pd, false);
        let pde = pd + ((gva >> 22) << 2);
        let pt = u64::from(b.r32(pde) & 0xffff_f000);
        let pte = pt + (((gva >> 12) & 0x3ff) << 2);
        for entry in [pte, pde] {
            let val = b.r32(entry);
            b.w32(entry, val & !1);
            assert_eq!(
                translate(&b.mem, &regs, gva, Access::Read),
                Err(Fault::NotPresent { gva })
            );
        }
    }

    #[test]
    fn test_translate_32bit_read_only_with_wp_faults_writes() {
        let mut b = Builder::new();
        let pd = b.alloc();
        b.map32(pd, 0x1000, 0x80_0000, false, PTE_P as u32);
        let mut regs = regs_32(pd, false);
        assert_eq!(
            translate(&b.mem, &regs, 0x1000, Access::Read),
            Ok(0x80_0000)
        );
        assert_eq!(
            translate(&b.mem, &regs, 0x1000, Access::Write),
            Err(Fault::ReadOnly { gva: 0x1000 })
        );
        regs.cr0 &= !CR0_WP;
        assert_eq!(
            translate(&b.mem, &regs, 0x1000, Access::Write),
            Ok(0x80_0000)
        );
    }

    #[test]
    fn test_translate_pae_4k_page_maps() {
        let mut b = Builder::new();
        let pdpt = b.alloc() + 0x20; // 32-byte aligned, not page aligned
        let gva = 0xc012_3456;
        b.map64(pdpt, 3, gva, 0x80_5000, 1, PRW);
        // PDPTEs have no R/W bit: only P, yet writes work.
        b.clear64(pdpt, 3, gva, 3, PTE_RW);
        let regs = regs_pae(pdpt);
        assert_eq!(translate(&b.mem, &regs, gva, Access::Write), Ok(0x80_5456));
        assert_eq!(
            translate(&b.mem, &regs, 0xffff_ffff_0000_0000 | gva, Access::Read),
            Ok(0x80_5456)
        );
    }

    #[test]
    fn test_translate_pae_2m_page_maps() {
        let mut b = Builder::new();
        let pdpt = b.alloc();
        let gva = 0x8020_0000;
        b.map64(pdpt, 3, gva, 0x0000_0123_4560_0000, 2, PRW);
        let regs = regs_pae(pdpt);
        assert_eq!(
            translate(&b.mem, &regs, gva + 0x1f_fff0, Access::Read),
            Ok(0x0000_0123_457f_fff0)
        );
    }

    #[test]
    fn test_translate_pae_pdpte_ps_is_reserved() {
        let mut b = Builder::new();
        let pdpt = b.alloc();
        b.w64(pdpt + 8, 0x4000_0000 | PTE_P | PTE_PS);
        let regs = regs_pae(pdpt);
        assert_eq!(
            translate(&b.mem, &regs, 0x4000_0000, Access::Read),
            Err(Fault::Reserved { gva: 0x4000_0000 })
        );
    }

    #[test]
    fn test_translate_pae_not_present_each_level_faults() {
        let mut b = Builder::new();
        let pdpt = b.alloc();
        let gva = 0x4060_7000;
        b.map64(pdpt, 3, gva, 0x80_0000, 1, PRW);
        let regs = regs_pae(pdpt);
        assert_eq!(translate(&b.mem, &regs, gva, Access::Read), Ok(0x80_0000));
        for level in 1..=3 {
            b.clear64(pdpt, 3, gva, level, PTE_P);
            assert_eq!(
                translate(&b.mem, &regs, gva, Access::Read),
                Err(Fault::NotPresent { gva })
            );
        }
    }

    #[test]
    fn test_translate_long4_4k_2m_1g_pages_map() {
        let (mut b, regs, levels) = long_setup(false);
        let root = regs.cr3;
        b.map64(root, levels, 0xffff_8000_0000_1000, 0x80_3000, 1, PRW);
        b.map64(
            root,
            levels,
            0x0000_7f00_0020_0000,
            0x0000_0001_0060_0000,
            2,
            PRW,
        );
        b.map64(
            root,
            levels,
            0xffff_ffff_c000_0000,
            0x000f_ffff_c000_0000,
            3,
            PRW,
        );
        assert_eq!(
            translate(&b.mem, &regs, 0xffff_8000_0000_1ff8, Access::Write),
            Ok(0x80_3ff8)
        );
        assert_eq!(
            translate(&b.mem, &regs, 0x0000_7f00_003f_ffff, Access::Write),
            Ok(0x0000_0001_007f_ffff)
        );
        assert_eq!(
            translate(&b.mem, &regs, 0xffff_ffff_dead_beef, Access::Write),
            Ok(0x000f_ffff_dead_beef)
        );
    }

    #[test]
    fn test_translate_long4_ignores_cr3_pcid_and_entry_nx_bits() {
        let (mut b, mut regs, levels) = long_setup(false);
        b.map64(regs.cr3, levels, 0x40_0000, 0x80_0000, 1, PRW | (1 << 63));
        regs.cr3 |= (1 << 63) | 0x123;
        assert_eq!(
            translate(&b.mem, &regs, 0x40_0010, Access::Read),
            Ok(0x80_0010)
        );
    }

    #[test]
    fn test_translate_long5_4k_page_maps() {
        let (mut b, regs, levels) = long_setup(true);
        // Canonical in 5-level paging but not in 4-level paging.
        let gva = 0xff12_3456_789a_b000;
        b.map64(regs.cr3, levels, gva, 0x80_1000, 1, PRW);
        assert_eq!(
            translate(&b.mem, &regs, gva + 0x10, Access::Write),
            Ok(0x80_1010)
        );
        let regs4 = PagingRegs {
            cr4: CR4_PAE,
            ..regs
        };
        assert_eq!(
            translate(&b.mem, &regs4, gva, Access::Read),
            Err(Fault::NonCanonical { gva })
        );
    }

    #[test]
    fn test_translate_long_not_present_each_level_faults() {
        for la57 in [false, true] {
            let (mut b, regs, levels) = long_setup(la57);
            let gva = 0x0000_1234_5678_9000;
            b.map64(regs.cr3, levels, gva, 0x80_0000, 1, PRW);
            assert_eq!(translate(&b.mem, &regs, gva, Access::Read), Ok(0x80_0000));
            for level in 1..=levels {
                b.clear64(regs.cr3, levels, gva, level, PTE_P);
                assert_eq!(
                    translate(&b.mem, &regs, gva, Access::Read),
                    Err(Fault::NotPresent { gva })
                );
            }
        }
    }

    #[test]
    fn test_translate_long_read_only_any_level_with_wp_faults_writes() {
        for level in 1..=4 {
            let (mut b, mut regs, levels) = long_setup(false);
            let gva = 0x0000_1234_5678_9000;
            b.map64(regs.cr3, levels, gva, 0x80_0000, 1, PRW);
            b.clear64(regs.cr3, levels, gva, level, PTE_RW);
            assert_eq!(translate(&b.mem, &regs, gva, Access::Read), Ok(0x80_0000));
            assert_eq!(
                translate(&b.mem, &regs, gva, Access::Write),
                Err(Fault::ReadOnly { gva })
            );
            regs.cr0 &= !CR0_WP;
            assert_eq!(translate(&b.mem, &regs, gva, Access::Write), Ok(0x80_0000));
        }
    }

    #[test]
    fn test_translate_long_pml4e_ps_is_reserved() {
        let (b, regs, _) = long_setup(false);
        b.w64(regs.cr3, 0x80_0000 | PRW | PTE_PS);
        assert_eq!(
            translate(&b.mem, &regs, 0x1000, Access::Read),
            Err(Fault::Reserved { gva: 0x1000 })
        );
    }

    #[test]
    fn test_translate_long5_pml5e_ps_is_reserved() {
        let (b, regs, _) = long_setup(true);
        b.w64(regs.cr3, 0x80_0000 | PRW | PTE_PS);
        assert_eq!(
            translate(&b.mem, &regs, 0x1000, Access::Read),
            Err(Fault::Reserved { gva: 0x1000 })
        );
    }

    #[test]
    fn test_translate_long4_non_canonical_faults() {
        let (b, regs, _) = long_setup(false);
        for gva in [
            0x0000_8000_0000_0000,
            0xffff_7fff_ffff_ffff,
            0x8000_0000_0000_0000,
        ] {
            assert_eq!(
                translate(&b.mem, &regs, gva, Access::Read),
                Err(Fault::NonCanonical { gva })
            );
        }
        let regs5 = PagingRegs {
            cr4: regs.cr4 | CR4_LA57,
            ..regs
        };
        let gva = 0x0100_0000_0000_0000;
        assert_eq!(
            translate(&b.mem, &regs5, gva, Access::Read),
            Err(Fault::NonCanonical { gva })
        );
    }

    #[test]
    fn test_translate_table_outside_ram_is_no_memory() {
        let (b, regs, _) = long_setup(false);
        // PML4E points to a PDPT beyond the end of RAM.
        b.w64(regs.cr3, 0x4000_0000 | PRW);
        assert_eq!(
            translate(&b.mem, &regs, 0x1000, Access::Read),
            Err(Fault::NoMemory { gpa: 0x4000_0000 })
        );
        // CR3 itself outside RAM.
        let far = PagingRegs {
            cr3: 0x10_0000_0000,
            ..regs
        };
        assert_eq!(
            translate(&b.mem, &far, 0x1000, Access::Read),
            Err(Fault::NoMemory {
                gpa: 0x10_0000_0000
            })
        );
    }

    #[test]
    fn test_guestvirt_final_page_outside_ram_is_no_memory_and_writes_nothing() {
        let (mut b, regs, levels) = long_setup(false);
        b.map64(regs.cr3, levels, 0x1000, 0x80_0000, 1, PRW);
        b.map64(regs.cr3, levels, 0x2000, 0x4000_0000, 1, PRW);
        let v = b.virt(regs);
        assert_eq!(
            translate(&b.mem, &regs, 0x2000, Access::Read),
            Ok(0x4000_0000)
        );
        let mut buf = [0u8; 32];
        assert_eq!(
            v.read(0x2000, &mut buf),
            Err(Fault::NoMemory { gpa: 0x4000_0000 })
        );
        assert_eq!(
            v.write(0x1ff0, &[0xaa; 32]),
            Err(Fault::NoMemory { gpa: 0x4000_0000 })
        );
        assert_eq!(b.bytes(0x80_0ff0, 16), vec![0; 16]);
    }

    #[test]
    fn test_guestvirt_read_straddling_non_contiguous_frames_returns_bytes() {
        let (mut b, regs, levels) = long_setup(false);
        let gva = 0xffff_8000_0010_0000;
        // Three pages mapped to frames in descending physical order.
        for (i, frame) in [0xa0_0000u64, 0x90_0000, 0x80_0000].into_iter().enumerate() {
            b.map64(regs.cr3, levels, gva + i as u64 * PAGE_SIZE, frame, 1, PRW);
            b.fill(frame, PAGE_SIZE as usize, 0x10 + i as u8);
        }
        let v = b.virt(regs);
        let mut buf = vec![0u8; 0x1010];
        v.read(gva + 0xff8, &mut buf).unwrap();
        let mut want = vec![0x10u8; 8];
        want.extend(vec![0x11u8; 0x1000]);
        want.extend(vec![0x12u8; 8]);
        assert_eq!(buf, want);
    }

    #[test]
    fn test_guestvirt_write_second_page_read_only_writes_nothing() {
        let (mut b, regs, levels) = long_setup(false);
        b.map64(regs.cr3, levels, 0x1000, 0x80_0000, 1, PRW);
        b.map64(regs.cr3, levels, 0x2000, 0x90_0000, 1, PTE_P);
        let v = b.virt(regs);
        assert_eq!(
            v.write(0x1ff0, &[0xaa; 32]),
            Err(Fault::ReadOnly { gva: 0x2000 })
        );
        assert_eq!(b.bytes(0x80_0ff0, 16), vec![0; 16]);
        assert_eq!(b.bytes(0x90_0000, 16), vec![0; 16]);
        // Without CR0.WP the supervisor write goes through.
        let v = b.virt(PagingRegs {
            cr0: regs.cr0 & !CR0_WP,
            ..regs
        });
        v.write(0x1ff0, &[0xaa; 32]).unwrap();
        assert_eq!(b.bytes(0x80_0ff0, 16), vec![0xaa; 16]);
        assert_eq!(b.bytes(0x90_0000, 16), vec![0xaa; 16]);
    }

    #[test]
    fn test_guestvirt_obj_straddling_pages_roundtrips() {
        let (mut b, regs, levels) = long_setup(false);
        b.map64(regs.cr3, levels, 0x1000, 0x90_0000, 1, PRW);
        b.map64(regs.cr3, levels, 0x2000, 0x80_0000, 1, PRW);
        let v = b.virt(regs);
        v.write_obj(0x1ffd, &0x1122_3344_5566_7788u64).unwrap();
        assert_eq!(v.read_obj::<u64>(0x1ffd), Ok(0x1122_3344_5566_7788));
        assert_eq!(b.bytes(0x90_0ffd, 3), vec![0x88, 0x77, 0x66]);
        assert_eq!(b.bytes(0x80_0000, 5), vec![0x55, 0x44, 0x33, 0x22, 0x11]);
        assert_eq!(
            v.read_obj::<u32>(0x3000),
            Err(Fault::NotPresent { gva: 0x3000 })
        );
    }

    #[test]
    fn test_guestvirt_zero_length_accesses_nothing() {
        let (b, regs, _) = long_setup(false);
        let v = b.virt(regs);
        // Unmapped and even non-canonical addresses are fine for len 0.
        assert_eq!(v.read(0x8000_0000_0000_0000, &mut []), Ok(()));
        assert_eq!(v.write(u64::MAX, &[]), Ok(()));
    }

    #[test]
    fn test_guestvirt_area_wrapping_u64_is_non_canonical() {
        let (mut b, regs, levels) = long_setup(false);
        let top = 0xffff_ffff_ffff_f000;
        b.map64(regs.cr3, levels, top, 0x80_0000, 1, PRW);
        b.map64(regs.cr3, levels, 0, 0x90_0000, 1, PRW);
        b.fill(0x80_0ff0, 16, 0x77);
        let v = b.virt(regs);
        // Ending exactly at 2^64 is fine.
        let mut buf = [0u8; 16];
        v.read(u64::MAX - 15, &mut buf).unwrap();
        assert_eq!(buf, [0x77; 16]);
        // One byte more wraps to 0: a fault, even though page 0 is mapped.
        let mut buf = [0u8; 17];
        assert_eq!(
            v.read(u64::MAX - 15, &mut buf),
            Err(Fault::NonCanonical { gva: u64::MAX - 15 })
        );
        assert_eq!(
            v.write(u64::MAX - 15, &buf),
            Err(Fault::NonCanonical { gva: u64::MAX - 15 })
        );
        assert_eq!(b.bytes(0x80_0ff0, 16), vec![0x77; 16]);
    }

    #[test]
    fn test_guestvirt_read_32bit_past_4g_wraps_to_linear_zero() {
        let mut b = Builder::new();
        let pd = b.alloc();
        b.map32(pd, 0xffff_f000, 0x80_0000, false, PRW as u32);
        b.map32(pd, 0, 0x90_0000, false, PRW as u32);
        b.fill(0x80_0ff8, 8, 0x11);
        b.fill(0x90_0000, 8, 0x22);
        let v = b.virt(regs_32(pd, false));
        let mut buf = [0u8; 16];
        v.read(0xffff_fff8, &mut buf).unwrap();
        assert_eq!(buf[..8], [0x11; 8]);
        assert_eq!(buf[8..], [0x22; 8]);
    }

    #[test]
    fn test_guestvirt_translate_area_in_page_and_crossing() {
        let (mut b, regs, levels) = long_setup(false);
        b.map64(regs.cr3, levels, 0x1000, 0x80_0000, 1, PRW);
        b.map64(regs.cr3, levels, 0x2000, 0x4000_0000, 1, PRW);
        let v = b.virt(regs);
        assert_eq!(
            v.translate_area(0x1040, 64, Access::Write),
            Ok(Some(0x80_0040))
        );
        assert_eq!(
            v.translate_area(0x1fc0, 64, Access::Write),
            Ok(Some(0x80_0fc0))
        );
        assert_eq!(
            v.translate_area(0x1000, 0x1000, Access::Read),
            Ok(Some(0x80_0000))
        );
        assert_eq!(v.translate_area(0x1fc1, 64, Access::Write), Ok(None));
        assert_eq!(v.translate_area(0x1000, u64::MAX, Access::Read), Ok(None));
        assert_eq!(v.translate_area(u64::MAX, 2, Access::Read), Ok(None));
        assert_eq!(
            v.translate_area(0x3000, 8, Access::Read),
            Err(Fault::NotPresent { gva: 0x3000 })
        );
        assert_eq!(
            v.translate_area(0x2000, 8, Access::Read),
            Err(Fault::NoMemory { gpa: 0x4000_0000 })
        );
    }

    #[test]
    fn test_guestvirt_accessors_return_inputs() {
        let b = Builder::new();
        let regs = regs_long(0x1000, false);
        let v = b.virt(regs);
        assert_eq!(v.regs(), &regs);
        assert!(std::ptr::eq(v.memory(), &b.mem));
        let copy = v;
        assert_eq!(copy.regs(), v.regs());
        assert!(format!("{v:?}").contains("GuestVirt"));
    }

    #[test]
    fn test_fault_display_is_sentence() {
        let msg = Fault::NotPresent { gva: 0x1000 }.to_string();
        assert_eq!(msg, "Guest linear address 0x1000 is not mapped.");
        assert!(Fault::Unsupported.to_string().starts_with('T'));
    }

    /// Fills `mem` with pseudo-random words, most of whose address fields
    /// point back into `mem` so that walks go deep.
    fn fill_random(mem: &Mem, size: u64, mut seed: u64) {
        let mut data = Vec::with_capacity(size as usize);
        for _ in 0..size / 8 {
            // xorshift64*
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            let mut word = seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
            if word & 0x700 != 0 {
                word &= !ADDR_MASK | (size - 1);
            }
            data.extend_from_slice(&word.to_le_bytes());
        }
        mem.write_slice(&data, GuestAddress(0)).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn test_guestvirt_random_state_never_panics(
            seed in any::<u64>() ,
            cr0 in any::<u64>(),
            cr3 in prop_oneof![any::<u64>(), 0u64..(1 << 20)],
            cr4 in any::<u64>(),
            efer in any::<u64>(),
            gva in prop_oneof![
                any::<u64>(),
                0u64..(1 << 32),
                (u64::MAX - 0x4000)..=u64::MAX,
                0x0000_7fff_ffff_c000u64..0x0000_8000_0000_4000,
            ],
            len in 0usize..0x3000,
            area_len in any::<u64>(),
        ) {
            const SIZE: u64 = 1 << 20;
            let mem = new_mem(SIZE);
            fill_random(&mem, SIZE, seed | 1);
            let regs = PagingRegs { cr0, cr3, cr4, efer };
            let v = GuestVirt::new(&mem, regs);
            let _ = translate(&mem, &regs, gva, Access::Read);
            let _ = translate(&mem, &regs, gva, Access::Write);
            let _ = v.translate_area(gva, area_len, Access::Write);
            let _ = v.translate_area(gva, area_len & 0xfff, Access::Read);
            let mut buf = vec![0u8; len];
            let _ = v.read(gva, &mut buf);
            let _ = v.read_obj::<u64>(gva);
            let mut before = vec![0u8; SIZE as usize];
            mem.read_slice(&mut before, GuestAddress(0)).unwrap();
            let data = vec![0xa5u8; len];
            if v.write(gva, &data).is_err() {
                let mut after = vec![0u8; SIZE as usize];
                mem.read_slice(&mut after, GuestAddress(0)).unwrap();
                prop_assert!(before == after, "a faulting write changed memory");
            }
        }
    }
}
