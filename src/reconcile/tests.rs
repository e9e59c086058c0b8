//! The shell's guarantees, as fast unit tests: the ExecutionStop pass against a fake fnf
//! (behind `FnfApi`) and a fake API server (behind `kube::Client`), both writing to one
//! log, so the order of status writes and calls can be read off it.

use super::policy::Policies;
use super::{Context, Error, SecretCache};
use crate::crd::{ExecutionStop, ExecutionStopStatus, Phase};
use crate::decide::Tuning;
use crate::decide::endpoint::{Endpoints, parse_allowlist};
use crate::decide::policy::Mode;
use crate::ratelimit::{Lane, Limit, RateLimiter};
use crate::telemetry::Metrics;
use fnf::{
    Account, Endpoint, Execution, ExecutionList, FnfApi, FnfError, ListRequest, StopRequest,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

/// What happened, in order: `patch <phase> <pendingRequestId>`, `get secret`, `stop <id>`,
/// `describe`.
type Log = Arc<Mutex<Vec<String>>>;

/// fnf: every StopExecution answers Stopped; DescribeExecution answers Running.
struct FakeFnf(Log);

impl FnfApi for FakeFnf {
    fn stop<'a>(
        &'a self,
        _: &'a Account,
        req: &'a StopRequest,
    ) -> BoxFuture<'a, Result<Execution, FnfError>> {
        let id = req.request_id.clone().unwrap_or_default();
        self.0.lock().unwrap().push(format!("stop {id}"));
        let answer = serde_json::json!({"Status": "Stopped", "RequestId": format!("svc-{id}")});
        async move { Ok(serde_json::from_value(answer).unwrap()) }.boxed()
    }

    fn describe<'a>(
        &'a self,
        _: &'a Account,
        _: &'a str,
        _: &'a str,
        _: u32,
    ) -> BoxFuture<'a, Result<Execution, FnfError>> {
        self.0.lock().unwrap().push("describe".into());
        let answer = serde_json::json!({"Status": "Running", "RequestId": "d"});
        async move { Ok(serde_json::from_value(answer).unwrap()) }.boxed()
    }

    fn list<'a>(
        &'a self,
        _: &'a Account,
        _: &'a ListRequest,
    ) -> BoxFuture<'a, Result<ExecutionList, FnfError>> {
        unreachable!("no set in these tests")
    }
}

/// The API server: status patches (409 for the first `conflicts` of them), the Secret
/// `creds` at resourceVersion `rv1`, namespaces without labels, and Events.
#[derive(Clone)]
struct FakeApi {
    log: Log,
    conflicts: Arc<Mutex<u32>>,
}

impl tower_service::Service<http::Request<Body>> for FakeApi {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let path = parts.uri.path().to_string();
            let (status, answer) = this.answer(parts.method.as_str(), &path, &body);
            Ok(http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(answer.to_string().into_bytes()))
                .unwrap())
        }
        .boxed()
    }
}

impl FakeApi {
    fn answer(&self, method: &str, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
        let mut log = self.log.lock().unwrap();
        if method == "PATCH" && path.ends_with("/status") {
            let patch: serde_json::Value = serde_json::from_slice(body).unwrap();
            let s = &patch["status"];
            log.push(format!(
                "patch {} {}",
                s["phase"].as_str().unwrap_or("-"),
                s["pendingRequestId"].as_str().unwrap_or("-")
            ));
            let mut conflicts = self.conflicts.lock().unwrap();
            if *conflicts > 0 {
                *conflicts -= 1;
                return (409, status_error(409, "Conflict"));
            }
            let mut obj = object(None);
            obj["status"] = s.clone();
            obj["metadata"]["resourceVersion"] = "2".into();
            return (200, obj);
        }
        if method == "GET" && path.ends_with("/secrets/creds") {
            log.push("get secret".into());
            return (
                200,
                serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "creds", "namespace": "ns", "resourceVersion": "rv1"},
                    "data": {"accessKeyId": "YWs=", "accessKeySecret": "c2s="}
                }),
            );
        }
        if method == "GET" && path == "/api/v1/namespaces/ns" {
            return (
                200,
                serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}),
            );
        }
        if method == "POST" && path.contains("/events") {
            return (201, serde_json::from_slice(body).unwrap());
        }
        log.push(format!("unexpected {method} {path}"));
        (404, status_error(404, "NotFound"))
    }
}

fn status_error(code: u16, reason: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": reason, "reason": reason, "code": code})
}

/// An ExecutionStop with its own Secret, as the watch shows it.
fn object(status: Option<ExecutionStopStatus>) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "flowstop.dev/v1alpha1", "kind": "ExecutionStop",
        "metadata": {"name": "s1", "namespace": "ns", "uid": "uid", "resourceVersion": "1",
                     "generation": 1, "creationTimestamp": "2026-12-05T00:00:00Z"},
        "spec": {"flowName": "f", "executionName": "e1", "credentialsSecretRef": {"name": "creds"}},
        "status": status,
    })
}

struct Harness {
    log: Log,
    ctx: Arc<Context>,
    /// Held so the shell does not take a closed channel for a shutdown.
    _running: tokio::sync::watch::Sender<bool>,
}

impl Harness {
    fn new(conflicts: u32) -> Self {
        let log = Log::default();
        let api = FakeApi {
            log: log.clone(),
            conflicts: Arc::new(Mutex::new(conflicts)),
        };
        let client = kube::Client::new(api, "ns");
        let limit = Limit {
            burst: 100.0,
            per_second: 100.0,
        };
        let (running, stopping) = tokio::sync::watch::channel(false);
        let ctx = Context {
            fnf: Arc::new(FakeFnf(log.clone())),
            endpoints: Endpoints {
                default: Some(Endpoint::url("http://127.0.0.1:9", false).unwrap()),
                allow_insecure_http: false,
                allowed_hosts: parse_allowlist("127.0.0.1").unwrap(),
            },
            operator_credentials: Err("none in tests".into()),
            tuning: Tuning::default(),
            stop_limiter: RateLimiter::new(limit),
            describe_limiter: RateLimiter::new(limit),
            sets: std::sync::OnceLock::new(),
            metrics: Arc::new(Metrics::default()),
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: "flowstop".into(),
                    instance: None,
                },
            ),
            secrets: SecretCache::default(),
            policies: Policies::none(Mode::Open),
            stopping,
            client,
        };
        Self {
            log,
            ctx: Arc::new(ctx),
            _running: running,
        }
    }

    async fn pass(&self, status: Option<ExecutionStopStatus>) -> Result<(), Error> {
        let obj: ExecutionStop = serde_json::from_value(object(status)).unwrap();
        super::stop::reconcile(Arc::new(obj), self.ctx.clone(), Lane::Interactive)
            .await
            .map(|_| ())
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn stops(&self) -> usize {
        self.log().iter().filter(|l| l.starts_with("stop ")).count()
    }
}

#[tokio::test]
async fn the_attempt_is_on_record_before_its_one_call() {
    let h = Harness::new(0);
    h.pass(None).await.unwrap();
    assert_eq!(
        h.log(),
        [
            "get secret",
            "patch Stopping uid-1",
            "stop uid-1",
            "patch Stopped -"
        ],
        "one StopExecution, after the write that records it"
    );
}

#[tokio::test]
async fn a_lost_write_race_makes_no_call() {
    let h = Harness::new(1);
    let e = h.pass(None).await.unwrap_err();
    assert!(matches!(e, Error::Conflict), "{e}");
    assert_eq!(h.stops(), 0, "{:?}", h.log());
}

#[tokio::test]
async fn a_final_object_makes_no_call_and_no_write_on_a_resync() {
    let h = Harness::new(0);
    let status = ExecutionStopStatus {
        phase: Some(Phase::Stopped),
        attempts: 1,
        request_id: Some("svc-uid-1".into()),
        ..Default::default()
    };
    h.pass(Some(status)).await.unwrap();
    assert!(h.log().is_empty(), "{:?}", h.log());
}

#[tokio::test]
async fn a_rejected_object_reads_its_secret_once_per_recheck_and_calls_only_when_it_changed() {
    let h = Harness::new(0);
    let rejected = |version: &str| ExecutionStopStatus {
        phase: Some(Phase::Failed),
        attempts: 1,
        last_attempt_time: Some(Time(
            jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap(),
        )),
        rejected_credentials_version: Some(version.into()),
        ..Default::default()
    };
    // The Secret is as it was rejected (rv1): one read, no call.
    h.pass(Some(rejected("rv1"))).await.unwrap();
    assert_eq!(h.log(), ["get secret"]);
    // It changed since (rejected at rv0): one read, and the call goes out.
    let h = Harness::new(0);
    h.pass(Some(rejected("rv0"))).await.unwrap();
    let log = h.log();
    assert_eq!(
        log.iter().filter(|l| *l == "get secret").count(),
        1,
        "{log:?}"
    );
    assert_eq!(h.stops(), 1, "{log:?}");
}
