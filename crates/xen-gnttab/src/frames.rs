// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What the p2m needs from the table when it places or removes a frame
//! ([`FrameInit`]), and the state behind it: the version in force, the
//! table's size, the reserved entries' seeds, the contents of frames the
//! guest removed, and which references are pinned.
//!
//! The p2m calls the hook with its own lock held, and the table calls the
//! p2m ([`FrameMap`](crate::FrameMap)) with the table's lock held. So this
//! state sits behind a lock of its own, taken last: the hook never takes
//! the table's lock, and nothing is taken while this one is held. The
//! table updates it whenever one of these things changes.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use vm_memory::ByteValued;
use xen_abi::grant_table::{
    GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE, GRANT_STATUS_PER_FRAME, GrantEntryV1,
    GrantEntryV2, GrantEntryV2Body, GrantFlags, GrantRef, GrantType,
};

use crate::entry::{self, READING, WRITING};
use crate::{Config, FRAME_SIZE, FrameInit, GrantFrame, status_frames_for};

/// The GFNs of the pages the reserved entries grant to the back ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Seeds {
    /// Ref 0: the console ring.
    pub(crate) console: Option<u64>,
    /// Ref 1: the XenStore ring.
    pub(crate) store: Option<u64>,
}

/// The hook's state.
#[derive(Debug)]
pub(crate) struct FrameState {
    /// Version in force (1 or 2).
    pub(crate) version: u32,
    /// Grant-entry frames the table has (Xen's `nr_grant_frames`).
    pub(crate) nr_frames: u32,
    /// What the reserved entries grant.
    pub(crate) seeds: Seeds,
    /// Contents of frames the guest removed from its physmap.
    pub(crate) saved: BTreeMap<GrantFrame, Box<[u8]>>,
    /// Pinned references: `true` while pinned for writing.
    pub(crate) pins: BTreeMap<GrantRef, bool>,
}

/// The table's half of the p2m hook.
#[derive(Debug)]
pub(crate) struct Frames {
    config: Config,
    state: Mutex<FrameState>,
}

impl Frames {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            config,
            state: Mutex::new(FrameState {
                version: 1,
                nr_frames: crate::INITIAL_NR_FRAMES,
                seeds: Seeds::default(),
                saved: BTreeMap::new(),
                pins: BTreeMap::new(),
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, FrameState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `frame` can exist in a table of this configuration.
    pub(crate) fn valid(&self, frame: GrantFrame) -> bool {
        match frame {
            GrantFrame::Shared(i) => i < self.config.max_frames,
            GrantFrame::Status(i) => i < self.config.max_status_frames(),
        }
    }

    /// Grows the table so that `frame` is part of it (Xen grows the table
    /// when a frame beyond its size is mapped).
    fn grow(&self, st: &mut FrameState, frame: GrantFrame) {
        let need = match frame {
            GrantFrame::Shared(i) => i.saturating_add(1),
            // Status frame i covers v2 frames 8i..8i+7.
            GrantFrame::Status(i) => i.saturating_add(1).saturating_mul(8),
        };
        st.nr_frames = st.nr_frames.max(need.min(self.config.max_frames));
    }

    /// Writes the reserved entries' seeds in `version`'s format into frame
    /// 0's `page`.
    pub(crate) fn render_seeds(&self, seeds: Seeds, version: u32, page: &mut [u8]) {
        let seeded = [
            (GNTTAB_RESERVED_CONSOLE, seeds.console),
            (GNTTAB_RESERVED_XENSTORE, seeds.store),
        ];
        for (gref, gfn) in seeded {
            let Some(gfn) = gfn else { continue };
            let (_, off) = entry::entry_pos(version, gref);
            let off = off as usize;
            if version == 2 {
                let mut e = GrantEntryV2::default();
                e.hdr.domid = self.config.backend_domid;
                e.hdr
                    .set_grant(GrantType::PermitAccess, GrantFlags::empty());
                e.set_body(GrantEntryV2Body::FullPage { frame: gfn });
                page[off..off + 16].copy_from_slice(e.as_slice());
            } else {
                let mut e = GrantEntryV1 {
                    domid: self.config.backend_domid,
                    frame: gfn as u32,
                    ..Default::default()
                };
                e.set_grant(GrantType::PermitAccess, GrantFlags::empty());
                page[off..off + 8].copy_from_slice(e.as_slice());
            }
        }
    }

    /// Makes the access flags in `page` (frame `frame`) match the pins:
    /// set for pinned references, clear for the others. A frame saved while
    /// a back end held one of its references, or placed after a version
    /// change, would otherwise show stale flags.
    fn fix_flags(st: &FrameState, frame: GrantFrame, page: &mut [u8]) {
        // (first reference, words, bytes from one word to the next)
        let (first, count, stride) = match (st.version, frame) {
            (1, GrantFrame::Shared(i)) => (
                u64::from(i) * u64::from(entry::per_frame(1)),
                entry::per_frame(1),
                entry::V1_SIZE as usize,
            ),
            (2, GrantFrame::Status(i)) => (
                u64::from(i) * u64::from(GRANT_STATUS_PER_FRAME),
                GRANT_STATUS_PER_FRAME,
                2,
            ),
            _ => return,
        };
        for k in 0..count as usize {
            let gref = first + k as u64;
            let bits = match GrantRef::try_from(gref).ok().and_then(|r| st.pins.get(&r)) {
                Some(true) => READING | WRITING,
                Some(false) => READING,
                None => 0,
            };
            let Some(word) = page.get_mut(k * stride..k * stride + 2) else {
                return;
            };
            let old = u16::from_ne_bytes([word[0], word[1]]);
            let new = (old & !(READING | WRITING)) | bits;
            word.copy_from_slice(&new.to_ne_bytes());
        }
    }
}

impl FrameInit for Frames {
    fn placed(&self, frame: GrantFrame, page: &mut [u8]) {
        if !self.valid(frame) || page.len() != FRAME_SIZE {
            return;
        }
        let mut st = self.lock();
        self.grow(&mut st, frame);
        if let Some(saved) = st.saved.remove(&frame) {
            page.copy_from_slice(&saved);
        } else {
            page.fill(0);
            if frame == GrantFrame::Shared(0) {
                self.render_seeds(st.seeds, st.version, page);
            }
        }
        Self::fix_flags(&st, frame, page);
    }

    fn removed(&self, frame: GrantFrame, page: &[u8]) {
        if !self.valid(frame) || page.len() != FRAME_SIZE {
            return;
        }
        let mut st = self.lock();
        // Status frames only exist at version 2.
        if matches!(frame, GrantFrame::Status(_)) && st.version != 2 {
            return;
        }
        st.saved.insert(frame, page.into());
    }
}

/// Status frames of a table of `nr_frames` v2 frames.
pub(crate) fn nr_status_frames(nr_frames: u32) -> u32 {
    status_frames_for(nr_frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Frames {
        Frames::new(Config::new(1))
    }

    fn v1(page: &[u8], gref: usize) -> GrantEntryV1 {
        let mut e = GrantEntryV1::default();
        e.as_mut_slice()
            .copy_from_slice(&page[gref * 8..gref * 8 + 8]);
        e
    }

    #[test]
    fn test_placed_frame0_gets_seeds_v1_and_zeros_elsewhere() {
        let f = frames();
        f.lock().seeds = Seeds {
            console: Some(0xfeff8),
            store: Some(0xfeff9),
        };
        let mut page = vec![0xaa; FRAME_SIZE];
        f.placed(GrantFrame::Shared(0), &mut page);
        assert_eq!(
            v1(&page, 0),
            GrantEntryV1 {
                flags: 1,
                domid: 0,
                frame: 0xfeff8
            }
        );
        assert_eq!(v1(&page, 1).frame, 0xfeff9);
        assert!(page[16..].iter().all(|&b| b == 0));
        let mut page = vec![0xaa; FRAME_SIZE];
        f.placed(GrantFrame::Shared(1), &mut page);
        assert!(page.iter().all(|&b| b == 0));
        assert_eq!(f.lock().nr_frames, 2);
    }

    #[test]
    fn test_placed_frame0_v2_seeds_full_page_entries() {
        let f = frames();
        {
            let mut st = f.lock();
            st.version = 2;
            st.seeds.store = Some(0x1_0000_0000);
        }
        let mut page = vec![0; FRAME_SIZE];
        f.placed(GrantFrame::Shared(0), &mut page);
        let mut e = GrantEntryV2::default();
        e.as_mut_slice().copy_from_slice(&page[16..32]);
        assert_eq!(e.hdr.flags, 1);
        assert_eq!(
            e.body(),
            GrantEntryV2Body::FullPage {
                frame: 0x1_0000_0000
            }
        );
        assert!(page[..16].iter().all(|&b| b == 0));
    }

    #[test]
    fn test_removed_then_placed_restores_contents_with_fixed_flags() {
        let f = frames();
        let mut page = vec![0; FRAME_SIZE];
        // Ref 3 pinned for reading when the frame left; refs 4 and 5 stale.
        page[24..26].copy_from_slice(&(1 | READING).to_ne_bytes());
        page[32..34].copy_from_slice(&(1 | READING | WRITING).to_ne_bytes());
        page[40] = 0x5a;
        f.lock().pins.insert(3, false);
        f.lock().pins.insert(5, true);
        f.removed(GrantFrame::Shared(0), &page);
        let mut back = vec![0; FRAME_SIZE];
        f.placed(GrantFrame::Shared(0), &mut back);
        assert_eq!(v1(&back, 3).flags, 1 | READING);
        assert_eq!(v1(&back, 4).flags, 1);
        assert_eq!(v1(&back, 5).flags, 0x5a | READING | WRITING);
        // Placed again after that: a fresh frame.
        assert!(f.lock().saved.is_empty());
    }

    #[test]
    fn test_status_frame_gets_pins_and_grows_table() {
        let f = frames();
        {
            let mut st = f.lock();
            st.version = 2;
            st.pins.insert(2049, true);
        }
        let mut page = vec![0; FRAME_SIZE];
        f.placed(GrantFrame::Status(1), &mut page);
        assert_eq!(&page[2..4], &(READING | WRITING).to_ne_bytes());
        assert_eq!(f.lock().nr_frames, 16);
    }

    #[test]
    fn test_invalid_frames_and_v1_status_are_ignored() {
        let f = frames();
        let mut page = vec![0xaa; FRAME_SIZE];
        f.placed(GrantFrame::Shared(64), &mut page);
        assert_eq!(page[0], 0xaa);
        f.removed(GrantFrame::Status(0), &page);
        f.removed(GrantFrame::Shared(0), &page[..10]);
        assert!(f.lock().saved.is_empty());
        assert_eq!(f.lock().nr_frames, 1);
        assert_eq!(nr_status_frames(9), 2);
    }
}
