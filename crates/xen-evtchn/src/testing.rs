// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Test utilities (feature `test-utils`): a guest layout whose answers a
//! test changes, an upcall recorder, and a fixture with guest RAM and
//! event channels plus the guest's side of the 2-level bits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::{Config, EventChannels, GuestLayout, Upcall};

/// shared_info placement used by the tests.
pub const SHINFO: u64 = 0x1000;
/// Size of test RAM.
pub const RAM: usize = 4 << 20;

/// A [`GuestLayout`] whose answers tests can change.
pub struct TestLayout {
    /// GPA of shared_info.
    pub shinfo: Mutex<Option<u64>>,
    /// The latched layout.
    pub long: AtomicBool,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Registered vcpu_info GPAs (others use their shared_info slot).
    pub vcpu_info: Mutex<HashMap<u32, u64>>,
}

impl GuestLayout for TestLayout {
    fn shared_info_gpa(&self) -> Option<u64> {
        *self.shinfo.lock().unwrap()
    }
    fn long_mode(&self) -> bool {
        self.long.load(Ordering::SeqCst)
    }
    fn vcpu_info_gpa(&self, vcpu: u32) -> Option<u64> {
        if let Some(&gpa) = self.vcpu_info.lock().unwrap().get(&vcpu) {
            return Some(gpa);
        }
        let sh = self.shared_info_gpa()?;
        (vcpu < 32).then(|| sh + 64 * u64::from(vcpu))
    }
    fn vcpus(&self) -> u32 {
        self.vcpus
    }
}

/// Records upcalls and raised ports.
#[derive(Default)]
pub struct Recorder {
    /// vCPUs whose upcall was raised, in order.
    pub upcalls: Mutex<Vec<u32>>,
    /// Ports that newly became pending, in order.
    pub raised: Mutex<Vec<u32>>,
}

impl Upcall for Recorder {
    fn raise(&self, vcpu: u32) {
        self.upcalls.lock().unwrap().push(vcpu);
    }
    fn port_raised(&self, port: u32) {
        self.raised.lock().unwrap().push(port);
    }
}

/// Guest memory, layout, recorder and event channels.
pub struct Fx {
    /// Guest RAM ([`RAM`] bytes).
    pub mem: GuestMemoryMmap<()>,
    /// The layout (shared_info at [`SHINFO`]).
    pub layout: Arc<TestLayout>,
    /// The upcall recorder.
    pub rec: Arc<Recorder>,
    /// The event channels.
    pub ev: EventChannels,
}

/// A layout with shared_info at [`SHINFO`], `vcpus` vCPUs and the given
/// latched layout.
pub fn layout(long: bool, vcpus: u32) -> Arc<TestLayout> {
    Arc::new(TestLayout {
        shinfo: Mutex::new(Some(SHINFO)),
        long: AtomicBool::new(long),
        vcpus,
        vcpu_info: Mutex::new(HashMap::new()),
    })
}

/// A fixture with the given layout and configuration.
pub fn fx_with(long: bool, vcpus: u32, config: Config) -> Fx {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
    let layout = layout(long, vcpus);
    let rec = Arc::new(Recorder::default());
    let ev = EventChannels::new(config, layout.clone(), rec.clone()).unwrap();
    Fx {
        mem,
        layout,
        rec,
        ev,
    }
}

/// 64-bit layout, 4 vCPUs, domain 1.
pub fn fx() -> Fx {
    fx_with(true, 4, Config::new(1))
}

impl Fx {
    fn bits(&self) -> u32 {
        if self.layout.long_mode() { 64 } else { 32 }
    }

    fn bit(&self, base: u64, nr: u32) -> bool {
        let w = self.bits();
        let gpa = GuestAddress(base + u64::from(nr / w) * u64::from(w / 8));
        let word: u64 = if w == 64 {
            self.mem.read_obj::<u64>(gpa).unwrap()
        } else {
            u64::from(self.mem.read_obj::<u32>(gpa).unwrap())
        };
        word & (1 << (nr % w)) != 0
    }

    fn set_bit(&self, base: u64, nr: u32, on: bool) {
        let w = self.bits();
        let gpa = GuestAddress(base + u64::from(nr / w) * u64::from(w / 8));
        let mask = 1u64 << (nr % w);
        if w == 64 {
            let v = self.mem.read_obj::<u64>(gpa).unwrap();
            let v = if on { v | mask } else { v & !mask };
            self.mem.write_obj(v, gpa).unwrap();
        } else {
            let v = u64::from(self.mem.read_obj::<u32>(gpa).unwrap());
            let v = if on { v | mask } else { v & !mask };
            self.mem.write_obj(v as u32, gpa).unwrap();
        }
    }

    fn mask_base(&self) -> u64 {
        SHINFO + if self.layout.long_mode() { 2560 } else { 2176 }
    }

    fn sel_base(&self, vcpu: u32) -> u64 {
        self.layout.vcpu_info_gpa(vcpu).unwrap() + if self.layout.long_mode() { 8 } else { 4 }
    }

    /// The 2-level pending bit of `port`.
    pub fn pending_bit(&self, port: u32) -> bool {
        self.bit(SHINFO + 2048, port)
    }

    /// The 2-level mask bit of `port`.
    pub fn mask_bit(&self, port: u32) -> bool {
        self.bit(self.mask_base(), port)
    }

    /// Sets or clears the mask bit as the guest would.
    pub fn guest_mask(&self, port: u32, on: bool) {
        self.set_bit(self.mask_base(), port, on);
    }

    /// Clears the pending bit as the guest would.
    pub fn guest_clear_pending(&self, port: u32) {
        self.set_bit(SHINFO + 2048, port, false);
    }

    /// Selector bit `word` of `vcpu`.
    pub fn sel_bit(&self, vcpu: u32, word: u32) -> bool {
        self.bit(self.sel_base(vcpu), word)
    }

    /// Clears the whole selector of `vcpu`, as the guest's xchg does.
    pub fn guest_clear_sel(&self, vcpu: u32) {
        let gpa = GuestAddress(self.sel_base(vcpu));
        if self.layout.long_mode() {
            self.mem.write_obj(0u64, gpa).unwrap();
        } else {
            self.mem.write_obj(0u32, gpa).unwrap();
        }
    }

    /// `evtchn_upcall_pending` of `vcpu`.
    pub fn upcall_pending(&self, vcpu: u32) -> u8 {
        let gpa = self.layout.vcpu_info_gpa(vcpu).unwrap();
        self.mem.read_obj(GuestAddress(gpa)).unwrap()
    }

    /// Clears `evtchn_upcall_pending` of `vcpu`.
    pub fn guest_clear_upcall(&self, vcpu: u32) {
        let gpa = self.layout.vcpu_info_gpa(vcpu).unwrap();
        self.mem.write_obj(0u8, GuestAddress(gpa)).unwrap();
    }

    /// Upcalls recorded so far (and forgets them).
    pub fn take_upcalls(&self) -> Vec<u32> {
        std::mem::take(&mut *self.rec.upcalls.lock().unwrap())
    }

    /// Reads a 32-bit word.
    pub fn read_u32(&self, gpa: u64) -> u32 {
        self.mem.read_obj(GuestAddress(gpa)).unwrap()
    }

    /// Writes a 32-bit word.
    pub fn write_u32(&self, gpa: u64, v: u32) {
        self.mem.write_obj(v, GuestAddress(gpa)).unwrap()
    }
}
