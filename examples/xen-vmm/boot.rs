// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Guest physical layout and image loading: the e820 map (with Xen's
//! special pages reserved), ELF32/ELF64 kernels with or without a PVH
//! note, Linux bzImages, `hvm_start_info` and `boot_params`.

use anyhow::{Context, Result, anyhow, bail};
use std::io::Cursor;

use kvm_bindings::{kvm_regs, kvm_sregs};
use linux_loader::loader::KernelLoader;
use linux_loader::loader::bootparam::boot_params;
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};
use xen_abi::memory::{E820Entry, E820Type};
use xen_guests::layout;

/// Top of the low RAM window; above it, up to 4 GiB, is the MMIO hole.
pub(crate) const LOW_RAM_TOP: u64 = 0xc000_0000;
/// Start of RAM above the hole.
pub(crate) const HIGH_RAM_START: u64 = 1 << 32;
/// The platform device's BAR1 (16 MiB, memory-backed; see `vm.rs`).
pub(crate) const PLATFORM_BAR1: u64 = 0xf000_0000;
/// Size of BAR1.
pub(crate) const PLATFORM_BAR1_SIZE: u64 = 16 << 20;
/// The platform device's BAR0 (I/O).
pub(crate) const PLATFORM_BAR0: u16 = 0xc000;
/// Xen's eight special pages (console, XenStore, ...), GFN 0xfeff8.
pub(crate) const SPECIAL_PAGES: u64 = 0xfeff_8000;
/// Size of the special area.
pub(crate) const SPECIAL_PAGES_SIZE: u64 = 8 << 12;

/// `hvm_start_info` (PVH) or `boot_params` (bzImage).
const START_INFO: u64 = 0x6000;
const MEMMAP: u64 = START_INFO + 0x100;
const MODLIST: u64 = START_INFO + 0x800;
/// Kernel command line.
const CMDLINE: u64 = 0x20000;
const CMDLINE_MAX: usize = 0x10000;
/// Where kernels load from (1 MiB).
const KERNEL_START: u64 = 0x10_0000;
const PVH_MAGIC: u32 = 0x336e_c578;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// How the first vCPU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// 32-bit flat protected mode, paging off, EBX = `hvm_start_info`.
    Pvh(u64),
    /// 32-bit flat protected mode at an ELF32 entry (EBX as for PVH).
    Flat32(u64),
    /// 64-bit mode, identity paging over 4 GiB, RSI = `hvm_start_info`
    /// (ELF64 without a PVH note).
    Long64(u64),
    /// Linux's 64-bit boot protocol: RSI = `boot_params`.
    Linux64(u64),
}

impl Entry {
    pub(crate) fn describe(self) -> String {
        match self {
            Entry::Pvh(a) => format!("PVH entry {a:#x} (32-bit, EBX = hvm_start_info)"),
            Entry::Flat32(a) => format!("ELF32 entry {a:#x} (32-bit flat mode)"),
            Entry::Long64(a) => format!("ELF64 entry {a:#x} (64-bit mode, identity paging)"),
            Entry::Linux64(a) => format!("Linux 64-bit entry {a:#x}"),
        }
    }
}

/// Guest RAM ranges for `ram` bytes: below the hole, and above 4 GiB.
pub(crate) fn ram_ranges(ram: u64) -> Vec<(u64, u64)> {
    let low = ram.min(LOW_RAM_TOP);
    let mut v = vec![(0, low)];
    if ram > low {
        v.push((HIGH_RAM_START, ram - low));
    }
    v
}

/// The guest's e820 map: RAM with the legacy holes, and Xen's special
/// pages reserved (as real Xen and QEMU reserve them).
pub(crate) fn e820(ram: u64) -> Vec<E820Entry> {
    let ranges = ram_ranges(ram);
    let low = ranges[0].1;
    let mut v = vec![
        E820Entry::new(0, 0x9_fc00, E820Type::Ram),
        E820Entry::new(0x9_fc00, 0x400, E820Type::Reserved),
        E820Entry::new(0xf_0000, 0x1_0000, E820Type::Reserved),
        E820Entry::new(KERNEL_START, low - KERNEL_START, E820Type::Ram),
        E820Entry::new(SPECIAL_PAGES, SPECIAL_PAGES_SIZE, E820Type::Reserved),
    ];
    if let Some(&(start, len)) = ranges.get(1) {
        v.push(E820Entry::new(start, len, E820Type::Ram));
    }
    v
}

/// An image loaded into guest memory.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) entry: Entry,
    /// First byte after the image.
    pub(crate) end: u64,
}

fn rd<const N: usize>(b: &[u8], off: u64) -> Result<[u8; N]> {
    usize::try_from(off)
        .ok()
        .and_then(|o| b.get(o..o.checked_add(N)?))
        .map(|s| s.try_into().expect("N bytes"))
        .with_context(|| format!("truncated: needs {N} bytes at offset {off:#x}"))
}

fn u16_at(b: &[u8], off: u64) -> Result<u64> {
    Ok(u16::from_le_bytes(rd(b, off)?).into())
}

fn u32_at(b: &[u8], off: u64) -> Result<u64> {
    Ok(u32::from_le_bytes(rd(b, off)?).into())
}

fn u64_at(b: &[u8], off: u64) -> Result<u64> {
    Ok(u64::from_le_bytes(rd(b, off)?))
}

/// One program header, either class.
struct Phdr {
    kind: u64,
    offset: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

/// Loads an ELF32 or ELF64 x86 image at its physical addresses; finds the
/// Xen PVH entry note. Every field is checked against the file and guest
/// RAM: a bad image is an error message, never a panic.
pub(crate) fn load_elf(mem: &GuestMemoryMmap, image: &[u8]) -> Result<Loaded> {
    if image.get(..4) != Some(b"\x7fELF") {
        bail!("not an ELF file (bad magic)");
    }
    let class64 = match rd::<1>(image, 4)?[0] {
        1 => false,
        2 => true,
        c => bail!("unknown ELF class {c}"),
    };
    if rd::<1>(image, 5)?[0] != 1 {
        bail!("not a little-endian ELF file");
    }
    let machine = u16_at(image, 18)?;
    if machine != if class64 { 62 } else { 3 } {
        bail!("ELF machine {machine} is not x86");
    }
    let (entry, phoff, phentsize, phnum) = if class64 {
        (
            u64_at(image, 24)?,
            u64_at(image, 32)?,
            u16_at(image, 54)?,
            u16_at(image, 56)?,
        )
    } else {
        (
            u32_at(image, 24)?,
            u32_at(image, 28)?,
            u16_at(image, 42)?,
            u16_at(image, 44)?,
        )
    };
    if phnum == 0 || phentsize < if class64 { 56 } else { 32 } {
        bail!("ELF file has no usable program headers");
    }
    let mut pvh = None;
    let mut end = 0u64;
    let mut loaded = 0;
    for i in 0..phnum {
        let at = phoff
            .checked_add(i * phentsize)
            .context("program header offset overflows")?;
        let p = if class64 {
            Phdr {
                kind: u32_at(image, at)?,
                offset: u64_at(image, at + 8)?,
                paddr: u64_at(image, at + 24)?,
                filesz: u64_at(image, at + 32)?,
                memsz: u64_at(image, at + 40)?,
            }
        } else {
            Phdr {
                kind: u32_at(image, at)?,
                offset: u32_at(image, at + 4)?,
                paddr: u32_at(image, at + 12)?,
                filesz: u32_at(image, at + 16)?,
                memsz: u32_at(image, at + 20)?,
            }
        };
        let data = usize::try_from(p.offset)
            .ok()
            .zip(usize::try_from(p.filesz).ok())
            .and_then(|(o, n)| image.get(o..o.checked_add(n)?))
            .with_context(|| {
                format!(
                    "truncated: segment {i} needs bytes {:#x}+{:#x} of a {:#x}-byte file",
                    p.offset,
                    p.filesz,
                    image.len()
                )
            })?;
        match p.kind {
            1 => {
                if p.filesz > p.memsz {
                    bail!("segment {i}: file size exceeds memory size");
                }
                // Below 1 MiB live the boot structures (and firmware on a
                // real machine).
                let fits = p.paddr >= KERNEL_START
                    && p.paddr
                        .checked_add(p.memsz)
                        .is_some_and(|e| ram_end_ok(mem, p.paddr, e));
                if !fits {
                    bail!(
                        "segment {i} at {:#x}+{:#x} does not fit in guest RAM",
                        p.paddr,
                        p.memsz
                    );
                }
                mem.write_slice(data, GuestAddress(p.paddr))
                    .with_context(|| format!("segment {i}"))?;
                // The rest of the segment (.bss) is zero, in chunks: its
                // size comes from the file.
                let zeros = [0u8; 4096];
                let mut at = p.paddr + p.filesz;
                while at < p.paddr + p.memsz {
                    let n = (p.paddr + p.memsz - at).min(zeros.len() as u64);
                    mem.write_slice(&zeros[..n as usize], GuestAddress(at))
                        .with_context(|| format!("segment {i}"))?;
                    at += n;
                }
                end = end.max(p.paddr + p.memsz);
                loaded += 1;
            }
            4 => pvh = pvh.or(pvh_note(data)?),
            _ => {}
        }
    }
    if loaded == 0 {
        bail!("ELF file has no loadable segment");
    }
    let entry = match (pvh, class64) {
        (Some(e), _) => Entry::Pvh(e),
        (None, false) => Entry::Flat32(entry),
        (None, true) => Entry::Long64(entry),
    };
    Ok(Loaded { entry, end })
}

fn ram_end_ok(mem: &GuestMemoryMmap, start: u64, end: u64) -> bool {
    use vm_memory::GuestMemoryBackend;
    end > start
        && mem.address_in_range(GuestAddress(start))
        && mem.address_in_range(GuestAddress(end - 1))
        && ram_ranges(u64::MAX)
            .iter()
            .any(|&(s, l)| start >= s && end <= s.saturating_add(l))
}

/// The `XEN_ELFNOTE_PHYS32_ENTRY` in a note segment, if any.
fn pvh_note(notes: &[u8]) -> Result<Option<u64>> {
    let mut off = 0u64;
    let len = notes.len() as u64;
    while off + 12 <= len {
        let namesz = u32_at(notes, off)?;
        let descsz = u32_at(notes, off + 4)?;
        let kind = u32_at(notes, off + 8)? as u32;
        let name = off + 12;
        let desc = name + namesz.next_multiple_of(4);
        let next = desc + descsz.next_multiple_of(4);
        if next > len {
            bail!("truncated ELF note");
        }
        if kind == XEN_ELFNOTE_PHYS32_ENTRY
            && notes.get(name as usize..(name + namesz) as usize) == Some(b"Xen\0")
        {
            return match descsz {
                4 => Ok(Some(u32_at(notes, desc)?)),
                8 => Ok(Some(u64_at(notes, desc)?)),
                n => Err(anyhow!("PVH entry note has a {n}-byte address")),
            };
        }
        off = next;
    }
    Ok(None)
}

fn write<T: ByteValued>(mem: &GuestMemoryMmap, v: T, at: u64) -> Result<()> {
    mem.write_obj(v, GuestAddress(at))
        .with_context(|| format!("cannot write boot data at {at:#x}"))
}

fn write_cmdline(mem: &GuestMemoryMmap, cmdline: &str) -> Result<()> {
    if cmdline.len() >= CMDLINE_MAX || cmdline.contains('\0') {
        bail!("the command line is too long or holds a NUL");
    }
    let mut b = cmdline.as_bytes().to_vec();
    b.push(0);
    mem.write_slice(&b, GuestAddress(CMDLINE))
        .context("command line")
}

/// Places `initrd` page-aligned after `after`; returns its address.
pub(crate) fn place_initrd(
    mem: &GuestMemoryMmap,
    initrd: &[u8],
    after: u64,
    ram: u64,
) -> Result<u64> {
    let at = after.next_multiple_of(1 << 21);
    let top = ram_ranges(ram)[0].1;
    if at.saturating_add(initrd.len() as u64) > top {
        bail!(
            "the initrd ({} bytes) does not fit in low RAM after the kernel",
            initrd.len()
        );
    }
    mem.write_slice(initrd, GuestAddress(at))
        .context("initrd")?;
    Ok(at)
}

/// Writes `hvm_start_info` (version 1, with the memory map, the command
/// line and the initrd as module 0); returns its address.
pub(crate) fn write_start_info(
    mem: &GuestMemoryMmap,
    map: &[E820Entry],
    cmdline: &str,
    initrd: Option<(u64, u64)>,
) -> Result<u64> {
    write_cmdline(mem, cmdline)?;
    for (i, e) in map.iter().enumerate() {
        let entry = hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.type_,
            reserved: 0,
        };
        write(mem, entry, MEMMAP + 24 * i as u64)?;
    }
    let mut info = hvm_start_info {
        magic: PVH_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE,
        memmap_paddr: MEMMAP,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    if let Some((paddr, size)) = initrd {
        write(
            mem,
            hvm_modlist_entry {
                paddr,
                size,
                ..Default::default()
            },
            MODLIST,
        )?;
        info.nr_modules = 1;
        info.modlist_paddr = MODLIST;
    }
    write(mem, info, START_INFO)?;
    Ok(START_INFO)
}

/// Loads a bzImage and writes its `boot_params`; returns the entry.
pub(crate) fn load_bzimage(
    mem: &GuestMemoryMmap,
    image: &[u8],
    map: &[E820Entry],
    cmdline: &str,
    initrd: Option<&[u8]>,
    ram: u64,
) -> Result<Loaded> {
    let r = BzImage::load(mem, None, &mut Cursor::new(image), None)
        .context("not a loadable bzImage")?;
    let mut hdr = r.setup_header.context("the bzImage has no setup header")?;
    write_cmdline(mem, cmdline)?;
    hdr.type_of_loader = 0xff;
    hdr.cmd_line_ptr = CMDLINE as u32;
    hdr.cmdline_size = cmdline.len() as u32 + 1;
    hdr.loadflags |= 0x80; // CAN_USE_HEAP
    hdr.heap_end_ptr = 0xfe00;
    if let Some(initrd) = initrd {
        let at = place_initrd(mem, initrd, r.kernel_end, ram)?;
        hdr.ramdisk_image = at as u32;
        hdr.ramdisk_size = initrd.len() as u32;
    }
    let mut params = boot_params {
        hdr,
        ..Default::default()
    };
    if map.len() > params.e820_table.len() {
        bail!("too many e820 entries");
    }
    for (i, e) in map.iter().enumerate() {
        params.e820_table[i].addr = e.addr;
        params.e820_table[i].size = e.size;
        params.e820_table[i].r#type = e.type_;
    }
    params.e820_entries = map.len() as u8;
    write(mem, params, START_INFO)?;
    Ok(Loaded {
        entry: Entry::Linux64(r.kernel_load.0 + 0x200),
        end: r.kernel_end,
    })
}

/// Registers and system registers of the boot vCPU for `entry`.
pub(crate) fn boot_regs(
    mem: &GuestMemoryMmap,
    entry: Entry,
    start_info: u64,
    sregs: &mut kvm_sregs,
) -> Result<kvm_regs> {
    // The GDT (and, for 64-bit entries, the identity map) of the harness
    // layout: low pages below START_INFO.
    layout::write_tables(mem).context("boot tables")?;
    let mut regs = kvm_regs {
        rflags: 2,
        ..Default::default()
    };
    match entry {
        Entry::Pvh(rip) | Entry::Flat32(rip) => {
            layout::flat32_sregs(sregs);
            regs.rip = rip;
            regs.rbx = start_info;
        }
        Entry::Long64(rip) | Entry::Linux64(rip) => {
            layout::long_mode_sregs(sregs);
            regs.rip = rip;
            regs.rsi = start_info;
            regs.rsp = KERNEL_START - 16;
        }
    }
    Ok(regs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 32 << 20)]).unwrap()
    }

    #[test]
    fn test_e820_reserves_special_pages_and_splits_ram() {
        let m = e820(4 << 30);
        assert!(m.iter().any(|e| {
            let (addr, size) = (e.addr, e.size);
            addr == SPECIAL_PAGES && size == 0x8000 && e.kind() == Ok(E820Type::Reserved)
        }));
        let ram: u64 = m
            .iter()
            .filter(|e| e.kind() == Ok(E820Type::Ram))
            .map(|e| e.size)
            .sum();
        assert_eq!(ram, (4 << 30) - 0x6_0400);
        let last = m.last().unwrap().addr;
        assert_eq!(last, HIGH_RAM_START);
    }

    #[test]
    fn test_elf_errors_are_messages() {
        let m = mem();
        let flow = xen_guests::guests::FLOW.elf;
        let ok = load_elf(&m, flow).unwrap();
        assert!(matches!(ok.entry, Entry::Pvh(_)), "{:?}", ok.entry);
        for (bytes, needle) in [
            (&b"MZ\x90\x00"[..], "bad magic"),
            (&flow[..40], "truncated"),
            (&flow[..flow.len() / 2], "truncated"),
            (&b"\x7fELF\x03\x01"[..], "class"),
        ] {
            let e = format!("{:#}", load_elf(&m, bytes).unwrap_err());
            assert!(e.contains(needle), "{e}");
        }
        // A segment outside RAM.
        let mut far = flow.to_vec();
        let phoff = u64_at(&far, 32).unwrap() as usize;
        far[phoff + 24..phoff + 32].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(
            load_elf(&m, &far)
                .unwrap_err()
                .to_string()
                .contains("does not fit")
        );
    }

    #[test]
    fn test_pvh_note_sizes() {
        let note = |desc: &[u8]| {
            let mut v = Vec::new();
            v.extend_from_slice(&4u32.to_le_bytes());
            v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            v.extend_from_slice(&18u32.to_le_bytes());
            v.extend_from_slice(b"Xen\0");
            v.extend_from_slice(desc);
            v
        };
        assert_eq!(
            pvh_note(&note(&0x1234u32.to_le_bytes())).unwrap(),
            Some(0x1234)
        );
        assert_eq!(
            pvh_note(&note(&0x5678u64.to_le_bytes())).unwrap(),
            Some(0x5678)
        );
        assert!(pvh_note(&note(&[1, 2])).is_err());
        assert!(pvh_note(&note(&0x1234u32.to_le_bytes())[..18]).is_err());
    }
}
