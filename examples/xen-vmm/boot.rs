// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Guest physical layout and image loading: the e820 map (with Xen's
//! special pages reserved); ELF64 kernels and Linux bzImages through
//! linux-loader; ELF32 kernels, which linux-loader does not read, by a
//! small loader of our own (i386, or x86-64 as `objcopy -O elf32-x86-64`
//! makes them for Xen's HVM domain builder, which takes only ELF32); a Xen
//! PVH note honoured in both classes; the command line, `hvm_start_info`
//! and `boot_params` through linux-loader's `Cmdline` and configurators.

use std::io::Cursor;

use anyhow::{Context, Result, anyhow, bail, ensure};
use kvm_bindings::{kvm_regs, kvm_sregs};
use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::boot_params;
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry as MemmapEntry, *};
use linux_loader::loader::elf::{Elf, Error as ElfError, PvhBootCapability};
use linux_loader::loader::{self, BzImage, KernelLoader, load_cmdline};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use xen_abi::memory::{E820Entry, E820Type};
use xen_guests::layout;

/// Top of the low RAM window; above it, up to 4 GiB, is the MMIO hole.
const LOW_RAM_TOP: u64 = 0xc000_0000;
/// The platform device's BAR1 (16 MiB, memory-backed; see `vm.rs`) and
/// BAR0 (I/O ports).
pub(crate) const PLATFORM_BAR1: u64 = 0xf000_0000;
pub(crate) const PLATFORM_BAR1_SIZE: u64 = 16 << 20;
pub(crate) const PLATFORM_BAR0: u16 = 0xc000;
/// Xen's eight special pages (console, XenStore, ...), GFN 0xfeff8.
pub(crate) const SPECIAL_PAGES: u64 = 0xfeff_8000;
/// The XenStore ring's page: Xen's fifth special page (libxc's
/// `SPECIALPAGE_XENSTORE`).
pub(crate) const STORE_GFN: u64 = (SPECIAL_PAGES >> 12) + 4;
/// The PV console ring's page: Xen's last special page
/// (`SPECIALPAGE_CONSOLE`).
pub(crate) const CONSOLE_GFN: u64 = (SPECIAL_PAGES >> 12) + 7;

/// `hvm_start_info` (PVH) or `boot_params` (bzImage), its memory map and
/// module list, and the command line.
const START_INFO: u64 = 0x6000;
const MEMMAP: u64 = START_INFO + 0x100;
const MODLIST: u64 = START_INFO + 0x800;
const CMDLINE: u64 = 0x20000;
const CMDLINE_MAX: usize = 0x10000;
/// Kernels load from 1 MiB; below are the boot structures.
const KERNEL_START: u64 = 0x10_0000;

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

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Pvh(a) => write!(f, "PVH entry {a:#x} (32-bit, EBX = hvm_start_info)"),
            Entry::Flat32(a) => write!(f, "ELF32 entry {a:#x} (32-bit flat mode)"),
            Entry::Long64(a) => write!(f, "ELF64 entry {a:#x} (64-bit mode, identity paging)"),
            Entry::Linux64(a) => write!(f, "Linux 64-bit entry {a:#x}"),
        }
    }
}

/// Guest RAM ranges for `ram` bytes: below the hole, and above 4 GiB.
pub(crate) fn ram_ranges(ram: u64) -> Vec<(u64, u64)> {
    let low = ram.min(LOW_RAM_TOP);
    let high = (ram > low).then_some((1 << 32, ram - low));
    [(0, low)].into_iter().chain(high).collect()
}

/// The guest's e820 map: RAM with the legacy holes, and Xen's special
/// pages reserved (as real Xen and QEMU reserve them).
pub(crate) fn e820(ram: u64) -> Vec<E820Entry> {
    let (low, high) = (ram.min(LOW_RAM_TOP), ram_ranges(ram).get(1).copied());
    let mut v = vec![
        E820Entry::new(0, 0x9_fc00, E820Type::Ram),
        E820Entry::new(0x9_fc00, 0x400, E820Type::Reserved),
        E820Entry::new(0xf_0000, 0x1_0000, E820Type::Reserved),
        E820Entry::new(KERNEL_START, low - KERNEL_START, E820Type::Ram),
        E820Entry::new(SPECIAL_PAGES, 8 << 12, E820Type::Reserved),
    ];
    v.extend(high.map(|(start, len)| E820Entry::new(start, len, E820Type::Ram)));
    v
}

/// Loads `image`, an ELF file or a `bzimage`, with its command line and
/// initrd; returns the entry and the address of its boot information.
pub(crate) fn load(
    mem: &GuestMemoryMmap,
    image: &[u8],
    bzimage: bool,
    cmdline: &str,
    initrd: Option<&[u8]>,
    ram: u64,
) -> Result<(Entry, u64)> {
    let cmdline = Cmdline::try_from(cmdline, CMDLINE_MAX).context("bad command line")?;
    load_cmdline(mem, GuestAddress(CMDLINE), &cmdline).context("command line")?;
    let map = e820(ram);
    if bzimage {
        let len = cmdline
            .as_cstring()
            .map_or(0, |c| c.as_bytes_with_nul().len());
        return load_bzimage(mem, image, &map, len as u32, initrd, ram);
    }
    let (entry, end) = load_elf(mem, image)?;
    let module = match initrd {
        Some(i) => Some((place_initrd(mem, i, end, ram)?, i.len() as u64)),
        None => None,
    };
    let mut info = hvm_start_info {
        magic: 0x336e_c578, // XEN_HVM_START_MAGIC_VALUE
        version: 1,
        cmdline_paddr: CMDLINE,
        memmap_paddr: MEMMAP,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    if module.is_some() {
        (info.nr_modules, info.modlist_paddr) = (1, MODLIST);
    }
    let memmap: Vec<_> = map
        .iter()
        .map(|e| MemmapEntry {
            addr: e.addr,
            size: e.size,
            type_: e.type_,
            reserved: 0,
        })
        .collect();
    let mut params = BootParams::new(&info, GuestAddress(START_INFO));
    params.set_sections(&memmap, GuestAddress(MEMMAP));
    if let Some((paddr, size)) = module {
        let m = hvm_modlist_entry {
            paddr,
            size,
            ..Default::default()
        };
        params.set_modules(&[m], GuestAddress(MODLIST));
    }
    PvhBootConfigurator::write_bootparams(&params, mem).context("hvm_start_info")?;
    Ok((entry, START_INFO))
}

/// Loads an ELF image at its physical addresses; returns its entry (the
/// PVH note's when there is one) and the end of its highest segment.
fn load_elf(mem: &GuestMemoryMmap, image: &[u8]) -> Result<(Entry, u64)> {
    ensure!(image.starts_with(b"\x7fELF"), "not an ELF file (bad magic)");
    ensure!(image.get(5) == Some(&1), "not a little-endian ELF file");
    let class = image[4];
    ensure!(matches!(class, 1 | 2), "unknown ELF class {class}");
    let machine = u16_at(image, 18)?;
    if class == 1 {
        return load_elf32(mem, image, machine);
    }
    ensure!(machine == 62, "ELF machine {machine} is not x86-64");
    let start = Some(GuestAddress(KERNEL_START));
    let r = Elf::load(mem, None, &mut Cursor::new(image), start).map_err(|e| match e {
        loader::Error::Elf(ElfError::ReadKernelImage) => {
            anyhow!("{e}: a segment is truncated or does not fit in guest RAM")
        }
        loader::Error::Elf(
            ElfError::ReadElfHeader | ElfError::ReadProgramHeader | ElfError::ReadNoteHeader,
        ) => anyhow!("{e}: truncated"),
        e => anyhow!(e),
    })?;
    let entry = match r.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(a) => Entry::Pvh(a.0),
        _ => Entry::Long64(r.kernel_load.0),
    };
    Ok((entry, r.kernel_end))
}

fn field<const N: usize>(b: &[u8], off: u64) -> Result<[u8; N]> {
    let at = usize::try_from(off).ok();
    let bytes = at.and_then(|o| b.get(o..o.checked_add(N)?));
    let bytes = bytes.with_context(|| format!("truncated: needs {N} bytes at offset {off:#x}"))?;
    Ok(bytes.try_into().expect("N bytes"))
}

fn u16_at(b: &[u8], off: u64) -> Result<u16> {
    field(b, off).map(u16::from_le_bytes)
}

fn u32_at(b: &[u8], off: u64) -> Result<u64> {
    field(b, off).map(|f| u32::from_le_bytes(f).into())
}

/// Loads an ELF32 image of `machine` i386 (3) or x86-64 (62). Every field
/// is checked against the file and guest RAM (1 MiB up to the MMIO hole):
/// a bad image is an error message, never a panic. Guest RAM starts
/// zeroed, so the rest of a segment (.bss) needs no writing.
fn load_elf32(mem: &GuestMemoryMmap, image: &[u8], machine: u16) -> Result<(Entry, u64)> {
    ensure!(
        matches!(machine, 3 | 62),
        "ELF machine {machine} is not x86"
    );
    let (entry, phoff) = (u32_at(image, 24)?, u32_at(image, 28)?);
    let phentsize = u64::from(u16_at(image, 42)?);
    let phnum = u64::from(u16_at(image, 44)?);
    let usable = phnum > 0 && phentsize >= 32;
    ensure!(usable, "ELF file has no usable program headers");
    let (mut pvh, mut end) = (None, 0);
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let f = |n: u64| u32_at(image, at + 4 * n);
        let (kind, offset, paddr, filesz, memsz) = (f(0)?, f(1)?, f(3)?, f(4)?, f(5)?);
        let data = image.get(offset as usize..(offset + filesz) as usize);
        let data = data.with_context(|| {
            let (len, range) = (image.len(), format!("{offset:#x}+{filesz:#x}"));
            format!("truncated: segment {i} needs bytes {range} of a {len:#x}-byte file")
        })?;
        let segment = format!("segment {i} at {paddr:#x}+{memsz:#x}");
        match kind {
            1 => {
                ensure!(filesz <= memsz, "{segment}: file size exceeds memory size");
                let fits = paddr >= KERNEL_START
                    && paddr + memsz <= LOW_RAM_TOP
                    && mem.check_range(GuestAddress(paddr), memsz as usize);
                ensure!(fits, "{segment} does not fit in guest RAM");
                mem.write_slice(data, GuestAddress(paddr))
                    .context(segment)?;
                end = end.max(paddr + memsz);
            }
            4 => pvh = pvh.or(pvh_note(data)?),
            _ => {}
        }
    }
    ensure!(end > 0, "ELF file has no loadable segment");
    Ok((pvh.map_or(Entry::Flat32(entry), Entry::Pvh), end))
}

/// The `XEN_ELFNOTE_PHYS32_ENTRY` (18) of owner "Xen" in a note segment.
fn pvh_note(notes: &[u8]) -> Result<Option<u64>> {
    let mut off = 0;
    while off < notes.len() as u64 {
        let (namesz, descsz) = (u32_at(notes, off)?, u32_at(notes, off + 4)?);
        let (name, kind) = (off + 12, u32_at(notes, off + 8)?);
        let desc = name + namesz.next_multiple_of(4);
        off = desc + descsz.next_multiple_of(4);
        ensure!(off <= notes.len() as u64, "truncated ELF note");
        if kind == 18 && notes.get(name as usize..(name + namesz) as usize) == Some(b"Xen\0") {
            return match descsz {
                4 => u32_at(notes, desc).map(Some),
                8 => field(notes, desc).map(|f| Some(u64::from_le_bytes(f))),
                n => bail!("PVH entry note has a {n}-byte address"),
            };
        }
    }
    Ok(None)
}

/// Places `initrd` 2 MiB-aligned after `after`; returns its address.
fn place_initrd(mem: &GuestMemoryMmap, initrd: &[u8], after: u64, ram: u64) -> Result<u64> {
    let at = after.next_multiple_of(1 << 21);
    let fits = at.saturating_add(initrd.len() as u64) <= ram.min(LOW_RAM_TOP);
    let what = format!("the initrd ({} bytes)", initrd.len());
    ensure!(fits, "{what} does not fit in low RAM after the kernel");
    mem.write_slice(initrd, GuestAddress(at)).context(what)?;
    Ok(at)
}

/// Loads a bzImage and writes its `boot_params`.
fn load_bzimage(
    mem: &GuestMemoryMmap,
    image: &[u8],
    map: &[E820Entry],
    cmdline_size: u32,
    initrd: Option<&[u8]>,
    ram: u64,
) -> Result<(Entry, u64)> {
    let r = BzImage::load(mem, None, &mut Cursor::new(image), None)
        .context("not a loadable bzImage")?;
    let mut hdr = r.setup_header.context("the bzImage has no setup header")?;
    hdr.type_of_loader = 0xff;
    hdr.cmd_line_ptr = CMDLINE as u32;
    hdr.cmdline_size = cmdline_size;
    hdr.loadflags |= 0x80; // CAN_USE_HEAP
    hdr.heap_end_ptr = 0xfe00;
    if let Some(initrd) = initrd {
        hdr.ramdisk_image = place_initrd(mem, initrd, r.kernel_end, ram)? as u32;
        hdr.ramdisk_size = initrd.len() as u32;
    }
    let mut params = boot_params {
        hdr,
        ..Default::default()
    };
    ensure!(
        map.len() <= params.e820_table.len(),
        "too many e820 entries"
    );
    for (t, e) in params.e820_table.iter_mut().zip(map) {
        (t.addr, t.size, t.r#type) = (e.addr, e.size, e.type_);
    }
    params.e820_entries = map.len() as u8;
    let params = BootParams::new(&params, GuestAddress(START_INFO));
    LinuxBootConfigurator::write_bootparams(&params, mem).context("boot_params")?;
    Ok((Entry::Linux64(r.kernel_load.0 + 0x200), START_INFO))
}

/// Registers and system registers of the boot vCPU for `entry`, with the
/// GDT (and, for 64-bit entries, the identity map) of `xen_guests`'
/// layout in the low pages below `START_INFO`.
pub(crate) fn boot_regs(
    mem: &GuestMemoryMmap,
    entry: Entry,
    start_info: u64,
    sregs: &mut kvm_sregs,
) -> Result<kvm_regs> {
    layout::write_tables(mem).context("boot tables")?;
    let mut regs = kvm_regs {
        rflags: 2,
        ..Default::default()
    };
    match entry {
        Entry::Pvh(rip) | Entry::Flat32(rip) => {
            layout::flat32_sregs(sregs);
            (regs.rip, regs.rbx) = (rip, start_info);
        }
        Entry::Long64(rip) | Entry::Linux64(rip) => {
            layout::long_mode_sregs(sregs);
            (regs.rip, regs.rsi, regs.rsp) = (rip, start_info, KERNEL_START - 16);
        }
    }
    Ok(regs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 32 << 20)]).unwrap()
    }

    /// An ELF32 file: one PT_LOAD of `code` at `paddr` (with 0x100 bytes
    /// of .bss), and a PT_NOTE with a PVH entry when `pvh` is given.
    fn elf32(machine: u16, paddr: u32, code: &[u8], pvh: Option<u32>) -> Vec<u8> {
        let le = |v: u32| v.to_le_bytes();
        let mut note = Vec::new();
        for w in pvh
            .map(|e| [4, 4, 18, u32::from_le_bytes(*b"Xen\0"), e])
            .into_iter()
            .flatten()
        {
            note.extend(le(w));
        }
        let phnum = 1 + u32::from(pvh.is_some());
        let data = 52 + 32 * phnum;
        let mut f = b"\x7fELF\x01\x01\x01".to_vec();
        f.resize(16, 0);
        f.extend([2, 0].iter().chain(&machine.to_le_bytes()).chain(&le(1)));
        f.extend([le(paddr + 4), le(52), le(0), le(0)].concat());
        f.extend([52, 0, 32, 0, phnum as u8, 0, 40, 0, 0, 0, 0, 0]);
        let n = code.len() as u32;
        f.extend(
            [1, data, paddr, paddr, n, n + 0x100, 7, 0x1000]
                .map(le)
                .concat(),
        );
        if pvh.is_some() {
            f.extend(
                [
                    4,
                    data + n,
                    0,
                    0,
                    note.len() as u32,
                    note.len() as u32,
                    4,
                    4,
                ]
                .map(le)
                .concat(),
            );
        }
        [f, code.to_vec(), note].concat()
    }

    fn load_err(image: &[u8]) -> String {
        format!("{:#}", load_elf(&mem(), image).unwrap_err())
    }

    #[test]
    fn test_elf32_i386_enters_at_its_entry() {
        let m = mem();
        let loaded = load_elf(&m, &elf32(3, 0x20_0000, b"\xf4\xeb\xfd\x90", None)).unwrap();
        assert_eq!(loaded, (Entry::Flat32(0x20_0004), 0x20_0104));
        assert_eq!(
            m.read_obj::<u32>(GuestAddress(0x20_0000)).unwrap(),
            0x90fd_ebf4
        );
    }

    #[test]
    fn test_elf32_x86_64_with_pvh_note_enters_through_the_note() {
        let m = mem();
        let image = elf32(62, 0x10_0000, &[0xcc; 64], Some(0x10_0010));
        assert_eq!(load_elf(&m, &image).unwrap().0, Entry::Pvh(0x10_0010));
        assert_eq!(m.read_obj::<u8>(GuestAddress(0x10_003f)).unwrap(), 0xcc);
    }

    #[test]
    fn test_elf64_with_pvh_note_loads_through_linux_loader() {
        let flow = xen_guests::guests::FLOW.elf;
        assert!(matches!(load_elf(&mem(), flow).unwrap().0, Entry::Pvh(_)));
        assert!(load_err(&flow[..flow.len() / 2]).contains("truncated"));
        assert!(load_err(&flow[..40]).contains("truncated"));
    }

    #[test]
    fn test_elf_bad_images_are_messages() {
        let good = elf32(62, 0x10_0000, &[0x90; 16], Some(0x10_0000));
        let mut far = good.clone();
        far[52 + 12..52 + 16].copy_from_slice(&0x4000_0000u32.to_le_bytes());
        let mut bad_note = good.clone();
        let at = bad_note.len() - 16;
        bad_note[at] = 2; // a 2-byte address
        for (image, needle) in [
            (&b"MZ\x90\x00"[..], "bad magic"),
            (b"\x7fELF\x03\x01", "class"),
            (&good[..40], "truncated"),
            (&good[..good.len() - 10], "truncated"),
            (&far, "does not fit"),
            (&bad_note, "2-byte address"),
            (&elf32(40, 0x10_0000, &[0; 4], None), "not x86"),
            (&elf32(3, 0x1000, &[0; 4], None), "does not fit"),
        ] {
            let e = load_err(image);
            assert!(e.contains(needle), "{needle}: {e}");
        }
        assert_eq!(pvh_note(&good[good.len() - 20..]).unwrap(), Some(0x10_0000));
    }
}
