// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The Xen ioctls kvm-ioctls lacks, as an extension trait on `VmFd`.
//!
//! Only `KVM_XEN_HVM_CONFIG` so far; the attribute ioctls
//! (`KVM_XEN_HVM_{GET,SET}_ATTR`, `KVM_XEN_VCPU_{GET,SET}_ATTR`,
//! `KVM_XEN_HVM_EVTCHN_SEND`) join it with the kernel fast paths.

use kvm_bindings::{KVMIO, kvm_xen_hvm_config};
use kvm_ioctls::VmFd;
use vmm_sys_util::errno;
use vmm_sys_util::ioctl::ioctl_with_ref;

mod nr {
    #![allow(missing_docs)]
    use super::*;
    vmm_sys_util::ioctl_iow_nr!(KVM_XEN_HVM_CONFIG, KVMIO, 0x7a, kvm_xen_hvm_config);
}

/// Xen ioctls on a VM.
pub trait XenVmIoctls {
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
    fn xen_hvm_config(&self, config: &kvm_xen_hvm_config) -> errno::Result<()>;
}

impl XenVmIoctls for VmFd {
    fn xen_hvm_config(&self, config: &kvm_xen_hvm_config) -> errno::Result<()> {
        // SAFETY: KVM_XEN_HVM_CONFIG reads one kvm_xen_hvm_config from a
        // pointer that is valid for the duration of the call; `self` is a VM fd.
        let ret = unsafe { ioctl_with_ref(self, nr::KVM_XEN_HVM_CONFIG(), config) };
        if ret < 0 {
            return Err(errno::Error::last());
        }
        Ok(())
    }
}
