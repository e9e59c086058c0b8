//! ExecutionStopSet end to end, through `kubectl apply` and the operator as its
//! ServiceAccount: the preview, the flip, one ExecutionStop per match, the cap, the
//! snapshot's time window, a kill while children are created, and deletion.

use std::collections::BTreeSet;
use std::time::Duration;
use testkit::cloud::Cloud;
use testkit::cloud::{AK, SK};
use testkit::fixtures::secret;
use testkit::operator::{Operator, eventually, installed, ready_condition, setup, wait_event};

fn set_yaml(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: flowstop.dev/v1alpha1\nkind: ExecutionStopSet\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  flowName: f\n  credentialsSecretRef: {{name: creds}}\n{spec}"
    )
}

fn get(ns: &str, name: &str) -> serde_json::Value {
    let out = installed().must(
        &["get", "-n", ns, "executionstopset", name, "-o", "json"],
        None,
    );
    serde_json::from_str(&out).unwrap()
}

/// `kubectl wait` on the set, as a user would.
fn wait_set(ns: &str, name: &str, what: &str) -> serde_json::Value {
    let c = installed();
    let out = c.kubectl(
        &[
            "wait",
            "-n",
            ns,
            &format!("executionstopset/{name}"),
            &format!("--for={what}"),
            "--timeout=120s",
        ],
        None,
    );
    let now = get(ns, name);
    assert!(
        out.status.success(),
        "waiting for {what}: {}\n{now:#}",
        String::from_utf8_lossy(&out.stderr)
    );
    now["status"].clone()
}

/// The ExecutionStops of a set, by label: (name, executionName).
fn children(ns: &str, set: &str) -> Vec<(String, String)> {
    let out = installed().must(
        &[
            "get",
            "-n",
            ns,
            "executionstop",
            "-l",
            &format!("flowstop.dev/set={set}"),
            "-o",
            "json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap().to_string(),
                o["spec"]["executionName"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Namespace, emulator and operator with the documented buckets (StopExecution and
/// ListExecutions: 10, 2/s) refilled 10× faster, and the operator's limiters to match.
async fn with_quota(prefix: &str) -> (String, Cloud, Operator) {
    let quota = |cfg: &mut fnf_emulator::Config| {
        cfg.no_quota = false;
        cfg.quota_speedup = 10.0;
    };
    let sped_up = ["--stop-rate", "20", "--stop-burst", "10"];
    setup(prefix, quota, &sped_up).await
}

async fn start_all(cloud: &Cloud, names: impl IntoIterator<Item = String>) {
    for n in names {
        cloud.start("f", &n, None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_counts_without_stopping_then_the_flip_stops_each_match_once() {
    let c = installed();
    let (ns, cloud, op) = setup("set-preview", |_| {}, &[]).await;
    start_all(&cloud, (1..=5).map(|n| format!("nightly-{n}"))).await;
    start_all(&cloud, ["daily-1".to_string(), "nightly-done".to_string()]).await;
    cloud.stop_out_of_band("f", "nightly-done").await;
    let spec = "  selector: {executionNamePrefix: nightly-}\n  maxCount: 10\n";
    c.apply(&set_yaml(&ns, "s", &format!("{spec}  dryRun: true\n")));
    let s = wait_set(&ns, "s", "jsonpath={.status.phase}=Previewing");
    assert_eq!(s["matched"], 5, "{s:#}");
    let first: Vec<&str> = s["firstMatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        first,
        [
            "nightly-1",
            "nightly-2",
            "nightly-3",
            "nightly-4",
            "nightly-5"
        ]
    );
    let table = c.must(&["get", "-n", &ns, "estopset", "s"], None);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["s", "f", "true", "Previewing"], "{table}");
    assert_eq!(row[4], "5", "{table}");
    assert_eq!(cloud.calls("StopExecution"), 1, "only the out-of-band stop");
    assert!(children(&ns, "s").is_empty());

    c.apply(&set_yaml(&ns, "s", &format!("{spec}  dryRun: false\n")));
    let s = wait_set(&ns, "s", "condition=Ready");
    assert_eq!(s["phase"], "Completed", "{s:#}");
    assert_eq!(s["children"]["total"], 5, "{s:#}");
    assert_eq!(s["children"]["stopped"], 5, "{s:#}");
    assert_eq!(s["observedGeneration"], 2, "{s:#}");
    let kids = children(&ns, "s");
    let executions: BTreeSet<&str> = kids.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(executions.len(), 5);
    assert!(
        executions
            .iter()
            .all(|e| e.starts_with("nightly-") && *e != "nightly-done")
    );
    for (name, execution) in &kids {
        assert_eq!(name, &flowstop::reconcile::set::child_name("s", execution));
    }
    assert_eq!(cloud.count("StopExecution", "OK"), 1 + 5);
    {
        let emu = cloud.emu.emulator.lock();
        let daily = &emu.state.executions[&("f".to_string(), "daily-1".to_string())];
        assert_eq!(daily.status, "Running", "outside the selector");
    }
    wait_event(c, &ns, "Normal", "Completed").await;

    // Live is live: the flip does not go back, and nothing else may change.
    let (ok, err) = c.try_apply(&set_yaml(&ns, "s", &format!("{spec}  dryRun: true\n")));
    assert!(!ok && err.contains("spec.dryRun"), "{err}");
    let (ok, err) = c.try_apply(&set_yaml(
        &ns,
        "s",
        "  selector: {executionNamePrefix: daily-}\n  maxCount: 10\n",
    ));
    assert!(!ok && err.contains("spec is immutable"), "{err}");
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_matches_than_max_count_stop_nothing_and_a_missing_flow_fails() {
    let c = installed();
    let (ns, cloud, op) = setup("set-cap", |_| {}, &[]).await;
    start_all(&cloud, (1..=3).map(|n| format!("e{n}"))).await;
    c.apply(&set_yaml(&ns, "cap", "  maxCount: 2\n"));
    let s = wait_set(&ns, "cap", "condition=Stalled");
    assert_eq!(s["phase"], "Failed", "{s:#}");
    assert_eq!(s["lastError"]["code"], "TooManyMatches", "{s:#}");
    assert_eq!(s["matched"], 3, "maxCount + 1: listing stops there; {s:#}");
    assert!(children(&ns, "cap").is_empty());
    assert_eq!(cloud.calls("StopExecution"), 0);

    c.apply(&set_yaml(
        &ns,
        "nothing",
        "  maxCount: 2\n  selector: {executionNamePrefix: zzz}\n",
    ));
    let s = wait_set(&ns, "nothing", "condition=Ready");
    assert_eq!(s["phase"], "Completed", "{s:#}");
    let ready = ready_condition(&s);
    assert_eq!(ready["reason"], "NoMatches", "{s:#}");

    c.apply(&set_yaml(&ns, "noflow", "  maxCount: 2\n").replace("flowName: f", "flowName: nope"));
    let s = wait_set(&ns, "noflow", "condition=Stalled");
    assert_eq!(s["lastError"]["code"], "FlowNotExists", "{s:#}");
    assert_eq!(s["lastError"]["httpStatus"], 404, "{s:#}");
    assert!(s["lastError"]["requestId"].is_string(), "{s:#}");
    assert_eq!(cloud.calls("StopExecution"), 0);
    op.stop().await;
}

/// Executions keep starting while the set goes live: its children are exactly the
/// executions started up to the snapshot's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_excludes_executions_started_after_it() {
    let c = installed();
    let (ns, cloud, op) = setup("set-window", |_| {}, &[]).await;
    start_all(&cloud, (0..20).map(|n| format!("x-{n:03}"))).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let starter = {
        let (stop, client, account) = (stop.clone(), cloud.client.clone(), cloud.account.clone());
        tokio::spawn(async move {
            let mut n = 20;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("x-{n:03}");
                client
                    .start_execution(&account, "f", Some(&name), None)
                    .await
                    .unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };
    c.apply(&set_yaml(&ns, "w", "  maxCount: 5000\n"));
    let s = wait_set(&ns, "w", "condition=Ready");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let started = starter.await.unwrap();
    assert!(started > 20, "executions started during the test");
    let snapshot: jiff::Timestamp = s["snapshotTime"].as_str().unwrap().parse().unwrap();
    // The request carries milliseconds.
    let end = jiff::Timestamp::from_millisecond(snapshot.as_millisecond()).unwrap();
    let expected: BTreeSet<String> = {
        let emu = cloud.emu.emulator.lock();
        emu.state
            .executions
            .values()
            .filter(|e| e.started <= end)
            .map(|e| e.name.clone())
            .collect()
    };
    let got: BTreeSet<String> = children(&ns, "w").into_iter().map(|(_, e)| e).collect();
    assert_eq!(got, expected, "snapshot at {snapshot}");
    assert!(
        got.len() < started as usize,
        "some executions started after the snapshot"
    );
    op.stop().await;
}

/// Killed while creating children: the next operator finishes without a duplicate or a miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_while_children_are_created_leaves_no_duplicate_and_no_miss() {
    let c = installed();
    let fast = ["--stop-rate", "200", "--stop-burst", "200"];
    let (ns, cloud, op) = setup("set-kill", |_| {}, &fast).await;
    start_all(&cloud, (0..300).map(|n| format!("k-{n:03}"))).await;
    c.apply(&set_yaml(&ns, "k", "  maxCount: 300\n"));
    let client = c.client().await;
    let api: kube::Api<flowstop::crd::ExecutionStop> = kube::Api::namespaced(client, &ns);
    let lp = kube::api::ListParams::default().labels("flowstop.dev/set=k");
    loop {
        let n = api.list_metadata(&lp).await.unwrap().items.len();
        if n > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    op.kill().await;
    let at_kill = api.list_metadata(&lp).await.unwrap().items.len();
    assert!(at_kill < 300, "the kill came after every child was created");
    let op = Operator::start(&ns, &cloud.emu.url(), &fast).await;
    let s = wait_set(&ns, "k", "condition=Ready");
    assert_eq!(s["children"]["total"], 300, "{s:#}");
    assert_eq!(s["children"]["stopped"], 300, "{s:#}");
    let kids = children(&ns, "k");
    assert_eq!(kids.len(), 300, "killed with {at_kill} created");
    let once = {
        let emu = cloud.emu.emulator.lock();
        emu.state.executions.values().all(|e| e.stops == 1)
    };
    assert!(once, "every execution stopped exactly once");
    op.stop().await;
}

/// Deleting a set stops its children's calls, with no garbage collector running here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_set_halts_its_childrens_calls() {
    let c = installed();
    let (ns, cloud, op) = setup(
        "set-delete",
        |_| {},
        &["--stop-rate", "2", "--stop-burst", "1"],
    )
    .await;
    start_all(&cloud, (0..20).map(|n| format!("d-{n:02}"))).await;
    c.apply(&set_yaml(&ns, "d", "  maxCount: 20\n"));
    loop {
        if cloud.count("StopExecution", "OK") >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.must(&["delete", "-n", &ns, "executionstopset", "d"], None);
    // Every child ends: stopped before the deletion, or SetDeleted with no further call.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let phases = loop {
        let out = c.must(
            &[
                "get",
                "-n",
                &ns,
                "executionstop",
                "-l",
                "flowstop.dev/set=d",
                "-o",
                "jsonpath={range .items[*]}{.status.phase}/{.status.lastError.code}{\"\\n\"}{end}",
            ],
            None,
        );
        let phases: Vec<String> = out.lines().map(String::from).collect();
        if phases.len() == 20
            && phases
                .iter()
                .all(|p| p.starts_with("Stopped") || p == "Failed/SetDeleted")
        {
            break phases;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "children never settled: {phases:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stopped = phases.iter().filter(|p| p.starts_with("Stopped")).count();
    assert!(
        stopped < 20,
        "the deletion came before all were stopped: {phases:?}"
    );
    assert_eq!(cloud.calls("StopExecution") as usize, stopped, "{phases:?}");
    op.stop().await;
}

#[tokio::test]
async fn invalid_sets_are_rejected_naming_the_field() {
    let c = installed();
    let ns = c.namespace("set-admission");
    let long = "n".repeat(64);
    let cases = [
        ("  maxCount: 0\n", "spec.maxCount", "s"),
        ("  maxCount: 10001\n", "spec.maxCount", "s"),
        ("  selector: {}\n", "spec.maxCount", "s"),
        (
            "  maxCount: 5\n  selector: {status: Stopped}\n",
            "spec.selector.status",
            "s",
        ),
        (
            "  maxCount: 5\n  selector: {startedAfter: \"2026-11-28T00:00:00Z\", startedBefore: \"2026-11-01T00:00:00Z\"}\n",
            "spec.selector.startedAfter must be before",
            "s",
        ),
        (
            "  maxCount: 5\n  selector: {startedAfter: yesterday}\n",
            "spec.selector.startedAfter",
            "s",
        ),
        (
            "  maxCount: 5\n  selector: {executionNamePrefix: \"a b\"}\n",
            "spec.selector.executionNamePrefix",
            "s",
        ),
        (
            "  maxCount: 5\n  regionId: cn-hangzhou\n  endpoint: https://x\n",
            "spec.regionId or spec.endpoint",
            "s",
        ),
        ("  maxCount: 5\n", "at most 63 characters", long.as_str()),
    ];
    for (spec, field, name) in cases {
        let (ok, err) = c.try_apply(&set_yaml(&ns, name, spec));
        assert!(!ok, "accepted: {spec}");
        assert!(err.contains(field), "{spec}: {err}");
    }
    // The README's example is accepted as shipped.
    let example = testkit::operator::repo("examples/executionstopset.yaml");
    c.must(&["apply", "-n", &ns, "-f", example.to_str().unwrap()], None);
}

/// A set's children and single ExecutionStops on the same endpoint and AccessKeyId share
/// one StopExecution limiter: together they stay within the service's bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_and_single_stops_share_the_quota() {
    let c = installed();
    let (ns, cloud, op) = with_quota("set-quota").await;
    start_all(&cloud, (0..40).map(|n| format!("q-{n:02}"))).await;
    start_all(&cloud, (0..10).map(|n| format!("single-{n}"))).await;
    c.apply(&set_yaml(
        &ns,
        "q",
        "  maxCount: 40\n  selector: {executionNamePrefix: q-}\n",
    ));
    for n in 0..10 {
        c.apply(
            &testkit::fixtures::ExecutionStop::new(
                &ns,
                &format!("single-{n}"),
                "f",
                &format!("single-{n}"),
            )
            .secret("creds")
            .yaml(),
        );
    }
    let s = wait_set(&ns, "q", "condition=Ready");
    assert_eq!(s["children"]["stopped"], 40, "{s:#}");
    for n in 0..10 {
        testkit::operator::wait_for(c, &ns, &format!("single-{n}"), "condition=Ready");
    }
    assert_eq!(cloud.count("StopExecution", "OK"), 50);
    // One limiter for both paces 50 calls at the bucket's rate: a few 429s where its clock
    // and the service's meet (BENCHMARKS.md, quota) — more on a loaded machine, where late
    // calls bunch up with on-time ones at 50 ms apart (7 of 57 seen). Two limiters would
    // ask for twice the bucket's rate: 10 refused from the doubled burst and roughly half of
    // the 40 calls after it, 20 or more.
    let throttled = cloud.count("StopExecution", "ResourceThrottled");
    assert!(
        throttled <= 12,
        "StopExecution calls throttled: {throttled} of {}",
        cloud.calls("StopExecution")
    );
    assert_eq!(cloud.count("ListExecutions", "ResourceThrottled"), 0);
    op.stop().await;
}

/// Killed while listing: the next operator lists the same snapshot, so executions started
/// in between are left out, and nothing is stopped twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_while_listing_resumes_the_same_snapshot() {
    let c = installed();
    // One ListExecutions page a second: the count of 500 (6 pages) takes about 5 s.
    let slow = ["--stop-rate", "1", "--stop-burst", "1"];
    let (ns, cloud, op) = setup("set-kill-list", |_| {}, &slow).await;
    start_all(&cloud, (0..500).map(|n| format!("l-{n:03}"))).await;
    c.apply(&set_yaml(&ns, "l", "  maxCount: 1000\n"));
    let api: kube::Api<flowstop::crd::ExecutionStopSet> =
        kube::Api::namespaced(c.client().await, &ns);
    let listing = kube::runtime::wait::await_condition(
        api.clone(),
        "l",
        |o: Option<&flowstop::crd::ExecutionStopSet>| {
            o.and_then(|s| s.status.as_ref())
                .is_some_and(|s| s.snapshot_time.is_some())
        },
    );
    tokio::time::timeout(Duration::from_secs(60), listing)
        .await
        .expect("the set starts listing")
        .unwrap();
    op.kill().await;
    let lp = kube::api::ListParams::default().labels("flowstop.dev/set=l");
    let ours: kube::Api<flowstop::crd::ExecutionStop> =
        kube::Api::namespaced(c.client().await, &ns);
    assert!(
        ours.list_metadata(&lp).await.unwrap().items.is_empty(),
        "killed before any child was created"
    );
    // Started after the snapshot, while no operator runs: not part of the set.
    start_all(&cloud, (0..20).map(|n| format!("late-{n:02}"))).await;
    let fast = ["--stop-rate", "500", "--stop-burst", "500"];
    let op = Operator::start(&ns, &cloud.emu.url(), &fast).await;
    let s = wait_set(&ns, "l", "condition=Ready");
    assert_eq!(s["children"]["stopped"], 500, "{s:#}");
    let got: BTreeSet<String> = children(&ns, "l").into_iter().map(|(_, e)| e).collect();
    assert_eq!(got.len(), 500);
    assert!(got.iter().all(|e| e.starts_with("l-")), "no late execution");
    let (once, late_running) = {
        let emu = cloud.emu.emulator.lock();
        let ex = emu.state.executions.values();
        (
            ex.clone()
                .filter(|e| e.name.starts_with("l-"))
                .all(|e| e.stops == 1),
            ex.filter(|e| e.name.starts_with("late-"))
                .all(|e| e.status == "Running"),
        )
    };
    assert!(once && late_running);
    op.stop().await;
}

/// A set whose ListExecutions is refused (403) lists again once its Secret is corrected, as
/// an ExecutionStop does, and not while the Secret stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_set_lists_again_once_its_secret_is_corrected() {
    let c = installed();
    let (ns, cloud, op) = setup("set-403", |_| {}, &["--credentials-recheck-seconds", "1"]).await;
    start_all(&cloud, (1..=3).map(|n| format!("r-{n}"))).await;
    c.apply(&secret(&ns, "creds", AK, "not-the-secret"));
    c.apply(&set_yaml(&ns, "s", "  maxCount: 5\n  dryRun: true\n"));
    let s = wait_set(&ns, "s", "jsonpath={.status.phase}=Failed");
    assert_eq!(s["lastError"]["code"], "SignatureNotMatch", "{s:#}");
    assert_eq!(s["lastError"]["httpStatus"], 403, "{s:#}");
    assert_eq!(s["conditions"][0]["reason"], "CredentialsRejected", "{s:#}");
    // The unchanged Secret is read every second; a few rechecks later, still one call.
    let reconciles = op.metric("flowstop_reconciles_total").await;
    eventually("three more rechecks", || async {
        op.metric("flowstop_reconciles_total").await >= reconciles + 3.0
    })
    .await;
    assert_eq!(
        cloud.calls("ListExecutions"),
        1,
        "no listing with the same Secret"
    );
    c.apply(&secret(&ns, "creds", AK, SK));
    let s = wait_set(&ns, "s", "jsonpath={.status.phase}=Previewing");
    assert_eq!(s["matched"], 3, "{s:#}");
    assert_eq!(s.get("lastError"), None, "{s:#}");
    assert_eq!(cloud.count("ListExecutions", "SignatureNotMatch"), 1);
    assert_eq!(cloud.calls("StopExecution"), 0, "a preview stops nothing");
    op.stop().await;
}

/// Single ExecutionStops applied while a large set waits for the quota are stopped within
/// about a second, not after the set: the set's ExecutionStops are reconciled by workers
/// of their own and book the quota at most a second ahead. (Before, each single waited
/// for a worker among the set's hundreds of queued ExecutionStops, picked in no particular
/// order, and then behind their bookings.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_stops_overtake_a_set_waiting_for_the_quota() {
    let c = installed();
    // 600 stops take 30 s at the sped-up 20/s.
    let (ns, cloud, op) = with_quota("set-lanes").await;
    start_all(&cloud, (0..600).map(|n| format!("b-{n:03}"))).await;
    start_all(&cloud, (0..5).map(|n| format!("urgent-{n}"))).await;
    c.apply(&set_yaml(
        &ns,
        "big",
        "  maxCount: 600\n  selector: {executionNamePrefix: b-}\n",
    ));
    // Every child exists and the set's stops are under way: all of them are queued now.
    wait_set(&ns, "big", "jsonpath={.status.snapshotComplete}=true");
    eventually("20 of the set's stops", || async {
        cloud.count("StopExecution", "OK") >= 20
    })
    .await;
    let applied = jiff::Timestamp::now();
    let urgent: String = (0..5)
        .map(|n| {
            testkit::fixtures::ExecutionStop::new(
                &ns,
                &format!("urgent-{n}"),
                "f",
                &format!("urgent-{n}"),
            )
            .secret("creds")
            .yaml()
        })
        .collect::<Vec<_>>()
        .join("\n---\n");
    c.apply(&urgent);
    for n in 0..5 {
        testkit::operator::wait_for(
            c,
            &ns,
            &format!("urgent-{n}"),
            "jsonpath={.status.phase}=Stopped",
        );
    }
    // From the emulator's own record: the set's stops between the apply and the last single's.
    let (meanwhile, before) = {
        let emu = cloud.emu.emulator.lock();
        let stopped = |prefix: &str| {
            emu.state
                .executions
                .values()
                .filter(|e| e.name.starts_with(prefix))
                .filter_map(|e| e.stopped)
                .collect::<Vec<_>>()
        };
        let last = stopped("urgent-").into_iter().max().expect("stopped");
        let set = stopped("b-");
        (
            set.iter().filter(|t| **t > applied && **t <= last).count(),
            set.iter().filter(|t| **t <= applied).count(),
        )
    };
    eprintln!("the set's stops while 5 singles went through: {meanwhile} (before: {before})");
    // A second of the quota is 20 stops: on a quiet machine the singles are through in
    // about 25. The rest of the bound is for a loaded API server, whose three round trips
    // per single (Secret, attempt record, result) the set does not wait for. Queued behind
    // the set's workers, the last of five singles comes after most of the ~550 left.
    assert!(
        meanwhile <= 200,
        "the set made {meanwhile} stops before the 5 singles were done ({before} before them, of 600)"
    );
    let s = wait_set(&ns, "big", "condition=Ready");
    assert_eq!(s["children"]["stopped"], 600, "{s:#}");
    assert_eq!(cloud.count("StopExecution", "OK"), 605);
    // The lanes share one limiter: were they paced apart, both would spend the whole quota
    // and about half the calls would be throttled. A shared one leaves a few 429s, from
    // requests that reach the service bunched after a stall on a loaded machine (0.8 % in
    // the benchmark; 2.3 % once in a cold CI run, which compiles nothing meanwhile but
    // still runs the whole suite): at most 5 %.
    let throttled = cloud.count("StopExecution", "ResourceThrottled");
    assert!(
        throttled * 20 <= cloud.calls("StopExecution"),
        "StopExecution calls throttled: {throttled} of {}",
        cloud.calls("StopExecution")
    );
    op.stop().await;
}

/// A preview over three executions, one of which ends before the flip: the live set counts
/// only its own snapshot and ends Completed with two children (it stayed Stopping with a
/// phantom pending child before). And when every match ended before the flip: Completed,
/// no children, and it says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_preview_never_stands_in_for_the_live_snapshot() {
    let c = installed();
    let (ns, cloud, op) = setup("set-stale", |_| {}, &[]).await;
    start_all(&cloud, (1..=3).map(|n| format!("p-{n}"))).await;
    start_all(&cloud, (1..=2).map(|n| format!("gone-{n}"))).await;
    let spec = "  selector: {executionNamePrefix: p-}\n  maxCount: 10\n";
    c.apply(&set_yaml(&ns, "s", &format!("{spec}  dryRun: true\n")));
    let s = wait_set(&ns, "s", "jsonpath={.status.phase}=Previewing");
    assert_eq!(s["matched"], 3, "{s:#}");
    cloud.stop_out_of_band("f", "p-2").await;
    c.apply(&set_yaml(&ns, "s", &format!("{spec}  dryRun: false\n")));
    let s = wait_set(&ns, "s", "condition=Ready");
    assert_eq!(s["phase"], "Completed", "{s:#}");
    assert_eq!(s["matched"], 2, "the live snapshot's count; {s:#}");
    assert_eq!(s["children"]["total"], 2, "{s:#}");
    assert_eq!(s["children"]["pending"], 0, "{s:#}");
    assert_eq!(s["children"]["stopped"], 2, "{s:#}");

    let spec = "  selector: {executionNamePrefix: gone-}\n  maxCount: 10\n";
    c.apply(&set_yaml(
        &ns,
        "all-gone",
        &format!("{spec}  dryRun: true\n"),
    ));
    let s = wait_set(&ns, "all-gone", "jsonpath={.status.phase}=Previewing");
    assert_eq!(s["matched"], 2, "{s:#}");
    cloud.stop_out_of_band("f", "gone-1").await;
    cloud.stop_out_of_band("f", "gone-2").await;
    c.apply(&set_yaml(
        &ns,
        "all-gone",
        &format!("{spec}  dryRun: false\n"),
    ));
    let s = wait_set(&ns, "all-gone", "condition=Ready");
    assert_eq!(s["phase"], "Completed", "{s:#}");
    assert_eq!(s["matched"], 0, "{s:#}");
    assert_eq!(s["children"]["total"], 0, "{s:#}");
    let ready = ready_condition(&s);
    assert_eq!(ready["reason"], "NoMatches", "{s:#}");
    assert!(children(&ns, "all-gone").is_empty());
    op.stop().await;
}

/// An endpoint that answers every ListExecutions with an empty page and a new NextToken.
fn endless_lister() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let pages = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let served = pages.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let served = served.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let mut seen = vec![];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let n = served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let body =
                    format!(r#"{{"Executions":[],"NextToken":"page-{n}","RequestId":"r{n}"}}"#);
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    (url, pages)
}

/// Four sets at an endpoint whose listing never ends cannot hold the set workers (4 per
/// controller: with `--namespace` one controller a namespace, so the sets share one here;
/// an operator of all namespaces shares them between tenants): another set's preview is
/// counted meanwhile, and each endless set fails on its own reason after
/// --list-page-limit pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_listing_neither_starves_other_sets_nor_runs_for_ever() {
    let c = installed();
    let (hostile_url, pages) = endless_lister();
    let (ns, cloud, op) = {
        let c = installed();
        let ns = c.namespace("set-fair");
        let cloud = Cloud::new(|_| {}).await;
        cloud.flow("f").await;
        c.apply(&secret(&ns, "creds", AK, SK));
        // The limit through its environment variable: an operator without the setting
        // (the old code) still starts, and shows the starvation.
        let op = Operator::start_with(
            &ns,
            &cloud.emu.url(),
            &["--stop-rate", "1000", "--stop-burst", "100"],
            &[("FLOWSTOP_LIST_PAGE_LIMIT", "300")],
            None,
        )
        .await;
        (ns, cloud, op)
    };
    let quiet = ns.clone();
    start_all(&cloud, (1..=3).map(|n| format!("f-{n}"))).await;
    for n in 0..4 {
        c.apply(&set_yaml(
            &ns,
            &format!("endless-{n}"),
            &format!("  maxCount: 10\n  dryRun: true\n  endpoint: {hostile_url}\n"),
        ));
    }
    eventually("the endless sets are paging", || async {
        pages.load(std::sync::atomic::Ordering::Relaxed) >= 40
    })
    .await;
    let before = pages.load(std::sync::atomic::Ordering::Relaxed);
    c.apply(&set_yaml(
        &quiet,
        "fair",
        "  maxCount: 10\n  dryRun: true\n",
    ));
    let s = wait_set(&quiet, "fair", "jsonpath={.status.phase}=Previewing");
    let meanwhile = pages.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert_eq!(s["matched"], 3, "{s:#}");
    assert!(
        meanwhile < 4 * 300,
        "the other tenant's preview waited for the endless listings to end ({meanwhile} pages)"
    );
    for n in 0..4 {
        let s = wait_set(&ns, &format!("endless-{n}"), "condition=Stalled");
        assert_eq!(s["phase"], "Failed", "{s:#}");
        assert_eq!(s["lastError"]["code"], "EndlessListing", "{s:#}");
        let msg = s["lastError"]["message"].as_str().unwrap();
        assert!(msg.contains("300 pages"), "{msg}");
        assert!(s.get("listing").is_none(), "{s:#}");
    }
    // Each set reads the page limit (a page read again after a lost status write is the
    // only excess allowed, and there should be none: a pass from a stale view of the set
    // fails on its first write, before its first page).
    let served = pages.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (4 * 300..=4 * 300 + 8).contains(&served),
        "pages served: {served}"
    );
    op.stop().await;
}

/// A namespace editor who reads firstMatches takes the name of one child before the flip,
/// and forges another with the set's label and uid: the set reports the taken name
/// (status, Event, the execution), never counts either stranger, and stops the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatted_or_forged_child_is_reported_and_never_counted() {
    let c = installed();
    let (ns, cloud, op) = setup("set-squat", |_| {}, &[]).await;
    start_all(&cloud, (1..=3).map(|n| format!("v-{n}"))).await;
    let spec = "  selector: {executionNamePrefix: v-}\n  maxCount: 10\n";
    c.apply(&set_yaml(&ns, "s", &format!("{spec}  dryRun: true\n")));
    let s = wait_set(&ns, "s", "jsonpath={.status.phase}=Previewing");
    assert_eq!(s["firstMatches"][0], "v-1", "{s:#}");
    let uid = get(&ns, "s")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let squatted = flowstop::reconcile::set::child_name("s", "v-1");
    c.apply(
        &testkit::fixtures::ExecutionStop::new(&ns, &squatted, "other-flow", "unrelated")
            .secret("creds")
            .yaml(),
    );
    // A stranger dressed as a child: the set's label, and an ownerReference to its uid
    // that is not a controller reference.
    c.apply(&format!(
        "apiVersion: flowstop.dev/v1alpha1\nkind: ExecutionStop\nmetadata:\n  name: forged\n  namespace: {ns}\n  labels: {{flowstop.dev/set: s}}\n  ownerReferences:\n  - {{apiVersion: flowstop.dev/v1alpha1, kind: ExecutionStopSet, name: s, uid: {uid}}}\nspec: {{flowName: other-flow, executionName: forged, credentialsSecretRef: {{name: creds}}}}\n"
    ));
    c.apply(&set_yaml(&ns, "s", &format!("{spec}  dryRun: false\n")));
    let s = wait_set(&ns, "s", "condition=Stalled");
    assert_eq!(s["phase"], "Failed", "{s:#}");
    assert_eq!(s["nameTaken"], serde_json::json!(["v-1"]), "{s:#}");
    assert_eq!(s["nameConflicts"], 1, "{s:#}");
    assert_eq!(s["children"]["total"], 2, "neither stranger counts; {s:#}");
    assert_eq!(s["children"]["stopped"], 2, "{s:#}");
    let ready = ready_condition(&s);
    assert_eq!(ready["reason"], "NameTaken", "{s:#}");
    let msg = ready["message"].as_str().unwrap();
    assert!(msg.contains("v-1") && msg.contains("not stopped"), "{msg}");
    let note = wait_event(c, &ns, "Warning", "NameTaken").await;
    assert!(note.contains("v-1"), "{note}");
    {
        let emu = cloud.emu.emulator.lock();
        let v1 = &emu.state.executions[&("f".to_string(), "v-1".to_string())];
        assert_eq!(
            v1.status, "Running",
            "the squatted execution was not stopped"
        );
    }
    op.stop().await;
}

/// `kubectl delete --cascade=orphan` keeps Kubernetes' meaning: the children live on as
/// objects of their own and finish their stops (no garbage collector runs here, so the
/// set stays, deleting, with the orphan finalizer: the moment the old code took for
/// "deleted" and stopped its children's calls).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_deleted_with_orphan_cascade_leaves_its_children_carrying_on() {
    let c = installed();
    let (ns, cloud, op) = setup(
        "set-orphan",
        |_| {},
        &["--stop-rate", "4", "--stop-burst", "1"],
    )
    .await;
    start_all(&cloud, (0..12).map(|n| format!("o-{n:02}"))).await;
    c.apply(&set_yaml(&ns, "o", "  maxCount: 12\n"));
    eventually("two of the set's stops", || async {
        cloud.count("StopExecution", "OK") >= 2
    })
    .await;
    c.must(
        &[
            "delete",
            "-n",
            &ns,
            "executionstopset",
            "o",
            "--cascade=orphan",
            "--wait=false",
        ],
        None,
    );
    let stopped_at_delete = cloud.count("StopExecution", "OK");
    assert!(stopped_at_delete < 12, "deleted after all were stopped");
    eventually("every orphan stopped its execution", || async {
        let out = c.must(
            &[
                "get",
                "-n",
                &ns,
                "executionstop",
                "-l",
                "flowstop.dev/set=o",
                "-o",
                "jsonpath={range .items[*]}{.status.phase}/{.status.lastError.code}{\"\\n\"}{end}",
            ],
            None,
        );
        let phases: Vec<&str> = out.lines().collect();
        assert!(
            !phases.iter().any(|p| p.ends_with("SetDeleted")),
            "an orphan gave up as if its set were gone: {phases:?}"
        );
        phases.len() == 12 && phases.iter().all(|p| p.starts_with("Stopped"))
    })
    .await;
    assert_eq!(cloud.count("StopExecution", "OK"), 12);
    op.stop().await;
}
