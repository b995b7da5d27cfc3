// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The back-end side: what the VMM's PV back ends (console, block, net,
//! XenStore) use to reach the pages a guest granted them.
//!
//! [`GrantTable::map`] pins a whole list of references at once (a block
//! request's segments, a ring's pages) or none of them. Pinning follows
//! Xen's `map_grant_ref`: the entry must be `GTF_permit_access` (not
//! sub-page, not transitive), granted to the back end's domain, writable
//! for a write mapping, and name guest memory; `GTF_reading` (and
//! `GTF_writing`) are set with a bounded compare-exchange. The same
//! reference may be mapped again (by the same back-end domain); the flags
//! are cleared when its last mapping goes, and the page is marked dirty
//! (for migration) whenever a writable mapping goes.
//!
//! "Mapping" a page here is only bookkeeping plus a guest-physical
//! address: guest memory is already the VMM's, so a [`Mapping`] gives each
//! page's [`GuestAddress`] and reads or writes through vm-memory's
//! [`Bytes`].

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend};
use xen_abi::grant_table::GrantRef;
use xen_abi::xen::{DomId, domid_is_regular};

use crate::table::{GrantTable, Inner, MapRecord, Want};
use crate::{Error, FRAME_SIZE, MAX_MAP_REFS, Result, entry};

/// One mapped page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The grant reference.
    pub gref: GrantRef,
    /// Where the granted page is in guest-physical memory.
    pub addr: GuestAddress,
    /// Its length ([`FRAME_SIZE`]: maps are always whole pages).
    pub len: usize,
}

/// Pages a back end mapped with [`GrantTable::map`], in the order of the
/// references it gave. Hand it back to [`GrantTable::unmap`]; dropping it
/// keeps the pages pinned until [`GrantTable::unmap_all`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a mapping stays pinned until it is unmapped"]
pub struct Mapping {
    id: u64,
    backend: DomId,
    writable: bool,
    segments: Vec<Segment>,
}

impl Mapping {
    /// The table's id for this mapping.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The back-end domain that mapped it.
    pub fn backend(&self) -> DomId {
        self.backend
    }

    /// Whether it was mapped for writing.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The pages, in the order of the references.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Total bytes: the pages one after the other.
    pub fn len(&self) -> usize {
        self.segments.len() * FRAME_SIZE
    }

    /// Whether it maps nothing (never true for a mapping that exists).
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Calls `f` with the guest address and length of each piece of
    /// `[offset, offset + len)` of the mapping, seen as its pages one after
    /// the other, and the offset of that piece in the caller's buffer.
    fn pieces(
        &self,
        offset: usize,
        len: usize,
        mut f: impl FnMut(GuestAddress, usize, usize) -> Result<()>,
    ) -> Result<()> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.len())
            .ok_or(Error::BeyondMapping { offset, len })?;
        let mut at = offset;
        while at < end {
            let seg = &self.segments[at / FRAME_SIZE];
            let in_page = at % FRAME_SIZE;
            let n = (FRAME_SIZE - in_page).min(end - at);
            f(GuestAddress(seg.addr.0 + in_page as u64), n, at - offset)?;
            at += n;
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset` of the mapping.
    pub fn read<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<()> {
        self.pieces(offset, buf.len(), |addr, n, at| {
            mem.read_slice(&mut buf[at..at + n], addr)
                .map_err(Error::Memory)
        })
    }

    /// Writes `buf` at `offset` of the mapping (marking the bytes dirty
    /// through the memory's bitmap). [`Error::ReadOnly`] for a read-only
    /// mapping.
    pub fn write<M: GuestMemoryBackend>(&self, mem: &M, offset: usize, buf: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        self.pieces(offset, buf.len(), |addr, n, at| {
            mem.write_slice(&buf[at..at + n], addr)
                .map_err(Error::Memory)
        })
    }

    /// Reads a value at `offset` of the mapping (it may straddle pages).
    pub fn read_obj<T: ByteValued, M: GuestMemoryBackend>(
        &self,
        mem: &M,
        offset: usize,
    ) -> Result<T> {
        let mut v = T::zeroed();
        self.read(mem, offset, v.as_mut_slice())?;
        Ok(v)
    }

    /// Writes a value at `offset` of the mapping (it may straddle pages).
    pub fn write_obj<T: ByteValued, M: GuestMemoryBackend>(
        &self,
        mem: &M,
        offset: usize,
        val: &T,
    ) -> Result<()> {
        self.write(mem, offset, val.as_slice())
    }
}

impl GrantTable {
    fn check_backend(&self, backend: DomId) -> Result<()> {
        if !domid_is_regular(backend) || backend == self.config.domid {
            return Err(Error::BadDomain(backend));
        }
        Ok(())
    }

    /// Maps `refs` for back-end domain `backend`, read-only or `writable`,
    /// all or nothing: on any failure every reference pinned so far is
    /// released and the error names the first that failed.
    pub fn map<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        backend: DomId,
        refs: &[GrantRef],
        writable: bool,
    ) -> Result<Mapping> {
        self.check_backend(backend)?;
        if refs.is_empty() || refs.len() > MAX_MAP_REFS {
            return Err(Error::BadCount(refs.len()));
        }
        let want = Want {
            domid: backend,
            write: writable,
            map: true,
        };
        let mut inner = self.lock();
        let mut segments = Vec::with_capacity(refs.len());
        for &gref in refs {
            match self.pin(&mut inner, mem, gref, want) {
                Ok(pin) => segments.push(Segment {
                    gref,
                    addr: GuestAddress(pin.gfn * FRAME_SIZE as u64),
                    len: FRAME_SIZE,
                }),
                Err(e) => {
                    for s in &segments {
                        self.unpin(&mut inner, mem, s.gref, writable);
                    }
                    return Err(e.error(gref));
                }
            }
        }
        let id = inner.next_id;
        inner.next_id = inner.next_id.wrapping_add(1);
        inner.maps.insert(
            id,
            MapRecord {
                backend,
                refs: refs.to_vec(),
                writable,
            },
        );
        Ok(Mapping {
            id,
            backend,
            writable,
            segments,
        })
    }

    /// Unmaps a mapping: each reference's pin goes, clearing its flags with
    /// the last one; pages of a writable mapping are marked dirty.
    /// [`Error::UnknownMapping`] if [`GrantTable::unmap_all`] took it
    /// already.
    pub fn unmap<M: GuestMemoryBackend>(&self, mem: &M, mapping: Mapping) -> Result<()> {
        let mut inner = self.lock();
        let Some(rec) = inner.maps.remove(&mapping.id) else {
            return Err(Error::UnknownMapping(mapping.id));
        };
        self.release_map(&mut inner, mem, &rec);
        Ok(())
    }

    fn release_map<M: GuestMemoryBackend>(&self, inner: &mut Inner, mem: &M, rec: &MapRecord) {
        for &gref in &rec.refs {
            self.unpin(inner, mem, gref, rec.writable);
        }
    }

    /// Unmaps every mapping of back-end domain `backend` (the back end
    /// closed); returns how many there were.
    pub fn unmap_all<M: GuestMemoryBackend>(&self, mem: &M, backend: DomId) -> usize {
        let mut inner = self.lock();
        let mut ids: Vec<u64> = inner
            .maps
            .iter()
            .filter(|(_, r)| r.backend == backend)
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        for id in &ids {
            if let Some(rec) = inner.maps.remove(id) {
                self.release_map(&mut inner, mem, &rec);
            }
        }
        ids.len()
    }

    /// Copies `buf.len()` bytes from offset `offset` of the page `gref`
    /// grants to back-end domain `backend` (Xen's `GNTTABOP_copy` with a
    /// grant source: read access, sub-page v2 grants honoured).
    pub fn copy_from_grant<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        backend: DomId,
        gref: GrantRef,
        offset: u16,
        buf: &mut [u8],
    ) -> Result<()> {
        self.backend_copy(mem, backend, gref, offset, buf.len(), false, |gpa| {
            mem.read_slice(buf, GuestAddress(gpa))
        })
    }

    /// Copies `buf` to offset `offset` of the page `gref` grants to
    /// back-end domain `backend` for writing (Xen's `GNTTABOP_copy` with a
    /// grant destination); the bytes are marked dirty.
    pub fn copy_to_grant<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        backend: DomId,
        gref: GrantRef,
        offset: u16,
        buf: &[u8],
    ) -> Result<()> {
        self.backend_copy(mem, backend, gref, offset, buf.len(), true, |gpa| {
            mem.write_slice(buf, GuestAddress(gpa))
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn backend_copy<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        backend: DomId,
        gref: GrantRef,
        offset: u16,
        len: usize,
        write: bool,
        f: impl FnOnce(u64) -> vm_memory::GuestMemoryResult<()>,
    ) -> Result<()> {
        self.check_backend(backend)?;
        let want = Want {
            domid: backend,
            write,
            map: false,
        };
        let mut inner = self.lock();
        let pin = self
            .pin(&mut inner, mem, gref, want)
            .map_err(|e| e.error(gref))?;
        let off = usize::from(offset);
        let r = if off + len > FRAME_SIZE {
            Err(Error::BadCopyArg { offset, len })
        } else if off < usize::from(pin.start)
            || off + len > usize::from(pin.start) + usize::from(pin.len)
        {
            Err(Error::OutOfBounds(gref))
        } else {
            let gpa = pin.gfn * FRAME_SIZE as u64 + u64::from(offset);
            let r = f(gpa).map_err(Error::Memory);
            if r.is_ok() && write {
                entry::mark_dirty(mem, gpa, len);
            }
            r
        };
        self.unpin(&mut inner, mem, gref, write);
        r
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::entry::{READING, READONLY, WRITING};
    use crate::table::MAX_PINS;
    use crate::testing::*;
    use crate::{Config, GrantFrame};
    use vm_memory::bitmap::{AtomicBitmap, Bitmap};
    use vm_memory::{GuestMemoryMmap, GuestMemoryRegion, VolatileMemory};
    use xen_abi::grant_table::{Gntst, GrantEntryV1, GrantEntryV2Body, GrantFlags};

    fn v1() -> Fixture {
        let t = Fixture::new();
        t.place(GrantFrame::Shared(0));
        t.place(GrantFrame::Shared(1));
        t
    }

    #[test]
    fn test_map_read_sets_reading_and_unmap_clears() {
        let t = v1();
        t.grant_v1(8, 0, 0x10, GrantFlags::READONLY);
        let m = t.table.map(&t.mem, 0, &[8], false).unwrap();
        assert_eq!(m.segments()[0].addr, GuestAddress(0x10_000));
        assert_eq!(
            (m.len(), m.is_empty(), m.backend(), m.writable()),
            (4096, false, 0, false)
        );
        assert_eq!(t.flags(8), 1 | READONLY | READING);
        assert_eq!(t.table.pinned(8), Some(false));
        assert_eq!(t.table.mappings(), 1);
        t.table.unmap(&t.mem, m).unwrap();
        assert_eq!(t.flags(8), 1 | READONLY);
        assert_eq!(t.table.pinned(8), None);
        assert_eq!(t.table.mappings(), 0);
    }

    #[test]
    fn test_map_write_sets_both_flags_and_writes_through() {
        let t = v1();
        t.grant_v1(8, 0, 0x10, GrantFlags::empty());
        t.grant_v1(600, 0, 0x11, GrantFlags::empty());
        let m = t.table.map(&t.mem, 0, &[8, 600], true).unwrap();
        assert_eq!(t.flags(8), 1 | READING | WRITING);
        assert_eq!(t.flags(600), 1 | READING | WRITING);
        // A value straddling the two pages.
        m.write_obj(&t.mem, 4094, &0x1122_3344u32).unwrap();
        assert_eq!(t.page(0x10)[4094..], [0x44, 0x33]);
        assert_eq!(t.page(0x11)[..2], [0x22, 0x11]);
        assert_eq!(m.read_obj::<u32, _>(&t.mem, 4094).unwrap(), 0x1122_3344);
        assert!(matches!(
            m.read(&t.mem, 8190, &mut [0; 3]),
            Err(Error::BeyondMapping {
                offset: 8190,
                len: 3
            })
        ));
        assert!(matches!(
            m.read(&t.mem, usize::MAX, &mut [0; 3]),
            Err(Error::BeyondMapping { .. })
        ));
        t.table.unmap(&t.mem, m).unwrap();
        assert_eq!((t.flags(8), t.flags(600)), (1, 1));
    }

    #[test]
    fn test_read_only_mapping_refuses_writes() {
        let t = v1();
        t.grant_v1(8, 0, 0x10, GrantFlags::empty());
        let m = t.table.map(&t.mem, 0, &[8], false).unwrap();
        assert!(matches!(m.write(&t.mem, 0, b"x"), Err(Error::ReadOnly)));
        t.table.unmap(&t.mem, m).unwrap();
    }

    #[test]
    fn test_map_refusals_name_the_ref_and_leave_nothing_mapped() {
        let t = v1();
        t.grant_v1(8, 0, 0x10, GrantFlags::empty());
        t.grant_v1(9, 0, 0x11, GrantFlags::READONLY);
        t.grant_v1(10, 5, 0x11, GrantFlags::empty());
        t.grant_v1(11, 0, 0x11, GrantFlags::SUB_PAGE);
        t.grant_v1(12, 0, 0xfff_ffff, GrantFlags::empty());
        t.write_v1(
            13,
            GrantEntryV1 {
                flags: 3,
                domid: 0,
                frame: 0x11,
            },
        );
        t.write_v1(
            14,
            GrantEntryV1 {
                flags: 2,
                domid: 0,
                frame: 0x11,
            },
        );
        type Case<'a> = (&'a [GrantRef], bool, fn(&Error) -> bool);
        let cases: [Case<'_>; 8] = [
            (&[8, 9], true, |e| matches!(e, Error::Denied(9))),
            (&[8, 10], false, |e| matches!(e, Error::Denied(10))),
            (&[8, 11], false, |e| matches!(e, Error::Denied(11))),
            (&[8, 12], false, |e| {
                matches!(
                    e,
                    Error::BadPage {
                        gref: 12,
                        gfn: 0xfff_ffff
                    }
                )
            }),
            (&[8, 13], false, |e| matches!(e, Error::Denied(13))),
            (&[8, 14], false, |e| matches!(e, Error::Denied(14))),
            (&[8, 15], false, |e| matches!(e, Error::Denied(15))),
            (&[8, 1024], false, |e| matches!(e, Error::BadRef(1024))),
        ];
        for (refs, w, ok) in cases {
            let e = t.table.map(&t.mem, 0, refs, w).unwrap_err();
            assert!(ok(&e), "{refs:?}: {e}");
            assert_eq!(t.flags(8), 1, "{refs:?}");
            assert_eq!(
                t.flags(refs[1] % 512),
                t.flags(refs[1] % 512) & !(READING | WRITING)
            );
            assert_eq!(t.table.mappings(), 0);
        }
        assert!(matches!(
            t.table.map(&t.mem, 0, &[], false),
            Err(Error::BadCount(0))
        ));
        let many = vec![8; MAX_MAP_REFS + 1];
        assert!(matches!(
            t.table.map(&t.mem, 0, &many, false),
            Err(Error::BadCount(_))
        ));
        assert!(matches!(
            t.table.map(&t.mem, DOMID, &[8], false),
            Err(Error::BadDomain(1))
        ));
        assert!(matches!(
            t.table.map(&t.mem, 0x7ff0, &[8], false),
            Err(Error::BadDomain(_))
        ));
        assert_eq!(Error::Denied(1).gntst(), Gntst::GeneralError);
    }

    #[test]
    fn test_map_entry_in_unplaced_frame_is_denied() {
        let t = Fixture::new();
        assert_eq!(
            t.table
                .setup_table(xen_abi::xen::DOMID_SELF, 2)
                .unwrap()
                .len(),
            2
        );
        assert!(matches!(
            t.table.map(&t.mem, 0, &[8], false),
            Err(Error::Denied(8))
        ));
        assert!(matches!(
            t.table.map(&t.mem, 0, &[600], false),
            Err(Error::Denied(600))
        ));
    }

    #[test]
    fn test_same_ref_twice_counts_and_clears_at_last_unmap() {
        let t = v1();
        t.grant_v1(8, 0, 0x10, GrantFlags::empty());
        let a = t.table.map(&t.mem, 0, &[8, 8], false).unwrap();
        let b = t.table.map(&t.mem, 0, &[8], true).unwrap();
        assert_eq!(t.flags(8), 1 | READING | WRITING);
        t.table.unmap(&t.mem, b).unwrap();
        // The read pins remain: writing goes, reading stays.
        assert_eq!(t.flags(8), 1 | READING);
        let c = t.table.map(&t.mem, 0, &[8], true).unwrap();
        t.table.unmap(&t.mem, a).unwrap();
        assert_eq!(t.flags(8), 1 | READING | WRITING);
        t.table.unmap(&t.mem, c).unwrap();
        assert_eq!(t.flags(8), 1);
    }

    #[test]
    fn test_pinned_ref_is_not_rechecked_but_write_upgrade_is() {
        let t = v1();
        t.grant_v1(8, 0, 0x10, GrantFlags::empty());
        let a = t.table.map(&t.mem, 0, &[8], false).unwrap();
        // The guest revokes while mapped (it should not): further read maps
        // still succeed on the pinned entry, as in Xen.
        t.write_v1(
            8,
            GrantEntryV1 {
                flags: READING | READONLY,
                domid: 0,
                frame: 0x10,
            },
        );
        let b = t.table.map(&t.mem, 0, &[8], false).unwrap();
        assert!(matches!(
            t.table.map(&t.mem, 0, &[8], true),
            Err(Error::Denied(8))
        ));
        // Another back-end domain cannot share it.
        assert!(matches!(
            t.table.map(&t.mem, 3, &[8], false),
            Err(Error::InUse(8))
        ));
        t.table.unmap(&t.mem, a).unwrap();
        t.table.unmap(&t.mem, b).unwrap();
        assert_eq!(t.flags(8), READONLY);
    }

    #[test]
    fn test_pin_counts_are_limited_like_xen() {
        let t = v1();
        t.grant_v1(8, 0, 0x10, GrantFlags::empty());
        let refs = vec![8; MAX_PINS as usize];
        let a = t.table.map(&t.mem, 0, &refs, false).unwrap();
        assert!(matches!(
            t.table.map(&t.mem, 0, &[8], false),
            Err(Error::InUse(8))
        ));
        assert!(matches!(
            t.table.map(&t.mem, 0, &[8], true),
            Err(Error::InUse(8))
        ));
        t.table.unmap(&t.mem, a).unwrap();
        assert_eq!(t.flags(8), 1);
    }

    #[test]
    fn test_unmap_twice_and_unmap_all() {
        let t = v1();
        t.grant_v1(8, 0, 0x10, GrantFlags::empty());
        t.grant_v1(9, 3, 0x11, GrantFlags::empty());
        let a = t.table.map(&t.mem, 0, &[8], true).unwrap();
        let b = t.table.map(&t.mem, 0, &[8], false).unwrap();
        let c = t.table.map(&t.mem, 3, &[9], false).unwrap();
        let a_id = a.id();
        assert_eq!(t.table.unmap_all(&t.mem, 0), 2);
        assert_eq!(t.flags(8), 1);
        assert_eq!(t.flags(9), 1 | READING);
        assert!(matches!(t.table.unmap(&t.mem, a), Err(Error::UnknownMapping(id)) if id == a_id));
        assert!(t.table.unmap(&t.mem, b).is_err());
        assert_eq!(t.table.unmap_all(&t.mem, 0), 0);
        t.table.unmap(&t.mem, c).unwrap();
        assert_eq!(t.flags(9), 1);
    }

    #[test]
    fn test_map_v2_uses_status_words() {
        let t = v1();
        assert_eq!(t.table.set_version(&t.mem, 2).0, Ok(()));
        t.grant_v2(
            8,
            0,
            GrantEntryV2Body::FullPage { frame: 0x10 },
            GrantFlags::empty(),
        );
        // Without the status frame the entry cannot be pinned.
        assert!(matches!(
            t.table.map(&t.mem, 0, &[8], false),
            Err(Error::Denied(8))
        ));
        t.place(GrantFrame::Status(0));
        let m = t.table.map(&t.mem, 0, &[8], true).unwrap();
        assert_eq!(t.status(8), READING | WRITING);
        assert_eq!(t.entry_v2(8).hdr.flags, 1);
        t.table.unmap(&t.mem, m).unwrap();
        assert_eq!(t.status(8), 0);
        // Sub-page and transitive entries cannot be mapped.
        t.grant_v2(
            9,
            0,
            GrantEntryV2Body::SubPage {
                page_off: 0,
                length: 10,
                frame: 0x10,
            },
            GrantFlags::SUB_PAGE,
        );
        t.write_v2(
            10,
            3,
            0,
            GrantEntryV2Body::Transitive {
                trans_domid: 1,
                gref: 8,
            },
        );
        assert!(matches!(
            t.table.map(&t.mem, 0, &[9], false),
            Err(Error::Denied(9))
        ));
        assert!(matches!(
            t.table.map(&t.mem, 0, &[10], false),
            Err(Error::Denied(10))
        ));
        assert_eq!((t.status(9), t.status(10)), (0, 0));
        // A 64-bit frame number is fine in v2 if it is memory.
        t.grant_v2(
            11,
            0,
            GrantEntryV2Body::FullPage { frame: 1 << 40 },
            GrantFlags::empty(),
        );
        assert!(
            matches!(t.table.map(&t.mem, 0, &[11], false), Err(Error::BadPage { gfn, .. }) if gfn == 1 << 40)
        );
        assert_eq!(t.status(11), 0);
        // Entries beyond frame 0 need their own frame: 256 per frame in v2.
        t.grant_v2(
            300,
            0,
            GrantEntryV2Body::FullPage { frame: 0x10 },
            GrantFlags::empty(),
        );
        let m = t.table.map(&t.mem, 0, &[300], false).unwrap();
        assert_eq!(t.status(300), READING);
        t.table.unmap(&t.mem, m).unwrap();
    }

    #[test]
    fn test_backend_copy_reads_writes_and_checks_ranges() {
        let t = v1();
        t.grant_v1(8, 0, 0x10, GrantFlags::READONLY);
        t.grant_v1(9, 0, 0x11, GrantFlags::empty());
        t.fill(0x10, 9);
        let mut buf = [0u8; 16];
        t.table
            .copy_from_grant(&t.mem, 0, 8, 100, &mut buf)
            .unwrap();
        assert_eq!(buf, [9; 16]);
        t.table.copy_to_grant(&t.mem, 0, 9, 4080, &buf).unwrap();
        assert_eq!(t.page(0x11)[4080..], [9; 16]);
        assert_eq!((t.flags(8), t.flags(9)), (1 | READONLY, 1));
        assert!(matches!(
            t.table.copy_to_grant(&t.mem, 0, 8, 0, &buf),
            Err(Error::Denied(8))
        ));
        assert!(matches!(
            t.table.copy_to_grant(&t.mem, 0, 9, 4081, &buf),
            Err(Error::BadCopyArg {
                offset: 4081,
                len: 16
            })
        ));
        assert!(matches!(
            t.table.copy_from_grant(&t.mem, 0, 9, 0, &mut [0; 4097]),
            Err(Error::BadCopyArg { .. })
        ));
        assert!(matches!(
            t.table.copy_from_grant(&t.mem, 1, 9, 0, &mut buf),
            Err(Error::BadDomain(1))
        ));
        assert!(matches!(
            t.table.copy_from_grant(&t.mem, 0, 5000, 0, &mut buf),
            Err(Error::BadRef(5000))
        ));
        assert_eq!(t.flags(9), 1);
        // While mapped, a copy shares the pin and leaves the flags set.
        let m = t.table.map(&t.mem, 0, &[9], false).unwrap();
        t.table.copy_to_grant(&t.mem, 0, 9, 0, &buf).unwrap();
        assert_eq!(t.flags(9), 1 | READING);
        t.table.unmap(&t.mem, m).unwrap();
        assert_eq!(t.flags(9), 1);
    }

    #[test]
    fn test_backend_copy_sub_page_v2() {
        let t = v1();
        assert_eq!(t.table.set_version(&t.mem, 2).0, Ok(()));
        t.place(GrantFrame::Status(0));
        t.grant_v2(
            9,
            0,
            GrantEntryV2Body::SubPage {
                page_off: 512,
                length: 64,
                frame: 0x11,
            },
            GrantFlags::SUB_PAGE,
        );
        t.table.copy_to_grant(&t.mem, 0, 9, 512, &[1; 64]).unwrap();
        assert!(matches!(
            t.table.copy_to_grant(&t.mem, 0, 9, 511, &[1; 2]),
            Err(Error::OutOfBounds(9))
        ));
        assert!(matches!(
            t.table.copy_from_grant(&t.mem, 0, 9, 570, &mut [0; 7]),
            Err(Error::OutOfBounds(9))
        ));
        assert_eq!(t.status(9), 0);
    }

    #[test]
    fn test_write_unmap_and_copy_mark_pages_dirty() {
        type DirtyMem = GuestMemoryMmap<AtomicBitmap>;
        let mem = DirtyMem::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        let frames = Arc::new(crate::testing::TestFrames::new(64));
        let table = GrantTable::new(Config::new(DOMID), frames.clone()).unwrap();
        frames.set_init(table.frame_init());
        assert!(frames.place(&mem, GrantFrame::Shared(0), 0x200));
        for (gref, gfn) in [(8u64, 0x10u32), (9, 0x12), (10, 0x13)] {
            let mut e = GrantEntryV1 {
                domid: 0,
                frame: gfn,
                ..Default::default()
            };
            e.set_grant(
                xen_abi::grant_table::GrantType::PermitAccess,
                GrantFlags::empty(),
            );
            mem.write_obj(e, GuestAddress(0x200 * 4096 + gref * 8))
                .unwrap();
        }
        let region = mem.find_region(GuestAddress(0)).unwrap();
        let dirty = |gfn: u64| region.bitmap().dirty_at(gfn as usize * 4096 + 100);
        let m = table.map(&mem, 0, &[8], true).unwrap();
        assert!(!dirty(0x10));
        table.unmap(&mem, m).unwrap();
        assert!(dirty(0x10));
        let m = table.map(&mem, 0, &[9], false).unwrap();
        table.unmap(&mem, m).unwrap();
        assert!(!dirty(0x12));
        table.copy_to_grant(&mem, 0, 10, 100, &[1]).unwrap();
        assert!(dirty(0x13));
    }

    #[test]
    fn test_pin_gives_up_on_a_guest_that_keeps_flipping() {
        let t = v1();
        t.grant_v1(8, 0, 0x10, GrantFlags::empty());
        let gpa = 0x200 * 4096 + 64;
        let want = Want {
            domid: 0,
            write: false,
            map: true,
        };
        let mut inner = t.table.lock();
        let flip = |_| {
            let f: u16 = t.mem.read_obj(GuestAddress(gpa)).unwrap();
            t.mem.write_obj(f ^ 0x20, GuestAddress(gpa)).unwrap();
        };
        let r = t.table.pin_with(&mut inner, &t.mem, 8, want, flip);
        assert_eq!(
            r.unwrap_err().error(8).to_string(),
            "Grant reference 8 changed while it was being pinned."
        );
        assert!(inner.pins.is_empty());
        // A guest that flips twice and stops is outlasted.
        let mut n = 0;
        let r = t.table.pin_with(&mut inner, &t.mem, 8, want, |_| {
            if n < 2 {
                flip(0);
            }
            n += 1;
        });
        assert!(r.is_ok());
        drop(inner);
        assert_eq!(t.flags(8) & READING, READING);
    }

    #[test]
    fn test_map_against_a_guest_thread_flipping_flags_terminates() {
        let t = Arc::new(v1());
        t.grant_v1(8, 0, 0x10, GrantFlags::empty());
        let stop = Arc::new(AtomicBool::new(false));
        let flipper = {
            let (t, stop) = (t.clone(), stop.clone());
            std::thread::spawn(move || {
                let gpa = GuestAddress(0x200 * 4096 + 64);
                let slice = t.mem.get_slice(gpa, 2).unwrap();
                let a = slice
                    .get_atomic_ref::<std::sync::atomic::AtomicU16>(0)
                    .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    a.fetch_xor(0x20, Ordering::SeqCst);
                }
            })
        };
        let mut ok = 0;
        for _ in 0..2000 {
            match t.table.map(&t.mem, 0, &[8], true) {
                Ok(m) => {
                    ok += 1;
                    t.table.unmap(&t.mem, m).unwrap();
                }
                Err(e) => assert!(matches!(e, Error::Unstable(8)), "{e}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        flipper.join().unwrap();
        assert_eq!(t.flags(8) & (READING | WRITING), 0);
        assert!(ok > 0 || t.table.mappings() == 0);
    }

    #[test]
    fn test_mapping_of_removed_frame_clears_flags_when_placed_again() {
        let t = v1();
        t.grant_v1(8, 0, 0x10, GrantFlags::empty());
        let m = t.table.map(&t.mem, 0, &[8], true).unwrap();
        t.remove(GrantFrame::Shared(0));
        t.table.unmap(&t.mem, m).unwrap();
        t.place(GrantFrame::Shared(0));
        assert_eq!(t.flags(8), 1);
        assert_eq!(t.entry_v1(8).frame, 0x10);
    }
}
