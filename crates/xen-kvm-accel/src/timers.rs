// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! PV timers on the user-space path: one timerfd per vCPU for the
//! single-shot timer (`VCPUOP_set_singleshot_timer`, `set_timer_op`) and
//! one for the periodic timer, served by an event-manager thread that
//! raises `VIRQ_TIMER` on the vCPU's event channel when one fires
//! (`xen-abi.md` §3.5, §1.3). Deadlines are Xen system time from the
//! domain's clock; a deadline already past fires at once, as in Xen.

use std::os::unix::io::AsRawFd;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use event_manager::{EventManager, EventOps, EventSubscriber, Events, SubscriberOps};
use vm_memory::GuestMemoryBackend;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;
use xen_abi::xen::Virq;
use xen_evtchn::EventChannels;
use xen_hypercall::env::{Clock, Timers};

use crate::Error;

/// What a fired timer raises the event on.
struct Target<M> {
    channels: Arc<EventChannels>,
    mem: M,
}

struct Inner<M> {
    clock: Arc<dyn Clock>,
    /// Per vCPU: [single-shot, periodic].
    fds: Vec<[Mutex<TimerFd>; 2]>,
    target: OnceLock<Target<M>>,
    stop: EventFd,
}

/// PV timers on timerfds and an event-manager thread.
pub struct TimerfdTimers<M: GuestMemoryBackend + Send + Sync + 'static> {
    inner: Arc<Inner<M>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Host { what, source }
}

fn sys(what: &'static str) -> impl FnOnce(vmm_sys_util::errno::Error) -> Error {
    move |e| Error::Host {
        what,
        source: std::io::Error::from_raw_os_error(e.errno()),
    }
}

impl<M: GuestMemoryBackend + Send + Sync + 'static> TimerfdTimers<M> {
    /// Timers for `vcpus` vCPUs on `clock`'s system time, with their
    /// thread started. They raise nothing until [`TimerfdTimers::attach`].
    pub fn new(vcpus: u32, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        let mut fds = Vec::new();
        for _ in 0..vcpus {
            fds.push([
                Mutex::new(TimerFd::new().map_err(sys("timerfd_create"))?),
                Mutex::new(TimerFd::new().map_err(sys("timerfd_create"))?),
            ]);
        }
        let inner = Arc::new(Inner {
            clock,
            fds,
            target: OnceLock::new(),
            stop: EventFd::new(libc::EFD_NONBLOCK).map_err(io("eventfd"))?,
        });
        let mut manager: EventManager<Arc<Subscriber<M>>> =
            EventManager::new().map_err(|e| Error::Host {
                what: "the timer event manager",
                source: std::io::Error::other(format!("{e:?}")),
            })?;
        manager.add_subscriber(Arc::new(Subscriber {
            inner: inner.clone(),
        }));
        let stopping = inner.clone();
        let thread = std::thread::Builder::new()
            .name("xen-timers".into())
            .spawn(move || {
                while stopping.stop.read().is_err() {
                    if manager.run().is_err() {
                        break;
                    }
                }
            })
            .map_err(io("spawn timer thread"))?;
        Ok(Self {
            inner,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Where fired timers raise `VIRQ_TIMER`: the domain's event channels
    /// over its guest memory.
    pub fn attach(&self, channels: Arc<EventChannels>, mem: M) {
        let _ = self.inner.target.set(Target { channels, mem });
    }

    fn arm(&self, vcpu: u32, which: usize, delay: Option<Duration>, period: Option<Duration>) {
        let Some(fds) = self.inner.fds.get(vcpu as usize) else {
            return;
        };
        let mut fd = fds[which].lock().unwrap_or_else(|e| e.into_inner());
        // A zero duration disarms a timerfd; a due timer fires in 1 ns.
        let r = match delay {
            Some(d) => fd.reset(d.max(Duration::from_nanos(1)), period),
            None => fd.clear(),
        };
        if let Err(e) = r {
            log::warn!("vCPU {vcpu}: arming its timer failed: {e}");
        }
    }
}

impl<M: GuestMemoryBackend + Send + Sync + 'static> Timers for TimerfdTimers<M> {
    fn set_singleshot(&self, vcpu: u32, deadline_ns: Option<u64>) {
        let now = self.inner.clock.system_time_ns();
        let delay = deadline_ns.map(|d| Duration::from_nanos(d.saturating_sub(now)));
        self.arm(vcpu, 0, delay, None);
    }

    fn set_periodic(&self, vcpu: u32, period_ns: Option<u64>) {
        let period = period_ns.map(Duration::from_nanos);
        self.arm(vcpu, 1, period, period);
    }
}

impl<M: GuestMemoryBackend + Send + Sync + 'static> Drop for TimerfdTimers<M> {
    fn drop(&mut self) {
        let _ = self.inner.stop.write(1);
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// The event-manager subscriber: every timerfd plus the stop eventfd.
struct Subscriber<M> {
    inner: Arc<Inner<M>>,
}

/// `Events` data of the stop eventfd.
const STOP: u32 = u32::MAX;

impl<M: GuestMemoryBackend + Send + Sync + 'static> EventSubscriber for Subscriber<M> {
    fn init(&self, ops: &mut EventOps) {
        for (vcpu, pair) in self.inner.fds.iter().enumerate() {
            for (which, fd) in pair.iter().enumerate() {
                let fd = fd.lock().unwrap_or_else(|e| e.into_inner());
                let data = (vcpu as u32) << 1 | which as u32;
                if let Err(e) = ops.add(Events::with_data(&*fd, data, EventSet::IN)) {
                    log::error!("timer of vCPU {vcpu} not watched: {e:?}");
                }
            }
        }
        if let Err(e) = ops.add(Events::with_data(&self.inner.stop, STOP, EventSet::IN)) {
            log::error!("timer thread stop event not watched: {e:?}");
        }
    }

    fn process(&self, events: Events, _ops: &mut EventOps) {
        let data = events.data();
        if data == STOP {
            return;
        }
        let (vcpu, which) = (data >> 1, (data & 1) as usize);
        let Some(pair) = self.inner.fds.get(vcpu as usize) else {
            return;
        };
        {
            // Consume the expiration count (non-blocking: it is readable).
            let fd = pair[which].lock().unwrap_or_else(|e| e.into_inner());
            let _ = read_expirations(fd.as_raw_fd());
        }
        if let Some(t) = self.inner.target.get() {
            t.channels.raise_virq(&t.mem, Virq::Timer, vcpu);
        }
    }
}

/// Reads a timerfd's expiration counter without blocking.
fn read_expirations(fd: i32) -> Option<u64> {
    let mut buf = [0u8; 8];
    // SAFETY: reads at most 8 bytes into a valid 8-byte buffer from a
    // timerfd that the epoll loop reported readable.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    (n == 8).then(|| u64::from_ne_bytes(buf))
}
