// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What this host's KVM offers a Xen guest, and which hypercall path that
//! allows (DESIGN.md, "Two ways a hypercall reaches us").

use kvm_bindings::{KVM_XEN_HVM_CONFIG_HYPERCALL_MSR, KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL};
use kvm_ioctls::{Cap, Kvm};

/// The hypercall path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Path {
    /// The kernel intercepts VMCALL/VMMCALL and exits with `KVM_EXIT_XEN`.
    Kernel,
    /// The hypercall MSR exits to user space, which writes a page of
    /// port-I/O stubs; each hypercall is a port-I/O exit.
    User,
}

/// Which path the VMM asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PathChoice {
    /// The kernel path when the kernel has it, else the user-space path.
    #[default]
    Auto,
    /// Only the kernel path.
    Kernel,
    /// Only the user-space path.
    User,
}

/// The capabilities that matter here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    /// `KVM_CAP_XEN_HVM` flags (0: no in-kernel Xen).
    pub xen_hvm: u32,
    /// `KVM_CAP_X86_USER_SPACE_MSR`.
    pub user_space_msr: bool,
    /// `KVM_CAP_X86_MSR_FILTER`.
    pub msr_filter: bool,
    /// `KVM_CAP_SYNC_REGS`.
    pub sync_regs: bool,
}

/// Why a path cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The kernel path was asked for, but KVM lacks it.
    #[error(
        "This KVM has no in-kernel Xen hypercall intercept (KVM_CAP_XEN_HVM = {0:#x}, \
         needs HYPERCALL_MSR and INTERCEPT_HCALL); use the user-space path"
    )]
    NoKernelXen(u32),
    /// The user-space path was asked for, but KVM lacks a capability it needs.
    #[error("This KVM lacks {0}, which the user-space hypercall path needs")]
    NoUserPath(&'static str),
}

impl Caps {
    /// Probes `kvm`.
    pub fn probe(kvm: &Kvm) -> Self {
        Self {
            xen_hvm: kvm.check_extension_int(Cap::XenHvm).max(0) as u32,
            user_space_msr: kvm.check_extension(Cap::X86UserSpaceMsr),
            msr_filter: kvm.check_extension(Cap::X86MsrFilter),
            sync_regs: kvm.check_extension(Cap::SyncRegs),
        }
    }

    /// Whether the kernel can intercept hypercalls.
    pub fn kernel_path(&self) -> bool {
        let need = KVM_XEN_HVM_CONFIG_HYPERCALL_MSR | KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL;
        self.xen_hvm & need == need
    }

    /// The first capability the user-space path lacks, if any.
    pub fn user_path_missing(&self) -> Option<&'static str> {
        if !self.user_space_msr {
            Some("KVM_CAP_X86_USER_SPACE_MSR")
        } else if !self.msr_filter {
            Some("KVM_CAP_X86_MSR_FILTER")
        } else if !self.sync_regs {
            Some("KVM_CAP_SYNC_REGS")
        } else {
            None
        }
    }

    /// Picks the path for a choice, with the reason as a sentence.
    pub fn choose(&self, choice: PathChoice) -> Result<(Path, String), PathError> {
        let user = || match self.user_path_missing() {
            None => Ok(()),
            Some(cap) => Err(PathError::NoUserPath(cap)),
        };
        match choice {
            PathChoice::Kernel if self.kernel_path() => Ok((
                Path::Kernel,
                format!(
                    "kernel path requested; KVM_CAP_XEN_HVM = {:#x}",
                    self.xen_hvm
                ),
            )),
            PathChoice::Kernel => Err(PathError::NoKernelXen(self.xen_hvm)),
            PathChoice::User => user().map(|_| {
                (
                    Path::User,
                    "user-space path requested (MSR filter, port-I/O trap page)".into(),
                )
            }),
            PathChoice::Auto if self.kernel_path() => Ok((
                Path::Kernel,
                format!(
                    "KVM intercepts Xen hypercalls (KVM_CAP_XEN_HVM = {:#x})",
                    self.xen_hvm
                ),
            )),
            PathChoice::Auto => user().map(|_| {
                (
                    Path::User,
                    format!(
                        "KVM has no in-kernel Xen (KVM_CAP_XEN_HVM = {:#x}); trapping \
                         hypercalls in user space",
                        self.xen_hvm
                    ),
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(xen_hvm: u32) -> Caps {
        Caps {
            xen_hvm,
            user_space_msr: true,
            msr_filter: true,
            sync_regs: true,
        }
    }

    #[test]
    fn test_choose_auto_prefers_kernel_when_it_intercepts() {
        assert_eq!(
            caps(0x1ff).choose(PathChoice::Auto).unwrap().0,
            Path::Kernel
        );
        assert_eq!(caps(0x7).choose(PathChoice::Auto).unwrap().0, Path::Kernel);
        assert_eq!(caps(0).choose(PathChoice::Auto).unwrap().0, Path::User);
        // HYPERCALL_MSR alone does not intercept VMCALL.
        assert_eq!(caps(0x1).choose(PathChoice::Auto).unwrap().0, Path::User);
    }

    #[test]
    fn test_choose_kernel_without_xen_is_an_error() {
        assert_eq!(
            caps(0).choose(PathChoice::Kernel),
            Err(PathError::NoKernelXen(0))
        );
    }

    #[test]
    fn test_choose_user_names_the_missing_capability() {
        let mut c = caps(0);
        c.sync_regs = false;
        assert_eq!(
            c.choose(PathChoice::User),
            Err(PathError::NoUserPath("KVM_CAP_SYNC_REGS"))
        );
        assert_eq!(
            c.choose(PathChoice::Auto),
            Err(PathError::NoUserPath("KVM_CAP_SYNC_REGS"))
        );
        assert_eq!(caps(0x1ff).choose(PathChoice::User).unwrap().0, Path::User);
    }
}
