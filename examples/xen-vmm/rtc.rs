// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! An MC146818-style CMOS real-time clock at ports 0x70 (index) and 0x71
//! (data), reading the host's UTC time, BCD, 24-hour.
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

/// The first port (index; bit 7 of a write is the NMI-disable bit), then
/// the data port.
pub(crate) const PORT: u16 = 0x70;
const INDEX: u16 = 0;
const DATA: u16 = 1;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const WEEKDAY: u8 = 0x06;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
const CENTURY: u8 = 0x32;
/// Register A: 32.768 kHz time base, 1024 Hz rate; UIP (bit 7) clear.
const REG_A_VALUE: u8 = 0x26;
/// Register B: 24-hour mode, BCD (DM = 0), no interrupts enabled.
const REG_B_VALUE: u8 = 0x02;
/// Register D: valid RAM and time (VRT).
const REG_D_VALUE: u8 = 0x80;

/// The clock and CMOS RAM.
pub(crate) struct Cmos {
    index: u8,
    ram: [u8; 128],
    now: fn() -> i64,
}

fn host_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn bcd(v: u8) -> u8 {
    (v / 10 % 10) << 4 | (v % 10)
}

impl Cmos {
    pub(crate) fn new() -> Self {
        Self::with_clock(host_now)
    }

    fn with_clock(now: fn() -> i64) -> Self {
        let mut ram = [0u8; 128];
        ram[usize::from(REG_A)] = REG_A_VALUE;
        ram[usize::from(REG_B)] = REG_B_VALUE;
        ram[usize::from(REG_D)] = REG_D_VALUE;
        Self { index: 0, ram, now }
    }

    fn time_register(&self, reg: u8) -> Option<u8> {
        let t =
            OffsetDateTime::from_unix_timestamp((self.now)()).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let year = t.year().clamp(0, 9999) as u16;
        Some(bcd(match reg {
            SECONDS => t.second(),
            MINUTES => t.minute(),
            HOURS => t.hour(),
            // The RTC counts Sunday as 1.
            WEEKDAY => t.weekday().number_from_sunday(),
            DAY => t.day(),
            MONTH => t.month().into(),
            YEAR => (year % 100) as u8,
            CENTURY => (year / 100) as u8,
            _ => return None,
        }))
    }

    fn read(&mut self, offset: u16) -> u8 {
        match offset {
            INDEX => self.index,
            DATA => {
                let reg = self.index;
                match self.time_register(reg) {
                    Some(v) => v,
                    None if reg == REG_C => std::mem::take(&mut self.ram[usize::from(REG_C)]),
                    None => self.ram[usize::from(reg)],
                }
            }
            _ => 0xff,
        }
    }

    fn write(&mut self, offset: u16, value: u8) {
        match offset {
            INDEX => self.index = value & 0x7f,
            DATA => {
                let reg = self.index;
                // The clock, its status registers and the flags stay ours.
                if self.time_register(reg).is_none() && !matches!(reg, REG_A..=REG_D) {
                    self.ram[usize::from(reg)] = value;
                }
            }
            _ => {}
        }
    }
}

impl MutDevicePio for Cmos {
    fn pio_read(&mut self, _: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        data.fill(0xff);
        if let Some(b) = data.first_mut() {
            *b = self.read(offset);
        }
    }

    fn pio_write(&mut self, _: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        if let Some(&b) = data.first() {
            self.write(offset, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(c: &mut Cmos, reg: u8) -> u8 {
        c.write(INDEX, reg | 0x80);
        c.read(DATA)
    }

    #[test]
    fn test_time_registers_are_bcd_utc() {
        // 2026-11-27 09:41:07 UTC, a Friday.
        let mut c = Cmos::with_clock(|| 1_795_772_467);
        assert_eq!(read(&mut c, SECONDS), 0x07);
        assert_eq!(read(&mut c, MINUTES), 0x41);
        assert_eq!(read(&mut c, HOURS), 0x09);
        assert_eq!(read(&mut c, DAY), 0x27);
        assert_eq!(read(&mut c, MONTH), 0x11);
        assert_eq!(read(&mut c, YEAR), 0x26);
        assert_eq!(read(&mut c, CENTURY), 0x20);
        assert_eq!(read(&mut c, WEEKDAY), 0x06);
        // A leap day.
        let mut c = Cmos::with_clock(|| 19_782 * 86_400);
        assert_eq!((read(&mut c, DAY), read(&mut c, MONTH)), (0x29, 0x02));
    }

    #[test]
    fn test_status_registers_and_storage() {
        let mut c = Cmos::with_clock(|| 0);
        assert_eq!(read(&mut c, REG_A) & 0x80, 0, "never update-in-progress");
        assert_eq!(read(&mut c, REG_B), REG_B_VALUE);
        assert_eq!(read(&mut c, REG_D), REG_D_VALUE);
        // The index keeps 7 bits (bit 7 is NMI disable).
        c.write(INDEX, 0xff);
        assert_eq!(c.read(INDEX), 0x7f);
        // Plain CMOS RAM stores; clock and status registers do not.
        c.write(INDEX, 0x40);
        c.write(DATA, 0x5a);
        assert_eq!(read(&mut c, 0x40), 0x5a);
        c.write(INDEX, REG_B);
        c.write(DATA, 0xff);
        c.write(INDEX, SECONDS);
        c.write(DATA, 0x59);
        assert_eq!(read(&mut c, REG_B), REG_B_VALUE);
        assert_eq!(read(&mut c, SECONDS), 0x00);
        assert_eq!(c.read(2), 0xff, "not our register");
    }
}
