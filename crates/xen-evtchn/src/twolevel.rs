// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The 2-level ABI on guest memory (`xen-abi.md` §4.1, Xen `event_2l.c`).
//!
//! Bits live in `shared_info.evtchn_pending[]`/`evtchn_mask[]` (offset 2048,
//! then 2560 or 2176) and in the notify vCPU's `vcpu_info`
//! (`evtchn_upcall_pending` at 0, `evtchn_pending_sel` at 8 or 4). Without
//! shared_info nothing is recorded (Xen's shared_info always exists; Linux
//! places it before it binds any port), and without a vcpu_info an event stays
//! pending in the bitmap with no upcall.

use vm_memory::GuestMemoryBackend;

use crate::GuestLayout;
use crate::channels::Effects;
use crate::guest::{Bitmap2l, or_u8};

/// Offset of `evtchn_pending[]` in shared_info (both layouts).
pub(crate) const PENDING_OFFSET: u64 = 2048;
/// Offset of `evtchn_mask[]` in the x86_64 shared_info.
pub(crate) const MASK_OFFSET_64: u64 = 2560;
/// Offset of `evtchn_mask[]` in the x86_32 shared_info.
pub(crate) const MASK_OFFSET_32: u64 = 2176;

/// The 2-level bitmaps of a placed shared_info.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TwoLevel {
    shared_info: u64,
    wide: bool,
}

impl TwoLevel {
    /// Returns the bitmaps, or `None` if shared_info is not placed.
    pub(crate) fn new(layout: &dyn GuestLayout) -> Option<Self> {
        layout.shared_info_gpa().map(|shared_info| TwoLevel {
            shared_info,
            wide: layout.long_mode(),
        })
    }

    fn pending(self) -> Bitmap2l {
        Bitmap2l {
            base: self.shared_info.wrapping_add(PENDING_OFFSET),
            wide: self.wide,
        }
    }

    fn mask(self) -> Bitmap2l {
        let off = if self.wide {
            MASK_OFFSET_64
        } else {
            MASK_OFFSET_32
        };
        Bitmap2l {
            base: self.shared_info.wrapping_add(off),
            wide: self.wide,
        }
    }

    fn word_bits(self) -> u32 {
        if self.wide { 64 } else { 32 }
    }
}

/// Sets `evtchn_upcall_pending` of `vcpu` and requests the upcall if it was
/// clear (2-level step 3, also used by FIFO).
pub(crate) fn mark_events_pending<M: GuestMemoryBackend>(
    mem: &M,
    layout: &dyn GuestLayout,
    vcpu: u32,
    fx: &mut Effects,
) {
    let Some(vi) = layout.vcpu_info_gpa(vcpu) else {
        return;
    };
    if or_u8(mem, vi, 1).is_some_and(|old| old & 1 == 0) {
        fx.upcalls.push(vcpu);
    }
}

/// Sets selector bit `word` of `vcpu` and, if newly set, marks its events
/// pending (2-level steps 2 and 3).
fn mark_selector<M: GuestMemoryBackend>(
    mem: &M,
    layout: &dyn GuestLayout,
    tl: TwoLevel,
    vcpu: u32,
    word: u32,
    fx: &mut Effects,
) {
    let Some(vi) = layout.vcpu_info_gpa(vcpu) else {
        return;
    };
    let sel = Bitmap2l {
        base: vi.wrapping_add(if tl.wide { 8 } else { 4 }),
        wide: tl.wide,
    };
    if sel.test_and_set(mem, word) == Some(false) {
        mark_events_pending(mem, layout, vcpu, fx);
    }
}

/// Raises `port` for `vcpu` (steps 1 to 4).
pub(crate) fn set_pending<M: GuestMemoryBackend>(
    mem: &M,
    layout: &dyn GuestLayout,
    port: u32,
    vcpu: u32,
    fx: &mut Effects,
) {
    let Some(tl) = TwoLevel::new(layout) else {
        return;
    };
    if tl.pending().test_and_set(mem, port) != Some(false) {
        return;
    }
    fx.raised.push(port);
    if tl.mask().test(mem, port) == Some(false) {
        mark_selector(mem, layout, tl, vcpu, port / tl.word_bits(), fx);
    }
}

/// Re-raises `port` on `vcpu` if it is pending and not masked (used by
/// `bind_vcpu`).
pub(crate) fn reraise<M: GuestMemoryBackend>(
    mem: &M,
    layout: &dyn GuestLayout,
    port: u32,
    vcpu: u32,
    fx: &mut Effects,
) {
    let Some(tl) = TwoLevel::new(layout) else {
        return;
    };
    if tl.pending().test(mem, port) == Some(true) && tl.mask().test(mem, port) == Some(false) {
        mark_selector(mem, layout, tl, vcpu, port / tl.word_bits(), fx);
    }
}

/// `EVTCHNOP_unmask`: clears the mask and re-raises a pending port.
pub(crate) fn unmask<M: GuestMemoryBackend>(
    mem: &M,
    layout: &dyn GuestLayout,
    port: u32,
    vcpu: u32,
    fx: &mut Effects,
) {
    let Some(tl) = TwoLevel::new(layout) else {
        return;
    };
    if tl.mask().test_and_clear(mem, port) == Some(true)
        && tl.pending().test(mem, port) == Some(true)
    {
        mark_selector(mem, layout, tl, vcpu, port / tl.word_bits(), fx);
    }
}

/// Clears the pending bit of a port being freed.
pub(crate) fn clear_pending<M: GuestMemoryBackend>(mem: &M, layout: &dyn GuestLayout, port: u32) {
    if let Some(tl) = TwoLevel::new(layout) {
        let _ = tl.pending().test_and_clear(mem, port);
    }
}

/// Reads the pending bit of `port`.
pub(crate) fn is_pending<M: GuestMemoryBackend>(
    mem: &M,
    layout: &dyn GuestLayout,
    port: u32,
) -> bool {
    TwoLevel::new(layout).is_some_and(|tl| tl.pending().test(mem, port) == Some(true))
}

/// Reads the mask bit of `port`.
pub(crate) fn is_masked<M: GuestMemoryBackend>(
    mem: &M,
    layout: &dyn GuestLayout,
    port: u32,
) -> bool {
    TwoLevel::new(layout).is_some_and(|tl| tl.mask().test(mem, port) == Some(true))
}
