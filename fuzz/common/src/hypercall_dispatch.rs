// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Target `hypercall_dispatch`: arbitrary hypercalls over arbitrary guest
//! memory and paging, against a complete `xen-domain` domain.

use arbitrary::{Arbitrary, Unstructured};
use vm_memory::{Bytes, GuestAddress};
use xen_abi::errno::XenErrno;
use xen_domain::testing::TestDomain;
use xen_hypercall::guest::PagingRegs;
use xen_hypercall::testing::IDENTITY_64;
use xen_hypercall::{Abi, Hypercall};

/// A paging setup as the fuzzer describes it.
#[derive(Arbitrary, Debug)]
enum Paging {
    /// No paging, 64-bit: linear = physical.
    Identity64,
    /// No paging, 32-bit: addresses truncated to 32 bits.
    Identity32,
    /// Arbitrary paging registers over arbitrary memory (page tables made
    /// of whatever the input wrote).
    Raw {
        cr0: u64,
        cr3: u16,
        cr4: u64,
        efer: u64,
    },
}

/// A hypercall argument: mostly addresses of memory the input filled.
#[derive(Arbitrary, Debug)]
enum Arg {
    Small(u16),
    Page(u8, u16),
    High(u64),
}

impl Arg {
    fn value(&self) -> u64 {
        match *self {
            Arg::Small(v) => u64::from(v),
            Arg::Page(p, off) => u64::from(p) * 4096 + u64::from(off % 4096),
            Arg::High(v) => v,
        }
    }
}

/// One call as the fuzzer describes it.
#[derive(Arbitrary, Debug)]
struct Call {
    compat: bool,
    cpl: u8,
    vcpu: u8,
    nr: u8,
    args: [Arg; 6],
}

/// Target `hypercall_dispatch`: arbitrary guest memory contents (pages in
/// the first MiB), arbitrary paging registers and a sequence of arbitrary
/// hypercalls through a complete domain (every family, event channels,
/// PIRQs, timers, the platform device's state).
///
/// Invariants: nothing panics; every result is a value or a Xen errno;
/// a call from CPL > 0 is -EPERM; a number nobody handles is -ENOSYS.
pub fn hypercall_dispatch(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(pages) = Vec::<(u8, Vec<u8>)>::arbitrary(&mut u) else {
        return;
    };
    let Ok(paging) = Paging::arbitrary(&mut u) else {
        return;
    };
    let Ok(calls) = Vec::<Call>::arbitrary(&mut u) else {
        return;
    };
    let d = TestDomain::new(3);
    for (page, bytes) in pages.iter().take(64) {
        let len = bytes.len().min(4096);
        d.mem
            .write_slice(&bytes[..len], GuestAddress(u64::from(*page) * 4096))
            .unwrap();
    }
    let paging = match paging {
        Paging::Identity64 => IDENTITY_64,
        Paging::Identity32 => PagingRegs {
            efer: 0,
            ..IDENTITY_64
        },
        Paging::Raw {
            cr0,
            cr3,
            cr4,
            efer,
        } => PagingRegs {
            cr0,
            cr3: u64::from(cr3) * 4096 % (1 << 20),
            cr4,
            efer,
        },
    };
    for c in calls.iter().take(16) {
        let abi = if c.compat { Abi::X86_32 } else { Abi::X86_64 };
        let call = Hypercall {
            abi,
            cpl: c.cpl % 4,
            nr: u64::from(c.nr % 64),
            args: std::array::from_fn(|i| abi.word(c.args[i].value())),
        };
        let r = d.domain.hypercall(u32::from(c.vcpu % 4), paging, &call);
        if call.cpl != 0 {
            assert_eq!(r, Err(XenErrno::EPERM));
        }
        if let Err(e) = r {
            assert!(e.neg() < 0);
        }
    }
}
