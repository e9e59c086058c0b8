//! What STS answers put in a `CredentialsError` reaches the status and Events of every
//! object using the operator's credentials, and its logs: whatever the STS echoes of the
//! request (the OIDC token) or of keys the provider holds (the AccessKeySecret and
//! SecurityToken it cached) is redacted, the text is bounded, and control characters are
//! escaped, in `Display` and in `Debug` alike.

use fnf::credentials::{RrsaConfig, RrsaProvider};
use fnf::sign::percent_encode;
use fnf::{Credentials, CredentialsError};
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// JWT-shaped, as the kubelet projects it.
const OIDC_TOKEN: &str =
    "eyJhbGciOiJSUzI1NiJ9.b2lkYy10b2tlbi10aGF0LW11c3Qtbm90LWxlYWs.c2lnbmF0dXJl";
const SECRET: &str = "sts-secret-that-must-not-leak/+=";
const STS_TOKEN: &str = "CAIS-sts-token-that-must-not-leak";

/// One answer: status line and body.
type Answer = (String, String);
/// The form parameters of every request seen.
type Seen = Arc<Mutex<Vec<HashMap<String, String>>>>;

/// A loopback STS: each request's form parameters and its number (from 0) go to `answer`.
/// Returns its URL and the parameters of every request seen.
fn sts(
    answer: impl Fn(usize, &HashMap<String, String>) -> Answer + Send + 'static,
) -> (url::Url, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let seen = Arc::new(Mutex::new(vec![]));
    let record = seen.clone();
    std::thread::spawn(move || {
        let n = AtomicUsize::new(0);
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let Some(params) = read_form(&mut conn) else {
                continue;
            };
            let (status, body) = answer(n.fetch_add(1, Ordering::SeqCst), &params);
            record.lock().unwrap().push(params);
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

/// The form body of one request (head, then `content-length` bytes).
fn read_form(conn: &mut std::net::TcpStream) -> Option<HashMap<String, String>> {
    let mut buf = vec![];
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let body = &buf[end + 4..end + 4 + length];
                return Some(url::form_urlencoded::parse(body).into_owned().collect());
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn token_file() -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "fnf-sts-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, format!("{OIDC_TOKEN}\n")).unwrap();
    path
}

fn provider(endpoint: url::Url) -> RrsaProvider {
    RrsaProvider::new(
        RrsaConfig {
            role_arn: "acs:ram::123:role/flowstop".into(),
            oidc_provider_arn: "acs:ram::123:oidc-provider/ack-rrsa-c1".into(),
            token_file: token_file().to_string_lossy().into_owned(),
            session_name: "flowstop".into(),
            sts_endpoint: endpoint,
            duration_seconds: 3600,
            refresh_margin: SignedDuration::from_mins(15),
        },
        fnf::http_client(
            std::time::Duration::from_secs(2),
            std::time::Duration::from_secs(5),
        ),
    )
}

/// Every form a secret may be echoed in: as sent, and percent-encoded once or twice.
fn forms(secret: &str) -> [String; 3] {
    let once = percent_encode(secret);
    let twice = percent_encode(&once);
    [secret.to_string(), once, twice]
}

/// Display and Debug of `e`, checked: no token, no key, no control character, bounded.
fn shown(e: &CredentialsError) -> String {
    let display = e.to_string();
    let debug = format!("{e:?}");
    for (what, text) in [("Display", &display), ("Debug", &debug)] {
        for secret in [OIDC_TOKEN, SECRET, STS_TOKEN]
            .iter()
            .flat_map(|s| forms(s))
        {
            assert!(!text.contains(&secret), "{secret} in {what}: {text}");
        }
        // The middle of the token alone, in case a part is echoed.
        assert!(
            !text.contains("b2lkYy10b2tlbi10aGF0LW11c3Qtbm90LWxlYWs"),
            "a part of the token in {what}: {text}"
        );
        assert!(
            text.chars().count() < 4096,
            "{what} is not bounded: {} characters",
            text.chars().count()
        );
    }
    assert!(
        !display.chars().any(char::is_control),
        "a control character in Display: {display:?}"
    );
    display
}

fn at(t: &str) -> Timestamp {
    t.parse().unwrap()
}

fn granted(expiration: &str) -> Answer {
    (
        "200 OK".into(),
        serde_json::json!({
            "RequestId": "granted",
            "Credentials": {
                "AccessKeyId": "STS.id",
                "AccessKeySecret": SECRET,
                "SecurityToken": STS_TOKEN,
                "Expiration": expiration,
            },
        })
        .to_string(),
    )
}

/// An STS error whose every field quotes the token it was sent and the keys it granted
/// before, raw and percent-encoded, with a terminal escape sequence and a long tail.
fn echoing(params: &HashMap<String, String>) -> Answer {
    let token = params.get("OIDCToken").cloned().unwrap_or_default();
    let echo = format!(
        "token {token} ({}) refused; you hold {SECRET} ({}) and {STS_TOKEN} ({})\u{1b}[2J\u{9b}31m\n{}",
        percent_encode(&token),
        percent_encode(&percent_encode(SECRET)),
        percent_encode(STS_TOKEN),
        "x".repeat(100_000),
    );
    (
        "400 Bad Request".into(),
        serde_json::json!({
            "Code": format!("AuthenticationFail.OIDCToken.Invalid {token}"),
            "Message": echo,
            "RequestId": format!("{token} {SECRET}"),
        })
        .to_string(),
    )
}

#[tokio::test]
async fn an_sts_error_echoing_the_token_and_cached_keys_shows_neither() {
    let (url, seen) = sts(|n, params| {
        if n == 0 {
            granted("2030-01-01T01:00:00Z")
        } else {
            echoing(params)
        }
    });
    let p = provider(url);
    let first = p.credentials_at(at("2030-01-01T00:00:00Z")).await.unwrap();
    assert_eq!(
        first,
        Credentials::new("STS.id", SECRET, Some(STS_TOKEN.into()))
    );
    // Inside the refresh margin the refresh fails and the cached keys, still valid, are
    // used (the error is only logged); past the expiration the error is the answer.
    let still = p.credentials_at(at("2030-01-01T00:50:00Z")).await.unwrap();
    assert_eq!(still, first);
    let e = p
        .credentials_at(at("2030-01-01T02:00:00Z"))
        .await
        .unwrap_err();
    let text = shown(&e);
    assert_eq!(
        seen.lock().unwrap()[2].get("OIDCToken").map(String::as_str),
        Some(OIDC_TOKEN),
        "the STS was sent the token it echoed"
    );
    assert!(
        matches!(e, CredentialsError::Sts { status: 400, .. }),
        "{text}"
    );
    assert!(
        text.contains("AuthenticationFail.OIDCToken.Invalid") && text.contains("[redacted]"),
        "{text}"
    );
    assert!(text.contains("\\u{1b}[2J"), "the escape is visible: {text}");
}

/// Answers that are not a usable STS answer, to a provider holding no keys yet: the token
/// sent, and the keys of the answer itself, are the secrets it knows.
#[tokio::test]
async fn unusable_sts_answers_echoing_the_token_and_keys_show_neither() {
    let answers: Vec<Answer> = vec![
        // Credentials of the wrong type: serde's error quotes the string.
        (
            "200 OK".into(),
            format!(r#"{{"RequestId":"r","Credentials":"{OIDC_TOKEN}"}}"#),
        ),
        // An Expiration that is not a time, quoting the token and the answer's own keys.
        granted(&format!(
            "{OIDC_TOKEN} {SECRET} {STS_TOKEN}\u{1b}]0;title\u{7}"
        )),
        // A proxy's page, quoting the request it got.
        (
            "502 Bad Gateway".into(),
            format!("<html>\u{1b}[2J upstream refused OIDCToken={OIDC_TOKEN}</html>"),
        ),
        // A code of the wrong type.
        (
            "400 Bad Request".into(),
            format!(r#"{{"Code":["{OIDC_TOKEN}"],"Message":"m"}}"#),
        ),
    ];
    let count = answers.len();
    let answers = Mutex::new(answers.into_iter());
    let (url, _) = sts(move |_, _| answers.lock().unwrap().next().unwrap());
    for i in 0..count {
        // A new provider each time: nothing cached.
        let e = provider(url.clone()).credentials().await.unwrap_err();
        let text = shown(&e);
        assert!(
            matches!(e, CredentialsError::StsBadResponse(_)),
            "answer {i}: {text}"
        );
    }
}
