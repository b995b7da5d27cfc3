// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Target `evtchn_ops`: arbitrary event-channel operations, VMM calls
//! and guest writes, with snapshots, over a changing guest layout.

use arbitrary::{Arbitrary, Unstructured};
use xen_abi::errno::XenErrno;

/// Guest RAM of the `evtchn_ops` target.
const EVTCHN_RAM: u64 = 4 << 20;

/// A port argument: mostly one a bind returned.
#[derive(Arbitrary, Debug)]
enum PortArg {
    Known(u8),
    Small(u16),
    Any(u32),
}

/// A frame argument: mostly the first pages of RAM, so pages overlap.
#[derive(Arbitrary, Debug)]
enum GfnArg {
    Low(u8),
    Ram(u16),
    Any(u64),
}

impl GfnArg {
    fn value(&self) -> u64 {
        match *self {
            GfnArg::Low(g) => u64::from(g % 32),
            GfnArg::Ram(g) => u64::from(g) % (EVTCHN_RAM / 4096),
            GfnArg::Any(g) => g,
        }
    }
}

/// A guest-physical address: in the first pages (any alignment), anywhere
/// in RAM, or anywhere.
#[derive(Arbitrary, Debug)]
enum AddrArg {
    Low(u16),
    Ram(u32),
    Any(u64),
}

impl AddrArg {
    fn value(&self) -> u64 {
        match *self {
            AddrArg::Low(a) => u64::from(a) % (32 * 4096),
            AddrArg::Ram(a) => u64::from(a) % EVTCHN_RAM,
            AddrArg::Any(a) => a,
        }
    }
}

/// Where a guest write goes.
#[derive(Arbitrary, Debug)]
enum WriteAt {
    SharedInfo(u16),
    VcpuInfo(u8, u8),
    Addr(AddrArg),
}

/// A domain id argument.
#[derive(Arbitrary, Debug)]
enum DomArg {
    SelfId,
    Own,
    Backend,
    Any(u16),
}

impl DomArg {
    fn value(&self) -> u16 {
        match *self {
            DomArg::SelfId => xen_abi::xen::DOMID_SELF,
            DomArg::Own => EVTCHN_DOMID,
            DomArg::Backend => xen_evtchn::DOMID_BACKEND,
            DomArg::Any(d) => d,
        }
    }
}

/// The guest's domain id in `evtchn_ops`.
const EVTCHN_DOMID: u16 = 1;

/// One step of `evtchn_ops`.
#[derive(Arbitrary, Debug)]
enum EvtchnStep {
    AllocUnbound(DomArg, DomArg),
    BindInterdomain(DomArg, PortArg),
    BindVirq(u8, u8),
    BindIpi(u8),
    BindPirq(u16, bool),
    Close(PortArg),
    Send(PortArg),
    Status(PortArg),
    BindVcpu(PortArg, u8),
    Unmask(PortArg),
    Reset,
    InitControl(GfnArg, u16, u8),
    ExpandArray(GfnArg),
    SetPriority(PortArg, u8),
    RaiseVirq(u8, u8),
    RaisePirq(u16),
    Inject(PortArg),
    List,
    Pending(Vec<PortArg>),
    BackendAllocUnbound,
    BackendBindInterdomain(PortArg),
    BackendAttach(u16),
    BackendNotifyGuest(u8),
    BackendClose(u8),
    BackendDrop(u8),
    Write(WriteAt, Vec<u8>),
    SetSharedInfo(Option<GfnArg>),
    FlipLongMode,
    SetVcpuInfo(u8, Option<AddrArg>),
    Snapshot,
}

/// Target `evtchn_ops`: up to 64 arbitrary event-channel operations, VMM
/// calls and guest writes over 4 MiB of guest memory, with 1 to 4 vCPUs
/// and a layout (shared_info frame, 32/64-bit, vcpu_info addresses,
/// possibly misaligned or outside RAM) the input changes as it goes.
///
/// Invariants: nothing panics; every error is a Xen errno; a port a bind
/// returned is never reported closed until the guest closes it (or
/// resets); a snapshot taken at any point restores, and the restored
/// channels report the same state.
pub fn evtchn_ops(data: &[u8]) {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
    use xen_abi::event_channel::EvtchnStat;
    use xen_abi::xen::Virq;
    use xen_evtchn::{BackendPort, EventChannels, GuestLayout};

    let mut u = Unstructured::new(data);
    let Ok((vcpus, shinfo, long)) = <(u8, Option<GfnArg>, bool)>::arbitrary(&mut u) else {
        return;
    };
    // Steps until the input runs out (a length-prefixed Vec of random bytes
    // would average two steps).
    let mut steps = Vec::new();
    while steps.len() < 64 && !u.is_empty() {
        let Ok(step) = EvtchnStep::arbitrary(&mut u) else {
            break;
        };
        steps.push(step);
    }
    let vcpus = u32::from(vcpus % 4) + 1;
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), EVTCHN_RAM as usize)])
        .expect("guest memory");
    // The guest layout, changed by the input mid-sequence.
    let layout = xen_evtchn::testing::layout(long, vcpus);
    *layout.shinfo.lock().unwrap() = shinfo.map(|g| g.value().wrapping_mul(4096));
    let upcall = Arc::new(xen_evtchn::testing::Recorder::default());
    let config = xen_evtchn::Config::new(EVTCHN_DOMID);
    let mut ch = EventChannels::new(config, layout.clone(), upcall.clone()).expect("config");
    let notify: Arc<dyn xen_evtchn::BackendNotify> = Arc::new(|_port: u32| {});
    // Ports binds returned and not closed since.
    let mut live: BTreeSet<u32> = BTreeSet::new();
    // Every port a bind returned, for `PortArg::Known`.
    let mut known: Vec<u32> = Vec::new();
    let mut backends: Vec<BackendPort> = Vec::new();
    let err = |e: XenErrno| assert!(e.neg() < 0 && XenErrno::try_from(e.raw()).is_ok());
    let virq = |v: u8| Virq::ALL[usize::from(v) % Virq::ALL.len()];

    for step in &steps {
        let port = |p: &PortArg| match *p {
            PortArg::Known(i) if !known.is_empty() => known[usize::from(i) % known.len()],
            PortArg::Known(i) => u32::from(i),
            PortArg::Small(p) => u32::from(p) % 4200,
            PortArg::Any(p) => p,
        };
        let bound = match step {
            EvtchnStep::AllocUnbound(dom, remote) => match ch.check_dom(dom.value()) {
                Ok(()) => Some(ch.alloc_unbound(&mem, remote.value())),
                Err(e) => {
                    err(e);
                    None
                }
            },
            EvtchnStep::BindInterdomain(dom, p) => {
                Some(ch.bind_interdomain(&mem, dom.value(), port(p)))
            }
            EvtchnStep::BindVirq(v, vcpu) => {
                Some(ch.bind_virq(&mem, u32::from(*v % 32), u32::from(*vcpu % 6)))
            }
            EvtchnStep::BindIpi(vcpu) => Some(ch.bind_ipi(&mem, u32::from(*vcpu % 6))),
            EvtchnStep::BindPirq(pirq, share) => {
                Some(ch.bind_pirq(&mem, u32::from(*pirq % 300), *share))
            }
            EvtchnStep::Close(p) => {
                let p = port(p);
                match ch.close(&mem, p) {
                    Ok(()) => {
                        live.remove(&p);
                    }
                    Err(e) => err(e),
                }
                None
            }
            EvtchnStep::Send(p) => {
                ch.send(&mem, port(p)).err().map(err);
                None
            }
            EvtchnStep::Status(p) => {
                ch.status(port(p)).err().map(err);
                None
            }
            EvtchnStep::BindVcpu(p, vcpu) => {
                ch.bind_vcpu(&mem, port(p), u32::from(*vcpu % 6))
                    .err()
                    .map(err);
                None
            }
            EvtchnStep::Unmask(p) => {
                ch.unmask(&mem, port(p)).err().map(err);
                None
            }
            EvtchnStep::Reset => {
                ch.reset(&mem);
                live.clear();
                None
            }
            EvtchnStep::InitControl(gfn, offset, vcpu) => {
                let r =
                    ch.init_control(&mem, gfn.value(), u32::from(*offset), u32::from(*vcpu % 6));
                match r {
                    Ok(bits) => assert_eq!(bits, 17),
                    Err(e) => err(e),
                }
                None
            }
            EvtchnStep::ExpandArray(gfn) => {
                ch.expand_array(&mem, gfn.value()).err().map(err);
                None
            }
            EvtchnStep::SetPriority(p, prio) => {
                ch.set_priority(port(p), u32::from(*prio % 20))
                    .err()
                    .map(err);
                None
            }
            EvtchnStep::RaiseVirq(v, vcpu) => {
                let raised = ch.raise_virq(&mem, virq(*v), u32::from(*vcpu % 6));
                assert_eq!(
                    raised,
                    ch.virq_port(virq(*v), u32::from(*vcpu % 6)).is_some()
                );
                None
            }
            EvtchnStep::RaisePirq(pirq) => {
                ch.raise_pirq(&mem, u32::from(*pirq % 300));
                None
            }
            EvtchnStep::Inject(p) => {
                ch.inject(&mem, port(p)).err().map(err);
                None
            }
            EvtchnStep::List => {
                let list = ch.list(&mem);
                assert!(list.windows(2).all(|w| w[0].port < w[1].port));
                assert!(list.iter().all(|i| i.port != 0 && i.priority <= 15));
                None
            }
            EvtchnStep::Pending(ports) => {
                let ports: Vec<u32> = ports.iter().take(8).map(port).collect();
                let any = ch.is_pending_any(&mem, &ports);
                assert_eq!(any, ports.iter().any(|&p| ch.pending(&mem, p)));
                None
            }
            EvtchnStep::BackendAllocUnbound => {
                match ch.backend_alloc_unbound(notify.clone()) {
                    Ok(b) => backends.push(b),
                    Err(e) => err(e),
                }
                None
            }
            EvtchnStep::BackendBindInterdomain(p) => {
                match ch.backend_bind_interdomain(port(p), notify.clone()) {
                    Ok(b) => backends.push(b),
                    Err(e) => err(e),
                }
                None
            }
            EvtchnStep::BackendAttach(p) => {
                match ch.backend_attach(u32::from(*p % 4200), notify.clone()) {
                    Ok(b) => backends.push(b),
                    Err(e) => err(e),
                }
                None
            }
            EvtchnStep::BackendNotifyGuest(i) => {
                if !backends.is_empty() {
                    let b = &backends[usize::from(*i) % backends.len()];
                    let _ = b.port();
                    let _ = b.guest_port();
                    b.notify_guest(&mem).err().map(err);
                }
                None
            }
            EvtchnStep::BackendClose(i) => {
                if !backends.is_empty() {
                    let b = backends.swap_remove(usize::from(*i) % backends.len());
                    b.close().err().map(err);
                }
                None
            }
            EvtchnStep::BackendDrop(i) => {
                if !backends.is_empty() {
                    drop(backends.swap_remove(usize::from(*i) % backends.len()));
                }
                None
            }
            EvtchnStep::Write(at, bytes) => {
                let sh = layout.shared_info_gpa();
                let gpa = match at {
                    WriteAt::SharedInfo(off) => sh.map(|s| s.wrapping_add(u64::from(off % 4096))),
                    WriteAt::VcpuInfo(v, off) => layout
                        .vcpu_info_gpa(u32::from(*v % 4))
                        .map(|g| g.wrapping_add(u64::from(off % 64))),
                    WriteAt::Addr(a) => Some(a.value()),
                };
                if let Some(gpa) = gpa {
                    let len = bytes.len().min(4096);
                    // Writes beyond RAM fail, as the guest's would fault.
                    let _ = mem.write_slice(&bytes[..len], GuestAddress(gpa));
                }
                None
            }
            EvtchnStep::SetSharedInfo(gfn) => {
                *layout.shinfo.lock().unwrap() = gfn.as_ref().map(|g| g.value().wrapping_mul(4096));
                None
            }
            EvtchnStep::FlipLongMode => {
                layout
                    .long
                    .fetch_xor(true, std::sync::atomic::Ordering::SeqCst);
                None
            }
            EvtchnStep::SetVcpuInfo(v, addr) => {
                let v = u32::from(*v) % vcpus;
                let mut info = layout.vcpu_info.lock().unwrap();
                match addr {
                    Some(a) => info.insert(v, a.value()),
                    None => info.remove(&v),
                };
                None
            }
            EvtchnStep::Snapshot => {
                let state = ch.state();
                let restored = EventChannels::from_state(&state, layout.clone(), upcall.clone())
                    .unwrap_or_else(|e| panic!("snapshot does not restore: {e}: {state:?}"));
                assert_eq!(restored.state(), state);
                // The devices re-attach to the restored channels.
                backends.clear();
                ch = restored;
                None
            }
        };
        match bound {
            Some(Ok(p)) => {
                assert_ne!(p, 0, "port 0 handed out");
                assert!(live.insert(p), "port {p} handed out twice");
                known.push(p);
            }
            Some(Err(e)) => err(e),
            None => {}
        }
        for &p in &live {
            if let Ok(s) = ch.status(p) {
                assert_ne!(s.state, EvtchnStat::Closed, "live port {p} reported closed");
            }
        }
    }
    let state = ch.state();
    let restored = EventChannels::from_state(&state, layout, upcall)
        .unwrap_or_else(|e| panic!("final snapshot does not restore: {e}: {state:?}"));
    assert_eq!(restored.state(), state);
}
