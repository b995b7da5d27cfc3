// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The FIFO ABI's own operations: `EVTCHNOP_init_control` (which switches
//! the domain to FIFO), `expand_array` and `set_priority`.

use vm_memory::GuestMemoryBackend;
use xen_abi::errno::XenErrno;
use xen_abi::event_channel::{
    EVTCHN_FIFO_EVENT_WORDS_PER_PAGE, EVTCHN_FIFO_LINK_BITS, EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES,
    EVTCHN_FIFO_PRIORITY_DEFAULT, EVTCHN_FIFO_PRIORITY_MIN,
};
use xen_abi::x86::PAGE_SIZE;

use super::EventChannels;
use crate::fifo::Fifo;
use crate::twolevel;

/// Size of the FIFO control block.
const CONTROL_BLOCK_SIZE: u32 = 72;

impl EventChannels {
    /// `EVTCHNOP_init_control`: registers `vcpu`'s FIFO control block at
    /// byte `offset` of `control_gfn`; the first call switches the domain
    /// to FIFO, carrying pending 2-level bits over. Returns `link_bits` (17).
    ///
    /// Unknown vCPU -ENOENT; block crossing the page or `offset` not
    /// 8-aligned -EINVAL; vCPU already registered -EINVAL; `control_gfn` not
    /// RAM -EINVAL.
    pub fn init_control<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        control_gfn: u64,
        offset: u32,
        vcpu: u32,
    ) -> Result<u8, XenErrno> {
        self.shared.run(|inner, layout, _| {
            if vcpu >= layout.vcpus() {
                return Err(XenErrno::ENOENT);
            }
            if offset > PAGE_SIZE as u32 - CONTROL_BLOCK_SIZE || !offset.is_multiple_of(8) {
                return Err(XenErrno::EINVAL);
            }
            if inner
                .fifo
                .as_ref()
                .and_then(|f| f.control.get(vcpu as usize))
                .is_some_and(Option::is_some)
            {
                return Err(XenErrno::EINVAL);
            }
            let page = page_gpa(mem, control_gfn).ok_or(XenErrno::EINVAL)?;
            if inner.fifo.is_none() {
                let fifo = Fifo::new(layout.vcpus());
                for (&port, p) in inner.ports.iter_mut() {
                    p.priority = EVTCHN_FIFO_PRIORITY_DEFAULT as u8;
                    p.fifo_pending = twolevel::is_pending(mem, layout, port);
                }
                inner.fifo = Some(fifo);
            }
            let Some(fifo) = inner.fifo.as_mut() else {
                return Err(XenErrno::EINVAL);
            };
            let v = vcpu as usize;
            if fifo.control.len() <= v {
                fifo.control.resize(v + 1, None);
                fifo.tails.resize(v + 1, Default::default());
            }
            fifo.control[v] = Some(page + u64::from(offset));
            Ok(EVTCHN_FIFO_LINK_BITS as u8)
        })
    }

    /// `EVTCHNOP_expand_array`: adds the next event-array page and raises
    /// the ports of that page that became pending while it was missing.
    ///
    /// Before `init_control` -EOPNOTSUPP; 128 pages already -ENOSPC;
    /// `array_gfn` not RAM -EINVAL.
    pub fn expand_array<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        array_gfn: u64,
    ) -> Result<(), XenErrno> {
        self.shared.run(|inner, layout, fx| {
            let fifo = inner.fifo.as_mut().ok_or(XenErrno::EOPNOTSUPP)?;
            if fifo.pages.len() >= EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES as usize {
                return Err(XenErrno::ENOSPC);
            }
            let page = page_gpa(mem, array_gfn).ok_or(XenErrno::EINVAL)?;
            let first = fifo.pages.len() as u32 * EVTCHN_FIFO_EVENT_WORDS_PER_PAGE;
            fifo.pages.push(page);
            let waiting: Vec<u32> = inner
                .ports
                .range(first..first + EVTCHN_FIFO_EVENT_WORDS_PER_PAGE)
                .filter(|(_, p)| p.fifo_pending)
                .map(|(&port, _)| port)
                .collect();
            for port in waiting {
                if let Some(p) = inner.ports.get_mut(&port) {
                    p.fifo_pending = false;
                }
                inner.raise(mem, layout, port, fx);
            }
            Ok(())
        })
    }

    /// `EVTCHNOP_set_priority`: sets the FIFO queue of `port` for future
    /// raises. Bad port -EINVAL; 2-level -ENOSYS; priority > 15 -EINVAL.
    pub fn set_priority(&self, port: u32, priority: u32) -> Result<(), XenErrno> {
        self.shared.run(|inner, layout, _| {
            inner.check_port(layout, port)?;
            if inner.fifo.is_none() {
                return Err(XenErrno::ENOSYS);
            }
            if priority > EVTCHN_FIFO_PRIORITY_MIN {
                return Err(XenErrno::EINVAL);
            }
            if let Some(p) = inner.ports.get_mut(&port) {
                p.priority = priority as u8;
            }
            Ok(())
        })
    }
}

/// Guest-physical address of page `gfn` if the whole page is RAM.
fn page_gpa<M: GuestMemoryBackend>(mem: &M, gfn: u64) -> Option<u64> {
    let gpa = gfn.checked_mul(PAGE_SIZE)?;
    gpa.checked_add(PAGE_SIZE)?;
    mem.check_range(vm_memory::GuestAddress(gpa), PAGE_SIZE as usize)
        .then_some(gpa)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fx;

    #[test]
    fn test_set_priority_two_level_enosys() {
        let f = fx();
        let p = f.ev.bind_ipi(&f.mem, 0).unwrap();
        assert_eq!(f.ev.set_priority(p, 3), Err(XenErrno::ENOSYS));
        assert_eq!(f.ev.set_priority(4096, 3), Err(XenErrno::EINVAL));
    }
}
