//! Status tells the truth, end to end: who stopped an execution, which request did it,
//! a corrected Secret being tried again, and phase counts that forget deleted objects.
//! Each test here failed on the operator before the shell kept one current status.

use testkit::cloud::Cloud;
use testkit::cloud::{AK, SK};
use testkit::fixtures::{ExecutionStop, secret};
use testkit::operator::{
    Operator, eventually, installed, ready_condition, setup, status, uid, wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_namespaces_one_execution_one_stopped_one_already_finished() {
    let c = installed();
    let (a, b) = (c.namespace("twice-a"), c.namespace("twice-b"));
    let cloud = Cloud::new(|_| {}).await;
    cloud.flow("f").await;
    cloud.start("f", "e1", None).await;
    for ns in [&a, &b] {
        c.apply(&secret(ns, "creds", AK, SK));
    }
    let op = Operator::start(&format!("{a},{b}"), &cloud.emu.url(), &[]).await;
    for ns in [&a, &b] {
        c.apply(
            &ExecutionStop::new(ns, "s1", "f", "e1")
                .secret("creds")
                .yaml(),
        );
    }
    for ns in [&a, &b] {
        wait_for(c, ns, "s1", "condition=Ready");
    }
    let (sa, sb) = (status(c, &a, "s1"), status(c, &b, "s1"));
    let mut phases = [sa["phase"].as_str().unwrap(), sb["phase"].as_str().unwrap()];
    phases.sort();
    assert_eq!(phases, ["AlreadyFinished", "Stopped"], "{sa}\n{sb}");
    let (winner, ns, loser) = if sa["phase"] == "Stopped" {
        (&sa, &a, &sb)
    } else {
        (&sb, &b, &sa)
    };
    assert_eq!(
        winner["requestId"].as_str(),
        Some(format!("{}-1", uid(ns, "s1")).as_str()),
        "{winner}"
    );
    assert_eq!(loser["execution"]["status"], "Stopped", "{loser}");
    assert_eq!(loser.get("requestId"), None, "{loser}");
    assert!(cloud.calls("StopExecution") <= 2);
    assert_eq!(cloud.count("StopExecution", "OK"), 1);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_stopped_out_of_band_is_already_finished() {
    let c = installed();
    let (ns, cloud, op) = setup("oob", |_| {}, &[]).await;
    cloud.start("f", "e1", None).await;
    // Another client (a person, a script) stops it through the API first.
    cloud.stop_out_of_band("f", "e1").await;
    c.apply(
        &ExecutionStop::new(&ns, "s1", "f", "e1")
            .secret("creds")
            .yaml(),
    );
    wait_for(c, &ns, "s1", "condition=Ready");
    let s = status(c, &ns, "s1");
    assert_eq!(s["phase"], "AlreadyFinished", "{s}");
    assert_eq!(s["execution"]["status"], "Stopped", "{s}");
    assert_eq!(s.get("requestId"), None, "{s}");
    assert_eq!(cloud.count("StopExecution", "ExecutionAlreadyCompleted"), 1);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asynchronous_stop_is_confirmed_by_describe_and_keeps_the_request_id_of_the_call_that_succeeded()
 {
    let c = installed();
    let (ns, cloud, op) = setup("async-id", |c| c.async_stop_ms = Some(700), &[]).await;
    cloud.start("f", "e1", None).await;
    c.apply(
        &ExecutionStop::new(&ns, "s1", "f", "e1")
            .secret("creds")
            .yaml(),
    );
    wait_for(c, &ns, "s1", "condition=Ready");
    let s = status(c, &ns, "s1");
    assert_eq!(s["phase"], "Stopped", "{s}");
    assert_eq!(s["execution"]["status"], "Stopped", "{s}");
    assert_eq!(
        s["requestId"].as_str(),
        Some(format!("{}-1", uid(&ns, "s1")).as_str()),
        "{s}"
    );
    assert!(cloud.count("DescribeExecution", "OK") >= 1);
    assert_eq!(cloud.calls("StopExecution"), 1);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrected_secret_is_tried_again_and_an_unchanged_one_is_not() {
    let c = installed();
    let ns = c.namespace("fixkey");
    let cloud = Cloud::new(|_| {}).await;
    cloud.flow("f").await;
    cloud.start("f", "e1", None).await;
    cloud.start("f", "e2", None).await;
    c.apply(&secret(&ns, "creds", AK, "not-the-secret"));
    c.apply(&secret(&ns, "other", AK, "not-the-secret"));
    let op = Operator::start(
        &ns,
        &cloud.emu.url(),
        &["--credentials-recheck-seconds", "1"],
    )
    .await;
    c.apply(
        &ExecutionStop::new(&ns, "fixed", "f", "e1")
            .secret("creds")
            .yaml(),
    );
    c.apply(
        &ExecutionStop::new(&ns, "unchanged", "f", "e2")
            .secret("other")
            .yaml(),
    );
    for name in ["fixed", "unchanged"] {
        wait_for(c, &ns, name, "jsonpath={.status.phase}=Failed");
    }
    assert_eq!(cloud.calls("StopExecution"), 2, "one rejected call each");
    c.apply(&secret(&ns, "creds", AK, SK));
    wait_for(c, &ns, "fixed", "condition=Ready");
    let s = status(c, &ns, "fixed");
    assert_eq!(s["phase"], "Stopped", "{s}");
    assert_eq!(
        s["attempts"], 1,
        "a retry after new credentials does not count"
    );
    assert_eq!(cloud.count("StopExecution", "OK"), 1);
    // The unchanged Secret is checked every second; a few checks later, still no call.
    let reconciles = op.metric("flowstop_reconciles_total").await;
    eventually("three more rechecks", || async {
        op.metric("flowstop_reconciles_total").await >= reconciles + 3.0
    })
    .await;
    assert_eq!(status(c, &ns, "unchanged")["phase"], "Failed");
    assert_eq!(
        cloud.calls("StopExecution"),
        3,
        "no second call for the unchanged Secret"
    );
    op.stop().await;
}

fn objects(metrics: &str, phase: &str) -> Option<f64> {
    let prefix = format!("flowstop_objects{{phase=\"{phase}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_objects_are_no_longer_counted() {
    let c = installed();
    let (ns, cloud, op) = setup("churn", |_| {}, &[]).await;
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
    eventually("three Stopped objects counted", || async {
        objects(&op.metrics_text().await, "Stopped") == Some(3.0)
    })
    .await;
    c.must(&["delete", "estop", "-n", &ns, "s0", "s1"], None);
    eventually("deleted objects dropped from the count", || async {
        objects(&op.metrics_text().await, "Stopped") == Some(1.0)
    })
    .await;
    let text = op.metrics_text().await;
    for phase in [
        "Pending",
        "Stopping",
        "Retrying",
        "AlreadyFinished",
        "Failed",
    ] {
        assert_eq!(objects(&text, phase), Some(0.0), "{phase}: {text}");
    }
    op.stop().await;
}

/// StopExecution accepted (the service stops asynchronously), then DescribeExecution refused
/// with 403: the object ends Stopped on the service's word, names the missing permission,
/// and sends nothing again — not after a changed Secret, not on a resync (it used to end
/// Failed/CredentialsRejected and send the same stop again on each recheck).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_stop_whose_confirmation_is_refused_is_not_sent_again() {
    let c = installed();
    let (ns, cloud, op) = setup(
        "accepted-403",
        |cfg| cfg.async_stop_ms = Some(600_000),
        &["--credentials-recheck-seconds", "1"],
    )
    .await;
    cloud.start("f", "e1", None).await;
    cloud.fault("DescribeExecution=403@1");
    c.apply(
        &ExecutionStop::new(&ns, "s", "f", "e1")
            .secret("creds")
            .yaml(),
    );
    wait_for(c, &ns, "s", "condition=Ready");
    let s = status(c, &ns, "s");
    assert_eq!(s["phase"], "Stopped", "{s}");
    let ready = ready_condition(&s);
    assert_eq!(ready["reason"], "StopAccepted", "{s}");
    let msg = ready["message"].as_str().unwrap();
    assert!(msg.contains("fnf:DescribeExecution"), "{msg}");
    assert_eq!(s["lastError"]["httpStatus"], 403, "{s}");
    assert_eq!(cloud.calls("StopExecution"), 1);
    // A changed Secret, and a change to the object: still the one call. Settled, the
    // object does not even reach a controller.
    c.must(
        &["label", "-n", &ns, "secret", "creds", "rotated=yes"],
        None,
    );
    let reconciles = op.metric("flowstop_reconciles_total").await;
    let seen = op.metric("flowstop_watch_events_total").await;
    c.must(&["annotate", "-n", &ns, "estop", "s", "poke=1"], None);
    eventually("the operator sees the change", || async {
        op.metric("flowstop_watch_events_total").await > seen
    })
    .await;
    assert_eq!(
        op.metric("flowstop_reconciles_total").await,
        reconciles,
        "no pass over a settled object"
    );
    assert_eq!(
        cloud.calls("StopExecution"),
        1,
        "the accepted stop was not sent again"
    );
    op.stop().await;
}
