// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Xen errno values, mirroring `xen/include/public/errno.h`.
//!
//! Follows interface version 0x00041300 (Xen 4.23-unstable), `xen-abi.md`
//! §1.4. Hypercalls return these values negated (`-errno`) in RAX/EAX; all of
//! them match the Linux x86 errno numbering, so a guest's `-errno` checks work
//! unchanged. [`XenErrno::neg`] and [`XenErrno::as_ret`] build such return
//! values.

abi_enum! {
    /// A Xen errno value (positive; hypercalls return it negated).
    ///
    /// The variant names are the C identifiers of `errno.h`, kept in upper case
    /// so they read the same as in Xen and guest sources.
    #[allow(clippy::upper_case_acronyms)]
    pub enum XenErrno: i32, "Xen errno" {
        /// Operation not permitted.
        EPERM = 1 => "EPERM",
        /// No such file or directory.
        ENOENT = 2 => "ENOENT",
        /// No such process (or domain).
        ESRCH = 3 => "ESRCH",
        /// Interrupted system call; used only inside Xen.
        EINTR = 4 => "EINTR",
        /// I/O error.
        EIO = 5 => "EIO",
        /// No such device or address.
        ENXIO = 6 => "ENXIO",
        /// Argument list too long.
        E2BIG = 7 => "E2BIG",
        /// Exec format error.
        ENOEXEC = 8 => "ENOEXEC",
        /// Bad file number.
        EBADF = 9 => "EBADF",
        /// No child processes.
        ECHILD = 10 => "ECHILD",
        /// Try again (also `EWOULDBLOCK`).
        EAGAIN = 11 => "EAGAIN",
        /// Out of memory.
        ENOMEM = 12 => "ENOMEM",
        /// Permission denied.
        EACCES = 13 => "EACCES",
        /// Bad address.
        EFAULT = 14 => "EFAULT",
        /// Device or resource busy.
        EBUSY = 16 => "EBUSY",
        /// File exists.
        EEXIST = 17 => "EEXIST",
        /// Cross-device link.
        EXDEV = 18 => "EXDEV",
        /// No such device.
        ENODEV = 19 => "ENODEV",
        /// Not a directory.
        ENOTDIR = 20 => "ENOTDIR",
        /// Is a directory.
        EISDIR = 21 => "EISDIR",
        /// Invalid argument.
        EINVAL = 22 => "EINVAL",
        /// File table overflow.
        ENFILE = 23 => "ENFILE",
        /// Too many open files.
        EMFILE = 24 => "EMFILE",
        /// No space left on device.
        ENOSPC = 28 => "ENOSPC",
        /// Read-only file system.
        EROFS = 30 => "EROFS",
        /// Too many links.
        EMLINK = 31 => "EMLINK",
        /// Math argument out of domain of function.
        EDOM = 33 => "EDOM",
        /// Math result not representable.
        ERANGE = 34 => "ERANGE",
        /// Resource deadlock would occur (also `EDEADLOCK`).
        EDEADLK = 35 => "EDEADLK",
        /// File name too long.
        ENAMETOOLONG = 36 => "ENAMETOOLONG",
        /// No record locks available.
        ENOLCK = 37 => "ENOLCK",
        /// Function not implemented: unknown hypercalls and sub-operations.
        ENOSYS = 38 => "ENOSYS",
        /// Directory not empty.
        ENOTEMPTY = 39 => "ENOTEMPTY",
        /// No data available.
        ENODATA = 61 => "ENODATA",
        /// Timer expired.
        ETIME = 62 => "ETIME",
        /// Not a data message.
        EBADMSG = 74 => "EBADMSG",
        /// Value too large for defined data type.
        EOVERFLOW = 75 => "EOVERFLOW",
        /// Illegal byte sequence.
        EILSEQ = 84 => "EILSEQ",
        /// Interrupted call should be restarted; used only inside Xen.
        ERESTART = 85 => "ERESTART",
        /// Socket operation on non-socket.
        ENOTSOCK = 88 => "ENOTSOCK",
        /// Message too long.
        EMSGSIZE = 90 => "EMSGSIZE",
        /// Operation not supported.
        EOPNOTSUPP = 95 => "EOPNOTSUPP",
        /// Address already in use.
        EADDRINUSE = 98 => "EADDRINUSE",
        /// Cannot assign requested address.
        EADDRNOTAVAIL = 99 => "EADDRNOTAVAIL",
        /// No buffer space available.
        ENOBUFS = 105 => "ENOBUFS",
        /// Transport endpoint is already connected.
        EISCONN = 106 => "EISCONN",
        /// Transport endpoint is not connected.
        ENOTCONN = 107 => "ENOTCONN",
        /// Connection timed out.
        ETIMEDOUT = 110 => "ETIMEDOUT",
        /// Connection refused.
        ECONNREFUSED = 111 => "ECONNREFUSED",
    }
}

impl XenErrno {
    /// Alias of [`XenErrno::EAGAIN`].
    pub const EWOULDBLOCK: XenErrno = XenErrno::EAGAIN;
    /// Alias of [`XenErrno::EDEADLK`].
    pub const EDEADLOCK: XenErrno = XenErrno::EDEADLK;

    /// Returns the negated value, i.e. the signed hypercall return value that
    /// reports this error.
    pub const fn neg(self) -> i64 {
        -(self as i64)
    }

    /// Returns the hypercall return value as the guest sees it in RAX: the
    /// two's complement of [`XenErrno::neg`].
    ///
    /// A 32-bit guest only looks at the low 32 bits (EAX); truncating this
    /// value with `as u32` gives exactly that.
    pub const fn as_ret(self) -> u64 {
        self.neg() as u64
    }

    /// Decodes a signed hypercall return value: `Some(errno)` for a negative
    /// value naming a known errno, `None` for success values (≥ 0) and for
    /// unknown negative values.
    pub fn from_ret(ret: i64) -> Option<XenErrno> {
        if ret >= 0 {
            return None;
        }
        i32::try_from(ret.checked_neg()?)
            .ok()
            .and_then(|v| XenErrno::try_from(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AbiError;

    #[test]
    fn test_xen_errno_all_values_round_trip() {
        for &e in XenErrno::ALL {
            assert_eq!(XenErrno::try_from(e.raw()).unwrap(), e);
            assert_eq!(i32::from(e), e as i32);
        }
        assert_eq!(XenErrno::ALL.len(), 49);
    }

    #[test]
    fn test_xen_errno_unknown_value_rejected() {
        assert_eq!(
            XenErrno::try_from(15),
            Err(AbiError::UnknownSignedValue {
                what: "Xen errno",
                value: 15
            })
        );
        assert!(XenErrno::try_from(0).is_err());
        assert!(XenErrno::try_from(-22).is_err());
    }

    #[test]
    fn test_xen_errno_table_values_match_reference() {
        let table = [
            (XenErrno::EPERM, 1),
            (XenErrno::EFAULT, 14),
            (XenErrno::ENOSYS, 38),
            (XenErrno::EINVAL, 22),
            (XenErrno::ENOSPC, 28),
            (XenErrno::EDEADLK, 35),
            (XenErrno::ETIME, 62),
            (XenErrno::ERESTART, 85),
            (XenErrno::EOPNOTSUPP, 95),
            (XenErrno::ECONNREFUSED, 111),
        ];
        for (e, v) in table {
            assert_eq!(e.raw(), v, "{e}");
        }
    }

    #[test]
    fn test_xen_errno_neg_gives_negative_return() {
        assert_eq!(XenErrno::ENOSYS.neg(), -38);
        assert_eq!(XenErrno::EINVAL.as_ret(), (-22i64) as u64);
        assert_eq!(XenErrno::EINVAL.as_ret() as u32, 0xffff_ffea);
    }

    #[test]
    fn test_xen_errno_from_ret_decodes_negative_only() {
        assert_eq!(XenErrno::from_ret(-38), Some(XenErrno::ENOSYS));
        assert_eq!(XenErrno::from_ret(0), None);
        assert_eq!(XenErrno::from_ret(38), None);
        assert_eq!(XenErrno::from_ret(-15), None);
        assert_eq!(XenErrno::from_ret(i64::MIN), None);
    }

    #[test]
    fn test_xen_errno_aliases_match_primary_names() {
        assert_eq!(XenErrno::EWOULDBLOCK, XenErrno::EAGAIN);
        assert_eq!(XenErrno::EDEADLOCK, XenErrno::EDEADLK);
        assert_eq!(XenErrno::EACCES.name(), "EACCES");
        assert_eq!(XenErrno::E2BIG.to_string(), "E2BIG");
    }
}
