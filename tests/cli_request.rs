//! `flowstop stop` / `describe` against a local listener that records the raw request;
//! the request is then checked with Alibaba's own signing code.

use testkit::cloud as support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::thread;

/// Serves one connection with `status` and `body`, and returns the raw request bytes.
fn record_one(status: &str, ctype: &str, body: &str) -> (String, thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (status, ctype, body) = (status.to_string(), ctype.to_string(), body.to_string());
    let handle = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let header_end = loop {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed before the headers ended");
            raw.extend_from_slice(&buf[..n]);
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&raw[..header_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while raw.len() < header_end + length {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed before the body ended");
            raw.extend_from_slice(&buf[..n]);
        }
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(answer.as_bytes()).unwrap();
        raw
    });
    (url, handle)
}

fn flowstop(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowstop"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

const KEYS: &[(&str, &str)] = &[
    ("ALIBABA_CLOUD_ACCESS_KEY_ID", support::AK),
    ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", support::SK),
    ("ALIBABA_CLOUD_SECURITY_TOKEN", "sts token/with+odd=chars"),
];

fn verify(raw: &[u8]) -> serde_json::Value {
    let mut child = Command::new(testkit::oracle::python())
        .arg(testkit::oracle::file("verify_request.py"))
        .arg(support::SK)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(raw).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "verify_request.py failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn stop_sends_a_request_alibabas_code_accepts() {
    let answer = r#"{"Status":"Stopped","RequestId":"rid-1","Name":"exec-1","FlowName":"my_flow"}"#;
    let (url, server) = record_one("200 OK", "application/json", answer);
    let out = flowstop(
        &[
            "stop",
            "--flow",
            "my_flow",
            "--execution",
            "exec-1",
            "--cause",
            "rollout 中 *~ a+b",
            "--error",
            "Aborted",
            "--endpoint",
            &url,
        ],
        KEYS,
    );
    let raw = server.join().unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["Status"], "Stopped");
    assert_eq!(printed["RequestId"], "rid-1");

    let v = verify(&raw);
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/");
    assert_eq!(v["content_type"], "application/x-www-form-urlencoded");
    assert_eq!(
        v["signature"], v["expected"],
        "signature differs from Alibaba's: {v}"
    );
    let p = &v["params"];
    assert_eq!(p["Action"], "StopExecution");
    assert_eq!(p["Version"], "2019-03-15");
    assert_eq!(p["FlowName"], "my_flow");
    assert_eq!(p["ExecutionName"], "exec-1");
    assert_eq!(p["Cause"], "rollout 中 *~ a+b");
    assert_eq!(p["Error"], "Aborted");
    assert_eq!(p["AccessKeyId"], support::AK);
    assert_eq!(p["SecurityToken"], "sts token/with+odd=chars");
    assert_eq!(p["SignatureMethod"], "HMAC-SHA1");
    assert_eq!(p["SignatureVersion"], "1.0");
    assert_eq!(p["Format"], "JSON");
    assert_eq!(p["SignatureNonce"].as_str().unwrap().len(), 32);
    let ts = p["Timestamp"].as_str().unwrap();
    assert!(ts.len() == 20 && ts.ends_with('Z'), "{ts}");
    // The secret itself never travels.
    assert!(!String::from_utf8_lossy(&raw).contains(support::SK));
}

#[test]
fn describe_is_a_signed_get_with_the_wait() {
    let (url, server) = record_one(
        "200 OK",
        "application/json",
        r#"{"Status":"Running","RequestId":"r"}"#,
    );
    let out = flowstop(
        &[
            "describe",
            "--flow",
            "f",
            "--execution",
            "e",
            "--wait",
            "5",
            "--endpoint",
            &url,
        ],
        KEYS,
    );
    let raw = server.join().unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = verify(&raw);
    assert_eq!(v["method"], "GET");
    assert_eq!(v["signature"], v["expected"], "{v}");
    assert_eq!(v["params"]["Action"], "DescribeExecution");
    assert_eq!(v["params"]["WaitTimeSeconds"], "5");
}

#[test]
fn api_errors_go_to_stderr_with_the_documented_exit_codes() {
    let cases = [
        (
            "429 Too Many Requests",
            r#"{"Code":"ResourceThrottled","Message":"The request is throttled.","RequestId":"r429"}"#,
            75,
            "ResourceThrottled",
        ),
        (
            "404 Not Found",
            r#"{"Code":"FlowNotExists","Message":"Flow  f does not exist.","RequestId":"r404"}"#,
            4,
            "FlowNotExists",
        ),
        (
            "400 Bad Request",
            r#"{"Code":"ExecutionAlreadyCompleted","Message":"done","RequestId":"r400"}"#,
            3,
            "ExecutionAlreadyCompleted",
        ),
        (
            "400 Bad Request",
            r#"{"Code":"InvalidArgument","Message":"bad cause","RequestId":"r400"}"#,
            4,
            "InvalidArgument",
        ),
    ];
    for (status, body, code, name) in cases {
        let (url, server) = record_one(status, "application/json", body);
        let out = flowstop(
            &[
                "stop",
                "--flow",
                "f",
                "--execution",
                "e",
                "--endpoint",
                &url,
            ],
            KEYS,
        );
        server.join().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{status}: {stderr}");
        assert!(out.stdout.is_empty());
        let http = status.split(' ').next().unwrap();
        for part in [
            name,
            &format!("HTTP {http}"),
            &format!("request id r{http}"),
        ] {
            assert!(stderr.contains(part), "{part:?} missing from {stderr:?}");
        }
    }
}

#[test]
fn a_proxy_page_is_a_clear_retryable_error() {
    let (url, server) = record_one(
        "502 Bad Gateway",
        "text/html",
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
    );
    let out = flowstop(
        &[
            "stop",
            "--flow",
            "f",
            "--execution",
            "e",
            "--endpoint",
            &url,
        ],
        KEYS,
    );
    server.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("HTTP 502") && stderr.contains("502 Bad Gateway"),
        "{stderr}"
    );
}

#[test]
fn missing_credentials_say_which_variables_were_looked_for() {
    let out = flowstop(
        &[
            "stop",
            "--flow",
            "f",
            "--execution",
            "e",
            "--endpoint",
            "http://127.0.0.1:9",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("ALIBABA_CLOUD_ACCESS_KEY_ID")
            && stderr.contains("ALIBABA_CLOUD_OIDC_TOKEN_FILE"),
        "{stderr}"
    );
}

#[test]
fn plain_http_to_another_host_is_refused_before_sending() {
    let out = flowstop(
        &[
            "stop",
            "--flow",
            "f",
            "--execution",
            "e",
            "--endpoint",
            "http://fnf.example.invalid",
        ],
        KEYS,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("plain http"), "{stderr}");
}
