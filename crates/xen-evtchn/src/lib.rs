// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Xen event channels for a KVM-based VMM.
//!
//! [`EventChannels`] is one domain's port table together with delivery on
//! guest memory: the 2-level ABI (`shared_info.evtchn_pending`/`evtchn_mask`,
//! `vcpu_info.evtchn_pending_sel`/`evtchn_upcall_pending`, `xen-abi.md` §4.1)
//! and the FIFO ABI (control blocks and event arrays, §4.2). Every operation of
//! `event_channel_op` (§3.8) is a method returning exactly the errno Xen
//! returns, so a hypercall layer only decodes arguments and encodes results.
//!
//! The VMM supplies three small things:
//!
//! * [`GuestLayout`]: where shared_info and each vCPU's vcpu_info live, and
//!   which layout (64- or 32-bit) is latched;
//! * [`Upcall`]: how to inject the event upcall into a vCPU (called only when
//!   its `evtchn_upcall_pending` goes from 0 to 1);
//! * [`BackendNotify`]: for each VMM-side back end (the "dom0" end of a PV
//!   device's channel), a callback run when the guest sends on its port.
//!
//! Nothing here touches `/dev/kvm`. Guest memory is reached only through
//! vm-memory, with atomic operations on the words the guest shares.
//!
//! ```
//! use std::sync::Arc;
//! use vm_memory::{GuestAddress, GuestMemoryMmap};
//! use xen_evtchn::{Config, EventChannels, GuestLayout, NoUpcall};
//!
//! struct Layout;
//! impl GuestLayout for Layout {
//!     fn shared_info_gpa(&self) -> Option<u64> { Some(0x1000) }
//!     fn long_mode(&self) -> bool { true }
//!     fn vcpu_info_gpa(&self, vcpu: u32) -> Option<u64> {
//!         (vcpu < 32).then(|| 0x1000 + 64 * u64::from(vcpu))
//!     }
//!     fn vcpus(&self) -> u32 { 2 }
//! }
//!
//! let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
//! let evtchn = EventChannels::new(Config::new(1), Arc::new(Layout), Arc::new(NoUpcall)).unwrap();
//! let port = evtchn.bind_ipi(&mem, 1).unwrap();
//! evtchn.send(&mem, port).unwrap();
//! assert!(evtchn.pending(&mem, port));
//! ```

#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("xen-evtchn supports x86-64 hosts and guests only");

pub mod backend;
pub mod channels;
mod fifo;
#[cfg(test)]
mod fifo_model_tests;
mod guest;
#[cfg(test)]
mod model_tests;
pub mod state;
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
mod twolevel;

pub use backend::{BackendNotify, BackendPort};
pub use channels::{EventChannels, PortInfo, Status};
pub use state::{BackendState, Binding, FifoState, PortState, State};

use xen_abi::event_channel::EVTCHN_FIFO_NR_CHANNELS;
use xen_abi::xen::{DomId, domid_is_regular};

/// The domain id under which VMM-side back ends appear to the guest.
///
/// Linux front ends allocate their ports with `remote_dom` = the back-end
/// domain from XenStore, which is 0 for devices a VMM emulates (QEMU's
/// `DOMID_QEMU`). The guest itself can therefore not be domain 0.
pub const DOMID_BACKEND: DomId = 0;

/// Number of PIRQs a guest may bind by default (QEMU's default).
pub const DEFAULT_NR_PIRQS: u32 = 256;

/// Where the guest's event-channel data lives; implemented by the VMM's domain.
pub trait GuestLayout: Send + Sync {
    /// Guest-physical address of the shared_info page, if the guest placed it.
    fn shared_info_gpa(&self) -> Option<u64>;
    /// The latched layout: `true` for x86_64 (4096 2-level ports, 64-bit
    /// words), `false` for x86_32 (1024 ports, 32-bit words).
    fn long_mode(&self) -> bool;
    /// Guest-physical address of `vcpu`'s vcpu_info: the registered one, or
    /// the default slot `shared_info + 64 * vcpu` for vCPUs below 32; `None`
    /// for a vCPU that has neither (it then gets no upcalls).
    fn vcpu_info_gpa(&self, vcpu: u32) -> Option<u64>;
    /// Number of vCPUs of the domain.
    fn vcpus(&self) -> u32;
}

/// How the VMM injects the event upcall.
pub trait Upcall: Send + Sync {
    /// Injects the upcall into `vcpu`.
    ///
    /// Called after that vCPU's `evtchn_upcall_pending` went from 0 to 1
    /// (2-level step 3, or a FIFO queue becoming ready), never while the
    /// port table is locked, so it may call back into [`EventChannels`].
    fn raise(&self, vcpu: u32);

    /// Reports that `port` newly became pending (2-level step 4), masked or
    /// not, so a vCPU blocked in `SCHEDOP_poll` on it can be woken.
    ///
    /// The default does nothing.
    fn port_raised(&self, port: u32) {
        let _ = port;
    }
}

/// An [`Upcall`] that injects nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoUpcall;

impl Upcall for NoUpcall {
    fn raise(&self, _vcpu: u32) {}
}

/// Configuration of a domain's event channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Config {
    /// The guest's domain id; regular (below `DOMID_FIRST_RESERVED`) and not
    /// [`DOMID_BACKEND`].
    pub domid: DomId,
    /// Highest port number the toolstack allows (Xen's `max_evtchn_port`;
    /// xl's `max_event_channels` default gives 1023). The default is the FIFO
    /// limit minus one, so the ABI limit of the active ABI always rules.
    pub max_evtchn_port: u32,
    /// Number of PIRQs; `bind_pirq` accepts `0..nr_pirqs`.
    pub nr_pirqs: u32,
}

impl Config {
    /// Returns the default configuration for domain `domid`.
    pub const fn new(domid: DomId) -> Self {
        Config {
            domid,
            max_evtchn_port: EVTCHN_FIFO_NR_CHANNELS - 1,
            nr_pirqs: DEFAULT_NR_PIRQS,
        }
    }

    /// Checks that the domain id can be a guest's.
    pub fn validate(&self) -> Result<()> {
        if !domid_is_regular(self.domid) || self.domid == DOMID_BACKEND {
            return Err(Error::InvalidDomid(self.domid));
        }
        Ok(())
    }
}

/// Errors building an [`EventChannels`] from a configuration or a [`State`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The domain id is reserved or belongs to the back ends.
    #[error("Domain id {0:#x} cannot be used by a guest.")]
    InvalidDomid(DomId),
    /// A port number is 0, too large, or listed twice.
    #[error("Port {0} is invalid or listed twice.")]
    InvalidPort(u32),
    /// Two ends of a connection do not point at each other.
    #[error("Port {0} is connected to an end that does not point back at it.")]
    InconsistentPeer(u32),
    /// A port notifies a vCPU the domain does not have.
    #[error("Port {0} notifies a vCPU the domain does not have.")]
    InvalidVcpu(u32),
    /// A VIRQ or PIRQ is bound twice, or a VIRQ number is too large.
    #[error("Port {0} has an invalid or duplicate VIRQ or PIRQ binding.")]
    InvalidBinding(u32),
    /// A FIFO priority is above 15.
    #[error("Port {0} has a FIFO priority above 15.")]
    InvalidPriority(u32),
    /// The FIFO state has inconsistent per-vCPU vectors or too many pages.
    #[error("The FIFO state is inconsistent.")]
    InvalidFifo,
}

/// Results of this crate's constructors.
pub type Result<T> = std::result::Result<T, Error>;
