// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What a guest does, as hypercalls with their arguments in guest memory,
//! for the domain's integration tests.

#![allow(dead_code, unreachable_pub)]

use vm_memory::ByteValued;
use xen_abi::event_channel::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindPirq, EvtchnBindVirq,
    EvtchnClose, EvtchnOp, EvtchnSend, EvtchnStatus, EvtchnUnmask,
};
use xen_abi::hvm::{HvmOp, HvmParam, XenHvmParam};
use xen_abi::memory::{
    XenAddToPhysmap, XenMapSpace, XenMemOp, XenMemoryDomain, XenMemoryReservation,
};
use xen_abi::physdev::{MapPirqType, PhysdevGetFreePirq, PhysdevMapPirq, PhysdevOp};
use xen_abi::sched::{SchedOp, SchedWatchdog};
use xen_abi::vcpu::{
    VcpuOp, VcpuRegisterRunstateMemoryArea, VcpuRegisterVcpuInfo, VcpuSetPeriodicTimer,
    VcpuSetSingleshotTimer,
};
use xen_abi::xen::{DOMID_SELF, HypercallNr, Virq};
use xen_domain::testing::TestDomain;
use xen_hypercall::{Abi, HcResult};

/// Where arguments go (1 MiB, in RAM).
pub const ARG: u64 = 0x10_0000;
/// A scratch page for lists (extent lists, ...).
pub const LIST: u64 = 0x10_1000;
/// Where shared_info is placed (a RAM page, which it replaces).
pub const SHINFO_GFN: u64 = 0x200;
/// vCPU 1's vcpu_info.
pub const VCPU_INFO: u64 = 0x20_1000;
/// vCPU 0's runstate area.
pub const RUNSTATE: u64 = 0x20_2000;

/// Writes `arg` at [`ARG`], makes the call from `vcpu`, reads it back.
pub fn with_arg<T: ByteValued>(
    d: &TestDomain,
    vcpu: u32,
    nr: HypercallNr,
    cmd: u32,
    arg: T,
) -> (HcResult, T) {
    d.write(ARG, arg);
    let r = d.call(vcpu, Abi::X86_64, nr, &[u64::from(cmd), ARG]);
    (r, d.read(ARG))
}

/// `event_channel_op(cmd, arg)`.
pub fn evtchn<T: ByteValued>(d: &TestDomain, vcpu: u32, cmd: EvtchnOp, arg: T) -> (HcResult, T) {
    with_arg(d, vcpu, HypercallNr::EventChannelOp, cmd.raw(), arg)
}

/// Binds an IPI port on `vcpu`.
pub fn bind_ipi(d: &TestDomain, vcpu: u32) -> Result<u32, i64> {
    let (r, a) = evtchn(d, vcpu, EvtchnOp::BindIpi, EvtchnBindIpi { vcpu, port: 0 });
    r.map(|_| a.port).map_err(|e| e.neg())
}

/// Binds `virq` on `vcpu`.
pub fn bind_virq(d: &TestDomain, virq: Virq, vcpu: u32) -> Result<u32, i64> {
    let a = EvtchnBindVirq {
        virq: virq.raw(),
        vcpu,
        port: 0,
    };
    let (r, a) = evtchn(d, 0, EvtchnOp::BindVirq, a);
    r.map(|_| a.port).map_err(|e| e.neg())
}

/// A loopback pair: an unbound port and the port bound to it.
pub fn loopback(d: &TestDomain) -> Result<(u32, u32), i64> {
    let a = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: DOMID_SELF,
        port: 0,
    };
    let (r, a) = evtchn(d, 0, EvtchnOp::AllocUnbound, a);
    r.map_err(|e| e.neg())?;
    let b = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: a.port,
        ..Default::default()
    };
    let (r, b) = evtchn(d, 0, EvtchnOp::BindInterdomain, b);
    r.map(|_| (a.port, b.local_port)).map_err(|e| e.neg())
}

/// `EVTCHNOP_send`.
pub fn send(d: &TestDomain, port: u32) -> HcResult {
    evtchn(d, 0, EvtchnOp::Send, EvtchnSend { port }).0
}

/// `EVTCHNOP_close`.
pub fn close(d: &TestDomain, port: u32) -> HcResult {
    evtchn(d, 0, EvtchnOp::Close, EvtchnClose { port }).0
}

/// `EVTCHNOP_unmask`.
pub fn unmask(d: &TestDomain, port: u32) -> HcResult {
    evtchn(d, 0, EvtchnOp::Unmask, EvtchnUnmask { port }).0
}

/// `EVTCHNOP_status`: (result, state, vCPU).
pub fn status(d: &TestDomain, port: u32) -> (HcResult, u32, u32) {
    let a = EvtchnStatus {
        dom: DOMID_SELF,
        port,
        ..Default::default()
    };
    let (r, a) = evtchn(d, 0, EvtchnOp::Status, a);
    (r, a.status, a.vcpu)
}

/// `XENMEM_add_to_physmap` of `space` frame `idx` at `gpfn`.
pub fn add_to_physmap(d: &TestDomain, space: XenMapSpace, idx: u64, gpfn: u64) -> HcResult {
    let a = XenAddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space: space.raw(),
        idx,
        gpfn,
    };
    with_arg(d, 0, HypercallNr::MemoryOp, XenMemOp::AddToPhysmap.raw(), a).0
}

/// Places shared_info at [`SHINFO_GFN`].
pub fn place_shared_info(d: &TestDomain) -> HcResult {
    add_to_physmap(d, XenMapSpace::SharedInfo, 0, SHINFO_GFN)
}

/// `XENMEM_decrease_reservation` of one page, or `populate_physmap`.
pub fn reservation(d: &TestDomain, cmd: XenMemOp, gfn: u64) -> HcResult {
    d.write(LIST, gfn);
    let a = XenMemoryReservation {
        extent_start: LIST,
        nr_extents: 1,
        extent_order: 0,
        mem_flags: 0,
        domid: DOMID_SELF,
        pad: [0; 3],
    };
    with_arg(d, 0, HypercallNr::MemoryOp, cmd.raw(), a).0
}

/// `XENMEM_current_reservation`.
pub fn current_reservation(d: &TestDomain) -> HcResult {
    let a = XenMemoryDomain { domid: DOMID_SELF };
    with_arg(
        d,
        0,
        HypercallNr::MemoryOp,
        XenMemOp::CurrentReservation.raw(),
        a,
    )
    .0
}

/// `HVMOP_set_param` / `get_param`: (result, value read back).
pub fn hvm_param(d: &TestDomain, set: bool, param: HvmParam, value: u64) -> (HcResult, u64) {
    let op = if set {
        HvmOp::SetParam
    } else {
        HvmOp::GetParam
    };
    let a = XenHvmParam {
        domid: DOMID_SELF,
        pad: 0,
        index: param.raw(),
        value,
    };
    let (r, a) = with_arg(d, 0, HypercallNr::HvmOp, op.raw(), a);
    (r, a.value)
}

/// `vcpu_op(cmd, vcpu, arg)`.
pub fn vcpu_op<T: ByteValued>(d: &TestDomain, vcpu: u32, cmd: VcpuOp, arg: T) -> HcResult {
    d.write(ARG, arg);
    d.call(
        vcpu,
        Abi::X86_64,
        HypercallNr::VcpuOp,
        &[u64::from(cmd.raw()), u64::from(vcpu), ARG],
    )
}

/// Registers vCPU 1's vcpu_info at [`VCPU_INFO`].
pub fn register_vcpu_info(d: &TestDomain) -> HcResult {
    let a = VcpuRegisterVcpuInfo {
        mfn: VCPU_INFO >> 12,
        offset: 0,
        rsvd: 0,
    };
    vcpu_op(d, 1, VcpuOp::RegisterVcpuInfo, a)
}

/// Registers vCPU 0's runstate area at [`RUNSTATE`].
pub fn register_runstate(d: &TestDomain) -> HcResult {
    let a = VcpuRegisterRunstateMemoryArea { addr: RUNSTATE };
    vcpu_op(d, 0, VcpuOp::RegisterRunstateMemoryArea, a)
}

/// Arms `vcpu`'s single-shot timer at `deadline`.
pub fn singleshot(d: &TestDomain, vcpu: u32, deadline: u64) -> HcResult {
    let a = VcpuSetSingleshotTimer {
        timeout_abs_ns: deadline,
        flags: 0,
        pad: 0,
    };
    vcpu_op(d, vcpu, VcpuOp::SetSingleshotTimer, a)
}

/// Arms `vcpu`'s periodic timer.
pub fn periodic(d: &TestDomain, vcpu: u32, period: u64) -> HcResult {
    vcpu_op(
        d,
        vcpu,
        VcpuOp::SetPeriodicTimer,
        VcpuSetPeriodicTimer { period_ns: period },
    )
}

/// `SCHEDOP_watchdog`.
pub fn watchdog(d: &TestDomain, id: u32, timeout: u32) -> HcResult {
    with_arg(
        d,
        0,
        HypercallNr::SchedOp,
        SchedOp::Watchdog.raw(),
        SchedWatchdog { id, timeout },
    )
    .0
}

/// `PHYSDEVOP_map_pirq` of `gsi`: the PIRQ.
pub fn map_gsi(d: &TestDomain, gsi: i32) -> Result<i32, i64> {
    let a = PhysdevMapPirq {
        domid: DOMID_SELF,
        type_: MapPirqType::Gsi.raw(),
        index: gsi,
        pirq: -1,
        ..Default::default()
    };
    let (r, a) = with_arg(d, 0, HypercallNr::PhysdevOp, PhysdevOp::MapPirq.raw(), a);
    r.map(|_| a.pirq).map_err(|e| e.neg())
}

/// `PHYSDEVOP_get_free_pirq` for an MSI.
pub fn free_pirq(d: &TestDomain) -> Result<u32, i64> {
    let a = PhysdevGetFreePirq {
        type_: MapPirqType::Msi.raw(),
        pirq: 0,
    };
    let (r, a) = with_arg(
        d,
        0,
        HypercallNr::PhysdevOp,
        PhysdevOp::GetFreePirq.raw(),
        a,
    );
    r.map(|_| a.pirq).map_err(|e| e.neg())
}

/// `EVTCHNOP_bind_pirq`.
pub fn bind_pirq(d: &TestDomain, pirq: u32) -> Result<u32, i64> {
    let a = EvtchnBindPirq {
        pirq,
        flags: 0,
        port: 0,
    };
    let (r, a) = evtchn(d, 0, EvtchnOp::BindPirq, a);
    r.map(|_| a.port).map_err(|e| e.neg())
}

/// A digest of the whole of guest RAM (FNV-1a), to compare two domains'.
pub fn ram_digest(d: &TestDomain) -> u64 {
    use vm_memory::{Bytes, GuestAddress};
    let mut page = vec![0u8; 1 << 20];
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for at in (0..xen_hypercall::testing::RAM_SIZE).step_by(page.len()) {
        d.mem.read_slice(&mut page, GuestAddress(at)).unwrap();
        for b in &page {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}
