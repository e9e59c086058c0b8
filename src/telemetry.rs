//! Logs (text or JSON), Prometheus metrics, and the health endpoints.

use crate::crd::Phase;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// How logs are written to stderr.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn init_logs(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if format == LogFormat::Json {
        fmt.json().init()
    } else {
        fmt.init()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub action: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<OutcomeLabel, Counter>,
    calls: Family<CallLabels, Counter>,
    latency: Family<ActionLabel, Histogram>,
    retries: Counter,
    objects: Arc<ObjectsByPhase>,
    limiter_wait_micros: Counter,
    pub ready: AtomicBool,
    status_writes: Counter,
    denials: Family<KindLabel, Counter>,
    watch_events: Family<KindLabel, Counter>,
    watch_errors: Family<KindLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("flowstop");
        let reconciles = Family::<OutcomeLabel, Counter>::default();
        let calls = Family::<CallLabels, Counter>::default();
        let latency = Family::<ActionLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ])
        });
        let retries = Counter::default();
        let objects = Arc::new(ObjectsByPhase::default());
        let limiter_wait_micros = Counter::default();
        let status_writes = Counter::default();
        let denials = Family::<KindLabel, Counter>::default();
        let watch_events = Family::<KindLabel, Counter>::default();
        let watch_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "watch_events",
            "Watch events received, by kind: the watches are alive even when nothing reconciles",
            watch_events.clone(),
        );
        // Both kinds from zero, so the series exist (and increase() sees the first refusal,
        // or the first failure).
        for kind in ["ExecutionStop", "ExecutionStopSet"] {
            let _zero = denials.get_or_create(&KindLabel { kind: kind.into() });
        }
        for kind in [
            "ExecutionStop",
            "ExecutionStopSet",
            "ExecutionStopPolicy",
            "Namespace",
        ] {
            let _zero = watch_errors.get_or_create(&KindLabel { kind: kind.into() });
        }
        registry.register(
            "watch_errors",
            "Watch failures by kind, each retried with backoff: while a watch keeps failing the operator acts on what it last saw",
            watch_errors.clone(),
        );
        registry.register(
            "policy_denials",
            "Objects refused by the ExecutionStopPolicies (each refusal once), by kind",
            denials.clone(),
        );
        registry.register(
            "status_writes",
            "Status patches sent to the API server",
            status_writes.clone(),
        );
        registry.register("reconciles", "Reconciles by outcome", reconciles.clone());
        registry.register(
            "fnf_calls",
            "fnf API calls by action and outcome (ok or error category)",
            calls.clone(),
        );
        registry.register(
            "fnf_call_duration_seconds",
            "fnf API call latency",
            latency.clone(),
        );
        registry.register(
            "retries",
            "Retries scheduled after retryable errors",
            retries.clone(),
        );
        registry.register_collector(Box::new(objects.clone()));
        registry.register(
            "rate_limiter_wait_microseconds",
            "Time spent waiting for the client-side fnf rate limiter",
            limiter_wait_micros.clone(),
        );
        Self {
            registry,
            reconciles,
            calls,
            latency,
            retries,
            objects,
            limiter_wait_micros,
            ready: AtomicBool::new(false),
            status_writes,
            denials,
            watch_events,
            watch_errors,
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, outcome: &str) {
        self.reconciles
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn call(&self, action: &str, outcome: &str, seconds: f64) {
        self.calls
            .get_or_create(&CallLabels {
                action: action.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.latency
            .get_or_create(&ActionLabel {
                action: action.into(),
            })
            .observe(seconds);
    }

    pub fn retry(&self) {
        self.retries.inc();
    }

    pub fn waited(&self, d: std::time::Duration) {
        self.limiter_wait_micros.inc_by(d.as_micros() as u64);
    }

    /// A watch event of `kind` arrived (every object of a relist counts).
    pub fn watched(&self, kind: &str) {
        self.watch_events
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    /// A watch of `kind` failed (it is retried with backoff).
    pub fn watch_failed(&self, kind: &str) {
        self.watch_errors
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    /// An object was refused by the policies (kind: ExecutionStop or ExecutionStopSet).
    pub fn denied(&self, kind: &str) {
        self.denials
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn status_written(&self) {
        self.status_writes.inc();
    }

    /// The watches' ledgers and caches, which `flowstop_objects` counts at each scrape.
    pub fn count_objects_in(&self, scopes: Vec<crate::watch::Scope>) {
        *self
            .objects
            .scopes
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = scopes;
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

/// `flowstop_objects{phase}`: the watched ExecutionStops by `status.phase`, read from the
/// watches' ledgers (which hold settled objects too) when scraped, so deleted objects drop out at once and nothing grows with
/// churn. Objects without a status yet count as Pending. Nothing is reported before this
/// replica watches (a standby).
#[derive(Default)]
struct ObjectsByPhase {
    scopes: Mutex<Vec<crate::watch::Scope>>,
}

impl std::fmt::Debug for ObjectsByPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectsByPhase")
    }
}

const PHASES: [Phase; 6] = [
    Phase::Pending,
    Phase::Stopping,
    Phase::Retrying,
    Phase::Stopped,
    Phase::AlreadyFinished,
    Phase::Failed,
];

impl Collector for ObjectsByPhase {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        if scopes.is_empty() {
            return Ok(());
        }
        let mut counts = [0i64; PHASES.len()];
        for scope in scopes.iter() {
            let ledger = scope.ledger.lock();
            let c = ledger.by_phase();
            for (n, k) in [
                c.pending,
                c.stopping,
                c.retrying,
                c.stopped,
                c.already_finished,
                c.failed,
            ]
            .into_iter()
            .enumerate()
            {
                counts[n] += i64::from(k);
            }
        }
        let now = jiff::Timestamp::now();
        let mut oldest_unfinished = 0.0f64;
        // Every unfinished object is in a cache (settled ones are final).
        for obj in scopes.iter().flat_map(|s| s.stops.state()) {
            let phase = obj
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .unwrap_or(Phase::Pending);
            if !phase.is_final()
                && let Some(created) = &obj.metadata.creation_timestamp
            {
                let age = now.duration_since(created.0).as_secs_f64();
                oldest_unfinished = oldest_unfinished.max(age);
            }
        }
        let family = Family::<PhaseLabel, Gauge>::default();
        for (phase, n) in PHASES.iter().zip(counts) {
            family
                .get_or_create(&PhaseLabel {
                    phase: phase.as_str().into(),
                })
                .set(n);
        }
        let metric = encoder.encode_descriptor(
            "objects",
            "ExecutionStops by phase, counted from the operator's watches at scrape time",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)?;
        // The "stuck" alert's input: a count cannot tell one object waiting for an hour
        // from a steady stream of new ones.
        let oldest = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        oldest.set(oldest_unfinished);
        let metric = encoder.encode_descriptor(
            "oldest_unfinished_seconds",
            "Age of the oldest ExecutionStop that is not final (0 when none)",
            None,
            oldest.metric_type(),
        )?;
        oldest.encode(metric)
    }
}

/// `/metrics`, `/healthz`, `/readyz` (ready once the watches have synced).
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move { m.encode() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(m): State<Arc<Metrics>>| async move {
                if m.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "watches not synced yet")
                }
            }),
        )
        .with_state(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ExecutionStop;

    fn estop(name: &str, phase: Option<Phase>) -> ExecutionStop {
        let mut o = ExecutionStop::new(
            name,
            crate::crd::ExecutionStopSpec {
                flow_name: "f".into(),
                execution_name: "e".into(),
                options: crate::crd::StopOptions::default(),
                ttl_seconds_after_finished: None,
            },
        );
        o.metadata.namespace = Some("ns".into());
        o.status = phase.map(|p| crate::crd::ExecutionStopStatus {
            phase: Some(p),
            ..Default::default()
        });
        o
    }

    #[test]
    fn phase_gauge_counts_the_cache_at_scrape_time() {
        use kube::runtime::watcher::Event;
        let m = Metrics::default();
        assert!(
            !m.encode().contains("flowstop_objects"),
            "a standby reports no objects"
        );
        let mut writer = kube::runtime::reflector::store::Writer::<ExecutionStop>::default();
        let scope = crate::watch::Scope {
            stops: writer.as_reader(),
            sets: kube::runtime::reflector::store::Writer::default().as_reader(),
            ledger: Default::default(),
        };
        m.count_objects_in(vec![scope.clone()]);
        let mut apply = |o: ExecutionStop| {
            scope.ledger.lock().apply(&o);
            writer.apply_watcher_event(&Event::Apply(o));
        };
        for (name, phase) in [
            ("a", Some(Phase::Stopping)),
            ("b", Some(Phase::Stopping)),
            ("c", None),
        ] {
            apply(estop(name, phase));
        }
        apply(estop("a", Some(Phase::Stopped)));
        m.call("StopExecution", "ok", 0.01);
        let text = m.encode();
        for line in [
            r#"flowstop_objects{phase="Stopping"} 1"#,
            r#"flowstop_objects{phase="Stopped"} 1"#,
            r#"flowstop_objects{phase="Pending"} 1"#,
            r#"flowstop_objects{phase="Failed"} 0"#,
            r#"flowstop_fnf_calls_total{action="StopExecution",outcome="ok"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        // "c" has no creation time here; "b", made an hour ago, is the oldest unfinished;
        // "a", older still, is final and does not count.
        let age = |text: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix("flowstop_oldest_unfinished_seconds "))
                .expect("the age gauge")
                .parse()
                .unwrap()
        };
        assert_eq!(age(&text), 0.0, "{text}");
        let created = |secs| {
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs),
            ))
        };
        let mut b = estop("b", Some(Phase::Stopping));
        b.metadata.creation_timestamp = created(3600);
        apply(b);
        let mut a = estop("a", Some(Phase::Stopped));
        a.metadata.creation_timestamp = created(7200);
        apply(a);
        let text = m.encode();
        assert!((3600.0..3660.0).contains(&age(&text)), "{text}");
        // A deleted object is no longer counted.
        scope
            .ledger
            .lock()
            .delete(&estop("b", Some(Phase::Stopping)));
        writer.apply_watcher_event(&Event::Delete(estop("b", Some(Phase::Stopping))));
        let text = m.encode();
        assert!(
            text.contains(r#"flowstop_objects{phase="Stopping"} 0"#),
            "{text}"
        );
    }
}
