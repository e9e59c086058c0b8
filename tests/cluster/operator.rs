//! The operator end to end: `kubectl apply` an ExecutionStop, the operator (as its
//! ServiceAccount, with the ClusterRole from deploy/) calls the fnf-emulator, and the
//! outcome lands in status.

use serde_json::Value;
use testkit::cloud::Cloud;
use testkit::cloud::{AK, SK};
use testkit::fixtures::{ExecutionStop, secret};
use testkit::operator::{Operator, installed, setup, status, wait_event, wait_for};

fn condition<'a>(s: &'a Value, type_: &str) -> &'a Value {
    s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_execution_is_stopped_once() {
    let c = installed();
    let (ns, cloud, op) = setup("stop", |_| {}, &[]).await;
    cloud.start("f", "e1", None).await;
    c.apply(
        &ExecutionStop::new(&ns, "s1", "f", "e1")
            .secret("creds")
            .cause("rollout")
            .error("Aborted")
            .yaml(),
    );
    wait_for(c, &ns, "s1", "condition=Ready");
    let s = status(c, &ns, "s1");
    assert_eq!(s["phase"], "Stopped");
    assert_eq!(s["execution"]["status"], "Stopped");
    assert_eq!(s["attempts"], 1);
    assert!(
        s["requestId"].as_str().unwrap().ends_with("-1"),
        "our RequestId echoed: {s}"
    );
    assert_eq!(s.get("pendingRequestId"), None);
    assert_eq!(condition(&s, "Ready")["reason"], "Stopped");
    assert_eq!(condition(&s, "Ready")["observedGeneration"], 1);
    assert_eq!(condition(&s, "Stalled")["status"], "False");
    assert_eq!(s["observedGeneration"], 1);
    assert_eq!(cloud.count("StopExecution", "OK"), 1);
    assert_eq!(cloud.calls("StopExecution"), 1);
    // Printer columns and events, as a user sees them.
    let table = c.must(&["get", "estop", "-n", &ns], None);
    assert!(
        table.contains("Stopped") && table.contains("EXECUTION STATUS"),
        "{table}"
    );
    // One Normal event for the outcome (a Stopping event in the same pass is folded in).
    let events = wait_event(c, &ns, "Normal", "Stopped").await;
    assert!(!events.contains("\"Stopping\""), "{events}");
    assert!(!events.contains(SK));
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_already_finished_execution_is_reported_with_its_final_status() {
    let c = installed();
    let (ns, cloud, op) = setup("done", |_| {}, &[]).await;
    cloud
        .start(
            "f",
            "e1",
            Some(r#"{"emulator":{"durationMs":0,"result":"Succeeded"}}"#),
        )
        .await;
    c.apply(
        &ExecutionStop::new(&ns, "s1", "f", "e1")
            .secret("creds")
            .yaml(),
    );
    wait_for(c, &ns, "s1", "condition=Ready");
    let s = status(c, &ns, "s1");
    assert_eq!(s["phase"], "AlreadyFinished");
    assert_eq!(s["execution"]["status"], "Succeeded");
    assert_eq!(condition(&s, "Ready")["reason"], "AlreadyFinished");
    assert_eq!(cloud.count("StopExecution", "ExecutionAlreadyCompleted"), 1);
    assert_eq!(cloud.count("DescribeExecution", "OK"), 1);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_flow_fails_at_once_without_retries() {
    let c = installed();
    let (ns, cloud, op) = setup("nf", |_| {}, &[]).await;
    c.apply(
        &ExecutionStop::new(&ns, "s1", "nope", "e1")
            .secret("creds")
            .yaml(),
    );
    wait_for(c, &ns, "s1", "jsonpath={.status.phase}=Failed");
    let s = status(c, &ns, "s1");
    assert_eq!(s["lastError"]["code"], "FlowNotExists");
    assert_eq!(s["lastError"]["httpStatus"], 404);
    assert!(
        s["lastError"]["requestId"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    assert_eq!(s["lastError"]["retryable"], false);
    assert_eq!(s["attempts"], 1);
    assert_eq!(condition(&s, "Ready")["reason"], "NotFound");
    assert_eq!(condition(&s, "Stalled")["status"], "True");
    assert_eq!(cloud.calls("StopExecution"), 1);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_are_retried_until_success() {
    let c = installed();
    let (ns, cloud, op) = setup(
        "retry",
        |c| {
            c.faults = vec![fnf_emulator::parse_rule("StopExecution=500,500,429").unwrap()];
        },
        &[],
    )
    .await;
    cloud.start("f", "e1", None).await;
    c.apply(
        &ExecutionStop::new(&ns, "s1", "f", "e1")
            .secret("creds")
            .yaml(),
    );
    wait_for(c, &ns, "s1", "condition=Ready");
    let s = status(c, &ns, "s1");
    assert_eq!(s["phase"], "Stopped");
    assert_eq!(
        s["attempts"], 3,
        "the throttled call is not an attempt: {s}"
    );
    assert_eq!(s.get("lastError"), None);
    assert_eq!(s.get("throttledSince"), None, "cleared by the answer: {s}");
    assert_eq!(cloud.calls("StopExecution"), 4);
    assert_eq!(cloud.count("StopExecution", "OK"), 1);
    let warnings = wait_event(c, &ns, "Warning", "Retrying").await;
    assert!(
        warnings.contains("ResourceThrottled") || warnings.contains("InternalServerError"),
        "{warnings}"
    );
    wait_event(c, &ns, "Normal", "Stopping").await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_attempts_fail_with_the_last_error() {
    let c = installed();
    let (ns, cloud, op) = setup(
        "exhaust",
        |c| {
            c.faults = vec![fnf_emulator::parse_rule("StopExecution=500,500,503,500").unwrap()];
        },
        &[],
    )
    .await;
    cloud.start("f", "e1", None).await;
    c.apply(
        &ExecutionStop::new(&ns, "s1", "f", "e1")
            .secret("creds")
            .max_attempts(3)
            .yaml(),
    );
    wait_for(c, &ns, "s1", "jsonpath={.status.phase}=Failed");
    let s = status(c, &ns, "s1");
    assert_eq!(s["attempts"], 3);
    assert_eq!(condition(&s, "Ready")["reason"], "RetriesExhausted");
    assert_eq!(
        s["lastError"]["code"], "BadResponse",
        "the third answer was a proxy's 503 page: {s}"
    );
    assert_eq!(s["lastError"]["httpStatus"], 503);
    assert_eq!(cloud.calls("StopExecution"), 3);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_waits_then_proceeds_once_created() {
    let c = installed();
    let ns = c.namespace("nosecret");
    let cloud = Cloud::new(|_| {}).await;
    cloud.flow("f").await;
    cloud.start("f", "e1", None).await;
    let op = Operator::start(&ns, &cloud.emu.url(), &[]).await;
    c.apply(
        &ExecutionStop::new(&ns, "s1", "f", "e1")
            .secret("creds")
            .yaml(),
    );
    wait_for(
        c,
        &ns,
        "s1",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}=CredentialsNotFound",
    );
    let s = status(c, &ns, "s1");
    assert_eq!(s["phase"], "Pending");
    assert_eq!(s["attempts"], 0);
    assert!(
        s["lastError"]["message"]
            .as_str()
            .unwrap()
            .contains("creds"),
        "{s}"
    );
    assert_eq!(cloud.calls("StopExecution"), 0);
    c.apply(&secret(&ns, "creds", AK, SK));
    wait_for(c, &ns, "s1", "condition=Ready");
    assert_eq!(status(c, &ns, "s1")["phase"], "Stopped");
    assert_eq!(cloud.calls("StopExecution"), 1);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_reported_as_signature_mismatch() {
    let c = installed();
    let ns = c.namespace("badkey");
    let cloud = Cloud::new(|_| {}).await;
    cloud.flow("f").await;
    cloud.start("f", "e1", None).await;
    c.apply(&secret(&ns, "creds", AK, "not-the-secret"));
    let op = Operator::start(&ns, &cloud.emu.url(), &[]).await;
    c.apply(
        &ExecutionStop::new(&ns, "s1", "f", "e1")
            .secret("creds")
            .yaml(),
    );
    wait_for(c, &ns, "s1", "jsonpath={.status.phase}=Failed");
    let s = status(c, &ns, "s1");
    assert_eq!(s["lastError"]["code"], "SignatureNotMatch");
    assert_eq!(s["lastError"]["httpStatus"], 403);
    assert_eq!(condition(&s, "Ready")["reason"], "CredentialsRejected");
    assert_eq!(cloud.calls("StopExecution"), 1);
    let yaml = c.must(&["get", "estop", "-n", &ns, "s1", "-o", "yaml"], None);
    assert!(!yaml.contains("not-the-secret"));
    // Fixing the Secret makes the operator try again (it checks the Secret's version).
    c.apply(&secret(&ns, "creds", AK, SK));
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_makes_no_calls_and_no_writes_for_finished_objects() {
    let c = installed();
    let (ns, cloud, op) = setup("restart", |_| {}, &[]).await;
    for i in 0..3 {
        cloud.start("f", &format!("e{i}"), None).await;
        c.apply(
            &ExecutionStop::new(&ns, &format!("s{i}"), "f", &format!("e{i}"))
                .secret("creds")
                .yaml(),
        );
    }
    for i in 0..3 {
        wait_for(c, &ns, &format!("s{i}"), "condition=Ready");
    }
    op.stop().await;
    let before: Vec<String> = (0..3)
        .map(|i| {
            c.must(
                &[
                    "get",
                    "estop",
                    "-n",
                    &ns,
                    &format!("s{i}"),
                    "-o",
                    "jsonpath={.metadata.resourceVersion}",
                ],
                None,
            )
        })
        .collect();
    let calls = cloud.calls("StopExecution") + cloud.calls("DescribeExecution");
    let op = Operator::start(&ns, &cloud.emu.url(), &[]).await;
    // Wait until the new operator has seen all three objects (its own count of them);
    // settled, they never reach a controller: no reconcile at all.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !op
        .metrics_text()
        .await
        .contains("flowstop_objects{phase=\"Stopped\"} 3")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            op.metrics_text().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        cloud.calls("StopExecution") + cloud.calls("DescribeExecution"),
        calls,
        "no fnf calls"
    );
    assert_eq!(
        op.metric("flowstop_status_writes_total").await,
        0.0,
        "no status writes"
    );
    assert_eq!(op.metric("flowstop_fnf_calls_total").await, 0.0);
    assert_eq!(
        op.metric("flowstop_reconciles_total").await,
        0.0,
        "settled objects are not reconciled"
    );
    for (i, rv) in before.iter().enumerate() {
        let now = c.must(
            &[
                "get",
                "estop",
                "-n",
                &ns,
                &format!("s{i}"),
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ],
            None,
        );
        assert_eq!(&now, rv, "object s{i} unchanged");
    }
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_left_pending_by_a_crash_is_confirmed_then_made() {
    // As if an operator died after recording attempt 1 and before its call went out.
    let c = installed();
    let ns = c.namespace("pending");
    let cloud = Cloud::new(|_| {}).await;
    cloud.flow("f").await;
    cloud.start("f", "e1", None).await;
    cloud.start("f", "e2", None).await;
    c.apply(&secret(&ns, "creds", AK, SK));
    // The status the operator itself would have applied as its intent record.
    let api: kube::Api<flowstop::crd::ExecutionStop> = kube::Api::namespaced(c.client().await, &ns);
    for (name, exec) in [("s1", "e1"), ("s2", "e2")] {
        c.apply(
            &ExecutionStop::new(&ns, name, "f", exec)
                .secret("creds")
                .yaml(),
        );
        let intent = serde_json::json!({"apiVersion": "flowstop.dev/v1alpha1", "kind": "ExecutionStop", "status": {
            "phase": "Stopping", "attempts": 1, "pendingRequestId": format!("crashed-{name}"), "lastAttemptTime": "2026-01-01T00:00:00Z"}});
        let params = kube::api::PatchParams::apply(flowstop::reconcile::MANAGER).force();
        api.patch_status(name, &params, &kube::api::Patch::Apply(&intent))
            .await
            .unwrap();
    }
    // e2's lost call had in fact gone out.
    let stopped = cloud
        .client
        .stop_execution(
            &cloud.account,
            &fnf::StopRequest {
                flow_name: "f".into(),
                execution_name: "e2".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(stopped.status.as_str(), "Stopped");
    let op = Operator::start(&ns, &cloud.emu.url(), &[]).await;
    wait_for(c, &ns, "s1", "condition=Ready");
    wait_for(c, &ns, "s2", "condition=Ready");
    let (s1, s2) = (status(c, &ns, "s1"), status(c, &ns, "s2"));
    assert_eq!(
        (s1["phase"].as_str(), s1["attempts"].as_u64()),
        (Some("Stopped"), Some(2)),
        "confirmed running, then attempt 2: {s1}"
    );
    assert_eq!(
        (s2["phase"].as_str(), s2["attempts"].as_u64()),
        (Some("Stopped"), Some(1)),
        "confirmed stopped, no new call: {s2}"
    );
    assert!(s1.get("pendingRequestId").is_none() && s2.get("pendingRequestId").is_none());
    assert_eq!(
        cloud.calls("StopExecution"),
        2,
        "one call for e1 by the operator, one for e2 before it started"
    );
    assert!(cloud.count("DescribeExecution", "OK") >= 2);
    op.stop().await;
}

/// Retention: a final ExecutionStop with `ttlSecondsAfterFinished` is deleted that long
/// after it became final, with no call; one that Argo CD or Flux tracks stays (the tool
/// would only create it again), as does one without a TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_object_goes_after_its_ttl_unless_a_gitops_tool_manages_it() {
    let c = installed();
    let (ns, cloud, op) = setup("ttl", |_| {}, &[]).await;
    for e in ["e1", "e2", "e3", "e4"] {
        cloud.start("f", e, None).await;
    }
    let stop = |name: &str, e: &str| ExecutionStop::new(&ns, name, "f", e).secret("creds");
    c.apply(&testkit::fixtures::list([
        stop("argo", "e2")
            .ttl(1)
            .annotation(
                "argocd.argoproj.io/tracking-id",
                "app:flowstop.dev/ExecutionStop:ns/argo",
            )
            .yaml(),
        stop("flux", "e3")
            .ttl(1)
            .label("kustomize.toolkit.fluxcd.io/name", "drain")
            .yaml(),
        stop("kept", "e4").yaml(),
    ]));
    for name in ["argo", "flux", "kept"] {
        wait_for(c, &ns, name, "jsonpath={.status.phase}=Stopped");
    }
    // Final after the others, so once it is gone their TTL has passed too.
    c.apply(&stop("short-lived", "e1").ttl(1).yaml());
    let out = c.kubectl(
        &[
            "wait",
            "-n",
            &ns,
            "executionstop/short-lived",
            "--for=delete",
            "--timeout=60s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "not deleted after its TTL: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The tracked ones' TTL passed before: they are still there.
    let names = c.must(
        &[
            "get",
            "estop",
            "-n",
            &ns,
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
        None,
    );
    assert_eq!(
        names.split_whitespace().collect::<Vec<_>>(),
        ["argo", "flux", "kept"]
    );
    assert_eq!(
        cloud.count("StopExecution", "OK"),
        4,
        "one call each, none on deletion"
    );
    assert_eq!(cloud.calls("StopExecution"), 4);
    op.stop().await;
}

/// On a plane of its own, an operator with the test flags (`auto` initial lists) and its
/// log; an ExecutionStop made before it starts and one made after are both stopped.
/// Returns the log.
async fn stops_what_exists_and_what_comes(c: &testkit::cluster::Cluster, ns: &str) -> String {
    use testkit::operator::{Launch, TEST_ARGS, repo};
    let cloud = Cloud::new(|_| {}).await;
    cloud.flow("f").await;
    c.apply(&secret(ns, "creds", AK, SK));
    let stop = |i: usize| {
        ExecutionStop::new(ns, &format!("s{i}"), "f", &format!("e{i}"))
            .secret("creds")
            .yaml()
    };
    cloud.start("f", "e0", None).await;
    c.apply(&stop(0));
    let log = tempfile::NamedTempFile::new().unwrap();
    let op = Operator::launch(Launch {
        binary: testkit::cluster::workspace_bin(repo(""), "flowstop"),
        kubeconfig: c.service_account_kubeconfig("flowstop-system", "flowstop"),
        namespace: ns,
        endpoint: &cloud.emu.url(),
        args: TEST_ARGS,
        env: &[],
        log: Some(log.path()),
        ready_within: std::time::Duration::from_secs(30),
    })
    .await
    .expect("the operator starts and becomes ready");
    cloud.start("f", "e1", None).await;
    c.apply(&stop(1));
    for i in 0..2 {
        wait_for(c, ns, &format!("s{i}"), "condition=Ready");
        assert_eq!(status(c, ns, &format!("s{i}"))["phase"], "Stopped");
    }
    assert_eq!(cloud.count("StopExecution", "OK"), 2);
    op.stop().await;
    std::fs::read_to_string(log.path()).unwrap()
}

/// What exists at start is read by a streamed watch where the API server streams
/// (WatchList, on by default from Kubernetes 1.34: this plane), and in pages where it does
/// not (the gate off, as Kubernetes 1.33 ships): the operator asks, and works either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_lists_are_streamed_where_the_server_can_and_paged_where_it_cannot() {
    let c = installed();
    let log = stops_what_exists_and_what_comes(c, &c.namespace("streamed")).await;
    assert!(log.contains("initial lists are streamed"), "{log}");

    let (_plane, _stdin, info) =
        testkit::cluster::launch(&["--apiserver-feature-gates", "WatchList=false"]);
    let paged = testkit::cluster::Cluster::attach(
        testkit::cluster::get(&info, "kubeconfig").into(),
        testkit::cluster::get(&info, "server").into(),
        testkit::cluster::bin_dir(),
    );
    testkit::operator::install(&paged);
    let log = stops_what_exists_and_what_comes(&paged, &paged.namespace("paged")).await;
    assert!(
        log.contains("initial lists go in pages") && log.contains("WatchList feature gate"),
        "{log}"
    );
}
