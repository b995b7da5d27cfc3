// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `physdev_op` (33): `physdev_op(int cmd, void *arg)`, the PIRQ
//! operations of an HVM guest with `XENFEAT_hvm_pirqs`.
//!
//! Structures from `xen/include/public/physdev.h` (crate `xen-abi`,
//! [`xen_abi::physdev`]), behaviour from `hvm_physdev_op` and
//! `xen/arch/x86/physdev.c`, `xen-abi.md` §3.12 and the physdev rows of
//! `qemu-kvm-reference.md` §1.3 and §1.11. [`PhysdevOp`] keeps the
//! domain's PIRQ table (PIRQ → GSI or MSI, GSI → PIRQ, GSI levels) and
//! raises PIRQ events through the domain's [`EventChannels`], where the
//! guest binds them with `EVTCHNOP_bind_pirq`.
//!
//! | cmd | what we do | errors |
//! |---|---|---|
//! | `map_pirq` (13) | GSI (`index` < [`NR_GSIS`]) or MSI source → PIRQ, the PIRQ written back | foreign domid -EPERM/-ESRCH, bad GSI or type -EINVAL, PIRQ ≥ `nr_pirqs` -EINVAL, PIRQ or GSI mapped elsewhere -EBUSY, table full -ENOSPC, multi-MSI count -EDOM |
//! | `unmap_pirq` (14) | frees the PIRQ (its event channel stays bound, as in Xen and QEMU) | foreign domid, PIRQ out of range -EINVAL, not allocated -ENOENT |
//! | `eoi` (12) | re-raises a level GSI (≥ 16) that is still asserted | PIRQ out of range or not allocated -EINVAL |
//! | `irq_status_query` (5) | `XENIRQSTAT_needs_eoi` for GSI PIRQs | PIRQ out of range or not allocated -EINVAL |
//! | `get_free_pirq` (23) | allocates a PIRQ, written back | -ENOSPC |
//! | everything else, including `pirq_eoi_gmfn_v1`/`v2` | -ENOSYS (Xen's HVM filter; QEMU's explicit answer for v2) | |
//!
//! Xen's HVM filter passes `eoi`, `irq_status_query` and `get_free_pirq`
//! only when the domain has PIRQs; a domain with this family registered
//! always has them. Arguments have the same layout in both ABIs except
//! `physdev_map_pirq` (40 bytes, or 36 with `table_base` at 28 for x86_32).
//!
//! Allocation follows Xen's `get_free_pirq` (which QEMU copies): PIRQs 0–15
//! are never handed out; a GSI gets the lowest free PIRQ of 16–23, then the
//! highest free one; an MSI (and `get_free_pirq` of any type but GSI) gets
//! the highest free PIRQ, never one below [`NR_GSIS`]. Linux registers each
//! GSI with `pirq` = -1, so it sees the same numbers as on Xen.
//!
//! Where we differ:
//!
//! * domid: `DOMID_SELF` and the guest's own id are accepted (current Xen
//!   too); otherwise [`EventChannels::check_dom`]'s answer, which is Xen's
//!   (-EPERM for the back-end domain that exists, -ESRCH for any other);
//!   QEMU says -EPERM for all.
//! * `map_pirq` of an MSI type: Xen (`physdev_hvm_map_pirq`) and QEMU refuse
//!   everything but GSI from a domU with -EINVAL; Linux HVM guests use
//!   `get_free_pirq` for MSIs instead. We accept MSI, MSI_SEG and MULTI_MSI
//!   and record the source, so a VMM can route MSIs of emulated devices by
//!   PIRQ ([`PhysdevOp::deliver_msi_pirq`]); MULTI_MSI takes Xen's checks
//!   (count 1–32, else -EDOM; rounded up to a power of two) and a
//!   contiguous block.
//! * A GSI index up to 23 (our IOAPIC, as QEMU); Xen's vIOAPIC has 48 pins.
//! * A requested PIRQ or a GSI already mapped elsewhere: -EBUSY, as QEMU.
//!   Xen returns 0 without mapping anything, leaving the guest waiting for
//!   an event that never comes. A GSI mapped again with `pirq` < 0 returns
//!   its existing PIRQ.
//! * No free PIRQ: -ENOSPC (QEMU; Xen passes the negative "PIRQ" on and
//!   fails its range check with -EINVAL).
//! * `unmap_pirq` of a PIRQ out of range or not allocated: -EINVAL and
//!   -ENOENT, as QEMU (Xen's HVM path returns 0 when no emulated IRQ is
//!   attached). Any allocated PIRQ is freed, MSI ones too (QEMU: GSI only).
//! * `irq_status_query` sets `needs_eoi` for GSI PIRQs only, as QEMU; Xen
//!   sets it for every mapped PIRQ, costing a useless `eoi` per MSI.
//! * Xen refuses `map_pirq` with -EINVAL until the guest set a vector
//!   callback; like QEMU we do not check.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::GuestMemoryBackend;
use xen_abi::errno::XenErrno;
use xen_abi::physdev::{
    MapPirqType, PhysdevEoi, PhysdevGetFreePirq, PhysdevIrqStatusQuery, PhysdevMapPirq,
    PhysdevMapPirqCompat, PhysdevOp as Cmd, PhysdevUnmapPirq, XenIrqStatFlags,
};
use xen_evtchn::EventChannels;

use crate::call::{HcResult, Hypercall};
use crate::dispatch::{Ctx, Family};
use xen_abi::warn_limited;

/// GSIs of the emulated IOAPIC a guest may map (QEMU's `IOAPIC_NUM_PINS`).
pub const NR_GSIS: u32 = 24;
/// Lowest PIRQ ever allocated: Xen never hands out 0–15.
pub const FIRST_GSI_PIRQ: u32 = 16;
/// ISA IRQs (GSIs below this) are edge-triggered: `eoi` never re-raises them.
const NR_ISA_IRQS: u32 = 16;
/// Most vectors of one MULTI_MSI mapping (Xen's limit).
const MAX_MULTI_MSI: i32 = 32;

/// Where an MSI PIRQ comes from, as `map_pirq` described it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct MsiSource {
    /// PCI segment (0 for `MAP_PIRQ_TYPE_MSI`).
    pub segment: u16,
    /// PCI bus.
    pub bus: u8,
    /// PCI device and function.
    pub devfn: u8,
    /// MSI-X table entry, or the vector within a multi-MSI block.
    pub entry: i32,
    /// MSI-X table base address.
    pub table_base: u64,
}

/// What a PIRQ is allocated to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PirqKind {
    /// Allocated by `get_free_pirq`, not mapped: an MSI PIRQ the guest
    /// encodes in an MSI address for the VMM's MSI snooping to find.
    Allocated,
    /// Mapped to this GSI of the emulated IOAPIC.
    Gsi(u32),
    /// Mapped to an MSI by `map_pirq`.
    Msi(MsiSource),
}

/// A snapshot of the PIRQ table ([`PhysdevOp::state`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct State {
    /// Every allocated PIRQ and what it is allocated to, in PIRQ order.
    pub pirqs: Vec<(u32, PirqKind)>,
    /// Asserted GSIs, bit per GSI (below [`NR_GSIS`]).
    pub gsi_levels: u32,
}

/// Why a [`State`] cannot be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A PIRQ is at or beyond the domain's `nr_pirqs`, or listed twice.
    #[error("PIRQ {0} is out of range or listed twice.")]
    Pirq(u32),
    /// A GSI is beyond the IOAPIC, or mapped by two PIRQs.
    #[error("GSI {0} is out of range or mapped twice.")]
    Gsi(u32),
    /// A level bit names a GSI beyond the IOAPIC.
    #[error("GSI levels {0:#x} name GSIs beyond the IOAPIC.")]
    Levels(u32),
}

#[derive(Debug, Default)]
struct Table {
    pirqs: BTreeMap<u32, PirqKind>,
    gsi_pirq: [Option<u32>; NR_GSIS as usize],
    /// Asserted GSIs, bit per GSI.
    levels: u32,
}

impl Table {
    fn is_free(&self, pirq: u32) -> bool {
        !self.pirqs.contains_key(&pirq)
    }

    /// Xen's `get_free_pirq` order for a single PIRQ.
    fn free_pirq(&self, nr_pirqs: u32, gsi_order: bool) -> Option<u32> {
        let low = (FIRST_GSI_PIRQ..NR_GSIS.min(nr_pirqs)).filter(|_| gsi_order);
        low.chain((NR_GSIS..nr_pirqs).rev())
            .find(|&p| self.is_free(p))
    }

    /// The highest block of `count` free PIRQs at or above [`NR_GSIS`];
    /// returns its first PIRQ.
    fn free_block(&self, nr_pirqs: u32, count: u32) -> Option<u32> {
        let mut run = 0;
        for p in (NR_GSIS..nr_pirqs).rev() {
            run = if self.is_free(p) { run + 1 } else { 0 };
            if run == count {
                return Some(p);
            }
        }
        None
    }
}

/// The `physdev_op` family: the domain's PIRQ table over its event channels.
pub struct PhysdevOp {
    channels: Arc<EventChannels>,
    table: Mutex<Table>,
}

impl std::fmt::Debug for PhysdevOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhysdevOp")
            .field("table", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl PhysdevOp {
    /// The family over a domain's event channels, with no PIRQ allocated;
    /// PIRQs range over the channels' `Config::nr_pirqs`.
    pub fn new(channels: Arc<EventChannels>) -> Self {
        Self {
            channels,
            table: Mutex::new(Table::default()),
        }
    }

    /// The event channels.
    pub fn channels(&self) -> &Arc<EventChannels> {
        &self.channels
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn nr_pirqs(&self) -> u32 {
        self.channels.config().nr_pirqs
    }

    /// What `pirq` is allocated to, if anything.
    pub fn pirq(&self, pirq: u32) -> Option<PirqKind> {
        self.lock().pirqs.get(&pirq).copied()
    }

    /// The PIRQ `gsi` is mapped to, if any.
    pub fn gsi_pirq(&self, gsi: u32) -> Option<u32> {
        self.lock().gsi_pirq.get(gsi as usize).copied().flatten()
    }

    /// Forgets every PIRQ and GSI level (soft reset; the event channels are
    /// reset separately).
    pub fn reset(&self) {
        *self.lock() = Table::default();
    }

    /// A snapshot of the PIRQ table. Event-channel bindings of PIRQs are in
    /// the event channels' own state.
    pub fn state(&self) -> State {
        let t = self.lock();
        State {
            pirqs: t.pirqs.iter().map(|(&p, &k)| (p, k)).collect(),
            gsi_levels: t.levels,
        }
    }

    /// Replaces the PIRQ table with a snapshot, checked against the event
    /// channels' `nr_pirqs`; on error nothing changes.
    pub fn restore(&self, state: &State) -> Result<(), StateError> {
        let nr_pirqs = self.nr_pirqs();
        if state.gsi_levels.checked_shr(NR_GSIS).unwrap_or(0) != 0 {
            return Err(StateError::Levels(state.gsi_levels));
        }
        let mut t = Table {
            levels: state.gsi_levels,
            ..Table::default()
        };
        for &(pirq, kind) in &state.pirqs {
            if pirq >= nr_pirqs || t.pirqs.insert(pirq, kind).is_some() {
                return Err(StateError::Pirq(pirq));
            }
            if let PirqKind::Gsi(gsi) = kind {
                let slot = t
                    .gsi_pirq
                    .get_mut(gsi as usize)
                    .ok_or(StateError::Gsi(gsi))?;
                if slot.replace(pirq).is_some() {
                    return Err(StateError::Gsi(gsi));
                }
            }
        }
        *self.lock() = t;
        Ok(())
    }

    /// Pulses `gsi` for the VMM's interrupt controller: raises the event of
    /// the PIRQ it is mapped to. Returns whether a PIRQ is mapped (the GSI
    /// then belongs to the PIRQ, not the IOAPIC), even if no port is bound.
    pub fn gsi_asserted<M: GuestMemoryBackend>(&self, mem: &M, gsi: u32) -> bool {
        let Some(pirq) = self.gsi_pirq(gsi) else {
            return false;
        };
        self.channels.raise_pirq(mem, pirq);
        true
    }

    /// Sets the level of `gsi` for the VMM's interrupt controller, raising
    /// the mapped PIRQ's event when asserted; the level is remembered so
    /// that `PHYSDEVOP_eoi` re-raises a GSI still asserted. Returns whether
    /// a PIRQ is mapped (see [`PhysdevOp::gsi_asserted`]).
    pub fn set_gsi_level<M: GuestMemoryBackend>(&self, mem: &M, gsi: u32, level: bool) -> bool {
        let pirq = {
            let mut t = self.lock();
            if gsi >= NR_GSIS {
                return false;
            }
            if level {
                t.levels |= 1 << gsi;
            } else {
                t.levels &= !(1 << gsi);
            }
            t.gsi_pirq[gsi as usize]
        };
        let Some(pirq) = pirq else {
            return false;
        };
        if level {
            self.channels.raise_pirq(mem, pirq);
        }
        true
    }

    /// Delivers an MSI the VMM found addressed to `pirq` (an MSI PIRQ from
    /// `map_pirq` or `get_free_pirq`): raises its event. Returns whether an
    /// event channel is bound to it; false for a GSI or free PIRQ.
    pub fn deliver_msi_pirq<M: GuestMemoryBackend>(&self, mem: &M, pirq: u32) -> bool {
        match self.pirq(pirq) {
            Some(PirqKind::Allocated | PirqKind::Msi(_)) => self.channels.raise_pirq(mem, pirq),
            _ => false,
        }
    }

    /// `PHYSDEVOP_map_pirq` on the decoded argument; updates `map.pirq`.
    fn map_pirq(&self, vcpu: u32, map: &mut PhysdevMapPirq) -> Result<(), XenErrno> {
        self.channels.check_dom(map.domid).inspect_err(|_| {
            warn_limited!("vCPU {vcpu}: PHYSDEVOP_map_pirq for domain {}", map.domid);
        })?;
        let nr_pirqs = self.nr_pirqs();
        let ty = map.map_type().map_err(|_| {
            warn_limited!("vCPU {vcpu}: PHYSDEVOP_map_pirq of type {}", map.type_);
            XenErrno::EINVAL
        })?;
        let mut t = self.lock();
        let requested = u32::try_from(map.pirq).ok();
        if requested.is_some_and(|p| p >= nr_pirqs) {
            warn_limited!("vCPU {vcpu}: PHYSDEVOP_map_pirq to PIRQ {}", map.pirq);
            return Err(XenErrno::EINVAL);
        }
        // A requested PIRQ must be free, or allocated but not mapped.
        let usable =
            |t: &Table, p: u32| matches!(t.pirqs.get(&p), None | Some(PirqKind::Allocated));
        match ty {
            MapPirqType::Gsi => {
                let gsi = u32::try_from(map.index)
                    .ok()
                    .filter(|&g| g < NR_GSIS)
                    .ok_or_else(|| {
                        warn_limited!("vCPU {vcpu}: PHYSDEVOP_map_pirq of GSI {}", map.index);
                        XenErrno::EINVAL
                    })?;
                let current = t.gsi_pirq[gsi as usize];
                let pirq = match (requested, current) {
                    (None, Some(p)) => p,
                    (Some(p), Some(c)) if p == c => p,
                    (Some(p), None) if usable(&t, p) => p,
                    (None, None) => t.free_pirq(nr_pirqs, true).ok_or(XenErrno::ENOSPC)?,
                    (Some(p), _) => {
                        warn_limited!(
                            "vCPU {vcpu}: PHYSDEVOP_map_pirq of GSI {gsi} to busy PIRQ {p}"
                        );
                        return Err(XenErrno::EBUSY);
                    }
                };
                t.pirqs.insert(pirq, PirqKind::Gsi(gsi));
                t.gsi_pirq[gsi as usize] = Some(pirq);
                map.pirq = pirq as i32;
            }
            MapPirqType::Msi | MapPirqType::MsiSeg | MapPirqType::MultiMsi => {
                let count = if ty == MapPirqType::MultiMsi {
                    if !(1..=MAX_MULTI_MSI).contains(&map.entry_nr) {
                        warn_limited!(
                            "vCPU {vcpu}: PHYSDEVOP_map_pirq of {} MSI vectors",
                            map.entry_nr
                        );
                        return Err(XenErrno::EDOM);
                    }
                    (map.entry_nr as u32).next_power_of_two()
                } else {
                    1
                };
                let base = match requested {
                    None => t.free_block(nr_pirqs, count).ok_or(XenErrno::ENOSPC)?,
                    Some(p) => {
                        let end = p.checked_add(count).filter(|&e| e <= nr_pirqs);
                        if end.is_none() || !(p..p + count).all(|q| usable(&t, q)) {
                            warn_limited!(
                                "vCPU {vcpu}: PHYSDEVOP_map_pirq of MSI to busy PIRQ {p}"
                            );
                            return Err(XenErrno::EBUSY);
                        }
                        p
                    }
                };
                let segment = if ty == MapPirqType::Msi {
                    0
                } else {
                    map.pci_segment()
                };
                let single = ty != MapPirqType::MultiMsi;
                for i in 0..count {
                    let source = MsiSource {
                        segment,
                        bus: map.pci_bus() as u8,
                        devfn: map.devfn as u8,
                        entry: if single { map.entry_nr } else { i as i32 },
                        table_base: map.table_base,
                    };
                    t.pirqs.insert(base + i, PirqKind::Msi(source));
                }
                if !single {
                    map.entry_nr = count as i32;
                }
                map.pirq = base as i32;
            }
            MapPirqType::Unknown => {
                warn_limited!("vCPU {vcpu}: PHYSDEVOP_map_pirq of type UNKNOWN");
                return Err(XenErrno::EINVAL);
            }
        }
        Ok(())
    }

    /// `PHYSDEVOP_unmap_pirq`.
    fn unmap_pirq(&self, vcpu: u32, a: PhysdevUnmapPirq) -> Result<(), XenErrno> {
        self.channels.check_dom(a.domid).inspect_err(|_| {
            warn_limited!("vCPU {vcpu}: PHYSDEVOP_unmap_pirq for domain {}", a.domid);
        })?;
        let pirq = u32::try_from(a.pirq)
            .ok()
            .filter(|&p| p < self.nr_pirqs())
            .ok_or_else(|| {
                warn_limited!("vCPU {vcpu}: PHYSDEVOP_unmap_pirq of PIRQ {}", a.pirq);
                XenErrno::EINVAL
            })?;
        let mut t = self.lock();
        match t.pirqs.remove(&pirq) {
            None => {
                warn_limited!("vCPU {vcpu}: PHYSDEVOP_unmap_pirq of free PIRQ {pirq}");
                Err(XenErrno::ENOENT)
            }
            Some(PirqKind::Gsi(gsi)) => {
                t.gsi_pirq[gsi as usize] = None;
                Ok(())
            }
            Some(_) => Ok(()),
        }
    }

    /// Looks up an allocated PIRQ for `eoi` and `irq_status_query`.
    fn allocated(&self, vcpu: u32, what: &str, irq: u32) -> Result<PirqKind, XenErrno> {
        self.pirq(irq).ok_or_else(|| {
            warn_limited!("vCPU {vcpu}: {what} of unmapped PIRQ {irq}");
            XenErrno::EINVAL
        })
    }

    /// `PHYSDEVOP_eoi`.
    fn eoi<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        vcpu: u32,
        a: PhysdevEoi,
    ) -> Result<(), XenErrno> {
        if let PirqKind::Gsi(gsi) = self.allocated(vcpu, "PHYSDEVOP_eoi", a.irq)? {
            let asserted = self.lock().levels & (1 << gsi) != 0;
            if gsi >= NR_ISA_IRQS && asserted {
                self.channels.raise_pirq(mem, a.irq);
            }
        }
        Ok(())
    }

    /// `PHYSDEVOP_irq_status_query`.
    fn irq_status_query(&self, vcpu: u32, q: &mut PhysdevIrqStatusQuery) -> Result<(), XenErrno> {
        let kind = self.allocated(vcpu, "PHYSDEVOP_irq_status_query", q.irq)?;
        let mut flags = XenIrqStatFlags::empty();
        if matches!(kind, PirqKind::Gsi(_)) {
            flags |= XenIrqStatFlags::NEEDS_EOI;
        }
        q.set_status_flags(flags);
        Ok(())
    }

    /// `PHYSDEVOP_get_free_pirq`.
    fn get_free_pirq(&self, vcpu: u32, a: &mut PhysdevGetFreePirq) -> Result<(), XenErrno> {
        let nr_pirqs = self.nr_pirqs();
        let mut t = self.lock();
        let gsi_order = a.type_ == MapPirqType::Gsi.raw();
        let pirq = t.free_pirq(nr_pirqs, gsi_order).ok_or_else(|| {
            warn_limited!("vCPU {vcpu}: PHYSDEVOP_get_free_pirq: no PIRQ left");
            XenErrno::ENOSPC
        })?;
        t.pirqs.insert(pirq, PirqKind::Allocated);
        a.pirq = pirq;
        Ok(())
    }
}

impl<M: GuestMemoryBackend> Family<M> for PhysdevOp {
    fn call(&self, ctx: &mut Ctx<'_, M>, call: &Hypercall) -> HcResult {
        let raw = call.arg(0) as u32;
        let arg = ctx.abi.word(call.arg(1));
        let vcpu = ctx.vcpu;
        let cmd = Cmd::try_from(raw).ok().filter(|c| c.is_hvm_pirq_op());
        let Some(cmd) = cmd else {
            warn_limited!("vCPU {vcpu}: physdev_op {raw} is not available to an HVM domU");
            return Err(XenErrno::ENOSYS);
        };
        match cmd {
            Cmd::MapPirq if ctx.abi.is_64() => {
                let mut map: PhysdevMapPirq = ctx.read(arg)?;
                self.map_pirq(vcpu, &mut map)?;
                ctx.write(arg, &map)?;
            }
            Cmd::MapPirq => {
                let compat: PhysdevMapPirqCompat = ctx.read(arg)?;
                let mut map = PhysdevMapPirq::from(compat);
                self.map_pirq(vcpu, &mut map)?;
                let out = PhysdevMapPirqCompat {
                    pirq: map.pirq,
                    entry_nr: map.entry_nr,
                    ..compat
                };
                ctx.write(arg, &out)?;
            }
            Cmd::UnmapPirq => self.unmap_pirq(vcpu, ctx.read(arg)?)?,
            Cmd::Eoi => self.eoi(ctx.phys(), vcpu, ctx.read(arg)?)?,
            Cmd::IrqStatusQuery => {
                let mut q: PhysdevIrqStatusQuery = ctx.read(arg)?;
                self.irq_status_query(vcpu, &mut q)?;
                ctx.write(arg, &q)?;
            }
            Cmd::GetFreePirq => {
                let mut a: PhysdevGetFreePirq = ctx.read(arg)?;
                self.get_free_pirq(vcpu, &mut a)?;
                ctx.write(arg, &a)?;
            }
            _ => return Err(XenErrno::ENOSYS),
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use vm_memory::ByteValued;
    use xen_abi::xen::{DOMID_SELF, DomId, HypercallNr};
    use xen_evtchn::Config;

    use super::*;
    use crate::call::Abi;
    use crate::testing::{ABIS, BAD, BUF, TestVm};

    const SHINFO: u64 = 0x20;
    const GSI: i32 = MapPirqType::Gsi.raw();
    const MSI: i32 = MapPirqType::Msi.raw();

    fn vm() -> (TestVm, Arc<PhysdevOp>) {
        let mut vm = TestVm::new(2);
        vm.domain.lock().shared_info_gfn = Some(SHINFO);
        let ch = Arc::new(
            EventChannels::new(Config::new(1), vm.domain.clone(), vm.upcalls.clone()).unwrap(),
        );
        let phys = Arc::new(PhysdevOp::new(ch));
        vm.dispatcher.register(HypercallNr::PhysdevOp, phys.clone());
        (vm, phys)
    }

    fn op(vm: &TestVm, abi: Abi, cmd: Cmd, arg: u64) -> HcResult {
        vm.call(0, abi, HypercallNr::PhysdevOp, &[u64::from(cmd.raw()), arg])
    }

    fn map_arg(domid: DomId, type_: i32, index: i32, pirq: i32) -> PhysdevMapPirq {
        PhysdevMapPirq {
            domid,
            type_,
            index,
            pirq,
            ..Default::default()
        }
    }

    /// Makes `map_pirq` with `m` laid out for `abi`; returns the result
    /// and the argument read back.
    fn map_full(vm: &TestVm, abi: Abi, m: PhysdevMapPirq) -> (HcResult, PhysdevMapPirq) {
        let r = if abi.is_64() {
            vm.write(BUF, m);
            op(vm, abi, Cmd::MapPirq, BUF)
        } else {
            let c = PhysdevMapPirqCompat {
                domid: m.domid,
                pad0: 0,
                type_: m.type_,
                index: m.index,
                pirq: m.pirq,
                bus: m.bus,
                devfn: m.devfn,
                entry_nr: m.entry_nr,
                table_base: m.table_base,
            };
            // A canary right after the 36-byte compat argument.
            vm.write(BUF + 36, 0xa5a5_a5a5u32);
            vm.write(BUF, c);
            let r = op(vm, abi, Cmd::MapPirq, BUF);
            assert_eq!(vm.read::<u32>(BUF + 36), 0xa5a5_a5a5);
            r
        };
        let back = if abi.is_64() {
            vm.read::<PhysdevMapPirq>(BUF)
        } else {
            vm.read::<PhysdevMapPirqCompat>(BUF).into()
        };
        (r, back)
    }

    /// Maps and returns the PIRQ written back.
    fn map(vm: &TestVm, abi: Abi, type_: i32, index: i32, pirq: i32) -> Result<i32, XenErrno> {
        let (r, back) = map_full(vm, abi, map_arg(DOMID_SELF, type_, index, pirq));
        r.map(|_| back.pirq)
    }

    fn unmap(vm: &TestVm, abi: Abi, domid: DomId, pirq: i32) -> HcResult {
        vm.write(
            BUF,
            PhysdevUnmapPirq {
                domid,
                pad: 0,
                pirq,
            },
        );
        op(vm, abi, Cmd::UnmapPirq, BUF)
    }

    fn eoi(vm: &TestVm, abi: Abi, irq: u32) -> HcResult {
        vm.write(BUF, PhysdevEoi { irq });
        op(vm, abi, Cmd::Eoi, BUF)
    }

    fn query(vm: &TestVm, abi: Abi, irq: u32) -> Result<u32, XenErrno> {
        vm.write(BUF, PhysdevIrqStatusQuery { irq, flags: 0xff });
        op(vm, abi, Cmd::IrqStatusQuery, BUF)?;
        Ok(vm.read::<PhysdevIrqStatusQuery>(BUF).flags)
    }

    fn get_free(vm: &TestVm, abi: Abi, type_: i32) -> Result<u32, XenErrno> {
        vm.write(BUF, PhysdevGetFreePirq { type_, pirq: 0 });
        op(vm, abi, Cmd::GetFreePirq, BUF)?;
        Ok(vm.read::<PhysdevGetFreePirq>(BUF).pirq)
    }

    fn pending_word(port: u32) -> u64 {
        SHINFO * 4096 + 2048 + u64::from(port / 64) * 8
    }

    fn pending(vm: &TestVm, port: u32) -> bool {
        vm.read::<u64>(pending_word(port)) & (1 << (port % 64)) != 0
    }

    fn clear_pending(vm: &TestVm, port: u32) {
        vm.write(pending_word(port), 0u64);
    }

    fn bind(vm: &TestVm, phys: &PhysdevOp, pirq: u32) -> u32 {
        phys.channels().bind_pirq(&vm.mem, pirq, false).unwrap()
    }

    #[test]
    fn test_map_pirq_gsi_auto_allocates_in_xen_order() {
        for abi in ABIS {
            let (vm, phys) = vm();
            // 16..23 first, in GSI order of the calls, then from the top.
            for (i, gsi) in [9, 20, 0, 1, 2, 3, 4, 5, 6, 7].into_iter().enumerate() {
                let want = if i < 8 {
                    16 + i as i32
                } else {
                    255 - (i as i32 - 8)
                };
                assert_eq!(map(&vm, abi, GSI, gsi, -1), Ok(want), "{abi:?} GSI {gsi}");
            }
            assert_eq!(phys.gsi_pirq(9), Some(16));
            assert_eq!(phys.pirq(17), Some(PirqKind::Gsi(20)));
            assert_eq!(phys.pirq(254), Some(PirqKind::Gsi(7)));
            // Mapping a mapped GSI again returns its PIRQ.
            assert_eq!(map(&vm, abi, GSI, 9, -1), Ok(16));
        }
    }

    #[test]
    fn test_map_pirq_gsi_explicit_pirq_checked() {
        for abi in ABIS {
            let (vm, phys) = vm();
            assert_eq!(map(&vm, abi, GSI, 5, 40), Ok(40));
            assert_eq!(map(&vm, abi, GSI, 5, 40), Ok(40), "same mapping again");
            assert_eq!(map(&vm, abi, GSI, 6, 40), Err(XenErrno::EBUSY));
            assert_eq!(map(&vm, abi, GSI, 5, 41), Err(XenErrno::EBUSY));
            assert_eq!(map(&vm, abi, GSI, 6, 256), Err(XenErrno::EINVAL));
            assert_eq!(map(&vm, abi, GSI, 6, i32::MAX), Err(XenErrno::EINVAL));
            // A PIRQ from get_free_pirq may be mapped.
            let p = get_free(&vm, abi, MSI).unwrap();
            assert_eq!(map(&vm, abi, GSI, 6, p as i32), Ok(p as i32));
            assert_eq!(phys.gsi_pirq(6), Some(p));
            // A PIRQ mapped to an MSI may not.
            let m = map(&vm, abi, MSI, 0, -1).unwrap();
            assert_eq!(map(&vm, abi, GSI, 7, m), Err(XenErrno::EBUSY));
            assert_eq!(phys.gsi_pirq(7), None);
        }
    }

    #[test]
    fn test_map_pirq_bad_gsi_or_type_returns_einval() {
        for abi in ABIS {
            let (vm, phys) = vm();
            for gsi in [24, 47, -1, i32::MIN] {
                assert_eq!(map(&vm, abi, GSI, gsi, -1), Err(XenErrno::EINVAL));
            }
            for ty in [MapPirqType::Unknown.raw(), 5, -1, i32::MAX] {
                assert_eq!(map(&vm, abi, ty, 3, -1), Err(XenErrno::EINVAL));
            }
            assert_eq!(phys.gsi_pirq(3), None);
        }
    }

    #[test]
    fn test_map_pirq_foreign_domid_returns_eperm_or_esrch() {
        for abi in ABIS {
            let (vm, _) = vm();
            let (r, _) = map_full(&vm, abi, map_arg(0, GSI, 1, -1));
            assert_eq!(r, Err(XenErrno::EPERM));
            for domid in [2, 0x7ff1, 0xffff] {
                let (r, _) = map_full(&vm, abi, map_arg(domid, GSI, 1, -1));
                assert_eq!(r, Err(XenErrno::ESRCH));
            }
            let (r, back) = map_full(&vm, abi, map_arg(1, GSI, 1, -1));
            assert_eq!((r, back.pirq), (Ok(0), 16), "own domid accepted");
            assert_eq!(unmap(&vm, abi, 0, 16), Err(XenErrno::EPERM));
            assert_eq!(unmap(&vm, abi, 3, 16), Err(XenErrno::ESRCH));
            assert_eq!(unmap(&vm, abi, 1, 16), Ok(0));
        }
    }

    #[test]
    fn test_map_pirq_msi_types_allocate_top_down_and_record_source() {
        for abi in ABIS {
            let (vm, phys) = vm();
            let m = PhysdevMapPirq {
                bus: 3,
                devfn: 0x21,
                entry_nr: 2,
                table_base: 0x1_febf_0000,
                ..map_arg(DOMID_SELF, MSI, 0, -1)
            };
            let (r, back) = map_full(&vm, abi, m);
            assert_eq!((r, back.pirq), (Ok(0), 255));
            assert_eq!(
                phys.pirq(255),
                Some(PirqKind::Msi(MsiSource {
                    segment: 0,
                    bus: 3,
                    devfn: 0x21,
                    entry: 2,
                    table_base: 0x1_febf_0000,
                }))
            );
            let seg = PhysdevMapPirq {
                bus: (7 << 16) | 1,
                ..map_arg(DOMID_SELF, MapPirqType::MsiSeg.raw(), 0, -1)
            };
            assert_eq!(map_full(&vm, abi, seg).1.pirq, 254);
            let Some(PirqKind::Msi(s)) = phys.pirq(254) else {
                panic!("not an MSI PIRQ");
            };
            assert_eq!((s.segment, s.bus), (7, 1));
            // Multi-MSI: rounded up to 4, a block below the two above.
            let multi = PhysdevMapPirq {
                entry_nr: 3,
                ..map_arg(DOMID_SELF, MapPirqType::MultiMsi.raw(), 0, -1)
            };
            let (r, back) = map_full(&vm, abi, multi);
            assert_eq!((r, back.pirq, back.entry_nr), (Ok(0), 250, 4));
            for (i, p) in (250..254).enumerate() {
                assert!(matches!(phys.pirq(p), Some(PirqKind::Msi(s)) if s.entry == i as i32));
            }
            for n in [0, -1, 33] {
                let bad = PhysdevMapPirq {
                    entry_nr: n,
                    ..multi
                };
                assert_eq!(map_full(&vm, abi, bad).0, Err(XenErrno::EDOM));
            }
            // An explicit base must have the whole block usable.
            let explicit = PhysdevMapPirq {
                entry_nr: 2,
                pirq: 249,
                ..multi
            };
            assert_eq!(map_full(&vm, abi, explicit).0, Err(XenErrno::EBUSY));
            let explicit = PhysdevMapPirq {
                pirq: 254,
                ..map_arg(DOMID_SELF, MSI, 0, 0)
            };
            assert_eq!(map_full(&vm, abi, explicit).0, Err(XenErrno::EBUSY));
            let explicit = PhysdevMapPirq {
                pirq: 100,
                ..explicit
            };
            assert_eq!(map(&vm, abi, MSI, 0, 100), Ok(100));
            assert_eq!(map_full(&vm, abi, explicit).0, Err(XenErrno::EBUSY));
        }
    }

    #[test]
    fn test_map_pirq_bad_pointer_returns_efault() {
        for abi in ABIS {
            let (vm, phys) = vm();
            assert_eq!(op(&vm, abi, Cmd::MapPirq, BAD), Err(XenErrno::EFAULT));
            assert_eq!(op(&vm, abi, Cmd::UnmapPirq, BAD), Err(XenErrno::EFAULT));
            assert_eq!(op(&vm, abi, Cmd::Eoi, BAD), Err(XenErrno::EFAULT));
            assert_eq!(
                op(&vm, abi, Cmd::IrqStatusQuery, BAD),
                Err(XenErrno::EFAULT)
            );
            assert_eq!(op(&vm, abi, Cmd::GetFreePirq, BAD), Err(XenErrno::EFAULT));
            assert_eq!(phys.pirq(255), None);
        }
    }

    #[test]
    fn test_map_pirq_compat_layout_is_36_bytes() {
        let (vm, phys) = vm();
        let c = PhysdevMapPirqCompat {
            domid: DOMID_SELF,
            type_: MSI,
            index: 0,
            pirq: -1,
            bus: 2,
            devfn: 8,
            entry_nr: 1,
            table_base: 0xfebf_1000,
            ..Default::default()
        };
        vm.write(BUF, c);
        assert_eq!(op(&vm, Abi::X86_32, Cmd::MapPirq, BUF), Ok(0));
        assert_eq!(vm.read::<u32>(BUF + 12), 255);
        assert_eq!(vm.read_bytes(BUF, 36)[28..36], 0xfebf_1000u64.to_ne_bytes());
        let Some(PirqKind::Msi(s)) = phys.pirq(255) else {
            panic!("not an MSI PIRQ");
        };
        assert_eq!(s.table_base, 0xfebf_1000);
        assert_eq!(c.as_slice().len(), 36);
    }

    #[test]
    fn test_unmap_pirq_frees_or_returns_errno() {
        for abi in ABIS {
            let (vm, phys) = vm();
            let p = map(&vm, abi, GSI, 10, -1).unwrap();
            let port = bind(&vm, &phys, p as u32);
            assert_eq!(unmap(&vm, abi, DOMID_SELF, p), Ok(0));
            assert_eq!(phys.gsi_pirq(10), None);
            assert_eq!(phys.pirq(p as u32), None);
            // The event channel stays bound; the GSI is the IOAPIC's again.
            assert!(!phys.gsi_asserted(&vm.mem, 10));
            assert!(!pending(&vm, port));
            assert_eq!(unmap(&vm, abi, DOMID_SELF, p), Err(XenErrno::ENOENT));
            assert_eq!(unmap(&vm, abi, DOMID_SELF, -1), Err(XenErrno::EINVAL));
            assert_eq!(unmap(&vm, abi, DOMID_SELF, 256), Err(XenErrno::EINVAL));
            let m = map(&vm, abi, MSI, 0, -1).unwrap();
            assert_eq!(unmap(&vm, abi, DOMID_SELF, m), Ok(0));
            let f = get_free(&vm, abi, MSI).unwrap();
            assert_eq!(f, 255, "freed MSI PIRQ reused");
            assert_eq!(unmap(&vm, abi, DOMID_SELF, f as i32), Ok(0));
            // The freed PIRQ is allocated again for the GSI.
            assert_eq!(map(&vm, abi, GSI, 11, -1), Ok(p));
        }
    }

    #[test]
    fn test_gsi_asserted_raises_the_bound_pirq_port() {
        let (vm, phys) = vm();
        let p = map(&vm, Abi::X86_64, GSI, 10, -1).unwrap() as u32;
        // Mapped but not bound: the GSI is still taken from the IOAPIC.
        assert!(phys.gsi_asserted(&vm.mem, 10));
        assert!(vm.take_upcalls().is_empty());
        let port = bind(&vm, &phys, p);
        assert!(phys.gsi_asserted(&vm.mem, 10));
        assert!(pending(&vm, port));
        assert_eq!(vm.take_upcalls(), vec![0]);
        assert!(!phys.gsi_asserted(&vm.mem, 11));
        assert!(!phys.gsi_asserted(&vm.mem, 24));
        assert!(!phys.gsi_asserted(&vm.mem, u32::MAX));
        assert!(!phys.set_gsi_level(&vm.mem, 11, true));
        assert!(!phys.set_gsi_level(&vm.mem, 99, true));
    }

    #[test]
    fn test_eoi_level_gsi_still_asserted_reraises() {
        for abi in ABIS {
            let (vm, phys) = vm();
            let p = map(&vm, abi, GSI, 20, -1).unwrap() as u32;
            let port = bind(&vm, &phys, p);
            assert!(phys.set_gsi_level(&vm.mem, 20, true));
            assert!(pending(&vm, port));
            clear_pending(&vm, port);
            assert_eq!(eoi(&vm, abi, p), Ok(0));
            assert!(pending(&vm, port), "still asserted: raised again");
            clear_pending(&vm, port);
            assert!(phys.set_gsi_level(&vm.mem, 20, false));
            assert!(!pending(&vm, port));
            assert_eq!(eoi(&vm, abi, p), Ok(0));
            assert!(!pending(&vm, port), "deasserted: not raised");
        }
    }

    #[test]
    fn test_eoi_isa_gsi_never_reraises() {
        let (vm, phys) = vm();
        let p = map(&vm, Abi::X86_64, GSI, 4, -1).unwrap() as u32;
        let port = bind(&vm, &phys, p);
        assert!(phys.set_gsi_level(&vm.mem, 4, true));
        clear_pending(&vm, port);
        assert_eq!(eoi(&vm, Abi::X86_64, p), Ok(0));
        assert!(!pending(&vm, port));
    }

    #[test]
    fn test_eoi_unmapped_pirq_returns_einval() {
        for abi in ABIS {
            let (vm, _) = vm();
            for irq in [0, 16, 255, 256, u32::MAX] {
                assert_eq!(eoi(&vm, abi, irq), Err(XenErrno::EINVAL));
            }
            let m = map(&vm, abi, MSI, 0, -1).unwrap();
            assert_eq!(eoi(&vm, abi, m as u32), Ok(0));
        }
    }

    #[test]
    fn test_irq_status_query_needs_eoi_for_gsi_only() {
        for abi in ABIS {
            let (vm, _) = vm();
            let g = map(&vm, abi, GSI, 3, -1).unwrap() as u32;
            let m = map(&vm, abi, MSI, 0, -1).unwrap() as u32;
            let f = get_free(&vm, abi, MSI).unwrap();
            assert_eq!(query(&vm, abi, g), Ok(XenIrqStatFlags::NEEDS_EOI.bits()));
            assert_eq!(query(&vm, abi, m), Ok(0));
            assert_eq!(query(&vm, abi, f), Ok(0));
            for irq in [0, 17, 256, u32::MAX] {
                assert_eq!(query(&vm, abi, irq), Err(XenErrno::EINVAL));
            }
        }
    }

    #[test]
    fn test_get_free_pirq_allocates_in_xen_order() {
        for abi in ABIS {
            let (vm, phys) = vm();
            assert_eq!(get_free(&vm, abi, MSI), Ok(255));
            assert_eq!(get_free(&vm, abi, GSI), Ok(16));
            // Any other type, even an invalid one, counts from the top.
            assert_eq!(get_free(&vm, abi, 77), Ok(254));
            assert_eq!(phys.pirq(16), Some(PirqKind::Allocated));
        }
    }

    #[test]
    fn test_get_free_pirq_exhausted_returns_enospc() {
        for abi in ABIS {
            let (vm, phys) = vm();
            let mut got = Vec::new();
            while let Ok(p) = get_free(&vm, abi, GSI) {
                got.push(p);
            }
            // 16..23, then 255 down to 24: 0..15 never.
            assert_eq!(got.len(), 8 + 232);
            assert_eq!(got[..8], [16, 17, 18, 19, 20, 21, 22, 23]);
            assert_eq!(got.last(), Some(&24));
            assert_eq!(get_free(&vm, abi, GSI), Err(XenErrno::ENOSPC));
            assert_eq!(get_free(&vm, abi, MSI), Err(XenErrno::ENOSPC));
            assert_eq!(map(&vm, abi, MSI, 0, -1), Err(XenErrno::ENOSPC));
            // Allocated PIRQs may still be mapped explicitly; 0..15 are free.
            assert_eq!(map(&vm, abi, GSI, 1, 3), Ok(3));
            assert_eq!(map(&vm, abi, GSI, 2, 200), Ok(200));
            assert_eq!(map(&vm, abi, GSI, 5, -1), Err(XenErrno::ENOSPC));
            phys.reset();
            assert_eq!(get_free(&vm, abi, GSI), Ok(16));
        }
    }

    #[test]
    fn test_physdev_small_nr_pirqs_never_allocates_below_16() {
        let mut vm = TestVm::new(1);
        vm.domain.lock().shared_info_gfn = Some(SHINFO);
        let config = Config {
            nr_pirqs: 20,
            ..Config::new(1)
        };
        let ch =
            Arc::new(EventChannels::new(config, vm.domain.clone(), vm.upcalls.clone()).unwrap());
        vm.dispatcher
            .register(HypercallNr::PhysdevOp, Arc::new(PhysdevOp::new(ch)));
        let abi = Abi::X86_64;
        assert_eq!(get_free(&vm, abi, MSI), Err(XenErrno::ENOSPC));
        for want in 16..20 {
            assert_eq!(map(&vm, abi, GSI, want, -1), Ok(want));
        }
        assert_eq!(map(&vm, abi, GSI, 0, -1), Err(XenErrno::ENOSPC));
        assert_eq!(map(&vm, abi, GSI, 0, 20), Err(XenErrno::EINVAL));
    }

    #[test]
    fn test_physdev_other_ops_return_enosys() {
        for abi in ABIS {
            let (vm, _) = vm();
            vm.write(BUF, 0x1234u64);
            for cmd in [
                Cmd::PirqEoiGmfnV1,
                Cmd::PirqEoiGmfnV2,
                Cmd::SetupGsi,
                Cmd::SetIopl,
                Cmd::ManagePciAdd,
                Cmd::PciDeviceAdd,
                Cmd::DbgpOp,
            ] {
                assert_eq!(op(&vm, abi, cmd, BUF), Err(XenErrno::ENOSYS), "{cmd:?}");
            }
            for raw in [0, 18, 22, 99, u64::MAX] {
                let r = vm.call(0, abi, HypercallNr::PhysdevOp, &[raw, BUF]);
                assert_eq!(r, Err(XenErrno::ENOSYS));
            }
        }
    }

    #[test]
    fn test_deliver_msi_pirq_raises_msi_pirqs_only() {
        let (vm, phys) = vm();
        let f = get_free(&vm, Abi::X86_64, MSI).unwrap();
        let m = map(&vm, Abi::X86_64, MSI, 0, -1).unwrap() as u32;
        let g = map(&vm, Abi::X86_64, GSI, 9, -1).unwrap() as u32;
        assert!(!phys.deliver_msi_pirq(&vm.mem, f), "not bound yet");
        let (pf, pm, pg) = (
            bind(&vm, &phys, f),
            bind(&vm, &phys, m),
            bind(&vm, &phys, g),
        );
        assert!(phys.deliver_msi_pirq(&vm.mem, f));
        assert!(phys.deliver_msi_pirq(&vm.mem, m));
        assert!(!phys.deliver_msi_pirq(&vm.mem, g));
        assert!(!phys.deliver_msi_pirq(&vm.mem, 100));
        assert!(pending(&vm, pf) && pending(&vm, pm) && !pending(&vm, pg));
    }

    #[test]
    fn test_state_restored_into_fresh_table_behaves_the_same() {
        let (vm, phys) = vm();
        let g = map(&vm, Abi::X86_64, GSI, 20, -1).unwrap() as u32;
        let m = map(&vm, Abi::X86_64, MSI, 0, -1).unwrap() as u32;
        let f = get_free(&vm, Abi::X86_64, MSI).unwrap();
        phys.set_gsi_level(&vm.mem, 20, true);
        let saved = phys.state();
        assert_eq!(saved.pirqs.len(), 3);
        assert_eq!(saved.gsi_levels, 1 << 20);

        let (vm2, phys2) = self::vm();
        phys2.restore(&saved).unwrap();
        assert_eq!(phys2.state(), saved);
        assert_eq!(phys2.gsi_pirq(20), Some(g));
        // The same next allocations and answers on both.
        for (v, p) in [(&vm, &phys), (&vm2, &phys2)] {
            assert_eq!(get_free(v, Abi::X86_64, MSI), Ok(f - 1));
            assert_eq!(map(v, Abi::X86_64, GSI, 20, -1), Ok(g as i32));
            assert_eq!(p.pirq(m).map(|k| matches!(k, PirqKind::Msi(_))), Some(true));
        }
        assert_eq!(phys.state(), phys2.state());
    }

    #[test]
    fn test_restore_refuses_inconsistent_state_and_keeps_table() {
        let (_vm, phys) = vm();
        let good = State {
            pirqs: vec![(16, PirqKind::Gsi(3))],
            gsi_levels: 0,
        };
        phys.restore(&good).unwrap();
        for (bad, err) in [
            (
                State {
                    pirqs: vec![(256, PirqKind::Allocated)],
                    gsi_levels: 0,
                },
                StateError::Pirq(256),
            ),
            (
                State {
                    pirqs: vec![(16, PirqKind::Gsi(3)), (17, PirqKind::Gsi(3))],
                    gsi_levels: 0,
                },
                StateError::Gsi(3),
            ),
            (
                State {
                    pirqs: vec![(16, PirqKind::Gsi(24))],
                    gsi_levels: 0,
                },
                StateError::Gsi(24),
            ),
            (
                State {
                    pirqs: vec![(30, PirqKind::Allocated), (30, PirqKind::Allocated)],
                    gsi_levels: 0,
                },
                StateError::Pirq(30),
            ),
            (
                State {
                    pirqs: vec![],
                    gsi_levels: 1 << 24,
                },
                StateError::Levels(1 << 24),
            ),
        ] {
            assert_eq!(phys.restore(&bad), Err(err));
            assert_eq!(phys.state(), good);
        }
    }

    proptest! {
        #[test]
        fn test_physdev_arbitrary_args_never_panic(
            calls in proptest::collection::vec(
                (
                    prop_oneof![Just(5u64), Just(12), Just(13), Just(14), Just(23), any::<u64>()],
                    proptest::collection::vec(any::<u8>(), 40),
                    prop_oneof![Just(BUF), Just(BAD), any::<u64>()],
                    any::<bool>(),
                ),
                1..24,
            ),
            levels in proptest::collection::vec((0u32..30, any::<bool>()), 0..8),
        ) {
            let (vm, phys) = vm();
            for (cmd, bytes, arg, is_64) in calls {
                let abi = if is_64 { Abi::X86_64 } else { Abi::X86_32 };
                vm.write_bytes(BUF, &bytes);
                let r = vm.call(0, abi, HypercallNr::PhysdevOp, &[cmd, abi.word(arg)]);
                prop_assert!(r.is_err() || r == Ok(0));
                for &(gsi, level) in &levels {
                    let mapped = phys.set_gsi_level(&vm.mem, gsi, level);
                    prop_assert_eq!(mapped, phys.gsi_pirq(gsi).is_some());
                    phys.gsi_asserted(&vm.mem, gsi);
                }
                // The two directions of the GSI map agree.
                for gsi in 0..NR_GSIS {
                    if let Some(p) = phys.gsi_pirq(gsi) {
                        prop_assert_eq!(phys.pirq(p), Some(PirqKind::Gsi(gsi)));
                    }
                }
            }
        }
    }
}
