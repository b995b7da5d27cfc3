// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vm_assist` (hypercall 21): `vm_assist(unsigned int cmd, unsigned int type)`.
//!
//! Mirrors `do_vm_assist` in `xen/common/domain.c` with the x86 HVM valid
//! mask (`arch_vm_assist_valid_mask`), for the commands and types of
//! `xen/include/public/xen.h`, as described in `xen-abi.md` §1.3.
//!
//! For an HVM guest only `VMASST_TYPE_runstate_update_flag` (5) is valid:
//! enabling or disabling it returns 0 and sets or clears bit 5 of
//! [`DomainState::vm_assist`](crate::domain::DomainState::vm_assist), which
//! the runstate code reads. The type is checked first, as in Xen: any other
//! type gets `-EINVAL` whatever the command; with a valid type an unknown
//! command gets `-ENOSYS`. Only the low 32 bits of each argument count.
//!
//! Difference: QEMU does not implement `vm_assist` (`-ENOSYS`), which Linux
//! tolerates by not using the `XEN_RUNSTATE_UPDATE` protocol.

use vm_memory::GuestMemoryBackend;
use xen_abi::errno::XenErrno;
use xen_abi::xen::{VmAssistCmd, VmAssistType};

use crate::call::{HcResult, Hypercall};
use crate::dispatch::{Ctx, Family};
use xen_abi::warn_limited;

/// The `vm_assist` family.
#[derive(Clone, Copy, Debug, Default)]
pub struct VmAssist;

impl VmAssist {
    /// The family.
    pub fn new() -> Self {
        Self
    }
}

impl<M: GuestMemoryBackend> Family<M> for VmAssist {
    fn call(&self, ctx: &mut Ctx<'_, M>, call: &Hypercall) -> HcResult {
        let cmd = call.arg(0) as u32;
        let kind = call.arg(1) as u32;
        let valid = VmAssistType::try_from(kind).is_ok_and(VmAssistType::allowed_for_hvm);
        if !valid {
            warn_limited!("vCPU {}: vm_assist type {kind} refused", ctx.vcpu);
            return Err(XenErrno::EINVAL);
        }
        let bit = 1u64 << kind;
        match VmAssistCmd::try_from(cmd) {
            Ok(VmAssistCmd::Enable) => ctx.domain.lock().vm_assist |= bit,
            Ok(VmAssistCmd::Disable) => ctx.domain.lock().vm_assist &= !bit,
            Err(_) => {
                warn_limited!("vCPU {}: unknown vm_assist command {cmd}", ctx.vcpu);
                return Err(XenErrno::ENOSYS);
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use xen_abi::xen::HypercallNr;

    use super::*;
    use crate::call::Abi;
    use crate::testing::TestVm;

    const RUNSTATE: u64 = VmAssistType::RunstateUpdateFlag as u64;

    fn vm() -> TestVm {
        let mut vm = TestVm::new(1);
        vm.dispatcher
            .register(HypercallNr::VmAssist, Arc::new(VmAssist::new()));
        vm
    }

    fn assist(vm: &TestVm, abi: Abi, cmd: u64, kind: u64) -> HcResult {
        vm.call(0, abi, HypercallNr::VmAssist, &[cmd, kind])
    }

    #[test]
    fn test_vm_assist_runstate_flag_enable_disable_toggles_bit_5() {
        let vm = vm();
        for abi in [Abi::X86_64, Abi::X86_32] {
            assert_eq!(assist(&vm, abi, 0, RUNSTATE), Ok(0));
            assert_eq!(vm.domain.lock().vm_assist, 1 << 5);
            assert_eq!(assist(&vm, abi, 0, RUNSTATE), Ok(0));
            assert_eq!(vm.domain.lock().vm_assist, 1 << 5);
            assert_eq!(assist(&vm, abi, 1, RUNSTATE), Ok(0));
            assert_eq!(vm.domain.lock().vm_assist, 0);
            assert_eq!(assist(&vm, abi, 1, RUNSTATE), Ok(0));
            assert_eq!(vm.domain.lock().vm_assist, 0);
        }
    }

    #[test]
    fn test_vm_assist_pv_types_return_einval() {
        let vm = vm();
        for kind in [0u64, 1, 2, 3, 4, 32] {
            for cmd in [0, 1] {
                assert_eq!(
                    assist(&vm, Abi::X86_64, cmd, kind),
                    Err(XenErrno::EINVAL),
                    "type {kind}"
                );
            }
        }
        assert_eq!(vm.domain.lock().vm_assist, 0);
    }

    #[test]
    fn test_vm_assist_unknown_types_return_einval() {
        let vm = vm();
        for kind in [6u64, 31, 63, 64, 0xffff_ffff] {
            assert_eq!(
                assist(&vm, Abi::X86_64, 0, kind),
                Err(XenErrno::EINVAL),
                "type {kind}"
            );
        }
        assert_eq!(vm.domain.lock().vm_assist, 0);
    }

    #[test]
    fn test_vm_assist_unknown_cmd_valid_type_returns_enosys() {
        let vm = vm();
        for cmd in [2u64, 3, 0xffff_ffff] {
            assert_eq!(
                assist(&vm, Abi::X86_64, cmd, RUNSTATE),
                Err(XenErrno::ENOSYS)
            );
        }
        assert_eq!(vm.domain.lock().vm_assist, 0);
    }

    #[test]
    fn test_vm_assist_unknown_cmd_bad_type_returns_einval_first() {
        let vm = vm();
        assert_eq!(assist(&vm, Abi::X86_64, 7, 2), Err(XenErrno::EINVAL));
    }

    #[test]
    fn test_vm_assist_upper_register_bits_ignored() {
        let vm = vm();
        assert_eq!(assist(&vm, Abi::X86_64, 1 << 32, 1 << 32 | RUNSTATE), Ok(0));
        assert_eq!(vm.domain.lock().vm_assist, 1 << 5);
    }

    proptest! {
        #[test]
        fn test_vm_assist_arbitrary_args_never_panic(
            cmd in prop_oneof![0u64..4, any::<u64>()],
            kind in prop_oneof![0u64..70, any::<u64>()],
            is_64 in any::<bool>(),
        ) {
            let vm = vm();
            let abi = if is_64 { Abi::X86_64 } else { Abi::X86_32 };
            let r = vm.call(0, abi, HypercallNr::VmAssist, &[cmd, kind].map(|a| abi.word(a)));
            prop_assert!(vm.domain.lock().vm_assist & !(1 << 5) == 0);
            if r.is_ok() {
                prop_assert_eq!(kind as u32, 5);
            }
        }
    }
}
