// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The Xen ioctls kvm-ioctls lacks, with typed attributes.
//!
//! Two layers:
//!
//! * the **raw seam**, [`XenVmRaw`] and [`XenVcpuRaw`]: one method per
//!   ioctl (`KVM_XEN_HVM_CONFIG`, `KVM_XEN_HVM_{GET,SET}_ATTR`,
//!   `KVM_XEN_HVM_EVTCHN_SEND`, `KVM_XEN_VCPU_{GET,SET}_ATTR`), taking and
//!   returning the kvm-bindings structs. `VmFd` and `VcpuFd` implement it
//!   with the real ioctls; tests implement it with a recorder, so every
//!   encoding and every errno mapping is checked without `/dev/kvm`.
//! * the **typed layer**, [`XenVmIoctls`] and [`XenVcpuIoctls`], blanket
//!   implemented over the seam: attributes are Rust enums
//!   ([`XenHvmAttr`], [`XenVcpuAttr`]) encoded into and decoded from the
//!   kernel's unions in exactly one place, and errors are [`IoctlError`].
//!   The attributes that hand KVM a host virtual address
//!   (`SHARED_INFO_HVA`, `VCPU_INFO_HVA`) are only reachable through
//!   `unsafe fn`s.
//!
//! Attribute numbers and layouts follow Linux `include/uapi/linux/kvm.h`;
//! which `KVM_CAP_XEN_HVM` flag advertises which attribute is recorded on
//! each variant.

use std::os::fd::AsRawFd;

use kvm_bindings::{
    KVM_XEN_ATTR_TYPE_EVTCHN, KVM_XEN_ATTR_TYPE_LONG_MODE, KVM_XEN_ATTR_TYPE_RUNSTATE_UPDATE_FLAG,
    KVM_XEN_ATTR_TYPE_SHARED_INFO, KVM_XEN_ATTR_TYPE_SHARED_INFO_HVA,
    KVM_XEN_ATTR_TYPE_UPCALL_VECTOR, KVM_XEN_ATTR_TYPE_XEN_VERSION, KVM_XEN_EVTCHN_DEASSIGN,
    KVM_XEN_EVTCHN_RESET, KVM_XEN_EVTCHN_UPDATE, KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADDR,
    KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADJUST, KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_CURRENT,
    KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_DATA, KVM_XEN_VCPU_ATTR_TYPE_TIMER,
    KVM_XEN_VCPU_ATTR_TYPE_UPCALL_VECTOR, KVM_XEN_VCPU_ATTR_TYPE_VCPU_ID,
    KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO, KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO_HVA,
    KVM_XEN_VCPU_ATTR_TYPE_VCPU_TIME_INFO, KVMIO, kvm_irq_routing_xen_evtchn, kvm_xen_hvm_attr,
    kvm_xen_hvm_config, kvm_xen_vcpu_attr,
};
use kvm_ioctls::{VcpuFd, VmFd};
use vmm_sys_util::errno;
use vmm_sys_util::ioctl::{ioctl_with_mut_ref, ioctl_with_ref};
use xen_abi::vcpu::RunstateState;

mod nr {
    #![allow(missing_docs)]
    use super::*;
    vmm_sys_util::ioctl_iow_nr!(KVM_XEN_HVM_CONFIG, KVMIO, 0x7a, kvm_xen_hvm_config);
    vmm_sys_util::ioctl_iowr_nr!(KVM_XEN_HVM_GET_ATTR, KVMIO, 0xc8, kvm_xen_hvm_attr);
    vmm_sys_util::ioctl_iow_nr!(KVM_XEN_HVM_SET_ATTR, KVMIO, 0xc9, kvm_xen_hvm_attr);
    vmm_sys_util::ioctl_iowr_nr!(KVM_XEN_VCPU_GET_ATTR, KVMIO, 0xca, kvm_xen_vcpu_attr);
    vmm_sys_util::ioctl_iow_nr!(KVM_XEN_VCPU_SET_ATTR, KVMIO, 0xcb, kvm_xen_vcpu_attr);
    vmm_sys_util::ioctl_iow_nr!(
        KVM_XEN_HVM_EVTCHN_SEND,
        KVMIO,
        0xd0,
        kvm_irq_routing_xen_evtchn
    );
}

/// `KVM_XEN_INVALID_GFN`: "no shared_info".
pub const KVM_XEN_INVALID_GFN: u64 = u64::MAX;
/// `KVM_XEN_INVALID_GPA`: "no area".
pub const KVM_XEN_INVALID_GPA: u64 = u64::MAX;
/// `KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL`: the only priority KVM knows.
pub const KVM_XEN_PRIO_2LEVEL: u32 = u32::MAX;
/// Xen's `EVTCHNSTAT_interdomain`.
const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// Xen's `EVTCHNSTAT_ipi`.
const EVTCHNSTAT_IPI: u32 = 5;

const EINVAL: i32 = 22;
const ENOENT: i32 = 2;
const EEXIST: i32 = 17;
const EOPNOTSUPP: i32 = 95;

// ------------------------------------------------------------------------
// The raw seam.

/// The VM-level Xen ioctls, raw (the mockable seam).
pub trait XenVmRaw {
    /// `KVM_XEN_HVM_CONFIG`.
    fn raw_xen_hvm_config(&self, config: &kvm_xen_hvm_config) -> errno::Result<()>;
    /// `KVM_XEN_HVM_GET_ATTR`: `attr.type_` in, the union out.
    fn raw_xen_hvm_get_attr(&self, attr: &mut kvm_xen_hvm_attr) -> errno::Result<()>;
    /// `KVM_XEN_HVM_SET_ATTR`.
    fn raw_xen_hvm_set_attr(&self, attr: &kvm_xen_hvm_attr) -> errno::Result<()>;
    /// `KVM_XEN_HVM_EVTCHN_SEND`.
    fn raw_xen_hvm_evtchn_send(&self, evtchn: &kvm_irq_routing_xen_evtchn) -> errno::Result<()>;
}

/// The vCPU-level Xen ioctls, raw (the mockable seam).
pub trait XenVcpuRaw {
    /// `KVM_XEN_VCPU_GET_ATTR`: `attr.type_` in, the union out.
    fn raw_xen_vcpu_get_attr(&self, attr: &mut kvm_xen_vcpu_attr) -> errno::Result<()>;
    /// `KVM_XEN_VCPU_SET_ATTR`.
    fn raw_xen_vcpu_set_attr(&self, attr: &kvm_xen_vcpu_attr) -> errno::Result<()>;
}

fn check(ret: i32) -> errno::Result<()> {
    if ret < 0 {
        Err(errno::Error::last())
    } else {
        Ok(())
    }
}

/// The VM ioctls on any VM file descriptor.
fn vm_config<F: AsRawFd>(fd: &F, config: &kvm_xen_hvm_config) -> errno::Result<()> {
    // SAFETY: KVM_XEN_HVM_CONFIG reads one kvm_xen_hvm_config from a
    // pointer valid for the call; `fd` is a VM file descriptor.
    check(unsafe { ioctl_with_ref(fd, nr::KVM_XEN_HVM_CONFIG(), config) })
}

fn vm_get_attr<F: AsRawFd>(fd: &F, attr: &mut kvm_xen_hvm_attr) -> errno::Result<()> {
    // SAFETY: KVM_XEN_HVM_GET_ATTR reads and writes one kvm_xen_hvm_attr
    // through a pointer valid and exclusive for the call.
    check(unsafe { ioctl_with_mut_ref(fd, nr::KVM_XEN_HVM_GET_ATTR(), attr) })
}

fn vm_set_attr<F: AsRawFd>(fd: &F, attr: &kvm_xen_hvm_attr) -> errno::Result<()> {
    // SAFETY: KVM_XEN_HVM_SET_ATTR reads one kvm_xen_hvm_attr. The HVA
    // attribute, whose address the kernel keeps, is only built by the
    // `unsafe fn` of the typed layer, whose caller vouches for it.
    check(unsafe { ioctl_with_ref(fd, nr::KVM_XEN_HVM_SET_ATTR(), attr) })
}

fn vm_evtchn_send<F: AsRawFd>(fd: &F, evtchn: &kvm_irq_routing_xen_evtchn) -> errno::Result<()> {
    // SAFETY: KVM_XEN_HVM_EVTCHN_SEND reads one kvm_irq_routing_xen_evtchn
    // from a pointer valid for the call.
    check(unsafe { ioctl_with_ref(fd, nr::KVM_XEN_HVM_EVTCHN_SEND(), evtchn) })
}

impl XenVmRaw for VmFd {
    fn raw_xen_hvm_config(&self, config: &kvm_xen_hvm_config) -> errno::Result<()> {
        vm_config(self, config)
    }
    fn raw_xen_hvm_get_attr(&self, attr: &mut kvm_xen_hvm_attr) -> errno::Result<()> {
        vm_get_attr(self, attr)
    }
    fn raw_xen_hvm_set_attr(&self, attr: &kvm_xen_hvm_attr) -> errno::Result<()> {
        vm_set_attr(self, attr)
    }
    fn raw_xen_hvm_evtchn_send(&self, evtchn: &kvm_irq_routing_xen_evtchn) -> errno::Result<()> {
        vm_evtchn_send(self, evtchn)
    }
}

/// A duplicate of a VM file descriptor, for the Xen VM ioctls from any
/// thread without holding the VMM's `VmFd`.
#[derive(Debug)]
pub struct XenVmHandle(pub(crate) std::os::fd::OwnedFd);

impl XenVmHandle {
    /// Duplicates `vm`'s file descriptor.
    pub fn new(vm: &VmFd) -> std::io::Result<Self> {
        // SAFETY: `vm` owns an open file descriptor that stays open for the
        // duration of this borrow, which only lasts for the duplication.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(vm.as_raw_fd()) };
        Ok(Self(fd.try_clone_to_owned()?))
    }
}

impl XenVmRaw for XenVmHandle {
    fn raw_xen_hvm_config(&self, config: &kvm_xen_hvm_config) -> errno::Result<()> {
        vm_config(&self.0, config)
    }
    fn raw_xen_hvm_get_attr(&self, attr: &mut kvm_xen_hvm_attr) -> errno::Result<()> {
        vm_get_attr(&self.0, attr)
    }
    fn raw_xen_hvm_set_attr(&self, attr: &kvm_xen_hvm_attr) -> errno::Result<()> {
        vm_set_attr(&self.0, attr)
    }
    fn raw_xen_hvm_evtchn_send(&self, evtchn: &kvm_irq_routing_xen_evtchn) -> errno::Result<()> {
        vm_evtchn_send(&self.0, evtchn)
    }
}

impl XenVcpuRaw for VcpuFd {
    fn raw_xen_vcpu_get_attr(&self, attr: &mut kvm_xen_vcpu_attr) -> errno::Result<()> {
        // SAFETY: KVM_XEN_VCPU_GET_ATTR reads and writes one
        // kvm_xen_vcpu_attr through a pointer valid and exclusive for the call.
        check(unsafe { ioctl_with_mut_ref(self, nr::KVM_XEN_VCPU_GET_ATTR(), attr) })
    }
    fn raw_xen_vcpu_set_attr(&self, attr: &kvm_xen_vcpu_attr) -> errno::Result<()> {
        // SAFETY: KVM_XEN_VCPU_SET_ATTR reads one kvm_xen_vcpu_attr. The
        // HVA attribute is only built by the typed layer's `unsafe fn`.
        check(unsafe { ioctl_with_ref(self, nr::KVM_XEN_VCPU_SET_ATTR(), attr) })
    }
}

// ------------------------------------------------------------------------
// Typed attributes.

/// Errors of the typed Xen ioctls.
#[derive(Debug, thiserror::Error)]
pub enum IoctlError {
    /// KVM does not know the attribute (`ENOENT`): an older kernel, or a
    /// GET of a write-only attribute.
    #[error("KVM does not know Xen attribute {0}")]
    Unknown(&'static str),
    /// KVM refused the value (`EINVAL`).
    #[error("KVM refused the value of Xen attribute {0}")]
    Invalid(&'static str),
    /// The kernel lacks what the attribute needs (`EOPNOTSUPP`, e.g.
    /// runstate without scheduler statistics).
    #[error("This kernel cannot provide Xen attribute {0}")]
    NotSupported(&'static str),
    /// An event-channel send port is already registered (`EEXIST`).
    #[error("Event channel send port {0} is already registered")]
    Exists(u32),
    /// KVM returned a value this crate cannot represent.
    #[error("KVM returned an undecodable value {value:#x} for Xen attribute {what}")]
    Decode {
        /// The attribute.
        what: &'static str,
        /// The raw value.
        value: u64,
    },
    /// Any other failure of the ioctl.
    #[error("KVM ioctl {what} failed")]
    Kvm {
        /// The ioctl or attribute.
        what: &'static str,
        /// The error.
        #[source]
        source: errno::Error,
    },
}

/// Results of the typed Xen ioctls.
pub type Result<T> = std::result::Result<T, IoctlError>;

fn map_errno(what: &'static str, port: u32, e: errno::Error) -> IoctlError {
    match e.errno() {
        ENOENT => IoctlError::Unknown(what),
        EINVAL => IoctlError::Invalid(what),
        EOPNOTSUPP => IoctlError::NotSupported(what),
        EEXIST => IoctlError::Exists(port),
        _ => IoctlError::Kvm { what, source: e },
    }
}

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

/// The readable VM-wide attributes, for [`XenVmIoctls::xen_hvm_get_attr`].
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
    fn raw(self) -> u32 {
        match self {
            Self::LongMode => KVM_XEN_ATTR_TYPE_LONG_MODE,
            Self::SharedInfoGfn => KVM_XEN_ATTR_TYPE_SHARED_INFO,
            Self::UpcallVector => KVM_XEN_ATTR_TYPE_UPCALL_VECTOR,
            Self::XenVersion => KVM_XEN_ATTR_TYPE_XEN_VERSION,
            Self::RunstateUpdateFlag => KVM_XEN_ATTR_TYPE_RUNSTATE_UPDATE_FLAG,
        }
    }

    fn name(self) -> &'static str {
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
        /// Its priority ([`KVM_XEN_PRIO_2LEVEL`]).
        priority: u32,
        /// The armed deadline (kvmclock ns), 0 for none.
        expires_ns: u64,
    },
    /// `UPCALL_VECTOR` (flag `EVTCHN_SEND`): the per-vCPU LAPIC vector;
    /// 0 for none.
    UpcallVector(u8),
}

/// The readable per-vCPU attributes, for [`XenVcpuIoctls::xen_vcpu_get_attr`].
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
    fn raw(self) -> u32 {
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

    fn name(self) -> &'static str {
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

/// Typed Xen ioctls on a VM (blanket over [`XenVmRaw`]).
pub trait XenVmIoctls: XenVmRaw {
    /// `KVM_XEN_HVM_CONFIG`: the hypercall MSR and Xen flags
    /// (`KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL`, ...).
    ///
    /// ```no_run
    /// use kvm_bindings::{KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL, kvm_xen_hvm_config};
    /// use xen_kvm_accel::ioctls::XenVmIoctls;
    /// let vm = kvm_ioctls::Kvm::new().unwrap().create_vm().unwrap();
    /// vm.xen_hvm_config(&kvm_xen_hvm_config {
    ///     flags: KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL,
    ///     msr: 0x4000_0000,
    ///     ..Default::default()
    /// })
    /// .unwrap();
    /// ```
    fn xen_hvm_config(&self, config: &kvm_xen_hvm_config) -> errno::Result<()> {
        self.raw_xen_hvm_config(config)
    }

    /// `KVM_XEN_HVM_SET_ATTR`.
    ///
    /// ```no_run
    /// use xen_kvm_accel::ioctls::{XenHvmAttr, XenVmIoctls};
    /// let vm = kvm_ioctls::Kvm::new().unwrap().create_vm().unwrap();
    /// vm.xen_hvm_set_attr(XenHvmAttr::SharedInfoGfn(Some(0x1f00))).unwrap();
    /// ```
    fn xen_hvm_set_attr(&self, attr: XenHvmAttr) -> Result<()> {
        let port = match attr {
            XenHvmAttr::Evtchn(
                EvtchnAttr::Assign { send_port, .. }
                | EvtchnAttr::Update { send_port, .. }
                | EvtchnAttr::Deassign(send_port),
            ) => send_port,
            _ => 0,
        };
        self.raw_xen_hvm_set_attr(&attr.encode())
            .map_err(|e| map_errno(attr.name(), port, e))
    }

    /// `KVM_XEN_HVM_GET_ATTR`.
    fn xen_hvm_get_attr(&self, kind: XenHvmAttrKind) -> Result<XenHvmAttr> {
        let mut a = kvm_xen_hvm_attr {
            type_: kind.raw() as u16,
            ..Default::default()
        };
        self.raw_xen_hvm_get_attr(&mut a)
            .map_err(|e| map_errno(kind.name(), 0, e))?;
        XenHvmAttr::decode(kind, &a)
    }

    /// `KVM_XEN_ATTR_TYPE_SHARED_INFO_HVA` (flag `SHARED_INFO_HVA`):
    /// shared_info by host address; 0 deactivates.
    ///
    /// # Safety
    ///
    /// KVM keeps `hva` and writes the page there at any time until it is
    /// replaced or deactivated: `hva` must be page-aligned, and the page
    /// must stay mapped, and be the guest's memory (not memory the VMM
    /// uses for anything else), for as long as the VM may use it.
    unsafe fn xen_hvm_set_shared_info_hva(&self, hva: u64) -> Result<()> {
        let mut a = kvm_xen_hvm_attr {
            type_: KVM_XEN_ATTR_TYPE_SHARED_INFO_HVA as u16,
            ..Default::default()
        };
        a.u.shared_info.hva = hva;
        self.raw_xen_hvm_set_attr(&a)
            .map_err(|e| map_errno("SHARED_INFO_HVA", 0, e))
    }

    /// Reads back `KVM_XEN_ATTR_TYPE_SHARED_INFO_HVA` (`None`: not set by HVA).
    fn xen_hvm_shared_info_hva(&self) -> Result<Option<u64>> {
        let mut a = kvm_xen_hvm_attr {
            type_: KVM_XEN_ATTR_TYPE_SHARED_INFO_HVA as u16,
            ..Default::default()
        };
        self.raw_xen_hvm_get_attr(&mut a)
            .map_err(|e| map_errno("SHARED_INFO_HVA", 0, e))?;
        // SAFETY: plain integer member of a fully initialised union.
        Ok(Some(unsafe { a.u.shared_info.hva }).filter(|&h| h != 0))
    }

    /// `KVM_XEN_HVM_EVTCHN_SEND` (flag `EVTCHN_SEND`): raises 2-level
    /// `port` for Xen vCPU `vcpu` as KVM's own delivery does (a masked or
    /// already pending port is a success).
    fn xen_hvm_evtchn_send(&self, port: u32, vcpu: u32) -> Result<()> {
        let e = kvm_irq_routing_xen_evtchn {
            port,
            vcpu,
            priority: KVM_XEN_PRIO_2LEVEL,
        };
        self.raw_xen_hvm_evtchn_send(&e)
            .map_err(|e| map_errno("EVTCHN_SEND", port, e))
    }
}

impl<T: XenVmRaw + ?Sized> XenVmIoctls for T {}

/// Typed Xen ioctls on a vCPU (blanket over [`XenVcpuRaw`]).
pub trait XenVcpuIoctls: XenVcpuRaw {
    /// `KVM_XEN_VCPU_SET_ATTR`.
    fn xen_vcpu_set_attr(&self, attr: XenVcpuAttr) -> Result<()> {
        self.raw_xen_vcpu_set_attr(&attr.encode())
            .map_err(|e| map_errno(attr.name(), 0, e))
    }

    /// `KVM_XEN_VCPU_GET_ATTR`.
    fn xen_vcpu_get_attr(&self, kind: XenVcpuAttrKind) -> Result<XenVcpuAttr> {
        let mut a = kvm_xen_vcpu_attr {
            type_: kind.raw() as u16,
            ..Default::default()
        };
        self.raw_xen_vcpu_get_attr(&mut a)
            .map_err(|e| map_errno(kind.name(), 0, e))?;
        XenVcpuAttr::decode(kind, &a)
    }

    /// `KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO_HVA` (flag `SHARED_INFO_HVA`):
    /// vcpu_info by host address; 0 deactivates.
    ///
    /// # Safety
    ///
    /// KVM keeps `hva` and writes a `vcpu_info` (64 bytes) there at any
    /// time until it is replaced or deactivated: the bytes must stay
    /// mapped, and be the guest's memory, for as long as the vCPU may use
    /// them.
    unsafe fn xen_vcpu_set_vcpu_info_hva(&self, hva: u64) -> Result<()> {
        let mut a = kvm_xen_vcpu_attr {
            type_: KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO_HVA as u16,
            ..Default::default()
        };
        a.u.hva = hva;
        self.raw_xen_vcpu_set_attr(&a)
            .map_err(|e| map_errno("VCPU_INFO_HVA", 0, e))
    }

    /// Reads back `KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO_HVA` (`None`: not set
    /// by HVA).
    fn xen_vcpu_vcpu_info_hva(&self) -> Result<Option<u64>> {
        let mut a = kvm_xen_vcpu_attr {
            type_: KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO_HVA as u16,
            ..Default::default()
        };
        self.raw_xen_vcpu_get_attr(&mut a)
            .map_err(|e| map_errno("VCPU_INFO_HVA", 0, e))?;
        // SAFETY: plain integer member of a fully initialised union.
        Ok(Some(unsafe { a.u.hva }).filter(|&h| h != 0))
    }
}

impl<T: XenVcpuRaw + ?Sized> XenVcpuIoctls for T {}

/// A recording stand-in for the raw ioctls, for tests without `/dev/kvm`.
#[cfg(test)]
pub(crate) mod mock {
    #![allow(clippy::undocumented_unsafe_blocks)]
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// One recorded call.
    #[derive(Clone, Copy)]
    pub(crate) enum Call {
        Config(kvm_xen_hvm_config),
        HvmSet(kvm_xen_hvm_attr),
        HvmGet(u16),
        Send(kvm_irq_routing_xen_evtchn),
        VcpuSet(kvm_xen_vcpu_attr),
        VcpuGet(u16),
    }

    /// Stores the last SET per type and returns it on GET; `fail` makes
    /// the next call fail with that errno.
    #[derive(Default)]
    pub(crate) struct Mock {
        pub(crate) calls: Mutex<Vec<Call>>,
        hvm: Mutex<HashMap<u16, kvm_xen_hvm_attr>>,
        vcpu: Mutex<HashMap<u16, kvm_xen_vcpu_attr>>,
        pub(crate) fail: Mutex<Option<i32>>,
    }

    impl Mock {
        fn failing(&self) -> errno::Result<()> {
            match self.fail.lock().unwrap().take() {
                Some(e) => Err(errno::Error::new(e)),
                None => Ok(()),
            }
        }

        pub(crate) fn hvm_sets(&self) -> Vec<kvm_xen_hvm_attr> {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .filter_map(|c| match c {
                    Call::HvmSet(a) => Some(*a),
                    _ => None,
                })
                .collect()
        }

        pub(crate) fn vcpu_sets(&self) -> Vec<kvm_xen_vcpu_attr> {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .filter_map(|c| match c {
                    Call::VcpuSet(a) => Some(*a),
                    _ => None,
                })
                .collect()
        }

        pub(crate) fn configs(&self) -> Vec<kvm_xen_hvm_config> {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .filter_map(|c| match c {
                    Call::Config(a) => Some(*a),
                    _ => None,
                })
                .collect()
        }

        pub(crate) fn sends(&self) -> Vec<kvm_irq_routing_xen_evtchn> {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .filter_map(|c| match c {
                    Call::Send(a) => Some(*a),
                    _ => None,
                })
                .collect()
        }

        pub(crate) fn clear(&self) {
            self.calls.lock().unwrap().clear();
        }
    }

    impl XenVmRaw for Mock {
        fn raw_xen_hvm_config(&self, config: &kvm_xen_hvm_config) -> errno::Result<()> {
            self.calls.lock().unwrap().push(Call::Config(*config));
            self.failing()
        }
        fn raw_xen_hvm_get_attr(&self, attr: &mut kvm_xen_hvm_attr) -> errno::Result<()> {
            self.calls.lock().unwrap().push(Call::HvmGet(attr.type_));
            self.failing()?;
            match self.hvm.lock().unwrap().get(&attr.type_) {
                Some(a) => *attr = *a,
                None => return Err(errno::Error::new(ENOENT)),
            }
            Ok(())
        }
        fn raw_xen_hvm_set_attr(&self, attr: &kvm_xen_hvm_attr) -> errno::Result<()> {
            self.calls.lock().unwrap().push(Call::HvmSet(*attr));
            self.failing()?;
            self.hvm.lock().unwrap().insert(attr.type_, *attr);
            Ok(())
        }
        fn raw_xen_hvm_evtchn_send(
            &self,
            evtchn: &kvm_irq_routing_xen_evtchn,
        ) -> errno::Result<()> {
            self.calls.lock().unwrap().push(Call::Send(*evtchn));
            self.failing()
        }
    }

    impl XenVcpuRaw for Mock {
        fn raw_xen_vcpu_get_attr(&self, attr: &mut kvm_xen_vcpu_attr) -> errno::Result<()> {
            self.calls.lock().unwrap().push(Call::VcpuGet(attr.type_));
            self.failing()?;
            match self.vcpu.lock().unwrap().get(&attr.type_) {
                Some(a) => *attr = *a,
                None => return Err(errno::Error::new(ENOENT)),
            }
            Ok(())
        }
        fn raw_xen_vcpu_set_attr(&self, attr: &kvm_xen_vcpu_attr) -> errno::Result<()> {
            self.calls.lock().unwrap().push(Call::VcpuSet(*attr));
            self.failing()?;
            self.vcpu.lock().unwrap().insert(attr.type_, *attr);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::undocumented_unsafe_blocks)]
    use super::mock::Mock;
    use super::*;

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

    #[test]
    fn test_errno_mapping_to_typed_errors() {
        let m = Mock::default();
        type Check = fn(&IoctlError) -> bool;
        let cases: [(i32, Check); 5] = [
            (ENOENT, |e| matches!(e, IoctlError::Unknown("XEN_VERSION"))),
            (EINVAL, |e| matches!(e, IoctlError::Invalid("XEN_VERSION"))),
            (EOPNOTSUPP, |e| matches!(e, IoctlError::NotSupported(_))),
            (EEXIST, |e| matches!(e, IoctlError::Exists(0))),
            (5, |e| matches!(e, IoctlError::Kvm { .. })),
        ];
        for (errno, ok) in cases {
            *m.fail.lock().unwrap() = Some(errno);
            let e = m.xen_hvm_set_attr(XenHvmAttr::XenVersion(1)).unwrap_err();
            assert!(ok(&e), "errno {errno}: {e:?}");
        }
        *m.fail.lock().unwrap() = Some(EEXIST);
        let e = m
            .xen_hvm_set_attr(XenHvmAttr::Evtchn(EvtchnAttr::Assign {
                send_port: 12,
                kind: EvtchnKind::Ipi,
                target: EvtchnTarget::Port { port: 12, vcpu: 0 },
            }))
            .unwrap_err();
        assert!(matches!(e, IoctlError::Exists(12)));
        *m.fail.lock().unwrap() = Some(EINVAL);
        assert!(matches!(
            m.xen_vcpu_set_attr(XenVcpuAttr::UpcallVector(3)),
            Err(IoctlError::Invalid("UPCALL_VECTOR"))
        ));
        // A GET of something never set: KVM says ENOENT too.
        assert!(matches!(
            m.xen_vcpu_get_attr(XenVcpuAttrKind::Timer),
            Err(IoctlError::Unknown("TIMER"))
        ));
    }

    #[test]
    fn test_config_and_gets_are_passed_through_raw() {
        use super::mock::Call;
        let m = Mock::default();
        XenVmIoctls::xen_hvm_config(
            &m,
            &kvm_xen_hvm_config {
                flags: 2,
                msr: 0x4000_0000,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(m.configs()[0].msr, 0x4000_0000);
        let _ = m.xen_hvm_get_attr(XenHvmAttrKind::UpcallVector);
        let _ = m.xen_vcpu_get_attr(XenVcpuAttrKind::VcpuId);
        let calls = m.calls.lock().unwrap();
        assert!(matches!(calls[1], Call::HvmGet(2)));
        assert!(matches!(calls[2], Call::VcpuGet(6)));
        assert!(matches!(calls[0], Call::Config(c) if c.flags == 2));
    }

    #[test]
    fn test_evtchn_send_uses_2level_priority() {
        let m = Mock::default();
        m.xen_hvm_evtchn_send(66, 1).unwrap();
        let s = m.sends();
        assert_eq!((s[0].port, s[0].vcpu, s[0].priority), (66, 1, u32::MAX));
    }

    #[test]
    fn test_hva_attributes_round_trip_through_unsafe_setters() {
        let m = Mock::default();
        // SAFETY: the mock keeps no pointer.
        unsafe { m.xen_hvm_set_shared_info_hva(0x7f00_0000_0000) }.unwrap();
        assert_eq!(m.xen_hvm_shared_info_hva().unwrap(), Some(0x7f00_0000_0000));
        // SAFETY: as above.
        unsafe { m.xen_vcpu_set_vcpu_info_hva(0) }.unwrap();
        assert_eq!(m.xen_vcpu_vcpu_info_hva().unwrap(), None);
        let set = m.hvm_sets();
        assert_eq!(u32::from(set[0].type_), KVM_XEN_ATTR_TYPE_SHARED_INFO_HVA);
        let set = m.vcpu_sets();
        assert_eq!(
            u32::from(set[0].type_),
            KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO_HVA
        );
    }
}
