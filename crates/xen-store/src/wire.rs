// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Message framing and payload parsing (`xs_wire.h`, `xen-abi.md` §5.3),
//! with the argument rules of C xenstored (`onearg`, `get_strings`,
//! `xenstore_count_strings`).

use xen_abi::errno::XenErrno;
use xen_abi::io::xs_wire::{XENSTORE_PAYLOAD_MAX, XsdSockmsgType, xsd_error_name};

/// Size of a message header (`struct xsd_sockmsg`).
pub const HEADER_LEN: usize = 16;

/// A decoded message header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) type_: u32,
    pub(crate) req_id: u32,
    pub(crate) tx_id: u32,
    pub(crate) len: u32,
}

impl Header {
    /// Decodes the 16 little-endian header bytes.
    pub(crate) fn decode(b: &[u8]) -> Header {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            type_: w(0),
            req_id: w(4),
            tx_id: w(8),
            len: w(12),
        }
    }
}

/// Builds a whole message: header then payload.
pub(crate) fn message(type_: u32, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
    for w in [type_, req_id, tx_id, payload.len() as u32] {
        v.extend_from_slice(&w.to_le_bytes());
    }
    v.extend_from_slice(payload);
    v
}

/// A reply to request `req`: its type, req_id and tx_id; a payload over
/// `XENSTORE_PAYLOAD_MAX` becomes an `E2BIG` error (C `send_reply`).
pub(crate) fn reply(req: &Header, payload: &[u8]) -> Vec<u8> {
    if payload.len() > XENSTORE_PAYLOAD_MAX {
        return error_reply(req, XenErrno::E2BIG);
    }
    message(req.type_, req.req_id, req.tx_id, payload)
}

/// An `XS_ERROR` reply naming `err` (`EINVAL` for errnos XenStore cannot
/// transmit, as C `send_error`).
pub(crate) fn error_reply(req: &Header, err: XenErrno) -> Vec<u8> {
    let name = xsd_error_name(err).unwrap_or("EINVAL");
    let mut payload = Vec::with_capacity(name.len() + 1);
    payload.extend_from_slice(name.as_bytes());
    payload.push(0);
    message(XsdSockmsgType::Error.raw(), req.req_id, req.tx_id, &payload)
}

/// An `XS_WATCH_EVENT`, or `None` if it would exceed the payload limit (C
/// drops those).
pub(crate) fn watch_event(path: &str, token: &[u8]) -> Option<Vec<u8>> {
    let len = path.len() + 1 + token.len() + 1;
    if len > XENSTORE_PAYLOAD_MAX {
        return None;
    }
    let mut payload = Vec::with_capacity(len);
    payload.extend_from_slice(path.as_bytes());
    payload.push(0);
    payload.extend_from_slice(token);
    payload.push(0);
    Some(message(XsdSockmsgType::WatchEvent.raw(), 0, 0, &payload))
}

/// The single argument of a payload holding exactly one NUL, at its end
/// (C `onearg`).
pub(crate) fn onearg(payload: &[u8]) -> Option<&[u8]> {
    match payload.iter().position(|&c| c == 0) {
        Some(i) if i + 1 == payload.len() => Some(&payload[..i]),
        _ => None,
    }
}

/// The NUL-terminated strings of a payload; bytes after the last NUL are
/// ignored (C `get_strings`).
pub(crate) fn strings(payload: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = payload.split(|&c| c == 0).collect();
    // The piece after the last NUL is unterminated.
    v.pop();
    v
}

/// Number of NULs in a payload (C `xenstore_count_strings`).
pub(crate) fn count_strings(payload: &[u8]) -> usize {
    payload.iter().filter(|&&c| c == 0).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_onearg_requires_single_trailing_nul() {
        assert_eq!(onearg(b"abc\0"), Some(&b"abc"[..]));
        assert_eq!(onearg(b"\0"), Some(&b""[..]));
        assert_eq!(onearg(b"abc"), None);
        assert_eq!(onearg(b"a\0b\0"), None);
        assert_eq!(onearg(b""), None);
    }

    #[test]
    fn test_strings_ignore_unterminated_tail() {
        assert_eq!(strings(b"a\0b\0c"), vec![&b"a"[..], b"b"]);
        assert!(strings(b"abc").is_empty());
        assert_eq!(strings(b"\0\0"), vec![&b""[..], b""]);
        assert_eq!(count_strings(b"a\0b\0c"), 2);
    }

    #[test]
    fn test_reply_too_long_becomes_e2big() {
        let req = Header {
            type_: 1,
            req_id: 7,
            tx_id: 3,
            len: 0,
        };
        let r = reply(&req, &vec![b'a'; XENSTORE_PAYLOAD_MAX + 1]);
        assert_eq!(Header::decode(&r).type_, 16);
        assert_eq!(&r[HEADER_LEN..], b"E2BIG\0");
        assert_eq!(Header::decode(&r).req_id, 7);
        assert_eq!(Header::decode(&r).tx_id, 3);
    }

    #[test]
    fn test_watch_event_layout_and_limit() {
        let e = watch_event("/a", b"tok").unwrap();
        let h = Header::decode(&e);
        assert_eq!((h.type_, h.req_id, h.tx_id, h.len), (15, 0, 0, 7));
        assert_eq!(&e[HEADER_LEN..], b"/a\0tok\0");
        assert!(watch_event(&"a".repeat(4095), b"").is_none());
    }
}
