//! Typed errors of fnf calls, with a bounded category for metrics and a retry verdict.

use super::credentials::CredentialsError;

/// What went wrong with one fnf call.
#[derive(Debug, thiserror::Error)]
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

impl FnfError {
    /// A small, fixed set of labels (for metrics, events and exit codes); never the
    /// free-form message.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Api { status, code, .. } => match (code.as_str(), *status) {
                ("ExecutionAlreadyCompleted", _) => "already_completed",
                ("FlowNotExists" | "ExecutionNotExists", _) => "not_found",
                ("ResourceThrottled", _) | (_, 429) => "throttled",
                ("ConcurrentUpdateError", _) | (_, 409) => "conflict",
                (
                    "SignatureNotMatch"
                    | "InvalidAccessKeyID"
                    | "RequestTimeTooSkewed"
                    | "AccessDenied",
                    _,
                ) => "auth",
                (_, 401 | 403) => "auth",
                (_, 500..=599) => "server",
                (_, 400..=499) => "invalid",
                _ => "other",
            },
            Self::BadResponse { .. } => "bad_response",
            Self::Timeout(_) => "timeout",
            Self::Connect(_) => "connect",
            Self::Credentials(_) => "credentials",
            Self::Invalid(_) => "invalid",
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

    /// StopExecution's "this execution already ended": an outcome, not a failure.
    pub fn is_already_completed(&self) -> bool {
        matches!(self, Self::Api { code, .. } if code == "ExecutionAlreadyCompleted")
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
            assert_eq!(e.category(), category, "{status} {code}");
            assert_eq!(e.retryable(), retryable, "{status} {code}");
            assert_eq!(
                e.is_already_completed(),
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
            assert_eq!(e.category(), category, "{e}");
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
