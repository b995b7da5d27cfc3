// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vcpu_op` hypercall (24) definitions, mirroring `xen/include/public/vcpu.h`.
//!
//! Follows interface version 0x00041300 (Xen 4.23-unstable), `xen-abi.md`
//! §3.4 (`vcpu_runstate_info`) and §3.5 (sub-operations and their arguments).
//!
//! Compat (x86_32) structures that hold a `u64` at an offset that is not a
//! multiple of 8 are `#[repr(C, packed(4))]`, which is exactly the i386
//! alignment rule for 8-byte integers; read their fields by value.

use bitflags::bitflags;

abi_enum! {
    /// `vcpu_op` sub-operations (`VCPUOP_*`).
    pub enum VcpuOp: u32, "vcpu_op command" {
        /// Initialise a vCPU context (PVH AP start).
        Initialise = 0 => "VCPUOP_initialise",
        /// Bring an initialised vCPU up.
        Up = 1 => "VCPUOP_up",
        /// Take a vCPU down.
        Down = 2 => "VCPUOP_down",
        /// Returns 1 if the vCPU is up, else 0.
        IsUp = 3 => "VCPUOP_is_up",
        /// Copies a [`VcpuRunstateInfo`] out.
        GetRunstateInfo = 4 => "VCPUOP_get_runstate_info",
        /// Registers a runstate area by guest virtual address.
        RegisterRunstateMemoryArea = 5 => "VCPUOP_register_runstate_memory_area",
        /// Starts the periodic timer ([`VcpuSetPeriodicTimer`]).
        SetPeriodicTimer = 6 => "VCPUOP_set_periodic_timer",
        /// Stops the periodic timer.
        StopPeriodicTimer = 7 => "VCPUOP_stop_periodic_timer",
        /// Arms the one-shot timer ([`VcpuSetSingleshotTimer`]).
        SetSingleshotTimer = 8 => "VCPUOP_set_singleshot_timer",
        /// Disarms the one-shot timer.
        StopSingleshotTimer = 9 => "VCPUOP_stop_singleshot_timer",
        /// Moves the vCPU's `vcpu_info` ([`VcpuRegisterVcpuInfo`]).
        RegisterVcpuInfo = 10 => "VCPUOP_register_vcpu_info",
        /// Sends an NMI to the vCPU.
        SendNmi = 11 => "VCPUOP_send_nmi",
        /// Returns the physical CPU id ([`VcpuGetPhysid`]).
        GetPhysid = 12 => "VCPUOP_get_physid",
        /// Registers a secondary pvclock copy by guest virtual address.
        RegisterVcpuTimeMemoryArea = 13 => "VCPUOP_register_vcpu_time_memory_area",
        /// Registers a runstate area by guest physical address.
        RegisterRunstatePhysArea = 14 => "VCPUOP_register_runstate_phys_area",
        /// Registers a secondary pvclock copy by guest physical address.
        RegisterVcpuTimePhysArea = 15 => "VCPUOP_register_vcpu_time_phys_area",
    }
}

// --- runstate --------------------------------------------------------------------

abi_enum! {
    /// vCPU run states (`RUNSTATE_*`), the index into `VcpuRunstateInfo::time`.
    pub enum RunstateState: i32, "runstate" {
        /// Running on a physical CPU.
        Running = 0 => "RUNSTATE_running",
        /// Runnable but waiting for a physical CPU.
        Runnable = 1 => "RUNSTATE_runnable",
        /// Blocked (idle, waiting for an event).
        Blocked = 2 => "RUNSTATE_blocked",
        /// Offline, or preempted in a way not visible as runnable.
        Offline = 3 => "RUNSTATE_offline",
    }
}

/// Bit 63 of `state_entry_time`: set while the runstate area is being updated
/// (with `VMASST_TYPE_runstate_update_flag` enabled).
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

/// `struct vcpu_runstate_info`, x86_64 layout (48 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRunstateInfo {
    /// Current state ([`RunstateState`]).
    pub state: i32,
    /// Padding.
    pub pad: u32,
    /// Xen system time when `state` was entered; bit 63 is
    /// [`XEN_RUNSTATE_UPDATE`].
    pub state_entry_time: u64,
    /// Cumulative ns spent in each state, indexed by [`RunstateState`].
    pub time: [u64; 4],
}
abi_layout!(VcpuRunstateInfo, 48, {
    state => 0, pad => 4, state_entry_time => 8, time => 16,
});

/// `struct vcpu_runstate_info`, x86_32 layout (44 bytes).
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRunstateInfoCompat {
    /// Current state ([`RunstateState`]).
    pub state: i32,
    /// Xen system time when `state` was entered; bit 63 is
    /// [`XEN_RUNSTATE_UPDATE`].
    pub state_entry_time: u64,
    /// Cumulative ns spent in each state, indexed by [`RunstateState`].
    pub time: [u64; 4],
}
abi_layout!(VcpuRunstateInfoCompat, 44, {
    state => 0, state_entry_time => 4, time => 12,
});

macro_rules! runstate_accessors {
    ($ty:ident) => {
        impl $ty {
            /// Decodes `state`.
            pub fn runstate(&self) -> crate::Result<RunstateState> {
                RunstateState::try_from(self.state)
            }

            /// Returns `state_entry_time` without the update bit.
            pub const fn entry_time(&self) -> u64 {
                self.state_entry_time & !XEN_RUNSTATE_UPDATE
            }

            /// Returns true while the writer is updating the area.
            pub const fn update_in_progress(&self) -> bool {
                self.state_entry_time & XEN_RUNSTATE_UPDATE != 0
            }

            /// Sets or clears [`XEN_RUNSTATE_UPDATE`] in `state_entry_time`.
            pub fn set_update_in_progress(&mut self, updating: bool) {
                if updating {
                    self.state_entry_time |= XEN_RUNSTATE_UPDATE;
                } else {
                    self.state_entry_time &= !XEN_RUNSTATE_UPDATE;
                }
            }

            /// Returns the cumulative time spent in `state`.
            pub fn time_in(&self, state: RunstateState) -> u64 {
                let time = self.time;
                time[state as usize]
            }

            /// Returns the steal time as Linux computes it:
            /// `time[runnable] + time[offline]`.
            pub fn steal_time(&self) -> u64 {
                self.time_in(RunstateState::Runnable)
                    .wrapping_add(self.time_in(RunstateState::Offline))
            }
        }
    };
}
runstate_accessors!(VcpuRunstateInfo);
runstate_accessors!(VcpuRunstateInfoCompat);

impl From<VcpuRunstateInfo> for VcpuRunstateInfoCompat {
    fn from(v: VcpuRunstateInfo) -> Self {
        VcpuRunstateInfoCompat {
            state: v.state,
            state_entry_time: v.state_entry_time,
            time: v.time,
        }
    }
}

impl From<VcpuRunstateInfoCompat> for VcpuRunstateInfo {
    fn from(v: VcpuRunstateInfoCompat) -> Self {
        VcpuRunstateInfo {
            state: v.state,
            pad: 0,
            state_entry_time: v.state_entry_time,
            time: v.time,
        }
    }
}

// --- register_*_memory_area (virtual addresses) --------------------------------

/// `struct vcpu_register_runstate_memory_area`, x86_64 layout (8 bytes).
///
/// `addr` is a guest *virtual* address (a guest handle).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterRunstateMemoryArea {
    /// Guest virtual address of a [`VcpuRunstateInfo`].
    pub addr: u64,
}
abi_layout!(VcpuRegisterRunstateMemoryArea, 8, { addr => 0 });

/// `struct vcpu_register_runstate_memory_area`, x86_32 layout (8 bytes,
/// 4-byte aligned).
///
/// The field is a union of a 32-bit handle and a `u64`; Xen's compat path only
/// uses the low 32 bits, so the guest may leave the high half uninitialised.
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterRunstateMemoryAreaCompat {
    /// Raw union; the guest virtual address is in the low 32 bits.
    pub addr: u64,
}
abi_layout!(VcpuRegisterRunstateMemoryAreaCompat, 8, { addr => 0 });

impl VcpuRegisterRunstateMemoryAreaCompat {
    /// Returns the 32-bit guest virtual address (low half of the union).
    pub const fn gva(&self) -> u32 {
        self.addr as u32
    }
}

/// `struct vcpu_register_time_memory_area`, x86_64 layout (8 bytes).
///
/// `addr` is a guest *virtual* address of a
/// [`VcpuTimeInfo`](crate::xen::VcpuTimeInfo); 0 unregisters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterTimeMemoryArea {
    /// Guest virtual address of a `vcpu_time_info`, or 0.
    pub addr: u64,
}
abi_layout!(VcpuRegisterTimeMemoryArea, 8, { addr => 0 });

/// `struct vcpu_register_time_memory_area`, x86_32 layout (8 bytes, 4-byte
/// aligned). Only the low 32 bits are meaningful, as for
/// [`VcpuRegisterRunstateMemoryAreaCompat`].
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterTimeMemoryAreaCompat {
    /// Raw union; the guest virtual address is in the low 32 bits.
    pub addr: u64,
}
abi_layout!(VcpuRegisterTimeMemoryAreaCompat, 8, { addr => 0 });

impl VcpuRegisterTimeMemoryAreaCompat {
    /// Returns the 32-bit guest virtual address (low half of the union).
    pub const fn gva(&self) -> u32 {
        self.addr as u32
    }
}

// --- register_*_phys_area ----------------------------------------------------------

/// Argument of `VCPUOP_register_runstate_phys_area` and
/// `VCPUOP_register_vcpu_time_phys_area`: a bare `u64` guest physical address
/// (8 bytes in both modes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterPhysArea {
    /// Guest physical address of the area, or [`Self::UNREGISTER`].
    pub gpa: u64,
}
abi_layout!(VcpuRegisterPhysArea, 8, { gpa => 0 });

impl VcpuRegisterPhysArea {
    /// The address value that unregisters the area (`~0`).
    pub const UNREGISTER: u64 = u64::MAX;

    /// Returns the area's address, or `None` for the unregister request.
    pub const fn area(&self) -> Option<u64> {
        if self.gpa == Self::UNREGISTER {
            None
        } else {
            Some(self.gpa)
        }
    }
}

// --- timers ----------------------------------------------------------------------

/// Smallest accepted `VCPUOP_set_periodic_timer` period: 1 ms.
pub const VCPU_PERIODIC_TIMER_MIN_NS: u64 = 1_000_000;

/// `struct vcpu_set_periodic_timer` (8 bytes, both modes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetPeriodicTimer {
    /// Timer period in ns.
    pub period_ns: u64,
}
abi_layout!(VcpuSetPeriodicTimer, 8, { period_ns => 0 });

bitflags! {
    /// `vcpu_set_singleshot_timer.flags` (`VCPU_SSHOTTMR_*`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
    #[cfg_attr(feature = "serde", serde(transparent))]
    pub struct SingleshotTimerFlags: u32 {
        /// Older Xen returned `-ETIME` for a deadline in the past
        /// (`VCPU_SSHOTTMR_future`); current Xen fires at once and returns 0.
        const FUTURE = 1 << 0;
    }
}

/// `struct vcpu_set_singleshot_timer`, x86_64 layout (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute Xen system time (ns) of the deadline.
    pub timeout_abs_ns: u64,
    /// Raw [`SingleshotTimerFlags`].
    pub flags: u32,
    /// Padding.
    pub pad: u32,
}
abi_layout!(VcpuSetSingleshotTimer, 16, {
    timeout_abs_ns => 0, flags => 8, pad => 12,
});

/// `struct vcpu_set_singleshot_timer`, x86_32 layout (12 bytes).
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetSingleshotTimerCompat {
    /// Absolute Xen system time (ns) of the deadline.
    pub timeout_abs_ns: u64,
    /// Raw [`SingleshotTimerFlags`].
    pub flags: u32,
}
abi_layout!(VcpuSetSingleshotTimerCompat, 12, { timeout_abs_ns => 0, flags => 8 });

impl VcpuSetSingleshotTimer {
    /// Returns the typed flags (unknown bits are dropped).
    pub const fn timer_flags(&self) -> SingleshotTimerFlags {
        SingleshotTimerFlags::from_bits_truncate(self.flags)
    }
}

impl VcpuSetSingleshotTimerCompat {
    /// Returns the typed flags (unknown bits are dropped).
    pub const fn timer_flags(&self) -> SingleshotTimerFlags {
        SingleshotTimerFlags::from_bits_truncate(self.flags)
    }
}

impl From<VcpuSetSingleshotTimerCompat> for VcpuSetSingleshotTimer {
    fn from(v: VcpuSetSingleshotTimerCompat) -> Self {
        VcpuSetSingleshotTimer {
            timeout_abs_ns: v.timeout_abs_ns,
            flags: v.flags,
            pad: 0,
        }
    }
}

// --- register_vcpu_info, get_physid -------------------------------------------------

/// `struct vcpu_register_vcpu_info` (16 bytes, both modes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterVcpuInfo {
    /// Frame holding the new `vcpu_info` (a GFN for HVM guests).
    pub mfn: u64,
    /// Byte offset of the `vcpu_info` within that frame.
    pub offset: u32,
    /// Reserved.
    pub rsvd: u32,
}
abi_layout!(VcpuRegisterVcpuInfo, 16, { mfn => 0, offset => 8, rsvd => 12 });

impl VcpuRegisterVcpuInfo {
    /// Returns the guest physical address `(mfn << 12) + offset`, or `None`
    /// when it does not lie inside frame `mfn` (offset ≥ 4096, or the shift
    /// overflows). Xen answers `-EINVAL` in those cases.
    pub const fn gpa(&self) -> Option<u64> {
        if self.offset >= 4096 || self.mfn > (u64::MAX >> 12) {
            return None;
        }
        Some((self.mfn << 12) + self.offset as u64)
    }
}

/// `struct vcpu_get_physid` (8 bytes, both modes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuGetPhysid {
    /// OUT: physical CPU id.
    pub phys_id: u64,
}
abi_layout!(VcpuGetPhysid, 8, { phys_id => 0 });

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

    #[test]
    fn test_vcpu_op_all_values_round_trip() {
        for &op in VcpuOp::ALL {
            assert_eq!(VcpuOp::try_from(op.raw()).unwrap(), op);
        }
        assert_eq!(VcpuOp::ALL.len(), 16);
        assert!(VcpuOp::try_from(16).is_err());
    }

    #[test]
    fn test_runstate_state_all_values_round_trip() {
        for &s in RunstateState::ALL {
            assert_eq!(RunstateState::try_from(s.raw()).unwrap(), s);
        }
        assert!(RunstateState::try_from(4).is_err());
        assert!(RunstateState::try_from(-1).is_err());
    }

    #[test]
    fn test_runstate_info_update_flag_accessors_toggle_bit63() {
        let mut r = VcpuRunstateInfo {
            state_entry_time: 1234,
            ..Default::default()
        };
        r.set_update_in_progress(true);
        assert_eq!(r.state_entry_time, 1234 | (1 << 63));
        assert!(r.update_in_progress());
        assert_eq!(r.entry_time(), 1234);
        r.set_update_in_progress(false);
        assert_eq!(r.state_entry_time, 1234);
    }

    #[test]
    fn test_runstate_info_steal_time_sums_runnable_and_offline() {
        let r = VcpuRunstateInfoCompat {
            state: 1,
            state_entry_time: 0,
            time: [100, 20, 300, 3],
        };
        assert_eq!(r.steal_time(), 23);
        assert_eq!(r.runstate().unwrap(), RunstateState::Runnable);
    }

    #[test]
    fn test_runstate_info_compat_conversion_keeps_values() {
        let r = VcpuRunstateInfo {
            state: 2,
            pad: 0,
            state_entry_time: 77,
            time: [1, 2, 3, 4],
        };
        let c = VcpuRunstateInfoCompat::from(r);
        assert_eq!(VcpuRunstateInfo::from(c), r);
        let bytes = c.as_slice();
        assert_eq!(&bytes[4..12], &77u64.to_ne_bytes());
        assert_eq!(&bytes[12..20], &1u64.to_ne_bytes());
        assert_eq!(&bytes[36..44], &4u64.to_ne_bytes());
    }

    #[test]
    fn test_runstate_info_write_bytes_land_at_offsets() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x2000)]).unwrap();
        let r = VcpuRunstateInfo {
            state: 3,
            pad: 0,
            state_entry_time: 0x1111,
            time: [5, 6, 7, 8],
        };
        mem.write_obj(r, GuestAddress(0x100)).unwrap();
        assert_eq!(mem.read_obj::<i32>(GuestAddress(0x100)).unwrap(), 3);
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x108)).unwrap(), 0x1111);
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x110)).unwrap(), 5);
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x128)).unwrap(), 8);
    }

    #[test]
    fn test_register_vcpu_info_gpa_valid_offset_computed() {
        let a = VcpuRegisterVcpuInfo {
            mfn: 0x1234,
            offset: 0x40,
            rsvd: 0,
        };
        assert_eq!(a.gpa(), Some(0x123_4040));
    }

    #[test]
    fn test_register_vcpu_info_gpa_bad_offset_or_overflow_none() {
        let a = VcpuRegisterVcpuInfo {
            mfn: 1,
            offset: 4096,
            rsvd: 0,
        };
        assert_eq!(a.gpa(), None);
        let a = VcpuRegisterVcpuInfo {
            mfn: 1 << 52,
            offset: 0,
            rsvd: 0,
        };
        assert_eq!(a.gpa(), None);
    }

    #[test]
    fn test_singleshot_timer_flags_decoded_both_layouts() {
        let t = VcpuSetSingleshotTimer {
            timeout_abs_ns: 10,
            flags: 1,
            pad: 0,
        };
        assert_eq!(t.timer_flags(), SingleshotTimerFlags::FUTURE);
        let c = VcpuSetSingleshotTimerCompat {
            timeout_abs_ns: 10,
            flags: 0x3,
        };
        assert_eq!(c.timer_flags(), SingleshotTimerFlags::FUTURE);
        assert_eq!(VcpuSetSingleshotTimer::from(c).timeout_abs_ns, 10);
        assert_eq!(&c.as_slice()[8..12], &3u32.to_ne_bytes());
    }

    #[test]
    fn test_memory_area_compat_gva_uses_low_half() {
        let a = VcpuRegisterRunstateMemoryAreaCompat {
            addr: 0xdead_beef_c000_1000,
        };
        assert_eq!(a.gva(), 0xc000_1000);
        let t = VcpuRegisterTimeMemoryAreaCompat {
            addr: 0x1_0000_2000,
        };
        assert_eq!(t.gva(), 0x2000);
    }

    #[test]
    fn test_phys_area_all_ones_means_unregister() {
        assert_eq!(VcpuRegisterPhysArea { gpa: u64::MAX }.area(), None);
        assert_eq!(VcpuRegisterPhysArea { gpa: 0x5000 }.area(), Some(0x5000));
    }
}
