// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Target `gnttab_ops`: arbitrary grant-table operations (the guest's
//! `GNTTABOP_*`, its writes and bit flips in entries and status words, frame
//! placement and removal, back-end maps, unmaps, copies and accesses
//! through mappings, snapshots) against a small reference model.

use std::collections::BTreeMap;
use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use xen_abi::errno::XenErrno;
use xen_abi::grant_table::{Gntst, GnttabMapGrantRef, GrantRef};
use xen_abi::xen::{DOMID_SELF, DomId};
use xen_gnttab::testing::TestFrames;
use xen_gnttab::{
    Config, CopyOp, CopySide, CopyTarget, Error, GrantFrame, GrantTable, Mapping, State,
};

/// Guest RAM of the target: 4 MiB.
const RAM_PAGES: u64 = 1024;
/// The guest's domain id.
const DOMID: DomId = 1;
/// Grant frames live at `FRAME_AREA + idx` (status frames at `+ 64`).
const FRAME_AREA: u64 = 0x200;
/// Pages the entries grant and the guest copies between.
const DATA_AREA: u64 = 0x10;
/// Frames the input uses (of the 64 the table may have).
const FRAMES: u32 = 4;
const READING: u16 = 1 << 3;
const WRITING: u16 = 1 << 4;
const RW: u16 = READING | WRITING;

/// A grant reference: mostly one the guest wrote lately, or one the
/// watched frames hold.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum RefArg {
    Recent(u8),
    Reserved(u8),
    Low(u16),
    Any(u32),
}

/// Flags of an entry the guest writes: mostly plain grants.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum FlagsArg {
    Permit,
    ReadOnly,
    SubPage,
    Any(u16),
}

impl FlagsArg {
    fn value(self) -> u16 {
        match self {
            FlagsArg::Permit => 1,
            FlagsArg::ReadOnly => 1 | 4,
            FlagsArg::SubPage => 1 | 0x100,
            FlagsArg::Any(f) => f,
        }
    }
}

/// A domain id argument.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum DomArg {
    SelfId,
    Own,
    Backend,
    Other,
    Any(u16),
}

impl DomArg {
    fn value(self) -> DomId {
        match self {
            DomArg::SelfId => DOMID_SELF,
            DomArg::Own => DOMID,
            DomArg::Backend => 0,
            DomArg::Other => 3,
            DomArg::Any(d) => d,
        }
    }
}

/// A frame an entry grants or a copy names: mostly data pages.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum GfnArg {
    Data(u8),
    Beyond(u16),
    Any(u64),
}

impl GfnArg {
    fn value(self) -> u64 {
        match self {
            GfnArg::Data(g) => DATA_AREA + u64::from(g % 32),
            GfnArg::Beyond(g) => RAM_PAGES + u64::from(g),
            GfnArg::Any(g) => g,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum SideArg {
    Gref(RefArg, DomArg),
    Gmfn(GfnArg, DomArg),
}

/// One step of `gnttab_ops`.
#[derive(Arbitrary, Debug)]
enum Step {
    /// Places shared (or status) frame `idx % FRAMES` (in the frame area).
    Place(bool, u8),
    /// Removes it from the physmap.
    Remove(bool, u8),
    /// The guest writes a whole entry (v1: 8 bytes, v2: 16).
    /// (A `None` domain is the back end's, a `None` frame a data page.)
    Entry {
        gref: RefArg,
        flags: FlagsArg,
        dom: Option<DomArg>,
        frame: Option<GfnArg>,
        sub: (u16, u16),
    },
    /// The guest flips bits of one byte of an entry.
    Flip(RefArg, u8, u8),
    /// The guest writes a v2 status word.
    Status(RefArg, u16),
    /// The guest writes data pages.
    Data(u8, u16, Vec<u8>),
    SetVersion(u32),
    GetVersion(DomArg),
    QuerySize(DomArg),
    SetupTable(DomArg, u8),
    Swap(RefArg, RefArg),
    GuestCopy(SideArg, u16, SideArg, u16, u16),
    GuestMap(RefArg, u32, DomArg),
    GuestUnmap(u32),
    /// (A `None` domain is the back end's.)
    Map(Option<DomArg>, Vec<RefArg>, bool),
    Unmap(u8),
    UnmapAll(DomArg),
    CopyTo(Option<DomArg>, RefArg, u16, u16),
    CopyFrom(Option<DomArg>, RefArg, u16, u16),
    Access(u8, u16, u16, bool),
    Snapshot,
}

/// A pin the model expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pin {
    domid: DomId,
    readers: u32,
    writers: u32,
    start: u16,
    len: u16,
}

/// What the model expects of a pin attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ok,
    BadRef,
    InUse,
    Denied,
    BadPage,
}

fn kind(e: &Error) -> Kind {
    match e {
        Error::BadRef(_) => Kind::BadRef,
        Error::InUse(_) => Kind::InUse,
        Error::Denied(_) | Error::Unstable(_) => Kind::Denied,
        Error::BadPage { .. } => Kind::BadPage,
        other => panic!("unexpected back-end error {other}"),
    }
}

type Mem = GuestMemoryMmap<()>;

/// The table, its p2m, and the model.
struct Run {
    mem: Mem,
    frames: Arc<TestFrames>,
    table: GrantTable,
    /// Version and size the model expects.
    version: u32,
    nr_frames: u32,
    /// Pins the model expects.
    pins: BTreeMap<GrantRef, Pin>,
    /// Live mappings, with what the model recorded of them.
    maps: Vec<(Mapping, Vec<GrantRef>, bool)>,
    /// Access bits the guest itself wrote into each reference's flags word
    /// (v1) or status word (v2), since the table last rewrote them.
    guest_rw: BTreeMap<GrantRef, u16>,
    /// Set once a back end could have written into a grant frame (a guest
    /// may grant its own table's pages): the flag check is then off.
    tainted: bool,
    /// References the guest wrote, latest last.
    recent: Vec<GrantRef>,
}

fn frame_gfn(f: GrantFrame) -> u64 {
    match f {
        GrantFrame::Shared(i) => FRAME_AREA + u64::from(i),
        GrantFrame::Status(i) => FRAME_AREA + 64 + u64::from(i),
    }
}

fn in_frame_area(gfn: u64) -> bool {
    (FRAME_AREA..FRAME_AREA + 72).contains(&gfn)
}

fn per_frame(version: u32) -> u32 {
    if version == 2 { 256 } else { 512 }
}

fn xen_err(e: XenErrno) {
    assert!(
        [
            XenErrno::EINVAL,
            XenErrno::ENOSYS,
            XenErrno::EBUSY,
            XenErrno::ERANGE,
            XenErrno::EPERM,
            XenErrno::ESRCH,
        ]
        .contains(&e),
        "unexpected errno {e}"
    );
}

impl Run {
    fn new() -> Self {
        let mem = Mem::from_ranges(&[(GuestAddress(0), (RAM_PAGES * 4096) as usize)])
            .expect("guest memory");
        let frames = Arc::new(TestFrames::new(64));
        let table = GrantTable::new(Config::new(DOMID), frames.clone()).expect("config");
        table
            .seed_reserved(Some(DATA_AREA), Some(DATA_AREA + 1))
            .expect("seeds");
        frames.set_init(table.frame_init());
        Self {
            mem,
            frames,
            table,
            version: 1,
            nr_frames: 1,
            pins: BTreeMap::new(),
            maps: Vec::new(),
            guest_rw: BTreeMap::new(),
            tainted: false,
            recent: Vec::new(),
        }
    }

    fn gref(&self, r: RefArg) -> GrantRef {
        match r {
            RefArg::Recent(i) if !self.recent.is_empty() => {
                self.recent[self.recent.len() - 1 - usize::from(i) % self.recent.len()]
            }
            RefArg::Recent(r) | RefArg::Reserved(r) => u32::from(r % 8),
            RefArg::Low(r) => u32::from(r) % 2100,
            RefArg::Any(r) => r,
        }
    }

    /// Where `gref`'s entry is, if its frame is placed.
    fn entry_gpa(&self, gref: GrantRef) -> Option<u64> {
        let n = per_frame(self.version);
        let gfn = self.frames.gfn(GrantFrame::Shared(gref / n))?;
        Some(gfn * 4096 + u64::from(gref % n) * if self.version == 2 { 16 } else { 8 })
    }

    fn status_gpa(&self, gref: GrantRef) -> Option<u64> {
        if self.version != 2 {
            return None;
        }
        let gfn = self.frames.gfn(GrantFrame::Status(gref / 2048))?;
        Some(gfn * 4096 + u64::from(gref % 2048) * 2)
    }

    fn read<T: vm_memory::ByteValued>(&self, gpa: u64) -> Option<T> {
        self.mem.read_obj(GuestAddress(gpa)).ok()
    }

    /// The access bits of `gref` in guest memory.
    fn rw(&self, gref: GrantRef) -> Option<u16> {
        let gpa = if self.version == 2 {
            self.status_gpa(gref)?
        } else {
            self.entry_gpa(gref)?
        };
        self.read::<u16>(gpa).map(|w| w & RW)
    }

    /// Records what the guest's write left in `gref`'s access bits.
    fn guest_wrote(&mut self, gref: GrantRef) {
        if let Some(bits) = self.rw(gref) {
            self.guest_rw.insert(gref, bits);
        }
    }

    /// The model of a pin: what the table must answer.
    fn predict(&self, gref: GrantRef, domid: DomId, write: bool, map: bool) -> Result<Pin, Kind> {
        if gref >= self.nr_frames * per_frame(self.version) {
            return Err(Kind::BadRef);
        }
        let existing = self.pins.get(&gref).copied();
        if let Some(p) = existing
            && (p.domid != domid || p.readers >= 128 || p.writers >= 128)
        {
            return Err(Kind::InUse);
        }
        let gpa = self.entry_gpa(gref);
        if existing.is_none() || (write && existing.is_some_and(|p| p.writers == 0)) {
            let gpa = gpa.ok_or(Kind::Denied)?;
            if self.version == 2 && self.status_gpa(gref).is_none() {
                return Err(Kind::Denied);
            }
            let flags: u16 = self.read(gpa).ok_or(Kind::Denied)?;
            let domid_e: u16 = self.read(gpa + 2).ok_or(Kind::Denied)?;
            let mask = if map { 3 | 0x100 } else { 3 };
            if existing.is_none() && (flags & mask != 1 || domid_e != domid) {
                return Err(Kind::Denied);
            }
            if write && flags & 4 != 0 {
                return Err(Kind::Denied);
            }
        }
        if let Some(p) = existing {
            return Ok(p);
        }
        let gpa = gpa.ok_or(Kind::Denied)?;
        let flags: u16 = self.read(gpa).ok_or(Kind::Denied)?;
        let (gfn, start, len) = if self.version == 1 {
            (
                u64::from(self.read::<u32>(gpa + 4).ok_or(Kind::Denied)?),
                0,
                4096,
            )
        } else {
            let gfn = self.read::<u64>(gpa + 8).ok_or(Kind::Denied)?;
            if flags & 0x100 != 0 {
                let off = self.read::<u16>(gpa + 4).ok_or(Kind::Denied)? & 0x7fff;
                (gfn, off, self.read::<u16>(gpa + 6).ok_or(Kind::Denied)?)
            } else {
                (gfn, 0, 4096)
            }
        };
        if gfn >= RAM_PAGES {
            return Err(Kind::BadPage);
        }
        Ok(Pin {
            domid,
            readers: 0,
            writers: 0,
            start,
            len,
        })
    }

    fn pin(&mut self, gref: GrantRef, p: Pin, write: bool) {
        let mut p = p;
        if write {
            p.writers += 1;
        } else {
            p.readers += 1;
        }
        self.pins.insert(gref, p);
    }

    fn unpin(&mut self, gref: GrantRef, write: bool) {
        let p = self.pins.get_mut(&gref).expect("model pin");
        if write {
            p.writers -= 1;
        } else {
            p.readers -= 1;
        }
        if p.readers + p.writers == 0 {
            self.pins.remove(&gref);
        }
    }

    /// The model of `set_version`.
    fn predict_version(&self, v: u32) -> Result<(), XenErrno> {
        if v != 1 && v != 2 {
            return Err(XenErrno::EINVAL);
        }
        if v == self.version {
            return Ok(());
        }
        if self.pins.keys().any(|&r| r >= 8) {
            return Err(XenErrno::EBUSY);
        }
        if self.version == 2 {
            // Frame 0's reserved entries, placed or saved.
            let page: Option<Vec<u8>> = match self.frames.gfn(GrantFrame::Shared(0)) {
                Some(g) => {
                    let mut p = vec![0u8; 128];
                    let _ = self.mem.read_slice(&mut p, GuestAddress(g * 4096));
                    Some(p)
                }
                None => self
                    .table
                    .state()
                    .saved_frames
                    .iter()
                    .find(|s| s.frame == GrantFrame::Shared(0))
                    .map(|s| s.contents[..128].to_vec()),
            };
            for e in page.iter().flat_map(|p| p.chunks(16)) {
                let flags = u16::from_ne_bytes([e[0], e[1]]);
                let frame = u64::from_ne_bytes(e[8..16].try_into().expect("8 bytes"));
                match flags & 3 {
                    1 if frame >> 32 != 0 => return Err(XenErrno::ERANGE),
                    3 => return Err(XenErrno::ERANGE),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn check_pins(&self) {
        for (&r, p) in &self.pins {
            assert_eq!(self.table.pinned(r), Some(p.writers > 0), "pin of ref {r}");
        }
        assert_eq!(self.table.mappings(), self.maps.len());
        let mut want: BTreeMap<DomId, BTreeMap<u32, u32>> = BTreeMap::new();
        for (m, refs, _) in &self.maps {
            for &r in refs {
                *want.entry(m.backend()).or_default().entry(r).or_default() += 1;
            }
        }
        assert_eq!(self.table.mapped_refs(), want);
    }

    /// After every mapping is gone: no access bit is set that the guest did
    /// not set itself.
    fn check_no_flags_left(&self) {
        assert!(self.pins.is_empty());
        if self.tainted {
            return;
        }
        for f in 0..FRAMES {
            for k in 0..per_frame(self.version) {
                let r = f * per_frame(self.version) + k;
                if let Some(bits) = self.rw(r) {
                    let guest = self.guest_rw.get(&r).copied().unwrap_or(0);
                    assert_eq!(bits & !guest, 0, "ref {r} left with flags {bits:#x}");
                }
            }
        }
    }

    fn side(&self, s: SideArg, off: u16) -> CopySide {
        match s {
            SideArg::Gref(r, d) => CopySide {
                target: CopyTarget::Gref(self.gref(r)),
                domid: d.value(),
                offset: off,
            },
            SideArg::Gmfn(g, d) => CopySide {
                target: CopyTarget::Gmfn(g.value()),
                domid: d.value(),
                offset: off,
            },
        }
    }

    /// Whether a write to `side` could land in a grant frame.
    fn writes_frames(&self, side: &CopySide) -> bool {
        match side.target {
            CopyTarget::Gmfn(g) => in_frame_area(g),
            CopyTarget::Gref(r) => self.grant_points_at_frames(r),
        }
    }

    /// Whether `gref`'s entry (or its pin) names a grant-frame page.
    fn grant_points_at_frames(&self, gref: GrantRef) -> bool {
        let Some(gpa) = self.entry_gpa(gref) else {
            return false;
        };
        let gfn = if self.version == 1 {
            self.read::<u32>(gpa + 4).map(u64::from)
        } else {
            self.read::<u64>(gpa + 8)
        };
        gfn.is_some_and(in_frame_area) || self.pins.contains_key(&gref)
    }

    fn step(&mut self, step: &Step) {
        match *step {
            Step::Place(status, idx) => {
                let f = frame(status, idx);
                let placed = self.frames.gfn(f).is_some();
                let ok = self.frames.place(&self.mem, f, frame_gfn(f));
                assert_eq!(ok, !status || self.version == 2);
                if ok && !placed {
                    let need = match f {
                        GrantFrame::Shared(i) => i + 1,
                        GrantFrame::Status(i) => ((i + 1) * 8).min(64),
                    };
                    self.nr_frames = self.nr_frames.max(need);
                    // The table rewrote the frame's access bits (v1 entries,
                    // v2 status words) from its pins.
                    let rewrites = matches!(
                        (self.version, f),
                        (1, GrantFrame::Shared(_)) | (2, GrantFrame::Status(_))
                    );
                    if rewrites {
                        let version = self.version;
                        self.guest_rw.retain(|&r, _| !frame_holds(version, f, r));
                    }
                }
            }
            Step::Remove(status, idx) => {
                self.frames.remove(&self.mem, frame(status, idx));
            }
            Step::Entry {
                gref,
                flags,
                dom,
                frame,
                sub,
            } => {
                let r = self.gref(gref);
                let Some(gpa) = self.entry_gpa(r) else {
                    return;
                };
                let frame = frame.unwrap_or(GfnArg::Data(r as u8));
                let mut e = Vec::with_capacity(16);
                e.extend_from_slice(&flags.value().to_ne_bytes());
                e.extend_from_slice(&dom.map_or(0, DomArg::value).to_ne_bytes());
                if self.version == 1 {
                    e.extend_from_slice(&(frame.value() as u32).to_ne_bytes());
                } else {
                    e.extend_from_slice(&sub.0.to_ne_bytes());
                    e.extend_from_slice(&sub.1.to_ne_bytes());
                    e.extend_from_slice(&frame.value().to_ne_bytes());
                }
                let _ = self.mem.write_slice(&e, GuestAddress(gpa));
                self.guest_wrote(r);
                self.recent.push(r);
            }
            Step::Flip(gref, byte, xor) => {
                let r = self.gref(gref);
                let Some(gpa) = self.entry_gpa(r) else {
                    return;
                };
                let size = if self.version == 2 { 16 } else { 8 };
                let at = GuestAddress(gpa + u64::from(byte) % size);
                if let Ok(b) = self.mem.read_obj::<u8>(at) {
                    let _ = self.mem.write_obj(b ^ xor, at);
                }
                self.guest_wrote(r);
            }
            Step::Status(gref, v) => {
                let r = self.gref(gref);
                if let Some(gpa) = self.status_gpa(r) {
                    let _ = self.mem.write_obj(v, GuestAddress(gpa));
                    self.guest_wrote(r);
                }
            }
            Step::Data(page, off, ref bytes) => {
                let gpa = (DATA_AREA + u64::from(page % 32)) * 4096 + u64::from(off % 4096);
                let len = bytes.len().min(4096);
                let _ = self.mem.write_slice(&bytes[..len], GuestAddress(gpa));
            }
            Step::SetVersion(v) => {
                let v = if v < 8 { v % 4 } else { v };
                let want = self.predict_version(v);
                let (r, now) = self.table.set_version(&self.mem, v);
                assert_eq!(r, want, "set_version({v})");
                if let Err(e) = r {
                    xen_err(e);
                } else if v != self.version {
                    self.version = v;
                    // Every frame was rewritten; the access bits are the pins'.
                    self.guest_rw.clear();
                }
                assert_eq!(now, self.version);
                assert_eq!(self.frames.v2(), self.version == 2);
            }
            Step::GetVersion(d) => match self.table.get_version(d.value()) {
                Ok(v) => assert_eq!(v, self.version),
                Err(e) => xen_err(e),
            },
            Step::QuerySize(d) => match self.table.query_size(d.value()) {
                Ok((nr, max)) => assert_eq!((nr, max), (self.nr_frames, 64)),
                Err(s) => assert!(matches!(s, Gntst::BadDomain | Gntst::PermissionDenied)),
            },
            Step::SetupTable(d, n) => match self.table.setup_table(d.value(), u32::from(n)) {
                Ok(gfns) => {
                    assert_eq!(gfns.len(), usize::from(n));
                    self.nr_frames = self.nr_frames.max(u32::from(n));
                }
                Err(s) => assert!(matches!(
                    s,
                    Gntst::BadDomain | Gntst::PermissionDenied | Gntst::GeneralError
                )),
            },
            Step::Swap(a, b) => {
                let (a, b) = (self.gref(a), self.gref(b));
                let s = self.table.swap(&self.mem, a, b);
                let nr = self.nr_frames * per_frame(self.version);
                let want = if a >= nr || b >= nr {
                    Gntst::BadGntref
                } else if a == b {
                    Gntst::Okay
                } else if self.pins.contains_key(&a) || self.pins.contains_key(&b) {
                    Gntst::Eagain
                } else {
                    Gntst::Okay
                };
                assert_eq!(s, want);
                if s == Gntst::Okay {
                    self.guest_wrote(a);
                    self.guest_wrote(b);
                }
            }
            Step::GuestCopy(src, so, dst, doff, len) => {
                let op = CopyOp {
                    source: self.side(src, so % 4200),
                    dest: self.side(dst, doff % 4200),
                    len: len % 4200,
                };
                if self.writes_frames(&op.dest) {
                    return;
                }
                let s = self.table.copy(&self.mem, &op);
                assert!(
                    matches!(
                        s,
                        Gntst::Okay
                            | Gntst::GeneralError
                            | Gntst::BadDomain
                            | Gntst::BadGntref
                            | Gntst::BadPage
                            | Gntst::BadCopyArg
                            | Gntst::PermissionDenied
                    ),
                    "copy status {s}"
                );
            }
            Step::GuestMap(gref, flags, dom) => {
                let op = GnttabMapGrantRef {
                    host_addr: 0x30 * 4096,
                    flags,
                    gref: self.gref(gref),
                    dom: dom.value(),
                    ..Default::default()
                };
                let s = self.table.guest_map(&self.mem, &op);
                assert!(
                    matches!(
                        s,
                        Gntst::GeneralError | Gntst::BadDomain | Gntst::BadGntref | Gntst::BadPage
                    ),
                    "guest map status {s}"
                );
            }
            Step::GuestUnmap(h) => assert_eq!(self.table.guest_unmap(h), Gntst::BadHandle),
            Step::Map(d, ref refs, write) => {
                let d = d.map_or(0, DomArg::value);
                let refs: Vec<GrantRef> = refs.iter().take(16).map(|&r| self.gref(r)).collect();
                let got = self.table.map(&self.mem, d, &refs, write);
                if d == DOMID || d >= 0x7ff0 {
                    assert!(matches!(got, Err(Error::BadDomain(_))));
                    return;
                }
                if refs.is_empty() {
                    assert!(matches!(got, Err(Error::BadCount(0))));
                    return;
                }
                // The model, ref by ref, all or nothing.
                let mut want = Kind::Ok;
                let mut done = Vec::new();
                for &r in &refs {
                    match self.predict(r, d, write, true) {
                        Ok(p) => {
                            self.pin(r, p, write);
                            done.push(r);
                        }
                        Err(k) => {
                            want = k;
                            break;
                        }
                    }
                }
                if want != Kind::Ok {
                    for &r in &done {
                        self.unpin(r, write);
                    }
                }
                match got {
                    Ok(m) => {
                        assert_eq!(want, Kind::Ok);
                        if write && m.segments().iter().any(|s| in_frame_area(s.addr.0 / 4096)) {
                            self.tainted = true;
                        }
                        self.maps.push((m, refs, write));
                    }
                    Err(e) => assert_eq!(kind(&e), want, "{e}"),
                }
            }
            Step::Unmap(i) => {
                if self.maps.is_empty() {
                    return;
                }
                let (m, refs, write) = self.maps.swap_remove(usize::from(i) % self.maps.len());
                self.table.unmap(&self.mem, m).expect("live mapping");
                for r in refs {
                    self.unpin(r, write);
                }
            }
            Step::UnmapAll(d) => {
                let d = d.value();
                let n = self.table.unmap_all(&self.mem, d);
                let (gone, keep): (Vec<_>, Vec<_>) =
                    self.maps.drain(..).partition(|(m, _, _)| m.backend() == d);
                self.maps = keep;
                assert_eq!(n, gone.len());
                for (m, refs, write) in gone {
                    assert!(matches!(
                        self.table.unmap(&self.mem, m),
                        Err(Error::UnknownMapping(_))
                    ));
                    for r in refs {
                        self.unpin(r, write);
                    }
                }
            }
            Step::CopyTo(d, gref, off, len) | Step::CopyFrom(d, gref, off, len) => {
                let to = matches!(step, Step::CopyTo(..));
                let (d, r, len) = (
                    d.map_or(0, DomArg::value),
                    self.gref(gref),
                    usize::from(len % 4200),
                );
                if to && self.grant_points_at_frames(r) {
                    return;
                }
                let mut buf = vec![0x5au8; len];
                let got = if to {
                    self.table.copy_to_grant(&self.mem, d, r, off, &buf)
                } else {
                    self.table.copy_from_grant(&self.mem, d, r, off, &mut buf)
                };
                if d == DOMID || d >= 0x7ff0 {
                    assert!(matches!(got, Err(Error::BadDomain(_))));
                    return;
                }
                match self.predict(r, d, to, false) {
                    Err(k) => assert_eq!(got.as_ref().map_err(kind).err(), Some(k)),
                    Ok(p) => {
                        let (o, l) = (usize::from(off), len);
                        let (s, n) = (usize::from(p.start), usize::from(p.len));
                        match got {
                            Ok(()) => assert!(o + l <= 4096 && o >= s && o + l <= s + n),
                            Err(Error::BadCopyArg { .. }) => assert!(o + l > 4096),
                            Err(Error::OutOfBounds(_)) => assert!(o < s || o + l > s + n),
                            Err(e) => panic!("copy failed unexpectedly: {e}"),
                        }
                    }
                }
            }
            Step::Access(i, off, len, write) => {
                if self.maps.is_empty() {
                    return;
                }
                let (m, _, w) = &self.maps[usize::from(i) % self.maps.len()];
                let (off, len) = (usize::from(off), usize::from(len % 9000));
                let r = if write {
                    if m.segments().iter().any(|s| in_frame_area(s.addr.0 / 4096)) {
                        return;
                    }
                    m.write(&self.mem, off, &vec![0xa5; len])
                } else {
                    m.read(&self.mem, off, &mut vec![0; len])
                };
                match r {
                    Ok(()) => assert!(off + len <= m.len() && (*w || !write)),
                    Err(Error::ReadOnly) => assert!(write && !*w),
                    Err(Error::BeyondMapping { .. }) => assert!(off + len > m.len()),
                    Err(e) => panic!("mapping access failed: {e}"),
                }
            }
            Step::Snapshot => {
                // Back ends drop their mappings; the table is rebuilt.
                for (m, refs, write) in std::mem::take(&mut self.maps) {
                    self.table.unmap(&self.mem, m).expect("live mapping");
                    for r in refs {
                        self.unpin(r, write);
                    }
                }
                let state: State = self.table.state();
                let t = GrantTable::from_state(Config::new(DOMID), self.frames.clone(), &state)
                    .unwrap_or_else(|e| panic!("snapshot does not restore: {e}: {state:?}"));
                assert_eq!(t.state(), state);
                self.frames.set_init(t.frame_init());
                self.table = t;
            }
        }
        self.check_pins();
        assert_eq!(self.table.version(), self.version);
        assert_eq!(self.table.nr_frames(), self.nr_frames);
    }
}

/// Whether frame `f` holds `gref`'s entry (or v2 status word).
fn frame_holds(version: u32, f: GrantFrame, gref: GrantRef) -> bool {
    match f {
        GrantFrame::Shared(i) => gref / per_frame(version) == i,
        GrantFrame::Status(i) => gref / 2048 == i,
    }
}

fn frame(status: bool, idx: u8) -> GrantFrame {
    let i = u32::from(idx) % FRAMES;
    if status {
        GrantFrame::Status(i)
    } else {
        GrantFrame::Shared(i)
    }
}

/// Target `gnttab_ops`: up to 96 arbitrary steps over a grant table in 4
/// MiB of guest memory, starting with frame 0 placed.
///
/// Invariants: nothing panics; guest operations answer with Xen's errnos
/// and statuses; back-end maps and copies succeed or fail exactly as the
/// model predicts from the entries in memory, all or nothing; the table's
/// version, size and pins match the model; a snapshot restores to the same
/// state; once every mapping is gone, no `GTF_reading`/`GTF_writing` is left
/// set that the guest did not set itself.
pub fn gnttab_ops(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut steps = Vec::new();
    while steps.len() < 96 && !u.is_empty() {
        let Ok(step) = Step::arbitrary(&mut u) else {
            break;
        };
        steps.push(step);
    }
    let mut run = Run::new();
    run.step(&Step::Place(false, 0));
    for step in &steps {
        run.step(step);
    }
    for d in [0, 3] {
        run.step(&Step::UnmapAll(DomArg::Any(d)));
    }
    for (m, _, _) in std::mem::take(&mut run.maps) {
        run.table.unmap(&run.mem, m).expect("live mapping");
    }
    run.pins.clear();
    assert_eq!(run.table.mappings(), 0);
    assert!(run.table.mapped_refs().is_empty());
    run.check_no_flags_left();
}
