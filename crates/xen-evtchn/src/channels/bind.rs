// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The operations that allocate a port: `EVTCHNOP_alloc_unbound`,
//! `bind_interdomain`, `bind_virq`, `bind_ipi` and `bind_pirq`.

use vm_memory::GuestMemoryBackend;
use xen_abi::errno::XenErrno;
use xen_abi::xen::{DOMID_SELF, DomId, NR_VIRQS, VirqKind};

use super::{EventChannels, virq_key, virq_kind};
use crate::DOMID_BACKEND;
use crate::state::Binding;

impl EventChannels {
    /// `EVTCHNOP_alloc_unbound`: allocates a port that `remote_dom` may
    /// connect to, notifying vCPU 0.
    ///
    /// `DOMID_SELF` means the guest itself (loopback). Like Xen, any other
    /// `remote_dom` is accepted and only recorded (QEMU refuses all but self
    /// and 0 with -EPERM); only the guest and [`DOMID_BACKEND`] can ever
    /// connect. Full table: -ENOSPC.
    pub fn alloc_unbound<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        remote_dom: DomId,
    ) -> Result<u32, XenErrno> {
        self.shared.run(|inner, layout, _| {
            let port = inner.free_port(mem, layout)?;
            let remote_dom = if remote_dom == DOMID_SELF {
                inner.config.domid
            } else {
                remote_dom
            };
            inner.insert(port, Binding::Unbound { remote_dom }, 0);
            Ok(port)
        })
    }

    /// `EVTCHNOP_bind_interdomain`: connects a new local port to
    /// `remote_port` of `remote_dom` and sets the new port pending.
    ///
    /// `remote_dom` is the guest itself (`DOMID_SELF` or its id: loopback) or
    /// [`DOMID_BACKEND`] (a back end's unbound port); any other domain is
    /// -ESRCH. A full table is -ENOSPC (checked first, as in Xen); a remote
    /// port that is not unbound or does not accept the guest is -EINVAL.
    pub fn bind_interdomain<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        remote_dom: DomId,
        remote_port: u32,
    ) -> Result<u32, XenErrno> {
        self.shared.run(|inner, layout, fx| {
            let own = inner.config.domid;
            let loopback = remote_dom == DOMID_SELF || remote_dom == own;
            if !loopback && remote_dom != DOMID_BACKEND {
                return Err(XenErrno::ESRCH);
            }
            let lport = inner.free_port(mem, layout)?;
            if loopback {
                inner.check_port(layout, remote_port)?;
                let remote = inner.ports.get_mut(&remote_port).ok_or(XenErrno::EINVAL)?;
                if remote.binding != (Binding::Unbound { remote_dom: own }) {
                    return Err(XenErrno::EINVAL);
                }
                remote.binding = Binding::Loopback { peer: lport };
                inner.insert(lport, Binding::Loopback { peer: remote_port }, 0);
            } else {
                let end = inner
                    .backends
                    .get_mut(&remote_port)
                    .filter(|e| e.guest_port.is_none())
                    .ok_or(XenErrno::EINVAL)?;
                end.guest_port = Some(lport);
                inner.insert(
                    lport,
                    Binding::Backend {
                        backend_port: remote_port,
                    },
                    0,
                );
            }
            inner.raise(mem, layout, lport, fx);
            Ok(lport)
        })
    }

    /// `EVTCHNOP_bind_virq`: binds `virq` (raw number) for `vcpu`.
    ///
    /// Checks, in Xen's order: `virq` >= `NR_VIRQS` -EINVAL; a global or
    /// per-domain VIRQ on a vCPU other than 0 -EINVAL; unknown vCPU -ENOENT;
    /// already bound (for that vCPU) -EEXIST; full table -ENOSPC. Numbers
    /// without a name are treated as global. The guest may bind every global
    /// VIRQ: the VMM plays the role of Xen's global VIRQ handler.
    pub fn bind_virq<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        virq: u32,
        vcpu: u32,
    ) -> Result<u32, XenErrno> {
        self.shared.run(|inner, layout, _| {
            if virq >= NR_VIRQS {
                return Err(XenErrno::EINVAL);
            }
            if virq_kind(virq) != VirqKind::PerVcpu && vcpu != 0 {
                return Err(XenErrno::EINVAL);
            }
            if vcpu >= layout.vcpus() {
                return Err(XenErrno::ENOENT);
            }
            if inner.virqs.contains_key(&virq_key(virq, vcpu)) {
                return Err(XenErrno::EEXIST);
            }
            let port = inner.free_port(mem, layout)?;
            inner.insert(port, Binding::Virq(virq), vcpu);
            Ok(port)
        })
    }

    /// `EVTCHNOP_bind_ipi`: allocates a port notifying `vcpu` (unknown vCPU
    /// -ENOENT, full table -ENOSPC).
    pub fn bind_ipi<M: GuestMemoryBackend>(&self, mem: &M, vcpu: u32) -> Result<u32, XenErrno> {
        self.shared.run(|inner, layout, _| {
            if vcpu >= layout.vcpus() {
                return Err(XenErrno::ENOENT);
            }
            let port = inner.free_port(mem, layout)?;
            inner.insert(port, Binding::Ipi, vcpu);
            Ok(port)
        })
    }

    /// `EVTCHNOP_bind_pirq`: binds `pirq`, notifying vCPU 0.
    ///
    /// `pirq` >= `nr_pirqs` -EINVAL; already bound -EEXIST (Xen; QEMU says
    /// -EBUSY); full table -ENOSPC. `will_share` only matters for PV
    /// domains in Xen and is ignored.
    pub fn bind_pirq<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        pirq: u32,
        will_share: bool,
    ) -> Result<u32, XenErrno> {
        let _ = will_share;
        self.shared.run(|inner, layout, _| {
            if pirq >= inner.config.nr_pirqs {
                return Err(XenErrno::EINVAL);
            }
            if inner.pirqs.contains_key(&pirq) {
                return Err(XenErrno::EEXIST);
            }
            let port = inner.free_port(mem, layout)?;
            inner.insert(port, Binding::Pirq(pirq), 0);
            Ok(port)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::testing::{fx, fx_with};
    use xen_abi::event_channel::{EvtchnStat, EvtchnStatusDetail};
    use xen_abi::xen::Virq;

    /// The domain id of `fx()`.
    const OWN: DomId = 1;

    #[test]
    fn test_alloc_unbound_lowest_free_port_first() {
        let f = fx();
        assert_eq!(f.ev.alloc_unbound(&f.mem, DOMID_SELF), Ok(1));
        assert_eq!(f.ev.alloc_unbound(&f.mem, DOMID_SELF), Ok(2));
        assert_eq!(f.ev.alloc_unbound(&f.mem, DOMID_SELF), Ok(3));
        f.ev.close(&f.mem, 2).unwrap();
        assert_eq!(f.ev.alloc_unbound(&f.mem, DOMID_SELF), Ok(2));
    }

    #[test]
    fn test_alloc_unbound_remote_dom_recorded() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        let b = f.ev.alloc_unbound(&f.mem, 5).unwrap();
        let s = f.ev.status(a).unwrap();
        assert_eq!(s.detail, EvtchnStatusDetail::Unbound { dom: OWN });
        assert_eq!((s.state, s.vcpu), (EvtchnStat::Unbound, 0));
        assert_eq!(
            f.ev.status(b).unwrap().detail,
            EvtchnStatusDetail::Unbound { dom: 5 }
        );
    }

    #[test]
    fn test_alloc_unbound_full_table_enospc() {
        let mut c = Config::new(OWN);
        c.max_evtchn_port = 3;
        let f = fx_with(true, 1, c);
        for p in 1..=3 {
            assert_eq!(f.ev.alloc_unbound(&f.mem, 0), Ok(p));
        }
        assert_eq!(f.ev.alloc_unbound(&f.mem, 0), Err(XenErrno::ENOSPC));
        assert_eq!(f.ev.bind_ipi(&f.mem, 0), Err(XenErrno::ENOSPC));
        assert_eq!(f.ev.status(4), Err(XenErrno::EINVAL));
    }

    #[test]
    fn test_alloc_unbound_compat_layout_limit_1024() {
        let f = fx_with(false, 1, Config::new(OWN));
        for p in 1..1024 {
            assert_eq!(f.ev.bind_ipi(&f.mem, 0), Ok(p));
        }
        assert_eq!(f.ev.bind_ipi(&f.mem, 0), Err(XenErrno::ENOSPC));
        assert_eq!(f.ev.send(&f.mem, 1024), Err(XenErrno::EINVAL));
    }

    #[test]
    fn test_bind_interdomain_loopback_new_port_pending() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        let b = f.ev.bind_interdomain(&f.mem, DOMID_SELF, a).unwrap();
        assert_eq!(b, 2);
        assert!(f.pending_bit(b));
        assert!(!f.pending_bit(a));
        assert!(f.sel_bit(0, 0));
        assert_eq!(f.take_upcalls(), vec![0]);
        assert_eq!(
            f.ev.status(a).unwrap().detail,
            EvtchnStatusDetail::Interdomain { dom: OWN, port: b }
        );
        assert_eq!(
            f.ev.status(b).unwrap().detail,
            EvtchnStatusDetail::Interdomain { dom: OWN, port: a }
        );
    }

    #[test]
    fn test_bind_interdomain_own_domid_is_loopback() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, OWN).unwrap();
        assert_eq!(f.ev.bind_interdomain(&f.mem, OWN, a), Ok(2));
    }

    #[test]
    fn test_bind_interdomain_bad_remote_errnos() {
        let f = fx();
        let other = f.ev.alloc_unbound(&f.mem, 5).unwrap();
        let ipi = f.ev.bind_ipi(&f.mem, 0).unwrap();
        assert_eq!(
            f.ev.bind_interdomain(&f.mem, 9, other),
            Err(XenErrno::ESRCH)
        );
        assert_eq!(
            f.ev.bind_interdomain(&f.mem, DOMID_SELF, other),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            f.ev.bind_interdomain(&f.mem, DOMID_SELF, ipi),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            f.ev.bind_interdomain(&f.mem, DOMID_SELF, 40),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            f.ev.bind_interdomain(&f.mem, DOMID_SELF, 5000),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(f.ev.bind_interdomain(&f.mem, 0, 1), Err(XenErrno::EINVAL));
        // Nothing was allocated by the failures.
        assert_eq!(f.ev.list(&f.mem).len(), 2);
    }

    #[test]
    fn test_bind_interdomain_full_table_enospc_first() {
        let mut c = Config::new(OWN);
        c.max_evtchn_port = 1;
        let f = fx_with(true, 1, c);
        f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        assert_eq!(
            f.ev.bind_interdomain(&f.mem, DOMID_SELF, 1),
            Err(XenErrno::ENOSPC)
        );
    }

    #[test]
    fn test_bind_interdomain_loopback_twice_einval() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        f.ev.bind_interdomain(&f.mem, DOMID_SELF, a).unwrap();
        assert_eq!(
            f.ev.bind_interdomain(&f.mem, DOMID_SELF, a),
            Err(XenErrno::EINVAL)
        );
    }

    #[test]
    fn test_bind_virq_errnos() {
        let f = fx();
        assert_eq!(f.ev.bind_virq(&f.mem, 24, 0), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.bind_virq(&f.mem, u32::MAX, 0), Err(XenErrno::EINVAL));
        assert_eq!(
            f.ev.bind_virq(&f.mem, Virq::Console.raw(), 1),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            f.ev.bind_virq(&f.mem, Virq::Argo.raw(), 2),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            f.ev.bind_virq(&f.mem, Virq::Timer.raw(), 4),
            Err(XenErrno::ENOENT)
        );
        assert_eq!(f.ev.bind_virq(&f.mem, Virq::Console.raw(), 0), Ok(1));
        assert_eq!(
            f.ev.bind_virq(&f.mem, Virq::Console.raw(), 0),
            Err(XenErrno::EEXIST)
        );
        assert_eq!(f.ev.bind_virq(&f.mem, 5, 0), Ok(2));
    }

    #[test]
    fn test_bind_virq_per_vcpu_on_each_vcpu() {
        let f = fx();
        for v in 0..4 {
            assert_eq!(f.ev.bind_virq(&f.mem, Virq::Timer.raw(), v), Ok(v + 1));
        }
        assert_eq!(
            f.ev.bind_virq(&f.mem, Virq::Timer.raw(), 2),
            Err(XenErrno::EEXIST)
        );
        assert_eq!(f.ev.virq_port(Virq::Timer, 2), Some(3));
        assert!(f.ev.raise_virq(&f.mem, Virq::Timer, 2));
        assert!(f.pending_bit(3));
        assert_eq!(f.take_upcalls(), vec![2]);
        assert!(!f.ev.raise_virq(&f.mem, Virq::Debug, 2));
        let s = f.ev.status(3).unwrap();
        assert_eq!((s.detail, s.vcpu), (EvtchnStatusDetail::Virq(0), 2));
    }

    #[test]
    fn test_bind_pirq_errnos_and_raise() {
        let f = fx();
        assert_eq!(f.ev.bind_pirq(&f.mem, 256, false), Err(XenErrno::EINVAL));
        let p = f.ev.bind_pirq(&f.mem, 9, true).unwrap();
        assert_eq!(f.ev.bind_pirq(&f.mem, 9, false), Err(XenErrno::EEXIST));
        assert_eq!(f.ev.status(p).unwrap().detail, EvtchnStatusDetail::Pirq(9));
        assert!(f.ev.raise_pirq(&f.mem, 9));
        assert!(!f.ev.raise_pirq(&f.mem, 10));
        assert_eq!(f.take_upcalls(), vec![0]);
    }

    #[test]
    fn test_bind_ipi_unknown_vcpu_enoent() {
        let f = fx();
        assert_eq!(f.ev.bind_ipi(&f.mem, 4), Err(XenErrno::ENOENT));
    }
}
