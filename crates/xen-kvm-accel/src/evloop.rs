// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A small event-manager thread that watches eventfds for the rest of the
//! crate (DESIGN.md, "Threads": one event-manager thread owns back-end
//! eventfds).
//!
//! [`EventLoop::watch`] hands it an eventfd and a callback; when the
//! eventfd becomes readable the thread reads (and so resets) its counter
//! and calls the callback with the count. Watches come and go while the
//! loop runs: requests are queued and a control eventfd wakes the thread,
//! which applies them to its epoll set. The loop never spins: it sleeps in
//! `epoll_wait` until an fd is readable.
//!
//! Callbacks run on the loop thread, one at a time. [`EventLoop::unwatch`]
//! returns only once the callback is not running and will not start again
//! (unless it is called from that very callback, which cannot wait for
//! itself), so a caller may tear down what the callback uses right after.
//! Callbacks must not hold strong references to their [`EventLoop`] (that
//! would be a cycle); take a `Weak` if they need it.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{JoinHandle, ThreadId};

use event_manager::{EventManager, EventOps, EventSubscriber, Events, SubscriberOps};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::Error;

/// What a watched eventfd calls, with the counter it read.
pub type Callback = Arc<dyn Fn(u64) + Send + Sync>;

/// A watch's handle, for [`EventLoop::unwatch`].
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

struct Inner {
    control: EventFd,
    stop: AtomicBool,
    state: Mutex<State>,
    thread: OnceLock<ThreadId>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An event-manager thread serving eventfd watches.
pub struct EventLoop {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("watches", &lock(&self.inner.state).watches.len())
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    /// Starts the thread, named `name`.
    pub fn new(name: &str) -> Result<Self, Error> {
        let inner = Arc::new(Inner {
            control: EventFd::new(libc::EFD_NONBLOCK).map_err(|source| Error::Host {
                what: "the event loop's control eventfd",
                source,
            })?,
            stop: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            thread: OnceLock::new(),
        });
        let mut manager: EventManager<Arc<Subscriber>> =
            EventManager::new().map_err(|e| Error::Host {
                what: "the event loop's event manager",
                source: std::io::Error::other(format!("{e:?}")),
            })?;
        manager.add_subscriber(Arc::new(Subscriber {
            inner: inner.clone(),
        }));
        let running = inner.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _ = running.thread.set(std::thread::current().id());
                while !running.stop.load(Ordering::SeqCst) {
                    if let Err(e) = manager.run() {
                        log::error!("event loop stopped: {e:?}");
                        break;
                    }
                }
            })
            .map_err(|source| Error::Host {
                what: "the event loop thread",
                source,
            })?;
        Ok(Self {
            inner,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn wake(&self) {
        if let Err(e) = self.inner.control.write(1) {
            log::error!("waking the event loop failed: {e}");
        }
    }

    /// Calls `callback` on the loop thread with the counter read from `fd`
    /// whenever `fd` becomes readable (the loop does the read).
    pub fn watch(&self, fd: Arc<EventFd>, callback: Callback) -> WatchId {
        let id = {
            let mut st = lock(&self.inner.state);
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
            let mut st = lock(&self.inner.state);
            let Some(w) = st.watches.remove(&id.0) else {
                return;
            };
            st.adds.retain(|&a| a != id.0);
            st.removes.push(w.fd.clone());
            w
        };
        self.wake();
        if self.inner.thread.get() != Some(&std::thread::current().id()) {
            // Wait for a callback in progress.
            drop(lock(&watch.running));
        }
    }

    /// How many watches are registered.
    pub fn watches(&self) -> usize {
        lock(&self.inner.state).watches.len()
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.wake();
        let on_loop = self.inner.thread.get() == Some(&std::thread::current().id());
        if let Some(t) = lock(&self.thread).take()
            && !on_loop
        {
            let _ = t.join();
        }
    }
}

struct Subscriber {
    inner: Arc<Inner>,
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

impl EventSubscriber for Subscriber {
    fn init(&self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::with_data(
            &self.inner.control,
            CONTROL,
            EventSet::IN,
        )) {
            log::error!("event loop control fd not watched: {e:?}");
        }
    }

    fn process(&self, events: Events, ops: &mut EventOps) {
        let id = events.data();
        if id == CONTROL {
            let _ = self.inner.control.read();
            let (adds, removes) = {
                let mut st = lock(&self.inner.state);
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
        let st = lock(&self.inner.state);
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

    #[test]
    fn test_event_loop_watch_calls_back_with_count() {
        let l = EventLoop::new("test-loop").unwrap();
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
        let l = EventLoop::new("test-loop").unwrap();
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
}
