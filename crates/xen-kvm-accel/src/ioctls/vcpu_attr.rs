// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The typed per-vCPU Xen attributes (`KVM_XEN_VCPU_{GET,SET}_ATTR`),
//! runstate data and adjustments among them, and their encoding into
//! and decoding from the kernel's union.

use kvm_bindings::{
    KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADDR, KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADJUST,
    KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_CURRENT, KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_DATA,
    KVM_XEN_VCPU_ATTR_TYPE_TIMER, KVM_XEN_VCPU_ATTR_TYPE_UPCALL_VECTOR,
    KVM_XEN_VCPU_ATTR_TYPE_VCPU_ID, KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO,
    KVM_XEN_VCPU_ATTR_TYPE_VCPU_TIME_INFO, kvm_xen_vcpu_attr,
};
use xen_abi::vcpu::RunstateState;

use super::{IoctlError, KVM_XEN_INVALID_GPA, Result};

/// Runstate times as KVM keeps them (`RUNSTATE_DATA`); the four times
/// must add up to `state_entry_time`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunstateData {
    /// Current state.
    pub state: RunstateState,
    /// Kvmclock time of the last state change.
    pub state_entry_time: u64,
    /// Time spent running, runnable, blocked, offline (ns).
    pub times: [u64; 4],
}

/// A runstate adjustment (`RUNSTATE_ADJUST`): deltas added to each time
/// (their sum must equal `entry_time_delta`), and optionally a new state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunstateAdjust {
    /// The new state, or `None` to keep the current one.
    pub state: Option<RunstateState>,
    /// Added to `state_entry_time`.
    pub entry_time_delta: u64,
    /// Added to the running, runnable, blocked, offline times.
    pub deltas: [u64; 4],
}

/// A per-vCPU Xen attribute (`KVM_XEN_VCPU_{GET,SET}_ATTR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenVcpuAttr {
    /// `VCPU_INFO` (flag `SHARED_INFO`): the vcpu_info GPA; `None` to
    /// deactivate.
    VcpuInfoGpa(Option<u64>),
    /// `VCPU_TIME_INFO` (flag `SHARED_INFO`): a secondary pvclock area.
    TimeInfoGpa(Option<u64>),
    /// `RUNSTATE_ADDR` (flag `RUNSTATE`): the runstate area's GPA.
    RunstateAddr(Option<u64>),
    /// `RUNSTATE_CURRENT` (flag `RUNSTATE`): the current state.
    RunstateCurrent(RunstateState),
    /// `RUNSTATE_DATA` (flag `RUNSTATE`): state and times.
    RunstateData(RunstateData),
    /// `RUNSTATE_ADJUST` (flag `RUNSTATE`, write-only).
    RunstateAdjust(RunstateAdjust),
    /// `VCPU_ID` (flag `EVTCHN_SEND`): the Xen vCPU id.
    VcpuId(u32),
    /// `TIMER` (flag `EVTCHN_SEND`): the in-kernel single-shot timer;
    /// port 0 disables it (KVM then leaves timer hypercalls to us).
    Timer {
        /// The VIRQ_TIMER port, 0 for none.
        port: u32,
        /// Its priority ([`KVM_XEN_PRIO_2LEVEL`](super::KVM_XEN_PRIO_2LEVEL)).
        priority: u32,
        /// The armed deadline (kvmclock ns), 0 for none.
        expires_ns: u64,
    },
    /// `UPCALL_VECTOR` (flag `EVTCHN_SEND`): the per-vCPU LAPIC vector;
    /// 0 for none.
    UpcallVector(u8),
}

/// The readable per-vCPU attributes, for
/// [`XenVcpuIoctls::xen_vcpu_get_attr`](super::XenVcpuIoctls::xen_vcpu_get_attr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XenVcpuAttrKind {
    /// [`XenVcpuAttr::VcpuInfoGpa`].
    VcpuInfoGpa,
    /// [`XenVcpuAttr::TimeInfoGpa`].
    TimeInfoGpa,
    /// [`XenVcpuAttr::RunstateAddr`].
    RunstateAddr,
    /// [`XenVcpuAttr::RunstateCurrent`].
    RunstateCurrent,
    /// [`XenVcpuAttr::RunstateData`].
    RunstateData,
    /// [`XenVcpuAttr::VcpuId`].
    VcpuId,
    /// [`XenVcpuAttr::Timer`].
    Timer,
    /// [`XenVcpuAttr::UpcallVector`].
    UpcallVector,
}

impl XenVcpuAttrKind {
    pub(super) fn raw(self) -> u32 {
        match self {
            Self::VcpuInfoGpa => KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO,
            Self::TimeInfoGpa => KVM_XEN_VCPU_ATTR_TYPE_VCPU_TIME_INFO,
            Self::RunstateAddr => KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADDR,
            Self::RunstateCurrent => KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_CURRENT,
            Self::RunstateData => KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_DATA,
            Self::VcpuId => KVM_XEN_VCPU_ATTR_TYPE_VCPU_ID,
            Self::Timer => KVM_XEN_VCPU_ATTR_TYPE_TIMER,
            Self::UpcallVector => KVM_XEN_VCPU_ATTR_TYPE_UPCALL_VECTOR,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::VcpuInfoGpa => "VCPU_INFO",
            Self::TimeInfoGpa => "VCPU_TIME_INFO",
            Self::RunstateAddr => "RUNSTATE_ADDR",
            Self::RunstateCurrent => "RUNSTATE_CURRENT",
            Self::RunstateData => "RUNSTATE_DATA",
            Self::VcpuId => "VCPU_ID",
            Self::Timer => "TIMER",
            Self::UpcallVector => "UPCALL_VECTOR",
        }
    }
}

fn gpa_or_invalid(gpa: Option<u64>) -> u64 {
    gpa.unwrap_or(KVM_XEN_INVALID_GPA)
}

fn state_of(what: &'static str, raw: u64) -> Result<RunstateState> {
    i32::try_from(raw)
        .ok()
        .and_then(|s| RunstateState::try_from(s).ok())
        .ok_or(IoctlError::Decode { what, value: raw })
}

impl XenVcpuAttr {
    /// The attribute's name in the UAPI (`KVM_XEN_VCPU_ATTR_TYPE_<name>`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::VcpuInfoGpa(_) => "VCPU_INFO",
            Self::TimeInfoGpa(_) => "VCPU_TIME_INFO",
            Self::RunstateAddr(_) => "RUNSTATE_ADDR",
            Self::RunstateCurrent(_) => "RUNSTATE_CURRENT",
            Self::RunstateData(_) => "RUNSTATE_DATA",
            Self::RunstateAdjust(_) => "RUNSTATE_ADJUST",
            Self::VcpuId(_) => "VCPU_ID",
            Self::Timer { .. } => "TIMER",
            Self::UpcallVector(_) => "UPCALL_VECTOR",
        }
    }

    /// Encodes the attribute into the kernel's struct.
    pub fn encode(&self) -> kvm_xen_vcpu_attr {
        let mut a = kvm_xen_vcpu_attr::default();
        let ty = match *self {
            Self::VcpuInfoGpa(g) => {
                a.u.gpa = gpa_or_invalid(g);
                KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO
            }
            Self::TimeInfoGpa(g) => {
                a.u.gpa = gpa_or_invalid(g);
                KVM_XEN_VCPU_ATTR_TYPE_VCPU_TIME_INFO
            }
            Self::RunstateAddr(g) => {
                a.u.gpa = gpa_or_invalid(g);
                KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADDR
            }
            Self::RunstateCurrent(s) => {
                a.u.runstate.state = s.raw() as u64;
                KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_CURRENT
            }
            Self::RunstateData(d) => {
                a.u.runstate.state = d.state.raw() as u64;
                a.u.runstate.state_entry_time = d.state_entry_time;
                a.u.runstate.time_running = d.times[0];
                a.u.runstate.time_runnable = d.times[1];
                a.u.runstate.time_blocked = d.times[2];
                a.u.runstate.time_offline = d.times[3];
                KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_DATA
            }
            Self::RunstateAdjust(d) => {
                a.u.runstate.state = d.state.map_or(u64::MAX, |s| s.raw() as u64);
                a.u.runstate.state_entry_time = d.entry_time_delta;
                a.u.runstate.time_running = d.deltas[0];
                a.u.runstate.time_runnable = d.deltas[1];
                a.u.runstate.time_blocked = d.deltas[2];
                a.u.runstate.time_offline = d.deltas[3];
                KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADJUST
            }
            Self::VcpuId(id) => {
                a.u.vcpu_id = id;
                KVM_XEN_VCPU_ATTR_TYPE_VCPU_ID
            }
            Self::Timer {
                port,
                priority,
                expires_ns,
            } => {
                a.u.timer.port = port;
                a.u.timer.priority = priority;
                a.u.timer.expires_ns = expires_ns;
                KVM_XEN_VCPU_ATTR_TYPE_TIMER
            }
            Self::UpcallVector(v) => {
                a.u.vector = v;
                KVM_XEN_VCPU_ATTR_TYPE_UPCALL_VECTOR
            }
        };
        a.type_ = ty as u16;
        a
    }

    /// Decodes what KVM returned for a GET of `kind`.
    pub fn decode(kind: XenVcpuAttrKind, a: &kvm_xen_vcpu_attr) -> Result<Self> {
        let u = &a.u;
        let gpa = |g: u64| Some(g).filter(|&g| g != KVM_XEN_INVALID_GPA);
        // SAFETY: every member of the union is plain integers; reading one
        // reinterprets initialised bytes.
        unsafe {
            Ok(match kind {
                XenVcpuAttrKind::VcpuInfoGpa => Self::VcpuInfoGpa(gpa(u.gpa)),
                XenVcpuAttrKind::TimeInfoGpa => Self::TimeInfoGpa(gpa(u.gpa)),
                XenVcpuAttrKind::RunstateAddr => Self::RunstateAddr(gpa(u.gpa)),
                XenVcpuAttrKind::RunstateCurrent => {
                    Self::RunstateCurrent(state_of("RUNSTATE_CURRENT", u.runstate.state)?)
                }
                XenVcpuAttrKind::RunstateData => Self::RunstateData(RunstateData {
                    state: state_of("RUNSTATE_DATA", u.runstate.state)?,
                    state_entry_time: u.runstate.state_entry_time,
                    times: [
                        u.runstate.time_running,
                        u.runstate.time_runnable,
                        u.runstate.time_blocked,
                        u.runstate.time_offline,
                    ],
                }),
                XenVcpuAttrKind::VcpuId => Self::VcpuId(u.vcpu_id),
                XenVcpuAttrKind::Timer => Self::Timer {
                    port: u.timer.port,
                    priority: u.timer.priority,
                    expires_ns: u.timer.expires_ns,
                },
                XenVcpuAttrKind::UpcallVector => Self::UpcallVector(u.vector),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::undocumented_unsafe_blocks)]
    use super::*;
    use crate::ioctls::mock::Mock;
    use crate::ioctls::{KVM_XEN_PRIO_2LEVEL, XenVcpuIoctls};

    fn vcpu_round_trip(attr: XenVcpuAttr, kind: XenVcpuAttrKind) {
        let m = Mock::default();
        m.xen_vcpu_set_attr(attr).unwrap();
        assert_eq!(m.xen_vcpu_get_attr(kind).unwrap(), attr);
    }

    #[test]
    fn test_vcpu_attr_every_readable_kind_round_trips() {
        use XenVcpuAttrKind as K;
        vcpu_round_trip(XenVcpuAttr::VcpuInfoGpa(Some(0x1f0_0040)), K::VcpuInfoGpa);
        vcpu_round_trip(XenVcpuAttr::VcpuInfoGpa(None), K::VcpuInfoGpa);
        vcpu_round_trip(XenVcpuAttr::TimeInfoGpa(Some(0x2000)), K::TimeInfoGpa);
        vcpu_round_trip(XenVcpuAttr::RunstateAddr(Some(0x3ff1)), K::RunstateAddr);
        vcpu_round_trip(
            XenVcpuAttr::RunstateCurrent(RunstateState::Blocked),
            K::RunstateCurrent,
        );
        vcpu_round_trip(
            XenVcpuAttr::RunstateData(RunstateData {
                state: RunstateState::Running,
                state_entry_time: 10,
                times: [1, 2, 3, 4],
            }),
            K::RunstateData,
        );
        vcpu_round_trip(XenVcpuAttr::VcpuId(3), K::VcpuId);
        vcpu_round_trip(
            XenVcpuAttr::Timer {
                port: 5,
                priority: KVM_XEN_PRIO_2LEVEL,
                expires_ns: 123,
            },
            K::Timer,
        );
        vcpu_round_trip(XenVcpuAttr::UpcallVector(0xf3), K::UpcallVector);
    }

    #[test]
    fn test_vcpu_attr_runstate_adjust_keeps_state_as_all_ones() {
        let a = XenVcpuAttr::RunstateAdjust(RunstateAdjust {
            state: None,
            entry_time_delta: 0x5a + 0x6b6b,
            deltas: [0, 0, 0x5a, 0x6b6b],
        })
        .encode();
        assert_eq!(u32::from(a.type_), KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADJUST);
        let r = unsafe { a.u.runstate };
        assert_eq!(r.state, u64::MAX);
        assert_eq!((r.time_blocked, r.time_offline), (0x5a, 0x6b6b));
    }

    #[test]
    fn test_vcpu_attr_undecodable_runstate_is_an_error() {
        let mut raw = XenVcpuAttr::RunstateCurrent(RunstateState::Running).encode();
        raw.u.runstate.state = 9;
        assert!(matches!(
            XenVcpuAttr::decode(XenVcpuAttrKind::RunstateCurrent, &raw),
            Err(IoctlError::Decode { value: 9, .. })
        ));
    }
}
