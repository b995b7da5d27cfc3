// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The Xen public guest ABI for x86 HVM guests, as plain Rust data.
//!
//! This crate mirrors the parts of Xen's public headers (`xen/include/public/`)
//! that a KVM-based VMM needs to host unmodified Xen HVM guests: hypercall and
//! sub-operation numbers, errno values, feature bits, flag words, and the
//! `#[repr(C)]` layouts of every structure a guest passes to a hypercall or
//! shares with the hypervisor. It follows interface version
//! [`XEN_INTERFACE_VERSION`] (0x00041300, Xen 4.23-unstable) as documented in
//! the project's `xen-abi.md` reference; it does no I/O. Its one piece
//! of state is the rate limiter of guest-misbehaviour warnings that every
//! xen-on-kvm crate shares ([`ratelimit`]); the x86 paging constants they
//! share live in [`x86`].
//!
//! One module exists per public header mirrored. Each module's tests check the
//! size of every structure and the offset of every field against the tables of
//! that reference, which were produced by compiling the real headers with
//! `gcc -m64` and `gcc -m32`.
//!
//! # 64-bit and compat layouts
//!
//! A guest running in long mode uses the native x86_64 layouts; a guest in
//! 32-bit protected mode uses the "compat" layouts, where `unsigned long`,
//! `xen_pfn_t` and guest handles are 4 bytes and `uint64_t` is only 4-byte
//! aligned. Every structure whose layout differs between the two modes comes
//! as a pair of types, `Foo` (x86_64) and `FooCompat` (x86_32).
//!
//! Compat structures that contain a `u64` at an offset that is not a multiple
//! of 8 are declared `#[repr(C, packed(4))]`. This reproduces the i386 rule
//! (8-byte integers are 4-byte aligned inside structures) exactly, so the
//! fields keep their natural types instead of being split into halves. Such
//! fields must be read by value (`{ s.field }`); taking a reference to them is
//! rejected by the compiler.
//!
//! # Guest memory
//!
//! Every ABI structure implements [`vm_memory::ByteValued`]: it is plain data,
//! every bit pattern is a valid value, and explicit padding fields make every
//! byte part of a named field. The layout checks are compile-time assertions
//! emitted next to each `unsafe impl`, including a check that the sizes of the
//! listed fields add up to the size of the structure (so there is no hidden
//! padding). Structures can therefore be moved with
//! [`Bytes::read_obj`](vm_memory::Bytes::read_obj) and
//! [`Bytes::write_obj`](vm_memory::Bytes::write_obj).
//!
//! # Example
//!
//! Read an `HVMOP_set_param` argument from guest memory and decode the
//! event-channel callback it installs:
//!
//! ```
//! use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
//! use xen_abi::hvm::{CallbackVia, HvmParam, XenHvmParam};
//!
//! let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
//! # let arg = XenHvmParam { domid: 0x7ff0, index: 0, value: (2 << 56) | 0xf3, ..Default::default() };
//! # mem.write_obj(arg, GuestAddress(0x1000)).unwrap();
//! let p: XenHvmParam = mem.read_obj(GuestAddress(0x1000)).unwrap();
//! assert_eq!(HvmParam::try_from(p.index).unwrap(), HvmParam::CallbackIrq);
//! assert_eq!(CallbackVia::from_param(p.value), CallbackVia::Vector(0xf3));
//! ```

#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("xen-abi supports x86-64 hosts and guests only");

#[macro_use]
mod macros;

pub mod cpuid;
pub mod errno;
pub mod event_channel;
pub mod features;
pub mod grant_table;
pub mod hvm;
pub mod io;
pub mod memory;
pub mod physdev;
pub mod ratelimit;
pub mod sched;
pub mod vcpu;
pub mod version;
pub mod x86;
pub mod xen;

/// The Xen public interface version whose layouts and numbers this crate
/// follows (`__XEN_LATEST_INTERFACE_VERSION__` of Xen 4.23-unstable).
pub const XEN_INTERFACE_VERSION: u32 = 0x0004_1300;

/// Errors returned when raw guest-supplied values are decoded into typed ABI
/// values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AbiError {
    /// An unsigned raw value does not name any known value of an ABI enum.
    #[error("Unknown {what} value {value:#x}")]
    UnknownValue {
        /// What kind of value was decoded (e.g. "hypercall number").
        what: &'static str,
        /// The raw value that was rejected.
        value: u64,
    },
    /// A signed raw value does not name any known value of an ABI enum.
    #[error("Unknown {what} value {value}")]
    UnknownSignedValue {
        /// What kind of value was decoded (e.g. "grant status").
        what: &'static str,
        /// The raw value that was rejected.
        value: i64,
    },
    /// A value does not fit in the bit field that has to hold it.
    #[error("The {what} value {value:#x} exceeds the maximum {max:#x}")]
    OutOfRange {
        /// What kind of value was encoded (e.g. "FIFO event link").
        what: &'static str,
        /// The value that was rejected.
        value: u64,
        /// The largest value the field can hold.
        max: u64,
    },
}

/// The result type of this crate's fallible conversions.
pub type Result<T> = std::result::Result<T, AbiError>;

/// Raw integer types that ABI enums are decoded from.
///
/// Internal helper: it picks the [`AbiError`] variant that displays the raw
/// value best for its signedness.
pub(crate) trait RawValue: Copy {
    /// Builds the "unknown value" error for this raw value.
    fn unknown(self, what: &'static str) -> AbiError;
}

macro_rules! impl_raw_unsigned {
    ($($t:ty),*) => {$(
        impl RawValue for $t {
            fn unknown(self, what: &'static str) -> AbiError {
                AbiError::UnknownValue { what, value: u64::from(self) }
            }
        }
    )*};
}
macro_rules! impl_raw_signed {
    ($($t:ty),*) => {$(
        impl RawValue for $t {
            fn unknown(self, what: &'static str) -> AbiError {
                AbiError::UnknownSignedValue { what, value: i64::from(self) }
            }
        }
    )*};
}
impl_raw_unsigned!(u8, u16, u32, u64);
impl_raw_signed!(i8, i16, i32, i64);

/// Returns the size of the type a field-reading function yields.
///
/// Used by the layout assertions (see `abi_layout!`) to add up field sizes
/// without taking references, which packed structures do not allow.
pub(crate) const fn field_size<T, F>(_read: fn(T) -> F) -> usize {
    core::mem::size_of::<F>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_abi_error_display_starts_with_capital() {
        let e = AbiError::UnknownValue {
            what: "hypercall number",
            value: 0x2b,
        };
        assert_eq!(e.to_string(), "Unknown hypercall number value 0x2b");
        let e = AbiError::UnknownSignedValue {
            what: "grant status",
            value: -99,
        };
        assert_eq!(e.to_string(), "Unknown grant status value -99");
        let e = AbiError::OutOfRange {
            what: "FIFO event link",
            value: 0x20000,
            max: 0x1ffff,
        };
        assert_eq!(
            e.to_string(),
            "The FIFO event link value 0x20000 exceeds the maximum 0x1ffff"
        );
    }

    #[test]
    fn test_raw_value_signed_unknown_keeps_sign() {
        assert_eq!(
            (-5i16).unknown("x"),
            AbiError::UnknownSignedValue {
                what: "x",
                value: -5
            }
        );
        assert_eq!(
            7u8.unknown("y"),
            AbiError::UnknownValue {
                what: "y",
                value: 7
            }
        );
    }
}
