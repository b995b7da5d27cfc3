// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The domain's timers on timerfds: per vCPU one single-shot timer
//! (`VCPUOP_set_singleshot_timer`, `set_timer_op`) and one periodic timer
//! (`VCPUOP_set_periodic_timer`), which raise `VIRQ_TIMER` on that vCPU's
//! event channel when they fire (`xen-abi.md` §3.5, §1.3), and the domain's
//! watchdog (`SCHEDOP_watchdog`), which shuts the domain down with
//! `SHUTDOWN_watchdog` when it expires.
//!
//! [`TimerfdTimers`] is what the hypercalls arm (the [`Timers`] service);
//! [`TimerEvents`] is the `event-manager` subscriber that the VMM registers
//! on its own event loop ([`crate::XenDomain::subscribers`]) and that turns
//! expirations into events. Deadlines are Xen system time from the
//! domain's clock; a deadline already past fires at once, as in Xen. A
//! timer re-armed or cancelled after it expired but before the loop served
//! it raises nothing: the new setting wins, as in Xen.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use event_manager::{EventOps, Events, MutEventSubscriber};
use vm_memory::GuestMemoryBackend;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::timerfd::TimerFd;
use xen_hypercall::env::{Clock, Timers};

use crate::{Error, XenDomain};

/// Which timer of a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerKind {
    /// The single-shot timer.
    Singleshot,
    /// The periodic timer.
    Periodic,
}

/// `Events` data of the watchdog timerfd (vCPU timers use `vcpu << 1 | kind`).
const WATCHDOG: u32 = u32::MAX;

/// A timerfd that never blocks on read.
fn timerfd() -> Result<Mutex<TimerFd>, Error> {
    let fd = TimerFd::new().map_err(|e| Error::Host {
        what: "timerfd_create",
        source: std::io::Error::from_raw_os_error(e.errno()),
    })?;
    // SAFETY: F_SETFL on a timerfd this function owns; no memory is passed.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    if r < 0 {
        return Err(Error::Host {
            what: "fcntl(timerfd, O_NONBLOCK)",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(Mutex::new(fd))
}

fn lock(fd: &Mutex<TimerFd>) -> MutexGuard<'_, TimerFd> {
    fd.lock().unwrap_or_else(|e| e.into_inner())
}

/// The domain's timers as timerfds (the default [`Timers`] of a
/// [`XenDomain`]).
pub struct TimerfdTimers {
    clock: Arc<dyn Clock>,
    /// Per vCPU: [single-shot, periodic].
    vcpus: Vec<[Mutex<TimerFd>; 2]>,
    watchdog: Mutex<TimerFd>,
}

impl std::fmt::Debug for TimerfdTimers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerfdTimers")
            .field("vcpus", &self.vcpus.len())
            .finish_non_exhaustive()
    }
}

impl TimerfdTimers {
    /// Timers for `vcpus` vCPUs on `clock`'s system time, none armed.
    pub fn new(vcpus: u32, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        let vcpus = (0..vcpus)
            .map(|_| Ok([timerfd()?, timerfd()?]))
            .collect::<Result<_, Error>>()?;
        Ok(Self {
            clock,
            vcpus,
            watchdog: timerfd()?,
        })
    }

    fn arm(fd: &Mutex<TimerFd>, delay: Option<Duration>, period: Option<Duration>) {
        let mut fd = lock(fd);
        // A zero duration disarms a timerfd; a due timer fires in 1 ns.
        let r = match delay {
            Some(d) => fd.reset(d.max(Duration::from_nanos(1)), period),
            None => fd.clear(),
        };
        if let Err(e) = r {
            log::warn!("arming a Xen timer failed: {e}");
        }
    }

    fn delay(&self, deadline_ns: Option<u64>) -> Option<Duration> {
        let now = self.clock.system_time_ns();
        deadline_ns.map(|d| Duration::from_nanos(d.saturating_sub(now)))
    }

    /// Consumes the expirations of a fired timer; `false` if it was re-armed
    /// or cancelled since (nothing to raise).
    fn expired(fd: &Mutex<TimerFd>) -> bool {
        lock(fd).wait().is_ok_and(|n| n > 0)
    }
}

impl Timers for TimerfdTimers {
    fn set_singleshot(&self, vcpu: u32, deadline_ns: Option<u64>) {
        if let Some(pair) = self.vcpus.get(vcpu as usize) {
            Self::arm(&pair[0], self.delay(deadline_ns), None);
        }
    }

    fn set_periodic(&self, vcpu: u32, period_ns: Option<u64>) {
        if let Some(pair) = self.vcpus.get(vcpu as usize) {
            let period = period_ns.map(Duration::from_nanos);
            Self::arm(&pair[1], period, period);
        }
    }

    fn set_watchdog(&self, deadline_ns: Option<u64>) {
        Self::arm(&self.watchdog, self.delay(deadline_ns), None);
    }
}

/// The `event-manager` subscriber of a domain's [`TimerfdTimers`]: raises
/// `VIRQ_TIMER` for each vCPU timer that fires, and checks the watchdog.
pub struct TimerEvents<M: GuestMemoryBackend + Clone + Send + Sync + 'static> {
    domain: Arc<XenDomain<M>>,
    timers: Arc<TimerfdTimers>,
}

impl<M: GuestMemoryBackend + Clone + Send + Sync + 'static> TimerEvents<M> {
    /// The subscriber for `domain`'s timers.
    pub fn new(domain: Arc<XenDomain<M>>, timers: Arc<TimerfdTimers>) -> Self {
        Self { domain, timers }
    }
}

impl<M: GuestMemoryBackend + Clone + Send + Sync + 'static> MutEventSubscriber for TimerEvents<M> {
    fn init(&mut self, ops: &mut EventOps) {
        for (vcpu, pair) in self.timers.vcpus.iter().enumerate() {
            for (kind, fd) in pair.iter().enumerate() {
                let data = (vcpu as u32) << 1 | kind as u32;
                if let Err(e) = ops.add(Events::with_data(&*lock(fd), data, EventSet::IN)) {
                    log::error!("timer of vCPU {vcpu} not watched: {e:?}");
                }
            }
        }
        let wd = Events::with_data(&*lock(&self.timers.watchdog), WATCHDOG, EventSet::IN);
        if let Err(e) = ops.add(wd) {
            log::error!("the watchdog timer is not watched: {e:?}");
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let data = events.data();
        if data == WATCHDOG {
            if TimerfdTimers::expired(&self.timers.watchdog) {
                self.domain.check_watchdog();
            }
            return;
        }
        let (vcpu, kind) = (data >> 1, data & 1);
        let Some(pair) = self.timers.vcpus.get(vcpu as usize) else {
            return;
        };
        if TimerfdTimers::expired(&pair[kind as usize]) {
            let kind = if kind == 0 {
                TimerKind::Singleshot
            } else {
                TimerKind::Periodic
            };
            self.domain.timer_fired(vcpu, kind);
        }
    }
}
