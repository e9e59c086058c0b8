//! Per-account token buckets with the documented fnf API limits.

use jiff::Timestamp;
use std::collections::HashMap;

/// Bucket size and refill per second for an action (fnf "Limits" page).
pub fn limit(action: &str) -> (f64, f64) {
    match action {
        "StartExecution" => (100.0, 100.0),
        "DescribeExecution" | "GetExecutionHistory" => (50.0, 5.0),
        _ => (10.0, 2.0),
    }
}

/// The class of bucket an action draws from: the named actions have their own,
/// every other action shares the "other operations" bucket.
fn class(action: &str) -> &str {
    match action {
        "StartExecution" | "DescribeExecution" | "GetExecutionHistory" => action,
        _ => "other",
    }
}

#[derive(Debug)]
pub struct Quotas {
    /// Multiplies the refill rate (benchmarks shorten the wait this way).
    speedup: f64,
    buckets: HashMap<(String, String), (f64, Timestamp)>,
}

impl Quotas {
    pub fn new(speedup: f64) -> Self {
        Self {
            speedup,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `account` calling `action`; false when the bucket is empty.
    pub fn take(&mut self, account: &str, action: &str, now: Timestamp) -> bool {
        let (size, refill) = limit(action);
        let key = (account.to_string(), class(action).to_string());
        let (tokens, last) = self.buckets.entry(key).or_insert((size, now));
        let elapsed = now.duration_since(*last).as_secs_f64().max(0.0);
        *tokens = (*tokens + elapsed * refill * self.speedup).min(size);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    #[test]
    fn stop_execution_bucket_is_ten_with_two_per_second() {
        let mut q = Quotas::new(1.0);
        let t0: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            (0..12).filter(|_| q.take("a", "StopExecution", t0)).count(),
            10
        );
        assert!(q.take("b", "StopExecution", t0), "buckets are per account");
        assert!(
            q.take("a", "DescribeExecution", t0),
            "Describe has its own bucket"
        );
        let t1 = t0 + SignedDuration::from_millis(500);
        assert!(q.take("a", "StopExecution", t1));
        assert!(!q.take("a", "StopExecution", t1));
    }

    #[test]
    fn speedup_multiplies_the_refill() {
        let mut q = Quotas::new(10.0);
        let t0: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        for _ in 0..10 {
            assert!(q.take("a", "StopExecution", t0));
        }
        let t1 = t0 + SignedDuration::from_millis(100);
        assert_eq!(
            (0..5).filter(|_| q.take("a", "StopExecution", t1)).count(),
            2
        );
    }
}
