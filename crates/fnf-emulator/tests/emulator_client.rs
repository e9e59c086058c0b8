//! Our client against fnf-emulator: the conformance scenarios of the emulator issue,
//! plus the emulator's quota, fault injection, long-poll and counters.

use testkit::cloud as support;

use fnf::{self, Account, Credentials, Endpoint, FnfError, ListRequest, StopRequest, Unsigned};
use std::time::Duration;

fn client(timeout_ms: u64) -> fnf::Client {
    let t = Duration::from_millis(timeout_ms);
    fnf::Client::new(fnf::http_client(Duration::from_secs(2), t), t)
}

fn account(emu: &fnf_emulator::Running, id: &str, secret: &str) -> Account {
    Account {
        endpoint: Endpoint::url(&emu.url(), false).unwrap(),
        credentials: Credentials::new(id, secret, None),
    }
}

async fn create_flow(c: &fnf::Client, a: &Account, name: &str) {
    let u = Unsigned::create_flow(name, "Type: StateMachine\nName: x");
    c.call::<serde_json::Value>(a, &u, Duration::ZERO)
        .await
        .unwrap();
}

fn stop(flow: &str, exec: &str) -> StopRequest {
    StopRequest {
        flow_name: flow.into(),
        execution_name: exec.into(),
        cause: Some("c".into()),
        error: Some("E".into()),
        request_id: None,
    }
}

async fn admin_put(emu: &fnf_emulator::Running, path: &str, body: serde_json::Value) {
    let r = reqwest::Client::new()
        .put(format!("{}{path}", emu.admin_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

#[tokio::test]
async fn lifecycle_create_start_describe_stop_and_stop_again() {
    let emu = support::emulator(|_| {}).await;
    let (c, a) = (client(5000), account(&emu, support::AK, support::SK));
    create_flow(&c, &a, "flow_1").await;
    let started = c
        .start_execution(&a, "flow_1", Some("exec-1"), Some(r#"{"k":"v"}"#))
        .await
        .unwrap();
    assert_eq!(started.status.as_str(), "Running");
    let described = c
        .describe_execution(&a, "flow_1", "exec-1", None)
        .await
        .unwrap();
    assert_eq!(described.input.as_deref(), Some(r#"{"k":"v"}"#));
    let req = StopRequest {
        request_id: Some("my-request-id".into()),
        ..stop("flow_1", "exec-1")
    };
    let stopped = c.stop_execution(&a, &req).await.unwrap();
    assert_eq!(stopped.status.as_str(), "Stopped");
    assert_eq!(stopped.request_id.as_deref(), Some("my-request-id"));
    let t = stopped.stopped_time.unwrap();
    assert!(
        t.len() == 24 && t.ends_with('Z') && t.as_bytes()[19] == b'.',
        "time format {t}"
    );

    let again = c
        .stop_execution(&a, &stop("flow_1", "exec-1"))
        .await
        .unwrap_err();
    assert!(
        (again.kind() == fnf::ErrorKind::AlreadyCompleted) && !again.retryable(),
        "{again}"
    );
    assert_eq!(again.http_status(), Some(400));
    assert!(again.request_id().is_some());

    let nf = c
        .stop_execution(&a, &stop("nope", "exec-1"))
        .await
        .unwrap_err();
    assert_eq!(
        (nf.code(), nf.http_status()),
        (Some("FlowNotExists"), Some(404))
    );
    let ne = c
        .stop_execution(&a, &stop("flow_1", "nope"))
        .await
        .unwrap_err();
    assert_eq!(ne.code(), Some("ExecutionNotExists"));
    let bad = c.stop_execution(&a, &stop("1bad", "e")).await.unwrap_err();
    assert_eq!(bad.code(), Some("InvalidArgument"));
    assert_eq!(emu.emulator.count("StopExecution", "OK"), 1);
}

#[tokio::test]
async fn executions_end_by_themselves_and_long_polls_return_at_the_end() {
    let emu = support::emulator(|_| {}).await;
    let (c, a) = (client(5000), account(&emu, support::AK, support::SK));
    create_flow(&c, &a, "f").await;
    c.start_execution(
        &a,
        "f",
        Some("short"),
        Some(r#"{"emulator":{"durationMs":300,"result":"Failed"}}"#),
    )
    .await
    .unwrap();
    let ended = c
        .describe_execution(&a, "f", "short", Some(10))
        .await
        .unwrap();
    assert_eq!(ended.status.as_str(), "Failed");
    let err = c.stop_execution(&a, &stop("f", "short")).await.unwrap_err();
    assert!(err.kind() == fnf::ErrorKind::AlreadyCompleted, "{err}");
}

#[tokio::test]
async fn asynchronous_stop_is_confirmed_by_describe() {
    let emu = support::emulator(|c| c.async_stop_ms = Some(200)).await;
    let (c, a) = (client(5000), account(&emu, support::AK, support::SK));
    create_flow(&c, &a, "f").await;
    c.start_execution(&a, "f", Some("e"), None).await.unwrap();
    let answer = c.stop_execution(&a, &stop("f", "e")).await.unwrap();
    assert_eq!(answer.status.as_str(), "Running");
    let confirmed = c.describe_execution(&a, "f", "e", Some(5)).await.unwrap();
    assert_eq!(confirmed.status.as_str(), "Stopped");
}

#[tokio::test]
async fn list_pages_and_filters() {
    let emu = support::emulator(|c| c.no_quota = true).await;
    let (c, a) = (client(5000), account(&emu, support::AK, support::SK));
    create_flow(&c, &a, "f").await;
    for i in 0..5 {
        c.start_execution(&a, "f", Some(&format!("e{i}")), None)
            .await
            .unwrap();
    }
    c.stop_execution(&a, &stop("f", "e2")).await.unwrap();
    let mut names = vec![];
    let mut token = None;
    loop {
        let page = c
            .list_executions(
                &a,
                &ListRequest {
                    flow_name: "f".into(),
                    limit: Some(2),
                    next_token: token,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(page.executions.len() <= 2);
        names.extend(page.executions.iter().map(|e| e.name.clone().unwrap()));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(names, ["e0", "e1", "e2", "e3", "e4"]);
    let stopped = c
        .list_executions(
            &a,
            &ListRequest {
                flow_name: "f".into(),
                status: Some("Stopped".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(stopped.executions.len(), 1);
}

#[tokio::test]
async fn throttles_stop_execution_at_ten_then_two_per_second() {
    let emu = support::emulator(|_| {}).await;
    let (c, a) = (client(5000), account(&emu, support::AK, support::SK));
    // CreateFlow draws from the same "other operations" bucket: 9 left for stops.
    create_flow(&c, &a, "f").await;
    let mut throttled = 0;
    for i in 0..12 {
        c.start_execution(&a, "f", Some(&format!("e{i}")), None)
            .await
            .unwrap();
        if let Err(e) = c.stop_execution(&a, &stop("f", &format!("e{i}"))).await {
            assert_eq!(
                (e.code(), e.http_status(), e.retryable()),
                (Some("ResourceThrottled"), Some(429), true)
            );
            throttled += 1;
        }
    }
    // 12 stops against 9 tokens, refilling at 2/s during the run: 1 to 3 throttled.
    assert!((1..=3).contains(&throttled), "throttled {throttled}");
    assert_eq!(
        emu.emulator.count("StopExecution", "ResourceThrottled"),
        throttled
    );
}

#[tokio::test]
async fn wrong_secret_unknown_key_and_stale_timestamp_are_refused() {
    let emu = support::emulator(|_| {}).await;
    let c = client(5000);
    let e = c
        .describe_execution(&account(&emu, support::AK, "wrong"), "f", "e", None)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.http_status()),
        (Some("SignatureNotMatch"), Some(403))
    );
    let e = c
        .describe_execution(&account(&emu, "nobody", "x"), "f", "e", None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidAccessKeyID"));
    assert!(e.to_string().contains("nobody"));

    // A correctly signed request from 20 minutes ago.
    let creds = Credentials::new(support::AK, support::SK, None);
    let old = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(20);
    let q = Unsigned::describe("f", "e", None).signed_query(&creds, old, &fnf::nonce());
    let mut url: url::Url = emu.url().parse().unwrap();
    url.set_query(Some(&fnf::sign::encode_pairs(
        q.iter().map(|(k, v)| (*k, v.as_str())),
    )));
    let resp = reqwest::get(url.clone()).await.unwrap();
    let status = resp.status().as_u16();
    let e = fnf::decode::<fnf::Execution>(status, &resp.bytes().await.unwrap()).unwrap_err();
    assert_eq!(
        (e.code(), e.http_status()),
        (Some("RequestTimeTooSkewed"), Some(403))
    );
}

#[tokio::test]
async fn a_replayed_request_is_refused() {
    let emu = support::emulator(|_| {}).await;
    let creds = Credentials::new(support::AK, support::SK, None);
    let q = Unsigned::describe("f", "e", None).signed_query(
        &creds,
        jiff::Timestamp::now(),
        "fixed-nonce",
    );
    let mut url: url::Url = emu.url().parse().unwrap();
    url.set_query(Some(&fnf::sign::encode_pairs(
        q.iter().map(|(k, v)| (*k, v.as_str())),
    )));
    let first = reqwest::get(url.clone()).await.unwrap();
    assert_eq!(
        first.status().as_u16(),
        404,
        "the first is authentic (flow absent)"
    );
    let second = reqwest::get(url).await.unwrap();
    let body: serde_json::Value = second.json().await.unwrap();
    assert_eq!(body["Code"], "SignatureNonceUsed");
}

#[tokio::test]
async fn injected_faults_become_typed_errors() {
    let emu = support::emulator(|c| c.no_quota = true).await;
    let (c, a) = (client(800), account(&emu, support::AK, support::SK));
    create_flow(&c, &a, "f").await;
    c.start_execution(&a, "f", Some("e"), None).await.unwrap();
    admin_put(
        &emu,
        "/faults/StopExecution",
        serde_json::json!({"script": [{"status": 500}, {"status": 409}, {"status": 502}, "drop", "malformed", {"stall": 2000}]}),
    )
    .await;
    let mut seen = vec![];
    for _ in 0..6 {
        let e = c.stop_execution(&a, &stop("f", "e")).await.unwrap_err();
        seen.push((e.kind().as_str(), e.retryable()));
        if let FnfError::Api { code, .. } = &e {
            assert!(
                code == "InternalServerError" || code == "ConcurrentUpdateError",
                "{e}"
            );
        }
    }
    assert_eq!(
        seen,
        [
            ("server", true),
            ("conflict", true),
            ("bad_response", true),
            ("connect", true),
            ("bad_response", false),
            ("timeout", true)
        ]
    );
    // The stalled call went through on the server: the stop happened, the client never heard.
    let e = c.stop_execution(&a, &stop("f", "e")).await.unwrap_err();
    assert!(e.kind() == fnf::ErrorKind::AlreadyCompleted, "{e}");
    let counters: serde_json::Value = reqwest::get(format!("{}/counters", emu.admin_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["StopExecution"]["InternalServerError"], 1);
    assert_eq!(counters["StopExecution"]["fault:drop"], 1);
    assert_eq!(counters["StopExecution"]["ExecutionAlreadyCompleted"], 1);
}

#[tokio::test]
async fn state_survives_a_restart_with_a_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    {
        let emu = support::emulator(|c| c.state_file = Some(file.clone())).await;
        let (c, a) = (client(5000), account(&emu, support::AK, support::SK));
        create_flow(&c, &a, "f").await;
        c.start_execution(&a, "f", Some("e"), None).await.unwrap();
    }
    let emu = support::emulator(|c| c.state_file = Some(file.clone())).await;
    let (c, a) = (client(5000), account(&emu, support::AK, support::SK));
    assert_eq!(
        c.describe_execution(&a, "f", "e", None)
            .await
            .unwrap()
            .status
            .as_str(),
        "Running"
    );
}
