// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `hvm_op` hypercall (34) definitions, mirroring
//! `xen/include/public/hvm/hvm_op.h` and `xen/include/public/hvm/params.h`.
//!
//! Follows interface version 0x00041300 (Xen 4.23-unstable), `xen-abi.md`
//! §3.7. Every structure here has the same layout in both guest modes (the
//! headers pad them explicitly), so there are no compat variants.
//!
//! [`HvmParam::guest_get`] and [`HvmParam::guest_set`] encode which parameters
//! a guest may access on itself, and [`CallbackVia`] decodes
//! `HVM_PARAM_CALLBACK_IRQ` exactly as Xen does on x86.

use crate::errno::XenErrno;
use crate::xen::DomId;

abi_enum! {
    /// `hvm_op` sub-operations (`HVMOP_*`).
    pub enum HvmOp: u32, "hvm_op command" {
        /// Set an HVM parameter ([`XenHvmParam`]).
        SetParam = 0 => "HVMOP_set_param",
        /// Get an HVM parameter ([`XenHvmParam`]).
        GetParam = 1 => "HVMOP_get_param",
        /// Legacy; moved to `dm_op`, current Xen returns `-ENOSYS`.
        SetPciIntxLevel = 2 => "HVMOP_set_pci_intx_level",
        /// Legacy; moved to `dm_op`, current Xen returns `-ENOSYS`.
        SetIsaIrqLevel = 3 => "HVMOP_set_isa_irq_level",
        /// Legacy; moved to `dm_op`, current Xen returns `-ENOSYS`.
        SetPciLinkRoute = 4 => "HVMOP_set_pci_link_route",
        /// Flush all TLBs; the argument must be NULL.
        FlushTlbs = 5 => "HVMOP_flush_tlbs",
        /// Announce a dying page table ([`XenHvmPagetableDying`]).
        PagetableDying = 9 => "HVMOP_pagetable_dying",
        /// Read Xen system time ([`XenHvmGetTime`]).
        GetTime = 10 => "HVMOP_get_time",
        /// Emit a trace record.
        Xentrace = 11 => "HVMOP_xentrace",
        /// Removed; current Xen returns `-ENOSYS`.
        SetMemAccess = 12 => "HVMOP_set_mem_access",
        /// Removed; current Xen returns `-ENOSYS`.
        GetMemAccess = 13 => "HVMOP_get_mem_access",
        /// Query a page's type ([`XenHvmGetMemType`]).
        GetMemType = 15 => "HVMOP_get_mem_type",
        /// Install a per-vCPU upcall vector ([`XenHvmEvtchnUpcallVector`]).
        SetEvtchnUpcallVector = 23 => "HVMOP_set_evtchn_upcall_vector",
        /// Send a request to a vm_event monitor.
        GuestRequestVmEvent = 24 => "HVMOP_guest_request_vm_event",
        /// Alternate p2m operations.
        Altp2m = 25 => "HVMOP_altp2m",
    }
}

// --- parameters ------------------------------------------------------------------

/// Number of HVM parameters (`HVM_NR_PARAMS`); larger indices get `-EINVAL`.
pub const HVM_NR_PARAMS: u32 = 39;

abi_enum! {
    /// HVM parameter indices (`HVM_PARAM_*`).
    pub enum HvmParam: u32, "HVM parameter" {
        /// Event-channel upcall route, see [`CallbackVia`].
        CallbackIrq = 0 => "HVM_PARAM_CALLBACK_IRQ",
        /// XenStore ring GFN.
        StorePfn = 1 => "HVM_PARAM_STORE_PFN",
        /// XenStore event channel (guest-side port).
        StoreEvtchn = 2 => "HVM_PARAM_STORE_EVTCHN",
        /// Deprecated.
        PaeEnabled = 4 => "HVM_PARAM_PAE_ENABLED",
        /// Device-model ioreq page.
        IoreqPfn = 5 => "HVM_PARAM_IOREQ_PFN",
        /// Device-model buffered ioreq page.
        BufioreqPfn = 6 => "HVM_PARAM_BUFIOREQ_PFN",
        /// Hyper-V enlightenment mask.
        Viridian = 9 => "HVM_PARAM_VIRIDIAN",
        /// Virtual timer mode, see [`HvmTimerMode`].
        TimerMode = 10 => "HVM_PARAM_TIMER_MODE",
        /// Virtual HPET enabled.
        HpetEnabled = 11 => "HVM_PARAM_HPET_ENABLED",
        /// Identity-map page table for EPT without unrestricted guest.
        IdentPt = 12 => "HVM_PARAM_IDENT_PT",
        /// Deprecated: device-model domain.
        DmDomain = 13 => "HVM_PARAM_DM_DOMAIN",
        /// ACPI sleep state.
        AcpiSState = 14 => "HVM_PARAM_ACPI_S_STATE",
        /// TSS used while CR0.PE=0 on Intel.
        Vm86Tss = 15 => "HVM_PARAM_VM86_TSS",
        /// Align periodic virtual timers.
        VptAlign = 16 => "HVM_PARAM_VPT_ALIGN",
        /// PV console ring GFN.
        ConsolePfn = 17 => "HVM_PARAM_CONSOLE_PFN",
        /// PV console event channel.
        ConsoleEvtchn = 18 => "HVM_PARAM_CONSOLE_EVTCHN",
        /// ACPI PM block location, see [`AcpiIoportsLocation`].
        AcpiIoportsLocation = 19 => "HVM_PARAM_ACPI_IOPORTS_LOCATION",
        /// Deprecated.
        MemoryEventCr0 = 20 => "HVM_PARAM_MEMORY_EVENT_CR0",
        /// Deprecated.
        MemoryEventCr3 = 21 => "HVM_PARAM_MEMORY_EVENT_CR3",
        /// Deprecated.
        MemoryEventCr4 = 22 => "HVM_PARAM_MEMORY_EVENT_CR4",
        /// Deprecated.
        MemoryEventInt3 = 23 => "HVM_PARAM_MEMORY_EVENT_INT3",
        /// Deprecated: nested HVM.
        Nestedhvm = 24 => "HVM_PARAM_NESTEDHVM",
        /// Deprecated.
        MemoryEventSingleStep = 25 => "HVM_PARAM_MEMORY_EVENT_SINGLE_STEP",
        /// Deprecated: buffered ioreq event channel.
        BufioreqEvtchn = 26 => "HVM_PARAM_BUFIOREQ_EVTCHN",
        /// Paging ring GFN.
        PagingRingPfn = 27 => "HVM_PARAM_PAGING_RING_PFN",
        /// Monitor ring GFN.
        MonitorRingPfn = 28 => "HVM_PARAM_MONITOR_RING_PFN",
        /// Sharing ring GFN.
        SharingRingPfn = 29 => "HVM_PARAM_SHARING_RING_PFN",
        /// Deprecated.
        MemoryEventMsr = 30 => "HVM_PARAM_MEMORY_EVENT_MSR",
        /// `SHUTDOWN_*` reason used on a triple fault.
        TripleFaultReason = 31 => "HVM_PARAM_TRIPLE_FAULT_REASON",
        /// First ioreq-server page GFN.
        IoreqServerPfn = 32 => "HVM_PARAM_IOREQ_SERVER_PFN",
        /// Number of ioreq-server pages.
        NrIoreqServerPages = 33 => "HVM_PARAM_NR_IOREQ_SERVER_PAGES",
        /// Guest-physical address of the VM generation id.
        VmGenerationIdAddr = 34 => "HVM_PARAM_VM_GENERATION_ID_ADDR",
        /// Alternate p2m mode.
        Altp2m = 35 => "HVM_PARAM_ALTP2M",
        /// x87 FIP width (0, 4 or 8).
        X87FipWidth = 36 => "HVM_PARAM_X87_FIP_WIDTH",
        /// VM86 TSS address and size.
        Vm86TssSized = 37 => "HVM_PARAM_VM86_TSS_SIZED",
        /// Machine-check capabilities (bit 0 LMCE).
        McaCap = 38 => "HVM_PARAM_MCA_CAP",
    }
}

/// What happens when a guest gets or sets one of its own HVM parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ParamAccess {
    /// The access is allowed.
    Allowed,
    /// The parameter is deprecated: `-EINVAL`.
    Deprecated,
    /// The parameter is for the toolstack or device model only: `-EPERM`.
    Forbidden,
    /// The parameter is read-only once set: `-EEXIST`.
    ReadOnly,
}

impl ParamAccess {
    /// Returns the error a denied access produces, or `None` if allowed.
    pub const fn errno(self) -> Option<XenErrno> {
        match self {
            ParamAccess::Allowed => None,
            ParamAccess::Deprecated => Some(XenErrno::EINVAL),
            ParamAccess::Forbidden => Some(XenErrno::EPERM),
            ParamAccess::ReadOnly => Some(XenErrno::EEXIST),
        }
    }
}

impl HvmParam {
    const fn is_deprecated(self) -> bool {
        use HvmParam::*;
        matches!(
            self,
            PaeEnabled
                | DmDomain
                | MemoryEventCr0
                | MemoryEventCr3
                | MemoryEventCr4
                | MemoryEventInt3
                | Nestedhvm
                | MemoryEventSingleStep
                | BufioreqEvtchn
                | MemoryEventMsr
        )
    }

    /// Access policy for `HVMOP_get_param` issued by the guest on itself.
    pub const fn guest_get(self) -> ParamAccess {
        use HvmParam::*;
        match self {
            CallbackIrq | StorePfn | StoreEvtchn | Vm86Tss | ConsolePfn | ConsoleEvtchn
            | AcpiIoportsLocation | VmGenerationIdAddr | Altp2m | X87FipWidth | Vm86TssSized => {
                ParamAccess::Allowed
            }
            p if p.is_deprecated() => ParamAccess::Deprecated,
            _ => ParamAccess::Forbidden,
        }
    }

    /// Access policy for `HVMOP_set_param` issued by the guest on itself.
    pub const fn guest_set(self) -> ParamAccess {
        use HvmParam::*;
        match self {
            CallbackIrq | StoreEvtchn | Vm86Tss | ConsoleEvtchn | AcpiIoportsLocation
            | VmGenerationIdAddr | X87FipWidth | Vm86TssSized => ParamAccess::Allowed,
            Altp2m => ParamAccess::ReadOnly,
            p if p.is_deprecated() => ParamAccess::Deprecated,
            _ => ParamAccess::Forbidden,
        }
    }
}

/// Checks a guest's get (`set == false`) or set (`set == true`) of its own
/// parameter `index`, returning the decoded parameter or the errno Xen
/// answers: `EINVAL` for `index ≥ HVM_NR_PARAMS`, `EPERM` for unnamed indices
/// below it, then the per-parameter policy.
pub fn check_guest_param_access(index: u32, set: bool) -> Result<HvmParam, XenErrno> {
    if index >= HVM_NR_PARAMS {
        return Err(XenErrno::EINVAL);
    }
    let param = HvmParam::try_from(index).map_err(|_| XenErrno::EPERM)?;
    let access = if set {
        param.guest_set()
    } else {
        param.guest_get()
    };
    match access.errno() {
        None => Ok(param),
        Some(e) => Err(e),
    }
}

/// `struct xen_hvm_param` (16 bytes, both modes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmParam {
    /// Target domain (`DOMID_SELF`).
    pub domid: DomId,
    /// Padding.
    pub pad: u16,
    /// Raw [`HvmParam`] index.
    pub index: u32,
    /// Value (IN for set, OUT for get).
    pub value: u64,
}
abi_layout!(XenHvmParam, 16, { domid => 0, pad => 2, index => 4, value => 8 });

impl XenHvmParam {
    /// Decodes `index`.
    pub fn param(&self) -> crate::Result<HvmParam> {
        HvmParam::try_from(self.index)
    }
}

// --- HVM_PARAM_CALLBACK_IRQ -----------------------------------------------------------

/// Callback type: GSI (`HVM_PARAM_CALLBACK_TYPE_GSI`).
pub const HVM_PARAM_CALLBACK_TYPE_GSI: u8 = 0;
/// Callback type: PCI INTx (`HVM_PARAM_CALLBACK_TYPE_PCI_INTX`).
pub const HVM_PARAM_CALLBACK_TYPE_PCI_INTX: u8 = 1;
/// Callback type: direct vector (`HVM_PARAM_CALLBACK_TYPE_VECTOR`).
pub const HVM_PARAM_CALLBACK_TYPE_VECTOR: u8 = 2;
/// Bit position of the callback type byte.
pub const HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT: u32 = 56;
/// Mask of the callback type byte.
pub const HVM_PARAM_CALLBACK_IRQ_TYPE_MASK: u64 = 0xff << HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT;

abi_enum! {
    /// PCI interrupt pin, stored as pin − 1 in bits 1:0 of a PCI INTx callback.
    pub enum IntxPin: u8, "PCI INTx pin" {
        /// INTA#.
        A = 0 => "INTA",
        /// INTB#.
        B = 1 => "INTB",
        /// INTC#.
        C = 2 => "INTC",
        /// INTD#.
        D = 3 => "INTD",
    }
}

/// A decoded `HVM_PARAM_CALLBACK_IRQ` value: how event-channel upcalls are
/// delivered (`xen-abi.md` §3.7 and §4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum CallbackVia {
    /// No callback: upcalls are not delivered.
    #[default]
    None,
    /// Level-triggered GSI, asserted while vCPU 0 has an upcall pending.
    Gsi(u8),
    /// Level-triggered PCI INTx of the given device, for vCPU 0 only.
    PciIntx {
        /// PCI segment (bits 47:32).
        domain: u16,
        /// PCI bus (bits 23:16 of the bus field 31:16).
        bus: u8,
        /// PCI device number (bits 15:11).
        device: u8,
        /// Interrupt pin (bits 1:0).
        pin: IntxPin,
    },
    /// Vector injected directly into every vCPU with an upcall pending; no EOI.
    Vector(u8),
}

impl CallbackVia {
    /// Decodes a parameter value the way Xen does on x86:
    ///
    /// * type (bits 63:56) 0: GSI in bits 7:0; GSI 0 (including the value 0)
    ///   disables the callback;
    /// * type 1: PCI INTx; Xen uses only the device (bits 15:11) and the pin
    ///   (bits 1:0), this also keeps the segment and bus fields;
    /// * type 2: vector in bits 7:0;
    /// * type ≥ 3: the callback is disabled.
    ///
    /// A GSI at or above the domain's GSI count also disables the callback;
    /// apply [`CallbackVia::limit_gsi`] for that check.
    pub const fn from_param(value: u64) -> Self {
        let kind = (value >> HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT) as u8;
        match kind {
            HVM_PARAM_CALLBACK_TYPE_GSI => match value as u8 {
                0 => CallbackVia::None,
                gsi => CallbackVia::Gsi(gsi),
            },
            HVM_PARAM_CALLBACK_TYPE_PCI_INTX => CallbackVia::PciIntx {
                domain: (value >> 32) as u16,
                bus: (value >> 16) as u8,
                device: ((value >> 11) & 0x1f) as u8,
                pin: match value & 3 {
                    0 => IntxPin::A,
                    1 => IntxPin::B,
                    2 => IntxPin::C,
                    _ => IntxPin::D,
                },
            },
            HVM_PARAM_CALLBACK_TYPE_VECTOR => CallbackVia::Vector(value as u8),
            _ => CallbackVia::None,
        }
    }

    /// Encodes the parameter value (function number 0 for PCI INTx).
    pub const fn to_param(self) -> u64 {
        const SHIFT: u32 = HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT;
        match self {
            CallbackVia::None => 0,
            CallbackVia::Gsi(gsi) => gsi as u64,
            CallbackVia::PciIntx {
                domain,
                bus,
                device,
                pin,
            } => {
                ((HVM_PARAM_CALLBACK_TYPE_PCI_INTX as u64) << SHIFT)
                    | ((domain as u64) << 32)
                    | ((bus as u64) << 16)
                    | (((device & 0x1f) as u64) << 11)
                    | pin as u64
            }
            CallbackVia::Vector(vector) => {
                ((HVM_PARAM_CALLBACK_TYPE_VECTOR as u64) << SHIFT) | vector as u64
            }
        }
    }

    /// Applies Xen's GSI range check: a GSI at or above `nr_gsis` disables
    /// the callback. Other kinds are returned unchanged.
    pub const fn limit_gsi(self, nr_gsis: u32) -> Self {
        match self {
            CallbackVia::Gsi(gsi) if gsi as u32 >= nr_gsis => CallbackVia::None,
            other => other,
        }
    }
}

// --- other hvm_op arguments -----------------------------------------------------------

/// Smallest vector `HVMOP_set_evtchn_upcall_vector` accepts.
pub const HVM_EVTCHN_UPCALL_VECTOR_MIN: u8 = 0x10;

/// `struct xen_hvm_evtchn_upcall_vector` (8 bytes, both modes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmEvtchnUpcallVector {
    /// Xen vCPU id.
    pub vcpu: u32,
    /// Vector to raise in that vCPU's local APIC.
    pub vector: u8,
    /// Padding.
    pub pad: [u8; 3],
}
abi_layout!(XenHvmEvtchnUpcallVector, 8, { vcpu => 0, vector => 4, pad => 5 });

/// `struct xen_hvm_pagetable_dying` (16 bytes, both modes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmPagetableDying {
    /// Target domain.
    pub domid: DomId,
    /// Padding.
    pub pad: [u16; 3],
    /// Guest physical address of the top-level page table.
    pub gpa: u64,
}
abi_layout!(XenHvmPagetableDying, 16, { domid => 0, pad => 2, gpa => 8 });

/// `struct xen_hvm_get_time` (8 bytes, both modes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmGetTime {
    /// OUT: Xen system time in ns.
    pub now: u64,
}
abi_layout!(XenHvmGetTime, 8, { now => 0 });

abi_enum! {
    /// HVM memory types (`HVMMEM_*`) reported by `HVMOP_get_mem_type`.
    pub enum HvmMemType: u16, "HVM memory type" {
        /// Normal read/write RAM.
        RamRw = 0 => "HVMMEM_ram_rw",
        /// Read-only RAM.
        RamRo = 1 => "HVMMEM_ram_ro",
        /// MMIO emulated by the device model.
        MmioDm = 2 => "HVMMEM_mmio_dm",
        /// Unused (formerly `mmio_write_dm`).
        Unused = 3 => "HVMMEM_unused",
        /// Handled by an ioreq server.
        IoreqServer = 4 => "HVMMEM_ioreq_server",
    }
}

/// `struct xen_hvm_get_mem_type` (16 bytes, both modes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmGetMemType {
    /// Target domain.
    pub domid: DomId,
    /// OUT: raw [`HvmMemType`].
    pub mem_type: u16,
    /// Padding.
    pub pad: u32,
    /// IN: the page frame to query.
    pub pfn: u64,
}
abi_layout!(XenHvmGetMemType, 16, { domid => 0, mem_type => 2, pad => 4, pfn => 8 });

impl XenHvmGetMemType {
    /// Decodes `mem_type`.
    pub fn memory_type(&self) -> crate::Result<HvmMemType> {
        HvmMemType::try_from(self.mem_type)
    }
}

// --- parameter value encodings ----------------------------------------------------------

abi_enum! {
    /// `HVM_PARAM_TIMER_MODE` values (`HVMPTM_*`).
    pub enum HvmTimerMode: u32, "HVM timer mode" {
        /// Deliver missed ticks, advancing guest time stepwise (default).
        DelayForMissedTicks = 0 => "HVMPTM_delay_for_missed_ticks",
        /// Deliver missed ticks; guest time tracks wallclock.
        NoDelayForMissedTicks = 1 => "HVMPTM_no_delay_for_missed_ticks",
        /// Hold no missed ticks pending.
        NoMissedTicksPending = 2 => "HVMPTM_no_missed_ticks_pending",
        /// Collapse missed ticks into one late tick.
        OneMissedTickPending = 3 => "HVMPTM_one_missed_tick_pending",
    }
}

impl HvmTimerMode {
    /// Decodes a 64-bit parameter value.
    pub fn from_param(value: u64) -> crate::Result<Self> {
        u32::try_from(value)
            .map_err(|_| crate::RawValue::unknown(value, "HVM timer mode"))
            .and_then(HvmTimerMode::try_from)
    }
}

abi_enum! {
    /// `HVM_PARAM_ACPI_IOPORTS_LOCATION` values: where the ACPI PM1a and PM
    /// timer blocks live.
    pub enum AcpiIoportsLocation: u32, "ACPI ioports location" {
        /// Old addresses: PM1a_EVT 0x1f40, PM1a_CNT 0x1f44, PM_TMR 0x1f48.
        Legacy = 0 => "ACPI_IOPORTS_LOCATION_LEGACY",
        /// QEMU addresses: PM1a_EVT 0xb000, PM1a_CNT 0xb004, PM_TMR 0xb008.
        Qemu = 1 => "ACPI_IOPORTS_LOCATION_QEMU",
    }
}

impl AcpiIoportsLocation {
    /// Decodes a 64-bit parameter value.
    pub fn from_param(value: u64) -> crate::Result<Self> {
        u32::try_from(value)
            .map_err(|_| crate::RawValue::unknown(value, "ACPI ioports location"))
            .and_then(AcpiIoportsLocation::try_from)
    }

    /// I/O port of the PM1a event block.
    pub const fn pm1a_evt(self) -> u16 {
        match self {
            AcpiIoportsLocation::Legacy => 0x1f40,
            AcpiIoportsLocation::Qemu => 0xb000,
        }
    }

    /// I/O port of the PM1a control block.
    pub const fn pm1a_cnt(self) -> u16 {
        self.pm1a_evt() + 4
    }

    /// I/O port of the PM timer.
    pub const fn pm_tmr(self) -> u16 {
        self.pm1a_evt() + 8
    }
}

/// `HVM_PARAM_MCA_CAP` bit 0: local machine-check exceptions (`HVMMCA_CAP_LMCE`).
pub const HVMMCA_CAP_LMCE: u64 = 1 << 0;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AbiError;
    use core::mem::size_of;

    #[test]
    fn test_hvm_op_all_values_round_trip() {
        for &op in HvmOp::ALL {
            assert_eq!(HvmOp::try_from(op.raw()).unwrap(), op);
        }
        assert!(HvmOp::try_from(6).is_err());
        assert!(HvmOp::try_from(26).is_err());
    }

    #[test]
    fn test_hvm_param_all_values_round_trip() {
        for &p in HvmParam::ALL {
            assert_eq!(HvmParam::try_from(p.raw()).unwrap(), p);
            assert!(p.raw() < HVM_NR_PARAMS);
        }
        assert_eq!(HvmParam::ALL.len(), 36);
        for hole in [3, 7, 8, HVM_NR_PARAMS] {
            assert_eq!(
                HvmParam::try_from(hole),
                Err(AbiError::UnknownValue {
                    what: "HVM parameter",
                    value: u64::from(hole)
                })
            );
        }
    }

    #[test]
    fn test_hvm_param_guest_get_policy_follows_table() {
        let readable = [
            HvmParam::CallbackIrq,
            HvmParam::StorePfn,
            HvmParam::StoreEvtchn,
            HvmParam::Vm86Tss,
            HvmParam::ConsolePfn,
            HvmParam::ConsoleEvtchn,
            HvmParam::AcpiIoportsLocation,
            HvmParam::VmGenerationIdAddr,
            HvmParam::Altp2m,
            HvmParam::X87FipWidth,
            HvmParam::Vm86TssSized,
        ];
        for &p in HvmParam::ALL {
            let expect = if readable.contains(&p) {
                ParamAccess::Allowed
            } else if p.is_deprecated() {
                ParamAccess::Deprecated
            } else {
                ParamAccess::Forbidden
            };
            assert_eq!(p.guest_get(), expect, "{p}");
        }
        assert_eq!(HvmParam::PaeEnabled.guest_get(), ParamAccess::Deprecated);
        assert_eq!(HvmParam::IoreqPfn.guest_get(), ParamAccess::Forbidden);
    }

    #[test]
    fn test_hvm_param_guest_set_policy_follows_table() {
        assert_eq!(HvmParam::CallbackIrq.guest_set(), ParamAccess::Allowed);
        assert_eq!(HvmParam::StoreEvtchn.guest_set(), ParamAccess::Allowed);
        assert_eq!(HvmParam::StorePfn.guest_set(), ParamAccess::Forbidden);
        assert_eq!(HvmParam::ConsolePfn.guest_set(), ParamAccess::Forbidden);
        assert_eq!(HvmParam::Altp2m.guest_set(), ParamAccess::ReadOnly);
        assert_eq!(
            HvmParam::BufioreqEvtchn.guest_set(),
            ParamAccess::Deprecated
        );
        assert_eq!(HvmParam::McaCap.guest_set(), ParamAccess::Forbidden);
        assert_eq!(ParamAccess::ReadOnly.errno(), Some(XenErrno::EEXIST));
    }

    #[test]
    fn test_check_guest_param_access_maps_errnos() {
        assert_eq!(check_guest_param_access(0, true), Ok(HvmParam::CallbackIrq));
        assert_eq!(check_guest_param_access(1, false), Ok(HvmParam::StorePfn));
        assert_eq!(check_guest_param_access(1, true), Err(XenErrno::EPERM));
        assert_eq!(check_guest_param_access(3, false), Err(XenErrno::EPERM));
        assert_eq!(check_guest_param_access(4, false), Err(XenErrno::EINVAL));
        assert_eq!(check_guest_param_access(39, false), Err(XenErrno::EINVAL));
        assert_eq!(check_guest_param_access(35, true), Err(XenErrno::EEXIST));
    }

    #[test]
    fn test_callback_via_zero_value_disabled() {
        assert_eq!(CallbackVia::from_param(0), CallbackVia::None);
        assert_eq!(CallbackVia::None.to_param(), 0);
    }

    #[test]
    fn test_callback_via_gsi_decoded_and_encoded() {
        assert_eq!(CallbackVia::from_param(1), CallbackVia::Gsi(1));
        assert_eq!(CallbackVia::from_param(28), CallbackVia::Gsi(28));
        assert_eq!(CallbackVia::Gsi(28).to_param(), 28);
        // Only bits 7:0 are used.
        assert_eq!(CallbackVia::from_param(0x1_0005), CallbackVia::Gsi(5));
    }

    #[test]
    fn test_callback_via_gsi_zero_in_low_byte_disabled() {
        assert_eq!(CallbackVia::from_param(0x100), CallbackVia::None);
    }

    #[test]
    fn test_callback_via_gsi_out_of_range_disabled_by_limit() {
        assert_eq!(CallbackVia::Gsi(48).limit_gsi(48), CallbackVia::None);
        assert_eq!(CallbackVia::Gsi(47).limit_gsi(48), CallbackVia::Gsi(47));
        assert_eq!(
            CallbackVia::Vector(0xf3).limit_gsi(0),
            CallbackVia::Vector(0xf3)
        );
    }

    #[test]
    fn test_callback_via_pci_intx_decoded_and_encoded() {
        // Linux: 1<<56 | domain<<32 | bus<<16 | devfn<<8 | (pin-1).
        let devfn: u64 = (3 << 3) | 2;
        let value = (1u64 << 56) | (1 << 32) | (0x05 << 16) | (devfn << 8) | 1;
        let via = CallbackVia::from_param(value);
        assert_eq!(
            via,
            CallbackVia::PciIntx {
                domain: 1,
                bus: 5,
                device: 3,
                pin: IntxPin::B
            }
        );
        // Function bits are not kept.
        assert_eq!(via.to_param(), value & !(0x7 << 8));
        assert_eq!(CallbackVia::from_param(via.to_param()), via);
    }

    #[test]
    fn test_callback_via_vector_decoded_and_encoded() {
        let value = (2u64 << 56) | 0xf3;
        assert_eq!(CallbackVia::from_param(value), CallbackVia::Vector(0xf3));
        assert_eq!(CallbackVia::Vector(0xf3).to_param(), value);
    }

    #[test]
    fn test_callback_via_type_3_or_more_disabled() {
        assert_eq!(
            CallbackVia::from_param((3u64 << 56) | 0xf3),
            CallbackVia::None
        );
        assert_eq!(
            CallbackVia::from_param(0xff00_0000_0000_0001),
            CallbackVia::None
        );
    }

    #[test]
    fn test_intx_pin_all_values_round_trip() {
        for &p in IntxPin::ALL {
            assert_eq!(IntxPin::try_from(p.raw()).unwrap(), p);
        }
        assert!(IntxPin::try_from(4).is_err());
    }

    #[test]
    fn test_hvm_mem_type_all_values_round_trip() {
        for &t in HvmMemType::ALL {
            assert_eq!(HvmMemType::try_from(t.raw()).unwrap(), t);
        }
        assert!(HvmMemType::try_from(5).is_err());
        let q = XenHvmGetMemType {
            mem_type: 2,
            ..Default::default()
        };
        assert_eq!(q.memory_type().unwrap(), HvmMemType::MmioDm);
    }

    #[test]
    fn test_timer_mode_all_values_round_trip() {
        for &m in HvmTimerMode::ALL {
            assert_eq!(HvmTimerMode::try_from(m.raw()).unwrap(), m);
            assert_eq!(HvmTimerMode::from_param(u64::from(m.raw())).unwrap(), m);
        }
        assert!(HvmTimerMode::from_param(4).is_err());
        assert!(HvmTimerMode::from_param(1 << 32).is_err());
    }

    #[test]
    fn test_acpi_ioports_location_ports_match_reference() {
        for &l in AcpiIoportsLocation::ALL {
            assert_eq!(AcpiIoportsLocation::try_from(l.raw()).unwrap(), l);
        }
        assert!(AcpiIoportsLocation::from_param(2).is_err());
        let legacy = AcpiIoportsLocation::from_param(0).unwrap();
        assert_eq!(
            (legacy.pm1a_evt(), legacy.pm1a_cnt(), legacy.pm_tmr()),
            (0x1f40, 0x1f44, 0x1f48)
        );
        let qemu = AcpiIoportsLocation::Qemu;
        assert_eq!(
            (qemu.pm1a_evt(), qemu.pm1a_cnt(), qemu.pm_tmr()),
            (0xb000, 0xb004, 0xb008)
        );
    }

    #[test]
    fn test_hvm_structs_sizes_match_reference() {
        assert_eq!(size_of::<XenHvmParam>(), 16);
        assert_eq!(size_of::<XenHvmEvtchnUpcallVector>(), 8);
        assert_eq!(size_of::<XenHvmPagetableDying>(), 16);
        assert_eq!(size_of::<XenHvmGetTime>(), 8);
        assert_eq!(size_of::<XenHvmGetMemType>(), 16);
        let p = XenHvmParam {
            index: 2,
            ..Default::default()
        };
        assert_eq!(p.param().unwrap(), HvmParam::StoreEvtchn);
    }
}
