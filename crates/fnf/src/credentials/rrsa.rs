//! RRSA: exchange the pod's OIDC token for STS keys with the unsigned
//! `AssumeRoleWithOIDC` call (STS 2015-04-01), cache them, refresh them well before expiry.

use super::{Credentials, CredentialsError};
use crate::FnfError;
use crate::http::{read_capped, rpc_timestamp, transport_error};
use crate::redact::{MAX_EXCERPT, MAX_MESSAGE, MAX_SHORT, Redactor};
use crate::sign::encode_pairs;
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use tokio::sync::Mutex;

/// Everything RRSA needs, usually read from the variables ack-pod-identity-webhook injects.
#[derive(Clone, Debug, PartialEq)]
pub struct RrsaConfig {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    pub token_file: String,
    pub session_name: String,
    pub sts_endpoint: url::Url,
    pub duration_seconds: u32,
    /// Refresh this long before `Expiration` (the official SDKs use 15 minutes).
    pub refresh_margin: SignedDuration,
}

impl RrsaConfig {
    pub(super) fn from_env(get: &impl Fn(&str) -> Option<String>) -> Option<Self> {
        let role_arn = get(super::ENV_ROLE_ARN)?;
        let oidc_provider_arn = get(super::ENV_OIDC_PROVIDER_ARN)?;
        let token_file = get(super::ENV_OIDC_TOKEN_FILE)?;
        Some(Self {
            role_arn,
            oidc_provider_arn,
            token_file,
            session_name: get("ALIBABA_CLOUD_ROLE_SESSION_NAME")
                .unwrap_or_else(|| "flowstop".into()),
            sts_endpoint: sts_endpoint(
                get("ALIBABA_CLOUD_STS_ENDPOINT"),
                get("ALIBABA_CLOUD_STS_REGION"),
                get("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED")
                    .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            ),
            duration_seconds: 3600,
            refresh_margin: SignedDuration::from_mins(15),
        })
    }
}

/// `ALIBABA_CLOUD_STS_ENDPOINT` (a host, or a URL) wins; else the regional host, VPC or
/// public; else the global `sts.aliyuncs.com`.
pub fn sts_endpoint(endpoint: Option<String>, region: Option<String>, vpc: bool) -> url::Url {
    let text = match (endpoint, region) {
        (Some(e), _) if e.contains("://") => e,
        (Some(host), _) => format!("https://{host}"),
        (None, Some(r)) if vpc => format!("https://sts-vpc.{r}.aliyuncs.com"),
        (None, Some(r)) => format!("https://sts.{r}.aliyuncs.com"),
        (None, None) => "https://sts.aliyuncs.com".into(),
    };
    url::Url::parse(&text)
        .unwrap_or_else(|_| url::Url::parse("https://sts.aliyuncs.com").expect("static URL"))
}

#[derive(Debug)]
pub struct RrsaProvider {
    config: RrsaConfig,
    http: reqwest::Client,
    cached: Mutex<Option<(Credentials, Timestamp)>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsAnswer {
    credentials: Option<StsCredentials>,
    code: Option<String>,
    message: Option<String>,
    request_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    expiration: String,
}

impl RrsaProvider {
    pub fn new(config: RrsaConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            http,
            cached: Mutex::new(None),
        }
    }

    pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        self.credentials_at(Timestamp::now()).await
    }

    /// The cached keys while they are fresh at `now`, otherwise new ones from STS. If a
    /// refresh fails while the old keys are still valid, the old keys are used.
    pub async fn credentials_at(&self, now: Timestamp) -> Result<Credentials, CredentialsError> {
        let mut cached = self.cached.lock().await;
        if let Some((creds, expiration)) = cached.as_ref() {
            if now < *expiration - self.config.refresh_margin {
                return Ok(creds.clone());
            }
        }
        let held = cached.as_ref().map(|(creds, _)| creds);
        match self.assume_role(now, held).await {
            Ok((creds, expiration)) => {
                *cached = Some((creds.clone(), expiration));
                Ok(creds)
            }
            Err(e) => match cached.as_ref() {
                Some((creds, expiration)) if now < *expiration => {
                    tracing::warn!(error = %e, "STS refresh failed; using keys that are still valid");
                    Ok(creds.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// One AssumeRoleWithOIDC. Every error's text is cleaned of the token sent and of the
    /// keys `held` (an STS, or a proxy before it, may echo either), bounded and printable.
    async fn assume_role(
        &self,
        now: Timestamp,
        held: Option<&Credentials>,
    ) -> Result<(Credentials, Timestamp), CredentialsError> {
        // Re-read at every refresh: the kubelet rotates the projected token.
        let token = self.read_token().await?;
        let token = token.trim();
        let mut redactor = Redactor::new([token]);
        if let Some(held) = held {
            redactor = redactor.with_credentials(held);
        }
        let (status, bytes) = self.call_sts(now, token, &redactor).await?;
        sts_keys(status, &bytes, &redactor)
    }

    /// The OIDC token file's content; an error names the file and why, both made printable
    /// (there is no secret to remove yet).
    async fn read_token(&self) -> Result<String, CredentialsError> {
        let c = &self.config;
        tokio::fs::read_to_string(&c.token_file).await.map_err(|e| {
            let none = Redactor::none();
            CredentialsError::TokenFile {
                path: none.clean(&c.token_file, MAX_MESSAGE),
                reason: none.clean(&e.to_string(), MAX_MESSAGE),
            }
        })
    }

    /// Sends the unsigned request (the role and the token in the form body) and reads the
    /// answer's status and body, up to the cap; a transport error's text is cleaned.
    async fn call_sts(
        &self,
        now: Timestamp,
        token: &str,
        redactor: &Redactor,
    ) -> Result<(u16, Bytes), CredentialsError> {
        let c = &self.config;
        let timestamp = rpc_timestamp(now);
        let query = [
            ("Action", "AssumeRoleWithOIDC"),
            ("Format", "JSON"),
            ("Version", "2015-04-01"),
            ("Timestamp", timestamp.as_str()),
        ];
        let duration = c.duration_seconds.to_string();
        let body = [
            ("RoleArn", c.role_arn.as_str()),
            ("OIDCProviderArn", c.oidc_provider_arn.as_str()),
            ("OIDCToken", token),
            ("RoleSessionName", c.session_name.as_str()),
            ("DurationSeconds", duration.as_str()),
        ];
        let mut url = c.sts_endpoint.clone();
        url.set_query(Some(&encode_pairs(query)));
        let unreachable = |e: FnfError| {
            CredentialsError::StsTransport(redactor.clean(&e.to_string(), MAX_MESSAGE))
        };
        let resp = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode_pairs(body))
            .send()
            .await
            .map_err(|e| unreachable(transport_error(e)))?;
        read_capped(resp).await.map_err(unreachable)
    }
}

/// The keys and their expiration from STS's answer; anything else is an error whose text
/// is cleaned by `redactor` (and of the answer's own keys, when only the expiration is bad).
fn sts_keys(
    status: u16,
    bytes: &[u8],
    redactor: &Redactor,
) -> Result<(Credentials, Timestamp), CredentialsError> {
    let answer: StsAnswer = serde_json::from_slice(bytes).map_err(|e| {
        CredentialsError::StsBadResponse(redactor.clean(
            &format!(
                "HTTP {status}, body is not STS JSON ({e}): {}",
                redactor.clean_bytes(bytes, MAX_EXCERPT)
            ),
            MAX_MESSAGE,
        ))
    })?;
    if status != 200 || answer.credentials.is_none() {
        let code = answer.code.as_deref().unwrap_or("Unknown");
        let message = answer.message.as_deref().unwrap_or_default();
        let request_id = answer.request_id.as_deref().unwrap_or("none");
        return Err(CredentialsError::Sts {
            status,
            code: redactor.clean(code, MAX_SHORT),
            message: redactor.clean(message, MAX_MESSAGE),
            request_id: redactor.clean(request_id, MAX_SHORT),
        });
    }
    let k = answer.credentials.expect("checked above");
    let expiration: Timestamp = k.expiration.parse().map_err(|e| {
        // The answer's own keys are secrets too.
        let redactor = redactor
            .clone()
            .with([k.access_key_secret.as_str(), k.security_token.as_str()]);
        CredentialsError::StsBadResponse(redactor.clean(
            &format!("Expiration \"{}\": {e}", k.expiration),
            MAX_MESSAGE,
        ))
    })?;
    Ok((
        Credentials::new(k.access_key_id, k.access_key_secret, Some(k.security_token)),
        expiration,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_endpoint_resolution() {
        let s = |e: Option<&str>, r: Option<&str>, vpc| {
            sts_endpoint(e.map(Into::into), r.map(Into::into), vpc)
        };
        assert_eq!(s(None, None, false).as_str(), "https://sts.aliyuncs.com/");
        assert_eq!(
            s(None, Some("cn-hangzhou"), false).as_str(),
            "https://sts.cn-hangzhou.aliyuncs.com/"
        );
        assert_eq!(
            s(None, Some("cn-hangzhou"), true).as_str(),
            "https://sts-vpc.cn-hangzhou.aliyuncs.com/"
        );
        assert_eq!(
            s(
                Some("sts-vpc.cn-beijing.aliyuncs.com"),
                Some("cn-hangzhou"),
                false
            )
            .as_str(),
            "https://sts-vpc.cn-beijing.aliyuncs.com/"
        );
        assert_eq!(
            s(Some("http://127.0.0.1:9000"), None, false).as_str(),
            "http://127.0.0.1:9000/"
        );
    }
}
