// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Xen's hypervisor CPUID leaves and the hypercall-page MSR.
//!
//! Mirrors `xen/include/public/arch-x86/cpuid.h` (interface version
//! 0x00041300). Xen answers the range `base..base + 0x1ff` where `base` is
//! [`XEN_CPUID_BASE`], or [`XEN_CPUID_BASE_VIRIDIAN`] when Hyper-V
//! (Viridian) leaves are offered as well. The leaf offsets below are relative
//! to that base.

use bitflags::bitflags;

/// Default base of the Xen leaves.
pub const XEN_CPUID_BASE: u32 = 0x4000_0000;
/// Base of the Xen leaves when Hyper-V owns 0x40000000.
pub const XEN_CPUID_BASE_VIRIDIAN: u32 = 0x4000_0100;
/// Size of the CPUID range a Xen base answers (`base..base + 0x200`).
pub const XEN_CPUID_RANGE: u32 = 0x200;
/// Step in which guests scan for hypervisor signatures.
pub const HYPERVISOR_CPUID_STEP: u32 = 0x100;

/// "XenVMMXenVMM" split into EBX, ECX, EDX of leaf `base + 0`.
pub const XEN_CPUID_SIGNATURE: [u32; 3] = [0x566e_6558, 0x6558_4d4d, 0x4d4d_566e];
/// "KVMKVMKVM\0\0\0" as KVM reports it in EBX, ECX, EDX.
pub const KVM_CPUID_SIGNATURE: [u32; 3] = [0x4b4d_564b, 0x564b_4d56, 0x0000_004d];

/// Offset of the signature / max-leaf leaf.
pub const LEAF_SIGNATURE: u32 = 0;
/// Offset of the version leaf (EAX = major << 16 | minor).
pub const LEAF_VERSION: u32 = 1;
/// Offset of the hypercall-page leaf (EAX pages, EBX MSR index, ECX features).
pub const LEAF_HYPERCALL: u32 = 2;
/// Offset of the TSC leaf (sub-leaves 0, 1, 2).
pub const LEAF_TIME: u32 = 3;
/// Offset of the HVM-specific leaf.
pub const LEAF_HVM: u32 = 4;
/// Offset of the PV-specific leaf (all zero for HVM guests).
pub const LEAF_PV: u32 = 5;
/// Highest leaf offset current Xen defines.
pub const LEAF_MAX: u32 = LEAF_PV;

/// Hypercall-page MSR index at the default base.
pub const XEN_HYPERCALL_MSR: u32 = 0x4000_0000;
/// Hypercall-page MSR index when Hyper-V leaves are offered too.
pub const XEN_HYPERCALL_MSR_VIRIDIAN: u32 = 0x4000_0200;
/// Number of hypercall pages Xen reports (FreeBSD insists on exactly 1).
pub const XEN_HYPERCALL_PAGES: u32 = 1;

bitflags! {
    /// Feature bits in ECX of the hypercall leaf (`base + 2`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct HypercallLeafFeatures: u32 {
        /// `MMU_PT_UPDATE_PRESERVE_AD`: PV only, never set for HVM guests.
        const MMU_PT_UPDATE_PRESERVE_AD = 1 << 0;
    }
}

bitflags! {
    /// EAX of the TSC leaf (`base + 3`, sub-leaf 0).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct TscLeafFlags: u32 {
        /// The guest TSC is emulated (vtsc).
        const TSC_EMULATED = 1 << 0;
        /// The host TSC is reliable (constant and synchronised).
        const HOST_TSC_RELIABLE = 1 << 1;
        /// RDTSCP is available to the guest.
        const RDTSCP_AVAILABLE = 1 << 2;
    }
}

abi_enum! {
    /// `tsc_mode` reported in EBX of the TSC leaf, sub-leaf 0.
    #[derive(Default)]
    pub enum TscMode: u32, "TSC mode" {
        /// Emulate the TSC only when necessary (Xen's and QEMU's default).
        #[default]
        Default = 0 => "TSC_MODE_DEFAULT",
        /// Always emulate the TSC.
        AlwaysEmulate = 1 => "TSC_MODE_ALWAYS_EMULATE",
        /// Never emulate the TSC (Linux then trusts a constant TSC).
        NeverEmulate = 2 => "TSC_MODE_NEVER_EMULATE",
        /// PVRDTSCP mode (obsolete).
        Pvrdtscp = 3 => "TSC_MODE_PVRDTSCP",
    }
}

bitflags! {
    /// EAX of the HVM leaf (`base + 4`, sub-leaf 0).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct HvmLeafFlags: u32 {
        /// Virtualised APIC register access (xAPIC) is available.
        const APIC_ACCESS_VIRT = 1 << 0;
        /// Virtualised x2APIC access is available.
        const X2APIC_VIRT = 1 << 1;
        /// Grant mappings get IOMMU entries.
        const IOMMU_MAPPINGS = 1 << 2;
        /// EBX holds the vCPU id.
        const VCPU_ID_PRESENT = 1 << 3;
        /// ECX holds the domain id.
        const DOMID_PRESENT = 1 << 4;
        /// The extended destination ID in IOAPIC RTEs and MSI addresses is honoured.
        const EXT_DEST_ID = 1 << 5;
        /// `HVMOP_set_evtchn_upcall_vector` works (per-vCPU upcall vectors).
        const UPCALL_VECTOR = 1 << 6;
    }
}

/// A TSC-to-nanoseconds conversion in the pvclock form Xen uses for
/// `vcpu_time_info` and for sub-leaf 1 of the TSC leaf: a 32.32 fixed-point
/// multiplier applied after shifting the tick count by `shift` (left when
/// positive, right when negative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TscScale {
    /// `tsc_to_system_mul`: 32.32 fixed-point multiplier.
    pub mul: u32,
    /// `tsc_shift`: signed pre-shift of the tick count.
    pub shift: i8,
}

impl TscScale {
    /// The scale that turns ticks of a `tsc_khz` clock into nanoseconds.
    ///
    /// Returns `None` for a zero frequency. As in every pvclock producer,
    /// `mul` is normalised to `[2^31, 2^32)` so that no precision is lost.
    pub fn from_tsc_khz(tsc_khz: u32) -> Option<Self> {
        Self::for_rates(u64::from(tsc_khz) * 1000, 1_000_000_000)
    }

    /// The scale that turns ticks at `from_hz` into ticks at `to_hz`.
    ///
    /// Normalises `from_hz` by powers of two until it lies within a factor of
    /// two above `to_hz` and fits 32 bits, then takes the 32.32 quotient.
    pub fn for_rates(from_hz: u64, to_hz: u64) -> Option<Self> {
        if from_hz == 0 || to_hz == 0 {
            return None;
        }
        let mut shift: i32 = 0;
        let mut from = from_hz;
        let mut to = to_hz;
        // Bring the source rate down to at most twice the target and 32 bits.
        while from > to.saturating_mul(2) || from > u64::from(u32::MAX) {
            from >>= 1;
            shift -= 1;
        }
        // Bring it up (or the target down) until source > target.
        while from <= to || to > u64::from(u32::MAX) {
            if to > u64::from(u32::MAX) || from & 0x8000_0000 != 0 {
                to >>= 1;
            } else {
                from <<= 1;
            }
            shift += 1;
        }
        let mul = (u128::from(to) << 32) / u128::from(from);
        Some(Self {
            mul: u32::try_from(mul).ok()?,
            shift: i8::try_from(shift).ok()?,
        })
    }

    /// Converts a tick delta to nanoseconds the way a pvclock guest does.
    pub fn ticks_to_ns(self, ticks: u64) -> u64 {
        let shifted = if self.shift >= 0 {
            ticks << self.shift
        } else {
            ticks >> (-i32::from(self.shift))
        };
        ((u128::from(shifted) * u128::from(self.mul)) >> 32) as u64
    }

    /// The tick frequency in kHz this scale stands for (inverse of
    /// [`TscScale::from_tsc_khz`], exact to within rounding).
    pub fn tsc_khz(self) -> u64 {
        if self.mul == 0 {
            return 0;
        }
        let hz = (1_000_000_000u128 << 32) / u128::from(self.mul);
        let hz = if self.shift >= 0 {
            hz >> self.shift
        } else {
            hz << (-i32::from(self.shift))
        };
        (hz / 1000) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig_bytes(sig: [u32; 3]) -> Vec<u8> {
        sig.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn test_signature_xen_spells_xenvmmxenvmm() {
        assert_eq!(sig_bytes(XEN_CPUID_SIGNATURE), b"XenVMMXenVMM");
    }

    #[test]
    fn test_signature_kvm_spells_kvmkvmkvm() {
        assert_eq!(sig_bytes(KVM_CPUID_SIGNATURE), b"KVMKVMKVM\0\0\0");
    }

    #[test]
    fn test_tsc_mode_try_from_all_values_round_trip() {
        for m in [
            TscMode::Default,
            TscMode::AlwaysEmulate,
            TscMode::NeverEmulate,
            TscMode::Pvrdtscp,
        ] {
            assert_eq!(TscMode::try_from(m as u32).unwrap(), m);
        }
        assert!(TscMode::try_from(4).is_err());
    }

    #[test]
    fn test_tsc_scale_one_second_of_ticks_is_one_second() {
        for khz in [
            1_000u32, 32_768, 1_000_000, 2_100_000, 2_999_999, 3_700_000, 4_294_967,
        ] {
            let s = TscScale::from_tsc_khz(khz).unwrap();
            let ns = s.ticks_to_ns(u64::from(khz) * 1000);
            assert!(
                ns.abs_diff(1_000_000_000) <= 2,
                "{khz} kHz -> {ns} ns ({s:?})"
            );
            assert!(
                s.tsc_khz().abs_diff(u64::from(khz)) <= 1,
                "{khz} vs {}",
                s.tsc_khz()
            );
            assert!(s.mul >= 0x8000_0000, "multiplier not normalised: {s:?}");
        }
    }

    #[test]
    fn test_tsc_scale_known_rates_have_expected_shift() {
        // 2 GHz: ticks are halved then multiplied by ~1.0 (0.5 is below 2^31).
        let s = TscScale::from_tsc_khz(2_000_000).unwrap();
        assert_eq!((s.mul, s.shift), (0x8000_0000, 0));
        // 1 GHz: exactly one tick per ns; normalised as shift 1, mul 0.5.
        let s = TscScale::from_tsc_khz(1_000_000).unwrap();
        assert_eq!((s.mul, s.shift), (0x8000_0000, 1));
        // 3 GHz: shift -1 then multiply by 2/3.
        let s = TscScale::from_tsc_khz(3_000_000).unwrap();
        assert_eq!((s.mul, s.shift), (0xaaaa_aaaa, -1));
    }

    #[test]
    fn test_tsc_scale_zero_rate_is_none() {
        assert_eq!(TscScale::from_tsc_khz(0), None);
        assert_eq!(TscScale::for_rates(1, 0), None);
    }

    #[test]
    fn test_hvm_leaf_flags_bits_match_header() {
        assert_eq!(HvmLeafFlags::IOMMU_MAPPINGS.bits(), 0x04);
        assert_eq!(HvmLeafFlags::VCPU_ID_PRESENT.bits(), 0x08);
        assert_eq!(HvmLeafFlags::DOMID_PRESENT.bits(), 0x10);
        assert_eq!(HvmLeafFlags::UPCALL_VECTOR.bits(), 0x40);
    }
}
