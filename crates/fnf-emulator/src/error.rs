//! The fnf error answers the emulator gives, with the documented statuses and messages.

use axum::http::StatusCode;

#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn action_not_supported(action: &str) -> Self {
        Self::new(
            400,
            "ActionNotSupported",
            format!("The requested API operation '{action}' is incorrect. Please check."),
        )
    }
    pub fn version_not_supported(version: &str) -> Self {
        Self::new(
            400,
            "APIVersionNotSupported",
            format!("The requested API version '{version}' is not supported yet. Please check."),
        )
    }
    pub fn entity_too_large(limit: usize) -> Self {
        Self::new(
            400,
            "EntityTooLarge",
            format!("The payload size exceeds maximum allowed size ({limit} bytes)."),
        )
    }
    /// "Parameter error." is the documented text; the detail says which parameter.
    pub fn invalid_argument(detail: impl std::fmt::Display) -> Self {
        Self::new(400, "InvalidArgument", format!("Parameter error. {detail}"))
    }
    pub fn missing_param(name: &str) -> Self {
        Self::new(
            400,
            "MissingRequiredParams",
            format!("The HTTP query '{name}' must be specified."),
        )
    }
    pub fn already_completed(flow: &str, execution: &str) -> Self {
        Self::new(
            400,
            "ExecutionAlreadyCompleted",
            format!("Execution '{execution}' for flow '{flow}' has already completed."),
        )
    }
    pub fn execution_exists(flow: &str, execution: &str) -> Self {
        Self::new(
            400,
            "ExecutionAlreadyExists",
            format!("Execution {execution} for flow {flow} already exists."),
        )
    }
    pub fn nonce_used(nonce: &str) -> Self {
        Self::new(
            400,
            "SignatureNonceUsed",
            format!("The request signature nonce '{nonce}' has been used."),
        )
    }
    pub fn invalid_access_key(id: &str) -> Self {
        Self::new(
            403,
            "InvalidAccessKeyID",
            format!("The AccessKey ID {id} is invalid."),
        )
    }
    pub fn time_skewed(request: &str, now: &str) -> Self {
        Self::new(
            403,
            "RequestTimeTooSkewed",
            format!(
                "The difference between the request time {request} and the current time {now} is too large."
            ),
        )
    }
    pub fn signature_mismatch() -> Self {
        Self::new(
            403,
            "SignatureNotMatch",
            "The request signature we calculated does not match the signature you provided. \
             Check your access key and signing method.",
        )
    }
    pub fn flow_not_exists(flow: &str) -> Self {
        // Two spaces, as in Alibaba's own error table.
        Self::new(
            404,
            "FlowNotExists",
            format!("Flow  {flow} does not exist."),
        )
    }
    pub fn execution_not_exists(flow: &str, execution: &str) -> Self {
        Self::new(
            404,
            "ExecutionNotExists",
            format!("Execution {execution} for flow {flow} does not exist."),
        )
    }
    pub fn flow_exists(flow: &str) -> Self {
        Self::new(
            409,
            "FlowAlreadyExists",
            format!("Flow {flow} already exists."),
        )
    }
    pub fn concurrent_update() -> Self {
        Self::new(
            409,
            "ConcurrentUpdateError",
            "Update conflict, please retry.",
        )
    }
    pub fn unsupported_media_type() -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            "The content type must be \"application/json\".",
        )
    }
    pub fn throttled() -> Self {
        Self::new(
            429,
            "ResourceThrottled",
            "The request is throttled. Please try again later.",
        )
    }
    pub fn internal() -> Self {
        Self::new(
            500,
            "InternalServerError",
            "An internal error has occurred. Please retry.",
        )
    }
    /// The answer to a key that may not call the action (a RAM policy without it).
    pub fn access_denied() -> Self {
        Self::new(403, "AccessDenied", "The resources doesn't belong to you.")
    }
    /// By HTTP status, for injected faults.
    pub fn for_status(status: u16) -> Self {
        match status {
            403 => Self::access_denied(),
            409 => Self::concurrent_update(),
            429 => Self::throttled(),
            _ => Self {
                status,
                ..Self::internal()
            },
        }
    }
}
