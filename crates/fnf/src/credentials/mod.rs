//! Credentials for signing fnf calls, and the chain that finds them:
//! static (e.g. from a Kubernetes Secret) → environment → RRSA (OIDC → STS).

mod rrsa;

pub use rrsa::{RrsaConfig, RrsaProvider};

use crate::redact::Clean;
use std::fmt;
use std::sync::Arc;

/// A secret string. `Debug` and `Display` never show it; only `expose` does.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One set of keys. An STS set carries a security token, sent as `SecurityToken`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Option<Secret>,
}

impl Credentials {
    pub fn new(id: impl Into<String>, secret: impl Into<String>, token: Option<String>) -> Self {
        Self {
            access_key_id: id.into(),
            access_key_secret: Secret::new(secret),
            security_token: token.filter(|t| !t.is_empty()).map(Secret::new),
        }
    }
}

pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
pub const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";

/// Why there are no keys. Every text field is `Clean`: what STS answered (and the reason a
/// call failed) went through the provider's `Redactor`, which knows the OIDC token sent and
/// the keys held, so neither `Display` nor `Debug` can carry them, and both are bounded and
/// free of control characters. These errors end up in the status and Events of every object
/// using the operator's credentials, and in its logs.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no credentials found: set {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} \
         (optionally {ENV_SECURITY_TOKEN}), or {ENV_ROLE_ARN}, {ENV_OIDC_PROVIDER_ARN} and \
         {ENV_OIDC_TOKEN_FILE} for RRSA"
    )]
    Missing,
    #[error("cannot read the OIDC token file {path}: {reason}")]
    TokenFile { path: Clean, reason: Clean },
    #[error(
        "STS AssumeRoleWithOIDC failed: {code}: {message} (HTTP {status}, request id {request_id})"
    )]
    Sts {
        status: u16,
        code: Clean,
        message: Clean,
        request_id: Clean,
    },
    #[error("STS AssumeRoleWithOIDC unreachable: {0}")]
    StsTransport(Clean),
    #[error("STS AssumeRoleWithOIDC gave an unusable answer: {0}")]
    StsBadResponse(Clean),
}

impl CredentialsError {
    pub fn retryable(&self) -> bool {
        match self {
            Self::StsTransport(_) => true,
            Self::Sts { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// Where a client gets its keys from.
#[derive(Clone, Debug)]
pub enum Provider {
    Static(Credentials),
    Rrsa(Arc<RrsaProvider>),
}

impl Provider {
    /// The default chain: environment keys, then RRSA. `env` looks a variable up, so callers
    /// decide where the environment comes from (tests pass a map).
    pub fn from_env(
        env: impl Fn(&str) -> Option<String>,
        http: reqwest::Client,
    ) -> Result<Self, CredentialsError> {
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        if let (Some(id), Some(secret)) = (get(ENV_ACCESS_KEY_ID), get(ENV_ACCESS_KEY_SECRET)) {
            return Ok(Self::Static(Credentials::new(
                id,
                secret,
                get(ENV_SECURITY_TOKEN),
            )));
        }
        if let Some(config) = RrsaConfig::from_env(&get) {
            return Ok(Self::Rrsa(Arc::new(RrsaProvider::new(config, http))));
        }
        Err(CredentialsError::Missing)
    }

    pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        match self {
            Self::Static(c) => Ok(c.clone()),
            Self::Rrsa(p) => p.credentials().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn secrets_are_redacted() {
        let c = Credentials::new("AKID", "topsecret", Some("tok3n".into()));
        let shown = format!("{c:?} {}", c.access_key_secret);
        assert!(
            !shown.contains("topsecret") && !shown.contains("tok3n"),
            "{shown}"
        );
        assert!(shown.contains("AKID"));
    }

    #[tokio::test]
    async fn environment_keys_come_first() {
        let e = env(&[
            (ENV_ACCESS_KEY_ID, "id"),
            (ENV_ACCESS_KEY_SECRET, "sk"),
            (ENV_SECURITY_TOKEN, "tok"),
            (ENV_ROLE_ARN, "acs:ram::1:role/r"),
            (ENV_OIDC_PROVIDER_ARN, "acs:ram::1:oidc-provider/p"),
            (ENV_OIDC_TOKEN_FILE, "/nonexistent"),
        ]);
        let p = Provider::from_env(e, reqwest::Client::new()).unwrap();
        let c = p.credentials().await.unwrap();
        assert_eq!(c, Credentials::new("id", "sk", Some("tok".into())));
    }

    #[test]
    fn rrsa_needs_all_three_variables() {
        let e = env(&[
            (ENV_ROLE_ARN, "acs:ram::1:role/r"),
            (ENV_OIDC_TOKEN_FILE, "/t"),
        ]);
        let err = Provider::from_env(e, reqwest::Client::new()).unwrap_err();
        assert!(matches!(err, CredentialsError::Missing));
        let e = env(&[
            (ENV_ROLE_ARN, "acs:ram::1:role/r"),
            (ENV_OIDC_PROVIDER_ARN, "acs:ram::1:oidc-provider/p"),
            (ENV_OIDC_TOKEN_FILE, "/t"),
        ]);
        assert!(matches!(
            Provider::from_env(e, reqwest::Client::new()).unwrap(),
            Provider::Rrsa(_)
        ));
    }

    #[test]
    fn missing_credentials_name_the_variables() {
        let msg = Provider::from_env(
            env(&[(ENV_ACCESS_KEY_ID, "only-id")]),
            reqwest::Client::new(),
        )
        .unwrap_err()
        .to_string();
        for var in [
            ENV_ACCESS_KEY_ID,
            ENV_ACCESS_KEY_SECRET,
            ENV_ROLE_ARN,
            ENV_OIDC_TOKEN_FILE,
        ] {
            assert!(msg.contains(var), "{msg}");
        }
        assert!(!msg.contains('\n'));
    }
}
