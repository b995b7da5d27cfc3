// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The operations on an allocated port: `EVTCHNOP_close`, `send`, `status`,
//! `bind_vcpu` and `unmask`, and `reset`, which closes them all.

use std::sync::Arc;

use vm_memory::GuestMemoryBackend;
use xen_abi::errno::XenErrno;
use xen_abi::event_channel::{EVTCHN_FIFO_PRIORITY_DEFAULT, EvtchnStat, EvtchnStatusDetail};
use xen_abi::xen::VirqKind;

use super::{EventChannels, Status, close_silently, virq_kind};
use crate::fifo::PortRef;
use crate::state::Binding;
use crate::{DOMID_BACKEND, twolevel};

impl EventChannels {
    /// `EVTCHNOP_close`: frees `port`, clearing its pending bit.
    ///
    /// A connected peer (loopback port or back end) reverts to unbound,
    /// accepting the guest again. A port out of range or not allocated
    /// (including port 0) is -EINVAL (QEMU says -ENOENT for the latter).
    pub fn close<M: GuestMemoryBackend>(&self, mem: &M, port: u32) -> Result<(), XenErrno> {
        self.shared
            .run(|inner, layout, _| inner.close(mem, layout, port))
    }

    /// `EVTCHNOP_send`: notifies the other end of `port`.
    ///
    /// Loopback: the peer port is raised. Back end: its callback runs (or,
    /// with no callback attached, the send is remembered until
    /// [`EventChannels::backend_attach`]). IPI: the port itself is raised.
    /// Unbound: dropped, success. Anything else, closed or out of range:
    /// -EINVAL.
    pub fn send<M: GuestMemoryBackend>(&self, mem: &M, port: u32) -> Result<(), XenErrno> {
        self.shared.run(|inner, layout, fx| {
            inner.check_port(layout, port)?;
            let p = inner.ports.get(&port).ok_or(XenErrno::EINVAL)?;
            match p.binding {
                Binding::Loopback { peer } => inner.raise(mem, layout, peer, fx),
                Binding::Ipi => inner.raise(mem, layout, port, fx),
                Binding::Unbound { .. } => {}
                Binding::Backend { backend_port } => {
                    if let Some(end) = inner.backends.get_mut(&backend_port) {
                        match &end.notify {
                            Some(cb) => fx.notify.push((Arc::clone(cb), backend_port)),
                            None => end.pending = true,
                        }
                    }
                }
                Binding::Virq(_) | Binding::Pirq(_) => return Err(XenErrno::EINVAL),
            }
            Ok(())
        })
    }

    /// `EVTCHNOP_status`: reports `port` (out of range -EINVAL; free ports
    /// and port 0 report closed with vCPU 0).
    pub fn status(&self, port: u32) -> Result<Status, XenErrno> {
        let inner = self.shared.lock();
        inner.check_port(&*self.shared.layout, port)?;
        let Some(p) = inner.ports.get(&port) else {
            return Ok(Status {
                state: EvtchnStat::Closed,
                vcpu: 0,
                detail: EvtchnStatusDetail::Closed,
            });
        };
        let detail = match p.binding {
            Binding::Unbound { remote_dom } => EvtchnStatusDetail::Unbound { dom: remote_dom },
            Binding::Loopback { peer } => EvtchnStatusDetail::Interdomain {
                dom: inner.config.domid,
                port: peer,
            },
            Binding::Backend { backend_port } => EvtchnStatusDetail::Interdomain {
                dom: DOMID_BACKEND,
                port: backend_port,
            },
            Binding::Virq(v) => EvtchnStatusDetail::Virq(v),
            Binding::Pirq(v) => EvtchnStatusDetail::Pirq(v),
            Binding::Ipi => EvtchnStatusDetail::Ipi,
        };
        Ok(Status {
            state: detail.stat(),
            vcpu: p.vcpu,
            detail,
        })
    }

    /// `EVTCHNOP_bind_vcpu`: changes the notify vCPU of `port`.
    ///
    /// Unknown vCPU -ENOENT (checked first, as in Xen); bad or free port,
    /// IPI and per-vCPU VIRQ -EINVAL. Unlike Xen (like QEMU), a pending,
    /// unmasked event is re-raised on the new vCPU, so an event whose old
    /// vCPU went offline is not lost; the extra upcall is harmless.
    pub fn bind_vcpu<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        port: u32,
        vcpu: u32,
    ) -> Result<(), XenErrno> {
        self.shared.run(|inner, layout, fx| {
            if vcpu >= layout.vcpus() {
                return Err(XenErrno::ENOENT);
            }
            inner.check_port(layout, port)?;
            let p = inner.ports.get_mut(&port).ok_or(XenErrno::EINVAL)?;
            match p.binding {
                Binding::Virq(v) if virq_kind(v) == VirqKind::PerVcpu => {
                    return Err(XenErrno::EINVAL);
                }
                Binding::Ipi => return Err(XenErrno::EINVAL),
                _ => {}
            }
            p.vcpu = vcpu;
            let (priority, ptr) = (p.priority, &mut p.fifo_pending);
            match &mut inner.fifo {
                None => twolevel::reraise(mem, layout, port, vcpu, fx),
                Some(fifo) => {
                    if fifo.is_pending(mem, port, *ptr) && fifo.word_gpa(port).is_some() {
                        fifo.set_pending(
                            mem,
                            layout,
                            port,
                            PortRef {
                                vcpu,
                                priority,
                                pending: ptr,
                            },
                            fx,
                        );
                    }
                }
            }
            Ok(())
        })
    }

    /// `EVTCHNOP_unmask`: clears the mask of `port` and re-raises it if
    /// pending (out of range -EINVAL; a free port is unmasked too, as in Xen).
    pub fn unmask<M: GuestMemoryBackend>(&self, mem: &M, port: u32) -> Result<(), XenErrno> {
        self.shared.run(|inner, layout, fx| {
            inner.check_port(layout, port)?;
            let mut scratch = false;
            let (vcpu, priority, pending) = match inner.ports.get_mut(&port) {
                Some(p) => (p.vcpu, p.priority, &mut p.fifo_pending),
                None => (0, EVTCHN_FIFO_PRIORITY_DEFAULT as u8, &mut scratch),
            };
            match &mut inner.fifo {
                None => twolevel::unmask(mem, layout, port, vcpu, fx),
                Some(fifo) => fifo.unmask(
                    mem,
                    layout,
                    port,
                    PortRef {
                        vcpu,
                        priority,
                        pending,
                    },
                    fx,
                ),
            }
            Ok(())
        })
    }

    /// `EVTCHNOP_reset`: closes every port (connected back ends revert to
    /// unbound) and reverts FIFO to 2-level.
    pub fn reset<M: GuestMemoryBackend>(&self, mem: &M) {
        self.shared.run(|inner, layout, _| {
            let ports: Vec<u32> = inner.ports.keys().copied().collect();
            for port in ports {
                if inner.close(mem, layout, port).is_err() {
                    // Above the current limit (layout switched to 32-bit):
                    // drop it without touching memory.
                    close_silently(inner, port);
                }
            }
            inner.fifo = None;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fx;
    use xen_abi::xen::{DOMID_SELF, DomId};

    /// The domain id of `fx()`.
    const OWN: DomId = 1;

    #[test]
    fn test_close_loopback_reverts_peer_to_unbound() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        let b = f.ev.bind_interdomain(&f.mem, DOMID_SELF, a).unwrap();
        f.ev.close(&f.mem, b).unwrap();
        assert!(!f.pending_bit(b));
        assert_eq!(
            f.ev.status(a).unwrap().detail,
            EvtchnStatusDetail::Unbound { dom: OWN }
        );
        assert_eq!(f.ev.status(b).unwrap().state, EvtchnStat::Closed);
        assert_eq!(f.ev.bind_interdomain(&f.mem, DOMID_SELF, a), Ok(b));
    }

    #[test]
    fn test_send_loopback_raises_peer_on_its_vcpu() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        f.ev.bind_vcpu(&f.mem, a, 2).unwrap();
        let b = f.ev.bind_interdomain(&f.mem, DOMID_SELF, a).unwrap();
        f.guest_clear_pending(b);
        f.take_upcalls();
        f.ev.send(&f.mem, b).unwrap();
        assert!(f.pending_bit(a));
        assert!(f.sel_bit(2, 0));
        assert_eq!(f.take_upcalls(), vec![2]);
        f.ev.send(&f.mem, a).unwrap();
        assert!(f.pending_bit(b));
    }

    #[test]
    fn test_send_ipi_across_vcpus_raises_target() {
        let f = fx();
        let p1 = f.ev.bind_ipi(&f.mem, 1).unwrap();
        let p3 = f.ev.bind_ipi(&f.mem, 3).unwrap();
        f.ev.send(&f.mem, p3).unwrap();
        assert_eq!(f.take_upcalls(), vec![3]);
        assert!(f.sel_bit(3, 0) && !f.sel_bit(1, 0) && !f.sel_bit(0, 0));
        assert_eq!(f.upcall_pending(3), 1);
        f.ev.send(&f.mem, p1).unwrap();
        assert_eq!(f.take_upcalls(), vec![1]);
        assert_eq!(f.ev.status(p1).unwrap().detail, EvtchnStatusDetail::Ipi);
        assert_eq!(f.ev.status(p1).unwrap().vcpu, 1);
    }

    #[test]
    fn test_send_unbound_dropped_ok() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        assert_eq!(f.ev.send(&f.mem, a), Ok(()));
        assert!(!f.pending_bit(a));
        assert!(f.take_upcalls().is_empty());
    }

    #[test]
    fn test_send_virq_pirq_closed_einval() {
        let f = fx();
        let v = f.ev.bind_virq(&f.mem, 0, 0).unwrap();
        let p = f.ev.bind_pirq(&f.mem, 3, false).unwrap();
        for port in [v, p, 0, 9, 4096, u32::MAX] {
            assert_eq!(
                f.ev.send(&f.mem, port),
                Err(XenErrno::EINVAL),
                "port {port}"
            );
        }
    }

    #[test]
    fn test_unmask_pending_port_redelivers() {
        let f = fx();
        let p = f.ev.bind_ipi(&f.mem, 1).unwrap();
        f.guest_mask(p, true);
        f.ev.send(&f.mem, p).unwrap();
        f.ev.unmask(&f.mem, p).unwrap();
        assert!(!f.mask_bit(p));
        assert!(f.sel_bit(1, 0));
        assert_eq!(f.take_upcalls(), vec![1]);
    }

    #[test]
    fn test_unmask_not_pending_or_not_masked_no_upcall() {
        let f = fx();
        let p = f.ev.bind_ipi(&f.mem, 1).unwrap();
        f.guest_mask(p, true);
        f.ev.unmask(&f.mem, p).unwrap();
        assert!(!f.mask_bit(p));
        f.ev.send(&f.mem, p).unwrap();
        f.take_upcalls();
        f.guest_clear_upcall(1);
        f.guest_clear_sel(1);
        // Not masked: Xen only re-raises if the mask bit was set.
        f.ev.unmask(&f.mem, p).unwrap();
        assert!(f.take_upcalls().is_empty());
        assert_eq!(f.ev.unmask(&f.mem, 4096), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.unmask(&f.mem, 77), Ok(()));
    }

    #[test]
    fn test_bind_vcpu_errnos() {
        let f = fx();
        let ipi = f.ev.bind_ipi(&f.mem, 0).unwrap();
        let timer = f.ev.bind_virq(&f.mem, 0, 0).unwrap();
        let unbound = f.ev.alloc_unbound(&f.mem, 0).unwrap();
        let pirq = f.ev.bind_pirq(&f.mem, 1, false).unwrap();
        assert_eq!(f.ev.bind_vcpu(&f.mem, 99, 9), Err(XenErrno::ENOENT));
        assert_eq!(f.ev.bind_vcpu(&f.mem, ipi, 1), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.bind_vcpu(&f.mem, timer, 1), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.bind_vcpu(&f.mem, 99, 1), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.bind_vcpu(&f.mem, 0, 1), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.bind_vcpu(&f.mem, 4096, 1), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.bind_vcpu(&f.mem, unbound, 1), Ok(()));
        assert_eq!(f.ev.bind_vcpu(&f.mem, pirq, 2), Ok(()));
        assert_eq!(f.ev.status(pirq).unwrap().vcpu, 2);
    }

    #[test]
    fn test_bind_vcpu_pending_event_reraised_on_new_vcpu() {
        let f = fx();
        let p = f.ev.bind_pirq(&f.mem, 1, false).unwrap();
        f.ev.raise_pirq(&f.mem, 1);
        assert_eq!(f.take_upcalls(), vec![0]);
        f.ev.bind_vcpu(&f.mem, p, 2).unwrap();
        assert!(f.sel_bit(2, 0));
        assert_eq!(f.take_upcalls(), vec![2]);
        // Masked: no re-raise.
        f.guest_mask(p, true);
        f.ev.bind_vcpu(&f.mem, p, 3).unwrap();
        assert!(f.take_upcalls().is_empty());
    }

    #[test]
    fn test_status_closed_and_out_of_range() {
        let f = fx();
        let s = f.ev.status(0).unwrap();
        assert_eq!(
            (s.state, s.vcpu, s.detail),
            (EvtchnStat::Closed, 0, EvtchnStatusDetail::Closed)
        );
        assert_eq!(f.ev.status(4095).unwrap().state, EvtchnStat::Closed);
        assert_eq!(f.ev.status(4096), Err(XenErrno::EINVAL));
    }

    #[test]
    fn test_close_errnos_and_clears_pending() {
        let f = fx();
        let p = f.ev.bind_ipi(&f.mem, 1).unwrap();
        f.guest_mask(p, true);
        f.ev.send(&f.mem, p).unwrap();
        assert_eq!(f.ev.close(&f.mem, 0), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.close(&f.mem, 4096), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.close(&f.mem, p), Ok(()));
        assert!(!f.pending_bit(p));
        assert!(f.mask_bit(p), "freeing leaves the mask alone");
        assert_eq!(f.ev.close(&f.mem, p), Err(XenErrno::EINVAL));
        // A new port starts on vCPU 0.
        let q = f.ev.alloc_unbound(&f.mem, 0).unwrap();
        assert_eq!((q, f.ev.status(q).unwrap().vcpu), (p, 0));
    }

    #[test]
    fn test_reset_closes_everything() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        let b = f.ev.bind_interdomain(&f.mem, DOMID_SELF, a).unwrap();
        f.ev.bind_virq(&f.mem, 0, 1).unwrap();
        f.ev.bind_pirq(&f.mem, 4, false).unwrap();
        f.ev.reset(&f.mem);
        assert!(f.ev.list(&f.mem).is_empty());
        assert!(!f.pending_bit(b));
        assert_eq!(f.ev.bind_virq(&f.mem, 0, 1), Ok(1));
        assert_eq!(f.ev.bind_pirq(&f.mem, 4, false), Ok(2));
    }
}
