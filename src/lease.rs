//! Leader election with a coordination.k8s.io Lease, so two replicas can run and only
//! one reconciles. Every write is a compare-and-swap on the Lease's resourceVersion.

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use std::future::Future;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
    /// How often the holder renews (well inside `duration`).
    pub renew_every: Duration,
}

/// Pure: may `identity` take (or keep) this lease at `now`?
pub fn can_take(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> bool {
    let Some(spec) = spec else { return true };
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(h) if h == identity => true,
        Some(_) => {
            let renewed = spec
                .renew_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(Timestamp::UNIX_EPOCH);
            let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            now > renewed + jiff::SignedDuration::from_secs(secs)
        }
    }
}

/// Pure: the lease as `identity` leaves it on a clean shutdown, if it still holds it:
/// no holder, renewed now, so a standby may take it at its next look instead of waiting
/// for it to expire (client-go's ReleaseOnCancel does the same).
pub fn released(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Option<LeaseSpec> {
    let spec = spec?;
    (spec.holder_identity.as_deref() == Some(identity)).then(|| LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(MicroTime(now)),
        ..spec.clone()
    })
}

/// Gives the lease up if this replica still holds it (compare-and-swap: a replica that
/// took it meanwhile keeps it).
pub async fn release(client: &kube::Client, c: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &c.namespace);
    let result = async {
        let Some(mut lease) = api.get_opt(&c.name).await? else {
            return Ok(false);
        };
        let Some(spec) = released(lease.spec.as_ref(), &c.identity, Timestamp::now()) else {
            return Ok(false);
        };
        lease.spec = Some(spec);
        api.replace(&c.name, &PostParams::default(), &lease)
            .await
            .map(|_| true)
    };
    match tokio::time::timeout(c.renew_every, result).await {
        Ok(Ok(true)) => tracing::info!(lease = %c.name, "released the lease"),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot release the lease; it expires instead"),
        Err(_) => tracing::warn!("releasing the lease timed out; it expires instead"),
    }
}

/// One attempt to take or renew; true if we hold the lease afterwards.
async fn try_hold(api: &Api<Lease>, c: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&c.name).await?;
    if !can_take(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &c.identity,
        now,
    ) {
        return Ok(false);
    }
    let old = current
        .as_ref()
        .and_then(|l| l.spec.clone())
        .unwrap_or_default();
    let ours = old.holder_identity.as_deref() == Some(c.identity.as_str());
    let spec = LeaseSpec {
        holder_identity: Some(c.identity.clone()),
        lease_duration_seconds: Some(c.duration.as_secs() as i32),
        acquire_time: if ours {
            old.acquire_time.clone()
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(
            old.lease_transitions.unwrap_or(0) + i32::from(!ours && current.is_some()),
        ),
        ..Default::default()
    };
    let result = match current {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(c.name.clone()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await
        }
        Some(mut lease) => {
            // resourceVersion stays set: a concurrent writer makes this fail with 409.
            lease.spec = Some(spec);
            api.replace(&c.name, &PostParams::default(), &lease).await
        }
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until this replica holds the lease; returns when the winning attempt started,
/// which is no later than the `renewTime` it wrote.
pub async fn acquire(client: &kube::Client, c: &LeaseConfig) -> Instant {
    let api: Api<Lease> = Api::namespaced(client.clone(), &c.namespace);
    loop {
        let started = Instant::now();
        match try_hold(&api, c).await {
            Ok(true) => {
                tracing::info!(lease = %c.name, identity = %c.identity, "became leader");
                return started;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read or take the lease"),
        }
        tokio::time::sleep(c.renew_every).await;
    }
}

/// Renews until it cannot; returns once leadership is lost (or may have been).
pub async fn hold(client: &kube::Client, c: &LeaseConfig, renewed: Instant) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &c.namespace);
    hold_with(c, renewed, &Tokio, |limit| {
        let api = &api;
        async move { tokio::time::timeout(limit, try_hold(api, c)).await.ok() }
    })
    .await
}

/// What the renewal loop needs of time, so its timing can be tested without waiting.
trait Clock {
    fn now(&self) -> Instant;
    fn sleep(&self, d: Duration) -> impl Future<Output = ()>;
}

struct Tokio;

impl Clock for Tokio {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> {
        tokio::time::sleep(d)
    }
}

/// The renewal loop. `attempt(limit)` renews once, giving up after `limit` (`None`).
///
/// `renewed` is when the last accepted attempt *started*: the `renewTime` it wrote is no
/// earlier, so another replica cannot take the lease before `renewed + duration`. We give
/// up `renew_every` before that (time to stop working). A failed attempt is retried
/// soon rather than a whole `renew_every` later, and no attempt may outlast the deadline,
/// so one slow or refused request does not cost the lease while time is left.
async fn hold_with<A, F>(c: &LeaseConfig, mut renewed: Instant, clock: &impl Clock, mut attempt: A)
where
    A: FnMut(Duration) -> F,
    F: Future<Output = Option<Result<bool, kube::Error>>>,
{
    let give_up_after = c.duration.saturating_sub(c.renew_every);
    let retry_after = (c.renew_every / 4).max(Duration::from_millis(100));
    let left = |renewed: Instant| give_up_after.saturating_sub(clock.now() - renewed);
    let mut wait = c.renew_every;
    loop {
        // Never sleep out the time left: at most half of it, so one more attempt fits.
        clock.sleep(wait.min(left(renewed) / 2)).await;
        let limit = left(renewed).min(c.renew_every);
        if limit < Duration::from_millis(10) {
            tracing::error!("could not renew the lease in time");
            return;
        }
        let started = clock.now();
        wait = retry_after;
        match attempt(limit).await {
            Some(Ok(true)) => {
                renewed = started;
                wait = c.renew_every;
            }
            Some(Ok(false)) => {
                tracing::error!("another replica holds the lease");
                return;
            }
            Some(Err(e)) => tracing::warn!(error = %e, "lease renewal failed"),
            None => tracing::warn!("lease renewal timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(renewed.parse().unwrap())),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }
    }

    #[test]
    fn who_may_take_the_lease() {
        let now: Timestamp = "2024-01-01T00:00:20Z".parse().unwrap();
        assert!(can_take(None, "a", now));
        assert!(
            can_take(Some(&spec("a", "2024-01-01T00:00:19Z")), "a", now),
            "our own"
        );
        assert!(
            !can_take(Some(&spec("b", "2024-01-01T00:00:10Z")), "a", now),
            "b renewed 10 s ago"
        );
        assert!(
            can_take(Some(&spec("b", "2024-01-01T00:00:04Z")), "a", now),
            "b expired"
        );
    }

    /// A clock that only moves when the loop sleeps or an attempt takes time.
    struct Fake {
        t0: Instant,
        at: std::cell::Cell<Duration>,
    }

    impl Clock for Fake {
        fn now(&self) -> Instant {
            self.t0 + self.at.get()
        }
        fn sleep(&self, d: Duration) -> impl Future<Output = ()> {
            self.at.set(self.at.get() + d);
            std::future::ready(())
        }
    }

    /// Runs the loop (lease 3 s, renewed every 1 s, renewed at 0) against a scripted API
    /// server: each attempt takes `delay` seconds and answers `result` (`None`: refused);
    /// past the script, attempts hang. Returns when the loop gave up, and when each
    /// attempt started, in seconds.
    fn run(script: &[(f64, Option<bool>)]) -> (f64, Vec<f64>) {
        let c = LeaseConfig {
            name: "l".into(),
            namespace: "ns".into(),
            identity: "a".into(),
            duration: Duration::from_secs(3),
            renew_every: Duration::from_secs(1),
        };
        let clock = Fake {
            t0: Instant::now(),
            at: Default::default(),
        };
        let mut steps: std::collections::VecDeque<_> = script.iter().copied().collect();
        let mut starts = vec![];
        futures::executor::block_on(hold_with(&c, clock.t0, &clock, |limit| {
            starts.push(clock.at.get().as_secs_f64());
            let answer = match steps.pop_front() {
                Some((delay, result)) if Duration::from_secs_f64(delay) <= limit => {
                    clock
                        .at
                        .set(clock.at.get() + Duration::from_secs_f64(delay));
                    Some(result.ok_or_else(|| kube::Error::Service("refused".into())))
                }
                _ => {
                    clock.at.set(clock.at.get() + limit);
                    None
                }
            };
            std::future::ready(answer)
        }));
        (clock.at.get().as_secs_f64(), starts)
    }

    #[test]
    fn a_slow_renewal_counts_from_when_it_was_sent() {
        // Renewed at 1.0 (answered at 1.9); then the API server hangs. The Lease says
        // 1.0, so another replica may take it at 4.0: we must have stopped by 3.0.
        let (gave_up, starts) = run(&[(0.9, Some(true))]);
        assert_eq!(starts[0], 1.0);
        assert!(
            gave_up <= 3.0 + 1e-6,
            "gave up at {gave_up}, starts {starts:?}"
        );
    }

    #[test]
    fn a_refused_renewal_is_retried_while_time_is_left() {
        // Two quick refusals (a restarting API server), then renewals succeed until
        // another replica is found holding it: the lease must survive the refusals.
        let (gave_up, starts) = run(&[
            (0.0, None),
            (0.0, None),
            (0.0, Some(true)),
            (0.0, Some(true)),
            (0.0, Some(false)),
        ]);
        assert_eq!(starts.len(), 5, "every scripted attempt ran: {starts:?}");
        assert!(
            starts[1] < 2.0 && starts[2] < 2.0,
            "retried soon: {starts:?}"
        );
        assert!(gave_up < 5.0, "{gave_up}");
    }

    #[test]
    fn no_attempt_outlasts_the_deadline() {
        // Renewed at 1.0 (answered at 1.5); the next attempt, at 2.25, hangs: it may take
        // only the 0.75 s left before 3.0, not a whole renewal period.
        let (gave_up, starts) = run(&[(0.5, Some(true))]);
        assert_eq!(starts, vec![1.0, 2.25]);
        assert!((gave_up - 3.0).abs() < 1e-6, "{gave_up}");
    }

    #[test]
    fn a_clean_shutdown_frees_the_lease_only_if_we_hold_it() {
        let now: Timestamp = "2024-01-01T00:00:20Z".parse().unwrap();
        let freed = released(Some(&spec("a", "2024-01-01T00:00:19Z")), "a", now).unwrap();
        assert_eq!(freed.holder_identity, None);
        assert_eq!(freed.renew_time, Some(MicroTime(now)));
        assert!(can_take(Some(&freed), "b", now), "b may take it at once");
        assert_eq!(
            released(Some(&spec("b", "2024-01-01T00:00:19Z")), "a", now),
            None,
            "b's lease is not ours to free"
        );
        assert_eq!(released(None, "a", now), None);
    }
}
