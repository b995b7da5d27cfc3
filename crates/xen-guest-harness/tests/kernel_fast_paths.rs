// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The kernel fast paths take effect: after a guest that places
//! shared_info, binds VIRQ_TIMER and uses PV timers has run on the kernel
//! path, KVM reports the shared_info frame the guest chose and the Xen
//! version, and `KVM_XEN_HVM_EVTCHN_SEND` raises a port in guest memory.
//!
//! Needs a KVM whose `KVM_CAP_XEN_HVM` has `SHARED_INFO` and `EVTCHN_SEND`:
//! it runs in the nested lab (`lab/run`). Elsewhere it skips loudly; in the
//! lab it must not skip.

use std::time::Duration;

use kvm_bindings::{KVM_XEN_HVM_CONFIG_EVTCHN_SEND, KVM_XEN_HVM_CONFIG_SHARED_INFO};
use xen_guest_harness::xen::domain_config;
use xen_guest_harness::{Runner, Xen, guests, in_lab, kvm_available, skip, xen_hvm_caps};
use xen_kvm_accel::ioctls::{XenHvmAttr, XenHvmAttrKind, XenVmIoctls};
use xen_kvm_accel::{Path, PathChoice};

/// The shared_info frame the timer guest places.
const SHINFO_GFN: u64 = 0x1f00;

#[test]
fn test_kernel_fast_paths_shared_info_version_and_evtchn_send() {
    let name = "test_kernel_fast_paths_shared_info_version_and_evtchn_send";
    if !kvm_available(name) {
        return;
    }
    let caps = xen_hvm_caps().unwrap();
    let need = KVM_XEN_HVM_CONFIG_SHARED_INFO | KVM_XEN_HVM_CONFIG_EVTCHN_SEND;
    if caps & need != need {
        assert!(
            !in_lab(),
            "{name}: the lab's KVM lacks fast paths ({caps:#x})"
        );
        skip(
            name,
            &format!("this KVM has no in-kernel Xen fast paths (KVM_CAP_XEN_HVM = {caps:#x})"),
        );
        return;
    }
    let mut xen = Xen::new(domain_config(1, 0x40011, 32 << 20));
    xen.path = PathChoice::Kernel;
    let (runner, handle) = Runner::new(guests::TIMER)
        .timeout(Duration::from_secs(60))
        .xen(xen);
    let o = runner.run().unwrap();
    println!("{}", o.console);
    o.assert_status(0);
    let xen = handle.kvm().unwrap();
    assert_eq!(xen.path(), Path::Kernel);
    let paths = xen.fast_paths();
    assert!(paths.shared_info && paths.evtchn_send, "{paths:?}");
    // The VM outlives the run through the handle.
    let vm = xen.kernel_vm().unwrap();
    assert_eq!(
        vm.xen_hvm_get_attr(XenHvmAttrKind::SharedInfoGfn).unwrap(),
        XenHvmAttr::SharedInfoGfn(Some(SHINFO_GFN))
    );
    assert_eq!(
        vm.xen_hvm_get_attr(XenHvmAttrKind::XenVersion).unwrap(),
        XenHvmAttr::XenVersion(0x40011)
    );
    assert_eq!(
        vm.xen_hvm_get_attr(XenHvmAttrKind::LongMode).unwrap(),
        XenHvmAttr::LongMode(true)
    );
    // KVM raises a port in the guest's shared_info.
    let port = 100;
    let (channels, mem) = (xen.domain().channels(), xen.domain().memory());
    assert!(!channels.pending(mem, port));
    assert!(xen.kernel_send(port, 0).unwrap());
    assert!(channels.pending(mem, port));
}
