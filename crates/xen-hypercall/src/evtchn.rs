// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `event_channel_op` (32): decodes each `EVTCHNOP_*` argument (the same
//! layout in both ABIs, `xen-abi.md` §3.8) and runs it on the domain's
//! [`EventChannels`] (crate `xen-evtchn`), writing OUT fields back.
//!
//! [`Domain`] is the event channels' [`GuestLayout`]: shared_info, the
//! latched layout and each vCPU's vcpu_info come from the domain state.

use std::sync::Arc;

use vm_memory::{ByteValued, GuestMemoryBackend};
use xen_abi::errno::XenErrno;
use xen_abi::event_channel::{
    BIND_PIRQ_WILL_SHARE, EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindPirq,
    EvtchnBindVcpu, EvtchnBindVirq, EvtchnClose, EvtchnExpandArray, EvtchnInitControl,
    EvtchnOp as Cmd, EvtchnReset, EvtchnSend, EvtchnSetPriority, EvtchnStatus, EvtchnUnmask,
};
use xen_evtchn::{EventChannels, GuestLayout};

use crate::call::{HcResult, Hypercall};
use crate::dispatch::{Ctx, Family};
use crate::domain::Domain;
use xen_abi::warn_limited;

impl GuestLayout for Domain {
    fn shared_info_gpa(&self) -> Option<u64> {
        Domain::shared_info_gpa(self)
    }

    fn long_mode(&self) -> bool {
        self.lock().long_mode
    }

    fn vcpu_info_gpa(&self, vcpu: u32) -> Option<u64> {
        Domain::vcpu_info_gpa(self, vcpu)
    }

    fn vcpus(&self) -> u32 {
        self.config().vcpus
    }
}

/// The `event_channel_op` family.
#[derive(Clone)]
pub struct EvtchnOp {
    channels: Arc<EventChannels>,
}

impl EvtchnOp {
    /// The family over a domain's event channels.
    pub fn new(channels: Arc<EventChannels>) -> Self {
        Self { channels }
    }

    /// The event channels.
    pub fn channels(&self) -> &Arc<EventChannels> {
        &self.channels
    }
}

/// Reads the argument, runs `f` on it, writes it back (OUT fields).
fn inout<M: GuestMemoryBackend, T: ByteValued>(
    ctx: &Ctx<'_, M>,
    arg: u64,
    f: impl FnOnce(&mut T) -> Result<(), XenErrno>,
) -> HcResult {
    let mut v: T = ctx.read(arg)?;
    f(&mut v)?;
    ctx.write(arg, &v)?;
    Ok(0)
}

/// Reads the argument and runs `f` on it (IN-only ops).
fn input<M: GuestMemoryBackend, T: ByteValued>(
    ctx: &Ctx<'_, M>,
    arg: u64,
    f: impl FnOnce(T) -> Result<(), XenErrno>,
) -> HcResult {
    f(ctx.read(arg)?)?;
    Ok(0)
}

impl<M: GuestMemoryBackend> Family<M> for EvtchnOp {
    fn call(&self, ctx: &mut Ctx<'_, M>, call: &Hypercall) -> HcResult {
        let raw = call.arg(0) as u32;
        let arg = ctx.abi.word(call.arg(1));
        let ch = &self.channels;
        let mem = ctx.phys();
        let Ok(cmd) = Cmd::try_from(raw) else {
            warn_limited!("vCPU {}: unknown event_channel_op {raw}", ctx.vcpu);
            return Err(XenErrno::ENOSYS);
        };
        match cmd {
            Cmd::BindInterdomain => inout(ctx, arg, |a: &mut EvtchnBindInterdomain| {
                a.local_port = ch.bind_interdomain(mem, a.remote_dom, a.remote_port)?;
                Ok(())
            }),
            Cmd::BindVirq => inout(ctx, arg, |a: &mut EvtchnBindVirq| {
                a.port = ch.bind_virq(mem, a.virq, a.vcpu)?;
                Ok(())
            }),
            Cmd::BindPirq => inout(ctx, arg, |a: &mut EvtchnBindPirq| {
                a.port = ch.bind_pirq(mem, a.pirq, a.flags & BIND_PIRQ_WILL_SHARE != 0)?;
                Ok(())
            }),
            Cmd::Close => input(ctx, arg, |a: EvtchnClose| ch.close(mem, a.port)),
            Cmd::Send => input(ctx, arg, |a: EvtchnSend| ch.send(mem, a.port)),
            Cmd::Status => inout(ctx, arg, |a: &mut EvtchnStatus| {
                ch.check_dom(a.dom)?;
                let s = ch.status(a.port)?;
                a.vcpu = s.vcpu;
                a.set_detail(s.detail);
                Ok(())
            }),
            Cmd::AllocUnbound => inout(ctx, arg, |a: &mut EvtchnAllocUnbound| {
                ch.check_dom(a.dom)?;
                a.port = ch.alloc_unbound(mem, a.remote_dom)?;
                Ok(())
            }),
            Cmd::BindIpi => inout(ctx, arg, |a: &mut EvtchnBindIpi| {
                a.port = ch.bind_ipi(mem, a.vcpu)?;
                Ok(())
            }),
            Cmd::BindVcpu => input(ctx, arg, |a: EvtchnBindVcpu| {
                ch.bind_vcpu(mem, a.port, a.vcpu)
            }),
            Cmd::Unmask => input(ctx, arg, |a: EvtchnUnmask| ch.unmask(mem, a.port)),
            Cmd::Reset => input(ctx, arg, |a: EvtchnReset| {
                ch.check_dom(a.dom)?;
                ch.reset(mem);
                Ok(())
            }),
            // Xen's continuation of a preempted reset; ours never preempts.
            Cmd::ResetCont => input(ctx, arg, |a: EvtchnReset| {
                ch.check_dom(a.dom)?;
                Err(XenErrno::EBUSY)
            }),
            Cmd::InitControl => inout(ctx, arg, |a: &mut EvtchnInitControl| {
                a.link_bits = ch.init_control(mem, a.control_gfn, a.offset, a.vcpu)?;
                Ok(())
            }),
            Cmd::ExpandArray => input(ctx, arg, |a: EvtchnExpandArray| {
                ch.expand_array(mem, a.array_gfn)
            }),
            Cmd::SetPriority => input(ctx, arg, |a: EvtchnSetPriority| {
                ch.set_priority(a.port, a.priority)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Abi;
    use crate::testing::{ABIS, BAD, BUF, TestVm};
    use xen_abi::event_channel::EvtchnStat;
    use xen_abi::xen::{DOMID_SELF, HypercallNr};
    use xen_evtchn::Config;

    const SHINFO: u64 = 0x20;

    fn vm() -> (TestVm, Arc<EventChannels>) {
        let mut vm = TestVm::new(2);
        vm.domain.lock().shared_info_gfn = Some(SHINFO);
        let ch = Arc::new(
            EventChannels::new(Config::new(1), vm.domain.clone(), vm.upcalls.clone()).unwrap(),
        );
        vm.dispatcher.register(
            HypercallNr::EventChannelOp,
            Arc::new(EvtchnOp::new(ch.clone())),
        );
        (vm, ch)
    }

    fn op(vm: &TestVm, abi: Abi, cmd: Cmd, arg: u64) -> HcResult {
        vm.call(
            0,
            abi,
            HypercallNr::EventChannelOp,
            &[u64::from(cmd.raw()), arg],
        )
    }

    fn pending(vm: &TestVm, port: u32) -> bool {
        let word: u64 = vm.read(SHINFO * 4096 + 2048 + u64::from(port / 64) * 8);
        word & (1 << (port % 64)) != 0
    }

    #[test]
    fn test_evtchn_bind_ipi_then_send_sets_pending_and_raises_upcall() {
        for abi in ABIS {
            let (vm, _) = vm();
            vm.write(BUF, EvtchnBindIpi { vcpu: 1, port: 0 });
            assert_eq!(op(&vm, abi, Cmd::BindIpi, BUF), Ok(0));
            let port = vm.read::<EvtchnBindIpi>(BUF).port;
            assert_eq!(port, 1);
            vm.write(BUF, EvtchnSend { port });
            assert_eq!(op(&vm, abi, Cmd::Send, BUF), Ok(0));
            assert!(pending(&vm, port));
            // vCPU 1's selector and upcall_pending in its shared_info slot.
            let vi = SHINFO * 4096 + 64;
            assert_eq!(vm.read::<u8>(vi), 1);
            assert_eq!(vm.read::<u64>(vi + 8), 1);
            assert_eq!(vm.take_upcalls(), vec![1]);
        }
    }

    #[test]
    fn test_evtchn_loopback_alloc_bind_status_close() {
        let (vm, _) = vm();
        vm.write(
            BUF,
            EvtchnAllocUnbound {
                dom: DOMID_SELF,
                remote_dom: DOMID_SELF,
                port: 0,
            },
        );
        assert_eq!(op(&vm, Abi::X86_64, Cmd::AllocUnbound, BUF), Ok(0));
        let a = vm.read::<EvtchnAllocUnbound>(BUF).port;
        vm.write(
            BUF,
            EvtchnBindInterdomain {
                remote_dom: DOMID_SELF,
                remote_port: a,
                ..Default::default()
            },
        );
        assert_eq!(op(&vm, Abi::X86_64, Cmd::BindInterdomain, BUF), Ok(0));
        let b = vm.read::<EvtchnBindInterdomain>(BUF).local_port;
        assert_ne!(a, b);
        // The new local port is always set pending.
        assert!(pending(&vm, b));
        vm.write(
            BUF,
            EvtchnStatus {
                dom: DOMID_SELF,
                port: a,
                ..Default::default()
            },
        );
        assert_eq!(op(&vm, Abi::X86_64, Cmd::Status, BUF), Ok(0));
        assert_eq!(
            vm.read::<EvtchnStatus>(BUF).status,
            EvtchnStat::Interdomain.raw()
        );
        vm.write(BUF, EvtchnClose { port: b });
        assert_eq!(op(&vm, Abi::X86_64, Cmd::Close, BUF), Ok(0));
        vm.write(
            BUF,
            EvtchnStatus {
                dom: DOMID_SELF,
                port: a,
                ..Default::default()
            },
        );
        assert_eq!(op(&vm, Abi::X86_64, Cmd::Status, BUF), Ok(0));
        assert_eq!(
            vm.read::<EvtchnStatus>(BUF).status,
            EvtchnStat::Unbound.raw()
        );
    }

    #[test]
    fn test_evtchn_errors_reach_the_guest() {
        let (vm, _) = vm();
        vm.write(BUF, EvtchnSend { port: 77 });
        assert_eq!(op(&vm, Abi::X86_64, Cmd::Send, BUF), Err(XenErrno::EINVAL));
        vm.write(
            BUF,
            EvtchnBindVirq {
                virq: 99,
                vcpu: 0,
                port: 0,
            },
        );
        assert_eq!(
            op(&vm, Abi::X86_64, Cmd::BindVirq, BUF),
            Err(XenErrno::EINVAL)
        );
        vm.write(BUF, EvtchnBindIpi { vcpu: 9, port: 0 });
        assert_eq!(
            op(&vm, Abi::X86_64, Cmd::BindIpi, BUF),
            Err(XenErrno::ENOENT)
        );
        assert_eq!(op(&vm, Abi::X86_64, Cmd::Send, BAD), Err(XenErrno::EFAULT));
        let r = vm.call(0, Abi::X86_64, HypercallNr::EventChannelOp, &[99, BUF]);
        assert_eq!(r, Err(XenErrno::ENOSYS));
        vm.write(BUF, EvtchnReset { dom: DOMID_SELF });
        assert_eq!(
            op(&vm, Abi::X86_64, Cmd::ResetCont, BUF),
            Err(XenErrno::EBUSY)
        );
    }

    #[test]
    fn test_evtchn_bind_virq_timer_and_raise_from_the_vmm() {
        let (vm, ch) = vm();
        vm.write(
            BUF,
            EvtchnBindVirq {
                virq: 0,
                vcpu: 0,
                port: 0,
            },
        );
        assert_eq!(op(&vm, Abi::X86_32, Cmd::BindVirq, BUF), Ok(0));
        let port = vm.read::<EvtchnBindVirq>(BUF).port;
        assert!(ch.raise_virq(&vm.mem, xen_abi::xen::Virq::Timer, 0));
        assert!(pending(&vm, port));
        assert_eq!(vm.take_upcalls(), vec![0]);
    }

    #[test]
    fn test_domain_is_the_guest_layout() {
        let (vm, _) = vm();
        let l: &dyn GuestLayout = &*vm.domain;
        assert_eq!(l.shared_info_gpa(), Some(SHINFO * 4096));
        assert_eq!(l.vcpu_info_gpa(1), Some(SHINFO * 4096 + 64));
        assert!(l.long_mode());
        assert_eq!(l.vcpus(), 2);
    }
}
