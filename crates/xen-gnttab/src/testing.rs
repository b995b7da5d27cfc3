// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Test utilities (feature `test-utils`): [`TestFrames`], a small p2m for
//! the table's frames that behaves as `xen-hypercall`'s `MemoryOp` does
//! towards the [`FrameInit`] hook (fresh frames from the hook, moved
//! frames copied, removed frames handed to the hook).

use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::{FRAME_SIZE, FrameInit, FrameMap, GrantFrame};

#[derive(Default)]
struct P2m {
    shared: Vec<Option<u64>>,
    status: Vec<Option<u64>>,
    v2: bool,
    init: Option<Arc<dyn FrameInit>>,
}

impl P2m {
    fn slot(&mut self, frame: GrantFrame) -> Option<&mut Option<u64>> {
        match frame {
            GrantFrame::Shared(i) => self.shared.get_mut(i as usize),
            GrantFrame::Status(i) if self.v2 => self.status.get_mut(i as usize),
            GrantFrame::Status(_) => None,
        }
    }

    fn at(&self, gfn: u64) -> Option<GrantFrame> {
        let find = |v: &[Option<u64>]| v.iter().position(|g| *g == Some(gfn));
        find(&self.shared)
            .map(|i| GrantFrame::Shared(i as u32))
            .or_else(|| find(&self.status).map(|i| GrantFrame::Status(i as u32)))
    }
}

/// A p2m for the grant table's frames only (tests, fuzzing, benches).
pub struct TestFrames {
    p2m: Mutex<P2m>,
}

impl std::fmt::Debug for TestFrames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestFrames").finish_non_exhaustive()
    }
}

fn read_page<M: GuestMemoryBackend>(mem: &M, gfn: u64) -> Vec<u8> {
    let mut page = vec![0u8; FRAME_SIZE];
    if let Some(gpa) = gfn.checked_mul(FRAME_SIZE as u64) {
        let _ = mem.read_slice(&mut page, GuestAddress(gpa));
    }
    page
}

fn write_page<M: GuestMemoryBackend>(mem: &M, gfn: u64, page: &[u8]) {
    if let Some(gpa) = gfn.checked_mul(FRAME_SIZE as u64) {
        let _ = mem.write_slice(page, GuestAddress(gpa));
    }
}

impl TestFrames {
    /// A p2m for a table of up to `max_frames` frames (and the status
    /// frames they need), none placed, at version 1.
    pub fn new(max_frames: u32) -> Self {
        let status = max_frames.div_ceil(8) as usize;
        Self {
            p2m: Mutex::new(P2m {
                shared: vec![None; max_frames as usize],
                status: vec![None; status],
                ..P2m::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, P2m> {
        self.p2m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs the table's hook ([`GrantTable::frame_init`](crate::GrantTable::frame_init)).
    pub fn set_init(&self, init: Arc<dyn FrameInit>) {
        self.lock().init = Some(init);
    }

    /// Places `frame` at `gfn` as `XENMEM_add_to_physmap` does: a frame
    /// already elsewhere moves with its contents, a new one gets its
    /// contents from the hook, and a frame already at `gfn` is removed.
    /// Returns false (nothing changes) for a frame the table cannot have
    /// (beyond the maximum, or a status frame at version 1).
    pub fn place<M: GuestMemoryBackend>(&self, mem: &M, frame: GrantFrame, gfn: u64) -> bool {
        let mut p = self.lock();
        let Some(from) = p.slot(frame).map(|s| *s) else {
            return false;
        };
        if from == Some(gfn) {
            return true;
        }
        if let Some(other) = p.at(gfn) {
            let page = read_page(mem, gfn);
            if let Some(init) = &p.init {
                init.removed(other, &page);
            }
            if let Some(s) = p.slot(other) {
                *s = None;
            }
        }
        let page = match from {
            Some(old) => read_page(mem, old),
            None => {
                let mut page = vec![0u8; FRAME_SIZE];
                if let Some(init) = &p.init {
                    init.placed(frame, &mut page);
                }
                page
            }
        };
        write_page(mem, gfn, &page);
        if let Some(s) = p.slot(frame) {
            *s = Some(gfn);
        }
        true
    }

    /// Removes `frame` from the guest's physical address space (its
    /// contents go to the hook). Returns false if it was not placed.
    pub fn remove<M: GuestMemoryBackend>(&self, mem: &M, frame: GrantFrame) -> bool {
        let mut p = self.lock();
        let Some(Some(gfn)) = p.slot(frame).map(|s| *s) else {
            return false;
        };
        let page = read_page(mem, gfn);
        if let Some(init) = &p.init {
            init.removed(frame, &page);
        }
        if let Some(s) = p.slot(frame) {
            *s = None;
        }
        true
    }

    /// Where `frame` is placed.
    pub fn gfn(&self, frame: GrantFrame) -> Option<u64> {
        let mut p = self.lock();
        p.slot(frame).and_then(|s| *s)
    }

    /// Whether status frames can be placed (version 2).
    pub fn v2(&self) -> bool {
        self.lock().v2
    }
}

impl FrameMap for TestFrames {
    fn shared_gfn(&self, frame: u32) -> Option<u64> {
        self.lock().shared.get(frame as usize).copied().flatten()
    }

    fn status_gfn(&self, frame: u32) -> Option<u64> {
        let p = self.lock();
        if !p.v2 {
            return None;
        }
        p.status.get(frame as usize).copied().flatten()
    }

    fn set_v2(&self, v2: bool) {
        let mut p = self.lock();
        p.v2 = v2;
        if !v2 {
            p.status.iter_mut().for_each(|s| *s = None);
        }
    }
}

#[cfg(test)]
pub(crate) use fixture::*;

#[cfg(test)]
mod fixture {
    use std::sync::Arc;

    use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};
    use xen_abi::grant_table::{
        GrantEntryV1, GrantEntryV2, GrantEntryV2Body, GrantFlags, GrantRef, GrantType,
    };
    use xen_abi::xen::DomId;

    use super::TestFrames;
    use crate::entry;
    use crate::{Config, GrantFrame, GrantTable};

    /// The guest's domain id in tests.
    pub(crate) const DOMID: DomId = 1;
    /// Guest memory in tests: 4 MiB.
    pub(crate) const RAM: u64 = 4 << 20;

    pub(crate) type Mem = GuestMemoryMmap<()>;

    /// Where tests place each frame.
    pub(crate) fn frame_gfn(frame: GrantFrame) -> u64 {
        match frame {
            GrantFrame::Shared(i) => 0x200 + u64::from(i),
            GrantFrame::Status(i) => 0x300 + u64::from(i),
        }
    }

    /// A table over 4 MiB of memory, hook installed.
    pub(crate) struct Fixture {
        pub(crate) mem: Mem,
        pub(crate) frames: Arc<TestFrames>,
        pub(crate) table: GrantTable,
    }

    impl Fixture {
        pub(crate) fn new() -> Self {
            Self::with_config(Config::new(DOMID))
        }

        pub(crate) fn with_config(config: Config) -> Self {
            let mem = Mem::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
            let frames = Arc::new(TestFrames::new(config.max_frames));
            let table = GrantTable::new(config, frames.clone()).unwrap();
            frames.set_init(table.frame_init());
            Self { mem, frames, table }
        }

        pub(crate) fn place(&self, frame: GrantFrame) {
            assert!(self.frames.place(&self.mem, frame, frame_gfn(frame)));
        }

        pub(crate) fn remove(&self, frame: GrantFrame) {
            assert!(self.frames.remove(&self.mem, frame));
        }

        fn gpa(&self, version: u32, gref: GrantRef) -> u64 {
            let (f, off) = entry::entry_pos(version, gref);
            self.frames.gfn(GrantFrame::Shared(f)).unwrap() * 4096 + off
        }

        pub(crate) fn grant_v1(&self, gref: GrantRef, domid: DomId, gfn: u32, flags: GrantFlags) {
            let mut e = GrantEntryV1 {
                domid,
                frame: gfn,
                ..Default::default()
            };
            e.set_grant(GrantType::PermitAccess, flags);
            self.mem
                .write_obj(e, GuestAddress(self.gpa(1, gref)))
                .unwrap();
        }

        pub(crate) fn write_v1(&self, gref: GrantRef, e: GrantEntryV1) {
            self.mem
                .write_obj(e, GuestAddress(self.gpa(1, gref)))
                .unwrap();
        }

        pub(crate) fn grant_v2(
            &self,
            gref: GrantRef,
            domid: DomId,
            body: GrantEntryV2Body,
            flags: GrantFlags,
        ) {
            self.write_v2(
                gref,
                GrantType::PermitAccess as u16 | flags.bits(),
                domid,
                body,
            );
        }

        pub(crate) fn write_v2(
            &self,
            gref: GrantRef,
            flags: u16,
            domid: DomId,
            body: GrantEntryV2Body,
        ) {
            let mut e = GrantEntryV2::default();
            e.hdr.flags = flags;
            e.hdr.domid = domid;
            e.set_body(body);
            self.mem
                .write_slice(e.as_slice(), GuestAddress(self.gpa(2, gref)))
                .unwrap();
        }

        pub(crate) fn entry_v1(&self, gref: GrantRef) -> GrantEntryV1 {
            self.mem.read_obj(GuestAddress(self.gpa(1, gref))).unwrap()
        }

        pub(crate) fn entry_v2(&self, gref: GrantRef) -> GrantEntryV2 {
            let mut e = GrantEntryV2::default();
            self.mem
                .read_slice(e.as_mut_slice(), GuestAddress(self.gpa(2, gref)))
                .unwrap();
            e
        }

        fn status_gpa(&self, gref: GrantRef) -> u64 {
            let (f, off) = entry::status_pos(gref);
            self.frames.gfn(GrantFrame::Status(f)).unwrap() * 4096 + off
        }

        pub(crate) fn status(&self, gref: GrantRef) -> u16 {
            self.mem
                .read_obj(GuestAddress(self.status_gpa(gref)))
                .unwrap()
        }

        pub(crate) fn set_status(&self, gref: GrantRef, v: u16) {
            self.mem
                .write_obj(v, GuestAddress(self.status_gpa(gref)))
                .unwrap();
        }

        /// The flags word of a v1 entry.
        pub(crate) fn flags(&self, gref: GrantRef) -> u16 {
            self.entry_v1(gref).flags
        }

        pub(crate) fn fill(&self, gfn: u64, byte: u8) {
            self.mem
                .write_slice(&[byte; 4096], GuestAddress(gfn * 4096))
                .unwrap();
        }

        pub(crate) fn page(&self, gfn: u64) -> Vec<u8> {
            let mut v = vec![0; 4096];
            self.mem
                .read_slice(&mut v, GuestAddress(gfn * 4096))
                .unwrap();
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Fixture, frame_gfn};

    #[test]
    fn test_test_frames_move_copies_and_replace_removes() {
        let t = Fixture::new();
        t.place(GrantFrame::Shared(2));
        // (0x21 has no access-flag bits, which a frame placed again gets
        // from the pins.)
        t.fill(frame_gfn(GrantFrame::Shared(2)), 0x21);
        assert!(t.frames.place(&t.mem, GrantFrame::Shared(2), 0x150));
        assert!(t.page(0x150) == vec![0x21; 4096]);
        // Another frame over it: frame 2 is saved, then comes back.
        assert!(t.frames.place(&t.mem, GrantFrame::Shared(3), 0x150));
        assert!(t.page(0x150) == vec![0; 4096]);
        assert_eq!(t.frames.gfn(GrantFrame::Shared(2)), None);
        assert!(t.frames.place(&t.mem, GrantFrame::Shared(2), 0x151));
        assert!(t.page(0x151) == vec![0x21; 4096]);
        assert!(!t.frames.place(&t.mem, GrantFrame::Status(0), 0x152));
        assert!(!t.frames.place(&t.mem, GrantFrame::Shared(64), 0x152));
        assert!(!t.frames.remove(&t.mem, GrantFrame::Shared(9)));
        assert!(format!("{:?}", t.frames).contains("TestFrames"));
    }
}
