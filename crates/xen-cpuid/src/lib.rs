// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The Xen CPUID leaves an HVM guest sees, built for a KVM vCPU.
//!
//! A Xen guest decides it runs on Xen from CPUID alone: it scans
//! `0x40000000..0x4000ff00` in steps of 0x100 for the `XenVMMXenVMM`
//! signature with at least two leaves after it (`xen-abi.md` §2). This crate
//! builds those leaves from a [`XenCpuidConfig`] and applies them to a
//! [`kvm_bindings::CpuId`]:
//!
//! * base `0x40000000`, or `0x40000100` with the hypercall MSR at
//!   `0x40000200` when Hyper-V (Viridian) leaves are offered too; Hyper-V
//!   leaves the caller supplies stay at `0x40000000`;
//! * leaf `base+0` signature and max leaf (`base+5`, as real Xen), `base+1`
//!   version, `base+2` hypercall pages and MSR, `base+3` the TSC leaf with
//!   explicit sub-leaves 0, 1 and 2, `base+4` the HVM leaf (gated on the
//!   version as real Xen does), `base+5` the PV leaf (all zero for HVM);
//! * KVM's own leaves (`KVMKVMKVM` and its feature leaf) are removed: a guest
//!   that saw them at a higher base would pick KVM over Xen.
//!
//! ```
//! use kvm_bindings::{CpuId, kvm_cpuid_entry2};
//! use xen_cpuid::{XenCpuid, XenCpuidConfig};
//!
//! // What KVM_GET_SUPPORTED_CPUID reports, in short: a basic leaf and KVM's leaves.
//! let mut cpuid = CpuId::from_entries(&[
//!     kvm_cpuid_entry2 { function: 0, eax: 0xd, ..Default::default() },
//!     kvm_cpuid_entry2 { function: 0x4000_0000, eax: 0x4000_0001,
//!         ebx: 0x4b4d_564b, ecx: 0x564b_4d56, edx: 0x4d, ..Default::default() },
//!     kvm_cpuid_entry2 { function: 0x4000_0001, eax: 0x0100_7afb, ..Default::default() },
//! ]).unwrap();
//! let xen = XenCpuid::new(XenCpuidConfig::new("0x4000a".parse().unwrap()));
//! xen.apply(&mut cpuid, 0).unwrap();
//! let sig = cpuid.as_slice().iter().find(|e| e.function == 0x4000_0000).unwrap();
//! assert_eq!((sig.ebx, sig.ecx, sig.edx), (0x566e_6558, 0x6558_4d4d, 0x4d4d_566e));
//! assert_eq!(xen.hypercall_msr(), 0x4000_0000);
//! ```

#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("xen-cpuid supports x86-64 hosts and guests only");

mod version;

pub use version::{MAX_MAJOR, MAX_MINOR, MIN_MAJOR, VersionError, XenVersion};

use kvm_bindings::{CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, kvm_cpuid_entry2};
use xen_abi::cpuid::{
    HYPERVISOR_CPUID_STEP, HvmLeafFlags, KVM_CPUID_SIGNATURE, LEAF_HVM, LEAF_HYPERCALL, LEAF_MAX,
    LEAF_PV, LEAF_SIGNATURE, LEAF_TIME, LEAF_VERSION, TscLeafFlags, TscMode, TscScale,
    XEN_CPUID_BASE, XEN_CPUID_BASE_VIRIDIAN, XEN_CPUID_RANGE, XEN_CPUID_SIGNATURE,
    XEN_HYPERCALL_MSR, XEN_HYPERCALL_MSR_VIRIDIAN, XEN_HYPERCALL_PAGES,
};

/// First leaf of the hypervisor CPUID range.
const HYPERVISOR_RANGE_START: u32 = 0x4000_0000;
/// One past the last leaf of the hypervisor CPUID range guests scan.
const HYPERVISOR_RANGE_END: u32 = 0x4001_0000;

/// Errors from applying the Xen leaves to a KVM CPUID table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Another hypervisor's leaves occupy the base the Xen leaves need.
    #[error(
        "CPUID leaf {leaf:#x} already holds the signature {signature:?}; \
         enable the Hyper-V option to move the Xen leaves to 0x40000100"
    )]
    BaseOccupied {
        /// The occupied leaf.
        leaf: u32,
        /// The signature found there, as text.
        signature: String,
    },
    /// The table has no room for the Xen leaves.
    #[error("The CPUID table is full ({max} entries) and cannot take the Xen leaves")]
    TableFull {
        /// The table's capacity.
        max: usize,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// What the TSC leaf (`base+3`) reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TscConfig {
    /// Guest TSC frequency in kHz, if the VMM knows it (ECX of sub-leaf 0; the
    /// source of sub-leaf 1's scale).
    pub guest_khz: Option<u32>,
    /// Host TSC frequency in kHz (EAX of sub-leaf 2).
    pub host_khz: Option<u32>,
    /// The host TSC is constant and synchronised (`HOST_TSC_RELIABLE`).
    pub reliable: bool,
    /// The guest has RDTSCP (`RDTSCP_AVAILABLE`).
    pub rdtscp: bool,
    /// The `tsc_mode` in EBX. The default keeps Linux on the `xen`
    /// clocksource; [`TscMode::NeverEmulate`] lets it pick the TSC.
    pub mode: TscMode,
    /// Migration count ("incarnation") in EDX.
    pub incarnation: u32,
}

/// Everything that decides the Xen leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct XenCpuidConfig {
    /// The Xen version to claim.
    pub version: XenVersion,
    /// Advertise virtualised APIC access (`xen_vapic`): sets
    /// `APIC_ACCESS_VIRT` and `X2APIC_VIRT` in the HVM leaf.
    pub vapic: bool,
    /// Hyper-V leaves are offered too: Xen moves to `0x40000100` and its MSR
    /// to `0x40000200`.
    pub hyperv: bool,
    /// The guest's domain id (ECX of the HVM leaf from Xen 4.10).
    pub domid: u16,
    /// What the TSC leaf reports.
    pub tsc: TscConfig,
}

impl XenCpuidConfig {
    /// Defaults for a version: no vAPIC, no Hyper-V, domain 1 (as QEMU uses
    /// for its guest), TSC frequency unknown.
    pub fn new(version: XenVersion) -> Self {
        Self {
            version,
            vapic: false,
            hyperv: false,
            domid: 1,
            tsc: TscConfig::default(),
        }
    }
}

/// Builder of the Xen CPUID leaves for one configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenCpuid {
    config: XenCpuidConfig,
}

impl XenCpuid {
    /// Creates the builder.
    pub fn new(config: XenCpuidConfig) -> Self {
        Self { config }
    }

    /// The configuration.
    pub fn config(&self) -> &XenCpuidConfig {
        &self.config
    }

    /// The first Xen leaf: `0x40000000`, or `0x40000100` beside Hyper-V.
    pub fn base(&self) -> u32 {
        if self.config.hyperv {
            XEN_CPUID_BASE_VIRIDIAN
        } else {
            XEN_CPUID_BASE
        }
    }

    /// The MSR a guest writes to install the hypercall page.
    pub fn hypercall_msr(&self) -> u32 {
        if self.config.hyperv {
            XEN_HYPERCALL_MSR_VIRIDIAN
        } else {
            XEN_HYPERCALL_MSR
        }
    }

    /// The highest Xen leaf (EAX of `base+0`).
    pub fn max_leaf(&self) -> u32 {
        self.base() + LEAF_MAX
    }

    /// The leaves `base..=base+0x1ff` that Xen answers.
    pub fn range(&self) -> std::ops::Range<u32> {
        self.base()..self.base() + XEN_CPUID_RANGE
    }

    /// The HVM leaf flags for this version and options.
    ///
    /// Each flag appears from the Xen release that introduced it: the leaf
    /// itself and the vAPIC bits from 4.5, `VCPU_ID_PRESENT` from 4.6,
    /// `DOMID_PRESENT` from 4.10, `IOMMU_MAPPINGS` from 4.11 and
    /// `UPCALL_VECTOR` from 4.17 (QEMU gates the last one the same way).
    /// `EXT_DEST_ID` is never set: Xen's own vIOAPIC does not honour it.
    pub fn hvm_flags(&self) -> HvmLeafFlags {
        let v = self.config.version;
        let mut f = HvmLeafFlags::empty();
        if v < XenVersion::V4_5 {
            return f;
        }
        if self.config.vapic {
            f |= HvmLeafFlags::APIC_ACCESS_VIRT | HvmLeafFlags::X2APIC_VIRT;
        }
        if v >= XenVersion::V4_6 {
            f |= HvmLeafFlags::VCPU_ID_PRESENT;
        }
        if v >= XenVersion::V4_10 {
            f |= HvmLeafFlags::DOMID_PRESENT;
        }
        if v >= XenVersion::V4_11 {
            f |= HvmLeafFlags::IOMMU_MAPPINGS;
        }
        if v >= XenVersion::V4_17 {
            f |= HvmLeafFlags::UPCALL_VECTOR;
        }
        f
    }

    /// The Xen leaves for the vCPU with Xen id `vcpu_id`, in ascending
    /// (function, index) order. Sub-leaf indexed leaves (TSC, HVM, PV) carry
    /// `KVM_CPUID_FLAG_SIGNIFCANT_INDEX`; sub-leaves not listed read as zero.
    pub fn leaves(&self, vcpu_id: u32) -> Vec<kvm_cpuid_entry2> {
        let b = self.base();
        let c = &self.config;
        let leaf = |off: u32, index: u32, indexed: bool, regs: [u32; 4]| kvm_cpuid_entry2 {
            function: b + off,
            index,
            flags: if indexed {
                KVM_CPUID_FLAG_SIGNIFCANT_INDEX
            } else {
                0
            },
            eax: regs[0],
            ebx: regs[1],
            ecx: regs[2],
            edx: regs[3],
            ..Default::default()
        };
        let [s0, s1, s2] = XEN_CPUID_SIGNATURE;

        let mut tsc_flags = TscLeafFlags::empty();
        tsc_flags.set(TscLeafFlags::HOST_TSC_RELIABLE, c.tsc.reliable);
        tsc_flags.set(TscLeafFlags::RDTSCP_AVAILABLE, c.tsc.rdtscp);
        let scale = c
            .tsc
            .guest_khz
            .and_then(TscScale::from_tsc_khz)
            .unwrap_or_default();

        let hvm = self.hvm_flags();
        let hvm_vcpu = if hvm.contains(HvmLeafFlags::VCPU_ID_PRESENT) {
            vcpu_id
        } else {
            0
        };
        let hvm_domid = if hvm.contains(HvmLeafFlags::DOMID_PRESENT) {
            u32::from(c.domid)
        } else {
            0
        };

        vec![
            leaf(LEAF_SIGNATURE, 0, false, [self.max_leaf(), s0, s1, s2]),
            leaf(LEAF_VERSION, 0, false, [c.version.raw(), 0, 0, 0]),
            leaf(
                LEAF_HYPERCALL,
                0,
                false,
                [XEN_HYPERCALL_PAGES, self.hypercall_msr(), 0, 0],
            ),
            leaf(
                LEAF_TIME,
                0,
                true,
                [
                    tsc_flags.bits(),
                    c.tsc.mode as u32,
                    c.tsc.guest_khz.unwrap_or(0),
                    c.tsc.incarnation,
                ],
            ),
            // Sub-leaf 1: TSC offset (0: the TSC is not emulated) and the
            // ticks-to-ns scale; the shift is a sign-extended 32-bit value.
            leaf(
                LEAF_TIME,
                1,
                true,
                [0, 0, scale.mul, i32::from(scale.shift) as u32],
            ),
            leaf(LEAF_TIME, 2, true, [c.tsc.host_khz.unwrap_or(0), 0, 0, 0]),
            leaf(LEAF_HVM, 0, true, [hvm.bits(), hvm_vcpu, hvm_domid, 0]),
            leaf(LEAF_PV, 0, true, [0, 0, 0, 0]),
        ]
    }

    /// Replaces the hypervisor leaves of `cpuid` with the Xen leaves for
    /// `vcpu_id`.
    ///
    /// Removes every entry in the Xen range and every block of KVM leaves
    /// (a `KVMKVMKVM` signature leaf and the leaves up to its max leaf)
    /// anywhere in `0x40000000..0x40010000`. Other leaves, including
    /// Hyper-V's at `0x40000000` when [`XenCpuidConfig::hyperv`] is set, are
    /// kept. Fails if a foreign signature sits at the Xen base.
    pub fn apply(&self, cpuid: &mut CpuId, vcpu_id: u32) -> Result<()> {
        let xen_range = self.range();
        let mut kvm_blocks = Vec::new();
        for e in cpuid.as_slice() {
            if !(HYPERVISOR_RANGE_START..HYPERVISOR_RANGE_END).contains(&e.function)
                || e.function % HYPERVISOR_CPUID_STEP != 0
            {
                continue;
            }
            let sig = [e.ebx, e.ecx, e.edx];
            if sig == KVM_CPUID_SIGNATURE {
                // The KVM block runs to its max leaf, and at least over the
                // feature leaf that follows the signature.
                let last = e
                    .eax
                    .clamp(e.function + 1, e.function + HYPERVISOR_CPUID_STEP - 1);
                kvm_blocks.push(e.function..=last);
            } else if e.function == self.base() && sig != XEN_CPUID_SIGNATURE {
                return Err(Error::BaseOccupied {
                    leaf: e.function,
                    signature: signature_text(sig),
                });
            }
        }

        let kept: Vec<kvm_cpuid_entry2> = cpuid
            .as_slice()
            .iter()
            .filter(|e| {
                !xen_range.contains(&e.function)
                    && !kvm_blocks.iter().any(|r| r.contains(&e.function))
            })
            .copied()
            .chain(self.leaves(vcpu_id))
            .collect();
        *cpuid = CpuId::from_entries(&kept).map_err(|_| Error::TableFull {
            max: kvm_bindings::KVM_MAX_CPUID_ENTRIES,
        })?;
        Ok(())
    }
}

/// Renders a 12-byte CPUID signature as text, replacing non-printable bytes.
fn signature_text(sig: [u32; 3]) -> String {
    sig.iter()
        .flat_map(|w| w.to_le_bytes())
        .map(|b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
