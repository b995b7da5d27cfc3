// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! XenStore paths, checked as C xenstored's `canonicalize` (`core.c`)
//! checks them (`docs/misc/xenstore.txt`, `xen-abi.md` §5.4).
//!
//! A path is made of `A-Z a-z 0-9 - / _ @`; absolute paths start with `/`,
//! special watch paths with `@` (`@introduceDomain`, `@releaseDomain`), and
//! anything else is relative to the caller's home `/local/domain/<domid>`.
//! `//` and a trailing `/` (other than the root itself) are refused. For an
//! unprivileged caller the part below `/local/domain/<id>/` (the whole path
//! elsewhere) may be at most the `path_max` quota long. Every violation is
//! `EINVAL`.

use xen_abi::errno::XenErrno;
use xen_abi::io::xs_wire::XENSTORE_ABS_PATH_MAX;

/// The special node fired when a domain is introduced.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// The special node fired when a domain is released.
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// The home of domain `domid`: `/local/domain/<domid>` (what
/// `XS_GET_DOMAIN_PATH` answers).
pub fn domain_path(domid: u32) -> String {
    format!("/local/domain/{domid}")
}

/// True if every byte is one C xenstored accepts in a path.
fn valid_chars(s: &[u8]) -> bool {
    s.iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'/' | b'_' | b'@'))
}

/// Offset of what follows `/local/domain/<id>/` in `name`, or 0 (C's
/// `sscanf(name, "/local/domain/%5u/%n")`).
fn local_offset(name: &str) -> usize {
    const PREFIX: &str = "/local/domain/";
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return 0;
    };
    let digits = rest
        .bytes()
        .take(5)
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits > 0 && rest.as_bytes().get(digits) == Some(&b'/') {
        PREFIX.len() + digits + 1
    } else {
        0
    }
}

/// How long a path may be.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PathLimit {
    /// Unprivileged: the part below the domain home (or the whole path)
    /// at most this long.
    Relative(usize),
    /// Privileged: the protocol's absolute maximum.
    Absolute,
}

/// Checks `raw` and makes it absolute (relative to `home`). `allow_special`
/// admits `@` paths (watches and permissions of the special nodes).
pub(crate) fn canonicalize(
    raw: &[u8],
    home: &str,
    limit: PathLimit,
    allow_special: bool,
) -> Result<String, XenErrno> {
    if !valid_chars(raw) || (raw.first() == Some(&b'@') && !allow_special) {
        return Err(XenErrno::EINVAL);
    }
    // Only ASCII is left.
    let s = std::str::from_utf8(raw).map_err(|_| XenErrno::EINVAL)?;
    let name = if s.starts_with('/') || s.starts_with('@') {
        s.to_owned()
    } else {
        format!("{home}/{s}")
    };
    if (name.ends_with('/') && name != "/") || name.contains("//") {
        return Err(XenErrno::EINVAL);
    }
    let too_long = match limit {
        PathLimit::Relative(max) => name.len() - local_offset(&name) > max,
        PathLimit::Absolute => name.len() > XENSTORE_ABS_PATH_MAX,
    };
    if too_long {
        return Err(XenErrno::EINVAL);
    }
    Ok(name)
}

/// True for an `@` path.
pub(crate) fn is_special(name: &str) -> bool {
    name.starts_with('@')
}

/// The parent of a canonical path (`/` for top-level and special nodes).
pub(crate) fn parent(name: &str) -> &str {
    match name.get(1..).and_then(|rest| rest.rfind('/')) {
        Some(i) => &name[..=i],
        None => "/",
    }
}

/// The last component of a canonical path other than `/`.
pub(crate) fn basename(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The path of child `child` of `parent`.
pub(crate) fn child_path(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// True if `child` is `parent` or below it, at most `depth` levels down
/// (`None`: any depth) — C xenstored's `is_child` with the watch depth.
pub(crate) fn is_child(child: &str, parent: &str, depth: Option<u32>) -> bool {
    let (c, p) = (child.as_bytes(), parent.as_bytes());
    if !c.starts_with(p) {
        return false;
    }
    let mut len = p.len();
    if len > 1 && c.len() > len && c[len] != b'/' {
        return false;
    }
    let Some(depth) = depth else {
        return true;
    };
    if c.len() == len {
        return true;
    }
    let mut levels: u64 = u64::from(len == 1);
    while levels <= u64::from(depth) {
        match c.get(len) {
            None => return true,
            Some(b'/') => levels += 1,
            Some(_) => {}
        }
        len += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: &str = "/local/domain/1";

    fn canon(s: &str) -> Result<String, XenErrno> {
        canonicalize(s.as_bytes(), HOME, PathLimit::Relative(2048), false)
    }

    #[test]
    fn test_canonicalize_relative_gets_home_prefix() {
        assert_eq!(canon("data/x").unwrap(), "/local/domain/1/data/x");
        assert_eq!(canon("/a/b").unwrap(), "/a/b");
        assert_eq!(canon("/").unwrap(), "/");
        assert_eq!(canon("/a@b").unwrap(), "/a@b");
    }

    #[test]
    fn test_canonicalize_bad_forms_einval() {
        for bad in ["", "a//b", "/a/", "a/", "/a b", "a.b", "@x", "//", "\u{e9}"] {
            assert_eq!(canon(bad), Err(XenErrno::EINVAL), "{bad:?}");
        }
    }

    #[test]
    fn test_canonicalize_special_only_when_allowed() {
        let special =
            canonicalize(b"@introduceDomain", HOME, PathLimit::Relative(2048), true).unwrap();
        assert_eq!(special, "@introduceDomain");
        assert_eq!(
            canonicalize(b"@x/", HOME, PathLimit::Relative(2048), true),
            Err(XenErrno::EINVAL)
        );
    }

    #[test]
    fn test_canonicalize_length_counts_below_domain_home() {
        let long = "a".repeat(2048);
        assert!(canon(&long).is_ok());
        assert_eq!(canon(&format!("{long}b")), Err(XenErrno::EINVAL));
        assert!(canon(&format!("/local/domain/2/{long}")).is_ok());
        assert_eq!(canon(&format!("/x/{long}")), Err(XenErrno::EINVAL));
        // Six digits are not a domain id: the whole path counts.
        assert_eq!(
            canon(&format!("/local/domain/123456/{long}")),
            Err(XenErrno::EINVAL)
        );
        let abs = format!("/{}", "a".repeat(XENSTORE_ABS_PATH_MAX));
        assert_eq!(
            canonicalize(
                abs.as_bytes(),
                "/local/domain/0",
                PathLimit::Absolute,
                false
            ),
            Err(XenErrno::EINVAL)
        );
    }

    #[test]
    fn test_parent_and_basename() {
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/"), "/");
        assert_eq!(parent("@introduceDomain"), "/");
        assert_eq!(basename("/a/b/c"), "c");
        assert_eq!(child_path("/", "a"), "/a");
        assert_eq!(child_path("/a", "b"), "/a/b");
    }

    #[test]
    fn test_is_child_depth_rules() {
        assert!(is_child("/a/b", "/a", None));
        assert!(is_child("/a", "/a", Some(0)));
        assert!(!is_child("/a/b", "/a", Some(0)));
        assert!(is_child("/a/b", "/a", Some(1)));
        assert!(!is_child("/a/b/c", "/a", Some(1)));
        assert!(!is_child("/ab", "/a", None));
        assert!(is_child("/x", "/", None));
        assert!(is_child("/x", "/", Some(1)));
        assert!(!is_child("/x/y", "/", Some(1)));
        assert!(!is_child("@introduceDomain", "/", None));
    }
}
