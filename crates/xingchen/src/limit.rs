//! The client's own brake on request rate, so that a burst of bills does not earn HTTP 429s.
//!
//! [`RateLimit`] is the seam: [`LocalRateLimit`] counts this process's requests only, while
//! [`RateLimitFn`] waits on any function's future, which is how the pipeline's budget shared by
//! every replica (`pipeline::budget::SharedBudget`, kept in JetStream KV) reaches
//! [`crate::Client::with_rate_limit`] without either crate depending on the other. Bounding
//! requests in flight is left to the client's semaphore.

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

/// A limit that waits, before each request, on the future its function returns.
///
/// ```text
/// let limit = RateLimitFn::new(move || budget.acquire_owned());
/// let client = Client::with_rate_limit(config, Arc::new(limit))?;
/// ```
pub struct RateLimitFn<F>(F);

impl<F> RateLimitFn<F>
where
    F: Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static,
{
    /// A limit that asks `acquire` for every permission.
    pub fn new(acquire: F) -> RateLimitFn<F> {
        RateLimitFn(acquire)
    }
}

impl<F> RateLimit for RateLimitFn<F>
where
    F: Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static,
{
    fn acquire(&self) -> BoxFuture<'_, ()> {
        (self.0)()
    }
}

impl<F> std::fmt::Debug for RateLimitFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitFn").finish_non_exhaustive()
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
    async fn a_function_limit_is_asked_once_per_permission() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&asked);
        let limit: Arc<dyn RateLimit> = Arc::new(RateLimitFn::new(move || {
            let counter = Arc::clone(&counter);
            Box::pin(async move {
                counter.fetch_add(1, Ordering::SeqCst);
            })
        }));
        limit.acquire().await;
        limit.acquire().await;
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }

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
