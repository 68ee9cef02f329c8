//! The client's own brake on request rate, so that a burst of bills does not earn HTTP 429s.
//!
//! [`RateLimit`] is the seam: today [`LocalRateLimit`] counts this process's requests only; a later
//! limiter can share one budget among every replica (for instance through a JetStream KV bucket)
//! and be handed to [`crate::Client::with_rate_limit`]. Bounding requests in flight is left to the
//! client's semaphore.

use std::num::NonZeroU32;

use futures::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Grants permission to send one request, waiting as long as the budget requires.
pub trait RateLimit: Send + Sync + 'static {
    /// Waits until one more request may be sent.
    fn acquire(&self) -> BoxFuture<'_, ()>;
}

/// A per-process limit of requests per minute (GCRA, bursts up to the full minute's budget).
pub struct LocalRateLimit {
    limiter: DefaultDirectRateLimiter,
}

impl LocalRateLimit {
    /// A limit of `requests_per_minute`; zero is read as one.
    pub fn per_minute(requests_per_minute: u32) -> LocalRateLimit {
        let per_minute = NonZeroU32::new(requests_per_minute).unwrap_or(NonZeroU32::MIN);
        LocalRateLimit {
            limiter: RateLimiter::direct(Quota::per_minute(per_minute)),
        }
    }
}

impl RateLimit for LocalRateLimit {
    fn acquire(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.limiter.until_ready())
    }
}

impl std::fmt::Debug for LocalRateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRateLimit").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn a_burst_beyond_the_budget_waits() {
        // 120 a minute is one every 500 ms after a burst of 120.
        let limit = LocalRateLimit::per_minute(120);
        let started = Instant::now();
        for _ in 0..120 {
            limit.acquire().await;
        }
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "the burst should pass at once"
        );
        limit.acquire().await;
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "the 121st request must wait"
        );
    }
}
