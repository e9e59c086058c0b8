//! Typed errors of fnf calls, with their kind (what decisions match on) and a retry verdict.

use super::credentials::CredentialsError;

/// What went wrong with one fnf call.
#[derive(Clone, Debug, thiserror::Error)]
pub enum FnfError {
    /// The service answered with an error body (`Code`, `Message`, `RequestId`).
    #[error("{code}: {message} (HTTP {status}, request id {})", request_id.as_deref().unwrap_or("none"))]
    Api {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// The answer was not the JSON we expect: a proxy's HTML page, a truncated or
    /// oversized body, a wrong content type.
    #[error("unexpected response (HTTP {status}): {detail}")]
    BadResponse { status: u16, detail: String },
    /// No answer in time (connect, or the whole call).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The connection could not be made or broke mid-call.
    #[error("connection failed: {0}")]
    Connect(String),
    /// No usable credentials.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The request itself is unusable (a bad endpoint, say); never sent.
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Codes the service documents as transient.
const RETRYABLE_CODES: &[&str] = &[
    "ConcurrentUpdateError",
    "ResourceThrottled",
    "InternalServerError",
];

/// What kind of failure an `FnfError` is: decisions match on this, exhaustively, so a
/// new kind cannot silently fall into another's handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// StopExecution's "this execution already ended": an outcome, not a failure.
    AlreadyCompleted,
    /// The flow or execution does not exist (404).
    NotFound,
    /// The service's quota (429, `ResourceThrottled`).
    Throttled,
    /// A concurrent update (409).
    Conflict,
    /// Keys refused, unauthorized, or a skewed clock (401/403).
    Auth,
    /// The service failed (5xx with an error body).
    Server,
    /// The service refused the request as it is (other 4xx), or it was never sendable.
    Invalid,
    /// An answer that is not the JSON expected (a proxy's page, a redirect, garbage).
    BadResponse,
    Timeout,
    Connect,
    /// No usable credentials (RRSA or STS failed, nothing configured).
    Credentials,
    /// An error body with a status outside 4xx/5xx.
    Other,
}

impl ErrorKind {
    /// A small, fixed label (for metrics, events and exit codes); never the free-form message.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlreadyCompleted => "already_completed",
            Self::NotFound => "not_found",
            Self::Throttled => "throttled",
            Self::Conflict => "conflict",
            Self::Auth => "auth",
            Self::Server => "server",
            Self::Invalid => "invalid",
            Self::BadResponse => "bad_response",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Credentials => "credentials",
            Self::Other => "other",
        }
    }
}

/// The one code that is an outcome rather than a failure.
const ALREADY_COMPLETED: &str = "ExecutionAlreadyCompleted";

impl FnfError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Api { status, code, .. } => match (code.as_str(), *status) {
                (ALREADY_COMPLETED, _) => ErrorKind::AlreadyCompleted,
                ("FlowNotExists" | "ExecutionNotExists", _) => ErrorKind::NotFound,
                ("ResourceThrottled", _) | (_, 429) => ErrorKind::Throttled,
                ("ConcurrentUpdateError", _) | (_, 409) => ErrorKind::Conflict,
                (
                    "SignatureNotMatch"
                    | "InvalidAccessKeyID"
                    | "RequestTimeTooSkewed"
                    | "AccessDenied",
                    _,
                ) => ErrorKind::Auth,
                (_, 401 | 403) => ErrorKind::Auth,
                (_, 500..=599) => ErrorKind::Server,
                (_, 400..=499) => ErrorKind::Invalid,
                _ => ErrorKind::Other,
            },
            Self::BadResponse { .. } => ErrorKind::BadResponse,
            Self::Timeout(_) => ErrorKind::Timeout,
            Self::Connect(_) => ErrorKind::Connect,
            Self::Credentials(_) => ErrorKind::Credentials,
            Self::Invalid(_) => ErrorKind::Invalid,
        }
    }

    /// Whether trying the same call again later can succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Api { status, code, .. } => {
                RETRYABLE_CODES.contains(&code.as_str())
                    || matches!(status, 409 | 429 | 500 | 502 | 503 | 504)
            }
            // A gateway's HTML error page is as transient as the gateway; a garbled 2xx
            // or 4xx is not going to change by asking again.
            Self::BadResponse { status, .. } => matches!(status, 500 | 502 | 503 | 504),
            Self::Timeout(_) | Self::Connect(_) => true,
            Self::Credentials(e) => e.retryable(),
            Self::Invalid(_) => false,
        }
    }

    /// Whether the call may have reached the service and taken effect although no
    /// answer says so: a lost or unreadable answer, or a server-side failure.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Self::Api { status, .. } => *status >= 500,
            Self::BadResponse { status, .. } => *status >= 500 || (200..300).contains(status),
            Self::Timeout(_) | Self::Connect(_) => true,
            Self::Credentials(_) | Self::Invalid(_) => false,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::BadResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Api { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> FnfError {
        FnfError::Api {
            status,
            code: code.into(),
            message: "m".into(),
            request_id: Some("r".into()),
        }
    }

    /// Every row of the StopExecution error table in the seed document, plus gateway statuses.
    #[test]
    fn classifies_every_documented_error() {
        let table: &[(u16, &str, &str, bool)] = &[
            (400, "ActionNotSupported", "invalid", false),
            (400, "APIVersionNotSupported", "invalid", false),
            (400, "EntityTooLarge", "invalid", false),
            (400, "ExecutionAlreadyCompleted", "already_completed", false),
            (400, "InvalidArgument", "invalid", false),
            (400, "MissingRequiredHeader", "invalid", false),
            (400, "MissingRequiredParams", "invalid", false),
            (403, "AccessDenied", "auth", false),
            (403, "InvalidAccessKeyID", "auth", false),
            (403, "RequestTimeTooSkewed", "auth", false),
            (403, "SignatureNotMatch", "auth", false),
            (404, "ExecutionNotExists", "not_found", false),
            (404, "FlowNotExists", "not_found", false),
            (409, "ConcurrentUpdateError", "conflict", true),
            (415, "UnsupportedMediaType", "invalid", false),
            (429, "ResourceThrottled", "throttled", true),
            (500, "InternalServerError", "server", true),
            (502, "BadGateway", "server", true),
            (503, "ServiceUnavailable", "server", true),
            (504, "GatewayTimeout", "server", true),
            (501, "NotImplemented", "server", false),
        ];
        for &(status, code, category, retryable) in table {
            let e = api(status, code);
            assert_eq!(e.kind().as_str(), category, "{status} {code}");
            assert_eq!(e.retryable(), retryable, "{status} {code}");
            assert_eq!(
                e.kind() == ErrorKind::AlreadyCompleted,
                code == "ExecutionAlreadyCompleted"
            );
        }
    }

    #[test]
    fn classifies_transport_failures() {
        let cases = [
            (FnfError::Timeout("t".into()), "timeout", true),
            (FnfError::Connect("reset".into()), "connect", true),
            (
                FnfError::BadResponse {
                    status: 502,
                    detail: "html".into(),
                },
                "bad_response",
                true,
            ),
            (
                FnfError::BadResponse {
                    status: 200,
                    detail: "truncated".into(),
                },
                "bad_response",
                false,
            ),
            (FnfError::Invalid("x".into()), "invalid", false),
        ];
        for (e, category, retryable) in cases {
            assert_eq!(e.kind().as_str(), category, "{e}");
            assert_eq!(e.retryable(), retryable, "{e}");
        }
    }

    #[test]
    fn display_carries_code_message_status_and_request_id() {
        assert_eq!(
            api(404, "FlowNotExists").to_string(),
            "FlowNotExists: m (HTTP 404, request id r)"
        );
    }
}
