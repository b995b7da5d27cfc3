// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Eventfd watches that come and go while the VMM's event loop runs, and a
//! convenience thread for VMMs without an event loop of their own.
//!
//! [`EventWatches`] is an `event-manager` subscriber the VMM registers on
//! its own `EventManager` (DESIGN.md, "Threads": the VMM owns its event
//! loop). [`EventWatches::watch`] hands it an eventfd and a callback from
//! any thread; when the eventfd becomes readable the loop reads (and so
//! resets) its counter and calls the callback with the count. Requests are
//! queued and a control eventfd wakes the loop, which applies them to its
//! epoll set. The loop never spins: it sleeps in `epoll_wait` until an fd
//! is readable.
//!
//! Callbacks run on the loop thread, one at a time. [`EventWatches::unwatch`]
//! returns only once the callback is not running and will not start again
//! (unless it is called from that very callback, which cannot wait for
//! itself), so a caller may tear down what the callback uses right after.
//! Callbacks must not hold strong references to their [`EventWatches`]
//! (that would be a cycle); take a `Weak` if they need it.
//!
//! [`EventThread`] runs an `EventManager` with a list of subscribers on a
//! thread of its own, until it is dropped: the option for a VMM that has
//! no loop (tests, small VMMs).

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};

use event_manager::{EventManager, EventOps, EventSubscriber, Events, SubscriberOps};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;
use xen_domain::Subscriber;

use crate::{Error, lock};

/// What a watched eventfd calls, with the counter it read.
pub type Callback = Arc<dyn Fn(u64) + Send + Sync>;

/// A watch's handle, for [`EventWatches::unwatch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WatchId(u32);

/// `Events` data of the control eventfd.
const CONTROL: u32 = u32::MAX;

struct Watch {
    fd: Arc<EventFd>,
    callback: Callback,
    /// Held while the callback runs.
    running: Arc<Mutex<()>>,
}

#[derive(Default)]
struct State {
    next: u32,
    watches: HashMap<u32, Watch>,
    /// Watches to add to the epoll set, and fds to take out of it.
    adds: Vec<u32>,
    removes: Vec<Arc<EventFd>>,
}

/// Eventfd watches served by the event loop this subscriber is registered
/// on; see the module docs.
pub struct EventWatches {
    control: EventFd,
    state: Mutex<State>,
    /// The loop thread, once it has served an event.
    thread: Mutex<Option<ThreadId>>,
}

impl std::fmt::Debug for EventWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWatches")
            .field("watches", &self.watches())
            .finish_non_exhaustive()
    }
}

impl EventWatches {
    /// An empty watch set; register it on an event loop to serve it.
    pub fn new() -> Result<Self, Error> {
        Ok(Self {
            control: EventFd::new(libc::EFD_NONBLOCK).map_err(|source| Error::Host {
                what: "the watches' control eventfd",
                source,
            })?,
            state: Mutex::new(State::default()),
            thread: Mutex::new(None),
        })
    }

    fn wake(&self) {
        if let Err(e) = self.control.write(1) {
            log::error!("waking the event loop failed: {e}");
        }
    }

    /// Calls `callback` on the loop thread with the counter read from `fd`
    /// whenever `fd` becomes readable (the loop does the read).
    pub fn watch(&self, fd: Arc<EventFd>, callback: Callback) -> WatchId {
        let id = {
            let mut st = lock(&self.state);
            let mut id = st.next;
            while id == CONTROL || st.watches.contains_key(&id) {
                id = id.wrapping_add(1);
            }
            st.next = id.wrapping_add(1);
            st.watches.insert(
                id,
                Watch {
                    fd,
                    callback,
                    running: Arc::default(),
                },
            );
            st.adds.push(id);
            id
        };
        self.wake();
        WatchId(id)
    }

    /// Stops watching. When this returns the callback is not running and
    /// never runs again, except when called from the callback itself.
    pub fn unwatch(&self, id: WatchId) {
        let watch = {
            let mut st = lock(&self.state);
            let Some(w) = st.watches.remove(&id.0) else {
                return;
            };
            st.adds.retain(|&a| a != id.0);
            st.removes.push(w.fd.clone());
            w
        };
        self.wake();
        if *lock(&self.thread) != Some(std::thread::current().id()) {
            // Wait for a callback in progress.
            drop(lock(&watch.running));
        }
    }

    /// How many watches are registered.
    pub fn watches(&self) -> usize {
        lock(&self.state).watches.len()
    }
}

/// Reads an eventfd's counter without blocking (0: nothing to read),
/// whether or not the fd was opened non-blocking.
fn read_count(fd: &EventFd) -> u64 {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    if unsafe { libc::poll(&mut poll, 1, 0) } != 1 || poll.revents & libc::POLLIN == 0 {
        return 0;
    }
    // Readable, and only this thread reads it: read() returns at once.
    fd.read().unwrap_or(0)
}

impl EventSubscriber for EventWatches {
    fn init(&self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::with_data(&self.control, CONTROL, EventSet::IN)) {
            log::error!("the watches' control fd is not watched: {e:?}");
        }
        // Watches made before the loop started.
        let _ = self.control.write(1);
    }

    fn process(&self, events: Events, ops: &mut EventOps) {
        *lock(&self.thread) = Some(std::thread::current().id());
        let id = events.data();
        if id == CONTROL {
            let _ = self.control.read();
            let (adds, removes) = {
                let mut st = lock(&self.state);
                let adds: Vec<(u32, Arc<EventFd>)> = std::mem::take(&mut st.adds)
                    .into_iter()
                    .filter_map(|id| st.watches.get(&id).map(|w| (id, w.fd.clone())))
                    .collect();
                (adds, std::mem::take(&mut st.removes))
            };
            for fd in removes {
                let _ = ops.remove(Events::new(&*fd, EventSet::IN));
            }
            for (id, fd) in adds {
                if let Err(e) = ops.add(Events::with_data(&*fd, id, EventSet::IN)) {
                    log::error!("eventfd watch {id} not added: {e:?}");
                }
            }
            return;
        }
        let st = lock(&self.state);
        let Some(w) = st.watches.get(&id) else {
            return;
        };
        let (fd, callback, running) = (w.fd.clone(), w.callback.clone(), w.running.clone());
        // Taken before the state lock is released: an unwatch that removed
        // the watch after this point waits for the callback to finish.
        let guard = lock(&running);
        drop(st);
        let count = read_count(&fd);
        if count != 0 {
            callback(count);
        }
        drop(guard);
    }
}

/// Stops an [`EventThread`]'s loop.
struct Stop {
    fd: EventFd,
    stopping: Arc<AtomicBool>,
}

impl event_manager::MutEventSubscriber for Stop {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.fd, EventSet::IN)) {
            log::error!("the event thread's stop eventfd is not watched: {e:?}");
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.fd.read();
        self.stopping.store(true, Ordering::SeqCst);
    }
}

/// An `EventManager` on a thread of its own, serving subscribers until it
/// is dropped.
pub struct EventThread {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EventThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventThread").finish_non_exhaustive()
    }
}

impl EventThread {
    /// Starts a thread named `name` serving `subscribers`.
    pub fn spawn(name: &str, subscribers: Vec<Subscriber>) -> Result<Self, Error> {
        let host = |what| move |source| Error::Host { what, source };
        let stop =
            EventFd::new(libc::EFD_NONBLOCK).map_err(host("the event thread's stop eventfd"))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let mut manager: EventManager<Subscriber> =
            EventManager::new().map_err(|e| Error::Host {
                what: "the event thread's event manager",
                source: std::io::Error::other(format!("{e:?}")),
            })?;
        for s in subscribers {
            manager.add_subscriber(s);
        }
        manager.add_subscriber(Arc::new(Mutex::new(Stop {
            fd: stop
                .try_clone()
                .map_err(host("the event thread's stop eventfd"))?,
            stopping: stopping.clone(),
        })));
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while !stopping.load(Ordering::SeqCst) {
                    if let Err(e) = manager.run() {
                        log::error!("event thread stopped: {e:?}");
                        break;
                    }
                }
            })
            .map_err(host("the event thread"))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EventThread {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take()
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }
}

/// Polls `cond` every millisecond for up to 5 s (tests of the threads
/// this crate starts).
#[cfg(test)]
pub(crate) fn wait_for(cond: impl Fn() -> bool) -> bool {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(5) {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    use super::*;

    /// Watches served by a thread of their own.
    fn served() -> (Arc<EventWatches>, EventThread) {
        let w = Arc::new(EventWatches::new().unwrap());
        let sub: Subscriber = Arc::new(Mutex::new(w.clone()));
        (w, EventThread::spawn("test-loop", vec![sub]).unwrap())
    }

    #[test]
    fn test_event_loop_watch_calls_back_with_count() {
        let (l, _thread) = served();
        let fd = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let sum = Arc::new(AtomicU64::new(0));
        let s = sum.clone();
        l.watch(
            fd.clone(),
            Arc::new(move |n| {
                s.fetch_add(n, Ordering::SeqCst);
            }),
        );
        fd.write(3).unwrap();
        assert!(wait_for(|| sum.load(Ordering::SeqCst) == 3));
        fd.write(2).unwrap();
        assert!(wait_for(|| sum.load(Ordering::SeqCst) == 5));
    }

    #[test]
    fn test_event_loop_unwatch_stops_callbacks_and_keeps_count() {
        let (l, _thread) = served();
        // A blocking eventfd works too.
        let fd = Arc::new(EventFd::new(0).unwrap());
        let sum = Arc::new(AtomicU64::new(0));
        let s = sum.clone();
        let id = l.watch(
            fd.clone(),
            Arc::new(move |n| {
                s.fetch_add(n, Ordering::SeqCst);
            }),
        );
        fd.write(1).unwrap();
        assert!(wait_for(|| sum.load(Ordering::SeqCst) == 1));
        l.unwatch(id);
        assert_eq!(l.watches(), 0);
        fd.write(4).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(sum.load(Ordering::SeqCst), 1);
        // The count is left for whoever takes the fd next.
        assert_eq!(fd.read().unwrap(), 4);
    }

    #[test]
    fn test_watch_made_before_the_loop_starts_is_served() {
        let w = Arc::new(EventWatches::new().unwrap());
        let fd = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let sum = Arc::new(AtomicU64::new(0));
        let s = sum.clone();
        w.watch(
            fd.clone(),
            Arc::new(move |n| {
                s.fetch_add(n, Ordering::SeqCst);
            }),
        );
        fd.write(7).unwrap();
        let sub: Subscriber = Arc::new(Mutex::new(w.clone()));
        let thread = EventThread::spawn("test-loop", vec![sub]).unwrap();
        assert!(wait_for(|| sum.load(Ordering::SeqCst) == 7));
        drop(thread);
    }
}
