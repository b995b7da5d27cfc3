// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The VMM's emulated devices and its port/MMIO dispatch: a 16550 serial
//! port (vm-superio) at 0x3f8 on IRQ 4, PCI configuration mechanism #1
//! (0xcf8/0xcfc) with a host bridge at 00:00.0 and the Xen platform
//! device at 00:02.0, the CMOS clock at 0x70/0x71 (`rtc.rs`), Xen's HVM
//! debug console port 0xe9, and a debug-exit port 0xf4 (the harness
//! guests' exit port).

use std::io::Write;
use std::sync::{Arc, Mutex};

use vm_device::MutDevicePio;
use vm_device::bus::PioAddress;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;
use xen_platform_pci::pci::{REG_BAR0, REG_BAR1, REG_COMMAND};
use xen_platform_pci::{
    Config, LEGACY_PORT_BASE, LEGACY_PORT_COUNT, PlatformDevice, PlatformEvents,
};

use crate::boot::{PLATFORM_BAR0, PLATFORM_BAR1};
use crate::rtc::{self, Cmos};

/// The first serial port and its IRQ.
pub(crate) const COM1: u16 = 0x3f8;
pub(crate) const COM1_IRQ: u32 = 4;
/// Xen's (and Bochs') HVM debug console port.
pub(crate) const DEBUG_CONSOLE: u16 = 0xe9;
/// Debug-exit port: a 32-bit write ends the VM with that status.
pub(crate) const DEBUG_EXIT: u16 = 0xf4;
/// The platform device's slot on bus 0.
pub(crate) const PLATFORM_SLOT: u32 = 2;

/// Where every guest-visible text goes (stdout, flushed per write).
#[derive(Clone, Default)]
pub(crate) struct Output(Arc<Mutex<()>>);

impl Output {
    pub(crate) fn write(&self, bytes: &[u8]) {
        let _g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Output::write(self, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The serial port's interrupt: an eventfd the VMM registers as an irqfd.
pub(crate) struct IrqFd(pub(crate) EventFd);

impl Trigger for IrqFd {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// What the platform device tells the VMM.
pub(crate) struct PlatformLog(pub(crate) Output);

impl PlatformEvents for PlatformLog {
    fn log_line(&self, line: &str) {
        self.0
            .write(format!("xen-vmm: platform log: {line}\n").as_bytes());
    }
}

/// Something a port access asks the VMM to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// The guest wrote this status to the debug-exit port.
    Exit(u32),
}

/// All emulated devices.
pub(crate) struct Devices {
    out: Output,
    serial: Mutex<Serial<IrqFd, vm_superio::serial::NoEvents, Output>>,
    pci_addr: Mutex<u32>,
    cmos: Mutex<Cmos>,
    platform: Option<Mutex<PlatformDevice<PlatformLog>>>,
    trace: bool,
}

impl Devices {
    /// The devices; `platform` adds the Xen platform device (Xen mode).
    pub(crate) fn new(out: Output, serial_irq: EventFd, platform: bool, trace: bool) -> Self {
        let platform = platform.then(|| {
            let mut d = PlatformDevice::new(Config::default(), PlatformLog(out.clone()));
            // What firmware would do: assign both BARs, enable decoding.
            d.write_config(REG_BAR0, 4, u32::from(PLATFORM_BAR0));
            d.write_config(REG_BAR1, 4, PLATFORM_BAR1 as u32);
            d.write_config(REG_COMMAND, 2, 0x3);
            Mutex::new(d)
        });
        Self {
            serial: Mutex::new(Serial::new(IrqFd(serial_irq), out.clone())),
            out,
            pci_addr: Mutex::new(0),
            cmos: Mutex::new(Cmos::new()),
            platform,
            trace,
        }
    }

    fn platform(&self) -> Option<std::sync::MutexGuard<'_, PlatformDevice<PlatformLog>>> {
        self.platform
            .as_ref()
            .map(|p| p.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn platform_port(&self, port: u16) -> bool {
        let legacy = (LEGACY_PORT_BASE..LEGACY_PORT_BASE + LEGACY_PORT_COUNT).contains(&port);
        legacy
            || self.platform().is_some_and(|p| {
                p.bar0_port()
                    .is_some_and(|b| port >= b && u32::from(port) < u32::from(b) + 0x100)
            })
    }

    /// A port read.
    pub(crate) fn pio_read(&self, port: u16, data: &mut [u8]) {
        data.fill(0xff);
        match port {
            COM1..=0x3ff => {
                let v = self
                    .serial
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .read((port - COM1) as u8);
                data[0] = v;
            }
            DEBUG_CONSOLE => data[0] = 0xe9,
            rtc::INDEX_PORT | rtc::DATA_PORT => {
                data[0] = self
                    .cmos
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .read(port);
            }
            0xcf8 if data.len() == 4 => {
                let a = *self.pci_addr.lock().unwrap_or_else(|e| e.into_inner());
                data.copy_from_slice(&a.to_le_bytes());
            }
            0xcfc..=0xcff => self.config_read(port, data),
            p if self.platform_port(p) => {
                if let Some(mut d) = self.platform() {
                    d.pio_read(PioAddress(p), 0, data);
                }
            }
            _ => {}
        }
    }

    /// A port write; some ask the VMM for something.
    pub(crate) fn pio_write(&self, port: u16, data: &[u8]) -> Option<Request> {
        match port {
            COM1..=0x3ff => {
                let _ = self
                    .serial
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .write((port - COM1) as u8, data[0]);
            }
            DEBUG_CONSOLE => self.out.write(data),
            rtc::INDEX_PORT | rtc::DATA_PORT => {
                self.cmos
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .write(port, data[0]);
            }
            DEBUG_EXIT if data.len() == 4 => {
                return Some(Request::Exit(u32::from_le_bytes(
                    data.try_into().expect("4 bytes"),
                )));
            }
            0xcf8 if data.len() == 4 => {
                *self.pci_addr.lock().unwrap_or_else(|e| e.into_inner()) =
                    u32::from_le_bytes(data.try_into().expect("4 bytes"));
            }
            0xcfc..=0xcff => self.config_write(port, data),
            p if self.platform_port(p) => {
                if let Some(mut d) = self.platform() {
                    let before = d.unplug_history().len();
                    d.pio_write(PioAddress(p), 0, data);
                    if d.unplug_history().len() != before || (p == 0x10 && data.len() == 2) {
                        let mask = d.unplug_mask();
                        let removed = d.devices().iter().filter(|r| r.unplugged).count();
                        let what = match removed {
                            0 => "nothing to remove: this VMM emulates no disks or NICs".into(),
                            n => format!("{n} emulated device(s) removed"),
                        };
                        self.out.write(
                            format!(
                                "xen-vmm: platform: guest asked to unplug mask {:#x}; {what}\n",
                                mask.bits()
                            )
                            .as_bytes(),
                        );
                    }
                }
            }
            _ => {
                if self.trace {
                    eprintln!("xen-vmm: ignored write to port {port:#x}");
                }
            }
        }
        None
    }

    /// Which function the address register selects: (slot, register).
    fn selected(&self, port: u16) -> Option<(u32, u16)> {
        let a = *self.pci_addr.lock().unwrap_or_else(|e| e.into_inner());
        let (bus, slot, func) = (a >> 16 & 0xff, a >> 11 & 0x1f, a >> 8 & 7);
        (a & 0x8000_0000 != 0 && bus == 0 && func == 0)
            .then_some((slot, (a & 0xfc) as u16 + (port - 0xcfc)))
    }

    fn config_read(&self, port: u16, data: &mut [u8]) {
        let Some((slot, reg)) = self.selected(port) else {
            return;
        };
        let size = data.len() as u8;
        let v = match slot {
            // An i440FX-style host bridge: Linux's conf1 probe wants one.
            0 => {
                let dword = match reg & !3 {
                    0 => 0x1237_8086,
                    8 => 0x0600_0002,
                    _ => 0,
                };
                dword >> (8 * (reg & 3))
            }
            PLATFORM_SLOT => match self.platform() {
                Some(mut d) => d.read_config(reg, size),
                None => return,
            },
            _ => return,
        };
        let n = data.len();
        data.copy_from_slice(&v.to_le_bytes()[..n]);
    }

    fn config_write(&self, port: u16, data: &[u8]) {
        if let Some((PLATFORM_SLOT, reg)) = self.selected(port)
            && let Some(mut d) = self.platform()
        {
            let mut v = [0u8; 4];
            v[..data.len()].copy_from_slice(data);
            d.write_config(reg, data.len() as u8, u32::from_le_bytes(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices() -> Devices {
        Devices::new(Output::default(), EventFd::new(0).unwrap(), true, false)
    }

    fn cfg_write(d: &Devices, slot: u32, reg: u32, v: u32) {
        d.pio_write(0xcf8, &(0x8000_0000 | slot << 11 | reg).to_le_bytes());
        d.pio_write(0xcfc, &v.to_le_bytes());
    }

    fn cfg_read(d: &Devices, slot: u32, reg: u32) -> u32 {
        d.pio_write(0xcf8, &(0x8000_0000 | slot << 11 | reg).to_le_bytes());
        let mut v = [0; 4];
        d.pio_read(0xcfc, &mut v);
        u32::from_le_bytes(v)
    }

    #[test]
    fn test_pci_bus_shows_bridge_and_platform() {
        let d = devices();
        assert_eq!(cfg_read(&d, 0, 0), 0x1237_8086);
        assert_eq!(cfg_read(&d, PLATFORM_SLOT, 0), 0x0001_5853);
        assert_eq!(cfg_read(&d, PLATFORM_SLOT, 0x14), PLATFORM_BAR1 as u32 | 8);
        assert_eq!(cfg_read(&d, 5, 0), 0xffff_ffff, "empty slot");
        // Sizing BAR1 and restoring it.
        cfg_write(&d, PLATFORM_SLOT, 0x14, u32::MAX);
        assert_eq!(cfg_read(&d, PLATFORM_SLOT, 0x14) & !0xf, 0xff00_0000);
        // Writes to an empty slot or to the bridge change nothing.
        cfg_write(&d, 5, 0x14, 0);
        cfg_write(&d, 0, 0, 0);
        assert_eq!(cfg_read(&d, 0, 0), 0x1237_8086);
        cfg_write(&d, PLATFORM_SLOT, 0x14, PLATFORM_BAR1 as u32);
        assert_eq!(
            cfg_read(&d, PLATFORM_SLOT, 0x14) & !0xf,
            PLATFORM_BAR1 as u32
        );
    }

    #[test]
    fn test_ports() {
        let d = devices();
        let mut m = [0; 2];
        d.pio_read(0x10, &mut m);
        assert_eq!(u16::from_le_bytes(m), 0x49d2);
        let mut b = [0; 1];
        d.pio_read(DEBUG_CONSOLE, &mut b);
        assert_eq!(b[0], 0xe9);
        assert_eq!(
            d.pio_write(DEBUG_EXIT, &7u32.to_le_bytes()),
            Some(Request::Exit(7))
        );
        assert_eq!(d.pio_write(DEBUG_EXIT, &[1]), None, "only 32-bit writes");
        // Unknown ports read all-ones and ignore writes.
        let mut u = [0; 4];
        d.pio_read(0x5000, &mut u);
        assert_eq!(u, [0xff; 4]);
        assert_eq!(d.pio_write(0x5000, &[1]), None);
    }
}
