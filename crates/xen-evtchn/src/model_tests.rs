// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Model-based property test: random operation sequences (including a guest
//! masking, consuming and acknowledging events behind our back) run against
//! [`EventChannels`] and a plain reference model of the port table and the
//! 2-level bits; results, errnos, port status and every guest-visible bit
//! must agree after each step, in both layouts.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use xen_abi::errno::XenErrno;
use xen_abi::event_channel::EvtchnStatusDetail;
use xen_abi::xen::DOMID_SELF;

use crate::Config;
use crate::testing::{Fx, fx_with};

const OWN: u16 = 1;
const VCPUS: u32 = 3;
const MAX_PORT: u32 = 40;
const PORTS: u32 = 44;

#[derive(Clone, Copy, Debug)]
enum Op {
    Alloc(u16),
    BindLoop(u32),
    BindIpi(u32),
    BindVirq(u32, u32),
    Close(u32),
    Send(u32),
    Unmask(u32),
    BindVcpu(u32, u32),
    GuestMask(u32, bool),
    GuestClearPending(u32),
    GuestAck(u32),
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    let port = 0..PORTS;
    let vcpu = 0..=VCPUS;
    prop_oneof![
        4 => prop_oneof![Just(0u16), Just(DOMID_SELF), Just(OWN), Just(5u16)].prop_map(Op::Alloc),
        2 => port.clone().prop_map(Op::BindLoop),
        4 => vcpu.clone().prop_map(Op::BindIpi),
        2 => (prop_oneof![Just(0u32), Just(1), Just(2), Just(11), Just(24)], vcpu.clone())
            .prop_map(|(v, c)| Op::BindVirq(v, c)),
        2 => port.clone().prop_map(Op::Close),
        5 => port.clone().prop_map(Op::Send),
        2 => port.clone().prop_map(Op::Unmask),
        2 => (port.clone(), vcpu.clone()).prop_map(|(p, v)| Op::BindVcpu(p, v)),
        2 => (port.clone(), any::<bool>()).prop_map(|(p, m)| Op::GuestMask(p, m)),
        2 => port.clone().prop_map(Op::GuestClearPending),
        2 => (0..VCPUS).prop_map(Op::GuestAck),
        1 => Just(Op::Reset),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Unbound(u16),
    Loop(u32),
    Virq(u32),
    Ipi,
}

#[derive(Default)]
struct Model {
    wide: bool,
    ports: BTreeMap<u32, (Kind, u32)>,
    pending: BTreeSet<u32>,
    mask: BTreeSet<u32>,
    sel: Vec<u64>,
    upcall: Vec<bool>,
    upcalls: Vec<u32>,
}

type R = Result<Option<u32>, XenErrno>;

impl Model {
    fn w(&self) -> u32 {
        if self.wide { 64 } else { 32 }
    }

    fn free(&self) -> Result<u32, XenErrno> {
        (1..=MAX_PORT)
            .find(|p| !self.ports.contains_key(p))
            .ok_or(XenErrno::ENOSPC)
    }

    fn mark_sel(&mut self, v: u32, word: u32) {
        let v = v as usize;
        if self.sel[v] & (1 << word) == 0 {
            self.sel[v] |= 1 << word;
            if !self.upcall[v] {
                self.upcall[v] = true;
                self.upcalls.push(v as u32);
            }
        }
    }

    fn raise(&mut self, p: u32) {
        let v = self.ports[&p].1;
        if self.pending.insert(p) && !self.mask.contains(&p) {
            self.mark_sel(v, p / self.w());
        }
    }

    fn valid(p: u32) -> Result<(), XenErrno> {
        if p <= MAX_PORT {
            Ok(())
        } else {
            Err(XenErrno::EINVAL)
        }
    }

    fn close(&mut self, p: u32) -> Result<(), XenErrno> {
        Self::valid(p)?;
        let (k, _) = self.ports.remove(&p).ok_or(XenErrno::EINVAL)?;
        if let Kind::Loop(q) = k {
            self.ports.get_mut(&q).unwrap().0 = Kind::Unbound(OWN);
        }
        self.pending.remove(&p);
        Ok(())
    }

    fn apply(&mut self, op: Op) -> R {
        match op {
            Op::Alloc(d) => {
                let p = self.free()?;
                let d = if d == DOMID_SELF { OWN } else { d };
                self.ports.insert(p, (Kind::Unbound(d), 0));
                Ok(Some(p))
            }
            Op::BindLoop(r) => {
                let l = self.free()?;
                Self::valid(r)?;
                if self.ports.get(&r).map(|x| x.0) != Some(Kind::Unbound(OWN)) {
                    return Err(XenErrno::EINVAL);
                }
                self.ports.get_mut(&r).unwrap().0 = Kind::Loop(l);
                self.ports.insert(l, (Kind::Loop(r), 0));
                self.raise(l);
                Ok(Some(l))
            }
            Op::BindIpi(v) => {
                if v >= VCPUS {
                    return Err(XenErrno::ENOENT);
                }
                let p = self.free()?;
                self.ports.insert(p, (Kind::Ipi, v));
                Ok(Some(p))
            }
            Op::BindVirq(virq, v) => {
                let per_vcpu = virq <= 1;
                if virq >= 24 || (!per_vcpu && v != 0) {
                    return Err(XenErrno::EINVAL);
                }
                if v >= VCPUS {
                    return Err(XenErrno::ENOENT);
                }
                let dup = self
                    .ports
                    .values()
                    .any(|&(k, c)| k == Kind::Virq(virq) && (!per_vcpu || c == v));
                if dup {
                    return Err(XenErrno::EEXIST);
                }
                let p = self.free()?;
                self.ports.insert(p, (Kind::Virq(virq), v));
                Ok(Some(p))
            }
            Op::Close(p) => self.close(p).map(|_| None),
            Op::Send(p) => {
                Self::valid(p)?;
                match self.ports.get(&p).map(|x| x.0) {
                    Some(Kind::Loop(q)) => self.raise(q),
                    Some(Kind::Ipi) => self.raise(p),
                    Some(Kind::Unbound(_)) => {}
                    _ => return Err(XenErrno::EINVAL),
                }
                Ok(None)
            }
            Op::Unmask(p) => {
                Self::valid(p)?;
                let v = self.ports.get(&p).map_or(0, |x| x.1);
                if self.mask.remove(&p) && self.pending.contains(&p) {
                    self.mark_sel(v, p / self.w());
                }
                Ok(None)
            }
            Op::BindVcpu(p, v) => {
                if v >= VCPUS {
                    return Err(XenErrno::ENOENT);
                }
                Self::valid(p)?;
                let e = self.ports.get_mut(&p).ok_or(XenErrno::EINVAL)?;
                match e.0 {
                    Kind::Ipi | Kind::Virq(0 | 1) => return Err(XenErrno::EINVAL),
                    _ => e.1 = v,
                }
                if self.pending.contains(&p) && !self.mask.contains(&p) {
                    self.mark_sel(v, p / self.w());
                }
                Ok(None)
            }
            Op::GuestMask(p, m) => {
                if m {
                    self.mask.insert(p);
                } else {
                    self.mask.remove(&p);
                }
                Ok(None)
            }
            Op::GuestClearPending(p) => {
                self.pending.remove(&p);
                Ok(None)
            }
            Op::GuestAck(v) => {
                self.upcall[v as usize] = false;
                self.sel[v as usize] = 0;
                Ok(None)
            }
            Op::Reset => {
                let ports: Vec<u32> = self.ports.keys().copied().collect();
                for p in ports {
                    let _ = self.close(p);
                }
                Ok(None)
            }
        }
    }
}

fn run(f: &Fx, op: Op) -> R {
    let (ev, mem) = (&f.ev, &f.mem);
    match op {
        Op::Alloc(d) => ev.alloc_unbound(mem, d).map(Some),
        Op::BindLoop(r) => ev.bind_interdomain(mem, DOMID_SELF, r).map(Some),
        Op::BindIpi(v) => ev.bind_ipi(mem, v).map(Some),
        Op::BindVirq(virq, v) => ev.bind_virq(mem, virq, v).map(Some),
        Op::Close(p) => ev.close(mem, p).map(|_| None),
        Op::Send(p) => ev.send(mem, p).map(|_| None),
        Op::Unmask(p) => ev.unmask(mem, p).map(|_| None),
        Op::BindVcpu(p, v) => ev.bind_vcpu(mem, p, v).map(|_| None),
        Op::GuestMask(p, m) => {
            f.guest_mask(p, m);
            Ok(None)
        }
        Op::GuestClearPending(p) => {
            f.guest_clear_pending(p);
            Ok(None)
        }
        Op::GuestAck(v) => {
            f.guest_clear_upcall(v);
            f.guest_clear_sel(v);
            Ok(None)
        }
        Op::Reset => {
            ev.reset(mem);
            Ok(None)
        }
    }
}

fn compare(f: &Fx, m: &Model, step: usize) {
    for p in 0..PORTS {
        assert_eq!(
            f.pending_bit(p),
            m.pending.contains(&p),
            "step {step}: pending {p}"
        );
        assert_eq!(f.mask_bit(p), m.mask.contains(&p), "step {step}: mask {p}");
        let st = f.ev.status(p);
        let want = if p > MAX_PORT {
            Err(XenErrno::EINVAL)
        } else {
            Ok(match m.ports.get(&p) {
                None => (EvtchnStatusDetail::Closed, 0),
                Some(&(k, v)) => (
                    match k {
                        Kind::Unbound(d) => EvtchnStatusDetail::Unbound { dom: d },
                        Kind::Loop(q) => EvtchnStatusDetail::Interdomain { dom: OWN, port: q },
                        Kind::Virq(x) => EvtchnStatusDetail::Virq(x),
                        Kind::Ipi => EvtchnStatusDetail::Ipi,
                    },
                    v,
                ),
            })
        };
        assert_eq!(
            st.map(|s| (s.detail, s.vcpu)),
            want,
            "step {step}: status {p}"
        );
    }
    for v in 0..VCPUS {
        for w in 0..m.w() {
            assert_eq!(
                f.sel_bit(v, w),
                m.sel[v as usize] & (1 << w) != 0,
                "step {step}: sel {v}/{w}"
            );
        }
        assert_eq!(
            f.upcall_pending(v) == 1,
            m.upcall[v as usize],
            "step {step}: upcall {v}"
        );
    }
    assert_eq!(
        *f.rec.upcalls.lock().unwrap(),
        m.upcalls,
        "step {step}: upcalls"
    );
}

fn check(wide: bool, ops: &[Op]) {
    let mut c = Config::new(OWN);
    c.max_evtchn_port = MAX_PORT;
    let f = fx_with(wide, VCPUS, c);
    let mut m = Model {
        wide,
        sel: vec![0; VCPUS as usize],
        upcall: vec![false; VCPUS as usize],
        ..Default::default()
    };
    for (i, &op) in ops.iter().enumerate() {
        assert_eq!(run(&f, op), m.apply(op), "step {i}: {op:?}");
        compare(&f, &m, i);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn test_model_two_level_long_mode_matches(ops in prop::collection::vec(op(), 1..120)) {
        check(true, &ops);
    }

    #[test]
    fn test_model_two_level_compat_matches(ops in prop::collection::vec(op(), 1..120)) {
        check(false, &ops);
    }
}
