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
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Result;
use kvm_ioctls::VcpuExit;
use vm_device::bus::{MmioAddress, PioAddress, PioAddressOffset as Offset, PioRange};
use vm_device::device_manager::{IoManager, MmioManager, PioManager};
use vm_device::{DevicePio, MutDevicePio};
use vm_superio::{Serial, Trigger, serial::NoEvents};
use vmm_sys_util::eventfd::EventFd;
use xen_domain::Platform;
use xen_platform_pci::pci::{BAR0_SIZE, REG_BAR0, REG_BAR1, REG_COMMAND};
use xen_platform_pci::{LEGACY_PORT_BASE, LEGACY_PORT_COUNT};

use crate::boot::{PLATFORM_BAR0, PLATFORM_BAR1};
use crate::rtc::Cmos;
use crate::vm::{Stop, Stopper, lock};

/// The first serial port's IRQ.
pub(crate) const COM1_IRQ: u32 = 4;
/// The platform device's slot on bus 0.
const PLATFORM_SLOT: u32 = 2;

/// Writes guest-visible text to stdout at once.
pub(crate) fn print(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|()| out.flush());
}

/// The serial port's interrupt: an eventfd registered as an irqfd.
struct IrqFd(EventFd);

impl Trigger for IrqFd {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// vm-superio's 16550 on the bus, one byte per access (`IoManager`
/// never passes an empty one).
struct SerialPort(Serial<IrqFd, NoEvents, Box<dyn std::io::Write + Send>>);

impl MutDevicePio for SerialPort {
    fn pio_read(&mut self, _: PioAddress, offset: Offset, data: &mut [u8]) {
        data.fill(0xff);
        data[0] = self.0.read(offset as u8);
    }

    fn pio_write(&mut self, _: PioAddress, offset: Offset, data: &[u8]) {
        let _ = self.0.write(offset as u8, data[0]);
    }
}

/// Xen's (and Bochs') debug console at 0xe9, and the debug-exit port at
/// 0xf4, whose 32-bit write ends the VM with that status.
struct DebugPorts(Stopper);

impl DevicePio for DebugPorts {
    fn pio_read(&self, base: PioAddress, _: Offset, data: &mut [u8]) {
        data.fill(if base.0 == 0xe9 { 0xe9 } else { 0xff });
    }

    fn pio_write(&self, base: PioAddress, offset: Offset, data: &[u8]) {
        match (base.0, offset, <[u8; 4]>::try_from(data)) {
            (0xe9, ..) => print(data),
            (_, 0, Ok(v)) => self.0.defer(Stop::Status(u32::from_le_bytes(v))),
            _ => {}
        }
    }
}

/// The domain's platform device: its ports (legacy and BAR0) through its
/// own `MutDevicePio`, telling the user about unplug requests (this VMM
/// registers no emulated disks or NICs with it).
struct PlatformPorts(Arc<Platform>);

impl DevicePio for PlatformPorts {
    fn pio_read(&self, base: PioAddress, offset: Offset, data: &mut [u8]) {
        lock(&self.0).pio_read(base, offset, data);
    }

    fn pio_write(&self, base: PioAddress, offset: Offset, data: &[u8]) {
        let mut d = lock(&self.0);
        let before = d.stats().unplug_requests;
        d.pio_write(base, offset, data);
        if d.stats().unplug_requests != before {
            let what = match d.devices().iter().filter(|r| r.unplugged).count() {
                0 => "nothing to remove: this VMM emulates no disks or NICs".into(),
                n => format!("{n} emulated device(s) removed"),
            };
            let mask = d.unplug_mask().bits();
            print(
                format!("xen-vmm: platform: guest asked to unplug mask {mask:#x}; {what}\n")
                    .as_bytes(),
            );
        }
    }
}

/// PCI configuration mechanism #1: the address register at 0xcf8 (32-bit
/// accesses), the data window at 0xcfc, bus 0 function 0 only.
struct PciConfig(u32, Option<Arc<PlatformPorts>>);

impl PciConfig {
    /// The (slot, register) selected for the data window port `offset`.
    fn selected(&self, offset: Offset) -> Option<(u32, u16)> {
        let (a, byte) = (self.0, offset.checked_sub(4)?);
        (a & 0x80ff_0700 == 0x8000_0000).then_some((a >> 11 & 0x1f, (a & 0xfc) as u16 + byte))
    }
}

impl MutDevicePio for PciConfig {
    fn pio_read(&mut self, _: PioAddress, offset: Offset, data: &mut [u8]) {
        data.fill(0xff);
        let n = data.len().min(4);
        let v = match (offset, self.selected(offset), &self.1) {
            (0, ..) if n == 4 => self.0,
            // An i440FX-style host bridge: Linux's conf1 probe wants one.
            (_, Some((0, reg)), _) => match reg & !3 {
                0 => 0x1237_8086u32 >> (8 * (reg & 3)),
                8 => 0x0600_0002 >> (8 * (reg & 3)),
                _ => 0,
            },
            (_, Some((PLATFORM_SLOT, reg)), Some(p)) => lock(&p.0).read_config(reg, n as u8),
            _ => return,
        };
        data[..n].copy_from_slice(&v.to_le_bytes()[..n]);
    }

    fn pio_write(&mut self, _: PioAddress, offset: Offset, data: &[u8]) {
        let mut v = [0u8; 4];
        let n = data.len().min(4);
        v[..n].copy_from_slice(&data[..n]);
        match (offset, self.selected(offset), &self.1) {
            (0, ..) if n == 4 => self.0 = u32::from_le_bytes(v),
            (_, Some((PLATFORM_SLOT, reg)), Some(p)) => {
                lock(&p.0).write_config(reg, n as u8, u32::from_le_bytes(v));
            }
            _ => {}
        }
    }
}

fn range(base: u16, len: u32) -> Result<PioRange> {
    Ok(PioRange::new(PioAddress(base), len.try_into()?)?)
}

/// Every device, on one `IoManager`. The platform device's BAR0 follows
/// the guest's configuration writes; a BAR placed over another device's
/// ports decodes nothing.
pub(crate) struct Bus {
    io: RwLock<IoManager>,
    /// The platform device, and where its BAR0 is registered.
    platform: Option<(Arc<PlatformPorts>, Mutex<Option<u16>>)>,
    trace: bool,
}

impl Bus {
    /// The devices, with the Xen domain's platform device if there is one.
    pub(crate) fn new(
        irq: EventFd,
        stop: Stopper,
        platform: Option<Arc<Platform>>,
        trace: bool,
        serial_out: bool,
    ) -> Result<Self> {
        let mut io = IoManager::new();
        let out: Box<dyn std::io::Write + Send> = if serial_out {
            Box::new(std::io::stdout())
        } else {
            Box::new(std::io::sink())
        };
        let serial = SerialPort(Serial::new(IrqFd(irq), out));
        io.register_pio(range(0x3f8, 8)?, Arc::new(Mutex::new(serial)))?;
        io.register_pio(range(0x70, 2)?, Arc::new(Mutex::new(Cmos::new())))?;
        let debug = Arc::new(DebugPorts(stop));
        io.register_pio(range(0xe9, 1)?, debug.clone())?;
        io.register_pio(range(0xf4, 4)?, debug)?;
        let platform = platform.map(|p| {
            let mut d = lock(&p);
            // What firmware would do: assign both BARs, enable decoding.
            d.write_config(REG_BAR0, 4, u32::from(PLATFORM_BAR0));
            d.write_config(REG_BAR1, 4, PLATFORM_BAR1 as u32);
            d.write_config(REG_COMMAND, 2, 0x3);
            drop(d);
            Arc::new(PlatformPorts(p))
        });
        let pci = PciConfig(0, platform.clone());
        io.register_pio(range(0xcf8, 8)?, Arc::new(Mutex::new(pci)))?;
        if let Some(p) = &platform {
            io.register_pio(
                range(LEGACY_PORT_BASE, LEGACY_PORT_COUNT.into())?,
                p.clone(),
            )?;
        }
        let platform = platform.map(|p| (p, Mutex::new(None)));
        let bus = Self {
            io: RwLock::new(io),
            platform,
            trace,
        };
        bus.follow_bar0();
        Ok(bus)
    }

    /// Handles `exit` if it is port or MMIO I/O. An access no device
    /// decodes reads all-ones; a write is ignored, and a port write comes
    /// back as `Err(Some(port))` for Xen to look at. Other exits come back
    /// as `Err(None)`.
    pub(crate) fn exit(&self, exit: VcpuExit) -> Result<(), Option<u16>> {
        let io = self.io.read().unwrap_or_else(|e| e.into_inner());
        match exit {
            VcpuExit::IoIn(port, data) => {
                if io.pio_read(PioAddress(port), data).is_err() {
                    data.fill(0xff);
                }
            }
            VcpuExit::IoOut(port, data) => {
                io.pio_write(PioAddress(port), data)
                    .map_err(|_| Some(port))?;
                drop(io);
                if (0xcfc..=0xcff).contains(&port) {
                    self.follow_bar0();
                }
            }
            VcpuExit::MmioRead(addr, data) => {
                if io.mmio_read(MmioAddress(addr), data).is_err() {
                    data.fill(0xff);
                }
            }
            VcpuExit::MmioWrite(addr, data) => {
                let _ = io.mmio_write(MmioAddress(addr), data);
            }
            VcpuExit::Intr | VcpuExit::Hlt => {}
            _ => return Err(None),
        }
        Ok(())
    }

    /// A port write nobody took (logged with `--trace`).
    pub(crate) fn ignored_write(&self, port: u16) {
        if self.trace {
            eprintln!("xen-vmm: ignored write to port {port:#x}");
        }
    }

    /// Moves BAR0's registration to where the BAR decodes now.
    fn follow_bar0(&self) {
        let Some((ports, at)) = &self.platform else {
            return;
        };
        let now = lock(&ports.0).bar0_port();
        let mut at = lock(at);
        if *at != now {
            let mut io = self.io.write().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = at.take() {
                io.deregister_pio(PioAddress(old));
            }
            let r = now.map(|new| range(new, BAR0_SIZE));
            if let Some(Ok(r)) = r
                && io.register_pio(r, ports.clone()).is_ok()
            {
                *at = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(b: &Bus, port: u16, len: usize) -> u32 {
        let mut v = [0; 4];
        b.exit(VcpuExit::IoIn(port, &mut v[..len])).unwrap();
        u32::from_le_bytes(v)
    }

    fn write(b: &Bus, port: u16, v: &[u8]) -> bool {
        b.exit(VcpuExit::IoOut(port, v)).is_ok()
    }

    fn cfg(b: &Bus, slot: u32, reg: u32, value: Option<u32>) -> u32 {
        assert!(write(
            b,
            0xcf8,
            &(0x8000_0000 | slot << 11 | reg).to_le_bytes()
        ));
        match value {
            Some(v) => u32::from(write(b, 0xcfc, &v.to_le_bytes())),
            None => read(b, 0xcfc, 4),
        }
    }

    #[test]
    fn test_bus_pci_bridge_platform_and_bar0() {
        let (stop, _) = Stopper::new();
        let events = Arc::new(xen_platform_pci::NoEvents);
        let platform = xen_platform_pci::PlatformDevice::new(Default::default(), events as _);
        let platform = Some(Arc::new(Mutex::new(platform)));
        let b = Bus::new(
            EventFd::new(0).unwrap(),
            stop.clone(),
            platform,
            false,
            true,
        )
        .unwrap();
        assert_eq!(cfg(&b, 0, 0, None), 0x1237_8086);
        assert_eq!(cfg(&b, PLATFORM_SLOT, 0, None), 0x0001_5853);
        assert_eq!(cfg(&b, PLATFORM_SLOT, 0x14, None), PLATFORM_BAR1 as u32 | 8);
        assert_eq!(cfg(&b, 5, 0, None), u32::MAX, "empty slot");
        assert_eq!(read(&b, 0x10, 2), 0x49d2, "the platform magic");
        // BAR0 (flags at offset 0) moves with the guest's write.
        assert_eq!(read(&b, PLATFORM_BAR0, 1), 0);
        assert_eq!(cfg(&b, PLATFORM_SLOT, 0x10, Some(0xd000)), 1);
        assert_eq!((read(&b, PLATFORM_BAR0, 1), read(&b, 0xd000, 1)), (0xff, 0));
        // Debug ports; unknown ports read all-ones and ignore writes.
        assert_eq!(read(&b, 0xe9, 1), 0xe9);
        assert!(write(&b, 0xf4, &[1]) && !stop.is_set(), "32-bit only");
        assert!(write(&b, 0xf4, &7u32.to_le_bytes()));
        assert!(matches!(stop.take_deferred(), Some(Stop::Status(7))));
        assert_eq!(
            (read(&b, 0x5000, 4), write(&b, 0x5000, &[1])),
            (u32::MAX, false)
        );
    }
}
