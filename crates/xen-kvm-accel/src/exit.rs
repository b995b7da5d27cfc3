// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Hypercall exits decoded from register values, without a vCPU: what
//! [`crate::XenVcpu`] does between reading `kvm_run` and writing it back,
//! as plain functions that benchmarks and tests call directly.

use kvm_bindings::{kvm_regs, kvm_sregs};
use vm_memory::GuestMemoryBackend;
use xen_abi::x86::{CR0_PE, EFER_LMA};
use xen_domain::XenDomain;
use xen_hypercall::guest::PagingRegs;
use xen_hypercall::{Abi, GpRegs, HcResult, Hypercall, result_value, set_result};

/// The paging registers of a vCPU, which translate its pointer arguments.
pub fn paging(s: &kvm_sregs) -> PagingRegs {
    PagingRegs {
        cr0: s.cr0,
        cr3: s.cr3,
        cr4: s.cr4,
        efer: s.efer,
    }
}

/// Whether the vCPU runs 64-bit code (EFER.LMA and CS.L): the ABI of its
/// calls, and the shared_info layout a hypercall-page write latches.
pub fn long_mode(s: &kvm_sregs) -> bool {
    s.efer & EFER_LMA != 0 && s.cs.l != 0
}

/// The ABI and privilege level of a call made with these flags and
/// registers: the ABI is chosen per call from EFER.LMA and CS.L; the CPL is
/// 0 in real mode, 3 in virtual-8086 mode (whatever CS holds there), and
/// CS.RPL in protected mode.
pub fn call_mode(rflags: u64, s: &kvm_sregs) -> (Abi, u8) {
    let abi = Abi::from_mode(s.efer & EFER_LMA != 0, s.cs.l != 0);
    let cpl = if s.cr0 & CR0_PE == 0 {
        0
    } else if rflags & RFLAGS_VM != 0 {
        3
    } else {
        (s.cs.selector & 3) as u8
    };
    (abi, cpl)
}

/// RFLAGS.VM: virtual-8086 mode.
const RFLAGS_VM: u64 = 1 << 17;

/// A port-trap hypercall (the user-space path): decodes the call from the
/// vCPU's registers, has `domain` answer it, and writes the result into
/// `regs.rax` as Xen does (the whole register in the 64-bit ABI, EAX only
/// in the 32-bit one). Every other register is left as it was.
pub fn trap_hypercall<M: GuestMemoryBackend + Clone + Send + Sync + 'static>(
    domain: &XenDomain<M>,
    vcpu: u32,
    regs: &mut kvm_regs,
    sregs: &kvm_sregs,
) -> (Hypercall, HcResult) {
    let (abi, cpl) = call_mode(regs.rflags, sregs);
    let mut gp = GpRegs {
        rax: regs.rax,
        rbx: regs.rbx,
        rcx: regs.rcx,
        rdx: regs.rdx,
        rsi: regs.rsi,
        rdi: regs.rdi,
        rbp: regs.rbp,
        r8: regs.r8,
        r9: regs.r9,
        r10: regs.r10,
    };
    let call = Hypercall::from_regs(&gp, abi, cpl);
    let result = domain.hypercall(vcpu, paging(sregs), &call);
    set_result(&mut gp, abi, result_value(result));
    regs.rax = gp.rax;
    (call, result)
}

/// The RAX a kernel-intercepted call (`KVM_EXIT_XEN`) returns: KVM writes
/// the whole register, so the 32-bit ABI's untouched upper half is put
/// back from the caller's `rax`.
pub fn kernel_result(rax: u64, abi: Abi, result: HcResult) -> u64 {
    let mut gp = GpRegs {
        rax,
        ..Default::default()
    };
    set_result(&mut gp, abi, result_value(result));
    gp.rax
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vm_memory::{GuestAddress, GuestMemoryMmap};
    use xen_abi::errno::XenErrno;
    use xen_abi::memory::{E820Entry, E820Type};
    use xen_cpuid::XenVersion;
    use xen_hypercall::DomainConfig;

    use super::*;

    fn domain() -> Arc<XenDomain<GuestMemoryMmap>> {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let map = vec![E820Entry::new(0, 1 << 20, E820Type::Ram)];
        let config = DomainConfig::new(1, XenVersion::V4_10, map);
        Arc::new(XenDomain::builder(config, mem).build().unwrap())
    }

    fn long64() -> kvm_sregs {
        let mut s = kvm_sregs {
            cr0: CR0_PE,
            efer: EFER_LMA,
            ..Default::default()
        };
        s.cs.l = 1;
        s
    }

    #[test]
    fn test_call_mode_from_segment_and_control_registers() {
        let mut s = long64();
        assert_eq!(call_mode(0, &s), (Abi::X86_64, 0));
        s.cs.l = 0;
        s.cs.selector = 0x1b;
        assert_eq!(call_mode(0, &s), (Abi::X86_32, 3));
        // Virtual-8086 code is CPL 3, whatever its CS value.
        s.cs.selector = 0x1000;
        assert_eq!(call_mode(RFLAGS_VM, &s), (Abi::X86_32, 3));
        assert_eq!(call_mode(0, &s), (Abi::X86_32, 0));
        s.cr0 = 0;
        assert_eq!(call_mode(0, &s), (Abi::X86_32, 0), "real mode is CPL 0");
    }

    #[test]
    fn test_trap_hypercall_writes_rax_only() {
        let d = domain();
        let before = kvm_regs {
            rax: 17,
            rbx: 0xb,
            rdi: 0,
            r11: 0x11,
            rip: 0x1234,
            ..Default::default()
        };
        let mut regs = before;
        let (call, r) = trap_hypercall(&d, 0, &mut regs, &long64());
        assert_eq!((call.nr, r), (17, Ok(0x4000a)));
        assert_eq!(
            kvm_regs {
                rax: before.rax,
                ..regs
            },
            before
        );
        assert_eq!(regs.rax, 0x4000a);
    }

    #[test]
    fn test_trap_hypercall_32_bit_keeps_the_upper_half_of_rax() {
        let d = domain();
        let mut s = long64();
        s.cs.l = 0;
        let mut regs = kvm_regs {
            rax: 0xdead_beef_0000_00ff,
            ..Default::default()
        };
        let (_, r) = trap_hypercall(&d, 0, &mut regs, &s);
        assert_eq!(r, Err(XenErrno::ENOSYS));
        assert_eq!(regs.rax, 0xdead_beef_ffff_ffda);
        assert_eq!(
            kernel_result(0xdead_beef_0000_0000, Abi::X86_32, Ok(1)),
            0xdead_beef_0000_0001
        );
    }
}
