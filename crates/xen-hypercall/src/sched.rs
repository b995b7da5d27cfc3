// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `sched_op` (hypercall 29) and `set_timer_op` (hypercall 15).
//!
//! Follows Xen's public `sched.h`, `xen-abi.md` §3.10 (sched_op, sched_poll)
//! and §1.3 (set_timer_op), with the semantics of Xen's `do_sched_op`,
//! `do_poll`, `domain_watchdog` and `do_set_timer_op`
//! (`xen/common/sched/core.c`). Both ABIs are handled.
//!
//! Scheduling requests go to the VMM through [`crate::env::DomainEvents`]
//! (`yield_vcpu`, `block`, `shutdown`) and timers through
//! [`crate::env::Timers`]. `SCHEDOP_poll` returns at once when a listed port
//! is pending in shared_info's 2-level bitmap; otherwise it blocks the vCPU
//! until its timeout. Waking a poller when a listed port becomes pending
//! (Xen's `evtchn_port_poll` path) arrives with event channels: until then
//! the VMM's `block` returns on any event for the vCPU or at the deadline,
//! which the ABI allows (spurious wake-ups are permitted).
//!
//! Where we differ from Xen, and from QEMU:
//! * `SCHEDOP_shutdown` with a reason beyond `SHUTDOWN_MAX` is -EINVAL (as
//!   QEMU); Xen accepts any value truncated to 8 bits. QEMU also refuses
//!   suspend and watchdog; we report every defined reason to the VMM with
//!   the latched `shutdown_code` and return 0. Xen makes the latched code
//!   the effective reason, so a VMM should prefer the code when present.
//!   After `suspend` and `soft_reset`, which the domain survives, the latch
//!   is cleared as Xen's `domain_resume()` does.
//! * `SHUTDOWN_suspend` returns 0, the value Xen's hypercall itself returns:
//!   a guest reads 0 as "resumed in a new domain" and re-registers
//!   everything. Xen's toolstack rewrites it to 1 when it resumes the same
//!   domain (checkpoint or cancelled suspend); a VMM continuing in place must
//!   do the same in the guest's RAX.
//! * `SCHEDOP_poll` does not return early merely because an upcall is
//!   pending (Xen's `local_events_need_delivery()`); the VMM's `block`
//!   does that. QEMU treats poll as yield.
//! * `SCHEDOP_watchdog` deadlines are kept here; the VMM polls
//!   [`SchedOp::expired_watchdog`] (or arms a timer at
//!   [`SchedOp::watchdog_deadline`]) and shuts the domain down with
//!   `SHUTDOWN_watchdog`. QEMU answers -ENOSYS.
//! * `SCHEDOP_remote_shutdown` is -EPERM for this domain or dom0 (Xen's XSM
//!   answer for an unprivileged caller), -ESRCH for any other domain id.

use std::sync::{Arc, Mutex};

use vm_memory::GuestMemoryBackend;
use xen_abi::errno::XenErrno;
use xen_abi::event_channel::{
    EVTCHN_2L_NR_CHANNELS, EVTCHN_2L_NR_CHANNELS_COMPAT, EVTCHN_FIFO_NR_CHANNELS,
};
use xen_abi::sched::{
    SCHED_POLL_MAX_PORTS, SCHED_WATCHDOG_SLOTS, SchedOp as Cmd, SchedPoll, SchedPollCompat,
    SchedRemoteShutdown, SchedShutdown, SchedWatchdog, ShutdownReason,
};
use xen_abi::xen::{SET_TIMER_OP_FALLBACK_NS, SET_TIMER_OP_MAX_FUTURE_NS};
use xen_evtchn::EventChannels;

use crate::call::{Abi, HcResult, Hypercall};
use crate::dispatch::{Ctx, Family};
use xen_abi::warn_limited;

const NS_PER_SEC: u64 = 1_000_000_000;

/// One `SCHEDOP_watchdog` slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Watchdog {
    /// The guest holds this slot (its id is the index plus one).
    pub in_use: bool,
    /// Expiry (system time, ns); `None` once it fired.
    pub deadline: Option<u64>,
}

/// A snapshot of the `sched_op` family: the domain's watchdog slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct State {
    /// Slot `i` answers to watchdog id `i + 1`.
    pub watchdogs: [Watchdog; SCHED_WATCHDOG_SLOTS as usize],
}

/// The `sched_op` family. Keeps the domain's two watchdog slots;
/// `SCHEDOP_poll` asks the domain's event channels which ports are pending,
/// in either event-channel ABI.
pub struct SchedOp {
    watchdogs: Mutex<[Watchdog; SCHED_WATCHDOG_SLOTS as usize]>,
    channels: Arc<EventChannels>,
}

impl std::fmt::Debug for SchedOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedOp")
            .field("watchdogs", &self.watchdogs)
            .finish_non_exhaustive()
    }
}

impl SchedOp {
    /// The family over the domain's event channels, no watchdog armed.
    pub fn new(channels: Arc<EventChannels>) -> Self {
        Self {
            watchdogs: Mutex::default(),
            channels,
        }
    }

    /// Handles `sched_op(cmd, arg)` from `ctx.vcpu`.
    pub fn sched_op<M: GuestMemoryBackend>(
        &self,
        ctx: &mut Ctx<'_, M>,
        cmd: u32,
        arg: u64,
    ) -> HcResult {
        let Ok(op) = Cmd::try_from(cmd) else {
            warn_limited!("vCPU {}: unknown sched_op command {cmd}", ctx.vcpu);
            return Err(XenErrno::ENOSYS);
        };
        let events = &ctx.domain.env.events;
        match op {
            Cmd::Yield => {
                events.yield_vcpu(ctx.vcpu);
                Ok(0)
            }
            Cmd::Block => {
                events.block(ctx.vcpu, None);
                Ok(0)
            }
            Cmd::Shutdown => {
                let s: SchedShutdown = ctx.read(arg)?;
                let Ok(reason) = s.shutdown_reason() else {
                    warn_limited!("vCPU {}: shutdown reason {} refused", ctx.vcpu, s.reason);
                    return Err(XenErrno::EINVAL);
                };
                let code = ctx.domain.lock().shutdown_code;
                events.shutdown(reason, code);
                if matches!(reason, ShutdownReason::Suspend | ShutdownReason::SoftReset) {
                    ctx.domain.lock().shutdown_code = None;
                }
                Ok(0)
            }
            Cmd::ShutdownCode => {
                let s: SchedShutdown = ctx.read(arg)?;
                // Xen keeps `(u8)reason`, first one wins.
                let mut st = ctx.domain.lock();
                if st.shutdown_code.is_none() {
                    st.shutdown_code = Some(u32::from(s.reason as u8));
                }
                Ok(0)
            }
            Cmd::Poll => poll(ctx, arg, &self.channels),
            Cmd::RemoteShutdown => {
                let r: SchedRemoteShutdown = ctx.read(arg)?;
                if r.domain_id == ctx.domain.config().domid || r.domain_id == 0 {
                    warn_limited!(
                        "vCPU {}: remote_shutdown of domain {} refused",
                        ctx.vcpu,
                        r.domain_id
                    );
                    Err(XenErrno::EPERM)
                } else {
                    Err(XenErrno::ESRCH)
                }
            }
            Cmd::Watchdog => {
                let w: SchedWatchdog = ctx.read(arg)?;
                let now = ctx.domain.env.clock.system_time_ns();
                let r = self.watchdog(w.id, w.timeout, now);
                ctx.domain.env.timers.set_watchdog(self.watchdog_deadline());
                r
            }
            Cmd::PinOverride => Err(XenErrno::EPERM),
        }
    }

    /// Xen's `domain_watchdog()`: id 0 takes a free slot (returning its
    /// 1-based id, -ENOSPC if none); otherwise a timeout of 0 frees the slot
    /// and any other value re-arms it; an id that is out of range or not in
    /// use is -EINVAL. Timeouts are in seconds from `now_ns`.
    fn watchdog(&self, id: u32, timeout: u32, now_ns: u64) -> HcResult {
        if id > SCHED_WATCHDOG_SLOTS {
            return Err(XenErrno::EINVAL);
        }
        let deadline = now_ns.saturating_add(u64::from(timeout) * NS_PER_SEC);
        let mut slots = self.watchdogs.lock().unwrap_or_else(|e| e.into_inner());
        if id == 0 {
            let (i, slot) = slots
                .iter_mut()
                .enumerate()
                .find(|(_, s)| !s.in_use)
                .ok_or(XenErrno::ENOSPC)?;
            *slot = Watchdog {
                in_use: true,
                deadline: Some(deadline),
            };
            return Ok(i as u64 + 1);
        }
        let slot = &mut slots[id as usize - 1];
        if !slot.in_use {
            return Err(XenErrno::EINVAL);
        }
        if timeout == 0 {
            *slot = Watchdog::default();
        } else {
            slot.deadline = Some(deadline);
        }
        Ok(0)
    }

    /// Whether a watchdog expired at or before `now_ns` (system time). Each
    /// expiry is reported once: the slot stays in use but disarmed until the
    /// guest re-arms it, like Xen's one-shot watchdog timer. On `true` the
    /// VMM shuts the domain down with `SHUTDOWN_watchdog`.
    pub fn expired_watchdog(&self, now_ns: u64) -> bool {
        let mut slots = self.watchdogs.lock().unwrap_or_else(|e| e.into_inner());
        let mut expired = false;
        for s in slots.iter_mut().filter(|s| s.in_use) {
            if s.deadline.is_some_and(|d| d <= now_ns) {
                s.deadline = None;
                expired = true;
            }
        }
        expired
    }

    /// A snapshot of the watchdog slots.
    pub fn state(&self) -> State {
        State {
            watchdogs: *self.watchdogs.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Replaces the watchdog slots with a snapshot (deadlines are in the
    /// domain's system time, which the VMM's clock continues).
    pub fn restore(&self, state: &State) {
        *self.watchdogs.lock().unwrap_or_else(|e| e.into_inner()) = state.watchdogs;
    }

    /// The earliest armed watchdog deadline (system time, ns), for a VMM
    /// that arms a timer instead of polling.
    pub fn watchdog_deadline(&self) -> Option<u64> {
        let slots = self.watchdogs.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .filter(|s| s.in_use)
            .filter_map(|s| s.deadline)
            .min()
    }
}

impl<M: GuestMemoryBackend> Family<M> for SchedOp {
    fn call(&self, ctx: &mut Ctx<'_, M>, call: &Hypercall) -> HcResult {
        // `int cmd`: the low 32 bits of the register.
        self.sched_op(ctx, call.arg(0) as u32, call.arg(1))
    }
}

/// `SCHEDOP_poll`, as Xen's `do_poll()`: ports are read one at a time; a
/// fault is -EFAULT, a port beyond the ABI's limit (2-level: by the latched
/// layout; FIFO) -EINVAL, and the first pending port ends the call with 0
/// (later ports are not looked at).
fn poll<M: GuestMemoryBackend>(ctx: &Ctx<'_, M>, arg: u64, channels: &EventChannels) -> HcResult {
    let p: SchedPoll = match ctx.abi {
        Abi::X86_64 => ctx.read(arg)?,
        Abi::X86_32 => ctx.read::<SchedPollCompat>(arg)?.into(),
    };
    if p.nr_ports > SCHED_POLL_MAX_PORTS {
        warn_limited!("vCPU {}: poll of {} ports refused", ctx.vcpu, p.nr_ports);
        return Err(XenErrno::EINVAL);
    }
    let limit = match (channels.is_fifo(), ctx.domain.lock().long_mode) {
        (true, _) => EVTCHN_FIFO_NR_CHANNELS,
        (false, true) => EVTCHN_2L_NR_CHANNELS,
        (false, false) => EVTCHN_2L_NR_CHANNELS_COMPAT,
    };
    for i in 0..u64::from(p.nr_ports) {
        let at = ctx.abi.word(p.ports.wrapping_add(4 * i));
        let port: u32 = ctx.read(at)?;
        if port >= limit {
            warn_limited!("vCPU {}: poll of port {port} refused", ctx.vcpu);
            return Err(XenErrno::EINVAL);
        }
        if channels.pending(ctx.phys(), port) {
            return Ok(0);
        }
    }
    let deadline = (p.timeout != 0).then_some(p.timeout);
    ctx.domain.env.events.block(ctx.vcpu, deadline);
    Ok(0)
}

/// The `set_timer_op` family: `set_timer_op(u64 absolute_ns)` arms or (0)
/// cancels the calling vCPU's single-shot timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetTimerOp;

impl SetTimerOp {
    /// The deadline Xen arms for `timeout` at `now_ns`: `None` for 0 (cancel);
    /// now + 100 ms for a value with bit 63 set or at least 2^50 ns ahead
    /// (Xen's "Linux workaround" for wrapped jiffies); else `timeout` itself,
    /// even when already past (the timer then fires at once).
    pub fn deadline(timeout: u64, now_ns: u64) -> Option<u64> {
        if timeout == 0 {
            return None;
        }
        // Xen: `offset > 0 && (uint32_t)(offset >> 50) != 0`, in s_time_t.
        let offset = (timeout as i64).wrapping_sub(now_ns as i64);
        if (timeout as i64) < 0 || offset >= SET_TIMER_OP_MAX_FUTURE_NS as i64 {
            return Some(now_ns.saturating_add(SET_TIMER_OP_FALLBACK_NS));
        }
        Some(timeout)
    }

    /// Handles `set_timer_op(timeout)` from `ctx.vcpu`; always 0.
    pub fn set_timer_op<M: GuestMemoryBackend>(
        &self,
        ctx: &mut Ctx<'_, M>,
        timeout: u64,
    ) -> HcResult {
        let now = ctx.domain.env.clock.system_time_ns();
        let deadline = Self::deadline(timeout, now);
        if deadline.is_some_and(|d| d != timeout) {
            warn_limited!("vCPU {}: huge set_timer_op timeout {timeout:#x}", ctx.vcpu);
        }
        if let Some(v) = ctx.domain.lock().vcpus.get_mut(ctx.vcpu as usize) {
            v.singleshot_ns = deadline;
        }
        ctx.domain.env.timers.set_singleshot(ctx.vcpu, deadline);
        Ok(0)
    }
}

impl<M: GuestMemoryBackend> Family<M> for SetTimerOp {
    fn call(&self, ctx: &mut Ctx<'_, M>, call: &Hypercall) -> HcResult {
        // One register in the 64-bit ABI, EBX (low) and ECX (high) in 32-bit.
        self.set_timer_op(ctx, call.arg_u64(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Event, RAM_SIZE, TestVm};
    use proptest::prelude::*;
    use xen_abi::x86::PAGE_SIZE;
    use xen_abi::xen::HypercallNr;

    const SHINFO_GFN: u64 = 0x10;
    const SHINFO: u64 = SHINFO_GFN * PAGE_SIZE;
    const ARG: u64 = 0x5000;
    const PORTS: u64 = 0x6000;

    fn channels(vm: &TestVm) -> Arc<EventChannels> {
        let config = vm.domain.config().evtchn();
        Arc::new(EventChannels::new(config, vm.domain.clone(), vm.upcalls.clone()).unwrap())
    }

    fn setup(vcpus: u32) -> (TestVm, Arc<SchedOp>) {
        let mut vm = TestVm::new(vcpus);
        let op = Arc::new(SchedOp::new(channels(&vm)));
        vm.dispatcher.register(HypercallNr::SchedOp, op.clone());
        vm.dispatcher
            .register(HypercallNr::SetTimerOp, Arc::new(SetTimerOp));
        (vm, op)
    }

    fn sched(vm: &TestVm, vcpu: u32, abi: Abi, cmd: Cmd, arg: u64) -> HcResult {
        vm.call(
            vcpu,
            abi,
            HypercallNr::SchedOp,
            &[u64::from(cmd.raw()), arg],
        )
    }

    fn shutdown(vm: &TestVm, cmd: Cmd, reason: u32) -> HcResult {
        vm.write(ARG, SchedShutdown { reason });
        sched(vm, 0, Abi::X86_64, cmd, ARG)
    }

    #[test]
    fn test_sched_op_yield_and_block_reach_vmm() {
        let (vm, _) = setup(2);
        assert_eq!(sched(&vm, 1, Abi::X86_64, Cmd::Yield, 0), Ok(0));
        assert_eq!(sched(&vm, 1, Abi::X86_32, Cmd::Block, 0), Ok(0));
        assert_eq!(vm.rec.take(), [Event::Yield(1), Event::Block(1, None)]);
    }

    #[test]
    fn test_sched_op_unknown_command_enosys() {
        let (vm, _) = setup(1);
        assert_eq!(
            vm.call(0, Abi::X86_64, HypercallNr::SchedOp, &[8, 0]),
            Err(XenErrno::ENOSYS)
        );
        assert_eq!(
            sched(&vm, 0, Abi::X86_64, Cmd::PinOverride, ARG),
            Err(XenErrno::EPERM)
        );
    }

    #[test]
    fn test_shutdown_every_reason_reported_with_code() {
        let (vm, _) = setup(1);
        for &r in ShutdownReason::ALL {
            assert_eq!(shutdown(&vm, Cmd::Shutdown, r.raw()), Ok(0));
            assert_eq!(vm.rec.take(), [Event::Shutdown(r, None)]);
        }
        assert_eq!(shutdown(&vm, Cmd::Shutdown, 6), Err(XenErrno::EINVAL));
        assert!(vm.rec.take().is_empty());
        assert_eq!(
            sched(&vm, 0, Abi::X86_32, Cmd::Shutdown, RAM_SIZE - 2),
            Err(XenErrno::EFAULT)
        );
    }

    #[test]
    fn test_shutdown_code_first_wins_and_cleared_by_suspend() {
        let (vm, _) = setup(1);
        assert_eq!(shutdown(&vm, Cmd::ShutdownCode, 3), Ok(0));
        assert_eq!(shutdown(&vm, Cmd::ShutdownCode, 1), Ok(0));
        assert_eq!(vm.domain.lock().shutdown_code, Some(3));
        assert_eq!(shutdown(&vm, Cmd::Shutdown, 1), Ok(0));
        assert_eq!(
            vm.rec.take(),
            [Event::Shutdown(ShutdownReason::Reboot, Some(3))]
        );
        assert_eq!(vm.domain.lock().shutdown_code, Some(3));
        assert_eq!(shutdown(&vm, Cmd::Shutdown, 2), Ok(0));
        assert_eq!(vm.domain.lock().shutdown_code, None);
        // Xen keeps the low 8 bits.
        assert_eq!(shutdown(&vm, Cmd::ShutdownCode, 0x104), Ok(0));
        assert_eq!(vm.domain.lock().shutdown_code, Some(4));
        assert_eq!(
            sched(&vm, 0, Abi::X86_64, Cmd::ShutdownCode, RAM_SIZE),
            Err(XenErrno::EFAULT)
        );
    }

    #[test]
    fn test_remote_shutdown_eperm_self_esrch_other_efault() {
        let (vm, _) = setup(1);
        let remote = |domain_id| {
            vm.write(
                ARG,
                SchedRemoteShutdown {
                    domain_id,
                    pad: 0,
                    reason: 0,
                },
            );
            sched(&vm, 0, Abi::X86_64, Cmd::RemoteShutdown, ARG)
        };
        assert_eq!(remote(vm.domain.config().domid), Err(XenErrno::EPERM));
        assert_eq!(remote(0), Err(XenErrno::EPERM));
        assert_eq!(remote(42), Err(XenErrno::ESRCH));
        assert_eq!(
            sched(&vm, 0, Abi::X86_64, Cmd::RemoteShutdown, RAM_SIZE - 4),
            Err(XenErrno::EFAULT)
        );
        assert!(vm.rec.take().is_empty());
    }

    fn watchdog(vm: &TestVm, id: u32, timeout: u32) -> HcResult {
        vm.write(ARG, SchedWatchdog { id, timeout });
        sched(vm, 0, Abi::X86_32, Cmd::Watchdog, ARG)
    }

    #[test]
    fn test_watchdog_two_slots_then_enospc() {
        let (vm, op) = setup(1);
        vm.clock.set(1_000);
        assert_eq!(watchdog(&vm, 0, 10), Ok(1));
        assert_eq!(watchdog(&vm, 0, 5), Ok(2));
        assert_eq!(watchdog(&vm, 0, 5), Err(XenErrno::ENOSPC));
        assert_eq!(op.watchdog_deadline(), Some(1_000 + 5 * NS_PER_SEC));
        // The VMM's watchdog timer follows the earliest deadline.
        let deadlines: Vec<Event> = vm.rec.take();
        assert_eq!(
            deadlines,
            [
                Event::Watchdog(Some(1_000 + 10 * NS_PER_SEC)),
                Event::Watchdog(Some(1_000 + 5 * NS_PER_SEC)),
                Event::Watchdog(Some(1_000 + 5 * NS_PER_SEC)),
            ]
        );
        // Destroy slot 1; it can be taken again.
        assert_eq!(watchdog(&vm, 1, 0), Ok(0));
        assert_eq!(watchdog(&vm, 1, 0), Err(XenErrno::EINVAL));
        assert_eq!(watchdog(&vm, 0, 7), Ok(1));
        assert_eq!(watchdog(&vm, 3, 1), Err(XenErrno::EINVAL));
        assert_eq!(
            sched(&vm, 0, Abi::X86_64, Cmd::Watchdog, RAM_SIZE - 4),
            Err(XenErrno::EFAULT)
        );
    }

    #[test]
    fn test_watchdog_expiry_reported_once_and_rearm_postpones() {
        let (vm, op) = setup(1);
        assert_eq!(watchdog(&vm, 0, 2), Ok(1));
        assert!(!op.expired_watchdog(NS_PER_SEC));
        vm.clock.set(NS_PER_SEC);
        assert_eq!(watchdog(&vm, 1, 2), Ok(0));
        assert!(!op.expired_watchdog(2 * NS_PER_SEC));
        assert!(op.expired_watchdog(3 * NS_PER_SEC));
        assert!(!op.expired_watchdog(4 * NS_PER_SEC));
        assert_eq!(op.watchdog_deadline(), None);
        // Still in use: re-arming works, destroying works.
        assert_eq!(watchdog(&vm, 1, 1), Ok(0));
        assert_eq!(op.watchdog_deadline(), Some(2 * NS_PER_SEC));
        assert_eq!(watchdog(&vm, 1, 0), Ok(0));
        assert!(!op.expired_watchdog(u64::MAX));
    }

    #[test]
    fn test_watchdog_state_restored_into_fresh_family_behaves_the_same() {
        let (vm, op) = setup(1);
        assert_eq!(watchdog(&vm, 0, 2), Ok(1));
        assert_eq!(watchdog(&vm, 0, 9), Ok(2));
        assert!(op.expired_watchdog(2 * NS_PER_SEC));
        let saved = op.state();
        assert_eq!(saved.watchdogs[0].deadline, None);
        assert_eq!(saved.watchdogs[1].deadline, Some(9 * NS_PER_SEC));

        let (vm2, op2) = setup(1);
        op2.restore(&saved);
        assert_eq!(op2.state(), saved);
        for (v, o) in [(&vm, &op), (&vm2, &op2)] {
            assert_eq!(watchdog(v, 0, 1), Err(XenErrno::ENOSPC));
            assert!(o.expired_watchdog(9 * NS_PER_SEC));
            assert_eq!(watchdog(v, 2, 0), Ok(0));
            assert_eq!(watchdog(v, 0, 1), Ok(2));
        }
        assert_eq!(op.state(), op2.state());
    }

    fn poll(vm: &TestVm, abi: Abi, ports: &[u32], nr: u32, timeout: u64) -> HcResult {
        for (i, p) in ports.iter().enumerate() {
            vm.write(PORTS + 4 * i as u64, *p);
        }
        match abi {
            Abi::X86_64 => vm.write(
                ARG,
                SchedPoll {
                    ports: PORTS,
                    nr_ports: nr,
                    pad: 0,
                    timeout,
                },
            ),
            Abi::X86_32 => vm.write(
                ARG,
                SchedPollCompat {
                    ports: PORTS as u32,
                    nr_ports: nr,
                    timeout,
                },
            ),
        }
        sched(vm, 1, abi, Cmd::Poll, ARG)
    }

    #[test]
    fn test_poll_pending_port_returns_at_once() {
        let (vm, _) = setup(2);
        vm.domain.lock().shared_info_gfn = Some(SHINFO_GFN);
        // Port 70: word 1, bit 6 (64-bit layout).
        vm.write(SHINFO + 2048 + 8, 1u64 << 6);
        assert_eq!(poll(&vm, Abi::X86_64, &[3, 70, 5000], 3, 99), Ok(0));
        assert!(vm.rec.take().is_empty());
        // Compat layout: port 38 is word 1 (bytes 4..8), bit 6.
        vm.write(SHINFO + 2048 + 8, 0u64);
        vm.domain.lock().long_mode = false;
        assert_eq!(poll(&vm, Abi::X86_32, &[38], 1, 99), Ok(0));
        assert_eq!(vm.rec.take(), [Event::Block(1, Some(99))]);
        vm.write(SHINFO + 2048 + 4, 1u32 << 6);
        assert_eq!(poll(&vm, Abi::X86_32, &[38], 1, 99), Ok(0));
        assert!(vm.rec.take().is_empty());
        // Little-endian bitmaps: the same bit is port 38 with 64-bit words.
        vm.domain.lock().long_mode = true;
        assert_eq!(poll(&vm, Abi::X86_64, &[38], 1, 99), Ok(0));
        assert!(vm.rec.take().is_empty());
    }

    #[test]
    fn test_poll_nothing_pending_blocks_with_timeout() {
        let (vm, _) = setup(2);
        vm.domain.lock().shared_info_gfn = Some(SHINFO_GFN);
        assert_eq!(poll(&vm, Abi::X86_64, &[1, 2], 2, 5_000), Ok(0));
        assert_eq!(poll(&vm, Abi::X86_32, &[1], 1, 0), Ok(0));
        assert_eq!(poll(&vm, Abi::X86_64, &[], 0, 0), Ok(0));
        assert_eq!(
            vm.rec.take(),
            [
                Event::Block(1, Some(5_000)),
                Event::Block(1, None),
                Event::Block(1, None),
            ]
        );
        // Without shared_info nothing is pending.
        vm.domain.lock().shared_info_gfn = None;
        assert_eq!(poll(&vm, Abi::X86_64, &[0], 1, 7), Ok(0));
        assert_eq!(vm.rec.take(), [Event::Block(1, Some(7))]);
    }

    #[test]
    fn test_poll_bad_counts_ports_and_pointers() {
        let (vm, _) = setup(2);
        assert_eq!(poll(&vm, Abi::X86_64, &[], 129, 0), Err(XenErrno::EINVAL));
        assert_eq!(poll(&vm, Abi::X86_64, &[4096], 1, 0), Err(XenErrno::EINVAL));
        assert_eq!(poll(&vm, Abi::X86_64, &[4095], 1, 0), Ok(0));
        vm.domain.lock().long_mode = false;
        assert_eq!(poll(&vm, Abi::X86_32, &[1024], 1, 0), Err(XenErrno::EINVAL));
        assert_eq!(
            sched(&vm, 1, Abi::X86_64, Cmd::Poll, RAM_SIZE - 8),
            Err(XenErrno::EFAULT)
        );
        vm.write(
            ARG,
            SchedPoll {
                ports: RAM_SIZE,
                nr_ports: 1,
                pad: 0,
                timeout: 0,
            },
        );
        assert_eq!(
            sched(&vm, 1, Abi::X86_64, Cmd::Poll, ARG),
            Err(XenErrno::EFAULT)
        );
        assert_eq!(vm.rec.take(), [Event::Block(1, None)]);
    }

    fn set_timer(vm: &TestVm, abi: Abi, args: &[u64]) -> HcResult {
        vm.call(1, abi, HypercallNr::SetTimerOp, args)
    }

    #[test]
    fn test_set_timer_op_zero_cancels_and_normal_armed_as_is() {
        let (vm, _) = setup(2);
        vm.clock.set(1_000_000);
        assert_eq!(set_timer(&vm, Abi::X86_64, &[5_000_000]), Ok(0));
        assert_eq!(vm.domain.lock().vcpus[1].singleshot_ns, Some(5_000_000));
        // In the past: armed as given (fires at once).
        assert_eq!(set_timer(&vm, Abi::X86_64, &[10]), Ok(0));
        assert_eq!(set_timer(&vm, Abi::X86_64, &[0]), Ok(0));
        assert_eq!(vm.domain.lock().vcpus[1].singleshot_ns, None);
        assert_eq!(
            vm.rec.take(),
            [
                Event::Singleshot(1, Some(5_000_000)),
                Event::Singleshot(1, Some(10)),
                Event::Singleshot(1, None),
            ]
        );
    }

    #[test]
    fn test_set_timer_op_linux_workaround_cases() {
        let (vm, _) = setup(2);
        let now = 1_000_000;
        vm.clock.set(now);
        let fallback = Some(now + 100_000_000);
        assert_eq!(set_timer(&vm, Abi::X86_64, &[1 << 63]), Ok(0));
        assert_eq!(set_timer(&vm, Abi::X86_64, &[u64::MAX]), Ok(0));
        assert_eq!(set_timer(&vm, Abi::X86_64, &[now + (1 << 50)]), Ok(0));
        assert_eq!(set_timer(&vm, Abi::X86_64, &[now + (1 << 50) - 1]), Ok(0));
        assert_eq!(
            vm.rec.take(),
            [
                Event::Singleshot(1, fallback),
                Event::Singleshot(1, fallback),
                Event::Singleshot(1, fallback),
                Event::Singleshot(1, Some(now + (1 << 50) - 1)),
            ]
        );
    }

    #[test]
    fn test_set_timer_op_32_bit_splits_across_ebx_ecx() {
        let (vm, _) = setup(2);
        assert_eq!(set_timer(&vm, Abi::X86_32, &[0x2345_6789, 0x1]), Ok(0));
        assert_eq!(set_timer(&vm, Abi::X86_32, &[0, 0x8000_0000]), Ok(0));
        assert_eq!(set_timer(&vm, Abi::X86_32, &[0, 0]), Ok(0));
        assert_eq!(
            vm.rec.take(),
            [
                Event::Singleshot(1, Some(0x1_2345_6789)),
                Event::Singleshot(1, Some(100_000_000)),
                Event::Singleshot(1, None),
            ]
        );
    }

    proptest! {
        #[test]
        fn test_sched_op_arbitrary_args_and_memory_never_panic(
            cmd in prop_oneof![0u64..10, any::<u64>()],
            arg in prop_oneof![0u64..0x2_0000, any::<u64>()],
            abi64 in any::<bool>(),
            long_mode in any::<bool>(),
            shinfo in prop_oneof![Just(None), Just(Some(SHINFO_GFN)), (0u64..1 << 40).prop_map(Some)],
            bytes in proptest::collection::vec(any::<u8>(), 32),
            now in any::<u64>(),
        ) {
            let (vm, op) = setup(2);
            {
                let mut st = vm.domain.lock();
                st.long_mode = long_mode;
                st.shared_info_gfn = shinfo;
            }
            vm.clock.set(now);
            vm.write_bytes(ARG, &bytes);
            if arg < RAM_SIZE - 32 {
                vm.write_bytes(arg, &bytes);
            }
            let abi = if abi64 { Abi::X86_64 } else { Abi::X86_32 };
            let _ = vm.call(1, abi, HypercallNr::SchedOp, &[cmd, arg]);
            let _ = vm.call(1, abi, HypercallNr::SchedOp, &[cmd, ARG]);
            let _ = op.expired_watchdog(now);
            let _ = op.watchdog_deadline();
        }

        #[test]
        fn test_set_timer_op_arbitrary_values_never_panic(
            lo in any::<u64>(),
            hi in any::<u64>(),
            now in any::<u64>(),
            abi64 in any::<bool>(),
        ) {
            let (vm, _) = setup(2);
            vm.clock.set(now);
            let abi = if abi64 { Abi::X86_64 } else { Abi::X86_32 };
            prop_assert_eq!(set_timer(&vm, abi, &[lo, hi]), Ok(0));
        }
    }

    #[test]
    fn test_poll_in_fifo_mode_asks_the_event_channels() {
        // The poll helper calls from vCPU 1.
        let mut vm = TestVm::new(2);
        vm.domain.lock().shared_info_gfn = Some(SHINFO_GFN);
        let ch = channels(&vm);
        vm.dispatcher
            .register(HypercallNr::SchedOp, Arc::new(SchedOp::new(ch.clone())));
        // FIFO: control block at 0x20000, one event-array page at 0x21000
        // with every word MASKED (as Linux initialises it).
        assert_eq!(ch.init_control(&vm.mem, 0x20, 0, 0), Ok(17));
        for w in 0..1024u64 {
            vm.write(0x21000 + 4 * w, 1u32 << 30);
        }
        ch.expand_array(&vm.mem, 0x21).unwrap();
        let port = ch.bind_ipi(&vm.mem, 0).unwrap();
        let idle = ch.bind_ipi(&vm.mem, 0).unwrap();
        ch.send(&vm.mem, port).unwrap();
        vm.rec.take();
        // The pending port ends the poll at once; 2-level bits are not
        // consulted (they are all clear).
        assert_eq!(poll(&vm, Abi::X86_64, &[idle, port], 2, 0), Ok(0));
        assert_eq!(vm.rec.take(), vec![]);
        // An idle port blocks (here: the recorder notes it).
        assert_eq!(poll(&vm, Abi::X86_64, &[idle], 1, 5), Ok(0));
        assert_eq!(vm.rec.take(), vec![Event::Block(1, Some(5))]);
        // FIFO ports may go beyond the 2-level limit.
        assert_eq!(poll(&vm, Abi::X86_64, &[5000], 1, 5), Ok(0));
    }
}
