// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A guest executes CPUID over the whole hypervisor range and must see
//! exactly the leaves `xen-cpuid` produced, and no trace of KVM.

use std::collections::BTreeMap;

use kvm_bindings::{CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, kvm_cpuid_entry2};
use xen_abi::cpuid::{KVM_CPUID_SIGNATURE, TscScale};
use xen_cpuid::{XenCpuid, XenCpuidConfig, XenVersion};
use xen_guest_harness::{Outcome, Runner, guests, kvm_available};

type Seen = BTreeMap<(u32, u32), [u32; 4]>;

fn hex(s: &str) -> u32 {
    u32::from_str_radix(s, 16).unwrap()
}

fn run(xen: XenCpuid, extra: Vec<kvm_cpuid_entry2>) -> (Outcome, Seen) {
    let o = Runner::new(guests::CPUID)
        .cpuid(move |cpuid: &mut CpuId, vcpu| {
            if !extra.is_empty() {
                // Stand-in for a VMM that offers Hyper-V leaves: drop KVM's
                // block at 0x40000000 and put the Hyper-V leaves there.
                let mut v: Vec<_> = cpuid
                    .as_slice()
                    .iter()
                    .filter(|e| !(0x4000_0000..0x4000_0100).contains(&e.function))
                    .copied()
                    .collect();
                v.extend(extra.iter().copied());
                *cpuid = CpuId::from_entries(&v).map_err(|e| format!("{e:?}"))?;
            }
            xen.apply(cpuid, vcpu).map_err(|e| e.to_string())
        })
        .run()
        .unwrap();
    o.assert_status(0);
    let seen = o
        .lines_with("cpuid ")
        .map(|l| {
            let f: Vec<u32> = l.split(' ').map(hex).collect();
            ((f[0], f[1]), [f[2], f[3], f[4], f[5]])
        })
        .collect();
    (o, seen)
}

/// A KVM built with Xen support (`KVM_CAP_XEN_HVM` != 0, as in the lab)
/// writes the vCPU's own TSC scale into sub-leaf 1 ECX/EDX and its TSC kHz
/// into sub-leaf 2 EAX of the Xen TSC leaf (at set time up to Linux 6.14,
/// at CPUID time since 6.15). Those registers must then be consistent
/// with each other rather than equal to what we set.
fn kernel_owned_tsc(xen: &XenCpuid, seen: &Seen, want: &mut [u32; 4], leaf: (u32, u32)) {
    if xen_guest_harness::xen_hvm_caps().unwrap() == 0 {
        return;
    }
    let tsc = xen.base() + 3;
    let sub1 = seen[&(tsc, 1)];
    let khz = seen[&(tsc, 2)][0];
    let scale = TscScale {
        mul: sub1[2],
        shift: sub1[3] as i32 as i8,
    };
    assert!(
        scale.mul >= 0x8000_0000,
        "kernel TSC scale not normalised: {sub1:x?}"
    );
    assert!(
        scale.tsc_khz().abs_diff(u64::from(khz)) * 100 <= u64::from(khz),
        "kernel TSC scale {scale:?} disagrees with its {khz} kHz"
    );
    match leaf {
        (f, 1) if f == tsc => (want[2], want[3]) = (sub1[2], sub1[3]),
        (f, 2) if f == tsc => want[0] = khz,
        _ => {}
    }
}

/// The guest saw every Xen leaf as the crate built it; sub-leaves an
/// indexed leaf does not list read as zero; no KVM signature anywhere.
fn check(xen: &XenCpuid, o: &Outcome, seen: &Seen) {
    assert_eq!(seen.len(), 0x200 * 4, "guest did not report every leaf");
    for e in xen.leaves(0) {
        let mut want = [e.eax, e.ebx, e.ecx, e.edx];
        kernel_owned_tsc(xen, seen, &mut want, (e.function, e.index));
        if e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX != 0 {
            assert_eq!(
                seen[&(e.function, e.index)],
                want,
                "leaf {:#x}.{}",
                e.function,
                e.index
            );
        } else {
            for sub in 0..4 {
                assert_eq!(
                    seen[&(e.function, sub)],
                    want,
                    "leaf {:#x}.{sub}",
                    e.function
                );
            }
        }
    }
    let listed: Vec<(u32, u32)> = xen
        .leaves(0)
        .iter()
        .map(|e| (e.function, e.index))
        .collect();
    for f in xen.base() + 3..=xen.base() + 5 {
        for sub in (0..4).filter(|s| !listed.contains(&(f, *s))) {
            assert_eq!(seen[&(f, sub)], [0; 4], "leaf {f:#x}.{sub} should be empty");
        }
    }
    for ((leaf, sub), r) in seen {
        assert_ne!(
            [r[1], r[2], r[3]],
            KVM_CPUID_SIGNATURE,
            "KVM signature visible at {leaf:#x}.{sub}"
        );
    }
    let base: Vec<u32> = o.lines_with("xen-base ").map(hex).collect();
    assert_eq!(base, [xen.base()], "the guest found Xen elsewhere");
}

fn config(version: &str) -> XenCpuidConfig {
    XenCpuidConfig::new(version.parse::<XenVersion>().unwrap())
}

#[test]
fn test_guest_cpuid_xen_4_10_leaves_seen_exactly() {
    if !kvm_available("test_guest_cpuid_xen_4_10_leaves_seen_exactly") {
        return;
    }
    let xen = XenCpuid::new(config("0x4000a"));
    let (o, seen) = run(xen, vec![]);
    check(&xen, &o, &seen);
    println!("cpuid guest: {:?} exits in {:?}", o.exits, o.wall);
}

#[test]
fn test_guest_cpuid_xen_4_17_vapic_tsc_leaves_seen_exactly() {
    if !kvm_available("test_guest_cpuid_xen_4_17_vapic_tsc_leaves_seen_exactly") {
        return;
    }
    let mut c = config("4.17");
    c.vapic = true;
    c.domid = 7;
    c.tsc.guest_khz = Some(2_500_000);
    c.tsc.host_khz = Some(2_500_000);
    c.tsc.reliable = true;
    let xen = XenCpuid::new(c);
    let (o, seen) = run(xen, vec![]);
    check(&xen, &o, &seen);
    // UPCALL_VECTOR | DOMID | VCPU_ID | IOMMU | X2APIC | APIC_ACCESS.
    assert_eq!(seen[&(0x4000_0004, 0)], [0x5f, 0, 7, 0]);
}

#[test]
fn test_guest_cpuid_beside_hyperv_xen_moves_to_0x40000100() {
    if !kvm_available("test_guest_cpuid_beside_hyperv_xen_moves_to_0x40000100") {
        return;
    }
    let hyperv = vec![
        kvm_cpuid_entry2 {
            function: 0x4000_0000,
            eax: 0x4000_0005,
            ebx: 0x7263_694d,
            ecx: 0x666f_736f,
            edx: 0x7648_2074,
            ..Default::default()
        },
        kvm_cpuid_entry2 {
            function: 0x4000_0001,
            eax: 0x3123_7648,
            ..Default::default()
        },
    ];
    let mut c = config("0x40011");
    c.hyperv = true;
    let xen = XenCpuid::new(c);
    let (o, seen) = run(xen, hyperv);
    check(&xen, &o, &seen);
    assert_eq!(
        seen[&(0x4000_0000, 0)][1],
        0x7263_694d,
        "Hyper-V left its base"
    );
    assert_eq!(seen[&(0x4000_0102, 0)], [1, 0x4000_0200, 0, 0]);
}
