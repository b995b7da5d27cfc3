// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What the hypercalls need from the VMM, as small injected traits.
//!
//! Each trait has a default implementation that does nothing observable
//! (the `No*` types), so a VMM wires only what it has. [`Env`] bundles them.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use xen_abi::sched::ShutdownReason;

/// Time as the guest sees it.
pub trait Clock: Send + Sync {
    /// Xen system time: nanoseconds since the domain started, monotonic.
    fn system_time_ns(&self) -> u64;
    /// Wall-clock time that corresponds to system time 0, as (seconds,
    /// nanoseconds) since the Unix epoch.
    fn wallclock_at_zero(&self) -> (u64, u32);
    /// The guest TSC of `vcpu` now, and its frequency in kHz, if known.
    /// With `None`, vcpu_time_info carries system time only (no scale).
    fn guest_tsc(&self, _vcpu: u32) -> Option<(u64, u32)> {
        None
    }
}

/// A clock on the host's monotonic and real-time clocks, without TSC.
#[derive(Debug)]
pub struct HostClock {
    start: Instant,
    wall_at_start: Duration,
}

impl HostClock {
    /// A clock whose system time starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            wall_at_start: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }
}

impl Default for HostClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for HostClock {
    fn system_time_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn wallclock_at_zero(&self) -> (u64, u32) {
        (
            self.wall_at_start.as_secs(),
            self.wall_at_start.subsec_nanos(),
        )
    }
}

/// Per-vCPU timers that raise VIRQ_TIMER when they fire, and the domain's
/// watchdog timer.
pub trait Timers: Send + Sync {
    /// Arms (`Some(deadline)`, absolute system time in ns) or cancels the
    /// single-shot timer of `vcpu`.
    fn set_singleshot(&self, _vcpu: u32, _deadline_ns: Option<u64>) {}
    /// Arms (`Some(period)` in ns) or stops the periodic timer of `vcpu`.
    fn set_periodic(&self, _vcpu: u32, _period_ns: Option<u64>) {}
    /// Arms (`Some(deadline)`, absolute system time in ns) or cancels the
    /// domain's watchdog timer: the earliest `SCHEDOP_watchdog` deadline.
    /// When it fires the VMM asks `SchedOp::expired_watchdog` and shuts the
    /// domain down with `SHUTDOWN_watchdog` if it says so.
    fn set_watchdog(&self, _deadline_ns: Option<u64>) {}
}

/// Scheduling and life-cycle requests from the guest.
pub trait DomainEvents: Send + Sync {
    /// `SCHEDOP_shutdown` (and watchdog expiry): the domain asks to power
    /// off, reboot, suspend, crash... `code` is the latched shutdown_code.
    fn shutdown(&self, _reason: ShutdownReason, _code: Option<u32>) {}
    /// `SCHEDOP_yield`.
    fn yield_vcpu(&self, _vcpu: u32) {}
    /// `SCHEDOP_block` / `SCHEDOP_poll`: park `vcpu` until it is woken (an
    /// event for it) or `deadline_ns` (system time) passes. Returning early
    /// is allowed (spurious wake-ups are part of the ABI).
    fn block(&self, _vcpu: u32, _deadline_ns: Option<u64>) {}
}

/// Where `console_io` output goes and input comes from.
pub trait Console: Send + Sync {
    /// Bytes the guest wrote.
    fn write(&self, _bytes: &[u8]) {}
    /// Fills `buf` with pending input; returns the count.
    fn read(&self, _buf: &mut [u8]) -> usize {
        0
    }
}

/// Guest RAM backing, for ballooning and physmap changes.
pub trait MemoryBacking: Send + Sync {
    /// Drops the backing of `count` pages from `gfn` (the guest gave them
    /// back). Returns false if the VMM cannot.
    fn remove(&self, _gfn: u64, _count: u64) -> bool {
        true
    }
    /// Backs `count` pages from `gfn` again. Returns false if the VMM
    /// cannot.
    fn add(&self, _gfn: u64, _count: u64) -> bool {
        true
    }
}

/// A no-op implementation of every trait.
#[derive(Clone, Copy, Debug, Default)]
pub struct Nop;

impl Timers for Nop {}
impl DomainEvents for Nop {}
impl Console for Nop {}
impl MemoryBacking for Nop {}

/// Everything the hypercalls reach outside themselves.
#[derive(Clone)]
pub struct Env {
    /// Guest time.
    pub clock: Arc<dyn Clock>,
    /// PV timers.
    pub timers: Arc<dyn Timers>,
    /// Shutdown, yield and block.
    pub events: Arc<dyn DomainEvents>,
    /// `console_io`.
    pub console: Arc<dyn Console>,
    /// RAM backing.
    pub backing: Arc<dyn MemoryBacking>,
}

impl Default for Env {
    fn default() -> Self {
        Self {
            clock: Arc::new(HostClock::new()),
            timers: Arc::new(Nop),
            events: Arc::new(Nop),
            console: Arc::new(Nop),
            backing: Arc::new(Nop),
        }
    }
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").finish_non_exhaustive()
    }
}
