// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Xen feature bits, mirroring `xen/include/public/features.h`.
//!
//! Follows interface version 0x00041300 (Xen 4.23-unstable), `xen-abi.md`
//! §3.11. A guest reads them with `xen_version(XENVER_get_features)` one
//! 32-bit submap at a time; only submap 0 exists ([`XENFEAT_NR_SUBMAPS`]).

use bitflags::bitflags;

/// `XENFEAT_writable_page_tables`.
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// `XENFEAT_writable_descriptor_tables`.
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// `XENFEAT_auto_translated_physmap`.
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// `XENFEAT_supervisor_mode_kernel`.
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// `XENFEAT_pae_pgdir_above_4gb`.
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// `XENFEAT_mmu_pt_update_preserve_ad`.
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
/// `XENFEAT_highmem_assist`.
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
/// `XENFEAT_gnttab_map_avail_bits`.
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// `XENFEAT_hvm_callback_vector`.
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// `XENFEAT_hvm_safe_pvclock`.
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// `XENFEAT_hvm_pirqs`.
pub const XENFEAT_HVM_PIRQS: u32 = 10;
/// `XENFEAT_dom0`.
pub const XENFEAT_DOM0: u32 = 11;
/// `XENFEAT_grant_map_identity` (deprecated, never set).
pub const XENFEAT_GRANT_MAP_IDENTITY: u32 = 12;
/// `XENFEAT_memory_op_vnode_supported`.
pub const XENFEAT_MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
/// `XENFEAT_ARM_SMCCC_supported`.
pub const XENFEAT_ARM_SMCCC_SUPPORTED: u32 = 14;
/// `XENFEAT_linux_rsdp_unrestricted`.
pub const XENFEAT_LINUX_RSDP_UNRESTRICTED: u32 = 15;
/// `XENFEAT_not_direct_mapped`.
pub const XENFEAT_NOT_DIRECT_MAPPED: u32 = 16;
/// `XENFEAT_direct_mapped`.
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;
/// `XENFEAT_runstate_phys_area`.
pub const XENFEAT_RUNSTATE_PHYS_AREA: u32 = 18;
/// `XENFEAT_vcpu_time_phys_area`.
pub const XENFEAT_VCPU_TIME_PHYS_AREA: u32 = 19;
/// `XENFEAT_dm_msix_all_writes`.
pub const XENFEAT_DM_MSIX_ALL_WRITES: u32 = 20;

/// Number of 32-bit feature submaps (`XENFEAT_NR_SUBMAPS`).
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

bitflags! {
    /// Feature submap 0, as returned by `XENVER_get_features` with index 0.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
    #[cfg_attr(feature = "serde", serde(transparent))]
    pub struct XenFeatures: u32 {
        /// Page tables are writable (true for translated guests).
        const WRITABLE_PAGE_TABLES = 1 << XENFEAT_WRITABLE_PAGE_TABLES;
        /// Descriptor tables are writable.
        const WRITABLE_DESCRIPTOR_TABLES = 1 << XENFEAT_WRITABLE_DESCRIPTOR_TABLES;
        /// The guest's physmap is translated by the hypervisor; Linux HVM grant
        /// tables require it.
        const AUTO_TRANSLATED_PHYSMAP = 1 << XENFEAT_AUTO_TRANSLATED_PHYSMAP;
        /// The guest kernel runs in ring 0 (PV).
        const SUPERVISOR_MODE_KERNEL = 1 << XENFEAT_SUPERVISOR_MODE_KERNEL;
        /// PAE page directories may live above 4 GiB (PV).
        const PAE_PGDIR_ABOVE_4GB = 1 << XENFEAT_PAE_PGDIR_ABOVE_4GB;
        /// `MMU_PT_UPDATE_PRESERVE_AD` is supported (PV).
        const MMU_PT_UPDATE_PRESERVE_AD = 1 << XENFEAT_MMU_PT_UPDATE_PRESERVE_AD;
        /// Highmem assists are available (PV).
        const HIGHMEM_ASSIST = 1 << XENFEAT_HIGHMEM_ASSIST;
        /// Grant mappings may use the guest-available PTE bits (PV).
        const GNTTAB_MAP_AVAIL_BITS = 1 << XENFEAT_GNTTAB_MAP_AVAIL_BITS;
        /// The vector callback type of `HVM_PARAM_CALLBACK_IRQ` is available.
        const HVM_CALLBACK_VECTOR = 1 << XENFEAT_HVM_CALLBACK_VECTOR;
        /// The pvclock is safe to use in HVM guests.
        const HVM_SAFE_PVCLOCK = 1 << XENFEAT_HVM_SAFE_PVCLOCK;
        /// PIRQ emulation is available to the HVM guest.
        const HVM_PIRQS = 1 << XENFEAT_HVM_PIRQS;
        /// The domain is the hardware domain.
        const DOM0 = 1 << XENFEAT_DOM0;
        /// Grant maps are identity-mapped (deprecated).
        const GRANT_MAP_IDENTITY = 1 << XENFEAT_GRANT_MAP_IDENTITY;
        /// `XENMEMF_vnode` is supported by memory operations.
        const MEMORY_OP_VNODE_SUPPORTED = 1 << XENFEAT_MEMORY_OP_VNODE_SUPPORTED;
        /// Arm SMCCC is supported.
        const ARM_SMCCC_SUPPORTED = 1 << XENFEAT_ARM_SMCCC_SUPPORTED;
        /// The RSDP may be placed anywhere (declared by PVH kernels).
        const LINUX_RSDP_UNRESTRICTED = 1 << XENFEAT_LINUX_RSDP_UNRESTRICTED;
        /// Guest memory is not direct-mapped.
        const NOT_DIRECT_MAPPED = 1 << XENFEAT_NOT_DIRECT_MAPPED;
        /// Guest memory is direct-mapped.
        const DIRECT_MAPPED = 1 << XENFEAT_DIRECT_MAPPED;
        /// `VCPUOP_register_runstate_phys_area` is available.
        const RUNSTATE_PHYS_AREA = 1 << XENFEAT_RUNSTATE_PHYS_AREA;
        /// `VCPUOP_register_vcpu_time_phys_area` is available.
        const VCPU_TIME_PHYS_AREA = 1 << XENFEAT_VCPU_TIME_PHYS_AREA;
        /// The device model sees all MSI-X table writes.
        const DM_MSIX_ALL_WRITES = 1 << XENFEAT_DM_MSIX_ALL_WRITES;
    }
}

impl XenFeatures {
    /// The feature set QEMU's Xen emulation advertises:
    /// bits {0, 1, 2, 8, 9, 10} (`xen-abi.md` §9).
    pub const QEMU_DEFAULT: XenFeatures = XenFeatures::WRITABLE_PAGE_TABLES
        .union(XenFeatures::WRITABLE_DESCRIPTOR_TABLES)
        .union(XenFeatures::AUTO_TRANSLATED_PHYSMAP)
        .union(XenFeatures::HVM_CALLBACK_VECTOR)
        .union(XenFeatures::HVM_SAFE_PVCLOCK)
        .union(XenFeatures::HVM_PIRQS);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_xen_features_bits_match_reference() {
        assert_eq!(XenFeatures::AUTO_TRANSLATED_PHYSMAP.bits(), 0x4);
        assert_eq!(XenFeatures::HVM_CALLBACK_VECTOR.bits(), 0x100);
        assert_eq!(XenFeatures::HVM_SAFE_PVCLOCK.bits(), 0x200);
        assert_eq!(XenFeatures::HVM_PIRQS.bits(), 0x400);
        assert_eq!(XenFeatures::DM_MSIX_ALL_WRITES.bits(), 1 << 20);
        assert_eq!(XenFeatures::all().bits(), 0x1f_ffff);
    }

    #[test]
    fn test_xen_features_qemu_default_is_bits_0_1_2_8_9_10() {
        assert_eq!(XenFeatures::QEMU_DEFAULT.bits(), 0x707);
    }

    #[test]
    fn test_xen_features_unknown_bit_rejected_by_from_bits() {
        assert!(XenFeatures::from_bits(1 << 21).is_none());
        assert_eq!(
            XenFeatures::from_bits_truncate(0x4 | (1 << 31)),
            XenFeatures::AUTO_TRANSLATED_PHYSMAP
        );
    }
}
