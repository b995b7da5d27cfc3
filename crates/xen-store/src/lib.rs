// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A XenStore server for a KVM-based VMM hosting Xen HVM guests.
//!
//! [`Store`] is the database the C xenstored (`tools/xenstored/`) keeps,
//! with its semantics: the tree and its permissions (first matching
//! entry wins, unprivileged creators own what they create), every message
//! a domU may send (`docs/misc/xenstore.txt`, `xen-abi.md` §5.3) answered
//! with Xen's error names, transactions that conflict only when a node
//! they read changed (generation counts, `transaction.c`), watches with
//! permission filtering and Xen's recursive-delete rules, the special
//! `@introduceDomain`/`@releaseDomain` watches, and C xenstored's default
//! quotas ([`Quota`]).
//!
//! Three things connect to it:
//!
//! * a guest, through its ring page (`xenstore_domain_interface`,
//!   `docs/misc/xenstore-ring.txt`): [`Store::connect_guest`] returns a
//!   [`GuestConnection`] the domain kicks when the guest signals the store
//!   event channel; replies and watch events go back into the ring and the
//!   `notify` callback signals the guest;
//! * back ends in the VMM, as privileged domain 0: [`Store::client`] gives
//!   a [`Client`] to read, write, watch (callbacks run outside the store
//!   lock) and run transactions;
//! * the toolstack role: [`Store::introduce_domain`] writes the tree libxl
//!   writes for a new domain and fires `@introduceDomain`;
//!   [`Store::release_domain`] undoes it.
//!
//! The store does no I/O of its own and touches guest memory only through
//! vm-memory. Its whole state, including the guest ring's half-read
//! requests and undelivered replies, is a plain [`State`] with a versioned
//! byte format ([`State::to_bytes`]).
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use vm_memory::{GuestAddress, GuestMemoryMmap};
//! use xen_store::{Config, DomainInfo, Perm, Store};
//!
//! let store = Store::new(Config::default()).unwrap();
//! store.introduce_domain(&DomainInfo::new(1, "guest")).unwrap();
//!
//! // The guest's ring page, signalled through `notify`.
//! let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap());
//! let kicks = Arc::new(AtomicUsize::new(0));
//! let k = kicks.clone();
//! let conn = store
//!     .connect_guest(1, mem, 0x1000, Arc::new(move || { k.fetch_add(1, Ordering::Relaxed); }))
//!     .unwrap();
//! conn.kick(); // on the guest's event-channel send
//!
//! // A back end publishes a device and watches the front end's state.
//! let client = store.client();
//! client.write("/local/domain/0/backend/vbd/1/51712/state", "1").unwrap();
//! client
//!     .set_perms("/local/domain/0/backend/vbd/1/51712", &[Perm::none(0), Perm::read(1)])
//!     .unwrap();
//! let watch = client
//!     .watch("/local/domain/1/device/vbd/51712/state", |path| println!("{path} changed"))
//!     .unwrap();
//! assert_eq!(client.read_string("/local/domain/1/name").unwrap(), "guest");
//! drop(watch);
//! ```

#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("xen-store supports x86-64 hosts and guests only");

mod client;
mod domain;
mod handlers;
mod op;
pub mod path;
mod perms;
mod ring;
pub mod state;
mod store;
mod wire;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod ring_tests;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use client::{Client, TRANSACT_ATTEMPTS, Transaction, WatchHandle, XsResult};
pub use domain::{DomainInfo, MAX_VCPUS};
pub use perms::{Access, Perm};
pub use ring::GuestConnection;
pub use state::State;
pub use store::Store;
pub use wire::HEADER_LEN;

use xen_abi::io::xs_wire::{XENSTORE_REL_PATH_MAX, XenstoreServerFeatures};
use xen_abi::xen::DomId;

/// Per-domain limits for unprivileged (guest) connections; domain 0 is
/// never limited. The defaults are C xenstored's (`domain.c`
/// `hard_quotas`, `xen-abi.md` §5.5), plus a bound on undelivered watch
/// events (oxenstored's `quota-maxwatchevents`), which C xenstored
/// bounds by time and memory instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Quota {
    /// Nodes a domain may own (`nodes`, 1000): creating more is `ENOSPC`.
    pub nodes: u32,
    /// Size of one node (`node-size`, 2048): a 16-byte header, 8 bytes per
    /// permission, the value and the child names with their NULs. Larger
    /// is `ENOSPC`.
    pub node_size: u32,
    /// Watches per domain (`watches`, 128): `ENOSPC`.
    pub watches: u32,
    /// Open transactions per domain (`transactions`, 10): `ENOSPC`.
    pub transactions: u32,
    /// Nodes one transaction may touch (`transaction-nodes`, 1024):
    /// `ENOSPC`, and the transaction fails.
    pub transaction_nodes: u32,
    /// Permission entries per node (`node-permissions`, 5): `ENOSPC`.
    pub node_permissions: u32,
    /// Path length below the domain's home, or of a path elsewhere
    /// (`path-max`, 2048, at most `XENSTORE_REL_PATH_MAX`): `EINVAL`.
    pub path_max: u32,
    /// Replies waiting for ring space (`outstanding`, 20); at the limit the
    /// store stops reading requests until the guest consumes replies.
    pub outstanding: u32,
    /// Watch events waiting for ring space (1024); beyond it new events
    /// are dropped with a rate-limited warning.
    pub pending_events: u32,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            nodes: 1000,
            node_size: 2048,
            watches: 128,
            transactions: 10,
            transaction_nodes: 1024,
            node_permissions: 5,
            path_max: XENSTORE_REL_PATH_MAX as u32,
            outstanding: 20,
            pending_events: 1024,
        }
    }
}

/// Largest accepted [`Quota::pending_events`] (bounds a guest's queue).
pub const MAX_PENDING_EVENTS: u32 = 1 << 16;
/// Largest accepted [`Quota::outstanding`].
pub const MAX_OUTSTANDING: u32 = 1024;

/// Configuration of a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Config {
    /// Limits of guest connections.
    pub quota: Quota,
    /// Features advertised in the ring's `server_features` and answered to
    /// `XS_GET_FEATURE`. The default is reconnection, the error field and
    /// watch depth. Only those three are supported; other bits are
    /// refused by [`Config::validate`].
    pub features: XenstoreServerFeatures,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            quota: Quota::default(),
            features: Self::SUPPORTED_FEATURES,
        }
    }
}

impl Config {
    /// The features this store implements.
    pub const SUPPORTED_FEATURES: XenstoreServerFeatures = XenstoreServerFeatures::RECONNECTION
        .union(XenstoreServerFeatures::ERROR)
        .union(XenstoreServerFeatures::WATCHDEPTH);

    /// Checks the limits and features.
    pub fn validate(&self) -> Result<()> {
        let q = &self.quota;
        if q.path_max as usize > XENSTORE_REL_PATH_MAX || q.path_max == 0 {
            return Err(Error::InvalidConfig("path_max must be 1..=2048"));
        }
        if q.outstanding == 0 || q.outstanding > MAX_OUTSTANDING {
            return Err(Error::InvalidConfig("outstanding must be 1..=1024"));
        }
        if q.pending_events == 0 || q.pending_events > MAX_PENDING_EVENTS {
            return Err(Error::InvalidConfig("pending_events must be 1..=65536"));
        }
        if !Self::SUPPORTED_FEATURES.contains(self.features) {
            return Err(Error::InvalidConfig("unsupported server feature"));
        }
        Ok(())
    }
}

/// Host-side errors: configuration, domains, guest connections, state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A configuration value is out of range.
    #[error("Invalid XenStore configuration: {0}.")]
    InvalidConfig(&'static str),
    /// The domain id cannot be a guest's.
    #[error("Domain id {0} cannot be a guest.")]
    InvalidDomid(DomId),
    /// The domain was already introduced.
    #[error("Domain {0} is already introduced.")]
    DomainExists(DomId),
    /// The domain is not introduced.
    #[error("Domain {0} is not introduced.")]
    UnknownDomain(DomId),
    /// The domain's ring is already connected.
    #[error("Domain {0} already has a connected ring.")]
    AlreadyConnected(DomId),
    /// The domain has no ring state to resume.
    #[error("Domain {0} has no ring to resume.")]
    NotConnected(DomId),
    /// The ring page is not page-aligned guest RAM.
    #[error("The XenStore ring at {0:#x} is not a page of guest RAM.")]
    InvalidRing(u64),
    /// Writing the domain's tree failed.
    #[error("Cannot write the tree of domain {0}: {1}.")]
    Tree(DomId, xen_abi::errno::XenErrno),
    /// A saved state is malformed or inconsistent.
    #[error("Invalid XenStore state: {0}.")]
    InvalidState(String),
}

/// Results of this crate's host-side calls.
pub type Result<T> = std::result::Result<T, Error>;
