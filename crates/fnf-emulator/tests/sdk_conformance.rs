//! fnf-emulator driven by Alibaba's official clients, unchanged: the Tea and legacy
//! Python SDKs and the pop-core Node SDK. If the emulator's signature checking, error
//! bodies or parameter handling were off, these SDKs would fail here.

use testkit::cloud as support;

use serde_json::Value;
use tokio::process::Command;

async fn run(mut cmd: Command) -> Value {
    let out = cmd.output().await.expect("the SDK script starts");
    assert!(
        out.status.success(),
        "SDK script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

/// The scenarios every SDK must see the same way.
fn check(sdk: &str, r: &Value, with_status: bool) {
    let ok = |k: &str| -> &Value {
        r[k].get("ok")
            .unwrap_or_else(|| panic!("{sdk} {k}: {}", r[k]))
    };
    assert_eq!(ok("create_flow")["Name"], format!("conf_{sdk}"), "{sdk}");
    assert_eq!(ok("start")["Status"], "Running", "{sdk}");
    assert_eq!(
        ok("describe")["Input"],
        r#"{"a": "b c"}"#,
        "{sdk}: form decoding and signing of spaces"
    );
    assert_eq!(ok("stop")["Status"], "Stopped", "{sdk}");
    assert!(
        ok("stop")["StoppedTime"].as_str().unwrap().ends_with('Z'),
        "{sdk}"
    );
    assert_eq!(
        ok("list_paged"),
        &serde_json::json!(["e1", "e2", "e3", "e4", "e5"]),
        "{sdk}"
    );
    assert_eq!(ok("sts_describe")["Status"], "Running", "{sdk}");
    assert_eq!(ok("sts_stop")["Status"], "Stopped", "{sdk}");
    let errors = [
        ("stop_again", "ExecutionAlreadyCompleted", 400),
        ("stop_unknown_flow", "FlowNotExists", 404),
        ("wrong_secret", "SignatureNotMatch", 403),
        ("unknown_key", "InvalidAccessKeyID", 403),
        ("stale_timestamp", "RequestTimeTooSkewed", 403),
        ("throttled", "ResourceThrottled", 429),
    ];
    for (scenario, code, status) in errors {
        assert_eq!(
            r[scenario]["code"], code,
            "{sdk} {scenario}: {}",
            r[scenario]
        );
        assert!(
            r[scenario]["request_id"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{sdk} {scenario}"
        );
        if with_status {
            assert_eq!(r[scenario]["status"], status, "{sdk} {scenario}");
        }
    }
}

/// ListExecutions with each filter, paging through 150 executions. `with_status`: the SDK
/// reports the HTTP status of an error (pop-core does not).
fn check_lists(sdk: &str, r: &Value, with_status: bool) {
    let ok = |k: &str| -> &Value {
        r[k].get("ok")
            .unwrap_or_else(|| panic!("{sdk} {k}: {}", r[k]))
    };
    let p = |range: std::ops::Range<usize>| -> Value {
        range.map(|i| format!("p{i:03}")).collect::<Vec<_>>().into()
    };
    assert_eq!(
        ok("list_prefix"),
        &p(0..150),
        "{sdk}: ExecutionNamePrefix, paged"
    );
    assert_eq!(
        r["list_prefix"]["pages"], 2,
        "{sdk}: Limit 99 gives two pages of 150"
    );
    assert_eq!(ok("list_after"), &p(75..150), "{sdk}: StartedTimeBegin");
    assert_eq!(ok("list_before"), &p(0..75), "{sdk}: StartedTimeEnd");
    assert_eq!(
        ok("list_stopped"),
        &serde_json::json!(["e1", "e2"]),
        "{sdk}: Status"
    );
    let hundred = ok("list_limit_100");
    assert_eq!(
        hundred["Executions"].as_array().unwrap().len(),
        100,
        "{sdk}"
    );
    assert_eq!(
        hundred["NextToken"], "p100",
        "{sdk}: NextToken names the next execution"
    );
    for (scenario, code) in [
        ("list_limit_101", "InvalidArgument"),
        ("list_bad_time", "InvalidArgument"),
        ("list_unknown_flow", "FlowNotExists"),
    ] {
        assert_eq!(
            r[scenario]["code"], code,
            "{sdk} {scenario}: {}",
            r[scenario]
        );
    }
    if with_status {
        assert_eq!(r["list_unknown_flow"]["status"], 404, "{sdk}");
        assert_eq!(r["list_bad_time"]["status"], 400, "{sdk}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_agree_with_the_emulator() {
    let emu = support::emulator(|c| {
        c.access_keys = vec![
            ("tea".into(), "tea-secret".into()),
            ("legacy".into(), "legacy/secret+".into()),
            ("node".into(), "node secret".into()),
        ];
    })
    .await;
    for (sdk, key, secret) in [
        ("tea", "tea", "tea-secret"),
        ("legacy", "legacy", "legacy/secret+"),
    ] {
        let mut cmd = Command::new(testkit::oracle::python());
        cmd.arg(testkit::oracle::file("conformance.py"))
            .args([sdk, &emu.url(), key, secret]);
        let r = run(cmd).await;
        check(sdk, &r, true);
        check_lists(sdk, &r, true);
    }
    let mut cmd = Command::new("node");
    cmd.arg(testkit::oracle::file("conformance.js"))
        .args([&emu.url(), "node", "node secret"])
        .env("NODE_PATH", testkit::oracle::node_path());
    // pop-core's errors carry the HTTP response too (conformance.js reads its status).
    let r = run(cmd).await;
    check("node", &r, true);
    check_lists("node", &r, true);

    // Every call reached the emulator and was counted; none hit an unknown action.
    let counters: Value = reqwest::get(format!("{}/counters", emu.admin_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        counters["StopExecution"]["ExecutionAlreadyCompleted"], 3,
        "{counters}"
    );
    assert_eq!(counters["StopExecution"]["SignatureNotMatch"], Value::Null);
    assert_eq!(counters["DescribeExecution"]["SignatureNotMatch"], 3);
    assert!(counters.get("unknown").is_none(), "{counters}");
}
