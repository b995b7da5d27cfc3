// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The VMM's devices, each a vm-device `DevicePio` or `MutDevicePio` on
//! one `IoManager`: a 16550 serial port (vm-superio) at 0x3f8 on IRQ 4,
//! the CMOS clock at 0x70 (`rtc.rs`), PCI configuration mechanism #1 at
//! 0xcf8 with an i440FX-style host bridge at 00:00.0 and the Xen platform
//! device at 00:02.0 (its legacy ports 0x10-0x1f and BAR0 are on the bus
//! too), Xen's HVM debug console at 0xe9, and the debug-exit port 0xf4
//! (the harness guests' exit port). Other ports read all-ones and ignore
//! writes. Nothing is trapped as MMIO: the platform device's BAR1 is
//! memory (see `vm.rs`), so MMIO exits find no device either.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use anyhow::Result;
use vm_device::bus::{MmioAddress, PioAddress, PioAddressOffset, PioRange};
use vm_device::device_manager::{IoManager, MmioManager, PioManager};
use vm_device::{DevicePio, MutDevicePio};
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;
use xen_platform_pci::pci::{BAR0_SIZE, REG_BAR0, REG_BAR1, REG_COMMAND};
use xen_platform_pci::{
    Config, LEGACY_PORT_BASE, LEGACY_PORT_COUNT, PlatformDevice, PlatformEvents,
};

use crate::boot::{PLATFORM_BAR0, PLATFORM_BAR1};
use crate::rtc::{self, Cmos};
use crate::vm::{Stop, Stopper};

/// The first serial port's IRQ.
pub(crate) const COM1_IRQ: u32 = 4;
/// The platform device's slot on bus 0.
const PLATFORM_SLOT: u32 = 2;

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where every guest-visible text goes (stdout, flushed per write).
#[derive(Clone, Default)]
pub(crate) struct Output(Arc<Mutex<()>>);

impl Output {
    pub(crate) fn write(&self, bytes: &[u8]) {
        let _g = lock(&self.0);
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
struct IrqFd(EventFd);

impl Trigger for IrqFd {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// vm-superio's 16550 on the bus (one byte per access).
struct SerialPort(Serial<IrqFd, NoEvents, Output>);

impl MutDevicePio for SerialPort {
    fn pio_read(&mut self, _: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        data.fill(0xff);
        if let Some(b) = data.first_mut() {
            *b = self.0.read(offset as u8);
        }
    }

    fn pio_write(&mut self, _: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        if let Some(&b) = data.first() {
            let _ = self.0.write(offset as u8, b);
        }
    }
}

/// Xen's (and Bochs') debug console: reads 0xe9, prints what is written.
struct DebugConsole(Output);

impl DevicePio for DebugConsole {
    fn pio_read(&self, _: PioAddress, _: PioAddressOffset, data: &mut [u8]) {
        data.fill(0xe9);
    }

    fn pio_write(&self, _: PioAddress, _: PioAddressOffset, data: &[u8]) {
        self.0.write(data);
    }
}

/// A 32-bit write ends the VM with that status.
struct DebugExit(Stopper);

impl DevicePio for DebugExit {
    fn pio_read(&self, _: PioAddress, _: PioAddressOffset, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn pio_write(&self, _: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        if let (0, Ok(status)) = (offset, <[u8; 4]>::try_from(data)) {
            self.0.defer(Stop::Status(u32::from_le_bytes(status)));
        }
    }
}

/// The platform device's log lines.
struct PlatformLog(Output);

impl PlatformEvents for PlatformLog {
    fn log_line(&self, line: &str) {
        let line = format!("xen-vmm: platform log: {line}\n");
        self.0.write(line.as_bytes());
    }
}

type Platform = Arc<Mutex<PlatformDevice<PlatformLog>>>;

/// The platform device's ports (legacy and BAR0) through its own
/// `MutDevicePio`, telling the user about unplug requests: this VMM
/// registers no emulated disks or NICs, so the device reports none.
struct PlatformPorts(Platform, Output);

impl DevicePio for PlatformPorts {
    fn pio_read(&self, base: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        lock(&self.0).pio_read(base, offset, data);
    }

    fn pio_write(&self, base: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        let mut d = lock(&self.0);
        let before = d.stats().unplug_requests;
        d.pio_write(base, offset, data);
        if d.stats().unplug_requests != before {
            let what = match d.devices().iter().filter(|r| r.unplugged).count() {
                0 => "nothing to remove: this VMM emulates no disks or NICs".into(),
                n => format!("{n} emulated device(s) removed"),
            };
            let mask = d.unplug_mask().bits();
            let line = format!("xen-vmm: platform: guest asked to unplug mask {mask:#x}; {what}\n");
            self.1.write(line.as_bytes());
        }
    }
}

/// PCI configuration mechanism #1: the address register at 0xcf8, the
/// data window at 0xcfc, bus 0 function 0 only.
struct PciConfig {
    address: u32,
    platform: Option<Platform>,
}

impl PciConfig {
    /// The (slot, register) the address register selects for the port
    /// at `offset` (0xcfc-0xcff, the data window).
    fn selected(&self, offset: u16) -> Option<(u32, u16)> {
        let byte = offset.checked_sub(4)?;
        let a = self.address;
        let on_bus0_fn0 = a & 0x8000_0000 != 0 && a & 0x00ff_0700 == 0;
        on_bus0_fn0.then_some((a >> 11 & 0x1f, (a & 0xfc) as u16 + byte))
    }
}

impl MutDevicePio for PciConfig {
    fn pio_read(&mut self, _: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        data.fill(0xff);
        let len = data.len().min(4);
        let v = match (offset, self.selected(offset), &self.platform) {
            (0, _, _) if len == 4 => self.address,
            // An i440FX-style host bridge: Linux's conf1 probe wants one.
            (4.., Some((0, reg)), _) => match reg & !3 {
                0 => 0x1237_8086_u32,
                8 => 0x0600_0002,
                _ => 0,
            }
            .checked_shr(8 * u32::from(reg & 3))
            .unwrap_or(0),
            (4.., Some((PLATFORM_SLOT, reg)), Some(p)) => lock(p).read_config(reg, len as u8),
            _ => return,
        };
        data[..len].copy_from_slice(&v.to_le_bytes()[..len]);
    }

    fn pio_write(&mut self, _: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        let mut v = [0u8; 4];
        let len = data.len().min(4);
        v[..len].copy_from_slice(&data[..len]);
        match (offset, self.selected(offset), &self.platform) {
            (0, _, _) if len == 4 => self.address = u32::from_le_bytes(v),
            (4.., Some((PLATFORM_SLOT, reg)), Some(p)) => {
                lock(p).write_config(reg, len as u8, u32::from_le_bytes(v));
            }
            _ => {}
        }
    }
}

fn range(base: u16, len: u32) -> Result<PioRange> {
    Ok(PioRange::new(PioAddress(base), len.try_into()?)?)
}

/// Every device, on one `IoManager`; the platform device's BAR0 follows
/// the guest's configuration writes.
pub(crate) struct Bus {
    io: RwLock<IoManager>,
    /// The platform ports, and where BAR0 is registered.
    platform: Option<(Arc<PlatformPorts>, Mutex<Option<u16>>)>,
    trace: bool,
}

impl Bus {
    /// The devices; `xen` adds the Xen platform device.
    pub(crate) fn new(
        out: &Output,
        irq: EventFd,
        stop: Stopper,
        xen: bool,
        trace: bool,
    ) -> Result<Self> {
        let mut io = IoManager::new();
        let serial = SerialPort(Serial::new(IrqFd(irq), out.clone()));
        io.register_pio(range(0x3f8, 8)?, Arc::new(Mutex::new(serial)))?;
        io.register_pio(range(rtc::PORT, 2)?, Arc::new(Mutex::new(Cmos::new())))?;
        io.register_pio(range(0xe9, 1)?, Arc::new(DebugConsole(out.clone())))?;
        io.register_pio(range(0xf4, 4)?, Arc::new(DebugExit(stop)))?;
        let platform = xen.then(|| {
            let mut d = PlatformDevice::new(Config::default(), PlatformLog(out.clone()));
            // What firmware would do: assign both BARs, enable decoding.
            d.write_config(REG_BAR0, 4, u32::from(PLATFORM_BAR0));
            d.write_config(REG_BAR1, 4, PLATFORM_BAR1 as u32);
            d.write_config(REG_COMMAND, 2, 0x3);
            Arc::new(Mutex::new(d))
        });
        let pci = PciConfig {
            address: 0,
            platform: platform.clone(),
        };
        io.register_pio(range(0xcf8, 8)?, Arc::new(Mutex::new(pci)))?;
        let platform = match platform {
            Some(d) => {
                let ports = Arc::new(PlatformPorts(d, out.clone()));
                let legacy = range(LEGACY_PORT_BASE, LEGACY_PORT_COUNT.into())?;
                io.register_pio(legacy, ports.clone())?;
                Some((ports, Mutex::new(None)))
            }
            None => None,
        };
        let bus = Self {
            io: RwLock::new(io),
            platform,
            trace,
        };
        bus.follow_bar0();
        Ok(bus)
    }

    fn io(&self) -> std::sync::RwLockReadGuard<'_, IoManager> {
        self.io.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A port read: all-ones where no device decodes the port.
    pub(crate) fn pio_read(&self, port: u16, data: &mut [u8]) {
        if self.io().pio_read(PioAddress(port), data).is_err() {
            data.fill(0xff);
        }
    }

    /// A port write; false when no device decodes the port.
    pub(crate) fn pio_write(&self, port: u16, data: &[u8]) -> bool {
        let decoded = self.io().pio_write(PioAddress(port), data).is_ok();
        if decoded && (0xcfc..=0xcff).contains(&port) {
            self.follow_bar0();
        }
        decoded
    }

    /// A port write nobody took (logged with `--trace`).
    pub(crate) fn ignored_write(&self, port: u16) {
        if self.trace {
            eprintln!("xen-vmm: ignored write to port {port:#x}");
        }
    }

    /// An MMIO read: all-ones where no device decodes the address.
    pub(crate) fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        if self.io().mmio_read(MmioAddress(addr), data).is_err() {
            data.fill(0xff);
        }
    }

    /// An MMIO write, ignored where no device decodes the address.
    pub(crate) fn mmio_write(&self, addr: u64, data: &[u8]) {
        let _ = self.io().mmio_write(MmioAddress(addr), data);
    }

    /// Keeps BAR0's ports registered where the guest put the BAR (a BAR
    /// placed over another device's ports stays unregistered).
    fn follow_bar0(&self) {
        let Some((ports, at)) = &self.platform else {
            return;
        };
        let now = lock(&ports.0).bar0_port();
        let mut at = lock(at);
        if *at == now {
            return;
        }
        let mut io = self.io.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = at.take() {
            io.deregister_pio(PioAddress(old));
        }
        if let Some(new) = now
            && let Ok(r) = range(new, BAR0_SIZE)
            && io.register_pio(r, ports.clone()).is_ok()
        {
            *at = Some(new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus() -> (Bus, Stopper) {
        let (stop, _) = Stopper::new();
        let irq = EventFd::new(0).unwrap();
        (
            Bus::new(&Output::default(), irq, stop.clone(), true, false).unwrap(),
            stop,
        )
    }

    fn cfg_write(b: &Bus, slot: u32, reg: u32, v: u32) {
        assert!(b.pio_write(0xcf8, &(0x8000_0000 | slot << 11 | reg).to_le_bytes()));
        assert!(b.pio_write(0xcfc, &v.to_le_bytes()));
    }

    fn cfg_read(b: &Bus, slot: u32, reg: u32) -> u32 {
        b.pio_write(0xcf8, &(0x8000_0000 | slot << 11 | reg).to_le_bytes());
        let mut v = [0; 4];
        b.pio_read(0xcfc, &mut v);
        u32::from_le_bytes(v)
    }

    #[test]
    fn test_bus_pci_shows_bridge_and_platform() {
        let (b, _) = bus();
        assert_eq!(cfg_read(&b, 0, 0), 0x1237_8086);
        assert_eq!(cfg_read(&b, PLATFORM_SLOT, 0), 0x0001_5853);
        assert_eq!(cfg_read(&b, PLATFORM_SLOT, 0x14), PLATFORM_BAR1 as u32 | 8);
        assert_eq!(cfg_read(&b, 5, 0), 0xffff_ffff, "empty slot");
        // Sizing BAR1, and writes to an empty slot or the bridge.
        cfg_write(&b, PLATFORM_SLOT, 0x14, u32::MAX);
        assert_eq!(cfg_read(&b, PLATFORM_SLOT, 0x14) & !0xf, 0xff00_0000);
        cfg_write(&b, 5, 0x14, 0);
        cfg_write(&b, 0, 0, 0);
        assert_eq!(cfg_read(&b, 0, 0), 0x1237_8086);
    }

    #[test]
    fn test_bus_platform_bar0_follows_the_guest() {
        let (b, _) = bus();
        let flags = |port| {
            let mut v = [0];
            b.pio_read(port, &mut v);
            v[0]
        };
        let mut m = [0; 2];
        b.pio_read(0x10, &mut m);
        assert_eq!(u16::from_le_bytes(m), 0x49d2);
        assert_eq!(flags(PLATFORM_BAR0), 0, "BAR0 flags");
        cfg_write(&b, PLATFORM_SLOT, 0x10, 0xd000);
        assert_eq!((flags(PLATFORM_BAR0), flags(0xd000)), (0xff, 0));
    }

    #[test]
    fn test_bus_ports() {
        let (b, stop) = bus();
        let mut v = [0; 1];
        b.pio_read(0xe9, &mut v);
        assert_eq!(v[0], 0xe9);
        assert!(b.pio_write(0xf4, &[1]));
        assert!(!stop.is_set(), "only 32-bit writes");
        assert!(b.pio_write(0xf4, &7u32.to_le_bytes()));
        assert!(matches!(stop.take_deferred(), Some(Stop::Status(7))));
        // Unknown ports read all-ones and ignore writes.
        let mut u = [0; 4];
        b.pio_read(0x5000, &mut u);
        assert_eq!(u, [0xff; 4]);
        assert!(!b.pio_write(0x5000, &[1]));
    }
}
