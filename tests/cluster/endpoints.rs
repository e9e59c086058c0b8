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
    // `localhost` is on this operator's allowlist: only the user information refuses the
    // second one, and the server would be reached without that rule.
    let tricks = [
        ("plain", url.clone()),
        (
            "userinfo",
            format!(
                "https://cn-hangzhou.fnf.aliyuncs.com@localhost:{}/",
                server.port
            ),
        ),
    ];
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
