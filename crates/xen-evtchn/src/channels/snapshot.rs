// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Snapshots of the port table: [`EventChannels::state`] and
//! [`EventChannels::from_state`], which checks every port, back end and
//! FIFO field of a snapshot before rebuilding the table from it.

use std::sync::Arc;

use xen_abi::event_channel::{
    EVTCHN_2L_NR_CHANNELS, EVTCHN_FIFO_LINK_MASK, EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES,
    EVTCHN_FIFO_NR_CHANNELS, EVTCHN_FIFO_PRIORITY_MIN,
};
use xen_abi::xen::NR_VIRQS;

use super::{BACKEND_MAX_PORT, BackendEnd, EventChannels, Inner, virq_key};
use crate::fifo::Fifo;
use crate::state::{BackendState, Binding, FifoState, PortState, State};
use crate::{Error, GuestLayout, Upcall};

impl Inner {
    fn export(&self) -> State {
        State {
            config: self.config,
            ports: self
                .ports
                .iter()
                .map(|(&port, p)| PortState {
                    port,
                    binding: p.binding,
                    vcpu: p.vcpu,
                    priority: p.priority,
                    fifo_pending: p.fifo_pending,
                })
                .collect(),
            backends: self
                .backends
                .iter()
                .map(|(&port, b)| BackendState {
                    port,
                    guest_port: b.guest_port,
                    pending: b.pending,
                })
                .collect(),
            fifo: self.fifo.as_ref().map(|f| FifoState {
                control: f.control.clone(),
                tails: f.tails.clone(),
                array_pages: f.pages.clone(),
            }),
        }
    }

    fn import(state: &State, vcpus: u32) -> crate::Result<Self> {
        state.config.validate()?;
        let mut inner = Inner::new(state.config);
        // A 2-level table never allocates beyond the 64-bit layout's limit.
        let abi_max = if state.fifo.is_some() {
            EVTCHN_FIFO_NR_CHANNELS
        } else {
            EVTCHN_2L_NR_CHANNELS
        };
        let max = state.config.max_evtchn_port.min(abi_max - 1);
        for p in &state.ports {
            if p.port == 0 || p.port > max || inner.ports.contains_key(&p.port) {
                return Err(Error::InvalidPort(p.port));
            }
            if p.vcpu >= vcpus {
                return Err(Error::InvalidVcpu(p.port));
            }
            if u32::from(p.priority) > EVTCHN_FIFO_PRIORITY_MIN {
                return Err(Error::InvalidPriority(p.port));
            }
            let bad = match p.binding {
                Binding::Virq(virq) => {
                    virq >= NR_VIRQS || inner.virqs.contains_key(&virq_key(virq, p.vcpu))
                }
                Binding::Pirq(pirq) => {
                    pirq >= state.config.nr_pirqs || inner.pirqs.contains_key(&pirq)
                }
                _ => false,
            };
            if bad {
                return Err(Error::InvalidBinding(p.port));
            }
            inner.insert(p.port, p.binding, p.vcpu);
            if let Some(port) = inner.ports.get_mut(&p.port) {
                port.priority = p.priority;
                port.fifo_pending = p.fifo_pending;
            }
        }
        for b in &state.backends {
            if b.port == 0 || b.port > BACKEND_MAX_PORT || inner.backends.contains_key(&b.port) {
                return Err(Error::InvalidPort(b.port));
            }
            inner.generation += 1;
            inner.backends.insert(
                b.port,
                BackendEnd {
                    guest_port: b.guest_port,
                    pending: b.pending,
                    notify: None,
                    generation: inner.generation,
                },
            );
        }
        for (&port, p) in &inner.ports {
            let ok = match p.binding {
                Binding::Loopback { peer } => {
                    peer != port
                        && inner.ports.get(&peer).map(|q| q.binding)
                            == Some(Binding::Loopback { peer: port })
                }
                Binding::Backend { backend_port } => {
                    inner.backends.get(&backend_port).map(|b| b.guest_port) == Some(Some(port))
                }
                _ => true,
            };
            if !ok {
                return Err(Error::InconsistentPeer(port));
            }
        }
        for (&bport, b) in &inner.backends {
            if let Some(g) = b.guest_port
                && inner.ports.get(&g).map(|p| p.binding)
                    != Some(Binding::Backend {
                        backend_port: bport,
                    })
            {
                return Err(Error::InconsistentPeer(g));
            }
        }
        if let Some(f) = &state.fifo {
            if f.control.len() != f.tails.len()
                || f.control.len() > vcpus as usize
                || f.array_pages.len() > EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES as usize
                || f.tails.iter().flatten().any(|&t| t > EVTCHN_FIFO_LINK_MASK)
            {
                return Err(Error::InvalidFifo);
            }
            inner.fifo = Some(Fifo {
                control: f.control.clone(),
                tails: f.tails.clone(),
                pages: f.array_pages.clone(),
            });
        }
        Ok(inner)
    }
}

impl EventChannels {
    /// Returns the snapshot state (guest-memory bits are not included).
    pub fn state(&self) -> State {
        self.shared.lock().export()
    }

    /// Rebuilds event channels from a snapshot, after validating it
    /// (against `layout`'s vCPU count too).
    ///
    /// Back ends are restored without callbacks; each device reclaims its
    /// end with [`EventChannels::backend_attach`].
    pub fn from_state(
        state: &State,
        layout: Arc<dyn GuestLayout>,
        upcall: Arc<dyn Upcall>,
    ) -> crate::Result<Self> {
        let inner = Inner::import(state, layout.vcpus())?;
        Ok(Self::with_inner(inner, layout, upcall))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fx;
    use xen_abi::xen::{DOMID_SELF, Virq};

    #[test]
    fn test_state_round_trip_behaves_the_same() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        let _b = f.ev.bind_interdomain(&f.mem, DOMID_SELF, a).unwrap();
        f.ev.bind_virq(&f.mem, 0, 2).unwrap();
        f.ev.bind_pirq(&f.mem, 7, false).unwrap();
        let ipi = f.ev.bind_ipi(&f.mem, 3).unwrap();
        f.ev.alloc_unbound(&f.mem, 0).unwrap();
        f.ev.close(&f.mem, 1).unwrap();
        let state = f.ev.state();

        let g = fx();
        let restored = EventChannels::from_state(&state, g.layout.clone(), g.rec.clone()).unwrap();
        assert_eq!(restored.state(), state);
        // Same memory on both sides, then the same operations.
        let mut buf = vec![0u8; 0x2000];
        vm_memory::Bytes::read_slice(&f.mem, &mut buf, vm_memory::GuestAddress(0)).unwrap();
        vm_memory::Bytes::write_slice(&g.mem, &buf, vm_memory::GuestAddress(0)).unwrap();
        f.take_upcalls();
        for (ev, mem) in [(&f.ev, &f.mem), (&restored, &g.mem)] {
            assert_eq!(ev.send(mem, ipi), Ok(()));
            assert_eq!(ev.alloc_unbound(mem, DOMID_SELF), Ok(1));
            assert_eq!(ev.bind_interdomain(mem, DOMID_SELF, 1), Ok(7));
            assert!(ev.raise_virq(mem, Virq::Timer, 2));
        }
        let mut other = vec![0u8; 0x2000];
        vm_memory::Bytes::read_slice(&f.mem, &mut buf, vm_memory::GuestAddress(0)).unwrap();
        vm_memory::Bytes::read_slice(&g.mem, &mut other, vm_memory::GuestAddress(0)).unwrap();
        assert_eq!(buf, other);
        assert_eq!(f.ev.state(), restored.state());
        assert_eq!(f.take_upcalls(), g.take_upcalls());
    }

    #[test]
    fn test_from_state_inconsistent_rejected() {
        let f = fx();
        let a = f.ev.alloc_unbound(&f.mem, DOMID_SELF).unwrap();
        f.ev.bind_interdomain(&f.mem, DOMID_SELF, a).unwrap();
        f.ev.bind_pirq(&f.mem, 3, false).unwrap();
        let good = f.ev.state();
        let l = f.layout.clone();
        let up = f.rec.clone();
        let check = |s: &State, e: Error| {
            assert_eq!(
                EventChannels::from_state(s, l.clone(), up.clone()).unwrap_err(),
                e
            );
        };
        let mut s = good.clone();
        s.ports[0].binding = Binding::Loopback { peer: 3 };
        check(&s, Error::InconsistentPeer(1));
        let mut s = good.clone();
        s.ports[1].port = 1;
        check(&s, Error::InvalidPort(1));
        let mut s = good.clone();
        s.ports[0].port = 0;
        check(&s, Error::InvalidPort(0));
        let mut s = good.clone();
        s.ports[2].binding = Binding::Pirq(999);
        check(&s, Error::InvalidBinding(3));
        let mut s = good.clone();
        s.ports[2].priority = 16;
        check(&s, Error::InvalidPriority(3));
        let mut s = good.clone();
        s.ports[2].binding = Binding::Backend { backend_port: 1 };
        check(&s, Error::InconsistentPeer(3));
        let mut s = good.clone();
        s.config.domid = 0;
        check(&s, Error::InvalidDomid(0));
        let mut s = good.clone();
        s.fifo = Some(FifoState {
            control: vec![None],
            tails: vec![],
            array_pages: vec![],
        });
        check(&s, Error::InvalidFifo);
        // More FIFO control blocks than vCPUs.
        let mut s = good.clone();
        s.fifo = Some(FifoState {
            control: vec![None; 5],
            tails: vec![[0; 16]; 5],
            array_pages: vec![],
        });
        check(&s, Error::InvalidFifo);
        // A port notifying a vCPU the domain does not have.
        let mut s = good.clone();
        s.ports[2].vcpu = 4;
        check(&s, Error::InvalidVcpu(3));
        // A 2-level table with a port beyond the 2-level limit.
        let mut s = good.clone();
        s.ports[2].port = 4096;
        check(&s, Error::InvalidPort(4096));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn test_state_serde_traits_implemented() {
        fn assert_serde<T: serde::Serialize + serde::de::DeserializeOwned>() {}
        assert_serde::<State>();
    }
}
