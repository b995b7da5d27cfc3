// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The dispatcher: one entry for every hypercall, whichever path it took.
//!
//! Hypercalls are grouped in families, one per hypercall number, each a
//! [`Family`] a VMM may replace or add ([`Dispatcher::register`]). The
//! dispatcher refuses calls from CPL > 0 with -EPERM (as Xen does), answers
//! numbers nobody handles with -ENOSYS and a rate-limited warning naming the
//! hypercall, and runs `multicall` through itself (QEMU refuses multicall).

use std::sync::Arc;

use vm_memory::{ByteValued, GuestMemoryBackend};
use xen_abi::errno::XenErrno;
use xen_abi::xen::{HypercallNr, MulticallEntry, MulticallEntryCompat};

use crate::call::{Abi, HcResult, Hypercall, result_value};
use crate::domain::Domain;
use crate::guest::{Fault, GuestVirt};
use xen_abi::warn_limited;

/// Hypercall numbers a dispatcher can route (Xen's table has 64 slots).
pub const NR_HYPERCALLS: usize = 64;
/// Most entries one `multicall` processes. Xen would continue a longer
/// list across preemptions; a guest never needs more than a page's worth,
/// and a bound keeps one call from holding a vCPU thread for long.
pub const MULTICALL_MAX: u64 = 4096;

/// What a family sees of the call and the domain.
pub struct Ctx<'a, M: GuestMemoryBackend> {
    /// The domain.
    pub domain: &'a Domain,
    /// The calling vCPU's Xen id.
    pub vcpu: u32,
    /// The call's ABI.
    pub abi: Abi,
    /// Guest-virtual access with the calling vCPU's paging state.
    pub mem: &'a GuestVirt<'a, M>,
    dispatcher: &'a Dispatcher<M>,
    in_multicall: bool,
}

impl<'a, M: GuestMemoryBackend> Ctx<'a, M> {
    /// Guest-physical memory.
    pub fn phys(&self) -> &'a M {
        self.mem.memory()
    }

    fn fault(&self, what: &str, gva: u64, f: Fault) -> XenErrno {
        warn_limited!("vCPU {}: {what} at {gva:#x} faulted: {f}", self.vcpu);
        XenErrno::EFAULT
    }

    /// Reads a structure at a guest pointer; a fault is -EFAULT.
    pub fn read<T: ByteValued>(&self, gva: u64) -> Result<T, XenErrno> {
        self.mem
            .read_obj(gva)
            .map_err(|f| self.fault("read", gva, f))
    }

    /// Writes a structure at a guest pointer; a fault is -EFAULT.
    pub fn write<T: ByteValued>(&self, gva: u64, val: &T) -> Result<(), XenErrno> {
        self.mem
            .write_obj(gva, val)
            .map_err(|f| self.fault("write", gva, f))
    }

    /// Reads bytes at a guest pointer; a fault is -EFAULT.
    pub fn read_bytes(&self, gva: u64, buf: &mut [u8]) -> Result<(), XenErrno> {
        self.mem
            .read(gva, buf)
            .map_err(|f| self.fault("read", gva, f))
    }

    /// Writes bytes at a guest pointer; a fault is -EFAULT.
    pub fn write_bytes(&self, gva: u64, buf: &[u8]) -> Result<(), XenErrno> {
        self.mem
            .write(gva, buf)
            .map_err(|f| self.fault("write", gva, f))
    }

    /// Runs another hypercall for this vCPU through the dispatcher.
    pub fn dispatch(&self, call: &Hypercall) -> HcResult {
        self.dispatcher
            .run(self.domain, self.vcpu, self.mem, call, self.in_multicall)
    }
}

/// A hypercall family: everything one hypercall number does.
pub trait Family<M: GuestMemoryBackend>: Send + Sync {
    /// Handles `call` (whose number routed it here).
    fn call(&self, ctx: &mut Ctx<'_, M>, call: &Hypercall) -> HcResult;
}

/// A family that answers every call with one errno: -EPERM for the
/// privileged hypercalls a domU may not make (sysctl, domctl, platform_op).
#[derive(Clone, Copy, Debug)]
pub struct Refuse(pub XenErrno);

impl<M: GuestMemoryBackend> Family<M> for Refuse {
    fn call(&self, _ctx: &mut Ctx<'_, M>, _call: &Hypercall) -> HcResult {
        Err(self.0)
    }
}

/// `multicall` (13): `multicall(multicall_entry *calls, unsigned nr_calls)`.
///
/// Runs each entry through the dispatcher and writes its result back. A
/// multicall inside a multicall fails with -EINVAL in that entry, as in
/// Xen. A list that does not fit [`MULTICALL_MAX`] gets -EINVAL; a fault on
/// the list gets -EFAULT (entries already run keep their results).
#[derive(Clone, Copy, Debug, Default)]
pub struct Multicall;

impl<M: GuestMemoryBackend> Family<M> for Multicall {
    fn call(&self, ctx: &mut Ctx<'_, M>, call: &Hypercall) -> HcResult {
        if ctx.in_multicall {
            return Err(XenErrno::EINVAL);
        }
        let (list, count) = (call.arg(0), call.arg(1));
        if count > MULTICALL_MAX {
            warn_limited!("vCPU {}: multicall of {count} entries refused", ctx.vcpu);
            return Err(XenErrno::EINVAL);
        }
        let size = match ctx.abi {
            Abi::X86_64 => std::mem::size_of::<MulticallEntry>(),
            Abi::X86_32 => std::mem::size_of::<MulticallEntryCompat>(),
        } as u64;
        let nested = Ctx {
            domain: ctx.domain,
            vcpu: ctx.vcpu,
            abi: ctx.abi,
            mem: ctx.mem,
            dispatcher: ctx.dispatcher,
            in_multicall: true,
        };
        for i in 0..count {
            let gva = ctx.abi.word(list.wrapping_add(i * size));
            let (op, args) = match ctx.abi {
                Abi::X86_64 => {
                    let e: MulticallEntry = nested.read(gva)?;
                    (e.op, e.args)
                }
                Abi::X86_32 => {
                    let e: MulticallEntryCompat = nested.read(gva)?;
                    (u64::from(e.op), e.args.map(u64::from))
                }
            };
            let sub = Hypercall {
                abi: ctx.abi,
                cpl: call.cpl,
                nr: op,
                args,
            };
            let r = result_value(nested.dispatch(&sub));
            match ctx.abi {
                Abi::X86_64 => nested.write(gva + 8, &r)?,
                Abi::X86_32 => nested.write(gva + 4, &(r as u32))?,
            }
        }
        Ok(0)
    }
}

/// Routes hypercalls to families.
pub struct Dispatcher<M: GuestMemoryBackend> {
    families: Vec<Option<Arc<dyn Family<M>>>>,
}

impl<M: GuestMemoryBackend> Dispatcher<M> {
    /// A dispatcher with no families but `multicall` and the privileged
    /// refusals; the VMM (or `xen-domain`) registers the domU hypercalls.
    pub fn empty() -> Self {
        let mut d = Self {
            families: (0..NR_HYPERCALLS).map(|_| None).collect(),
        };
        d.register(HypercallNr::Multicall, Arc::new(Multicall));
        for nr in [
            HypercallNr::Sysctl,
            HypercallNr::Domctl,
            HypercallNr::PlatformOp,
        ] {
            d.register(nr, Arc::new(Refuse(XenErrno::EPERM)));
        }
        d
    }

    /// Installs (or replaces) the family for a hypercall number.
    pub fn register(&mut self, nr: HypercallNr, family: Arc<dyn Family<M>>) {
        self.families[nr.raw() as usize] = Some(family);
    }

    /// Removes the family for a hypercall number (it then gets -ENOSYS).
    pub fn unregister(&mut self, nr: HypercallNr) {
        self.families[nr.raw() as usize] = None;
    }

    /// Handles one hypercall from `vcpu`.
    pub fn dispatch(
        &self,
        domain: &Domain,
        vcpu: u32,
        mem: &GuestVirt<'_, M>,
        call: &Hypercall,
    ) -> HcResult {
        self.run(domain, vcpu, mem, call, false)
    }

    fn run(
        &self,
        domain: &Domain,
        vcpu: u32,
        mem: &GuestVirt<'_, M>,
        call: &Hypercall,
        in_multicall: bool,
    ) -> HcResult {
        if call.cpl != 0 {
            warn_limited!(
                "vCPU {vcpu}: hypercall {} from CPL {} refused",
                name(call.nr),
                call.cpl
            );
            return Err(XenErrno::EPERM);
        }
        let family = usize::try_from(call.nr)
            .ok()
            .and_then(|n| self.families.get(n))
            .and_then(Option::as_ref);
        let Some(family) = family else {
            warn_limited!("vCPU {vcpu}: unimplemented hypercall {}", name(call.nr));
            return Err(XenErrno::ENOSYS);
        };
        let mut ctx = Ctx {
            domain,
            vcpu,
            abi: call.abi,
            mem,
            dispatcher: self,
            in_multicall,
        };
        family.call(&mut ctx, call)
    }
}

/// A hypercall's name for messages: `memory_op (12)` or `#99`.
pub fn name(nr: u64) -> String {
    match u32::try_from(nr)
        .ok()
        .and_then(|n| HypercallNr::try_from(n).ok())
    {
        Some(h) => format!("{} ({nr})", h.name()),
        None => format!("#{nr}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestVm;
    use xen_abi::xen::MULTICALL_ARGS;

    /// A family that returns its first argument and counts its calls.
    #[derive(Default)]
    struct Echo(std::sync::atomic::AtomicU64);

    impl<M: GuestMemoryBackend> Family<M> for Echo {
        fn call(&self, _ctx: &mut Ctx<'_, M>, call: &Hypercall) -> HcResult {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(call.arg(0))
        }
    }

    fn vm() -> (TestVm, Arc<Echo>) {
        let mut vm = TestVm::new(1);
        let echo = Arc::new(Echo::default());
        vm.dispatcher
            .register(HypercallNr::XenVersion, echo.clone());
        (vm, echo)
    }

    fn raw(nr: u64, cpl: u8, abi: Abi, args: [u64; 6]) -> Hypercall {
        Hypercall { abi, cpl, nr, args }
    }

    #[test]
    fn test_dispatch_cpl_above_zero_is_eperm_and_not_run() {
        let (vm, echo) = vm();
        for cpl in 1..=3 {
            let c = raw(17, cpl, Abi::X86_64, [5; 6]);
            assert_eq!(vm.call_raw(0, &c), Err(XenErrno::EPERM));
        }
        assert_eq!(echo.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(vm.call_raw(0, &raw(17, 0, Abi::X86_64, [5; 6])), Ok(5));
    }

    #[test]
    fn test_dispatch_unknown_numbers_are_enosys() {
        let (vm, _) = vm();
        for nr in [11, 23, 40, 63, 64, 1000, u64::MAX] {
            assert_eq!(
                vm.call_raw(0, &raw(nr, 0, Abi::X86_64, [0; 6])),
                Err(XenErrno::ENOSYS),
                "{nr}"
            );
        }
    }

    #[test]
    fn test_dispatch_privileged_calls_are_eperm() {
        let (vm, _) = vm();
        for nr in [
            HypercallNr::Sysctl,
            HypercallNr::Domctl,
            HypercallNr::PlatformOp,
        ] {
            assert_eq!(vm.call(0, Abi::X86_64, nr, &[]), Err(XenErrno::EPERM));
        }
    }

    #[test]
    fn test_dispatch_unregister_gives_enosys_and_register_replaces() {
        let (mut vm, _) = vm();
        vm.dispatcher.unregister(HypercallNr::XenVersion);
        assert_eq!(
            vm.call(0, Abi::X86_64, HypercallNr::XenVersion, &[1]),
            Err(XenErrno::ENOSYS)
        );
        vm.dispatcher
            .register(HypercallNr::XenVersion, Arc::new(Refuse(XenErrno::EACCES)));
        assert_eq!(
            vm.call(0, Abi::X86_64, HypercallNr::XenVersion, &[1]),
            Err(XenErrno::EACCES)
        );
    }

    #[test]
    fn test_name_names_known_and_unknown_numbers() {
        assert_eq!(name(12), "__HYPERVISOR_memory_op (12)");
        assert_eq!(name(99), "#99");
    }

    fn entry64(vm: &TestVm, at: u64, op: u64, arg0: u64) {
        let mut args = [0u64; MULTICALL_ARGS];
        args[0] = arg0;
        vm.write(
            at,
            MulticallEntry {
                op,
                result: 0xdead,
                args,
            },
        );
    }

    #[test]
    fn test_multicall_64_runs_each_entry_and_writes_results() {
        let (vm, echo) = vm();
        entry64(&vm, 0x1000, 17, 7);
        entry64(&vm, 0x1040, 99, 0);
        entry64(&vm, 0x1080, 35, 0);
        entry64(&vm, 0x10c0, 17, 9);
        assert_eq!(
            vm.call(0, Abi::X86_64, HypercallNr::Multicall, &[0x1000, 4]),
            Ok(0)
        );
        let results: Vec<u64> = (0..4)
            .map(|i| vm.read::<MulticallEntry>(0x1000 + i * 64).result)
            .collect();
        assert_eq!(
            results,
            [
                7,
                XenErrno::ENOSYS.neg() as u64,
                XenErrno::EPERM.neg() as u64,
                9
            ]
        );
        assert_eq!(echo.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn test_multicall_32_uses_32_byte_entries_and_32_bit_results() {
        let (vm, _) = vm();
        for (i, (op, arg)) in [(17u32, 0x1234u32), (99, 0)].into_iter().enumerate() {
            let mut args = [0u32; MULTICALL_ARGS];
            args[0] = arg;
            vm.write(
                0x2000 + i as u64 * 32,
                MulticallEntryCompat {
                    op,
                    result: 0,
                    args,
                },
            );
        }
        assert_eq!(
            vm.call(0, Abi::X86_32, HypercallNr::Multicall, &[0x2000, 2]),
            Ok(0)
        );
        assert_eq!(vm.read::<MulticallEntryCompat>(0x2000).result, 0x1234);
        assert_eq!(
            vm.read::<MulticallEntryCompat>(0x2020).result,
            -38i32 as u32
        );
    }

    #[test]
    fn test_multicall_nested_entry_gets_einval() {
        let (vm, _) = vm();
        entry64(&vm, 0x1000, 13, 0x1000);
        entry64(&vm, 0x1040, 17, 3);
        assert_eq!(
            vm.call(0, Abi::X86_64, HypercallNr::Multicall, &[0x1000, 2]),
            Ok(0)
        );
        assert_eq!(
            vm.read::<MulticallEntry>(0x1000).result,
            XenErrno::EINVAL.neg() as u64
        );
        assert_eq!(vm.read::<MulticallEntry>(0x1040).result, 3);
    }

    #[test]
    fn test_multicall_too_many_entries_is_einval_and_runs_nothing() {
        let (vm, echo) = vm();
        entry64(&vm, 0x1000, 17, 1);
        assert_eq!(
            vm.call(
                0,
                Abi::X86_64,
                HypercallNr::Multicall,
                &[0x1000, MULTICALL_MAX + 1]
            ),
            Err(XenErrno::EINVAL)
        );
        assert_eq!(echo.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[test]
    fn test_multicall_list_fault_is_efault_after_earlier_entries_ran() {
        let (vm, echo) = vm();
        let last = crate::testing::RAM_SIZE - 64;
        entry64(&vm, last, 17, 4);
        assert_eq!(
            vm.call(0, Abi::X86_64, HypercallNr::Multicall, &[last, 2]),
            Err(XenErrno::EFAULT)
        );
        assert_eq!(vm.read::<MulticallEntry>(last).result, 4);
        assert_eq!(echo.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn test_multicall_from_cpl3_is_eperm() {
        let (vm, echo) = vm();
        entry64(&vm, 0x1000, 17, 1);
        let c = raw(13, 3, Abi::X86_64, [0x1000, 1, 0, 0, 0, 0]);
        assert_eq!(vm.call_raw(0, &c), Err(XenErrno::EPERM));
        assert_eq!(echo.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
