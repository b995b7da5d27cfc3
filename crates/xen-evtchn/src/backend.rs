// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! VMM-side back ends: the "dom0" end of a PV device's event channel.
//!
//! The guest sees a back end as domain [`DOMID_BACKEND`]
//! (QEMU's `DOMID_QEMU`). Two ways to connect, as with a real dom0:
//!
//! * the front end allocates an unbound port for domain 0 (what Linux
//!   front ends do) and the device calls
//!   [`EventChannels::backend_bind_interdomain`];
//! * the device allocates with [`EventChannels::backend_alloc_unbound`] and
//!   the guest calls `EVTCHNOP_bind_interdomain(0, port)`.
//!
//! Either way the device holds a [`BackendPort`]: its [`BackendNotify`] runs
//! when the guest sends, and [`BackendPort::notify_guest`] raises the guest
//! port. Back-end ports live in their own table (1..=4095), as dom0's would.

use std::sync::Arc;

use vm_memory::GuestMemoryBackend;
use xen_abi::errno::XenErrno;

use crate::channels::{BACKEND_MAX_PORT, BackendEnd, EventChannels, Inner, Shared};
use crate::state::Binding;
use crate::{DOMID_BACKEND, GuestLayout};

/// Notified when the guest sends on a port connected to a back end.
pub trait BackendNotify: Send + Sync {
    /// The guest sent on the channel whose back-end end is `backend_port`.
    ///
    /// Runs after the port table is unlocked, on the thread that handled
    /// the guest's `EVTCHNOP_send`.
    fn notify(&self, backend_port: u32);
}

impl<F: Fn(u32) + Send + Sync> BackendNotify for F {
    fn notify(&self, backend_port: u32) {
        self(backend_port)
    }
}

/// A device's handle on its back-end end.
///
/// Dropping the handle leaves the channel connected (so a device can be
/// re-created from a snapshot); [`BackendPort::close`] disconnects it.
pub struct BackendPort {
    shared: Arc<Shared>,
    port: u32,
    generation: u64,
}

impl std::fmt::Debug for BackendPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendPort")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl BackendPort {
    /// The back end's port number (what the guest's status reports).
    pub fn port(&self) -> u32 {
        self.port
    }

    fn with_end<R>(
        &self,
        f: impl FnOnce(
            &mut Inner,
            &dyn GuestLayout,
            &mut crate::channels::Effects,
        ) -> Result<R, XenErrno>,
    ) -> Result<R, XenErrno> {
        self.shared.run(|inner, layout, fx| {
            match inner.backends.get(&self.port) {
                Some(end) if end.generation == self.generation => {}
                _ => return Err(XenErrno::EINVAL),
            }
            f(inner, layout, fx)
        })
    }

    /// The connected guest port, or `None` while unbound (or after close).
    pub fn guest_port(&self) -> Option<u32> {
        self.with_end(|inner, _, _| Ok(inner.backends.get(&self.port).and_then(|e| e.guest_port)))
            .ok()
            .flatten()
    }

    /// Raises the connected guest port. Unbound -ENOTCONN (as QEMU); closed
    /// -EINVAL.
    pub fn notify_guest<M: GuestMemoryBackend>(&self, mem: &M) -> Result<(), XenErrno> {
        self.with_end(|inner, layout, fx| {
            let guest = inner
                .backends
                .get(&self.port)
                .and_then(|e| e.guest_port)
                .ok_or(XenErrno::ENOTCONN)?;
            inner.raise(mem, layout, guest, fx);
            Ok(())
        })
    }

    /// Closes the back-end end; a connected guest port reverts to unbound,
    /// accepting [`DOMID_BACKEND`] again.
    pub fn close(self) -> Result<(), XenErrno> {
        self.with_end(|inner, _, _| {
            if let Some(end) = inner.backends.remove(&self.port)
                && let Some(guest) = end.guest_port
                && let Some(p) = inner.ports.get_mut(&guest)
            {
                p.binding = Binding::Unbound {
                    remote_dom: DOMID_BACKEND,
                };
            }
            Ok(())
        })
    }
}

impl EventChannels {
    fn new_backend_end(
        inner: &mut Inner,
        guest_port: Option<u32>,
        notify: Arc<dyn BackendNotify>,
    ) -> Result<(u32, u64), XenErrno> {
        let port = (1..=BACKEND_MAX_PORT)
            .find(|p| !inner.backends.contains_key(p))
            .ok_or(XenErrno::ENOSPC)?;
        inner.generation += 1;
        inner.backends.insert(
            port,
            BackendEnd {
                guest_port,
                pending: false,
                notify: Some(notify),
                generation: inner.generation,
            },
        );
        Ok((port, inner.generation))
    }

    fn handle(&self, port: u32, generation: u64) -> BackendPort {
        BackendPort {
            shared: Arc::clone(&self.shared),
            port,
            generation,
        }
    }

    /// Allocates an unbound back-end port that the guest may connect to
    /// with `EVTCHNOP_bind_interdomain(DOMID_BACKEND, port)`. Full back-end
    /// table -ENOSPC.
    pub fn backend_alloc_unbound(
        &self,
        notify: Arc<dyn BackendNotify>,
    ) -> Result<BackendPort, XenErrno> {
        let (port, generation) = self
            .shared
            .run(|inner, _, _| Self::new_backend_end(inner, None, notify))?;
        Ok(self.handle(port, generation))
    }

    /// Connects a new back-end port to the guest's unbound `guest_port`
    /// (allocated by the guest for [`DOMID_BACKEND`]).
    ///
    /// As in Xen's `bind_interdomain`, the new (back-end) end is notified
    /// once right away, covering sends made before the connection. A guest
    /// port that is out of range, not unbound or not accepting domain 0 is
    /// -EINVAL.
    pub fn backend_bind_interdomain(
        &self,
        guest_port: u32,
        notify: Arc<dyn BackendNotify>,
    ) -> Result<BackendPort, XenErrno> {
        let (port, generation) = self.shared.run(|inner, layout, fx| {
            if guest_port >= inner.limit(layout) {
                return Err(XenErrno::EINVAL);
            }
            match inner.ports.get(&guest_port).map(|p| p.binding) {
                Some(Binding::Unbound {
                    remote_dom: DOMID_BACKEND,
                }) => {}
                _ => return Err(XenErrno::EINVAL),
            }
            let (port, generation) =
                Self::new_backend_end(inner, Some(guest_port), Arc::clone(&notify))?;
            if let Some(p) = inner.ports.get_mut(&guest_port) {
                p.binding = Binding::Backend { backend_port: port };
            }
            fx.notify.push((notify, port));
            Ok((port, generation))
        })?;
        Ok(self.handle(port, generation))
    }

    /// Re-attaches a device to its back-end end after
    /// [`EventChannels::from_state`], running `notify` once if the guest sent
    /// while nothing was attached. Unknown port -ENOENT; already attached
    /// -EBUSY.
    pub fn backend_attach(
        &self,
        backend_port: u32,
        notify: Arc<dyn BackendNotify>,
    ) -> Result<BackendPort, XenErrno> {
        let generation = self.shared.run(|inner, _, fx| {
            let end = inner
                .backends
                .get_mut(&backend_port)
                .ok_or(XenErrno::ENOENT)?;
            if end.notify.is_some() {
                return Err(XenErrno::EBUSY);
            }
            end.notify = Some(Arc::clone(&notify));
            if std::mem::take(&mut end.pending) {
                fx.notify.push((notify, backend_port));
            }
            Ok(end.generation)
        })?;
        Ok(self.handle(backend_port, generation))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use xen_abi::event_channel::EvtchnStatusDetail;

    use super::*;
    use crate::testing::fx;

    type Log = Arc<Mutex<Vec<u32>>>;

    fn recorder() -> (Log, Arc<dyn BackendNotify>) {
        let log: Log = Arc::default();
        let l = log.clone();
        (log, Arc::new(move |p: u32| l.lock().unwrap().push(p)))
    }

    #[test]
    fn test_backend_bind_guest_unbound_port_both_directions() {
        let f = fx();
        let g = f.ev.alloc_unbound(&f.mem, DOMID_BACKEND).unwrap();
        let (log, cb) = recorder();
        let be = f.ev.backend_bind_interdomain(g, cb).unwrap();
        assert_eq!(be.port(), 1);
        assert_eq!(be.guest_port(), Some(g));
        assert_eq!(*log.lock().unwrap(), vec![1], "notified once on bind");
        assert_eq!(
            f.ev.status(g).unwrap().detail,
            EvtchnStatusDetail::Interdomain { dom: 0, port: 1 }
        );
        f.ev.send(&f.mem, g).unwrap();
        assert_eq!(*log.lock().unwrap(), vec![1, 1]);
        assert!(!f.pending_bit(g));
        be.notify_guest(&f.mem).unwrap();
        assert!(f.pending_bit(g));
        assert_eq!(f.take_upcalls(), vec![0]);
    }

    #[test]
    fn test_backend_bind_wrong_guest_port_einval() {
        let f = fx();
        let own =
            f.ev.alloc_unbound(&f.mem, xen_abi::xen::DOMID_SELF)
                .unwrap();
        let ipi = f.ev.bind_ipi(&f.mem, 0).unwrap();
        for p in [own, ipi, 0, 50, 5000] {
            let (_, cb) = recorder();
            assert_eq!(
                f.ev.backend_bind_interdomain(p, cb).unwrap_err(),
                XenErrno::EINVAL
            );
        }
    }

    #[test]
    fn test_backend_alloc_unbound_guest_binds() {
        let f = fx();
        let (log, cb) = recorder();
        let be = f.ev.backend_alloc_unbound(cb).unwrap();
        assert_eq!(be.guest_port(), None);
        assert_eq!(be.notify_guest(&f.mem), Err(XenErrno::ENOTCONN));
        let g =
            f.ev.bind_interdomain(&f.mem, DOMID_BACKEND, be.port())
                .unwrap();
        assert!(f.pending_bit(g), "new local port always pending");
        assert_eq!(be.guest_port(), Some(g));
        assert_eq!(
            f.ev.bind_interdomain(&f.mem, DOMID_BACKEND, be.port()),
            Err(XenErrno::EINVAL)
        );
        f.ev.send(&f.mem, g).unwrap();
        assert_eq!(*log.lock().unwrap(), vec![be.port()]);
    }

    #[test]
    fn test_backend_guest_close_disconnects() {
        let f = fx();
        let (_, cb) = recorder();
        let be = f.ev.backend_alloc_unbound(cb).unwrap();
        let g =
            f.ev.bind_interdomain(&f.mem, DOMID_BACKEND, be.port())
                .unwrap();
        f.ev.close(&f.mem, g).unwrap();
        assert_eq!(be.guest_port(), None);
        assert_eq!(be.notify_guest(&f.mem), Err(XenErrno::ENOTCONN));
        // The guest may connect again.
        assert_eq!(
            f.ev.bind_interdomain(&f.mem, DOMID_BACKEND, be.port()),
            Ok(g)
        );
    }

    #[test]
    fn test_backend_close_reverts_guest_port() {
        let f = fx();
        let g = f.ev.alloc_unbound(&f.mem, DOMID_BACKEND).unwrap();
        let (_, cb) = recorder();
        let be = f.ev.backend_bind_interdomain(g, cb).unwrap();
        let stale = BackendPort {
            shared: be.shared.clone(),
            port: be.port,
            generation: be.generation,
        };
        be.close().unwrap();
        assert_eq!(
            f.ev.status(g).unwrap().detail,
            EvtchnStatusDetail::Unbound { dom: 0 }
        );
        assert_eq!(f.ev.send(&f.mem, g), Ok(()));
        // A new back end reuses the number; the stale handle does not reach it.
        let (_, cb) = recorder();
        let be2 = f.ev.backend_bind_interdomain(g, cb).unwrap();
        assert_eq!(be2.port(), stale.port());
        assert_eq!(stale.notify_guest(&f.mem), Err(XenErrno::EINVAL));
        assert_eq!(stale.close(), Err(XenErrno::EINVAL));
        assert_eq!(be2.guest_port(), Some(g));
    }

    #[test]
    fn test_backend_attach_after_restore_delivers_missed_send() {
        let f = fx();
        let g = f.ev.alloc_unbound(&f.mem, DOMID_BACKEND).unwrap();
        let (_, cb) = recorder();
        let be = f.ev.backend_bind_interdomain(g, cb).unwrap();
        let st = f.ev.state();
        let r = EventChannels::from_state(&st, f.layout.clone(), f.rec.clone()).unwrap();
        r.send(&f.mem, g).unwrap();
        assert!(r.state().backends[0].pending);
        let (log, cb) = recorder();
        assert_eq!(
            r.backend_attach(9, cb.clone()).unwrap_err(),
            XenErrno::ENOENT
        );
        let be2 = r.backend_attach(be.port(), cb.clone()).unwrap();
        assert_eq!(*log.lock().unwrap(), vec![be.port()]);
        assert_eq!(
            r.backend_attach(be.port(), cb).unwrap_err(),
            XenErrno::EBUSY
        );
        r.send(&f.mem, g).unwrap();
        assert_eq!(log.lock().unwrap().len(), 2);
        be2.notify_guest(&f.mem).unwrap();
        assert!(f.pending_bit(g));
    }

    #[test]
    fn test_backend_callback_may_reenter() {
        let f = Arc::new(fx());
        let g = f.ev.alloc_unbound(&f.mem, DOMID_BACKEND).unwrap();
        let f2 = f.clone();
        let cb: Arc<dyn BackendNotify> = Arc::new(move |_p: u32| {
            let _ = f2.ev.status(1);
        });
        let _be = f.ev.backend_bind_interdomain(g, cb).unwrap();
        f.ev.send(&f.mem, g).unwrap();
    }
}
