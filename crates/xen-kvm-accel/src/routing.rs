// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The VM's GSI routing table, kept in one place, and irqfds.
//!
//! KVM has one GSI routing table per VM, and `KVM_SET_GSI_ROUTING`
//! replaces all of it. Whoever sets it must therefore know every route
//! anyone else needs: the irqchip routes `KVM_CREATE_IRQCHIP` installed
//! (GSI 0-15 to the PIC and the IOAPIC, 16-23 to the IOAPIC; the GSI /
//! PCI INTx upcall line of [`crate::KvmInjector`] is one of them), the VMM's
//! MSI routes, and the `KVM_IRQ_ROUTING_XEN_EVTCHN` routes of
//! [`crate::eventfd_ports`]. [`GsiRouting`] is that table's model: it
//! starts from what KVM has (the irqchip defaults when the VM has a full
//! in-kernel irqchip, nothing otherwise), and every change goes through
//! it and is committed as a whole. **A VMM that uses this crate must make
//! its own routing changes through [`GsiRouting`]** (for example through
//! [`crate::XenKvm::routing`]), never with `KVM_SET_GSI_ROUTING` directly,
//! or the two would overwrite each other's routes.
//!
//! Entries are encoded exactly as `struct kvm_irq_routing_entry` of Linux
//! `include/uapi/linux/kvm.h` (type 1 irqchip, 2 MSI, 5 Xen event channel
//! with `u.xen_evtchn = { port, vcpu, priority }`).

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};

use kvm_bindings::{
    KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_IRQ_ROUTING_XEN_EVTCHN, KVM_IRQCHIP_IOAPIC,
    KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQFD_FLAG_DEASSIGN,
    KVM_IRQFD_FLAG_RESAMPLE, KVM_MAX_IRQ_ROUTES, KVM_MSI_VALID_DEVID, KVMIO, KvmIrqRouting,
    kvm_irq_routing, kvm_irq_routing_entry, kvm_irqchip, kvm_irqfd,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::errno;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::ioctl::ioctl_with_ref;

use crate::ioctls::{KVM_XEN_PRIO_2LEVEL, XenVmHandle};

mod nr {
    #![allow(missing_docs)]
    use super::*;
    vmm_sys_util::ioctl_iow_nr!(KVM_SET_GSI_ROUTING, KVMIO, 0x6a, kvm_irq_routing);
    vmm_sys_util::ioctl_iow_nr!(KVM_IRQFD, KVMIO, 0x76, kvm_irqfd);
}

/// The first GSI above the IOAPIC's 24 pins: where [`GsiRouting::allocate`]
/// starts.
pub const FIRST_FREE_GSI: u32 = 24;

/// One route of a GSI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// A pin of an in-kernel interrupt controller (`KVM_IRQCHIP_*`).
    Irqchip {
        /// `KVM_IRQCHIP_PIC_MASTER`, `_PIC_SLAVE` or `_IOAPIC`.
        chip: u32,
        /// The pin.
        pin: u32,
    },
    /// An MSI.
    Msi {
        /// The MSI address.
        address: u64,
        /// The MSI data.
        data: u32,
        /// The requester id, where the platform needs one.
        devid: Option<u32>,
    },
    /// `KVM_IRQ_ROUTING_XEN_EVTCHN`: raise a 2-level event-channel port
    /// (flag `EVTCHN_2LEVEL` of `KVM_CAP_XEN_HVM`).
    XenEvtchn {
        /// The guest port.
        port: u32,
        /// The Xen vCPU id it notifies.
        vcpu: u32,
    },
}

impl Route {
    /// Encodes the route of `gsi` as KVM's `kvm_irq_routing_entry`.
    pub fn encode(&self, gsi: u32) -> kvm_irq_routing_entry {
        let mut e = kvm_irq_routing_entry {
            gsi,
            ..Default::default()
        };
        match *self {
            Route::Irqchip { chip, pin } => {
                e.type_ = KVM_IRQ_ROUTING_IRQCHIP;
                e.u.irqchip.irqchip = chip;
                e.u.irqchip.pin = pin;
            }
            Route::Msi {
                address,
                data,
                devid,
            } => {
                e.type_ = KVM_IRQ_ROUTING_MSI;
                e.u.msi.address_lo = address as u32;
                e.u.msi.address_hi = (address >> 32) as u32;
                e.u.msi.data = data;
                if let Some(d) = devid {
                    e.flags = KVM_MSI_VALID_DEVID;
                    e.u.msi.__bindgen_anon_1.devid = d;
                }
            }
            Route::XenEvtchn { port, vcpu } => {
                e.type_ = KVM_IRQ_ROUTING_XEN_EVTCHN;
                e.u.xen_evtchn.port = port;
                e.u.xen_evtchn.vcpu = vcpu;
                e.u.xen_evtchn.priority = KVM_XEN_PRIO_2LEVEL;
            }
        }
        e
    }
}

/// Errors of the routing table and of irqfds.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// Every GSI KVM accepts is taken.
    #[error("No free GSI is left in the routing table")]
    Full,
    /// The GSI is beyond what KVM accepts.
    #[error("GSI {0} is out of range")]
    BadGsi(u32),
    /// KVM refused the table or the irqfd.
    #[error("KVM ioctl {what} failed")]
    Kvm {
        /// Which ioctl.
        what: &'static str,
        /// The error.
        #[source]
        source: errno::Error,
    },
}

/// The routing ioctls, raw (the mockable seam).
pub trait IrqRoutingRaw: Send + Sync {
    /// `KVM_SET_GSI_ROUTING` with exactly `entries`.
    fn raw_set_gsi_routing(&self, entries: &[kvm_irq_routing_entry]) -> errno::Result<()>;
    /// `KVM_IRQFD`.
    fn raw_irqfd(&self, irqfd: &kvm_irqfd) -> errno::Result<()>;
}

fn check(ret: i32) -> errno::Result<()> {
    if ret < 0 {
        Err(errno::Error::last())
    } else {
        Ok(())
    }
}

fn set_routing<F: AsRawFd>(fd: &F, entries: &[kvm_irq_routing_entry]) -> errno::Result<()> {
    let table =
        KvmIrqRouting::from_entries(entries).map_err(|_| errno::Error::new(libc::EINVAL))?;
    // SAFETY: KVM_SET_GSI_ROUTING reads the header and `nr` entries that
    // the FAM wrapper allocated together; `fd` is a VM file descriptor.
    check(unsafe { ioctl_with_ref(fd, nr::KVM_SET_GSI_ROUTING(), table.as_fam_struct_ref()) })
}

fn irqfd<F: AsRawFd>(fd: &F, irqfd: &kvm_irqfd) -> errno::Result<()> {
    // SAFETY: KVM_IRQFD reads one kvm_irqfd from a pointer valid for the
    // call; the eventfds it names are the caller's and KVM takes its own
    // references to them.
    check(unsafe { ioctl_with_ref(fd, nr::KVM_IRQFD(), irqfd) })
}

impl IrqRoutingRaw for VmFd {
    fn raw_set_gsi_routing(&self, entries: &[kvm_irq_routing_entry]) -> errno::Result<()> {
        set_routing(self, entries)
    }
    fn raw_irqfd(&self, i: &kvm_irqfd) -> errno::Result<()> {
        irqfd(self, i)
    }
}

impl IrqRoutingRaw for XenVmHandle {
    fn raw_set_gsi_routing(&self, entries: &[kvm_irq_routing_entry]) -> errno::Result<()> {
        set_routing(&self.0, entries)
    }
    fn raw_irqfd(&self, i: &kvm_irqfd) -> errno::Result<()> {
        irqfd(&self.0, i)
    }
}

/// The routes `KVM_CREATE_IRQCHIP` installs: GSI 0-15 to the IOAPIC pin of
/// the same number and to the PIC (master for 0-7, slave for 8-15, pin
/// GSI mod 8), GSI 16-23 to the IOAPIC only.
pub fn default_irqchip_routes() -> BTreeMap<u32, Vec<Route>> {
    (0..24u32)
        .map(|gsi| {
            let mut routes = vec![Route::Irqchip {
                chip: KVM_IRQCHIP_IOAPIC,
                pin: gsi,
            }];
            if gsi < 16 {
                routes.push(Route::Irqchip {
                    chip: if gsi < 8 {
                        KVM_IRQCHIP_PIC_MASTER
                    } else {
                        KVM_IRQCHIP_PIC_SLAVE
                    },
                    pin: gsi % 8,
                });
            }
            (gsi, routes)
        })
        .collect()
}

/// The model of a VM's GSI routing table; see the module docs.
pub struct GsiRouting {
    vm: Box<dyn IrqRoutingRaw>,
    table: Mutex<BTreeMap<u32, Vec<Route>>>,
}

impl std::fmt::Debug for GsiRouting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GsiRouting")
            .field("table", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl GsiRouting {
    /// A table over `vm` that starts as `initial` (what KVM has now).
    pub fn new(vm: Box<dyn IrqRoutingRaw>, initial: BTreeMap<u32, Vec<Route>>) -> Self {
        Self {
            vm,
            table: Mutex::new(initial),
        }
    }

    /// A table for `vm` (a duplicate of its fd), starting from the irqchip
    /// defaults if `vm` has a full in-kernel irqchip (`KVM_GET_IRQCHIP`
    /// answers), else empty (split or no irqchip: KVM installs no routes).
    /// Call it after `KVM_CREATE_IRQCHIP` and before any routing change.
    pub fn for_vm(vm: &VmFd) -> std::io::Result<Self> {
        let mut chip = kvm_irqchip {
            chip_id: KVM_IRQCHIP_PIC_MASTER,
            ..Default::default()
        };
        let initial = if vm.get_irqchip(&mut chip).is_ok() {
            default_irqchip_routes()
        } else {
            BTreeMap::new()
        };
        Ok(Self::new(Box::new(XenVmHandle::new(vm)?), initial))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u32, Vec<Route>>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn commit(&self, table: &BTreeMap<u32, Vec<Route>>) -> Result<(), RoutingError> {
        let entries: Vec<kvm_irq_routing_entry> = table
            .iter()
            .flat_map(|(&gsi, routes)| routes.iter().map(move |r| r.encode(gsi)))
            .collect();
        self.vm
            .raw_set_gsi_routing(&entries)
            .map_err(|source| RoutingError::Kvm {
                what: "KVM_SET_GSI_ROUTING",
                source,
            })
    }

    /// Applies `change` to the table and commits it; on failure the model
    /// is left as it was.
    fn update<R>(
        &self,
        change: impl FnOnce(&mut BTreeMap<u32, Vec<Route>>) -> Result<R, RoutingError>,
    ) -> Result<R, RoutingError> {
        let mut table = self.lock();
        let mut next = table.clone();
        let r = change(&mut next)?;
        self.commit(&next)?;
        *table = next;
        Ok(r)
    }

    /// Makes `routes` the routes of `gsi` (none: the GSI is freed) and
    /// commits the table.
    pub fn set(&self, gsi: u32, routes: Vec<Route>) -> Result<(), RoutingError> {
        if gsi as usize >= KVM_MAX_IRQ_ROUTES {
            return Err(RoutingError::BadGsi(gsi));
        }
        self.update(|t| {
            if routes.is_empty() {
                t.remove(&gsi);
            } else {
                t.insert(gsi, routes);
            }
            Ok(())
        })
    }

    /// Removes every route of `gsi` and commits the table.
    pub fn remove(&self, gsi: u32) -> Result<(), RoutingError> {
        self.set(gsi, Vec::new())
    }

    /// Gives `routes` the lowest free GSI from [`FIRST_FREE_GSI`] on,
    /// commits the table, and returns the GSI.
    pub fn allocate(&self, routes: Vec<Route>) -> Result<u32, RoutingError> {
        self.update(|t| {
            let gsi = (FIRST_FREE_GSI..KVM_MAX_IRQ_ROUTES as u32)
                .find(|g| !t.contains_key(g))
                .ok_or(RoutingError::Full)?;
            t.insert(gsi, routes);
            Ok(gsi)
        })
    }

    /// The routes of `gsi`.
    pub fn routes(&self, gsi: u32) -> Vec<Route> {
        self.lock().get(&gsi).cloned().unwrap_or_default()
    }

    /// The whole table as KVM last received it.
    pub fn entries(&self) -> Vec<kvm_irq_routing_entry> {
        self.lock()
            .iter()
            .flat_map(|(&gsi, routes)| routes.iter().map(move |r| r.encode(gsi)))
            .collect()
    }

    /// Registers `fd` as an irqfd of `gsi`: a write to it triggers the GSI
    /// in the kernel, through whatever route the GSI has.
    pub fn add_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<(), RoutingError> {
        irqfd_call(&*self.vm, fd, gsi, 0, None)
    }

    /// Registers `fd` as a level-triggered irqfd of `gsi` with a resample
    /// eventfd (`KVM_IRQFD_FLAG_RESAMPLE`, full in-kernel irqchip only): a
    /// write asserts the line; when the guest EOIs it, KVM deasserts it and
    /// signals `resample`, after which the owner re-asserts it if the
    /// source still wants service.
    pub fn add_resample_irqfd(
        &self,
        fd: &EventFd,
        resample: &EventFd,
        gsi: u32,
    ) -> Result<(), RoutingError> {
        irqfd_call(&*self.vm, fd, gsi, KVM_IRQFD_FLAG_RESAMPLE, Some(resample))
    }

    /// Unregisters the irqfd `fd` of `gsi` (a resampling one's line is
    /// deasserted).
    pub fn remove_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<(), RoutingError> {
        irqfd_call(&*self.vm, fd, gsi, KVM_IRQFD_FLAG_DEASSIGN, None)
    }
}

/// `KVM_IRQFD` of `fd` on `gsi` with `flags` through `vm`.
pub(crate) fn irqfd_call(
    vm: &dyn IrqRoutingRaw,
    fd: &EventFd,
    gsi: u32,
    flags: u32,
    resample: Option<&EventFd>,
) -> Result<(), RoutingError> {
    let i = kvm_irqfd {
        fd: fd.as_raw_fd() as u32,
        gsi,
        flags,
        resamplefd: resample.map_or(0, |r| r.as_raw_fd() as u32),
        ..Default::default()
    };
    vm.raw_irqfd(&i).map_err(|source| RoutingError::Kvm {
        what: "KVM_IRQFD",
        source,
    })
}

/// A recording stand-in for the routing ioctls, for tests without
/// `/dev/kvm`.
#[cfg(test)]
pub(crate) mod mock {
    use std::sync::Mutex;

    use super::*;

    /// Records each table and irqfd; `fail` makes the next call fail.
    #[derive(Default)]
    pub(crate) struct MockRouting {
        pub(crate) tables: Mutex<Vec<Vec<kvm_irq_routing_entry>>>,
        pub(crate) irqfds: Mutex<Vec<kvm_irqfd>>,
        pub(crate) fail: Mutex<Option<i32>>,
    }

    impl MockRouting {
        fn failing(&self) -> errno::Result<()> {
            match self.fail.lock().unwrap().take() {
                Some(e) => Err(errno::Error::new(e)),
                None => Ok(()),
            }
        }
    }

    impl IrqRoutingRaw for std::sync::Arc<MockRouting> {
        fn raw_set_gsi_routing(&self, entries: &[kvm_irq_routing_entry]) -> errno::Result<()> {
            self.failing()?;
            self.tables.lock().unwrap().push(entries.to_vec());
            Ok(())
        }
        fn raw_irqfd(&self, irqfd: &kvm_irqfd) -> errno::Result<()> {
            self.failing()?;
            self.irqfds.lock().unwrap().push(*irqfd);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::undocumented_unsafe_blocks)]
    use std::sync::Arc;

    use super::mock::MockRouting;
    use super::*;

    fn routing() -> (Arc<MockRouting>, GsiRouting) {
        let m = Arc::new(MockRouting::default());
        (
            m.clone(),
            GsiRouting::new(Box::new(m), default_irqchip_routes()),
        )
    }

    #[test]
    fn test_route_xen_evtchn_encodes_uapi_entry() {
        let e = Route::XenEvtchn { port: 66, vcpu: 1 }.encode(33);
        assert_eq!((e.gsi, e.type_, e.flags), (33, 5, 0));
        let x = unsafe { e.u.xen_evtchn };
        assert_eq!((x.port, x.vcpu, x.priority), (66, 1, u32::MAX));
        // The union's raw words: port, vcpu, priority, then zeroes.
        let pad = unsafe { e.u.pad };
        assert_eq!(pad, [66, 1, u32::MAX, 0, 0, 0, 0, 0]);
        assert_eq!(std::mem::size_of::<kvm_irq_routing_entry>(), 48);
    }

    #[test]
    fn test_route_irqchip_and_msi_encode_uapi_entries() {
        let e = Route::Irqchip { chip: 2, pin: 20 }.encode(20);
        assert_eq!(e.type_, 1);
        assert_eq!(unsafe { e.u.pad }[..2], [2, 20]);
        let e = Route::Msi {
            address: 0x1_fee0_1000,
            data: 0x41,
            devid: Some(0x18),
        }
        .encode(40);
        assert_eq!((e.type_, e.flags), (2, KVM_MSI_VALID_DEVID));
        assert_eq!(unsafe { e.u.pad }[..4], [0xfee0_1000, 1, 0x41, 0x18]);
    }

    #[test]
    fn test_default_routes_match_kvm_create_irqchip() {
        let d = default_irqchip_routes();
        assert_eq!(d.len(), 24);
        assert_eq!(d.values().map(Vec::len).sum::<usize>(), 40);
        assert_eq!(
            d[&9],
            vec![
                Route::Irqchip { chip: 2, pin: 9 },
                Route::Irqchip { chip: 1, pin: 1 }
            ]
        );
        assert_eq!(d[&20], vec![Route::Irqchip { chip: 2, pin: 20 }]);
    }

    #[test]
    fn test_allocate_commits_whole_table_with_defaults() {
        let (m, r) = routing();
        let gsi = r
            .allocate(vec![Route::XenEvtchn { port: 3, vcpu: 0 }])
            .unwrap();
        assert_eq!(gsi, FIRST_FREE_GSI);
        let t = m.tables.lock().unwrap().last().unwrap().clone();
        assert_eq!(t.len(), 41, "40 irqchip routes kept, plus the new one");
        assert_eq!((t[40].gsi, t[40].type_), (24, 5));
        let gsi2 = r.allocate(vec![Route::XenEvtchn { port: 4, vcpu: 0 }]);
        assert_eq!(gsi2.unwrap(), 25);
        r.remove(24).unwrap();
        assert_eq!(r.allocate(vec![]).unwrap(), 24, "the lowest free GSI");
    }

    #[test]
    fn test_failed_commit_leaves_model_unchanged() {
        let (m, r) = routing();
        *m.fail.lock().unwrap() = Some(libc::EINVAL);
        assert!(matches!(
            r.set(30, vec![Route::XenEvtchn { port: 1, vcpu: 9 }]),
            Err(RoutingError::Kvm { .. })
        ));
        assert!(r.routes(30).is_empty());
        assert_eq!(r.entries().len(), 40);
        assert!(matches!(
            r.set(5000, vec![]),
            Err(RoutingError::BadGsi(5000))
        ));
    }

    #[test]
    fn test_irqfd_flags_and_resample_fd() {
        let (m, r) = routing();
        let fd = EventFd::new(0).unwrap();
        let rs = EventFd::new(0).unwrap();
        r.add_resample_irqfd(&fd, &rs, 20).unwrap();
        r.remove_irqfd(&fd, 20).unwrap();
        r.add_irqfd(&fd, 24).unwrap();
        let i = m.irqfds.lock().unwrap().clone();
        assert_eq!((i[0].gsi, i[0].flags), (20, KVM_IRQFD_FLAG_RESAMPLE));
        assert_eq!(i[0].resamplefd as i32, rs.as_raw_fd());
        assert_eq!(i[0].fd as i32, fd.as_raw_fd());
        assert_eq!(i[1].flags, KVM_IRQFD_FLAG_DEASSIGN);
        assert_eq!((i[2].gsi, i[2].flags), (24, 0));
    }
}
