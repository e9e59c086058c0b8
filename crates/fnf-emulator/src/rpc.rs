//! The RPC surface at `/`: parse, authenticate, throttle, inject faults, dispatch, answer.

use super::actions;
use super::auth::{self, param};
use super::error::ApiError;
use super::faults::{Fault, Plan};
use super::{Emulator, Inner, sts};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use fnf::API_VERSION;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The service's documented maximum request size.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

pub fn router(emu: Arc<Emulator>) -> Router {
    Router::new()
        .route("/", axum::routing::any(handle))
        .layer(DefaultBodyLimit::max(4 * MAX_REQUEST_BYTES))
        .with_state(emu)
}

fn request_id(params: &[(String, String)]) -> String {
    if let Some(id) = param(params, "RequestId") {
        return id.to_string();
    }
    let u = rand::random::<u128>();
    let h = format!("{u:032X}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn json_answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn error_answer(e: &ApiError, request_id: &str) -> Response {
    json_answer(
        e.status_code(),
        json!({"Code": e.code, "Message": e.message, "RequestId": request_id, "HostId": "fnf.emulator.local"}),
    )
}

/// Query plus, for a form POST, the body; form-decoded (`+` is a space), in order.
pub fn parse_params(
    method: &str,
    query: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Vec<(String, String)>, ApiError> {
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if body.len() > MAX_REQUEST_BYTES {
        return Err(ApiError::entity_too_large(MAX_REQUEST_BYTES));
    }
    if method == "POST" && !body.is_empty() {
        if !content_type
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
        {
            return Err(ApiError::unsupported_media_type());
        }
        params.extend(url::form_urlencoded::parse(body).into_owned());
    }
    Ok(params)
}

/// Everything the emulator does with a request except authentication, quotas and faults,
/// on the given state: for fuzzing and for tests.
pub fn process_unauthenticated(
    method: &str,
    query: &str,
    content_type: &str,
    body: &[u8],
    state: &mut super::state::State,
    now: Timestamp,
) -> Result<Value, ApiError> {
    let params = parse_params(method, query, content_type, body)?;
    let action = param(&params, "Action").unwrap_or("").to_string();
    let m =
        Method::from_bytes(method.as_bytes()).map_err(|_| ApiError::invalid_argument("method"))?;
    check(&m, &action, &params)?;
    actions::run(&action, &params, state, now, &actions::Behaviour::default())
}

/// One request: parse it, answer STS's action apart, then authenticate and run the call
/// and deliver it with the faults planned for it.
async fn handle(
    State(emu): State<Arc<Emulator>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let params = match parse_params(method.as_str(), uri.query().unwrap_or(""), ctype, &body) {
        Ok(p) => p,
        Err(e) => return finish(&emu, "unknown", "-", Err(e), &request_id(&[]), started),
    };
    let rid = request_id(&params);
    let action = param(&params, "Action").unwrap_or("").to_string();
    if action == "AssumeRoleWithOIDC" {
        let result = assume_role(&emu, &params);
        return finish(&emu, &action, "-", result, &rid, started);
    }
    let (mut outcome, account, plan) = authenticate_and_run(&emu, &method, &action, &params);
    if action == "DescribeExecution" {
        outcome = long_poll(&emu, &params, outcome).await;
    }
    if let Some(answer) =
        faulty_answer(&emu, plan, &action, &account, outcome.is_ok(), started).await
    {
        return answer;
    }
    finish(&emu, &action, &account, outcome, &rid, started)
}

/// Under one lock (a nonce, a quota token and the state change together): the gateway's
/// checks and the signature, then the call. Gives the call's outcome, the account that
/// signed it (`-` when none did) and the faults planned for it (none for a refused request).
fn authenticate_and_run(
    emu: &Emulator,
    method: &Method,
    action: &str,
    params: &[(String, String)],
) -> (Result<Value, ApiError>, String, Option<Plan>) {
    let mut inner = emu.lock();
    let now = Timestamp::now();
    let window = SignedDuration::from_secs(emu.config.skew_seconds);
    let checked = check(method, action, params).and_then(|_| {
        let inner = &mut *inner;
        auth::verify(
            method.as_str(),
            params,
            &inner.keys,
            &mut inner.nonces,
            now,
            window,
        )
    });
    match checked {
        Err(e) => (Err(e), "-".to_string(), None),
        Ok(account) => {
            let plan = inner.faults.plan(action, rand::random::<f64>);
            let outcome = call(emu, &mut inner, action, params, &account, &plan, now);
            (outcome, account, Some(plan))
        }
    }
}

/// An authenticated call: throttled by its account's quota, failed by a planned fault, or
/// run. A call that changed the state saves it and wakes the long-polls.
fn call(
    emu: &Emulator,
    inner: &mut Inner,
    action: &str,
    params: &[(String, String)],
    account: &str,
    plan: &Plan,
    now: Timestamp,
) -> Result<Value, ApiError> {
    let throttled = inner
        .quotas
        .as_mut()
        .is_some_and(|q| !q.take(account, action, now));
    match (&plan.fault, throttled) {
        (_, true) => Err(ApiError::throttled()),
        (Some(Fault::Status(s)), _) => Err(ApiError::for_status(*s)),
        (Some(Fault::Drop), _) => Ok(Value::Null),
        _ => {
            let behaviour = inner.behaviour.clone();
            let r = actions::run(action, params, &mut inner.state, now, &behaviour);
            if r.is_ok()
                && !matches!(
                    action,
                    "DescribeExecution"
                        | "ListExecutions"
                        | "ListFlows"
                        | "DescribeFlow"
                        | "GetExecutionHistory"
                )
            {
                emu.persist(inner);
                emu.changed.notify_waiters();
            }
            r
        }
    }
}

/// The planned latency, then the faults that change how the answer is delivered: a
/// dropped connection, a stall, a cut-short body (for a call that succeeded) or a proxy's
/// 502/503 page. `None`: answer normally.
async fn faulty_answer(
    emu: &Emulator,
    plan: Option<Plan>,
    action: &str,
    account: &str,
    succeeded: bool,
    started: Instant,
) -> Option<Response> {
    let plan = plan?;
    if plan.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(plan.latency_ms)).await;
    }
    match plan.fault {
        Some(Fault::Drop) => {
            count(emu, action, "fault:drop", account, started);
            Some(dropped_connection())
        }
        Some(Fault::Stall(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            None
        }
        Some(Fault::Malformed) if succeeded => {
            count(emu, action, "fault:malformed", account, started);
            Some(json_answer_raw(r#"{"Status":"Runn"#))
        }
        Some(Fault::Status(s @ (502 | 503))) => {
            count(emu, action, &format!("fault:{s}"), account, started);
            Some(proxy_page(s))
        }
        _ => None,
    }
}

/// Action and version, before authentication (the gateway refuses these first).
fn check(method: &Method, action: &str, params: &[(String, String)]) -> Result<(), ApiError> {
    if action.is_empty() {
        return Err(ApiError::missing_param("Action"));
    }
    if !matches!(*method, Method::GET | Method::POST) {
        return Err(ApiError::invalid_argument(format!(
            "method {method} is not GET or POST"
        )));
    }
    match param(params, "Version") {
        None => return Err(ApiError::missing_param("Version")),
        Some(v) if v != API_VERSION => return Err(ApiError::version_not_supported(v)),
        _ => {}
    }
    if !actions::supported(action) {
        return Err(ApiError::action_not_supported(action));
    }
    Ok(())
}

fn assume_role(emu: &Emulator, params: &[(String, String)]) -> Result<Value, ApiError> {
    let mut inner = emu.lock();
    if let Some(t) = param(params, "OIDCToken") {
        inner.seen_oidc_tokens.push(t.to_string());
    }
    let (body, id, key) = sts::assume_role(params, &inner.accepted_oidc_tokens, Timestamp::now())?;
    inner.keys.sts.insert(id, key);
    Ok(body)
}

/// DescribeExecution with `WaitTimeSeconds`: answer when the execution ends or the wait is over.
async fn long_poll(
    emu: &Emulator,
    params: &[(String, String)],
    first: Result<Value, ApiError>,
) -> Result<Value, ApiError> {
    let wait: u64 = param(params, "WaitTimeSeconds")
        .and_then(|w| w.parse().ok())
        .unwrap_or(0)
        .min(60);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let mut answer = first;
    while matches!(&answer, Ok(v) if v["Status"] == "Running")
        && tokio::time::Instant::now() < deadline
    {
        let notified = emu.changed.notified();
        let next = emu.lock().state.next_change();
        let until = next
            .map(|t| {
                let ms = t.duration_since(Timestamp::now()).as_millis().max(0) as u64;
                tokio::time::Instant::now() + Duration::from_millis(ms)
            })
            .map_or(deadline, |t| t.min(deadline));
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(until) => {}
        }
        let mut inner = emu.lock();
        let flow = param(params, "FlowName").unwrap_or("");
        let exec = param(params, "ExecutionName").unwrap_or("");
        answer = inner
            .state
            .execution_mut(flow, exec, Timestamp::now())
            .cloned()
            .and_then(|e| {
                inner
                    .state
                    .flow(flow)
                    .map(|f| actions::execution_json(&e, f))
            });
    }
    answer
}

fn count(emu: &Emulator, action: &str, outcome: &str, account: &str, started: Instant) {
    let action = if action.is_empty() { "unknown" } else { action };
    *emu.lock()
        .counters
        .entry((action.to_string(), outcome.to_string()))
        .or_default() += 1;
    tracing::info!(
        action,
        account,
        outcome,
        latency_ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
}

fn finish(
    emu: &Emulator,
    action: &str,
    account: &str,
    result: Result<Value, ApiError>,
    rid: &str,
    started: Instant,
) -> Response {
    match result {
        Ok(mut v) => {
            count(emu, action, "OK", account, started);
            v["RequestId"] = rid.into();
            json_answer(StatusCode::OK, v)
        }
        Err(e) => {
            count(emu, action, e.code, account, started);
            error_answer(&e, rid)
        }
    }
}

fn json_answer_raw(body: &'static str) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn proxy_page(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let html = format!(
        "<html><head><title>{code}</title></head><body><center><h1>{code}</h1></center><hr><center>nginx</center></body></html>"
    );
    (code, [(header::CONTENT_TYPE, "text/html")], html).into_response()
}

/// Headers go out, then the body fails: the client sees the connection break mid-answer.
fn dropped_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("dropped by fault injection"))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("static response")
}
