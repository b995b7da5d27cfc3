// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The wire protocol of a guest connection: one request in, one reply
//! out, as C xenstored's `process_message` and handlers answer an
//! unprivileged domain (`core.c`, `domain.c`, `watch.c`,
//! `transaction.c`).
//!
//! Unknown types (and the server-only `WATCH_EVENT`/`ERROR`, the removed
//! `RESTRICT`) are `ENOSYS`; the privileged types (`CONTROL`, `INTRODUCE`,
//! `RELEASE`, `IS_DOMAIN_INTRODUCED`, `RESUME`, `SET_TARGET`,
//! `SET_FEATURE`, `GET_QUOTA`, `SET_QUOTA`) are `EACCES`; an unknown
//! transaction id is `ENOENT` (except for `WATCH`/`UNWATCH`, which ignore
//! it). Replies echo the request's req_id and tx_id.

use xen_abi::errno::XenErrno;
use xen_abi::io::xs_wire::{XenstoreServerFeatures, XsdSockmsgType as T};

use crate::perms::{Perm, atoi};
use crate::store::{ConnId, Effects, Inner};
use crate::wire::{Header, count_strings, error_reply, onearg, reply, strings};

/// A handler's answer: the reply payload, and for `XS_WATCH` the initial
/// event (path, token) to send after the reply.
type Answer = (Vec<u8>, Option<(String, Vec<u8>)>);

const OK: &[u8] = b"OK\0";

/// True for types a domU may not send.
fn privileged_only(t: T) -> bool {
    matches!(
        t,
        T::Control
            | T::Introduce
            | T::Release
            | T::IsDomainIntroduced
            | T::Resume
            | T::SetTarget
            | T::SetFeature
            | T::GetQuota
            | T::SetQuota
    )
}

/// A string argument, or `EINVAL`.
fn arg(v: Option<&[u8]>) -> Result<&[u8], XenErrno> {
    v.ok_or(XenErrno::EINVAL)
}

/// A decimal number followed by a NUL.
fn decimal(n: impl std::fmt::Display) -> Vec<u8> {
    let mut v = n.to_string().into_bytes();
    v.push(0);
    v
}

impl Inner {
    /// Answers one request of connection `cid`. Returns the whole reply
    /// message and the initial watch event to queue after it.
    pub(crate) fn handle(
        &mut self,
        cid: ConnId,
        hdr: &Header,
        payload: &[u8],
        fx: &mut Effects,
    ) -> (Vec<u8>, Option<(String, Vec<u8>)>) {
        match self.dispatch(cid, hdr, payload, fx) {
            Ok((p, after)) => (reply(hdr, &p), after),
            Err(e) => {
                if matches!(e, XenErrno::ENOSYS | XenErrno::EINVAL) {
                    let domid = self.conns.get(&cid).map_or(0, |c| c.caller.domid);
                    xen_abi::warn_limited!(
                        "xenstore: domain {domid}: request type {} answered {e}",
                        hdr.type_
                    );
                }
                (error_reply(hdr, e), None)
            }
        }
    }

    fn dispatch(
        &mut self,
        cid: ConnId,
        hdr: &Header,
        payload: &[u8],
        fx: &mut Effects,
    ) -> Result<Answer, XenErrno> {
        let t = T::try_from(hdr.type_).map_err(|_| XenErrno::ENOSYS)?;
        if matches!(t, T::WatchEvent | T::Error | T::Invalid) {
            return Err(XenErrno::ENOSYS);
        }
        let conn = self.conns.get(&cid).ok_or(XenErrno::EIO)?;
        if privileged_only(t) && !conn.caller.privileged {
            let domid = conn.caller.domid;
            xen_abi::warn_limited!("xenstore: domain {domid} sent privileged request {t}");
            return Err(XenErrno::EACCES);
        }
        let tx = match t {
            T::Watch | T::Unwatch => None,
            _ if hdr.tx_id == 0 => None,
            _ if conn.txs.contains_key(&hdr.tx_id) => Some(hdr.tx_id),
            _ => return Err(XenErrno::ENOENT),
        };
        let p = payload;
        let plain = |v: Vec<u8>| Ok((v, None));
        match t {
            T::Read => {
                let name = self.canon(cid, arg(onearg(p))?, false)?;
                plain(self.with_op(cid, tx, fx, |op| op.read(&name))?)
            }
            T::Directory => {
                let name = self.canon(cid, arg(onearg(p))?, false)?;
                plain(
                    self.with_op(cid, tx, fx, |op| op.get(&name))?
                        .children_bytes(),
                )
            }
            T::DirectoryPart => self.directory_part(cid, tx, p, fx).map(|v| (v, None)),
            T::GetPerms => {
                let name = self.canon(cid, arg(onearg(p))?, true)?;
                let perms = self.with_op(cid, tx, fx, |op| op.get_perms(&name))?;
                let mut v = Vec::new();
                for perm in perms {
                    v.extend_from_slice(perm.to_string().as_bytes());
                    v.push(0);
                }
                plain(v)
            }
            T::Write => {
                let first = arg(strings(p).first().copied())?;
                let data = &p[first.len() + 1..];
                let name = self.canon(cid, first, false)?;
                self.with_op(cid, tx, fx, |op| op.write(&name, data))?;
                plain(OK.to_vec())
            }
            T::Mkdir => {
                let name = self.canon(cid, arg(onearg(p))?, false)?;
                self.with_op(cid, tx, fx, |op| op.mkdir(&name))?;
                plain(OK.to_vec())
            }
            T::Rm => {
                let name = self.canon(cid, arg(onearg(p))?, false)?;
                self.with_op(cid, tx, fx, |op| op.rm(&name))?;
                plain(OK.to_vec())
            }
            T::SetPerms => {
                let privileged = self.conns.get(&cid).is_some_and(|c| c.caller.privileged);
                let num = count_strings(p);
                if num < 2 {
                    return Err(XenErrno::EINVAL);
                }
                let num = num - 1;
                if !privileged && num > self.config.quota.node_permissions as usize {
                    return Err(XenErrno::ENOSPC);
                }
                let parts = strings(p);
                let perms = parts[1..=num]
                    .iter()
                    .map(|s| Perm::parse(s))
                    .collect::<Result<Vec<_>, _>>()?;
                let perms = self.resolve_perms(perms)?;
                let name = self.canon(cid, parts[0], true)?;
                self.with_op(cid, tx, fx, |op| op.set_perms(&name, perms))?;
                plain(OK.to_vec())
            }
            T::Watch => {
                let parts = strings(p);
                let depth = match parts.len() {
                    3 if self
                        .config
                        .features
                        .contains(XenstoreServerFeatures::WATCHDEPTH) =>
                    {
                        Some(u32::try_from(atoi(parts[2])).map_err(|_| XenErrno::EINVAL)?)
                    }
                    2 => None,
                    _ => return Err(XenErrno::EINVAL),
                };
                let (_, initial) = self.add_watch(cid, parts[0], parts[1], depth, None)?;
                Ok((OK.to_vec(), Some((initial, parts[1].to_vec()))))
            }
            T::Unwatch => {
                let parts = strings(p);
                if parts.len() != 2 {
                    return Err(XenErrno::EINVAL);
                }
                let node = self.canon(cid, parts[0], true)?;
                let conn = self.conns.get_mut(&cid).ok_or(XenErrno::EIO)?;
                let i = conn
                    .watches
                    .iter()
                    .position(|w| w.node == node && w.token == parts[1])
                    .ok_or(XenErrno::ENOENT)?;
                conn.watches.remove(i);
                plain(OK.to_vec())
            }
            T::TransactionStart => {
                if tx.is_some() {
                    return Err(XenErrno::EBUSY);
                }
                plain(decimal(self.tx_start(cid)?))
            }
            T::TransactionEnd => {
                let commit = match onearg(p) {
                    Some(b"T") => true,
                    Some(b"F") => false,
                    _ => return Err(XenErrno::EINVAL),
                };
                let id = tx.ok_or(XenErrno::ENOENT)?;
                self.tx_end(cid, id, commit, fx)?;
                plain(OK.to_vec())
            }
            T::GetDomainPath => {
                let domid = atoi(arg(onearg(p))?);
                let mut v = crate::path::domain_path(domid as u32).into_bytes();
                v.push(0);
                plain(v)
            }
            T::ResetWatches => {
                self.reset_conn(cid);
                plain(OK.to_vec())
            }
            T::GetFeature => {
                if !strings(p).is_empty() {
                    // Another domain's features: dom0 only.
                    return Err(XenErrno::EACCES);
                }
                plain(decimal(self.config.features.bits()))
            }
            // Privileged types were refused above; the rest have no handler.
            _ => Err(XenErrno::ENOSYS),
        }
    }

    /// `XS_DIRECTORY_PART` (C `send_directory_part`): the node's generation,
    /// then child names from byte `offset` of the list, as many as fit;
    /// an extra NUL marks the end of the list.
    fn directory_part(
        &mut self,
        cid: ConnId,
        tx: Option<u32>,
        p: &[u8],
        fx: &mut Effects,
    ) -> Result<Vec<u8>, XenErrno> {
        if count_strings(p) != 2 {
            return Err(XenErrno::EINVAL);
        }
        let parts = strings(p);
        let name = self.canon(cid, parts[0], false)?;
        let node = self.with_op(cid, tx, fx, |op| op.get(&name))?;
        let off = atoi(parts[1]) as u32 as usize;
        let children = node.children_bytes();
        let mut out = decimal(node.generation);
        let genlen = out.len();
        if off >= children.len() {
            out.push(0);
            return Ok(out);
        }
        let maxlen = xen_abi::io::xs_wire::XENSTORE_PAYLOAD_MAX - genlen - 1;
        let strlen = |at: usize| children[at..].iter().position(|&c| c == 0).unwrap_or(0);
        let mut len = 0;
        while len + strlen(off + len) < maxlen {
            len += strlen(off + len) + 1;
            if off + len == children.len() {
                break;
            }
        }
        out.extend_from_slice(&children[off..off + len]);
        if off + len == children.len() {
            out.push(0);
        }
        Ok(out)
    }
}
