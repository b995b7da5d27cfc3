// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A property test of operation sequences (guest entry writes, frame
//! placement and removal, version changes, swaps, setup_table, back-end
//! maps, unmaps and copies) against a plain model: a map of entries, a map
//! of pins, a list of mappings. After every step the table's answers and
//! every watched entry in guest memory (contents and access flags) must
//! match the model.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use vm_memory::{ByteValued, Bytes, GuestAddress};
use xen_abi::grant_table::{Gntst, GrantEntryV2, GrantRef};
use xen_abi::xen::DomId;

use crate::entry::{self, PERMIT, READING, READONLY, SUB_PAGE, TRANSITIVE, TYPE_MASK, WRITING};
use crate::testing::{DOMID, Fixture, RAM, frame_gfn};
use crate::{Error, GrantFrame, Mapping};

/// Entries watched per frame (the first ones of each).
const WATCH: u32 = 4;
/// Frames the sequences use.
const FRAMES: u32 = 2;
const RW: u16 = READING | WRITING;

/// An entry as the guest wrote it, in v2 shape: flags (without the access
/// bits), domid, and the 12 bytes after the header (v1 uses the first 4 as
/// its frame).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct MEntry {
    flags: u16,
    domid: DomId,
    raw: [u8; 12],
}

impl MEntry {
    fn frame(&self, version: u32) -> u64 {
        if version == 1 {
            u64::from(u32::from_ne_bytes(self.raw[0..4].try_into().unwrap()))
        } else {
            u64::from_ne_bytes(self.raw[4..12].try_into().unwrap())
        }
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_ne_bytes([self.raw[at], self.raw[at + 1]])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MPin {
    domid: DomId,
    readers: u32,
    writers: u32,
    start: u16,
    len: u16,
}

#[derive(Default, Debug)]
struct Model {
    version: u32,
    nr_frames: u32,
    placed: BTreeSet<GrantFrame>,
    entries: BTreeMap<GrantRef, MEntry>,
    pins: BTreeMap<GrantRef, MPin>,
    maps: Vec<(u64, DomId, Vec<GrantRef>, bool)>,
}

/// Outcome kinds compared between model and table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Out {
    Okay,
    BadRef,
    InUse,
    Denied,
    BadPage,
    BadCopyArg,
    Bounds,
}

fn out(e: &Error) -> Out {
    match e {
        Error::BadRef(_) => Out::BadRef,
        Error::InUse(_) => Out::InUse,
        Error::Denied(_) | Error::Unstable(_) => Out::Denied,
        Error::BadPage { .. } => Out::BadPage,
        Error::BadCopyArg { .. } => Out::BadCopyArg,
        Error::OutOfBounds(_) => Out::Bounds,
        other => panic!("unexpected error {other}"),
    }
}

impl Model {
    fn per_frame(&self) -> u32 {
        entry::per_frame(self.version)
    }

    fn nr_entries(&self) -> u32 {
        self.nr_frames * self.per_frame()
    }

    fn frame_of(&self, r: GrantRef) -> GrantFrame {
        GrantFrame::Shared(r / self.per_frame())
    }

    fn live(&self, r: GrantRef) -> bool {
        self.placed.contains(&self.frame_of(r))
            && (self.version == 1 || self.placed.contains(&GrantFrame::Status(r / 2048)))
    }

    fn pin(&mut self, r: GrantRef, domid: DomId, write: bool, map: bool) -> Result<MPin, Out> {
        if r >= self.nr_entries() {
            return Err(Out::BadRef);
        }
        let existing = self.pins.get(&r).copied();
        if let Some(p) = existing
            && (p.domid != domid || p.readers >= 128 || p.writers >= 128)
        {
            return Err(Out::InUse);
        }
        let e = self.entries.get(&r).copied().unwrap_or_default();
        if existing.is_none() || (write && existing.unwrap().writers == 0) {
            if !self.live(r) {
                return Err(Out::Denied);
            }
            let mask = if map { TYPE_MASK | SUB_PAGE } else { TYPE_MASK };
            if existing.is_none() && (e.flags & mask != PERMIT || e.domid != domid) {
                return Err(Out::Denied);
            }
            if write && e.flags & READONLY != 0 {
                return Err(Out::Denied);
            }
        }
        let mut p = match existing {
            Some(p) => p,
            None => {
                if e.frame(self.version) >= RAM / 4096 {
                    return Err(Out::BadPage);
                }
                let sub = self.version == 2 && e.flags & SUB_PAGE != 0;
                MPin {
                    domid,
                    readers: 0,
                    writers: 0,
                    start: if sub { e.u16_at(0) & 0x7fff } else { 0 },
                    len: if sub { e.u16_at(2) } else { 4096 },
                }
            }
        };
        if write {
            p.writers += 1;
        } else {
            p.readers += 1;
        }
        self.pins.insert(r, p);
        Ok(p)
    }

    fn unpin(&mut self, r: GrantRef, write: bool) {
        let p = self.pins.get_mut(&r).unwrap();
        if write {
            p.writers -= 1;
        } else {
            p.readers -= 1;
        }
        if p.readers + p.writers == 0 {
            self.pins.remove(&r);
        }
    }

    fn bits(&self, r: GrantRef) -> u16 {
        match self.pins.get(&r) {
            Some(p) if p.writers > 0 => RW,
            Some(_) => READING,
            None => 0,
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    Place(bool, u32),
    Remove(bool, u32),
    Write {
        at: (u32, u32),
        kind: u16,
        ro: bool,
        sub: bool,
        dom: u8,
        gfn: u8,
        off: u16,
        len: u16,
    },
    /// Map refs: watched ones, or (`true`) ones the guest wrote.
    Map(u8, Vec<(bool, (u32, u32))>, bool),
    Unmap(usize),
    UnmapAll(u8),
    Copy {
        to: bool,
        dom: u8,
        at: (u32, u32),
        off: u16,
        len: u16,
    },
    SetVersion(u32),
    Swap((u32, u32), (u32, u32)),
    Setup(u32),
}

/// A watched entry: (frame, index in `WATCHED`).
fn at() -> impl Strategy<Value = (u32, u32)> {
    (prop_oneof![6 => 0..FRAMES, 1 => Just(FRAMES)], 0..WATCH)
}

/// The entries watched in each frame: reserved ones and ordinary ones.
const WATCHED: [u32; WATCH as usize] = [0, 1, 8, 9];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (prop::bool::weighted(0.3), 0..FRAMES).prop_map(|(s, i)| Step::Place(s, i)),
        1 => (prop::bool::weighted(0.3), 0..FRAMES).prop_map(|(s, i)| Step::Remove(s, i)),
        6 => (at(), prop_oneof![4 => Just(1u16), 1 => 0u16..4], prop::bool::weighted(0.2),
              prop::bool::weighted(0.2), prop_oneof![4 => Just(0u8), 1 => 0u8..3],
              prop_oneof![3 => 0u8..2, 1 => 2u8..4],
              prop_oneof![0u16..100, 0u16..4200], prop_oneof![0u16..200, 0u16..4200])
            .prop_map(|(at, kind, ro, sub, dom, gfn, off, len)| Step::Write { at, kind, ro, sub, dom, gfn, off, len }),
        6 => (prop_oneof![3 => Just(0u8), 1 => 0u8..3],
              proptest::collection::vec((prop::bool::weighted(0.8), at()), 1..4), any::<bool>())
            .prop_map(|(d, refs, w)| Step::Map(d, refs, w)),
        2 => any::<usize>().prop_map(Step::Unmap),
        1 => (0u8..3).prop_map(Step::UnmapAll),
        2 => (any::<bool>(), 0u8..3, at(), 0u16..4200, 0u16..200)
            .prop_map(|(to, dom, at, off, len)| Step::Copy { to, dom, at, off, len }),
        1 => prop_oneof![4 => 1u32..3, 1 => 0u32..4].prop_map(Step::SetVersion),
        1 => (at(), at()).prop_map(|(a, b)| Step::Swap(a, b)),
        1 => (0u32..70).prop_map(Step::Setup),
    ]
}

fn domid(d: u8) -> DomId {
    [0, 3, DOMID][d as usize % 3]
}

fn gfn_of(g: u8) -> u64 {
    [0x10, 0x11, 0xfff_ffff, 1 << 33][g as usize % 4]
}

struct Run {
    t: Fixture,
    m: Model,
    live: Vec<Mapping>,
}

impl Run {
    /// A table with the first two frames placed.
    fn new() -> Self {
        let t = Fixture::new();
        t.place(GrantFrame::Shared(0));
        t.place(GrantFrame::Shared(1));
        Self {
            t,
            m: Model {
                version: 1,
                nr_frames: 2,
                placed: [GrantFrame::Shared(0), GrantFrame::Shared(1)].into(),
                ..Model::default()
            },
            live: Vec::new(),
        }
    }

    fn gref(&self, (f, k): (u32, u32)) -> GrantRef {
        f * self.m.per_frame() + WATCHED[k as usize]
    }

    fn frame(status: bool, i: u32) -> GrantFrame {
        if status {
            GrantFrame::Status(i)
        } else {
            GrantFrame::Shared(i)
        }
    }

    fn entry_gpa(&self, r: GrantRef) -> u64 {
        let (f, off) = entry::entry_pos(self.m.version, r);
        frame_gfn(GrantFrame::Shared(f)) * 4096 + off
    }

    fn apply(&mut self, s: &Step) -> Result<(), TestCaseError> {
        let (t, m) = (&self.t, &mut self.m);
        match *s {
            Step::Place(status, i) => {
                let f = Self::frame(status, i);
                let ok = t.frames.place(&t.mem, f, frame_gfn(f));
                let can = !status || m.version == 2;
                prop_assert_eq!(ok, can);
                if can && m.placed.insert(f) {
                    let need = if status { ((i + 1) * 8).min(64) } else { i + 1 };
                    m.nr_frames = m.nr_frames.max(need);
                }
            }
            Step::Remove(status, i) => {
                let f = Self::frame(status, i);
                let ok = t.frames.remove(&t.mem, f);
                prop_assert_eq!(ok, m.placed.remove(&f));
            }
            Step::Write {
                at,
                kind,
                ro,
                sub,
                dom,
                gfn,
                off,
                len,
            } => {
                let r = self.gref(at);
                let gpa = GuestAddress(self.entry_gpa(r));
                let m = &mut self.m;
                if r >= m.nr_entries() || !m.placed.contains(&m.frame_of(r)) {
                    return Ok(());
                }
                let mut flags = kind;
                if ro {
                    flags |= READONLY;
                }
                if sub {
                    flags |= SUB_PAGE;
                }
                let mut raw = [0u8; 12];
                let g = gfn_of(gfn);
                if m.version == 1 {
                    raw[0..4].copy_from_slice(&(g as u32).to_ne_bytes());
                } else {
                    raw[0..2].copy_from_slice(&off.to_ne_bytes());
                    raw[2..4].copy_from_slice(&len.to_ne_bytes());
                    raw[4..12].copy_from_slice(&g.to_ne_bytes());
                }
                let e = MEntry {
                    flags,
                    domid: domid(dom),
                    raw,
                };
                // A well-behaved guest leaves the access bits alone.
                let cur: u16 = t.mem.read_obj(gpa).unwrap();
                let word = if m.version == 1 {
                    flags | (cur & RW)
                } else {
                    flags
                };
                t.mem.write_obj(word, gpa).unwrap();
                t.mem.write_obj(e.domid, GuestAddress(gpa.0 + 2)).unwrap();
                let n = if m.version == 1 { 4 } else { 12 };
                t.mem
                    .write_slice(&raw[..n], GuestAddress(gpa.0 + 4))
                    .unwrap();
                m.entries.insert(r, e);
            }
            Step::Map(d, ref refs, w) => {
                let written: Vec<GrantRef> = self.m.entries.keys().copied().collect();
                let refs: Vec<GrantRef> = refs
                    .iter()
                    .map(|&(pick, (f, k))| match pick && !written.is_empty() {
                        true => written[(f * WATCH + k) as usize % written.len()],
                        false => self.gref((f, k)),
                    })
                    .collect();
                let m = &mut self.m;
                let d = domid(d);
                let got = t.table.map(&t.mem, d, &refs, w);
                if d == DOMID {
                    prop_assert!(matches!(got, Err(Error::BadDomain(_))));
                    return Ok(());
                }
                let mut want = Out::Okay;
                let mut done = Vec::new();
                for &r in &refs {
                    match m.pin(r, d, w, true) {
                        Ok(_) => done.push(r),
                        Err(e) => {
                            want = e;
                            for &r in &done {
                                m.unpin(r, w);
                            }
                            break;
                        }
                    }
                }
                match got {
                    Ok(mapping) => {
                        prop_assert_eq!(want, Out::Okay);
                        m.maps.push((mapping.id(), d, refs, w));
                        self.live.push(mapping);
                    }
                    Err(e) => prop_assert_eq!(out(&e), want, "{}", e),
                }
            }
            Step::Unmap(i) => {
                if self.live.is_empty() {
                    return Ok(());
                }
                let i = i % self.live.len();
                let mapping = self.live.swap_remove(i);
                let id = mapping.id();
                let r = t.table.unmap(&t.mem, mapping);
                if let Some(k) = m.maps.iter().position(|x| x.0 == id) {
                    prop_assert!(r.is_ok());
                    let (_, _, refs, w) = m.maps.remove(k);
                    for r in refs {
                        m.unpin(r, w);
                    }
                } else {
                    prop_assert!(matches!(r, Err(Error::UnknownMapping(_))));
                }
            }
            Step::UnmapAll(d) => {
                let d = domid(d);
                let n = t.table.unmap_all(&t.mem, d);
                let (gone, keep): (Vec<_>, Vec<_>) = m.maps.drain(..).partition(|x| x.1 == d);
                m.maps = keep;
                prop_assert_eq!(n, gone.len());
                for (_, _, refs, w) in gone {
                    for r in refs {
                        m.unpin(r, w);
                    }
                }
            }
            Step::Copy {
                to,
                dom,
                at,
                off,
                len,
            } => {
                let r = self.gref(at);
                let m = &mut self.m;
                let d = domid(dom);
                let mut buf = vec![0u8; len as usize];
                let got = if to {
                    t.table.copy_to_grant(&t.mem, d, r, off, &buf)
                } else {
                    t.table.copy_from_grant(&t.mem, d, r, off, &mut buf)
                };
                if d == DOMID {
                    prop_assert!(matches!(got, Err(Error::BadDomain(_))));
                    return Ok(());
                }
                let want = match m.pin(r, d, to, false) {
                    Err(e) => e,
                    Ok(p) => {
                        m.unpin(r, to);
                        let (o, l) = (u32::from(off), u32::from(len));
                        if o + l > 4096 {
                            Out::BadCopyArg
                        } else if o < u32::from(p.start)
                            || o + l > u32::from(p.start) + u32::from(p.len)
                        {
                            Out::Bounds
                        } else {
                            Out::Okay
                        }
                    }
                };
                prop_assert_eq!(got.as_ref().map_err(out).err().unwrap_or(Out::Okay), want);
            }
            Step::SetVersion(v) => {
                let (r, now) = t.table.set_version(&t.mem, v);
                let want = model_set_version(m, v);
                prop_assert_eq!(r, want);
                prop_assert_eq!(now, m.version);
            }
            Step::Swap(a, b) => {
                let (a, b) = (self.gref(a), self.gref(b));
                let m = &mut self.m;
                let got = t.table.swap(&t.mem, a, b);
                let nr = m.nr_entries();
                let want = if a >= nr || b >= nr {
                    Gntst::BadGntref
                } else if a == b {
                    Gntst::Okay
                } else if m.pins.contains_key(&a) || m.pins.contains_key(&b) {
                    Gntst::Eagain
                } else {
                    let pa = m.placed.contains(&m.frame_of(a));
                    let pb = m.placed.contains(&m.frame_of(b));
                    let ea = if pa { m.entries.get(&a).copied() } else { None };
                    let eb = if pb { m.entries.get(&b).copied() } else { None };
                    for (r, placed, e) in [(a, pa, eb), (b, pb, ea)] {
                        if placed {
                            match e {
                                Some(e) => m.entries.insert(r, e),
                                None => m.entries.remove(&r),
                            };
                        }
                    }
                    Gntst::Okay
                };
                prop_assert_eq!(got, want);
            }
            Step::Setup(n) => {
                let got = t.table.setup_table(xen_abi::xen::DOMID_SELF, n);
                if n > 64 {
                    prop_assert_eq!(got, Err(Gntst::GeneralError));
                } else {
                    prop_assert_eq!(got.map(|v| v.len() as u32), Ok(n));
                    m.nr_frames = m.nr_frames.max(n);
                }
            }
        }
        Ok(())
    }

    /// Every watched entry in a placed frame matches the model, and its
    /// access flags match the pins.
    fn check(&self) -> Result<(), TestCaseError> {
        let (t, m) = (&self.t, &self.m);
        prop_assert_eq!(t.table.version(), m.version);
        prop_assert_eq!(t.table.nr_frames(), m.nr_frames);
        prop_assert_eq!(t.table.mappings(), m.maps.len());
        for f in 0..FRAMES {
            if !m.placed.contains(&GrantFrame::Shared(f)) {
                continue;
            }
            for k in WATCHED {
                let r = f * m.per_frame() + k;
                let gpa = GuestAddress(self.entry_gpa(r));
                let want = m.entries.get(&r).copied().unwrap_or_default();
                let (flags, e) = if m.version == 1 {
                    let mut raw = [0u8; 8];
                    t.mem.read_slice(&mut raw, gpa).unwrap();
                    let mut e = MEntry {
                        flags: u16::from_ne_bytes([raw[0], raw[1]]),
                        domid: u16::from_ne_bytes([raw[2], raw[3]]),
                        raw: [0; 12],
                    };
                    e.raw[..4].copy_from_slice(&raw[4..]);
                    (e.flags, e)
                } else {
                    let mut v2 = GrantEntryV2::default();
                    t.mem.read_slice(v2.as_mut_slice(), gpa).unwrap();
                    let e = MEntry {
                        flags: v2.hdr.flags,
                        domid: v2.hdr.domid,
                        raw: v2.raw,
                    };
                    (e.flags, e)
                };
                let mut want_raw = want;
                if m.version == 1 {
                    want_raw.raw[4..].fill(0);
                }
                prop_assert_eq!(
                    MEntry {
                        flags: flags & !RW,
                        ..e
                    },
                    want_raw,
                    "ref {}",
                    r
                );
                if m.version == 1 {
                    prop_assert_eq!(flags & RW, m.bits(r), "flags of ref {}", r);
                } else {
                    prop_assert_eq!(flags & RW, 0);
                    if m.placed.contains(&GrantFrame::Status(0)) {
                        let s: u16 = t
                            .mem
                            .read_obj(GuestAddress(
                                frame_gfn(GrantFrame::Status(0)) * 4096 + u64::from(r) * 2,
                            ))
                            .unwrap();
                        prop_assert_eq!(s, m.bits(r), "status of ref {}", r);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The model of `set_version`.
fn model_set_version(m: &mut Model, v: u32) -> Result<(), xen_abi::errno::XenErrno> {
    use xen_abi::errno::XenErrno;
    if v != 1 && v != 2 {
        return Err(XenErrno::EINVAL);
    }
    if v == m.version {
        return Ok(());
    }
    if m.pins.keys().any(|&r| r >= 8) {
        return Err(XenErrno::EBUSY);
    }
    let reserved: Vec<(GrantRef, MEntry)> = m
        .entries
        .iter()
        .filter(|(r, _)| **r < 8)
        .map(|(&r, &e)| (r, e))
        .collect();
    let mut converted = BTreeMap::new();
    for (r, e) in reserved {
        if m.version == 1 {
            let mut raw = [0u8; 12];
            raw[4..12].copy_from_slice(&e.frame(1).to_ne_bytes());
            converted.insert(r, MEntry { raw, ..e });
        } else {
            match e.flags & TYPE_MASK {
                PERMIT => {
                    let f = e.frame(2);
                    if f >> 32 != 0 {
                        return Err(XenErrno::ERANGE);
                    }
                    let mut raw = [0u8; 12];
                    raw[0..4].copy_from_slice(&(f as u32).to_ne_bytes());
                    converted.insert(r, MEntry { raw, ..e });
                }
                TRANSITIVE => return Err(XenErrno::ERANGE),
                _ => {}
            }
        }
    }
    // Entries of a frame 0 never placed stay unwritten (none in the model).
    m.entries = converted;
    if m.version == 2 {
        m.placed.retain(|f| matches!(f, GrantFrame::Shared(_)));
    }
    m.version = v;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn test_op_sequences_match_the_model(steps in proptest::collection::vec(step(), 1..80)) {
        let mut run = Run::new();
        for s in &steps {
            run.apply(s)?;
            run.check()?;
        }
        // Every mapping goes: no access flag stays set.
        for d in 0..3 {
            run.apply(&Step::UnmapAll(d))?;
        }
        prop_assert!(run.m.pins.is_empty());
        prop_assert_eq!(run.t.table.mapped_refs(), BTreeMap::new());
        run.check()?;
    }
}
