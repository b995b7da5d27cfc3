// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Test utilities (feature `test-utils`): an upcall injector that records
//! what the domain asked to inject, and a complete in-process domain over
//! its own RAM with a settable clock and recording services, for tests,
//! fuzz targets and benchmarks of crates built on this one.

use std::sync::{Arc, Mutex};

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};
use xen_abi::memory::{E820Entry, E820Type};
use xen_abi::xen::HypercallNr;
use xen_cpuid::XenVersion;
use xen_hypercall::testing::{IDENTITY_64, ManualClock, RAM_SIZE, Recorder};
use xen_hypercall::{Abi, DomainConfig, HcResult, Hypercall};

use crate::{Error, State, UpcallInjector, UpcallRoute, XenDomain, XenDomainBuilder};

/// Guest memory of a [`TestDomain`].
pub type Mem = GuestMemoryMmap<()>;

/// A writer whose bytes a test reads back: a console's output.
#[derive(Clone, Debug, Default)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// Everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl std::io::Write for SharedBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Records every injection, in order.
#[derive(Debug, Default)]
pub struct RecordingInjector {
    /// `(vcpu, route)` of each injection.
    pub injected: Mutex<Vec<(u32, UpcallRoute)>>,
}

impl RecordingInjector {
    /// Takes the injections recorded so far.
    pub fn take(&self) -> Vec<(u32, UpcallRoute)> {
        std::mem::take(&mut *self.injected.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl UpcallInjector for RecordingInjector {
    fn inject(&self, vcpu: u32, route: UpcallRoute) {
        self.injected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((vcpu, route));
    }
}

/// A complete domain in-process: [`RAM_SIZE`] bytes of RAM from GPA 0,
/// Xen 4.10, a [`ManualClock`], every VMM service recorded by one
/// [`Recorder`] (timers, shutdown, console, RAM backing), upcalls by a
/// [`RecordingInjector`], and vCPUs that never park (`SCHEDOP_block`
/// returns at once, as the ABI allows).
pub struct TestDomain {
    /// Guest RAM.
    pub mem: Mem,
    /// The domain.
    pub domain: Arc<XenDomain<Mem>>,
    /// Its clock.
    pub clock: Arc<ManualClock>,
    /// What it asked of the VMM.
    pub rec: Arc<Recorder>,
    /// The upcalls it injected.
    pub injector: Arc<RecordingInjector>,
}

impl TestDomain {
    /// The configuration of a test domain of `vcpus` vCPUs.
    pub fn config(vcpus: u32) -> DomainConfig {
        let map = vec![E820Entry::new(0, RAM_SIZE, E820Type::Ram)];
        DomainConfig::new(vcpus, XenVersion::V4_10, map)
    }

    /// A fresh domain of `vcpus` vCPUs.
    pub fn new(vcpus: u32) -> Self {
        Self::with(Self::config(vcpus), None).expect("a valid test domain")
    }

    /// A domain of `config`, fresh or restored from `state` (its RAM then
    /// starts zeroed: copy the saved domain's RAM in with
    /// [`TestDomain::copy_memory_from`]).
    pub fn with(config: DomainConfig, state: Option<&State>) -> Result<Self, Error> {
        Self::with_steps(config, state, |b| b)
    }

    /// Like [`TestDomain::with`], with `step` adding to the builder (a
    /// XenStore, a console, ...) after the test services.
    pub fn with_steps(
        config: DomainConfig,
        state: Option<&State>,
        step: impl FnOnce(XenDomainBuilder<Mem>) -> XenDomainBuilder<Mem>,
    ) -> Result<Self, Error> {
        let mem =
            Mem::from_ranges(&[(GuestAddress(0), RAM_SIZE as usize)]).expect("test guest memory");
        let clock = Arc::new(ManualClock::default());
        let rec = Arc::new(Recorder::default());
        let injector = Arc::new(RecordingInjector::default());
        let b = XenDomainBuilder::new(config, mem.clone())
            .clock(clock.clone())
            .timers(rec.clone())
            .events(rec.clone())
            .console(rec.clone())
            .memory_backing(rec.clone())
            .injector(injector.clone())
            .park_blocked_vcpus(false);
        let b = step(b);
        let domain = match state {
            Some(s) => b.restore(s)?,
            None => b.build()?,
        };
        Ok(Self {
            mem,
            domain: Arc::new(domain),
            clock,
            rec,
            injector,
        })
    }

    /// Copies every byte of `other`'s RAM into this domain's.
    pub fn copy_memory_from(&self, other: &TestDomain) {
        let mut page = vec![0u8; 1 << 20];
        for at in (0..RAM_SIZE).step_by(page.len()) {
            other.mem.read_slice(&mut page, GuestAddress(at)).unwrap();
            self.mem.write_slice(&page, GuestAddress(at)).unwrap();
        }
    }

    /// Makes hypercall `nr` from `vcpu` at CPL 0 with this ABI, without
    /// paging (linear = physical).
    pub fn call(&self, vcpu: u32, abi: Abi, nr: HypercallNr, args: &[u64]) -> HcResult {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        let call = Hypercall {
            abi,
            cpl: 0,
            nr: u64::from(nr.raw()),
            args: a.map(|v| abi.word(v)),
        };
        self.domain.hypercall(vcpu, IDENTITY_64, &call)
    }

    /// Writes a value at a guest-physical address.
    pub fn write<T: ByteValued>(&self, gpa: u64, v: T) {
        self.mem.write_obj(v, GuestAddress(gpa)).unwrap();
    }

    /// Reads a value at a guest-physical address.
    pub fn read<T: ByteValued>(&self, gpa: u64) -> T {
        self.mem.read_obj(GuestAddress(gpa)).unwrap()
    }
}
