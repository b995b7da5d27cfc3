// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Rate-limited warnings for guest mistakes, shared by every xen-on-kvm
//! crate (the one piece of state this crate holds).
//!
//! A guest can make a bad hypercall, or poke a device register, in a loop;
//! the VMM must tell the operator without flooding the log.
//! [`warn_limited!`](crate::warn_limited) lets through a burst of [`BURST`]
//! messages, then one per [`INTERVAL`], and says how many it dropped. By
//! default it draws on one process-wide [`RateLimit`]
//! ([`guest_warnings`]); a device that wants its own budget passes its own
//! (`warn_limited!(limit = &self.limit; "...")`).
//!
//! ```
//! use xen_abi::ratelimit::RateLimit;
//! let limit = RateLimit::new();
//! for i in 0..100 {
//!     xen_abi::warn_limited!(limit = &limit; "bad request {i}");
//! }
//! assert_eq!(limit.allow(), None, "the burst is spent");
//! ```

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

#[doc(hidden)]
pub use log;

/// Messages let through at once.
pub const BURST: u32 = 10;
/// Interval that refills one message.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// A token bucket for log messages: (tokens, last refill, dropped).
#[derive(Debug)]
pub struct RateLimit {
    inner: Mutex<(u32, Instant, u64)>,
}

impl RateLimit {
    /// A full bucket.
    pub fn new() -> Self {
        Self {
            inner: Mutex::new((BURST, Instant::now(), 0)),
        }
    }

    /// Takes a token. Returns `Some(dropped)` (messages suppressed since the
    /// last one let through) when the message may be logged.
    pub fn allow(&self) -> Option<u64> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last, dropped) = &mut *g;
        let refill = last.elapsed().as_nanos() / INTERVAL.as_nanos();
        if refill > 0 {
            let refill = u32::try_from(refill).unwrap_or(BURST);
            *tokens = (*tokens).saturating_add(refill).min(BURST);
            *last = Instant::now();
        }
        if *tokens == 0 {
            *dropped += 1;
            return None;
        }
        *tokens -= 1;
        Some(std::mem::take(dropped))
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}

/// The process-wide limiter for guest-caused warnings.
pub fn guest_warnings() -> &'static RateLimit {
    static LIMIT: OnceLock<RateLimit> = OnceLock::new();
    LIMIT.get_or_init(RateLimit::new)
}

/// `log::warn!` through a [`RateLimit`](crate::ratelimit::RateLimit): the
/// process-wide one, or the one named with `limit = EXPR;`.
#[macro_export]
macro_rules! warn_limited {
    (limit = $limit:expr; $($arg:tt)*) => {
        if let Some(dropped) = $limit.allow() {
            if dropped > 0 {
                $crate::ratelimit::log::warn!("({} similar messages suppressed)", dropped);
            }
            $crate::ratelimit::log::warn!($($arg)*);
        }
    };
    ($($arg:tt)*) => {
        $crate::warn_limited!(limit = $crate::ratelimit::guest_warnings(); $($arg)*)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rate_limit_allows_burst_then_counts_drops() {
        let r = RateLimit::new();
        for _ in 0..BURST {
            assert_eq!(r.allow(), Some(0));
        }
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
        // Pretend an interval passed.
        r.inner.lock().unwrap().1 -= INTERVAL;
        assert_eq!(r.allow(), Some(2));
    }

    #[test]
    fn test_warn_limited_spends_the_named_limit_only() {
        let r = RateLimit::new();
        for _ in 0..BURST {
            crate::warn_limited!(limit = &r; "x");
        }
        assert_eq!(r.allow(), None);
        assert!(guest_warnings().allow().is_some());
    }
}
