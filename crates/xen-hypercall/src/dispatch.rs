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
use crate::warn_limited;

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
    /// refusals. [`crate::default_dispatcher`] adds the domU hypercalls.
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
