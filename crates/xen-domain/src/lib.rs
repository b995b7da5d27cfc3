// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! One Xen HVM domain, assembled once, with no hypervisor in sight.
//!
//! [`XenDomain`] is everything that makes a guest believe it runs on Xen
//! and does not touch KVM: every hypercall family of `xen-hypercall`
//! registered in one dispatcher, the event channels of `xen-evtchn` with
//! Xen's upcall routing ([`UpcallRoute`]), `SCHEDOP_block`/`poll` that
//! really park a vCPU ([`Blocker`]), PV timers and the watchdog on
//! timerfds ([`TimerfdTimers`]), the Xen platform PCI device, and one
//! whole-domain [`State`]. It is built from one [`DomainConfig`] (version,
//! domain id, vCPUs, Hyper-V placement, limits), from which the CPUID
//! leaves and the hypercall MSR derive too, so nothing can disagree.
//!
//! The hypervisor's side comes in as small traits through
//! [`XenDomainBuilder`]: the interrupt controller ([`UpcallInjector`]),
//! the clock, console, shutdown handling, RAM backing, each with a default
//! that does nothing observable. `xen-kvm-accel` supplies the KVM ones and
//! the per-vCPU exit handlers; a test, a fuzzer or a VMM on another
//! hypervisor uses this crate alone:
//!
//! ```
//! use std::sync::Arc;
//! use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
//! use xen_abi::memory::{E820Entry, E820Type};
//! use xen_abi::xen::HypercallNr;
//! use xen_domain::XenDomain;
//! use xen_hypercall::guest::PagingRegs;
//! use xen_hypercall::{Abi, DomainConfig, Hypercall};
//!
//! let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
//! let map = vec![E820Entry::new(0, 16 << 20, E820Type::Ram)];
//! let config = DomainConfig::new(1, xen_cpuid::XenVersion::V4_10, map);
//! let domain = Arc::new(XenDomain::builder(config, mem.clone()).build().unwrap());
//!
//! // A hypercall, as a vCPU in 64-bit mode without paging makes it.
//! let flat = PagingRegs { cr0: 1, cr3: 0, cr4: 0, efer: 0x500 };
//! let call = |nr: HypercallNr, args: [u64; 6]| Hypercall {
//!     abi: Abi::X86_64,
//!     cpl: 0,
//!     nr: u64::from(nr.raw()),
//!     args,
//! };
//! let version = domain.hypercall(0, flat, &call(HypercallNr::XenVersion, [0; 6]));
//! assert_eq!(version, Ok(0x4000a));
//!
//! // An event: shared_info at GFN 0x100, then an IPI port the VMM raises.
//! domain.core().lock().shared_info_gfn = Some(0x100);
//! let port = domain.channels().bind_ipi(&mem, 0).unwrap();
//! domain.send(port).unwrap();
//! assert!(domain.channels().pending(&mem, port));
//!
//! // SCHEDOP_poll on that port returns at once: it is pending.
//! mem.write_obj(port, GuestAddress(0x2000)).unwrap();
//! mem.write_obj([0x2000u64, 1, 0], GuestAddress(0x1000)).unwrap(); // ports, 1, no timeout
//! let poll = call(HypercallNr::SchedOp, [3, 0x1000, 0, 0, 0, 0]);
//! assert_eq!(domain.hypercall(0, flat, &poll), Ok(0));
//! ```
//!
//! A VMM registers [`XenDomain::subscribers`] (the timers) on its own
//! `event-manager` loop. [`XenDomain::state`] saves the whole domain;
//! [`XenDomainBuilder::restore`] builds a fresh one from it.

#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("xen-domain supports x86-64 hosts and guests only");

mod block;
mod builder;
mod delivery;
mod domain;
mod pv;
mod state;
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
pub mod timers;

pub use block::{Blocker, MAX_WAIT};
pub use builder::XenDomainBuilder;
pub use delivery::{NoInjector, PciIntxRouting, UpcallInjector, UpcallRoute};
pub use domain::{Platform, Subscriber, TraceFn, XenDomain};
pub use pv::{ConsoleSetup, ConsoleState, PvState, StoreSetup, StoreState};
pub use state::{STATE_VERSION, State, StateError};
pub use timers::{TimerEvents, TimerKind, TimerfdTimers};
pub use xen_hypercall::{ConfigError, DomainConfig};

/// Errors building a domain (never the guest's: those are Xen errnos).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot describe a domain.
    #[error("Invalid domain configuration")]
    Config(#[from] ConfigError),
    /// The event channels refused their configuration.
    #[error("Cannot create the event channels")]
    Evtchn(#[from] xen_evtchn::Error),
    /// A saved state does not fit.
    #[error("Cannot restore the domain")]
    State(#[from] StateError),
    /// The grant table refused its configuration.
    #[error("Cannot create the grant table")]
    Gnttab(#[from] xen_gnttab::Error),
    /// The XenStore could not be set up.
    #[error("Cannot set up the XenStore")]
    Store(#[from] xen_store::Error),
    /// A toolstack device (XenStore, console) could not be set up.
    #[error("Cannot set up {what}: {why}")]
    Pv {
        /// What was being set up.
        what: &'static str,
        /// Why it failed.
        why: String,
    },
    /// A host facility (a timerfd) could not be set up.
    #[error("Setting up {what} failed")]
    Host {
        /// What was being set up.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
