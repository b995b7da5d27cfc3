// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The tree a toolstack writes for a new HVM domain (libxl
//! `libxl__domain_make`, `libxl__build_post`; `xen-abi.md` §5.6,
//! `pv-reference.md` B.8).
//!
//! `/local/domain/<domid>` and everything in it are owned by domain 0 and
//! readable by the guest (`n0 r<domid>`), except the nodes the guest
//! writes itself, which it owns (`n<domid>`): `control/shutdown`,
//! `control/feature-*`, `control/sysrq`, `data`, `device` (with
//! `device/suspend/event-channel`), `drivers`, `feature`, `attr`, `error`.
//! `data` is where Xen's guest-side `test-xenstore` may write.

use xen_abi::errno::XenErrno;
use xen_abi::xen::{DomId, domid_is_regular};

use crate::op::Op;
use crate::path::domain_path;
use crate::perms::Perm;
use crate::{Error, Result};

/// What the toolstack knows about a domain it introduces.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DomainInfo {
    /// Domain id: regular and not 0.
    pub domid: DomId,
    /// `name`, and `/vm/<uuid>/name`.
    pub name: String,
    /// The domain's UUID (`vm` = `/vm/<uuid>`).
    pub uuid: [u8; 16],
    /// `memory/static-max`, KiB.
    pub max_memory_kib: u64,
    /// `memory/target`, KiB (the balloon target).
    pub target_memory_kib: u64,
    /// `memory/videoram`, KiB, if any.
    pub video_memory_kib: Option<u64>,
    /// vCPUs; `cpu/<i>/availability` is `online` for `i < online_vcpus`,
    /// `offline` up to `vcpus`.
    pub vcpus: u32,
    /// vCPUs online at boot.
    pub online_vcpus: u32,
    /// `store/ring-ref`: the ring's guest frame number.
    pub store_gfn: u64,
    /// `store/port`: the guest's store event channel.
    pub store_port: u32,
    /// `platform/acpi`.
    pub acpi: bool,
    /// `platform/acpi_s3`.
    pub acpi_s3: bool,
    /// `platform/acpi_s4`.
    pub acpi_s4: bool,
    /// `platform/acpi_laptop_slate`.
    pub acpi_laptop_slate: bool,
}

/// Most vCPUs [`DomainInfo::validate`] accepts (`cpu/<i>` nodes).
pub const MAX_VCPUS: u32 = 4096;

impl DomainInfo {
    /// A domain with one vCPU, no memory figures, a UUID made of the
    /// domain id (`00000000-0000-0000-0000-00000000<domid:04x>`), store
    /// frame 0 and port 0, and ACPI with S3 and S4 (as QEMU's tree).
    pub fn new(domid: DomId, name: &str) -> Self {
        let mut uuid = [0; 16];
        uuid[14..].copy_from_slice(&domid.to_be_bytes());
        DomainInfo {
            domid,
            name: name.to_owned(),
            uuid,
            max_memory_kib: 0,
            target_memory_kib: 0,
            video_memory_kib: None,
            vcpus: 1,
            online_vcpus: 1,
            store_gfn: 0,
            store_port: 0,
            acpi: true,
            acpi_s3: true,
            acpi_s4: true,
            acpi_laptop_slate: false,
        }
    }

    /// The UUID as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub fn uuid_string(&self) -> String {
        let h: Vec<String> = self.uuid.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            h[0..4].concat(),
            h[4..6].concat(),
            h[6..8].concat(),
            h[8..10].concat(),
            h[10..16].concat()
        )
    }

    /// `/vm/<uuid>`.
    pub fn vm_path(&self) -> String {
        format!("/vm/{}", self.uuid_string())
    }

    /// Checks the domain id and the vCPU counts.
    pub fn validate(&self) -> Result<()> {
        if self.domid == 0 || !domid_is_regular(self.domid) {
            return Err(Error::InvalidDomid(self.domid));
        }
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS || self.online_vcpus > self.vcpus {
            return Err(Error::InvalidConfig(
                "vcpus must be 1..=4096, online at most vcpus",
            ));
        }
        Ok(())
    }
}

/// Writes the domain's tree as domain 0.
pub(crate) fn build_domain_tree(
    op: &mut Op,
    info: &DomainInfo,
) -> std::result::Result<(), XenErrno> {
    let id = info.domid;
    let home = domain_path(u32::from(id));
    let ro = vec![Perm::none(0), Perm::read(id)];
    let rw = vec![Perm::none(id)];
    let at = |rel: &str| format!("{home}/{rel}");
    let b = |v: bool| if v { "1" } else { "0" };

    op.mkdir(&home)?;
    op.set_perms(&home, ro.clone())?;
    let vm = info.vm_path();
    op.mkdir(&vm)?;
    op.set_perms(&vm, ro.clone())?;
    op.write(&format!("{vm}/uuid"), info.uuid_string().as_bytes())?;
    op.write(&format!("{vm}/name"), info.name.as_bytes())?;

    let mut values: Vec<(String, String)> = vec![
        (at("domid"), id.to_string()),
        (at("name"), info.name.clone()),
        (at("vm"), vm),
        (at("memory/static-max"), info.max_memory_kib.to_string()),
        (at("memory/target"), info.target_memory_kib.to_string()),
    ];
    if let Some(v) = info.video_memory_kib {
        values.push((at("memory/videoram"), v.to_string()));
    }
    for i in 0..info.vcpus {
        let state = if i < info.online_vcpus {
            "online"
        } else {
            "offline"
        };
        values.push((at(&format!("cpu/{i}/availability")), state.into()));
    }
    values.extend([
        (at("store/port"), info.store_port.to_string()),
        (at("store/ring-ref"), info.store_gfn.to_string()),
        (at("platform/acpi"), b(info.acpi).into()),
        (at("platform/acpi_s3"), b(info.acpi_s3).into()),
        (at("platform/acpi_s4"), b(info.acpi_s4).into()),
        (
            at("platform/acpi_laptop_slate"),
            b(info.acpi_laptop_slate).into(),
        ),
        (
            at("control/platform-feature-multiprocessor-suspend"),
            "1".into(),
        ),
        (at("control/platform-feature-xs_reset_watches"), "1".into()),
    ]);
    for (path, value) in &values {
        op.write(path, value.as_bytes())?;
    }
    // What the guest writes itself: created empty, owned by the guest.
    for rel in [
        "control/shutdown",
        "control/feature-poweroff",
        "control/feature-reboot",
        "control/feature-suspend",
        "control/feature-s3",
        "control/feature-s4",
        "control/sysrq",
        "data",
        "device",
        "drivers",
        "feature",
        "attr",
        "error",
        "device/suspend",
        "device/suspend/event-channel",
    ] {
        op.mkdir(&at(rel))?;
        op.set_perms(&at(rel), rw.clone())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_uuid_string_format() {
        let mut info = DomainInfo::new(1, "g");
        info.uuid = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ];
        assert_eq!(info.uuid_string(), "12345678-9abc-def0-0123-456789abcdef");
        assert_eq!(info.vm_path(), "/vm/12345678-9abc-def0-0123-456789abcdef");
    }

    #[test]
    fn test_validate_refuses_dom0_and_reserved() {
        assert_eq!(
            DomainInfo::new(0, "x").validate(),
            Err(Error::InvalidDomid(0))
        );
        assert_eq!(
            DomainInfo::new(0x7ff0, "x").validate(),
            Err(Error::InvalidDomid(0x7ff0))
        );
        let mut info = DomainInfo::new(1, "x");
        info.online_vcpus = 2;
        assert!(info.validate().is_err());
    }
}
