// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `sched_op` hypercall (29) definitions, mirroring
//! `xen/include/public/sched.h`.
//!
//! Follows interface version 0x00041300 (Xen 4.23-unstable), `xen-abi.md`
//! §3.10. The compat (x86_32) [`SchedPollCompat`] has its `u64` timeout at
//! offset 8 after two 4-byte fields; it is `#[repr(C, packed(4))]` to match
//! the i386 alignment of `uint64_t` (read its fields by value).

use crate::xen::DomId;

abi_enum! {
    /// `sched_op` commands (`SCHEDOP_*`).
    pub enum SchedOp: u32, "sched_op command" {
        /// Yield the physical CPU.
        Yield = 0 => "SCHEDOP_yield",
        /// Block until an event is pending.
        Block = 1 => "SCHEDOP_block",
        /// Shut the domain down ([`SchedShutdown`]).
        Shutdown = 2 => "SCHEDOP_shutdown",
        /// Wait for one of a set of ports ([`SchedPoll`]).
        Poll = 3 => "SCHEDOP_poll",
        /// Shut another domain down ([`SchedRemoteShutdown`]); privileged.
        RemoteShutdown = 4 => "SCHEDOP_remote_shutdown",
        /// Latch a shutdown code ([`SchedShutdown`]).
        ShutdownCode = 5 => "SCHEDOP_shutdown_code",
        /// Create, re-arm or destroy a watchdog ([`SchedWatchdog`]).
        Watchdog = 6 => "SCHEDOP_watchdog",
        /// Pin the vCPU temporarily ([`SchedPinOverride`]); hardware domain only.
        PinOverride = 7 => "SCHEDOP_pin_override",
    }
}

abi_enum! {
    /// Shutdown reasons (`SHUTDOWN_*`).
    pub enum ShutdownReason: u32, "shutdown reason" {
        /// Power off.
        Poweroff = 0 => "SHUTDOWN_poweroff",
        /// Reboot.
        Reboot = 1 => "SHUTDOWN_reboot",
        /// Suspend (returns 1 if cancelled, 0 when resumed in a new domain).
        Suspend = 2 => "SHUTDOWN_suspend",
        /// Crash.
        Crash = 3 => "SHUTDOWN_crash",
        /// Watchdog expired.
        Watchdog = 4 => "SHUTDOWN_watchdog",
        /// Reset Xen-side state but keep memory and vCPUs (kexec).
        SoftReset = 5 => "SHUTDOWN_soft_reset",
    }
}

/// Highest defined shutdown reason (`SHUTDOWN_MAX`).
pub const SHUTDOWN_MAX: u32 = 5;
/// Maximum number of ports in one `SCHEDOP_poll`.
pub const SCHED_POLL_MAX_PORTS: u32 = 128;
/// Number of watchdog slots per domain.
pub const SCHED_WATCHDOG_SLOTS: u32 = 2;

/// `struct sched_shutdown` (4 bytes); also the `shutdown_code` argument.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedShutdown {
    /// Raw [`ShutdownReason`].
    pub reason: u32,
}
abi_layout!(SchedShutdown, 4, { reason => 0 });

impl SchedShutdown {
    /// Decodes `reason`.
    pub fn shutdown_reason(&self) -> crate::Result<ShutdownReason> {
        ShutdownReason::try_from(self.reason)
    }
}

/// `struct sched_poll`, x86_64 layout (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedPoll {
    /// Guest handle: `evtchn_port_t ports[nr_ports]`.
    pub ports: u64,
    /// Number of ports (≤ [`SCHED_POLL_MAX_PORTS`]).
    pub nr_ports: u32,
    /// Padding.
    pub pad: u32,
    /// Absolute Xen system time (ns) to give up at; 0 = no timeout.
    pub timeout: u64,
}
abi_layout!(SchedPoll, 24, { ports => 0, nr_ports => 8, pad => 12, timeout => 16 });

/// `struct sched_poll`, x86_32 layout (16 bytes).
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedPollCompat {
    /// Guest handle (32-bit): `evtchn_port_t ports[nr_ports]`.
    pub ports: u32,
    /// Number of ports (≤ [`SCHED_POLL_MAX_PORTS`]).
    pub nr_ports: u32,
    /// Absolute Xen system time (ns) to give up at; 0 = no timeout.
    pub timeout: u64,
}
abi_layout!(SchedPollCompat, 16, { ports => 0, nr_ports => 4, timeout => 8 });

impl From<SchedPollCompat> for SchedPoll {
    fn from(c: SchedPollCompat) -> Self {
        SchedPoll {
            ports: u64::from(c.ports),
            nr_ports: c.nr_ports,
            pad: 0,
            timeout: c.timeout,
        }
    }
}

/// `struct sched_remote_shutdown` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedRemoteShutdown {
    /// Domain to shut down.
    pub domain_id: DomId,
    /// Padding.
    pub pad: u16,
    /// Raw [`ShutdownReason`].
    pub reason: u32,
}
abi_layout!(SchedRemoteShutdown, 8, { domain_id => 0, pad => 2, reason => 4 });

impl SchedRemoteShutdown {
    /// Decodes `reason`.
    pub fn shutdown_reason(&self) -> crate::Result<ShutdownReason> {
        ShutdownReason::try_from(self.reason)
    }
}

/// `struct sched_watchdog` (8 bytes).
///
/// `id` 0 creates a watchdog (the call returns its 1-based id); a non-zero
/// `id` with `timeout` 0 destroys it; otherwise it is re-armed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedWatchdog {
    /// Watchdog id, or 0 to create one.
    pub id: u32,
    /// Timeout in seconds.
    pub timeout: u32,
}
abi_layout!(SchedWatchdog, 8, { id => 0, timeout => 4 });

/// `struct sched_pin_override` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedPinOverride {
    /// Physical CPU to pin to, or negative to undo the override.
    pub pcpu: i32,
}
abi_layout!(SchedPinOverride, 4, { pcpu => 0 });

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::ByteValued;

    #[test]
    fn test_sched_op_all_values_round_trip() {
        for &op in SchedOp::ALL {
            assert_eq!(SchedOp::try_from(op.raw()).unwrap(), op);
        }
        assert!(SchedOp::try_from(8).is_err());
    }

    #[test]
    fn test_shutdown_reason_all_values_round_trip() {
        for &r in ShutdownReason::ALL {
            assert_eq!(ShutdownReason::try_from(r.raw()).unwrap(), r);
            assert!(r.raw() <= SHUTDOWN_MAX);
        }
        assert!(ShutdownReason::try_from(SHUTDOWN_MAX + 1).is_err());
        let s = SchedShutdown { reason: 3 };
        assert_eq!(s.shutdown_reason().unwrap(), ShutdownReason::Crash);
        let r = SchedRemoteShutdown {
            reason: 1,
            ..Default::default()
        };
        assert_eq!(r.shutdown_reason().unwrap(), ShutdownReason::Reboot);
    }

    #[test]
    fn test_sched_poll_compat_timeout_at_offset_8() {
        let c = SchedPollCompat {
            ports: 0x1000,
            nr_ports: 1,
            timeout: 0x1122_3344_5566_7788,
        };
        assert_eq!(
            &c.as_slice()[8..16],
            &0x1122_3344_5566_7788u64.to_ne_bytes()
        );
        let n = SchedPoll::from(c);
        assert_eq!(
            (n.ports, n.nr_ports, n.timeout),
            (0x1000, 1, 0x1122_3344_5566_7788)
        );
        assert_eq!(
            &n.as_slice()[16..24],
            &0x1122_3344_5566_7788u64.to_ne_bytes()
        );
    }
}
