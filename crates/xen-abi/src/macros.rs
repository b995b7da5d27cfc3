// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Internal macros that generate the repetitive parts of the ABI definitions.

/// Declares a fieldless ABI enum with a fixed representation.
///
/// Generates the enum (with `Clone`, `Copy`, `Debug`, `PartialEq`, `Eq`, `Hash`,
/// `PartialOrd`, `Ord` and, with the `serde` feature, `Serialize` and
/// `Deserialize`), an `ALL` list, `raw()`, `name()` (the identifier used by
/// Xen's headers), `From<Enum> for raw`, `TryFrom<raw> for Enum` returning
/// [`crate::AbiError`], and `Display` (the header name).
macro_rules! abi_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: $repr:ident, $what:literal {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $value:expr => $cname:literal
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        #[repr($repr)]
        $vis enum $name {
            $(
                $(#[$vmeta])*
                $variant = $value,
            )+
        }

        impl $name {
            /// Every defined value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Returns the raw ABI value.
            pub const fn raw(self) -> $repr {
                self as $repr
            }

            /// Returns the identifier Xen's public headers use for this value.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $cname),+
                }
            }
        }

        impl From<$name> for $repr {
            fn from(value: $name) -> $repr {
                value as $repr
            }
        }

        impl TryFrom<$repr> for $name {
            type Error = $crate::AbiError;

            fn try_from(raw: $repr) -> $crate::Result<Self> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| *v as $repr == raw)
                    .ok_or_else(|| $crate::RawValue::unknown(raw, $what))
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

/// Marks an ABI structure as [`vm_memory::ByteValued`] and checks its layout at
/// compile time.
///
/// Every field of the structure must be listed with its byte offset. The
/// macro asserts the total size, every offset, and that the field sizes add up
/// to the total size, which (fields of a `repr(C)` structure never overlap)
/// proves that the structure has no padding bytes.
macro_rules! abi_layout {
    ($ty:ident, $size:expr, { $($field:ident => $off:expr),+ $(,)? }) => {
        // SAFETY: the type is a `#[repr(C)]` (or `#[repr(C, packed(N))]`) structure made
        // only of integers, arrays of integers and other `ByteValued` ABI structures: it holds
        // no references, pointers, `bool`s or enums, so every bit pattern is a valid value.
        // The compile-time assertions right below prove that the listed fields cover every
        // byte of it, so it has no padding bytes that could expose uninitialised memory.
        unsafe impl vm_memory::ByteValued for $ty {}

        const _: () = {
            assert!(core::mem::size_of::<$ty>() == $size);
            $(assert!(core::mem::offset_of!($ty, $field) == $off);)+
            assert!(0 $(+ $crate::field_size(|s: $ty| s.$field))+ == $size);
        };
    };
}
