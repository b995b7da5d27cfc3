// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! PV console ring, mirroring `xen/include/public/io/console.h`.
//!
//! Follows interface version 0x00041300 (Xen 4.23-unstable), `xen-abi.md`
//! §6.1. The guest produces into `out` and consumes from `in`; indices are
//! free-running `u32` counters masked by the buffer size minus one.
//!
//! # Size of `xencons_interface`
//!
//! The fields end with the one-byte `connection` at offset 3088, so they
//! occupy 3089 bytes. The structure's alignment is that of its `u32` indices
//! (4 bytes), so gcc rounds its size up to the next multiple of 4: 3092, with
//! 3 bytes of tail padding. [`XenconsInterface`] names those bytes `pad` so
//! that every byte belongs to a field.

/// Size of the input (backend → guest) buffer.
pub const XENCONS_IN_SIZE: usize = 1024;
/// Size of the output (guest → backend) buffer.
pub const XENCONS_OUT_SIZE: usize = 2048;
/// I/O port HVM guests write early boot messages to, byte by byte
/// (`XEN_HVM_DEBUGCONS_IOPORT`).
pub const XEN_HVM_DEBUGCONS_IOPORT: u16 = 0xe9;

/// Reduces a free-running `in` index to a byte offset (`MASK_XENCONS_IDX`).
pub const fn mask_xencons_in_idx(idx: u32) -> usize {
    idx as usize & (XENCONS_IN_SIZE - 1)
}

/// Reduces a free-running `out` index to a byte offset (`MASK_XENCONS_IDX`).
pub const fn mask_xencons_out_idx(idx: u32) -> usize {
    idx as usize & (XENCONS_OUT_SIZE - 1)
}

abi_enum! {
    /// `xencons_interface.connection` values.
    pub enum XenconsConnection: u8, "console connection state" {
        /// Connected.
        Connected = 0 => "XENCONSOLE_CONNECTED",
        /// Disconnected (the initial state).
        Disconnected = 1 => "XENCONSOLE_DISCONNECTED",
    }
}

/// `struct xencons_interface` (3092 bytes, see the module documentation).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenconsInterface {
    /// Input buffer, backend → guest (`in` in C).
    pub in_: [u8; XENCONS_IN_SIZE],
    /// Output buffer, guest → backend.
    pub out: [u8; XENCONS_OUT_SIZE],
    /// Input consumer index (guest advances).
    pub in_cons: u32,
    /// Input producer index (backend advances).
    pub in_prod: u32,
    /// Output consumer index (backend advances).
    pub out_cons: u32,
    /// Output producer index (guest advances).
    pub out_prod: u32,
    /// Raw [`XenconsConnection`].
    pub connection: u8,
    /// Tail padding up to the 4-byte alignment.
    pub pad: [u8; 3],
}
abi_layout!(XenconsInterface, 3092, {
    in_ => 0, out => 1024, in_cons => 3072, in_prod => 3076, out_cons => 3080,
    out_prod => 3084, connection => 3088, pad => 3089,
});
const _: () = assert!(core::mem::align_of::<XenconsInterface>() == 4);

impl Default for XenconsInterface {
    fn default() -> Self {
        XenconsInterface {
            in_: [0; XENCONS_IN_SIZE],
            out: [0; XENCONS_OUT_SIZE],
            in_cons: 0,
            in_prod: 0,
            out_cons: 0,
            out_prod: 0,
            connection: 0,
            pad: [0; 3],
        }
    }
}

impl XenconsInterface {
    /// Offset of `in_cons`, for single-word atomic access in guest memory.
    pub const IN_CONS_OFFSET: usize = 3072;
    /// Offset of `in_prod`.
    pub const IN_PROD_OFFSET: usize = 3076;
    /// Offset of `out_cons`.
    pub const OUT_CONS_OFFSET: usize = 3080;
    /// Offset of `out_prod`.
    pub const OUT_PROD_OFFSET: usize = 3084;
    /// Offset of `connection`.
    pub const CONNECTION_OFFSET: usize = 3088;

    /// Decodes `connection`.
    pub fn connection_state(&self) -> crate::Result<XenconsConnection> {
        XenconsConnection::try_from(self.connection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    #[test]
    fn test_xencons_connection_all_values_round_trip() {
        for &c in XenconsConnection::ALL {
            assert_eq!(XenconsConnection::try_from(c.raw()).unwrap(), c);
        }
        assert!(XenconsConnection::try_from(2).is_err());
    }

    #[test]
    fn test_xencons_interface_size_is_3089_rounded_to_4() {
        assert_eq!(
            core::mem::size_of::<XenconsInterface>(),
            3089usize.next_multiple_of(4)
        );
    }

    #[test]
    fn test_xencons_interface_write_bytes_land_at_offsets() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x2000)]).unwrap();
        let mut c = XenconsInterface::default();
        c.in_[1023] = b'i';
        c.out[0] = b'o';
        c.in_prod = 1;
        c.out_prod = 2;
        c.out_cons = 3;
        c.connection = XenconsConnection::Disconnected.raw();
        mem.write_obj(c, GuestAddress(0)).unwrap();
        assert_eq!(mem.read_obj::<u8>(GuestAddress(1023)).unwrap(), b'i');
        assert_eq!(mem.read_obj::<u8>(GuestAddress(1024)).unwrap(), b'o');
        assert_eq!(mem.read_obj::<u32>(GuestAddress(3076)).unwrap(), 1);
        assert_eq!(mem.read_obj::<u32>(GuestAddress(3080)).unwrap(), 3);
        assert_eq!(mem.read_obj::<u32>(GuestAddress(3084)).unwrap(), 2);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(3088)).unwrap(), 1);
        let back: XenconsInterface = mem.read_obj(GuestAddress(0)).unwrap();
        assert_eq!(
            back.connection_state().unwrap(),
            XenconsConnection::Disconnected
        );
    }

    #[test]
    fn test_mask_xencons_idx_wraps_per_buffer() {
        assert_eq!(mask_xencons_in_idx(1024), 0);
        assert_eq!(mask_xencons_out_idx(1024), 1024);
        assert_eq!(mask_xencons_out_idx(2049), 1);
    }
}
