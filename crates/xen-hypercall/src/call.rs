// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The hypercall calling convention (`xen-abi.md` §1.1).
//!
//! Both entry paths (the kernel's `KVM_EXIT_XEN` and the user-space
//! port-I/O trap) produce one [`Hypercall`]. The ABI is chosen per call from
//! the vCPU's execution mode: 64-bit code (EFER.LMA and CS.L) uses the
//! native convention, anything else (a 32-bit kernel, or a 64-bit guest
//! calling from a compatibility-mode segment) the 32-bit one, whose upper
//! register halves are ignored.

use xen_abi::errno::XenErrno;

/// Which calling convention and structure layouts a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Abi {
    /// 64-bit mode: native layouts, 64-bit pointers.
    X86_64,
    /// 32-bit (or 16-bit) protected mode: compat layouts, 32-bit pointers.
    X86_32,
}

impl Abi {
    /// The ABI of a vCPU in this mode: 64-bit only when long mode is active
    /// and the code segment is a 64-bit one.
    pub fn from_mode(efer_lma: bool, cs_l: bool) -> Self {
        if efer_lma && cs_l {
            Abi::X86_64
        } else {
            Abi::X86_32
        }
    }

    /// Whether this is the 64-bit ABI.
    pub fn is_64(self) -> bool {
        self == Abi::X86_64
    }

    /// Width of a guest `unsigned long`, pointer or `xen_pfn_t` in bytes.
    pub fn word_size(self) -> u64 {
        match self {
            Abi::X86_64 => 8,
            Abi::X86_32 => 4,
        }
    }

    /// Truncates a register value to this ABI's word.
    pub fn word(self, v: u64) -> u64 {
        match self {
            Abi::X86_64 => v,
            Abi::X86_32 => v & 0xffff_ffff,
        }
    }
}

/// The general registers a hypercall reads and writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpRegs {
    /// RAX: hypercall number in, result out.
    pub rax: u64,
    /// RBX: arg1 (32-bit ABI).
    pub rbx: u64,
    /// RCX: arg2 (32-bit ABI).
    pub rcx: u64,
    /// RDX: arg3 (both ABIs).
    pub rdx: u64,
    /// RSI: arg2 (64-bit), arg4 (32-bit).
    pub rsi: u64,
    /// RDI: arg1 (64-bit), arg5 (32-bit).
    pub rdi: u64,
    /// RBP: arg6 (32-bit; never read by Xen).
    pub rbp: u64,
    /// R8: arg5 (64-bit).
    pub r8: u64,
    /// R9: arg6 (64-bit; never read by Xen).
    pub r9: u64,
    /// R10: arg4 (64-bit).
    pub r10: u64,
}

/// One hypercall, decoded once from either entry path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hypercall {
    /// The ABI of this call.
    pub abi: Abi,
    /// The caller's privilege level (only 0 may call).
    pub cpl: u8,
    /// The hypercall number (EAX/RAX).
    pub nr: u64,
    /// The six argument registers, already truncated to the ABI's width.
    pub args: [u64; 6],
}

impl Hypercall {
    /// Decodes a call from registers. In the 32-bit ABI the number and
    /// arguments are the low halves of EAX and EBX, ECX, EDX, ESI, EDI, EBP.
    pub fn from_regs(regs: &GpRegs, abi: Abi, cpl: u8) -> Self {
        let (nr, args) = match abi {
            Abi::X86_64 => (
                regs.rax,
                [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9],
            ),
            Abi::X86_32 => (
                regs.rax & 0xffff_ffff,
                [regs.rbx, regs.rcx, regs.rdx, regs.rsi, regs.rdi, regs.rbp]
                    .map(|r| r & 0xffff_ffff),
            ),
        };
        Self { abi, cpl, nr, args }
    }

    /// Builds a call from the values the kernel reports in `KVM_EXIT_XEN`.
    pub fn from_kvm_exit(longmode: bool, cpl: u8, input: u64, params: [u64; 6]) -> Self {
        let abi = if longmode { Abi::X86_64 } else { Abi::X86_32 };
        Self {
            abi,
            cpl,
            nr: abi.word(input),
            args: params.map(|p| abi.word(p)),
        }
    }

    /// The names of the hypercall and of its sub-operation, as Xen's
    /// headers spell them, for traces: `("memory_op",
    /// Some("XENMEM_add_to_physmap"))`. Unknown numbers give `None`; the
    /// sub-operation is the first argument of the families that have one.
    pub fn names(&self) -> (Option<&'static str>, Option<&'static str>) {
        use xen_abi::xen::HypercallNr as N;
        let Ok(nr) = N::try_from(self.nr) else {
            return (None, None);
        };
        let cmd = u32::try_from(self.arg(0)).ok();
        fn name<T: TryFrom<u32>>(
            cmd: Option<u32>,
            f: fn(T) -> &'static str,
        ) -> Option<&'static str> {
            cmd.and_then(|c| T::try_from(c).ok()).map(f)
        }
        use xen_abi::{event_channel, hvm, memory, physdev, sched, vcpu, version, xen};
        let sub = match nr {
            N::MemoryOp => memory::XenMemOp::try_from(memory::split_memory_op_cmd(self.arg(0)).0)
                .ok()
                .map(memory::XenMemOp::name),
            N::XenVersion => name(cmd, version::XenVerCmd::name),
            N::SchedOp => name(cmd, sched::SchedOp::name),
            N::EventChannelOp => name(cmd, event_channel::EvtchnOp::name),
            N::HvmOp => name(cmd, hvm::HvmOp::name),
            N::VcpuOp => name(cmd, vcpu::VcpuOp::name),
            N::PhysdevOp => name(cmd, physdev::PhysdevOp::name),
            N::GrantTableOp => name(cmd, xen_abi::grant_table::GnttabOp::name),
            N::ConsoleIo => name(cmd, xen::ConsoleIoCmd::name),
            N::VmAssist => name(cmd, xen::VmAssistCmd::name),
            _ => None,
        };
        (Some(nr.name()), sub)
    }

    /// Argument `i` (0-based) as a guest word.
    pub fn arg(&self, i: usize) -> u64 {
        self.args.get(i).copied().unwrap_or(0)
    }

    /// A 64-bit scalar argument starting at `i`: one register in the 64-bit
    /// ABI, two (low word first) in the 32-bit one (e.g. `set_timer_op`).
    pub fn arg_u64(&self, i: usize) -> u64 {
        match self.abi {
            Abi::X86_64 => self.arg(i),
            Abi::X86_32 => self.arg(i) | self.arg(i + 1) << 32,
        }
    }
}

/// A hypercall's outcome: a non-negative value, or a Xen errno.
pub type HcResult = Result<u64, XenErrno>;

/// The value a result puts in RAX: the value itself, or `-errno`.
pub fn result_value(r: HcResult) -> u64 {
    match r {
        Ok(v) => v,
        Err(e) => e.neg() as u64,
    }
}

/// Writes a result into RAX as Xen does: the whole register in the 64-bit
/// ABI, only EAX in the 32-bit one (the upper half is left untouched).
/// Every other register is preserved.
pub fn set_result(regs: &mut GpRegs, abi: Abi, value: u64) {
    regs.rax = match abi {
        Abi::X86_64 => value,
        Abi::X86_32 => (regs.rax & !0xffff_ffff) | (value & 0xffff_ffff),
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn test_names_of_family_and_sub_op() {
        let call = |nr, a0| Hypercall {
            abi: Abi::X86_64,
            cpl: 0,
            nr,
            args: [a0, 0, 0, 0, 0, 0],
        };
        // memory_op 7 with a continuation in the upper bits.
        let names = call(12, 7 | 5 << 6).names();
        assert_eq!(names.0, Some("__HYPERVISOR_memory_op"));
        assert!(names.1.unwrap().contains("add_to_physmap"), "{names:?}");
        assert!(call(32, 4).names().1.unwrap().contains("send"));
        assert_eq!(call(12, 999).names().1, None);
        assert_eq!(call(15, 0).names().1, None, "set_timer_op has no sub-op");
        assert_eq!(call(999, 0).names(), (None, None));
        assert_eq!(call(29, 1 << 40).names().1, None, "not a 32-bit command");
    }

    use super::*;

    fn regs() -> GpRegs {
        GpRegs {
            rax: 0xaaaa_aaaa_0000_0011,
            rbx: 0xbbbb_bbbb_1111_1111,
            rcx: 0xcccc_cccc_2222_2222,
            rdx: 0xdddd_dddd_3333_3333,
            rsi: 0x5555_5555_4444_4444,
            rdi: 0xd1d1_d1d1_5555_5555,
            rbp: 0xb0b0_b0b0_6666_6666,
            r8: 0x8888_8888_8888_8888,
            r9: 0x9999_9999_9999_9999,
            r10: 0x1010_1010_1010_1010,
        }
    }

    #[test]
    fn test_abi_from_mode_needs_lma_and_cs_l() {
        assert_eq!(Abi::from_mode(true, true), Abi::X86_64);
        assert_eq!(Abi::from_mode(true, false), Abi::X86_32);
        assert_eq!(Abi::from_mode(false, true), Abi::X86_32);
        assert_eq!(Abi::from_mode(false, false), Abi::X86_32);
    }

    #[test]
    fn test_from_regs_64_bit_uses_rdi_rsi_rdx_r10_r8_r9() {
        let r = regs();
        let c = Hypercall::from_regs(&r, Abi::X86_64, 0);
        assert_eq!(c.nr, r.rax);
        assert_eq!(c.args, [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9]);
    }

    #[test]
    fn test_from_regs_32_bit_uses_low_halves_of_ebx_to_ebp() {
        let c = Hypercall::from_regs(&regs(), Abi::X86_32, 0);
        assert_eq!(c.nr, 0x11);
        assert_eq!(
            c.args,
            [
                0x1111_1111,
                0x2222_2222,
                0x3333_3333,
                0x4444_4444,
                0x5555_5555,
                0x6666_6666
            ]
        );
    }

    #[test]
    fn test_from_kvm_exit_truncates_in_32_bit_mode() {
        let c = Hypercall::from_kvm_exit(false, 3, 0x1_0000_0011, [u64::MAX; 6]);
        assert_eq!((c.abi, c.cpl, c.nr), (Abi::X86_32, 3, 0x11));
        assert_eq!(c.args, [0xffff_ffff; 6]);
        let c = Hypercall::from_kvm_exit(true, 0, 0x1_0000_0011, [u64::MAX; 6]);
        assert_eq!(
            (c.abi, c.nr, c.args[5]),
            (Abi::X86_64, 0x1_0000_0011, u64::MAX)
        );
    }

    #[test]
    fn test_arg_u64_splits_across_two_registers_in_32_bit() {
        let c = Hypercall::from_regs(&regs(), Abi::X86_32, 0);
        assert_eq!(c.arg_u64(0), 0x2222_2222_1111_1111);
        let c = Hypercall::from_regs(&regs(), Abi::X86_64, 0);
        assert_eq!(c.arg_u64(0), regs().rdi);
        assert_eq!(c.arg(9), 0);
    }

    #[test]
    fn test_set_result_32_bit_keeps_upper_half_and_other_registers() {
        let mut r = regs();
        let before = r;
        set_result(&mut r, Abi::X86_32, result_value(Err(XenErrno::ENOSYS)));
        assert_eq!(r.rax, 0xaaaa_aaaa_ffff_ffda);
        assert_eq!(
            GpRegs {
                rax: before.rax,
                ..r
            },
            before
        );
        set_result(&mut r, Abi::X86_64, result_value(Err(XenErrno::EPERM)));
        assert_eq!(r.rax, u64::MAX);
        set_result(&mut r, Abi::X86_64, result_value(Ok(0x4000a)));
        assert_eq!(r.rax, 0x4000a);
    }
}
