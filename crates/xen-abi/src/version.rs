// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `xen_version` hypercall (17) definitions, mirroring
//! `xen/include/public/version.h`.
//!
//! Follows interface version 0x00041300 (Xen 4.23-unstable), `xen-abi.md`
//! §3.11. The fixed-size string results are plain byte arrays; use
//! [`fixed_string`] to fill one from a `&str` the way Xen does (truncated and
//! always NUL-terminated).

abi_enum! {
    /// `xen_version` sub-operations (`XENVER_*`).
    pub enum XenVerCmd: u32, "xen_version command" {
        /// Returns `(major << 16) | minor`; the argument must be NULL.
        Version = 0 => "XENVER_version",
        /// Fills a 16-byte extra-version string.
        Extraversion = 1 => "XENVER_extraversion",
        /// Fills a [`CompileInfo`].
        CompileInfo = 2 => "XENVER_compile_info",
        /// Fills a 1024-byte capabilities string.
        Capabilities = 3 => "XENVER_capabilities",
        /// Fills a 64-byte changeset string.
        Changeset = 4 => "XENVER_changeset",
        /// Fills a [`PlatformParameters`] (or its compat form).
        PlatformParameters = 5 => "XENVER_platform_parameters",
        /// Reads a [`FeatureInfo`] (IN `submap_idx`, OUT `submap`).
        GetFeatures = 6 => "XENVER_get_features",
        /// Returns the page size (4096); the argument must be NULL.
        Pagesize = 7 => "XENVER_pagesize",
        /// Fills the 16-byte domain handle (UUID).
        GuestHandle = 8 => "XENVER_guest_handle",
        /// Fills a 1024-byte Xen command line.
        Commandline = 9 => "XENVER_commandline",
        /// Fills a [`XenVarbuf`] with the build id.
        BuildId = 10 => "XENVER_build_id",
        /// Non-truncating extra version ([`XenVarbuf`]).
        Extraversion2 = 11 => "XENVER_extraversion2",
        /// Non-truncating capabilities ([`XenVarbuf`]).
        Capabilities2 = 12 => "XENVER_capabilities2",
        /// Non-truncating changeset ([`XenVarbuf`]).
        Changeset2 = 13 => "XENVER_changeset2",
        /// Non-truncating command line ([`XenVarbuf`]).
        Commandline2 = 14 => "XENVER_commandline2",
    }
}

/// Size of the `XENVER_extraversion` buffer (`xen_extraversion_t`).
pub const XEN_EXTRAVERSION_LEN: usize = 16;
/// Size of the `XENVER_capabilities` buffer (`xen_capabilities_info_t`).
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
/// Size of the `XENVER_changeset` buffer (`xen_changeset_info_t`).
pub const XEN_CHANGESET_INFO_LEN: usize = 64;
/// Size of the `XENVER_commandline` buffer (`xen_commandline_t`).
pub const XEN_COMMANDLINE_LEN: usize = 1024;
/// Size of the `XENVER_guest_handle` buffer (`xen_domain_handle_t`).
pub const XEN_DOMAIN_HANDLE_LEN: usize = 16;
/// The value `XENVER_pagesize` returns.
pub const XENVER_PAGESIZE: u64 = 4096;
/// The only valid `submap_idx` of `XENVER_get_features`.
pub const XENVER_FEATURES_SUBMAP_0: u32 = 0;

/// `xen_extraversion_t`.
pub type XenExtraversion = [u8; XEN_EXTRAVERSION_LEN];
/// `xen_capabilities_info_t`.
pub type XenCapabilitiesInfo = [u8; XEN_CAPABILITIES_INFO_LEN];
/// `xen_changeset_info_t`.
pub type XenChangesetInfo = [u8; XEN_CHANGESET_INFO_LEN];
/// `xen_commandline_t`.
pub type XenCommandline = [u8; XEN_COMMANDLINE_LEN];
/// `xen_domain_handle_t` (the domain UUID).
pub type XenDomainHandle = [u8; XEN_DOMAIN_HANDLE_LEN];

/// Builds the `XENVER_version` return value `(major << 16) | minor`.
pub const fn xen_version_value(major: u16, minor: u16) -> u32 {
    ((major as u32) << 16) | minor as u32
}

/// Copies `s` into a zeroed `N`-byte buffer, truncating it to `N - 1` bytes so
/// the result is always NUL-terminated (as Xen's `safe_strcpy` does).
pub fn fixed_string<const N: usize>(s: &str) -> [u8; N] {
    let mut buf = [0u8; N];
    copy_c_string(&mut buf, s);
    buf
}

/// Copies `s` into `dst`, truncated to `dst.len() - 1` bytes and followed by
/// zero bytes up to the end of `dst`.
fn copy_c_string(dst: &mut [u8], s: &str) {
    dst.fill(0);
    let n = s.len().min(dst.len().saturating_sub(1));
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

/// `struct xen_compile_info` (144 bytes, both modes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileInfo {
    /// Compiler identification, NUL-terminated.
    pub compiler: [u8; 64],
    /// Who built Xen, NUL-terminated.
    pub compile_by: [u8; 16],
    /// Build host domain, NUL-terminated.
    pub compile_domain: [u8; 32],
    /// Build date, NUL-terminated.
    pub compile_date: [u8; 32],
}
abi_layout!(CompileInfo, 144, {
    compiler => 0, compile_by => 64, compile_domain => 80, compile_date => 112,
});

impl Default for CompileInfo {
    fn default() -> Self {
        CompileInfo {
            compiler: [0; 64],
            compile_by: [0; 16],
            compile_domain: [0; 32],
            compile_date: [0; 32],
        }
    }
}

impl CompileInfo {
    /// Builds a compile-info record from strings, truncating each to fit.
    pub fn new(compiler: &str, compile_by: &str, compile_domain: &str, compile_date: &str) -> Self {
        let mut info = CompileInfo::default();
        copy_c_string(&mut info.compiler, compiler);
        copy_c_string(&mut info.compile_by, compile_by);
        copy_c_string(&mut info.compile_domain, compile_domain);
        copy_c_string(&mut info.compile_date, compile_date);
        info
    }
}

/// `struct xen_feature_info` (8 bytes, both modes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeatureInfo {
    /// IN: which 32-bit submap to read (only 0 is valid).
    pub submap_idx: u32,
    /// OUT: the feature bits (see [`crate::features::XenFeatures`]).
    pub submap: u32,
}
abi_layout!(FeatureInfo, 8, { submap_idx => 0, submap => 4 });

/// `struct xen_platform_parameters`, x86_64 layout (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlatformParameters {
    /// Start of the hypervisor virtual-address hole (0 for HVM guests).
    pub virt_start: u64,
}
abi_layout!(PlatformParameters, 8, { virt_start => 0 });

/// `struct xen_platform_parameters`, x86_32 layout (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlatformParametersCompat {
    /// Start of the hypervisor virtual-address hole (0 for HVM guests).
    pub virt_start: u32,
}
abi_layout!(PlatformParametersCompat, 4, { virt_start => 0 });

/// Header of `struct xen_varbuf` (4 bytes): the `len` bytes of data follow it.
///
/// With a NULL argument the sub-operation returns the required size; otherwise
/// `len` is the capacity of the following buffer and the return value is the
/// number of bytes written (no NUL terminator).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenVarbuf {
    /// IN: size of the buffer that follows this header.
    pub len: u32,
}
abi_layout!(XenVarbuf, 4, { len => 0 });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_xen_ver_cmd_all_values_round_trip() {
        for &c in XenVerCmd::ALL {
            assert_eq!(XenVerCmd::try_from(c.raw()).unwrap(), c);
        }
        assert_eq!(XenVerCmd::ALL.len(), 15);
        assert!(XenVerCmd::try_from(15).is_err());
    }

    #[test]
    fn test_fixed_string_short_input_zero_padded() {
        let b: XenExtraversion = fixed_string("-unstable");
        assert_eq!(&b[..9], b"-unstable");
        assert!(b[9..].iter().all(|&c| c == 0));
    }

    #[test]
    fn test_fixed_string_long_input_truncated_and_terminated() {
        let b: XenExtraversion = fixed_string("0123456789abcdefXYZ");
        assert_eq!(&b[..15], b"0123456789abcde");
        assert_eq!(b[15], 0);
    }

    #[test]
    fn test_compile_info_new_places_strings_at_offsets() {
        let info = CompileInfo::new("gcc", "me", "example.org", "today");
        let bytes = vm_memory::ByteValued::as_slice(&info);
        assert_eq!(&bytes[0..4], b"gcc\0");
        assert_eq!(&bytes[64..67], b"me\0");
        assert_eq!(&bytes[80..92], b"example.org\0");
        assert_eq!(&bytes[112..118], b"today\0");
    }

    #[test]
    fn test_xen_version_value_packs_major_minor() {
        assert_eq!(xen_version_value(4, 17), 0x0004_0011);
    }
}
