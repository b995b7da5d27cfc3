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

/// Guest RAM of the `evtchn_ops` target.
const EVTCHN_RAM: u64 = 4 << 20;

/// The guest layout of `evtchn_ops`, changed by the input mid-sequence.
struct FuzzLayout {
    shinfo: std::sync::Mutex<Option<u64>>,
    long: std::sync::atomic::AtomicBool,
    vcpu_info: std::sync::Mutex<Vec<Option<u64>>>,
    vcpus: u32,
}

impl xen_evtchn::GuestLayout for FuzzLayout {
    fn shared_info_gpa(&self) -> Option<u64> {
        *self.shinfo.lock().unwrap()
    }
    fn long_mode(&self) -> bool {
        self.long.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn vcpu_info_gpa(&self, vcpu: u32) -> Option<u64> {
        if let Some(&Some(gpa)) = self.vcpu_info.lock().unwrap().get(vcpu as usize) {
            return Some(gpa);
        }
        let sh = self.shared_info_gpa()?;
        (vcpu < 32).then(|| sh + 64 * u64::from(vcpu))
    }
    fn vcpus(&self) -> u32 {
        self.vcpus
    }
}

/// Counts upcalls and raised ports.
#[derive(Default)]
struct FuzzUpcall(std::sync::atomic::AtomicU64);

impl xen_evtchn::Upcall for FuzzUpcall {
    fn raise(&self, _vcpu: u32) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn port_raised(&self, _port: u32) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A port argument: mostly one a bind returned.
#[derive(Arbitrary, Debug)]
enum PortArg {
    Known(u8),
    Small(u16),
    Any(u32),
}

/// A frame argument: mostly the first pages of RAM, so pages overlap.
#[derive(Arbitrary, Debug)]
enum GfnArg {
    Low(u8),
    Ram(u16),
    Any(u64),
}

impl GfnArg {
    fn value(&self) -> u64 {
        match *self {
            GfnArg::Low(g) => u64::from(g % 32),
            GfnArg::Ram(g) => u64::from(g) % (EVTCHN_RAM / 4096),
            GfnArg::Any(g) => g,
        }
    }
}

/// A guest-physical address: in the first pages (any alignment), anywhere
/// in RAM, or anywhere.
#[derive(Arbitrary, Debug)]
enum AddrArg {
    Low(u16),
    Ram(u32),
    Any(u64),
}

impl AddrArg {
    fn value(&self) -> u64 {
        match *self {
            AddrArg::Low(a) => u64::from(a) % (32 * 4096),
            AddrArg::Ram(a) => u64::from(a) % EVTCHN_RAM,
            AddrArg::Any(a) => a,
        }
    }
}

/// Where a guest write goes.
#[derive(Arbitrary, Debug)]
enum WriteAt {
    SharedInfo(u16),
    VcpuInfo(u8, u8),
    Addr(AddrArg),
}

/// A domain id argument.
#[derive(Arbitrary, Debug)]
enum DomArg {
    SelfId,
    Own,
    Backend,
    Any(u16),
}

impl DomArg {
    fn value(&self) -> u16 {
        match *self {
            DomArg::SelfId => xen_abi::xen::DOMID_SELF,
            DomArg::Own => EVTCHN_DOMID,
            DomArg::Backend => xen_evtchn::DOMID_BACKEND,
            DomArg::Any(d) => d,
        }
    }
}

/// The guest's domain id in `evtchn_ops`.
const EVTCHN_DOMID: u16 = 1;

/// One step of `evtchn_ops`.
#[derive(Arbitrary, Debug)]
enum EvtchnStep {
    AllocUnbound(DomArg, DomArg),
    BindInterdomain(DomArg, PortArg),
    BindVirq(u8, u8),
    BindIpi(u8),
    BindPirq(u16, bool),
    Close(PortArg),
    Send(PortArg),
    Status(PortArg),
    BindVcpu(PortArg, u8),
    Unmask(PortArg),
    Reset,
    InitControl(GfnArg, u16, u8),
    ExpandArray(GfnArg),
    SetPriority(PortArg, u8),
    RaiseVirq(u8, u8),
    RaisePirq(u16),
    Inject(PortArg),
    List,
    Pending(Vec<PortArg>),
    BackendAllocUnbound,
    BackendBindInterdomain(PortArg),
    BackendAttach(u16),
    BackendNotifyGuest(u8),
    BackendClose(u8),
    BackendDrop(u8),
    Write(WriteAt, Vec<u8>),
    SetSharedInfo(Option<GfnArg>),
    FlipLongMode,
    SetVcpuInfo(u8, Option<AddrArg>),
    Snapshot,
}

/// Target `evtchn_ops`: up to 64 arbitrary event-channel operations, VMM
/// calls and guest writes over 4 MiB of guest memory, with 1 to 4 vCPUs
/// and a layout (shared_info frame, 32/64-bit, vcpu_info addresses,
/// possibly misaligned or outside RAM) the input changes as it goes.
///
/// Invariants: nothing panics; every error is a Xen errno; a port a bind
/// returned is never reported closed until the guest closes it (or
/// resets); a snapshot taken at any point restores, and the restored
/// channels report the same state.
pub fn evtchn_ops(data: &[u8]) {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
    use xen_abi::event_channel::EvtchnStat;
    use xen_abi::xen::Virq;
    use xen_evtchn::{BackendPort, EventChannels, GuestLayout};

    let mut u = Unstructured::new(data);
    let Ok((vcpus, shinfo, long)) = <(u8, Option<GfnArg>, bool)>::arbitrary(&mut u) else {
        return;
    };
    // Steps until the input runs out (a length-prefixed Vec of random bytes
    // would average two steps).
    let mut steps = Vec::new();
    while steps.len() < 64 && !u.is_empty() {
        let Ok(step) = EvtchnStep::arbitrary(&mut u) else {
            break;
        };
        steps.push(step);
    }
    let vcpus = u32::from(vcpus % 4) + 1;
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), EVTCHN_RAM as usize)])
        .expect("guest memory");
    let layout = Arc::new(FuzzLayout {
        shinfo: std::sync::Mutex::new(shinfo.map(|g| g.value().wrapping_mul(4096))),
        long: std::sync::atomic::AtomicBool::new(long),
        vcpu_info: std::sync::Mutex::new(vec![None; vcpus as usize]),
        vcpus,
    });
    let upcall = Arc::new(FuzzUpcall::default());
    let config = xen_evtchn::Config::new(EVTCHN_DOMID);
    let mut ch = EventChannels::new(config, layout.clone(), upcall.clone()).expect("config");
    let notify: Arc<dyn xen_evtchn::BackendNotify> = Arc::new(|_port: u32| {});
    // Ports binds returned and not closed since.
    let mut live: BTreeSet<u32> = BTreeSet::new();
    // Every port a bind returned, for `PortArg::Known`.
    let mut known: Vec<u32> = Vec::new();
    let mut backends: Vec<BackendPort> = Vec::new();
    let err = |e: XenErrno| assert!(e.neg() < 0 && XenErrno::try_from(e.raw()).is_ok());
    let virq = |v: u8| Virq::ALL[usize::from(v) % Virq::ALL.len()];

    for step in &steps {
        let port = |p: &PortArg| match *p {
            PortArg::Known(i) if !known.is_empty() => known[usize::from(i) % known.len()],
            PortArg::Known(i) => u32::from(i),
            PortArg::Small(p) => u32::from(p) % 4200,
            PortArg::Any(p) => p,
        };
        let bound = match step {
            EvtchnStep::AllocUnbound(dom, remote) => match ch.check_dom(dom.value()) {
                Ok(()) => Some(ch.alloc_unbound(&mem, remote.value())),
                Err(e) => {
                    err(e);
                    None
                }
            },
            EvtchnStep::BindInterdomain(dom, p) => {
                Some(ch.bind_interdomain(&mem, dom.value(), port(p)))
            }
            EvtchnStep::BindVirq(v, vcpu) => {
                Some(ch.bind_virq(&mem, u32::from(*v % 32), u32::from(*vcpu % 6)))
            }
            EvtchnStep::BindIpi(vcpu) => Some(ch.bind_ipi(&mem, u32::from(*vcpu % 6))),
            EvtchnStep::BindPirq(pirq, share) => {
                Some(ch.bind_pirq(&mem, u32::from(*pirq % 300), *share))
            }
            EvtchnStep::Close(p) => {
                let p = port(p);
                match ch.close(&mem, p) {
                    Ok(()) => {
                        live.remove(&p);
                    }
                    Err(e) => err(e),
                }
                None
            }
            EvtchnStep::Send(p) => {
                ch.send(&mem, port(p)).err().map(err);
                None
            }
            EvtchnStep::Status(p) => {
                ch.status(port(p)).err().map(err);
                None
            }
            EvtchnStep::BindVcpu(p, vcpu) => {
                ch.bind_vcpu(&mem, port(p), u32::from(*vcpu % 6))
                    .err()
                    .map(err);
                None
            }
            EvtchnStep::Unmask(p) => {
                ch.unmask(&mem, port(p)).err().map(err);
                None
            }
            EvtchnStep::Reset => {
                ch.reset(&mem);
                live.clear();
                None
            }
            EvtchnStep::InitControl(gfn, offset, vcpu) => {
                let r =
                    ch.init_control(&mem, gfn.value(), u32::from(*offset), u32::from(*vcpu % 6));
                match r {
                    Ok(bits) => assert_eq!(bits, 17),
                    Err(e) => err(e),
                }
                None
            }
            EvtchnStep::ExpandArray(gfn) => {
                ch.expand_array(&mem, gfn.value()).err().map(err);
                None
            }
            EvtchnStep::SetPriority(p, prio) => {
                ch.set_priority(port(p), u32::from(*prio % 20))
                    .err()
                    .map(err);
                None
            }
            EvtchnStep::RaiseVirq(v, vcpu) => {
                let raised = ch.raise_virq(&mem, virq(*v), u32::from(*vcpu % 6));
                assert_eq!(
                    raised,
                    ch.virq_port(virq(*v), u32::from(*vcpu % 6)).is_some()
                );
                None
            }
            EvtchnStep::RaisePirq(pirq) => {
                ch.raise_pirq(&mem, u32::from(*pirq % 300));
                None
            }
            EvtchnStep::Inject(p) => {
                ch.inject(&mem, port(p)).err().map(err);
                None
            }
            EvtchnStep::List => {
                let list = ch.list(&mem);
                assert!(list.windows(2).all(|w| w[0].port < w[1].port));
                assert!(list.iter().all(|i| i.port != 0 && i.priority <= 15));
                None
            }
            EvtchnStep::Pending(ports) => {
                let ports: Vec<u32> = ports.iter().take(8).map(port).collect();
                let any = ch.is_pending_any(&mem, &ports);
                assert_eq!(any, ports.iter().any(|&p| ch.pending(&mem, p)));
                None
            }
            EvtchnStep::BackendAllocUnbound => {
                match ch.backend_alloc_unbound(notify.clone()) {
                    Ok(b) => backends.push(b),
                    Err(e) => err(e),
                }
                None
            }
            EvtchnStep::BackendBindInterdomain(p) => {
                match ch.backend_bind_interdomain(port(p), notify.clone()) {
                    Ok(b) => backends.push(b),
                    Err(e) => err(e),
                }
                None
            }
            EvtchnStep::BackendAttach(p) => {
                match ch.backend_attach(u32::from(*p % 4200), notify.clone()) {
                    Ok(b) => backends.push(b),
                    Err(e) => err(e),
                }
                None
            }
            EvtchnStep::BackendNotifyGuest(i) => {
                if !backends.is_empty() {
                    let b = &backends[usize::from(*i) % backends.len()];
                    let _ = b.port();
                    let _ = b.guest_port();
                    b.notify_guest(&mem).err().map(err);
                }
                None
            }
            EvtchnStep::BackendClose(i) => {
                if !backends.is_empty() {
                    let b = backends.swap_remove(usize::from(*i) % backends.len());
                    b.close().err().map(err);
                }
                None
            }
            EvtchnStep::BackendDrop(i) => {
                if !backends.is_empty() {
                    drop(backends.swap_remove(usize::from(*i) % backends.len()));
                }
                None
            }
            EvtchnStep::Write(at, bytes) => {
                let sh = layout.shared_info_gpa();
                let gpa = match at {
                    WriteAt::SharedInfo(off) => sh.map(|s| s.wrapping_add(u64::from(off % 4096))),
                    WriteAt::VcpuInfo(v, off) => layout
                        .vcpu_info_gpa(u32::from(*v % 4))
                        .map(|g| g.wrapping_add(u64::from(off % 64))),
                    WriteAt::Addr(a) => Some(a.value()),
                };
                if let Some(gpa) = gpa {
                    let len = bytes.len().min(4096);
                    // Writes beyond RAM fail, as the guest's would fault.
                    let _ = mem.write_slice(&bytes[..len], GuestAddress(gpa));
                }
                None
            }
            EvtchnStep::SetSharedInfo(gfn) => {
                *layout.shinfo.lock().unwrap() = gfn.as_ref().map(|g| g.value().wrapping_mul(4096));
                None
            }
            EvtchnStep::FlipLongMode => {
                layout
                    .long
                    .fetch_xor(true, std::sync::atomic::Ordering::SeqCst);
                None
            }
            EvtchnStep::SetVcpuInfo(v, addr) => {
                let v = usize::from(*v) % vcpus as usize;
                layout.vcpu_info.lock().unwrap()[v] = addr.as_ref().map(AddrArg::value);
                None
            }
            EvtchnStep::Snapshot => {
                let state = ch.state();
                let restored = EventChannels::from_state(&state, layout.clone(), upcall.clone())
                    .unwrap_or_else(|e| panic!("snapshot does not restore: {e}: {state:?}"));
                assert_eq!(restored.state(), state);
                // The devices re-attach to the restored channels.
                backends.clear();
                ch = restored;
                None
            }
        };
        match bound {
            Some(Ok(p)) => {
                assert_ne!(p, 0, "port 0 handed out");
                assert!(live.insert(p), "port {p} handed out twice");
                known.push(p);
            }
            Some(Err(e)) => err(e),
            None => {}
        }
        for &p in &live {
            if let Ok(s) = ch.status(p) {
                assert_ne!(s.state, EvtchnStat::Closed, "live port {p} reported closed");
            }
        }
    }
    let state = ch.state();
    let restored = EventChannels::from_state(&state, layout, upcall)
        .unwrap_or_else(|e| panic!("final snapshot does not restore: {e}: {state:?}"));
    assert_eq!(restored.state(), state);
}

/// Where a port access goes.
#[derive(Arbitrary, Debug)]
enum PortChoice {
    Legacy(u8),
    Bar0(u8),
    Any(u16),
}

impl PortChoice {
    fn port(&self) -> u16 {
        match *self {
            PortChoice::Legacy(o) => 0x10 + u16::from(o % 16),
            PortChoice::Bar0(o) => PLATFORM_BAR0 + u16::from(o),
            PortChoice::Any(p) => p,
        }
    }
}

/// Where `platform_pio` programs BAR0 and BAR1 when it enables decoding.
const PLATFORM_BAR0: u16 = 0xc000;
const PLATFORM_BAR1: u32 = 0xf000_0000;

/// One access to the platform device as the fuzzer describes it.
#[derive(Arbitrary, Debug)]
enum PlatformAccess {
    /// A port read or write: the legacy ports, BAR0 (programmed at
    /// 0xc000 when the input enables decoding) or anywhere.
    Pio {
        write: bool,
        port: PortChoice,
        len: u8,
        value: u32,
    },
    /// An MMIO access around BAR1.
    Mmio {
        write: bool,
        addr: u64,
        len: u8,
        value: u32,
    },
    /// A configuration-space access.
    Config {
        write: bool,
        offset: u16,
        size: u8,
        value: u32,
    },
    /// The VMM registers one of its devices.
    Register { id: u8, kind: u8, primary: bool },
    /// Snapshot and restore into a fresh device.
    Snapshot,
}

/// Target `platform_pio`: arbitrary port, MMIO and configuration accesses
/// (any offset, any length) to the Xen platform device through its
/// vm-device impls, with device registrations and snapshots in between.
///
/// Invariants: nothing panics; reads fill every byte asked for; every
/// access either works or is counted as bad; a device is unplugged at most
/// once; a snapshot restores to an equal state.
pub fn platform_pio(data: &[u8]) {
    use std::sync::{Arc, Mutex};
    use vm_device::bus::{MmioAddress, PioAddress};
    use vm_device::{MutDeviceMmio, MutDevicePio};
    use xen_platform_pci::{
        Config, DeviceId, DeviceKind, PlatformDevice, PlatformEvents, UnplugRequest,
    };

    #[derive(Default)]
    struct Seen(Mutex<Vec<DeviceId>>);
    impl PlatformEvents for Seen {
        fn unplug(&self, request: &UnplugRequest) {
            let mut seen = self.0.lock().unwrap();
            assert!(
                !seen.contains(&request.device),
                "{request:?} unplugged twice"
            );
            seen.push(request.device);
        }
    }

    let mut u = Unstructured::new(data);
    let Ok(unplug_ahci) = bool::arbitrary(&mut u) else {
        return;
    };
    let config = Config {
        unplug_ahci,
        ..Config::default()
    };
    let events = Arc::new(Seen::default());
    let mut dev = PlatformDevice::new(config, events.clone());
    if bool::arbitrary(&mut u).unwrap_or(false) {
        // Program the BARs and enable decoding, as firmware would.
        dev.write_config(0x10, 4, u32::from(PLATFORM_BAR0));
        dev.write_config(0x14, 4, PLATFORM_BAR1);
        dev.write_config(0x04, 2, 0x3);
    }
    let mut steps = 0;
    while !u.is_empty() && steps < 256 {
        let Ok(access) = PlatformAccess::arbitrary(&mut u) else {
            break;
        };
        steps += 1;
        match access {
            PlatformAccess::Pio {
                write,
                port,
                len,
                value,
            } => {
                let len = usize::from(len % 9);
                let bytes = value.to_le_bytes();
                let mut buf = vec![0x5a; len];
                let port = port.port();
                let base = PioAddress(port & 0xff00);
                let offset = port & 0xff;
                if write {
                    buf.iter_mut()
                        .zip(bytes.iter().cycle())
                        .for_each(|(b, v)| *b = *v);
                    dev.pio_write(base, offset, &buf);
                } else {
                    dev.pio_read(base, offset, &mut buf);
                }
            }
            PlatformAccess::Mmio {
                write,
                addr,
                len,
                value,
            } => {
                let len = usize::from(len % 9);
                let mut buf = vec![0x5a; len];
                let base = MmioAddress(addr & !0xff_ffff);
                let offset = addr & 0xff_ffff;
                if write {
                    buf.iter_mut()
                        .zip(value.to_le_bytes().iter().cycle())
                        .for_each(|(b, v)| *b = *v);
                    dev.mmio_write(base, offset, &buf);
                } else {
                    dev.mmio_read(base, offset, &mut buf);
                }
            }
            PlatformAccess::Config {
                write,
                offset,
                size,
                value,
            } => {
                if write {
                    dev.write_config(offset, size, value);
                } else {
                    let _ = dev.read_config(offset, size);
                }
            }
            PlatformAccess::Register { id, kind, primary } => {
                let kind = match kind % 8 {
                    0 => DeviceKind::IdeDisk {
                        primary_master: primary,
                    },
                    1 => DeviceKind::AhciDisk,
                    2 => DeviceKind::ScsiDisk,
                    3 => DeviceKind::NvmeDisk,
                    4 => DeviceKind::Nic,
                    5 => DeviceKind::Cdrom,
                    6 => DeviceKind::Passthrough,
                    _ => DeviceKind::Other,
                };
                let _ = dev.register_device(DeviceId(u64::from(id)), kind);
            }
            PlatformAccess::Snapshot => {
                let state = dev.state();
                let restored = PlatformDevice::from_state(config, events.clone(), &state)
                    .expect("a device's own state restores");
                assert_eq!(restored.state(), state);
                dev = restored;
            }
        }
    }
    let unplugged = events.0.lock().unwrap();
    for id in unplugged.iter() {
        let kind = dev.device(*id).map(|d| d.kind);
        assert!(
            !matches!(
                kind,
                Some(DeviceKind::Passthrough | DeviceKind::Cdrom | DeviceKind::Other)
            ),
            "{kind:?} must never be unplugged"
        );
    }
}

#[cfg(test)]
mod tests;
