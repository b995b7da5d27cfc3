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
//! | 21 | `vm_assist` | [`misc`] |
//! | 24 | `vcpu_op` | [`vcpu`] (time and runstate upkeep in [`time`]) |
//! | 29 | `sched_op` | [`sched`] |
//! | 32 | `event_channel_op` | [`evtchn`] (over `xen-evtchn`; registered by the VMM, which owns the event channels) |
//! | 33 | `physdev_op` | [`physdev`] (over `xen-evtchn`; registered by the VMM) |
//! | 34 | `hvm_op` | [`hvm`] |
//! | 7, 35, 36 | `platform_op`, `sysctl`, `domctl` | -EPERM for a domU |
//!
//! Everything else gets -ENOSYS with a rate-limited warning naming the
//! hypercall; grant tables join later.
//!
//! ```
//! use xen_abi::memory::{E820Entry, E820Type};
//! use xen_hypercall::{DomainConfig, default_dispatcher};
//! let config = DomainConfig::new(2, 0x4000a, vec![E820Entry::new(0, 64 << 20, E820Type::Ram)]);
//! let dispatcher = default_dispatcher::<vm_memory::GuestMemoryMmap>(&config);
//! # let _ = dispatcher;
//! ```

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod call;
pub mod console;
pub mod dispatch;
pub mod domain;
pub mod env;
pub mod evtchn;
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

use std::sync::Arc;

use vm_memory::GuestMemoryBackend;
use xen_abi::xen::HypercallNr;

pub use call::{Abi, GpRegs, HcResult, Hypercall, result_value, set_result};
pub use console::ConsoleIo;
pub use dispatch::{Ctx, Dispatcher, Family};
pub use domain::{Domain, DomainConfig, DomainState, StateError};
pub use env::Env;
pub use evtchn::EvtchnOp;
pub use hvm::{HvmEvents, HvmOp, callback_via};
pub use memory::{GrantFrames, MemoryOp};
pub use misc::VmAssist;
pub use physdev::PhysdevOp;
pub use sched::{SchedOp, SetTimerOp};
pub use time::{Runstate, Runstates, update_vcpu_time, update_wallclock};
pub use vcpu::VcpuOp;
pub use version::XenVersionOp;

/// Grant-table frames a guest may map by default (Xen's and QEMU's 64).
pub const DEFAULT_MAX_GRANT_FRAMES: u32 = 64;

/// A dispatcher with every family this crate implements, configured for
/// `config`; a VMM may then replace any of them with
/// [`Dispatcher::register`].
pub fn default_dispatcher<M: GuestMemoryBackend>(config: &DomainConfig) -> Dispatcher<M> {
    let mut d = Dispatcher::empty();
    d.register(
        HypercallNr::MemoryOp,
        Arc::new(MemoryOp::new(
            config,
            GrantFrames::new(DEFAULT_MAX_GRANT_FRAMES),
        )),
    );
    d.register(HypercallNr::SetTimerOp, Arc::new(SetTimerOp));
    d.register(HypercallNr::XenVersion, Arc::new(XenVersionOp::new()));
    d.register(HypercallNr::ConsoleIo, Arc::new(ConsoleIo::new()));
    d.register(HypercallNr::VmAssist, Arc::new(VmAssist::new()));
    d.register(HypercallNr::VcpuOp, Arc::new(VcpuOp::new()));
    d.register(HypercallNr::SchedOp, Arc::new(SchedOp::new()));
    d.register(HypercallNr::HvmOp, Arc::new(HvmOp::new()));
    d
}
