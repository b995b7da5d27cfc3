// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `xen_version` (hypercall 17): `xen_version(int cmd, void *arg)`.
//!
//! Mirrors `xen/common/kernel.c` (`do_xen_version`, `xenver_varbuf_op`) for
//! the structures of `xen/include/public/version.h`, as described in
//! `xen-abi.md` §3.11.
//!
//! Every sub-op a domU may call is answered:
//!
//! * the version number, extra version, feature submap, domain handle and
//!   command line come from the [`DomainConfig`](crate::DomainConfig) of the
//!   calling domain, read on each call;
//! * compile information, capabilities, changeset and build id are
//!   properties of the "hypervisor", held by [`XenVersionOp`] (defaults:
//!   [`DEFAULT_COMPILER`], [`DEFAULT_COMPILE_BY`], [`DEFAULT_COMPILE_DOMAIN`],
//!   [`DEFAULT_COMPILE_DATE`], [`XEN_CAPABILITIES`], [`DEFAULT_CHANGESET`],
//!   [`DEFAULT_BUILD_ID`]; all fixed so that guests see reproducible values).
//!
//! Fixed-size strings are truncated to leave a NUL and zero-padded to their
//! full size: the whole array is written, as Xen does. The `*2` sub-ops and
//! `XENVER_build_id` use `struct xen_varbuf` and never truncate: a NULL
//! argument asks for the size, a too-small buffer gets `-ENOBUFS`, data over
//! 64 KiB gets `-E2BIG`; on success they return the number of bytes written
//! (no NUL). The command is a C `int`: only the low 32 bits of the register
//! count. Unknown commands get `-ENOSYS`.
//!
//! Differences:
//!
//! * QEMU answers only `XENVER_get_features` (and KVM `XENVER_version`);
//!   every other sub-op is `-ENOSYS` there.
//! * Xen's default XSM policy hides `XENVER_commandline` (reads back as
//!   `"<denied>"`), `XENVER_commandline2` and `XENVER_build_id` (`-EPERM`)
//!   from unprivileged domains. We answer them by default, since the VMM
//!   chooses what it reports; [`XenVersionOp::deny_restricted`] restores
//!   Xen's behaviour.
//! * Xen computes the feature submap from the domain type; we report
//!   [`DomainConfig::features`](crate::DomainConfig::features) unchanged.

use vm_memory::GuestMemoryBackend;
use xen_abi::errno::XenErrno;
use xen_abi::version::{
    CompileInfo, FeatureInfo, PlatformParameters, PlatformParametersCompat,
    XEN_CAPABILITIES_INFO_LEN, XEN_CHANGESET_INFO_LEN, XEN_COMMANDLINE_LEN, XEN_EXTRAVERSION_LEN,
    XENVER_FEATURES_SUBMAP_0, XENVER_PAGESIZE, XenVarbuf, XenVerCmd, fixed_string,
};

use crate::call::{Abi, HcResult, Hypercall};
use crate::dispatch::{Ctx, Family};
use xen_abi::warn_limited;

/// `XENVER_capabilities`: what a 64-bit Xen on x86 reports for HVM guests.
pub const XEN_CAPABILITIES: &str = "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64 ";
/// `XENVER_changeset` default: what Xen reports when built outside a
/// source repository.
pub const DEFAULT_CHANGESET: &str = "unavailable";
/// `XENVER_build_id` default: a fixed 20-byte value (the size of the SHA-1
/// build id Xen normally reports).
pub const DEFAULT_BUILD_ID: [u8; 20] = *b"xen-on-kvm-build-id!";
/// `xen_compile_info.compiler` default.
pub const DEFAULT_COMPILER: &str = "rustc";
/// `xen_compile_info.compile_by` default.
pub const DEFAULT_COMPILE_BY: &str = "xen-on-kvm";
/// `xen_compile_info.compile_domain` default.
pub const DEFAULT_COMPILE_DOMAIN: &str = "localdomain";
/// `xen_compile_info.compile_date` default: a fixed date in `date(1)`
/// format, so that builds are reproducible.
pub const DEFAULT_COMPILE_DATE: &str = "Thu Jan  1 00:00:00 UTC 2026";
/// Largest result of a `xen_varbuf` sub-op; longer data gets `-E2BIG`
/// (Xen's arbitrary limit against long-running copies).
pub const VARBUF_MAX: usize = 64 << 10;
/// What Xen writes instead of a string an XSM policy hides.
pub const XEN_DENY: &str = "<denied>";

/// Size of the `struct xen_varbuf` header that precedes the data.
const VARBUF_HEADER: u64 = std::mem::size_of::<XenVarbuf>() as u64;

/// The `xen_version` family.
#[derive(Clone, Debug)]
pub struct XenVersionOp {
    compile_info: CompileInfo,
    capabilities: String,
    changeset: String,
    build_id: Vec<u8>,
    deny_restricted: bool,
}

impl Default for XenVersionOp {
    fn default() -> Self {
        Self::new()
    }
}

impl XenVersionOp {
    /// The family with the default hypervisor strings and build id; the
    /// per-domain answers come from the calling domain's configuration.
    pub fn new() -> Self {
        Self {
            compile_info: CompileInfo::new(
                DEFAULT_COMPILER,
                DEFAULT_COMPILE_BY,
                DEFAULT_COMPILE_DOMAIN,
                DEFAULT_COMPILE_DATE,
            ),
            capabilities: XEN_CAPABILITIES.into(),
            changeset: DEFAULT_CHANGESET.into(),
            build_id: DEFAULT_BUILD_ID.to_vec(),
            deny_restricted: false,
        }
    }

    /// Replaces the `XENVER_compile_info` record.
    pub fn with_compile_info(mut self, info: CompileInfo) -> Self {
        self.compile_info = info;
        self
    }

    /// Replaces the `XENVER_capabilities` string.
    pub fn with_capabilities(mut self, capabilities: impl Into<String>) -> Self {
        self.capabilities = capabilities.into();
        self
    }

    /// Replaces the `XENVER_changeset` string.
    pub fn with_changeset(mut self, changeset: impl Into<String>) -> Self {
        self.changeset = changeset.into();
        self
    }

    /// Replaces the `XENVER_build_id` bytes (binary, any length; over
    /// [`VARBUF_MAX`] bytes the guest gets `-E2BIG`).
    pub fn with_build_id(mut self, build_id: impl Into<Vec<u8>>) -> Self {
        self.build_id = build_id.into();
        self
    }

    /// With `true`, behaves like Xen's default XSM policy for a domU:
    /// `XENVER_commandline` reads back as `"<denied>"`, and
    /// `XENVER_commandline2` and `XENVER_build_id` fail with `-EPERM`.
    pub fn deny_restricted(mut self, deny: bool) -> Self {
        self.deny_restricted = deny;
        self
    }

    /// The build id reported by `XENVER_build_id`.
    pub fn build_id(&self) -> &[u8] {
        &self.build_id
    }
}

/// The bytes of `s` up to its first NUL, as C's `strlen` sees them.
fn c_str(s: &str) -> &[u8] {
    let b = s.as_bytes();
    b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n])
}

/// Writes `s` as a zero-padded, NUL-terminated `char[N]` (all N bytes).
fn write_fixed<const N: usize, M: GuestMemoryBackend>(
    ctx: &Ctx<'_, M>,
    arg: u64,
    s: &str,
) -> HcResult {
    let buf: [u8; N] = fixed_string(s);
    ctx.write_bytes(arg, &buf)?;
    Ok(0)
}

/// The `struct xen_varbuf` protocol shared by `XENVER_build_id` and the
/// `*2` sub-ops (Xen's `xenver_varbuf_op`).
fn write_varbuf<M: GuestMemoryBackend>(ctx: &Ctx<'_, M>, arg: u64, data: &[u8]) -> HcResult {
    if data.len() > VARBUF_MAX {
        warn_limited!(
            "vCPU {}: xen_version result of {} bytes is too large",
            ctx.vcpu,
            data.len()
        );
        return Err(XenErrno::E2BIG);
    }
    // `data.len()` is at most 64 KiB.
    let size = data.len() as u64;
    if arg == 0 {
        return Ok(size);
    }
    let header: XenVarbuf = ctx.read(arg)?;
    if size > u64::from(header.len) {
        return Err(XenErrno::ENOBUFS);
    }
    let buf = arg.checked_add(VARBUF_HEADER).ok_or(XenErrno::EFAULT)?;
    ctx.write_bytes(ctx.abi.word(buf), data)?;
    Ok(size)
}

impl<M: GuestMemoryBackend> Family<M> for XenVersionOp {
    fn call(&self, ctx: &mut Ctx<'_, M>, call: &Hypercall) -> HcResult {
        // `int cmd`: only the low 32 bits count.
        let raw = call.arg(0) as u32;
        let arg = ctx.abi.word(call.arg(1));
        let Ok(cmd) = XenVerCmd::try_from(raw) else {
            warn_limited!(
                "vCPU {}: unknown xen_version command {}",
                ctx.vcpu,
                raw as i32
            );
            return Err(XenErrno::ENOSYS);
        };
        let config = ctx.domain.config();
        match cmd {
            XenVerCmd::Version => Ok(u64::from(config.version.raw())),
            XenVerCmd::Extraversion => {
                write_fixed::<XEN_EXTRAVERSION_LEN, M>(ctx, arg, &config.extraversion)
            }
            XenVerCmd::CompileInfo => {
                ctx.write(arg, &self.compile_info)?;
                Ok(0)
            }
            XenVerCmd::Capabilities => {
                write_fixed::<XEN_CAPABILITIES_INFO_LEN, M>(ctx, arg, &self.capabilities)
            }
            XenVerCmd::Changeset => {
                write_fixed::<XEN_CHANGESET_INFO_LEN, M>(ctx, arg, &self.changeset)
            }
            XenVerCmd::PlatformParameters => {
                // HVM guests have no hypervisor hole: virt_start is 0.
                match ctx.abi {
                    Abi::X86_64 => ctx.write(arg, &PlatformParameters::default())?,
                    Abi::X86_32 => ctx.write(arg, &PlatformParametersCompat::default())?,
                }
                Ok(0)
            }
            XenVerCmd::GetFeatures => {
                let mut info: FeatureInfo = ctx.read(arg)?;
                if info.submap_idx != XENVER_FEATURES_SUBMAP_0 {
                    warn_limited!(
                        "vCPU {}: XENVER_get_features of submap {}",
                        ctx.vcpu,
                        info.submap_idx
                    );
                    return Err(XenErrno::EINVAL);
                }
                info.submap = config.features.bits();
                ctx.write(arg, &info)?;
                Ok(0)
            }
            XenVerCmd::Pagesize => {
                if arg != 0 {
                    return Err(XenErrno::EINVAL);
                }
                Ok(XENVER_PAGESIZE)
            }
            XenVerCmd::GuestHandle => {
                ctx.write_bytes(arg, &config.uuid)?;
                Ok(0)
            }
            XenVerCmd::Commandline => {
                if self.deny_restricted {
                    // Xen copies just the string and its NUL.
                    let mut denied = XEN_DENY.as_bytes().to_vec();
                    denied.push(0);
                    ctx.write_bytes(arg, &denied)?;
                    return Ok(0);
                }
                write_fixed::<XEN_COMMANDLINE_LEN, M>(ctx, arg, &config.commandline)
            }
            XenVerCmd::BuildId | XenVerCmd::Commandline2 if self.deny_restricted => {
                Err(XenErrno::EPERM)
            }
            XenVerCmd::BuildId => write_varbuf(ctx, arg, &self.build_id),
            XenVerCmd::Extraversion2 => write_varbuf(ctx, arg, c_str(&config.extraversion)),
            XenVerCmd::Capabilities2 => write_varbuf(ctx, arg, c_str(&self.capabilities)),
            XenVerCmd::Changeset2 => write_varbuf(ctx, arg, c_str(&self.changeset)),
            XenVerCmd::Commandline2 => write_varbuf(ctx, arg, c_str(&config.commandline)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use xen_abi::features::XenFeatures;
    use xen_abi::memory::{E820Entry, E820Type};
    use xen_abi::xen::HypercallNr;

    use super::*;
    use crate::domain::DomainConfig;
    use crate::testing::{ABIS, BAD, BUF};
    use crate::testing::{RAM_SIZE, TestVm};

    fn vm_with(config: DomainConfig, op: XenVersionOp) -> TestVm {
        let mut vm = TestVm::with_config(config);
        vm.dispatcher
            .register(HypercallNr::XenVersion, Arc::new(op));
        vm
    }

    fn config() -> DomainConfig {
        let map = vec![E820Entry::new(0, RAM_SIZE, E820Type::Ram)];
        DomainConfig::new(1, xen_cpuid::XenVersion::V4_10, map)
    }

    fn vm() -> TestVm {
        vm_with(config(), XenVersionOp::new())
    }

    fn xv(vm: &TestVm, abi: Abi, cmd: XenVerCmd, arg: u64) -> HcResult {
        vm.call(
            0,
            abi,
            HypercallNr::XenVersion,
            &[u64::from(cmd.raw()), arg],
        )
    }

    /// Fills `len` bytes at BUF (plus a guard byte) with 0xAA.
    fn poison(vm: &TestVm, len: usize) {
        vm.write_bytes(BUF, &vec![0xaa; len + 1]);
    }

    /// Asserts the `len` bytes at BUF are `s` then zeroes, and the guard
    /// byte after them is untouched.
    fn assert_fixed(vm: &TestVm, len: usize, s: &[u8]) {
        let got = vm.read_bytes(BUF, len + 1);
        assert_eq!(&got[..s.len()], s);
        assert!(got[s.len()..len].iter().all(|&b| b == 0), "not zero-padded");
        assert_eq!(got[len], 0xaa, "wrote past the array");
    }

    #[test]
    fn test_xen_version_version_returns_config_value() {
        let vm = vm();
        for abi in ABIS {
            assert_eq!(xv(&vm, abi, XenVerCmd::Version, 0), Ok(0x4000a));
            assert_eq!(xv(&vm, abi, XenVerCmd::Version, BAD), Ok(0x4000a));
        }
    }

    #[test]
    fn test_xen_version_cmd_upper_bits_ignored() {
        let vm = vm();
        let r = vm.call(0, Abi::X86_64, HypercallNr::XenVersion, &[1 << 32, 0]);
        assert_eq!(r, Ok(0x4000a));
    }

    #[test]
    fn test_xen_version_unknown_cmd_returns_enosys() {
        let vm = vm();
        for cmd in [15, 16, 0x7fff_ffff, 0xffff_ffff] {
            let r = vm.call(0, Abi::X86_64, HypercallNr::XenVersion, &[cmd, BUF]);
            assert_eq!(r, Err(XenErrno::ENOSYS), "cmd {cmd}");
        }
    }

    #[test]
    fn test_xen_version_extraversion_zero_pads_16_bytes() {
        let vm = vm();
        for abi in ABIS {
            poison(&vm, XEN_EXTRAVERSION_LEN);
            assert_eq!(xv(&vm, abi, XenVerCmd::Extraversion, BUF), Ok(0));
            assert_fixed(&vm, XEN_EXTRAVERSION_LEN, b".0");
        }
    }

    #[test]
    fn test_xen_version_extraversion_long_string_truncated_with_nul() {
        let mut c = config();
        c.extraversion = "-0123456789abcdefghij".into();
        let vm = vm_with(c, XenVersionOp::new());
        poison(&vm, XEN_EXTRAVERSION_LEN);
        assert_eq!(xv(&vm, Abi::X86_64, XenVerCmd::Extraversion, BUF), Ok(0));
        assert_fixed(&vm, XEN_EXTRAVERSION_LEN, b"-0123456789abcd");
    }

    #[test]
    fn test_xen_version_compile_info_writes_144_bytes() {
        let vm = vm();
        for abi in ABIS {
            poison(&vm, 144);
            assert_eq!(xv(&vm, abi, XenVerCmd::CompileInfo, BUF), Ok(0));
            let got = vm.read_bytes(BUF, 145);
            let field = |off: usize, len: usize, s: &[u8]| {
                assert_eq!(&got[off..off + s.len()], s);
                assert!(got[off + s.len()..off + len].iter().all(|&b| b == 0));
            };
            field(0, 64, DEFAULT_COMPILER.as_bytes());
            field(64, 16, DEFAULT_COMPILE_BY.as_bytes());
            field(80, 32, DEFAULT_COMPILE_DOMAIN.as_bytes());
            field(112, 32, DEFAULT_COMPILE_DATE.as_bytes());
            assert_eq!(got[144], 0xaa);
        }
    }

    #[test]
    fn test_xen_version_compile_info_custom_record_reported() {
        let info = CompileInfo::new("gcc", "me", "example.org", "today");
        let vm = vm_with(config(), XenVersionOp::new().with_compile_info(info));
        assert_eq!(xv(&vm, Abi::X86_64, XenVerCmd::CompileInfo, BUF), Ok(0));
        assert_eq!(vm.read::<CompileInfo>(BUF), info);
    }

    #[test]
    fn test_xen_version_capabilities_zero_pads_1024_bytes() {
        let vm = vm();
        for abi in ABIS {
            poison(&vm, XEN_CAPABILITIES_INFO_LEN);
            assert_eq!(xv(&vm, abi, XenVerCmd::Capabilities, BUF), Ok(0));
            assert_fixed(&vm, XEN_CAPABILITIES_INFO_LEN, XEN_CAPABILITIES.as_bytes());
        }
    }

    #[test]
    fn test_xen_version_changeset_zero_pads_64_bytes() {
        let vm = vm_with(config(), XenVersionOp::new().with_changeset("git:0123abcd"));
        for abi in ABIS {
            poison(&vm, XEN_CHANGESET_INFO_LEN);
            assert_eq!(xv(&vm, abi, XenVerCmd::Changeset, BUF), Ok(0));
            assert_fixed(&vm, XEN_CHANGESET_INFO_LEN, b"git:0123abcd");
        }
    }

    #[test]
    fn test_xen_version_platform_parameters_64_bit_writes_8_zero_bytes() {
        let vm = vm();
        poison(&vm, 8);
        assert_eq!(
            xv(&vm, Abi::X86_64, XenVerCmd::PlatformParameters, BUF),
            Ok(0)
        );
        assert_fixed(&vm, 8, b"");
    }

    #[test]
    fn test_xen_version_platform_parameters_32_bit_writes_4_zero_bytes() {
        let vm = vm();
        poison(&vm, 4);
        assert_eq!(
            xv(&vm, Abi::X86_32, XenVerCmd::PlatformParameters, BUF),
            Ok(0)
        );
        assert_fixed(&vm, 4, b"");
    }

    #[test]
    fn test_xen_version_get_features_submap_0_returns_config_bits() {
        let mut c = config();
        c.features = XenFeatures::QEMU_DEFAULT;
        let vm = vm_with(c, XenVersionOp::new());
        for abi in ABIS {
            vm.write(
                BUF,
                FeatureInfo {
                    submap_idx: 0,
                    submap: 0xdead_beef,
                },
            );
            assert_eq!(xv(&vm, abi, XenVerCmd::GetFeatures, BUF), Ok(0));
            let info: FeatureInfo = vm.read(BUF);
            assert_eq!(
                info,
                FeatureInfo {
                    submap_idx: 0,
                    submap: 0x707
                }
            );
        }
    }

    #[test]
    fn test_xen_version_get_features_other_submap_returns_einval_untouched() {
        let vm = vm();
        for idx in [1, 2, u32::MAX] {
            let before = FeatureInfo {
                submap_idx: idx,
                submap: 0x1234,
            };
            vm.write(BUF, before);
            assert_eq!(
                xv(&vm, Abi::X86_64, XenVerCmd::GetFeatures, BUF),
                Err(XenErrno::EINVAL)
            );
            assert_eq!(vm.read::<FeatureInfo>(BUF), before);
        }
    }

    #[test]
    fn test_xen_version_pagesize_null_returns_4096() {
        let vm = vm();
        for abi in ABIS {
            assert_eq!(xv(&vm, abi, XenVerCmd::Pagesize, 0), Ok(4096));
        }
    }

    #[test]
    fn test_xen_version_pagesize_non_null_returns_einval() {
        let vm = vm();
        for abi in ABIS {
            assert_eq!(
                xv(&vm, abi, XenVerCmd::Pagesize, BUF),
                Err(XenErrno::EINVAL)
            );
        }
    }

    #[test]
    fn test_xen_version_guest_handle_writes_uuid() {
        let mut c = config();
        c.uuid = core::array::from_fn(|i| i as u8 + 1);
        let vm = vm_with(c, XenVersionOp::new());
        for abi in ABIS {
            poison(&vm, 16);
            assert_eq!(xv(&vm, abi, XenVerCmd::GuestHandle, BUF), Ok(0));
            let got = vm.read_bytes(BUF, 17);
            assert_eq!(
                &got[..16],
                &core::array::from_fn::<u8, 16, _>(|i| i as u8 + 1)
            );
            assert_eq!(got[16], 0xaa);
        }
    }

    #[test]
    fn test_xen_version_commandline_zero_pads_1024_bytes() {
        let mut c = config();
        c.commandline = "console=com1 dom0_mem=1G".into();
        let vm = vm_with(c, XenVersionOp::new());
        for abi in ABIS {
            poison(&vm, XEN_COMMANDLINE_LEN);
            assert_eq!(xv(&vm, abi, XenVerCmd::Commandline, BUF), Ok(0));
            assert_fixed(&vm, XEN_COMMANDLINE_LEN, b"console=com1 dom0_mem=1G");
        }
    }

    #[test]
    fn test_xen_version_build_id_null_returns_size() {
        let vm = vm();
        for abi in ABIS {
            assert_eq!(xv(&vm, abi, XenVerCmd::BuildId, 0), Ok(20));
        }
    }

    #[test]
    fn test_xen_version_build_id_fits_writes_and_returns_length() {
        let vm = vm();
        for abi in ABIS {
            vm.write_bytes(BUF, &[0xaa; 40]);
            vm.write(BUF, XenVarbuf { len: 32 });
            assert_eq!(xv(&vm, abi, XenVerCmd::BuildId, BUF), Ok(20));
            let got = vm.read_bytes(BUF, 40);
            assert_eq!(&got[..4], &32u32.to_le_bytes(), "len is IN only");
            assert_eq!(&got[4..24], &DEFAULT_BUILD_ID);
            assert!(
                got[24..].iter().all(|&b| b == 0xaa),
                "no NUL, nothing past the data"
            );
        }
    }

    #[test]
    fn test_xen_version_build_id_exact_length_fits() {
        let vm = vm_with(config(), XenVersionOp::new().with_build_id(vec![7u8; 3]));
        vm.write(BUF, XenVarbuf { len: 3 });
        assert_eq!(xv(&vm, Abi::X86_64, XenVerCmd::BuildId, BUF), Ok(3));
        assert_eq!(vm.read_bytes(BUF + 4, 3), vec![7, 7, 7]);
    }

    #[test]
    fn test_xen_version_build_id_short_buffer_returns_enobufs() {
        let vm = vm();
        for (abi, len) in [(Abi::X86_64, 19), (Abi::X86_32, 0)] {
            vm.write_bytes(BUF, &[0xaa; 40]);
            vm.write(BUF, XenVarbuf { len });
            assert_eq!(
                xv(&vm, abi, XenVerCmd::BuildId, BUF),
                Err(XenErrno::ENOBUFS)
            );
            assert!(vm.read_bytes(BUF + 4, 36).iter().all(|&b| b == 0xaa));
        }
    }

    #[test]
    fn test_xen_version_varbuf_ops_return_untruncated_strings() {
        let mut c = config();
        c.extraversion = "-a-very-long-extra-version-string".into();
        c.commandline = "x".repeat(1500);
        let op = XenVersionOp::new().with_changeset("c".repeat(100));
        let vm = vm_with(c.clone(), op);
        let cases: [(XenVerCmd, Vec<u8>); 4] = [
            (
                XenVerCmd::Extraversion2,
                c.extraversion.clone().into_bytes(),
            ),
            (
                XenVerCmd::Capabilities2,
                XEN_CAPABILITIES.as_bytes().to_vec(),
            ),
            (XenVerCmd::Changeset2, vec![b'c'; 100]),
            (XenVerCmd::Commandline2, vec![b'x'; 1500]),
        ];
        for abi in ABIS {
            for (cmd, want) in &cases {
                let n = want.len() as u64;
                assert_eq!(xv(&vm, abi, *cmd, 0), Ok(n), "{cmd}");
                vm.write_bytes(BUF, &vec![0xaa; want.len() + 8]);
                vm.write(BUF, XenVarbuf { len: 4096 });
                assert_eq!(xv(&vm, abi, *cmd, BUF), Ok(n), "{cmd}");
                assert_eq!(&vm.read_bytes(BUF + 4, want.len()), want, "{cmd}");
                assert_eq!(vm.read_bytes(BUF + 4 + n, 1), vec![0xaa], "{cmd}: no NUL");
                vm.write(
                    BUF,
                    XenVarbuf {
                        len: want.len() as u32 - 1,
                    },
                );
                assert_eq!(xv(&vm, abi, *cmd, BUF), Err(XenErrno::ENOBUFS), "{cmd}");
            }
        }
    }

    #[test]
    fn test_xen_version_varbuf_string_stops_at_nul_like_strlen() {
        let mut c = config();
        c.extraversion = ".0\0hidden".into();
        let vm = vm_with(c, XenVersionOp::new());
        assert_eq!(xv(&vm, Abi::X86_64, XenVerCmd::Extraversion2, 0), Ok(2));
    }

    #[test]
    fn test_xen_version_varbuf_empty_string_returns_zero() {
        let vm = vm();
        vm.write(BUF, XenVarbuf { len: 0 });
        assert_eq!(xv(&vm, Abi::X86_64, XenVerCmd::Commandline2, BUF), Ok(0));
        assert_eq!(xv(&vm, Abi::X86_64, XenVerCmd::Commandline2, 0), Ok(0));
    }

    #[test]
    fn test_xen_version_varbuf_over_64k_returns_e2big() {
        let vm = vm_with(
            config(),
            XenVersionOp::new().with_build_id(vec![1u8; VARBUF_MAX + 1]),
        );
        vm.write(BUF, XenVarbuf { len: u32::MAX });
        assert_eq!(
            xv(&vm, Abi::X86_64, XenVerCmd::BuildId, 0),
            Err(XenErrno::E2BIG)
        );
        assert_eq!(
            xv(&vm, Abi::X86_64, XenVerCmd::BuildId, BUF),
            Err(XenErrno::E2BIG)
        );
        let vm = vm_with(
            config(),
            XenVersionOp::new().with_build_id(vec![1u8; VARBUF_MAX]),
        );
        assert_eq!(
            xv(&vm, Abi::X86_64, XenVerCmd::BuildId, 0),
            Ok(VARBUF_MAX as u64)
        );
    }

    #[test]
    fn test_xen_version_bad_pointer_returns_efault() {
        let vm = vm();
        for cmd in XenVerCmd::ALL.iter().copied() {
            if matches!(cmd, XenVerCmd::Version | XenVerCmd::Pagesize) {
                continue;
            }
            for abi in ABIS {
                assert_eq!(
                    xv(&vm, abi, cmd, BAD),
                    Err(XenErrno::EFAULT),
                    "{cmd} {abi:?}"
                );
            }
        }
    }

    #[test]
    fn test_xen_version_buffer_past_ram_end_returns_efault_and_writes_nothing() {
        let vm = vm();
        let at = RAM_SIZE - 8;
        vm.write_bytes(at, &[0xaa; 8]);
        assert_eq!(
            xv(&vm, Abi::X86_64, XenVerCmd::Extraversion, at),
            Err(XenErrno::EFAULT)
        );
        assert_eq!(vm.read_bytes(at, 8), vec![0xaa; 8]);
    }

    #[test]
    fn test_xen_version_varbuf_data_past_ram_end_returns_efault() {
        let vm = vm();
        let at = RAM_SIZE - 8;
        vm.write(at, XenVarbuf { len: 64 });
        assert_eq!(
            xv(&vm, Abi::X86_64, XenVerCmd::BuildId, at),
            Err(XenErrno::EFAULT)
        );
    }

    #[test]
    fn test_xen_version_deny_restricted_hides_commandline_and_build_id() {
        let mut c = config();
        c.commandline = "secret".into();
        let vm = vm_with(c, XenVersionOp::new().deny_restricted(true));
        poison(&vm, XEN_COMMANDLINE_LEN);
        assert_eq!(xv(&vm, Abi::X86_64, XenVerCmd::Commandline, BUF), Ok(0));
        let got = vm.read_bytes(BUF, 10);
        assert_eq!(&got, b"<denied>\0\xaa");
        assert_eq!(
            xv(&vm, Abi::X86_64, XenVerCmd::Commandline2, 0),
            Err(XenErrno::EPERM)
        );
        assert_eq!(
            xv(&vm, Abi::X86_64, XenVerCmd::BuildId, 0),
            Err(XenErrno::EPERM)
        );
        // The other strings stay visible, as in Xen's policy.
        assert_eq!(xv(&vm, Abi::X86_64, XenVerCmd::Extraversion2, 0), Ok(2));
    }

    proptest! {
        #[test]
        fn test_xen_version_arbitrary_args_never_panic(
            cmd in prop_oneof![0u64..20, any::<u64>()],
            arg in prop_oneof![Just(0u64), Just(BUF), Just(RAM_SIZE - 3), any::<u64>()],
            contents in proptest::collection::vec(any::<u8>(), 8),
            is_64 in any::<bool>(),
        ) {
            let vm = vm();
            vm.write_bytes(BUF, &contents);
            let abi = if is_64 { Abi::X86_64 } else { Abi::X86_32 };
            let args = [cmd, arg].map(|a| abi.word(a));
            let r = vm.call(0, abi, HypercallNr::XenVersion, &args);
            if let Err(e) = r {
                prop_assert!(matches!(
                    e,
                    XenErrno::EFAULT | XenErrno::EINVAL | XenErrno::ENOSYS | XenErrno::ENOBUFS
                ));
            }
        }
    }
}
