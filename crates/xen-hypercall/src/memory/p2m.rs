// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The p2m: which GFNs hold domain RAM (a [`Bitmap`] over the GFNs that can
//! hold RAM), where the special frames (shared_info, grant and status
//! frames) are mapped, [`place_special`], which maps one of them, and
//! [`unhook`], which takes one out.
//!
//! A grant-table frame is a page of its own in Xen, whatever GFN it is
//! mapped at; here it lives in the guest page at that GFN. So its contents
//! travel with it: placed for the first time, the page gets what the grant
//! table's hook ([`FrameInit::placed`]) writes (zeros without a hook);
//! moved, the page is copied to the new GFN; taken out of the p2m, its
//! contents go to the hook ([`FrameInit::removed`]), which hands them back
//! when the frame is placed again.

use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use xen_abi::errno::XenErrno;
use xen_abi::warn_limited;
use xen_abi::x86::PAGE_SIZE;
use xen_gnttab::{FrameInit, GrantFrame};

use crate::dispatch::Ctx;

/// A fixed-size bitmap that counts its set bits.
#[derive(Clone, Debug, Default)]
pub(super) struct Bitmap {
    words: Vec<u64>,
    pub(super) len: u64,
    pub(super) ones: u64,
}

impl Bitmap {
    pub(super) fn new(len: u64) -> Self {
        Self {
            words: vec![0; len.div_ceil(64) as usize],
            len,
            ones: 0,
        }
    }

    pub(super) fn get(&self, i: u64) -> bool {
        i < self.len && self.words[(i / 64) as usize] >> (i % 64) & 1 == 1
    }

    /// Sets `[start, start + n)` (clamped to the bitmap) to `val`.
    pub(super) fn fill(&mut self, start: u64, n: u64, val: bool) {
        let end = start.saturating_add(n).min(self.len);
        let mut i = start;
        while i < end {
            let (w, b) = ((i / 64) as usize, i % 64);
            let k = (64 - b).min(end - i);
            let mask = if k == 64 { !0 } else { ((1u64 << k) - 1) << b };
            let old = self.words[w];
            let new = if val { old | mask } else { old & !mask };
            self.ones = self.ones + u64::from(new.count_ones()) - u64::from(old.count_ones());
            self.words[w] = new;
            i += k;
        }
    }

    /// Set bits in `[start, start + n)`.
    pub(super) fn count(&self, start: u64, n: u64) -> u64 {
        let end = start.saturating_add(n).min(self.len);
        let mut i = start;
        let mut c = 0;
        while i < end {
            let (w, b) = ((i / 64) as usize, i % 64);
            let k = (64 - b).min(end - i);
            let mask = if k == 64 { !0 } else { ((1u64 << k) - 1) << b };
            c += u64::from((self.words[w] & mask).count_ones());
            i += k;
        }
        c
    }

    /// Length of the run of bits equal to `val` from `start`, at most
    /// `max`. Bits past the end read as clear.
    pub(super) fn run(&self, start: u64, max: u64, val: bool) -> u64 {
        let end = start.saturating_add(max);
        let mut i = start;
        while i < end {
            if i >= self.len {
                if !val {
                    i = end;
                }
                break;
            }
            let (w, b) = ((i / 64) as usize, i % 64);
            let word = if val { self.words[w] } else { !self.words[w] };
            let take = u64::from((!(word >> b)).trailing_zeros());
            i += take;
            if take < 64 - b {
                break;
            }
        }
        i.min(end) - start
    }

    /// Runs of bits equal to `val` in `[start, end)`, as `(start, len)`.
    pub(super) fn runs(&self, start: u64, end: u64, val: bool) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut i = start;
        while i < end {
            let r = self.run(i, end - i, val);
            if r > 0 {
                out.push((i, r));
                i += r;
            }
            i += self.run(i, end - i, !val);
        }
        out
    }

    /// Changes the length; bits past the new end are dropped.
    pub(super) fn resize(&mut self, len: u64) {
        self.words.resize(len.div_ceil(64) as usize, 0);
        if !len.is_multiple_of(64)
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u64 << (len % 64)) - 1;
        }
        self.len = len;
        self.ones = self.words.iter().map(|w| u64::from(w.count_ones())).sum();
    }
}

/// A frame that is not domain RAM but can be mapped into the p2m.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Special {
    SharedInfo,
    Grant(usize),
    Status(usize),
}

/// What a GFN holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    Hole,
    Ram,
    Special(Special),
}

/// The grant table's frame hook, if the domain installed one.
#[derive(Clone, Default)]
pub(super) struct FrameHook(pub(super) Option<Arc<dyn FrameInit>>);

impl std::fmt::Debug for FrameHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "FrameHook(set)"
        } else {
            "FrameHook(none)"
        })
    }
}

/// The p2m behind the lock.
#[derive(Clone, Debug)]
pub(super) struct P2m {
    pub(super) ram: Bitmap,
    pub(super) max_gpfn: u64,
    pub(super) unmapped: u64,
    pub(super) max_mapped: u64,
    pub(super) grant: Vec<Option<u64>>,
    pub(super) status: Vec<Option<u64>>,
    pub(super) grant_v2: bool,
    /// Working copy of `DomainState::shared_info_gfn` during a call.
    pub(super) shared_info: Option<u64>,
    /// Fills and keeps grant-table frames (see the module docs).
    pub(super) hook: FrameHook,
}

impl P2m {
    pub(super) fn tot_pages(&self) -> u64 {
        self.ram.ones.saturating_add(self.unmapped)
    }

    fn location(&self, s: Special) -> Option<u64> {
        match s {
            Special::SharedInfo => self.shared_info,
            Special::Grant(i) => self.grant[i],
            Special::Status(i) => self.status[i],
        }
    }

    pub(super) fn set_location(&mut self, s: Special, gfn: Option<u64>) {
        match s {
            Special::SharedInfo => self.shared_info = gfn,
            Special::Grant(i) => self.grant[i] = gfn,
            Special::Status(i) => self.status[i] = gfn,
        }
        if let Some(g) = gfn {
            self.max_mapped = self.max_mapped.max(g);
        }
    }

    /// Special frames mapped in `[start, end)`, sorted by GFN.
    pub(super) fn specials_in(&self, start: u64, end: u64) -> Vec<(u64, Special)> {
        let si = self.shared_info.map(|g| (g, Special::SharedInfo));
        let grants = self
            .grant
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.map(|g| (g, Special::Grant(i))));
        let status = self
            .status
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.map(|g| (g, Special::Status(i))));
        let mut v: Vec<_> = si
            .into_iter()
            .chain(grants)
            .chain(status)
            .filter(|(g, _)| (start..end).contains(g))
            .collect();
        v.sort_unstable_by_key(|(g, _)| *g);
        v
    }

    pub(super) fn slot(&self, gfn: u64) -> Slot {
        match self.specials_in(gfn, gfn.saturating_add(1)).first() {
            Some(&(_, s)) => Slot::Special(s),
            None if self.ram.get(gfn) => Slot::Ram,
            None => Slot::Hole,
        }
    }
}

/// The grant-table frame a special frame is, if it is one.
fn grant_frame(s: Special) -> Option<GrantFrame> {
    match s {
        Special::SharedInfo => None,
        Special::Grant(i) => Some(GrantFrame::Shared(u32::try_from(i).ok()?)),
        Special::Status(i) => Some(GrantFrame::Status(u32::try_from(i).ok()?)),
    }
}

/// The page at `gfn` (zeros where there is no guest memory).
fn read_page<M: GuestMemoryBackend>(mem: &M, gfn: u64) -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE as usize];
    if let Some(gpa) = gfn.checked_mul(PAGE_SIZE) {
        let _ = mem.read_slice(&mut page, GuestAddress(gpa));
    }
    page
}

/// Takes special frame `s` out of the p2m; a grant-table frame's contents
/// go to the hook first.
pub(super) fn unhook<M: GuestMemoryBackend>(ctx: &Ctx<'_, M>, p: &mut P2m, s: Special) {
    if let (Some(frame), Some(gfn), Some(hook)) = (grant_frame(s), p.location(s), &p.hook.0) {
        hook.removed(frame, &read_page(ctx.phys(), gfn));
    }
    p.set_location(s, None);
}

/// Places special frame `s` at `to`, unmapping it from where it was. RAM at
/// `to` is freed (Xen's `guest_remove_page`), another special frame there
/// is unhooked. A grant-table frame's page comes with it (see the module
/// docs).
pub(super) fn place_special<M: GuestMemoryBackend>(
    ctx: &Ctx<'_, M>,
    p: &mut P2m,
    s: Special,
    to: u64,
) -> Result<(), XenErrno> {
    let from = p.location(s);
    if from == Some(to) {
        return Ok(());
    }
    match p.slot(to) {
        Slot::Ram => {
            if !ctx.domain.env.backing.remove(to, 1) {
                return Err(XenErrno::EBUSY);
            }
            p.ram.fill(to, 1, false);
        }
        Slot::Special(other) => unhook(ctx, p, other),
        Slot::Hole => {}
    }
    if let Some(frame) = grant_frame(s) {
        let page = match from {
            Some(old) => read_page(ctx.phys(), old),
            None => {
                let mut page = vec![0u8; PAGE_SIZE as usize];
                if let Some(hook) = &p.hook.0 {
                    hook.placed(frame, &mut page);
                }
                page
            }
        };
        let written = to
            .checked_mul(PAGE_SIZE)
            .is_some_and(|gpa| ctx.phys().write_slice(&page, GuestAddress(gpa)).is_ok());
        if !written {
            warn_limited!(
                "vCPU {}: grant frame {frame:?} placed at GFN {to:#x}, which is not guest memory",
                ctx.vcpu
            );
        }
    }
    p.set_location(s, Some(to));
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn test_bitmap_ops_match_a_bool_model(
            len in 0u64..300,
            ops in proptest::collection::vec((0u64..320, 0u64..140, any::<bool>()), 0..20),
        ) {
            let mut b = Bitmap::new(len);
            let mut model = vec![false; len as usize];
            for (start, n, val) in ops {
                b.fill(start, n, val);
                for i in start..(start + n).min(len) {
                    model[i as usize] = val;
                }
                let ones = model.iter().filter(|&&x| x).count() as u64;
                prop_assert_eq!(b.ones, ones);
                let count = (start..(start + n).min(len)).filter(|&i| model[i as usize]).count() as u64;
                prop_assert_eq!(b.count(start, n), count);
                for val in [true, false] {
                    let run = (start..start + n)
                        .take_while(|&i| model.get(i as usize).copied().unwrap_or(false) == val)
                        .count() as u64;
                    prop_assert_eq!(b.run(start, n, val), run);
                }
            }
            let ranges = b.runs(0, len, true);
            let total: u64 = ranges.iter().map(|r| r.1).sum();
            prop_assert_eq!(total, b.ones);
            let shrunk = len / 2;
            b.resize(shrunk);
            let ones = model[..shrunk as usize].iter().filter(|&&x| x).count() as u64;
            prop_assert_eq!(b.ones, ones);
        }
    }
}
