// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What the VMM calls outside the guest's hypercalls: raising the port of a
//! VIRQ or PIRQ, injecting an event, and inspecting the table (pending
//! bits, [`EventChannels::list`], [`EventChannels::virq_port`]).

use vm_memory::GuestMemoryBackend;
use xen_abi::errno::XenErrno;
use xen_abi::xen::Virq;

use super::{EventChannels, PortInfo, virq_key};

impl EventChannels {
    /// Raises the port bound to `virq` (for `vcpu` if the VIRQ is per-vCPU);
    /// returns whether one is bound.
    pub fn raise_virq<M: GuestMemoryBackend>(&self, mem: &M, virq: Virq, vcpu: u32) -> bool {
        self.shared.run(|inner, layout, fx| {
            let Some(&port) = inner.virqs.get(&virq_key(virq.raw(), vcpu)) else {
                return false;
            };
            inner.raise(mem, layout, port, fx);
            true
        })
    }

    /// Raises the port bound to `pirq`; returns whether one is bound.
    pub fn raise_pirq<M: GuestMemoryBackend>(&self, mem: &M, pirq: u32) -> bool {
        self.shared.run(|inner, layout, fx| {
            let Some(&port) = inner.pirqs.get(&pirq) else {
                return false;
            };
            inner.raise(mem, layout, port, fx);
            true
        })
    }

    /// Returns the port bound to `virq` (for `vcpu` if per-vCPU).
    pub fn virq_port(&self, virq: Virq, vcpu: u32) -> Option<u32> {
        self.shared
            .lock()
            .virqs
            .get(&virq_key(virq.raw(), vcpu))
            .copied()
    }

    /// Sets `port` pending as if its sender had sent (debugging and tests).
    /// Out of range or free: -EINVAL.
    pub fn inject<M: GuestMemoryBackend>(&self, mem: &M, port: u32) -> Result<(), XenErrno> {
        self.shared.run(|inner, layout, fx| {
            inner.check_port(layout, port)?;
            if !inner.ports.contains_key(&port) {
                return Err(XenErrno::EINVAL);
            }
            inner.raise(mem, layout, port, fx);
            Ok(())
        })
    }

    /// True if `port` is pending (for `SCHEDOP_poll`); masked ports count.
    pub fn pending<M: GuestMemoryBackend>(&self, mem: &M, port: u32) -> bool {
        self.shared
            .lock()
            .is_pending(mem, &*self.shared.layout, port)
    }

    /// True if any of `ports` is pending.
    pub fn is_pending_any<M: GuestMemoryBackend>(&self, mem: &M, ports: &[u32]) -> bool {
        let inner = self.shared.lock();
        ports
            .iter()
            .any(|&p| inner.is_pending(mem, &*self.shared.layout, p))
    }

    /// Lists the allocated ports, with pending and mask bits read from guest
    /// memory.
    pub fn list<M: GuestMemoryBackend>(&self, mem: &M) -> Vec<PortInfo> {
        let inner = self.shared.lock();
        let layout = &*self.shared.layout;
        inner
            .ports
            .iter()
            .map(|(&port, p)| PortInfo {
                port,
                binding: p.binding,
                vcpu: p.vcpu,
                pending: inner.is_pending(mem, layout, port),
                masked: inner.is_masked(mem, layout, port),
                priority: p.priority,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Binding;
    use crate::testing::fx;

    #[test]
    fn test_raise_virq_global_uses_notify_vcpu() {
        let f = fx();
        let p = f.ev.bind_virq(&f.mem, Virq::Console.raw(), 0).unwrap();
        f.ev.bind_vcpu(&f.mem, p, 3).unwrap();
        assert!(f.ev.raise_virq(&f.mem, Virq::Console, 1));
        assert_eq!(f.take_upcalls(), vec![3]);
        f.ev.close(&f.mem, p).unwrap();
        assert!(!f.ev.raise_virq(&f.mem, Virq::Console, 0));
        assert_eq!(f.ev.bind_virq(&f.mem, Virq::Console.raw(), 0), Ok(p));
    }

    #[test]
    fn test_inject_pending_list() {
        let f = fx();
        let a = f.ev.bind_ipi(&f.mem, 1).unwrap();
        let b = f.ev.alloc_unbound(&f.mem, 0).unwrap();
        f.guest_mask(b, true);
        assert_eq!(f.ev.inject(&f.mem, 50), Err(XenErrno::EINVAL));
        f.ev.inject(&f.mem, b).unwrap();
        assert!(f.ev.pending(&f.mem, b));
        assert!(!f.ev.pending(&f.mem, a));
        assert!(f.ev.is_pending_any(&f.mem, &[a, b]));
        assert!(!f.ev.is_pending_any(&f.mem, &[a, 9999]));
        let l = f.ev.list(&f.mem);
        assert_eq!(l.len(), 2);
        assert_eq!(
            l[1],
            PortInfo {
                port: b,
                binding: Binding::Unbound { remote_dom: 0 },
                vcpu: 0,
                pending: true,
                masked: true,
                priority: 7
            }
        );
        assert_eq!(l[0].binding, Binding::Ipi);
    }

    #[test]
    fn test_list_port_beyond_compat_limit_is_masked_not_read_past_bitmap() {
        let f = fx();
        let mut last = 0;
        for _ in 0..1030 {
            last = f.ev.bind_ipi(&f.mem, 0).unwrap();
        }
        assert_eq!(last, 1030);
        // Bits right after the 32-bit layout's mask array (at 2176 + 128):
        // what a read of port 1030's mask would find there.
        f.write_u32(crate::testing::SHINFO + 2176 + 128, 0);
        f.layout
            .long
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let l = f.ev.list(&f.mem);
        let p = l.iter().find(|p| p.port == last).unwrap();
        assert!(p.masked && !p.pending, "{p:?}");
    }
}
