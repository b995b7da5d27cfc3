// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Atomic access to words the guest shares with us.
//!
//! The guest clears pending bits, selectors and LINK fields concurrently, so
//! every update is a single atomic instruction on guest memory (vm-memory's
//! `get_atomic_ref`), never a read-modify-write through `read_obj`/`write_obj`.
//! Writes through an atomic reference bypass vm-memory's dirty bitmap, so each
//! helper marks the bytes dirty itself. Every helper returns `None` when the
//! address is not RAM or not naturally aligned; callers then treat the access
//! as if it had no effect.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use vm_memory::bitmap::Bitmap;
use vm_memory::{GuestAddress, GuestMemoryBackend, VolatileMemory};

macro_rules! atomic_op {
    ($(#[$m:meta])* $name:ident, $atomic:ty, $int:ty, |$a:ident, $v:ident| $op:expr) => {
        $(#[$m])*
        pub(crate) fn $name<M: GuestMemoryBackend>(mem: &M, gpa: u64, $v: $int) -> Option<$int> {
            let len = std::mem::size_of::<$int>();
            let slice = mem.get_slice(GuestAddress(gpa), len).ok()?;
            let $a = slice.get_atomic_ref::<$atomic>(0).ok()?;
            let old = $op;
            slice.bitmap().mark_dirty(0, len);
            Some(old)
        }
    };
}

atomic_op!(
    /// Atomically ORs `v` into the byte at `gpa`; returns the old value.
    or_u8, AtomicU8, u8, |a, v| a.fetch_or(v, Ordering::SeqCst)
);
atomic_op!(
    /// Atomically ORs `v` into the 32-bit word at `gpa`; returns the old value.
    or_u32, AtomicU32, u32, |a, v| a.fetch_or(v, Ordering::SeqCst)
);
atomic_op!(
    /// Atomically ANDs `v` into the 32-bit word at `gpa`; returns the old value.
    and_u32, AtomicU32, u32, |a, v| a.fetch_and(v, Ordering::SeqCst)
);
atomic_op!(
    /// Atomically ORs `v` into the 64-bit word at `gpa`; returns the old value.
    or_u64, AtomicU64, u64, |a, v| a.fetch_or(v, Ordering::SeqCst)
);
atomic_op!(
    /// Atomically ANDs `v` into the 64-bit word at `gpa`; returns the old value.
    and_u64, AtomicU64, u64, |a, v| a.fetch_and(v, Ordering::SeqCst)
);
atomic_op!(
    /// Atomically stores `v` into the 32-bit word at `gpa`; returns the old value.
    swap_u32, AtomicU32, u32, |a, v| a.swap(v, Ordering::SeqCst)
);

/// Atomically loads the 32-bit word at `gpa`.
pub(crate) fn load_u32<M: GuestMemoryBackend>(mem: &M, gpa: u64) -> Option<u32> {
    let slice = mem.get_slice(GuestAddress(gpa), 4).ok()?;
    let a = slice.get_atomic_ref::<AtomicU32>(0).ok()?;
    Some(a.load(Ordering::SeqCst))
}

/// Atomically loads the 64-bit word at `gpa`.
pub(crate) fn load_u64<M: GuestMemoryBackend>(mem: &M, gpa: u64) -> Option<u64> {
    let slice = mem.get_slice(GuestAddress(gpa), 8).ok()?;
    let a = slice.get_atomic_ref::<AtomicU64>(0).ok()?;
    Some(a.load(Ordering::SeqCst))
}

/// Atomically replaces the 32-bit word at `gpa` with `new` if it still holds
/// `old`; returns the value found (equal to `old` on success).
pub(crate) fn cmpxchg_u32<M: GuestMemoryBackend>(
    mem: &M,
    gpa: u64,
    old: u32,
    new: u32,
) -> Option<u32> {
    let slice = mem.get_slice(GuestAddress(gpa), 4).ok()?;
    let a = slice.get_atomic_ref::<AtomicU32>(0).ok()?;
    let found = match a.compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(v) | Err(v) => v,
    };
    slice.bitmap().mark_dirty(0, 4);
    Some(found)
}

/// A bitmap of `wide` (64-bit) or 32-bit words in guest memory, as the 2-level
/// ABI's `evtchn_pending`, `evtchn_mask` and `evtchn_pending_sel` are.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bitmap2l {
    /// Guest-physical address of word 0.
    pub(crate) base: u64,
    /// 64-bit words (x86_64 layout) rather than 32-bit ones.
    pub(crate) wide: bool,
}

impl Bitmap2l {
    fn bits(self) -> u32 {
        if self.wide { 64 } else { 32 }
    }

    fn word(self, bit: u32) -> (u64, u32) {
        let bits = self.bits();
        let gpa = self
            .base
            .wrapping_add(u64::from(bit / bits) * u64::from(bits / 8));
        (gpa, bit % bits)
    }

    /// Atomically sets `bit`; returns whether it was already set.
    pub(crate) fn test_and_set<M: GuestMemoryBackend>(self, mem: &M, bit: u32) -> Option<bool> {
        let (gpa, b) = self.word(bit);
        if self.wide {
            or_u64(mem, gpa, 1 << b).map(|old| old & (1 << b) != 0)
        } else {
            or_u32(mem, gpa, 1 << b).map(|old| old & (1 << b) != 0)
        }
    }

    /// Atomically clears `bit`; returns whether it was set.
    pub(crate) fn test_and_clear<M: GuestMemoryBackend>(self, mem: &M, bit: u32) -> Option<bool> {
        let (gpa, b) = self.word(bit);
        if self.wide {
            and_u64(mem, gpa, !(1 << b)).map(|old| old & (1 << b) != 0)
        } else {
            and_u32(mem, gpa, !(1 << b)).map(|old| old & (1 << b) != 0)
        }
    }

    /// Atomically reads `bit`.
    pub(crate) fn test<M: GuestMemoryBackend>(self, mem: &M, bit: u32) -> Option<bool> {
        let (gpa, b) = self.word(bit);
        if self.wide {
            load_u64(mem, gpa).map(|w| w & (1 << b) != 0)
        } else {
            load_u32(mem, gpa).map(|w| w & (1 << b) != 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemoryMmap};

    fn mem() -> GuestMemoryMmap<()> {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x2000)]).unwrap()
    }

    #[test]
    fn test_bitmap2l_wide_sets_bit_in_second_word() {
        let m = mem();
        let b = Bitmap2l {
            base: 0x100,
            wide: true,
        };
        assert_eq!(b.test_and_set(&m, 65), Some(false));
        assert_eq!(b.test_and_set(&m, 65), Some(true));
        assert_eq!(m.read_obj::<u64>(GuestAddress(0x108)).unwrap(), 2);
        assert_eq!(b.test(&m, 65), Some(true));
        assert_eq!(b.test_and_clear(&m, 65), Some(true));
        assert_eq!(b.test(&m, 65), Some(false));
    }

    #[test]
    fn test_bitmap2l_narrow_uses_32_bit_words() {
        let m = mem();
        let b = Bitmap2l {
            base: 0x100,
            wide: false,
        };
        assert_eq!(b.test_and_set(&m, 33), Some(false));
        assert_eq!(m.read_obj::<u32>(GuestAddress(0x104)).unwrap(), 2);
    }

    #[test]
    fn test_atomic_helpers_outside_ram_return_none() {
        let m = mem();
        let b = Bitmap2l {
            base: 0x1ff8,
            wide: true,
        };
        assert_eq!(b.test_and_set(&m, 64), None);
        assert_eq!(or_u8(&m, 0x5000, 1), None);
        assert_eq!(load_u32(&m, 0x2000), None);
        assert_eq!(cmpxchg_u32(&m, 0x9000, 0, 1), None);
    }

    #[test]
    fn test_atomic_helpers_misaligned_return_none() {
        let m = mem();
        assert_eq!(or_u64(&m, 0x101, 1), None);
        assert_eq!(load_u64(&m, 0x104), None);
    }

    #[test]
    fn test_cmpxchg_u32_mismatch_leaves_word() {
        let m = mem();
        m.write_obj(5u32, GuestAddress(0x10)).unwrap();
        assert_eq!(cmpxchg_u32(&m, 0x10, 4, 9), Some(5));
        assert_eq!(cmpxchg_u32(&m, 0x10, 5, 9), Some(5));
        assert_eq!(load_u32(&m, 0x10), Some(9));
    }
}
