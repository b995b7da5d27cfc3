// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Node permissions as Xen defines them (`docs/misc/xenstore.txt`,
//! `xen-abi.md` §5.4) and C xenstored applies them (`perm_for_conn`).
//!
//! A node carries a list of entries `<letter><domid>` with the letters
//! `n` (none), `r` (read), `w` (write) and `b` (both). Entry 0 names the
//! owner, who may do everything, and gives the access of every domain not
//! listed; the *first* later entry naming a domain gives that domain's
//! access. The privileged side (domain 0, i.e. the VMM) may always do
//! everything.

use std::fmt;

use xen_abi::errno::XenErrno;

/// Read access (`XS_PERM_READ`).
pub(crate) const PERM_READ: u8 = 1;
/// Write access (`XS_PERM_WRITE`).
pub(crate) const PERM_WRITE: u8 = 2;
/// Ownership (`XS_PERM_OWNER`): may change the permissions.
pub(crate) const PERM_OWNER: u8 = 4;

/// The access one permission entry grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Access {
    /// `n`: no access.
    None,
    /// `r`: read only.
    Read,
    /// `w`: write only.
    Write,
    /// `b`: read and write.
    Both,
}

impl Access {
    /// The wire letter.
    pub const fn letter(self) -> char {
        match self {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        }
    }

    /// The access for a wire letter.
    pub const fn from_letter(c: u8) -> Option<Access> {
        match c {
            b'n' => Some(Access::None),
            b'r' => Some(Access::Read),
            b'w' => Some(Access::Write),
            b'b' => Some(Access::Both),
            _ => None,
        }
    }

    /// `XS_PERM_*` bits.
    pub(crate) const fn bits(self) -> u8 {
        match self {
            Access::None => 0,
            Access::Read => PERM_READ,
            Access::Write => PERM_WRITE,
            Access::Both => PERM_READ | PERM_WRITE,
        }
    }
}

/// One permission entry of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Perm {
    /// The access granted.
    pub access: Access,
    /// The domain it is granted to (entry 0: the owner). Kept as the
    /// 32-bit value the guest wrote, as C xenstored does.
    pub domid: u32,
    /// Set by the store for an entry naming a domain that did not exist
    /// when the permissions were set or that has been released since (C
    /// xenstored's `XS_PERM_IGNORE`): the entry matches nobody.
    pub ignored: bool,
}

impl Perm {
    /// An entry granting `access` to `domid`.
    pub const fn new(access: Access, domid: u16) -> Self {
        Perm {
            access,
            domid: domid as u32,
            ignored: false,
        }
    }

    /// `n<domid>`.
    pub const fn none(domid: u16) -> Self {
        Perm::new(Access::None, domid)
    }

    /// `r<domid>`.
    pub const fn read(domid: u16) -> Self {
        Perm::new(Access::Read, domid)
    }

    /// `w<domid>`.
    pub const fn write(domid: u16) -> Self {
        Perm::new(Access::Write, domid)
    }

    /// `b<domid>`.
    pub const fn both(domid: u16) -> Self {
        Perm::new(Access::Both, domid)
    }

    /// Parses one wire entry as C xenstored's `xenstore_strings_to_perms`
    /// does: a letter, then a number in C `strtol` base-0 syntax covering
    /// the rest of the string.
    pub fn parse(s: &[u8]) -> Result<Perm, XenErrno> {
        let (&letter, num) = s.split_first().ok_or(XenErrno::EINVAL)?;
        let access = Access::from_letter(letter).ok_or(XenErrno::EINVAL)?;
        if num.is_empty() {
            return Err(XenErrno::EINVAL);
        }
        let (value, used) = strtol0(num);
        if used != num.len() {
            return Err(XenErrno::EINVAL);
        }
        Ok(Perm {
            access,
            domid: value as u32,
            ignored: false,
        })
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.access.letter(), self.domid)
    }
}

/// C `strtol(s, &end, 0)` on a byte string: returns the value (saturated
/// to the `long` range) and how many bytes form the number (0 if none).
pub(crate) fn strtol0(s: &[u8]) -> (i64, usize) {
    strtol(s, None)
}

/// C `atoi`: `strtol(s, NULL, 10)` truncated to `int`.
pub(crate) fn atoi(s: &[u8]) -> i32 {
    strtol(s, Some(10)).0 as i32
}

/// C `strtol` with base `radix`, or base 0 (prefix decides) for `None`.
fn strtol(s: &[u8], radix: Option<u32>) -> (i64, usize) {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        neg = s[i] == b'-';
        i += 1;
    }
    let (radix, start) = match radix {
        Some(r) => (r, i),
        None if s.get(i) == Some(&b'0')
            && matches!(s.get(i + 1), Some(b'x' | b'X'))
            && s.get(i + 2).is_some_and(|c| c.is_ascii_hexdigit()) =>
        {
            (16, i + 2)
        }
        None if s.get(i) == Some(&b'0') => (8, i),
        None => (10, i),
    };
    let mut value: i128 = 0;
    let mut end = start;
    while let Some(d) = s.get(end).and_then(|c| (*c as char).to_digit(radix)) {
        value = (value * i128::from(radix) + i128::from(d)).min(i128::from(u64::MAX) + 1);
        end += 1;
    }
    if end == start {
        return (0, 0);
    }
    let value = if neg { -value } else { value };
    let value = value.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    (value, end)
}

/// What a caller may do with a node (`XS_PERM_*` bits), as C xenstored's
/// `perm_for_conn`: everything when privileged or owner, else the first
/// matching later entry, else entry 0's access.
pub(crate) fn perm_for(privileged: bool, domid: u32, perms: &[Perm]) -> u8 {
    let all = PERM_READ | PERM_WRITE | PERM_OWNER;
    let Some(owner) = perms.first() else {
        return if privileged { all } else { 0 };
    };
    if privileged || owner.domid == domid {
        return all;
    }
    perms[1..]
        .iter()
        .find(|p| !p.ignored && p.domid == domid)
        .map_or(owner.access.bits(), |p| p.access.bits())
}

/// The owner of a node (entry 0).
pub(crate) fn owner(perms: &[Perm]) -> u32 {
    perms.first().map_or(0, |p| p.domid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_perm_parse_letters_and_numbers() {
        assert_eq!(Perm::parse(b"r1").unwrap(), Perm::read(1));
        assert_eq!(Perm::parse(b"b0x10").unwrap(), Perm::both(16));
        assert_eq!(Perm::parse(b"n010").unwrap(), Perm::none(8));
        assert_eq!(Perm::parse(b"w-1").unwrap().domid, u32::MAX);
        for bad in [&b""[..], b"r", b"x1", b"r1a", b"r0x", b"rx"] {
            assert_eq!(Perm::parse(bad), Err(XenErrno::EINVAL), "{bad:?}");
        }
        assert_eq!(Perm::both(3).to_string(), "b3");
    }

    #[test]
    fn test_perm_for_first_match_wins() {
        let perms = [Perm::none(0), Perm::read(1), Perm::both(1)];
        assert_eq!(perm_for(false, 1, &perms), PERM_READ);
        assert_eq!(perm_for(false, 2, &perms), 0);
        assert_eq!(perm_for(true, 2, &perms), 7);
        let owned = [Perm::none(5)];
        assert_eq!(perm_for(false, 5, &owned), 7);
        let default_read = [Perm::read(0)];
        assert_eq!(perm_for(false, 9, &default_read), PERM_READ);
    }

    #[test]
    fn test_perm_for_ignored_entries_do_not_match() {
        let mut e = Perm::both(1);
        e.ignored = true;
        assert_eq!(
            perm_for(false, 1, &[Perm::none(0), e, Perm::read(1)]),
            PERM_READ
        );
    }

    #[test]
    fn test_atoi_as_c() {
        assert_eq!(atoi(b"12"), 12);
        assert_eq!(atoi(b" -3x"), -3);
        assert_eq!(atoi(b"abc"), 0);
        assert_eq!(atoi(b"4294967297"), 1);
        assert_eq!(atoi(b"0x10"), 0, "base 10: the x ends it");
    }

    #[test]
    fn test_strtol_base_0_as_c() {
        assert_eq!(strtol0(b"0x1f"), (31, 4));
        assert_eq!(strtol0(b"010"), (8, 3));
        assert_eq!(strtol0(b"\t-7 "), (-7, 3));
        assert_eq!(strtol0(b"0x"), (0, 1), "the 0 alone is the number");
        assert_eq!(strtol0(b"x"), (0, 0));
        assert_eq!(strtol0(b"99999999999999999999"), (i64::MAX, 20));
    }
}
