//! Signed calls to the fnf 2019-03-15 RPC API.

use super::credentials::Credentials;
use super::http::{read_capped, rpc_timestamp, transport_error};
use super::redact::{MAX_EXCERPT, MAX_MESSAGE, MAX_SHORT, Redactor};
use super::sign::{encode_pairs, sign};
use super::types::{Execution, ExecutionList, ListRequest, StopRequest};
use super::{Endpoint, FnfError};
use jiff::Timestamp;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

pub const API_VERSION: &str = "2019-03-15";

/// Where one call goes and whose keys sign it.
#[derive(Clone, Debug)]
pub struct Account {
    pub endpoint: Endpoint,
    pub credentials: Credentials,
}

/// The fnf client. Cheap to clone: the `reqwest` client inside is shared.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    /// The total time a call may take, before any long-poll wait is added.
    timeout: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
    request_id: Option<String>,
}

/// The parameters of one call, before signing: what travels in the query and what in the body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Unsigned {
    pub method: &'static str,
    pub action: &'static str,
    /// Operation parameters sent in the query (GET actions, and `RequestId`).
    pub query: Vec<(&'static str, String)>,
    /// Operation parameters sent as an `application/x-www-form-urlencoded` body (POST actions).
    pub body: Vec<(&'static str, String)>,
}

impl Unsigned {
    /// The full query with the common parameters and `Signature`, the way the Tea SDK sends
    /// it. Pure: the caller supplies time and nonce.
    pub fn signed_query(
        &self,
        creds: &Credentials,
        now: Timestamp,
        nonce: &str,
    ) -> Vec<(&'static str, String)> {
        let mut query: Vec<(&'static str, String)> = vec![
            ("AccessKeyId", creds.access_key_id.clone()),
            ("Action", self.action.into()),
            ("Format", "JSON".into()),
            ("SignatureMethod", "HMAC-SHA1".into()),
            ("SignatureNonce", nonce.into()),
            ("SignatureVersion", "1.0".into()),
            ("Timestamp", rpc_timestamp(now)),
            ("Version", API_VERSION.into()),
        ];
        if let Some(token) = &creds.security_token {
            query.push(("SecurityToken", token.expose().into()));
        }
        query.extend(self.query.iter().cloned());
        let all = query
            .iter()
            .chain(self.body.iter())
            .map(|(k, v)| (*k, v.as_str()));
        let signature = sign(self.method, all, creds.access_key_secret.expose());
        query.push(("Signature", signature));
        query
    }
}

fn push_opt(params: &mut Vec<(&'static str, String)>, name: &'static str, value: &Option<String>) {
    if let Some(v) = value {
        params.push((name, v.clone()));
    }
}

impl StopRequest {
    pub fn unsigned(&self) -> Unsigned {
        let mut body = vec![
            ("FlowName", self.flow_name.clone()),
            ("ExecutionName", self.execution_name.clone()),
        ];
        push_opt(&mut body, "Cause", &self.cause);
        push_opt(&mut body, "Error", &self.error);
        let mut query = vec![];
        push_opt(&mut query, "RequestId", &self.request_id);
        Unsigned {
            method: "POST",
            action: "StopExecution",
            query,
            body,
        }
    }
}

impl Unsigned {
    pub fn describe(flow: &str, execution: &str, wait_seconds: Option<u32>) -> Self {
        let mut query = vec![
            ("FlowName", flow.to_string()),
            ("ExecutionName", execution.to_string()),
        ];
        push_opt(
            &mut query,
            "WaitTimeSeconds",
            &wait_seconds.map(|w| w.min(60).to_string()),
        );
        Unsigned {
            method: "GET",
            action: "DescribeExecution",
            query,
            body: vec![],
        }
    }

    /// CreateFlow, for tooling and tests.
    pub fn create_flow(name: &str, definition: &str) -> Self {
        let body = vec![
            ("Name", name.to_string()),
            ("Definition", definition.to_string()),
        ];
        Unsigned {
            method: "POST",
            action: "CreateFlow",
            query: vec![],
            body,
        }
    }

    pub fn start(flow: &str, execution: Option<&str>, input: Option<&str>) -> Self {
        let mut body = vec![("FlowName", flow.to_string())];
        push_opt(&mut body, "ExecutionName", &execution.map(String::from));
        push_opt(&mut body, "Input", &input.map(String::from));
        Unsigned {
            method: "POST",
            action: "StartExecution",
            query: vec![],
            body,
        }
    }

    pub fn list(req: &ListRequest) -> Self {
        let mut query = vec![("FlowName", req.flow_name.clone())];
        push_opt(&mut query, "Status", &req.status);
        push_opt(
            &mut query,
            "ExecutionNamePrefix",
            &req.execution_name_prefix,
        );
        push_opt(&mut query, "StartedTimeBegin", &req.started_time_begin);
        push_opt(&mut query, "StartedTimeEnd", &req.started_time_end);
        push_opt(&mut query, "NextToken", &req.next_token);
        push_opt(&mut query, "Limit", &req.limit.map(|l| l.to_string()));
        Unsigned {
            method: "GET",
            action: "ListExecutions",
            query,
            body: vec![],
        }
    }
}

/// How much longer than usual a long-poll of `wait_seconds` may take.
pub fn long_poll(wait_seconds: Option<u32>) -> Duration {
    Duration::from_secs(wait_seconds.unwrap_or(0).min(60).into())
}

/// A fresh `SignatureNonce`: 32 lowercase hex digits, like the official SDKs send.
pub fn nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Client {
    pub fn new(http: reqwest::Client, timeout: Duration) -> Self {
        Self { http, timeout }
    }

    pub async fn stop_execution(
        &self,
        account: &Account,
        req: &StopRequest,
    ) -> Result<Execution, FnfError> {
        self.call(account, &req.unsigned(), Duration::ZERO).await
    }

    /// DescribeExecution; `wait_seconds` (0–60) long-polls until the execution ends.
    pub async fn describe_execution(
        &self,
        account: &Account,
        flow: &str,
        execution: &str,
        wait_seconds: Option<u32>,
    ) -> Result<Execution, FnfError> {
        let unsigned = Unsigned::describe(flow, execution, wait_seconds);
        self.call(account, &unsigned, long_poll(wait_seconds)).await
    }

    pub async fn start_execution(
        &self,
        account: &Account,
        flow: &str,
        execution: Option<&str>,
        input: Option<&str>,
    ) -> Result<Execution, FnfError> {
        self.call(
            account,
            &Unsigned::start(flow, execution, input),
            Duration::ZERO,
        )
        .await
    }

    pub async fn list_executions(
        &self,
        account: &Account,
        req: &ListRequest,
    ) -> Result<ExecutionList, FnfError> {
        self.call(account, &Unsigned::list(req), Duration::ZERO)
            .await
    }

    /// Signs and sends one call and decodes the answer. `extra` lengthens the timeout
    /// for long-polls.
    pub async fn call<T: DeserializeOwned>(
        &self,
        account: &Account,
        unsigned: &Unsigned,
        extra: Duration,
    ) -> Result<T, FnfError> {
        let query = unsigned.signed_query(&account.credentials, Timestamp::now(), &nonce());
        let mut url = account.endpoint.base_url();
        url.set_query(Some(&encode_pairs(
            query.iter().map(|(k, v)| (*k, v.as_str())),
        )));
        let method =
            reqwest::Method::from_bytes(unsigned.method.as_bytes()).expect("static method");
        let mut builder = self
            .http
            .request(method, url)
            .timeout(self.timeout + extra)
            .header("x-acs-action", unsigned.action)
            .header("x-acs-version", API_VERSION);
        if unsigned.method == "POST" {
            let body = encode_pairs(unsigned.body.iter().map(|(k, v)| (*k, v.as_str())));
            builder = builder
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
        }
        let resp = builder.send().await.map_err(transport_error)?;
        let (status, body) = read_capped(resp).await?;
        // Alibaba's gateway can echo the string it signed (which holds the SecurityToken,
        // percent-encoded once or twice) in a signature error, and this text ends up in
        // status and Events: the keys are redacted from it.
        decode_with(
            status,
            &body,
            &Redactor::for_credentials(&account.credentials),
        )
    }
}

/// Turns a status and body into the typed answer or a typed error. The error's text is
/// bounded and printable; `decode_with` also removes known secrets from it.
pub fn decode<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, FnfError> {
    decode_with(status, body, &Redactor::none())
}

/// As `decode`, every text of the error cleaned by `redactor` (before any cut, so that no
/// beginning of a secret is left at the end of an excerpt).
pub fn decode_with<T: DeserializeOwned>(
    status: u16,
    body: &[u8],
    redactor: &Redactor,
) -> Result<T, FnfError> {
    let excerpt = || redactor.clean_bytes(body, MAX_EXCERPT);
    if (200..300).contains(&status) {
        return serde_json::from_slice(body).map_err(|e| FnfError::BadResponse {
            status,
            detail: redactor
                .clean(
                    &format!("not the expected JSON ({e}): {}", excerpt()),
                    MAX_MESSAGE,
                )
                .into(),
        });
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            code: Some(code),
            message,
            request_id,
        }) => Err(FnfError::Api {
            status,
            code: redactor.clean(&code, MAX_SHORT).into(),
            message: redactor
                .clean(message.as_deref().unwrap_or_default(), MAX_MESSAGE)
                .into(),
            request_id: request_id.map(|r| redactor.clean(&r, MAX_SHORT).into()),
        }),
        _ => Err(FnfError::BadResponse {
            status,
            detail: format!("not an fnf error body: {}", excerpt()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExecutionStatus;

    #[test]
    fn echoed_secrets_and_tokens_are_redacted_from_errors() {
        use crate::sign::percent_encode;
        let creds = Credentials::new("id", "se/cret+", Some("to=ken/1".into()));
        let redactor = Redactor::for_credentials(&creds);
        let echoed = format!(
            "server string to sign is: GET&%2F&AccessKeyId%3Did%26SecurityToken%3D{} raw {} and {}\u{1b}[2J",
            percent_encode(&percent_encode("to=ken/1")),
            "to=ken/1",
            percent_encode("se/cret+")
        );
        let body = serde_json::json!({
            "Code": "SignatureDoesNotMatch",
            "Message": echoed,
            "RequestId": "r to=ken/1",
        })
        .to_string();
        let e = decode_with::<Execution>(400, body.as_bytes(), &redactor).unwrap_err();
        let text = format!("{e} {e:?}");
        for leak in ["to=ken", "to%3Dken", "to%253Dken", "se/cret", "se%2Fcret"] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
        assert!(
            text.contains("[redacted]") && text.contains("AccessKeyId"),
            "{text}"
        );
        assert!(!e.to_string().contains('\u{1b}'), "{e}");
        assert_eq!(e.code(), Some("SignatureDoesNotMatch"));
    }

    #[test]
    fn a_secret_at_the_end_of_an_excerpt_is_redacted_whole() {
        let creds = Credentials::new("id", "secret-beyond-the-cut", None);
        let redactor = Redactor::for_credentials(&creds);
        for status in [200, 502] {
            // The secret straddles the excerpt's end.
            let body = format!("<html>{}secret-beyond-the-cut</html>", "x".repeat(190));
            let e = decode_with::<Execution>(status, body.as_bytes(), &redactor).unwrap_err();
            let text = e.to_string();
            assert!(!text.contains("secret-"), "{text}");
            assert!(text.ends_with("[red…"), "{text}");
        }
    }

    #[test]
    fn error_text_is_bounded_and_printable() {
        let body = serde_json::json!({
            "Code": format!("Code\u{9b}{}", "c".repeat(500)),
            "Message": format!("\u{1b}]0;title\u{7}{}", "m".repeat(100_000)),
            "RequestId": "r\n",
        })
        .to_string();
        let e = decode::<Execution>(500, body.as_bytes()).unwrap_err();
        let text = e.to_string();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(text.chars().count() < 1500, "{}", text.chars().count());
        assert!(text.starts_with("Code\\u{9b}ccc"), "{text}");
        assert_eq!(e.request_id(), Some("r\\u{a}"));
    }

    #[test]
    fn stop_puts_operation_params_in_the_body_and_request_id_in_the_query() {
        let req = StopRequest {
            flow_name: "f".into(),
            execution_name: "e".into(),
            cause: Some("c d".into()),
            error: None,
            request_id: Some("rid".into()),
        };
        let u = req.unsigned();
        assert_eq!(
            u.body,
            vec![
                ("FlowName", "f".into()),
                ("ExecutionName", "e".into()),
                ("Cause", "c d".into())
            ]
        );
        assert_eq!(u.query, vec![("RequestId", "rid".into())]);
        assert_eq!(u.method, "POST");
    }

    #[test]
    fn signed_query_carries_common_params_token_and_signature() {
        let creds = Credentials::new("id", "sk", Some("tok".into()));
        let now: Timestamp = "2024-01-02T03:04:05Z".parse().unwrap();
        let u = StopRequest {
            flow_name: "f".into(),
            execution_name: "e".into(),
            ..Default::default()
        }
        .unsigned();
        let q = u.signed_query(&creds, now, "abc");
        let get = |k: &str| q.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("Timestamp"), Some("2024-01-02T03:04:05Z"));
        assert_eq!(get("SecurityToken"), Some("tok"));
        assert_eq!(get("SignatureNonce"), Some("abc"));
        let mut all: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend([("FlowName", "f"), ("ExecutionName", "e")]);
        assert_eq!(get("Signature"), Some(sign("POST", all, "sk").as_str()));
    }

    #[test]
    fn nonces_are_fresh_hex() {
        let (a, b) = (nonce(), nonce());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }

    #[test]
    fn decodes_success_errors_and_garbage() {
        let ok: Execution = decode(200, br#"{"Status":"Stopped","RequestId":"r"}"#).unwrap();
        assert_eq!(ok.status, ExecutionStatus::Stopped);

        let e = decode::<Execution>(
            404,
            br#"{"Code":"FlowNotExists","Message":"Flow  f does not exist.","RequestId":"r1"}"#,
        )
        .unwrap_err();
        assert_eq!(
            (e.code(), e.http_status(), e.request_id()),
            (Some("FlowNotExists"), Some(404), Some("r1"))
        );

        let e = decode::<Execution>(502, b"<html><body>Bad Gateway</body></html>").unwrap_err();
        assert!(
            matches!(e, FnfError::BadResponse { status: 502, .. }) && e.retryable(),
            "{e}"
        );

        let e = decode::<Execution>(200, br#"{"Status":"Stop"#).unwrap_err();
        assert!(
            matches!(e, FnfError::BadResponse { status: 200, .. }),
            "{e}"
        );

        let e = decode::<Execution>(200, br#"{"RequestId":"r"}"#).unwrap_err();
        assert!(e.to_string().contains("Status"), "{e}");
    }
}
