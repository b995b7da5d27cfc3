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

mod hvm_attr;
#[cfg(test)]
pub(crate) mod mock;
mod vcpu_attr;

pub use hvm_attr::{EvtchnAttr, EvtchnKind, EvtchnTarget, XenHvmAttr, XenHvmAttrKind};
pub use vcpu_attr::{RunstateAdjust, RunstateData, XenVcpuAttr, XenVcpuAttrKind};

use std::os::fd::AsRawFd;

use kvm_bindings::{
    KVM_XEN_ATTR_TYPE_SHARED_INFO_HVA, KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO_HVA, KVMIO,
    kvm_irq_routing_xen_evtchn, kvm_xen_hvm_attr, kvm_xen_hvm_config, kvm_xen_vcpu_attr,
};
use kvm_ioctls::{VcpuFd, VmFd};
use vmm_sys_util::errno;
use vmm_sys_util::ioctl::{ioctl_with_mut_ref, ioctl_with_ref};

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
// The typed layer.

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

#[cfg(test)]
mod tests {
    #![allow(clippy::undocumented_unsafe_blocks)]
    use super::mock::Mock;
    use super::*;

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
