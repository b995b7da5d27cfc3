// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What the xen-on-kvm fuzz targets do with their input, kept in a normal
//! crate so that it is unit-tested, writes the seed corpora, and replays
//! crash reproducers on stable Rust.
//!
//! Each target function takes raw bytes, decodes them with `arbitrary`, runs
//! the code under test, and asserts the invariants that must hold for every
//! input (a failed assertion is a finding, like a panic inside the crate).

pub mod replay;

use arbitrary::{Arbitrary, Unstructured};
use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES, kvm_cpuid_entry2};
use vm_memory::ByteValued;
use xen_abi::cpuid::{KVM_CPUID_SIGNATURE, TscMode, XEN_CPUID_SIGNATURE};
use xen_abi::errno::XenErrno;
use xen_abi::hvm::CallbackVia;
use xen_abi::memory::{XenMemOp, memory_op_cmd, split_memory_op_cmd};
use xen_cpuid::{Error as CpuidError, TscConfig, XenCpuid, XenCpuidConfig, XenVersion};
use xen_hypercall::guest::PagingRegs;
use xen_hypercall::testing::TestVm;
use xen_hypercall::{Abi, Hypercall};

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
const ABI_KINDS: usize = 125;

/// A paging setup as the fuzzer describes it.
#[derive(Arbitrary, Debug)]
enum Paging {
    /// No paging, 64-bit: linear = physical.
    Identity64,
    /// No paging, 32-bit: addresses truncated to 32 bits.
    Identity32,
    /// Arbitrary paging registers over arbitrary memory (page tables made
    /// of whatever the input wrote).
    Raw {
        cr0: u64,
        cr3: u16,
        cr4: u64,
        efer: u64,
    },
}

/// A hypercall argument: mostly addresses of memory the input filled.
#[derive(Arbitrary, Debug)]
enum Arg {
    Small(u16),
    Page(u8, u16),
    High(u64),
}

impl Arg {
    fn value(&self) -> u64 {
        match *self {
            Arg::Small(v) => u64::from(v),
            Arg::Page(p, off) => u64::from(p) * 4096 + u64::from(off % 4096),
            Arg::High(v) => v,
        }
    }
}

/// One call as the fuzzer describes it.
#[derive(Arbitrary, Debug)]
struct Call {
    compat: bool,
    cpl: u8,
    vcpu: u8,
    nr: u8,
    args: [Arg; 6],
}

/// Target `hypercall_dispatch`: arbitrary guest memory contents (pages in
/// the first MiB), arbitrary paging registers and a sequence of arbitrary
/// hypercalls through the full default dispatcher.
///
/// Invariants: nothing panics; every result is a value or a Xen errno;
/// a call from CPL > 0 is -EPERM; a number nobody handles is -ENOSYS.
pub fn hypercall_dispatch(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(pages) = Vec::<(u8, Vec<u8>)>::arbitrary(&mut u) else {
        return;
    };
    let Ok(paging) = Paging::arbitrary(&mut u) else {
        return;
    };
    let Ok(calls) = Vec::<Call>::arbitrary(&mut u) else {
        return;
    };
    let mut vm = TestVm::new(3);
    vm.dispatcher = xen_hypercall::default_dispatcher(vm.domain.config());
    for (page, bytes) in pages.iter().take(64) {
        let len = bytes.len().min(4096);
        vm.write_bytes(u64::from(*page) * 4096, &bytes[..len]);
    }
    vm.paging = match paging {
        Paging::Identity64 => xen_hypercall::testing::IDENTITY_64,
        Paging::Identity32 => PagingRegs {
            efer: 0,
            ..xen_hypercall::testing::IDENTITY_64
        },
        Paging::Raw {
            cr0,
            cr3,
            cr4,
            efer,
        } => PagingRegs {
            cr0,
            cr3: u64::from(cr3) * 4096 % (1 << 20),
            cr4,
            efer,
        },
    };
    for c in calls.iter().take(16) {
        let abi = if c.compat { Abi::X86_32 } else { Abi::X86_64 };
        let call = Hypercall {
            abi,
            cpl: c.cpl % 4,
            nr: u64::from(c.nr % 64),
            args: std::array::from_fn(|i| abi.word(c.args[i].value())),
        };
        let r = vm.call_raw(u32::from(c.vcpu % 4), &call);
        if call.cpl != 0 {
            assert_eq!(r, Err(XenErrno::EPERM));
        }
        if let Err(e) = r {
            assert!(e.neg() < 0);
        }
    }
}

#[cfg(test)]
mod tests;
