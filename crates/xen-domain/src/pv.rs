// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The toolstack's part of a domain: the pages a Xen toolstack hands a
//! new HVM guest and the back ends behind them.
//!
//! Like `libxl`, the domain allocates the XenStore port first and the
//! console port second (guest ports 1 and 2 at boot), each an unbound port
//! for the back-end domain that the back end then binds, and reports
//! pages and ports in `HVM_PARAM_STORE_PFN`/`STORE_EVTCHN` and
//! `HVM_PARAM_CONSOLE_PFN`/`CONSOLE_EVTCHN`. Grant references 0 (console)
//! and 1 (XenStore) name the same pages.

use std::io::Write;
use std::sync::{Arc, OnceLock, Weak};

use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemoryBackend};
use xen_abi::errno::XenErrno;
use xen_abi::hvm::HvmParam;
use xen_abi::memory::E820Type;
use xen_abi::xen::DomId;
use xen_console::PvConsole;
use xen_evtchn::{BackendPort, DOMID_BACKEND, EventChannels};
use xen_gnttab::GrantTable;
use xen_hypercall::{Domain, DomainConfig, HvmOp};
use xen_store::{DomainInfo, GuestConnection, Perm, Store};

use crate::{Error, StateError};

/// Where the VMM put the guest's primary PV console and where its output
/// goes.
pub struct ConsoleSetup {
    /// GFN of the console ring page (Xen's toolstack: `0xfefff`, the last
    /// special page). Must be guest memory the guest does not use as RAM
    /// (reserved in its memory map).
    pub gfn: u64,
    /// Where the guest's console output goes (the VMM's stdout, a file).
    pub writer: Box<dyn Write + Send>,
}

impl std::fmt::Debug for ConsoleSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSetup")
            .field("gfn", &self.gfn)
            .finish_non_exhaustive()
    }
}

/// Where the VMM put the guest's XenStore ring and how the toolstack
/// names the domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSetup {
    /// GFN of the XenStore ring page (Xen's toolstack: `0xfeffc`). Must be
    /// guest memory the guest does not use as RAM.
    pub gfn: u64,
    /// The domain's name (`/local/domain/N/name`); its UUID (`vm`) is
    /// the configuration's.
    pub name: String,
}

/// The back end's handle on a guest port, filled once it is bound; the
/// notification a back end calls to signal the guest.
pub(crate) struct Link<M> {
    mem: M,
    port: OnceLock<BackendPort>,
}

impl<M: GuestMemoryBackend + Send + Sync + 'static> Link<M> {
    pub(crate) fn new(mem: M) -> Arc<Self> {
        Arc::new(Self {
            mem,
            port: OnceLock::new(),
        })
    }

    /// Raises the guest's port (nothing before it is bound or after the
    /// guest closed it).
    pub(crate) fn notify_guest(&self) {
        if let Some(p) = self.port.get() {
            let _ = p.notify_guest(&self.mem);
        }
    }

    /// The notification as a callback for a back end.
    pub(crate) fn notifier(self: &Arc<Self>) -> Arc<dyn Fn() + Send + Sync> {
        let link = self.clone();
        Arc::new(move || link.notify_guest())
    }

    /// The back end's port number, once bound.
    pub(crate) fn backend_port(&self) -> Option<u32> {
        self.port.get().map(BackendPort::port)
    }
}

/// What a back end does when the guest signals it.
pub(crate) trait Kick: Send + Sync + 'static {
    fn kick(&self);
}

impl<M: GuestMemoryBackend + Send + Sync + 'static> Kick for PvConsole<M> {
    fn kick(&self) {
        PvConsole::kick(self);
    }
}

impl<A: GuestAddressSpace + Send + Sync + 'static> Kick for GuestConnection<A> {
    fn kick(&self) {
        GuestConnection::kick(self);
    }
}

/// Where a back end's event channel comes from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PortSource {
    /// A new domain: this unbound guest port (for the back-end domain).
    Fresh(u32),
    /// A restored domain: the saved back-end port, re-attached.
    Saved(u32),
}

/// Binds `backend` to the guest through `link`: the back end's end of
/// the channel is bound (or re-attached), and the guest's sends kick the
/// back end. The back end is reached through a weak reference, so the
/// port table does not keep it alive.
pub(crate) fn bind<M, K>(
    channels: &EventChannels,
    link: &Link<M>,
    backend: &Arc<K>,
    source: PortSource,
) -> Result<u32, XenErrno>
where
    M: GuestMemoryBackend + Send + Sync + 'static,
    K: Kick,
{
    let weak: Weak<K> = Arc::downgrade(backend);
    let notify = Arc::new(move |_port: u32| {
        if let Some(b) = weak.upgrade() {
            b.kick();
        }
    });
    let port = match source {
        PortSource::Saved(p) => channels.backend_attach(p, notify)?,
        PortSource::Fresh(guest) => channels.backend_bind_interdomain(guest, notify)?,
    };
    let guest = port.guest_port().ok_or(XenErrno::ENOTCONN)?;
    let _ = link.port.set(port);
    Ok(guest)
}

/// Whether the page at `gfn` is guest memory.
pub(crate) fn page_exists<M: GuestMemoryBackend>(mem: &M, gfn: u64) -> bool {
    gfn.checked_mul(4096)
        .is_some_and(|gpa| mem.check_range(GuestAddress(gpa), 4096))
}

/// Zeroes the page at `gfn`, as a toolstack hands a new domain its ring
/// pages.
pub(crate) fn clear_page<M: GuestMemoryBackend>(mem: &M, gfn: u64) {
    let _ = mem.write_slice(&[0u8; 4096], GuestAddress(gfn << 12));
}

/// The XenStore of a built domain.
pub(crate) struct StoreDev<M: GuestMemoryBackend> {
    pub(crate) store: Arc<Store>,
    pub(crate) conn: Arc<GuestConnection<Arc<M>>>,
    pub(crate) link: Arc<Link<M>>,
}

/// The primary console of a built domain.
pub(crate) struct ConsoleDev<M: GuestMemoryBackend> {
    pub(crate) console: Arc<PvConsole<M>>,
    pub(crate) link: Arc<Link<M>>,
}

/// The toolstack's devices of a built domain.
pub(crate) struct Pv<M: GuestMemoryBackend> {
    pub(crate) store: Option<StoreDev<M>>,
    pub(crate) console: Option<ConsoleDev<M>>,
}

/// Saved XenStore: the store and its event channel.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StoreState {
    /// The back end's end of the store's event channel.
    pub backend_port: u32,
    /// Every node, watch, transaction and connection.
    pub store: xen_store::State,
}

/// Saved primary console: its event channel and queued input.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConsoleState {
    /// The back end's end of the console's event channel.
    pub backend_port: u32,
    /// Input not yet in the guest's ring.
    pub console: xen_console::State,
}

/// Saved toolstack devices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PvState {
    /// The XenStore, if the domain has one.
    pub store: Option<StoreState>,
    /// The primary console, if the domain has one.
    pub console: Option<ConsoleState>,
}

/// What the toolstack devices are built from.
pub(crate) struct PvParts<'a, M> {
    pub(crate) config: &'a DomainConfig,
    pub(crate) mem: &'a M,
    pub(crate) core: &'a Domain,
    pub(crate) channels: &'a EventChannels,
    pub(crate) gnttab: &'a GrantTable,
}

fn pv_error(what: &'static str) -> impl FnOnce(XenErrno) -> Error {
    move |errno| Error::Pv {
        what,
        why: format!("{errno:?}"),
    }
}

fn missing(what: &'static str, why: &str) -> Error {
    Error::Pv {
        what,
        why: why.to_owned(),
    }
}

impl<M: GuestMemoryBackend + Clone + Send + Sync + 'static> Pv<M> {
    /// Builds the XenStore and the console (or takes them back from
    /// `saved`), in libxl's order: the store's port first.
    pub(crate) fn assemble(
        p: PvParts<'_, M>,
        store: Option<StoreSetup>,
        console: Option<ConsoleSetup>,
        saved: Option<&PvState>,
    ) -> Result<Self, Error> {
        let store_gfn = store.as_ref().map(|s| s.gfn);
        let console_gfn = console.as_ref().map(|c| c.gfn);
        for (what, gfn) in [
            ("the XenStore page", store_gfn),
            ("the console page", console_gfn),
        ] {
            if let Some(gfn) = gfn
                && !page_exists(p.mem, gfn)
            {
                return Err(missing(what, &format!("GFN {gfn:#x} is not guest memory")));
            }
        }
        if let Some(s) = saved
            && (s.store.is_some() != store.is_some() || s.console.is_some() != console.is_some())
        {
            return Err(Error::State(StateError::Config(
                "the saved domain's XenStore or console differs from this one's",
            )));
        }
        let store_port = match (&store, saved) {
            (Some(_), None) => Some(
                p.channels
                    .alloc_unbound(p.mem, DOMID_BACKEND)
                    .map_err(pv_error("the XenStore port"))?,
            ),
            _ => None,
        };
        let console_port = match (&console, saved) {
            (Some(_), None) => Some(
                p.channels
                    .alloc_unbound(p.mem, DOMID_BACKEND)
                    .map_err(pv_error("the console port"))?,
            ),
            _ => None,
        };
        let store_dev = match store {
            None => None,
            Some(setup) => Some(Self::store(
                &p,
                &setup,
                store_port,
                saved.and_then(|s| s.store.as_ref()),
            )?),
        };
        let console_dev = match console {
            None => None,
            Some(setup) => {
                let gfn = setup.gfn;
                let dev = Self::console(
                    &p,
                    setup,
                    console_port,
                    saved.and_then(|s| s.console.as_ref()),
                )?;
                if saved.is_none()
                    && let Some(s) = &store_dev
                {
                    write_console_keys(&s.store, p.config.domid, gfn, console_port);
                }
                Some(dev)
            }
        };
        if saved.is_none() {
            // Grant refs 0 and 1, as the toolstack fills them.
            p.gnttab
                .seed_reserved(console_gfn, store_gfn)
                .map_err(|e| missing("the reserved grant entries", &e.to_string()))?;
        }
        Ok(Self {
            store: store_dev,
            console: console_dev,
        })
    }

    fn store(
        p: &PvParts<'_, M>,
        setup: &StoreSetup,
        fresh_port: Option<u32>,
        saved: Option<&StoreState>,
    ) -> Result<StoreDev<M>, Error> {
        let domid = p.config.domid;
        let link = Link::new(p.mem.clone());
        let space = Arc::new(p.mem.clone());
        let (store, conn, source) = match (saved, fresh_port) {
            (Some(s), _) => {
                let store = Store::from_state(&s.store)?;
                let conn = store.resume_guest(domid, space, link.notifier())?;
                (store, conn, PortSource::Saved(s.backend_port))
            }
            (None, Some(port)) => {
                let store = Store::new(xen_store::Config::default())?;
                store.introduce_domain(&domain_info(p.config, setup, port))?;
                clear_page(p.mem, setup.gfn);
                let conn = store.connect_guest(domid, space, setup.gfn << 12, link.notifier())?;
                HvmOp::set_param_host(p.core, HvmParam::StorePfn.raw(), setup.gfn)
                    .and_then(|()| {
                        HvmOp::set_param_host(p.core, HvmParam::StoreEvtchn.raw(), port.into())
                    })
                    .map_err(pv_error("the XenStore parameters"))?;
                (store, conn, PortSource::Fresh(port))
            }
            (None, None) => unreachable!("a fresh store always has a port"),
        };
        let conn = Arc::new(conn);
        bind(p.channels, &link, &conn, source).map_err(pv_error("the XenStore port"))?;
        conn.kick();
        Ok(StoreDev { store, conn, link })
    }

    fn console(
        p: &PvParts<'_, M>,
        setup: ConsoleSetup,
        fresh_port: Option<u32>,
        saved: Option<&ConsoleState>,
    ) -> Result<ConsoleDev<M>, Error> {
        let link = Link::new(p.mem.clone());
        let console = Arc::new(PvConsole::new(
            p.mem.clone(),
            GuestAddress(setup.gfn << 12),
            setup.writer,
            link.notifier(),
        ));
        let source = match (saved, fresh_port) {
            (Some(s), _) => {
                console
                    .restore(&s.console)
                    .map_err(|e| missing("the console", &e.to_string()))?;
                PortSource::Saved(s.backend_port)
            }
            (None, Some(port)) => {
                console.clear_ring();
                HvmOp::set_param_host(p.core, HvmParam::ConsolePfn.raw(), setup.gfn)
                    .and_then(|()| {
                        HvmOp::set_param_host(p.core, HvmParam::ConsoleEvtchn.raw(), port.into())
                    })
                    .map_err(pv_error("the console parameters"))?;
                PortSource::Fresh(port)
            }
            (None, None) => unreachable!("a fresh console always has a port"),
        };
        bind(p.channels, &link, &console, source).map_err(pv_error("the console port"))?;
        Ok(ConsoleDev { console, link })
    }

    /// The saved state of the devices.
    pub(crate) fn state(&self) -> PvState {
        PvState {
            store: self.store.as_ref().map(|s| StoreState {
                backend_port: s.link.backend_port().unwrap_or(0),
                store: s.store.state(),
            }),
            console: self.console.as_ref().map(|c| ConsoleState {
                backend_port: c.link.backend_port().unwrap_or(0),
                console: c.console.state(),
            }),
        }
    }
}

/// The toolstack's record of the domain (libxl's `libxl__domain_make`
/// and `libxl__build_post`).
fn domain_info(config: &DomainConfig, setup: &StoreSetup, store_port: u32) -> DomainInfo {
    let ram: u64 = config
        .memory_map
        .iter()
        .filter(|e| e.type_ == E820Type::Ram as u32)
        .map(|e| e.size)
        .sum();
    DomainInfo {
        uuid: config.uuid,
        max_memory_kib: ram >> 10,
        target_memory_kib: ram >> 10,
        vcpus: config.vcpus,
        online_vcpus: config.vcpus,
        store_gfn: setup.gfn,
        store_port,
        ..DomainInfo::new(config.domid, &setup.name)
    }
}

/// `console/` as libxl writes it for the primary console (read-only to
/// the guest).
fn write_console_keys(store: &Arc<Store>, domid: DomId, gfn: u64, port: Option<u32>) {
    let client = store.client();
    let home = format!("/local/domain/{domid}/console");
    let mut keys = vec![
        ("ring-ref", gfn.to_string()),
        ("type", "xenconsoled".to_owned()),
        ("output", "pty".to_owned()),
        ("limit", "1048576".to_owned()),
    ];
    if let Some(port) = port {
        keys.push(("port", port.to_string()));
    }
    for (key, value) in keys {
        if let Err(e) = client.write(&format!("{home}/{key}"), value) {
            log::warn!("XenStore: cannot write {home}/{key}: {e:?}");
        }
    }
    let perms = [Perm::none(0), Perm::read(domid)];
    let _ = client.set_perms(&home, &perms);
}
