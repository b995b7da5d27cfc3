// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The FIFO ABI on guest memory (`xen-abi.md` §4.2, Xen `event_fifo.c`).
//!
//! Per vCPU there is a control block (`ready`, `head[16]`) and 16 queues whose
//! tails only we know; event words live in event-array pages the guest adds
//! one at a time. Linking follows Xen: set PENDING; unless MASKED or LINKED,
//! set LINKED and append to the tail with a compare-exchange that succeeds
//! only while the tail is still LINKED (BUSY holds off a guest unmask, at
//! most four retries); an empty queue gets its `head` written instead and its
//! `ready` bit set. Nothing here walks LINK chains, so guest garbage in event
//! words can at worst misroute the guest's own events.

use vm_memory::GuestMemoryBackend;
use xen_abi::event_channel::{
    EVTCHN_FIFO_CONTROL_HEAD_OFFSET, EVTCHN_FIFO_CONTROL_READY_OFFSET,
    EVTCHN_FIFO_EVENT_WORDS_PER_PAGE, EVTCHN_FIFO_LINK_MASK, EVTCHN_FIFO_MAX_QUEUES,
    FifoEventFlags,
};

use crate::GuestLayout;
use crate::channels::Effects;
use crate::guest::{and_u32, cmpxchg_u32, load_u32, or_u32, swap_u32};
use crate::twolevel::mark_events_pending;

const PENDING: u32 = FifoEventFlags::PENDING.bits();
const MASKED: u32 = FifoEventFlags::MASKED.bits();
const LINKED: u32 = FifoEventFlags::LINKED.bits();
const BUSY: u32 = FifoEventFlags::BUSY.bits();

/// The FIFO state of a domain that switched to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fifo {
    /// Guest-physical address of each vCPU's control block.
    pub(crate) control: Vec<Option<u64>>,
    /// Tail port of each vCPU's 16 queues (0 = empty).
    pub(crate) tails: Vec<[u32; EVTCHN_FIFO_MAX_QUEUES]>,
    /// Guest-physical address of each event-array page.
    pub(crate) pages: Vec<u64>,
}

/// The per-port data FIFO delivery reads and updates.
pub(crate) struct PortRef<'a> {
    /// Notify vCPU.
    pub(crate) vcpu: u32,
    /// Queue priority.
    pub(crate) priority: u8,
    /// Pending while its event-array page is missing.
    pub(crate) pending: &'a mut bool,
}

impl Fifo {
    /// Returns an empty FIFO state for `vcpus` vCPUs.
    pub(crate) fn new(vcpus: u32) -> Self {
        let n = vcpus as usize;
        Fifo {
            control: vec![None; n],
            tails: vec![[0; EVTCHN_FIFO_MAX_QUEUES]; n],
            pages: Vec::new(),
        }
    }

    /// Guest-physical address of `port`'s event word, if its page is present.
    pub(crate) fn word_gpa(&self, port: u32) -> Option<u64> {
        let page = self
            .pages
            .get((port / EVTCHN_FIFO_EVENT_WORDS_PER_PAGE) as usize)?;
        Some(page.wrapping_add(4 * u64::from(port % EVTCHN_FIFO_EVENT_WORDS_PER_PAGE)))
    }

    fn word<M: GuestMemoryBackend>(&self, mem: &M, port: u32) -> Option<u32> {
        load_u32(mem, self.word_gpa(port)?)
    }

    /// True if the event word of `port` has PENDING, or the port is pending
    /// while its page is missing.
    pub(crate) fn is_pending<M: GuestMemoryBackend>(&self, mem: &M, port: u32, flag: bool) -> bool {
        match self.word_gpa(port) {
            Some(_) => self.word(mem, port).is_some_and(|w| w & PENDING != 0),
            None => flag,
        }
    }

    /// True if the event word of `port` has MASKED (a missing word counts as
    /// masked, as guests initialise new words to MASKED).
    pub(crate) fn is_masked<M: GuestMemoryBackend>(&self, mem: &M, port: u32) -> bool {
        self.word(mem, port).is_none_or(|w| w & MASKED != 0)
    }

    /// True if the event word of `port` has LINKED (Xen's "busy" port, which
    /// allocation skips).
    pub(crate) fn is_linked<M: GuestMemoryBackend>(&self, mem: &M, port: u32) -> bool {
        self.word(mem, port).is_some_and(|w| w & LINKED != 0)
    }

    /// Clears PENDING of a port being freed.
    pub(crate) fn clear_pending<M: GuestMemoryBackend>(&self, mem: &M, port: u32) {
        if let Some(gpa) = self.word_gpa(port) {
            let _ = and_u32(mem, gpa, !PENDING);
        }
    }

    /// `EVTCHNOP_unmask`: clears MASKED and re-links a pending event.
    pub(crate) fn unmask<M: GuestMemoryBackend>(
        &mut self,
        mem: &M,
        layout: &dyn GuestLayout,
        port: u32,
        p: PortRef<'_>,
        fx: &mut Effects,
    ) {
        let Some(gpa) = self.word_gpa(port) else {
            return;
        };
        if and_u32(mem, gpa, !MASKED).is_some_and(|old| old & PENDING != 0) {
            self.set_pending(mem, layout, port, p, fx);
        }
    }

    /// Raises `port`: sets PENDING and, unless masked or already linked,
    /// appends it to its vCPU's queue.
    pub(crate) fn set_pending<M: GuestMemoryBackend>(
        &mut self,
        mem: &M,
        layout: &dyn GuestLayout,
        port: u32,
        p: PortRef<'_>,
        fx: &mut Effects,
    ) {
        let Some(gpa) = self.word_gpa(port) else {
            *p.pending = true;
            return;
        };
        let Some(old) = or_u32(mem, gpa, PENDING) else {
            return;
        };
        if old & PENDING == 0 {
            fx.raised.push(port);
        }
        if old & (MASKED | LINKED) != 0 {
            return;
        }
        let v = p.vcpu as usize;
        let q = usize::from(p.priority).min(EVTCHN_FIFO_MAX_QUEUES - 1);
        let Some(&Some(cb)) = self.control.get(v) else {
            // Xen drops the event: the guest must not unmask before it
            // registers the control block.
            return;
        };
        if or_u32(mem, gpa, LINKED).is_none_or(|old| old & LINKED != 0) {
            return;
        }
        // The port was unlinked, so any queue it is the tail of has been
        // drained by the guest: forget that tail (Xen's old-queue fix-up), or
        // the port would be linked to itself below.
        for tails in &mut self.tails {
            for t in tails.iter_mut().filter(|t| **t == port) {
                *t = 0;
            }
        }
        let Some(tails) = self.tails.get_mut(v) else {
            return;
        };
        let tail = tails[q];
        let linked = tail != 0
            && self
                .word_gpa(tail)
                .is_some_and(|tail_gpa| set_link(mem, tail_gpa, port));
        if !linked {
            let head = cb + EVTCHN_FIFO_CONTROL_HEAD_OFFSET as u64 + 4 * q as u64;
            let _ = swap_u32(mem, head, port);
        }
        if let Some(tails) = self.tails.get_mut(v) {
            tails[q] = port;
        }
        if !linked
            && or_u32(mem, cb + EVTCHN_FIFO_CONTROL_READY_OFFSET as u64, 1 << q)
                .is_some_and(|old| old & (1 << q) == 0)
        {
            mark_events_pending(mem, layout, p.vcpu, fx);
        }
    }
}

/// Sets the LINK field of the word at `gpa` to `link` iff it is still
/// LINKED; returns whether the queue was joined (Xen `evtchn_fifo_set_link`).
fn set_link<M: GuestMemoryBackend>(mem: &M, gpa: u64, link: u32) -> bool {
    let try_link = |w: u32| -> Option<bool> {
        if w & LINKED == 0 {
            return Some(false);
        }
        let new = (w & !(BUSY | EVTCHN_FIFO_LINK_MASK)) | link;
        (cmpxchg_u32(mem, gpa, w, new) == Some(w)).then_some(true)
    };
    let Some(w) = load_u32(mem, gpa) else {
        return false;
    };
    if let Some(done) = try_link(w) {
        return done;
    }
    // Hold off guest unmasking; the guest may now only clear PENDING,
    // LINKED or set MASKED, so four more attempts suffice.
    let _ = or_u32(mem, gpa, BUSY);
    for _ in 0..4 {
        let Some(w) = load_u32(mem, gpa) else {
            return false;
        };
        match try_link(w) {
            Some(true) => return true,
            Some(false) => {
                let _ = and_u32(mem, gpa, !BUSY);
                return false;
            }
            None => {}
        }
    }
    log::warn!("FIFO event port {link} not linked: the guest keeps changing the tail word");
    let _ = and_u32(mem, gpa, !BUSY);
    true
}

#[cfg(test)]
mod tests {
    use xen_abi::errno::XenErrno;
    use xen_abi::xen::DOMID_SELF;

    use crate::testing::{Fx, SHINFO, fx};

    const CB: u64 = 0x10; // control-block gfns 0x10 + vCPU
    const ARRAY: u64 = 0x40; // event-array gfns from 0x40

    fn fifo_fx() -> Fx {
        let f = fx();
        for v in 0..4 {
            assert_eq!(f.ev.init_control(&f.mem, CB + u64::from(v), 0, v), Ok(17));
        }
        f.ev.expand_array(&f.mem, ARRAY).unwrap();
        f
    }

    fn word(f: &Fx, port: u32) -> u32 {
        f.read_u32((ARRAY << 12) + 4 * u64::from(port % 1024) + 4096 * u64::from(port / 1024))
    }

    fn set_word(f: &Fx, port: u32, v: u32) {
        f.write_u32((ARRAY << 12) + 4 * u64::from(port), v)
    }

    fn ready(f: &Fx, v: u32) -> u32 {
        f.read_u32((CB + u64::from(v)) << 12)
    }

    fn head(f: &Fx, v: u32, q: u32) -> u32 {
        f.read_u32(((CB + u64::from(v)) << 12) + 8 + 4 * u64::from(q))
    }

    const P: u32 = 1 << 31;
    const M: u32 = 1 << 30;
    const L: u32 = 1 << 29;

    #[test]
    fn test_init_control_errnos() {
        let f = fx();
        assert_eq!(f.ev.init_control(&f.mem, CB, 0, 4), Err(XenErrno::ENOENT));
        assert_eq!(f.ev.init_control(&f.mem, CB, 4, 0), Err(XenErrno::EINVAL));
        assert_eq!(
            f.ev.init_control(&f.mem, CB, 4096 - 64, 0),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            f.ev.init_control(&f.mem, 0x10_0000, 0, 0),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            f.ev.init_control(&f.mem, u64::MAX, 0, 0),
            Err(XenErrno::EINVAL)
        );
        assert!(!f.ev.is_fifo());
        assert_eq!(f.ev.init_control(&f.mem, CB, 4096 - 72, 0), Ok(17));
        assert!(f.ev.is_fifo());
        assert_eq!(f.ev.init_control(&f.mem, CB, 0, 0), Err(XenErrno::EINVAL));
        assert_eq!(f.ev.init_control(&f.mem, CB + 1, 0, 1), Ok(17));
    }

    #[test]
    fn test_expand_array_errnos() {
        let f = fx();
        assert_eq!(f.ev.expand_array(&f.mem, ARRAY), Err(XenErrno::EOPNOTSUPP));
        f.ev.init_control(&f.mem, CB, 0, 0).unwrap();
        assert_eq!(f.ev.expand_array(&f.mem, 0x10_0000), Err(XenErrno::EINVAL));
        for _ in 0..128 {
            f.ev.expand_array(&f.mem, ARRAY).unwrap();
        }
        assert_eq!(f.ev.expand_array(&f.mem, ARRAY), Err(XenErrno::ENOSPC));
    }

    #[test]
    fn test_fifo_send_links_head_and_sets_ready() {
        let f = fifo_fx();
        let p = f.ev.bind_ipi(&f.mem, 2).unwrap();
        f.ev.send(&f.mem, p).unwrap();
        assert_eq!(word(&f, p), P | L);
        assert_eq!(head(&f, 2, 7), p);
        assert_eq!(ready(&f, 2), 1 << 7);
        assert_eq!(f.upcall_pending(2), 1);
        assert_eq!(f.take_upcalls(), vec![2]);
        assert!(f.ev.pending(&f.mem, p));
        // 2-level bits untouched.
        assert!(!f.pending_bit(p));
    }

    #[test]
    fn test_fifo_same_queue_chains_link() {
        let f = fifo_fx();
        let a = f.ev.bind_ipi(&f.mem, 0).unwrap();
        let b = f.ev.bind_ipi(&f.mem, 0).unwrap();
        let c = f.ev.bind_ipi(&f.mem, 0).unwrap();
        for p in [a, b, c] {
            f.ev.send(&f.mem, p).unwrap();
        }
        assert_eq!(head(&f, 0, 7), a);
        assert_eq!(word(&f, a), P | L | b);
        assert_eq!(word(&f, b), P | L | c);
        assert_eq!(word(&f, c), P | L);
        assert_eq!(f.take_upcalls(), vec![0]);
        // Already linked: sending again changes nothing.
        f.ev.send(&f.mem, a).unwrap();
        assert_eq!(word(&f, a), P | L | b);
    }

    #[test]
    fn test_fifo_priorities_use_separate_queues() {
        let f = fifo_fx();
        let lo = f.ev.bind_ipi(&f.mem, 1).unwrap();
        let hi = f.ev.bind_ipi(&f.mem, 1).unwrap();
        f.ev.set_priority(hi, 0).unwrap();
        f.ev.set_priority(lo, 15).unwrap();
        assert_eq!(f.ev.set_priority(lo, 16), Err(XenErrno::EINVAL));
        f.ev.send(&f.mem, lo).unwrap();
        f.ev.send(&f.mem, hi).unwrap();
        assert_eq!(head(&f, 1, 0), hi);
        assert_eq!(head(&f, 1, 15), lo);
        assert_eq!(ready(&f, 1), 1 | (1 << 15));
        assert_eq!(word(&f, lo), P | L);
        assert_eq!(f.take_upcalls(), vec![1]);
        assert_eq!(f.ev.list(&f.mem)[1].priority, 0);
    }

    #[test]
    fn test_fifo_masked_then_unmask_links() {
        let f = fifo_fx();
        let p = f.ev.bind_ipi(&f.mem, 0).unwrap();
        set_word(&f, p, M);
        f.ev.send(&f.mem, p).unwrap();
        assert_eq!(word(&f, p), P | M);
        assert!(f.take_upcalls().is_empty());
        f.ev.unmask(&f.mem, p).unwrap();
        assert_eq!(word(&f, p), P | L);
        assert_eq!(head(&f, 0, 7), p);
        assert_eq!(f.take_upcalls(), vec![0]);
    }

    #[test]
    fn test_fifo_consumed_tail_not_self_linked() {
        let f = fifo_fx();
        let p = f.ev.bind_ipi(&f.mem, 0).unwrap();
        f.ev.send(&f.mem, p).unwrap();
        // The guest consumes: clears ready, LINKED and PENDING.
        f.write_u32(CB << 12, 0);
        set_word(&f, p, 0);
        f.guest_clear_upcall(0);
        f.take_upcalls();
        f.ev.send(&f.mem, p).unwrap();
        assert_eq!(word(&f, p), P | L);
        assert_eq!(head(&f, 0, 7), p);
        assert_eq!(f.take_upcalls(), vec![0]);
    }

    #[test]
    fn test_fifo_unlinked_tail_restarts_queue() {
        let f = fifo_fx();
        let a = f.ev.bind_ipi(&f.mem, 0).unwrap();
        let b = f.ev.bind_ipi(&f.mem, 0).unwrap();
        f.ev.send(&f.mem, a).unwrap();
        set_word(&f, a, P); // consumed by the guest, still pending
        f.write_u32(CB << 12, 0);
        f.ev.send(&f.mem, b).unwrap();
        assert_eq!(head(&f, 0, 7), b);
        assert_eq!(word(&f, a), P);
        assert_eq!(ready(&f, 0), 1 << 7);
    }

    #[test]
    fn test_fifo_two_level_pending_carried_over() {
        let f = fx();
        let p = f.ev.bind_ipi(&f.mem, 0).unwrap();
        f.ev.send(&f.mem, p).unwrap();
        f.ev.init_control(&f.mem, CB, 0, 0).unwrap();
        assert!(f.ev.pending(&f.mem, p));
        f.take_upcalls();
        f.guest_clear_upcall(0);
        f.ev.expand_array(&f.mem, ARRAY).unwrap();
        assert_eq!(word(&f, p), P | L);
        assert_eq!(head(&f, 0, 7), p);
        assert_eq!(f.take_upcalls(), vec![0]);
    }

    #[test]
    fn test_fifo_port_beyond_array_raised_when_page_added() {
        let f = fifo_fx();
        for _ in 1..1030 {
            f.ev.bind_ipi(&f.mem, 3).unwrap();
        }
        f.ev.send(&f.mem, 1029).unwrap();
        assert!(f.ev.pending(&f.mem, 1029));
        assert!(f.take_upcalls().is_empty());
        f.ev.expand_array(&f.mem, ARRAY + 1).unwrap();
        assert_eq!(word(&f, 1029), P | L);
        assert_eq!(head(&f, 3, 7), 1029);
        assert_eq!(f.take_upcalls(), vec![3]);
    }

    #[test]
    fn test_fifo_limit_above_two_level() {
        let f = fifo_fx();
        assert!(f.ev.status(100_000).is_ok());
        assert_eq!(f.ev.status(131_072), Err(XenErrno::EINVAL));
    }

    #[test]
    fn test_fifo_allocation_skips_linked_free_port() {
        let f = fifo_fx();
        let p = f.ev.bind_ipi(&f.mem, 0).unwrap();
        f.ev.send(&f.mem, p).unwrap();
        f.ev.close(&f.mem, p).unwrap();
        assert_eq!(word(&f, p), L, "close clears PENDING only");
        assert_eq!(f.ev.alloc_unbound(&f.mem, DOMID_SELF), Ok(p + 1));
    }

    #[test]
    fn test_fifo_vcpu_without_control_block_not_linked() {
        let f = fx();
        f.ev.init_control(&f.mem, CB, 0, 0).unwrap();
        f.ev.expand_array(&f.mem, ARRAY).unwrap();
        let p = f.ev.bind_ipi(&f.mem, 1).unwrap();
        f.ev.send(&f.mem, p).unwrap();
        assert_eq!(word(&f, p), P);
        assert!(f.take_upcalls().is_empty());
    }

    #[test]
    fn test_fifo_garbage_words_no_panic() {
        let f = fifo_fx();
        let ports: Vec<u32> = (0..20).map(|_| f.ev.bind_ipi(&f.mem, 0).unwrap()).collect();
        for (i, &p) in ports.iter().enumerate() {
            set_word(&f, p, (i as u32).wrapping_mul(0x9e37_79b9) | L);
        }
        for round in 0..3 {
            for &p in &ports {
                let _ = f.ev.send(&f.mem, p);
                let _ = f.ev.unmask(&f.mem, p);
                set_word(&f, p, (p * 7 + round) | L | (round << 28));
            }
        }
        assert_eq!(f.ev.list(&f.mem).len(), 20);
    }

    #[test]
    fn test_fifo_reset_reverts_to_two_level() {
        let f = fifo_fx();
        let p = f.ev.bind_ipi(&f.mem, 0).unwrap();
        f.ev.send(&f.mem, p).unwrap();
        f.ev.reset(&f.mem);
        assert!(!f.ev.is_fifo());
        assert_eq!(word(&f, p), L);
        assert_eq!(f.ev.set_priority(1, 3), Err(XenErrno::ENOSYS));
        let q = f.ev.bind_ipi(&f.mem, 0).unwrap();
        f.guest_clear_upcall(0);
        f.take_upcalls();
        f.ev.send(&f.mem, q).unwrap();
        assert!(f.pending_bit(q));
        assert!(f.read_u32(SHINFO + 2048) & 2 != 0);
        assert_eq!(f.take_upcalls(), vec![0]);
    }

    #[test]
    fn test_fifo_bind_vcpu_relinks_pending_unlinked() {
        let f = fifo_fx();
        let p = f.ev.alloc_unbound(&f.mem, 5).unwrap();
        set_word(&f, p, P);
        f.ev.bind_vcpu(&f.mem, p, 2).unwrap();
        assert_eq!(head(&f, 2, 7), p);
        assert_eq!(f.take_upcalls(), vec![2]);
    }

    #[test]
    fn test_fifo_state_round_trip_keeps_tails() {
        let f = fifo_fx();
        let a = f.ev.bind_ipi(&f.mem, 0).unwrap();
        let b = f.ev.bind_ipi(&f.mem, 0).unwrap();
        f.ev.send(&f.mem, a).unwrap();
        let st = f.ev.state();
        assert_eq!(st.fifo.as_ref().unwrap().tails[0][7], a);
        let r = crate::EventChannels::from_state(&st, f.layout.clone(), f.rec.clone()).unwrap();
        assert_eq!(r.state(), st);
        r.send(&f.mem, b).unwrap();
        assert_eq!(word(&f, a), P | L | b);
    }
}
