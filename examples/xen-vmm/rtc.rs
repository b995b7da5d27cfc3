// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! An MC146818-style CMOS real-time clock at ports 0x70 (index; bit 7 of
//! a write is the NMI-disable bit) and 0x71 (data), reading the host's
//! UTC time, BCD, 24-hour.
//!
//! Linux reads the time from it at boot, and without one every read of
//! port 0x71 returns 0xff: the update-in-progress bit looks stuck, and
//! Linux polls it about 20,000 times (seconds of boot time in the lab)
//! before it decides the RTC is broken. No alarm or periodic interrupts
//! are generated; the time registers ignore writes, the other 114 bytes
//! of CMOS RAM are plain storage.

use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use vm_device::MutDevicePio;
use vm_device::bus::{PioAddress, PioAddressOffset};

/// Registers A-D: A = 32.768 kHz time base, 1024 Hz rate, update never
/// in progress; B = 24-hour BCD, no interrupts; C = no flags; D = valid.
const STATUS: [u8; 4] = [0x26, 0x02, 0x00, 0x80];

/// The clock and CMOS RAM.
pub(crate) struct Cmos {
    index: u8,
    ram: [u8; 128],
    now: fn() -> i64,
}

fn host_now() -> i64 {
    let t = SystemTime::now().duration_since(UNIX_EPOCH);
    t.map_or(0, |d| d.as_secs() as i64)
}

impl Cmos {
    pub(crate) fn new() -> Self {
        Self::with_clock(host_now)
    }

    fn with_clock(now: fn() -> i64) -> Self {
        let mut ram = [0u8; 128];
        ram[0x0a..0x0e].copy_from_slice(&STATUS);
        Self { index: 0, ram, now }
    }

    /// Seconds, minutes, hours, weekday (Sunday = 1), day, month, year,
    /// century.
    fn time_register(&self, reg: u8) -> Option<u8> {
        let t =
            OffsetDateTime::from_unix_timestamp((self.now)()).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let year = t.year().clamp(0, 9999) as u16;
        let v = match reg {
            0x00 => t.second(),
            0x02 => t.minute(),
            0x04 => t.hour(),
            0x06 => t.weekday().number_from_sunday(),
            0x07 => t.day(),
            0x08 => t.month().into(),
            0x09 => (year % 100) as u8,
            0x32 => (year / 100) as u8,
            _ => return None,
        };
        Some((v / 10) << 4 | (v % 10))
    }
}

impl MutDevicePio for Cmos {
    fn pio_read(&mut self, _: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        let reg = self.index;
        let v = match (offset, self.time_register(reg)) {
            (0, _) => reg,
            (1, Some(v)) => v,
            // Reading register C clears its flags.
            (1, None) if reg == 0x0c => std::mem::take(&mut self.ram[0x0c]),
            (1, None) => self.ram[usize::from(reg)],
            _ => 0xff,
        };
        data.fill(0xff);
        data[0] = v;
    }

    fn pio_write(&mut self, _: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        let reg = self.index;
        match offset {
            0 => self.index = data[0] & 0x7f,
            // The clock and its status registers stay ours.
            1 if self.time_register(reg).is_none() && !(0x0a..=0x0d).contains(&reg) => {
                self.ram[usize::from(reg)] = data[0];
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(c: &mut Cmos, reg: u8) -> u8 {
        let mut v = [0];
        c.pio_write(PioAddress(0x70), 0, &[reg | 0x80]);
        c.pio_read(PioAddress(0x70), 1, &mut v);
        v[0]
    }

    #[test]
    fn test_cmos_time_is_bcd_utc_and_ram_stores() {
        // 2026-11-27 09:41:07 UTC, a Friday.
        let mut c = Cmos::with_clock(|| 1_795_772_467);
        let time: Vec<u8> = [0, 2, 4, 6, 7, 8, 9, 0x32].map(|r| read(&mut c, r)).into();
        assert_eq!(time, [0x07, 0x41, 0x09, 0x06, 0x27, 0x11, 0x26, 0x20]);
        assert_eq!(read(&mut c, 0x0a) & 0x80, 0, "never update-in-progress");
        // Plain CMOS RAM stores; clock and status registers do not.
        for reg in [0x40, 0x0b, 0x00] {
            c.pio_write(PioAddress(0x70), 0, &[reg]);
            c.pio_write(PioAddress(0x70), 1, &[0x5a]);
        }
        let regs = [0x40, 0x0b, 0x00].map(|r| read(&mut c, r));
        assert_eq!(regs, [0x5a, 0x02, 0x07]);
    }
}
