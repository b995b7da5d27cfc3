// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The back end of a Xen guest's primary PV console (`hvc0` in Linux).
//!
//! The ring is `xencons_interface` (`xen-abi.md` §6.1) on a page of guest
//! memory: the guest produces into `out` (2048 bytes) and consumes from
//! `in` (1024 bytes); the indices are free-running `u32` counters. A real
//! Xen toolstack puts it on the console special page and reports it in
//! `HVM_PARAM_CONSOLE_PFN`, `HVM_PARAM_CONSOLE_EVTCHN`, grant reference 0
//! and XenStore's `console/` keys; the domain that embeds this crate does
//! the same.
//!
//! [`PvConsole::kick`] runs when the guest notifies the console's event
//! channel: it copies what the guest wrote to the VMM's writer and moves
//! queued keyboard input into `in`. [`PvConsole::input`] queues input from
//! any thread. Whenever the back end moved an index it calls the notify
//! callback, which the domain wires to the guest's event channel.
//!
//! Guest-controlled indices are never trusted. A producer more than a ring
//! ahead of its consumer is ignored (Xen's `xenconsoled` does the same)
//! with a rate-limited warning; the guest can recover by fixing its
//! indices. Input waiting for room is bounded ([`MAX_PENDING_INPUT`]).
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};
//! use xen_console::PvConsole;
//!
//! let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x2000)]).unwrap();
//! let ring = GuestAddress(0x1000);
//! let out = Arc::new(Mutex::new(Vec::new()));
//! let console = PvConsole::new(mem.clone(), ring, Box::new(SharedVec(out.clone())), Arc::new(|| {}));
//! // The guest writes "hi" at out[0..2] and moves out_prod (offset 3084) to 2.
//! mem.write_slice(b"hi", ring.unchecked_add(1024)).unwrap();
//! mem.write_obj(2u32, ring.unchecked_add(3084)).unwrap();
//! console.kick();
//! assert_eq!(&*out.lock().unwrap(), b"hi");
//!
//! struct SharedVec(Arc<Mutex<Vec<u8>>>);
//! impl std::io::Write for SharedVec {
//!     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
//!         self.0.lock().unwrap().write(b)
//!     }
//!     fn flush(&mut self) -> std::io::Result<()> {
//!         Ok(())
//!     }
//! }
//! ```

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};
use xen_abi::io::console::{
    XENCONS_IN_SIZE, XENCONS_OUT_SIZE, XenconsInterface, mask_xencons_in_idx, mask_xencons_out_idx,
};
use xen_abi::warn_limited;

/// Most input bytes kept while the guest's `in` ring is full; more are
/// dropped and counted.
pub const MAX_PENDING_INPUT: usize = 64 * 1024;

/// Offset of `out` in the ring page.
const OUT_OFFSET: u64 = XENCONS_IN_SIZE as u64;

/// What the console has moved, for the VMM's monitor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bytes the guest wrote that reached the writer.
    pub bytes_out: u64,
    /// Input bytes placed in the guest's ring.
    pub bytes_in: u64,
    /// Input bytes dropped because [`MAX_PENDING_INPUT`] were waiting.
    pub input_dropped: u64,
    /// Kicks that found indices more than a ring apart.
    pub bad_indices: u64,
    /// Writes to the VMM's writer that failed.
    pub write_errors: u64,
}

/// Saved state of a [`PvConsole`]: the input not yet in the guest's ring
/// (the ring itself is guest memory).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct State {
    /// Queued input bytes, oldest first.
    pub pending_input: Vec<u8>,
}

/// Errors of [`PvConsole::restore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateError {
    /// More queued input than [`MAX_PENDING_INPUT`].
    TooMuchInput(usize),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::TooMuchInput(n) => write!(
                f,
                "the console state queues {n} input bytes, more than {MAX_PENDING_INPUT}"
            ),
        }
    }
}

impl std::error::Error for StateError {}

#[derive(Default)]
struct AtomicCounters {
    bytes_out: AtomicU64,
    bytes_in: AtomicU64,
    input_dropped: AtomicU64,
    bad_indices: AtomicU64,
    write_errors: AtomicU64,
}

/// The back end of one PV console ring.
pub struct PvConsole<M: GuestMemory> {
    mem: M,
    ring: GuestAddress,
    writer: Mutex<Box<dyn Write + Send>>,
    input: Mutex<VecDeque<u8>>,
    notify: Arc<dyn Fn() + Send + Sync>,
    counters: AtomicCounters,
}

impl<M: GuestMemory> std::fmt::Debug for PvConsole<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PvConsole")
            .field("ring", &self.ring)
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<M: GuestMemory> PvConsole<M> {
    /// A console whose ring is the page at `ring` in `mem`, writing the
    /// guest's output to `writer` and calling `notify` to signal the guest.
    pub fn new(
        mem: M,
        ring: GuestAddress,
        writer: Box<dyn Write + Send>,
        notify: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self {
            mem,
            ring,
            writer: Mutex::new(writer),
            input: Mutex::new(VecDeque::new()),
            notify,
            counters: AtomicCounters::default(),
        }
    }

    /// The ring's guest-physical address.
    pub fn ring(&self) -> GuestAddress {
        self.ring
    }

    /// Zeroes the ring page, as a toolstack hands a new domain its console
    /// page (indices 0, connection `XENCONSOLE_CONNECTED`). `false` if the
    /// page is not guest memory.
    pub fn clear_ring(&self) -> bool {
        let page = [0u8; std::mem::size_of::<XenconsInterface>()];
        self.mem.write_slice(&page, self.ring).is_ok()
    }

    /// Services the ring: the guest's output to the writer, queued input
    /// into `in`; notifies the guest if either moved.
    pub fn kick(&self) {
        let out = self.drain_output();
        let inp = self.push_input(&mut lock(&self.input));
        if out || inp {
            (self.notify)();
        }
    }

    /// Queues keyboard input for the guest and moves what fits into its
    /// ring now. Bytes beyond [`MAX_PENDING_INPUT`] waiting are dropped.
    pub fn input(&self, bytes: &[u8]) {
        let moved = {
            let mut q = lock(&self.input);
            let room = MAX_PENDING_INPUT.saturating_sub(q.len());
            let take = bytes.len().min(room);
            q.extend(&bytes[..take]);
            let dropped = (bytes.len() - take) as u64;
            if dropped > 0 {
                self.counters
                    .input_dropped
                    .fetch_add(dropped, Ordering::Relaxed);
            }
            self.push_input(&mut q)
        };
        if moved {
            (self.notify)();
        }
    }

    /// What the console has moved so far.
    pub fn counters(&self) -> Counters {
        let c = &self.counters;
        Counters {
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            input_dropped: c.input_dropped.load(Ordering::Relaxed),
            bad_indices: c.bad_indices.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
        }
    }

    /// The console's saved state.
    pub fn state(&self) -> State {
        State {
            pending_input: lock(&self.input).iter().copied().collect(),
        }
    }

    /// Takes back a saved state (the queued input), refusing one larger
    /// than a console can hold.
    pub fn restore(&self, state: &State) -> Result<(), StateError> {
        if state.pending_input.len() > MAX_PENDING_INPUT {
            return Err(StateError::TooMuchInput(state.pending_input.len()));
        }
        *lock(&self.input) = state.pending_input.iter().copied().collect();
        Ok(())
    }

    fn index(&self, offset: usize) -> Option<u32> {
        self.mem
            .load::<u32>(self.ring.unchecked_add(offset as u64), Ordering::Acquire)
            .ok()
    }

    fn set_index(&self, offset: usize, value: u32) -> bool {
        self.mem
            .store(
                value,
                self.ring.unchecked_add(offset as u64),
                Ordering::Release,
            )
            .is_ok()
    }

    fn bad_indices(&self, ring: &str, prod: u32, cons: u32) {
        self.counters.bad_indices.fetch_add(1, Ordering::Relaxed);
        warn_limited!(
            "PV console: {ring} ring indices prod {prod:#x} cons {cons:#x} are more than a ring apart; ignored"
        );
    }

    /// Copies `out[cons..prod]` to the writer; true if `out_cons` moved.
    fn drain_output(&self) -> bool {
        let (Some(cons), Some(prod)) = (
            self.index(XenconsInterface::OUT_CONS_OFFSET),
            self.index(XenconsInterface::OUT_PROD_OFFSET),
        ) else {
            return false;
        };
        let len = prod.wrapping_sub(cons) as usize;
        if len == 0 {
            return false;
        }
        if len > XENCONS_OUT_SIZE {
            self.bad_indices("out", prod, cons);
            return false;
        }
        let mut buf = [0u8; XENCONS_OUT_SIZE];
        let start = mask_xencons_out_idx(cons);
        let first = len.min(XENCONS_OUT_SIZE - start);
        let out = self.ring.unchecked_add(OUT_OFFSET);
        let read = self
            .mem
            .read_slice(&mut buf[..first], out.unchecked_add(start as u64))
            .and_then(|()| self.mem.read_slice(&mut buf[first..len], out));
        if read.is_err() {
            return false;
        }
        {
            let mut w = lock(&self.writer);
            if w.write_all(&buf[..len]).and_then(|()| w.flush()).is_err() {
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.counters
            .bytes_out
            .fetch_add(len as u64, Ordering::Relaxed);
        self.set_index(XenconsInterface::OUT_CONS_OFFSET, prod)
    }

    /// Moves queued input into `in`; true if `in_prod` moved.
    fn push_input(&self, q: &mut VecDeque<u8>) -> bool {
        if q.is_empty() {
            return false;
        }
        let (Some(cons), Some(prod)) = (
            self.index(XenconsInterface::IN_CONS_OFFSET),
            self.index(XenconsInterface::IN_PROD_OFFSET),
        ) else {
            return false;
        };
        let used = prod.wrapping_sub(cons) as usize;
        if used > XENCONS_IN_SIZE {
            self.bad_indices("in", prod, cons);
            return false;
        }
        let n = (XENCONS_IN_SIZE - used).min(q.len());
        if n == 0 {
            return false;
        }
        for (i, byte) in q.drain(..n).enumerate() {
            let at = mask_xencons_in_idx(prod.wrapping_add(i as u32));
            if self
                .mem
                .write_obj(byte, self.ring.unchecked_add(at as u64))
                .is_err()
            {
                return false;
            }
        }
        self.counters
            .bytes_in
            .fetch_add(n as u64, Ordering::Relaxed);
        self.set_index(
            XenconsInterface::IN_PROD_OFFSET,
            prod.wrapping_add(n as u32),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use vm_memory::GuestMemoryMmap;

    use super::*;

    const RING: GuestAddress = GuestAddress(0x1000);

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("closed"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Fx {
        mem: GuestMemoryMmap,
        out: Sink,
        notified: Arc<AtomicU32>,
        con: PvConsole<GuestMemoryMmap>,
    }

    fn fx_with(ring: GuestAddress, writer: Option<Box<dyn Write + Send>>) -> Fx {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x2000)]).unwrap();
        let out = Sink::default();
        let notified = Arc::new(AtomicU32::new(0));
        let n = notified.clone();
        let con = PvConsole::new(
            mem.clone(),
            ring,
            writer.unwrap_or_else(|| Box::new(out.clone())),
            Arc::new(move || {
                n.fetch_add(1, Ordering::Relaxed);
            }),
        );
        Fx {
            mem,
            out,
            notified,
            con,
        }
    }

    fn fx() -> Fx {
        fx_with(RING, None)
    }

    impl Fx {
        fn idx(&self, off: usize) -> u32 {
            self.mem.read_obj(RING.unchecked_add(off as u64)).unwrap()
        }
        fn set_idx(&self, off: usize, v: u32) {
            self.mem
                .write_obj(v, RING.unchecked_add(off as u64))
                .unwrap();
        }
        /// The guest's side: writes `s` at `out_prod` and advances it.
        fn guest_write(&self, s: &[u8]) {
            let prod = self.idx(XenconsInterface::OUT_PROD_OFFSET);
            for (i, b) in s.iter().enumerate() {
                let at = mask_xencons_out_idx(prod.wrapping_add(i as u32)) as u64;
                self.mem
                    .write_obj(*b, RING.unchecked_add(OUT_OFFSET + at))
                    .unwrap();
            }
            self.set_idx(
                XenconsInterface::OUT_PROD_OFFSET,
                prod.wrapping_add(s.len() as u32),
            );
        }
        /// The guest's side: takes everything in `in`.
        fn guest_read(&self) -> Vec<u8> {
            let cons = self.idx(XenconsInterface::IN_CONS_OFFSET);
            let prod = self.idx(XenconsInterface::IN_PROD_OFFSET);
            let v = (0..prod.wrapping_sub(cons))
                .map(|i| {
                    let at = mask_xencons_in_idx(cons.wrapping_add(i)) as u64;
                    self.mem.read_obj(RING.unchecked_add(at)).unwrap()
                })
                .collect();
            self.set_idx(XenconsInterface::IN_CONS_OFFSET, prod);
            v
        }
        fn out(&self) -> Vec<u8> {
            lock(&self.out.0).clone()
        }
        fn notified(&self) -> u32 {
            self.notified.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn test_output_reaches_writer_and_consumer_moves() {
        let f = fx();
        f.guest_write(b"hello, ");
        f.guest_write(b"world\n");
        f.con.kick();
        assert_eq!(f.out(), b"hello, world\n");
        assert_eq!(f.idx(XenconsInterface::OUT_CONS_OFFSET), 13);
        assert_eq!(f.notified(), 1);
        // Nothing new: no notification.
        f.con.kick();
        assert_eq!(f.notified(), 1);
        assert_eq!(f.con.counters().bytes_out, 13);
    }

    #[test]
    fn test_output_wraps_around_the_ring_and_the_u32_indices() {
        let f = fx();
        let start = u32::MAX - 5;
        f.set_idx(XenconsInterface::OUT_CONS_OFFSET, start);
        f.set_idx(XenconsInterface::OUT_PROD_OFFSET, start);
        let text: Vec<u8> = (0..2048u32).map(|i| (i % 251) as u8).collect();
        f.guest_write(&text);
        f.con.kick();
        assert_eq!(f.out(), text, "a full ring, wrapped");
        assert_eq!(
            f.idx(XenconsInterface::OUT_CONS_OFFSET),
            start.wrapping_add(2048)
        );
    }

    #[test]
    fn test_output_more_than_a_ring_ahead_is_ignored_until_fixed() {
        let f = fx();
        f.set_idx(XenconsInterface::OUT_PROD_OFFSET, 2049);
        f.con.kick();
        assert!(f.out().is_empty());
        assert_eq!(f.idx(XenconsInterface::OUT_CONS_OFFSET), 0);
        assert_eq!(f.con.counters().bad_indices, 1);
        assert_eq!(f.notified(), 0);
        // A producer behind the consumer is the same: more than a ring.
        f.set_idx(XenconsInterface::OUT_PROD_OFFSET, u32::MAX);
        f.con.kick();
        assert_eq!(f.con.counters().bad_indices, 2);
        // The guest fixes its index and carries on.
        f.set_idx(XenconsInterface::OUT_PROD_OFFSET, 0);
        f.guest_write(b"ok");
        f.con.kick();
        assert_eq!(f.out(), b"ok");
    }

    #[test]
    fn test_input_fills_ring_then_waits_for_room() {
        let f = fx();
        let data: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
        f.con.input(&data);
        assert_eq!(f.notified(), 1);
        let first = f.guest_read();
        assert_eq!(first, &data[..1024], "a full ring, no more");
        assert_eq!(f.con.state().pending_input, &data[1024..]);
        // The guest made room and notifies: the rest moves.
        f.con.kick();
        assert_eq!(f.guest_read(), &data[1024..]);
        assert_eq!(f.notified(), 2);
        assert_eq!(f.con.counters().bytes_in, 1500);
    }

    #[test]
    fn test_input_beyond_the_queue_limit_is_dropped_and_counted() {
        let f = fx();
        // The guest never reads: the ring fills, then the queue.
        f.con.input(&[b'r'; 1024]);
        assert!(f.con.state().pending_input.is_empty());
        f.con.input(&vec![b'x'; MAX_PENDING_INPUT + 10]);
        assert_eq!(f.con.state().pending_input.len(), MAX_PENDING_INPUT);
        assert_eq!(f.con.counters().input_dropped, 10);
    }

    #[test]
    fn test_input_with_hostile_indices_is_kept_not_written() {
        let f = fx();
        f.set_idx(XenconsInterface::IN_PROD_OFFSET, 5000);
        f.con.input(b"abc");
        assert_eq!(f.con.state().pending_input, b"abc");
        assert_eq!(f.con.counters().bad_indices, 1);
        assert_eq!(f.idx(XenconsInterface::IN_PROD_OFFSET), 5000);
        assert_eq!(f.notified(), 0);
    }

    #[test]
    fn test_ring_outside_guest_memory_does_nothing() {
        let f = fx_with(GuestAddress(0x1_0000), None);
        f.con.input(b"abc");
        f.con.kick();
        assert!(!f.con.clear_ring());
        assert_eq!(f.notified(), 0);
        // Half the page in memory: the indices are not.
        let f = fx_with(GuestAddress(0x1800), None);
        f.con.kick();
        assert_eq!(f.notified(), 0);
    }

    #[test]
    fn test_writer_errors_are_counted_and_ring_still_drains() {
        let f = fx_with(RING, Some(Box::new(Broken)));
        f.guest_write(b"lost");
        f.con.kick();
        assert_eq!(f.con.counters().write_errors, 1);
        assert_eq!(f.idx(XenconsInterface::OUT_CONS_OFFSET), 4);
    }

    #[test]
    fn test_clear_ring_zeroes_indices_and_data() {
        let f = fx();
        f.guest_write(b"old");
        f.set_idx(XenconsInterface::IN_CONS_OFFSET, 77);
        assert!(f.con.clear_ring());
        for off in [
            XenconsInterface::IN_CONS_OFFSET,
            XenconsInterface::IN_PROD_OFFSET,
            XenconsInterface::OUT_CONS_OFFSET,
            XenconsInterface::OUT_PROD_OFFSET,
        ] {
            assert_eq!(f.idx(off), 0);
        }
        let c: u8 = f
            .mem
            .read_obj(RING.unchecked_add(XenconsInterface::CONNECTION_OFFSET as u64))
            .unwrap();
        assert_eq!(c, 0, "XENCONSOLE_CONNECTED");
    }

    #[test]
    fn test_state_round_trips_and_refuses_oversize() {
        let f = fx();
        f.set_idx(XenconsInterface::IN_PROD_OFFSET, 1024);
        f.con.input(b"queued");
        let s = f.con.state();
        assert_eq!(s.pending_input, b"queued");
        let g = fx();
        g.con.restore(&s).unwrap();
        g.con.kick();
        assert_eq!(g.guest_read(), b"queued");
        let big = State {
            pending_input: vec![0; MAX_PENDING_INPUT + 1],
        };
        assert_eq!(
            g.con.restore(&big),
            Err(StateError::TooMuchInput(MAX_PENDING_INPUT + 1))
        );
    }
}
