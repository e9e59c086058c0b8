//! Hostile answers become clear, typed errors: no panic, bounded memory, and no secret
//! in the error text (which ends up in status and Events).

use fnf::{self, Account, Credentials, Endpoint, ExecutionStatus, FnfError, StopRequest};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

const TOKEN: &str = "sts-token-that-must-not-leak";
const SECRET: &str = "access-key-secret-that-must-not-leak";

/// Serves one connection: reads the request head, then runs `answer` on the socket.
fn serve_one(answer: impl FnOnce(&mut std::net::TcpStream) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 65536];
        let mut seen = vec![];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap_or(0);
            if n == 0 {
                return;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        answer(&mut conn);
    });
    url
}

fn head(status: &str, ctype: &str, length: usize) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
    )
}

fn fixed(status: &'static str, ctype: &'static str, body: &'static str) -> String {
    serve_one(move |c| {
        let _ = c.write_all(format!("{}{body}", head(status, ctype, body.len())).as_bytes());
    })
}

async fn stop(url: &str) -> Result<fnf::Execution, FnfError> {
    let t = Duration::from_millis(800);
    let client = fnf::Client::new(fnf::http_client(t, t), t);
    let account = Account {
        endpoint: Endpoint::url(url, false).unwrap(),
        credentials: Credentials::new("ak", SECRET, Some(TOKEN.into())),
    };
    client
        .stop_execution(
            &account,
            &StopRequest {
                flow_name: "f".into(),
                execution_name: "e".into(),
                ..Default::default()
            },
        )
        .await
}

fn clean(e: &FnfError) -> String {
    let text = e.to_string();
    assert!(
        !text.contains(TOKEN) && !text.contains(SECRET),
        "secret in error text: {text}"
    );
    text
}

#[tokio::test]
async fn a_proxy_html_page_is_a_retryable_bad_response() {
    let e = stop(&fixed(
        "502 Bad Gateway",
        "text/html",
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
    ))
    .await
    .unwrap_err();
    let text = clean(&e);
    assert!(
        matches!(e, FnfError::BadResponse { status: 502, .. }) && e.retryable(),
        "{text}"
    );
    assert!(text.contains("502 Bad Gateway"), "{text}");
}

#[tokio::test]
async fn truncated_json_is_a_clear_error() {
    let e = stop(&fixed("200 OK", "application/json", r#"{"Status":"Stop"#))
        .await
        .unwrap_err();
    let text = clean(&e);
    assert!(
        matches!(e, FnfError::BadResponse { status: 200, .. }),
        "{text}"
    );
    assert!(text.contains("not the expected JSON"), "{text}");
}

#[tokio::test]
async fn a_connection_cut_mid_body_is_retryable() {
    let url = serve_one(|c| {
        let _ = c.write_all(
            format!("{}{{\"Status\":", head("200 OK", "application/json", 500)).as_bytes(),
        );
    });
    let e = stop(&url).await.unwrap_err();
    clean(&e);
    assert!(e.retryable(), "{e}");
}

#[tokio::test]
async fn a_wrong_content_type_with_html_is_refused() {
    let e = stop(&fixed("200 OK", "text/html", "<html>maintenance</html>"))
        .await
        .unwrap_err();
    assert!(clean(&e).contains("maintenance"), "{e}");
}

#[tokio::test]
async fn a_ten_megabyte_body_is_refused_without_reading_it() {
    let url = serve_one(|c| {
        let _ = c.write_all(head("200 OK", "application/json", 10 * 1024 * 1024).as_bytes());
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..160 {
            if c.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let e = stop(&url).await.unwrap_err();
    assert!(clean(&e).contains("body larger than 1048576 bytes"), "{e}");
}

#[tokio::test]
async fn an_endless_chunked_body_is_cut_at_the_cap() {
    let url = serve_one(|c| {
        let _ = c.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n");
        let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
        for _ in 0..400 {
            if c.write_all(chunk.as_bytes()).is_err() {
                return;
            }
        }
    });
    let e = stop(&url).await.unwrap_err();
    assert!(clean(&e).contains("body larger than"), "{e}");
}

#[tokio::test]
async fn missing_fields_are_named() {
    let e = stop(&fixed("200 OK", "application/json", r#"{"RequestId":"r"}"#))
        .await
        .unwrap_err();
    assert!(clean(&e).contains("Status"), "{e}");
}

#[tokio::test]
async fn an_unknown_status_is_kept_not_rejected() {
    let ok = stop(&fixed(
        "200 OK",
        "application/json",
        r#"{"Status":"Paused","RequestId":"r"}"#,
    ))
    .await
    .unwrap();
    assert_eq!(ok.status, ExecutionStatus::Other("Paused".into()));
}

#[tokio::test]
async fn a_trickling_server_times_out() {
    let url = serve_one(|c| {
        let body = r#"{"Status":"Stopped","RequestId":"r"}"#;
        let _ = c.write_all(head("200 OK", "application/json", body.len()).as_bytes());
        for b in body.bytes() {
            if c.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let started = std::time::Instant::now();
    let e = stop(&url).await.unwrap_err();
    clean(&e);
    assert!(matches!(e, FnfError::Timeout(_)), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by the call timeout"
    );
}

#[tokio::test]
async fn an_error_with_an_unexpected_body_keeps_the_status() {
    let e = stop(&fixed(
        "503 Service Unavailable",
        "text/plain",
        "upstream connect error",
    ))
    .await
    .unwrap_err();
    assert_eq!(e.http_status(), Some(503));
    assert!(e.retryable());
    assert!(clean(&e).contains("upstream connect error"));
}

/// A signed request goes to the host it was signed for and nowhere else: a 3xx is an
/// error, and the host it points to sees nothing.
#[tokio::test]
async fn a_redirect_is_not_followed() {
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let to = format!("http://{}/", target.local_addr().unwrap());
    let url = serve_one(move |c| {
        let body = "moved";
        let _ = c.write_all(
            format!(
                "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    });
    let e = stop(&url).await.unwrap_err();
    assert!(
        matches!(e, FnfError::BadResponse { status: 302, .. }),
        "{e:?}"
    );
    assert!(!e.retryable());
    clean(&e);
    // The client is done with the call: had it followed, its connection would be queued.
    assert!(
        target.accept().is_err(),
        "the redirect's target was connected to"
    );
}
