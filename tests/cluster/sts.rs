//! The operator on RRSA, end to end: an STS that echoes the OIDC token it was sent and the
//! keys it granted before, in its error answers, gets neither into the status or Events of
//! the objects using the operator's credentials, nor into the operator's log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::cloud::{AK, Cloud, SK};
use testkit::fixtures::ExecutionStop;
use testkit::operator::{Operator, installed, status, wait_event, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// JWT-shaped, as the kubelet projects it.
const OIDC_TOKEN: &str =
    "eyJhbGciOiJSUzI1NiJ9.b2lkYy10b2tlbi10aGF0LW11c3Qtbm90LWxlYWs.c2lnbmF0dXJl";
/// The middle of the token: found even if only a part of it is echoed.
const TOKEN_PART: &str = "b2lkYy10b2tlbi10aGF0LW11c3Qtbm90LWxlYWs";
/// The SecurityToken the STS grants with the emulator's key.
const STS_TOKEN: &str = "CAIS-sts-token-that-must-not-leak";
/// How long the granted keys live: inside the 15-minute refresh margin, so every later
/// call refreshes; an error while they are valid is only logged, after they expire it
/// is the object's.
const KEYS_LIVE: Duration = Duration::from_secs(20);

/// A loopback STS: the first AssumeRoleWithOIDC is granted the emulator's key (`AK`,
/// `SK`) with `STS_TOKEN`, expiring after `KEYS_LIVE`; every later one is refused with an
/// error quoting the token it was sent and the keys granted before, raw and
/// percent-encoded, with a terminal escape sequence.
struct Sts {
    url: String,
    /// The OIDC token of each call, and when the first was granted.
    seen: Arc<Mutex<(Vec<String>, Option<Instant>)>>,
}

impl Sts {
    async fn start() -> Sts {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<(Vec<String>, Option<Instant>)>> = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let Some(params) = read_form(&mut conn).await else {
                        return;
                    };
                    let token = params.get("OIDCToken").cloned().unwrap_or_default();
                    let (status, body) = {
                        let mut seen = record.lock().unwrap();
                        seen.0.push(token.clone());
                        if seen.1.is_none() {
                            seen.1 = Some(Instant::now());
                            ("200 OK", granted())
                        } else {
                            ("400 Bad Request", echoing(&token))
                        }
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Sts { url, seen }
    }

    fn calls(&self) -> usize {
        self.seen.lock().unwrap().0.len()
    }

    fn granted_at(&self) -> Option<Instant> {
        self.seen.lock().unwrap().1
    }
}

fn granted() -> String {
    let expiration = jiff::Timestamp::now() + jiff::SignedDuration::try_from(KEYS_LIVE).unwrap();
    serde_json::json!({
        "RequestId": "granted",
        "Credentials": {
            "AccessKeyId": AK,
            "AccessKeySecret": SK,
            "SecurityToken": STS_TOKEN,
            "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        },
    })
    .to_string()
}

fn echoing(token: &str) -> String {
    let message = format!(
        "OIDC token {token} is not valid for this role; your last keys were {SK} ({}) with {STS_TOKEN} ({})\u{1b}[2J\u{1b}]0;pwned\u{7}",
        fnf::sign::percent_encode(SK),
        fnf::sign::percent_encode(&fnf::sign::percent_encode(STS_TOKEN)),
    );
    serde_json::json!({
        "Code": "AuthenticationFail.OIDCToken.Invalid",
        "Message": message,
        "RequestId": format!("req-{token}"),
    })
    .to_string()
}

/// The form body of one request (head, then `content-length` bytes).
async fn read_form(conn: &mut tokio::net::TcpStream) -> Option<HashMap<String, String>> {
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
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// No form of the token or of the keys in `text` (the panic quotes where).
fn assert_clean(what: &str, text: &str) {
    let secrets = [OIDC_TOKEN, TOKEN_PART, STS_TOKEN, "CAIS-sts-token", SK]
        .into_iter()
        .map(String::from)
        // "testAccessKeySecret" is in every encoding of SK.
        .chain(["testAccessKeySecret".to_string()]);
    for secret in secrets {
        if let Some(at) = text.find(&secret) {
            let mut from = at.saturating_sub(300);
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            let mut to = (at + secret.len() + 300).min(text.len());
            while !text.is_char_boundary(to) {
                to += 1;
            }
            panic!("{secret} in {what}: …{}…", &text[from..to]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sts_error_echoing_the_token_and_keys_leaks_neither_to_status_events_or_logs() {
    let c = installed();
    let ns = c.namespace("sts-echo");
    let cloud = Cloud::new(|_| {}).await;
    cloud.flow("f").await;
    for e in ["e1", "e2", "e3"] {
        cloud.start("f", e, None).await;
    }
    let sts = Sts::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, OIDC_TOKEN).unwrap();
    let log = dir.path().join("operator.log");
    let op = Operator::start_with(
        &ns,
        &cloud.emu.url(),
        &[],
        &[
            ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::123:role/flowstop"),
            (
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                "acs:ram::123:oidc-provider/ack-rrsa-c1",
            ),
            (
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
                token_file.to_str().unwrap(),
            ),
            ("ALIBABA_CLOUD_STS_ENDPOINT", &sts.url),
        ],
        Some(&log),
    )
    .await;

    // Granted: the keys are cached, and stop the first execution.
    c.apply(&ExecutionStop::new(&ns, "first", "f", "e1").yaml());
    wait_for(c, &ns, "first", "jsonpath={.status.phase}=Stopped");
    let granted = sts.granted_at().expect("the STS granted keys");
    assert_eq!(sts.seen.lock().unwrap().0, vec![OIDC_TOKEN.to_string()]);

    // While the keys are valid a refused refresh is logged and the cached keys are used.
    c.apply(&ExecutionStop::new(&ns, "second", "f", "e2").yaml());
    wait_for(c, &ns, "second", "jsonpath={.status.phase}=Stopped");
    let refused_while_valid = granted.elapsed() < KEYS_LIVE;

    // Once they expire, the refusal is the object's.
    if let Some(left) = KEYS_LIVE.checked_sub(granted.elapsed()) {
        tokio::time::sleep(left + Duration::from_secs(1)).await;
    }
    c.apply(&ExecutionStop::new(&ns, "third", "f", "e3").yaml());
    wait_for(
        c,
        &ns,
        "third",
        "jsonpath={.status.lastError.code}=CredentialsNotFound",
    );
    wait_event(c, &ns, "Warning", "CredentialsNotFound").await;
    op.stop().await;

    // Nothing of the token or the keys anywhere a user or an administrator reads.
    let objects: Vec<(String, String)> = ["first", "second", "third"]
        .iter()
        .map(|name| {
            let object = c.must(&["get", "estop", "-n", &ns, name, "-o", "json"], None);
            (format!("the object {name}"), object)
        })
        .collect();
    let events = c.must(&["get", "events", "-n", &ns, "-o", "json"], None);
    let logged = std::fs::read_to_string(&log).unwrap();
    for (what, text) in &objects {
        assert_clean(what, text);
    }
    assert_clean("the events", &events);
    assert_clean("the operator's log", &logged);
    // JSON writes a raw ESC as \u001b; a clean message shows it as the text \u{1b}.
    for (what, text) in objects
        .iter()
        .chain([&("the events".to_string(), events.clone())])
    {
        assert!(!text.contains("\\u001b"), "a raw ESC in {what}: {text}");
    }

    // And the refusal is there to read, redacted.
    let s = status(c, &ns, "third");
    assert_eq!(s["phase"], "Pending", "{s}");
    let message = s["lastError"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("STS AssumeRoleWithOIDC failed")
            && message.contains("AuthenticationFail.OIDCToken.Invalid")
            && message.contains("[redacted]")
            && message.contains("\\u{1b}[2J"),
        "{message}"
    );
    assert!(events.contains("STS AssumeRoleWithOIDC failed"), "{events}");
    assert!(sts.calls() >= 3, "the STS was asked again: {}", sts.calls());
    assert!(cloud.count("StopExecution", "OK") >= 2);
    assert!(
        logged.contains("STS AssumeRoleWithOIDC failed"),
        "the refusal is logged"
    );
    if refused_while_valid {
        assert!(
            logged.contains("STS refresh failed"),
            "the refresh failure while the keys were valid is logged"
        );
    }
}
