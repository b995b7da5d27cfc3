// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Target `abi_decode`: raw guest values and bytes through every ABI
//! conversion and structure of xen-abi.

use arbitrary::{Arbitrary, Unstructured};
use vm_memory::ByteValued;
use xen_abi::errno::XenErrno;
use xen_abi::hvm::CallbackVia;
use xen_abi::memory::{XenMemOp, memory_op_cmd, split_memory_op_cmd};

/// Target `abi_decode`: feeds raw guest values to every fallible ABI
/// conversion and raw guest bytes to every ABI structure.
///
/// Invariants: a value an enum accepts converts back to the same raw value
/// and is listed in its `ALL`; every structure read from bytes writes back
/// the same bytes; a callback route decoded from any parameter re-encodes
/// to a parameter that decodes to the same route; splitting a memory_op
/// command and joining it again gives the command back; an errno survives
/// the trip through a hypercall return value.
pub fn abi_decode(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(which) = u8::arbitrary(&mut u) else {
        return;
    };
    let rest = u.take_rest();
    let kind = usize::from(which) % (ABI_KINDS + 1);
    let mut i = 0usize;
    macro_rules! enums {
        ($($m:path: $raw:ty,)*) => {$(
            if kind == i {
                let mut r = Unstructured::new(rest);
                while !r.is_empty() {
                    let Ok(raw) = <$raw>::arbitrary(&mut r) else { break };
                    if let Ok(v) = <$m>::try_from(raw) {
                        assert_eq!(<$raw>::from(v), raw);
                        assert!(<$m>::ALL.contains(&v));
                        assert!(!v.name().is_empty());
                    }
                }
                return;
            }
            i += 1;
        )*};
    }
    macro_rules! structs {
        ($($t:path,)*) => {$(
            if kind == i {
                for chunk in rest.chunks_exact(std::mem::size_of::<$t>()) {
                    // As vm-memory's read_obj does: copy into an aligned value.
                    let mut v = <$t>::default();
                    v.as_mut_slice().copy_from_slice(chunk);
                    let copy: $t = v;
                    assert_eq!(copy.as_slice(), chunk);
                }
                return;
            }
            i += 1;
        )*};
    }
    enums! {
        xen_abi::xen::ConsoleIoCmd: u32,
        xen_abi::memory::E820Type: u32,
        xen_abi::event_channel::EvtchnOp: u32,
        xen_abi::event_channel::EvtchnStat: u32,
        xen_abi::grant_table::GnttabOp: u32,
        xen_abi::grant_table::GrantType: u16,
        xen_abi::hvm::HvmMemType: u16,
        xen_abi::hvm::HvmOp: u32,
        xen_abi::hvm::HvmParam: u32,
        xen_abi::hvm::HvmTimerMode: u32,
        xen_abi::xen::HypercallNr: u32,
        xen_abi::hvm::IntxPin: u8,
        xen_abi::physdev::MapPirqType: i32,
        xen_abi::physdev::PhysdevOp: u32,
        xen_abi::vcpu::RunstateState: i32,
        xen_abi::sched::SchedOp: u32,
        xen_abi::sched::ShutdownReason: u32,
        xen_abi::vcpu::VcpuOp: u32,
        xen_abi::xen::Virq: u32,
        xen_abi::xen::VmAssistCmd: u32,
        xen_abi::xen::VmAssistType: u32,
        xen_abi::memory::XenMapSpace: u32,
        xen_abi::memory::XenMemOp: u32,
        xen_abi::version::XenVerCmd: u32,
        xen_abi::io::console::XenconsConnection: u8,
        xen_abi::io::xs_wire::XenstoreConnection: u32,
        xen_abi::io::xs_wire::XenstoreRingError: u32,
        xen_abi::io::xs_wire::XsdSockmsgType: u32,
        xen_abi::cpuid::TscMode: u32,
        xen_abi::errno::XenErrno: i32,
    }
    structs! {
        xen_abi::event_channel::EvtchnBindInterdomain,
        xen_abi::event_channel::EvtchnBindVirq,
        xen_abi::event_channel::EvtchnBindPirq,
        xen_abi::event_channel::EvtchnClose,
        xen_abi::event_channel::EvtchnSend,
        xen_abi::event_channel::EvtchnStatus,
        xen_abi::event_channel::EvtchnAllocUnbound,
        xen_abi::event_channel::EvtchnBindIpi,
        xen_abi::event_channel::EvtchnBindVcpu,
        xen_abi::event_channel::EvtchnUnmask,
        xen_abi::event_channel::EvtchnReset,
        xen_abi::event_channel::EvtchnInitControl,
        xen_abi::event_channel::EvtchnExpandArray,
        xen_abi::event_channel::EvtchnSetPriority,
        xen_abi::event_channel::EvtchnFifoControlBlock,
        xen_abi::grant_table::GrantEntryV1,
        xen_abi::grant_table::GrantEntryHeader,
        xen_abi::grant_table::GrantEntryV2,
        xen_abi::grant_table::GnttabMapGrantRef,
        xen_abi::grant_table::GnttabUnmapGrantRef,
        xen_abi::grant_table::GnttabSetupTable,
        xen_abi::grant_table::GnttabSetupTableCompat,
        xen_abi::grant_table::GnttabQuerySize,
        xen_abi::grant_table::GnttabSetVersion,
        xen_abi::grant_table::GnttabGetVersion,
        xen_abi::grant_table::GnttabCopyPtr,
        xen_abi::grant_table::GnttabCopyPtrCompat,
        xen_abi::grant_table::GnttabCopy,
        xen_abi::grant_table::GnttabCopyCompat,
        xen_abi::grant_table::GnttabSwapGrantRef,
        xen_abi::grant_table::GnttabGetStatusFrames,
        xen_abi::grant_table::GnttabGetStatusFramesCompat,
        xen_abi::hvm::XenHvmParam,
        xen_abi::hvm::XenHvmEvtchnUpcallVector,
        xen_abi::hvm::XenHvmPagetableDying,
        xen_abi::hvm::XenHvmGetTime,
        xen_abi::hvm::XenHvmGetMemType,
        xen_abi::io::console::XenconsInterface,
        xen_abi::io::ring::SringHeader,
        xen_abi::io::xs_wire::XenstoreDomainInterface,
        xen_abi::io::xs_wire::XsdSockmsg,
        xen_abi::memory::XenAddToPhysmap,
        xen_abi::memory::XenAddToPhysmapCompat,
        xen_abi::memory::XenAddToPhysmapBatch,
        xen_abi::memory::XenAddToPhysmapBatchCompat,
        xen_abi::memory::XenMemoryReservation,
        xen_abi::memory::XenMemoryReservationCompat,
        xen_abi::memory::XenMemoryMap,
        xen_abi::memory::XenMemoryMapCompat,
        xen_abi::memory::E820Entry,
        xen_abi::memory::XenRemoveFromPhysmap,
        xen_abi::memory::XenRemoveFromPhysmapCompat,
        xen_abi::memory::XenMemoryDomain,
        xen_abi::physdev::PhysdevMapPirq,
        xen_abi::physdev::PhysdevMapPirqCompat,
        xen_abi::physdev::PhysdevUnmapPirq,
        xen_abi::physdev::PhysdevEoi,
        xen_abi::physdev::PhysdevIrqStatusQuery,
        xen_abi::physdev::PhysdevGetFreePirq,
        xen_abi::physdev::PhysdevPirqEoiGmfn,
        xen_abi::physdev::PhysdevPirqEoiGmfnCompat,
        xen_abi::sched::SchedShutdown,
        xen_abi::sched::SchedPoll,
        xen_abi::sched::SchedPollCompat,
        xen_abi::sched::SchedRemoteShutdown,
        xen_abi::sched::SchedWatchdog,
        xen_abi::sched::SchedPinOverride,
        xen_abi::vcpu::VcpuRunstateInfo,
        xen_abi::vcpu::VcpuRunstateInfoCompat,
        xen_abi::vcpu::VcpuRegisterRunstateMemoryArea,
        xen_abi::vcpu::VcpuRegisterRunstateMemoryAreaCompat,
        xen_abi::vcpu::VcpuRegisterTimeMemoryArea,
        xen_abi::vcpu::VcpuRegisterTimeMemoryAreaCompat,
        xen_abi::vcpu::VcpuRegisterPhysArea,
        xen_abi::vcpu::VcpuSetPeriodicTimer,
        xen_abi::vcpu::VcpuSetSingleshotTimer,
        xen_abi::vcpu::VcpuSetSingleshotTimerCompat,
        xen_abi::vcpu::VcpuRegisterVcpuInfo,
        xen_abi::vcpu::VcpuGetPhysid,
        xen_abi::version::CompileInfo,
        xen_abi::version::FeatureInfo,
        xen_abi::version::PlatformParameters,
        xen_abi::version::PlatformParametersCompat,
        xen_abi::version::XenVarbuf,
        xen_abi::xen::VcpuTimeInfo,
        xen_abi::xen::ArchVcpuInfo,
        xen_abi::xen::ArchVcpuInfoCompat,
        xen_abi::xen::VcpuInfo,
        xen_abi::xen::VcpuInfoCompat,
        xen_abi::xen::ArchSharedInfo,
        xen_abi::xen::ArchSharedInfoCompat,
        xen_abi::xen::SharedInfo,
        xen_abi::xen::SharedInfoCompat,
        xen_abi::xen::MulticallEntry,
        xen_abi::xen::MulticallEntryCompat,
    }
    assert_eq!(i, ABI_KINDS);
    let mut r = Unstructured::new(rest);
    while !r.is_empty() {
        let Ok(param) = u64::arbitrary(&mut r) else {
            break;
        };
        let via = CallbackVia::from_param(param);
        assert_eq!(CallbackVia::from_param(via.to_param()), via);
        let (op, start) = split_memory_op_cmd(param);
        if let Ok(op) = XenMemOp::try_from(op) {
            assert_eq!(memory_op_cmd(op, start), param);
        }
        if let Ok(e) = XenErrno::try_from(param as i32) {
            assert_eq!(XenErrno::from_ret(e.neg()), Some(e));
        }
    }
}

/// Number of enum and structure kinds `abi_decode` chooses between; one
/// more selector value tests the value codecs.
pub(super) const ABI_KINDS: usize = 125;
