// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Model-based property test of the FIFO ABI (`xen-abi.md` §4.2, Xen
//! `xen/common/event_fifo.c`).
//!
//! A domain first binds a few ports with the 2-level ABI, then switches to
//! FIFO (`init_control` on some vCPUs, `expand_array` for some pages), and a
//! random sequence of hypercalls and guest actions (masking, unmasking as
//! Linux does, consuming queue heads as Linux does, acknowledging upcalls)
//! runs against [`EventChannels`] and against [`Model`], a plain
//! reference model that keeps the queues as `VecDeque`s. After every step the
//! results and errnos, every event word of every event-array page (LINK
//! fields included), each control block's READY and HEAD words, the queue a
//! guest would walk from its HEAD, port status, upcalls and raised ports must
//! agree.
//!
//! The model is the specification. Its rules, and where they come from:
//!
//! * Raise (Xen `evtchn_fifo_set_pending`): without an event-array page the
//!   port only remembers "pending" (no poller wake-up). Otherwise PENDING is
//!   set (a 0 -> 1 change reports the port as raised) and, if the notify
//!   vCPU has a control block and the word is neither MASKED nor already
//!   LINKED, the word becomes LINKED and the port is appended to the queue
//!   (notify vCPU, the port's *current* priority). If that queue was empty,
//!   HEAD := port, and READY's bit, if newly set, marks the vCPU's events
//!   pending (`evtchn_upcall_pending` 0 -> 1 is an upcall). A LINKED event is
//!   never linked again, wherever it is queued; a MASKED one waits for unmask.
//! * A LINK field is the next port of the word's queue (0 at the tail and
//!   when unlinked); BUSY is never visible between hypercalls.
//! * HEAD is written only when a queue goes from empty to non-empty, so it
//!   goes stale while the guest consumes; READY is set only then too.
//! * `EVTCHNOP_unmask` (`evtchn_fifo_unmask`): clear MASKED, and if PENDING
//!   raise again (which links it if it is not linked).
//! * `set_priority` (`evtchn_fifo_set_priority`): takes effect the next time
//!   the event is linked; a linked event stays on its old queue.
//! * `close`: clears PENDING only (`evtchn_fifo_clear_pending`); a LINKED
//!   word stays on its queue until the guest consumes it, and allocation
//!   (lowest free port >= 1) skips LINKED ports (`evtchn_fifo_is_busy`).
//!   Freeing drops a remembered "pending" (`xen-abi.md` §3.8).
//! * `bind_vcpu` on a pending event re-raises it on the new vCPU (linking it
//!   there unless it is masked or still linked on the old one). Xen does not
//!   re-raise; this crate does, as QEMU does (documented on
//!   `EventChannels::bind_vcpu`).
//! * `init_control`: checks in Xen's order (vCPU, offset range, alignment,
//!   already registered, frame); the first success switches the domain to
//!   FIFO, remembering each bound port's 2-level pending bit as "pending"
//!   and resetting its priority to 7 (Xen's `setup_ports` also flags free
//!   ports with a stale 2-level bit and later raises them; the crate only
//!   keeps the flag on bound ports, and a new port starts without it).
//!   Events raised for a vCPU without a control block are set PENDING but
//!   not linked.
//! * `expand_array`: adds the next page (the guest initialised its words),
//!   then raises, in port order, the bound ports of that page that were
//!   remembered as pending. 128 pages at most (-ENOSPC), bad frame -EINVAL.
//! * `reset`: closes every port (FIFO `clear_pending`, so 2-level bits stay)
//!   and reverts to 2-level; the guest then sets FIFO up again with freshly
//!   zeroed control blocks and fresh pages.
//! * The guest consumes as Linux `consume_one_event` does: local head, else
//!   HEAD; clear LINKED and LINK, follow the old LINK; handle (clear
//!   PENDING) only if pending and not masked; clear its READY bit when LINK
//!   was 0. Linux takes the whole READY word with an xchg first and keeps it
//!   locally; clearing the bit when the queue drains is the same once the
//!   handler returns, and Xen never reads READY.
//! * `pending()` (`SCHEDOP_poll`) reports a remembered "pending" of a port
//!   whose page is missing (Xen would say not pending until the page comes).
//! * FIFO delivery never touches the 2-level bitmaps or selectors.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;
use vm_memory::{Bytes, GuestAddress};
use xen_abi::errno::XenErrno;
use xen_abi::event_channel::EvtchnStatusDetail;
use xen_abi::xen::{DOMID_SELF, Virq};

use crate::state::{Binding, PortState};
use crate::testing::{Fx, RAM, SHINFO, fx_with};
use crate::{Config, EventChannels};

const OWN: u16 = 1;
const VCPUS: u32 = 3;
/// Queues (priorities) per vCPU.
const QUEUES: usize = 16;
const WORDS_PER_PAGE: u32 = 1024;
const MAX_PAGES: usize = 128;

const PENDING: u32 = 1 << 31;
const MASKED: u32 = 1 << 30;
const LINKED: u32 = 1 << 29;
const LINK: u32 = (1 << 17) - 1;

/// Control block of vCPU v lives in frame `CB_GFN + v`.
const CB_GFN: u64 = 0x10;
/// Event-array page k lives in frame `ARRAY_GFN + k`.
const ARRAY_GFN: u64 = 0x40;
/// First frame past the end of RAM.
const PAST_RAM_GFN: u64 = (RAM as u64) >> 12;
/// Size of the FIFO control block.
const CB_SIZE: u32 = 72;

/// The port numbers a test shape works with.
struct Shape {
    /// `Config::max_evtchn_port`.
    max_port: u32,
    /// Setup binds unbound ports up to this one (0: none), so that new
    /// ports land near a page boundary.
    prefill_to: u32,
    /// The ports op arguments pick from and that are compared port by port.
    /// Every port that can ever be bound beyond the prefill is among them.
    ports: Vec<u32>,
}

impl Shape {
    /// Ports 0..=23 on event-array page 0 (21..=23 beyond the limit).
    fn low() -> Self {
        Shape {
            max_port: 20,
            prefill_to: 0,
            ports: (0..24).collect(),
        }
    }

    /// Ports 1020..=1036 straddling pages 0 and 1, plus 0..=3.
    fn high() -> Self {
        let mut ports: Vec<u32> = (0..4).chain(1020..=1036).collect();
        ports.extend([1037, 131_071, 131_072]);
        Shape {
            max_port: 1036,
            prefill_to: 1019,
            ports,
        }
    }

    fn port(&self, i: u32) -> u32 {
        self.ports[i as usize % self.ports.len()]
    }
}

/// What an `expand_array` hands Xen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    /// A fresh page whose words the guest set to MASKED (as Linux does).
    Masked,
    /// A fresh zeroed page.
    Zeroed,
    /// The first frame past RAM.
    PastRam,
    /// A frame whose address overflows.
    Huge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    // The bool of the four binding ops: the guest then unmasks the new port
    // as Linux does when it starts the IRQ (`GuestUnmask`).
    Alloc(u16, bool),
    BindLoop(u32, bool),
    BindIpi(u32, bool),
    BindVirq(u32, u32, bool),
    RaiseVirq(u32, u32),
    Close(u32),
    Send(u32),
    /// `EVTCHNOP_unmask`.
    Unmask(u32),
    BindVcpu(u32, u32),
    SetPriority(u32, u32),
    /// vCPU, offset, frame is RAM.
    InitControl(u32, u32, bool),
    ExpandArray(Frame),
    /// The guest sets MASKED.
    GuestMask(u32),
    /// The guest clears MASKED unconditionally (not what Linux does: a
    /// pending event then stays unlinked until raised again).
    GuestClearMask(u32),
    /// Linux `evtchn_fifo_unmask`: clear MASKED unless PENDING, else
    /// `EVTCHNOP_unmask`.
    GuestUnmask(u32),
    /// The guest consumes the head of its highest-priority ready queue.
    /// With `false` the guest defers the acknowledgement: the event stays
    /// PENDING (an IRQ still in progress; `GuestClearPending` acks it).
    GuestConsume(u32, bool),
    /// The guest clears PENDING (a deferred acknowledgement).
    GuestClearPending(u32),
    /// The guest clears `evtchn_upcall_pending`.
    GuestAck(u32),
    /// `EVTCHNOP_reset`; the guest then sets FIFO up again and binds its
    /// ports again (`Harness::setup`).
    Reset,
    /// Binds unbound ports (remote domain 0) up to `Shape::prefill_to`
    /// under 2-level; returns it (setup only).
    Prefill,
}

/// Port arguments below this pick the n-th bound port of the shape (in the
/// model, so both sides get the same number); from it on, the n-th port of
/// the shape.
const ANY_PORT: u32 = 100;

impl Op {
    /// Maps port arguments to port numbers.
    fn resolve(self, s: &Shape, m: &Model) -> Op {
        let port = |i: u32| {
            let bound: Vec<u32> = s
                .ports
                .iter()
                .copied()
                .filter(|p| m.ports.contains_key(p))
                .collect();
            match i.checked_sub(ANY_PORT) {
                None if !bound.is_empty() => bound[i as usize % bound.len()],
                None => s.port(i),
                Some(i) => s.port(i),
            }
        };
        match self {
            Op::BindLoop(p, u) => Op::BindLoop(port(p), u),
            Op::Close(p) => Op::Close(port(p)),
            Op::Send(p) => Op::Send(port(p)),
            Op::Unmask(p) => Op::Unmask(port(p)),
            Op::BindVcpu(p, v) => Op::BindVcpu(port(p), v),
            Op::SetPriority(p, q) => Op::SetPriority(port(p), q),
            Op::GuestMask(p) => Op::GuestMask(port(p)),
            Op::GuestClearMask(p) => Op::GuestClearMask(port(p)),
            Op::GuestUnmask(p) => Op::GuestUnmask(port(p)),
            Op::GuestClearPending(p) => Op::GuestClearPending(port(p)),
            op => op,
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    let port = prop_oneof![3 => 0..16u32, 1 => ANY_PORT..ANY_PORT + 64];
    let unmask = prop_oneof![3 => Just(true), 1 => Just(false)];
    let vcpu = prop_oneof![6 => 0..VCPUS, 1 => Just(VCPUS)];
    prop_oneof![
        2 => (prop_oneof![Just(0u16), Just(DOMID_SELF), Just(OWN), Just(5u16)], unmask.clone())
            .prop_map(|(d, u)| Op::Alloc(d, u)),
        3 => (port.clone(), unmask.clone()).prop_map(|(p, u)| Op::BindLoop(p, u)),
        4 => (vcpu.clone(), unmask.clone()).prop_map(|(v, u)| Op::BindIpi(v, u)),
        2 => (prop_oneof![Just(0u32), Just(1), Just(2), Just(11), Just(24)], vcpu.clone(), unmask)
            .prop_map(|(v, c, u)| Op::BindVirq(v, c, u)),
        3 => (prop_oneof![Just(0u32), Just(1), Just(2), Just(11)], vcpu.clone())
            .prop_map(|(v, c)| Op::RaiseVirq(v, c)),
        2 => port.clone().prop_map(Op::Close),
        8 => port.clone().prop_map(Op::Send),
        4 => port.clone().prop_map(Op::Unmask),
        3 => (port.clone(), vcpu.clone()).prop_map(|(p, v)| Op::BindVcpu(p, v)),
        3 => (port.clone(), 0..18u32).prop_map(|(p, q)| Op::SetPriority(p, q)),
        2 => (vcpu.clone(), prop_oneof![Just(0u32), Just(8), Just(4096 - CB_SIZE), Just(4),
                Just(4096 - 64)], any::<bool>())
            .prop_map(|(v, o, g)| Op::InitControl(v, o, g)),
        1 => prop_oneof![3 => Just(Frame::Masked), 2 => Just(Frame::Zeroed),
                1 => Just(Frame::PastRam), 1 => Just(Frame::Huge)].prop_map(Op::ExpandArray),
        3 => port.clone().prop_map(Op::GuestMask),
        2 => port.clone().prop_map(Op::GuestClearMask),
        4 => port.clone().prop_map(Op::GuestUnmask),
        6 => (0..VCPUS, prop_oneof![2 => Just(true), 1 => Just(false)])
            .prop_map(|(v, ack)| Op::GuestConsume(v, ack)),
        2 => port.clone().prop_map(Op::GuestClearPending),
        2 => (0..VCPUS).prop_map(Op::GuestAck),
        1 => Just(Op::Reset),
    ]
}

/// How the domain gets to FIFO.
#[derive(Clone, Debug)]
struct Setup {
    /// IPIs bound under 2-level: (vCPU, send it, mask it in the 2-level bitmap).
    pre: Vec<(u32, bool, bool)>,
    /// Control blocks registered at setup: (vCPU, offset); always vCPU 0.
    cbs: Vec<(u32, u32)>,
    /// Event-array pages added at setup.
    pages: u32,
    /// Whether the guest pre-masks the words of the pages it adds.
    premask: bool,
    /// Ports the guest then binds (and unmasks), so that sequences start
    /// with something to send on.
    binds: Vec<Bind>,
}

#[derive(Clone, Copy, Debug)]
enum Bind {
    Ipi(u32),
    /// An unbound port and a loopback port connected to it.
    Loop,
    Virq(u32, u32),
}

fn setup() -> impl Strategy<Value = Setup> {
    let offset = || prop_oneof![Just(0u32), Just(8), Just(4096 - CB_SIZE)];
    (
        prop::collection::vec((0..VCPUS, any::<bool>(), any::<bool>()), 0..=3),
        prop::collection::vec((any::<bool>(), offset()), VCPUS as usize),
        prop_oneof![1 => Just(0u32), 4 => Just(1), 2 => Just(2)],
        prop_oneof![3 => Just(true), 1 => Just(false)],
        prop::collection::vec(
            prop_oneof![
                3 => (0..VCPUS).prop_map(Bind::Ipi),
                3 => Just(Bind::Loop),
                1 => (0..3u32, 0..VCPUS).prop_map(|(x, v)| Bind::Virq(x, if x < 2 { v } else { 0 })),
            ],
            0..8,
        ),
    )
        .prop_map(|(pre, cbs, pages, premask, binds)| Setup {
            pre,
            cbs: cbs
                .into_iter()
                .enumerate()
                .filter(|&(v, (on, _))| v == 0 || on)
                .map(|(v, (_, off))| (v as u32, off))
                .collect(),
            pages,
            premask,
            binds,
        })
}

/// The FIFO ops that bring the domain (back) into FIFO mode.
fn setup_ops(s: &Setup, shape: &Shape) -> Vec<Op> {
    let mut ops = Vec::new();
    if shape.prefill_to > 0 {
        ops.push(Op::Prefill);
    }
    ops.extend(s.cbs.iter().map(|&(v, off)| Op::InitControl(v, off, true)));
    let frame = if s.premask {
        Frame::Masked
    } else {
        Frame::Zeroed
    };
    ops.extend((0..s.pages).map(|_| Op::ExpandArray(frame)));
    ops
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Unbound(u16),
    Loop(u32),
    Virq(u32),
    Ipi,
}

#[derive(Clone, Copy, Debug)]
struct MPort {
    kind: Kind,
    vcpu: u32,
    priority: u32,
    /// Pending while its event-array page is missing.
    early: bool,
}

type R = Result<Option<u32>, XenErrno>;

/// The reference model.
struct Model {
    max_port: u32,
    fifo: bool,
    ports: BTreeMap<u32, MPort>,
    /// 2-level bits set before the switch (FIFO never changes them).
    twol_pending: BTreeSet<u32>,
    twol_mask: BTreeSet<u32>,
    /// Control-block offset of each vCPU that registered one.
    cb: Vec<Option<u32>>,
    /// PENDING | MASKED | LINKED of each word of the present pages (the
    /// LINK fields follow from `queues`).
    words: Vec<u32>,
    /// Linked ports of each vCPU's queues, in the order a guest meets them.
    queues: Vec<Vec<VecDeque<u32>>>,
    ready: Vec<u32>,
    head: Vec<[u32; QUEUES]>,
    upcall: Vec<bool>,
    upcalls: Vec<u32>,
    raised: Vec<u32>,
}

impl Model {
    fn new(max_port: u32) -> Self {
        let n = VCPUS as usize;
        Model {
            max_port,
            fifo: false,
            ports: BTreeMap::new(),
            twol_pending: BTreeSet::new(),
            twol_mask: BTreeSet::new(),
            cb: vec![None; n],
            words: Vec::new(),
            queues: vec![vec![VecDeque::new(); QUEUES]; n],
            ready: vec![0; n],
            head: vec![[0; QUEUES]; n],
            upcall: vec![false; n],
            upcalls: Vec::new(),
            raised: Vec::new(),
        }
    }

    fn pages(&self) -> usize {
        self.words.len() / WORDS_PER_PAGE as usize
    }

    fn word(&self, p: u32) -> Option<u32> {
        self.words.get(p as usize).copied()
    }

    fn valid(&self, p: u32) -> Result<(), XenErrno> {
        if p <= self.max_port {
            Ok(())
        } else {
            Err(XenErrno::EINVAL)
        }
    }

    /// Lowest port >= 1 that is free and not LINKED.
    fn free(&self) -> Result<u32, XenErrno> {
        (1..=self.max_port)
            .find(|&p| !self.ports.contains_key(&p) && self.word(p).is_none_or(|w| w & LINKED == 0))
            .ok_or(XenErrno::ENOSPC)
    }

    fn insert(&mut self, p: u32, kind: Kind, vcpu: u32) {
        let port = MPort {
            kind,
            vcpu,
            priority: 7,
            early: false,
        };
        self.ports.insert(p, port);
    }

    /// Raises a bound port on its notify vCPU at its priority.
    fn raise(&mut self, p: u32) {
        let MPort { vcpu, priority, .. } = self.ports[&p];
        if self.word(p).is_none() {
            self.ports.get_mut(&p).unwrap().early = true;
            return;
        }
        self.set_pending(p, vcpu, priority);
    }

    /// Raises `p`, whose page is present, on (`v`, `q`).
    fn set_pending(&mut self, p: u32, v: u32, q: u32) {
        let w = &mut self.words[p as usize];
        if *w & PENDING == 0 {
            *w |= PENDING;
            self.raised.push(p);
        }
        if self.cb[v as usize].is_none() || *w & (MASKED | LINKED) != 0 {
            return;
        }
        *w |= LINKED;
        let (v, q) = (v as usize, q as usize);
        let queue = &mut self.queues[v][q];
        queue.push_back(p);
        if queue.len() == 1 {
            self.head[v][q] = p;
            if self.ready[v] & (1 << q) == 0 {
                self.ready[v] |= 1 << q;
                if !self.upcall[v] {
                    self.upcall[v] = true;
                    self.upcalls.push(v as u32);
                }
            }
        }
    }

    fn close(&mut self, p: u32) -> Result<(), XenErrno> {
        self.valid(p)?;
        let port = self.ports.remove(&p).ok_or(XenErrno::EINVAL)?;
        if let Kind::Loop(q) = port.kind {
            self.ports.get_mut(&q).unwrap().kind = Kind::Unbound(OWN);
        }
        if let Some(w) = self.words.get_mut(p as usize) {
            *w &= !PENDING;
        }
        Ok(())
    }

    fn alloc(&mut self, d: u16) -> Result<u32, XenErrno> {
        let p = self.free()?;
        let d = if d == DOMID_SELF { OWN } else { d };
        self.insert(p, Kind::Unbound(d), 0);
        Ok(p)
    }

    /// `EVTCHNOP_unmask` (also for free ports: notify vCPU 0, priority 7).
    fn unmask(&mut self, p: u32) -> R {
        self.valid(p)?;
        let Some(w) = self.word(p) else {
            return Ok(None);
        };
        self.words[p as usize] &= !MASKED;
        if w & PENDING != 0 {
            let (v, q) = self.ports.get(&p).map_or((0, 7), |x| (x.vcpu, x.priority));
            self.set_pending(p, v, q);
        }
        Ok(None)
    }

    /// The guest consumes the head of its highest-priority ready queue:
    /// the word loses LINKED (and LINK); a pending unmasked event is handled
    /// (PENDING cleared if `ack`), a masked one stays pending; READY's bit
    /// goes when the queue is empty.
    fn consume(&mut self, v: u32, ack: bool) {
        let v = v as usize;
        if self.cb[v].is_none() || self.ready[v] == 0 {
            return;
        }
        let q = self.ready[v].trailing_zeros() as usize;
        let p = self.queues[v][q]
            .pop_front()
            .expect("model: READY without events");
        let w = &mut self.words[p as usize];
        *w &= !LINKED;
        if ack && *w & (PENDING | MASKED) == PENDING {
            *w &= !PENDING;
        }
        if self.queues[v][q].is_empty() {
            self.ready[v] &= !(1 << q);
        }
    }

    fn init_control(&mut self, v: u32, off: u32, good: bool) -> R {
        if v >= VCPUS {
            return Err(XenErrno::ENOENT);
        }
        if off > 4096 - CB_SIZE || !off.is_multiple_of(8) || self.cb[v as usize].is_some() || !good
        {
            return Err(XenErrno::EINVAL);
        }
        if !self.fifo {
            self.fifo = true;
            for (p, port) in &mut self.ports {
                port.priority = 7;
                port.early = self.twol_pending.contains(p);
            }
        }
        self.cb[v as usize] = Some(off);
        Ok(Some(17))
    }

    fn expand_array(&mut self, frame: Frame) -> R {
        if !self.fifo {
            return Err(XenErrno::EOPNOTSUPP);
        }
        if self.pages() >= MAX_PAGES {
            return Err(XenErrno::ENOSPC);
        }
        let init = match frame {
            Frame::Masked => MASKED,
            Frame::Zeroed => 0,
            Frame::PastRam | Frame::Huge => return Err(XenErrno::EINVAL),
        };
        let first = self.words.len() as u32;
        self.words
            .extend(std::iter::repeat_n(init, WORDS_PER_PAGE as usize));
        let waiting: Vec<u32> = self
            .ports
            .range(first..first + WORDS_PER_PAGE)
            .filter(|(_, x)| x.early)
            .map(|(&p, _)| p)
            .collect();
        for p in waiting {
            self.ports.get_mut(&p).unwrap().early = false;
            self.raise(p);
        }
        Ok(None)
    }

    fn reset(&mut self) {
        let ports: Vec<u32> = self.ports.keys().copied().collect();
        for p in ports {
            let _ = self.close(p);
        }
        // Back to 2-level; the guest will zero its control blocks and add
        // fresh pages.
        let upcall = std::mem::take(&mut self.upcall);
        let (upcalls, raised) = (
            std::mem::take(&mut self.upcalls),
            std::mem::take(&mut self.raised),
        );
        let (pending, mask) = (
            std::mem::take(&mut self.twol_pending),
            std::mem::take(&mut self.twol_mask),
        );
        *self = Model {
            upcall,
            upcalls,
            raised,
            twol_pending: pending,
            twol_mask: mask,
            ..Model::new(self.max_port)
        };
    }

    fn apply(&mut self, op: Op, shape: &Shape) -> R {
        match op {
            Op::Alloc(d, _) => self.alloc(d).map(Some),
            Op::Prefill => {
                // As if the guest allocated unbound ports (remote domain 0)
                // until it got `prefill_to` (no page is present yet).
                for p in 1..=shape.prefill_to {
                    self.ports.entry(p).or_insert(MPort {
                        kind: Kind::Unbound(0),
                        vcpu: 0,
                        priority: 7,
                        early: false,
                    });
                }
                Ok(Some(shape.prefill_to))
            }
            Op::BindLoop(r, _) => {
                let l = self.free()?;
                self.valid(r)?;
                if self.ports.get(&r).map(|x| x.kind) != Some(Kind::Unbound(OWN)) {
                    return Err(XenErrno::EINVAL);
                }
                self.ports.get_mut(&r).unwrap().kind = Kind::Loop(l);
                self.insert(l, Kind::Loop(r), 0);
                self.raise(l);
                Ok(Some(l))
            }
            Op::BindIpi(v, _) => {
                if v >= VCPUS {
                    return Err(XenErrno::ENOENT);
                }
                let p = self.free()?;
                self.insert(p, Kind::Ipi, v);
                Ok(Some(p))
            }
            Op::BindVirq(virq, v, _) => {
                let per_vcpu = virq <= 1;
                if virq >= 24 || (!per_vcpu && v != 0) {
                    return Err(XenErrno::EINVAL);
                }
                if v >= VCPUS {
                    return Err(XenErrno::ENOENT);
                }
                if self.virq_port(virq, v).is_some() {
                    return Err(XenErrno::EEXIST);
                }
                let p = self.free()?;
                self.insert(p, Kind::Virq(virq), v);
                Ok(Some(p))
            }
            Op::RaiseVirq(virq, v) => {
                let port = self.virq_port(virq, v);
                if let Some(p) = port {
                    self.raise(p);
                }
                Ok(Some(u32::from(port.is_some())))
            }
            Op::Close(p) => self.close(p).map(|_| None),
            Op::Send(p) => {
                self.valid(p)?;
                match self.ports.get(&p).map(|x| x.kind) {
                    Some(Kind::Loop(q)) => self.raise(q),
                    Some(Kind::Ipi) => self.raise(p),
                    Some(Kind::Unbound(_)) => {}
                    _ => return Err(XenErrno::EINVAL),
                }
                Ok(None)
            }
            Op::Unmask(p) => self.unmask(p),
            Op::BindVcpu(p, v) => {
                if v >= VCPUS {
                    return Err(XenErrno::ENOENT);
                }
                self.valid(p)?;
                let port = self.ports.get_mut(&p).ok_or(XenErrno::EINVAL)?;
                if matches!(port.kind, Kind::Ipi | Kind::Virq(0 | 1)) {
                    return Err(XenErrno::EINVAL);
                }
                port.vcpu = v;
                let priority = port.priority;
                if self.word(p).is_some_and(|w| w & PENDING != 0) {
                    self.set_pending(p, v, priority);
                }
                Ok(None)
            }
            Op::SetPriority(p, q) => {
                self.valid(p)?;
                if !self.fifo {
                    return Err(XenErrno::ENOSYS);
                }
                if q > 15 {
                    return Err(XenErrno::EINVAL);
                }
                if let Some(port) = self.ports.get_mut(&p) {
                    port.priority = q;
                }
                Ok(None)
            }
            Op::InitControl(v, off, good) => self.init_control(v, off, good),
            Op::ExpandArray(frame) => self.expand_array(frame),
            Op::GuestMask(p) => {
                if let Some(w) = self.words.get_mut(p as usize) {
                    *w |= MASKED;
                }
                Ok(None)
            }
            Op::GuestClearMask(p) => {
                if let Some(w) = self.words.get_mut(p as usize) {
                    *w &= !MASKED;
                }
                Ok(None)
            }
            Op::GuestUnmask(p) => match self.word(p) {
                Some(w) if w & (MASKED | PENDING) == MASKED | PENDING => self.unmask(p),
                Some(_) => {
                    self.words[p as usize] &= !MASKED;
                    Ok(None)
                }
                None => Ok(None),
            },
            Op::GuestConsume(v, ack) => {
                self.consume(v, ack);
                Ok(None)
            }
            Op::GuestClearPending(p) => {
                if let Some(w) = self.words.get_mut(p as usize) {
                    *w &= !PENDING;
                }
                Ok(None)
            }
            Op::GuestAck(v) => {
                self.upcall[v as usize] = false;
                Ok(None)
            }
            Op::Reset => {
                self.reset();
                Ok(None)
            }
        }
    }

    /// The port bound to `virq` (for `v` if it is per-vCPU).
    fn virq_port(&self, virq: u32, v: u32) -> Option<u32> {
        let per_vcpu = virq <= 1;
        self.ports
            .iter()
            .find(|(_, x)| x.kind == Kind::Virq(virq) && (!per_vcpu || x.vcpu == v))
            .map(|(&p, _)| p)
    }

    /// What `EventChannels::pending` must say.
    fn pending(&self, p: u32) -> bool {
        if p > self.max_port {
            false
        } else if !self.fifo {
            self.twol_pending.contains(&p)
        } else {
            match self.word(p) {
                Some(w) => w & PENDING != 0,
                None => self.ports.get(&p).is_some_and(|x| x.early),
            }
        }
    }

    /// Every event word with its LINK field.
    fn expected_words(&self) -> Vec<u32> {
        let mut words = self.words.clone();
        for queue in self.queues.iter().flatten() {
            for (&a, &b) in queue.iter().zip(queue.iter().skip(1)) {
                words[a as usize] |= b;
            }
        }
        words
    }

    /// The model's own consistency: each LINKED word sits in exactly one
    /// queue, queues hold only LINKED words, READY bit <=> queue non-empty.
    fn check_invariants(&self) {
        let mut seen = BTreeSet::new();
        for (v, queues) in self.queues.iter().enumerate() {
            for (q, queue) in queues.iter().enumerate() {
                assert_eq!(
                    self.ready[v] & (1 << q) != 0,
                    !queue.is_empty(),
                    "model: READY {v}/{q}"
                );
                for &p in queue {
                    assert!(seen.insert(p), "model: {p} queued twice");
                    assert!(
                        self.words[p as usize] & LINKED != 0,
                        "model: {p} queued unlinked"
                    );
                }
            }
        }
        let linked = self.words.iter().filter(|&&w| w & LINKED != 0).count();
        assert_eq!(linked, seen.len(), "model: LINKED word on no queue");
    }
}

/// The guest's side of the real domain.
#[derive(Default)]
struct Guest {
    /// Control block address of each vCPU that registered one.
    cb: Vec<Option<u64>>,
    /// Linux's per-queue local head (0: read HEAD next time).
    local: Vec<[u32; QUEUES]>,
    /// Event-array pages added.
    pages: u32,
}

impl Guest {
    fn new() -> Self {
        Guest {
            cb: vec![None; VCPUS as usize],
            local: vec![[0; QUEUES]; VCPUS as usize],
            pages: 0,
        }
    }

    fn word_gpa(&self, p: u32) -> Option<u64> {
        let page = p / WORDS_PER_PAGE;
        (page < self.pages)
            .then(|| ((ARRAY_GFN + u64::from(page)) << 12) + 4 * u64::from(p % WORDS_PER_PAGE))
    }
}

struct Harness<'a> {
    f: Fx,
    g: Guest,
    shape: &'a Shape,
}

impl Harness<'_> {
    fn zero_page(&self, gfn: u64) {
        self.f
            .mem
            .write_slice(&[0u8; 4096], GuestAddress(gfn << 12))
            .unwrap();
    }

    /// The 1024 words of frame `gfn` (in chunks: cheap even in debug builds).
    fn read_page(&self, gfn: u64) -> Vec<u32> {
        let mut words = Vec::with_capacity(WORDS_PER_PAGE as usize);
        for chunk in 0..WORDS_PER_PAGE as u64 / 32 {
            let gpa = GuestAddress((gfn << 12) + 128 * chunk);
            let part: [u32; 32] = self.f.mem.read_obj(gpa).unwrap();
            words.extend_from_slice(&part);
        }
        words
    }

    /// Linux `consume_one_event` on the highest-priority ready queue.
    fn consume(&mut self, v: u32, ack: bool) {
        let f = &self.f;
        let Some(cb) = self.g.cb[v as usize] else {
            return;
        };
        let ready = f.read_u32(cb);
        if ready == 0 {
            return;
        }
        let q = ready.trailing_zeros() as usize;
        let local = self.g.local[v as usize][q];
        let port = if local != 0 {
            local
        } else {
            f.read_u32(cb + 8 + 4 * q as u64)
        };
        let Some(gpa) = self.g.word_gpa(port) else {
            panic!("guest: READY {v}/{q} but head {port} has no word");
        };
        let w = f.read_u32(gpa);
        let mut new = w & !(LINKED | LINK);
        if ack && w & (PENDING | MASKED) == PENDING {
            new &= !PENDING; // handled and acknowledged
        }
        f.write_u32(gpa, new);
        let next = w & LINK;
        if next == 0 {
            f.write_u32(cb, f.read_u32(cb) & !(1 << q));
        }
        self.g.local[v as usize][q] = next;
    }

    /// The queue a guest walking from its local head or HEAD would see.
    fn walk(&self, v: u32, q: usize) -> Vec<u32> {
        let cb = self.g.cb[v as usize].unwrap();
        let mut p = self.g.local[v as usize][q];
        if p == 0 && self.f.read_u32(cb) & (1 << q) != 0 {
            p = self.f.read_u32(cb + 8 + 4 * q as u64);
        }
        let mut seen = Vec::new();
        while p != 0 {
            assert!(
                seen.len() <= self.shape.ports.len(),
                "vCPU {v} queue {q} loops: {seen:?}"
            );
            seen.push(p);
            let Some(gpa) = self.g.word_gpa(p) else {
                panic!("vCPU {v} queue {q} reaches {p} without a word: {seen:?}");
            };
            p = self.f.read_u32(gpa) & LINK;
        }
        seen
    }

    fn run(&mut self, op: Op) -> R {
        let (ev, mem) = (&self.f.ev, &self.f.mem);
        let word = |p| self.g.word_gpa(p);
        match op {
            Op::Alloc(d, _) => ev.alloc_unbound(mem, d).map(Some),
            Op::Prefill => {
                // Allocating a thousand ports one by one costs O(n^2) lookups
                // on both sides, so restore a snapshot with them instead.
                let mut st = ev.state();
                assert!(st.fifo.is_none(), "prefill under 2-level only");
                let have: BTreeSet<u32> = st.ports.iter().map(|x| x.port).collect();
                st.ports.extend(
                    (1..=self.shape.prefill_to)
                        .filter(|p| !have.contains(p))
                        .map(|port| PortState {
                            port,
                            binding: Binding::Unbound { remote_dom: 0 },
                            vcpu: 0,
                            priority: 7,
                            fifo_pending: false,
                        }),
                );
                st.ports.sort_by_key(|x| x.port);
                let (layout, rec) = (self.f.layout.clone(), self.f.rec.clone());
                self.f.ev = EventChannels::from_state(&st, layout, rec).unwrap();
                Ok(Some(self.shape.prefill_to))
            }
            Op::BindLoop(r, _) => ev.bind_interdomain(mem, DOMID_SELF, r).map(Some),
            Op::BindIpi(v, _) => ev.bind_ipi(mem, v).map(Some),
            Op::BindVirq(virq, v, _) => ev.bind_virq(mem, virq, v).map(Some),
            Op::RaiseVirq(virq, v) => {
                let virq = Virq::try_from(virq).unwrap();
                Ok(Some(u32::from(ev.raise_virq(mem, virq, v))))
            }
            Op::Close(p) => ev.close(mem, p).map(|_| None),
            Op::Send(p) => ev.send(mem, p).map(|_| None),
            Op::Unmask(p) => ev.unmask(mem, p).map(|_| None),
            Op::BindVcpu(p, v) => ev.bind_vcpu(mem, p, v).map(|_| None),
            Op::SetPriority(p, q) => ev.set_priority(p, q).map(|_| None),
            Op::InitControl(v, off, good) => {
                let gfn = if good {
                    CB_GFN + u64::from(v)
                } else {
                    PAST_RAM_GFN
                };
                let r = ev.init_control(mem, gfn, off, v);
                if r.is_ok() {
                    self.g.cb[v as usize] = Some((gfn << 12) + u64::from(off));
                }
                r.map(|b| Some(u32::from(b)))
            }
            Op::ExpandArray(frame) => {
                let gfn = match frame {
                    Frame::Masked | Frame::Zeroed => {
                        let gfn = ARRAY_GFN + u64::from(self.g.pages);
                        let init = if frame == Frame::Masked { MASKED } else { 0 };
                        let page: Vec<u8> = (0..WORDS_PER_PAGE)
                            .flat_map(|_| init.to_le_bytes())
                            .collect();
                        mem.write_slice(&page, GuestAddress(gfn << 12)).unwrap();
                        gfn
                    }
                    Frame::PastRam => PAST_RAM_GFN,
                    Frame::Huge => u64::MAX,
                };
                let r = ev.expand_array(mem, gfn);
                if r.is_ok() {
                    self.g.pages += 1;
                }
                r.map(|_| None)
            }
            Op::GuestMask(p) => {
                if let Some(gpa) = word(p) {
                    self.f.write_u32(gpa, self.f.read_u32(gpa) | MASKED);
                }
                Ok(None)
            }
            Op::GuestClearMask(p) => {
                if let Some(gpa) = word(p) {
                    self.f.write_u32(gpa, self.f.read_u32(gpa) & !MASKED);
                }
                Ok(None)
            }
            Op::GuestUnmask(p) => {
                let Some(gpa) = word(p) else {
                    return Ok(None);
                };
                let w = self.f.read_u32(gpa);
                if w & (MASKED | PENDING) == MASKED | PENDING {
                    ev.unmask(mem, p).map(|_| None)
                } else {
                    self.f.write_u32(gpa, w & !MASKED);
                    Ok(None)
                }
            }
            Op::GuestConsume(v, ack) => {
                self.consume(v, ack);
                Ok(None)
            }
            Op::GuestClearPending(p) => {
                if let Some(gpa) = word(p) {
                    self.f.write_u32(gpa, self.f.read_u32(gpa) & !PENDING);
                }
                Ok(None)
            }
            Op::GuestAck(v) => {
                self.f.guest_clear_upcall(v);
                Ok(None)
            }
            Op::Reset => {
                ev.reset(mem);
                for v in 0..u64::from(VCPUS) {
                    self.zero_page(CB_GFN + v);
                }
                self.g = Guest::new();
                Ok(None)
            }
        }
    }

    fn compare(&self, m: &Model, ctx: &str) {
        m.check_invariants();
        let f = &self.f;
        assert_eq!(f.ev.is_fifo(), m.fifo, "{ctx}: is_fifo");
        // Every word of every event-array page.
        assert_eq!(self.g.pages as usize, m.pages(), "{ctx}: pages");
        let want = m.expected_words();
        for page in 0..self.g.pages {
            let got = self.read_page(ARRAY_GFN + u64::from(page));
            let base = (page * WORDS_PER_PAGE) as usize;
            let want = &want[base..base + WORDS_PER_PAGE as usize];
            if got != want {
                let i = (0..got.len()).find(|&i| got[i] != want[i]).unwrap();
                panic!(
                    "{ctx}: word {} is {:#010x}, model {:#010x}",
                    base + i,
                    got[i],
                    want[i]
                );
            }
        }
        // Port by port.
        let st = f.ev.state();
        for &p in &self.shape.ports {
            let want = if p > m.max_port {
                Err(XenErrno::EINVAL)
            } else {
                Ok(match m.ports.get(&p) {
                    None => (EvtchnStatusDetail::Closed, 0),
                    Some(x) => (
                        match x.kind {
                            Kind::Unbound(d) => EvtchnStatusDetail::Unbound { dom: d },
                            Kind::Loop(q) => EvtchnStatusDetail::Interdomain { dom: OWN, port: q },
                            Kind::Virq(v) => EvtchnStatusDetail::Virq(v),
                            Kind::Ipi => EvtchnStatusDetail::Ipi,
                        },
                        x.vcpu,
                    ),
                })
            };
            let got = f.ev.status(p).map(|s| (s.detail, s.vcpu));
            assert_eq!(got, want, "{ctx}: status {p}");
            assert_eq!(f.ev.pending(&f.mem, p), m.pending(p), "{ctx}: pending({p})");
            let got = st
                .ports
                .binary_search_by_key(&p, |x| x.port)
                .ok()
                .map(|i| (u32::from(st.ports[i].priority), st.ports[i].fifo_pending));
            let want = m.ports.get(&p).map(|x| (x.priority, x.early));
            assert_eq!(got, want, "{ctx}: priority, remembered pending of {p}");
            if p < 4096 {
                assert_eq!(
                    (f.pending_bit(p), f.mask_bit(p)),
                    (m.twol_pending.contains(&p), m.twol_mask.contains(&p)),
                    "{ctx}: 2-level bits of {p}"
                );
            }
        }
        // vCPU by vCPU.
        for v in 0..VCPUS {
            let vu = v as usize;
            assert_eq!(
                f.upcall_pending(v) == 1,
                m.upcall[vu],
                "{ctx}: upcall_pending {v}"
            );
            let sel: u64 = f
                .mem
                .read_obj(GuestAddress(SHINFO + 64 * u64::from(v) + 8))
                .unwrap();
            assert_eq!(sel, 0, "{ctx}: 2-level selector of {v}");
            let cb_gfn = CB_GFN + u64::from(v);
            match m.cb[vu] {
                None => {
                    assert_eq!(self.g.cb[vu], None, "{ctx}: control block {v}");
                    assert!(
                        self.read_page(cb_gfn) == [0; WORDS_PER_PAGE as usize],
                        "{ctx}: control block page of {v} written"
                    );
                }
                Some(off) => {
                    let cb = (cb_gfn << 12) + u64::from(off);
                    assert_eq!(self.g.cb[vu], Some(cb), "{ctx}: control block {v}");
                    assert_eq!(f.read_u32(cb), m.ready[vu], "{ctx}: READY {v}");
                    assert_eq!(f.read_u32(cb + 4), 0, "{ctx}: reserved word {v}");
                    for q in 0..QUEUES {
                        let head = f.read_u32(cb + 8 + 4 * q as u64);
                        assert_eq!(head, m.head[vu][q], "{ctx}: HEAD {v}/{q}");
                        let walk = self.walk(v, q);
                        assert!(
                            walk.iter().eq(m.queues[vu][q].iter()),
                            "{ctx}: queue {v}/{q} walks {walk:?}, model {:?}",
                            m.queues[vu][q]
                        );
                    }
                }
            }
        }
        assert_eq!(*f.rec.upcalls.lock().unwrap(), m.upcalls, "{ctx}: upcalls");
        assert_eq!(*f.rec.raised.lock().unwrap(), m.raised, "{ctx}: raised");
    }

    /// Runs `op` on both sides and compares; returns the port it bound.
    fn step(&mut self, m: &mut Model, op: Op, ctx: &str) -> Option<u32> {
        let got = self.run(op);
        let want = m.apply(op, self.shape);
        assert_eq!(got, want, "{ctx}: result");
        let unmask = matches!(
            op,
            Op::Alloc(_, true)
                | Op::BindLoop(_, true)
                | Op::BindIpi(_, true)
                | Op::BindVirq(_, _, true)
        );
        if let (true, Ok(Some(p))) = (unmask, got) {
            let got = self.run(Op::GuestUnmask(p));
            let want = m.apply(Op::GuestUnmask(p), self.shape);
            assert_eq!(got, want, "{ctx}: unmask of {p}");
        }
        self.compare(m, ctx);
        got.ok().flatten()
    }

    /// Brings the domain into FIFO mode and binds the setup's ports.
    fn setup(&mut self, m: &mut Model, s: &Setup, ctx: &str) {
        for (i, op) in setup_ops(s, self.shape).into_iter().enumerate() {
            self.step(m, op, &format!("{ctx}setup {i}: {op:?}"));
        }
        for (i, &b) in s.binds.iter().enumerate() {
            let ctx = format!("{ctx}bind {i}: {b:?}");
            match b {
                Bind::Ipi(v) => {
                    self.step(m, Op::BindIpi(v, true), &ctx);
                }
                Bind::Virq(x, v) => {
                    self.step(m, Op::BindVirq(x, v, true), &ctx);
                }
                Bind::Loop => {
                    if let Some(p) = self.step(m, Op::Alloc(DOMID_SELF, true), &ctx) {
                        self.step(m, Op::BindLoop(p, true), &ctx);
                    }
                }
            }
        }
    }
}

fn check(shape: &Shape, s: &Setup, ops: &[Op]) {
    let mut c = Config::new(OWN);
    c.max_evtchn_port = shape.max_port;
    let mut h = Harness {
        f: fx_with(true, VCPUS, c),
        g: Guest::new(),
        shape,
    };
    let mut m = Model::new(shape.max_port);
    // 2-level phase: bind IPIs, mask and send some.
    for &(v, send, mask) in &s.pre {
        let p = h.f.ev.bind_ipi(&h.f.mem, v).unwrap();
        assert_eq!(Ok(Some(p)), m.apply(Op::BindIpi(v, false), shape));
        if mask {
            h.f.guest_mask(p, true);
            m.twol_mask.insert(p);
        }
        if send {
            h.f.ev.send(&h.f.mem, p).unwrap();
            m.twol_pending.insert(p);
        }
    }
    // The guest acknowledges whatever the 2-level phase delivered.
    for v in 0..VCPUS {
        h.f.guest_clear_upcall(v);
        h.f.guest_clear_sel(v);
    }
    h.f.take_upcalls();
    h.f.rec.raised.lock().unwrap().clear();
    h.compare(&m, "setup");
    h.setup(&mut m, s, "");
    for (i, &op) in ops.iter().enumerate() {
        let op = op.resolve(shape, &m);
        h.step(&mut m, op, &format!("step {i}: {op:?}"));
        if op == Op::Reset {
            h.setup(&mut m, s, &format!("step {i}, "));
        }
    }
}

/// `cases` cases; XorShift because ChaCha alone took a third of the run
/// time in debug builds.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        rng_algorithm: prop::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::with_cases(cases)
    }
}

proptest! {
    #![proptest_config(config(192))]

    #[test]
    fn test_model_fifo_low_ports_matches(
        s in setup(),
        ops in prop::collection::vec(op(), 1..160),
    ) {
        check(&Shape::low(), &s, &ops);
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn test_model_fifo_page_boundary_matches(
        s in setup(),
        ops in prop::collection::vec(op(), 1..160),
    ) {
        check(&Shape::high(), &s, &ops);
    }
}
