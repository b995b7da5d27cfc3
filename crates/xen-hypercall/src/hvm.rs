// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `hvm_op` (hypercall 34): `hvm_op(unsigned long op, void *arg)`.
//!
//! Mirrors `do_hvm_op` and its helpers in `xen/arch/x86/hvm/hvm.c` for the
//! structures of `xen/include/public/hvm/hvm_op.h` and `hvm/params.h`, as
//! described in `xen-abi.md` §3.7 (upcall delivery: §4.1; XenStore and
//! console parameters: §5.1, §8 steps 8 and 9). Every structure has the
//! same layout in both ABIs; only `op` is an `unsigned long`.
//!
//! | op | behaviour |
//! |---|---|
//! | `set_param` / `get_param` | `-EFAULT`, index ≥ 39 `-EINVAL`, domid other than `DOMID_SELF` or our own `-ESRCH`, then the guest access rules of `xen-abi.md` §3.7 ([`check_guest_param_access`]), then Xen's value checks; values live in [`DomainState::params`] |
//! | `flush_tlbs` | NULL → 0 (and [`HvmEvents::flush_tlbs`]), otherwise `-EINVAL` |
//! | `pagetable_dying` | `-EFAULT`, `-ESRCH`, else `-EINVAL` like Xen with HAP (Linux probes it at boot and gives up on any error) |
//! | `get_time` | `{now}` = [`Clock::system_time_ns`](crate::env::Clock::system_time_ns) |
//! | `get_mem_type` | see [`mem_type`] |
//! | `set_evtchn_upcall_vector` | vector < 0x10 `-EINVAL`, unknown vCPU `-ENOENT`, else stored in [`VcpuState::upcall_vector`](crate::domain::VcpuState::upcall_vector) |
//! | `guest_request_vm_event` | NULL → 0 (no vm_event monitor is ever attached, so Xen drops the request), otherwise `-EINVAL` |
//! | legacy 2, 3, 4; removed 12, 13; `xentrace` 11; `altp2m` 25; unknown | `-ENOSYS` |
//!
//! Setting `HVM_PARAM_CALLBACK_IRQ` stores the raw value, latches the
//! shared_info layout from the caller's ABI (Xen's `hvm_latch_shinfo_size`)
//! and tells [`HvmEvents::callback_changed`]; [`callback_via`] decodes the
//! current value for the event-channel code. The VMM pre-sets
//! guest-read-only parameters such as `HVM_PARAM_STORE_PFN` with
//! [`HvmOp::set_param_host`].
//!
//! Differences:
//!
//! * QEMU handles only `set_param(CALLBACK_IRQ)` and four `get_param`
//!   indices (everything else `-ENOSYS`), answers an unknown vCPU in
//!   `set_evtchn_upcall_vector` with `-EINVAL` (Xen and we: `-ENOENT`) and
//!   `pagetable_dying` with `-ENOSYS` (Xen with HAP and we: `-EINVAL`).
//! * Reading `HVM_PARAM_STORE_PFN`, `STORE_EVTCHN`, `CONSOLE_PFN` or
//!   `CONSOLE_EVTCHN` while the VMM set none up is `-EINVAL` (as QEMU),
//!   where Xen answers 0: a guest trusting that 0 writes its ring to page 0.
//! * Xen crashes a domain that sets an out-of-range `HVM_PARAM_VM86_TSS` or
//!   `HVM_PARAM_VM86_TSS_SIZED` on itself; we only return `-EINVAL`.
//! * Xen accepts `HVMOP_xentrace` (and drops the record without a trace
//!   buffer) and answers `altp2m` from its altp2m code; we return `-ENOSYS`.
//! * `flush_tlbs` cannot flush other vCPUs from here; the VMM does it in
//!   [`HvmEvents::flush_tlbs`].

use std::sync::Arc;

use vm_memory::GuestMemoryBackend;
use xen_abi::errno::XenErrno;
use xen_abi::hvm::{
    CallbackVia, HVM_EVTCHN_UPCALL_VECTOR_MIN, HVM_NR_PARAMS, HvmMemType, HvmOp as HvmOpCmd,
    HvmParam, XenHvmEvtchnUpcallVector, XenHvmGetMemType, XenHvmGetTime, XenHvmPagetableDying,
    XenHvmParam, check_guest_param_access,
};
use xen_abi::memory::E820Type;
use xen_abi::xen::{DOMID_SELF, DomId};

use crate::call::{HcResult, Hypercall};
use crate::dispatch::{Ctx, Family};
use crate::domain::{Domain, DomainState};
use crate::env::Nop;
use xen_abi::warn_limited;
use xen_abi::x86::PAGE_SIZE;

/// `sizeof(struct tss32)`: the smallest `HVM_PARAM_VM86_TSS_SIZED` size.
pub const TSS32_SIZE: u64 = 104;
/// Largest useful VM86 TSS: the structure, a 256-bit interrupt redirection
/// bitmap, a 64 Ki-bit I/O bitmap and one padding byte. Larger sizes are
/// capped to it.
pub const VM86_TSS_MAX_SIZE: u64 = TSS32_SIZE + 0x100 / 8 + 0x10000 / 8 + 1;
/// TSS size implied by `HVM_PARAM_VM86_TSS` (old hvmloaders hard-code it).
pub const VM86_TSS_LEGACY_SIZE: u64 = 128;

/// What the VMM hears from `hvm_op`. Every method has a no-op default.
pub trait HvmEvents: Send + Sync {
    /// The guest set `HVM_PARAM_CALLBACK_IRQ` (already stored, and the
    /// shared_info layout latched). The VMM re-routes upcalls (for a KVM
    /// in-kernel vector: `KVM_XEN_ATTR_TYPE_UPCALL_VECTOR`) and re-evaluates
    /// every vCPU's pending upcall, as Xen does. `via` is decoded without
    /// the GSI range check ([`CallbackVia::limit_gsi`]).
    fn callback_changed(&self, _via: CallbackVia) {}
    /// The guest installed a per-vCPU upcall vector for `vcpu` (already
    /// stored). The VMM routes that vCPU's upcalls to it (KVM:
    /// `KVM_XEN_VCPU_ATTR_TYPE_UPCALL_VECTOR`) and re-evaluates its pending
    /// upcall.
    fn upcall_vector_changed(&self, _vcpu: u32, _vector: u8) {}
    /// `HVMOP_flush_tlbs`: every vCPU must flush its guest TLB before it
    /// next runs guest code.
    fn flush_tlbs(&self) {}
}

impl HvmEvents for Nop {}

/// The `hvm_op` family.
#[derive(Clone)]
pub struct HvmOp {
    events: Arc<dyn HvmEvents>,
}

impl std::fmt::Debug for HvmOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HvmOp").finish_non_exhaustive()
    }
}

impl Default for HvmOp {
    fn default() -> Self {
        Self::new()
    }
}

/// Decodes the domain's current `HVM_PARAM_CALLBACK_IRQ`.
///
/// Apply [`CallbackVia::limit_gsi`] with the VMM's GSI count before
/// asserting a GSI. When a vCPU has a per-vCPU upcall vector
/// ([`VcpuState::upcall_vector`](crate::domain::VcpuState::upcall_vector))
/// that vector wins for it, and the GSI Linux then writes here (GSI 1) is a
/// placeholder that must not be driven (`xen-abi.md` §4.1).
pub fn callback_via(domain: &Domain) -> CallbackVia {
    CallbackVia::from_param(domain.lock().params[HvmParam::CallbackIrq.raw() as usize])
}

/// What `HVMOP_get_mem_type` reports for `pfn`: `HVMMEM_ram_rw` for a page
/// inside one of the memory map's RAM entries or for one of the pages the
/// VMM backs outside them (shared_info, and the pages named by
/// `HVM_PARAM_STORE_PFN` and `HVM_PARAM_CONSOLE_PFN`), `HVMMEM_mmio_dm`
/// for anything else (holes, MMIO, reserved ranges) as Xen answers for
/// frames it has no RAM for. Ballooned-out RAM is still reported as RAM.
pub fn mem_type(domain: &Domain, pfn: u64) -> HvmMemType {
    let Some(gpa) = pfn.checked_mul(PAGE_SIZE) else {
        return HvmMemType::MmioDm;
    };
    let in_ram = domain.config().memory_map.iter().any(|e| {
        let (addr, size) = (e.addr, e.size);
        e.kind() == Ok(E820Type::Ram) && gpa >= addr && gpa - addr < size
    });
    let special = || {
        let st = domain.lock();
        st.shared_info_gfn == Some(pfn)
            || [HvmParam::StorePfn, HvmParam::ConsolePfn].iter().any(|p| {
                let v = st.params[p.raw() as usize];
                v != 0 && v == pfn
            })
    };
    if in_ram || special() {
        HvmMemType::RamRw
    } else {
        HvmMemType::MmioDm
    }
}

/// Checks that `domid` names the calling domain.
fn check_domid<M: GuestMemoryBackend>(
    ctx: &Ctx<'_, M>,
    domid: DomId,
    what: &str,
) -> Result<(), XenErrno> {
    if domid == DOMID_SELF || domid == ctx.domain.config().domid {
        return Ok(());
    }
    warn_limited!("vCPU {}: {what} on foreign domain {domid}", ctx.vcpu);
    Err(XenErrno::ESRCH)
}

/// The parameters a toolstack sets up for the guest's XenStore and PV
/// console; 0 means the VMM configured none.
fn is_toolstack_param(param: HvmParam) -> bool {
    matches!(
        param,
        HvmParam::StorePfn | HvmParam::StoreEvtchn | HvmParam::ConsolePfn | HvmParam::ConsoleEvtchn
    )
}

/// Xen's `hvm_get_param` for a parameter the guest may read.
fn get_param(st: &DomainState, param: HvmParam) -> u64 {
    match param {
        // Stored as the sized form; the old index reads its address part.
        HvmParam::Vm86Tss => st.params[HvmParam::Vm86TssSized.raw() as usize] & 0xffff_ffff,
        p => st.params[p.raw() as usize],
    }
}

impl HvmOp {
    /// The family with no VMM notifications.
    pub fn new() -> Self {
        Self {
            events: Arc::new(Nop),
        }
    }

    /// The family notifying `events`.
    pub fn with_events(events: Arc<dyn HvmEvents>) -> Self {
        Self { events }
    }

    /// Sets HVM parameter `index` for the VMM (e.g. `HVM_PARAM_STORE_PFN`,
    /// `HVM_PARAM_CONSOLE_EVTCHN`): no access rules, no value checks, no
    /// notifications. `-EINVAL` for an index ≥ 39.
    pub fn set_param_host(domain: &Domain, index: u32, value: u64) -> Result<(), XenErrno> {
        if index >= HVM_NR_PARAMS {
            return Err(XenErrno::EINVAL);
        }
        domain.lock().params[index as usize] = value;
        Ok(())
    }

    /// Reads HVM parameter `index` as stored (no access rules); `None` for
    /// an index ≥ 39.
    pub fn get_param_host(domain: &Domain, index: u32) -> Option<u64> {
        domain.lock().params.get(index as usize).copied()
    }

    /// Xen's `hvm_set_param` for a parameter the guest may write.
    fn set_param<M: GuestMemoryBackend>(
        &self,
        ctx: &Ctx<'_, M>,
        param: HvmParam,
        value: u64,
    ) -> Result<(), XenErrno> {
        let invalid = |why: &str| {
            warn_limited!("vCPU {}: {param} = {value:#x} refused: {why}", ctx.vcpu);
            Err(XenErrno::EINVAL)
        };
        let idx = |p: HvmParam| p.raw() as usize;
        match param {
            HvmParam::CallbackIrq => {
                ctx.domain.lock().params[idx(param)] = value;
                ctx.domain.latch_mode(ctx.abi.is_64());
                self.events.callback_changed(CallbackVia::from_param(value));
                return Ok(());
            }
            HvmParam::Vm86Tss => {
                if value > u64::from(u32::MAX) {
                    return invalid("above 4 GiB");
                }
                let sized = if value == 0 {
                    0
                } else {
                    value | VM86_TSS_LEGACY_SIZE << 32
                };
                ctx.domain.lock().params[idx(HvmParam::Vm86TssSized)] = sized;
                return Ok(());
            }
            HvmParam::Vm86TssSized => {
                let size = value >> 32;
                if size < TSS32_SIZE {
                    return invalid("TSS too small");
                }
                let value = if size > VM86_TSS_MAX_SIZE {
                    (value & 0xffff_ffff) | VM86_TSS_MAX_SIZE << 32
                } else {
                    value
                };
                ctx.domain.lock().params[idx(param)] = value;
                return Ok(());
            }
            HvmParam::AcpiIoportsLocation => {
                // Xen's pmtimer_change_ioport: only 0 <-> 1 moves.
                let mut st = ctx.domain.lock();
                let old = st.params[idx(param)];
                if value != old && value ^ old != 1 {
                    drop(st);
                    return invalid("not a valid ioports location");
                }
                st.params[idx(param)] = value;
                return Ok(());
            }
            HvmParam::X87FipWidth if !matches!(value, 0 | 4 | 8) => {
                return invalid("not 0, 4 or 8");
            }
            _ => {}
        }
        ctx.domain.lock().params[idx(param)] = value;
        Ok(())
    }

    fn param_op<M: GuestMemoryBackend>(&self, ctx: &Ctx<'_, M>, arg: u64, set: bool) -> HcResult {
        let mut p: XenHvmParam = ctx.read(arg)?;
        let op = if set {
            "HVMOP_set_param"
        } else {
            "HVMOP_get_param"
        };
        if p.index >= HVM_NR_PARAMS {
            warn_limited!("vCPU {}: {op} of index {}", ctx.vcpu, p.index);
            return Err(XenErrno::EINVAL);
        }
        check_domid(ctx, p.domid, op)?;
        let param = check_guest_param_access(p.index, set).inspect_err(|e| {
            warn_limited!("vCPU {}: {op} of index {} refused ({e})", ctx.vcpu, p.index);
        })?;
        if set {
            self.set_param(ctx, param, p.value)?;
        } else {
            p.value = get_param(&ctx.domain.lock(), param);
            if p.value == 0 && is_toolstack_param(param) {
                // No XenStore or console configured. Xen would answer 0,
                // and a guest that trusts it puts its ring at page 0; QEMU
                // and we refuse instead (Linux then leaves XenStore or hvc
                // alone).
                warn_limited!("vCPU {}: {op} of {param}: none configured", ctx.vcpu);
                return Err(XenErrno::EINVAL);
            }
            ctx.write(arg, &p)?;
        }
        Ok(0)
    }

    fn set_upcall_vector<M: GuestMemoryBackend>(&self, ctx: &Ctx<'_, M>, arg: u64) -> HcResult {
        let req: XenHvmEvtchnUpcallVector = ctx.read(arg)?;
        if req.vector < HVM_EVTCHN_UPCALL_VECTOR_MIN {
            warn_limited!("vCPU {}: upcall vector {:#x} refused", ctx.vcpu, req.vector);
            return Err(XenErrno::EINVAL);
        }
        {
            let mut st = ctx.domain.lock();
            let Some(v) = st.vcpus.get_mut(req.vcpu as usize) else {
                drop(st);
                warn_limited!(
                    "vCPU {}: upcall vector for unknown vCPU {}",
                    ctx.vcpu,
                    req.vcpu
                );
                return Err(XenErrno::ENOENT);
            };
            v.upcall_vector = Some(req.vector);
        }
        self.events.upcall_vector_changed(req.vcpu, req.vector);
        Ok(0)
    }
}

impl<M: GuestMemoryBackend> Family<M> for HvmOp {
    fn call(&self, ctx: &mut Ctx<'_, M>, call: &Hypercall) -> HcResult {
        let raw = call.arg(0);
        let arg = ctx.abi.word(call.arg(1));
        let cmd = u32::try_from(raw)
            .ok()
            .and_then(|r| HvmOpCmd::try_from(r).ok());
        match cmd {
            Some(HvmOpCmd::SetParam) => self.param_op(ctx, arg, true),
            Some(HvmOpCmd::GetParam) => self.param_op(ctx, arg, false),
            Some(HvmOpCmd::FlushTlbs) => {
                if arg != 0 {
                    return Err(XenErrno::EINVAL);
                }
                self.events.flush_tlbs();
                Ok(0)
            }
            Some(HvmOpCmd::PagetableDying) => {
                let req: XenHvmPagetableDying = ctx.read(arg)?;
                check_domid(ctx, req.domid, "HVMOP_pagetable_dying")?;
                // Only meaningful with shadow paging; Xen with HAP says
                // -EINVAL, and Linux stops using it. No warning: Linux
                // probes this at every boot.
                Err(XenErrno::EINVAL)
            }
            Some(HvmOpCmd::GetTime) => {
                let now = ctx.domain.env.clock.system_time_ns();
                ctx.write(arg, &XenHvmGetTime { now })?;
                Ok(0)
            }
            Some(HvmOpCmd::GetMemType) => {
                let mut req: XenHvmGetMemType = ctx.read(arg)?;
                check_domid(ctx, req.domid, "HVMOP_get_mem_type")?;
                req.mem_type = mem_type(ctx.domain, req.pfn).raw();
                ctx.write(arg, &req)?;
                Ok(0)
            }
            Some(HvmOpCmd::SetEvtchnUpcallVector) => self.set_upcall_vector(ctx, arg),
            Some(HvmOpCmd::GuestRequestVmEvent) => {
                if arg != 0 {
                    return Err(XenErrno::EINVAL);
                }
                Ok(0)
            }
            Some(
                c @ (HvmOpCmd::SetPciIntxLevel
                | HvmOpCmd::SetIsaIrqLevel
                | HvmOpCmd::SetPciLinkRoute
                | HvmOpCmd::SetMemAccess
                | HvmOpCmd::GetMemAccess
                | HvmOpCmd::Xentrace
                | HvmOpCmd::Altp2m),
            ) => {
                warn_limited!("vCPU {}: unsupported hvm_op {c}", ctx.vcpu);
                Err(XenErrno::ENOSYS)
            }
            None => {
                warn_limited!("vCPU {}: unknown hvm_op {raw}", ctx.vcpu);
                Err(XenErrno::ENOSYS)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use proptest::prelude::*;
    use xen_abi::hvm::IntxPin;
    use xen_abi::memory::E820Entry;
    use xen_abi::xen::HypercallNr;

    use super::*;
    use crate::call::Abi;
    use crate::domain::DomainConfig;
    use crate::testing::{ABIS, BAD, BUF};
    use crate::testing::{RAM_SIZE, TestVm};

    /// Our domain id in the test VM.
    const DOMID: DomId = 1;

    #[derive(Debug, PartialEq, Eq)]
    enum Ev {
        Callback(CallbackVia),
        Vector(u32, u8),
        Flush,
    }

    #[derive(Default)]
    struct Rec(Mutex<Vec<Ev>>);

    impl HvmEvents for Rec {
        fn callback_changed(&self, via: CallbackVia) {
            self.0.lock().unwrap().push(Ev::Callback(via));
        }
        fn upcall_vector_changed(&self, vcpu: u32, vector: u8) {
            self.0.lock().unwrap().push(Ev::Vector(vcpu, vector));
        }
        fn flush_tlbs(&self) {
            self.0.lock().unwrap().push(Ev::Flush);
        }
    }

    impl Rec {
        fn take(&self) -> Vec<Ev> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    fn vm_with(vm: TestVm) -> (TestVm, Arc<Rec>) {
        let mut vm = vm;
        let rec = Arc::new(Rec::default());
        vm.dispatcher.register(
            HypercallNr::HvmOp,
            Arc::new(HvmOp::with_events(rec.clone())),
        );
        (vm, rec)
    }

    fn vm() -> (TestVm, Arc<Rec>) {
        vm_with(TestVm::new(2))
    }

    fn hvm(vm: &TestVm, abi: Abi, op: HvmOpCmd, arg: u64) -> HcResult {
        vm.call(0, abi, HypercallNr::HvmOp, &[u64::from(op.raw()), arg])
    }

    fn set(vm: &TestVm, abi: Abi, domid: DomId, index: u32, value: u64) -> HcResult {
        vm.write(
            BUF,
            XenHvmParam {
                domid,
                pad: 0,
                index,
                value,
            },
        );
        hvm(vm, abi, HvmOpCmd::SetParam, BUF)
    }

    fn get(vm: &TestVm, abi: Abi, domid: DomId, index: u32) -> Result<u64, XenErrno> {
        vm.write(
            BUF,
            XenHvmParam {
                domid,
                pad: 0,
                index,
                value: 0xdead,
            },
        );
        hvm(vm, abi, HvmOpCmd::GetParam, BUF)?;
        let p: XenHvmParam = vm.read(BUF);
        assert_eq!(
            (p.domid, p.index),
            (domid, index),
            "header written back unchanged"
        );
        Ok(p.value)
    }

    /// The guest access table of `xen-abi.md` §3.7, written out
    /// independently of xen-abi's encoding: (get, set) outcome per index.
    fn expected_access(index: u32) -> (Result<(), XenErrno>, Result<(), XenErrno>) {
        const OK: Result<(), XenErrno> = Ok(());
        const PERM: Result<(), XenErrno> = Err(XenErrno::EPERM);
        const INVAL: Result<(), XenErrno> = Err(XenErrno::EINVAL);
        match index {
            0 | 2 | 15 | 18 | 19 | 34 | 36 | 37 => (OK, OK),
            1 | 17 => (OK, PERM),
            35 => (OK, Err(XenErrno::EEXIST)),
            4 | 13 | 20..=26 | 30 => (INVAL, INVAL),
            _ => (PERM, PERM),
        }
    }

    /// A value Xen accepts for a guest-settable index.
    fn valid_value(index: u32) -> u64 {
        match index {
            15 => 0x1000,
            19 => 1,
            36 => 8,
            37 => 200 << 32 | 0x2000,
            _ => 0x1234,
        }
    }

    #[test]
    fn test_hvm_param_every_index_follows_guest_access_table() {
        let (vm, _) = vm();
        // As a VMM with a XenStore and a console sets them up.
        for index in [1, 2, 17, 18] {
            HvmOp::set_param_host(&vm.domain, index, 0x10 + u64::from(index)).unwrap();
        }
        for abi in ABIS {
            for index in 0..HVM_NR_PARAMS {
                let (want_get, want_set) = expected_access(index);
                assert_eq!(
                    get(&vm, abi, DOMID_SELF, index).map(|_| ()),
                    want_get,
                    "get {index}"
                );
                let value = valid_value(index);
                let r = set(&vm, abi, DOMID_SELF, index, value);
                assert_eq!(r.map(|_| ()), want_set, "set {index}");
            }
        }
    }

    #[test]
    fn test_hvm_param_plain_index_set_then_get_round_trips() {
        let (vm, _) = vm();
        for abi in ABIS {
            for (index, value) in [
                (2u32, 7u64),
                (18, 9),
                (34, 0xfeed_0000),
                (36, 4),
                (19, 1),
                (0, 0),
            ] {
                assert_eq!(set(&vm, abi, DOMID_SELF, index, value), Ok(0));
                assert_eq!(get(&vm, abi, DOMID_SELF, index), Ok(value), "index {index}");
                assert_eq!(vm.domain.lock().params[index as usize], value);
            }
        }
    }

    #[test]
    fn test_hvm_param_index_out_of_range_returns_einval() {
        let (vm, _) = vm();
        for index in [HVM_NR_PARAMS, 40, u32::MAX] {
            assert_eq!(
                get(&vm, Abi::X86_64, DOMID_SELF, index),
                Err(XenErrno::EINVAL)
            );
            assert_eq!(
                set(&vm, Abi::X86_64, DOMID_SELF, index, 1),
                Err(XenErrno::EINVAL)
            );
            // Checked before the domain.
            assert_eq!(set(&vm, Abi::X86_64, 5, index, 1), Err(XenErrno::EINVAL));
        }
    }

    #[test]
    fn test_hvm_param_own_domid_accepted_foreign_returns_esrch() {
        let (vm, _) = vm();
        assert_eq!(set(&vm, Abi::X86_64, DOMID, 2, 5), Ok(0));
        assert_eq!(get(&vm, Abi::X86_64, DOMID, 2), Ok(5));
        for domid in [0, 2, 0x7ff1, 0xffff] {
            assert_eq!(get(&vm, Abi::X86_64, domid, 2), Err(XenErrno::ESRCH));
            assert_eq!(set(&vm, Abi::X86_64, domid, 2, 6), Err(XenErrno::ESRCH));
        }
        assert_eq!(get(&vm, Abi::X86_64, DOMID_SELF, 2), Ok(5));
    }

    #[test]
    fn test_hvm_param_bad_pointer_returns_efault() {
        let (vm, _) = vm();
        for abi in ABIS {
            assert_eq!(
                hvm(&vm, abi, HvmOpCmd::SetParam, BAD),
                Err(XenErrno::EFAULT)
            );
            assert_eq!(
                hvm(&vm, abi, HvmOpCmd::GetParam, BAD),
                Err(XenErrno::EFAULT)
            );
            assert_eq!(
                hvm(&vm, abi, HvmOpCmd::GetParam, RAM_SIZE - 8),
                Err(XenErrno::EFAULT)
            );
        }
    }

    #[test]
    fn test_hvm_param_store_and_console_pfn_preset_by_host_read_only_for_guest() {
        let (vm, _) = vm();
        HvmOp::set_param_host(&vm.domain, HvmParam::StorePfn.raw(), 0xfeffc).unwrap();
        HvmOp::set_param_host(&vm.domain, HvmParam::ConsolePfn.raw(), 0xfefff).unwrap();
        HvmOp::set_param_host(&vm.domain, HvmParam::StoreEvtchn.raw(), 3).unwrap();
        for abi in ABIS {
            assert_eq!(get(&vm, abi, DOMID_SELF, 1), Ok(0xfeffc));
            assert_eq!(get(&vm, abi, DOMID_SELF, 17), Ok(0xfefff));
            assert_eq!(get(&vm, abi, DOMID_SELF, 2), Ok(3));
            assert_eq!(set(&vm, abi, DOMID_SELF, 1, 5), Err(XenErrno::EPERM));
            assert_eq!(set(&vm, abi, DOMID_SELF, 17, 5), Err(XenErrno::EPERM));
        }
        assert_eq!(HvmOp::get_param_host(&vm.domain, 1), Some(0xfeffc));
    }

    #[test]
    fn test_hvm_param_store_and_console_unconfigured_return_einval_not_zero() {
        let (vm, _) = vm();
        for abi in ABIS {
            for index in [1, 2, 17, 18] {
                assert_eq!(
                    get(&vm, abi, DOMID_SELF, index),
                    Err(XenErrno::EINVAL),
                    "{index}"
                );
            }
        }
        // Once the VMM sets one up, it reads back.
        HvmOp::set_param_host(&vm.domain, HvmParam::ConsolePfn.raw(), 0xfefff).unwrap();
        assert_eq!(get(&vm, Abi::X86_64, DOMID_SELF, 17), Ok(0xfefff));
        assert_eq!(get(&vm, Abi::X86_64, DOMID_SELF, 18), Err(XenErrno::EINVAL));
    }

    #[test]
    fn test_hvm_param_host_access_bounds_index() {
        let (vm, _) = vm();
        assert_eq!(
            HvmOp::set_param_host(&vm.domain, 39, 1),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(HvmOp::get_param_host(&vm.domain, 39), None);
        // No access rules for the host.
        HvmOp::set_param_host(&vm.domain, HvmParam::TimerMode.raw(), 2).unwrap();
        assert_eq!(HvmOp::get_param_host(&vm.domain, 10), Some(2));
    }

    #[test]
    fn test_hvm_param_callback_irq_types_round_trip() {
        let (vm, rec) = vm();
        let intx = CallbackVia::PciIntx {
            domain: 0,
            bus: 0,
            device: 3,
            pin: IntxPin::A,
        };
        let cases = [
            (0u64, CallbackVia::None),
            (1, CallbackVia::Gsi(1)),
            (28, CallbackVia::Gsi(28)),
            (1 << 56 | 3 << 11, intx),
            (2 << 56 | 0xf3, CallbackVia::Vector(0xf3)),
            (3 << 56 | 0xf3, CallbackVia::None),
            (0xff << 56 | 5, CallbackVia::None),
        ];
        for abi in ABIS {
            for (value, via) in cases {
                assert_eq!(set(&vm, abi, DOMID_SELF, 0, value), Ok(0));
                assert_eq!(get(&vm, abi, DOMID_SELF, 0), Ok(value), "raw value kept");
                assert_eq!(callback_via(&vm.domain), via);
                assert_eq!(rec.take(), vec![Ev::Callback(via)]);
            }
        }
    }

    #[test]
    fn test_hvm_param_callback_irq_set_latches_caller_mode() {
        let (vm, _) = vm();
        assert!(vm.domain.lock().long_mode);
        assert_eq!(set(&vm, Abi::X86_32, DOMID_SELF, 0, 2 << 56 | 0xf3), Ok(0));
        assert!(!vm.domain.lock().long_mode);
        assert_eq!(set(&vm, Abi::X86_64, DOMID_SELF, 0, 1), Ok(0));
        assert!(vm.domain.lock().long_mode);
        // Neither a get nor a failed set latches.
        assert_eq!(get(&vm, Abi::X86_32, DOMID_SELF, 0), Ok(1));
        assert_eq!(set(&vm, Abi::X86_32, 9, 0, 1), Err(XenErrno::ESRCH));
        assert!(vm.domain.lock().long_mode);
    }

    #[test]
    fn test_hvm_param_vm86_tss_stored_as_sized_with_128_bytes() {
        let (vm, _) = vm();
        assert_eq!(set(&vm, Abi::X86_32, DOMID_SELF, 15, 0xfc000), Ok(0));
        assert_eq!(get(&vm, Abi::X86_32, DOMID_SELF, 15), Ok(0xfc000));
        assert_eq!(
            get(&vm, Abi::X86_32, DOMID_SELF, 37),
            Ok(128 << 32 | 0xfc000)
        );
        assert_eq!(set(&vm, Abi::X86_32, DOMID_SELF, 15, 0), Ok(0));
        assert_eq!(get(&vm, Abi::X86_32, DOMID_SELF, 37), Ok(0));
    }

    #[test]
    fn test_hvm_param_vm86_tss_above_4g_returns_einval() {
        let (vm, _) = vm();
        assert_eq!(
            set(&vm, Abi::X86_64, DOMID_SELF, 15, 1 << 32),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(get(&vm, Abi::X86_64, DOMID_SELF, 37), Ok(0));
    }

    #[test]
    fn test_hvm_param_vm86_tss_sized_too_small_einval_too_large_capped() {
        let (vm, _) = vm();
        assert_eq!(
            set(&vm, Abi::X86_64, DOMID_SELF, 37, 103 << 32 | 0x1000),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            set(&vm, Abi::X86_64, DOMID_SELF, 37, 104 << 32 | 0x1000),
            Ok(0)
        );
        assert_eq!(
            get(&vm, Abi::X86_64, DOMID_SELF, 37),
            Ok(104 << 32 | 0x1000)
        );
        assert_eq!(set(&vm, Abi::X86_64, DOMID_SELF, 37, u64::MAX), Ok(0));
        assert_eq!(
            get(&vm, Abi::X86_64, DOMID_SELF, 37),
            Ok(8329 << 32 | 0xffff_ffff)
        );
        assert_eq!(get(&vm, Abi::X86_64, DOMID_SELF, 15), Ok(0xffff_ffff));
    }

    #[test]
    fn test_hvm_param_x87_fip_width_only_0_4_8() {
        let (vm, _) = vm();
        for w in [0, 4, 8] {
            assert_eq!(set(&vm, Abi::X86_64, DOMID_SELF, 36, w), Ok(0));
        }
        for w in [1, 2, 16, u64::MAX] {
            assert_eq!(
                set(&vm, Abi::X86_64, DOMID_SELF, 36, w),
                Err(XenErrno::EINVAL)
            );
        }
        assert_eq!(get(&vm, Abi::X86_64, DOMID_SELF, 36), Ok(8));
    }

    #[test]
    fn test_hvm_param_acpi_ioports_location_only_0_or_1() {
        let (vm, _) = vm();
        assert_eq!(set(&vm, Abi::X86_64, DOMID_SELF, 19, 1), Ok(0));
        assert_eq!(set(&vm, Abi::X86_64, DOMID_SELF, 19, 1), Ok(0));
        assert_eq!(set(&vm, Abi::X86_64, DOMID_SELF, 19, 0), Ok(0));
        for v in [2, 3, u64::MAX] {
            assert_eq!(
                set(&vm, Abi::X86_64, DOMID_SELF, 19, v),
                Err(XenErrno::EINVAL)
            );
        }
        assert_eq!(get(&vm, Abi::X86_64, DOMID_SELF, 19), Ok(0));
    }

    #[test]
    fn test_hvm_upcall_vector_valid_stored_and_notified() {
        let (vm, rec) = vm();
        for (abi, vcpu) in [(Abi::X86_64, 0u32), (Abi::X86_32, 1)] {
            vm.write(
                BUF,
                XenHvmEvtchnUpcallVector {
                    vcpu,
                    vector: 0xf3,
                    pad: [0; 3],
                },
            );
            assert_eq!(hvm(&vm, abi, HvmOpCmd::SetEvtchnUpcallVector, BUF), Ok(0));
            assert_eq!(
                vm.domain.lock().vcpus[vcpu as usize].upcall_vector,
                Some(0xf3)
            );
            assert_eq!(rec.take(), vec![Ev::Vector(vcpu, 0xf3)]);
        }
        vm.write(
            BUF,
            XenHvmEvtchnUpcallVector {
                vcpu: 0,
                vector: 0x10,
                pad: [0; 3],
            },
        );
        assert_eq!(
            hvm(&vm, Abi::X86_64, HvmOpCmd::SetEvtchnUpcallVector, BUF),
            Ok(0)
        );
        assert_eq!(vm.domain.lock().vcpus[0].upcall_vector, Some(0x10));
    }

    #[test]
    fn test_hvm_upcall_vector_below_0x10_returns_einval() {
        let (vm, rec) = vm();
        for vector in [0, 1, 0x0f] {
            vm.write(
                BUF,
                XenHvmEvtchnUpcallVector {
                    vcpu: 0,
                    vector,
                    pad: [0; 3],
                },
            );
            let r = hvm(&vm, Abi::X86_64, HvmOpCmd::SetEvtchnUpcallVector, BUF);
            assert_eq!(r, Err(XenErrno::EINVAL));
        }
        // The vector is checked before the vCPU.
        vm.write(
            BUF,
            XenHvmEvtchnUpcallVector {
                vcpu: 99,
                vector: 1,
                pad: [0; 3],
            },
        );
        let r = hvm(&vm, Abi::X86_64, HvmOpCmd::SetEvtchnUpcallVector, BUF);
        assert_eq!(r, Err(XenErrno::EINVAL));
        assert_eq!(vm.domain.lock().vcpus[0].upcall_vector, None);
        assert_eq!(rec.take(), vec![]);
    }

    #[test]
    fn test_hvm_upcall_vector_unknown_vcpu_returns_enoent() {
        let (vm, rec) = vm();
        for vcpu in [2, 1000, u32::MAX] {
            vm.write(
                BUF,
                XenHvmEvtchnUpcallVector {
                    vcpu,
                    vector: 0xf3,
                    pad: [0; 3],
                },
            );
            let r = hvm(&vm, Abi::X86_64, HvmOpCmd::SetEvtchnUpcallVector, BUF);
            assert_eq!(r, Err(XenErrno::ENOENT));
        }
        assert_eq!(rec.take(), vec![]);
    }

    #[test]
    fn test_hvm_upcall_vector_bad_pointer_returns_efault() {
        let (vm, _) = vm();
        for abi in ABIS {
            let r = hvm(&vm, abi, HvmOpCmd::SetEvtchnUpcallVector, BAD);
            assert_eq!(r, Err(XenErrno::EFAULT));
        }
    }

    #[test]
    fn test_hvm_pagetable_dying_returns_einval_like_hap() {
        let (vm, _) = vm();
        for abi in ABIS {
            vm.write(
                BUF,
                XenHvmPagetableDying {
                    domid: DOMID_SELF,
                    pad: [0; 3],
                    gpa: 0,
                },
            );
            assert_eq!(
                hvm(&vm, abi, HvmOpCmd::PagetableDying, BUF),
                Err(XenErrno::EINVAL)
            );
        }
    }

    #[test]
    fn test_hvm_pagetable_dying_foreign_domid_esrch_bad_pointer_efault() {
        let (vm, _) = vm();
        vm.write(
            BUF,
            XenHvmPagetableDying {
                domid: 7,
                pad: [0; 3],
                gpa: 0,
            },
        );
        assert_eq!(
            hvm(&vm, Abi::X86_64, HvmOpCmd::PagetableDying, BUF),
            Err(XenErrno::ESRCH)
        );
        assert_eq!(
            hvm(&vm, Abi::X86_64, HvmOpCmd::PagetableDying, BAD),
            Err(XenErrno::EFAULT)
        );
        assert_eq!(
            hvm(&vm, Abi::X86_32, HvmOpCmd::PagetableDying, BAD),
            Err(XenErrno::EFAULT)
        );
    }

    #[test]
    fn test_hvm_get_time_returns_system_time() {
        let (vm, _) = vm();
        for (abi, now) in [
            (Abi::X86_64, 123_456_789_012u64),
            (Abi::X86_32, u64::MAX - 1),
        ] {
            vm.clock.set(now);
            assert_eq!(hvm(&vm, abi, HvmOpCmd::GetTime, BUF), Ok(0));
            assert_eq!(vm.read::<u64>(BUF), now);
        }
        assert_eq!(
            hvm(&vm, Abi::X86_64, HvmOpCmd::GetTime, BAD),
            Err(XenErrno::EFAULT)
        );
    }

    #[test]
    fn test_hvm_flush_tlbs_null_succeeds_non_null_einval() {
        let (vm, rec) = vm();
        for abi in ABIS {
            assert_eq!(hvm(&vm, abi, HvmOpCmd::FlushTlbs, 0), Ok(0));
            assert_eq!(rec.take(), vec![Ev::Flush]);
            assert_eq!(
                hvm(&vm, abi, HvmOpCmd::FlushTlbs, BUF),
                Err(XenErrno::EINVAL)
            );
            assert_eq!(rec.take(), vec![]);
        }
    }

    fn mem_type_call(vm: &TestVm, abi: Abi, domid: DomId, pfn: u64) -> Result<u16, XenErrno> {
        vm.write(
            BUF,
            XenHvmGetMemType {
                domid,
                mem_type: 0xeeee,
                pad: 0x5555,
                pfn,
            },
        );
        hvm(vm, abi, HvmOpCmd::GetMemType, BUF)?;
        let r: XenHvmGetMemType = vm.read(BUF);
        assert_eq!((r.domid, r.pad, r.pfn), (domid, 0x5555, pfn));
        Ok(r.mem_type)
    }

    #[test]
    fn test_hvm_get_mem_type_ram_rw_inside_ram_else_mmio_dm() {
        let map = vec![
            E820Entry::new(0, 0x9f000, E820Type::Ram),
            E820Entry::new(0xf0000, 0x10000, E820Type::Reserved),
            E820Entry::new(0x10_0000, RAM_SIZE - 0x10_0000, E820Type::Ram),
        ];
        let (vm, _) = vm_with(TestVm::with_config(DomainConfig::new(
            1,
            xen_cpuid::XenVersion::V4_10,
            map,
        )));
        let ram = HvmMemType::RamRw.raw();
        let mmio = HvmMemType::MmioDm.raw();
        for abi in ABIS {
            assert_eq!(mem_type_call(&vm, abi, DOMID_SELF, 0), Ok(ram));
            assert_eq!(mem_type_call(&vm, abi, DOMID_SELF, 0x9e), Ok(ram));
            assert_eq!(mem_type_call(&vm, abi, DOMID_SELF, 0x9f), Ok(mmio));
            assert_eq!(mem_type_call(&vm, abi, DOMID_SELF, 0xf0), Ok(mmio));
            assert_eq!(mem_type_call(&vm, abi, DOMID, 0x100), Ok(ram));
            assert_eq!(
                mem_type_call(&vm, abi, DOMID_SELF, RAM_SIZE / 4096 - 1),
                Ok(ram)
            );
            assert_eq!(
                mem_type_call(&vm, abi, DOMID_SELF, RAM_SIZE / 4096),
                Ok(mmio)
            );
            assert_eq!(mem_type_call(&vm, abi, DOMID_SELF, 0xfee00), Ok(mmio));
            assert_eq!(mem_type_call(&vm, abi, DOMID_SELF, u64::MAX), Ok(mmio));
        }
    }

    #[test]
    fn test_hvm_get_mem_type_vmm_backed_pages_are_ram() {
        let (vm, _) = vm();
        let ram = HvmMemType::RamRw.raw();
        assert_eq!(mem_type_call(&vm, Abi::X86_64, DOMID_SELF, 0xfeffc), Ok(2));
        HvmOp::set_param_host(&vm.domain, HvmParam::StorePfn.raw(), 0xfeffc).unwrap();
        HvmOp::set_param_host(&vm.domain, HvmParam::ConsolePfn.raw(), 0xfefff).unwrap();
        vm.domain.lock().shared_info_gfn = Some(0xf0000);
        for pfn in [0xfeffc, 0xfefff, 0xf0000] {
            assert_eq!(
                mem_type_call(&vm, Abi::X86_64, DOMID_SELF, pfn),
                Ok(ram),
                "{pfn:#x}"
            );
        }
    }

    #[test]
    fn test_hvm_get_mem_type_foreign_domid_esrch_bad_pointer_efault() {
        let (vm, _) = vm();
        assert_eq!(mem_type_call(&vm, Abi::X86_64, 3, 0), Err(XenErrno::ESRCH));
        assert_eq!(
            hvm(&vm, Abi::X86_64, HvmOpCmd::GetMemType, BAD),
            Err(XenErrno::EFAULT)
        );
    }

    #[test]
    fn test_hvm_guest_request_vm_event_null_ok_non_null_einval() {
        let (vm, _) = vm();
        for abi in ABIS {
            assert_eq!(hvm(&vm, abi, HvmOpCmd::GuestRequestVmEvent, 0), Ok(0));
            let r = hvm(&vm, abi, HvmOpCmd::GuestRequestVmEvent, BUF);
            assert_eq!(r, Err(XenErrno::EINVAL));
        }
    }

    #[test]
    fn test_hvm_legacy_removed_and_unknown_ops_return_enosys() {
        let (vm, _) = vm();
        for abi in ABIS {
            for op in [
                2u64,
                3,
                4,
                6,
                7,
                8,
                11,
                12,
                13,
                14,
                16,
                22,
                25,
                26,
                0xffff_ffff,
            ] {
                let r = vm.call(0, abi, HypercallNr::HvmOp, &[op, BUF]);
                assert_eq!(r, Err(XenErrno::ENOSYS), "op {op}");
            }
        }
        // `unsigned long op`: upper bits count in the 64-bit ABI.
        let r = vm.call(0, Abi::X86_64, HypercallNr::HvmOp, &[1 << 32 | 10, BUF]);
        assert_eq!(r, Err(XenErrno::ENOSYS));
    }

    proptest! {
        #[test]
        fn test_hvm_arbitrary_args_never_panic(
            op in prop_oneof![0u64..30, any::<u64>()],
            arg in prop_oneof![Just(0u64), Just(BUF), Just(RAM_SIZE - 5), any::<u64>()],
            contents in proptest::collection::vec(any::<u8>(), 16),
            is_64 in any::<bool>(),
        ) {
            let (vm, _) = vm();
            vm.write_bytes(BUF, &contents);
            let abi = if is_64 { Abi::X86_64 } else { Abi::X86_32 };
            let args = [op, arg].map(|a| abi.word(a));
            let _ = vm.call(0, abi, HypercallNr::HvmOp, &args);
            prop_assert_eq!(vm.domain.lock().params.len(), HVM_NR_PARAMS as usize);
        }
    }
}
