// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A token bucket so that a guest cannot flood the VMM's log.

use std::time::{Duration, Instant};

/// Messages let through at once.
pub(crate) const BURST: u32 = 10;
/// Interval that refills one message.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// A token bucket for log messages, one per device and kind of message.
#[derive(Debug)]
pub(crate) struct RateLimit {
    tokens: u32,
    last: Instant,
    dropped: u64,
}

impl RateLimit {
    /// A full bucket.
    pub(crate) fn new() -> Self {
        Self {
            tokens: BURST,
            last: Instant::now(),
            dropped: 0,
        }
    }

    /// Takes a token. Returns `Some(dropped)` (messages suppressed since the
    /// last one let through) when the message may be logged.
    pub(crate) fn allow(&mut self) -> Option<u64> {
        let refill = self.last.elapsed().as_nanos() / INTERVAL.as_nanos();
        if refill > 0 {
            let refill = u32::try_from(refill).unwrap_or(BURST);
            self.tokens = self.tokens.saturating_add(refill).min(BURST);
            self.last = Instant::now();
        }
        if self.tokens == 0 {
            self.dropped += 1;
            return None;
        }
        self.tokens -= 1;
        Some(std::mem::take(&mut self.dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rate_limit_burst_exhausted_counts_drops() {
        let mut r = RateLimit::new();
        for _ in 0..BURST {
            assert_eq!(r.allow(), Some(0));
        }
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
        r.last -= INTERVAL;
        assert_eq!(r.allow(), Some(2));
    }
}
