// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! First proof of the kernel-intercept path: with `KVM_XEN_HVM_CONFIG` and
//! `INTERCEPT_HCALL`, a guest's VMCALL and VMMCALL, from 64-bit code and
//! from a 32-bit compatibility segment, exit as `KVM_EXIT_XEN`; we decode
//! each exit and answer it, and the guest checks the answers.
//!
//! Needs a KVM with in-kernel Xen support: it runs in the nested lab
//! (`lab/run`). Elsewhere it skips loudly; in the lab it must not skip.
//! (The proper `xen-kvm-accel` API for this comes later; this test moves
//! there.)

use std::sync::{Arc, Mutex};

use kvm_bindings::{KVM_EXIT_XEN, KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL, kvm_run, kvm_xen_hvm_config};
use vmm_sys_util::ioctl::ioctl_with_ref;
use xen_abi::cpuid::XEN_HYPERCALL_MSR;
use xen_abi::memory::{E820Entry, E820Type};
use xen_guest_harness::{Runner, Xen, guests, in_lab, kvm_available, skip, xen_hvm_caps};
use xen_hypercall::DomainConfig;
use xen_kvm_accel::PathChoice;

mod ioctls {
    //! The one Xen ioctl this test needs (kvm-ioctls has none).
    #![allow(missing_docs)]
    use kvm_bindings::{KVMIO, kvm_xen_hvm_config};
    vmm_sys_util::ioctl_iow_nr!(KVM_XEN_HVM_CONFIG, KVMIO, 0x7a, kvm_xen_hvm_config);
}
use ioctls::KVM_XEN_HVM_CONFIG;

/// `kvm_xen_exit.type` of a hypercall.
const KVM_XEN_EXIT_HCALL: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Call {
    longmode: u32,
    cpl: u32,
    input: u64,
    params: [u64; 6],
}

#[test]
fn test_kernel_intercept_vmcall_vmmcall_64_and_32_bit_exit_as_xen() {
    let name = "test_kernel_intercept_vmcall_vmmcall_64_and_32_bit_exit_as_xen";
    if !kvm_available(name) {
        return;
    }
    let caps = xen_hvm_caps().unwrap();
    println!("KVM_CAP_XEN_HVM = {caps:#x}");
    if caps & KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL == 0 {
        assert!(
            !in_lab(),
            "{name}: the lab's KVM lacks INTERCEPT_HCALL ({caps:#x})"
        );
        skip(
            name,
            &format!(
                "this KVM has no in-kernel Xen (KVM_CAP_XEN_HVM = {caps:#x}); \
                 it runs in the nested lab (lab/run)"
            ),
        );
        return;
    }

    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let o = Runner::new(guests::HCALL_DIRECT)
        .vm_setup(|vm, _mem| {
            // KVM enables its Xen hooks (a static key) only once a
            // hypercall MSR is configured: with msr = 0, INTERCEPT_HCALL is
            // accepted but VMCALL still goes to KVM's own handler (-KVM_ENOSYS).
            let cfg = kvm_xen_hvm_config {
                flags: KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL,
                msr: XEN_HYPERCALL_MSR,
                ..Default::default()
            };
            // SAFETY: KVM_XEN_HVM_CONFIG reads one kvm_xen_hvm_config from
            // the pointer, which is valid for the call.
            let ret = unsafe { ioctl_with_ref(vm, KVM_XEN_HVM_CONFIG(), &cfg) };
            if ret < 0 {
                return Err(format!(
                    "KVM_XEN_HVM_CONFIG: {}",
                    std::io::Error::last_os_error()
                ));
            }
            Ok(())
        })
        .on_exit(move |vcpu, _index| {
            let run: &mut kvm_run = vcpu.get_kvm_run();
            if run.exit_reason != KVM_EXIT_XEN {
                return false;
            }
            // SAFETY: the exit reason says the `xen` member is the valid one.
            let xen = unsafe { &mut run.__bindgen_anon_1.xen };
            if xen.type_ != KVM_XEN_EXIT_HCALL {
                return false;
            }
            // SAFETY: type HCALL says `hcall` is the valid member.
            let h = unsafe { &mut xen.u.hcall };
            let call = Call {
                longmode: h.longmode,
                cpl: h.cpl,
                input: h.input,
                params: h.params,
            };
            println!("KVM_EXIT_XEN hcall {call:x?}");
            h.result = h.input ^ h.params[0];
            seen.lock().unwrap().push(call);
            true
        })
        .run()
        .unwrap();
    println!("{}", o.console);
    o.assert_status(0);

    let calls = calls.lock().unwrap();
    let a64 = |nr: u64| std::array::from_fn(|i| 0x1111_1111_0000_0000 * (i as u64 + 1) + nr);
    let a32 = |nr: u64| std::array::from_fn(|i| 0x0101_0000 * (i as u64 + 1) + nr);
    let want = [
        (1, 17, a64(17)),
        (1, 29, a64(29)),
        (0, 32, a32(32)),
        (0, 34, a32(34)),
    ]
    .map(|(longmode, input, params)| Call {
        longmode,
        cpl: 0,
        input,
        params,
    });
    assert_eq!(*calls, want);
    assert_eq!(
        o.lines_with("hcall ")
            .filter(|l| l.ends_with(" ok"))
            .count(),
        4
    );
}

/// The same direct VMCALL/VMMCALL callers, answered by the real dispatcher
/// through `xen-kvm-accel`'s kernel-intercept entry: each route's
/// `xen_version(XENVER_version)` must return the configured version.
#[test]
fn test_kernel_intercept_direct_calls_reach_the_dispatcher() {
    let name = "test_kernel_intercept_direct_calls_reach_the_dispatcher";
    if !kvm_available(name) {
        return;
    }
    let caps = xen_guest_harness::xen::caps();
    if !caps.kernel_path() {
        assert!(
            !in_lab(),
            "{name}: the lab's KVM lacks the kernel path ({caps:?})"
        );
        skip(
            name,
            &format!("no kernel-intercept path here ({caps:?}); runs in the lab"),
        );
        return;
    }
    let map = vec![E820Entry::new(0, 32 << 20, E820Type::Ram)];
    let mut xen = Xen::new(DomainConfig::new(1, xen_cpuid::XenVersion::V4_10, map));
    xen.path = PathChoice::Kernel;
    let (runner, handle) = Runner::new(guests::HCALL_DIRECT).arg(0x4000a).xen(xen);
    let o = runner.run().unwrap();
    println!("{}", o.console);
    o.assert_status(0);
    assert_eq!(handle.path(), Some(xen_kvm_accel::Path::Kernel));
    assert_eq!(
        o.lines_with("hcall ")
            .filter(|l| l.ends_with(" ok"))
            .count(),
        4
    );
    // With EVTCHN_SEND, KVM answers `XENVER_version` itself (the
    // XEN_VERSION fast path): no call leaves the kernel.
    let in_kernel = handle.kvm().is_some_and(|a| a.fast_paths().evtchn_send);
    let exits = if in_kernel { 0 } else { 4 };
    assert_eq!(
        o.exits.hooked, exits,
        "KVM_EXIT_XEN count (fast path {in_kernel})"
    );
}
