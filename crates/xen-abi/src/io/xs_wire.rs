// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! XenStore wire protocol, mirroring `xen/include/public/io/xs_wire.h`.
//!
//! Follows interface version 0x00041300 (Xen 4.23-unstable), `xen-abi.md`
//! §5.2 (the ring page, [`XenstoreDomainInterface`]) and §5.3 (the message
//! header [`XsdSockmsg`], message types and error names). The layout is the
//! same for 32-bit and 64-bit guests.
//!
//! Ring indices are free-running `u32` counters; byte `n` of a stream lives at
//! [`mask_xenstore_idx`]`(n)`. Errors travel by name (e.g. `"ENOENT"`), never
//! by number; [`XSD_ERRORS`] is the table of valid names.

use bitflags::bitflags;

use crate::errno::XenErrno;

/// Size of each of the two byte rings (`XENSTORE_RING_SIZE`).
pub const XENSTORE_RING_SIZE: usize = 1024;
/// Maximum payload of one message, both directions (`XENSTORE_PAYLOAD_MAX`).
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// Maximum length of an absolute path (`XENSTORE_ABS_PATH_MAX`).
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// Maximum length of a path below a domain's home (`XENSTORE_REL_PATH_MAX`).
pub const XENSTORE_REL_PATH_MAX: usize = 2048;

/// Reduces a free-running ring index to a byte offset in a ring
/// (`MASK_XENSTORE_IDX`).
pub const fn mask_xenstore_idx(idx: u32) -> usize {
    idx as usize & (XENSTORE_RING_SIZE - 1)
}

bitflags! {
    /// `xenstore_domain_interface.server_features` (`XENSTORE_SERVER_FEATURE_*`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
    #[cfg_attr(feature = "serde", serde(transparent))]
    pub struct XenstoreServerFeatures: u32 {
        /// The server supports the `connection` reconnect handshake.
        const RECONNECTION = 1 << 0;
        /// The server reports ring errors in the `error` field.
        const ERROR = 1 << 1;
        /// The server supports a depth argument on `XS_WATCH`.
        const WATCHDEPTH = 1 << 2;
        /// The server supports `DOMID_ANY` in permissions.
        const DOMID_ANY = 1 << 3;
    }
}

abi_enum! {
    /// `xenstore_domain_interface.connection` values.
    pub enum XenstoreConnection: u32, "XenStore connection state" {
        /// Connected (only the server sets this).
        Connected = 0 => "XENSTORE_CONNECTED",
        /// The guest asks for a reset of the connection.
        Reconnect = 1 => "XENSTORE_RECONNECT",
    }
}

abi_enum! {
    /// `xenstore_domain_interface.error` values (`XENSTORE_ERROR_*`).
    pub enum XenstoreRingError: u32, "XenStore ring error" {
        /// No error.
        None = 0 => "XENSTORE_ERROR_NONE",
        /// Communication problem.
        Comm = 1 => "XENSTORE_ERROR_COMM",
        /// Invalid ring indices.
        RingIdx = 2 => "XENSTORE_ERROR_RINGIDX",
        /// Protocol violation (e.g. payload too long).
        Proto = 3 => "XENSTORE_ERROR_PROTO",
    }
}

/// `struct xenstore_domain_interface` (2080 bytes at the start of the page).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenstoreDomainInterface {
    /// Requests: guest → server byte stream.
    pub req: [u8; XENSTORE_RING_SIZE],
    /// Replies and watch events: server → guest byte stream.
    pub rsp: [u8; XENSTORE_RING_SIZE],
    /// Request consumer index (server advances).
    pub req_cons: u32,
    /// Request producer index (guest advances).
    pub req_prod: u32,
    /// Reply consumer index (guest advances).
    pub rsp_cons: u32,
    /// Reply producer index (server advances).
    pub rsp_prod: u32,
    /// Raw [`XenstoreServerFeatures`].
    pub server_features: u32,
    /// Raw [`XenstoreConnection`].
    pub connection: u32,
    /// Raw [`XenstoreRingError`].
    pub error: u32,
    /// Event channel filled in by Xen for dom0less domains (0 = the introduced one).
    pub evtchn_port: u32,
}
abi_layout!(XenstoreDomainInterface, 2080, {
    req => 0, rsp => 1024, req_cons => 2048, req_prod => 2052, rsp_cons => 2056,
    rsp_prod => 2060, server_features => 2064, connection => 2068, error => 2072,
    evtchn_port => 2076,
});

impl Default for XenstoreDomainInterface {
    fn default() -> Self {
        XenstoreDomainInterface {
            req: [0; XENSTORE_RING_SIZE],
            rsp: [0; XENSTORE_RING_SIZE],
            req_cons: 0,
            req_prod: 0,
            rsp_cons: 0,
            rsp_prod: 0,
            server_features: 0,
            connection: 0,
            error: 0,
            evtchn_port: 0,
        }
    }
}

impl XenstoreDomainInterface {
    /// Offset of `req_cons`, for single-word atomic access in guest memory.
    pub const REQ_CONS_OFFSET: usize = 2048;
    /// Offset of `req_prod`.
    pub const REQ_PROD_OFFSET: usize = 2052;
    /// Offset of `rsp_cons`.
    pub const RSP_CONS_OFFSET: usize = 2056;
    /// Offset of `rsp_prod`.
    pub const RSP_PROD_OFFSET: usize = 2060;
    /// Offset of `server_features`.
    pub const SERVER_FEATURES_OFFSET: usize = 2064;
    /// Offset of `connection`.
    pub const CONNECTION_OFFSET: usize = 2068;
    /// Offset of `error`.
    pub const ERROR_OFFSET: usize = 2072;
    /// Offset of `evtchn_port`.
    pub const EVTCHN_PORT_OFFSET: usize = 2076;

    /// Returns the typed server features (unknown bits are dropped).
    pub const fn features(&self) -> XenstoreServerFeatures {
        XenstoreServerFeatures::from_bits_truncate(self.server_features)
    }

    /// Decodes `connection`.
    pub fn connection_state(&self) -> crate::Result<XenstoreConnection> {
        XenstoreConnection::try_from(self.connection)
    }

    /// Decodes `error`.
    pub fn ring_error(&self) -> crate::Result<XenstoreRingError> {
        XenstoreRingError::try_from(self.error)
    }
}

abi_enum! {
    /// XenStore message types (`enum xsd_sockmsg_type`).
    pub enum XsdSockmsgType: u32, "XenStore message type" {
        /// Implementation-defined control command (alias `XS_DEBUG`).
        Control = 0 => "XS_CONTROL",
        /// List a node's children.
        Directory = 1 => "XS_DIRECTORY",
        /// Read a node's value.
        Read = 2 => "XS_READ",
        /// Read a node's permissions.
        GetPerms = 3 => "XS_GET_PERMS",
        /// Register a watch.
        Watch = 4 => "XS_WATCH",
        /// Remove a watch.
        Unwatch = 5 => "XS_UNWATCH",
        /// Start a transaction.
        TransactionStart = 6 => "XS_TRANSACTION_START",
        /// Commit or abort a transaction.
        TransactionEnd = 7 => "XS_TRANSACTION_END",
        /// Introduce a domain (dom0 only).
        Introduce = 8 => "XS_INTRODUCE",
        /// Release a domain (dom0 only).
        Release = 9 => "XS_RELEASE",
        /// Get a domain's home path.
        GetDomainPath = 10 => "XS_GET_DOMAIN_PATH",
        /// Write a node's value.
        Write = 11 => "XS_WRITE",
        /// Create a node.
        Mkdir = 12 => "XS_MKDIR",
        /// Remove a node recursively.
        Rm = 13 => "XS_RM",
        /// Set a node's permissions.
        SetPerms = 14 => "XS_SET_PERMS",
        /// A watch fired (server → client only).
        WatchEvent = 15 => "XS_WATCH_EVENT",
        /// Error reply carrying an errno name.
        Error = 16 => "XS_ERROR",
        /// Ask whether a domain is introduced.
        IsDomainIntroduced = 17 => "XS_IS_DOMAIN_INTRODUCED",
        /// Resume a domain (dom0 only).
        Resume = 18 => "XS_RESUME",
        /// Set a domain's target (dom0 only).
        SetTarget = 19 => "XS_SET_TARGET",
        /// Drop all of the caller's watches and transactions.
        ResetWatches = 21 => "XS_RESET_WATCHES",
        /// List children from a byte offset.
        DirectoryPart = 22 => "XS_DIRECTORY_PART",
        /// Read a feature value.
        GetFeature = 23 => "XS_GET_FEATURE",
        /// Set a feature value.
        SetFeature = 24 => "XS_SET_FEATURE",
        /// Read a quota.
        GetQuota = 25 => "XS_GET_QUOTA",
        /// Set a quota.
        SetQuota = 26 => "XS_SET_QUOTA",
        /// Guaranteed invalid type.
        Invalid = 0xffff => "XS_INVALID",
    }
}

impl XsdSockmsgType {
    /// Alias of [`XsdSockmsgType::Control`] (`XS_DEBUG`).
    pub const DEBUG: XsdSockmsgType = XsdSockmsgType::Control;
}

/// Number of message types including the removed `XS_RESTRICT` (20)
/// (`XS_TYPE_COUNT`).
pub const XS_TYPE_COUNT: u32 = 27;

/// `struct xsd_sockmsg` (16 bytes): the header of every XenStore message; the
/// `len` payload bytes follow it in the ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XsdSockmsg {
    /// Raw [`XsdSockmsgType`].
    pub type_: u32,
    /// Request id, echoed in the reply.
    pub req_id: u32,
    /// Transaction id (0 = none).
    pub tx_id: u32,
    /// Payload length in bytes (≤ [`XENSTORE_PAYLOAD_MAX`]).
    pub len: u32,
}
abi_layout!(XsdSockmsg, 16, { type_ => 0, req_id => 4, tx_id => 8, len => 12 });

impl XsdSockmsg {
    /// Decodes `type_`.
    pub fn msg_type(&self) -> crate::Result<XsdSockmsgType> {
        XsdSockmsgType::try_from(self.type_)
    }

    /// True if `len` does not exceed [`XENSTORE_PAYLOAD_MAX`].
    pub const fn payload_len_ok(&self) -> bool {
        self.len as usize <= XENSTORE_PAYLOAD_MAX
    }
}

/// The XenStore error names, in the order of `xs_wire.h`'s `xsd_errors`
/// table, with the errno each stands for.
pub const XSD_ERRORS: &[(&str, XenErrno)] = &[
    ("EINVAL", XenErrno::EINVAL),
    ("EACCES", XenErrno::EACCES),
    ("EEXIST", XenErrno::EEXIST),
    ("EISDIR", XenErrno::EISDIR),
    ("ENOENT", XenErrno::ENOENT),
    ("ENOMEM", XenErrno::ENOMEM),
    ("ENOSPC", XenErrno::ENOSPC),
    ("EIO", XenErrno::EIO),
    ("ENOTEMPTY", XenErrno::ENOTEMPTY),
    ("ENOSYS", XenErrno::ENOSYS),
    ("EROFS", XenErrno::EROFS),
    ("EBUSY", XenErrno::EBUSY),
    ("EAGAIN", XenErrno::EAGAIN),
    ("EISCONN", XenErrno::EISCONN),
    ("E2BIG", XenErrno::E2BIG),
    ("EPERM", XenErrno::EPERM),
];

/// Returns the wire name of `errno`, or `None` if XenStore cannot transmit it.
pub fn xsd_error_name(errno: XenErrno) -> Option<&'static str> {
    XSD_ERRORS
        .iter()
        .find(|(_, e)| *e == errno)
        .map(|(name, _)| *name)
}

/// Returns the errno a wire error name stands for, or `None` for names not in
/// [`XSD_ERRORS`] (such as oxenstored's `"EQUOTA"`).
pub fn xsd_error_from_name(name: &str) -> Option<XenErrno> {
    XSD_ERRORS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, errno)| *errno)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AbiError;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    #[test]
    fn test_xsd_sockmsg_type_all_values_round_trip() {
        for &t in XsdSockmsgType::ALL {
            assert_eq!(XsdSockmsgType::try_from(t.raw()).unwrap(), t);
            assert!(t.raw() < XS_TYPE_COUNT || t == XsdSockmsgType::Invalid);
        }
        assert_eq!(XsdSockmsgType::ALL.len(), 27);
        assert_eq!(XsdSockmsgType::DEBUG.name(), "XS_CONTROL");
    }

    #[test]
    fn test_xsd_sockmsg_type_restrict_rejected() {
        assert_eq!(
            XsdSockmsgType::try_from(20),
            Err(AbiError::UnknownValue {
                what: "XenStore message type",
                value: 20
            })
        );
        assert!(XsdSockmsgType::try_from(27).is_err());
    }

    #[test]
    fn test_connection_and_error_enums_round_trip() {
        for &c in XenstoreConnection::ALL {
            assert_eq!(XenstoreConnection::try_from(c.raw()).unwrap(), c);
        }
        for &e in XenstoreRingError::ALL {
            assert_eq!(XenstoreRingError::try_from(e.raw()).unwrap(), e);
        }
        assert!(XenstoreConnection::try_from(2).is_err());
        assert!(XenstoreRingError::try_from(4).is_err());
    }

    #[test]
    fn test_xsd_errors_table_order_matches_header() {
        let names: Vec<&str> = XSD_ERRORS.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "EINVAL",
                "EACCES",
                "EEXIST",
                "EISDIR",
                "ENOENT",
                "ENOMEM",
                "ENOSPC",
                "EIO",
                "ENOTEMPTY",
                "ENOSYS",
                "EROFS",
                "EBUSY",
                "EAGAIN",
                "EISCONN",
                "E2BIG",
                "EPERM",
            ]
        );
        for (name, errno) in XSD_ERRORS {
            assert_eq!(errno.name(), *name);
        }
    }

    #[test]
    fn test_xsd_error_lookup_both_directions() {
        assert_eq!(xsd_error_name(XenErrno::ENOENT), Some("ENOENT"));
        assert_eq!(xsd_error_name(XenErrno::EFAULT), None);
        assert_eq!(xsd_error_from_name("EAGAIN"), Some(XenErrno::EAGAIN));
        assert_eq!(xsd_error_from_name("EQUOTA"), None);
    }

    #[test]
    fn test_mask_xenstore_idx_wraps_at_ring_size() {
        assert_eq!(mask_xenstore_idx(1023), 1023);
        assert_eq!(mask_xenstore_idx(1024), 0);
        assert_eq!(mask_xenstore_idx(u32::MAX), 1023);
    }

    #[test]
    fn test_xenstore_interface_write_bytes_land_at_offsets() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x2000)]).unwrap();
        let mut intf = XenstoreDomainInterface::default();
        intf.req[0] = b'a';
        intf.rsp[1023] = b'z';
        intf.req_prod = 16;
        intf.rsp_prod = 7;
        intf.server_features = 3;
        intf.connection = 1;
        intf.error = 2;
        intf.evtchn_port = 5;
        mem.write_obj(intf, GuestAddress(0x1000)).unwrap();
        let rd = |off: usize| -> u32 { mem.read_obj(GuestAddress(0x1000 + off as u64)).unwrap() };
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x1000)).unwrap(), b'a');
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(0x1000 + 2047)).unwrap(),
            b'z'
        );
        assert_eq!(rd(XenstoreDomainInterface::REQ_PROD_OFFSET), 16);
        assert_eq!(rd(XenstoreDomainInterface::RSP_PROD_OFFSET), 7);
        assert_eq!(rd(XenstoreDomainInterface::SERVER_FEATURES_OFFSET), 3);
        assert_eq!(rd(XenstoreDomainInterface::CONNECTION_OFFSET), 1);
        assert_eq!(rd(XenstoreDomainInterface::ERROR_OFFSET), 2);
        assert_eq!(rd(XenstoreDomainInterface::EVTCHN_PORT_OFFSET), 5);
        assert_eq!(
            intf.features(),
            XenstoreServerFeatures::RECONNECTION | XenstoreServerFeatures::ERROR
        );
        assert_eq!(
            intf.connection_state().unwrap(),
            XenstoreConnection::Reconnect
        );
        assert_eq!(intf.ring_error().unwrap(), XenstoreRingError::RingIdx);
    }

    #[test]
    fn test_xsd_sockmsg_header_decoded() {
        let m = XsdSockmsg {
            type_: 2,
            req_id: 9,
            tx_id: 0,
            len: 4096,
        };
        assert_eq!(m.msg_type().unwrap(), XsdSockmsgType::Read);
        assert!(m.payload_len_ok());
        let big = XsdSockmsg { len: 4097, ..m };
        assert!(!big.payload_len_ok());
    }
}
