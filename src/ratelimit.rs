//! Client-side rate limiting of fnf calls, per (endpoint, AccessKeyId, quota class),
//! shaped like the service's own token buckets, and slowing down further on 429
//! (halve the rate; creep back up on success).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    pub burst: f64,
    pub per_second: f64,
}

#[derive(Debug)]
struct Bucket {
    /// May go negative: each caller reserves the next free slot and sleeps until it.
    tokens: f64,
    rate: f64,
    last: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    limit: Limit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(limit: Limit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// How long the caller must wait before its call, having reserved a slot.
    pub fn reserve(&self, key: &str, now: Instant) -> Duration {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.limit.burst,
            rate: self.limit.per_second,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * b.rate).min(self.limit.burst);
        b.last = now;
        b.tokens -= 1.0;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / b.rate)
        }
    }

    /// Waits for a slot; returns how long it waited.
    pub async fn acquire(&self, key: &str) -> Duration {
        let wait = self.reserve(key, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }

    /// The service said 429: halve this key's rate (not below 1 per 10 s).
    pub fn throttled(&self, key: &str) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = buckets.get_mut(key) {
            b.rate = (b.rate / 2.0).max(0.1);
            b.tokens = b.tokens.min(0.0);
        }
    }

    /// A call went through: recover a tenth of the configured rate.
    pub fn succeeded(&self, key: &str) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = buckets.get_mut(key) {
            b.rate = (b.rate + self.limit.per_second / 10.0).min(self.limit.per_second);
        }
    }

    pub fn rate(&self, key: &str) -> Option<f64> {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .map(|b| b.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate_in_order() {
        let l = RateLimiter::new(Limit {
            burst: 10.0,
            per_second: 2.0,
        });
        let t0 = Instant::now();
        let waits: Vec<Duration> = (0..13).map(|_| l.reserve("k", t0)).collect();
        assert!(waits[..10].iter().all(|w| w.is_zero()));
        assert_eq!(waits[10], Duration::from_millis(500));
        assert_eq!(waits[11], Duration::from_millis(1000));
        assert_eq!(waits[12], Duration::from_millis(1500));
        assert!(l.reserve("other", t0).is_zero(), "keys are independent");
    }

    #[test]
    fn throttling_halves_the_rate_and_success_restores_it() {
        let l = RateLimiter::new(Limit {
            burst: 1.0,
            per_second: 2.0,
        });
        let t0 = Instant::now();
        l.reserve("k", t0);
        l.throttled("k");
        assert_eq!(l.rate("k"), Some(1.0));
        assert_eq!(l.reserve("k", t0), Duration::from_secs(1));
        for _ in 0..20 {
            l.succeeded("k");
        }
        assert_eq!(l.rate("k"), Some(2.0));
    }
}
