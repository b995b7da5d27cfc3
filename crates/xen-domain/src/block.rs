// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Blocking vCPUs in `SCHEDOP_block` and `SCHEDOP_poll`.
//!
//! The hypercall runs on the vCPU's thread, so blocking parks that thread
//! on a condition variable until an event is raised for the vCPU
//! (the domain's upcall delivery wakes it), any port newly becomes pending
//! (a poller may be waiting for it), or the
//! deadline passes. A wake-up that arrives while the vCPU is not blocked is
//! remembered, so the next block returns at once: spurious wake-ups are
//! part of the ABI, lost ones are not. Each wait is also capped at
//! [`MAX_WAIT`], after which the vCPU returns to the guest (another
//! allowed spurious wake-up), so a VMM stopping the VM never waits on a
//! blocked thread for long.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use xen_abi::sched::ShutdownReason;
use xen_hypercall::env::{Clock, DomainEvents};

/// Longest a single block lasts before the vCPU returns to the guest.
pub const MAX_WAIT: Duration = Duration::from_millis(100);

/// Per-vCPU wake-up flags and the condition variable blocked vCPUs wait on.
pub struct Blocker {
    woken: Mutex<Vec<bool>>,
    cond: Condvar,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocker")
            .field("woken", &self.woken)
            .finish_non_exhaustive()
    }
}

impl Blocker {
    /// A blocker for `vcpus` vCPUs whose deadlines are `clock`'s system time.
    pub fn new(vcpus: u32, clock: Arc<dyn Clock>) -> Self {
        Self {
            woken: Mutex::new(vec![false; vcpus as usize]),
            cond: Condvar::new(),
            clock,
        }
    }

    /// Wakes `vcpu` (or remembers the wake-up if it is not blocked).
    pub fn wake(&self, vcpu: u32) {
        if let Some(w) = self
            .woken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(vcpu as usize)
        {
            *w = true;
        }
        self.cond.notify_all();
    }

    /// Wakes every vCPU.
    pub fn wake_all(&self) {
        self.woken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
            .for_each(|w| *w = true);
        self.cond.notify_all();
    }

    /// Blocks `vcpu` until it is woken, `deadline_ns` (system time) passes,
    /// or [`MAX_WAIT`] elapses.
    pub fn block(&self, vcpu: u32, deadline_ns: Option<u64>) {
        let limit = match deadline_ns {
            Some(d) => {
                Duration::from_nanos(d.saturating_sub(self.clock.system_time_ns())).min(MAX_WAIT)
            }
            None => MAX_WAIT,
        };
        let mut woken = self.woken.lock().unwrap_or_else(|e| e.into_inner());
        let Some(slot) = woken.get(vcpu as usize).copied() else {
            return;
        };
        if !slot && !limit.is_zero() {
            woken = self
                .cond
                .wait_timeout_while(woken, limit, |w| !w[vcpu as usize])
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        woken[vcpu as usize] = false;
    }
}

/// The domain's [`DomainEvents`]: blocking through its [`Blocker`], yield
/// as a host thread yield, shutdown handed to the VMM's own handler.
pub(crate) struct BlockingEvents {
    pub(crate) blocker: Arc<Blocker>,
    pub(crate) vmm: Arc<dyn DomainEvents>,
}

impl DomainEvents for BlockingEvents {
    fn shutdown(&self, reason: ShutdownReason, code: Option<u32>) {
        self.vmm.shutdown(reason, code);
    }

    fn yield_vcpu(&self, _vcpu: u32) {
        std::thread::yield_now();
    }

    fn block(&self, vcpu: u32, deadline_ns: Option<u64>) {
        self.blocker.block(vcpu, deadline_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use xen_hypercall::env::HostClock;

    fn blocker() -> Arc<Blocker> {
        Arc::new(Blocker::new(2, Arc::new(HostClock::new())))
    }

    #[test]
    fn test_block_waits_until_the_deadline() {
        let b = blocker();
        let now = b.clock.system_time_ns();
        let t = Instant::now();
        b.block(0, Some(now + 20_000_000));
        assert!(t.elapsed() >= Duration::from_millis(19));
    }

    #[test]
    fn test_block_returns_at_once_after_an_earlier_wake() {
        let b = blocker();
        b.wake(1);
        let t = Instant::now();
        b.block(1, None);
        assert!(t.elapsed() < MAX_WAIT);
        // The wake-up was consumed: vCPU 0 was never woken either.
        let now = b.clock.system_time_ns();
        b.block(0, Some(now));
    }

    #[test]
    fn test_block_is_woken_from_another_thread() {
        let b = blocker();
        let b2 = b.clone();
        let t = Instant::now();
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            b2.wake_all();
        });
        b.block(0, None);
        waker.join().unwrap();
        assert!(t.elapsed() < MAX_WAIT);
    }

    #[test]
    fn test_block_of_an_unknown_vcpu_returns() {
        blocker().block(9, None);
    }
}
