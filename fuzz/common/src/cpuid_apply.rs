// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Target `cpuid_apply`: arbitrary Xen CPUID configurations applied to
//! arbitrary CPUID tables.

use arbitrary::{Arbitrary, Unstructured};
use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES, kvm_cpuid_entry2};
use xen_abi::cpuid::{KVM_CPUID_SIGNATURE, TscMode, XEN_CPUID_SIGNATURE};
use xen_cpuid::{Error as CpuidError, TscConfig, XenCpuid, XenCpuidConfig, XenVersion};

/// Leaves a VMM's table plausibly holds; the fuzzer also tries any value.
const INTERESTING_LEAVES: [u32; 10] = [
    0,
    1,
    0xd,
    0x4000_0000,
    0x4000_0001,
    0x4000_0100,
    0x4000_0101,
    0x4000_01ff,
    0x4000_0200,
    0x8000_0000,
];

/// One CPUID entry as the fuzzer describes it.
#[derive(Arbitrary, Debug)]
struct Entry {
    leaf: LeafChoice,
    index: u32,
    flags: u32,
    eax: u32,
    regs: Regs,
}

#[derive(Arbitrary, Debug)]
enum LeafChoice {
    Interesting(u8),
    Hypervisor(u16),
    Any(u32),
}

#[derive(Arbitrary, Debug)]
enum Regs {
    Kvm,
    Xen,
    HyperV,
    Any([u32; 3]),
}

impl Entry {
    fn to_kvm(&self) -> kvm_cpuid_entry2 {
        let function = match self.leaf {
            LeafChoice::Interesting(i) => {
                INTERESTING_LEAVES[usize::from(i) % INTERESTING_LEAVES.len()]
            }
            LeafChoice::Hypervisor(o) => 0x4000_0000 + u32::from(o),
            LeafChoice::Any(f) => f,
        };
        let [ebx, ecx, edx] = match self.regs {
            Regs::Kvm => KVM_CPUID_SIGNATURE,
            Regs::Xen => XEN_CPUID_SIGNATURE,
            Regs::HyperV => [0x7263_694d, 0x666f_736f, 0x7648_2074],
            Regs::Any(r) => r,
        };
        kvm_cpuid_entry2 {
            function,
            index: self.index,
            flags: self.flags,
            eax: self.eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    }
}

/// A version as major/minor parts (mostly valid) or a raw value (mostly not).
#[derive(Arbitrary, Debug)]
enum VersionChoice {
    Parts(u8, u8),
    Raw(u32),
}

impl VersionChoice {
    fn raw(&self) -> u32 {
        match *self {
            VersionChoice::Parts(major, minor) => u32::from(major) << 16 | u32::from(minor),
            VersionChoice::Raw(v) => v,
        }
    }
}

/// The configuration as the fuzzer describes it.
#[derive(Arbitrary, Debug)]
struct Config {
    version: VersionChoice,
    vapic: bool,
    hyperv: bool,
    domid: u16,
    guest_khz: Option<u32>,
    host_khz: Option<u32>,
    reliable: bool,
    rdtscp: bool,
    mode: u32,
    incarnation: u32,
    vcpu: u32,
}

fn key(e: &kvm_cpuid_entry2) -> (u32, u32, u32, [u32; 4]) {
    (e.function, e.index, e.flags, [e.eax, e.ebx, e.ecx, e.edx])
}

/// Target `cpuid_apply`: builds Xen leaves from an arbitrary configuration,
/// applies them to an arbitrary CPUID table, and checks the result.
///
/// Invariants: a version is accepted only when its major is in range and it
/// is non-zero; on success every Xen leaf appears exactly as built, no
/// 0x100-aligned hypervisor leaf carries KVM's signature, nothing outside
/// the hypervisor range changes, and the table stays within KVM's limit; on
/// failure the table is untouched.
pub fn cpuid_apply(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(cfg) = Config::arbitrary(&mut u) else {
        return;
    };
    let Ok(entries) = Vec::<Entry>::arbitrary(&mut u) else {
        return;
    };

    let raw = cfg.version.raw();
    let version = match XenVersion::try_from(raw) {
        Ok(v) => {
            assert!(v.major() >= 3 && v.raw() == raw);
            v
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let mode = TscMode::try_from(cfg.mode).unwrap_or_default();
    let xen = XenCpuid::new(XenCpuidConfig {
        version,
        vapic: cfg.vapic,
        hyperv: cfg.hyperv,
        domid: cfg.domid,
        tsc: TscConfig {
            guest_khz: cfg.guest_khz,
            host_khz: cfg.host_khz,
            reliable: cfg.reliable,
            rdtscp: cfg.rdtscp,
            mode,
            incarnation: cfg.incarnation,
        },
    });
    let table: Vec<kvm_cpuid_entry2> = entries.iter().map(Entry::to_kvm).collect();
    let Ok(mut cpuid) = CpuId::from_entries(&table) else {
        return;
    };

    match xen.apply(&mut cpuid, cfg.vcpu) {
        Ok(()) => {
            let out = cpuid.as_slice();
            assert!(out.len() <= KVM_MAX_CPUID_ENTRIES);
            for want in xen.leaves(cfg.vcpu) {
                let n = out.iter().filter(|e| key(e) == key(&want)).count();
                assert_eq!(
                    n, 1,
                    "Xen leaf {:#x}.{} missing or doubled",
                    want.function, want.index
                );
            }
            for e in out {
                let aligned_hv =
                    (0x4000_0000..0x4001_0000).contains(&e.function) && e.function % 0x100 == 0;
                assert!(!(aligned_hv && [e.ebx, e.ecx, e.edx] == KVM_CPUID_SIGNATURE));
                assert!(!xen.range().contains(&e.function) || e.function <= xen.max_leaf());
            }
            let outside = |v: &[kvm_cpuid_entry2]| {
                let mut k: Vec<_> = v
                    .iter()
                    .filter(|e| !(0x4000_0000..0x4001_0000).contains(&e.function))
                    .map(key)
                    .collect();
                k.sort();
                k
            };
            assert_eq!(outside(out), outside(&table));
        }
        Err(CpuidError::BaseOccupied { leaf, .. }) => {
            assert_eq!(leaf, xen.base());
            assert_eq!(
                cpuid.as_slice().iter().map(key).collect::<Vec<_>>(),
                table.iter().map(key).collect::<Vec<_>>()
            );
        }
        Err(CpuidError::TableFull { .. }) => {
            assert_eq!(cpuid.as_slice().len(), table.len());
        }
    }
}
