// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Core Xen definitions, mirroring `xen/include/public/xen.h` together with
//! `arch-x86/xen.h`, `arch-x86/xen-x86_64.h` and `arch-x86/xen-x86_32.h`.
//!
//! Follows interface version 0x00041300 (Xen 4.23-unstable), `xen-abi.md` §1
//! (hypercall numbers, multicall, `console_io`, `vm_assist`, `set_timer_op`),
//! §3.1–§3.3 (`vcpu_time_info`, `vcpu_info`, `shared_info`) and the VIRQ table
//! of §3.8.
//!
//! Structures whose layout differs between long mode and 32-bit mode come in
//! two flavours: `Foo` is the x86_64 layout and `FooCompat` the x86_32 one
//! (`unsigned long` is 4 bytes there). None of the compat structures in this
//! module contains a misaligned `u64`, so they are plain `#[repr(C)]`.

use bitflags::bitflags;

// --- Hypercall numbers -------------------------------------------------------

/// `__HYPERVISOR_set_trap_table` (PV only).
pub const HYPERVISOR_SET_TRAP_TABLE: u32 = 0;
/// `__HYPERVISOR_mmu_update` (PV only).
pub const HYPERVISOR_MMU_UPDATE: u32 = 1;
/// `__HYPERVISOR_set_gdt` (PV only).
pub const HYPERVISOR_SET_GDT: u32 = 2;
/// `__HYPERVISOR_stack_switch` (PV only).
pub const HYPERVISOR_STACK_SWITCH: u32 = 3;
/// `__HYPERVISOR_set_callbacks` (PV only).
pub const HYPERVISOR_SET_CALLBACKS: u32 = 4;
/// `__HYPERVISOR_fpu_taskswitch` (PV only).
pub const HYPERVISOR_FPU_TASKSWITCH: u32 = 5;
/// `__HYPERVISOR_sched_op_compat` (PV only).
pub const HYPERVISOR_SCHED_OP_COMPAT: u32 = 6;
/// `__HYPERVISOR_platform_op` (privileged).
pub const HYPERVISOR_PLATFORM_OP: u32 = 7;
/// `__HYPERVISOR_set_debugreg` (PV only).
pub const HYPERVISOR_SET_DEBUGREG: u32 = 8;
/// `__HYPERVISOR_get_debugreg` (PV only).
pub const HYPERVISOR_GET_DEBUGREG: u32 = 9;
/// `__HYPERVISOR_update_descriptor` (PV only).
pub const HYPERVISOR_UPDATE_DESCRIPTOR: u32 = 10;
/// `__HYPERVISOR_memory_op` (see [`crate::memory`]).
pub const HYPERVISOR_MEMORY_OP: u32 = 12;
/// `__HYPERVISOR_multicall` (see [`MulticallEntry`]).
pub const HYPERVISOR_MULTICALL: u32 = 13;
/// `__HYPERVISOR_update_va_mapping` (PV only).
pub const HYPERVISOR_UPDATE_VA_MAPPING: u32 = 14;
/// `__HYPERVISOR_set_timer_op`: arm the one-shot timer (absolute ns).
pub const HYPERVISOR_SET_TIMER_OP: u32 = 15;
/// `__HYPERVISOR_event_channel_op_compat` (PV only).
pub const HYPERVISOR_EVENT_CHANNEL_OP_COMPAT: u32 = 16;
/// `__HYPERVISOR_xen_version` (see [`crate::version`]).
pub const HYPERVISOR_XEN_VERSION: u32 = 17;
/// `__HYPERVISOR_console_io` (see [`ConsoleIoCmd`]).
pub const HYPERVISOR_CONSOLE_IO: u32 = 18;
/// `__HYPERVISOR_physdev_op_compat` (PV only).
pub const HYPERVISOR_PHYSDEV_OP_COMPAT: u32 = 19;
/// `__HYPERVISOR_grant_table_op` (see [`crate::grant_table`]).
pub const HYPERVISOR_GRANT_TABLE_OP: u32 = 20;
/// `__HYPERVISOR_vm_assist` (see [`VmAssistCmd`]).
pub const HYPERVISOR_VM_ASSIST: u32 = 21;
/// `__HYPERVISOR_update_va_mapping_otherdomain` (PV only).
pub const HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN: u32 = 22;
/// `__HYPERVISOR_iret` (PV only; `ud2` in an HVM hypercall page).
pub const HYPERVISOR_IRET: u32 = 23;
/// `__HYPERVISOR_vcpu_op` (see [`crate::vcpu`]).
pub const HYPERVISOR_VCPU_OP: u32 = 24;
/// `__HYPERVISOR_set_segment_base` (PV only).
pub const HYPERVISOR_SET_SEGMENT_BASE: u32 = 25;
/// `__HYPERVISOR_mmuext_op`.
pub const HYPERVISOR_MMUEXT_OP: u32 = 26;
/// `__HYPERVISOR_xsm_op`.
pub const HYPERVISOR_XSM_OP: u32 = 27;
/// `__HYPERVISOR_nmi_op` (PV only).
pub const HYPERVISOR_NMI_OP: u32 = 28;
/// `__HYPERVISOR_sched_op` (see [`crate::sched`]).
pub const HYPERVISOR_SCHED_OP: u32 = 29;
/// `__HYPERVISOR_callback_op` (PV only).
pub const HYPERVISOR_CALLBACK_OP: u32 = 30;
/// `__HYPERVISOR_xenoprof_op` (dropped in Xen 4.22).
pub const HYPERVISOR_XENOPROF_OP: u32 = 31;
/// `__HYPERVISOR_event_channel_op` (see [`crate::event_channel`]).
pub const HYPERVISOR_EVENT_CHANNEL_OP: u32 = 32;
/// `__HYPERVISOR_physdev_op` (see [`crate::physdev`]).
pub const HYPERVISOR_PHYSDEV_OP: u32 = 33;
/// `__HYPERVISOR_hvm_op` (see [`crate::hvm`]).
pub const HYPERVISOR_HVM_OP: u32 = 34;
/// `__HYPERVISOR_sysctl` (privileged).
pub const HYPERVISOR_SYSCTL: u32 = 35;
/// `__HYPERVISOR_domctl` (privileged).
pub const HYPERVISOR_DOMCTL: u32 = 36;
/// `__HYPERVISOR_kexec_op`.
pub const HYPERVISOR_KEXEC_OP: u32 = 37;
/// `__HYPERVISOR_tmem_op` (removed).
pub const HYPERVISOR_TMEM_OP: u32 = 38;
/// `__HYPERVISOR_argo_op`.
pub const HYPERVISOR_ARGO_OP: u32 = 39;
/// `__HYPERVISOR_xenpmu_op`.
pub const HYPERVISOR_XENPMU_OP: u32 = 40;
/// `__HYPERVISOR_dm_op` (device model).
pub const HYPERVISOR_DM_OP: u32 = 41;
/// `__HYPERVISOR_hypfs_op`.
pub const HYPERVISOR_HYPFS_OP: u32 = 42;
/// `__HYPERVISOR_arch_0` (x86: machine-check operations, PV only).
pub const HYPERVISOR_ARCH_0: u32 = 48;
/// `__HYPERVISOR_arch_1` (x86: continuation of a privileged paging domctl).
pub const HYPERVISOR_ARCH_1: u32 = 49;
/// `__HYPERVISOR_arch_2`.
pub const HYPERVISOR_ARCH_2: u32 = 50;
/// `__HYPERVISOR_arch_3`.
pub const HYPERVISOR_ARCH_3: u32 = 51;
/// `__HYPERVISOR_arch_4`.
pub const HYPERVISOR_ARCH_4: u32 = 52;
/// `__HYPERVISOR_arch_5`.
pub const HYPERVISOR_ARCH_5: u32 = 53;
/// `__HYPERVISOR_arch_6`.
pub const HYPERVISOR_ARCH_6: u32 = 54;
/// `__HYPERVISOR_arch_7`.
pub const HYPERVISOR_ARCH_7: u32 = 55;

abi_enum! {
    /// A hypercall number, as found in RAX/EAX when the guest traps.
    pub enum HypercallNr: u32, "hypercall number" {
        /// `set_trap_table` (PV only).
        SetTrapTable = HYPERVISOR_SET_TRAP_TABLE => "__HYPERVISOR_set_trap_table",
        /// `mmu_update` (PV only).
        MmuUpdate = HYPERVISOR_MMU_UPDATE => "__HYPERVISOR_mmu_update",
        /// `set_gdt` (PV only).
        SetGdt = HYPERVISOR_SET_GDT => "__HYPERVISOR_set_gdt",
        /// `stack_switch` (PV only).
        StackSwitch = HYPERVISOR_STACK_SWITCH => "__HYPERVISOR_stack_switch",
        /// `set_callbacks` (PV only).
        SetCallbacks = HYPERVISOR_SET_CALLBACKS => "__HYPERVISOR_set_callbacks",
        /// `fpu_taskswitch` (PV only).
        FpuTaskswitch = HYPERVISOR_FPU_TASKSWITCH => "__HYPERVISOR_fpu_taskswitch",
        /// `sched_op_compat` (PV only).
        SchedOpCompat = HYPERVISOR_SCHED_OP_COMPAT => "__HYPERVISOR_sched_op_compat",
        /// `platform_op` (privileged).
        PlatformOp = HYPERVISOR_PLATFORM_OP => "__HYPERVISOR_platform_op",
        /// `set_debugreg` (PV only).
        SetDebugreg = HYPERVISOR_SET_DEBUGREG => "__HYPERVISOR_set_debugreg",
        /// `get_debugreg` (PV only).
        GetDebugreg = HYPERVISOR_GET_DEBUGREG => "__HYPERVISOR_get_debugreg",
        /// `update_descriptor` (PV only).
        UpdateDescriptor = HYPERVISOR_UPDATE_DESCRIPTOR => "__HYPERVISOR_update_descriptor",
        /// `memory_op`.
        MemoryOp = HYPERVISOR_MEMORY_OP => "__HYPERVISOR_memory_op",
        /// `multicall`.
        Multicall = HYPERVISOR_MULTICALL => "__HYPERVISOR_multicall",
        /// `update_va_mapping` (PV only).
        UpdateVaMapping = HYPERVISOR_UPDATE_VA_MAPPING => "__HYPERVISOR_update_va_mapping",
        /// `set_timer_op`.
        SetTimerOp = HYPERVISOR_SET_TIMER_OP => "__HYPERVISOR_set_timer_op",
        /// `event_channel_op_compat` (PV only).
        EventChannelOpCompat = HYPERVISOR_EVENT_CHANNEL_OP_COMPAT
            => "__HYPERVISOR_event_channel_op_compat",
        /// `xen_version`.
        XenVersion = HYPERVISOR_XEN_VERSION => "__HYPERVISOR_xen_version",
        /// `console_io`.
        ConsoleIo = HYPERVISOR_CONSOLE_IO => "__HYPERVISOR_console_io",
        /// `physdev_op_compat` (PV only).
        PhysdevOpCompat = HYPERVISOR_PHYSDEV_OP_COMPAT => "__HYPERVISOR_physdev_op_compat",
        /// `grant_table_op`.
        GrantTableOp = HYPERVISOR_GRANT_TABLE_OP => "__HYPERVISOR_grant_table_op",
        /// `vm_assist`.
        VmAssist = HYPERVISOR_VM_ASSIST => "__HYPERVISOR_vm_assist",
        /// `update_va_mapping_otherdomain` (PV only).
        UpdateVaMappingOtherdomain = HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN
            => "__HYPERVISOR_update_va_mapping_otherdomain",
        /// `iret` (PV only).
        Iret = HYPERVISOR_IRET => "__HYPERVISOR_iret",
        /// `vcpu_op`.
        VcpuOp = HYPERVISOR_VCPU_OP => "__HYPERVISOR_vcpu_op",
        /// `set_segment_base` (PV only).
        SetSegmentBase = HYPERVISOR_SET_SEGMENT_BASE => "__HYPERVISOR_set_segment_base",
        /// `mmuext_op`.
        MmuextOp = HYPERVISOR_MMUEXT_OP => "__HYPERVISOR_mmuext_op",
        /// `xsm_op`.
        XsmOp = HYPERVISOR_XSM_OP => "__HYPERVISOR_xsm_op",
        /// `nmi_op` (PV only).
        NmiOp = HYPERVISOR_NMI_OP => "__HYPERVISOR_nmi_op",
        /// `sched_op`.
        SchedOp = HYPERVISOR_SCHED_OP => "__HYPERVISOR_sched_op",
        /// `callback_op` (PV only).
        CallbackOp = HYPERVISOR_CALLBACK_OP => "__HYPERVISOR_callback_op",
        /// `xenoprof_op` (dropped in Xen 4.22).
        XenoprofOp = HYPERVISOR_XENOPROF_OP => "__HYPERVISOR_xenoprof_op",
        /// `event_channel_op`.
        EventChannelOp = HYPERVISOR_EVENT_CHANNEL_OP => "__HYPERVISOR_event_channel_op",
        /// `physdev_op`.
        PhysdevOp = HYPERVISOR_PHYSDEV_OP => "__HYPERVISOR_physdev_op",
        /// `hvm_op`.
        HvmOp = HYPERVISOR_HVM_OP => "__HYPERVISOR_hvm_op",
        /// `sysctl` (privileged).
        Sysctl = HYPERVISOR_SYSCTL => "__HYPERVISOR_sysctl",
        /// `domctl` (privileged).
        Domctl = HYPERVISOR_DOMCTL => "__HYPERVISOR_domctl",
        /// `kexec_op`.
        KexecOp = HYPERVISOR_KEXEC_OP => "__HYPERVISOR_kexec_op",
        /// `tmem_op` (removed).
        TmemOp = HYPERVISOR_TMEM_OP => "__HYPERVISOR_tmem_op",
        /// `argo_op`.
        ArgoOp = HYPERVISOR_ARGO_OP => "__HYPERVISOR_argo_op",
        /// `xenpmu_op`.
        XenpmuOp = HYPERVISOR_XENPMU_OP => "__HYPERVISOR_xenpmu_op",
        /// `dm_op`.
        DmOp = HYPERVISOR_DM_OP => "__HYPERVISOR_dm_op",
        /// `hypfs_op`.
        HypfsOp = HYPERVISOR_HYPFS_OP => "__HYPERVISOR_hypfs_op",
        /// `arch_0` (x86: `mca`).
        Arch0 = HYPERVISOR_ARCH_0 => "__HYPERVISOR_arch_0",
        /// `arch_1` (x86: `paging_domctl_cont`).
        Arch1 = HYPERVISOR_ARCH_1 => "__HYPERVISOR_arch_1",
        /// `arch_2`.
        Arch2 = HYPERVISOR_ARCH_2 => "__HYPERVISOR_arch_2",
        /// `arch_3`.
        Arch3 = HYPERVISOR_ARCH_3 => "__HYPERVISOR_arch_3",
        /// `arch_4`.
        Arch4 = HYPERVISOR_ARCH_4 => "__HYPERVISOR_arch_4",
        /// `arch_5`.
        Arch5 = HYPERVISOR_ARCH_5 => "__HYPERVISOR_arch_5",
        /// `arch_6`.
        Arch6 = HYPERVISOR_ARCH_6 => "__HYPERVISOR_arch_6",
        /// `arch_7`.
        Arch7 = HYPERVISOR_ARCH_7 => "__HYPERVISOR_arch_7",
    }
}

impl TryFrom<u64> for HypercallNr {
    type Error = crate::AbiError;

    /// Decodes a full RAX value. Values above `u32::MAX` are rejected.
    fn try_from(raw: u64) -> crate::Result<Self> {
        u32::try_from(raw)
            .map_err(|_| crate::RawValue::unknown(raw, "hypercall number"))
            .and_then(HypercallNr::try_from)
    }
}

/// Whether Xen dispatches a hypercall for HVM guests (`xen-abi.md` §1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum HvmAvailability {
    /// Available to HVM guests.
    Available,
    /// Available, but some sub-operations are filtered out (they return `-ENOSYS`).
    Filtered,
    /// Only for privileged (toolstack or device-model) domains.
    Privileged,
    /// Not available to HVM guests: Xen returns `-ENOSYS`.
    Unavailable,
}

impl HypercallNr {
    /// Returns how Xen treats this hypercall when an HVM guest issues it.
    pub const fn hvm_availability(self) -> HvmAvailability {
        use HypercallNr::*;
        match self {
            PlatformOp | Sysctl | Domctl | Arch0 | Arch1 | Arch2 | Arch3 | Arch4 | Arch5
            | Arch6 | Arch7 => HvmAvailability::Privileged,
            MemoryOp | PhysdevOp | GrantTableOp => HvmAvailability::Filtered,
            Multicall | SetTimerOp | XenVersion | ConsoleIo | VmAssist | VcpuOp | MmuextOp
            | XsmOp | SchedOp | EventChannelOp | HvmOp | ArgoOp | XenpmuOp | DmOp | HypfsOp => {
                HvmAvailability::Available
            }
            _ => HvmAvailability::Unavailable,
        }
    }
}

// --- Domain identifiers ------------------------------------------------------

/// A domain identifier (`domid_t`).
pub type DomId = u16;

/// First domain id reserved for special purposes (`DOMID_FIRST_RESERVED`).
pub const DOMID_FIRST_RESERVED: DomId = 0x7FF0;
/// The calling domain (`DOMID_SELF`).
pub const DOMID_SELF: DomId = 0x7FF0;
/// Pseudo-domain owning I/O memory (`DOMID_IO`).
pub const DOMID_IO: DomId = 0x7FF1;
/// Pseudo-domain owning Xen's own pages (`DOMID_XEN`).
pub const DOMID_XEN: DomId = 0x7FF2;
/// Pseudo-domain owning copy-on-write shared pages (`DOMID_COW`).
pub const DOMID_COW: DomId = 0x7FF3;
/// An invalid domain id (`DOMID_INVALID`).
pub const DOMID_INVALID: DomId = 0x7FF4;
/// The idle domain (`DOMID_IDLE`).
pub const DOMID_IDLE: DomId = 0x7FFF;
/// Mask of valid domain-id bits (`DOMID_MASK`).
pub const DOMID_MASK: DomId = 0x7FFF;

/// Returns true if `domid` names a real domain rather than a reserved
/// pseudo-domain (it is below [`DOMID_FIRST_RESERVED`]).
pub const fn domid_is_regular(domid: DomId) -> bool {
    domid < DOMID_FIRST_RESERVED
}

// --- VIRQs ---------------------------------------------------------------------

/// Number of virtual IRQs (`NR_VIRQS`).
pub const NR_VIRQS: u32 = 24;

/// How a VIRQ is bound (`xen-abi.md` §3.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum VirqKind {
    /// Bound separately on each vCPU.
    PerVcpu,
    /// One binding per domain, on any vCPU.
    PerDomain,
    /// One binding in the whole system; must be bound on vCPU 0.
    Global,
}

abi_enum! {
    /// A virtual IRQ number (`VIRQ_*`), bound with `EVTCHNOP_bind_virq`.
    pub enum Virq: u32, "VIRQ" {
        /// Per-vCPU timer (`set_timer_op` and vCPU timers fire it).
        Timer = 0 => "VIRQ_TIMER",
        /// Per-vCPU debug request.
        Debug = 1 => "VIRQ_DEBUG",
        /// Bytes received on the emergency console.
        Console = 2 => "VIRQ_CONSOLE",
        /// A domain exited (hardware domain).
        DomExc = 3 => "VIRQ_DOM_EXC",
        /// Trace buffer has records available.
        Tbuf = 4 => "VIRQ_TBUF",
        /// A domain reached a debugger event.
        Debugger = 6 => "VIRQ_DEBUGGER",
        /// Per-vCPU profiling interrupt.
        Xenoprof = 7 => "VIRQ_XENOPROF",
        /// Xen console ring has new data.
        ConRing = 8 => "VIRQ_CON_RING",
        /// Physical CPU state changed.
        PcpuState = 9 => "VIRQ_PCPU_STATE",
        /// Memory event available.
        MemEvent = 10 => "VIRQ_MEM_EVENT",
        /// Argo interdomain message.
        Argo = 11 => "VIRQ_ARGO",
        /// Xen ran low on memory.
        Enomem = 12 => "VIRQ_ENOMEM",
        /// Per-vCPU performance monitoring interrupt.
        Xenpmu = 13 => "VIRQ_XENPMU",
        /// Machine check (`VIRQ_ARCH_0` on x86).
        Mca = 16 => "VIRQ_MCA",
        /// Architecture-specific VIRQ 1.
        Arch1 = 17 => "VIRQ_ARCH_1",
        /// Architecture-specific VIRQ 2.
        Arch2 = 18 => "VIRQ_ARCH_2",
        /// Architecture-specific VIRQ 3.
        Arch3 = 19 => "VIRQ_ARCH_3",
        /// Architecture-specific VIRQ 4.
        Arch4 = 20 => "VIRQ_ARCH_4",
        /// Architecture-specific VIRQ 5.
        Arch5 = 21 => "VIRQ_ARCH_5",
        /// Architecture-specific VIRQ 6.
        Arch6 = 22 => "VIRQ_ARCH_6",
        /// Architecture-specific VIRQ 7.
        Arch7 = 23 => "VIRQ_ARCH_7",
    }
}

impl Virq {
    /// Returns whether this VIRQ is per-vCPU, per-domain or global.
    ///
    /// Architecture VIRQs are global on x86.
    pub const fn kind(self) -> VirqKind {
        match self {
            Virq::Timer | Virq::Debug | Virq::Xenoprof | Virq::Xenpmu => VirqKind::PerVcpu,
            Virq::Argo => VirqKind::PerDomain,
            _ => VirqKind::Global,
        }
    }
}

// --- console_io and vm_assist -------------------------------------------------

abi_enum! {
    /// `console_io` hypercall commands (`CONSOLEIO_*`).
    pub enum ConsoleIoCmd: u32, "console_io command" {
        /// Write `count` bytes from `buf` to the Xen console.
        Write = 0 => "CONSOLEIO_write",
        /// Read up to `count` bytes from the Xen console into `buf`.
        Read = 1 => "CONSOLEIO_read",
    }
}

abi_enum! {
    /// `vm_assist` hypercall commands (`VMASST_CMD_*`).
    pub enum VmAssistCmd: u32, "vm_assist command" {
        /// Enable an assist.
        Enable = 0 => "VMASST_CMD_enable",
        /// Disable an assist.
        Disable = 1 => "VMASST_CMD_disable",
    }
}

abi_enum! {
    /// `vm_assist` types (`VMASST_TYPE_*`).
    pub enum VmAssistType: u32, "vm_assist type" {
        /// 4 GiB segment emulation (PV).
        FourGbSegments = 0 => "VMASST_TYPE_4gb_segments",
        /// Notify on 4 GiB segment fixups (PV).
        FourGbSegmentsNotify = 1 => "VMASST_TYPE_4gb_segments_notify",
        /// Writable page tables (PV).
        WritablePagetables = 2 => "VMASST_TYPE_writable_pagetables",
        /// PAE page directories above 4 GiB (PV).
        PaeExtendedCr3 = 3 => "VMASST_TYPE_pae_extended_cr3",
        /// Architectural IOPL handling (PV).
        ArchitecturalIopl = 4 => "VMASST_TYPE_architectural_iopl",
        /// Set `XEN_RUNSTATE_UPDATE` while updating the runstate area.
        RunstateUpdateFlag = 5 => "VMASST_TYPE_runstate_update_flag",
        /// Strict M2P checking (PV).
        M2pStrict = 32 => "VMASST_TYPE_m2p_strict",
    }
}

impl VmAssistType {
    /// Returns true if Xen lets HVM guests enable or disable this assist.
    /// Only [`VmAssistType::RunstateUpdateFlag`] qualifies; others get `-EINVAL`.
    pub const fn allowed_for_hvm(self) -> bool {
        matches!(self, VmAssistType::RunstateUpdateFlag)
    }
}

// --- set_timer_op ------------------------------------------------------------

/// `set_timer_op` deadlines further than this many ns in the future (or with
/// bit 63 set) are replaced by "now + [`SET_TIMER_OP_FALLBACK_NS`]"
/// (Xen's Linux workaround).
pub const SET_TIMER_OP_MAX_FUTURE_NS: u64 = 1 << 50;
/// Delay Xen substitutes for a bogus `set_timer_op` deadline: 100 ms.
pub const SET_TIMER_OP_FALLBACK_NS: u64 = 100_000_000;

// --- vcpu_time_info, vcpu_info ------------------------------------------------

/// Most vCPUs of an HVM domain (`HVM_MAX_VCPUS`, `hvm/hvm_info_table.h`).
pub const HVM_MAX_VCPUS: u32 = 128;

/// Number of `vcpu_info` slots embedded in `shared_info` (`XEN_LEGACY_MAX_VCPUS`).
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

bitflags! {
    /// `vcpu_time_info.flags` bits (`XEN_PVCLOCK_*`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
    #[cfg_attr(feature = "serde", serde(transparent))]
    pub struct PvclockFlags: u8 {
        /// The TSC is stable across vCPUs (`XEN_PVCLOCK_TSC_STABLE_BIT`).
        const TSC_STABLE = 1 << 0;
        /// The guest was stopped (`XEN_PVCLOCK_GUEST_STOPPED`).
        const GUEST_STOPPED = 1 << 1;
    }
}

/// `struct vcpu_time_info`: the pvclock parameters (32 bytes, both modes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTimeInfo {
    /// Update counter; odd while an update is in progress.
    pub version: u32,
    /// Padding.
    pub pad0: u32,
    /// TSC value at the last update.
    pub tsc_timestamp: u64,
    /// Xen system time (ns since boot) at `tsc_timestamp`.
    pub system_time: u64,
    /// TSC-to-ns multiplier, 32.32 fixed point.
    pub tsc_to_system_mul: u32,
    /// Power-of-two shift applied to TSC deltas before multiplying.
    pub tsc_shift: i8,
    /// Raw [`PvclockFlags`].
    pub flags: u8,
    /// Padding.
    pub pad1: [u8; 2],
}
abi_layout!(VcpuTimeInfo, 32, {
    version => 0, pad0 => 4, tsc_timestamp => 8, system_time => 16,
    tsc_to_system_mul => 24, tsc_shift => 28, flags => 29, pad1 => 30,
});

impl VcpuTimeInfo {
    /// Returns the typed flags (unknown bits are dropped).
    pub const fn pvclock_flags(&self) -> PvclockFlags {
        PvclockFlags::from_bits_truncate(self.flags)
    }

    /// Stores typed flags.
    pub fn set_pvclock_flags(&mut self, flags: PvclockFlags) {
        self.flags = flags.bits();
    }

    /// Converts a TSC reading into Xen system time (ns), using the guest's
    /// formula: `system_time + ((tsc - tsc_timestamp) << shift) * mul >> 32`
    /// (a right shift when `tsc_shift` is negative).
    pub fn system_time_at(&self, tsc: u64) -> u64 {
        let mut delta = tsc.wrapping_sub(self.tsc_timestamp);
        if self.tsc_shift >= 0 {
            delta = delta.wrapping_shl(u32::from(self.tsc_shift.unsigned_abs()));
        } else {
            delta = delta.wrapping_shr(u32::from(self.tsc_shift.unsigned_abs()));
        }
        let scaled = (u128::from(delta) * u128::from(self.tsc_to_system_mul)) >> 32;
        self.system_time.wrapping_add(scaled as u64)
    }
}

/// `struct arch_vcpu_info`, x86_64 layout (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchVcpuInfo {
    /// Faulting address (PV only).
    pub cr2: u64,
    /// Padding.
    pub pad: u64,
}
abi_layout!(ArchVcpuInfo, 16, { cr2 => 0, pad => 8 });

/// `struct arch_vcpu_info`, x86_32 layout (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchVcpuInfoCompat {
    /// Faulting address (PV only).
    pub cr2: u32,
    /// Padding.
    pub pad: [u32; 5],
}
abi_layout!(ArchVcpuInfoCompat, 24, { cr2 => 0, pad => 4 });

/// `struct vcpu_info`, x86_64 layout (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuInfo {
    /// Non-zero when an upcall is pending for this vCPU.
    pub evtchn_upcall_pending: u8,
    /// Upcall mask; ignored by Xen for HVM guests.
    pub evtchn_upcall_mask: u8,
    /// Padding.
    pub pad0: [u8; 6],
    /// Selector: bit w set means word w of `evtchn_pending` may have work.
    pub evtchn_pending_sel: u64,
    /// Architecture-specific part.
    pub arch: ArchVcpuInfo,
    /// This vCPU's pvclock.
    pub time: VcpuTimeInfo,
}
abi_layout!(VcpuInfo, 64, {
    evtchn_upcall_pending => 0, evtchn_upcall_mask => 1, pad0 => 2,
    evtchn_pending_sel => 8, arch => 16, time => 32,
});
const _: () = assert!(core::mem::offset_of!(VcpuInfo, arch) + 8 == 24); // arch.pad @24

/// `struct vcpu_info`, x86_32 layout (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuInfoCompat {
    /// Non-zero when an upcall is pending for this vCPU.
    pub evtchn_upcall_pending: u8,
    /// Upcall mask; ignored by Xen for HVM guests.
    pub evtchn_upcall_mask: u8,
    /// Padding.
    pub pad0: [u8; 2],
    /// Selector: bit w set means word w of `evtchn_pending` may have work.
    pub evtchn_pending_sel: u32,
    /// Architecture-specific part.
    pub arch: ArchVcpuInfoCompat,
    /// This vCPU's pvclock.
    pub time: VcpuTimeInfo,
}
abi_layout!(VcpuInfoCompat, 64, {
    evtchn_upcall_pending => 0, evtchn_upcall_mask => 1, pad0 => 2,
    evtchn_pending_sel => 4, arch => 8, time => 32,
});

// --- shared_info ---------------------------------------------------------------

/// Number of event-channel bitmap words in `shared_info`, x86_64 (64-bit words).
pub const EVTCHN_WORDS: usize = 64;
/// Number of event-channel bitmap words in `shared_info`, x86_32 (32-bit words).
pub const EVTCHN_WORDS_COMPAT: usize = 32;

/// `struct arch_shared_info`, x86_64 layout (48 bytes). PV-only fields; HVM
/// guests ignore them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchSharedInfo {
    /// Highest PFN (PV).
    pub max_pfn: u64,
    /// Frame of the P2M frame-list list (PV).
    pub pfn_to_mfn_frame_list_list: u64,
    /// NMI reason bits (PV).
    pub nmi_reason: u64,
    /// P2M CR3 (PV).
    pub p2m_cr3: u64,
    /// P2M virtual address (PV).
    pub p2m_vaddr: u64,
    /// P2M generation count (PV).
    pub p2m_generation: u64,
}
abi_layout!(ArchSharedInfo, 48, {
    max_pfn => 0, pfn_to_mfn_frame_list_list => 8, nmi_reason => 16,
    p2m_cr3 => 24, p2m_vaddr => 32, p2m_generation => 40,
});

/// `struct arch_shared_info`, x86_32 layout (28 bytes). It also carries the
/// high word of the wallclock seconds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchSharedInfoCompat {
    /// Highest PFN (PV).
    pub max_pfn: u32,
    /// Frame of the P2M frame-list list (PV).
    pub pfn_to_mfn_frame_list_list: u32,
    /// NMI reason bits (PV).
    pub nmi_reason: u32,
    /// P2M CR3 (PV).
    pub p2m_cr3: u32,
    /// P2M virtual address (PV).
    pub p2m_vaddr: u32,
    /// P2M generation count (PV).
    pub p2m_generation: u32,
    /// High 32 bits of the wallclock seconds.
    pub wc_sec_hi: u32,
}
abi_layout!(ArchSharedInfoCompat, 28, {
    max_pfn => 0, pfn_to_mfn_frame_list_list => 4, nmi_reason => 8,
    p2m_cr3 => 12, p2m_vaddr => 16, p2m_generation => 20, wc_sec_hi => 24,
});

/// `struct shared_info`, x86_64 layout (3136 bytes at the start of the page).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedInfo {
    /// Default `vcpu_info` of vCPUs 0..32.
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    /// 2-level pending bitmap, bit p = port p.
    pub evtchn_pending: [u64; EVTCHN_WORDS],
    /// 2-level mask bitmap, bit p = port p.
    pub evtchn_mask: [u64; EVTCHN_WORDS],
    /// Wallclock update counter (odd while updating).
    pub wc_version: u32,
    /// Wallclock seconds (low 32 bits) at Xen system time 0.
    pub wc_sec: u32,
    /// Wallclock nanoseconds at Xen system time 0.
    pub wc_nsec: u32,
    /// Wallclock seconds, high 32 bits.
    pub wc_sec_hi: u32,
    /// Architecture-specific part.
    pub arch: ArchSharedInfo,
}
abi_layout!(SharedInfo, 3136, {
    vcpu_info => 0, evtchn_pending => 2048, evtchn_mask => 2560, wc_version => 3072,
    wc_sec => 3076, wc_nsec => 3080, wc_sec_hi => 3084, arch => 3088,
});

impl Default for SharedInfo {
    fn default() -> Self {
        SharedInfo {
            vcpu_info: [VcpuInfo::default(); XEN_LEGACY_MAX_VCPUS],
            evtchn_pending: [0; EVTCHN_WORDS],
            evtchn_mask: [0; EVTCHN_WORDS],
            wc_version: 0,
            wc_sec: 0,
            wc_nsec: 0,
            wc_sec_hi: 0,
            arch: ArchSharedInfo::default(),
        }
    }
}

impl SharedInfo {
    /// Returns the full 64-bit wallclock seconds (`wc_sec_hi:wc_sec`).
    pub const fn wallclock_sec(&self) -> u64 {
        ((self.wc_sec_hi as u64) << 32) | self.wc_sec as u64
    }

    /// Stores the 64-bit wallclock seconds into `wc_sec` and `wc_sec_hi`.
    pub fn set_wallclock_sec(&mut self, sec: u64) {
        self.wc_sec = sec as u32;
        self.wc_sec_hi = (sec >> 32) as u32;
    }
}

/// `struct shared_info`, x86_32 layout (2344 bytes at the start of the page).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedInfoCompat {
    /// Default `vcpu_info` of vCPUs 0..32.
    pub vcpu_info: [VcpuInfoCompat; XEN_LEGACY_MAX_VCPUS],
    /// 2-level pending bitmap, bit p = port p.
    pub evtchn_pending: [u32; EVTCHN_WORDS_COMPAT],
    /// 2-level mask bitmap, bit p = port p.
    pub evtchn_mask: [u32; EVTCHN_WORDS_COMPAT],
    /// Wallclock update counter (odd while updating).
    pub wc_version: u32,
    /// Wallclock seconds (low 32 bits) at Xen system time 0.
    pub wc_sec: u32,
    /// Wallclock nanoseconds at Xen system time 0.
    pub wc_nsec: u32,
    /// Architecture-specific part (holds `wc_sec_hi`).
    pub arch: ArchSharedInfoCompat,
}
abi_layout!(SharedInfoCompat, 2344, {
    vcpu_info => 0, evtchn_pending => 2048, evtchn_mask => 2176, wc_version => 2304,
    wc_sec => 2308, wc_nsec => 2312, arch => 2316,
});
// arch.wc_sec_hi lives at absolute offset 2340.
const _: () = assert!(
    core::mem::offset_of!(SharedInfoCompat, arch)
        + core::mem::offset_of!(ArchSharedInfoCompat, wc_sec_hi)
        == 2340
);

impl Default for SharedInfoCompat {
    fn default() -> Self {
        SharedInfoCompat {
            vcpu_info: [VcpuInfoCompat::default(); XEN_LEGACY_MAX_VCPUS],
            evtchn_pending: [0; EVTCHN_WORDS_COMPAT],
            evtchn_mask: [0; EVTCHN_WORDS_COMPAT],
            wc_version: 0,
            wc_sec: 0,
            wc_nsec: 0,
            arch: ArchSharedInfoCompat::default(),
        }
    }
}

impl SharedInfoCompat {
    /// Returns the full 64-bit wallclock seconds (`arch.wc_sec_hi:wc_sec`).
    pub const fn wallclock_sec(&self) -> u64 {
        ((self.arch.wc_sec_hi as u64) << 32) | self.wc_sec as u64
    }

    /// Stores the 64-bit wallclock seconds into `wc_sec` and `arch.wc_sec_hi`.
    pub fn set_wallclock_sec(&mut self, sec: u64) {
        self.wc_sec = sec as u32;
        self.arch.wc_sec_hi = (sec >> 32) as u32;
    }
}

// --- multicall -----------------------------------------------------------------

/// Number of argument slots in a multicall entry.
pub const MULTICALL_ARGS: usize = 6;
/// Number of argument slots Xen actually passes to the callee.
pub const MULTICALL_USED_ARGS: usize = 5;

/// `struct multicall_entry`, x86_64 layout (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MulticallEntry {
    /// Hypercall number.
    pub op: u64,
    /// OUT: the hypercall's return value.
    pub result: u64,
    /// Hypercall arguments.
    pub args: [u64; MULTICALL_ARGS],
}
abi_layout!(MulticallEntry, 64, { op => 0, result => 8, args => 16 });

/// `struct multicall_entry`, x86_32 layout (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MulticallEntryCompat {
    /// Hypercall number.
    pub op: u32,
    /// OUT: the hypercall's return value.
    pub result: u32,
    /// Hypercall arguments.
    pub args: [u32; MULTICALL_ARGS],
}
abi_layout!(MulticallEntryCompat, 32, { op => 0, result => 4, args => 8 });

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AbiError;
    use core::mem::{offset_of, size_of};
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    fn guest_mem() -> GuestMemoryMmap<()> {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
    }

    fn read_u32(mem: &GuestMemoryMmap<()>, addr: u64) -> u32 {
        mem.read_obj(GuestAddress(addr)).unwrap()
    }

    fn read_u64(mem: &GuestMemoryMmap<()>, addr: u64) -> u64 {
        mem.read_obj(GuestAddress(addr)).unwrap()
    }

    fn read_u8(mem: &GuestMemoryMmap<()>, addr: u64) -> u8 {
        mem.read_obj(GuestAddress(addr)).unwrap()
    }

    #[test]
    fn test_hypercall_nr_all_values_round_trip() {
        for &h in HypercallNr::ALL {
            assert_eq!(HypercallNr::try_from(h.raw()).unwrap(), h);
            assert_eq!(HypercallNr::try_from(u64::from(h.raw())).unwrap(), h);
        }
        assert_eq!(HypercallNr::ALL.len(), 50);
    }

    #[test]
    fn test_hypercall_nr_unknown_value_rejected() {
        assert!(HypercallNr::try_from(11u32).is_err());
        assert!(HypercallNr::try_from(43u64).is_err());
        assert_eq!(
            HypercallNr::try_from(0x1_0000_000cu64),
            Err(AbiError::UnknownValue {
                what: "hypercall number",
                value: 0x1_0000_000c
            })
        );
    }

    #[test]
    fn test_hypercall_nr_known_numbers_match_reference() {
        assert_eq!(HypercallNr::MemoryOp.raw(), 12);
        assert_eq!(HypercallNr::SetTimerOp.raw(), 15);
        assert_eq!(HypercallNr::XenVersion.raw(), 17);
        assert_eq!(HypercallNr::GrantTableOp.raw(), 20);
        assert_eq!(HypercallNr::VcpuOp.raw(), 24);
        assert_eq!(HypercallNr::SchedOp.raw(), 29);
        assert_eq!(HypercallNr::EventChannelOp.raw(), 32);
        assert_eq!(HypercallNr::PhysdevOp.raw(), 33);
        assert_eq!(HypercallNr::HvmOp.raw(), 34);
        assert_eq!(HypercallNr::Arch7.raw(), 55);
        assert_eq!(HypercallNr::HvmOp.name(), "__HYPERVISOR_hvm_op");
    }

    #[test]
    fn test_hypercall_nr_hvm_availability_follows_table() {
        assert_eq!(
            HypercallNr::Iret.hvm_availability(),
            HvmAvailability::Unavailable
        );
        assert_eq!(
            HypercallNr::MemoryOp.hvm_availability(),
            HvmAvailability::Filtered
        );
        assert_eq!(
            HypercallNr::HvmOp.hvm_availability(),
            HvmAvailability::Available
        );
        assert_eq!(
            HypercallNr::Domctl.hvm_availability(),
            HvmAvailability::Privileged
        );
    }

    #[test]
    fn test_virq_all_values_round_trip() {
        for &v in Virq::ALL {
            assert_eq!(Virq::try_from(v.raw()).unwrap(), v);
            assert!(v.raw() < NR_VIRQS);
        }
        assert!(Virq::try_from(5).is_err());
        assert!(Virq::try_from(14).is_err());
        assert!(Virq::try_from(NR_VIRQS).is_err());
    }

    #[test]
    fn test_virq_kind_classifies_per_table() {
        for v in [Virq::Timer, Virq::Debug, Virq::Xenoprof, Virq::Xenpmu] {
            assert_eq!(v.kind(), VirqKind::PerVcpu);
        }
        assert_eq!(Virq::Argo.kind(), VirqKind::PerDomain);
        for v in [
            Virq::Console,
            Virq::DomExc,
            Virq::Mca,
            Virq::Enomem,
            Virq::Arch7,
        ] {
            assert_eq!(v.kind(), VirqKind::Global);
        }
    }

    #[test]
    fn test_console_and_vm_assist_enums_round_trip() {
        for &c in ConsoleIoCmd::ALL {
            assert_eq!(ConsoleIoCmd::try_from(c.raw()).unwrap(), c);
        }
        for &c in VmAssistCmd::ALL {
            assert_eq!(VmAssistCmd::try_from(c.raw()).unwrap(), c);
        }
        for &t in VmAssistType::ALL {
            assert_eq!(VmAssistType::try_from(t.raw()).unwrap(), t);
        }
        assert!(ConsoleIoCmd::try_from(2).is_err());
        assert!(VmAssistCmd::try_from(2).is_err());
        assert!(VmAssistType::try_from(6).is_err());
        assert_eq!(VmAssistType::M2pStrict.raw(), 32);
        assert!(VmAssistType::RunstateUpdateFlag.allowed_for_hvm());
        assert!(!VmAssistType::WritablePagetables.allowed_for_hvm());
    }

    #[test]
    fn test_domid_constants_match_reference() {
        assert_eq!(DOMID_SELF, 0x7FF0);
        assert!(domid_is_regular(0));
        assert!(!domid_is_regular(DOMID_SELF));
        assert!(!domid_is_regular(DOMID_INVALID));
    }

    #[test]
    fn test_vcpu_time_info_layout_matches_reference() {
        assert_eq!(size_of::<VcpuTimeInfo>(), 32);
        assert_eq!(offset_of!(VcpuTimeInfo, tsc_shift), 28);
        assert_eq!(offset_of!(VcpuTimeInfo, flags), 29);
    }

    #[test]
    fn test_vcpu_time_info_system_time_at_applies_formula() {
        let t = VcpuTimeInfo {
            tsc_timestamp: 1000,
            system_time: 5_000,
            // 0.5 ns per (shifted) tick.
            tsc_to_system_mul: 0x8000_0000,
            tsc_shift: 1,
            ..Default::default()
        };
        // (2000 - 1000) << 1 = 2000 ticks * 0.5 = 1000 ns.
        assert_eq!(t.system_time_at(2000), 6_000);
        let t = VcpuTimeInfo { tsc_shift: -1, ..t };
        // (1000 >> 1) * 0.5 = 250 ns.
        assert_eq!(t.system_time_at(2000), 5_250);
    }

    #[test]
    fn test_pvclock_flags_accessors_round_trip() {
        let mut t = VcpuTimeInfo::default();
        t.set_pvclock_flags(PvclockFlags::TSC_STABLE | PvclockFlags::GUEST_STOPPED);
        assert_eq!(t.flags, 3);
        t.flags = 0x81;
        assert_eq!(t.pvclock_flags(), PvclockFlags::TSC_STABLE);
    }

    #[test]
    fn test_vcpu_info_write_bytes_land_at_offsets() {
        let mem = guest_mem();
        let base = 0x2000;
        let vi = VcpuInfo {
            evtchn_upcall_pending: 1,
            evtchn_upcall_mask: 2,
            evtchn_pending_sel: 0x1122_3344_5566_7788,
            arch: ArchVcpuInfo {
                cr2: 0xdead_beef,
                pad: 0,
            },
            time: VcpuTimeInfo {
                version: 7,
                tsc_timestamp: 0xaaaa,
                system_time: 0xbbbb,
                tsc_to_system_mul: 0xcccc,
                tsc_shift: -2,
                flags: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        mem.write_obj(vi, GuestAddress(base)).unwrap();
        assert_eq!(read_u8(&mem, base), 1);
        assert_eq!(read_u8(&mem, base + 1), 2);
        assert_eq!(read_u64(&mem, base + 8), 0x1122_3344_5566_7788);
        assert_eq!(read_u64(&mem, base + 16), 0xdead_beef);
        assert_eq!(read_u32(&mem, base + 32), 7);
        assert_eq!(read_u64(&mem, base + 40), 0xaaaa);
        assert_eq!(read_u64(&mem, base + 48), 0xbbbb);
        assert_eq!(read_u32(&mem, base + 56), 0xcccc);
        assert_eq!(read_u8(&mem, base + 60), 0xfe);
        assert_eq!(read_u8(&mem, base + 61), 1);
        let back: VcpuInfo = mem.read_obj(GuestAddress(base)).unwrap();
        assert_eq!(back, vi);
    }

    #[test]
    fn test_vcpu_info_compat_write_bytes_land_at_offsets() {
        let mem = guest_mem();
        let base = 0x2000;
        let vi = VcpuInfoCompat {
            evtchn_upcall_pending: 1,
            evtchn_pending_sel: 0x8000_0001,
            arch: ArchVcpuInfoCompat {
                cr2: 0x1234,
                pad: [0; 5],
            },
            time: VcpuTimeInfo {
                version: 9,
                ..Default::default()
            },
            ..Default::default()
        };
        mem.write_obj(vi, GuestAddress(base)).unwrap();
        assert_eq!(read_u32(&mem, base + 4), 0x8000_0001);
        assert_eq!(read_u32(&mem, base + 8), 0x1234);
        assert_eq!(read_u32(&mem, base + 32), 9);
    }

    #[test]
    fn test_shared_info_write_bytes_land_at_offsets() {
        let mem = guest_mem();
        let base = 0x3000;
        let mut si = SharedInfo::default();
        si.vcpu_info[1].evtchn_upcall_pending = 1;
        si.vcpu_info[31].time.version = 0x55;
        si.evtchn_pending[0] = 0x2;
        si.evtchn_pending[63] = 0x8000_0000_0000_0000;
        si.evtchn_mask[0] = 0xffff;
        si.wc_version = 4;
        si.set_wallclock_sec(0x0000_0001_2345_6789);
        si.wc_nsec = 999;
        si.arch.max_pfn = 0x77;
        si.arch.p2m_generation = 0x99;
        mem.write_obj(si, GuestAddress(base)).unwrap();

        assert_eq!(read_u8(&mem, base + 64), 1);
        assert_eq!(read_u32(&mem, base + 31 * 64 + 32), 0x55);
        assert_eq!(read_u64(&mem, base + 2048), 0x2);
        assert_eq!(read_u64(&mem, base + 2048 + 63 * 8), 1 << 63);
        assert_eq!(read_u64(&mem, base + 2560), 0xffff);
        assert_eq!(read_u32(&mem, base + 3072), 4);
        assert_eq!(read_u32(&mem, base + 3076), 0x2345_6789);
        assert_eq!(read_u32(&mem, base + 3080), 999);
        assert_eq!(read_u32(&mem, base + 3084), 1);
        assert_eq!(read_u64(&mem, base + 3088), 0x77);
        assert_eq!(read_u64(&mem, base + 3088 + 40), 0x99);

        let back: SharedInfo = mem.read_obj(GuestAddress(base)).unwrap();
        assert_eq!(back, si);
        assert_eq!(back.wallclock_sec(), 0x0000_0001_2345_6789);
    }

    #[test]
    fn test_shared_info_compat_write_bytes_land_at_offsets() {
        let mem = guest_mem();
        let base = 0x5000;
        let mut si = SharedInfoCompat::default();
        si.vcpu_info[2].evtchn_pending_sel = 0xf0f0;
        si.evtchn_pending[0] = 0x4;
        si.evtchn_pending[31] = 0x8000_0000;
        si.evtchn_mask[0] = 0xff;
        si.wc_version = 6;
        si.set_wallclock_sec(0x0000_0002_0000_0010);
        si.wc_nsec = 5;
        si.arch.max_pfn = 0x33;
        mem.write_obj(si, GuestAddress(base)).unwrap();

        assert_eq!(read_u32(&mem, base + 2 * 64 + 4), 0xf0f0);
        assert_eq!(read_u32(&mem, base + 2048), 0x4);
        assert_eq!(read_u32(&mem, base + 2048 + 31 * 4), 0x8000_0000);
        assert_eq!(read_u32(&mem, base + 2176), 0xff);
        assert_eq!(read_u32(&mem, base + 2304), 6);
        assert_eq!(read_u32(&mem, base + 2308), 0x10);
        assert_eq!(read_u32(&mem, base + 2312), 5);
        assert_eq!(read_u32(&mem, base + 2316), 0x33);
        assert_eq!(read_u32(&mem, base + 2340), 2);

        let back: SharedInfoCompat = mem.read_obj(GuestAddress(base)).unwrap();
        assert_eq!(back, si);
        assert_eq!(back.wallclock_sec(), 0x0000_0002_0000_0010);
    }

    #[test]
    fn test_multicall_entry_write_bytes_land_at_offsets() {
        let mem = guest_mem();
        let base = 0x1000;
        let e = MulticallEntry {
            op: u64::from(HYPERVISOR_EVENT_CHANNEL_OP),
            result: (-38i64) as u64,
            args: [1, 2, 3, 4, 5, 6],
        };
        mem.write_obj(e, GuestAddress(base)).unwrap();
        assert_eq!(read_u64(&mem, base), 32);
        assert_eq!(read_u64(&mem, base + 8), (-38i64) as u64);
        for i in 0..6u64 {
            assert_eq!(read_u64(&mem, base + 16 + 8 * i), i + 1);
        }
    }

    #[test]
    fn test_multicall_entry_compat_write_bytes_land_at_offsets() {
        let mem = guest_mem();
        let base = 0x1000;
        let e = MulticallEntryCompat {
            op: HYPERVISOR_SCHED_OP,
            result: 0,
            args: [10, 20, 30, 40, 50, 60],
        };
        mem.write_obj(e, GuestAddress(base)).unwrap();
        assert_eq!(read_u32(&mem, base), 29);
        for i in 0..6u64 {
            assert_eq!(read_u32(&mem, base + 8 + 4 * i), (i as u32 + 1) * 10);
        }
        assert_eq!(size_of::<MulticallEntryCompat>(), 32);
    }
}
