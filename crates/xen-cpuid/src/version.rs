// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `xen-version` value a VMM advertises, in `XENVER_version` form.

use std::fmt;
use std::str::FromStr;

/// Lowest major version accepted: HVM guests first appeared in Xen 3.0.
pub const MIN_MAJOR: u16 = 3;
/// Highest major version accepted (Xen is at 4.x; leaves room for growth).
pub const MAX_MAJOR: u16 = 0xff;
/// Highest minor version accepted.
pub const MAX_MINOR: u16 = 0xff;

/// Errors from building or parsing a [`XenVersion`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The value was zero, which means "Xen emulation off" and is not a version.
    #[error("Xen version 0 is not a version; use major << 16 | minor, e.g. 0x4000a for 4.10")]
    Zero,
    /// The major version lies outside the accepted range.
    #[error(
        "Xen major version {major} is out of range ({MIN_MAJOR}..={MAX_MAJOR}); \
         the value is major << 16 | minor, e.g. 0x4000a for 4.10"
    )]
    Major {
        /// The rejected major version.
        major: u32,
    },
    /// The minor version lies outside the accepted range.
    #[error("Xen minor version {minor} is out of range (0..={MAX_MINOR})")]
    Minor {
        /// The rejected minor version.
        minor: u32,
    },
    /// The text is neither `0x<hex>`, a decimal number nor `major.minor`.
    #[error("Cannot parse Xen version {0:?}; expected e.g. 0x4000a or 4.10")]
    Parse(String),
}

/// A Xen version as `XENVER_version` returns it: `major << 16 | minor`.
///
/// ```
/// use xen_cpuid::XenVersion;
/// let v: XenVersion = "0x4000a".parse().unwrap();
/// assert_eq!((v.major(), v.minor()), (4, 10));
/// assert_eq!(v, "4.10".parse().unwrap());
/// assert!(XenVersion::try_from(0).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "u32", into = "u32"))]
pub struct XenVersion(u32);

impl XenVersion {
    /// Xen 4.5: first version with the HVM CPUID leaf.
    pub const V4_5: XenVersion = XenVersion(0x0004_0005);
    /// Xen 4.6: the HVM leaf reports the vCPU id.
    pub const V4_6: XenVersion = XenVersion(0x0004_0006);
    /// Xen 4.10: the HVM leaf reports the domain id; QEMU's documented example.
    pub const V4_10: XenVersion = XenVersion(0x0004_000a);
    /// Xen 4.11: the HVM leaf reports IOMMU mappings of grants.
    pub const V4_11: XenVersion = XenVersion(0x0004_000b);
    /// Xen 4.17: per-vCPU upcall vectors are advertised.
    pub const V4_17: XenVersion = XenVersion(0x0004_0011);

    /// Builds a version from its parts, checking the ranges.
    pub fn new(major: u16, minor: u16) -> Result<Self, VersionError> {
        Self::try_from(u32::from(major) << 16 | u32::from(minor))
    }

    /// The major version.
    pub fn major(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The minor version.
    pub fn minor(self) -> u16 {
        self.0 as u16
    }

    /// The raw `XENVER_version` value.
    pub fn raw(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for XenVersion {
    type Error = VersionError;

    fn try_from(raw: u32) -> Result<Self, Self::Error> {
        if raw == 0 {
            return Err(VersionError::Zero);
        }
        let major = raw >> 16;
        let minor = raw & 0xffff;
        if !(u32::from(MIN_MAJOR)..=u32::from(MAX_MAJOR)).contains(&major) {
            return Err(VersionError::Major { major });
        }
        if minor > u32::from(MAX_MINOR) {
            return Err(VersionError::Minor { minor });
        }
        Ok(Self(raw))
    }
}

impl From<XenVersion> for u32 {
    fn from(v: XenVersion) -> u32 {
        v.0
    }
}

impl FromStr for XenVersion {
    type Err = VersionError;

    /// Accepts `0x4000a` (hex `XENVER_version`), `262154` (decimal) or `4.10`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let parse_err = || VersionError::Parse(s.to_owned());
        if let Some((major, minor)) = t.split_once('.') {
            let major: u32 = major.parse().map_err(|_| parse_err())?;
            let minor: u32 = minor.parse().map_err(|_| parse_err())?;
            if major > 0xffff {
                return Err(VersionError::Major { major });
            }
            if minor > 0xffff {
                return Err(VersionError::Minor { minor });
            }
            return Self::try_from(major << 16 | minor);
        }
        let raw = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => t.parse(),
        }
        .map_err(|_| parse_err())?;
        Self::try_from(raw)
    }
}

impl fmt::Display for XenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major(), self.minor())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_version_parse_hex_decimal_dotted_agree() {
        let a: XenVersion = "0x4000a".parse().unwrap();
        let b: XenVersion = "262154".parse().unwrap();
        let c: XenVersion = "4.10".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.raw(), 0x4000a);
        assert_eq!(a.to_string(), "4.10");
    }

    #[test]
    fn test_version_zero_is_rejected() {
        assert_eq!(XenVersion::try_from(0), Err(VersionError::Zero));
        assert_eq!("0".parse::<XenVersion>(), Err(VersionError::Zero));
        assert_eq!("0x0".parse::<XenVersion>(), Err(VersionError::Zero));
    }

    #[test]
    fn test_version_major_zero_is_rejected() {
        // 0x410 is a common slip for 4.10: it means major 0, minor 0x410.
        assert_eq!(
            XenVersion::try_from(0x410),
            Err(VersionError::Major { major: 0 })
        );
        assert_eq!(
            "2.0".parse::<XenVersion>(),
            Err(VersionError::Major { major: 2 })
        );
        assert_eq!(
            XenVersion::try_from(0x0100_0000),
            Err(VersionError::Major { major: 0x100 })
        );
    }

    #[test]
    fn test_version_minor_too_large_is_rejected() {
        assert_eq!(
            XenVersion::try_from(0x4_0100),
            Err(VersionError::Minor { minor: 0x100 })
        );
        assert_eq!(
            "4.70000".parse::<XenVersion>(),
            Err(VersionError::Minor { minor: 70000 })
        );
    }

    #[test]
    fn test_version_garbage_is_a_parse_error() {
        for s in ["", "x", "0xzz", "4.", ".4", "4.10.1", "-1", "4.-1"] {
            assert!(
                matches!(s.parse::<XenVersion>(), Err(VersionError::Parse(_))),
                "{s:?}"
            );
        }
    }

    #[test]
    fn test_version_new_and_ordering() {
        let v = XenVersion::new(4, 17).unwrap();
        assert_eq!(v, XenVersion::V4_17);
        assert!(XenVersion::V4_5 < XenVersion::V4_6);
        assert!(XenVersion::new(4, 5).unwrap() < XenVersion::new(5, 0).unwrap());
    }
}
