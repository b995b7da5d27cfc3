// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! [`GrantTable`]: the table, its pins (Xen's active entries), and the
//! guest operations that manage the table itself (`set_version`,
//! `get_version`, `query_size`, `setup_table`, `swap_grant_ref`).
//!
//! Checks come in the order of `xen/common/grant_table.c`, so a guest
//! sees the status or errno Xen would give it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend};
use xen_abi::errno::XenErrno;
use xen_abi::grant_table::{
    GNTTAB_NR_RESERVED_ENTRIES, Gntst, GrantEntryV1, GrantEntryV2, GrantEntryV2Body, GrantRef,
};
use xen_abi::warn_limited;
use xen_abi::xen::{DOMID_SELF, DomId};

use crate::entry::{
    self, PERMIT, PinFail, READING, SUB_PAGE, SetStatus, TRANSITIVE, TYPE_MASK, WRITING,
};
use crate::frames::{FrameState, Frames, Seeds};
use crate::{Config, Error, FRAME_SIZE, FrameInit, FrameMap, GrantFrame, INVALID_GFN, Result};

/// Most pins of one kind a reference can have (Xen's 8-bit pin counters
/// refuse a pin once one reaches 128).
pub(crate) const MAX_PINS: u32 = 128;

/// A pinned reference: Xen's `active_grant_entry`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pin {
    /// The domain that pinned it.
    pub(crate) domid: DomId,
    /// Read-only pins.
    pub(crate) readers: u32,
    /// Writable pins.
    pub(crate) writers: u32,
    /// The granted frame, as read when the first pin was taken.
    pub(crate) gfn: u64,
    /// First byte granted (sub-page grants; else 0).
    pub(crate) start: u16,
    /// Bytes granted from `start`.
    pub(crate) len: u16,
    /// Whether this is a sub-page grant (cannot be mapped).
    pub(crate) sub_page: bool,
}

/// What a pin asks for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Want {
    /// The domain pinning.
    pub(crate) domid: DomId,
    /// Pin for writing.
    pub(crate) write: bool,
    /// A map (refuses sub-page entries), rather than a copy.
    pub(crate) map: bool,
}

/// Why a pin failed, in Xen's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PinError {
    /// Beyond the table (`GNTST_bad_gntref`).
    BadRef,
    /// Held by another domain or too often (`GNTST_general_error`).
    InUse,
    /// The entry does not grant it (`GNTST_general_error`).
    Denied,
    /// The guest kept changing the entry (`GNTST_general_error`).
    Unstable,
    /// The frame is not guest memory (`GNTST_bad_page`).
    BadPage(u64),
}

impl PinError {
    pub(crate) fn gntst(self) -> Gntst {
        match self {
            PinError::BadRef => Gntst::BadGntref,
            PinError::BadPage(_) => Gntst::BadPage,
            PinError::InUse | PinError::Denied | PinError::Unstable => Gntst::GeneralError,
        }
    }

    pub(crate) fn error(self, gref: GrantRef) -> Error {
        match self {
            PinError::BadRef => Error::BadRef(gref),
            PinError::InUse => Error::InUse(gref),
            PinError::Denied => Error::Denied(gref),
            PinError::Unstable => Error::Unstable(gref),
            PinError::BadPage(gfn) => Error::BadPage { gref, gfn },
        }
    }
}

/// A back end's mapping, as the table records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MapRecord {
    pub(crate) backend: DomId,
    pub(crate) refs: Vec<GrantRef>,
    pub(crate) writable: bool,
}

/// State behind the table's lock.
#[derive(Debug, Default)]
pub(crate) struct Inner {
    /// Pinned references.
    pub(crate) pins: HashMap<GrantRef, Pin>,
    /// Back-end mappings by id.
    pub(crate) maps: HashMap<u64, MapRecord>,
    /// Next mapping id.
    pub(crate) next_id: u64,
}

/// Where a frame's contents are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Loc {
    /// In guest memory at this GFN.
    Mapped(u64),
    /// Saved while the guest has it nowhere.
    Saved,
    /// Never placed: it would start zeroed (and seeded).
    Virgin,
}

/// One domain's grant table. See the crate docs.
pub struct GrantTable {
    pub(crate) config: Config,
    pub(crate) map: Arc<dyn FrameMap>,
    pub(crate) frames: Arc<Frames>,
    pub(crate) inner: Mutex<Inner>,
}

impl std::fmt::Debug for GrantTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantTable")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GrantTable {
    /// A version 1 table of one frame for the domain in `config`, whose
    /// frames the guest places where `map` says. Install
    /// [`GrantTable::frame_init`] in the p2m before the guest runs.
    pub fn new(config: Config, map: Arc<dyn FrameMap>) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            map,
            frames: Arc::new(Frames::new(config)),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The hook the p2m calls when it places or removes one of this table's
    /// frames (for `xen-hypercall`'s `MemoryOp::set_grant_frame_init`). It
    /// does not refer back to the p2m.
    pub fn frame_init(&self) -> Arc<dyn FrameInit> {
        self.frames.clone()
    }

    /// Pre-fills the reserved entries as the toolstack does: ref 0 grants
    /// the console ring at `console_gfn`, ref 1 the XenStore ring at
    /// `store_gfn`, both `GTF_permit_access` to the back-end domain. They
    /// appear in frame 0 when the guest first places it; a frame 0 already
    /// placed is not changed.
    pub fn seed_reserved(&self, console_gfn: Option<u64>, store_gfn: Option<u64>) -> Result<()> {
        for gfn in [console_gfn, store_gfn].into_iter().flatten() {
            if gfn > u64::from(u32::MAX) {
                return Err(Error::InvalidSeed(gfn));
            }
        }
        self.frames.lock().seeds = Seeds {
            console: console_gfn,
            store: store_gfn,
        };
        Ok(())
    }

    /// The version in force (1 or 2).
    pub fn version(&self) -> u32 {
        self.frames.lock().version
    }

    /// Grant-entry frames the table has now (Xen's `nr_grant_frames`).
    pub fn nr_frames(&self) -> u32 {
        self.frames.lock().nr_frames
    }

    /// Entries the table has now.
    pub fn nr_entries(&self) -> u32 {
        let st = self.frames.lock();
        nr_entries(&st)
    }

    /// Back-end mappings currently held.
    pub fn mappings(&self) -> usize {
        self.lock().maps.len()
    }

    /// Whether `gref` is pinned (mapped or being copied), and for writing.
    pub fn pinned(&self, gref: GrantRef) -> Option<bool> {
        self.lock().pins.get(&gref).map(|p| p.writers > 0)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    // --- guest operations on the table -----------------------------------

    /// Whether `dom` names this domain for `setup_table`/`query_size`: the
    /// back-end domain exists but is not ours to look at (XSM:
    /// `GNTST_permission_denied`); any other domain does not exist.
    fn target(&self, dom: DomId) -> std::result::Result<(), Gntst> {
        if dom == DOMID_SELF || dom == self.config.domid {
            Ok(())
        } else if dom == self.config.backend_domid {
            warn_limited!("grant table: domain {dom} is not the caller's to query");
            Err(Gntst::PermissionDenied)
        } else {
            warn_limited!("grant table: query of unknown domain {dom}");
            Err(Gntst::BadDomain)
        }
    }

    /// `GNTTABOP_get_version`: the version in force for `dom` (-EPERM for
    /// the back-end domain, -ESRCH for a domain that does not exist).
    pub fn get_version(&self, dom: DomId) -> std::result::Result<u32, XenErrno> {
        match self.target(dom) {
            Ok(()) => Ok(self.version()),
            Err(Gntst::PermissionDenied) => Err(XenErrno::EPERM),
            Err(_) => Err(XenErrno::ESRCH),
        }
    }

    /// `GNTTABOP_query_size`: (current frames, maximum frames) for `dom`.
    pub fn query_size(&self, dom: DomId) -> std::result::Result<(u32, u32), Gntst> {
        self.target(dom)?;
        Ok((self.nr_frames(), self.config.max_frames))
    }

    /// `GNTTABOP_setup_table`: grows the table to `nr_frames` frames and
    /// returns the GFN of each of the first `nr_frames` frames, as Xen
    /// does for a translated guest ([`INVALID_GFN`] for a frame the guest
    /// has not placed). More than the maximum is `GNTST_general_error`.
    pub fn setup_table(&self, dom: DomId, nr_frames: u32) -> std::result::Result<Vec<u64>, Gntst> {
        self.target(dom)?;
        if nr_frames > self.config.max_frames {
            warn_limited!(
                "grant table: setup_table of {nr_frames} frames, limit {}",
                self.config.max_frames
            );
            return Err(Gntst::GeneralError);
        }
        {
            let mut st = self.frames.lock();
            st.nr_frames = st.nr_frames.max(nr_frames);
        }
        Ok((0..nr_frames)
            .map(|i| self.map.shared_gfn(i).unwrap_or(INVALID_GFN))
            .collect())
    }

    /// `GNTTABOP_set_version`: switches to `version` (1 or 2) as Xen does,
    /// and returns the outcome with the version in force afterwards (which
    /// the guest reads back in every case).
    ///
    /// -EINVAL for another version, -ENOSYS for 2 when
    /// [`Config::max_version`] is 1, -EBUSY while a reference beyond the
    /// reserved ones is pinned, -ERANGE when a reserved v2 entry cannot be
    /// expressed in v1. A change clears every frame but the reserved
    /// entries, which are converted; going back to version 1 releases the
    /// status frames ([`FrameMap::set_v2`]).
    pub fn set_version<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        version: u32,
    ) -> (std::result::Result<(), XenErrno>, u32) {
        let inner = self.lock();
        let cur = self.version();
        if version != 1 && version != 2 {
            warn_limited!("grant table: set_version({version})");
            return (Err(XenErrno::EINVAL), cur);
        }
        if version > self.config.max_version {
            return (Err(XenErrno::ENOSYS), cur);
        }
        if version == cur {
            return (Ok(()), cur);
        }
        if inner.pins.keys().any(|&r| r >= GNTTAB_NR_RESERVED_ENTRIES) {
            warn_limited!("grant table: set_version({version}) with grants in use");
            return (Err(XenErrno::EBUSY), cur);
        }
        let reserved = match self.reserved_as_v1(mem, cur) {
            Ok(r) => r,
            Err(e) => {
                warn_limited!("grant table: set_version(1) with reserved entries v1 cannot hold");
                return (Err(e), cur);
            }
        };
        if cur == 2 {
            self.map.set_v2(false);
            self.frames
                .lock()
                .saved
                .retain(|f, _| matches!(f, GrantFrame::Shared(_)));
        }
        let nr = self.nr_frames();
        let mut st_page = vec![0u8; FRAME_SIZE];
        for i in 0..nr {
            let frame = GrantFrame::Shared(i);
            let page: &[u8] = match (i, reserved) {
                (0, Some(entries)) => {
                    st_page.fill(0);
                    self.render_reserved(version, &entries, &mut st_page);
                    &st_page
                }
                _ => &[0u8; FRAME_SIZE],
            };
            self.put_frame(mem, frame, page);
        }
        self.frames.lock().version = version;
        if version == 2 {
            self.map.set_v2(true);
        }
        drop(inner);
        (Ok(()), version)
    }

    /// The reserved entries of a version-`cur` table in v1 form (flags with
    /// the status bits folded in), or `None` when frame 0 was never placed
    /// (the seeds are rendered in the new format when it is).
    fn reserved_as_v1<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        cur: u32,
    ) -> std::result::Result<Option<[GrantEntryV1; 8]>, XenErrno> {
        let n = GNTTAB_NR_RESERVED_ENTRIES as usize;
        let Some(page) = self.get_frame(mem, GrantFrame::Shared(0)) else {
            return Ok(None);
        };
        let mut out = [GrantEntryV1::default(); 8];
        if cur == 1 {
            for (i, e) in out.iter_mut().enumerate() {
                e.as_mut_slice().copy_from_slice(&page[i * 8..i * 8 + 8]);
            }
            return Ok(Some(out));
        }
        let status = self.get_frame(mem, GrantFrame::Status(0));
        for (i, e) in out.iter_mut().enumerate().take(n) {
            let mut v2 = GrantEntryV2::default();
            v2.as_mut_slice()
                .copy_from_slice(&page[i * 16..i * 16 + 16]);
            let flags = v2.hdr.flags;
            match flags & TYPE_MASK {
                PERMIT => {
                    let frame = v2.frame();
                    if frame >> 32 != 0 {
                        return Err(XenErrno::ERANGE);
                    }
                    let st = status
                        .as_ref()
                        .map(|s| u16::from_ne_bytes([s[i * 2], s[i * 2 + 1]]))
                        .unwrap_or(0);
                    *e = GrantEntryV1 {
                        flags: flags | st,
                        domid: v2.hdr.domid,
                        frame: frame as u32,
                    };
                }
                TRANSITIVE => return Err(XenErrno::ERANGE),
                // Invalid and accept-transfer entries are dropped.
                _ => {}
            }
        }
        Ok(Some(out))
    }

    /// Writes `entries` (v1 form) in `version`'s format at the start of
    /// frame 0's `page`, with the access flags of the pins.
    fn render_reserved(&self, version: u32, entries: &[GrantEntryV1; 8], page: &mut [u8]) {
        let st = self.frames.lock();
        for (i, e) in entries.iter().enumerate() {
            let gref = i as GrantRef;
            let pin = match st.pins.get(&gref) {
                Some(true) => READING | WRITING,
                Some(false) => READING,
                None => 0,
            };
            if version == 1 {
                let mut e = *e;
                e.flags = (e.flags & !(READING | WRITING)) | pin;
                page[i * 8..i * 8 + 8].copy_from_slice(e.as_slice());
            } else {
                let mut v2 = GrantEntryV2::default();
                v2.hdr.flags = e.flags & !(READING | WRITING);
                v2.hdr.domid = e.domid;
                v2.set_body(GrantEntryV2Body::FullPage {
                    frame: u64::from(e.frame),
                });
                page[i * 16..i * 16 + 16].copy_from_slice(v2.as_slice());
            }
        }
    }

    /// Where `frame`'s contents are now.
    pub(crate) fn locate(&self, frame: GrantFrame) -> Loc {
        let gfn = match frame {
            GrantFrame::Shared(i) => self.map.shared_gfn(i),
            GrantFrame::Status(i) => self.map.status_gfn(i),
        };
        match gfn {
            Some(g) => Loc::Mapped(g),
            None if self.frames.lock().saved.contains_key(&frame) => Loc::Saved,
            None => Loc::Virgin,
        }
    }

    /// The contents of a placed or saved frame.
    fn get_frame<M: GuestMemoryBackend>(&self, mem: &M, frame: GrantFrame) -> Option<Vec<u8>> {
        match self.locate(frame) {
            Loc::Mapped(gfn) => {
                let mut page = vec![0u8; FRAME_SIZE];
                if let Some(gpa) = entry::frame_gpa(gfn, 0) {
                    // A frame at a GFN without memory holds nothing.
                    let _ = mem.read_slice(&mut page, GuestAddress(gpa));
                }
                Some(page)
            }
            Loc::Saved => self.frames.lock().saved.get(&frame).map(|p| p.to_vec()),
            Loc::Virgin => None,
        }
    }

    /// Replaces the contents of a placed or saved frame.
    fn put_frame<M: GuestMemoryBackend>(&self, mem: &M, frame: GrantFrame, page: &[u8]) {
        match self.locate(frame) {
            Loc::Mapped(gfn) => {
                if let Some(gpa) = entry::frame_gpa(gfn, 0)
                    && mem.write_slice(page, GuestAddress(gpa)).is_err()
                {
                    warn_limited!("grant table: frame {frame:?} at GFN {gfn:#x} is not memory");
                }
            }
            Loc::Saved => {
                if let Some(p) = self.frames.lock().saved.get_mut(&frame) {
                    p.copy_from_slice(page);
                }
            }
            Loc::Virgin => {}
        }
    }

    /// The guest-physical address of `gref`'s entry, if its frame is placed.
    pub(crate) fn entry_gpa(&self, version: u32, gref: GrantRef) -> Option<u64> {
        let (frame, off) = entry::entry_pos(version, gref);
        entry::frame_gpa(self.map.shared_gfn(frame)?, off)
    }

    /// The guest-physical address of `gref`'s v2 status word, if its status
    /// frame is placed.
    pub(crate) fn status_gpa(&self, gref: GrantRef) -> Option<u64> {
        let (frame, off) = entry::status_pos(gref);
        entry::frame_gpa(self.map.status_gfn(frame)?, off)
    }

    /// Where `gref`'s access flags live: the entry's flags word (v1) or its
    /// status word (v2).
    pub(crate) fn flags_gpa(&self, version: u32, gref: GrantRef) -> Option<u64> {
        if version == 2 {
            self.status_gpa(gref)
        } else {
            self.entry_gpa(1, gref)
        }
    }

    /// `GNTTABOP_swap_grant_ref`: swaps two entries (and their v2 status
    /// words). `GNTST_bad_gntref` beyond the table, `GNTST_eagain` while
    /// either is pinned; the same reference twice is a no-op.
    pub fn swap<M: GuestMemoryBackend>(&self, mem: &M, a: GrantRef, b: GrantRef) -> Gntst {
        let inner = self.lock();
        let (version, nr) = {
            let st = self.frames.lock();
            (st.version, nr_entries(&st))
        };
        if a >= nr || b >= nr {
            warn_limited!("grant table: swap of refs {a} and {b} beyond {nr} entries");
            return Gntst::BadGntref;
        }
        if a == b {
            return Gntst::Okay;
        }
        if inner.pins.contains_key(&a) || inner.pins.contains_key(&b) {
            return Gntst::Eagain;
        }
        let size = entry::entry_size(version) as usize;
        let swap_bytes = |ga: Option<u64>, gb: Option<u64>, len: usize| {
            let mut ea = vec![0u8; len];
            let mut eb = vec![0u8; len];
            // An entry in a frame the guest has not placed reads as empty;
            // writes to it go nowhere.
            if let Some(g) = ga {
                let _ = mem.read_slice(&mut ea, GuestAddress(g));
            }
            if let Some(g) = gb {
                let _ = mem.read_slice(&mut eb, GuestAddress(g));
            }
            if let Some(g) = ga {
                let _ = mem.write_slice(&eb, GuestAddress(g));
            }
            if let Some(g) = gb {
                let _ = mem.write_slice(&ea, GuestAddress(g));
            }
        };
        swap_bytes(self.entry_gpa(version, a), self.entry_gpa(version, b), size);
        if version == 2 {
            swap_bytes(self.status_gpa(a), self.status_gpa(b), 2);
        }
        Gntst::Okay
    }

    // --- pins ---------------------------------------------------------------

    /// Pins `gref` for `want` (Xen's `acquire_grant_for_copy` without
    /// transitive grants, and the active-entry half of `map_grant_ref`):
    /// checks the entry, sets its access flags, records the pin.
    pub(crate) fn pin<M: GuestMemoryBackend>(
        &self,
        inner: &mut Inner,
        mem: &M,
        gref: GrantRef,
        want: Want,
    ) -> std::result::Result<Pin, PinError> {
        self.pin_with(inner, mem, gref, want, |_| {})
    }

    /// [`GrantTable::pin`], with `interfere` run before each attempt to set
    /// the flags (tests play a racing guest with it).
    pub(crate) fn pin_with<M: GuestMemoryBackend>(
        &self,
        inner: &mut Inner,
        mem: &M,
        gref: GrantRef,
        want: Want,
        interfere: impl FnMut(u32),
    ) -> std::result::Result<Pin, PinError> {
        let (version, nr) = {
            let st = self.frames.lock();
            (st.version, nr_entries(&st))
        };
        if gref >= nr {
            return Err(PinError::BadRef);
        }
        let existing = inner.pins.get(&gref).copied();
        if let Some(p) = existing
            && (p.domid != want.domid
                || p.readers >= MAX_PINS
                || p.writers >= MAX_PINS
                || (want.map && p.sub_page))
        {
            return Err(PinError::InUse);
        }
        let upgrade = existing.is_some_and(|p| want.write && p.writers == 0);
        let s = SetStatus {
            ldomid: want.domid,
            write: want.write,
            map: want.map,
            transitive: false,
            check: existing.is_none(),
        };
        let hdr = self.entry_gpa(version, gref);
        if existing.is_none() || upgrade {
            let hdr = hdr.ok_or(PinError::Denied)?;
            let r = if version == 2 {
                let status = self.status_gpa(gref).ok_or(PinError::Denied)?;
                entry::set_status_v2(mem, hdr, status, s, interfere)
            } else {
                entry::set_status_v1(mem, hdr, s, interfere)
            };
            r.map_err(|e| match e {
                PinFail::Denied => PinError::Denied,
                PinFail::Unstable => PinError::Unstable,
            })?;
        }
        let pin = match existing {
            Some(p) => p,
            None => match hdr.and_then(|h| self.read_frame(mem, version, h)) {
                Some(p) if entry::page_ok(mem, p.gfn).is_some() => Pin {
                    domid: want.domid,
                    ..p
                },
                other => {
                    // Undo the flags (Xen's `unlock_out_clear`).
                    let mut clear = READING;
                    if want.write {
                        clear |= WRITING;
                    }
                    if let Some(g) = self.flags_gpa(version, gref) {
                        entry::clear_u16(mem, g, clear);
                    }
                    return Err(match other {
                        Some(p) => PinError::BadPage(p.gfn),
                        None => PinError::Denied,
                    });
                }
            },
        };
        let mut pin = pin;
        if want.write {
            pin.writers += 1;
        } else {
            pin.readers += 1;
        }
        inner.pins.insert(gref, pin);
        self.frames.lock().pins.insert(gref, pin.writers > 0);
        Ok(pin)
    }

    /// Reads what the entry at `hdr` grants: the frame, and the byte range
    /// of a v2 sub-page grant.
    fn read_frame<M: GuestMemoryBackend>(&self, mem: &M, version: u32, hdr: u64) -> Option<Pin> {
        let mut pin = Pin {
            domid: 0,
            readers: 0,
            writers: 0,
            gfn: 0,
            start: 0,
            len: FRAME_SIZE as u16,
            sub_page: false,
        };
        if version == 1 {
            pin.gfn = u64::from(entry::read::<M, u32>(mem, hdr + 4)?);
            return Some(pin);
        }
        let flags = entry::load_combo(mem, hdr)?.flags();
        pin.gfn = entry::read::<M, u64>(mem, hdr + 8)?;
        if flags & SUB_PAGE != 0 {
            // Xen keeps the start in a 15-bit field.
            pin.start = entry::read::<M, u16>(mem, hdr + 4)? & 0x7fff;
            pin.len = entry::read::<M, u16>(mem, hdr + 6)?;
            pin.sub_page = true;
        }
        Some(pin)
    }

    /// Drops one pin of `gref` (Xen's `release_grant_for_copy` and
    /// `unmap_common_complete`): clears `GTF_writing` with the last writable
    /// pin and `GTF_reading` with the last pin, and marks the page dirty
    /// after a writable one.
    pub(crate) fn unpin<M: GuestMemoryBackend>(
        &self,
        inner: &mut Inner,
        mem: &M,
        gref: GrantRef,
        write: bool,
    ) {
        let Some(p) = inner.pins.get_mut(&gref) else {
            return;
        };
        if write {
            p.writers = p.writers.saturating_sub(1);
        } else {
            p.readers = p.readers.saturating_sub(1);
        }
        let p = *p;
        let mut clear = 0;
        if write && p.writers == 0 {
            clear |= WRITING;
        }
        if p.readers == 0 && p.writers == 0 {
            clear |= READING;
        }
        if write && let Some(gpa) = entry::frame_gpa(p.gfn, u64::from(p.start)) {
            entry::mark_dirty(mem, gpa, usize::from(p.len));
        }
        let version = self.version();
        if clear != 0
            && let Some(g) = self.flags_gpa(version, gref)
        {
            entry::clear_u16(mem, g, clear);
        }
        if p.readers == 0 && p.writers == 0 {
            inner.pins.remove(&gref);
            self.frames.lock().pins.remove(&gref);
        } else {
            self.frames.lock().pins.insert(gref, p.writers > 0);
        }
    }
}

/// Entries of a table of this size and version.
pub(crate) fn nr_entries(st: &FrameState) -> u32 {
    st.nr_frames.saturating_mul(entry::per_frame(st.version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use xen_abi::grant_table::GrantFlags;

    #[test]
    fn test_new_table_is_v1_with_one_frame() {
        let t = Fixture::new();
        assert_eq!(t.table.version(), 1);
        assert_eq!(t.table.nr_frames(), 1);
        assert_eq!(t.table.nr_entries(), 512);
        assert_eq!(t.table.mappings(), 0);
        assert!(format!("{:?}", t.table).contains("GrantTable"));
        let bad = Config {
            max_frames: 0,
            ..Config::new(1)
        };
        assert!(GrantTable::new(bad, t.frames.clone()).is_err());
    }

    #[test]
    fn test_query_size_reports_current_and_max_and_checks_domain() {
        let t = Fixture::new();
        assert_eq!(t.table.query_size(DOMID_SELF), Ok((1, 64)));
        t.place(GrantFrame::Shared(3));
        assert_eq!(t.table.query_size(DOMID), Ok((4, 64)));
        assert_eq!(t.table.query_size(0), Err(Gntst::PermissionDenied));
        assert_eq!(t.table.query_size(7), Err(Gntst::BadDomain));
    }

    #[test]
    fn test_get_version_checks_domain() {
        let t = Fixture::new();
        assert_eq!(t.table.get_version(DOMID_SELF), Ok(1));
        assert_eq!(t.table.get_version(DOMID), Ok(1));
        assert_eq!(t.table.get_version(0), Err(XenErrno::EPERM));
        assert_eq!(t.table.get_version(9), Err(XenErrno::ESRCH));
    }

    #[test]
    fn test_setup_table_grows_and_returns_gfns() {
        let t = Fixture::new();
        t.place(GrantFrame::Shared(1));
        assert_eq!(
            t.table.setup_table(DOMID_SELF, 3),
            Ok(vec![
                INVALID_GFN,
                frame_gfn(GrantFrame::Shared(1)),
                INVALID_GFN
            ])
        );
        assert_eq!(t.table.nr_frames(), 3);
        // Asking for fewer does not shrink.
        assert_eq!(t.table.setup_table(DOMID_SELF, 0), Ok(vec![]));
        assert_eq!(t.table.nr_frames(), 3);
        assert_eq!(
            t.table.setup_table(DOMID_SELF, 65),
            Err(Gntst::GeneralError)
        );
        assert_eq!(t.table.setup_table(DOMID_SELF, 64).unwrap().len(), 64);
        assert_eq!(t.table.setup_table(0, 1), Err(Gntst::PermissionDenied));
        assert_eq!(t.table.setup_table(3, 1), Err(Gntst::BadDomain));
    }

    #[test]
    fn test_seed_reserved_refuses_gfns_beyond_32_bits() {
        let t = Fixture::new();
        assert!(matches!(
            t.table.seed_reserved(Some(1 << 32), None),
            Err(Error::InvalidSeed(_))
        ));
        assert!(t.table.seed_reserved(None, Some(0xfeff9)).is_ok());
    }

    #[test]
    fn test_set_version_rejects_bad_versions_and_respects_max() {
        let t = Fixture::new();
        for v in [0, 3, u32::MAX] {
            assert_eq!(t.table.set_version(&t.mem, v), (Err(XenErrno::EINVAL), 1));
        }
        assert_eq!(t.table.set_version(&t.mem, 1), (Ok(()), 1));
        let c = Config {
            max_version: 1,
            ..Config::new(DOMID)
        };
        let t1 = Fixture::with_config(c);
        assert_eq!(t1.table.set_version(&t1.mem, 2), (Err(XenErrno::ENOSYS), 1));
    }

    #[test]
    fn test_set_version_converts_reserved_and_clears_the_rest() {
        let t = Fixture::new();
        t.table.seed_reserved(Some(0x77), Some(0x78)).unwrap();
        t.place(GrantFrame::Shared(0));
        t.place(GrantFrame::Shared(1));
        // Ref 5 is reserved too (8 are): converted. Ref 9 is cleared.
        t.grant_v1(5, 0, 0x100, GrantFlags::READONLY);
        t.grant_v1(9, 0, 0x100, GrantFlags::empty());
        t.grant_v1(600, 0, 0x101, GrantFlags::empty());
        assert_eq!(t.table.set_version(&t.mem, 2), (Ok(()), 2));
        assert!(t.frames.v2());
        assert_eq!(t.entry_v2(0).frame(), 0x77);
        assert_eq!(t.entry_v2(1).frame(), 0x78);
        assert_eq!(t.entry_v2(1).hdr.flags, 1);
        assert_eq!(t.entry_v2(5).hdr.flags, 1 | GrantFlags::READONLY.bits());
        assert_eq!(t.entry_v2(5).frame(), 0x100);
        assert_eq!(t.entry_v2(9), GrantEntryV2::default());
        assert_eq!(t.entry_v2(300), GrantEntryV2::default());
        // Back to 1: the reserved entries survive, status frames go.
        t.place(GrantFrame::Status(0));
        assert_eq!(t.table.set_version(&t.mem, 1), (Ok(()), 1));
        assert!(!t.frames.v2());
        assert_eq!(t.frames.gfn(GrantFrame::Status(0)), None);
        assert_eq!(
            t.entry_v1(1),
            GrantEntryV1 {
                flags: 1,
                domid: 0,
                frame: 0x78
            }
        );
    }

    #[test]
    fn test_set_version_busy_while_a_non_reserved_ref_is_mapped() {
        let t = Fixture::new();
        t.place(GrantFrame::Shared(0));
        t.grant_v1(8, 0, 0x100, GrantFlags::empty());
        t.grant_v1(1, 0, 0x101, GrantFlags::empty());
        let m = t.table.map(&t.mem, 0, &[8], false).unwrap();
        assert_eq!(t.table.set_version(&t.mem, 2), (Err(XenErrno::EBUSY), 1));
        t.table.unmap(&t.mem, m).unwrap();
        // A reserved entry may stay mapped; its flags move to the status word.
        let m = t.table.map(&t.mem, 0, &[1], true).unwrap();
        assert_eq!(t.table.set_version(&t.mem, 2), (Ok(()), 2));
        assert_eq!(t.entry_v2(1).hdr.flags, 1);
        t.place(GrantFrame::Status(0));
        assert_eq!(t.status(1), READING | WRITING);
        t.table.unmap(&t.mem, m).unwrap();
        assert_eq!(t.status(1), 0);
    }

    #[test]
    fn test_set_version_v2_to_v1_keeps_flags_of_mapped_reserved_ref() {
        let t = Fixture::new();
        t.place(GrantFrame::Shared(0));
        assert_eq!(t.table.set_version(&t.mem, 2).0, Ok(()));
        t.place(GrantFrame::Status(0));
        t.grant_v2(
            1,
            0,
            GrantEntryV2Body::FullPage { frame: 0x100 },
            GrantFlags::empty(),
        );
        let m = t.table.map(&t.mem, 0, &[1], false).unwrap();
        assert_eq!(t.table.set_version(&t.mem, 1), (Ok(()), 1));
        assert_eq!(t.entry_v1(1).flags, 1 | READING);
        assert_eq!(t.entry_v1(1).frame, 0x100);
        t.table.unmap(&t.mem, m).unwrap();
        assert_eq!(t.entry_v1(1).flags, 1);
    }

    #[test]
    fn test_set_version_to_v1_refuses_unrepresentable_reserved_entries() {
        for body in [
            GrantEntryV2Body::FullPage { frame: 1 << 32 },
            GrantEntryV2Body::Transitive {
                trans_domid: 0,
                gref: 3,
            },
        ] {
            let t = Fixture::new();
            t.place(GrantFrame::Shared(0));
            assert_eq!(t.table.set_version(&t.mem, 2).0, Ok(()));
            let flags = match body {
                GrantEntryV2Body::Transitive { .. } => 3,
                _ => 1,
            };
            t.write_v2(2, flags, 0, body);
            assert_eq!(t.table.set_version(&t.mem, 1), (Err(XenErrno::ERANGE), 2));
            assert!(t.frames.v2());
        }
    }

    #[test]
    fn test_set_version_applies_to_saved_frames_and_seeds_virgin_frame0_in_new_format() {
        let t = Fixture::new();
        t.table.seed_reserved(None, Some(0x66)).unwrap();
        t.place(GrantFrame::Shared(1));
        t.grant_v1(513, 0, 0x100, GrantFlags::empty());
        t.remove(GrantFrame::Shared(1));
        assert_eq!(t.table.set_version(&t.mem, 2).0, Ok(()));
        // Frame 0 was never placed: it appears seeded in v2 format.
        t.place(GrantFrame::Shared(0));
        assert_eq!(t.entry_v2(1).frame(), 0x66);
        // The saved frame 1 was cleared too.
        t.place(GrantFrame::Shared(1));
        assert_eq!(t.entry_v2(257), GrantEntryV2::default());
        assert_eq!(t.entry_v2(256 + 1), GrantEntryV2::default());
    }

    #[test]
    fn test_swap_swaps_entries_and_status() {
        let t = Fixture::new();
        t.place(GrantFrame::Shared(0));
        t.grant_v1(10, 0, 0x100, GrantFlags::empty());
        t.grant_v1(11, 0, 0x101, GrantFlags::READONLY);
        assert_eq!(t.table.swap(&t.mem, 10, 11), Gntst::Okay);
        assert_eq!(t.entry_v1(10).frame, 0x101);
        assert_eq!(t.entry_v1(11).frame, 0x100);
        assert_eq!(t.table.swap(&t.mem, 10, 10), Gntst::Okay);
        assert_eq!(t.table.swap(&t.mem, 512, 1), Gntst::BadGntref);
        assert_eq!(t.table.swap(&t.mem, 1, 512), Gntst::BadGntref);
        let m = t.table.map(&t.mem, 0, &[11], false).unwrap();
        assert_eq!(t.table.swap(&t.mem, 11, 12), Gntst::Eagain);
        assert_eq!(t.table.swap(&t.mem, 12, 11), Gntst::Eagain);
        t.table.unmap(&t.mem, m).unwrap();
        // v2 swaps the status words too.
        assert_eq!(t.table.set_version(&t.mem, 2).0, Ok(()));
        t.place(GrantFrame::Status(0));
        t.grant_v2(
            20,
            0,
            GrantEntryV2Body::FullPage { frame: 7 },
            GrantFlags::empty(),
        );
        t.set_status(20, READING);
        assert_eq!(t.table.swap(&t.mem, 20, 21), Gntst::Okay);
        assert_eq!(t.entry_v2(21).frame(), 7);
        assert_eq!((t.status(20), t.status(21)), (0, READING));
    }

    #[test]
    fn test_swap_with_entry_in_unplaced_frame_reads_it_as_empty() {
        let t = Fixture::new();
        t.place(GrantFrame::Shared(0));
        assert_eq!(t.table.setup_table(DOMID_SELF, 2).unwrap().len(), 2);
        t.grant_v1(3, 0, 0x100, GrantFlags::empty());
        assert_eq!(t.table.swap(&t.mem, 3, 600), Gntst::Okay);
        assert_eq!(t.entry_v1(3), GrantEntryV1::default());
    }
}
