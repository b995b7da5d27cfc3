// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The platform device core: configuration space, the fixed legacy ports
//! 0x10-0x1F, BAR0 and BAR1 (`xen-abi.md` §7).
//!
//! The core does no I/O: every access arrives as an offset and a byte
//! slice, and what the guest asks for leaves through [`PlatformEvents`].
//!
//! Legacy ports (offsets relative to port 0x10; always decoded):
//!
//! | offset / width | read | write |
//! |---|---|---|
//! | 0 word | [`MAGIC`] (or [`MAGIC_BLACKLISTED`]) | unplug mask |
//! | 0 byte | platform flags | platform flags (bit 0 ROM lock) |
//! | 0 dword | - | driver build number |
//! | 2 byte | [`PROTOCOL_VERSION`] | one log character |
//! | 2 word | - | product number |
//!
//! Anything else reads all-ones, ignores writes and counts in
//! [`Stats::bad_accesses`].
//!
//! BAR0 (256 bytes of I/O, byte registers; wider accesses are split into
//! bytes as QEMU's memory core does): offset 0 reads and writes the flags;
//! writing 1 to offset 4 unplugs disks and NICs; writing 1 to offset 8
//! unplugs disks, 2 NICs, and any other value is a log character.
//!
//! BAR1 (16 MiB prefetchable memory) reads zero and ignores writes: guests
//! only use its addresses as room for shared_info and grant frames.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use log::info;

use crate::pci::{
    self, BAR0_SIZE, BAR1_SIZE, COMMAND_IO, COMMAND_MEMORY, ConfigSpace, REG_BAR0, REG_BAR1,
    REG_COMMAND, REG_INTERRUPT_LINE,
};
use crate::unplug::{
    DeviceId, DeviceKind, RegisteredDevice, UnplugMask, UnplugRecord, UnplugRequest, UnplugSource,
};
use crate::{Error, Result};
use xen_abi::ratelimit::RateLimit;

/// First of the fixed legacy I/O ports.
pub const LEGACY_PORT_BASE: u16 = 0x10;
/// Number of fixed legacy I/O ports (0x10-0x1F).
pub const LEGACY_PORT_COUNT: u16 = 16;
/// Word read at port 0x10: the interface is present.
pub const MAGIC: u16 = 0x49D2;
/// Word read at port 0x10 once the drivers are blacklisted.
pub const MAGIC_BLACKLISTED: u16 = 0xD249;
/// Byte read at port 0x12: the protocol version.
pub const PROTOCOL_VERSION: u8 = 1;
/// Platform flag bit 0: 0xC0000-0xFFFFF is read-only.
pub const PFFLAG_ROM_LOCK: u8 = 1 << 0;
/// Size of the guest log buffer; a full buffer is emitted as one line.
pub const LOG_BUFFER_SIZE: usize = 4096;
/// Number of unplug requests kept in the history (the newest ones).
pub const UNPLUG_HISTORY_LEN: usize = 64;

/// Product number: XenSource Windows drivers (`pvdrivers.h`).
pub const PRODUCT_XENSOURCE_WINDOWS: u16 = 1;
/// Product number: GPLPV Windows drivers.
pub const PRODUCT_GPLPV_WINDOWS: u16 = 2;
/// Product number: Linux.
pub const PRODUCT_LINUX: u16 = 3;
/// Product number: XenServer Windows drivers.
pub const PRODUCT_XENSERVER_WINDOWS: u16 = 4;
/// Product number: experimental drivers.
pub const PRODUCT_EXPERIMENTAL: u16 = 0xFFFF;

const BAR0_REG_FLAGS: u16 = 0;
const BAR0_REG_LEGACY_UNPLUG: u16 = 4;
const BAR0_REG_UNPLUG_OR_LOG: u16 = 8;

/// VMM options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Whether `ALL_IDE_DISKS` also removes AHCI disks. Off by default, as
    /// QEMU 8.0/8.1 documented; current QEMU unplugs AHCI too.
    pub unplug_ahci: bool,
    /// A `(product, build)` pair whose drivers must not be used, as the
    /// blacklist of qemu-xen-traditional: once the guest wrote both numbers
    /// and they match, the magic reads [`MAGIC_BLACKLISTED`] and unplug
    /// requests are refused, so the emulated devices stay.
    pub blacklist: Option<(u16, u32)>,
}

/// Requests and output of the guest, delivered to the VMM. Every method
/// has a no-op default.
///
/// Methods run synchronously inside the access that caused them (with the
/// device's lock held when the device sits in a `Mutex`), so they must not
/// call back into the device; queue work instead.
pub trait PlatformEvents {
    /// Removes one emulated device. Called at most once per registered
    /// device, in registration order; the device counts as unplugged from
    /// then on.
    fn unplug(&self, _request: &UnplugRequest) {}

    /// One line of the guest's log (without the newline; invalid UTF-8
    /// replaced).
    fn log_line(&self, _line: &str) {}

    /// The ROM lock flag changed: 0xC0000-0xFFFFF should become read-only
    /// (`true`) or writable again.
    fn rom_lock(&self, _locked: bool) {}
}

/// Events that go nowhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEvents;

impl PlatformEvents for NoEvents {}

impl<T: PlatformEvents + ?Sized> PlatformEvents for Arc<T> {
    fn unplug(&self, request: &UnplugRequest) {
        (**self).unplug(request)
    }

    fn log_line(&self, line: &str) {
        (**self).log_line(line)
    }

    fn rom_lock(&self, locked: bool) {
        (**self).rom_lock(locked)
    }
}

/// Counters kept by the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Accesses ignored because of their offset or size.
    pub bad_accesses: u64,
    /// Unplug requests received (including refused ones).
    pub unplug_requests: u64,
    /// Unplug requests refused because the drivers are blacklisted.
    pub refused_unplugs: u64,
    /// Devices removed.
    pub devices_unplugged: u64,
    /// Guest log lines emitted.
    pub log_lines: u64,
}

/// The Xen platform PCI device.
pub struct PlatformDevice<E: PlatformEvents = NoEvents> {
    pub(crate) config: Config,
    pub(crate) events: E,
    pub(crate) pci: ConfigSpace,
    pub(crate) flags: u8,
    pub(crate) product: Option<u16>,
    pub(crate) build: Option<u32>,
    pub(crate) log: Vec<u8>,
    pub(crate) unplug_mask: UnplugMask,
    pub(crate) history: VecDeque<UnplugRecord>,
    pub(crate) devices: Vec<RegisteredDevice>,
    pub(crate) stats: Stats,
    log_limit: RateLimit,
    warn_limit: RateLimit,
}

impl<E: PlatformEvents> fmt::Debug for PlatformDevice<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformDevice")
            .field("config", &self.config)
            .field("flags", &self.flags)
            .field("product", &self.product)
            .field("build", &self.build)
            .field("unplug_mask", &self.unplug_mask)
            .field("devices", &self.devices)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Default for PlatformDevice<NoEvents> {
    fn default() -> Self {
        Self::new(Config::default(), NoEvents)
    }
}

impl<E: PlatformEvents> PlatformDevice<E> {
    /// A device in its reset state, with no registered devices.
    pub fn new(config: Config, events: E) -> Self {
        Self {
            config,
            events,
            pci: ConfigSpace::new(),
            flags: 0,
            product: None,
            build: None,
            log: Vec::new(),
            unplug_mask: UnplugMask::default(),
            history: VecDeque::new(),
            devices: Vec::new(),
            stats: Stats::default(),
            log_limit: RateLimit::new(),
            warn_limit: RateLimit::new(),
        }
    }

    /// The VMM options.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The events sink.
    pub fn events(&self) -> &E {
        &self.events
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// PCI reset (guest reboot): configuration space, flags, product and
    /// build and the pending log go back to reset values. Unplugged devices
    /// stay unplugged, and the history and counters are kept.
    pub fn reset(&mut self) {
        self.pci = ConfigSpace::new();
        self.set_flags(0);
        self.product = None;
        self.build = None;
        self.log.clear();
    }

    // ---- PCI configuration space -------------------------------------

    /// Reads `size` (1, 2 or 4) bytes of configuration space at `offset`
    /// (naturally aligned, below 256), little-endian in the low bits.
    /// Anything else returns 0xFFFF_FFFF and counts as a bad access.
    pub fn read_config(&mut self, offset: u16, size: u8) -> u32 {
        if !pci::valid_access(offset, size) {
            self.bad_access("config read", u64::from(offset), usize::from(size));
            return u32::MAX;
        }
        self.pci.read(offset, size)
    }

    /// Writes `size` (1, 2 or 4) bytes of configuration space at `offset`.
    /// Only writable bits change; invalid accesses are ignored and counted.
    pub fn write_config(&mut self, offset: u16, size: u8, value: u32) {
        if !pci::valid_access(offset, size) {
            self.bad_access("config write", u64::from(offset), usize::from(size));
            return;
        }
        self.pci.write(offset, size, value);
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.pci.read16(REG_COMMAND)
    }

    /// The interrupt line register (written by firmware or the OS).
    pub fn interrupt_line(&self) -> u8 {
        self.pci.read(REG_INTERRUPT_LINE, 1) as u8
    }

    /// The I/O port where BAR0 decodes: `None` while I/O decoding is off,
    /// the BAR is 0, or the 256 ports would not fit below 0x10000.
    pub fn bar0_port(&self) -> Option<u16> {
        if self.command() & COMMAND_IO == 0 {
            return None;
        }
        let addr = self.pci.read32(REG_BAR0) & !(BAR0_SIZE - 1);
        let port = u16::try_from(addr).ok().filter(|p| *p != 0)?;
        port.checked_add((BAR0_SIZE - 1) as u16).map(|_| port)
    }

    /// The guest-physical address where BAR1 decodes: `None` while memory
    /// decoding is off or the BAR is 0.
    pub fn bar1_address(&self) -> Option<u64> {
        if self.command() & COMMAND_MEMORY == 0 {
            return None;
        }
        let addr = self.pci.read32(REG_BAR1) & !(BAR1_SIZE - 1);
        (addr != 0).then_some(u64::from(addr))
    }

    // ---- Legacy ports -------------------------------------------------

    /// A read of the fixed ports; `offset` is relative to port 0x10.
    pub fn legacy_read(&mut self, offset: u16, data: &mut [u8]) {
        let value = match (offset, data.len()) {
            (0, 2) => Some(u32::from(self.magic())),
            (0, 1) => Some(u32::from(self.flags)),
            (2, 1) => Some(u32::from(PROTOCOL_VERSION)),
            _ => None,
        };
        match value {
            Some(v) => data.copy_from_slice(&v.to_le_bytes()[..data.len()]),
            None => {
                data.fill(0xFF);
                self.bad_access("legacy port read", u64::from(offset), data.len());
            }
        }
    }

    /// A write to the fixed ports; `offset` is relative to port 0x10.
    pub fn legacy_write(&mut self, offset: u16, data: &[u8]) {
        match (offset, data) {
            (0, &[flags]) => self.set_flags(flags),
            (0, &[a, b]) => self.unplug(
                UnplugMask(u16::from_le_bytes([a, b])),
                UnplugSource::LegacyPort,
            ),
            (0, &[a, b, c, d]) => self.set_build(u32::from_le_bytes([a, b, c, d])),
            (2, &[byte]) => self.log_byte(byte),
            (2, &[a, b]) => self.set_product(u16::from_le_bytes([a, b])),
            _ => self.bad_access("legacy port write", u64::from(offset), data.len()),
        }
    }

    // ---- BAR0 ---------------------------------------------------------

    fn bar0_valid(&mut self, what: &str, offset: u16, len: usize, registers: &[u16]) -> bool {
        let fits = matches!(len, 1 | 2 | 4) && usize::from(offset) + len <= BAR0_SIZE as usize;
        if fits && registers.contains(&offset) {
            return true;
        }
        self.bad_access(what, u64::from(offset), len);
        fits
    }

    /// A read of BAR0 at `offset`; wider reads are assembled from bytes.
    pub fn bar0_read(&mut self, offset: u16, data: &mut [u8]) {
        data.fill(0xFF);
        if self.bar0_valid("BAR0 read", offset, data.len(), &[BAR0_REG_FLAGS]) && offset == 0 {
            data[0] = self.flags;
        }
    }

    /// A write to BAR0 at `offset`; wider writes are split into bytes,
    /// lowest address first.
    pub fn bar0_write(&mut self, offset: u16, data: &[u8]) {
        let registers = [
            BAR0_REG_FLAGS,
            BAR0_REG_LEGACY_UNPLUG,
            BAR0_REG_UNPLUG_OR_LOG,
        ];
        if !self.bar0_valid("BAR0 write", offset, data.len(), &registers) {
            return;
        }
        for (reg, byte) in (offset..).zip(data.iter().copied()) {
            match (reg, byte) {
                (BAR0_REG_FLAGS, _) => self.set_flags(byte),
                (BAR0_REG_LEGACY_UNPLUG, 1) => self.unplug(
                    UnplugMask::ALL_IDE_DISKS.union(UnplugMask::ALL_NICS),
                    UnplugSource::Bar0Legacy,
                ),
                (BAR0_REG_UNPLUG_OR_LOG, 1) => {
                    self.unplug(UnplugMask::ALL_IDE_DISKS, UnplugSource::Bar0)
                }
                (BAR0_REG_UNPLUG_OR_LOG, 2) => {
                    self.unplug(UnplugMask::ALL_NICS, UnplugSource::Bar0)
                }
                (BAR0_REG_UNPLUG_OR_LOG, _) => self.log_byte(byte),
                _ => {}
            }
        }
    }

    // ---- BAR1 ---------------------------------------------------------

    fn bar1_valid(&mut self, what: &str, offset: u64, len: usize) -> bool {
        let fits = matches!(len, 1 | 2 | 4 | 8)
            && offset
                .checked_add(len as u64)
                .is_some_and(|end| end <= u64::from(BAR1_SIZE));
        if !fits {
            self.bad_access(what, offset, len);
        }
        fits
    }

    /// A read of BAR1 at `offset`: zero (all-ones for a bad access).
    pub fn bar1_read(&mut self, offset: u64, data: &mut [u8]) {
        let fill = if self.bar1_valid("BAR1 read", offset, data.len()) {
            0
        } else {
            0xFF
        };
        data.fill(fill);
    }

    /// A write to BAR1 at `offset`: ignored.
    pub fn bar1_write(&mut self, offset: u64, data: &[u8]) {
        self.bar1_valid("BAR1 write", offset, data.len());
    }

    // ---- Platform state -----------------------------------------------

    /// The platform flags (only [`PFFLAG_ROM_LOCK`] is kept).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the guest locked the BIOS ROM area.
    pub fn rom_locked(&self) -> bool {
        self.flags & PFFLAG_ROM_LOCK != 0
    }

    /// The product number the drivers wrote, if any.
    pub fn product(&self) -> Option<u16> {
        self.product
    }

    /// The build number the drivers wrote, if any.
    pub fn build(&self) -> Option<u32> {
        self.build
    }

    /// Whether the drivers' product and build match
    /// [`Config::blacklist`].
    pub fn blacklisted(&self) -> bool {
        match (self.config.blacklist, self.product, self.build) {
            (Some(black), Some(product), Some(build)) => black == (product, build),
            _ => false,
        }
    }

    /// The word read at port 0x10.
    pub fn magic(&self) -> u16 {
        if self.blacklisted() {
            MAGIC_BLACKLISTED
        } else {
            MAGIC
        }
    }

    /// Log bytes written since the last complete line.
    pub fn pending_log(&self) -> &[u8] {
        &self.log
    }

    /// The union of every honoured unplug mask.
    pub fn unplug_mask(&self) -> UnplugMask {
        self.unplug_mask
    }

    /// The newest [`UNPLUG_HISTORY_LEN`] unplug requests, oldest first.
    pub fn unplug_history(&self) -> impl ExactSizeIterator<Item = &UnplugRecord> + '_ {
        self.history.iter()
    }

    // ---- Device registry ----------------------------------------------

    /// Registers one of the VMM's emulated devices. Registration is not
    /// retroactive: a request made earlier does not remove it.
    pub fn register_device(&mut self, id: DeviceId, kind: DeviceKind) -> Result<()> {
        if self.device(id).is_some() {
            return Err(Error::DuplicateDevice(id));
        }
        self.devices.push(RegisteredDevice {
            id,
            kind,
            unplugged: false,
        });
        Ok(())
    }

    /// Forgets a device (the VMM removed it for its own reasons).
    pub fn unregister_device(&mut self, id: DeviceId) -> Option<RegisteredDevice> {
        let at = self.devices.iter().position(|d| d.id == id)?;
        Some(self.devices.remove(at))
    }

    /// A registered device.
    pub fn device(&self, id: DeviceId) -> Option<&RegisteredDevice> {
        self.devices.iter().find(|d| d.id == id)
    }

    /// All registered devices, in registration order.
    pub fn devices(&self) -> &[RegisteredDevice] {
        &self.devices
    }

    // ---- Internals ----------------------------------------------------

    pub(crate) fn bad_access(&mut self, what: &str, offset: u64, len: usize) {
        self.stats.bad_accesses += 1;
        xen_abi::warn_limited!(
            limit = self.warn_limit;
            "xen-platform: ignored {what} of {len} bytes at offset {offset:#x}"
        );
    }

    fn set_flags(&mut self, value: u8) {
        let flags = value & PFFLAG_ROM_LOCK;
        if flags != self.flags {
            self.flags = flags;
            self.events.rom_lock(flags & PFFLAG_ROM_LOCK != 0);
        }
    }

    fn set_product(&mut self, product: u16) {
        self.product = Some(product);
    }

    fn set_build(&mut self, build: u32) {
        self.build = Some(build);
        if self.log_limit.allow().is_some() {
            info!(
                "xen-platform: PV drivers product {:?} build {build}{}",
                self.product,
                if self.blacklisted() {
                    " (blacklisted)"
                } else {
                    ""
                }
            );
        }
    }

    fn unplug(&mut self, mask: UnplugMask, source: UnplugSource) {
        let refused = self.blacklisted();
        if self.history.len() == UNPLUG_HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(UnplugRecord {
            mask,
            source,
            refused,
        });
        self.stats.unplug_requests += 1;
        if refused {
            self.stats.refused_unplugs += 1;
            xen_abi::warn_limited!(
                limit = self.warn_limit;
                "xen-platform: blacklisted drivers asked to unplug {mask}; refused"
            );
            return;
        }
        self.unplug_mask = self.unplug_mask.union(mask);
        for dev in self.devices.iter_mut() {
            if !dev.unplugged && dev.kind.unplugged_by(mask, self.config.unplug_ahci) {
                dev.unplugged = true;
                self.stats.devices_unplugged += 1;
                self.events.unplug(&UnplugRequest {
                    device: dev.id,
                    kind: dev.kind,
                    mask,
                });
            }
        }
    }

    fn log_byte(&mut self, byte: u8) {
        if byte == b'\n' {
            self.flush_log();
            return;
        }
        self.log.push(byte);
        if self.log.len() >= LOG_BUFFER_SIZE {
            self.flush_log();
        }
    }

    fn flush_log(&mut self) {
        let mut bytes = std::mem::take(&mut self.log);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let line = String::from_utf8_lossy(&bytes);
        self.stats.log_lines += 1;
        if let Some(dropped) = self.log_limit.allow() {
            if dropped > 0 {
                info!("xen-platform: {dropped} guest log lines suppressed");
            }
            info!("xen-platform guest: {}", line.escape_debug());
        }
        self.events.log_line(&line);
        drop(line);
        bytes.clear();
        self.log = bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::*;
    use crate::testing::*;

    fn dev() -> (PlatformDevice<Recorder>, Recorder) {
        let rec = Recorder::default();
        (PlatformDevice::new(Config::default(), rec.clone()), rec)
    }

    fn read(dev: &mut PlatformDevice<Recorder>, offset: u16, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        dev.legacy_read(offset, &mut data);
        data
    }

    // ---- configuration space ----

    #[test]
    fn test_read_config_identity_fields_match_spec() {
        let (mut d, _) = dev();
        assert_eq!(d.read_config(REG_VENDOR_ID, 2), 0x5853);
        assert_eq!(d.read_config(REG_DEVICE_ID, 2), 0x0001);
        assert_eq!(d.read_config(0, 4), 0x0001_5853);
        assert_eq!(d.read_config(REG_COMMAND, 2), 0x0003);
        assert_eq!(d.read_config(REG_STATUS, 2), 0);
        assert_eq!(d.read_config(REG_REVISION, 1), 1);
        assert_eq!(d.read_config(REG_PROG_IF, 1), 0);
        assert_eq!(d.read_config(REG_CLASS_SUB, 1), 0x80);
        assert_eq!(d.read_config(REG_CLASS_BASE, 1), 0xFF);
        assert_eq!(d.read_config(0x08, 4), 0xFF80_0001);
        assert_eq!(d.read_config(REG_HEADER_TYPE, 1), 0);
        assert_eq!(d.read_config(REG_SUBSYSTEM_VENDOR_ID, 2), 0x5853);
        assert_eq!(d.read_config(REG_SUBSYSTEM_ID, 2), 0x0001);
        assert_eq!(d.read_config(REG_INTERRUPT_PIN, 1), 1);
        assert_eq!(d.read_config(REG_INTERRUPT_LINE, 1), 0);
        assert_eq!(d.read_config(REG_BAR0, 4), 0x1);
        assert_eq!(d.read_config(REG_BAR1, 4), 0x8);
        assert_eq!(d.read_config(REG_ROM, 4), 0);
        assert_eq!(d.stats().bad_accesses, 0);
    }

    #[test]
    fn test_write_config_read_only_fields_ignored() {
        let (mut d, _) = dev();
        let before: Vec<u32> = (0..64).map(|i| d.read_config(i * 4, 4)).collect();
        for reg in [
            0x00, 0x08, 0x18, 0x1C, 0x20, 0x24, 0x28, 0x2C, 0x30, 0x34, 0x38,
        ] {
            d.write_config(reg, 4, 0xFFFF_FFFF);
        }
        d.write_config(REG_STATUS, 2, 0xFFFF);
        d.write_config(REG_HEADER_TYPE, 1, 0xFF);
        d.write_config(REG_INTERRUPT_PIN, 1, 0xFF);
        for i in 0x10..0x40 {
            d.write_config(i * 4, 4, 0xFFFF_FFFF);
        }
        let after: Vec<u32> = (0..64).map(|i| d.read_config(i * 4, 4)).collect();
        assert_eq!(before, after);
        assert_eq!(d.stats().bad_accesses, 0);
    }

    #[test]
    fn test_write_config_bar0_all_ones_reads_size_mask() {
        let (mut d, _) = dev();
        d.write_config(REG_BAR0, 4, 0xFFFF_FFFF);
        assert_eq!(d.read_config(REG_BAR0, 4), 0xFFFF_FF01);
        assert_eq!(!(d.read_config(REG_BAR0, 4) & !0x3) + 1, BAR0_SIZE);
    }

    #[test]
    fn test_write_config_bar1_all_ones_reads_size_mask() {
        let (mut d, _) = dev();
        d.write_config(REG_BAR1, 4, 0xFFFF_FFFF);
        assert_eq!(d.read_config(REG_BAR1, 4), 0xFF00_0008);
        assert_eq!(!(d.read_config(REG_BAR1, 4) & !0xF) + 1, BAR1_SIZE);
    }

    #[test]
    fn test_write_config_bar_address_reads_back_with_type_bits() {
        let (mut d, _) = dev();
        d.write_config(REG_BAR0, 4, 0xC0FF);
        d.write_config(REG_BAR1, 4, 0xF100_0000 | 0xFFF);
        assert_eq!(d.read_config(REG_BAR0, 4), 0xC001);
        assert_eq!(d.read_config(REG_BAR1, 4), 0xF100_0008);
        assert_eq!(d.bar0_port(), Some(0xC000));
        assert_eq!(d.bar1_address(), Some(0xF100_0000));
    }

    #[test]
    fn test_write_config_bar_byte_writes_merge() {
        let (mut d, _) = dev();
        d.write_config(REG_BAR0 + 1, 1, 0xC1);
        d.write_config(REG_BAR1 + 3, 1, 0xF2);
        d.write_config(REG_BAR1 + 2, 2, 0xF3AB);
        assert_eq!(d.read_config(REG_BAR0, 4), 0xC101);
        assert_eq!(d.read_config(REG_BAR1, 4), 0xF300_0008);
    }

    #[test]
    fn test_bar_addresses_unprogrammed_or_disabled_none() {
        let (mut d, _) = dev();
        assert_eq!(d.bar0_port(), None);
        assert_eq!(d.bar1_address(), None);
        d.write_config(REG_BAR0, 4, 0xC000);
        d.write_config(REG_BAR1, 4, 0xF000_0000);
        d.write_config(REG_COMMAND, 2, 0);
        assert_eq!(d.bar0_port(), None);
        assert_eq!(d.bar1_address(), None);
        d.write_config(REG_COMMAND, 2, u32::from(COMMAND_IO));
        assert_eq!(d.bar0_port(), Some(0xC000));
        assert_eq!(d.bar1_address(), None);
    }

    #[test]
    fn test_bar0_port_outside_port_space_none() {
        let (mut d, _) = dev();
        d.write_config(REG_BAR0, 4, 0xFFFF_FFFF);
        assert_eq!(d.bar0_port(), None);
        d.write_config(REG_BAR0, 4, 0x1_0000);
        assert_eq!(d.bar0_port(), None);
        d.write_config(REG_BAR0, 4, 0xFF00);
        assert_eq!(d.bar0_port(), Some(0xFF00));
    }

    #[test]
    fn test_write_config_command_keeps_only_writable_bits() {
        let (mut d, _) = dev();
        d.write_config(REG_COMMAND, 2, 0xFFFF);
        assert_eq!(d.command(), COMMAND_WRITABLE);
        assert_eq!(d.read_config(REG_COMMAND, 2), 0x0507);
        d.write_config(REG_COMMAND, 4, 0xFFFF_0000);
        assert_eq!(d.command(), 0);
        assert_eq!(d.read_config(REG_STATUS, 2), 0);
    }

    #[test]
    fn test_write_config_interrupt_line_writable() {
        let (mut d, _) = dev();
        d.write_config(REG_INTERRUPT_LINE, 1, 11);
        assert_eq!(d.interrupt_line(), 11);
        assert_eq!(d.read_config(REG_INTERRUPT_LINE, 4), 0x0000_010B);
        d.write_config(REG_INTERRUPT_LINE, 4, 0xFFFF_FF05);
        assert_eq!(d.read_config(REG_INTERRUPT_LINE, 4), 0x0000_0105);
    }

    #[test]
    fn test_write_config_cache_line_size_writable() {
        let (mut d, _) = dev();
        d.write_config(REG_CACHE_LINE_SIZE, 4, 0xFFFF_FF10);
        assert_eq!(d.read_config(REG_CACHE_LINE_SIZE, 4), 0x10);
    }

    #[test]
    fn test_config_bad_offsets_and_sizes_counted() {
        let (mut d, _) = dev();
        assert_eq!(d.read_config(0x100, 1), u32::MAX);
        assert_eq!(d.read_config(0x02, 4), u32::MAX);
        assert_eq!(d.read_config(0x01, 2), u32::MAX);
        assert_eq!(d.read_config(0, 3), u32::MAX);
        assert_eq!(d.read_config(0, 8), u32::MAX);
        d.write_config(0x3D, 2, 0);
        d.write_config(0xFFFF, 4, 0);
        d.write_config(REG_INTERRUPT_LINE, 0, 5);
        assert_eq!(d.interrupt_line(), 0);
        assert_eq!(d.stats().bad_accesses, 8);
    }

    #[test]
    fn test_reset_restores_config_and_flags_keeps_unplug() {
        let (mut d, rec) = populated(Config::default());
        d.write_config(REG_BAR0, 4, 0xC000);
        d.legacy_write(0, &[1]);
        d.legacy_write(2, &[3, 0]);
        d.legacy_write(2, b"x");
        d.legacy_write(0, &[2, 0]);
        d.reset();
        assert_eq!(d.read_config(REG_BAR0, 4), 1);
        assert_eq!(d.flags(), 0);
        assert_eq!(d.product(), None);
        assert!(d.pending_log().is_empty());
        assert_eq!(rec.rom_lock(), vec![true, false]);
        assert!(d.device(DeviceId(NIC)).unwrap().unplugged);
        assert_eq!(d.unplug_mask(), UnplugMask::ALL_NICS);
    }

    // ---- legacy ports ----

    #[test]
    fn test_legacy_read_magic_word() {
        let (mut d, _) = dev();
        assert_eq!(read(&mut d, 0, 2), vec![0xD2, 0x49]);
    }

    #[test]
    fn test_legacy_read_protocol_version_byte() {
        let (mut d, _) = dev();
        assert_eq!(read(&mut d, 2, 1), vec![1]);
    }

    #[test]
    fn test_legacy_flags_byte_round_trip_keeps_rom_lock_only() {
        let (mut d, rec) = dev();
        assert_eq!(read(&mut d, 0, 1), vec![0]);
        d.legacy_write(0, &[0xFF]);
        assert_eq!(read(&mut d, 0, 1), vec![PFFLAG_ROM_LOCK]);
        assert!(d.rom_locked());
        d.legacy_write(0, &[0x01]);
        d.legacy_write(0, &[0x00]);
        assert!(!d.rom_locked());
        assert_eq!(rec.rom_lock(), vec![true, false]);
    }

    #[test]
    fn test_legacy_write_product_word_recorded() {
        let (mut d, _) = dev();
        d.legacy_write(2, &PRODUCT_LINUX.to_le_bytes());
        assert_eq!(d.product(), Some(3));
    }

    #[test]
    fn test_legacy_write_build_dword_recorded() {
        let (mut d, _) = dev();
        d.legacy_write(0, &0x0102_0304u32.to_le_bytes());
        assert_eq!(d.build(), Some(0x0102_0304));
        assert_eq!(d.stats().bad_accesses, 0);
    }

    #[test]
    fn test_legacy_write_unplug_word_records_history() {
        let (mut d, _) = dev();
        d.legacy_write(0, &[0x03, 0x00]);
        d.legacy_write(0, &[0x10, 0x00]);
        let h: Vec<_> = d.unplug_history().copied().collect();
        assert_eq!(
            h,
            vec![
                UnplugRecord {
                    mask: UnplugMask(3),
                    source: UnplugSource::LegacyPort,
                    refused: false
                },
                UnplugRecord {
                    mask: UnplugMask(0x10),
                    source: UnplugSource::LegacyPort,
                    refused: false
                },
            ]
        );
        assert_eq!(d.unplug_mask(), UnplugMask(0x13));
        assert_eq!(d.stats().unplug_requests, 2);
    }

    #[test]
    fn test_unplug_history_full_keeps_newest() {
        let (mut d, _) = dev();
        for i in 0..(UNPLUG_HISTORY_LEN as u16 + 5) {
            d.legacy_write(0, &i.to_le_bytes());
        }
        assert_eq!(d.unplug_history().len(), UNPLUG_HISTORY_LEN);
        assert_eq!(d.unplug_history().next().unwrap().mask, UnplugMask(5));
    }

    #[test]
    fn test_legacy_other_offsets_and_sizes_counted() {
        let (mut d, _) = dev();
        let mut n = 0;
        for offset in 0..LEGACY_PORT_COUNT + 2 {
            for len in [0usize, 1, 2, 3, 4, 8] {
                let valid_read = matches!((offset, len), (0, 1) | (0, 2) | (2, 1));
                let got = read(&mut d, offset, len);
                if !valid_read {
                    n += 1;
                    assert_eq!(got, vec![0xFF; len], "offset {offset} len {len}");
                }
                let valid_write = matches!((offset, len), (0, 1 | 2 | 4) | (2, 1 | 2));
                if !valid_write {
                    n += 1;
                    d.legacy_write(offset, &vec![1; len]);
                }
            }
        }
        assert_eq!(d.stats().bad_accesses, n);
        assert_eq!(d.product(), None);
        assert_eq!(d.flags(), 0);
        assert!(d.pending_log().is_empty());
    }

    #[test]
    fn test_blacklist_matching_drivers_magic_flips_and_unplug_refused() {
        let config = Config {
            blacklist: Some((PRODUCT_LINUX, 1)),
            ..Config::default()
        };
        let (mut d, rec) = populated(config);
        assert_eq!(read(&mut d, 0, 2), vec![0xD2, 0x49]);
        d.legacy_write(2, &PRODUCT_LINUX.to_le_bytes());
        d.legacy_write(0, &1u32.to_le_bytes());
        assert!(d.blacklisted());
        assert_eq!(read(&mut d, 0, 2), vec![0x49, 0xD2]);
        d.legacy_write(0, &[0x0F, 0x00]);
        assert!(rec.unplugged_ids().is_empty());
        assert_eq!(d.stats().refused_unplugs, 1);
        assert!(d.unplug_history().next().unwrap().refused);
        assert_eq!(d.unplug_mask(), UnplugMask(0));
    }

    #[test]
    fn test_blacklist_other_build_not_blacklisted() {
        let config = Config {
            blacklist: Some((PRODUCT_LINUX, 1)),
            ..Config::default()
        };
        let mut d = PlatformDevice::new(config, NoEvents);
        d.legacy_write(2, &PRODUCT_LINUX.to_le_bytes());
        d.legacy_write(0, &2u32.to_le_bytes());
        assert!(!d.blacklisted());
        assert_eq!(d.magic(), MAGIC);
    }

    // ---- log ----

    #[test]
    fn test_log_bytes_buffered_until_newline() {
        let (mut d, rec) = dev();
        for b in b"hello" {
            d.legacy_write(2, &[*b]);
        }
        assert!(rec.lines().is_empty());
        assert_eq!(d.pending_log(), b"hello");
        d.legacy_write(2, b"\n");
        assert_eq!(rec.lines(), vec!["hello".to_string()]);
        assert!(d.pending_log().is_empty());
        assert_eq!(d.stats().log_lines, 1);
    }

    #[test]
    fn test_log_carriage_return_and_invalid_utf8_cleaned() {
        let (mut d, rec) = dev();
        for b in [b'a', 0xFF, b'\r', b'\n'] {
            d.legacy_write(2, &[b]);
        }
        assert_eq!(rec.lines(), vec!["a\u{FFFD}".to_string()]);
    }

    #[test]
    fn test_log_buffer_full_flushed_at_cap() {
        let (mut d, rec) = dev();
        for _ in 0..LOG_BUFFER_SIZE - 1 {
            d.legacy_write(2, b"x");
        }
        assert!(rec.lines().is_empty());
        d.legacy_write(2, b"y");
        let lines = rec.lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), LOG_BUFFER_SIZE);
        assert!(lines[0].ends_with("xy"));
        assert!(d.pending_log().is_empty());
    }

    // ---- BAR0 ----

    #[test]
    fn test_bar0_offset0_flags_read_write() {
        let (mut d, _) = dev();
        d.bar0_write(0, &[1]);
        let mut b = [0u8; 1];
        d.bar0_read(0, &mut b);
        assert_eq!(b, [1]);
        assert_eq!(read(&mut d, 0, 1), vec![1]);
        let mut w = [0u8; 4];
        d.bar0_read(0, &mut w);
        assert_eq!(w, [1, 0xFF, 0xFF, 0xFF]);
    }

    #[test]
    fn test_bar0_offset4_write1_unplugs_disks_and_nics() {
        let (mut d, rec) = populated(Config::default());
        d.bar0_write(4, &1u32.to_le_bytes());
        assert_eq!(
            rec.unplugged_ids(),
            vec![IDE_PM, IDE_PS, IDE_SM, SCSI, NIC, NIC2]
        );
        assert_eq!(
            d.unplug_history().next().unwrap().source,
            UnplugSource::Bar0Legacy
        );
    }

    #[test]
    fn test_bar0_offset4_other_value_ignored() {
        let (mut d, rec) = populated(Config::default());
        d.bar0_write(4, &[2]);
        assert!(rec.unplugged_ids().is_empty());
        assert_eq!(d.stats().unplug_requests, 0);
    }

    #[test]
    fn test_bar0_offset8_disks_nics_or_log() {
        let (mut d, rec) = populated(Config::default());
        d.bar0_write(8, &[1]);
        assert_eq!(rec.unplugged_ids(), vec![IDE_PM, IDE_PS, IDE_SM, SCSI]);
        d.bar0_write(8, &[2]);
        assert_eq!(
            rec.unplugged_ids(),
            vec![IDE_PM, IDE_PS, IDE_SM, SCSI, NIC, NIC2]
        );
        for b in b"ok\n" {
            d.bar0_write(8, &[*b]);
        }
        assert_eq!(rec.lines(), vec!["ok".to_string()]);
    }

    #[test]
    fn test_bar0_bad_offsets_and_sizes_counted() {
        let (mut d, _) = dev();
        let mut b = [0u8; 1];
        d.bar0_read(4, &mut b);
        assert_eq!(b, [0xFF]);
        d.bar0_write(1, &[1]);
        d.bar0_write(0xFF, &[1, 2]);
        d.bar0_write(0, &[1, 2, 3]);
        d.bar0_write(0x100, &[1]);
        let mut big = [0u8; 8];
        d.bar0_read(0, &mut big);
        assert_eq!(big, [0xFF; 8]);
        assert_eq!(d.stats().bad_accesses, 6);
        assert_eq!(d.flags(), 0);
    }

    // ---- BAR1 ----

    #[test]
    fn test_bar1_reads_zero_ignores_writes() {
        let (mut d, _) = dev();
        d.bar1_write(0x1000, &[0xAA; 8]);
        let mut b = [0xAAu8; 8];
        d.bar1_read(0x1000, &mut b);
        assert_eq!(b, [0; 8]);
        let mut b = [0xAAu8; 4];
        d.bar1_read(u64::from(BAR1_SIZE) - 4, &mut b);
        assert_eq!(b, [0; 4]);
        assert_eq!(d.stats().bad_accesses, 0);
    }

    #[test]
    fn test_bar1_outside_or_bad_size_counted() {
        let (mut d, _) = dev();
        let mut b = [0u8; 4];
        d.bar1_read(u64::from(BAR1_SIZE) - 2, &mut b);
        assert_eq!(b, [0xFF; 4]);
        d.bar1_write(u64::MAX, &[0; 2]);
        let mut b3 = [0u8; 3];
        d.bar1_read(0, &mut b3);
        d.bar1_write(0, &[]);
        assert_eq!(d.stats().bad_accesses, 4);
    }

    // ---- unplug ----

    fn unplug_with(config: Config, mask: u16) -> Vec<u64> {
        let (mut d, rec) = populated(config);
        d.legacy_write(0, &mask.to_le_bytes());
        rec.unplugged_ids()
    }

    #[test]
    fn test_unplug_bit0_removes_ide_and_scsi_not_ahci_by_default() {
        assert_eq!(
            unplug_with(Config::default(), 1),
            vec![IDE_PM, IDE_PS, IDE_SM, SCSI]
        );
    }

    #[test]
    fn test_unplug_bit0_with_ahci_option_removes_ahci() {
        let config = Config {
            unplug_ahci: true,
            ..Config::default()
        };
        assert_eq!(
            unplug_with(config, 1),
            vec![IDE_PM, IDE_PS, IDE_SM, AHCI, SCSI]
        );
    }

    #[test]
    fn test_unplug_bit1_removes_nics() {
        assert_eq!(unplug_with(Config::default(), 2), vec![NIC, NIC2]);
    }

    #[test]
    fn test_unplug_bit2_keeps_primary_master() {
        assert_eq!(unplug_with(Config::default(), 4), vec![IDE_PS, IDE_SM]);
        let config = Config {
            unplug_ahci: true,
            ..Config::default()
        };
        assert_eq!(unplug_with(config, 4), vec![IDE_PS, IDE_SM]);
    }

    #[test]
    fn test_unplug_bit2_with_bit0_removes_primary_master() {
        assert_eq!(
            unplug_with(Config::default(), 5),
            vec![IDE_PM, IDE_PS, IDE_SM, SCSI]
        );
    }

    #[test]
    fn test_unplug_bit3_removes_nvme_only() {
        assert_eq!(unplug_with(Config::default(), 8), vec![NVME]);
    }

    #[test]
    fn test_unplug_all_bits_spare_cdrom_passthrough_other() {
        for ahci in [false, true] {
            let config = Config {
                unplug_ahci: ahci,
                ..Config::default()
            };
            let removed = unplug_with(config, 0xFFFF);
            assert!(!removed.contains(&CDROM));
            assert!(!removed.contains(&VFIO));
            assert!(!removed.contains(&OTHER));
            assert_eq!(removed.contains(&AHCI), ahci);
        }
    }

    #[test]
    fn test_unplug_repeated_writes_remove_each_device_once() {
        let (mut d, rec) = populated(Config::default());
        d.legacy_write(0, &[4, 0]);
        d.legacy_write(0, &[7, 0]);
        d.legacy_write(0, &[7, 0]);
        d.bar0_write(4, &[1]);
        d.bar0_write(8, &[1]);
        assert_eq!(
            rec.unplugged_ids(),
            vec![IDE_PS, IDE_SM, IDE_PM, SCSI, NIC, NIC2]
        );
        assert_eq!(d.stats().devices_unplugged, 6);
        assert!(d.device(DeviceId(IDE_PM)).unwrap().unplugged);
        assert!(!d.device(DeviceId(CDROM)).unwrap().unplugged);
    }

    #[test]
    fn test_unplug_request_carries_kind_and_mask() {
        let (mut d, rec) = populated(Config::default());
        d.legacy_write(0, &[8, 0]);
        let r = rec.0.lock().unwrap().unplugged[0];
        assert_eq!(
            r,
            UnplugRequest {
                device: DeviceId(NVME),
                kind: DeviceKind::NvmeDisk,
                mask: UnplugMask::NVME_DISKS
            }
        );
        drop(d);
    }

    #[test]
    fn test_register_device_duplicate_rejected() {
        let (mut d, _) = populated(Config::default());
        assert_eq!(
            d.register_device(DeviceId(NIC), DeviceKind::Nic),
            Err(Error::DuplicateDevice(DeviceId(NIC)))
        );
    }

    #[test]
    fn test_unregister_device_not_unplugged_later() {
        let (mut d, rec) = populated(Config::default());
        let gone = d.unregister_device(DeviceId(NIC)).unwrap();
        assert_eq!(gone.kind, DeviceKind::Nic);
        assert_eq!(d.unregister_device(DeviceId(NIC)), None);
        d.legacy_write(0, &[2, 0]);
        assert_eq!(rec.unplugged_ids(), vec![NIC2]);
    }

    #[test]
    fn test_register_after_unplug_not_retroactive() {
        let (mut d, rec) = dev();
        d.legacy_write(0, &[2, 0]);
        d.register_device(DeviceId(1), DeviceKind::Nic).unwrap();
        assert!(rec.unplugged_ids().is_empty());
        d.legacy_write(0, &[2, 0]);
        assert_eq!(rec.unplugged_ids(), vec![1]);
    }

    #[test]
    fn test_linux_handshake_sequence_unplugs() {
        let (mut d, rec) = populated(Config::default());
        assert_eq!(read(&mut d, 0, 2), MAGIC.to_le_bytes().to_vec());
        assert_eq!(read(&mut d, 2, 1), vec![PROTOCOL_VERSION]);
        d.legacy_write(2, &PRODUCT_LINUX.to_le_bytes());
        d.legacy_write(0, &1u32.to_le_bytes());
        assert_eq!(read(&mut d, 0, 2), MAGIC.to_le_bytes().to_vec());
        d.legacy_write(0, &3u16.to_le_bytes());
        assert_eq!(
            rec.unplugged_ids(),
            vec![IDE_PM, IDE_PS, IDE_SM, SCSI, NIC, NIC2]
        );
        assert_eq!(d.stats().bad_accesses, 0);
    }

    #[test]
    fn test_arc_events_forwarded() {
        let rec = Recorder::default();
        let mut d = PlatformDevice::new(Config::default(), Arc::new(rec.clone()));
        d.legacy_write(0, &[1]);
        assert_eq!(rec.rom_lock(), vec![true]);
        let _ = format!("{d:?}");
        let _ = PlatformDevice::default();
    }
}
