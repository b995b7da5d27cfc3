// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `console_io` (hypercall 18):
//! `console_io(unsigned int cmd, unsigned int count, char *buf)`.
//!
//! Mirrors `do_console_io` and `guest_console_write` in
//! `xen/drivers/char/console.c` (commands from `xen/include/public/xen.h`,
//! `xen-abi.md` §1.3). Output goes to the VMM's
//! [`Console::write`](crate::env::Console::write), input comes from
//! [`Console::read`](crate::env::Console::read).
//!
//! * `CONSOLEIO_write` copies the guest buffer in chunks of
//!   [`CONSOLE_CHUNK`] bytes, handing each to the sink as it is read, and
//!   returns 0 as Xen does. A fault returns `-EFAULT` after the chunks
//!   already read were written, also as Xen does. Xen processes any length
//!   with preemption and continuations; we stop after
//!   [`CONSOLE_WRITE_MAX`] bytes per call (the rest is dropped, still
//!   returning 0, with a rate-limited warning) so that one call cannot hold
//!   a vCPU thread for long.
//! * `CONSOLEIO_read` returns the number of bytes read (0 when no input is
//!   pending), at most `count` and at most [`CONSOLE_READ_MAX`] per call.
//!   A `count` above `INT_MAX` gets `-E2BIG`. The first byte of the buffer
//!   is checked to be writable before input is taken, so a bad pointer gets
//!   `-EFAULT` without losing input; a fault further into the buffer loses
//!   the bytes read by that call (Xen keeps them in its ring).
//! * Other commands get `-ENOSYS`. Only the low 32 bits of `cmd` and
//!   `count` count (C `unsigned int`).
//!
//! Differences: QEMU does not implement `console_io` (`-ENOSYS`). Xen's
//! default XSM policy refuses it to a domU with `-EPERM` (debug builds
//! allow `CONSOLEIO_write`), and for a domU strips non-printable characters
//! and prefixes each line with the domain id. We allow both commands and
//! pass the bytes through unchanged: it is the only output some test guests
//! have. A VMM wanting Xen's refusal registers
//! [`Refuse`](crate::dispatch::Refuse)`(EPERM)` for this hypercall instead.

use vm_memory::GuestMemoryBackend;
use xen_abi::errno::XenErrno;
use xen_abi::xen::ConsoleIoCmd;

use crate::call::{HcResult, Hypercall};
use crate::dispatch::{Ctx, Family};
use crate::guest::Access;
use xen_abi::warn_limited;

/// Most bytes one `CONSOLEIO_write` hands to the console; the rest of a
/// longer buffer is dropped.
pub const CONSOLE_WRITE_MAX: usize = 16 << 10;
/// Bytes copied from the guest, and handed to the console, at a time.
pub const CONSOLE_CHUNK: usize = 1 << 10;
/// Most bytes one `CONSOLEIO_read` returns.
pub const CONSOLE_READ_MAX: usize = 4 << 10;

/// The `console_io` family.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConsoleIo;

impl ConsoleIo {
    /// The family.
    pub fn new() -> Self {
        Self
    }

    fn write<M: GuestMemoryBackend>(ctx: &Ctx<'_, M>, count: u32, buf: u64) -> HcResult {
        let count = count as usize;
        if count > CONSOLE_WRITE_MAX {
            warn_limited!(
                "vCPU {}: CONSOLEIO_write of {count} bytes cut to {CONSOLE_WRITE_MAX}",
                ctx.vcpu
            );
        }
        let total = count.min(CONSOLE_WRITE_MAX);
        let mut chunk = [0u8; CONSOLE_CHUNK];
        let mut done = 0;
        while done < total {
            let n = (total - done).min(CONSOLE_CHUNK);
            // `done` is below 16 KiB; a 64-bit buffer may not wrap.
            let addr = buf.checked_add(done as u64).ok_or(XenErrno::EFAULT)?;
            ctx.read_bytes(ctx.abi.word(addr), &mut chunk[..n])?;
            ctx.domain.env.console.write(&chunk[..n]);
            done += n;
        }
        Ok(0)
    }

    fn read<M: GuestMemoryBackend>(ctx: &Ctx<'_, M>, count: u32, buf: u64) -> HcResult {
        // The result is a count or a negative errno: keep them apart.
        if count > i32::MAX as u32 {
            return Err(XenErrno::E2BIG);
        }
        if count == 0 {
            return Ok(0);
        }
        ctx.mem.translate_area(buf, 1, Access::Write).map_err(|f| {
            warn_limited!("vCPU {}: CONSOLEIO_read buffer at {buf:#x}: {f}", ctx.vcpu);
            XenErrno::EFAULT
        })?;
        let mut data = [0u8; CONSOLE_READ_MAX];
        let want = (count as usize).min(CONSOLE_READ_MAX);
        let got = ctx.domain.env.console.read(&mut data[..want]).min(want);
        if got > 0 {
            ctx.write_bytes(buf, &data[..got])?;
        }
        Ok(got as u64)
    }
}

impl<M: GuestMemoryBackend> Family<M> for ConsoleIo {
    fn call(&self, ctx: &mut Ctx<'_, M>, call: &Hypercall) -> HcResult {
        let raw = call.arg(0) as u32;
        let count = call.arg(1) as u32;
        let buf = ctx.abi.word(call.arg(2));
        match ConsoleIoCmd::try_from(raw) {
            Ok(ConsoleIoCmd::Write) => Self::write(ctx, count, buf),
            Ok(ConsoleIoCmd::Read) => Self::read(ctx, count, buf),
            Err(_) => {
                warn_limited!("vCPU {}: unknown console_io command {raw}", ctx.vcpu);
                Err(XenErrno::ENOSYS)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use xen_abi::xen::HypercallNr;

    use super::*;
    use crate::call::Abi;
    use crate::testing::{ABIS, BAD, BUF};
    use crate::testing::{Event, RAM_SIZE, TestVm};

    const WRITE: u64 = 0;
    const READ: u64 = 1;

    fn vm() -> TestVm {
        let mut vm = TestVm::new(1);
        vm.dispatcher
            .register(HypercallNr::ConsoleIo, Arc::new(ConsoleIo::new()));
        vm
    }

    fn cio(vm: &TestVm, abi: Abi, cmd: u64, count: u64, buf: u64) -> HcResult {
        vm.call(0, abi, HypercallNr::ConsoleIo, &[cmd, count, buf])
    }

    /// Everything written to the console, and the size of each write.
    fn output(vm: &TestVm) -> (Vec<u8>, Vec<usize>) {
        let mut all = Vec::new();
        let mut sizes = Vec::new();
        for e in vm.rec.take() {
            let Event::Console(b) = e else {
                panic!("unexpected event {e:?}");
            };
            sizes.push(b.len());
            all.extend(b);
        }
        (all, sizes)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn test_console_write_short_buffer_delivered_returns_zero() {
        let vm = vm();
        for abi in ABIS {
            vm.write_bytes(BUF, b"hello, xen\n");
            assert_eq!(cio(&vm, abi, WRITE, 11, BUF), Ok(0));
            assert_eq!(output(&vm), (b"hello, xen\n".to_vec(), vec![11]));
        }
    }

    #[test]
    fn test_console_write_passes_bytes_through_unchanged() {
        let vm = vm();
        let data = [0u8, 0x1b, b'[', b'm', 0xff, b'\r', b'\n'];
        vm.write_bytes(BUF, &data);
        assert_eq!(cio(&vm, Abi::X86_64, WRITE, data.len() as u64, BUF), Ok(0));
        assert_eq!(output(&vm).0, data);
    }

    #[test]
    fn test_console_write_long_buffer_delivered_in_chunks() {
        let vm = vm();
        let data = pattern(2 * CONSOLE_CHUNK + 512);
        vm.write_bytes(BUF, &data);
        assert_eq!(cio(&vm, Abi::X86_64, WRITE, data.len() as u64, BUF), Ok(0));
        assert_eq!(output(&vm), (data, vec![CONSOLE_CHUNK, CONSOLE_CHUNK, 512]));
    }

    #[test]
    fn test_console_write_zero_count_returns_zero_without_output() {
        let vm = vm();
        assert_eq!(cio(&vm, Abi::X86_64, WRITE, 0, BAD), Ok(0));
        assert_eq!(vm.rec.take(), vec![]);
    }

    #[test]
    fn test_console_write_over_cap_truncated_returns_zero() {
        let vm = vm();
        let data = pattern(CONSOLE_WRITE_MAX + 4096);
        vm.write_bytes(BUF, &data);
        for count in [data.len() as u64, u64::from(u32::MAX)] {
            assert_eq!(cio(&vm, Abi::X86_64, WRITE, count, BUF), Ok(0));
            assert_eq!(output(&vm).0, &data[..CONSOLE_WRITE_MAX]);
        }
    }

    #[test]
    fn test_console_write_count_upper_bits_ignored() {
        let vm = vm();
        vm.write_bytes(BUF, b"abc");
        assert_eq!(
            cio(&vm, Abi::X86_64, WRITE | 1 << 32, 1 << 32 | 3, BUF),
            Ok(0)
        );
        assert_eq!(output(&vm).0, b"abc");
    }

    #[test]
    fn test_console_write_bad_pointer_returns_efault() {
        let vm = vm();
        for abi in ABIS {
            assert_eq!(cio(&vm, abi, WRITE, 4, BAD), Err(XenErrno::EFAULT));
            assert_eq!(vm.rec.take(), vec![]);
        }
    }

    #[test]
    fn test_console_write_fault_midway_keeps_earlier_chunks() {
        let vm = vm();
        let at = RAM_SIZE - CONSOLE_CHUNK as u64 - 10;
        let data = pattern(CONSOLE_CHUNK + 10);
        vm.write_bytes(at, &data);
        assert_eq!(
            cio(&vm, Abi::X86_64, WRITE, 3000, at),
            Err(XenErrno::EFAULT)
        );
        assert_eq!(
            output(&vm),
            (data[..CONSOLE_CHUNK].to_vec(), vec![CONSOLE_CHUNK])
        );
    }

    #[test]
    fn test_console_read_pending_input_returns_count() {
        let vm = vm();
        for abi in ABIS {
            vm.rec.input.lock().unwrap().extend_from_slice(b"hello");
            vm.write_bytes(BUF, &[0xaa; 8]);
            assert_eq!(cio(&vm, abi, READ, 8, BUF), Ok(5));
            assert_eq!(vm.read_bytes(BUF, 8), b"hello\xaa\xaa\xaa");
            assert!(vm.rec.input.lock().unwrap().is_empty());
        }
    }

    #[test]
    fn test_console_read_bounded_by_count() {
        let vm = vm();
        vm.rec.input.lock().unwrap().extend_from_slice(b"abcdef");
        vm.write_bytes(BUF, &[0xaa; 4]);
        assert_eq!(cio(&vm, Abi::X86_64, READ, 3, BUF), Ok(3));
        assert_eq!(vm.read_bytes(BUF, 4), b"abc\xaa");
        assert_eq!(cio(&vm, Abi::X86_64, READ, 100, BUF), Ok(3));
        assert_eq!(vm.read_bytes(BUF, 3), b"def");
    }

    #[test]
    fn test_console_read_bounded_by_read_max() {
        let vm = vm();
        let input = pattern(CONSOLE_READ_MAX + 100);
        vm.rec.input.lock().unwrap().extend_from_slice(&input);
        let r = cio(&vm, Abi::X86_64, READ, 1 << 20, BUF);
        assert_eq!(r, Ok(CONSOLE_READ_MAX as u64));
        assert_eq!(
            vm.read_bytes(BUF, CONSOLE_READ_MAX),
            &input[..CONSOLE_READ_MAX]
        );
        assert_eq!(vm.rec.input.lock().unwrap().len(), 100);
    }

    #[test]
    fn test_console_read_no_input_returns_zero() {
        let vm = vm();
        vm.write_bytes(BUF, &[0xaa]);
        assert_eq!(cio(&vm, Abi::X86_64, READ, 16, BUF), Ok(0));
        assert_eq!(vm.read_bytes(BUF, 1), [0xaa]);
    }

    #[test]
    fn test_console_read_zero_count_returns_zero_keeps_input() {
        let vm = vm();
        vm.rec.input.lock().unwrap().extend_from_slice(b"x");
        assert_eq!(cio(&vm, Abi::X86_64, READ, 0, BAD), Ok(0));
        assert_eq!(vm.rec.input.lock().unwrap().len(), 1);
    }

    #[test]
    fn test_console_read_count_above_int_max_returns_e2big() {
        let vm = vm();
        for count in [0x8000_0000u64, 0xffff_ffff] {
            assert_eq!(
                cio(&vm, Abi::X86_64, READ, count, BUF),
                Err(XenErrno::E2BIG)
            );
        }
        assert_eq!(cio(&vm, Abi::X86_64, READ, 0x7fff_ffff, BUF), Ok(0));
    }

    #[test]
    fn test_console_read_bad_pointer_returns_efault_keeps_input() {
        let vm = vm();
        vm.rec.input.lock().unwrap().extend_from_slice(b"keep");
        for abi in ABIS {
            assert_eq!(cio(&vm, abi, READ, 4, BAD), Err(XenErrno::EFAULT));
        }
        assert_eq!(*vm.rec.input.lock().unwrap(), b"keep");
    }

    #[test]
    fn test_console_unknown_cmd_returns_enosys() {
        let vm = vm();
        for cmd in [2u64, 3, 0xffff_ffff] {
            assert_eq!(cio(&vm, Abi::X86_64, cmd, 1, BUF), Err(XenErrno::ENOSYS));
        }
    }

    proptest! {
        #[test]
        fn test_console_arbitrary_args_never_panic(
            cmd in prop_oneof![0u64..4, any::<u64>()],
            count in prop_oneof![0u64..64, Just(0x7fff_ffffu64), any::<u64>()],
            buf in prop_oneof![Just(BUF), Just(RAM_SIZE - 7), any::<u64>()],
            input in proptest::collection::vec(any::<u8>(), 0..64),
            is_64 in any::<bool>(),
        ) {
            let vm = vm();
            vm.rec.input.lock().unwrap().extend_from_slice(&input);
            let abi = if is_64 { Abi::X86_64 } else { Abi::X86_32 };
            let args = [cmd, count, buf].map(|a| abi.word(a));
            if let Ok(n) = vm.call(0, abi, HypercallNr::ConsoleIo, &args) {
                prop_assert!(n as usize <= input.len());
            }
        }
    }
}
