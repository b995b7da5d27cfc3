// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Xen hypercalls for a KVM-based VMM: calling conventions, hypercall
//! pages, guest pointers, the dispatcher, and the hypercalls a domU makes.
//!
//! Both ways a hypercall reaches a VMM (the kernel's `KVM_EXIT_XEN`, or the
//! user-space port-I/O trap of [`page::Trap::Port`] stubs) decode into one
//! [`Hypercall`]; [`Dispatcher::dispatch`] answers it with what real Xen
//! would return, and [`set_result`] writes that into the guest's RAX.
//! Nothing here touches `/dev/kvm`: guest memory comes through vm-memory
//! and the vCPU's paging registers, the VMM's side through the small
//! traits in [`mod@env`].
//!
//! | number | family | module |
//! |---|---|---|
//! | 12 | `memory_op` | [`memory`] |
//! | 13 | `multicall` | [`dispatch`] |
//! | 15 | `set_timer_op` | [`sched`] |
//! | 17 | `xen_version` | [`version`] |
//! | 18 | `console_io` | [`console`] |
//! | 20 | `grant_table_op` | [`gnttab`] (over `xen-gnttab`) |
//! | 21 | `vm_assist` | [`misc`] |
//! | 24 | `vcpu_op` | [`vcpu`] (time and runstate upkeep in [`time`]) |
//! | 29 | `sched_op` | [`sched`] |
//! | 32 | `event_channel_op` | [`evtchn`] (over `xen-evtchn`) |
//! | 33 | `physdev_op` | [`physdev`] (over `xen-evtchn`) |
//! | 34 | `hvm_op` | [`hvm`] |
//! | 7, 35, 36 | `platform_op`, `sysctl`, `domctl` | -EPERM for a domU |
//!
//! Everything else gets -ENOSYS with a rate-limited warning naming the
//! hypercall.
//!
//! The families are the parts; the `xen-domain` crate assembles all of
//! them, with the event channels, upcall routing and timers, into one
//! domain from one [`DomainConfig`]. Registering a family by hand:
//!
//! ```
//! use std::sync::Arc;
//! use xen_abi::memory::{E820Entry, E820Type};
//! use xen_abi::xen::HypercallNr;
//! use xen_hypercall::{Dispatcher, DomainConfig, XenVersionOp};
//!
//! let config = DomainConfig::new(2, xen_cpuid::XenVersion::V4_10, vec![E820Entry::new(0, 64 << 20, E820Type::Ram)]);
//! let mut dispatcher = Dispatcher::<vm_memory::GuestMemoryMmap>::empty();
//! dispatcher.register(HypercallNr::XenVersion, Arc::new(XenVersionOp::new()));
//! # let _ = (config, dispatcher);
//! ```

#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("xen-hypercall supports x86-64 hosts and guests only");

pub mod call;
pub mod console;
pub mod dispatch;
pub mod domain;
pub mod env;
pub mod evtchn;
pub mod gnttab;
pub mod guest;
pub mod hvm;
pub mod memory;
pub mod misc;
pub mod page;
pub mod physdev;
pub mod sched;
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
pub mod time;
pub mod vcpu;
pub mod version;

pub use call::{Abi, GpRegs, HcResult, Hypercall, result_value, set_result};
pub use console::ConsoleIo;
pub use dispatch::{Ctx, Dispatcher, Family};
pub use domain::{ConfigError, Domain, DomainConfig, DomainState, StateError};
pub use env::Env;
pub use evtchn::EvtchnOp;
pub use gnttab::GnttabOp;
pub use hvm::{HvmEvents, HvmOp, callback_via};
pub use memory::{GrantFrames, MemoryOp};
pub use misc::VmAssist;
pub use physdev::PhysdevOp;
pub use sched::{SchedOp, SetTimerOp};
pub use time::{Runstate, Runstates, update_vcpu_time, update_wallclock};
pub use vcpu::VcpuOp;
pub use version::XenVersionOp;
