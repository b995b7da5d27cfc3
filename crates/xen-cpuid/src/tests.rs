// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Every register of every Xen leaf, checked against `xen-abi.md` §2.

use super::*;

const XEN_V: u32 = 0x566e_6558; // "XenV"
const MMXE: u32 = 0x6558_4d4d; // "MMXe"
const NVMM: u32 = 0x4d4d_566e; // "nVMM"

fn cfg(version: u32) -> XenCpuidConfig {
    XenCpuidConfig::new(XenVersion::try_from(version).unwrap())
}

fn find(leaves: &[kvm_cpuid_entry2], function: u32, index: u32) -> [u32; 4] {
    let e = leaves
        .iter()
        .find(|e| {
            e.function == function
                && (e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX == 0 || e.index == index)
        })
        .unwrap_or_else(|| panic!("no leaf {function:#x}.{index}"));
    [e.eax, e.ebx, e.ecx, e.edx]
}

fn kvm_supported() -> CpuId {
    CpuId::from_entries(&[
        kvm_cpuid_entry2 {
            function: 0,
            eax: 0xd,
            ebx: 0x756e_6547,
            ..Default::default()
        },
        kvm_cpuid_entry2 {
            function: 1,
            eax: 0x806c1,
            ..Default::default()
        },
        kvm_cpuid_entry2 {
            function: 0x4000_0000,
            eax: 0x4000_0001,
            ebx: KVM_CPUID_SIGNATURE[0],
            ecx: KVM_CPUID_SIGNATURE[1],
            edx: KVM_CPUID_SIGNATURE[2],
            ..Default::default()
        },
        kvm_cpuid_entry2 {
            function: 0x4000_0001,
            eax: 0x0100_7afb,
            ..Default::default()
        },
        kvm_cpuid_entry2 {
            function: 0x8000_0000,
            eax: 0x8000_0008,
            ..Default::default()
        },
    ])
    .unwrap()
}

fn hyperv_leaves() -> Vec<kvm_cpuid_entry2> {
    vec![
        kvm_cpuid_entry2 {
            function: 0x4000_0000,
            eax: 0x4000_000a,
            ebx: 0x7263_694d, // "Micr"
            ecx: 0x666f_736f, // "osof"
            edx: 0x7648_2074, // "t Hv"
            ..Default::default()
        },
        kvm_cpuid_entry2 {
            function: 0x4000_0001,
            eax: 0x3123_7648, // "Hv#1"
            ..Default::default()
        },
    ]
}

#[test]
fn test_leaves_v4_10_every_register() {
    let x = XenCpuid::new(cfg(0x4000a));
    let l = x.leaves(3);
    assert_eq!(l.len(), 8);
    assert_eq!(find(&l, 0x4000_0000, 0), [0x4000_0005, XEN_V, MMXE, NVMM]);
    assert_eq!(find(&l, 0x4000_0001, 0), [0x0004_000a, 0, 0, 0]);
    assert_eq!(find(&l, 0x4000_0002, 0), [1, 0x4000_0000, 0, 0]);
    assert_eq!(find(&l, 0x4000_0003, 0), [0, 0, 0, 0]);
    assert_eq!(find(&l, 0x4000_0003, 1), [0, 0, 0, 0]);
    assert_eq!(find(&l, 0x4000_0003, 2), [0, 0, 0, 0]);
    // VCPU_ID (4.6) | DOMID (4.10); no IOMMU (4.11), no UPCALL_VECTOR (4.17).
    assert_eq!(find(&l, 0x4000_0004, 0), [0x08 | 0x10, 3, 1, 0]);
    assert_eq!(find(&l, 0x4000_0005, 0), [0, 0, 0, 0]);
}

#[test]
fn test_leaves_v4_17_has_upcall_vector_and_iommu() {
    let l = XenCpuid::new(cfg(0x40011)).leaves(0);
    assert_eq!(find(&l, 0x4000_0001, 0), [0x0004_0011, 0, 0, 0]);
    assert_eq!(
        find(&l, 0x4000_0004, 0),
        [0x04 | 0x08 | 0x10 | 0x40, 0, 1, 0]
    );
}

#[test]
fn test_leaves_v4_5_has_hvm_leaf_without_vcpu_id() {
    let l = XenCpuid::new(cfg(0x40005)).leaves(7);
    // The leaf exists but reports no id: EBX must not leak the vCPU id.
    assert_eq!(find(&l, 0x4000_0004, 0), [0, 0, 0, 0]);
    let l = XenCpuid::new(cfg(0x40006)).leaves(7);
    assert_eq!(find(&l, 0x4000_0004, 0), [0x08, 7, 0, 0]);
}

#[test]
fn test_leaves_v4_4_hvm_leaf_zero_even_with_vapic() {
    let mut c = cfg(0x40004);
    c.vapic = true;
    let l = XenCpuid::new(c).leaves(2);
    assert_eq!(find(&l, 0x4000_0004, 0), [0, 0, 0, 0]);
    // The other leaves are unaffected by the version.
    assert_eq!(find(&l, 0x4000_0000, 0), [0x4000_0005, XEN_V, MMXE, NVMM]);
    assert_eq!(find(&l, 0x4000_0001, 0), [0x0004_0004, 0, 0, 0]);
}

#[test]
fn test_leaves_vapic_sets_both_apic_bits() {
    let mut c = cfg(0x40011);
    c.vapic = true;
    c.domid = 9;
    let l = XenCpuid::new(c).leaves(1);
    assert_eq!(find(&l, 0x4000_0004, 0), [0x7f & !0x20, 1, 9, 0]);
}

#[test]
fn test_leaves_hyperv_moves_base_and_msr() {
    let mut c = cfg(0x4000a);
    c.hyperv = true;
    let x = XenCpuid::new(c);
    assert_eq!(x.base(), 0x4000_0100);
    assert_eq!(x.hypercall_msr(), 0x4000_0200);
    let l = x.leaves(0);
    assert!(
        l.iter()
            .all(|e| (0x4000_0100..=0x4000_0105).contains(&e.function))
    );
    assert_eq!(find(&l, 0x4000_0100, 0), [0x4000_0105, XEN_V, MMXE, NVMM]);
    assert_eq!(find(&l, 0x4000_0102, 0), [1, 0x4000_0200, 0, 0]);
}

#[test]
fn test_leaves_tsc_leaf_reports_frequency_scale_and_flags() {
    let mut c = cfg(0x4000a);
    c.tsc = TscConfig {
        guest_khz: Some(3_000_000),
        host_khz: Some(2_500_000),
        reliable: true,
        rdtscp: true,
        mode: TscMode::NeverEmulate,
        incarnation: 2,
    };
    let l = XenCpuid::new(c).leaves(0);
    assert_eq!(find(&l, 0x4000_0003, 0), [0b110, 2, 3_000_000, 2]);
    // 3 GHz: shift -1 (sign-extended), multiplier 2/3 in 32.32.
    assert_eq!(find(&l, 0x4000_0003, 1), [0, 0, 0xaaaa_aaaa, 0xffff_ffff]);
    assert_eq!(find(&l, 0x4000_0003, 2), [2_500_000, 0, 0, 0]);
}

#[test]
fn test_leaves_indexed_leaves_carry_significant_index_flag() {
    let l = XenCpuid::new(cfg(0x4000a)).leaves(0);
    for e in &l {
        let indexed =
            e.function == 0x4000_0003 || e.function == 0x4000_0004 || e.function == 0x4000_0005;
        assert_eq!(
            e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX != 0,
            indexed,
            "{:#x}",
            e.function
        );
    }
}

#[test]
fn test_apply_removes_kvm_leaves_and_keeps_basic_ones() {
    let mut cpuid = kvm_supported();
    XenCpuid::new(cfg(0x40011)).apply(&mut cpuid, 0).unwrap();
    let s = cpuid.as_slice();
    assert!(
        !s.iter()
            .any(|e| [e.ebx, e.ecx, e.edx] == KVM_CPUID_SIGNATURE)
    );
    // KVM's feature leaf is gone: 0x40000001 is now Xen's version leaf.
    assert_eq!(find(s, 0x4000_0001, 0), [0x0004_0011, 0, 0, 0]);
    assert_eq!(find(s, 0, 0)[1], 0x756e_6547);
    assert_eq!(find(s, 0x8000_0000, 0)[0], 0x8000_0008);
    assert_eq!(s.len(), 3 + 8);
}

#[test]
fn test_apply_removes_kvm_leaves_at_secondary_base() {
    let mut entries = hyperv_leaves();
    entries.push(kvm_cpuid_entry2 {
        function: 0x4000_0100,
        eax: 0x4000_0101,
        ebx: KVM_CPUID_SIGNATURE[0],
        ecx: KVM_CPUID_SIGNATURE[1],
        edx: KVM_CPUID_SIGNATURE[2],
        ..Default::default()
    });
    entries.push(kvm_cpuid_entry2 {
        function: 0x4000_0101,
        eax: 0xffff,
        ..Default::default()
    });
    let mut cpuid = CpuId::from_entries(&entries).unwrap();
    let mut c = cfg(0x4000a);
    c.hyperv = true;
    XenCpuid::new(c).apply(&mut cpuid, 0).unwrap();
    let s = cpuid.as_slice();
    // Hyper-V stays at 0x40000000, Xen sits at 0x40000100, KVM is gone.
    assert_eq!(find(s, 0x4000_0000, 0)[1], 0x7263_694d);
    assert_eq!(find(s, 0x4000_0001, 0)[0], 0x3123_7648);
    assert_eq!(find(s, 0x4000_0100, 0), [0x4000_0105, XEN_V, MMXE, NVMM]);
    assert_eq!(find(s, 0x4000_0101, 0), [0x0004_000a, 0, 0, 0]);
    assert!(
        !s.iter()
            .any(|e| [e.ebx, e.ecx, e.edx] == KVM_CPUID_SIGNATURE)
    );
}

#[test]
fn test_apply_hyperv_leaves_without_option_is_refused() {
    let mut cpuid = CpuId::from_entries(&hyperv_leaves()).unwrap();
    let before = cpuid.as_slice().to_vec();
    let err = XenCpuid::new(cfg(0x4000a))
        .apply(&mut cpuid, 0)
        .unwrap_err();
    assert_eq!(
        err,
        Error::BaseOccupied {
            leaf: 0x4000_0000,
            signature: "Microsoft Hv".into()
        }
    );
    // Nothing changed on failure.
    assert_eq!(cpuid.as_slice(), &before[..]);
}

#[test]
fn test_apply_twice_is_idempotent() {
    let mut cpuid = kvm_supported();
    let x = XenCpuid::new(cfg(0x4000a));
    x.apply(&mut cpuid, 5).unwrap();
    let once = cpuid.as_slice().to_vec();
    x.apply(&mut cpuid, 5).unwrap();
    assert_eq!(cpuid.as_slice(), &once[..]);
}

#[test]
fn test_apply_stale_leaves_in_xen_range_are_replaced() {
    let mut cpuid = CpuId::from_entries(&[kvm_cpuid_entry2 {
        function: 0x4000_0180,
        eax: 0xdead,
        ..Default::default()
    }])
    .unwrap();
    XenCpuid::new(cfg(0x4000a)).apply(&mut cpuid, 0).unwrap();
    assert!(!cpuid.as_slice().iter().any(|e| e.function == 0x4000_0180));
}

#[test]
fn test_apply_full_table_reports_table_full() {
    let entries: Vec<_> = (0..kvm_bindings::KVM_MAX_CPUID_ENTRIES as u32)
        .map(|i| kvm_cpuid_entry2 {
            function: 0x8000_0000 + i,
            ..Default::default()
        })
        .collect();
    let mut cpuid = CpuId::from_entries(&entries).unwrap();
    assert!(matches!(
        XenCpuid::new(cfg(0x4000a)).apply(&mut cpuid, 0),
        Err(Error::TableFull { .. })
    ));
    assert_eq!(cpuid.as_slice().len(), entries.len());
}

#[test]
fn test_signature_text_replaces_unprintable_bytes() {
    assert_eq!(signature_text(KVM_CPUID_SIGNATURE), "KVMKVMKVM...");
}
