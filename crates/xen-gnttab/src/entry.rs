// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Entries in guest memory: where an entry or status word lives, atomic
//! access to the words the guest shares with us, and Xen's `_set_status`
//! (setting `GTF_reading`/`GTF_writing` while checking the entry).
//!
//! The guest changes its entries at any time, so the flags word is only
//! ever changed with one atomic instruction (vm-memory's `get_atomic_ref`),
//! never read-modify-written through `read_obj`/`write_obj`. Writes through
//! an atomic reference bypass vm-memory's dirty bitmap, so each helper
//! marks the bytes dirty itself. A helper returns `None` when the address
//! is not guest memory; callers treat that as an invalid entry.

use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};

use vm_memory::bitmap::Bitmap;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, VolatileMemory};
use xen_abi::grant_table::{
    GRANT_ENTRIES_PER_FRAME_V1, GRANT_ENTRIES_PER_FRAME_V2, GRANT_STATUS_PER_FRAME, GTF_TYPE_MASK,
    GrantFlags, GrantRef, GrantType,
};
use xen_abi::xen::DomId;

use crate::PIN_ATTEMPTS;

/// Bytes of a v1 entry.
pub(crate) const V1_SIZE: u64 = 8;
/// Bytes of a v2 entry.
pub(crate) const V2_SIZE: u64 = 16;

pub(crate) const READING: u16 = GrantFlags::READING.bits();
pub(crate) const WRITING: u16 = GrantFlags::WRITING.bits();
pub(crate) const READONLY: u16 = GrantFlags::READONLY.bits();
pub(crate) const SUB_PAGE: u16 = GrantFlags::SUB_PAGE.bits();
pub(crate) const PERMIT: u16 = GrantType::PermitAccess as u16;
pub(crate) const TRANSITIVE: u16 = GrantType::Transitive as u16;
pub(crate) const TYPE_MASK: u16 = GTF_TYPE_MASK;

/// Entries per grant-entry frame at `version`.
pub(crate) fn per_frame(version: u32) -> u32 {
    if version == 2 {
        GRANT_ENTRIES_PER_FRAME_V2
    } else {
        GRANT_ENTRIES_PER_FRAME_V1
    }
}

/// Bytes of an entry at `version`.
pub(crate) fn entry_size(version: u32) -> u64 {
    if version == 2 { V2_SIZE } else { V1_SIZE }
}

/// The frame holding `gref`'s entry at `version`, and the entry's offset in
/// it.
pub(crate) fn entry_pos(version: u32, gref: GrantRef) -> (u32, u64) {
    let n = per_frame(version);
    (gref / n, u64::from(gref % n) * entry_size(version))
}

/// The status frame holding `gref`'s v2 status word, and its offset.
pub(crate) fn status_pos(gref: GrantRef) -> (u32, u64) {
    (
        gref / GRANT_STATUS_PER_FRAME,
        u64::from(gref % GRANT_STATUS_PER_FRAME) * 2,
    )
}

/// The guest-physical address of `offset` in the frame at `gfn`, if it has
/// one.
pub(crate) fn frame_gpa(gfn: u64, offset: u64) -> Option<u64> {
    gfn.checked_mul(crate::FRAME_SIZE as u64)?
        .checked_add(offset)
}

/// Whether the 4 KiB page `gfn` is guest memory (Xen's `get_paged_frame`
/// as far as a VMM can tell).
pub(crate) fn page_ok<M: GuestMemoryBackend>(mem: &M, gfn: u64) -> Option<u64> {
    let gpa = frame_gpa(gfn, 0)?;
    GuestMemoryBackend::check_range(mem, GuestAddress(gpa), crate::FRAME_SIZE).then_some(gpa)
}

/// The `(flags, domid)` pair Xen updates as one 32-bit word
/// (`union grant_combo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Combo(pub(crate) u32);

impl Combo {
    #[cfg(test)]
    pub(crate) fn new(flags: u16, domid: DomId) -> Self {
        Combo(u32::from(flags) | (u32::from(domid) << 16))
    }

    pub(crate) fn flags(self) -> u16 {
        self.0 as u16
    }

    pub(crate) fn domid(self) -> DomId {
        (self.0 >> 16) as u16
    }
}

/// Atomically loads the flags and domid of the entry at `gpa`.
pub(crate) fn load_combo<M: GuestMemoryBackend>(mem: &M, gpa: u64) -> Option<Combo> {
    let slice = mem.get_slice(GuestAddress(gpa), 4).ok()?;
    let a = slice.get_atomic_ref::<AtomicU32>(0).ok()?;
    Some(Combo(a.load(Ordering::SeqCst)))
}

/// Replaces the combo at `gpa` with `new` if it still holds `old`; returns
/// the value found (equal to `old` on success).
pub(crate) fn cmpxchg_combo<M: GuestMemoryBackend>(
    mem: &M,
    gpa: u64,
    old: Combo,
    new: Combo,
) -> Option<Combo> {
    let slice = mem.get_slice(GuestAddress(gpa), 4).ok()?;
    let a = slice.get_atomic_ref::<AtomicU32>(0).ok()?;
    let found = match a.compare_exchange(old.0, new.0, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(v) => {
            slice.bitmap().mark_dirty(0, 4);
            v
        }
        Err(v) => v,
    };
    Some(Combo(found))
}

/// Atomically ORs `bits` into the 16-bit word at `gpa`.
pub(crate) fn or_u16<M: GuestMemoryBackend>(mem: &M, gpa: u64, bits: u16) -> Option<u16> {
    let slice = mem.get_slice(GuestAddress(gpa), 2).ok()?;
    let a = slice.get_atomic_ref::<AtomicU16>(0).ok()?;
    let old = a.fetch_or(bits, Ordering::SeqCst);
    slice.bitmap().mark_dirty(0, 2);
    Some(old)
}

/// Atomically clears `bits` in the 16-bit word at `gpa` (Xen's
/// `gnttab_clear_flags`: `lock andw`, confined to the two bytes).
pub(crate) fn clear_u16<M: GuestMemoryBackend>(mem: &M, gpa: u64, bits: u16) -> Option<u16> {
    let slice = mem.get_slice(GuestAddress(gpa), 2).ok()?;
    let a = slice.get_atomic_ref::<AtomicU16>(0).ok()?;
    let old = a.fetch_and(!bits, Ordering::SeqCst);
    slice.bitmap().mark_dirty(0, 2);
    Some(old)
}

/// Atomically loads the 16-bit word at `gpa`.
#[cfg(test)]
pub(crate) fn load_u16<M: GuestMemoryBackend>(mem: &M, gpa: u64) -> Option<u16> {
    let slice = mem.get_slice(GuestAddress(gpa), 2).ok()?;
    let a = slice.get_atomic_ref::<AtomicU16>(0).ok()?;
    Some(a.load(Ordering::SeqCst))
}

/// Reads a plain value (a frame number) from guest memory.
pub(crate) fn read<M: GuestMemoryBackend, T: vm_memory::ByteValued>(
    mem: &M,
    gpa: u64,
) -> Option<T> {
    mem.read_obj(GuestAddress(gpa)).ok()
}

/// Marks `len` bytes at `gpa` dirty in the guest memory's bitmap (a no-op
/// for memory without one).
pub(crate) fn mark_dirty<M: GuestMemoryBackend>(mem: &M, gpa: u64, len: usize) {
    for slice in mem.get_slices(GuestAddress(gpa), len).flatten() {
        slice.bitmap().mark_dirty(0, slice.len());
    }
}

/// Why `_set_status` refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PinFail {
    /// The entry does not grant this (type, domid, read-only, memory).
    Denied,
    /// The guest changed the entry on every attempt.
    Unstable,
}

/// What `_set_status` checks and sets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SetStatus {
    /// The domain the entry must be granted to.
    pub(crate) ldomid: DomId,
    /// Set `GTF_writing` too (and refuse a read-only entry).
    pub(crate) write: bool,
    /// Refuse sub-page entries (a map; copies honour them).
    pub(crate) map: bool,
    /// Accept `GTF_transitive` (v2 only).
    pub(crate) transitive: bool,
    /// Check type and domid: the entry is not pinned yet.
    pub(crate) check: bool,
}

impl SetStatus {
    fn mask(&self) -> u16 {
        if self.map {
            TYPE_MASK | SUB_PAGE
        } else {
            TYPE_MASK
        }
    }

    fn type_ok(&self, flags: u16) -> bool {
        let t = flags & self.mask();
        t == PERMIT || (self.transitive && t == TRANSITIVE)
    }

    fn bits(&self) -> u16 {
        if self.write {
            READING | WRITING
        } else {
            READING
        }
    }
}

/// Xen's `_set_status_v1`: sets the access flags in the v1 entry at `gpa`
/// with a compare-exchange on its (flags, domid) word, checking the entry
/// on each attempt; gives up after [`PIN_ATTEMPTS`] attempts. `interfere`
/// runs before each compare-exchange (tests use it to play a guest that
/// flips the word).
pub(crate) fn set_status_v1<M: GuestMemoryBackend>(
    mem: &M,
    gpa: u64,
    s: SetStatus,
    mut interfere: impl FnMut(u32),
) -> Result<(), PinFail> {
    let mut cur = load_combo(mem, gpa).ok_or(PinFail::Denied)?;
    for attempt in 0..PIN_ATTEMPTS {
        if s.check && (!s.type_ok(cur.flags()) || cur.domid() != s.ldomid) {
            return Err(PinFail::Denied);
        }
        if s.write && cur.flags() & READONLY != 0 {
            return Err(PinFail::Denied);
        }
        let new = Combo(cur.0 | u32::from(s.bits()));
        interfere(attempt);
        let found = cmpxchg_combo(mem, gpa, cur, new).ok_or(PinFail::Denied)?;
        if found == cur {
            return Ok(());
        }
        cur = found;
    }
    Err(PinFail::Unstable)
}

/// Xen's `_set_status_v2`: sets the access flags in the status word at
/// `status_gpa`, then re-reads the header at `hdr_gpa` and backs out if the
/// entry changed under it.
pub(crate) fn set_status_v2<M: GuestMemoryBackend>(
    mem: &M,
    hdr_gpa: u64,
    status_gpa: u64,
    s: SetStatus,
    mut interfere: impl FnMut(u32),
) -> Result<(), PinFail> {
    let denied = |c: Combo| !s.type_ok(c.flags()) || c.domid() != s.ldomid;
    let cur = load_combo(mem, hdr_gpa).ok_or(PinFail::Denied)?;
    if s.check && denied(cur) {
        return Err(PinFail::Denied);
    }
    if s.write && cur.flags() & READONLY != 0 {
        return Err(PinFail::Denied);
    }
    or_u16(mem, status_gpa, s.bits()).ok_or(PinFail::Denied)?;
    interfere(0);
    let now = load_combo(mem, hdr_gpa).ok_or(PinFail::Denied)?;
    if s.check {
        if denied(now) || (s.write && now.flags() & READONLY != 0) {
            clear_u16(mem, status_gpa, READING | WRITING);
            return Err(PinFail::Unstable);
        }
    } else if now.flags() & READONLY != 0 {
        clear_u16(mem, status_gpa, WRITING);
        return Err(PinFail::Unstable);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    type Mem = GuestMemoryMmap<()>;

    fn mem() -> Mem {
        Mem::from_ranges(&[(GuestAddress(0), 0x4000)]).unwrap()
    }

    fn put(mem: &Mem, gpa: u64, flags: u16, domid: DomId) {
        mem.write_obj(Combo::new(flags, domid).0, GuestAddress(gpa))
            .unwrap();
    }

    fn combo(mem: &Mem, gpa: u64) -> Combo {
        load_combo(mem, gpa).unwrap()
    }

    const S: SetStatus = SetStatus {
        ldomid: 0,
        write: false,
        map: true,
        transitive: false,
        check: true,
    };

    #[test]
    fn test_entry_pos_v1_v2_and_status() {
        assert_eq!(entry_pos(1, 0), (0, 0));
        assert_eq!(entry_pos(1, 513), (1, 8));
        assert_eq!(entry_pos(2, 257), (1, 16));
        assert_eq!(status_pos(2049), (1, 2));
        assert_eq!(frame_gpa(u64::MAX, 0), None);
        assert_eq!(frame_gpa(2, 8), Some(0x2008));
    }

    #[test]
    fn test_set_status_v1_read_sets_reading_only() {
        let m = mem();
        put(&m, 0x100, PERMIT, 0);
        assert_eq!(set_status_v1(&m, 0x100, S, |_| {}), Ok(()));
        assert_eq!(combo(&m, 0x100), Combo::new(PERMIT | READING, 0));
    }

    #[test]
    fn test_set_status_v1_write_sets_both_and_refuses_readonly() {
        let m = mem();
        put(&m, 0x100, PERMIT, 0);
        let w = SetStatus { write: true, ..S };
        assert_eq!(set_status_v1(&m, 0x100, w, |_| {}), Ok(()));
        assert_eq!(combo(&m, 0x100).flags(), PERMIT | READING | WRITING);
        put(&m, 0x108, PERMIT | READONLY, 0);
        assert_eq!(set_status_v1(&m, 0x108, w, |_| {}), Err(PinFail::Denied));
        assert_eq!(combo(&m, 0x108).flags(), PERMIT | READONLY);
    }

    #[test]
    fn test_set_status_v1_checks_type_subpage_and_domid() {
        let m = mem();
        for (flags, domid) in [
            (0, 0),
            (2, 0),
            (TRANSITIVE, 0),
            (PERMIT | SUB_PAGE, 0),
            (PERMIT, 1),
        ] {
            put(&m, 0x100, flags, domid);
            assert_eq!(
                set_status_v1(&m, 0x100, S, |_| {}),
                Err(PinFail::Denied),
                "{flags:#x} {domid}"
            );
            assert_eq!(combo(&m, 0x100), Combo::new(flags, domid));
        }
        // A copy honours the sub-page bit (v1 ignores it).
        put(&m, 0x100, PERMIT | SUB_PAGE, 0);
        let copy = SetStatus { map: false, ..S };
        assert_eq!(set_status_v1(&m, 0x100, copy, |_| {}), Ok(()));
        // An already pinned entry is not checked again.
        put(&m, 0x108, 0, 5);
        let pinned = SetStatus { check: false, ..S };
        assert_eq!(set_status_v1(&m, 0x108, pinned, |_| {}), Ok(()));
    }

    #[test]
    fn test_set_status_v1_retries_a_guest_that_flips_then_settles() {
        let m = mem();
        put(&m, 0x100, PERMIT, 0);
        // The guest toggles PWT before the first three attempts.
        let r = set_status_v1(&m, 0x100, S, |attempt| {
            if attempt < 3 {
                let c = combo(&m, 0x100);
                put(&m, 0x100, c.flags() ^ GrantFlags::PWT.bits(), 0);
            }
        });
        assert_eq!(r, Ok(()));
        assert_eq!(combo(&m, 0x100).flags() & READING, READING);
    }

    #[test]
    fn test_set_status_v1_gives_up_after_five_flips() {
        let m = mem();
        put(&m, 0x100, PERMIT, 0);
        let mut tries = 0;
        let r = set_status_v1(&m, 0x100, S, |_| {
            tries += 1;
            let c = combo(&m, 0x100);
            put(&m, 0x100, c.flags() ^ GrantFlags::PWT.bits(), 0);
        });
        assert_eq!(r, Err(PinFail::Unstable));
        assert_eq!(tries, PIN_ATTEMPTS);
        assert_eq!(combo(&m, 0x100).flags() & READING, 0);
    }

    #[test]
    fn test_set_status_v1_guest_revoking_midway_is_denied() {
        let m = mem();
        put(&m, 0x100, PERMIT, 0);
        let r = set_status_v1(&m, 0x100, S, |_| put(&m, 0x100, 0, 0));
        assert_eq!(r, Err(PinFail::Denied));
        assert_eq!(combo(&m, 0x100), Combo::new(0, 0));
    }

    #[test]
    fn test_set_status_v1_outside_memory_is_denied() {
        let m = mem();
        assert_eq!(
            set_status_v1(&m, 0x10_0000, S, |_| {}),
            Err(PinFail::Denied)
        );
        // Misaligned words are not shared words.
        assert_eq!(set_status_v1(&m, 0x101, S, |_| {}), Err(PinFail::Denied));
    }

    #[test]
    fn test_set_status_v2_sets_status_and_backs_out_when_revoked() {
        let m = mem();
        put(&m, 0x100, PERMIT, 0);
        assert_eq!(set_status_v2(&m, 0x100, 0x2000, S, |_| {}), Ok(()));
        assert_eq!(load_u16(&m, 0x2000), Some(READING));
        // The header is not touched in v2.
        assert_eq!(combo(&m, 0x100).flags(), PERMIT);
        let w = SetStatus { write: true, ..S };
        let r = set_status_v2(&m, 0x100, 0x2002, w, |_| put(&m, 0x100, 0, 0));
        assert_eq!(r, Err(PinFail::Unstable));
        assert_eq!(load_u16(&m, 0x2002), Some(0));
        // Made read-only under a pinned write upgrade: only writing goes.
        put(&m, 0x110, PERMIT, 0);
        m.write_obj(READING, GuestAddress(0x2004)).unwrap();
        let up = SetStatus {
            write: true,
            check: false,
            ..S
        };
        let r = set_status_v2(&m, 0x110, 0x2004, up, |_| {
            put(&m, 0x110, PERMIT | READONLY, 0)
        });
        assert_eq!(r, Err(PinFail::Unstable));
        assert_eq!(load_u16(&m, 0x2004), Some(READING));
    }

    #[test]
    fn test_set_status_v2_transitive_only_when_allowed() {
        let m = mem();
        put(&m, 0x100, TRANSITIVE, 0);
        assert_eq!(
            set_status_v2(&m, 0x100, 0x2000, S, |_| {}),
            Err(PinFail::Denied)
        );
        let t = SetStatus {
            transitive: true,
            ..S
        };
        assert_eq!(set_status_v2(&m, 0x100, 0x2000, t, |_| {}), Ok(()));
    }

    #[test]
    fn test_atomic_helpers_clear_and_or() {
        let m = mem();
        m.write_obj(0xffffu16, GuestAddress(0x10)).unwrap();
        assert_eq!(clear_u16(&m, 0x10, READING | WRITING), Some(0xffff));
        assert_eq!(load_u16(&m, 0x10), Some(!(READING | WRITING)));
        assert_eq!(or_u16(&m, 0x10, READING), Some(0xffe7));
        assert_eq!(clear_u16(&m, 0x10_0000, 1), None);
        assert_eq!(page_ok(&m, 3), Some(0x3000));
        assert_eq!(page_ok(&m, 4), None);
        assert_eq!(page_ok(&m, u64::MAX), None);
        mark_dirty(&m, 0x3f00, 0x1000);
    }
}
