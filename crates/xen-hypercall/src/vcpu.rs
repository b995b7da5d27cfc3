// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vcpu_op` (hypercall 24): `vcpu_op(int cmd, unsigned vcpuid, void *arg)`.
//!
//! Follows Xen's public `vcpu.h` and `xen-abi.md` §3.5, with the semantics
//! of Xen's `common_vcpu_op`/`map_guest_area` (`xen/common/domain.c`) and
//! the x86 `do_vcpu_op` (`xen/arch/x86/domain.c`). Both ABIs are handled
//! (`compat_vcpu_op` layouts for 32-bit callers). An unknown `vcpuid` is
//! -ENOENT for every command, as in Xen.
//!
//! Areas a guest registers are recorded in [`crate::DomainState`] as
//! guest-physical addresses:
//! * `register_vcpu_info` → `VcpuState::vcpu_info_gpa`;
//! * a time area (`register_vcpu_time_memory_area`, by virtual address, is
//!   translated once at registration) → `VcpuState::time_area`
//!   (`physical: true`);
//! * a runstate area → `VcpuState::runstate` records the registration as
//!   the guest made it (address and kind); its translation, page by page,
//!   and the time accounting live in the shared [`Runstates`] table
//!   ([`VcpuOp::runstates`]), through which the VMM reports state changes.
//!
//! Where we differ from Xen, and from QEMU:
//! * virtual time and runstate areas are translated once, at registration
//!   (as QEMU/KVM do); Xen re-walks the address on every update and accepts
//!   any address from an HVM guest (its `guest_handle_okay()` is always true
//!   for HVM), failing the updates silently. A virtual area that cannot be
//!   translated now gets -EFAULT (QEMU's answer): an area we could never
//!   write must not be reported as registered, and Linux always registers
//!   mapped per-CPU addresses. A NULL address unregisters, as in Xen.
//!   A virtual runstate area may straddle two unrelated frames; a virtual
//!   time area may straddle a page only if its two frames are contiguous
//!   (else -EFAULT; Linux uses a page-aligned page for it).
//! * one runstate area per vCPU: the last registration (virtual or
//!   physical) wins; unregistering one kind leaves the other kind alone.
//!   Xen keeps both and writes the physical one when present.
//! * `initialise`/`up`/`down`/`is_up`: Xen's answers for HVM guests. Every
//!   vCPU of a [`crate::Domain`] is initialised (the VMM starts them), so
//!   `initialise` is -EEXIST after reading its `vcpu_hvm_context`, `up` is
//!   0, `down` marks the vCPU down (and powers the domain off when it was
//!   the last one up, as Xen's `domain_shutdown(SHUTDOWN_poweroff)`).
//!   There is no VMM hook yet to park or restart a vCPU: the VMM observes
//!   `VcpuState::up`. QEMU answers all of these -ENOSYS.
//! * `set_singleshot_timer` ignores `VCPU_SSHOTTMR_future` like current Xen
//!   and QEMU: a deadline in the past is armed as given, so the VMM fires it
//!   at once (Xen sends the event directly); both return 0.
//! * `send_nmi` is -ENOSYS (no NMI injection hook yet; Xen injects one).
//!   `get_physid` is -EINVAL (Xen: hardware domain with pinned vCPUs only).
//! * `register_vcpu_info` writes the copied contents, all-ones
//!   `evtchn_pending_sel` and `evtchn_upcall_pending = 1`, but does not yet
//!   inject the "spurious" upcall Xen's `vcpu_mark_events_pending()` raises:
//!   that comes with event-channel delivery.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use xen_abi::errno::XenErrno;
use xen_abi::sched::ShutdownReason;
use xen_abi::vcpu::{
    RunstateState, VCPU_PERIODIC_TIMER_MIN_NS, VcpuOp as Cmd, VcpuRegisterTimeMemoryArea,
    VcpuRegisterVcpuInfo, VcpuRunstateInfoCompat, VcpuSetPeriodicTimer, VcpuSetSingleshotTimer,
    VcpuSetSingleshotTimerCompat,
};
use xen_abi::xen::XEN_LEGACY_MAX_VCPUS;

use crate::call::{Abi, HcResult, Hypercall};
use crate::dispatch::{Ctx, Family};
use crate::domain::{GuestArea, VCPU_INFO_SIZE};
use crate::time::{
    RUNSTATE_SIZE, RUNSTATE_SIZE_COMPAT, RunstateArea, Runstates, SplitArea, VCPU_TIME_INFO_SIZE,
    in_ram, update_vcpu_time,
};
use xen_abi::warn_limited;
use xen_abi::x86::PAGE_SIZE;

/// Size of `struct vcpu_hvm_context` (`public/hvm/hvm_vcpu.h`: mode, pad,
/// and the union of the 120-byte 32-bit and 112-byte 64-bit register sets),
/// the argument of `VCPUOP_initialise` for HVM guests in both ABIs.
const VCPU_HVM_CONTEXT_SIZE: usize = 128;

/// Xen's `STIME_DELTA_MAX`: the longest accepted periodic-timer period.
pub const PERIODIC_TIMER_MAX_NS: u64 = u64::MAX >> 2;

/// The "unregister" address of the `*_phys_area` commands.
const PHYS_AREA_NONE: u64 = u64::MAX;

/// The `vcpu_op` family.
#[derive(Debug)]
pub struct VcpuOp {
    runstates: Arc<Runstates>,
}

impl Default for VcpuOp {
    fn default() -> Self {
        Self::new()
    }
}

impl VcpuOp {
    /// A family with its own runstate table.
    pub fn new() -> Self {
        Self::with_runstates(Arc::new(Runstates::new()))
    }

    /// A family sharing `runstates` with the VMM.
    pub fn with_runstates(runstates: Arc<Runstates>) -> Self {
        Self { runstates }
    }

    /// The runstate table: the VMM reports vCPU state changes through it
    /// ([`Runstates::set_state`]) and snapshots it.
    pub fn runstates(&self) -> &Arc<Runstates> {
        &self.runstates
    }

    /// Handles `vcpu_op(cmd, vcpuid, arg)` from `ctx.vcpu`.
    pub fn vcpu_op<M: GuestMemoryBackend>(
        &self,
        ctx: &mut Ctx<'_, M>,
        cmd: u32,
        vcpuid: u32,
        arg: u64,
    ) -> HcResult {
        if !ctx.domain.has_vcpu(u64::from(vcpuid)) {
            warn_limited!("vCPU {}: vcpu_op {cmd} on unknown vCPU {vcpuid}", ctx.vcpu);
            return Err(XenErrno::ENOENT);
        }
        let Ok(op) = Cmd::try_from(cmd) else {
            warn_limited!("vCPU {}: unknown vcpu_op command {cmd}", ctx.vcpu);
            return Err(XenErrno::ENOSYS);
        };
        let v = vcpuid;
        match op {
            Cmd::Initialise => {
                let mut buf = [0u8; VCPU_HVM_CONTEXT_SIZE];
                ctx.read_bytes(arg, &mut buf)?;
                // Xen: `v->is_initialised ? -EEXIST : ...`; ours all are.
                Err(XenErrno::EEXIST)
            }
            Cmd::Up => {
                let was_up = std::mem::replace(&mut ctx.domain.lock().vcpus[v as usize].up, true);
                if !was_up {
                    self.set_runstate(ctx, v, RunstateState::Running);
                }
                Ok(0)
            }
            Cmd::Down => self.down(ctx, v),
            Cmd::IsUp => Ok(u64::from(ctx.domain.lock().vcpus[v as usize].up)),
            Cmd::GetRunstateInfo => {
                let now = ctx.domain.env.clock.system_time_ns();
                let info = self
                    .runstates
                    .info(ctx.domain, v, now)
                    .ok_or(XenErrno::ENOENT)?;
                match ctx.abi {
                    Abi::X86_64 => ctx.write(arg, &info)?,
                    Abi::X86_32 => ctx.write(arg, &VcpuRunstateInfoCompat::from(info))?,
                }
                Ok(0)
            }
            Cmd::RegisterRunstateMemoryArea => self.register_runstate_virt(ctx, v, arg),
            Cmd::RegisterRunstatePhysArea => self.register_runstate_phys(ctx, v, arg),
            Cmd::RegisterVcpuTimeMemoryArea => register_time_virt(ctx, v, arg),
            Cmd::RegisterVcpuTimePhysArea => register_time_phys(ctx, v, arg),
            Cmd::RegisterVcpuInfo => register_vcpu_info(ctx, v, arg),
            Cmd::SetPeriodicTimer => {
                let p: VcpuSetPeriodicTimer = ctx.read(arg)?;
                if !(VCPU_PERIODIC_TIMER_MIN_NS..=PERIODIC_TIMER_MAX_NS).contains(&p.period_ns) {
                    warn_limited!(
                        "vCPU {}: periodic timer period {} ns refused",
                        ctx.vcpu,
                        p.period_ns
                    );
                    return Err(XenErrno::EINVAL);
                }
                set_periodic(ctx, v, Some(p.period_ns));
                Ok(0)
            }
            Cmd::StopPeriodicTimer => {
                set_periodic(ctx, v, None);
                Ok(0)
            }
            Cmd::SetSingleshotTimer => {
                if v != ctx.vcpu {
                    warn_limited!("vCPU {}: single-shot timer of vCPU {v} refused", ctx.vcpu);
                    return Err(XenErrno::EINVAL);
                }
                // VCPU_SSHOTTMR_future is ignored, as in current Xen.
                let t: VcpuSetSingleshotTimer = match ctx.abi {
                    Abi::X86_64 => ctx.read(arg)?,
                    Abi::X86_32 => ctx.read::<VcpuSetSingleshotTimerCompat>(arg)?.into(),
                };
                set_singleshot(ctx, v, Some(t.timeout_abs_ns));
                Ok(0)
            }
            Cmd::StopSingleshotTimer => {
                if v != ctx.vcpu {
                    warn_limited!("vCPU {}: single-shot timer of vCPU {v} refused", ctx.vcpu);
                    return Err(XenErrno::EINVAL);
                }
                set_singleshot(ctx, v, None);
                Ok(0)
            }
            Cmd::SendNmi => {
                warn_limited!("vCPU {}: VCPUOP_send_nmi is not implemented", ctx.vcpu);
                Err(XenErrno::ENOSYS)
            }
            Cmd::GetPhysid => Err(XenErrno::EINVAL),
        }
    }

    fn set_runstate<M: GuestMemoryBackend>(&self, ctx: &Ctx<'_, M>, v: u32, state: RunstateState) {
        let now = ctx.domain.env.clock.system_time_ns();
        self.runstates
            .set_state(ctx.domain, ctx.phys(), v, state, now);
    }

    /// `VCPUOP_down`: the last vCPU up powers the domain off instead.
    fn down<M: GuestMemoryBackend>(&self, ctx: &Ctx<'_, M>, v: u32) -> HcResult {
        let mut st = ctx.domain.lock();
        let others_up = st
            .vcpus
            .iter()
            .enumerate()
            .any(|(i, s)| i != v as usize && s.up);
        if !others_up {
            let code = st.shutdown_code;
            drop(st);
            ctx.domain
                .env
                .events
                .shutdown(ShutdownReason::Poweroff, code);
            return Ok(0);
        }
        let was_up = std::mem::replace(&mut st.vcpus[v as usize].up, false);
        drop(st);
        if was_up {
            self.set_runstate(ctx, v, RunstateState::Offline);
        }
        Ok(0)
    }

    /// `VCPUOP_register_runstate_memory_area`: a guest-virtual address (the
    /// 32-bit ABI reads only the low 4 bytes of the handle, as Xen does).
    fn register_runstate_virt<M: GuestMemoryBackend>(
        &self,
        ctx: &Ctx<'_, M>,
        v: u32,
        arg: u64,
    ) -> HcResult {
        let gva = read_handle(ctx, arg)?;
        if gva == 0 {
            let current = self.runstates.get(ctx.domain, v).and_then(|r| r.area);
            if current.is_some_and(|a| !a.physical) {
                self.runstates.register(ctx.domain, ctx.phys(), v, None);
                ctx.domain.lock().vcpus[v as usize].runstate = None;
            }
            return Ok(0);
        }
        let latched = ctx.domain.lock().long_mode;
        let need = if latched {
            RUNSTATE_SIZE
        } else {
            RUNSTATE_SIZE_COMPAT
        };
        let map = SplitArea::translate(ctx.mem, gva, need, RUNSTATE_SIZE).map_err(|f| {
            warn_limited!("vCPU {}: runstate area {gva:#x} not mapped: {f}", ctx.vcpu);
            XenErrno::EFAULT
        })?;
        let long_mode = ctx.abi.is_64();
        ctx.domain.lock().vcpus[v as usize].runstate = Some(GuestArea {
            addr: gva,
            physical: false,
            long_mode,
        });
        let area = RunstateArea {
            map,
            physical: false,
            long_mode,
        };
        self.runstates
            .register(ctx.domain, ctx.phys(), v, Some(area));
        Ok(0)
    }

    /// `VCPUOP_register_runstate_phys_area`: Xen's `map_guest_area()` checks;
    /// the layout is the caller's ABI.
    fn register_runstate_phys<M: GuestMemoryBackend>(
        &self,
        ctx: &Ctx<'_, M>,
        v: u32,
        arg: u64,
    ) -> HcResult {
        let gpa: u64 = ctx.read(arg)?;
        if gpa == PHYS_AREA_NONE {
            let current = self.runstates.get(ctx.domain, v).and_then(|r| r.area);
            if current.is_some_and(|a| a.physical) {
                self.runstates.register(ctx.domain, ctx.phys(), v, None);
                ctx.domain.lock().vcpus[v as usize].runstate = None;
            }
            return Ok(0);
        }
        let long_mode = ctx.abi.is_64();
        let size = if long_mode {
            RUNSTATE_SIZE
        } else {
            RUNSTATE_SIZE_COMPAT
        };
        check_phys_area(ctx, gpa, size)?;
        ctx.domain.lock().vcpus[v as usize].runstate = Some(GuestArea {
            addr: gpa,
            physical: true,
            long_mode,
        });
        let area = RunstateArea {
            map: SplitArea::physical(gpa),
            physical: true,
            long_mode,
        };
        self.runstates
            .register(ctx.domain, ctx.phys(), v, Some(area));
        Ok(0)
    }
}

impl<M: GuestMemoryBackend> Family<M> for VcpuOp {
    fn call(&self, ctx: &mut Ctx<'_, M>, call: &Hypercall) -> HcResult {
        // `int cmd, unsigned int vcpuid`: the low 32 bits of the registers.
        self.vcpu_op(ctx, call.arg(0) as u32, call.arg(1) as u32, call.arg(2))
    }
}

/// Reads a guest handle of a `*_memory_area` argument: 8 bytes in the
/// 64-bit ABI, the 4-byte compat handle in the 32-bit one.
fn read_handle<M: GuestMemoryBackend>(ctx: &Ctx<'_, M>, arg: u64) -> Result<u64, XenErrno> {
    Ok(match ctx.abi {
        Abi::X86_64 => ctx.read::<VcpuRegisterTimeMemoryArea>(arg)?.addr,
        Abi::X86_32 => u64::from(ctx.read::<u32>(arg)?),
    })
}

/// Xen's `map_guest_area()` checks for a `size`-byte area at `gpa`: within
/// one page and aligned to the latched layout's word (-ENXIO), in RAM
/// (-EINVAL).
fn check_phys_area<M: GuestMemoryBackend>(
    ctx: &Ctx<'_, M>,
    gpa: u64,
    size: u64,
) -> Result<(), XenErrno> {
    if gpa / PAGE_SIZE != gpa.wrapping_add(size - 1) / PAGE_SIZE {
        warn_limited!("vCPU {}: area at {gpa:#x} crosses a page", ctx.vcpu);
        return Err(XenErrno::ENXIO);
    }
    let align = if ctx.domain.lock().long_mode { 8 } else { 4 };
    if !gpa.is_multiple_of(align) {
        warn_limited!(
            "vCPU {}: area at {gpa:#x} is not {align}-byte aligned",
            ctx.vcpu
        );
        return Err(XenErrno::ENXIO);
    }
    if !in_ram(ctx.phys(), gpa, size) {
        warn_limited!("vCPU {}: area at {gpa:#x} is not in guest RAM", ctx.vcpu);
        return Err(XenErrno::EINVAL);
    }
    Ok(())
}

/// `VCPUOP_register_vcpu_time_memory_area`.
fn register_time_virt<M: GuestMemoryBackend>(ctx: &Ctx<'_, M>, v: u32, arg: u64) -> HcResult {
    let gva = read_handle(ctx, arg)?;
    if gva == 0 {
        ctx.domain.lock().vcpus[v as usize].time_area = None;
        return Ok(0);
    }
    let map = SplitArea::translate(ctx.mem, gva, VCPU_TIME_INFO_SIZE, VCPU_TIME_INFO_SIZE)
        .map_err(|f| {
            warn_limited!("vCPU {}: time area {gva:#x} not mapped: {f}", ctx.vcpu);
            XenErrno::EFAULT
        })?;
    if map.first_len() < VCPU_TIME_INFO_SIZE
        && map.next_page != SplitArea::physical(map.gpa).next_page
    {
        warn_limited!(
            "vCPU {}: time area {gva:#x} straddles discontiguous frames",
            ctx.vcpu
        );
        return Err(XenErrno::EFAULT);
    }
    ctx.domain.lock().vcpus[v as usize].time_area = Some(GuestArea {
        addr: map.gpa,
        physical: true,
        long_mode: ctx.abi.is_64(),
    });
    update_vcpu_time(ctx.domain, ctx.phys(), v);
    Ok(0)
}

/// `VCPUOP_register_vcpu_time_phys_area`.
fn register_time_phys<M: GuestMemoryBackend>(ctx: &Ctx<'_, M>, v: u32, arg: u64) -> HcResult {
    let gpa: u64 = ctx.read(arg)?;
    if gpa == PHYS_AREA_NONE {
        ctx.domain.lock().vcpus[v as usize].time_area = None;
        return Ok(0);
    }
    check_phys_area(ctx, gpa, VCPU_TIME_INFO_SIZE)?;
    ctx.domain.lock().vcpus[v as usize].time_area = Some(GuestArea {
        addr: gpa,
        physical: true,
        long_mode: ctx.abi.is_64(),
    });
    update_vcpu_time(ctx.domain, ctx.phys(), v);
    Ok(0)
}

/// `VCPUOP_register_vcpu_info` with Xen's checks, in Xen's order.
fn register_vcpu_info<M: GuestMemoryBackend>(ctx: &Ctx<'_, M>, v: u32, arg: u64) -> HcResult {
    let req: VcpuRegisterVcpuInfo = ctx.read(arg)?;
    let Some(gpa) = req.gpa().filter(|&g| g != u64::MAX) else {
        warn_limited!(
            "vCPU {}: vcpu_info at gfn {:#x} offset {:#x} refused",
            ctx.vcpu,
            req.mfn,
            req.offset
        );
        return Err(XenErrno::EINVAL);
    };
    let mem = ctx.phys();
    let long_mode = {
        let mut st = ctx.domain.lock();
        let idx = v as usize;
        if st.vcpus[idx].vcpu_info_gpa.is_some() {
            warn_limited!("vCPU {}: vcpu_info of vCPU {v} registered twice", ctx.vcpu);
            return Err(XenErrno::EBUSY);
        }
        if (gpa % PAGE_SIZE) + VCPU_INFO_SIZE > PAGE_SIZE {
            warn_limited!("vCPU {}: vcpu_info at {gpa:#x} crosses a page", ctx.vcpu);
            return Err(XenErrno::ENXIO);
        }
        let align = if st.long_mode { 8 } else { 4 };
        if !gpa.is_multiple_of(align) {
            warn_limited!(
                "vCPU {}: vcpu_info at {gpa:#x} is not {align}-byte aligned",
                ctx.vcpu
            );
            return Err(XenErrno::ENXIO);
        }
        if !in_ram(mem, gpa, VCPU_INFO_SIZE) {
            warn_limited!(
                "vCPU {}: vcpu_info at {gpa:#x} is not in guest RAM",
                ctx.vcpu
            );
            return Err(XenErrno::EINVAL);
        }
        // The current vcpu_info: the shared_info slot for vCPUs below 32.
        let old = st
            .shared_info_gfn
            .filter(|_| (v as usize) < XEN_LEGACY_MAX_VCPUS)
            .and_then(|g| g.checked_mul(PAGE_SIZE))
            .and_then(|s| s.checked_add(u64::from(v) * VCPU_INFO_SIZE));
        let mut bytes = [0u8; VCPU_INFO_SIZE as usize];
        let copied = old.is_some_and(|o| mem.read_slice(&mut bytes, GuestAddress(o)).is_ok());
        if !copied {
            // Xen: a vCPU without one gets a zeroed vcpu_info, upcalls masked.
            bytes = [0; VCPU_INFO_SIZE as usize];
            bytes[1] = 1;
        }
        if mem.write_slice(&bytes, GuestAddress(gpa)).is_err() {
            return Err(XenErrno::EINVAL);
        }
        st.vcpus[idx].vcpu_info_gpa = Some(gpa);
        st.long_mode
    };
    // Mark everything pending, after the new location is published, so no
    // event is lost. The upcall injection itself comes with event channels.
    let sel = if long_mode {
        mem.store(u64::MAX, GuestAddress(gpa + 8), Ordering::SeqCst)
    } else {
        mem.store(u32::MAX, GuestAddress(gpa + 4), Ordering::SeqCst)
    };
    let pending = mem.store(1u8, GuestAddress(gpa), Ordering::SeqCst);
    if sel.is_err() || pending.is_err() {
        warn_limited!(
            "vCPU {}: could not mark vcpu_info at {gpa:#x} pending",
            ctx.vcpu
        );
    }
    update_vcpu_time(ctx.domain, mem, v);
    Ok(0)
}

fn set_periodic<M: GuestMemoryBackend>(ctx: &Ctx<'_, M>, v: u32, period: Option<u64>) {
    ctx.domain.lock().vcpus[v as usize].periodic_ns = period;
    ctx.domain.env.timers.set_periodic(v, period);
}

fn set_singleshot<M: GuestMemoryBackend>(ctx: &Ctx<'_, M>, v: u32, deadline: Option<u64>) {
    ctx.domain.lock().vcpus[v as usize].singleshot_ns = deadline;
    ctx.domain.env.timers.set_singleshot(v, deadline);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::PagingRegs;
    use crate::testing::{Event, RAM_SIZE, TestVm};
    use proptest::prelude::*;
    use vm_memory::ByteValued;
    use xen_abi::vcpu::{VcpuRunstateInfo, XEN_RUNSTATE_UPDATE};
    use xen_abi::xen::{HypercallNr, VcpuInfo, VcpuInfoCompat, VcpuTimeInfo};

    const SHINFO_GFN: u64 = 0x10;
    const SHINFO: u64 = SHINFO_GFN * PAGE_SIZE;
    /// Where tests put hypercall argument structures.
    const ARG: u64 = 0x5000;

    fn setup(vcpus: u32) -> (TestVm, Arc<VcpuOp>) {
        let mut vm = TestVm::new(vcpus);
        let op = Arc::new(VcpuOp::new());
        vm.dispatcher.register(HypercallNr::VcpuOp, op.clone());
        (vm, op)
    }

    fn op(vm: &TestVm, caller: u32, abi: Abi, cmd: Cmd, vcpuid: u64, arg: u64) -> HcResult {
        vm.call(
            caller,
            abi,
            HypercallNr::VcpuOp,
            &[u64::from(cmd.raw()), vcpuid, arg],
        )
    }

    fn register_info(vm: &TestVm, abi: Abi, vcpu: u32, mfn: u64, offset: u32) -> HcResult {
        vm.write(
            ARG,
            VcpuRegisterVcpuInfo {
                mfn,
                offset,
                rsvd: 0,
            },
        );
        op(vm, vcpu, abi, Cmd::RegisterVcpuInfo, u64::from(vcpu), ARG)
    }

    // Four-level paging: identity for the low 2 MiB, with some pages remapped.
    const PML4: u64 = 0x20_0000;

    fn paged(vm: &mut TestVm, remap: &[(u64, u64)]) {
        let (pdpt, pd, pt) = (PML4 + 0x1000, PML4 + 0x2000, PML4 + 0x3000);
        vm.write(PML4, pdpt | 3);
        vm.write(pdpt, pd | 3);
        vm.write(pd, pt | 3);
        for i in 0..512u64 {
            vm.write(pt + i * 8, (i * PAGE_SIZE) | 3);
        }
        for &(gva, gpa) in remap {
            vm.write(pt + (gva / PAGE_SIZE) * 8, gpa | 3);
        }
        vm.paging = PagingRegs {
            cr0: 0x8001_0011,
            cr3: PML4,
            cr4: 0x20,
            efer: 0x500,
        };
    }

    #[test]
    fn test_vcpu_op_unknown_vcpu_enoent() {
        let (vm, _) = setup(2);
        for cmd in [Cmd::IsUp, Cmd::RegisterVcpuInfo, Cmd::SetSingleshotTimer] {
            assert_eq!(op(&vm, 0, Abi::X86_64, cmd, 2, ARG), Err(XenErrno::ENOENT));
        }
        assert_eq!(
            vm.call(0, Abi::X86_64, HypercallNr::VcpuOp, &[99, 7, 0]),
            Err(XenErrno::ENOENT)
        );
        // vcpuid is an unsigned int: upper register bits are ignored.
        assert_eq!(op(&vm, 0, Abi::X86_64, Cmd::IsUp, 1 << 32 | 1, 0), Ok(1));
    }

    #[test]
    fn test_vcpu_op_unknown_command_enosys() {
        let (vm, _) = setup(1);
        assert_eq!(
            vm.call(0, Abi::X86_64, HypercallNr::VcpuOp, &[16, 0, 0]),
            Err(XenErrno::ENOSYS)
        );
        assert_eq!(
            op(&vm, 0, Abi::X86_64, Cmd::SendNmi, 0, 0),
            Err(XenErrno::ENOSYS)
        );
        assert_eq!(
            op(&vm, 0, Abi::X86_32, Cmd::GetPhysid, 0, ARG),
            Err(XenErrno::EINVAL)
        );
    }

    #[test]
    fn test_register_vcpu_info_copies_slot_and_marks_pending() {
        let (vm, _) = setup(2);
        vm.domain.lock().shared_info_gfn = Some(SHINFO_GFN);
        vm.clock.set(1_000);
        let mut old = VcpuInfo {
            evtchn_upcall_mask: 0,
            evtchn_pending_sel: 0x5,
            ..Default::default()
        };
        old.arch.cr2 = 0x1234;
        old.time.version = 6;
        vm.write(SHINFO + 64, old);
        assert_eq!(register_info(&vm, Abi::X86_64, 1, 0x20, 0x40), Ok(0));
        let new: VcpuInfo = vm.read(0x20040);
        assert_eq!((new.evtchn_upcall_pending, new.evtchn_upcall_mask), (1, 0));
        assert_eq!(new.evtchn_pending_sel, u64::MAX);
        assert_eq!(new.arch.cr2, 0x1234);
        assert_eq!((new.time.version, new.time.system_time), (8, 1_000));
        assert_eq!(vm.domain.lock().vcpus[1].vcpu_info_gpa, Some(0x20040));
        assert_eq!(vm.domain.vcpu_info_gpa(1), Some(0x20040));
    }

    #[test]
    fn test_register_vcpu_info_without_old_zeroes_and_masks() {
        let (vm, _) = setup(40);
        // No shared_info yet.
        vm.write_bytes(0x21000, &[0xee; 64]);
        assert_eq!(register_info(&vm, Abi::X86_64, 0, 0x21, 0), Ok(0));
        let new: VcpuInfo = vm.read(0x21000);
        assert_eq!((new.evtchn_upcall_pending, new.evtchn_upcall_mask), (1, 1));
        assert_eq!((new.evtchn_pending_sel, new.arch.cr2), (u64::MAX, 0));
        assert_eq!(new.time.version, 2);
        // vCPU 35 has no shared_info slot even once shared_info is placed.
        vm.domain.lock().shared_info_gfn = Some(SHINFO_GFN);
        vm.write_bytes(0x22000, &[0xee; 64]);
        assert_eq!(register_info(&vm, Abi::X86_64, 35, 0x22, 0), Ok(0));
        let new: VcpuInfo = vm.read(0x22000);
        assert_eq!((new.evtchn_upcall_mask, new.arch.pad), (1, 0));
    }

    #[test]
    fn test_register_vcpu_info_compat_layout_sets_32_bit_selector() {
        let (vm, _) = setup(1);
        {
            let mut st = vm.domain.lock();
            st.shared_info_gfn = Some(SHINFO_GFN);
            st.long_mode = false;
        }
        // 4-byte alignment suffices with the 32-bit layout.
        assert_eq!(register_info(&vm, Abi::X86_32, 0, 0x20, 0x44), Ok(0));
        let new: VcpuInfoCompat = vm.read(0x20044);
        assert_eq!(
            (new.evtchn_upcall_pending, new.evtchn_pending_sel),
            (1, u32::MAX)
        );
        assert_eq!(vm.read::<u32>(0x20044 + 8), 0);
    }

    #[test]
    fn test_register_vcpu_info_bad_offset_or_gfn_einval() {
        let (vm, _) = setup(1);
        assert_eq!(
            register_info(&vm, Abi::X86_64, 0, 0x20, 4096),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            register_info(&vm, Abi::X86_64, 0, 1 << 52, 0),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            register_info(&vm, Abi::X86_64, 0, u64::MAX >> 12, 0xfff),
            Err(XenErrno::EINVAL)
        );
        // Not RAM.
        assert_eq!(
            register_info(&vm, Abi::X86_64, 0, RAM_SIZE / PAGE_SIZE, 0),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(vm.domain.lock().vcpus[0].vcpu_info_gpa, None);
    }

    #[test]
    fn test_register_vcpu_info_crossing_or_misaligned_enxio() {
        let (vm, _) = setup(1);
        assert_eq!(
            register_info(&vm, Abi::X86_64, 0, 0x20, 4032 + 8),
            Err(XenErrno::ENXIO)
        );
        assert_eq!(
            register_info(&vm, Abi::X86_64, 0, 0x20, 0x44),
            Err(XenErrno::ENXIO)
        );
        vm.domain.lock().long_mode = false;
        assert_eq!(
            register_info(&vm, Abi::X86_32, 0, 0x20, 0x42),
            Err(XenErrno::ENXIO)
        );
        assert_eq!(register_info(&vm, Abi::X86_32, 0, 0x20, 4032), Ok(0));
    }

    #[test]
    fn test_register_vcpu_info_twice_ebusy() {
        let (vm, _) = setup(2);
        assert_eq!(register_info(&vm, Abi::X86_64, 1, 0x20, 0), Ok(0));
        assert_eq!(
            register_info(&vm, Abi::X86_64, 1, 0x21, 0),
            Err(XenErrno::EBUSY)
        );
        // Another vCPU may register for a vCPU (Xen pauses it).
        vm.write(
            ARG,
            VcpuRegisterVcpuInfo {
                mfn: 0x22,
                offset: 0,
                rsvd: 0,
            },
        );
        assert_eq!(
            op(&vm, 1, Abi::X86_64, Cmd::RegisterVcpuInfo, 0, ARG),
            Ok(0)
        );
        assert_eq!(vm.domain.lock().vcpus[0].vcpu_info_gpa, Some(0x22000));
    }

    #[test]
    fn test_register_vcpu_info_bad_pointer_efault() {
        let (vm, _) = setup(1);
        assert_eq!(
            op(&vm, 0, Abi::X86_64, Cmd::RegisterVcpuInfo, 0, RAM_SIZE),
            Err(XenErrno::EFAULT)
        );
    }

    fn runstate_at(vm: &TestVm, parts: &[(u64, usize)]) -> Vec<u8> {
        parts
            .iter()
            .flat_map(|&(g, n)| vm.read_bytes(g, n))
            .collect()
    }

    /// A runstate area 15 bytes before a page end, the next page remapped
    /// elsewhere, in both layouts: times add up after every change and the
    /// update flag is clear, no byte past the structure is touched.
    #[test]
    fn test_runstate_area_straddling_pages_times_add_up_both_layouts() {
        for long in [true, false] {
            let (mut vm, vop) = setup(2);
            let (p1, p2) = (0x30_0000, 0x28_0000);
            paged(&mut vm, &[(0x10000, p1), (0x11000, p2)]);
            vm.write_bytes(p1, &[0xcc; 4096]);
            vm.write_bytes(p2, &[0xcc; 4096]);
            {
                let mut st = vm.domain.lock();
                st.long_mode = long;
                st.vm_assist = 1 << 5;
            }
            let gva = 0x11000 - 15;
            let abi = if long { Abi::X86_64 } else { Abi::X86_32 };
            vm.write(ARG, gva);
            assert_eq!(
                op(&vm, 1, abi, Cmd::RegisterRunstateMemoryArea, 1, ARG),
                Ok(0)
            );
            let size = if long { 48 } else { 44 };
            let parts = [(p1 + 4096 - 15, 15), (p2, size - 15)];
            let decode = |b: &[u8]| -> VcpuRunstateInfo {
                if long {
                    VcpuRunstateInfo::from_slice(b).copied().unwrap()
                } else {
                    VcpuRunstateInfoCompat::from_slice(b)
                        .copied()
                        .unwrap()
                        .into()
                }
            };
            let r = decode(&runstate_at(&vm, &parts));
            assert_eq!((r.state, r.state_entry_time, r.time), (0, 0, [0; 4]));
            let steps = [
                (RunstateState::Runnable, 1_000),
                (RunstateState::Running, 1_500),
                (RunstateState::Blocked, 4_000),
                (RunstateState::Offline, 4_001),
                (RunstateState::Running, 9_000),
            ];
            for (s, now) in steps {
                assert!(vop.runstates().set_state(&vm.domain, &vm.mem, 1, s, now));
                let r = decode(&runstate_at(&vm, &parts));
                assert_eq!(r.state_entry_time & XEN_RUNSTATE_UPDATE, 0);
                assert_eq!((r.state, r.state_entry_time), (s.raw(), now));
                assert_eq!(r.time.iter().sum::<u64>(), r.state_entry_time);
            }
            assert_eq!(vm.read_bytes(p2 + size as u64 - 15, 8), [0xcc; 8]);
            assert_eq!(vm.read_bytes(p1 + 4096 - 23, 8), [0xcc; 8]);
            // The frame the identity mapping would have used is untouched.
            assert_eq!(vm.read_bytes(0x11000, 8), [0; 8]);
            let rec = vm.domain.lock().vcpus[1].runstate.unwrap();
            assert_eq!((rec.addr, rec.physical, rec.long_mode), (gva, false, long));
        }
    }

    #[test]
    fn test_runstate_area_latched_layout_change_rewrites_64_bit_layout() {
        let (vm, vop) = setup(1);
        vm.domain.lock().long_mode = false;
        vm.write(ARG, 0x7000u32);
        assert_eq!(
            op(&vm, 0, Abi::X86_32, Cmd::RegisterRunstateMemoryArea, 0, ARG),
            Ok(0)
        );
        vop.runstates()
            .set_state(&vm.domain, &vm.mem, 0, RunstateState::Blocked, 10);
        let c: VcpuRunstateInfoCompat = vm.read(0x7000);
        assert_eq!(({ c.state_entry_time }, { c.time }), (10, [10, 0, 0, 0]));
        vm.domain.lock().long_mode = true;
        assert!(vop.runstates().write(&vm.domain, &vm.mem, 0));
        let r: VcpuRunstateInfo = vm.read(0x7000);
        assert_eq!(
            (r.state, r.state_entry_time, r.time),
            (2, 10, [10, 0, 0, 0])
        );
    }

    #[test]
    fn test_runstate_memory_area_null_unregisters_and_bad_area_efault() {
        let (vm, vop) = setup(1);
        vm.write(ARG, 0x7000u64);
        assert_eq!(
            op(&vm, 0, Abi::X86_64, Cmd::RegisterRunstateMemoryArea, 0, ARG),
            Ok(0)
        );
        vm.write(ARG, 0u64);
        assert_eq!(
            op(&vm, 0, Abi::X86_64, Cmd::RegisterRunstateMemoryArea, 0, ARG),
            Ok(0)
        );
        assert_eq!(vm.domain.lock().vcpus[0].runstate, None);
        assert_eq!(vop.runstates().get(&vm.domain, 0).unwrap().area, None);
        vop.runstates()
            .set_state(&vm.domain, &vm.mem, 0, RunstateState::Blocked, 10);
        assert_eq!(vm.read::<u64>(0x7008), 0);
        // Unmapped area and unreadable argument.
        vm.write(ARG, RAM_SIZE + 0x1000);
        assert_eq!(
            op(&vm, 0, Abi::X86_64, Cmd::RegisterRunstateMemoryArea, 0, ARG),
            Err(XenErrno::EFAULT)
        );
        assert_eq!(
            op(
                &vm,
                0,
                Abi::X86_32,
                Cmd::RegisterRunstateMemoryArea,
                0,
                RAM_SIZE - 2
            ),
            Err(XenErrno::EFAULT)
        );
        // The compat handle is 4 bytes: the last 4 bytes of RAM suffice.
        vm.write(RAM_SIZE - 4, 0x7100u32);
        assert_eq!(
            op(
                &vm,
                0,
                Abi::X86_32,
                Cmd::RegisterRunstateMemoryArea,
                0,
                RAM_SIZE - 4
            ),
            Ok(0)
        );
    }

    #[test]
    fn test_runstate_phys_area_registers_fills_and_unregisters() {
        let (vm, vop) = setup(2);
        vm.clock.set(50);
        vop.runstates()
            .set_state(&vm.domain, &vm.mem, 1, RunstateState::Runnable, 20);
        vm.write(ARG, 0x8010u64);
        assert_eq!(
            op(&vm, 0, Abi::X86_32, Cmd::RegisterRunstatePhysArea, 1, ARG),
            Ok(0)
        );
        let c: VcpuRunstateInfoCompat = vm.read(0x8010);
        assert_eq!(
            (c.state, { c.state_entry_time }, { c.time }),
            (1, 20, [20, 0, 0, 0])
        );
        assert_eq!(vm.read::<u32>(0x8010 + 44), 0);
        // A virtual NULL leaves the physical area alone; ~0 removes it.
        vm.write(ARG, 0u64);
        assert_eq!(
            op(&vm, 1, Abi::X86_64, Cmd::RegisterRunstateMemoryArea, 1, ARG),
            Ok(0)
        );
        assert!(vop.runstates().get(&vm.domain, 1).unwrap().area.is_some());
        vm.write(ARG, u64::MAX);
        assert_eq!(
            op(&vm, 1, Abi::X86_64, Cmd::RegisterRunstatePhysArea, 1, ARG),
            Ok(0)
        );
        assert_eq!(vop.runstates().get(&vm.domain, 1).unwrap().area, None);
        assert_eq!(vm.domain.lock().vcpus[1].runstate, None);
    }

    #[test]
    fn test_runstate_phys_area_errors() {
        let (vm, _) = setup(1);
        let reg = |gpa: u64, abi| {
            vm.write(ARG, gpa);
            op(&vm, 0, abi, Cmd::RegisterRunstatePhysArea, 0, ARG)
        };
        assert_eq!(reg(0x8000 + 4096 - 40, Abi::X86_64), Err(XenErrno::ENXIO));
        assert_eq!(reg(0x8000 + 4096 - 48, Abi::X86_64), Ok(0));
        assert_eq!(reg(0x8004, Abi::X86_64), Err(XenErrno::ENXIO));
        assert_eq!(reg(RAM_SIZE, Abi::X86_64), Err(XenErrno::EINVAL));
        assert_eq!(reg(u64::MAX - 8, Abi::X86_64), Err(XenErrno::ENXIO));
        vm.domain.lock().long_mode = false;
        assert_eq!(reg(0x8000 + 4096 - 44, Abi::X86_32), Ok(0));
        assert_eq!(reg(0x8002, Abi::X86_32), Err(XenErrno::ENXIO));
        assert_eq!(
            op(
                &vm,
                0,
                Abi::X86_32,
                Cmd::RegisterRunstatePhysArea,
                0,
                RAM_SIZE - 4
            ),
            Err(XenErrno::EFAULT)
        );
    }

    #[test]
    fn test_get_runstate_info_both_layouts_and_efault() {
        let (vm, vop) = setup(2);
        vop.runstates()
            .set_state(&vm.domain, &vm.mem, 1, RunstateState::Blocked, 100);
        vm.clock.set(130);
        assert_eq!(op(&vm, 0, Abi::X86_64, Cmd::GetRunstateInfo, 1, ARG), Ok(0));
        let r: VcpuRunstateInfo = vm.read(ARG);
        assert_eq!(
            (r.state, r.state_entry_time, r.time),
            (2, 100, [100, 0, 30, 0])
        );
        vm.write_bytes(ARG, &[0xcc; 48]);
        assert_eq!(op(&vm, 0, Abi::X86_32, Cmd::GetRunstateInfo, 1, ARG), Ok(0));
        let c: VcpuRunstateInfoCompat = vm.read(ARG);
        assert_eq!(({ c.state_entry_time }, { c.time }), (100, [100, 0, 30, 0]));
        assert_eq!(vm.read_bytes(ARG + 44, 4), [0xcc; 4]);
        assert_eq!(
            op(&vm, 0, Abi::X86_64, Cmd::GetRunstateInfo, 1, RAM_SIZE - 8),
            Err(XenErrno::EFAULT)
        );
    }

    #[test]
    fn test_time_memory_area_filled_null_unregisters_and_errors() {
        let (mut vm, _) = setup(1);
        vm.clock.set(99);
        vm.write(ARG, 0x9000u64);
        assert_eq!(
            op(&vm, 0, Abi::X86_64, Cmd::RegisterVcpuTimeMemoryArea, 0, ARG),
            Ok(0)
        );
        let t: VcpuTimeInfo = vm.read(0x9000);
        assert_eq!((t.version, t.system_time), (2, 99));
        let area = vm.domain.lock().vcpus[0].time_area.unwrap();
        assert_eq!((area.addr, area.physical), (0x9000, true));
        vm.write(ARG, 0u32);
        assert_eq!(
            op(&vm, 0, Abi::X86_32, Cmd::RegisterVcpuTimeMemoryArea, 0, ARG),
            Ok(0)
        );
        assert_eq!(vm.domain.lock().vcpus[0].time_area, None);
        // Contiguous straddle is fine; discontiguous is -EFAULT.
        vm.write(ARG, 0x9ff0u64);
        assert_eq!(
            op(&vm, 0, Abi::X86_64, Cmd::RegisterVcpuTimeMemoryArea, 0, ARG),
            Ok(0)
        );
        assert_eq!(vm.read::<u64>(0xa000), 99);
        paged(&mut vm, &[(0x11000, 0x30_0000)]);
        vm.write(ARG, 0x10ff0u64);
        assert_eq!(
            op(&vm, 0, Abi::X86_64, Cmd::RegisterVcpuTimeMemoryArea, 0, ARG),
            Err(XenErrno::EFAULT)
        );
        vm.write(ARG, 0x40_0000u64);
        assert_eq!(
            op(&vm, 0, Abi::X86_64, Cmd::RegisterVcpuTimeMemoryArea, 0, ARG),
            Err(XenErrno::EFAULT)
        );
    }

    #[test]
    fn test_time_phys_area_filled_unregistered_and_errors() {
        let (vm, _) = setup(1);
        let reg = |gpa: u64| {
            vm.write(ARG, gpa);
            op(&vm, 0, Abi::X86_64, Cmd::RegisterVcpuTimePhysArea, 0, ARG)
        };
        assert_eq!(reg(0x9008), Ok(0));
        assert_eq!(vm.read::<u32>(0x9008), 2);
        assert_eq!(reg(u64::MAX), Ok(0));
        assert_eq!(vm.domain.lock().vcpus[0].time_area, None);
        assert_eq!(reg(0x9ff0), Err(XenErrno::ENXIO));
        assert_eq!(reg(0x9004), Err(XenErrno::ENXIO));
        assert_eq!(reg(RAM_SIZE + 0x100), Err(XenErrno::EINVAL));
    }

    #[test]
    fn test_set_periodic_timer_bounds_and_stop() {
        let (vm, _) = setup(2);
        let set = |period: u64| {
            vm.write(ARG, period);
            op(&vm, 0, Abi::X86_64, Cmd::SetPeriodicTimer, 1, ARG)
        };
        assert_eq!(set(999_999), Err(XenErrno::EINVAL));
        assert_eq!(set(PERIODIC_TIMER_MAX_NS + 1), Err(XenErrno::EINVAL));
        assert!(vm.rec.take().is_empty());
        assert_eq!(set(1_000_000), Ok(0));
        assert_eq!(set(PERIODIC_TIMER_MAX_NS), Ok(0));
        assert_eq!(
            vm.domain.lock().vcpus[1].periodic_ns,
            Some(PERIODIC_TIMER_MAX_NS)
        );
        assert_eq!(op(&vm, 0, Abi::X86_32, Cmd::StopPeriodicTimer, 1, 0), Ok(0));
        assert_eq!(
            vm.rec.take(),
            [
                Event::Periodic(1, Some(1_000_000)),
                Event::Periodic(1, Some(PERIODIC_TIMER_MAX_NS)),
                Event::Periodic(1, None),
            ]
        );
        assert_eq!(vm.domain.lock().vcpus[1].periodic_ns, None);
        assert_eq!(
            op(&vm, 0, Abi::X86_64, Cmd::SetPeriodicTimer, 1, RAM_SIZE),
            Err(XenErrno::EFAULT)
        );
    }

    #[test]
    fn test_set_singleshot_timer_both_layouts_past_deadline_armed() {
        let (vm, _) = setup(2);
        vm.clock.set(1_000);
        vm.write(
            ARG,
            VcpuSetSingleshotTimer {
                timeout_abs_ns: 5_000,
                flags: 0,
                pad: 0,
            },
        );
        assert_eq!(
            op(&vm, 1, Abi::X86_64, Cmd::SetSingleshotTimer, 1, ARG),
            Ok(0)
        );
        // Past deadline with VCPU_SSHOTTMR_future: still 0, armed as given.
        vm.write(
            ARG,
            VcpuSetSingleshotTimerCompat {
                timeout_abs_ns: 500,
                flags: 1,
            },
        );
        assert_eq!(
            op(&vm, 1, Abi::X86_32, Cmd::SetSingleshotTimer, 1, ARG),
            Ok(0)
        );
        assert_eq!(vm.domain.lock().vcpus[1].singleshot_ns, Some(500));
        assert_eq!(
            op(&vm, 1, Abi::X86_64, Cmd::StopSingleshotTimer, 1, 0),
            Ok(0)
        );
        assert_eq!(
            vm.rec.take(),
            [
                Event::Singleshot(1, Some(5_000)),
                Event::Singleshot(1, Some(500)),
                Event::Singleshot(1, None),
            ]
        );
        assert_eq!(vm.domain.lock().vcpus[1].singleshot_ns, None);
    }

    #[test]
    fn test_singleshot_timer_other_vcpu_einval_and_bad_pointer_efault() {
        let (vm, _) = setup(2);
        assert_eq!(
            op(&vm, 0, Abi::X86_64, Cmd::SetSingleshotTimer, 1, ARG),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            op(&vm, 0, Abi::X86_64, Cmd::StopSingleshotTimer, 1, 0),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(
            op(
                &vm,
                0,
                Abi::X86_32,
                Cmd::SetSingleshotTimer,
                0,
                RAM_SIZE - 8
            ),
            Err(XenErrno::EFAULT)
        );
        assert!(vm.rec.take().is_empty());
    }

    #[test]
    fn test_down_up_is_up_and_last_vcpu_powers_off() {
        let (vm, vop) = setup(2);
        assert_eq!(op(&vm, 0, Abi::X86_64, Cmd::IsUp, 1, 0), Ok(1));
        vm.clock.set(70);
        assert_eq!(op(&vm, 1, Abi::X86_64, Cmd::Down, 1, 0), Ok(0));
        assert_eq!(op(&vm, 0, Abi::X86_32, Cmd::IsUp, 1, 0), Ok(0));
        let rs = vop.runstates().get(&vm.domain, 1).unwrap().tracker;
        assert_eq!(
            (rs.state, rs.state_entry_time),
            (RunstateState::Offline, 70)
        );
        // vCPU 0 is the last one up: the domain powers off, vCPU 0 stays up.
        vm.domain.lock().shutdown_code = Some(3);
        assert_eq!(op(&vm, 0, Abi::X86_64, Cmd::Down, 0, 0), Ok(0));
        assert_eq!(
            vm.rec.take(),
            [Event::Shutdown(ShutdownReason::Poweroff, Some(3))]
        );
        assert_eq!(op(&vm, 0, Abi::X86_64, Cmd::IsUp, 0, 0), Ok(1));
        assert_eq!(op(&vm, 0, Abi::X86_64, Cmd::Up, 1, 0), Ok(0));
        assert_eq!(op(&vm, 0, Abi::X86_64, Cmd::IsUp, 1, 0), Ok(1));
        assert_eq!(op(&vm, 0, Abi::X86_64, Cmd::Up, 1, 0), Ok(0));
        let rs = vop.runstates().get(&vm.domain, 1).unwrap().tracker;
        assert_eq!(rs.state, RunstateState::Running);
    }

    #[test]
    fn test_initialise_initialised_vcpu_eexist_bad_pointer_efault() {
        let (vm, _) = setup(2);
        assert_eq!(
            op(&vm, 0, Abi::X86_64, Cmd::Initialise, 1, ARG),
            Err(XenErrno::EEXIST)
        );
        assert_eq!(
            op(&vm, 0, Abi::X86_64, Cmd::Initialise, 1, RAM_SIZE - 64),
            Err(XenErrno::EFAULT)
        );
    }

    proptest! {
        #[test]
        fn test_vcpu_op_arbitrary_args_and_memory_never_panic(
            cmd in 0u64..20,
            vcpuid in prop_oneof![0u64..3, any::<u64>()],
            arg in prop_oneof![0u64..0x2_0000, any::<u64>()],
            abi64 in any::<bool>(),
            long_mode in any::<bool>(),
            // Arbitrary GFNs overflow `Domain::vcpu_info_gpa` (domain.rs); real
            // ones come from XENMEM_add_to_physmap and are RAM frames.
            shinfo in prop_oneof![Just(None), Just(Some(SHINFO_GFN)), (0u64..1 << 40).prop_map(Some)],
            bytes in proptest::collection::vec(any::<u8>(), 64),
            caller in 0u32..2,
        ) {
            let (vm, vop) = setup(2);
            {
                let mut st = vm.domain.lock();
                st.long_mode = long_mode;
                st.shared_info_gfn = shinfo;
                st.vm_assist = u64::from(bytes[0]);
            }
            vm.write_bytes(ARG, &bytes);
            if arg < RAM_SIZE - 64 {
                vm.write_bytes(arg, &bytes);
            }
            let abi = if abi64 { Abi::X86_64 } else { Abi::X86_32 };
            let _ = vm.call(caller, abi, HypercallNr::VcpuOp, &[cmd, vcpuid, arg]);
            let _ = vm.call(caller, abi, HypercallNr::VcpuOp, &[cmd, vcpuid, ARG]);
            vop.runstates().set_state(&vm.domain, &vm.mem, caller, RunstateState::Blocked, arg);
            let _ = update_vcpu_time(&vm.domain, &vm.mem, caller);
        }
    }
}
