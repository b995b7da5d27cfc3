// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Rate-limited warnings for guest mistakes.
//!
//! A guest can make a bad hypercall in a loop; the VMM must tell the
//! operator without flooding the log. [`warn_limited!`](crate::warn_limited) lets through a
//! burst of [`BURST`] messages, then one per [`INTERVAL`], and counts what
//! it dropped.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Messages let through at once.
pub const BURST: u32 = 10;
/// Interval that refills one message.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// A token bucket for log messages.
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
        let refill = (last.elapsed().as_nanos() / INTERVAL.as_nanos()) as u32;
        if refill > 0 {
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

/// The crate's one limiter for guest-caused warnings.
pub fn guest_warnings() -> &'static RateLimit {
    static LIMIT: std::sync::OnceLock<RateLimit> = std::sync::OnceLock::new();
    LIMIT.get_or_init(RateLimit::new)
}

/// `log::warn!` through the crate's guest-warning limiter.
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)*) => {
        if let Some(dropped) = $crate::ratelimit::guest_warnings().allow() {
            if dropped > 0 {
                log::warn!("({} similar messages suppressed)", dropped);
            }
            log::warn!($($arg)*);
        }
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
}
