//! Reliability and security on the real control plane: leader failover without a second
//! stop, hostile answers end to end, and no secret in logs, Events, status or metrics.

use std::io::{Read, Write};
use std::time::{Duration, Instant};
use testkit::cloud::Cloud;
use testkit::cloud::{AK, SK};
use testkit::fixtures::{ExecutionStop, secret};
use testkit::operator::{Operator, installed, status, wait_for};

fn lease_holder(ns: &str) -> String {
    let out = installed().kubectl(
        &[
            "get",
            "lease",
            "-n",
            "flowstop-system",
            &format!("lease-{ns}"),
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        None,
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_and_no_execution_is_stopped_twice() {
    let c = installed();
    let ns = c.namespace("failover");
    let cloud = Cloud::new(|_| {}).await;
    cloud.flow("f").await;
    let n = 40;
    for i in 0..n {
        cloud.start("f", &format!("e{i}"), None).await;
    }
    c.apply(&secret(&ns, "creds", AK, SK));
    let lease = format!("lease-{ns}");
    let args = |id: &'static str| -> Vec<String> {
        [
            "--leader-election",
            "--lease-name",
            &lease,
            "--lease-namespace",
            "flowstop-system",
            "--lease-seconds",
            // Short enough to keep the test quick, long enough that a renewal slowed by
            // a loaded CI machine (2 s per attempt here) does not cost the standby its lease.
            "6",
            "--identity",
            id,
            "--stop-rate",
            "8",
            "--stop-burst",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let a_args = args("replica-a");
    let a = Operator::start(
        &ns,
        &cloud.emu.url(),
        &a_args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    // a holds the lease before b starts.
    let deadline = Instant::now() + Duration::from_secs(20);
    while lease_holder(&ns) != "replica-a" {
        assert!(Instant::now() < deadline, "replica-a never took the lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b_args = args("replica-b");
    let mut b = Operator::start(
        &ns,
        &cloud.emu.url(),
        &b_args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    c.apply(&testkit::fixtures::list((0..n).map(|i| {
        ExecutionStop::new(&ns, &format!("s{i}"), "f", &format!("e{i}"))
            .secret("creds")
            .yaml()
    })));
    // Kill the leader in the middle of the burst (8 stops a second).
    let deadline = Instant::now() + Duration::from_secs(30);
    while cloud.count("StopExecution", "OK") < 10 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed_at = Instant::now();
    a.kill().await;
    let stopped_before_kill = cloud.count("StopExecution", "OK");
    assert!(
        stopped_before_kill < n as u64,
        "the kill must land mid-burst"
    );
    while lease_holder(&ns) != "replica-b" {
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "replica-b did not take over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let takeover = killed_at.elapsed();
    // The lease expires at most 6 s after the kill, and the standby looks every 2 s (a
    // third of it); 2 s more for its request and this test's kubectl on a loaded machine.
    assert!(
        takeover <= Duration::from_secs(6 + 2 + 2),
        "takeover took {takeover:?}, lease is 6 s"
    );
    let out = c.kubectl(
        &[
            "wait",
            "-n",
            &ns,
            "executionstop",
            "--all",
            "--for=condition=Ready",
            "--timeout=90s",
        ],
        None,
    );
    if !out.status.success() {
        // Say where each unfinished object stands, and what the emulator saw.
        let rows = c.kubectl(
            &[
                "get", "-n", &ns, "executionstop", "-o",
                "custom-columns=NAME:.metadata.name,PHASE:.status.phase,REASON:.status.conditions[0].reason,NEXT:.status.nextAttemptTime,MESSAGE:.status.conditions[0].message",
            ],
            None,
        );
        panic!(
            "{}\n{}\nreplica-b exited: {:?}\nemulator: {:?}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&rows.stdout),
            b.child.try_wait(),
            cloud.executions().await
        );
    }
    for e in cloud.executions().await {
        assert_eq!(e["status"], "Stopped", "{e}");
        assert_eq!(
            e["stopCalls"], 1,
            "exactly one StopExecution per execution: {e}"
        );
    }
    for i in 0..n {
        assert_eq!(status(c, &ns, &format!("s{i}"))["phase"], "Stopped");
    }
    eprintln!(
        "failover: {stopped_before_kill}/{n} stopped before the kill; takeover in {takeover:?}"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_events_status_or_metrics() {
    let c = installed();
    let ns = c.namespace("secrets");
    let cloud = Cloud::new(|_| {}).await;
    cloud.flow("f").await;
    cloud.start("f", "e1", None).await;
    const TOKEN: &str = "fixture-security-token-6f1d";
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: {ns}}}\n\
         stringData: {{accessKeyId: {}, accessKeySecret: {:?}, securityToken: {TOKEN}}}\n",
        AK, SK
    );
    c.apply(&secret);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("operator.log");
    let op = Operator::start_logged(&ns, &cloud.emu.url(), &["--call-timeout", "1"], &log).await;
    // One that succeeds, one whose endpoint refuses connections (errors carry URLs).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    c.apply(
        &ExecutionStop::new(&ns, "ok", "f", "e1")
            .secret("creds")
            .yaml(),
    );
    c.apply(
        &ExecutionStop::new(&ns, "refused", "f", "e1")
            .secret("creds")
            .endpoint(&format!("http://127.0.0.1:{closed}"))
            .max_attempts(2)
            .yaml(),
    );
    wait_for(c, &ns, "ok", "condition=Ready");
    wait_for(c, &ns, "refused", "jsonpath={.status.phase}=Failed");
    assert_eq!(
        status(c, &ns, "refused")["lastError"]["code"],
        "ConnectionFailed"
    );
    let mut haystack = std::fs::read_to_string(&log).unwrap();
    assert!(
        haystack.contains("StopExecution") || haystack.contains("executionstops"),
        "debug logs were captured"
    );
    haystack += &c.must(&["get", "events", "-n", &ns, "-o", "yaml"], None);
    haystack += &c.must(&["get", "executionstops", "-n", &ns, "-o", "yaml"], None);
    haystack += &op.metrics_text().await;
    for needle in [SK, TOKEN] {
        assert_eq!(haystack.matches(needle).count(), 0, "{needle} leaked");
    }
    op.stop().await;

    // The ServiceAccount reads Secrets by name only: no list, no watch.
    let sa = "system:serviceaccount:flowstop-system:flowstop";
    for (verb, expected) in [("list", "no"), ("watch", "no"), ("get", "yes")] {
        let out = c.kubectl(
            &["auth", "can-i", verb, "secrets", "-n", &ns, "--as", sa],
            None,
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            expected,
            "{verb} secrets"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_namespaces_secret_is_never_used() {
    let c = installed();
    let (home, other) = (c.namespace("home"), c.namespace("other"));
    let cloud = Cloud::new(|_| {}).await;
    cloud.flow("f").await;
    cloud.start("f", "e1", None).await;
    // The only Secret named "creds" lives in the other namespace.
    c.apply(&secret(&other, "creds", AK, SK));
    let op = Operator::start(&home, &cloud.emu.url(), &[]).await;
    c.apply(
        &ExecutionStop::new(&home, "s1", "f", "e1")
            .secret("creds")
            .yaml(),
    );
    wait_for(
        c,
        &home,
        "s1",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}=CredentialsNotFound",
    );
    assert!(
        status(c, &home, "s1")["lastError"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("namespace {home}"))
    );
    assert_eq!(cloud.calls("StopExecution"), 0);
    op.stop().await;
}

/// One scripted answer on a raw connection.
type Answer = Box<dyn FnOnce(&mut std::net::TcpStream) + Send>;

/// A server that answers StopExecution with each hostile answer in turn, then a good one.
fn hostile_server(answers: Vec<Answer>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut answers = answers.into_iter();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 65536];
            let mut seen = vec![];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            match answers.next() {
                Some(answer) => answer(&mut conn),
                None => {
                    let body = r#"{"Status":"Stopped","RequestId":"final"}"#;
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            }
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_answers_become_errors_in_status_and_the_next_attempt_proceeds() {
    let c = installed();
    let ns = c.namespace("hostile");
    c.apply(&secret(&ns, "creds", AK, SK));
    let answers: Vec<Answer> = vec![
        Box::new(|s| {
            let body = "<html><body><h1>502 Bad Gateway</h1></body></html>";
            let _ = write!(
                s,
                "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }),
        Box::new(|s| {
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 900\r\nconnection: close\r\n\r\n{{\"Sta"
            );
        }),
        Box::new(|s| {
            let _ = write!(
                s,
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 10485760\r\nconnection: close\r\n\r\n"
            );
            let chunk = vec![b'x'; 65536];
            for _ in 0..160 {
                if s.write_all(&chunk).is_err() {
                    return;
                }
            }
        }),
        Box::new(|s| {
            let body = r#"{"Status":"Stopped","RequestId":"late"}"#;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            for b in body.bytes() {
                if s.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }),
    ];
    let url = hostile_server(answers);
    let op = Operator::start(&ns, "http://127.0.0.1:9", &["--call-timeout", "2"]).await;
    // Every error the operator records passes through status: collect them from a watch.
    let api: kube::Api<flowstop::crd::ExecutionStop> = kube::Api::namespaced(c.client().await, &ns);
    let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = errors.clone();
    let watch = tokio::spawn(async move {
        use futures::StreamExt;
        let mut stream = kube::runtime::watcher(api, Default::default()).boxed();
        while let Some(event) = stream.next().await {
            if let Ok(
                kube::runtime::watcher::Event::Apply(o)
                | kube::runtime::watcher::Event::InitApply(o),
            ) = event
            {
                if let Some(e) = o.status.and_then(|s| s.last_error) {
                    seen.lock()
                        .unwrap()
                        .push(format!("{} {:?} {}", e.code, e.http_status, e.message));
                }
            }
        }
    });
    c.apply(
        &ExecutionStop::new(&ns, "s1", "f", "e1")
            .secret("creds")
            .endpoint(&url)
            .yaml(),
    );
    wait_for(c, &ns, "s1", "condition=Ready");
    watch.abort();
    let s = status(c, &ns, "s1");
    assert_eq!(s["phase"], "Stopped");
    assert_eq!(s["attempts"], 5, "four hostile answers, then success: {s}");
    assert_eq!(s["requestId"], "final");
    assert!(s.get("lastError").is_none(), "cleared by the success");
    let errors = errors.lock().unwrap().join("\n");
    for clue in [
        "BadResponse Some(502)",
        "502 Bad Gateway",
        "ConnectionFailed",
        "BadResponse Some(503)",
        "body larger than",
        "Timeout",
    ] {
        assert!(
            errors.contains(clue),
            "status never showed {clue:?}; it showed:\n{errors}"
        );
    }
    testkit::operator::wait_event(c, &ns, "Warning", "Retrying").await;
    op.stop().await;
}

/// SIGTERM while a call hangs: the operator waits for it no longer than
/// `--shutdown-grace-seconds`, then exits 1 (a kubelet would otherwise SIGKILL it, and
/// outside Kubernetes nothing would). The attempt stays on record, as after a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_never_answers_does_not_hold_up_shutdown() {
    let c = installed();
    let ns = c.namespace("shutdown");
    c.apply(&secret(&ns, "creds", AK, SK));
    // Reads the request and never answers; says when it arrived.
    let (arrived, first) = std::sync::mpsc::channel();
    let url = hostile_server(vec![Box::new(move |_| {
        let _ = arrived.send(());
        loop {
            std::thread::park();
        }
    })]);
    let cloud = Cloud::new(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("operator.log");
    let mut op = Operator::start_logged(
        &ns,
        &cloud.emu.url(),
        &["--call-timeout", "120", "--shutdown-grace-seconds", "2"],
        &log,
    )
    .await;
    c.apply(
        &ExecutionStop::new(&ns, "hung", "f", "e1")
            .secret("creds")
            .endpoint(&url)
            .yaml(),
    );
    tokio::task::spawn_blocking(move || first.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("the operator calls the silent endpoint");
    op.sigterm();
    let signalled = Instant::now();
    let exited = tokio::time::timeout(Duration::from_secs(20), op.child.wait()).await;
    let took = signalled.elapsed();
    let code = exited
        .unwrap_or_else(|_| panic!("still running {took:?} after SIGTERM (grace 2 s, call 120 s)"))
        .unwrap();
    assert_eq!(code.code(), Some(1), "stopped without finishing: {code:?}");
    assert!(
        took >= Duration::from_secs(2),
        "waited the grace period first: {took:?}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("did not finish within 2s of the signal to stop"),
        "exited for the grace period, not another error"
    );
    let s = status(c, &ns, "hung");
    assert_eq!(s["phase"], "Stopping", "{s:#}");
    assert!(
        s["pendingRequestId"].is_string(),
        "the attempt is on record: {s:#}"
    );
}
