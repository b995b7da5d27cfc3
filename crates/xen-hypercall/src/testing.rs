// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Test utilities (feature `test-utils`): an in-process VM with guest RAM,
//! a domain, a dispatcher, a settable clock and an environment that
//! records what the hypercalls asked of the VMM.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};
use xen_abi::memory::{E820Entry, E820Type};
use xen_abi::sched::ShutdownReason;
use xen_abi::xen::HypercallNr;

use crate::call::{Abi, HcResult, Hypercall};
use crate::dispatch::Dispatcher;
use crate::domain::{Domain, DomainConfig};
use crate::env::{Clock, Console, DomainEvents, Env, MemoryBacking, Timers};
use crate::guest::{GuestVirt, PagingRegs};

/// Guest memory type of the test VM.
pub type Mem = GuestMemoryMmap<()>;

/// RAM of the test VM.
pub const RAM_SIZE: u64 = 64 << 20;

/// Both ABIs, for tests that run every case in each.
pub const ABIS: [Abi; 2] = [Abi::X86_64, Abi::X86_32];
/// A scratch guest address tests put arguments at (1 MiB, in RAM).
pub const BUF: u64 = 0x10_0000;
/// A guest address beyond RAM: any access to it faults.
pub const BAD: u64 = 0xffff_f000;

/// Paging registers for "no paging, 64-bit": linear = physical.
pub const IDENTITY_64: PagingRegs = PagingRegs {
    cr0: 0x11,
    cr3: 0,
    cr4: 0,
    efer: 0x500,
};

/// A clock the test sets by hand.
#[derive(Debug, Default)]
pub struct ManualClock {
    /// System time in ns.
    pub now: AtomicU64,
    /// Guest TSC; frequency is [`ManualClock::TSC_KHZ`].
    pub tsc: AtomicU64,
}

impl ManualClock {
    /// Guest TSC frequency the clock reports.
    pub const TSC_KHZ: u32 = 2_000_000;
    /// Wall-clock time at system time 0.
    pub const WALL_AT_ZERO: (u64, u32) = (1_700_000_000, 123_456_789);

    /// Sets system time.
    pub fn set(&self, ns: u64) {
        self.now.store(ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn system_time_ns(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }

    fn wallclock_at_zero(&self) -> (u64, u32) {
        Self::WALL_AT_ZERO
    }

    fn guest_tsc(&self, _vcpu: u32) -> Option<(u64, u32)> {
        Some((self.tsc.load(Ordering::SeqCst), Self::TSC_KHZ))
    }
}

/// Something the hypercalls asked of the VMM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `Timers::set_singleshot`.
    Singleshot(u32, Option<u64>),
    /// `Timers::set_periodic`.
    Periodic(u32, Option<u64>),
    /// `Timers::set_watchdog`.
    Watchdog(Option<u64>),
    /// `DomainEvents::shutdown`.
    Shutdown(ShutdownReason, Option<u32>),
    /// `DomainEvents::yield_vcpu`.
    Yield(u32),
    /// `DomainEvents::block`.
    Block(u32, Option<u64>),
    /// `Console::write`.
    Console(Vec<u8>),
    /// `MemoryBacking::remove`.
    Remove(u64, u64),
    /// `MemoryBacking::add`.
    Add(u64, u64),
}

/// Records every request; console input comes from `input`.
#[derive(Debug, Default)]
pub struct Recorder {
    /// What was asked, in order.
    pub events: Mutex<Vec<Event>>,
    /// Bytes `Console::read` hands out.
    pub input: Mutex<Vec<u8>>,
    /// When set, `MemoryBacking` refuses.
    pub refuse_backing: std::sync::atomic::AtomicBool,
}

impl Recorder {
    /// An environment whose timers, events, console and backing all record
    /// into this recorder, with `clock` as its clock.
    pub fn env(self: &Arc<Self>, clock: Arc<dyn Clock>) -> Env {
        Env {
            clock,
            timers: self.clone(),
            events: self.clone(),
            console: self.clone(),
            backing: self.clone(),
        }
    }

    fn push(&self, e: Event) {
        self.events.lock().unwrap().push(e);
    }

    /// Takes the recorded events.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

impl Timers for Recorder {
    fn set_singleshot(&self, vcpu: u32, deadline_ns: Option<u64>) {
        self.push(Event::Singleshot(vcpu, deadline_ns));
    }
    fn set_periodic(&self, vcpu: u32, period_ns: Option<u64>) {
        self.push(Event::Periodic(vcpu, period_ns));
    }
    fn set_watchdog(&self, deadline_ns: Option<u64>) {
        self.push(Event::Watchdog(deadline_ns));
    }
}

impl DomainEvents for Recorder {
    fn shutdown(&self, reason: ShutdownReason, code: Option<u32>) {
        self.push(Event::Shutdown(reason, code));
    }
    fn yield_vcpu(&self, vcpu: u32) {
        self.push(Event::Yield(vcpu));
    }
    fn block(&self, vcpu: u32, deadline_ns: Option<u64>) {
        self.push(Event::Block(vcpu, deadline_ns));
    }
}

impl Console for Recorder {
    fn write(&self, bytes: &[u8]) {
        self.push(Event::Console(bytes.to_vec()));
    }
    fn read(&self, buf: &mut [u8]) -> usize {
        let mut input = self.input.lock().unwrap();
        let n = buf.len().min(input.len());
        buf[..n].copy_from_slice(&input[..n]);
        input.drain(..n);
        n
    }
}

impl MemoryBacking for Recorder {
    fn remove(&self, gfn: u64, count: u64) -> bool {
        self.push(Event::Remove(gfn, count));
        !self.refuse_backing.load(Ordering::SeqCst)
    }
    fn add(&self, gfn: u64, count: u64) -> bool {
        self.push(Event::Add(gfn, count));
        !self.refuse_backing.load(Ordering::SeqCst)
    }
}

/// An in-process VM for hypercall unit tests.
pub struct TestVm {
    /// Guest RAM: [`RAM_SIZE`] bytes from GPA 0.
    pub mem: Mem,
    /// The domain (config from [`DomainConfig::new`], memory map = RAM).
    pub domain: Arc<Domain>,
    /// An empty dispatcher; tests register the families they test.
    pub dispatcher: Dispatcher<Mem>,
    /// The clock in `domain.env`.
    pub clock: Arc<ManualClock>,
    /// The recorder behind every other trait in `domain.env`.
    pub rec: Arc<Recorder>,
    /// Where event channels made over this VM's domain raise upcalls.
    pub upcalls: Arc<xen_evtchn::testing::Recorder>,
    /// Paging registers calls are made with (default: [`IDENTITY_64`]).
    pub paging: PagingRegs,
}

impl TestVm {
    /// A VM with `vcpus` vCPUs claiming Xen 4.10.
    pub fn new(vcpus: u32) -> Self {
        let map = vec![E820Entry::new(0, RAM_SIZE, E820Type::Ram)];
        Self::with_config(DomainConfig::new(vcpus, xen_cpuid::XenVersion::V4_10, map))
    }

    /// A VM with this domain configuration.
    pub fn with_config(config: DomainConfig) -> Self {
        let mem = Mem::from_ranges(&[(GuestAddress(0), RAM_SIZE as usize)]).unwrap();
        let clock = Arc::new(ManualClock::default());
        let rec = Arc::new(Recorder::default());
        let env = rec.env(clock.clone());
        Self {
            mem,
            domain: Arc::new(Domain::new(config, env)),
            dispatcher: Dispatcher::empty(),
            clock,
            rec,
            upcalls: Arc::default(),
            paging: IDENTITY_64,
        }
    }

    /// The vCPUs whose upcall was raised since the last call, in order.
    pub fn take_upcalls(&self) -> Vec<u32> {
        std::mem::take(&mut *self.upcalls.upcalls.lock().unwrap())
    }

    /// Makes hypercall `nr` from `vcpu` at CPL 0 with this ABI.
    pub fn call(&self, vcpu: u32, abi: Abi, nr: HypercallNr, args: &[u64]) -> HcResult {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        self.call_raw(
            vcpu,
            &Hypercall {
                abi,
                cpl: 0,
                nr: u64::from(nr.raw()),
                args: a,
            },
        )
    }

    /// Makes any hypercall.
    pub fn call_raw(&self, vcpu: u32, call: &Hypercall) -> HcResult {
        let gv = GuestVirt::new(&self.mem, self.paging);
        self.dispatcher.dispatch(&self.domain, vcpu, &gv, call)
    }

    /// Writes a value at a guest-physical address.
    pub fn write<T: ByteValued>(&self, gpa: u64, v: T) {
        self.mem.write_obj(v, GuestAddress(gpa)).unwrap();
    }

    /// Reads a value at a guest-physical address.
    pub fn read<T: ByteValued>(&self, gpa: u64) -> T {
        self.mem.read_obj(GuestAddress(gpa)).unwrap()
    }

    /// Writes bytes at a guest-physical address.
    pub fn write_bytes(&self, gpa: u64, b: &[u8]) {
        self.mem.write_slice(b, GuestAddress(gpa)).unwrap();
    }

    /// Reads bytes at a guest-physical address.
    pub fn read_bytes(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, GuestAddress(gpa)).unwrap();
        v
    }
}
