// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A guest clock on the guest's own TSC, for pvclock (`xen-abi.md` §3.1).
//!
//! Xen system time is derived here from the guest TSC itself: system time
//! = scale(guest TSC − guest TSC at calibration). A `vcpu_time_info`
//! written once then stays exact forever (the guest's extrapolation uses
//! the same scale), so no periodic refresh is needed while the TSC runs at
//! a fixed rate. KVM keeps every vCPU's TSC synchronised when the VMM does
//! not set it, so one calibration against one vCPU serves all of them;
//! guest TSC scaling (a guest frequency other than the host's) is not
//! used by this VMM and not modelled.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kvm_bindings::{Msrs, kvm_msr_entry};
use kvm_ioctls::VcpuFd;
use xen_abi::cpuid::TscScale;
use xen_hypercall::env::Clock;

use crate::Error;

/// MSR_IA32_TSC.
const MSR_IA32_TSC: u32 = 0x10;

/// What calibration measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Calibration {
    /// Guest TSC frequency in kHz.
    pub tsc_khz: u32,
    /// Guest TSC minus host TSC (wrapping).
    pub offset: u64,
    /// Guest TSC at system time 0.
    pub tsc_at_zero: u64,
    /// Wall-clock time at system time 0 (seconds, nanoseconds).
    pub wall_at_zero: (u64, u32),
}

/// The guest TSC clock; falls back to the host's monotonic clock (and no
/// TSC) until [`TscClock::calibrate`] has run.
#[derive(Debug)]
pub struct TscClock {
    start: Instant,
    wall: Duration,
    cal: OnceLock<(Calibration, TscScale)>,
}

fn host_tsc() -> u64 {
    // SAFETY: RDTSC reads a counter; it has no memory or other effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

impl TscClock {
    /// An uncalibrated clock whose system time starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            wall: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            cal: OnceLock::new(),
        }
    }

    /// Calibrates against a vCPU: its TSC frequency (`KVM_GET_TSC_KHZ`) and
    /// its TSC (`MSR_IA32_TSC`) read beside the host TSC. System time keeps
    /// running from where the fallback clock had got to. Later calls do
    /// nothing.
    pub fn calibrate(&self, vcpu: &VcpuFd) -> Result<(), Error> {
        if self.cal.get().is_some() {
            return Ok(());
        }
        let tsc_khz = vcpu.get_tsc_khz().map_err(|source| Error::Kvm {
            what: "KVM_GET_TSC_KHZ",
            source,
        })?;
        let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
            index: MSR_IA32_TSC,
            ..Default::default()
        }])
        .expect("one entry fits");
        let before = host_tsc();
        let n = vcpu.get_msrs(&mut msrs).map_err(|source| Error::Kvm {
            what: "KVM_GET_MSRS(IA32_TSC)",
            source,
        })?;
        let after = host_tsc();
        if n != 1 || tsc_khz == 0 {
            return Err(Error::Kvm {
                what: "KVM_GET_MSRS(IA32_TSC)",
                source: vmm_sys_util::errno::Error::new(EINVAL),
            });
        }
        let guest = msrs.as_slice()[0].data;
        let offset = guest.wrapping_sub(before / 2 + after / 2);
        self.install(tsc_khz, offset);
        Ok(())
    }

    /// Calibrates from known values (for VMMs that set the guest TSC, and
    /// for tests).
    pub fn install(&self, tsc_khz: u32, offset: u64) {
        let Some(scale) = TscScale::from_tsc_khz(tsc_khz) else {
            return;
        };
        let elapsed = self.start.elapsed();
        let guest_now = host_tsc().wrapping_add(offset);
        // Keep system time continuous across calibration: the TSC at
        // system time 0 is `elapsed` worth of ticks ago.
        let ticks = (elapsed.as_nanos() * u128::from(tsc_khz) / 1_000_000) as u64;
        let wall = self.wall;
        let _ = self.cal.set((
            Calibration {
                tsc_khz,
                offset,
                tsc_at_zero: guest_now.wrapping_sub(ticks),
                wall_at_zero: (wall.as_secs(), wall.subsec_nanos()),
            },
            scale,
        ));
    }

    /// The calibration, once done.
    pub fn calibration(&self) -> Option<Calibration> {
        self.cal.get().map(|(c, _)| *c)
    }
}

impl Default for TscClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TscClock {
    fn system_time_ns(&self) -> u64 {
        match self.cal.get() {
            Some((c, scale)) => {
                let guest = host_tsc().wrapping_add(c.offset);
                scale.ticks_to_ns(guest.wrapping_sub(c.tsc_at_zero))
            }
            None => self.start.elapsed().as_nanos() as u64,
        }
    }

    fn wallclock_at_zero(&self) -> (u64, u32) {
        (self.wall.as_secs(), self.wall.subsec_nanos())
    }

    fn guest_tsc(&self, _vcpu: u32) -> Option<(u64, u32)> {
        let (c, _) = self.cal.get()?;
        Some((host_tsc().wrapping_add(c.offset), c.tsc_khz))
    }
}

/// EINVAL, for a TSC read that returned nothing.
const EINVAL: i32 = 22;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_uncalibrated_clock_has_no_tsc_and_runs() {
        let c = TscClock::new();
        assert_eq!(c.guest_tsc(0), None);
        let a = c.system_time_ns();
        std::thread::sleep(Duration::from_millis(2));
        assert!(c.system_time_ns() > a);
    }

    #[test]
    fn test_calibrated_clock_is_continuous_and_follows_the_tsc() {
        let c = TscClock::new();
        std::thread::sleep(Duration::from_millis(5));
        let before = c.system_time_ns();
        // The host TSC frequency is unknown here; any plausible one keeps
        // the clock monotonic and close to the fallback at the switch.
        c.install(2_000_000, 12345);
        let after = c.system_time_ns();
        assert!(after >= before, "{after} < {before}");
        let (tsc, khz) = c.guest_tsc(0).unwrap();
        assert_eq!(khz, 2_000_000);
        let cal = c.calibration().unwrap();
        assert!(tsc.wrapping_sub(cal.tsc_at_zero) > 0);
        // A second install is ignored.
        c.install(3_000_000, 0);
        assert_eq!(c.calibration().unwrap().tsc_khz, 2_000_000);
    }

    #[test]
    fn test_zero_frequency_is_not_installed() {
        let c = TscClock::new();
        c.install(0, 0);
        assert_eq!(c.calibration(), None);
    }
}
