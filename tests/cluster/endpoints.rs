//! Where an object's requests may go, end to end. The operator runs as its
//! ServiceAccount with its own credentials in its environment; local HTTPS servers (test
//! CA, loopback) stand in for hosts an ExecutionStop author might name, and count every
//! connection they get.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use testkit::cloud::Cloud;
use testkit::cloud::{AK, SK};
use testkit::fixtures::{ExecutionStop, secret};
use testkit::operator::{Operator, installed, status, wait_event, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OPERATOR_KEY_ID: &str = "LTAIoperatorOwnKeyId";
const OPERATOR_SECRET: &str = "operator-own-secret";
const OPERATOR_TOKEN: &str = "operator-own-sts-token";
/// In every answer of the foreign servers: it must never reach status or Events of an
/// object that was refused.
const BODY_MARKER: &str = "foreign-body-marker";

struct TestCa {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for localhost and 127.0.0.1.
fn test_ca() -> TestCa {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        d,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "1",
                "-subj",
                "/CN=flowstop test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    openssl(
        d,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "server.ext",
        ],
    );
    TestCa {
        ca: d.join("ca.crt"),
        cert: d.join("server.crt"),
        key: d.join("server.key"),
        _dir: dir,
    }
}

enum Answer {
    /// A StopExecution success, as fnf would give it.
    Stopped,
    /// 302 to this URL.
    Redirect(String),
}

/// An HTTPS server on loopback that records every connection and request.
struct Foreign {
    port: u16,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Foreign {
    async fn start(ca: &TestCa, answer: Answer) -> Foreign {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(&ca.cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&ca.key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections: Arc<AtomicUsize> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (c, r) = (Arc::clone(&connections), Arc::clone(&requests));
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (acceptor, r, answer) = (acceptor.clone(), Arc::clone(&r), answer.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let request = read_request(&mut tls).await;
                    r.lock().unwrap().push(request);
                    let response = match answer.as_ref() {
                        Answer::Stopped => {
                            let body = format!(
                                r#"{{"Status":"Stopped","RequestId":"{BODY_MARKER}","StoppedTime":"2026-01-01T00:00:00.000Z"}}"#
                            );
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            )
                        }
                        Answer::Redirect(to) => format!(
                            "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY_MARKER}",
                            BODY_MARKER.len()
                        ),
                    };
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Foreign {
            port,
            connections,
            requests,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Head and body of one HTTP/1.1 request.
async fn read_request(s: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return text;
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&buf).to_string(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn object(ns: &str, name: &str, endpoint: &str, own_secret: bool) -> String {
    let o = ExecutionStop::new(ns, name, "f", "e1")
        .endpoint(endpoint)
        .max_attempts(1);
    if own_secret { o.secret("creds") } else { o }.yaml()
}

/// The operator with its own keys and token in its environment, trusting the test CA,
/// and allowing `localhost` on top of Alibaba's hosts.
async fn operator(ns: &str, cloud: &Cloud, ca: &TestCa) -> Operator {
    Operator::start_with(
        ns,
        &cloud.emu.url(),
        &[
            "--extra-ca-file",
            ca.ca.to_str().unwrap(),
            "--allowed-endpoint-hosts",
            "*.fnf.aliyuncs.com,*.*.fnf.aliyuncs.com,localhost",
        ],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", OPERATOR_KEY_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", OPERATOR_SECRET),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", OPERATOR_TOKEN),
        ],
        None,
    )
    .await
}

/// Nothing of the operator's credentials or of a foreign answer in what users can read.
fn assert_nothing_leaked(ns: &str, name: &str) {
    let c = installed();
    let object = c.must(&["get", "estop", "-n", ns, name, "-o", "yaml"], None);
    let events = c.must(&["get", "events", "-n", ns, "-o", "yaml"], None);
    for (what, text) in [("status", &object), ("events", &events)] {
        for secret in [
            OPERATOR_KEY_ID,
            OPERATOR_SECRET,
            OPERATOR_TOKEN,
            BODY_MARKER,
        ] {
            assert!(
                !text.contains(secret),
                "{secret} in {what} of {name}: {text}"
            );
        }
    }
}

fn condition_reason(s: &serde_json::Value) -> String {
    s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_off_the_allowlist_gets_no_connection_unless_the_object_brings_its_own_keys() {
    let c = installed();
    let ns = c.namespace("foreign");
    let ca = test_ca();
    let server = Foreign::start(&ca, Answer::Stopped).await;
    let cloud = Cloud::new(|_| {}).await;
    c.apply(&secret(&ns, "creds", AK, SK));
    let op = operator(&ns, &cloud, &ca).await;
    let url = format!("https://127.0.0.1:{}/", server.port);
    // `localhost` is on this operator's allowlist: the user information in this one is
    // refused at admission, so the server never hears of it.
    let userinfo = format!(
        "https://cn-hangzhou.fnf.aliyuncs.com@localhost:{}/",
        server.port
    );
    let (ok, err) = c.try_apply(&object(&ns, "userinfo", &userinfo, false));
    assert!(!ok && err.contains("spec.endpoint"), "{err}");
    let tricks = [("plain", url.clone())];
    for (name, endpoint) in &tricks {
        c.apply(&object(&ns, name, endpoint, false));
    }
    for (name, _) in &tricks {
        wait_for(c, &ns, name, "jsonpath={.status.phase}=Failed");
        let s = status(c, &ns, name);
        assert_eq!(condition_reason(&s), "EndpointNotAllowed", "{name}: {s}");
        assert_eq!(s["lastError"]["code"], "EndpointNotAllowed", "{s}");
        assert_eq!(s["lastError"]["retryable"], false, "{s}");
        assert_eq!(s["attempts"], 0, "no attempt was made: {s}");
        let message = s["lastError"]["message"].as_str().unwrap();
        assert!(message.contains("spec.endpoint"), "{message}");
    }
    let events = wait_event(c, &ns, "Warning", "EndpointNotAllowed").await;
    assert!(events.contains("allowlist"), "{events}");
    assert_eq!(server.connections(), 0, "refused hosts see no connection");
    for (name, _) in &tricks {
        assert_nothing_leaked(&ns, name);
    }
    // The same endpoint with the object's own Secret goes through, with that Secret's key.
    c.apply(&object(&ns, "own", &url, true));
    wait_for(c, &ns, "own", "condition=Ready");
    assert_eq!(status(c, &ns, "own")["phase"], "Stopped");
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].contains(AK), "{}", requests[0]);
    for secret in [OPERATOR_KEY_ID, OPERATOR_TOKEN] {
        assert!(!requests[0].contains(secret), "{}", requests[0]);
    }
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_an_allowed_host_is_not_followed() {
    let c = installed();
    let ns = c.namespace("redirect");
    let ca = test_ca();
    let target = Foreign::start(&ca, Answer::Stopped).await;
    let allowed = Foreign::start(
        &ca,
        Answer::Redirect(format!("https://127.0.0.1:{}/", target.port)),
    )
    .await;
    let cloud = Cloud::new(|_| {}).await;
    let op = operator(&ns, &cloud, &ca).await;
    let endpoint = format!("https://localhost:{}/", allowed.port);
    c.apply(&object(&ns, "redirected", &endpoint, false));
    wait_for(c, &ns, "redirected", "jsonpath={.status.phase}=Failed");
    let s = status(c, &ns, "redirected");
    assert_eq!(s["lastError"]["httpStatus"], 302, "{s}");
    assert_eq!(s["lastError"]["code"], "BadResponse", "{s}");
    assert_eq!(allowed.requests().len(), 1, "the allowed host was called");
    assert_eq!(target.connections(), 0, "the redirect was not followed");
    let object = c.must(
        &["get", "estop", "-n", &ns, "redirected", "-o", "yaml"],
        None,
    );
    for secret in [OPERATOR_KEY_ID, OPERATOR_SECRET, OPERATOR_TOKEN] {
        assert!(!object.contains(secret), "{object}");
    }
    op.stop().await;
}

/// Spelling the operator's endpoint another way gains no quota: 300 objects on the
/// operator's credentials, their endpoints the emulator's spelled three ways (each its own
/// bucket before), and 10 of another tenant on the operator's default endpoint, against
/// the emulator's quota (10, 2/s, sped up 10×) with the operator's limiter at the same
/// figures: at most 2 % throttled, and every object Stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spellings_of_one_endpoint_share_one_quota() {
    let c = installed();
    let ns = c.namespace("quota-spell");
    let other = c.namespace("quota-other");
    let cloud = Cloud::new(|cfg| {
        cfg.no_quota = false;
        cfg.quota_speedup = 10.0;
        cfg.access_keys
            .push((OPERATOR_KEY_ID.into(), OPERATOR_SECRET.into()));
    })
    .await;
    cloud.flow("f").await;
    for n in 0..300 {
        cloud.start("f", &format!("s-{n:03}"), None).await;
    }
    for n in 0..10 {
        cloud.start("f", &format!("t-{n}"), None).await;
    }
    let op = Operator::start_with(
        &format!("{ns},{other}"),
        &cloud.emu.url(),
        &[
            "--stop-rate",
            "20",
            "--stop-burst",
            "10",
            "--allowed-endpoint-hosts",
            "127.0.0.1,localhost",
        ],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", OPERATOR_KEY_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", OPERATOR_SECRET),
        ],
        None,
    )
    .await;
    let port = cloud.emu.url().rsplit(':').next().unwrap().to_string();
    let spellings = [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}/"),
        format!("http://0x7f.0.0.1:{port}"),
    ];
    let objects: Vec<String> =
        (0..300)
            .map(|n| {
                ExecutionStop::new(&ns, &format!("s-{n:03}"), "f", &format!("s-{n:03}"))
                    .endpoint(&spellings[n % spellings.len()])
                    .yaml()
            })
            .chain((0..10).map(|n| {
                ExecutionStop::new(&other, &format!("t-{n}"), "f", &format!("t-{n}")).yaml()
            }))
            .collect();
    c.apply(&testkit::fixtures::list(objects));
    for n in 0..10 {
        wait_for(
            c,
            &other,
            &format!("t-{n}"),
            "jsonpath={.status.phase}=Stopped",
        );
    }
    testkit::operator::eventually("all 300 stopped", || async {
        cloud.count("StopExecution", "OK") >= 310
    })
    .await;
    let out = c.must(
        &[
            "get",
            "estop",
            "-n",
            &ns,
            "-o",
            "jsonpath={range .items[*]}{.status.phase}{\"\\n\"}{end}",
        ],
        None,
    );
    let stopped = out.lines().filter(|p| *p == "Stopped").count();
    assert_eq!(stopped, 300, "{out}");
    let throttled = cloud.count("StopExecution", "ResourceThrottled");
    let calls = cloud.calls("StopExecution");
    eprintln!("StopExecution: {calls} calls, {throttled} throttled");
    assert!(
        throttled * 50 <= calls,
        "{throttled} of {calls} StopExecution calls throttled (at most 2 %)"
    );
    op.stop().await;
}

/// `--allow-insecure-http` is the admin's word about the operator's own endpoint: a
/// tenant's plain-http endpoint off loopback is refused all the same, with its own keys
/// or the operator's, before any connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_insecure_http_does_not_extend_to_tenants() {
    let c = installed();
    let ns = c.namespace("insecure");
    let cloud = Cloud::new(|_| {}).await;
    cloud.flow("f").await;
    cloud.start("f", "e1", None).await;
    c.apply(&secret(&ns, "creds", AK, SK));
    let op = Operator::start_with(
        &ns,
        &cloud.emu.url(),
        &[
            "--allow-insecure-http",
            "--allowed-endpoint-hosts",
            "*.fnf.aliyuncs.com,fnf.tenant.test",
        ],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", OPERATOR_KEY_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", OPERATOR_SECRET),
        ],
        None,
    )
    .await;
    for (name, own) in [("own-keys", true), ("operator-keys", false)] {
        c.apply(&object(&ns, name, "http://fnf.tenant.test:9000", own));
    }
    for name in ["own-keys", "operator-keys"] {
        wait_for(c, &ns, name, "jsonpath={.status.phase}=Failed");
        let s = status(c, &ns, name);
        assert_eq!(condition_reason(&s), "InvalidRequest", "{name}: {s}");
        assert_eq!(s["attempts"], 0, "{name}: {s}");
        let msg = s["lastError"]["message"].as_str().unwrap();
        assert!(msg.contains("plain http"), "{msg}");
    }
    op.stop().await;
}
