//! RRSA against the emulator's STS stand-in: token exchange, caching, refresh before
//! expiry with a rotated token file, STS errors, and STS keys on the fnf side.

use testkit::cloud as support;

use fnf::credentials::{RrsaConfig, RrsaProvider};
use fnf::{self, Account, Endpoint, StopRequest, Unsigned};
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

fn provider(sts: &str, token_file: &std::path::Path) -> RrsaProvider {
    let config = RrsaConfig {
        role_arn: "acs:ram::1234567890:role/flowstop".into(),
        oidc_provider_arn: "acs:ram::1234567890:oidc-provider/ack-rrsa-c1".into(),
        token_file: token_file.display().to_string(),
        session_name: "flowstop-test".into(),
        sts_endpoint: sts.parse().unwrap(),
        duration_seconds: 900,
        refresh_margin: SignedDuration::from_mins(5),
    };
    RrsaProvider::new(
        config,
        fnf::http_client(Duration::from_secs(2), Duration::from_secs(5)),
    )
}

async fn admin_put(url: String, body: serde_json::Value) {
    let r = reqwest::Client::new()
        .put(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

async fn seen_tokens(emu: &fnf_emulator::Running) -> Vec<String> {
    reqwest::get(format!("{}/sts/tokens", emu.admin_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn exchanges_caches_and_refreshes_with_the_rotated_token() {
    let emu = support::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "header.first.sig\n").unwrap();
    let p = provider(&emu.url(), &token_file);

    let now = Timestamp::now();
    let first = p.credentials_at(now).await.unwrap();
    assert!(first.access_key_id.starts_with("STS."));
    assert!(first.security_token.is_some());
    assert_eq!(seen_tokens(&emu).await, ["header.first.sig"]);

    // The kubelet rotates the token; only the new one is valid from now on.
    std::fs::write(&token_file, "header.second.sig").unwrap();
    admin_put(
        format!("{}/sts/tokens", emu.admin_url()),
        serde_json::json!(["header.second.sig"]),
    )
    .await;

    // Still fresh (expiry 15 min, margin 5 min): served from the cache, no STS call.
    let cached = p
        .credentials_at(now + SignedDuration::from_mins(9))
        .await
        .unwrap();
    assert_eq!(cached, first);
    assert_eq!(seen_tokens(&emu).await.len(), 1);

    // Inside the margin, before expiry: refreshed with the re-read token.
    let refreshed = p
        .credentials_at(now + SignedDuration::from_mins(11))
        .await
        .unwrap();
    assert_ne!(refreshed.access_key_id, first.access_key_id);
    assert_eq!(
        seen_tokens(&emu).await,
        ["header.first.sig", "header.second.sig"]
    );

    // The STS keys sign fnf calls the emulator accepts.
    let client = fnf::Client::new(
        fnf::http_client(Duration::from_secs(2), Duration::from_secs(5)),
        Duration::from_secs(5),
    );
    let account = Account {
        endpoint: Endpoint::url(&emu.url(), false).unwrap(),
        credentials: refreshed,
    };
    let create = Unsigned::create_flow("f", "Type: StateMachine");
    client
        .call::<serde_json::Value>(&account, &create, Duration::ZERO)
        .await
        .unwrap();
    client
        .start_execution(&account, "f", Some("e"), None)
        .await
        .unwrap();
    let stopped = client
        .stop_execution(
            &account,
            &StopRequest {
                flow_name: "f".into(),
                execution_name: "e".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(stopped.status.as_str(), "Stopped");

    // After expiry the same keys are refused.
    let r = reqwest::Client::new()
        .post(format!("{}/sts/expire", emu.admin_url()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let err = client
        .describe_execution(&account, "f", "e", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidAccessKeyID"), "{err}");
}

#[tokio::test]
async fn sts_errors_are_clear() {
    let emu = support::emulator(|c| c.oidc_tokens = vec!["only.this.one".into()]).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "some.other.token").unwrap();
    let err = provider(&emu.url(), &token_file)
        .credentials()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("AssumeRoleWithOIDC") && err.contains("AuthenticationFail.OIDCToken.Invalid"),
        "{err}"
    );
    assert!(
        err.contains("HTTP 400") && err.contains("request id"),
        "{err}"
    );

    let missing = provider(&emu.url(), &dir.path().join("absent"))
        .credentials()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("OIDC token file") && missing.contains("absent"),
        "{missing}"
    );
}

#[tokio::test]
async fn an_unreachable_sts_is_retryable() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "a.b.c").unwrap();
    let err = provider(&format!("http://127.0.0.1:{port}"), &token_file)
        .credentials()
        .await
        .unwrap_err();
    assert!(err.retryable(), "{err}");
}
