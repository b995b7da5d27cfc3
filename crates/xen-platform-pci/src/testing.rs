// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Test helpers: an events recorder and a device with one of everything.

use std::sync::{Arc, Mutex};

use crate::{Config, DeviceId, DeviceKind, PlatformDevice, PlatformEvents, UnplugRequest};

/// Everything the device reported.
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    pub(crate) unplugged: Vec<UnplugRequest>,
    pub(crate) lines: Vec<String>,
    pub(crate) rom_lock: Vec<bool>,
}

/// Records events; clones share the record.
#[derive(Clone, Debug, Default)]
pub(crate) struct Recorder(pub(crate) Arc<Mutex<Recorded>>);

impl Recorder {
    pub(crate) fn unplugged_ids(&self) -> Vec<u64> {
        let r = self.0.lock().unwrap();
        r.unplugged.iter().map(|u| u.device.0).collect()
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().lines.clone()
    }

    pub(crate) fn rom_lock(&self) -> Vec<bool> {
        self.0.lock().unwrap().rom_lock.clone()
    }
}

impl PlatformEvents for Recorder {
    fn unplug(&self, request: &UnplugRequest) {
        self.0.lock().unwrap().unplugged.push(*request);
    }

    fn log_line(&self, line: &str) {
        self.0.lock().unwrap().lines.push(line.to_owned());
    }

    fn rom_lock(&self, locked: bool) {
        self.0.lock().unwrap().rom_lock.push(locked);
    }
}

/// Ids of the devices registered by [`populated`].
pub(crate) const IDE_PM: u64 = 1;
pub(crate) const IDE_PS: u64 = 2;
pub(crate) const IDE_SM: u64 = 3;
pub(crate) const AHCI: u64 = 4;
pub(crate) const SCSI: u64 = 5;
pub(crate) const NVME: u64 = 6;
pub(crate) const NIC: u64 = 7;
pub(crate) const CDROM: u64 = 8;
pub(crate) const VFIO: u64 = 9;
pub(crate) const OTHER: u64 = 10;
pub(crate) const NIC2: u64 = 11;

/// A device with one registered device of every kind.
pub(crate) fn populated(config: Config) -> (PlatformDevice<Recorder>, Recorder) {
    let rec = Recorder::default();
    let mut dev = PlatformDevice::new(config, rec.clone());
    for (id, kind) in [
        (
            IDE_PM,
            DeviceKind::IdeDisk {
                primary_master: true,
            },
        ),
        (
            IDE_PS,
            DeviceKind::IdeDisk {
                primary_master: false,
            },
        ),
        (
            IDE_SM,
            DeviceKind::IdeDisk {
                primary_master: false,
            },
        ),
        (AHCI, DeviceKind::AhciDisk),
        (SCSI, DeviceKind::ScsiDisk),
        (NVME, DeviceKind::NvmeDisk),
        (NIC, DeviceKind::Nic),
        (CDROM, DeviceKind::Cdrom),
        (VFIO, DeviceKind::Passthrough),
        (OTHER, DeviceKind::Other),
        (NIC2, DeviceKind::Nic),
    ] {
        dev.register_device(DeviceId(id), kind).unwrap();
    }
    (dev, rec)
}
