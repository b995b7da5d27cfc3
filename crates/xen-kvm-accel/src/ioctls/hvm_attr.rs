// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The typed VM-wide Xen attributes (`KVM_XEN_HVM_{GET,SET}_ATTR`),
//! in-kernel event-channel send targets among them, and their
//! encoding into and decoding from the kernel's union.

use kvm_bindings::{
    KVM_XEN_ATTR_TYPE_EVTCHN, KVM_XEN_ATTR_TYPE_LONG_MODE, KVM_XEN_ATTR_TYPE_RUNSTATE_UPDATE_FLAG,
    KVM_XEN_ATTR_TYPE_SHARED_INFO, KVM_XEN_ATTR_TYPE_UPCALL_VECTOR, KVM_XEN_ATTR_TYPE_XEN_VERSION,
    KVM_XEN_EVTCHN_DEASSIGN, KVM_XEN_EVTCHN_RESET, KVM_XEN_EVTCHN_UPDATE, kvm_xen_hvm_attr,
};

use super::{KVM_XEN_INVALID_GFN, KVM_XEN_PRIO_2LEVEL, Result};

/// Xen's `EVTCHNSTAT_interdomain`.
const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// Xen's `EVTCHNSTAT_ipi`.
const EVTCHNSTAT_IPI: u32 = 5;

/// What kind of channel an [`EvtchnAttr::Assign`] registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvtchnKind {
    /// An IPI: it must deliver to its own port number.
    Ipi,
    /// An inter-domain channel: to a local port or an eventfd.
    Interdomain,
}

/// Where KVM delivers a registered send port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvtchnTarget {
    /// Raise this port on this Xen vCPU (2-level).
    Port {
        /// The port raised.
        port: u32,
        /// The Xen vCPU id notified.
        vcpu: u32,
    },
    /// Signal this eventfd.
    Eventfd(i32),
}

/// `KVM_XEN_ATTR_TYPE_EVTCHN`: in-kernel `EVTCHNOP_send` targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvtchnAttr {
    /// Registers `send_port`.
    Assign {
        /// The port the guest sends on.
        send_port: u32,
        /// Its kind.
        kind: EvtchnKind,
        /// What a send does.
        target: EvtchnTarget,
    },
    /// Changes the notified vCPU of a port-delivering registration.
    Update {
        /// The port the guest sends on.
        send_port: u32,
        /// Its kind (must match the registration).
        kind: EvtchnKind,
        /// The port delivered to (must match the registration).
        port: u32,
        /// The new Xen vCPU id.
        vcpu: u32,
    },
    /// Removes `send_port`'s registration.
    Deassign(u32),
    /// Removes every registration.
    Reset,
}

/// A VM-wide Xen attribute (`KVM_XEN_HVM_{GET,SET}_ATTR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenHvmAttr {
    /// `LONG_MODE` (flag `SHARED_INFO`): the 64-bit shared_info layout.
    LongMode(bool),
    /// `SHARED_INFO` (flag `SHARED_INFO`): the shared_info frame, `None`
    /// to deactivate.
    SharedInfoGfn(Option<u64>),
    /// `UPCALL_VECTOR` (flag `SHARED_INFO`): the global callback vector KVM
    /// injects while `evtchn_upcall_pending` is set; 0 for none.
    UpcallVector(u8),
    /// `EVTCHN` (flag `EVTCHN_SEND`, write-only).
    Evtchn(EvtchnAttr),
    /// `XEN_VERSION` (flag `EVTCHN_SEND`): KVM answers `XENVER_version`
    /// itself when non-zero.
    XenVersion(u32),
    /// `RUNSTATE_UPDATE_FLAG` (flag `RUNSTATE_UPDATE_FLAG`).
    RunstateUpdateFlag(bool),
}

/// The readable VM-wide attributes, for
/// [`XenVmIoctls::xen_hvm_get_attr`](super::XenVmIoctls::xen_hvm_get_attr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XenHvmAttrKind {
    /// [`XenHvmAttr::LongMode`].
    LongMode,
    /// [`XenHvmAttr::SharedInfoGfn`].
    SharedInfoGfn,
    /// [`XenHvmAttr::UpcallVector`].
    UpcallVector,
    /// [`XenHvmAttr::XenVersion`].
    XenVersion,
    /// [`XenHvmAttr::RunstateUpdateFlag`].
    RunstateUpdateFlag,
}

impl XenHvmAttrKind {
    pub(super) fn raw(self) -> u32 {
        match self {
            Self::LongMode => KVM_XEN_ATTR_TYPE_LONG_MODE,
            Self::SharedInfoGfn => KVM_XEN_ATTR_TYPE_SHARED_INFO,
            Self::UpcallVector => KVM_XEN_ATTR_TYPE_UPCALL_VECTOR,
            Self::XenVersion => KVM_XEN_ATTR_TYPE_XEN_VERSION,
            Self::RunstateUpdateFlag => KVM_XEN_ATTR_TYPE_RUNSTATE_UPDATE_FLAG,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::LongMode => "LONG_MODE",
            Self::SharedInfoGfn => "SHARED_INFO",
            Self::UpcallVector => "UPCALL_VECTOR",
            Self::XenVersion => "XEN_VERSION",
            Self::RunstateUpdateFlag => "RUNSTATE_UPDATE_FLAG",
        }
    }
}

impl XenHvmAttr {
    /// The attribute's name in the UAPI (`KVM_XEN_ATTR_TYPE_<name>`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::LongMode(_) => "LONG_MODE",
            Self::SharedInfoGfn(_) => "SHARED_INFO",
            Self::UpcallVector(_) => "UPCALL_VECTOR",
            Self::Evtchn(_) => "EVTCHN",
            Self::XenVersion(_) => "XEN_VERSION",
            Self::RunstateUpdateFlag(_) => "RUNSTATE_UPDATE_FLAG",
        }
    }

    /// Encodes the attribute into the kernel's struct.
    pub fn encode(&self) -> kvm_xen_hvm_attr {
        let mut a = kvm_xen_hvm_attr::default();
        match *self {
            Self::LongMode(on) => {
                a.type_ = KVM_XEN_ATTR_TYPE_LONG_MODE as u16;
                a.u.long_mode = u8::from(on);
            }
            Self::SharedInfoGfn(gfn) => {
                a.type_ = KVM_XEN_ATTR_TYPE_SHARED_INFO as u16;
                a.u.shared_info.gfn = gfn.unwrap_or(KVM_XEN_INVALID_GFN);
            }
            Self::UpcallVector(v) => {
                a.type_ = KVM_XEN_ATTR_TYPE_UPCALL_VECTOR as u16;
                a.u.vector = v;
            }
            Self::Evtchn(e) => {
                a.type_ = KVM_XEN_ATTR_TYPE_EVTCHN as u16;
                let kind = |k: EvtchnKind| match k {
                    EvtchnKind::Ipi => EVTCHNSTAT_IPI,
                    EvtchnKind::Interdomain => EVTCHNSTAT_INTERDOMAIN,
                };
                let mut ev = kvm_bindings::kvm_xen_hvm_attr__bindgen_ty_1__bindgen_ty_2::default();
                match e {
                    EvtchnAttr::Assign {
                        send_port,
                        kind: k,
                        target,
                    } => {
                        ev.send_port = send_port;
                        ev.type_ = kind(k);
                        match target {
                            EvtchnTarget::Port { port, vcpu } => {
                                ev.deliver.port.port = port;
                                ev.deliver.port.vcpu = vcpu;
                                ev.deliver.port.priority = KVM_XEN_PRIO_2LEVEL;
                            }
                            EvtchnTarget::Eventfd(fd) => {
                                ev.deliver.eventfd.port = 0;
                                ev.deliver.eventfd.fd = fd;
                            }
                        }
                    }
                    EvtchnAttr::Update {
                        send_port,
                        kind: k,
                        port,
                        vcpu,
                    } => {
                        ev.send_port = send_port;
                        ev.type_ = kind(k);
                        ev.flags = KVM_XEN_EVTCHN_UPDATE;
                        ev.deliver.port.port = port;
                        ev.deliver.port.vcpu = vcpu;
                        ev.deliver.port.priority = KVM_XEN_PRIO_2LEVEL;
                    }
                    EvtchnAttr::Deassign(port) => {
                        ev.send_port = port;
                        ev.flags = KVM_XEN_EVTCHN_DEASSIGN;
                    }
                    EvtchnAttr::Reset => ev.flags = KVM_XEN_EVTCHN_RESET,
                }
                a.u.evtchn = ev;
            }
            Self::XenVersion(v) => {
                a.type_ = KVM_XEN_ATTR_TYPE_XEN_VERSION as u16;
                a.u.xen_version = v;
            }
            Self::RunstateUpdateFlag(on) => {
                a.type_ = KVM_XEN_ATTR_TYPE_RUNSTATE_UPDATE_FLAG as u16;
                a.u.runstate_update_flag = u8::from(on);
            }
        }
        a
    }

    /// Decodes what KVM returned for a GET of `kind`.
    pub fn decode(kind: XenHvmAttrKind, a: &kvm_xen_hvm_attr) -> Result<Self> {
        let u = &a.u;
        // SAFETY: every member of the union is plain integers; reading one
        // reinterprets initialised bytes (the struct was fully initialised
        // before the ioctl filled it).
        Ok(unsafe {
            match kind {
                XenHvmAttrKind::LongMode => Self::LongMode(u.long_mode != 0),
                XenHvmAttrKind::SharedInfoGfn => Self::SharedInfoGfn(
                    Some(u.shared_info.gfn).filter(|&g| g != KVM_XEN_INVALID_GFN),
                ),
                XenHvmAttrKind::UpcallVector => Self::UpcallVector(u.vector),
                XenHvmAttrKind::XenVersion => Self::XenVersion(u.xen_version),
                XenHvmAttrKind::RunstateUpdateFlag => {
                    Self::RunstateUpdateFlag(u.runstate_update_flag != 0)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::undocumented_unsafe_blocks)]
    use super::*;
    use crate::ioctls::XenVmIoctls;
    use crate::ioctls::mock::Mock;

    fn hvm_round_trip(attr: XenHvmAttr, kind: XenHvmAttrKind) {
        let m = Mock::default();
        m.xen_hvm_set_attr(attr).unwrap();
        assert_eq!(m.xen_hvm_get_attr(kind).unwrap(), attr);
    }

    #[test]
    fn test_hvm_attr_every_readable_kind_round_trips() {
        use XenHvmAttrKind as K;
        hvm_round_trip(XenHvmAttr::LongMode(true), K::LongMode);
        hvm_round_trip(XenHvmAttr::LongMode(false), K::LongMode);
        hvm_round_trip(XenHvmAttr::SharedInfoGfn(Some(0x1f00)), K::SharedInfoGfn);
        hvm_round_trip(XenHvmAttr::SharedInfoGfn(None), K::SharedInfoGfn);
        hvm_round_trip(XenHvmAttr::UpcallVector(0xf3), K::UpcallVector);
        hvm_round_trip(XenHvmAttr::XenVersion(0x4_0011), K::XenVersion);
        hvm_round_trip(XenHvmAttr::RunstateUpdateFlag(true), K::RunstateUpdateFlag);
    }

    #[test]
    fn test_hvm_attr_encodings_match_the_uapi() {
        let a = XenHvmAttr::SharedInfoGfn(None).encode();
        assert_eq!(u32::from(a.type_), KVM_XEN_ATTR_TYPE_SHARED_INFO);
        assert_eq!(unsafe { a.u.shared_info.gfn }, u64::MAX);
        let a = XenHvmAttr::LongMode(true).encode();
        assert_eq!((a.type_, unsafe { a.u.long_mode }), (0, 1));
        let a = XenHvmAttr::UpcallVector(0x10).encode();
        assert_eq!((a.type_, unsafe { a.u.vector }), (2, 0x10));
        let a = XenHvmAttr::XenVersion(0x4000a).encode();
        assert_eq!((a.type_, unsafe { a.u.xen_version }), (4, 0x4000a));
        let a = XenHvmAttr::RunstateUpdateFlag(true).encode();
        assert_eq!((a.type_, unsafe { a.u.runstate_update_flag }), (5, 1));
    }

    #[test]
    fn test_hvm_attr_evtchn_variants_encode_flags_and_targets() {
        let a = XenHvmAttr::Evtchn(EvtchnAttr::Assign {
            send_port: 3,
            kind: EvtchnKind::Ipi,
            target: EvtchnTarget::Port { port: 3, vcpu: 1 },
        })
        .encode();
        let e = unsafe { a.u.evtchn };
        assert_eq!(u32::from(a.type_), KVM_XEN_ATTR_TYPE_EVTCHN);
        assert_eq!((e.send_port, e.type_, e.flags), (3, 5, 0));
        let p = unsafe { e.deliver.port };
        assert_eq!((p.port, p.vcpu, p.priority), (3, 1, u32::MAX));

        let a = XenHvmAttr::Evtchn(EvtchnAttr::Assign {
            send_port: 9,
            kind: EvtchnKind::Interdomain,
            target: EvtchnTarget::Eventfd(42),
        })
        .encode();
        let e = unsafe { a.u.evtchn };
        assert_eq!((e.send_port, e.type_), (9, 2));
        let f = unsafe { e.deliver.eventfd };
        assert_eq!((f.port, f.fd), (0, 42));

        let a = XenHvmAttr::Evtchn(EvtchnAttr::Update {
            send_port: 9,
            kind: EvtchnKind::Interdomain,
            port: 4,
            vcpu: 2,
        })
        .encode();
        let e = unsafe { a.u.evtchn };
        assert_eq!(e.flags, KVM_XEN_EVTCHN_UPDATE);
        assert_eq!(unsafe { e.deliver.port.vcpu }, 2);

        let e = unsafe {
            XenHvmAttr::Evtchn(EvtchnAttr::Deassign(7))
                .encode()
                .u
                .evtchn
        };
        assert_eq!((e.send_port, e.flags), (7, KVM_XEN_EVTCHN_DEASSIGN));
        let e = unsafe { XenHvmAttr::Evtchn(EvtchnAttr::Reset).encode().u.evtchn };
        assert_eq!(e.flags, KVM_XEN_EVTCHN_RESET);
    }
}
