// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The guest's own grant operations on data: `GNTTABOP_copy`,
//! `GNTTABOP_map_grant_ref` and `GNTTABOP_unmap_grant_ref`.
//!
//! Only the guest's own domain has a grant table here (the back-end domain
//! exists, but grants nothing a guest could map or copy), so a guest can
//! only copy between its own frames and grants it issued to itself.
//!
//! # Mapping its own grants
//!
//! An HVM guest that maps one of its own grants with `GNTMAP_host_map`
//! asks Xen to alias the granted page at `host_addr` in its p2m
//! (`create_grant_p2m_mapping`). A VMM built on vm-memory cannot alias one
//! guest page at a second GFN (that would need a memory slot per page), so
//! every check Xen makes is made, in Xen's order and with Xen's statuses,
//! and a request that passes them all gets `GNTST_general_error`: the
//! status Xen returns when the p2m refuses the alias. The entry's flags are
//! left as they were (Xen sets and clears them again). Consequently no
//! guest mapping ever exists, and `GNTTABOP_unmap_grant_ref` answers
//! `GNTST_bad_handle` for every handle, as Xen does for a handle it never
//! gave out.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use xen_abi::grant_table::{GntmapFlags, Gntst, GnttabMapGrantRef, GrantRef};
use xen_abi::warn_limited;
use xen_abi::xen::{DOMID_SELF, DomId};

use crate::FRAME_SIZE;
use crate::entry::{self, PERMIT, READONLY, SUB_PAGE, TRANSITIVE, TYPE_MASK};
use crate::table::{GrantTable, Inner, MAX_PINS, PinError, Want, nr_entries};

/// What one side of a copy names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyTarget {
    /// A grant reference of the side's domain (`GNTCOPY_*_gref` set).
    Gref(GrantRef),
    /// A frame of the caller (`xen_pfn_t gmfn`).
    Gmfn(u64),
}

/// One side of a `GNTTABOP_copy` (`struct gnttab_copy_ptr`), decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopySide {
    /// The grant or frame.
    pub target: CopyTarget,
    /// The domain owning it.
    pub domid: DomId,
    /// Byte offset within the page.
    pub offset: u16,
}

/// One `GNTTABOP_copy` (`struct gnttab_copy`), decoded from either layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyOp {
    /// Where the bytes come from.
    pub source: CopySide,
    /// Where they go.
    pub dest: CopySide,
    /// How many bytes.
    pub len: u16,
}

/// A side of a copy, claimed: Xen's `gnttab_copy_buf`.
#[derive(Clone, Copy, Debug)]
struct Buf {
    gpa: u64,
    start: u16,
    len: u16,
    /// The pinned reference, to release.
    gref: Option<GrantRef>,
}

impl GrantTable {
    /// Xen's `gnttab_copy_lock_domain` for one side.
    fn copy_domain(&self, side: &CopySide) -> Result<(), Gntst> {
        let is_gref = matches!(side.target, CopyTarget::Gref(_));
        if side.domid != DOMID_SELF && !is_gref {
            return Err(Gntst::PermissionDenied);
        }
        if side.domid != DOMID_SELF && side.domid != self.config.domid {
            return Err(Gntst::BadDomain);
        }
        Ok(())
    }

    /// Xen's `gnttab_copy_claim_buf`.
    fn claim<M: GuestMemoryBackend>(
        &self,
        inner: &mut Inner,
        mem: &M,
        side: &CopySide,
        write: bool,
    ) -> Result<Buf, Gntst> {
        match side.target {
            CopyTarget::Gref(gref) => {
                let want = Want {
                    domid: self.config.domid,
                    write,
                    map: false,
                };
                let pin = self.pin(inner, mem, gref, want).map_err(PinError::gntst)?;
                Ok(Buf {
                    gpa: entry::frame_gpa(pin.gfn, 0).ok_or(Gntst::BadPage)?,
                    start: pin.start,
                    len: pin.len,
                    gref: Some(gref),
                })
            }
            CopyTarget::Gmfn(gmfn) => Ok(Buf {
                gpa: entry::page_ok(mem, gmfn).ok_or(Gntst::BadPage)?,
                start: 0,
                len: FRAME_SIZE as u16,
                gref: None,
            }),
        }
    }

    fn release<M: GuestMemoryBackend>(&self, inner: &mut Inner, mem: &M, buf: Buf, write: bool) {
        if let Some(gref) = buf.gref {
            self.unpin(inner, mem, gref, write);
        }
    }

    /// `GNTTABOP_copy` for one entry, as Xen's `gnttab_copy_one` answers a
    /// domain that is alone: both domains must be the caller (a frame only
    /// as `DOMID_SELF`: else `GNTST_permission_denied`; another domain:
    /// `GNTST_bad_domain`), grants must be granted to the caller itself,
    /// sub-page v2 grants restrict the range, transitive grants fail (they
    /// can only lead to another domain). The flags of each grant are held
    /// while the bytes are copied, and the destination is marked dirty.
    pub fn copy<M: GuestMemoryBackend>(&self, mem: &M, op: &CopyOp) -> Gntst {
        let r = self.copy_inner(mem, op);
        if r != Gntst::Okay {
            warn_limited!("grant table: guest copy {op:?} failed: {r}");
        }
        r
    }

    fn copy_inner<M: GuestMemoryBackend>(&self, mem: &M, op: &CopyOp) -> Gntst {
        if let Err(e) = self
            .copy_domain(&op.source)
            .and_then(|()| self.copy_domain(&op.dest))
        {
            return e;
        }
        let mut inner = self.lock();
        let src = match self.claim(&mut inner, mem, &op.source, false) {
            Ok(b) => b,
            Err(e) => return e,
        };
        let dst = match self.claim(&mut inner, mem, &op.dest, true) {
            Ok(b) => b,
            Err(e) => {
                self.release(&mut inner, mem, src, false);
                return e;
            }
        };
        let r = copy_bytes(mem, op, &src, &dst);
        self.release(&mut inner, mem, dst, true);
        self.release(&mut inner, mem, src, false);
        r
    }

    /// `GNTTABOP_map_grant_ref` from the guest. See the module docs: every
    /// check of Xen's `map_grant_ref` is made in its order, and a request
    /// that passes them gets `GNTST_general_error` (the p2m alias a VMM
    /// cannot make).
    pub fn guest_map<M: GuestMemoryBackend>(&self, mem: &M, op: &GnttabMapGrantRef) -> Gntst {
        let r = self.guest_map_inner(mem, op);
        warn_limited!(
            "grant table: guest map of its own ref {} (flags {:#x}, dom {}): {r}",
            op.gref,
            op.flags,
            op.dom
        );
        r
    }

    fn guest_map_inner<M: GuestMemoryBackend>(&self, mem: &M, op: &GnttabMapGrantRef) -> Gntst {
        let flags = GntmapFlags::from_bits_truncate(op.flags);
        if !flags.intersects(GntmapFlags::DEVICE_MAP | GntmapFlags::HOST_MAP) {
            return Gntst::BadGntref;
        }
        // paging_mode_external: no device or PTE mappings for HVM.
        if flags.intersects(
            GntmapFlags::DEVICE_MAP | GntmapFlags::APPLICATION_MAP | GntmapFlags::CONTAINS_PTE,
        ) {
            return Gntst::GeneralError;
        }
        // rcu_lock_domain_by_id: DOMID_SELF is not a domain id.
        if op.dom != self.config.domid {
            return Gntst::BadDomain;
        }
        let readonly = flags.contains(GntmapFlags::READONLY);
        let inner = self.lock();
        let (version, nr) = {
            let st = self.frames.lock();
            (st.version, nr_entries(&st))
        };
        if op.gref >= nr {
            return Gntst::BadGntref;
        }
        let existing = inner.pins.get(&op.gref).copied();
        if let Some(p) = existing
            && (p.domid != self.config.domid
                || p.readers >= MAX_PINS
                || p.writers >= MAX_PINS
                || p.sub_page)
        {
            return Gntst::GeneralError;
        }
        if existing.is_none() || (!readonly && existing.is_some_and(|p| p.writers == 0)) {
            // _set_status: checked, not set (nothing would stay set).
            let Some(hdr) = self.entry_gpa(version, op.gref) else {
                return Gntst::GeneralError;
            };
            let Some(c) = entry::load_combo(mem, hdr) else {
                return Gntst::GeneralError;
            };
            let t = c.flags() & (TYPE_MASK | SUB_PAGE);
            let type_ok = t == PERMIT || (version == 2 && t == TRANSITIVE);
            if existing.is_none() && (!type_ok || c.domid() != self.config.domid) {
                return Gntst::GeneralError;
            }
            if !readonly && c.flags() & READONLY != 0 {
                return Gntst::GeneralError;
            }
            if version == 2 && self.status_gpa(op.gref).is_none() {
                return Gntst::GeneralError;
            }
            if existing.is_none() {
                // The frame Xen reads: v1 `frame`, v2 `full_page.frame`.
                let gfn = if version == 2 {
                    entry::read::<M, u64>(mem, hdr + 8)
                } else {
                    entry::read::<M, u32>(mem, hdr + 4).map(u64::from)
                };
                match gfn {
                    Some(g) if entry::page_ok(mem, g).is_some() => {}
                    _ => return Gntst::BadPage,
                }
            }
        }
        Gntst::GeneralError
    }

    /// `GNTTABOP_unmap_grant_ref` from the guest: `GNTST_bad_handle`, as no
    /// guest mapping ever exists (see the module docs).
    pub fn guest_unmap(&self, handle: u32) -> Gntst {
        warn_limited!("grant table: guest unmap of handle {handle:#x}, never mapped");
        Gntst::BadHandle
    }
}

/// Xen's `gnttab_copy_buf`: range checks, then the copy.
fn copy_bytes<M: GuestMemoryBackend>(mem: &M, op: &CopyOp, src: &Buf, dst: &Buf) -> Gntst {
    let len = u32::from(op.len);
    let (so, doff) = (u32::from(op.source.offset), u32::from(op.dest.offset));
    if so + len > FRAME_SIZE as u32 || doff + len > FRAME_SIZE as u32 {
        return Gntst::BadCopyArg;
    }
    let inside = |off: u32, b: &Buf| {
        off >= u32::from(b.start) && off + len <= u32::from(b.start) + u32::from(b.len)
    };
    if !inside(so, src) || !inside(doff, dst) {
        return Gntst::GeneralError;
    }
    let mut bytes = vec![0u8; op.len as usize];
    let from = GuestAddress(src.gpa + u64::from(so));
    let to = GuestAddress(dst.gpa + u64::from(doff));
    if mem.read_slice(&mut bytes, from).is_err() || mem.write_slice(&bytes, to).is_err() {
        // Both pages were checked to be guest memory.
        return Gntst::GeneralError;
    }
    entry::mark_dirty(mem, to.0, bytes.len());
    Gntst::Okay
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GrantFrame;
    use crate::entry::{READING, WRITING};
    use crate::testing::*;
    use xen_abi::grant_table::{GrantEntryV1, GrantEntryV2Body, GrantFlags};

    fn side(target: CopyTarget, domid: DomId, offset: u16) -> CopySide {
        CopySide {
            target,
            domid,
            offset,
        }
    }

    fn op(source: CopySide, dest: CopySide, len: u16) -> CopyOp {
        CopyOp { source, dest, len }
    }

    fn gmfn(g: u64) -> CopySide {
        side(CopyTarget::Gmfn(g), DOMID_SELF, 0)
    }

    fn gref(r: GrantRef) -> CopySide {
        side(CopyTarget::Gref(r), DOMID_SELF, 0)
    }

    fn v1_fixture() -> Fixture {
        let t = Fixture::new();
        t.place(GrantFrame::Shared(0));
        t
    }

    #[test]
    fn test_copy_gmfn_to_gmfn_copies_bytes() {
        let t = v1_fixture();
        t.fill(0x10, 0xab);
        let o = op(
            side(CopyTarget::Gmfn(0x10), DOMID_SELF, 100),
            side(CopyTarget::Gmfn(0x11), DOMID_SELF, 200),
            300,
        );
        assert_eq!(t.table.copy(&t.mem, &o), Gntst::Okay);
        let p = t.page(0x11);
        assert!(p[200..500].iter().all(|&b| b == 0xab));
        assert_eq!((p[199], p[500]), (0, 0));
    }

    #[test]
    fn test_copy_gref_to_gref_holds_and_releases_flags() {
        let t = v1_fixture();
        t.grant_v1(8, DOMID, 0x10, GrantFlags::empty());
        t.grant_v1(9, DOMID, 0x11, GrantFlags::empty());
        t.fill(0x10, 0x42);
        assert_eq!(
            t.table.copy(&t.mem, &op(gref(8), gref(9), 4096)),
            Gntst::Okay
        );
        assert_eq!(t.page(0x11), vec![0x42; 4096]);
        assert_eq!((t.flags(8), t.flags(9)), (1, 1));
        assert_eq!(t.table.pinned(8), None);
        // Own domain id instead of DOMID_SELF works for grants.
        let o = op(side(CopyTarget::Gref(8), DOMID, 0), gmfn(0x12), 16);
        assert_eq!(t.table.copy(&t.mem, &o), Gntst::Okay);
    }

    #[test]
    fn test_copy_domain_checks_follow_xen() {
        let t = v1_fixture();
        // A frame must be named with DOMID_SELF, even by our own id.
        let own = side(CopyTarget::Gmfn(0x10), DOMID, 0);
        assert_eq!(
            t.table.copy(&t.mem, &op(own, gmfn(0x11), 1)),
            Gntst::PermissionDenied
        );
        assert_eq!(
            t.table.copy(&t.mem, &op(gmfn(0x11), own, 1)),
            Gntst::PermissionDenied
        );
        for d in [0, 2, 0x7ff2] {
            let other = side(CopyTarget::Gref(8), d, 0);
            assert_eq!(
                t.table.copy(&t.mem, &op(other, gmfn(0x11), 1)),
                Gntst::BadDomain
            );
            assert_eq!(
                t.table.copy(&t.mem, &op(gmfn(0x11), other, 1)),
                Gntst::BadDomain
            );
        }
    }

    #[test]
    fn test_copy_grant_errors() {
        let t = v1_fixture();
        // Beyond the table.
        assert_eq!(
            t.table.copy(&t.mem, &op(gref(512), gmfn(0x11), 1)),
            Gntst::BadGntref
        );
        // Not granted to ourselves, invalid, read-only as destination.
        t.grant_v1(8, 0, 0x10, GrantFlags::empty());
        assert_eq!(
            t.table.copy(&t.mem, &op(gref(8), gmfn(0x11), 1)),
            Gntst::GeneralError
        );
        assert_eq!(
            t.table.copy(&t.mem, &op(gref(9), gmfn(0x11), 1)),
            Gntst::GeneralError
        );
        t.grant_v1(10, DOMID, 0x10, GrantFlags::READONLY);
        assert_eq!(
            t.table.copy(&t.mem, &op(gmfn(0x11), gref(10), 1)),
            Gntst::GeneralError
        );
        assert_eq!(
            t.table.copy(&t.mem, &op(gref(10), gmfn(0x11), 1)),
            Gntst::Okay
        );
        // A frame that is not memory.
        t.grant_v1(11, DOMID, 0x00ff_ffff, GrantFlags::empty());
        assert_eq!(
            t.table.copy(&t.mem, &op(gref(11), gmfn(0x11), 1)),
            Gntst::BadPage
        );
        assert_eq!(t.flags(11), 1);
        assert_eq!(
            t.table.copy(&t.mem, &op(gmfn(RAM), gmfn(0x11), 1)),
            Gntst::BadPage
        );
        assert_eq!(
            t.table.copy(&t.mem, &op(gmfn(u64::MAX), gmfn(0x11), 1)),
            Gntst::BadPage
        );
        // The source is released when the destination fails.
        assert_eq!(
            t.table.copy(&t.mem, &op(gref(10), gref(9), 1)),
            Gntst::GeneralError
        );
        assert_eq!(t.flags(10), 1 | READONLY);
        assert_eq!(t.table.pinned(10), None);
    }

    #[test]
    fn test_copy_range_checks_come_after_the_grants() {
        let t = v1_fixture();
        t.grant_v1(8, DOMID, 0x10, GrantFlags::empty());
        let far = side(CopyTarget::Gref(8), DOMID_SELF, 4000);
        assert_eq!(
            t.table.copy(&t.mem, &op(far, gmfn(0x11), 97)),
            Gntst::BadCopyArg
        );
        assert_eq!(t.table.copy(&t.mem, &op(far, gmfn(0x11), 96)), Gntst::Okay);
        let dfar = side(CopyTarget::Gmfn(0x11), DOMID_SELF, 4095);
        assert_eq!(
            t.table.copy(&t.mem, &op(gref(8), dfar, 2)),
            Gntst::BadCopyArg
        );
        // Bad grant wins over bad range.
        assert_eq!(
            t.table.copy(
                &t.mem,
                &op(side(CopyTarget::Gref(9), DOMID_SELF, 4095), gmfn(0x11), 2)
            ),
            Gntst::GeneralError
        );
        assert_eq!(t.flags(8), 1);
        // Zero bytes is fine.
        assert_eq!(
            t.table.copy(&t.mem, &op(gref(8), gmfn(0x11), 0)),
            Gntst::Okay
        );
    }

    #[test]
    fn test_copy_v2_sub_page_limits_range_and_transitive_fails() {
        let t = v1_fixture();
        assert_eq!(t.table.set_version(&t.mem, 2).0, Ok(()));
        t.place(GrantFrame::Status(0));
        t.grant_v2(
            8,
            DOMID,
            GrantEntryV2Body::SubPage {
                page_off: 100,
                length: 50,
                frame: 0x10,
            },
            GrantFlags::SUB_PAGE,
        );
        t.fill(0x10, 7);
        let at = |off| side(CopyTarget::Gref(8), DOMID_SELF, off);
        assert_eq!(
            t.table.copy(&t.mem, &op(at(100), gmfn(0x11), 50)),
            Gntst::Okay
        );
        assert_eq!(
            t.table.copy(&t.mem, &op(at(99), gmfn(0x11), 10)),
            Gntst::GeneralError
        );
        assert_eq!(
            t.table.copy(&t.mem, &op(at(120), gmfn(0x11), 31)),
            Gntst::GeneralError
        );
        assert_eq!(t.status(8), 0);
        // Xen keeps 15 bits of page_off.
        t.grant_v2(
            9,
            DOMID,
            GrantEntryV2Body::SubPage {
                page_off: 0x8000,
                length: 10,
                frame: 0x10,
            },
            GrantFlags::SUB_PAGE,
        );
        let o = op(side(CopyTarget::Gref(9), DOMID_SELF, 0), gmfn(0x11), 10);
        assert_eq!(t.table.copy(&t.mem, &o), Gntst::Okay);
        t.write_v2(
            10,
            3,
            DOMID,
            GrantEntryV2Body::Transitive {
                trans_domid: 0,
                gref: 8,
            },
        );
        assert_eq!(
            t.table.copy(&t.mem, &op(gref(10), gmfn(0x11), 1)),
            Gntst::GeneralError
        );
        assert_eq!(t.status(10), 0);
        // Full-page v2 grant as destination: status bits come and go.
        t.grant_v2(
            11,
            DOMID,
            GrantEntryV2Body::FullPage { frame: 0x12 },
            GrantFlags::empty(),
        );
        assert_eq!(
            t.table.copy(&t.mem, &op(gmfn(0x10), gref(11), 8)),
            Gntst::Okay
        );
        assert_eq!(t.page(0x12)[..8], [7; 8]);
        assert_eq!(t.status(11), 0);
    }

    #[test]
    fn test_copy_v2_without_status_frame_fails() {
        let t = v1_fixture();
        assert_eq!(t.table.set_version(&t.mem, 2).0, Ok(()));
        t.grant_v2(
            8,
            DOMID,
            GrantEntryV2Body::FullPage { frame: 0x10 },
            GrantFlags::empty(),
        );
        assert_eq!(
            t.table.copy(&t.mem, &op(gref(8), gmfn(0x11), 1)),
            Gntst::GeneralError
        );
    }

    #[test]
    fn test_copy_of_a_ref_a_back_end_holds_is_general_error() {
        let t = v1_fixture();
        t.grant_v1(8, 0, 0x10, GrantFlags::empty());
        let m = t.table.map(&t.mem, 0, &[8], false).unwrap();
        // The guest re-grants it to itself while mapped.
        t.write_v1(
            8,
            GrantEntryV1 {
                flags: 1 | READING,
                domid: DOMID,
                frame: 0x10,
            },
        );
        assert_eq!(
            t.table.copy(&t.mem, &op(gref(8), gmfn(0x11), 1)),
            Gntst::GeneralError
        );
        t.table.unmap(&t.mem, m).unwrap();
        assert_eq!(t.flags(8), 1);
    }

    #[test]
    fn test_copy_same_ref_both_sides() {
        let t = v1_fixture();
        t.grant_v1(8, DOMID, 0x10, GrantFlags::empty());
        t.fill(0x10, 1);
        let o = op(gref(8), side(CopyTarget::Gref(8), DOMID_SELF, 2048), 2048);
        assert_eq!(t.table.copy(&t.mem, &o), Gntst::Okay);
        assert_eq!(t.flags(8), 1);
        assert_eq!(t.table.pinned(8), None);
    }

    fn map_op(gref: GrantRef, flags: GntmapFlags, dom: DomId) -> GnttabMapGrantRef {
        GnttabMapGrantRef {
            host_addr: 0x5000,
            flags: flags.bits(),
            gref,
            dom,
            ..Default::default()
        }
    }

    #[test]
    fn test_guest_map_checks_in_xen_order_then_fails_general() {
        let t = v1_fixture();
        let host = GntmapFlags::HOST_MAP;
        t.grant_v1(8, DOMID, 0x10, GrantFlags::empty());
        t.grant_v1(9, DOMID, 0xfff_ffff, GrantFlags::empty());
        t.grant_v1(10, DOMID, 0x10, GrantFlags::READONLY);
        t.grant_v1(11, DOMID, 0x10, GrantFlags::SUB_PAGE);
        let cases = [
            (map_op(8, GntmapFlags::empty(), DOMID), Gntst::BadGntref),
            (map_op(8, GntmapFlags::READONLY, DOMID), Gntst::BadGntref),
            (
                map_op(8, GntmapFlags::DEVICE_MAP, DOMID),
                Gntst::GeneralError,
            ),
            (
                map_op(8, host | GntmapFlags::CONTAINS_PTE, DOMID),
                Gntst::GeneralError,
            ),
            (map_op(8, host, DOMID_SELF), Gntst::BadDomain),
            (map_op(8, host, 0), Gntst::BadDomain),
            (map_op(512, host, DOMID), Gntst::BadGntref),
            (map_op(12, host, DOMID), Gntst::GeneralError),
            (map_op(9, host, DOMID), Gntst::BadPage),
            (map_op(10, host, DOMID), Gntst::GeneralError),
            (
                map_op(10, host | GntmapFlags::READONLY, DOMID),
                Gntst::GeneralError,
            ),
            (
                map_op(11, host | GntmapFlags::READONLY, DOMID),
                Gntst::GeneralError,
            ),
            (map_op(8, host, DOMID), Gntst::GeneralError),
        ];
        for (o, want) in cases {
            assert_eq!(t.table.guest_map(&t.mem, &o), want, "{o:?}");
        }
        assert_eq!(t.flags(8), 1);
        assert_eq!(t.table.pinned(8), None);
    }

    #[test]
    fn test_guest_map_of_a_back_end_pinned_ref_is_general_error() {
        let t = v1_fixture();
        t.grant_v1(8, 0, 0xfff_ffff, GrantFlags::empty());
        t.grant_v1(9, 0, 0x10, GrantFlags::empty());
        let m = t.table.map(&t.mem, 0, &[9], false).unwrap();
        let host = GntmapFlags::HOST_MAP;
        assert_eq!(
            t.table.guest_map(&t.mem, &map_op(9, host, DOMID)),
            Gntst::GeneralError
        );
        t.table.unmap(&t.mem, m).unwrap();
        // v2 transitive entries pass the flag check; then the frame decides.
        assert_eq!(t.table.set_version(&t.mem, 2).0, Ok(()));
        t.place(GrantFrame::Status(0));
        t.write_v2(
            8,
            3,
            DOMID,
            GrantEntryV2Body::FullPage { frame: 0xfff_ffff },
        );
        assert_eq!(
            t.table.guest_map(&t.mem, &map_op(8, host, DOMID)),
            Gntst::BadPage
        );
        assert_eq!(t.status(8), 0);
        assert_eq!(t.table.guest_unmap(0), Gntst::BadHandle);
        assert_eq!(t.table.guest_unmap(u32::MAX), Gntst::BadHandle);
        let _ = (READING, WRITING);
    }
}
