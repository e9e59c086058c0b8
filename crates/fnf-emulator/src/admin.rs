//! The admin endpoint, on its own port: counters, executions, faults and knobs for tests
//! and benchmarks. Never part of the RPC surface.

use super::Emulator;
use super::faults::Rule;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn router(emu: Arc<Emulator>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/counters", get(counters).delete(reset_counters))
        .route("/executions", get(executions))
        .route("/faults", get(faults).delete(clear_faults))
        .route("/faults/{action}", put(set_fault))
        .route("/behaviour", put(set_behaviour))
        .route("/sts/tokens", put(set_tokens).get(seen_tokens))
        .route("/sts/expire", post(expire_sts))
        .with_state(emu)
}

/// `{"StopExecution": {"OK": 3, "ResourceThrottled": 1}, ...}`
async fn counters(State(emu): State<Arc<Emulator>>) -> Json<Value> {
    let inner = emu.lock();
    let mut out = serde_json::Map::new();
    for ((action, outcome), n) in &inner.counters {
        out.entry(action.clone()).or_insert_with(|| json!({}))[outcome] = (*n).into();
    }
    Json(Value::Object(out))
}

async fn reset_counters(State(emu): State<Arc<Emulator>>) -> StatusCode {
    emu.lock().counters.clear();
    StatusCode::NO_CONTENT
}

/// Every execution with its status, how many StopExecution calls reached it and how many succeeded.
async fn executions(State(emu): State<Arc<Emulator>>) -> Json<Value> {
    let mut inner = emu.lock();
    let now = jiff::Timestamp::now();
    let list: Vec<Value> = inner
        .state
        .executions
        .values_mut()
        .map(|e| {
            e.advance(now);
            json!({"flow": e.flow, "name": e.name, "status": e.status, "stops": e.stops, "stopCalls": e.stop_calls})
        })
        .collect();
    Json(Value::Array(list))
}

async fn faults(State(emu): State<Arc<Emulator>>) -> Json<Value> {
    Json(serde_json::to_value(&emu.lock().faults.rules).expect("rules serialize"))
}

async fn clear_faults(State(emu): State<Arc<Emulator>>) -> StatusCode {
    emu.lock().faults.rules.clear();
    StatusCode::NO_CONTENT
}

/// Body: a `Rule`, e.g. `{"script": [{"status": 500}, "drop"], "chances": [[0.3, {"status": 429}]]}`.
async fn set_fault(
    State(emu): State<Arc<Emulator>>,
    Path(action): Path<String>,
    Json(rule): Json<Rule>,
) -> StatusCode {
    emu.lock().faults.rules.insert(action, rule);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Behaviour {
    async_stop_ms: Option<u64>,
    quota_enabled: Option<bool>,
    quota_speedup: Option<f64>,
}

async fn set_behaviour(State(emu): State<Arc<Emulator>>, Json(b): Json<Behaviour>) -> StatusCode {
    let mut inner = emu.lock();
    inner.behaviour.async_stop = b
        .async_stop_ms
        .map(|ms| jiff::SignedDuration::from_millis(ms as i64));
    if let Some(enabled) = b.quota_enabled {
        let speedup = b.quota_speedup.unwrap_or(emu.config.quota_speedup);
        inner.quotas = enabled.then(|| super::quota::Quotas::new(speedup));
    }
    StatusCode::NO_CONTENT
}

async fn set_tokens(
    State(emu): State<Arc<Emulator>>,
    Json(tokens): Json<Vec<String>>,
) -> StatusCode {
    emu.lock().accepted_oidc_tokens = tokens;
    StatusCode::NO_CONTENT
}

async fn seen_tokens(State(emu): State<Arc<Emulator>>) -> Json<Vec<String>> {
    Json(emu.lock().seen_oidc_tokens.clone())
}

/// Makes every issued STS key expire now.
async fn expire_sts(State(emu): State<Arc<Emulator>>) -> StatusCode {
    let now = jiff::Timestamp::now();
    for k in emu.lock().keys.sts.values_mut() {
        k.expires = now;
    }
    StatusCode::NO_CONTENT
}
