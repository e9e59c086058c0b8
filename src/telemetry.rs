//! Logs (text or JSON), Prometheus metrics, and the health endpoints.

use crate::crd::Phase;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub fn init_logs(format: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if format == "json" {
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
pub struct PhaseLabel {
    pub phase: String,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<OutcomeLabel, Counter>,
    calls: Family<CallLabels, Counter>,
    latency: Family<ActionLabel, Histogram>,
    retries: Counter,
    objects: Family<PhaseLabel, Gauge>,
    limiter_wait_micros: Counter,
    phases: Mutex<HashMap<String, Phase>>,
    pub ready: AtomicBool,
    status_writes: Counter,
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
        let objects = Family::<PhaseLabel, Gauge>::default();
        let limiter_wait_micros = Counter::default();
        let status_writes = Counter::default();
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
        registry.register(
            "objects",
            "ExecutionStops by phase, as last seen",
            objects.clone(),
        );
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
            phases: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            status_writes,
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

    pub fn status_written(&self) {
        self.status_writes.inc();
    }

    /// Records the phase of one object and updates the per-phase gauge.
    pub fn phase(&self, uid: &str, phase: Option<Phase>) {
        let mut phases = self.phases.lock().unwrap_or_else(|p| p.into_inner());
        let old = match phase {
            Some(p) => phases.insert(uid.to_string(), p),
            None => phases.remove(uid),
        };
        if old == phase {
            return;
        }
        if let Some(o) = old {
            self.objects
                .get_or_create(&PhaseLabel {
                    phase: o.as_str().into(),
                })
                .dec();
        }
        if let Some(p) = phase {
            self.objects
                .get_or_create(&PhaseLabel {
                    phase: p.as_str().into(),
                })
                .inc();
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
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

    #[test]
    fn phase_gauge_follows_objects() {
        let m = Metrics::default();
        m.phase("a", Some(Phase::Stopping));
        m.phase("b", Some(Phase::Stopping));
        m.phase("a", Some(Phase::Stopped));
        m.call("StopExecution", "ok", 0.01);
        let text = m.encode();
        assert!(
            text.contains(r#"flowstop_objects{phase="Stopping"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"flowstop_objects{phase="Stopped"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"flowstop_fnf_calls_total{action="StopExecution",outcome="ok"} 1"#),
            "{text}"
        );
    }
}
