// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Snapshots: [`State`], [`GrantTable::state`] and [`GrantTable::restore`].
//!
//! The entries themselves live in guest memory and migrate with it (as
//! does the p2m's record of where each frame is). What is saved here is
//! what exists nowhere else: the version, the table's size, what the
//! reserved entries grant (for a frame 0 not placed yet), and the contents
//! of frames the guest removed from its physmap. Back-end mappings are not
//! saved: back ends map again after a restore.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use xen_abi::xen::DomId;

use crate::frames::Seeds;
use crate::table::GrantTable;
use crate::{Config, Error, FRAME_SIZE, FrameMap, GrantFrame, Result};

/// A frame the guest removed from its physmap, with its contents.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SavedFrame {
    /// Which frame.
    pub frame: GrantFrame,
    /// Its page ([`FRAME_SIZE`] bytes).
    pub contents: Vec<u8>,
}

/// A snapshot of a [`GrantTable`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct State {
    /// Version in force (1 or 2).
    pub version: u32,
    /// Grant-entry frames the table has.
    pub nr_frames: u32,
    /// GFN ref 0 grants (console ring), for a frame 0 not yet placed.
    pub console_gfn: Option<u64>,
    /// GFN ref 1 grants (XenStore ring), for a frame 0 not yet placed.
    pub store_gfn: Option<u64>,
    /// Frames the guest removed from its physmap, by frame.
    pub saved_frames: Vec<SavedFrame>,
}

impl GrantTable {
    /// A snapshot of the table.
    pub fn state(&self) -> State {
        let st = self.frames.lock();
        State {
            version: st.version,
            nr_frames: st.nr_frames,
            console_gfn: st.seeds.console,
            store_gfn: st.seeds.store,
            saved_frames: st
                .saved
                .iter()
                .map(|(&frame, page)| SavedFrame {
                    frame,
                    contents: page.to_vec(),
                })
                .collect(),
        }
    }

    /// Replaces the table's state with a snapshot, checked as untrusted
    /// input against the configuration and the p2m (restore the p2m
    /// first). Refused while back ends hold mappings. The p2m learns the
    /// restored version ([`FrameMap::set_v2`]).
    pub fn restore(&self, state: &State) -> Result<()> {
        let inner = self.lock();
        if !inner.maps.is_empty() || !inner.pins.is_empty() {
            return Err(Error::Busy);
        }
        let saved = self.check(state)?;
        {
            let mut st = self.frames.lock();
            st.version = state.version;
            st.nr_frames = state.nr_frames;
            st.seeds = Seeds {
                console: state.console_gfn,
                store: state.store_gfn,
            };
            st.saved = saved;
            st.pins.clear();
        }
        self.map.set_v2(state.version == 2);
        drop(inner);
        Ok(())
    }

    /// A table rebuilt from a snapshot ([`GrantTable::new`], then
    /// [`GrantTable::restore`]).
    pub fn from_state(config: Config, map: Arc<dyn FrameMap>, state: &State) -> Result<Self> {
        let t = Self::new(config, map)?;
        t.restore(state)?;
        Ok(t)
    }

    fn check(&self, state: &State) -> Result<BTreeMap<GrantFrame, Box<[u8]>>> {
        let c = &self.config;
        if !(1..=c.max_version).contains(&state.version) {
            return Err(Error::InvalidState("unsupported version"));
        }
        if !(crate::INITIAL_NR_FRAMES..=c.max_frames).contains(&state.nr_frames) {
            return Err(Error::InvalidState("frame count out of range"));
        }
        for gfn in [state.console_gfn, state.store_gfn].into_iter().flatten() {
            if gfn > u64::from(u32::MAX) {
                return Err(Error::InvalidState("reserved entry GFN beyond 32 bits"));
            }
        }
        let covered = |f: GrantFrame| match f {
            GrantFrame::Shared(i) => i < state.nr_frames,
            GrantFrame::Status(i) => {
                state.version == 2 && i < crate::frames::nr_status_frames(state.nr_frames)
            }
        };
        let mut saved = BTreeMap::new();
        for s in &state.saved_frames {
            if !self.frames.valid(s.frame) || !covered(s.frame) {
                return Err(Error::InvalidState("saved frame outside the table"));
            }
            if s.contents.len() != FRAME_SIZE {
                return Err(Error::InvalidState("saved frame is not one page"));
            }
            if self.placed(s.frame) {
                return Err(Error::InvalidState("saved frame is also placed"));
            }
            if saved
                .insert(s.frame, s.contents.clone().into_boxed_slice())
                .is_some()
            {
                return Err(Error::InvalidState("frame saved twice"));
            }
        }
        // Every frame the p2m has placed must be part of the table.
        let placed_beyond = (state.nr_frames..c.max_frames)
            .any(|i| self.map.shared_gfn(i).is_some())
            || (state.version == 2
                && (crate::frames::nr_status_frames(state.nr_frames)..c.max_status_frames())
                    .any(|i| self.map.status_gfn(i).is_some()));
        if placed_beyond {
            return Err(Error::InvalidState("placed frame beyond the table's size"));
        }
        Ok(saved)
    }

    fn placed(&self, frame: GrantFrame) -> bool {
        match frame {
            GrantFrame::Shared(i) => self.map.shared_gfn(i).is_some(),
            GrantFrame::Status(i) => self.map.status_gfn(i).is_some(),
        }
    }

    /// The references each back-end domain has mapped, with their mapping
    /// counts (diagnostics: the VMM can tell which back end leaks).
    pub fn mapped_refs(&self) -> BTreeMap<DomId, BTreeMap<u32, u32>> {
        let inner = self.lock();
        let mut out: BTreeMap<DomId, BTreeMap<u32, u32>> = BTreeMap::new();
        let mut by_ref: HashMap<(DomId, u32), u32> = HashMap::new();
        for rec in inner.maps.values() {
            for &r in &rec.refs {
                *by_ref.entry((rec.backend, r)).or_default() += 1;
            }
        }
        for ((d, r), n) in by_ref {
            out.entry(d).or_default().insert(r, n);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use xen_abi::grant_table::{GrantEntryV2Body, GrantFlags};

    /// Save, restore into a fresh table over the same memory and p2m, and
    /// check both answer the same afterwards.
    fn round_trip(t: &Fixture) -> GrantTable {
        let s = t.table.state();
        let fresh = GrantTable::from_state(*t.table.config(), t.frames.clone(), &s).unwrap();
        assert_eq!(fresh.state(), s);
        fresh
    }

    #[test]
    fn test_state_round_trip_v1_behaves_the_same() {
        let t = Fixture::new();
        t.table.seed_reserved(Some(0x70), Some(0x71)).unwrap();
        t.place(GrantFrame::Shared(2));
        t.place(GrantFrame::Shared(3));
        t.remove(GrantFrame::Shared(3));
        let r = round_trip(&t);
        assert_eq!(r.nr_frames(), 4);
        assert_eq!(r.query_size(1), t.table.query_size(1));
        // The restored table serves the frame hook: the saved frame and
        // the seeds come back.
        t.frames.set_init(r.frame_init());
        t.place(GrantFrame::Shared(0));
        assert_eq!(t.entry_v1(1).frame, 0x71);
        t.grant_v1(8, 0, 0x10, GrantFlags::empty());
        let m = r.map(&t.mem, 0, &[8], false).unwrap();
        assert_eq!(t.flags(8), 1 | crate::entry::READING);
        r.unmap(&t.mem, m).unwrap();
    }

    #[test]
    fn test_state_round_trip_v2_keeps_status_frames() {
        let t = Fixture::new();
        t.place(GrantFrame::Shared(0));
        assert_eq!(t.table.set_version(&t.mem, 2).0, Ok(()));
        t.place(GrantFrame::Status(0));
        t.grant_v2(
            8,
            0,
            GrantEntryV2Body::FullPage { frame: 0x10 },
            GrantFlags::empty(),
        );
        let r = round_trip(&t);
        assert_eq!(r.version(), 2);
        assert!(t.frames.v2());
        let m = r.map(&t.mem, 0, &[8], true).unwrap();
        assert_eq!(t.status(8), 3 << 3);
        assert!(matches!(r.restore(&t.table.state()), Err(Error::Busy)));
        r.unmap(&t.mem, m).unwrap();
        assert_eq!(r.mapped_refs(), BTreeMap::new());
        // Restoring a v1 snapshot tells the p2m.
        let mut s = r.state();
        s.version = 1;
        r.restore(&s).unwrap();
        assert!(!t.frames.v2());
    }

    #[test]
    fn test_restore_rejects_bad_snapshots() {
        let t = Fixture::new();
        t.place(GrantFrame::Shared(1));
        let good = t.table.state();
        let bad = |f: &dyn Fn(&mut State)| {
            let mut s = good.clone();
            f(&mut s);
            assert!(
                matches!(t.table.restore(&s), Err(Error::InvalidState(_))),
                "{s:?}"
            );
        };
        bad(&|s| s.version = 0);
        bad(&|s| s.version = 3);
        bad(&|s| s.nr_frames = 0);
        bad(&|s| s.nr_frames = 65);
        // Frame 1 is placed: the table must have it.
        bad(&|s| s.nr_frames = 1);
        bad(&|s| s.console_gfn = Some(1 << 32));
        let page = |frame| SavedFrame {
            frame,
            contents: vec![0; FRAME_SIZE],
        };
        bad(&|s| s.saved_frames = vec![page(GrantFrame::Shared(5))]);
        bad(&|s| s.saved_frames = vec![page(GrantFrame::Status(0))]);
        bad(&|s| s.saved_frames = vec![page(GrantFrame::Shared(1))]);
        bad(&|s| s.saved_frames = vec![page(GrantFrame::Shared(0)), page(GrantFrame::Shared(0))]);
        bad(&|s| {
            s.saved_frames = vec![SavedFrame {
                frame: GrantFrame::Shared(0),
                contents: vec![0; 10],
            }]
        });
        let c1 = Config {
            max_version: 1,
            ..Config::new(DOMID)
        };
        let t1 = Fixture::with_config(c1);
        let mut s = t1.table.state();
        s.version = 2;
        assert!(t1.table.restore(&s).is_err());
        assert!(t.table.restore(&good).is_ok());
        let mut s = good.clone();
        s.saved_frames = vec![page(GrantFrame::Shared(0))];
        assert!(t.table.restore(&s).is_ok());
        assert_eq!(t.table.state(), s);
    }

    #[test]
    fn test_mapped_refs_lists_back_end_maps() {
        let t = Fixture::new();
        t.place(GrantFrame::Shared(0));
        t.grant_v1(8, 0, 0x10, GrantFlags::empty());
        let a = t.table.map(&t.mem, 0, &[8, 8], false).unwrap();
        assert_eq!(t.table.mapped_refs()[&0][&8], 2);
        t.table.unmap(&t.mem, a).unwrap();
    }
}
