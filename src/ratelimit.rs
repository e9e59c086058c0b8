//! Client-side rate limiting of fnf calls, per (endpoint, AccessKeyId, quota class),
//! shaped like the service's own token buckets, and slowing down further on 429.
//!
//! A 429 means the service's bucket is empty: ours is emptied too (that re-aligns the
//! two clocks) and the rate drops by a twentieth; each success wins back a twentieth of the
//! configured rate. Halving instead made a single 429, caused by a few milliseconds of
//! network jitter at the edge of the quota, cost a third of the throughput.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How much later than our first call the service's bucket may start (see `reserve`).
const ANCHOR_SLACK: Duration = Duration::from_millis(30);

/// How far ahead bulk work (the ExecutionStops of a set) may book the quota. Interactive
/// work books any slot, so it waits at most this long behind a set of any size.
pub const BULK_HORIZON: Duration = Duration::from_secs(1);

/// Who is asking: a single ExecutionStop someone is waiting for, or one of many that an
/// ExecutionStopSet created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Interactive,
    Bulk,
}

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

/// A bucket untouched this long is full again and forgotten: every distinct key a tenant
/// can bring (each Secret's AccessKeyId) would otherwise stay in memory for good.
const IDLE: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub struct RateLimiter {
    limit: Limit,
    buckets: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    by_key: HashMap<String, Bucket>,
    /// How many were left after the last sweep: the next comes when that has doubled, so
    /// sweeping stays linear in the keys added.
    after_sweep: usize,
}

impl RateLimiter {
    pub fn new(limit: Limit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(Buckets::default()),
        }
    }

    /// `reserve_within` with no horizon (tests).
    #[cfg(test)]
    fn reserve(&self, key: &str, now: Instant) -> Duration {
        match self.reserve_within(key, now, None) {
            Ok(wait) | Err(wait) => wait,
        }
    }

    /// Reserves the next free slot if it is at most `horizon` away (any, without one) and
    /// says how long the caller must wait for it. Otherwise nothing is booked and the answer
    /// is how long until such a slot may be free.
    ///
    /// The service's bucket starts when our first call *arrives*, and later calls can
    /// arrive faster than the first (no connection to set up). So our refill starts
    /// `ANCHOR_SLACK` after the first call: a few milliseconds once, instead of a 429 for
    /// every call at the edge of the quota.
    pub fn reserve_within(
        &self,
        key: &str,
        now: Instant,
        horizon: Option<Duration>,
    ) -> Result<Duration, Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.by_key.contains_key(key)
            && buckets.by_key.len() >= 2 * buckets.after_sweep.max(32)
        {
            buckets
                .by_key
                .retain(|_, b| now.saturating_duration_since(b.last) < IDLE);
            buckets.after_sweep = buckets.by_key.len();
        }
        let b = buckets.by_key.entry(key.to_string()).or_insert(Bucket {
            tokens: self.limit.burst,
            rate: self.limit.per_second,
            last: now + ANCHOR_SLACK,
        });
        // Before `last` (the anchor, at first) nothing refills.
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * b.rate).min(self.limit.burst);
        b.last = b.last.max(now);
        let after = b.tokens - 1.0;
        let wait = if after >= 0.0 {
            Duration::ZERO
        } else {
            b.last.saturating_duration_since(now) + Duration::from_secs_f64(-after / b.rate)
        };
        match horizon {
            Some(h) if wait > h => Err(wait - h),
            _ => {
                b.tokens = after;
                Ok(wait)
            }
        }
    }

    /// Waits for a slot; returns how long it waited. Bulk work books no further ahead
    /// than `BULK_HORIZON`, and until it can, it waits without holding a slot, so
    /// interactive work that arrives meanwhile goes first.
    pub async fn acquire(&self, key: &str, lane: Lane) -> Duration {
        let horizon = (lane == Lane::Bulk).then_some(BULK_HORIZON);
        let start = Instant::now();
        loop {
            match self.reserve_within(key, Instant::now(), horizon) {
                Ok(wait) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    return start.elapsed();
                }
                Err(until_free) => tokio::time::sleep(until_free).await,
            }
        }
    }

    /// Waits for a slot only if one is free within `horizon`; otherwise books nothing and
    /// says how long until one may be. For work that must not hold a worker while it waits
    /// (a set's listing gives its worker back and comes again).
    pub async fn acquire_within(&self, key: &str, horizon: Duration) -> Result<Duration, Duration> {
        let wait = self.reserve_within(key, Instant::now(), Some(horizon))?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(wait)
    }

    /// The service said 429: empty this key's bucket and slow it by a twentieth (not below
    /// a tenth of the configured rate).
    pub fn throttled(&self, key: &str) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = buckets.by_key.get_mut(key) {
            b.rate = (b.rate * 0.95).max(self.limit.per_second / 10.0);
            b.tokens = b.tokens.min(0.0);
        }
    }

    /// A call went through: recover a twentieth of the configured rate.
    pub fn succeeded(&self, key: &str) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = buckets.by_key.get_mut(key) {
            b.rate = (b.rate + self.limit.per_second / 20.0).min(self.limit.per_second);
        }
    }

    #[cfg(test)]
    fn rate(&self, key: &str) -> Option<f64> {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_key
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
        let waits: Vec<Duration> = (0..12).map(|_| l.reserve("k", t0)).collect();
        assert!(waits[..10].iter().all(|w| w.is_zero()), "the burst");
        assert_eq!(waits[10], ANCHOR_SLACK + Duration::from_millis(500));
        assert_eq!(waits[11], ANCHOR_SLACK + Duration::from_millis(1000));
        // Refill runs from the anchor, ANCHOR_SLACK after the first call.
        let later = t0 + ANCHOR_SLACK + Duration::from_millis(1000);
        assert_eq!(l.reserve("k", later), Duration::from_millis(500));
        assert!(l.reserve("other", t0).is_zero(), "keys are independent");
    }

    #[test]
    fn bulk_work_books_no_further_ahead_than_the_horizon() {
        let l = RateLimiter::new(Limit {
            burst: 2.0,
            per_second: 2.0,
        });
        let t0 = Instant::now();
        let h = Some(BULK_HORIZON);
        assert_eq!(l.reserve_within("k", t0, h), Ok(Duration::ZERO));
        assert_eq!(l.reserve_within("k", t0, h), Ok(Duration::ZERO));
        // The next two slots are half a second apart (plus the anchor slack).
        assert_eq!(
            l.reserve_within("k", t0, h),
            Ok(ANCHOR_SLACK + Duration::from_millis(500))
        );
        // The one after is 1.03 s away: over the horizon, so not booked.
        assert_eq!(l.reserve_within("k", t0, h), Err(ANCHOR_SLACK));
        assert_eq!(
            l.reserve_within("k", t0, h),
            Err(ANCHOR_SLACK),
            "nothing booked"
        );
        // An interactive caller arriving now gets that slot, ahead of the bulk ones.
        assert_eq!(
            l.reserve_within("k", t0, None),
            Ok(ANCHOR_SLACK + Duration::from_millis(1000))
        );
        assert_eq!(
            l.reserve_within("k", t0, h),
            Err(ANCHOR_SLACK + Duration::from_millis(500))
        );
    }

    #[test]
    fn idle_buckets_are_forgotten() {
        let l = RateLimiter::new(Limit {
            burst: 10.0,
            per_second: 2.0,
        });
        let t0 = Instant::now();
        for n in 0..1000 {
            l.reserve(&format!("k{n}"), t0);
        }
        let len = || l.buckets.lock().unwrap().by_key.len();
        assert_eq!(len(), 1000, "none idle yet");
        let later = t0 + IDLE + ANCHOR_SLACK;
        l.reserve("busy", later - Duration::from_secs(1));
        for n in 0..64 {
            l.reserve(&format!("new{n}"), later);
        }
        assert!(len() <= 66, "idle keys were swept: {}", len());
        assert!(l.rate("busy").is_some(), "a recent key stays");
    }

    #[test]
    fn throttling_slows_the_rate_and_success_restores_it() {
        let l = RateLimiter::new(Limit {
            burst: 1.0,
            per_second: 2.0,
        });
        let t0 = Instant::now();
        l.reserve("k", t0);
        l.throttled("k");
        assert!((l.rate("k").unwrap() - 1.9).abs() < 1e-9);
        assert!(
            (l.reserve("k", t0).as_secs_f64() - ANCHOR_SLACK.as_secs_f64() - 1.0 / 1.9).abs()
                < 1e-6,
            "the bucket was emptied"
        );
        for _ in 0..60 {
            l.throttled("k");
        }
        assert!(
            (l.rate("k").unwrap() - 0.2).abs() < 1e-9,
            "never below a tenth"
        );
        for _ in 0..40 {
            l.succeeded("k");
        }
        assert_eq!(l.rate("k"), Some(2.0));
    }
}
