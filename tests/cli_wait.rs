//! `flowstop stop --wait` against the emulator: it follows an accepted stop to the end and
//! exits with the documented codes.

use std::process::Output;
use testkit::cloud::{AK, SK};

async fn flowstop(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_flowstop"))
        .args(args)
        .env_clear()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK)
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_follows_an_asynchronous_stop_to_the_end() {
    // The service answers Running and stops 700 ms later.
    let cloud = testkit::cloud::Cloud::new(|c| c.async_stop_ms = Some(700)).await;
    cloud.flow("f").await;
    cloud.start("f", "e1", None).await;
    cloud.start("f", "e2", None).await;
    let url = cloud.emu.url();
    let out = flowstop(&[
        "stop",
        "--flow",
        "f",
        "--execution",
        "e1",
        "--endpoint",
        &url,
        "--wait",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last: serde_json::Value = serde_json::Deserializer::from_str(&stdout)
        .into_iter()
        .map(Result::unwrap)
        .last()
        .unwrap();
    assert_eq!(last["Status"], "Stopped", "{stdout}");
    assert!(cloud.count("DescribeExecution", "OK") >= 1);

    // Without --wait, the accepted (Running) answer is the result.
    let out = flowstop(&[
        "stop",
        "--flow",
        "f",
        "--execution",
        "e2",
        "--endpoint",
        &url,
    ])
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"Running\""));

    // Stopping again: already finished, exit 3.
    let out = flowstop(&[
        "stop",
        "--flow",
        "f",
        "--execution",
        "e1",
        "--endpoint",
        &url,
        "--wait",
    ])
    .await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_gives_up_at_its_timeout_with_exit_6() {
    let cloud = testkit::cloud::Cloud::new(|c| c.async_stop_ms = Some(30_000)).await;
    cloud.flow("f").await;
    cloud.start("f", "e1", None).await;
    let url = cloud.emu.url();
    let out = flowstop(&[
        "stop",
        "--flow",
        "f",
        "--execution",
        "e1",
        "--endpoint",
        &url,
        "--wait",
        "--wait-timeout",
        "2",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("timed out after 2 s"), "{stderr}");
}
