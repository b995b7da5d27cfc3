// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Guest time upkeep: the pvclock `vcpu_time_info` of each vCPU, the
//! shared_info wall clock, and per-vCPU runstate accounting with its guest
//! area.
//!
//! Follows Xen's public `xen.h` (`vcpu_time_info`, `shared_info`) and
//! `vcpu.h` (`vcpu_runstate_info`), `xen-abi.md` §3.1, §3.3 and §3.4, and
//! the writers in Xen's `arch/x86/time.c` and `common/domain.c`
//! (`update_runstate_area`).
//!
//! Everything here writes guest-physical memory through vm-memory. A copy
//! that does not land in guest RAM is skipped with a rate-limited warning,
//! never a panic, as Xen skips a time or runstate area it cannot write.
//!
//! * [`update_vcpu_time`] writes the pvclock into the vCPU's vcpu_info
//!   (`time` at offset 32) and into its secondary time area, with Xen's
//!   version protocol (`version_update_begin`: `(v + 1) | 1`, odd while
//!   writing, then `+ 1`, so +2 per update from an even value).
//! * [`update_wallclock`] writes `wc_sec`/`wc_nsec`/`wc_sec_hi` in the
//!   latched shared_info layout under `wc_version`.
//! * [`Runstate`] accounts time per state; [`Runstates`] is the per-domain
//!   table of trackers and registered runstate areas that `VCPUOP`s and the
//!   VMM share, and [`write_runstate`] writes one area.
//!
//! Where we differ from QEMU/KVM (where KVM writes these areas itself):
//! * a runstate area registered by virtual address is translated once, at
//!   registration, as QEMU does, but page by page: an area straddling a
//!   page boundary keeps both frames ([`SplitArea`]) and is written in two
//!   parts. QEMU hands KVM one GPA and KVM assumes the next page follows it
//!   in guest-physical memory. Xen re-translates the address on each update.
//! * `XEN_RUNSTATE_UPDATE` is used as Xen does: for virtual areas when the
//!   domain enabled `VMASST_TYPE_runstate_update_flag`, always for areas
//!   registered by physical address. QEMU never enables the flag.
//! * a virtual runstate area follows the latched shared_info layout at each
//!   write (Xen's `has_32bit_shinfo()`); a physical one keeps the layout of
//!   the ABI that registered it (Xen's `runstate_guest_area_compat`).
//! * a secondary time area advances its own version counter; Xen copies the
//!   vcpu_info one. Readers only need it odd while an update is in flight.

use std::sync::Mutex;
use std::sync::atomic::{Ordering, fence};

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend};
use xen_abi::cpuid::TscScale;
use xen_abi::vcpu::{RunstateState, VcpuRunstateInfo, VcpuRunstateInfoCompat, XEN_RUNSTATE_UPDATE};
use xen_abi::xen::{PvclockFlags, VcpuTimeInfo, VmAssistType};

use crate::domain::Domain;
use crate::guest::{Access, Fault, GuestVirt};
use xen_abi::warn_limited;
use xen_abi::x86::PAGE_SIZE;

/// Offset of `time` inside a `vcpu_info` (both layouts).
pub const VCPU_INFO_TIME_OFFSET: u64 = 32;
/// Size of a `vcpu_time_info`.
pub const VCPU_TIME_INFO_SIZE: u64 = 32;
/// Size of the 64-bit `vcpu_runstate_info`.
pub const RUNSTATE_SIZE: u64 = 48;
/// Size of the 32-bit (compat, packed) `vcpu_runstate_info`.
pub const RUNSTATE_SIZE_COMPAT: u64 = 44;

/// Byte offsets of the wall-clock fields in one shared_info layout.
struct WallclockLayout {
    version: u64,
    sec: u64,
    nsec: u64,
    sec_hi: u64,
}

/// 64-bit shared_info: `wc_sec_hi` follows `wc_nsec`.
const WALLCLOCK_64: WallclockLayout = WallclockLayout {
    version: 3072,
    sec: 3076,
    nsec: 3080,
    sec_hi: 3084,
};

/// 32-bit shared_info: `wc_sec_hi` lives in `arch_shared_info`.
const WALLCLOCK_32: WallclockLayout = WallclockLayout {
    version: 2304,
    sec: 2308,
    nsec: 2312,
    sec_hi: 2340,
};

/// Xen's `version_update_begin()`: the next odd value.
fn version_begin(v: u32) -> u32 {
    v.wrapping_add(1) | 1
}

/// Xen's `version_update_end()`.
fn version_end(v: u32) -> u32 {
    v.wrapping_add(1)
}

/// Whether `[gpa, gpa + len)` is guest RAM.
pub(crate) fn in_ram<M: GuestMemoryBackend>(mem: &M, gpa: u64, len: u64) -> bool {
    gpa.checked_add(len).is_some()
        && GuestMemoryBackend::check_range(mem, GuestAddress(gpa), len as usize)
}

/// Stores a version word: one atomic release store when aligned, a plain
/// copy otherwise (a virtual time area need not be aligned).
fn store_version<M: GuestMemoryBackend>(mem: &M, gpa: u64, v: u32) -> bool {
    if gpa.is_multiple_of(4) {
        mem.store(v, GuestAddress(gpa), Ordering::Release).is_ok()
    } else {
        mem.write_obj(v, GuestAddress(gpa)).is_ok()
    }
}

/// The pvclock parameters of `vcpu` now, from the domain's clock: system
/// time, and when the guest TSC is known its value, the scale for its
/// frequency and `TSC_STABLE`; otherwise system time only (a guest then
/// reads a clock that stands still until the next update).
pub fn vcpu_time_info(domain: &Domain, vcpu: u32) -> VcpuTimeInfo {
    let clock = &domain.env.clock;
    let mut t = VcpuTimeInfo {
        system_time: clock.system_time_ns(),
        ..Default::default()
    };
    if let Some((tsc, khz)) = clock.guest_tsc(vcpu)
        && let Some(scale) = TscScale::from_tsc_khz(khz)
    {
        t.tsc_timestamp = tsc;
        t.tsc_to_system_mul = scale.mul;
        t.tsc_shift = scale.shift;
        t.set_pvclock_flags(PvclockFlags::TSC_STABLE);
    }
    t
}

/// Writes `info` as a `vcpu_time_info` at `gpa` with the version protocol.
/// Nothing is written unless all 32 bytes are RAM.
fn write_time_info<M: GuestMemoryBackend>(mem: &M, gpa: u64, info: &VcpuTimeInfo) -> bool {
    if !in_ram(mem, gpa, VCPU_TIME_INFO_SIZE) {
        return false;
    }
    let Ok(cur) = mem.read_obj::<u32>(GuestAddress(gpa)) else {
        return false;
    };
    let begin = version_begin(cur);
    if !store_version(mem, gpa, begin) {
        return false;
    }
    fence(Ordering::Release);
    let body = VcpuTimeInfo {
        version: begin,
        ..*info
    };
    // Everything but the version word.
    if mem
        .write_slice(&body.as_slice()[4..], GuestAddress(gpa + 4))
        .is_err()
    {
        return false;
    }
    fence(Ordering::Release);
    store_version(mem, gpa, version_end(begin))
}

/// Refreshes the pvclock of `vcpu`: `time` in its vcpu_info
/// ([`Domain::vcpu_info_gpa`]) and its secondary time area
/// (`VcpuState::time_area`, a guest-physical address). Returns whether
/// every copy was written; a copy outside RAM is skipped with a warning.
pub fn update_vcpu_time<M: GuestMemoryBackend>(domain: &Domain, mem: &M, vcpu: u32) -> bool {
    let info_gpa = domain.vcpu_info_gpa(vcpu);
    let area = domain
        .lock()
        .vcpus
        .get(vcpu as usize)
        .and_then(|v| v.time_area);
    let t = vcpu_time_info(domain, vcpu);
    let mut ok = true;
    if let Some(gpa) = info_gpa {
        let at = gpa.wrapping_add(VCPU_INFO_TIME_OFFSET);
        if !write_time_info(mem, at, &t) {
            warn_limited!("vCPU {vcpu}: vcpu_info time at {at:#x} is not in guest RAM");
            ok = false;
        }
    }
    match area {
        Some(a) if a.physical && !write_time_info(mem, a.addr, &t) => {
            warn_limited!(
                "vCPU {vcpu}: time area at {:#x} is not in guest RAM",
                a.addr
            );
            ok = false;
        }
        Some(a) if !a.physical => {
            warn_limited!(
                "vCPU {vcpu}: time area {:#x} is not guest-physical, skipped",
                a.addr
            );
            ok = false;
        }
        _ => {}
    }
    ok
}

/// Writes the wall clock (the time at system time 0, from
/// `Clock::wallclock_at_zero`) into shared_info in the latched layout, under
/// `wc_version`. Returns false (with a warning if the page is not RAM) when
/// shared_info is not placed or cannot be written.
pub fn update_wallclock<M: GuestMemoryBackend>(domain: &Domain, mem: &M) -> bool {
    let (gpa, long_mode) = {
        let st = domain.lock();
        (
            st.shared_info_gfn.map(|g| g.wrapping_mul(PAGE_SIZE)),
            st.long_mode,
        )
    };
    let Some(base) = gpa else {
        return false;
    };
    let l = if long_mode {
        &WALLCLOCK_64
    } else {
        &WALLCLOCK_32
    };
    if !in_ram(mem, base, PAGE_SIZE) {
        warn_limited!("shared_info at {base:#x} is not in guest RAM: wall clock not written");
        return false;
    }
    let (sec, nsec) = domain.env.clock.wallclock_at_zero();
    let ver_at = GuestAddress(base + l.version);
    let Ok(cur) = mem.read_obj::<u32>(ver_at) else {
        return false;
    };
    let begin = version_begin(cur);
    let mut ok = store_version(mem, base + l.version, begin);
    fence(Ordering::Release);
    ok &= mem
        .write_obj(sec as u32, GuestAddress(base + l.sec))
        .is_ok();
    ok &= mem.write_obj(nsec, GuestAddress(base + l.nsec)).is_ok();
    ok &= mem
        .write_obj((sec >> 32) as u32, GuestAddress(base + l.sec_hi))
        .is_ok();
    fence(Ordering::Release);
    ok &= store_version(mem, base + l.version, version_end(begin));
    ok
}

/// Where a registered guest area lives in guest-physical memory: its first
/// byte, and the frame of the next page for an area that runs past the end
/// of its first page (translated separately, so it need not follow the
/// first frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SplitArea {
    /// GPA of the first byte.
    pub gpa: u64,
    /// GPA of the start of the following page, if the area may use it.
    pub next_page: Option<u64>,
}

impl SplitArea {
    /// An area at a guest-physical address: bytes past the first page (if
    /// any) continue in the next guest frame.
    pub fn physical(gpa: u64) -> Self {
        Self {
            gpa,
            next_page: (gpa & !(PAGE_SIZE - 1)).checked_add(PAGE_SIZE),
        }
    }

    /// Translates a guest-virtual area of `len` bytes (writable) with the
    /// calling vCPU's paging, page by page. Bytes up to `extent` (≥ `len`)
    /// are translated too when possible: a runstate area registered in the
    /// 32-bit layout may later be written in the 4-byte-longer 64-bit one.
    pub fn translate<M: GuestMemoryBackend>(
        gv: &GuestVirt<'_, M>,
        gva: u64,
        len: u64,
        extent: u64,
    ) -> Result<Self, Fault> {
        let first_len = PAGE_SIZE - (gva & (PAGE_SIZE - 1));
        let gpa = gv
            .translate_area(gva, len.min(first_len), Access::Write)?
            .ok_or(Fault::NotPresent { gva })?;
        let mut next_page = None;
        let extent = extent.max(len);
        if extent > first_len {
            let rest = (extent - first_len).min(PAGE_SIZE);
            let second = gva
                .checked_add(first_len)
                .ok_or(Fault::NonCanonical { gva })
                .and_then(|n| gv.translate_area(n, rest, Access::Write));
            match second {
                Ok(Some(g)) => next_page = Some(g),
                Ok(None) => {}
                Err(f) if len > first_len => return Err(f),
                Err(_) => {}
            }
        }
        Ok(Self { gpa, next_page })
    }

    /// Bytes of the area that lie in its first page.
    pub fn first_len(&self) -> u64 {
        PAGE_SIZE - (self.gpa & (PAGE_SIZE - 1))
    }

    /// The guest-physical pieces of `[off, off + len)`.
    fn pieces(&self, off: u64, len: u64) -> Option<[(u64, u64, u64); 2]> {
        let first_len = self.first_len();
        let end = off.checked_add(len)?;
        let a_end = end.min(first_len);
        let a = if off < a_end {
            (self.gpa.checked_add(off)?, 0, a_end - off)
        } else {
            (0, 0, 0)
        };
        let b = if end > first_len {
            let start = off.max(first_len);
            let next = self.next_page?;
            (
                next.checked_add(start - first_len)?,
                start - off,
                end - start,
            )
        } else {
            (0, 0, 0)
        };
        Some([a, b])
    }

    /// Writes `bytes` at offset `off` of the area. Nothing is written (and
    /// false is returned) unless every byte lands in RAM.
    pub fn write<M: GuestMemoryBackend>(&self, mem: &M, off: u64, bytes: &[u8]) -> bool {
        let Some(pieces) = self.pieces(off, bytes.len() as u64) else {
            return false;
        };
        if pieces.iter().any(|&(g, _, n)| n != 0 && !in_ram(mem, g, n)) {
            return false;
        }
        pieces.iter().filter(|p| p.2 != 0).all(|&(g, at, n)| {
            mem.write_slice(&bytes[at as usize..(at + n) as usize], GuestAddress(g))
                .is_ok()
        })
    }

    /// Reads `buf.len()` bytes at offset `off` of the area.
    pub fn read<M: GuestMemoryBackend>(&self, mem: &M, off: u64, buf: &mut [u8]) -> bool {
        let Some(pieces) = self.pieces(off, buf.len() as u64) else {
            return false;
        };
        pieces.iter().filter(|p| p.2 != 0).all(|&(g, at, n)| {
            mem.read_slice(&mut buf[at as usize..(at + n) as usize], GuestAddress(g))
                .is_ok()
        })
    }
}

/// Per-state time accounting of one vCPU (Xen's `v->runstate`).
///
/// Time only moves forward: `sum(time) + (now − state_entry_time)` equals
/// the time since the tracker started at every `now`, so whenever the
/// tracker is written out, the four times add up to `state_entry_time`
/// minus the start time (system time 0 for [`Runstates`]' trackers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Runstate {
    /// The current state.
    pub state: RunstateState,
    /// System time (ns) the current state was entered.
    pub state_entry_time: u64,
    /// Time (ns) spent in each state before the current one was entered,
    /// indexed by [`RunstateState`].
    pub time: [u64; 4],
}

impl Runstate {
    /// A tracker that entered `state` at `now_ns`, with nothing accumulated.
    pub fn new(state: RunstateState, now_ns: u64) -> Self {
        Self {
            state,
            state_entry_time: now_ns,
            time: [0; 4],
        }
    }

    /// Moves to `state` at `now_ns`, charging the time since the last change
    /// to the old state. A `now_ns` before the last change is taken as the
    /// last change (time never runs backwards).
    pub fn set_state(&mut self, state: RunstateState, now_ns: u64) {
        let now = now_ns.max(self.state_entry_time);
        let slot = &mut self.time[self.state as usize];
        *slot = slot.wrapping_add(now - self.state_entry_time);
        self.state = state;
        self.state_entry_time = now;
    }

    /// The tracker as the guest area shows it (times up to the last change).
    pub fn info(&self) -> VcpuRunstateInfo {
        VcpuRunstateInfo {
            state: self.state.raw(),
            pad: 0,
            state_entry_time: self.state_entry_time,
            time: self.time,
        }
    }

    /// The tracker with the current state's time counted up to `now_ns`
    /// (Xen's `vcpu_runstate_get`, used by `VCPUOP_get_runstate_info`);
    /// `state_entry_time` stays the time of the last change.
    pub fn info_at(&self, now_ns: u64) -> VcpuRunstateInfo {
        let mut info = self.info();
        let slot = &mut info.time[self.state as usize];
        *slot = slot.wrapping_add(now_ns.saturating_sub(self.state_entry_time));
        info
    }
}

/// A registered runstate area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RunstateArea {
    /// Where it is.
    pub map: SplitArea,
    /// Registered by guest-physical address (`VCPUOP_register_runstate_phys_area`):
    /// the layout is fixed by `long_mode` and `XEN_RUNSTATE_UPDATE` is always
    /// used. Otherwise (by virtual address) the layout follows the latched
    /// shared_info layout and the flag needs `VMASST_TYPE_runstate_update_flag`.
    pub physical: bool,
    /// The registering call used the 64-bit ABI.
    pub long_mode: bool,
}

impl RunstateArea {
    /// Whether the area is written in the 64-bit layout, given the latched
    /// shared_info layout.
    pub fn uses_long_layout(&self, latched_long_mode: bool) -> bool {
        if self.physical {
            self.long_mode
        } else {
            latched_long_mode
        }
    }

    /// Whether writes bracket the update with `XEN_RUNSTATE_UPDATE`: always
    /// for a physical area (Xen's "always using that updating model"), for a
    /// virtual one when `VMASST_TYPE_runstate_update_flag` is enabled.
    pub fn uses_update_flag(&self, assist_enabled: bool) -> bool {
        self.physical || assist_enabled
    }
}

/// The writes that update a runstate area, in order: `(offset, bytes)`.
/// With `flag`, the top byte of `state_entry_time` is first written with
/// `XEN_RUNSTATE_UPDATE` set, then the whole structure (flag still set),
/// then the top byte again with the flag clear. Byte-wise flag writes keep
/// each one inside one page even when the field straddles two.
fn runstate_writes(info: &VcpuRunstateInfo, long_layout: bool, flag: bool) -> Vec<(u64, Vec<u8>)> {
    let entry_off = if long_layout { 8 } else { 4 };
    let top = entry_off + 7;
    let entry = info.state_entry_time & !XEN_RUNSTATE_UPDATE;
    let mut body = *info;
    body.pad = 0;
    body.state_entry_time = if flag {
        entry | XEN_RUNSTATE_UPDATE
    } else {
        entry
    };
    let bytes = if long_layout {
        body.as_slice().to_vec()
    } else {
        VcpuRunstateInfoCompat::from(body).as_slice().to_vec()
    };
    if flag {
        vec![
            (top, vec![((entry | XEN_RUNSTATE_UPDATE) >> 56) as u8]),
            (0, bytes),
            (top, vec![(entry >> 56) as u8]),
        ]
    } else {
        vec![(0, bytes)]
    }
}

/// The shared_info layout and `vm_assist` flags a runstate write needs.
#[derive(Clone, Copy, Debug)]
struct WriteParams {
    long_mode: bool,
    update_flag: bool,
}

impl WriteParams {
    fn of(domain: &Domain) -> Self {
        let st = domain.lock();
        Self {
            long_mode: st.long_mode,
            update_flag: st.vm_assist & (1 << VmAssistType::RunstateUpdateFlag.raw()) != 0,
        }
    }
}

fn write_runstate_with<M: GuestMemoryBackend>(
    p: WriteParams,
    mem: &M,
    area: &RunstateArea,
    info: &VcpuRunstateInfo,
) -> bool {
    let long = area.uses_long_layout(p.long_mode);
    let flag = area.uses_update_flag(p.update_flag);
    let writes = runstate_writes(info, long, flag);
    let last = writes.len() - 1;
    for (i, (off, bytes)) in writes.iter().enumerate() {
        if !area.map.write(mem, *off, bytes) {
            return false;
        }
        if i != last {
            fence(Ordering::Release);
        }
    }
    true
}

/// Writes `info` into a runstate area in the layout and with the update
/// protocol it calls for (see [`RunstateArea`]). Returns false, with a
/// rate-limited warning, if the area is not (entirely) in guest RAM.
pub fn write_runstate<M: GuestMemoryBackend>(
    domain: &Domain,
    mem: &M,
    area: &RunstateArea,
    info: &VcpuRunstateInfo,
) -> bool {
    let ok = write_runstate_with(WriteParams::of(domain), mem, area, info);
    if !ok {
        warn_limited!("runstate area at {:#x} is not in guest RAM", area.map.gpa);
    }
    ok
}

/// One vCPU's runstate tracker and registered area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct VcpuRunstate {
    /// Time accounting.
    pub tracker: Runstate,
    /// The registered area, if any.
    pub area: Option<RunstateArea>,
}

/// The runstate trackers and areas of a domain's vCPUs, shared by
/// [`crate::vcpu::VcpuOp`] (registration, `get_runstate_info`) and the VMM,
/// which reports state changes with [`Runstates::set_state`].
///
/// A vCPU's tracker is created on first use, in state running (offline if
/// the vCPU is down) since system time 0, so its times add up to
/// `state_entry_time`. Every method takes the domain to check the vCPU id;
/// unknown ids are ignored.
#[derive(Debug, Default)]
pub struct Runstates {
    vcpus: Mutex<Vec<VcpuRunstate>>,
}

impl Runstates {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` on the entry of `vcpu` (created if needed).
    fn with<R>(
        &self,
        domain: &Domain,
        vcpu: u32,
        f: impl FnOnce(&mut VcpuRunstate) -> R,
    ) -> Option<R> {
        if !domain.has_vcpu(u64::from(vcpu)) {
            return None;
        }
        let idx = vcpu as usize;
        let mut table = self.vcpus.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() <= idx {
            drop(table);
            let up: Vec<bool> = domain.lock().vcpus.iter().map(|v| v.up).collect();
            table = self.vcpus.lock().unwrap_or_else(|e| e.into_inner());
            while table.len() <= idx {
                let state = if up.get(table.len()).copied().unwrap_or(true) {
                    RunstateState::Running
                } else {
                    RunstateState::Offline
                };
                table.push(VcpuRunstate {
                    tracker: Runstate::new(state, 0),
                    area: None,
                });
            }
        }
        Some(f(&mut table[idx]))
    }

    /// Records that `vcpu` entered `state` at `now_ns` and rewrites its
    /// area. Returns false if the vCPU is unknown or the write failed.
    pub fn set_state<M: GuestMemoryBackend>(
        &self,
        domain: &Domain,
        mem: &M,
        vcpu: u32,
        state: RunstateState,
        now_ns: u64,
    ) -> bool {
        let p = WriteParams::of(domain);
        self.with(domain, vcpu, |v| {
            v.tracker.set_state(state, now_ns);
            match v.area {
                Some(a) => write_or_warn(p, mem, vcpu, &a, &v.tracker.info()),
                None => true,
            }
        })
        .unwrap_or(false)
    }

    /// Registers (`Some`) or unregisters (`None`) the area of `vcpu`; a new
    /// area is filled at once. Returns false if the vCPU is unknown or the
    /// fill failed (the area stays registered, as in Xen).
    pub fn register<M: GuestMemoryBackend>(
        &self,
        domain: &Domain,
        mem: &M,
        vcpu: u32,
        area: Option<RunstateArea>,
    ) -> bool {
        let p = WriteParams::of(domain);
        self.with(domain, vcpu, |v| {
            v.area = area;
            match area {
                Some(a) => write_or_warn(p, mem, vcpu, &a, &v.tracker.info()),
                None => true,
            }
        })
        .unwrap_or(false)
    }

    /// Rewrites the area of `vcpu` from its tracker (after a snapshot
    /// restore or a change of the latched layout). True if there is no area.
    pub fn write<M: GuestMemoryBackend>(&self, domain: &Domain, mem: &M, vcpu: u32) -> bool {
        let p = WriteParams::of(domain);
        self.with(domain, vcpu, |v| match v.area {
            Some(a) => write_or_warn(p, mem, vcpu, &a, &v.tracker.info()),
            None => true,
        })
        .unwrap_or(false)
    }

    /// The runstate of `vcpu` with the current state counted up to `now_ns`.
    pub fn info(&self, domain: &Domain, vcpu: u32, now_ns: u64) -> Option<VcpuRunstateInfo> {
        self.with(domain, vcpu, |v| v.tracker.info_at(now_ns))
    }

    /// The tracker and area of `vcpu`.
    pub fn get(&self, domain: &Domain, vcpu: u32) -> Option<VcpuRunstate> {
        self.with(domain, vcpu, |v| *v)
    }

    /// Every entry created so far, indexed by vCPU id (for snapshots).
    pub fn snapshot(&self) -> Vec<VcpuRunstate> {
        self.vcpus.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the table with a snapshot.
    pub fn restore(&self, vcpus: Vec<VcpuRunstate>) {
        *self.vcpus.lock().unwrap_or_else(|e| e.into_inner()) = vcpus;
    }
}

fn write_or_warn<M: GuestMemoryBackend>(
    p: WriteParams,
    mem: &M,
    vcpu: u32,
    area: &RunstateArea,
    info: &VcpuRunstateInfo,
) -> bool {
    let ok = write_runstate_with(p, mem, area, info);
    if !ok {
        warn_limited!(
            "vCPU {vcpu}: runstate area at {:#x} is not in guest RAM",
            area.map.gpa
        );
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DomainConfig, GuestArea};
    use crate::env::{Clock, Env};
    use crate::testing::{ManualClock, RAM_SIZE, TestVm};
    use std::sync::Arc;
    use std::sync::atomic::Ordering as AtOrd;
    use xen_abi::memory::{E820Entry, E820Type};

    const SHINFO_GFN: u64 = 0x10;
    const SHINFO: u64 = SHINFO_GFN * PAGE_SIZE;

    /// A clock with settable wall clock and no TSC.
    struct WallClock {
        wall: (u64, u32),
        now: u64,
    }

    impl Clock for WallClock {
        fn system_time_ns(&self) -> u64 {
            self.now
        }
        fn wallclock_at_zero(&self) -> (u64, u32) {
            self.wall
        }
    }

    fn domain_with_clock(clock: WallClock) -> Domain {
        let map = vec![E820Entry::new(0, RAM_SIZE, E820Type::Ram)];
        let env = Env {
            clock: Arc::new(clock),
            ..Env::default()
        };
        Domain::new(DomainConfig::new(2, xen_cpuid::XenVersion::V4_10, map), env)
    }

    fn vm_with_shinfo() -> TestVm {
        let vm = TestVm::new(2);
        vm.domain.lock().shared_info_gfn = Some(SHINFO_GFN);
        vm
    }

    #[test]
    fn test_update_vcpu_time_with_tsc_guest_formula_matches_clock() {
        let vm = vm_with_shinfo();
        vm.clock.set(5_000_000_000);
        vm.clock.tsc.store(10_000_000_000, AtOrd::SeqCst);
        assert!(update_vcpu_time(&vm.domain, &vm.mem, 1));
        let t: VcpuTimeInfo = vm.read(SHINFO + 64 + 32);
        assert_eq!(t.version, 2);
        assert_eq!(t.pvclock_flags(), PvclockFlags::TSC_STABLE);
        assert_eq!(t.tsc_timestamp, 10_000_000_000);
        assert_eq!(t.system_time, 5_000_000_000);
        // 1 ms later at 2 GHz: 2,000,000 ticks.
        let now = t.system_time_at(10_002_000_000);
        assert!(now.abs_diff(5_001_000_000) <= 1, "{now}");
        // A second later.
        let now = t.system_time_at(12_000_000_000);
        assert!(now.abs_diff(6_000_000_000) <= 1, "{now}");
    }

    #[test]
    fn test_update_vcpu_time_twice_version_advances_by_two() {
        let vm = vm_with_shinfo();
        update_vcpu_time(&vm.domain, &vm.mem, 0);
        update_vcpu_time(&vm.domain, &vm.mem, 0);
        let t: VcpuTimeInfo = vm.read(SHINFO + 32);
        assert_eq!(t.version, 4);
    }

    #[test]
    fn test_update_vcpu_time_odd_version_ends_even() {
        let vm = vm_with_shinfo();
        vm.write(SHINFO + 32, 5u32);
        update_vcpu_time(&vm.domain, &vm.mem, 0);
        assert_eq!(vm.read::<u32>(SHINFO + 32), 8);
    }

    #[test]
    fn test_update_vcpu_time_without_tsc_writes_system_time_only() {
        let vm = TestVm::new(1);
        let d = domain_with_clock(WallClock {
            wall: (1, 2),
            now: 777,
        });
        d.lock().shared_info_gfn = Some(SHINFO_GFN);
        vm.write(
            SHINFO + 32,
            VcpuTimeInfo {
                tsc_timestamp: 9,
                tsc_to_system_mul: 9,
                tsc_shift: 9,
                flags: 1,
                ..Default::default()
            },
        );
        assert!(update_vcpu_time(&d, &vm.mem, 0));
        let t: VcpuTimeInfo = vm.read(SHINFO + 32);
        assert_eq!(
            (t.system_time, t.tsc_timestamp, t.tsc_to_system_mul),
            (777, 0, 0)
        );
        assert_eq!((t.tsc_shift, t.flags, t.version), (0, 0, 2));
    }

    #[test]
    fn test_update_vcpu_time_secondary_area_written() {
        let vm = TestVm::new(1);
        vm.clock.set(42);
        vm.domain.lock().vcpus[0].time_area = Some(GuestArea {
            addr: 0x7000,
            physical: true,
            long_mode: true,
        });
        // No vcpu_info (no shared_info): only the area.
        assert!(update_vcpu_time(&vm.domain, &vm.mem, 0));
        let t: VcpuTimeInfo = vm.read(0x7000);
        assert_eq!((t.version, t.system_time), (2, 42));
    }

    #[test]
    fn test_update_vcpu_time_area_outside_ram_returns_false() {
        let vm = TestVm::new(1);
        vm.domain.lock().vcpus[0].time_area = Some(GuestArea {
            addr: RAM_SIZE - 16,
            physical: true,
            long_mode: true,
        });
        assert!(!update_vcpu_time(&vm.domain, &vm.mem, 0));
        vm.domain.lock().vcpus[0].time_area = Some(GuestArea {
            addr: u64::MAX - 8,
            physical: true,
            long_mode: true,
        });
        assert!(!update_vcpu_time(&vm.domain, &vm.mem, 0));
        // Unknown vCPU: nothing to write.
        assert!(update_vcpu_time(&vm.domain, &vm.mem, 9));
    }

    #[test]
    fn test_update_wallclock_64_bit_layout_offsets() {
        let vm = TestVm::new(1);
        let d = domain_with_clock(WallClock {
            wall: (0x1_2345_6789, 999_999_999),
            now: 0,
        });
        d.lock().shared_info_gfn = Some(SHINFO_GFN);
        assert!(update_wallclock(&d, &vm.mem));
        assert_eq!(vm.read::<u32>(SHINFO + 3072), 2);
        assert_eq!(vm.read::<u32>(SHINFO + 3076), 0x2345_6789);
        assert_eq!(vm.read::<u32>(SHINFO + 3080), 999_999_999);
        assert_eq!(vm.read::<u32>(SHINFO + 3084), 1);
        assert!(update_wallclock(&d, &vm.mem));
        assert_eq!(vm.read::<u32>(SHINFO + 3072), 4);
    }

    #[test]
    fn test_update_wallclock_compat_layout_offsets() {
        let vm = TestVm::new(1);
        let d = domain_with_clock(WallClock {
            wall: (0x2_0000_0010, 5),
            now: 0,
        });
        {
            let mut st = d.lock();
            st.shared_info_gfn = Some(SHINFO_GFN);
            st.long_mode = false;
        }
        assert!(update_wallclock(&d, &vm.mem));
        assert_eq!(vm.read::<u32>(SHINFO + 2304), 2);
        assert_eq!(vm.read::<u32>(SHINFO + 2308), 0x10);
        assert_eq!(vm.read::<u32>(SHINFO + 2312), 5);
        assert_eq!(vm.read::<u32>(SHINFO + 2340), 2);
        // The 64-bit fields are untouched.
        assert_eq!(vm.read::<u32>(SHINFO + 3072), 0);
    }

    #[test]
    fn test_update_wallclock_test_clock_within_one_second_of_wall() {
        let vm = vm_with_shinfo();
        assert!(update_wallclock(&vm.domain, &vm.mem));
        let sec = u64::from(vm.read::<u32>(SHINFO + 3076))
            | u64::from(vm.read::<u32>(SHINFO + 3084)) << 32;
        assert_eq!(
            (sec, vm.read::<u32>(SHINFO + 3080)),
            ManualClock::WALL_AT_ZERO
        );
    }

    #[test]
    fn test_update_wallclock_no_shared_info_returns_false() {
        let vm = TestVm::new(1);
        assert!(!update_wallclock(&vm.domain, &vm.mem));
        vm.domain.lock().shared_info_gfn = Some(RAM_SIZE / PAGE_SIZE);
        assert!(!update_wallclock(&vm.domain, &vm.mem));
        vm.domain.lock().shared_info_gfn = Some(u64::MAX);
        assert!(!update_wallclock(&vm.domain, &vm.mem));
    }

    #[test]
    fn test_runstate_set_state_times_add_up_to_entry_time() {
        let mut r = Runstate::new(RunstateState::Running, 0);
        let steps = [
            (RunstateState::Runnable, 100),
            (RunstateState::Blocked, 350),
            (RunstateState::Running, 400),
            (RunstateState::Offline, 1_000),
            (RunstateState::Running, 1_500),
        ];
        for (s, now) in steps {
            r.set_state(s, now);
            assert_eq!(r.time.iter().sum::<u64>(), r.state_entry_time);
            assert_eq!(r.state_entry_time, now);
        }
        assert_eq!(r.time, [100 + 600, 250, 50, 500]);
        assert_eq!(r.state, RunstateState::Running);
    }

    #[test]
    fn test_runstate_set_state_backwards_clock_charges_nothing() {
        let mut r = Runstate::new(RunstateState::Running, 1_000);
        r.set_state(RunstateState::Blocked, 500);
        assert_eq!((r.time, r.state_entry_time), ([0; 4], 1_000));
        assert_eq!(r.state, RunstateState::Blocked);
    }

    #[test]
    fn test_runstate_info_at_counts_current_state_up_to_now() {
        let mut r = Runstate::new(RunstateState::Running, 0);
        r.set_state(RunstateState::Blocked, 10);
        let i = r.info_at(25);
        assert_eq!(
            (i.state, i.state_entry_time, i.time),
            (2, 10, [10, 0, 15, 0])
        );
        assert_eq!(r.info_at(5).time, [10, 0, 0, 0]);
    }

    #[test]
    fn test_runstate_writes_with_flag_sets_then_clears_top_byte() {
        let info = VcpuRunstateInfo {
            state: 1,
            pad: 0,
            state_entry_time: 0x0102_0304_0506_0708,
            time: [1, 2, 3, 4],
        };
        for (long, top) in [(true, 15u64), (false, 11u64)] {
            let w = runstate_writes(&info, long, true);
            assert_eq!(w.len(), 3);
            assert_eq!(w[0], (top, vec![0x81]));
            assert_eq!(w[1].0, 0);
            assert_eq!(w[1].1.len() as u64, if long { 48 } else { 44 });
            assert_eq!(w[1].1[top as usize], 0x81);
            assert_eq!(w[2], (top, vec![0x01]));
        }
    }

    #[test]
    fn test_runstate_writes_without_flag_one_plain_copy() {
        let info = VcpuRunstateInfo {
            state: 0,
            pad: 7,
            state_entry_time: 5 | XEN_RUNSTATE_UPDATE,
            time: [5, 0, 0, 0],
        };
        let w = runstate_writes(&info, false, false);
        assert_eq!(w.len(), 1);
        let c = VcpuRunstateInfoCompat {
            state: 0,
            state_entry_time: 5,
            time: [5, 0, 0, 0],
        };
        assert_eq!(w[0], (0, c.as_slice().to_vec()));
        let w = runstate_writes(&info, true, false);
        assert_eq!(&w[0].1[4..8], &[0; 4]);
    }

    #[test]
    fn test_runstate_area_layout_and_flag_rules_physical_vs_virtual() {
        let virt = RunstateArea {
            map: SplitArea::physical(0x6000),
            physical: false,
            long_mode: true,
        };
        assert!(!virt.uses_long_layout(false) && virt.uses_long_layout(true));
        assert!(!virt.uses_update_flag(false) && virt.uses_update_flag(true));
        let phys = RunstateArea {
            physical: true,
            long_mode: false,
            ..virt
        };
        assert!(!phys.uses_long_layout(true));
        assert!(phys.uses_update_flag(false));
    }

    #[test]
    fn test_split_area_write_crosses_pages_lands_in_both_frames() {
        let vm = TestVm::new(1);
        let a = SplitArea {
            gpa: 0x5ff0,
            next_page: Some(0x9000),
        };
        let bytes: Vec<u8> = (1..=32).collect();
        assert!(a.write(&vm.mem, 0, &bytes));
        assert_eq!(vm.read_bytes(0x5ff0, 16), bytes[..16]);
        assert_eq!(vm.read_bytes(0x9000, 16), bytes[16..]);
        let mut back = [0u8; 32];
        assert!(a.read(&vm.mem, 0, &mut back));
        assert_eq!(back.to_vec(), bytes);
        // A write that starts in the second page.
        assert!(a.write(&vm.mem, 20, &[0xaa]));
        assert_eq!(vm.read_bytes(0x9004, 1), [0xaa]);
    }

    #[test]
    fn test_split_area_write_without_second_page_fails_and_writes_nothing() {
        let vm = TestVm::new(1);
        let a = SplitArea {
            gpa: 0x5ff0,
            next_page: None,
        };
        assert!(!a.write(&vm.mem, 0, &[0x55; 32]));
        assert_eq!(vm.read_bytes(0x5ff0, 16), [0; 16]);
        assert!(a.write(&vm.mem, 0, &[0x55; 16]));
        let p = SplitArea::physical(0x5ff0);
        assert_eq!(p.next_page, Some(0x6000));
        let edge = SplitArea::physical(RAM_SIZE - 8);
        assert!(!edge.write(&vm.mem, 0, &[1; 16]));
        assert!(!SplitArea::physical(u64::MAX - 3).write(&vm.mem, 0, &[1; 8]));
    }

    #[test]
    fn test_write_runstate_update_flag_clear_afterwards_and_bytes_past_untouched() {
        let vm = TestVm::new(1);
        vm.domain.lock().vm_assist = 1 << 5;
        vm.write_bytes(0x6000, &[0xcc; 64]);
        let area = RunstateArea {
            map: SplitArea::physical(0x6000),
            physical: false,
            long_mode: true,
        };
        let info = Runstate::new(RunstateState::Blocked, 77).info();
        assert!(write_runstate(&vm.domain, &vm.mem, &area, &info));
        let r: VcpuRunstateInfo = vm.read(0x6000);
        assert_eq!((r.state, r.state_entry_time), (2, 77));
        assert_eq!(vm.read_bytes(0x6000 + 48, 16), [0xcc; 16]);
        // Compat layout when the latch says 32-bit.
        vm.domain.lock().long_mode = false;
        vm.write_bytes(0x6000, &[0xcc; 64]);
        assert!(write_runstate(&vm.domain, &vm.mem, &area, &info));
        let c: VcpuRunstateInfoCompat = vm.read(0x6000);
        assert_eq!({ c.state_entry_time }, 77);
        assert_eq!(vm.read_bytes(0x6000 + 44, 20), [0xcc; 20]);
    }

    #[test]
    fn test_runstates_set_state_writes_area_and_unknown_vcpu_ignored() {
        let vm = TestVm::new(2);
        let rs = Runstates::new();
        let area = RunstateArea {
            map: SplitArea::physical(0x6000),
            physical: true,
            long_mode: false,
        };
        assert!(rs.register(&vm.domain, &vm.mem, 1, Some(area)));
        assert!(rs.set_state(&vm.domain, &vm.mem, 1, RunstateState::Runnable, 300));
        let c: VcpuRunstateInfoCompat = vm.read(0x6000);
        assert_eq!(
            (c.state, { c.state_entry_time }, { c.time }),
            (1, 300, [300, 0, 0, 0])
        );
        assert!(!rs.set_state(&vm.domain, &vm.mem, 2, RunstateState::Runnable, 300));
        assert_eq!(rs.info(&vm.domain, 5, 0), None);
        assert_eq!(rs.info(&vm.domain, 1, 400).unwrap().time, [300, 100, 0, 0]);
        // Unregistered: state still tracked, nothing written.
        assert!(rs.register(&vm.domain, &vm.mem, 1, None));
        assert!(rs.set_state(&vm.domain, &vm.mem, 1, RunstateState::Running, 500));
        assert_eq!(
            { vm.read::<VcpuRunstateInfoCompat>(0x6000).state_entry_time },
            300
        );
        // Snapshot round trip.
        let snap = rs.snapshot();
        let other = Runstates::new();
        other.restore(snap.clone());
        assert_eq!(other.snapshot(), snap);
        assert_eq!(other.get(&vm.domain, 1), rs.get(&vm.domain, 1));
    }

    #[test]
    fn test_runstates_down_vcpu_starts_offline() {
        let vm = TestVm::new(2);
        vm.domain.lock().vcpus[1].up = false;
        let rs = Runstates::new();
        assert_eq!(
            rs.get(&vm.domain, 1).unwrap().tracker.state,
            RunstateState::Offline
        );
        assert_eq!(
            rs.get(&vm.domain, 0).unwrap().tracker.state,
            RunstateState::Running
        );
    }
}
