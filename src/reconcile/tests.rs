//! The shell's guarantees, as fast unit tests: the ExecutionStop pass against a fake fnf
//! (behind `FnfApi`) and a fake API server (behind `kube::Client`), both writing to one
//! log, so the order of status writes and calls can be read off it.

use super::policy::Policies;
use super::set::SetContext;
use super::{Context, Error, SecretCache};
use crate::crd::set::{ExecutionStopSet, ExecutionStopSetStatus};
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

/// fnf: every StopExecution answers Stopped; DescribeExecution answers Running;
/// ListExecutions answers a page of `PAGE_NAMES` names after the token it is given (`t1`,
/// `t2`, …), the last of `pages` without a token.
struct FakeFnf {
    log: Log,
    pages: u32,
}

const PAGE_NAMES: u32 = 3;

impl FnfApi for FakeFnf {
    fn stop<'a>(
        &'a self,
        _: &'a Account,
        req: &'a StopRequest,
    ) -> BoxFuture<'a, Result<Execution, FnfError>> {
        let id = req.request_id.clone().unwrap_or_default();
        self.log.lock().unwrap().push(format!("stop {id}"));
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
        self.log.lock().unwrap().push("describe".into());
        let answer = serde_json::json!({"Status": "Running", "RequestId": "d"});
        async move { Ok(serde_json::from_value(answer).unwrap()) }.boxed()
    }

    fn list<'a>(
        &'a self,
        _: &'a Account,
        req: &'a ListRequest,
    ) -> BoxFuture<'a, Result<ExecutionList, FnfError>> {
        let token = req.next_token.clone().unwrap_or_default();
        self.log.lock().unwrap().push(format!("list {token}"));
        let page: u32 = token.trim_start_matches('t').parse().unwrap_or(0);
        let names: Vec<serde_json::Value> = (0..PAGE_NAMES)
            .map(|n| serde_json::json!({"Name": format!("e{page}-{n}"), "Status": "Running"}))
            .collect();
        let next = (page + 1 < self.pages).then(|| format!("t{}", page + 1));
        let answer = serde_json::json!({"Executions": names, "NextToken": next, "RequestId": "l"});
        async move { Ok(serde_json::from_value(answer).unwrap()) }.boxed()
    }
}

/// The API server: status patches (409 for the first `conflicts` of them), the Secret
/// `creds` at resourceVersion `rv1`, namespaces without labels, and Events.
#[derive(Clone)]
struct FakeApi {
    log: Log,
    conflicts: Arc<Mutex<u32>>,
    /// The ExecutionStopSet as the server holds it.
    set: Arc<Mutex<serde_json::Value>>,
    /// ExecutionStop names that exist already, created by someone else.
    taken: Arc<Mutex<Vec<String>>>,
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
        if path.contains("/executionstopsets/") {
            return self.set_answer(&mut log, method, path, body);
        }
        if method == "POST" && path.ends_with("/executionstops") {
            let child: serde_json::Value = serde_json::from_slice(body).unwrap();
            let name = child["metadata"]["name"].as_str().unwrap().to_string();
            log.push(format!(
                "create {}",
                child["spec"]["executionName"].as_str().unwrap()
            ));
            if self.taken.lock().unwrap().contains(&name) {
                return (409, status_error(409, "AlreadyExists"));
            }
            return (201, child);
        }
        if method == "GET" && path.contains("/executionstops/") {
            // A name taken by a stranger: no controller ownerReference.
            let mut stranger = object(None);
            stranger["metadata"]["name"] = path.rsplit('/').next().unwrap().into();
            return (200, stranger);
        }
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

impl FakeApi {
    fn set_answer(
        &self,
        log: &mut Vec<String>,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        let mut stored = self.set.lock().unwrap();
        if method == "GET" {
            return (200, stored.clone());
        }
        let patch: serde_json::Value = serde_json::from_slice(body).unwrap();
        let s = &patch["status"];
        // Conditional on the resourceVersion read, as the API server does.
        let rv = stored["metadata"]["resourceVersion"].clone();
        if patch["metadata"]["resourceVersion"] != rv {
            log.push("conflict set".into());
            return (409, status_error(409, "Conflict"));
        }
        log.push(format!(
            "patch set {} {} pages={} next={} complete={}",
            s["phase"].as_str().unwrap_or("-"),
            s["listing"]["pass"].as_str().unwrap_or("-"),
            s["listing"]["pages"],
            s["listing"]["nextToken"].as_str().unwrap_or("-"),
            s["snapshotComplete"]
        ));
        let _ = path;
        stored["status"] = s.clone();
        let next = rv.as_str().unwrap().parse::<u64>().unwrap() + 1;
        stored["metadata"]["resourceVersion"] = next.to_string().into();
        (200, stored.clone())
    }
}

fn status_error(code: u16, reason: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": reason, "reason": reason, "code": code})
}

/// A live ExecutionStopSet with its own Secret.
fn set_object(status: Option<ExecutionStopSetStatus>) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "flowstop.dev/v1alpha1", "kind": "ExecutionStopSet",
        "metadata": {"name": "s", "namespace": "ns", "uid": "set-uid", "resourceVersion": "1",
                     "generation": 1, "creationTimestamp": "2026-12-05T00:00:00Z"},
        "spec": {"flowName": "f", "maxCount": 100, "credentialsSecretRef": {"name": "creds"}},
        "status": status,
    })
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
    api: FakeApi,
    /// Held so the shell does not take a closed channel for a shutdown.
    _running: tokio::sync::watch::Sender<bool>,
}

impl Harness {
    fn new(conflicts: u32) -> Self {
        Self::with_pages(conflicts, 1)
    }

    fn with_pages(conflicts: u32, pages: u32) -> Self {
        let log = Log::default();
        let api = FakeApi {
            log: log.clone(),
            conflicts: Arc::new(Mutex::new(conflicts)),
            set: Arc::new(Mutex::new(set_object(None))),
            taken: Arc::default(),
        };
        let client = kube::Client::new(api.clone(), "ns");
        let limit = Limit {
            burst: 100.0,
            per_second: 100.0,
        };
        let (running, stopping) = tokio::sync::watch::channel(false);
        let ctx = Context {
            fnf: Arc::new(FakeFnf {
                log: log.clone(),
                pages,
            }),
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
            api,
            _running: running,
        }
    }

    async fn pass(&self, status: Option<ExecutionStopStatus>) -> Result<(), Error> {
        let obj: ExecutionStop = serde_json::from_value(object(status)).unwrap();
        super::stop::reconcile(Arc::new(obj), self.ctx.clone(), Lane::Interactive)
            .await
            .map(|_| ())
    }

    /// One pass over the set as the server holds it; the ledger knows no children.
    async fn set_pass(&self) -> Result<kube::runtime::controller::Action, Error> {
        let set = self.api.set.lock().unwrap().clone();
        self.set_pass_on(set).await
    }

    /// A pass on the set as the watch shows it (`set`), which may be older than the
    /// server's.
    async fn set_pass_on(
        &self,
        set: serde_json::Value,
    ) -> Result<kube::runtime::controller::Action, Error> {
        let set: ExecutionStopSet = serde_json::from_value(set).unwrap();
        let (stops, mut writer) = kube::runtime::reflector::store();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
        let scope = crate::watch::Scope {
            stops,
            sets: kube::runtime::reflector::store().0,
            ledger: Default::default(),
        };
        let ctx = Arc::new(SetContext::new(self.ctx.clone(), &scope));
        super::set::reconcile(Arc::new(set), ctx).await
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

#[tokio::test]
async fn a_set_reads_its_pages_a_pass_and_records_where_it_stands_once() {
    use crate::decide::set::PAGES_PER_PASS;
    let h = Harness::with_pages(0, PAGES_PER_PASS + 2);
    let then = h.set_pass().await.unwrap();
    assert_eq!(
        then,
        kube::runtime::controller::Action::requeue(std::time::Duration::ZERO),
        "the worker goes back to the queue after PAGES_PER_PASS pages"
    );
    let log = h.log();
    let lists = log.iter().filter(|l| l.starts_with("list")).count();
    assert_eq!(lists, PAGES_PER_PASS as usize, "{log:?}");
    // Two writes: the snapshot's time before the first page, where it stands after the last.
    let patches: Vec<&String> = log.iter().filter(|l| l.starts_with("patch set")).collect();
    assert_eq!(patches.len(), 2, "{log:?}");
    assert!(
        log.iter().position(|l| l.starts_with("patch set"))
            < log.iter().position(|l| l.starts_with("list")),
        "the snapshot is on record before anything is listed: {log:?}"
    );
    assert_eq!(
        log.last().unwrap(),
        &format!(
            "patch set Listing Counting pages={PAGES_PER_PASS} next=t{PAGES_PER_PASS} complete=false"
        ),
        "{log:?}"
    );
    // The next pass (a restart would do the same) resumes at the recorded token.
    h.set_pass().await.unwrap();
    let resumed = format!("list t{PAGES_PER_PASS}");
    assert!(h.log().contains(&resumed), "{:?}", h.log());
}

#[tokio::test]
async fn a_set_counts_every_page_before_it_creates_and_records_the_listing_after_the_children() {
    let h = Harness::with_pages(0, 2);
    for _ in 0..4 {
        h.set_pass().await.unwrap();
    }
    let log = h.log();
    let first_create = log.iter().position(|l| l.starts_with("create")).unwrap();
    let lists: Vec<&String> = log[..first_create]
        .iter()
        .filter(|l| l.starts_with("list"))
        .collect();
    assert_eq!(
        lists,
        ["list ", "list t1", "list "],
        "counted, then listed again: {log:?}"
    );
    // Where the listing stands is written only once the children of the pages read exist
    // (a restart lists those pages again and finds their children).
    let last_create = log.iter().rposition(|l| l.starts_with("create")).unwrap();
    let written_after_creating = log[first_create..]
        .iter()
        .position(|l| l.starts_with("patch set"))
        .map(|p| p + first_create);
    assert!(
        written_after_creating.is_some_and(|w| w > last_create),
        "{log:?}"
    );
    let created: Vec<&String> = log.iter().filter(|l| l.starts_with("create")).collect();
    assert_eq!(
        created.len(),
        2 * PAGE_NAMES as usize,
        "one per execution: {log:?}"
    );
    assert!(
        log.iter().any(|l| l.ends_with("complete=true")),
        "the snapshot is complete: {log:?}"
    );
}

/// A listing longer than a pass: where it stands is written after the pass's pages'
/// ExecutionStops exist and before the next page is read, so a restart re-reads at most a
/// pass's pages and finds their ExecutionStops.
#[tokio::test]
async fn a_long_listing_is_recorded_after_each_pass_s_children() {
    use crate::decide::set::PAGES_PER_PASS;
    let h = Harness::with_pages(0, PAGES_PER_PASS + 2);
    for _ in 0..3 {
        h.set_pass().await.unwrap();
    }
    let log = h.log();
    let record = format!(
        "patch set Listing Creating pages={PAGES_PER_PASS} next=t{PAGES_PER_PASS} complete=false"
    );
    let recorded = log.iter().position(|l| *l == record);
    let last_page = PAGES_PER_PASS - 1;
    let last_created = log
        .iter()
        .rposition(|l| l.starts_with(&format!("create e{last_page}-")));
    assert!(
        recorded.is_some() && last_created.is_some() && recorded > last_created,
        "{log:?}"
    );
    assert!(
        !log.iter()
            .any(|l| l.starts_with(&format!("create e{PAGES_PER_PASS}-"))),
        "the next pass's pages wait for the next pass: {log:?}"
    );
}

/// The watch has not shown the last pass's write yet: the set as it was before it. A
/// preview refreshing its count has no snapshot time to write first, and such a pass once
/// read its ten pages again before its write failed; it now fails on its first write,
/// before any call.
#[tokio::test]
async fn a_pass_from_a_stale_view_of_the_set_spends_no_call() {
    use crate::decide::set::PAGES_PER_PASS;
    let h = Harness::with_pages(0, 2 * PAGES_PER_PASS + 2);
    {
        // A preview whose refresh is due: it counts again from the first page.
        let mut set = h.api.set.lock().unwrap();
        set["spec"]["dryRun"] = true.into();
        set["status"] = serde_json::json!({"phase": "Previewing", "matched": 3,
            "listedTime": "2020-01-01T00:00:00Z"});
    }
    let before = h.api.set.lock().unwrap().clone();
    h.set_pass().await.unwrap();
    let listed = |h: &Harness| h.log().iter().filter(|l| l.starts_with("list")).count();
    assert_eq!(listed(&h), PAGES_PER_PASS as usize);
    let e = h.set_pass_on(before).await.unwrap_err();
    assert!(matches!(e, Error::Conflict), "{e}");
    assert_eq!(listed(&h), PAGES_PER_PASS as usize, "{:?}", h.log());
}

#[tokio::test]
async fn a_name_held_by_a_stranger_is_reported_not_counted() {
    let h = Harness::with_pages(0, 1);
    let taken = super::set::child_name("s", "e0-1");
    h.api.taken.lock().unwrap().push(taken);
    h.set_pass().await.unwrap();
    let set = h.api.set.lock().unwrap().clone();
    let status = &set["status"];
    assert_eq!(
        status["nameTaken"],
        serde_json::json!(["e0-1"]),
        "{status:#}"
    );
    assert_eq!(status["nameConflicts"], 1, "{status:#}");
    assert_eq!(status["matched"], PAGE_NAMES, "{status:#}");
    // Pending padding counts only what the set created.
    assert_eq!(status["children"]["total"], PAGE_NAMES - 1, "{status:#}");
}

/// Several sets (and /readyz) wait at once for the ExecutionStops' watch to sync: every one
/// goes on once it has (the cache's own signal wakes only its latest waiter, which left
/// the others hanging and the set controller stuck after a restart).
#[tokio::test]
async fn every_set_waiting_for_the_stops_watch_goes_on_once_it_has_synced() {
    let h = Harness::new(0);
    let (stops, mut writer) = kube::runtime::reflector::store::<ExecutionStop>();
    let scope = crate::watch::Scope {
        stops: stops.clone(),
        sets: kube::runtime::reflector::store().0,
        ledger: Default::default(),
    };
    let ctx = Arc::new(SetContext::new(h.ctx.clone(), &scope));
    let set: ExecutionStopSet = serde_json::from_value(h.api.set.lock().unwrap().clone()).unwrap();
    let set = Arc::new(set);
    let passes: Vec<_> = (0..4)
        .map(|_| tokio::spawn(super::set::reconcile(set.clone(), ctx.clone())))
        .collect();
    // Another waiter polls the signal meanwhile, as /readyz does.
    let poller = tokio::spawn(async move {
        loop {
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(10),
                stops.wait_until_ready(),
            )
            .await;
            tokio::task::yield_now().await;
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        h.log().iter().all(|l| !l.starts_with("list")),
        "nothing before the sync"
    );
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Init);
    writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
    for pass in passes {
        let ran = tokio::time::timeout(std::time::Duration::from_secs(10), pass)
            .await
            .expect("the set's pass went on after the sync")
            .unwrap();
        // The same set four times at once: one writes first, and the others' writes from
        // the same resourceVersion conflict — each went on as far as writing.
        assert!(matches!(ran, Ok(_) | Err(Error::Conflict)), "{ran:?}");
    }
    assert!(
        h.log().iter().any(|l| l.starts_with("list")),
        "{:?}",
        h.log()
    );
    poller.abort();
}
