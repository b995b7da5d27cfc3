// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Errors of the host-side API: configuration, snapshots and the back-end
//! operations. Guest-facing operations answer with Xen's own codes
//! ([`Gntst`] per entry, [`XenErrno`](xen_abi::errno::XenErrno) per call)
//! instead.

use xen_abi::grant_table::{Gntst, GrantRef};
use xen_abi::xen::DomId;

/// What went wrong in a host-side call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot describe a grant table.
    #[error("Invalid grant-table configuration: {0}.")]
    InvalidConfig(&'static str),
    /// A reserved entry's GFN does not fit a v1 entry's 32-bit frame.
    #[error("GFN {0:#x} does not fit a v1 grant entry.")]
    InvalidSeed(u64),
    /// A snapshot that cannot describe this table.
    #[error("Invalid grant-table state: {0}.")]
    InvalidState(&'static str),
    /// Restoring while back ends still hold mappings.
    #[error("The grant table still has back-end mappings.")]
    Busy,
    /// A map of no references, or of more than [`MAX_MAP_REFS`](crate::MAX_MAP_REFS).
    #[error("Cannot map {0} grant references at once.")]
    BadCount(usize),
    /// The back-end domain id is the guest's own or a reserved one.
    #[error("Domain {0:#x} cannot act as a back end.")]
    BadDomain(DomId),
    /// The reference is beyond the table's current size.
    #[error("Grant reference {0} is beyond the grant table.")]
    BadRef(GrantRef),
    /// The entry does not grant this access to this domain: not
    /// `GTF_permit_access`, sub-page or transitive where not allowed, granted
    /// to another domain, read-only for a write, or in a frame the guest has
    /// not placed.
    #[error("Grant reference {0} does not grant this access.")]
    Denied(GrantRef),
    /// The guest kept changing the entry while its flags were being set.
    #[error("Grant reference {0} changed while it was being pinned.")]
    Unstable(GrantRef),
    /// Another domain holds the reference, or its use counts are at their
    /// limit.
    #[error("Grant reference {0} is in use by another domain or too often.")]
    InUse(GrantRef),
    /// The granted frame is not guest memory.
    #[error("Grant reference {gref} names frame {gfn:#x}, which is not guest memory.")]
    BadPage {
        /// The reference.
        gref: GrantRef,
        /// The frame it names.
        gfn: u64,
    },
    /// A copy's offset and length reach beyond the page.
    #[error("A copy of {len} bytes at offset {offset} crosses the page end.")]
    BadCopyArg {
        /// Offset in the page.
        offset: u16,
        /// Length.
        len: usize,
    },
    /// A copy reaches outside the bytes a sub-page grant allows.
    #[error("A copy reaches outside the part of the page grant reference {0} allows.")]
    OutOfBounds(GrantRef),
    /// The mapping was already unmapped (or its back end closed).
    #[error("Mapping {0} is not mapped.")]
    UnknownMapping(u64),
    /// A write through a read-only mapping.
    #[error("The mapping is read-only.")]
    ReadOnly,
    /// An access beyond the end of a mapping.
    #[error("{len} bytes at offset {offset} reach beyond the mapping.")]
    BeyondMapping {
        /// Offset in the mapping.
        offset: usize,
        /// Length of the access.
        len: usize,
    },
    /// Guest memory could not be accessed.
    #[error("Guest memory access failed.")]
    Memory(#[source] vm_memory::GuestMemoryError),
}

impl Error {
    /// The `GNTST_*` code Xen reports for the same failure (for back ends
    /// that answer in Xen's terms). Host-side errors map to
    /// `GNTST_general_error`.
    pub fn gntst(&self) -> Gntst {
        match self {
            Error::BadRef(_) => Gntst::BadGntref,
            Error::BadDomain(_) => Gntst::BadDomain,
            Error::BadPage { .. } => Gntst::BadPage,
            Error::BadCopyArg { .. } => Gntst::BadCopyArg,
            _ => Gntst::GeneralError,
        }
    }
}

/// Results of this crate's host-side calls.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_error_gntst_maps_to_xen_codes() {
        assert_eq!(Error::BadRef(9).gntst(), Gntst::BadGntref);
        assert_eq!(Error::BadDomain(3).gntst(), Gntst::BadDomain);
        assert_eq!(Error::BadPage { gref: 1, gfn: 2 }.gntst(), Gntst::BadPage);
        assert_eq!(
            Error::BadCopyArg {
                offset: 1,
                len: 4096
            }
            .gntst(),
            Gntst::BadCopyArg
        );
        for e in [
            Error::Denied(1),
            Error::Unstable(1),
            Error::InUse(1),
            Error::OutOfBounds(1),
            Error::ReadOnly,
        ] {
            assert_eq!(e.gntst(), Gntst::GeneralError, "{e}");
        }
    }

    #[test]
    fn test_error_messages_are_sentences() {
        let e = Error::BadPage {
            gref: 8,
            gfn: 0x1234,
        };
        assert_eq!(
            e.to_string(),
            "Grant reference 8 names frame 0x1234, which is not guest memory."
        );
    }
}
