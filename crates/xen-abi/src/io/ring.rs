// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Generic shared request/response ring, mirroring
//! `xen/include/public/io/ring.h` (`DEFINE_RING_TYPES`).
//!
//! Follows interface version 0x00041300 (Xen 4.23-unstable), `xen-abi.md`
//! §6.2. A shared ring is a 64-byte [`SringHeader`] followed by an array of
//! entries, each the union of the protocol's request and response types. The
//! header is the same for 32-bit and 64-bit guests (the entries may not be).

/// Size of the shared-ring header; entries start at this offset.
pub const SRING_HEADER_SIZE: usize = 64;

/// The header of a shared ring (`struct <name>_sring` up to `ring[]`, 64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SringHeader {
    /// Request producer index (frontend advances).
    pub req_prod: u32,
    /// The backend (request consumer) wants a notification once `req_prod`
    /// passes this index; see [`ring_needs_notify`].
    pub req_event: u32,
    /// Response producer index (backend advances).
    pub rsp_prod: u32,
    /// The frontend (response consumer) wants a notification once `rsp_prod`
    /// passes this index.
    pub rsp_event: u32,
    /// Protocol-private bytes (e.g. netif `smartpoll_active`).
    pub pvt: [u8; 4],
    /// Padding up to 64 bytes.
    pub pad: [u8; 44],
}
abi_layout!(SringHeader, 64, {
    req_prod => 0, req_event => 4, rsp_prod => 8, rsp_event => 12, pvt => 16, pad => 20,
});

impl Default for SringHeader {
    fn default() -> Self {
        SringHeader {
            req_prod: 0,
            req_event: 0,
            rsp_prod: 0,
            rsp_event: 0,
            pvt: [0; 4],
            pad: [0; 44],
        }
    }
}

impl SringHeader {
    /// Returns a freshly initialised header (`SHARED_RING_INIT`): producers 0,
    /// events 1.
    pub const fn new() -> Self {
        SringHeader {
            req_prod: 0,
            req_event: 1,
            rsp_prod: 0,
            rsp_event: 1,
            pvt: [0; 4],
            pad: [0; 44],
        }
    }
}

/// Number of entries of a shared ring occupying `ring_bytes` bytes (header
/// included) with `entry_size`-byte entries: the largest power of two not
/// above `(ring_bytes - 64) / entry_size` (`__CONST_RING_SIZE`). Returns 0
/// if not even one entry fits or `entry_size` is 0.
pub const fn ring_entries(ring_bytes: usize, entry_size: usize) -> usize {
    if entry_size == 0 || ring_bytes <= SRING_HEADER_SIZE {
        return 0;
    }
    let n = (ring_bytes - SRING_HEADER_SIZE) / entry_size;
    if n == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

/// Reduces a free-running index to a slot of a ring with `entries` entries
/// (a power of two) (`RING_MASK`).
pub const fn ring_slot(idx: u32, entries: usize) -> usize {
    idx as usize & (entries - 1)
}

/// Notification hold-off test used after pushing entries
/// (`RING_PUSH_*_AND_CHECK_NOTIFY`): returns true if the peer's `event`
/// index lies in `(old_prod, new_prod]`, i.e. the peer asked to be notified.
pub const fn ring_needs_notify(old_prod: u32, new_prod: u32, event: u32) -> bool {
    new_prod.wrapping_sub(event) < new_prod.wrapping_sub(old_prod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    /// Size of the netif TX ring entry: the union of a 12-byte request and a
    /// 4-byte response.
    const NETIF_TX_ENTRY: usize = if 12 > 4 { 12 } else { 4 };
    /// blkif ring entry (x86_64): the union of a 112-byte request and a
    /// 16-byte response.
    const BLKIF_ENTRY: usize = if 112 > 16 { 112 } else { 16 };

    #[test]
    fn test_ring_entries_blkif_page_gives_32() {
        assert_eq!(ring_entries(4096, BLKIF_ENTRY), 32);
        // x86_32 blkif request is 108 bytes: still 32 entries.
        assert_eq!(ring_entries(4096, 108), 32);
    }

    #[test]
    fn test_ring_entries_netif_tx_page_gives_256() {
        assert_eq!(NETIF_TX_ENTRY, 12);
        assert_eq!(ring_entries(4096, NETIF_TX_ENTRY), 256);
        // RX: 8-byte request and response.
        assert_eq!(ring_entries(4096, 8), 256);
    }

    #[test]
    fn test_ring_entries_too_small_gives_zero() {
        assert_eq!(ring_entries(64, 8), 0);
        assert_eq!(ring_entries(70, 8), 0);
        assert_eq!(ring_entries(4096, 0), 0);
        assert_eq!(ring_entries(72, 8), 1);
    }

    #[test]
    fn test_sring_header_new_sets_events_to_one() {
        let h = SringHeader::new();
        assert_eq!(
            (h.req_prod, h.req_event, h.rsp_prod, h.rsp_event),
            (0, 1, 0, 1)
        );
        assert_eq!(SringHeader::default().req_event, 0);
    }

    #[test]
    fn test_sring_header_write_bytes_land_at_offsets() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let mut h = SringHeader::new();
        h.req_prod = 5;
        h.rsp_prod = 3;
        h.pvt[0] = 1;
        mem.write_obj(h, GuestAddress(0x100)).unwrap();
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x100)).unwrap(), 5);
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x104)).unwrap(), 1);
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x108)).unwrap(), 3);
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x10c)).unwrap(), 1);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x110)).unwrap(), 1);
    }

    #[test]
    fn test_ring_needs_notify_event_inside_window_true() {
        assert!(ring_needs_notify(0, 1, 1));
        assert!(ring_needs_notify(4, 8, 6));
        assert!(!ring_needs_notify(4, 8, 9));
        assert!(!ring_needs_notify(4, 8, 4));
        // Wrap-around of the free-running indices.
        assert!(ring_needs_notify(u32::MAX - 1, 2, 0));
    }

    #[test]
    fn test_ring_slot_masks_index() {
        assert_eq!(ring_slot(33, 32), 1);
        assert_eq!(ring_slot(u32::MAX, 256), 255);
    }
}
