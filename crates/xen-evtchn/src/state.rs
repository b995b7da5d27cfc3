// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Snapshot state of [`EventChannels`](crate::EventChannels).
//!
//! The state holds the port table, the back-end ends and the FIFO queue
//! tails; pending, mask, selector and event-word bits live in guest memory
//! and migrate with it. Back-end callbacks are not part of the state: after
//! [`EventChannels::from_state`](crate::EventChannels::from_state) each
//! device reclaims its end with
//! [`EventChannels::backend_attach`](crate::EventChannels::backend_attach).

use xen_abi::event_channel::EVTCHN_FIFO_MAX_QUEUES;
use xen_abi::xen::DomId;

use crate::Config;

/// What a guest port is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Binding {
    /// Allocated, waiting for `remote_dom` to connect.
    Unbound {
        /// Domain allowed to connect: the guest's own id (loopback),
        /// [`DOMID_BACKEND`](crate::DOMID_BACKEND), or any id the guest named.
        remote_dom: DomId,
    },
    /// Connected to another port of the same guest.
    Loopback {
        /// The other guest port.
        peer: u32,
    },
    /// Connected to a VMM-side back end.
    Backend {
        /// The back end's port number.
        backend_port: u32,
    },
    /// Bound to a VIRQ (raw number, below `NR_VIRQS`).
    Virq(u32),
    /// Bound to a PIRQ.
    Pirq(u32),
    /// An IPI port.
    Ipi,
}

/// One allocated guest port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PortState {
    /// Port number.
    pub port: u32,
    /// Binding.
    pub binding: Binding,
    /// Notify vCPU.
    pub vcpu: u32,
    /// FIFO priority (0..=15).
    pub priority: u8,
    /// FIFO: pending while the port's event-array page is missing.
    pub fifo_pending: bool,
}

/// One VMM-side back-end end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BackendState {
    /// Back-end port number.
    pub port: u32,
    /// The connected guest port, or `None` while unbound.
    pub guest_port: Option<u32>,
    /// Guest sends that arrived while no callback was attached.
    pub pending: bool,
}

/// FIFO state of a domain that switched to the FIFO ABI.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FifoState {
    /// Guest-physical address of each vCPU's control block.
    pub control: Vec<Option<u64>>,
    /// Tail port of each vCPU's 16 queues (0 = empty).
    pub tails: Vec<[u32; EVTCHN_FIFO_MAX_QUEUES]>,
    /// Guest-physical address of each event-array page, in order.
    pub array_pages: Vec<u64>,
}

/// Complete snapshot state of a domain's event channels.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct State {
    /// Configuration.
    pub config: Config,
    /// Allocated guest ports, in port order.
    pub ports: Vec<PortState>,
    /// Back-end ends, in port order.
    pub backends: Vec<BackendState>,
    /// FIFO state, or `None` for the 2-level ABI.
    pub fifo: Option<FifoState>,
}
