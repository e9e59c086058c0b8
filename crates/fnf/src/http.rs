//! HTTP plumbing shared by the fnf and STS calls: endpoints, the one `reqwest` client,
//! size-capped body reads, and mapping transport failures to `FnfError`.

use super::FnfError;
use bytes::{Bytes, BytesMut};
use jiff::Timestamp;
use std::error::Error as _;
use std::time::Duration;

/// Response bodies beyond this are refused: no fnf answer is anywhere near it, and a
/// misbehaving proxy must not make us buffer without bound.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The one HTTP client of a process: rustls, pooled connections, bounded connect and
/// total time. Per-call timeouts may extend the total (long-poll).
pub fn http_client(connect_timeout: Duration, timeout: Duration) -> reqwest::Client {
    http_client_trusting(connect_timeout, timeout, None)
        .expect("a rustls client without extra roots always builds")
}

/// As `http_client`, also trusting the CA certificates of a PEM bundle (a private
/// endpoint, a TLS-inspecting proxy). Redirects are never followed: a signed request
/// goes to the host it was signed for and nowhere else, and a 3xx is an error.
pub fn http_client_trusting(
    connect_timeout: Duration,
    timeout: Duration,
    extra_ca_pem: Option<&[u8]>,
) -> Result<reqwest::Client, FnfError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("flowstop/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = extra_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| FnfError::Invalid(format!("extra CA certificates: {e}")))?;
        if certs.is_empty() {
            return Err(FnfError::Invalid(
                "extra CA certificates: no PEM certificate found".into(),
            ));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| FnfError::Invalid(format!("HTTP client: {e}")))
}

/// `Timestamp` as the RPC APIs want it: UTC, seconds, `Z`.
pub fn rpc_timestamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Where fnf calls go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `https://<region>[-internal].fnf.aliyuncs.com/`: region first, as Alibaba documents.
    Region { region: String, internal: bool },
    /// An explicit base URL (an emulator, a proxy, a private endpoint).
    Url(url::Url),
}

impl Endpoint {
    pub fn region(region: &str, internal: bool) -> Result<Self, FnfError> {
        let ok = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(FnfError::Invalid(format!(
                "region {region:?} is not a region id like cn-hangzhou"
            )));
        }
        Ok(Self::Region {
            region: region.into(),
            internal,
        })
    }

    /// An explicit URL. Plain http is accepted only for a loopback host, or when
    /// `allow_insecure_http` says the user asked for it: keys must not cross a network in clear.
    pub fn url(text: &str, allow_insecure_http: bool) -> Result<Self, FnfError> {
        let url = url::Url::parse(text)
            .map_err(|e| FnfError::Invalid(format!("endpoint {text:?}: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if allow_insecure_http || is_loopback(&url) => {}
            "http" => {
                return Err(FnfError::Invalid(format!(
                    "endpoint {text:?} is plain http to a non-loopback host; use https or allow insecure http explicitly"
                )));
            }
            other => {
                return Err(FnfError::Invalid(format!(
                    "endpoint {text:?}: unsupported scheme {other}"
                )));
            }
        }
        if url.host().is_none() {
            return Err(FnfError::Invalid(format!("endpoint {text:?} has no host")));
        }
        Ok(Self::Url(url))
    }

    pub fn base_url(&self) -> url::Url {
        match self {
            Self::Region { region, internal } => {
                let suffix = if *internal { "-internal" } else { "" };
                url::Url::parse(&format!("https://{region}{suffix}.fnf.aliyuncs.com/"))
                    .expect("validated region")
            }
            Self::Url(u) => u.clone(),
        }
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Reads the body, refusing more than `MAX_BODY_BYTES`.
pub async fn read_capped(mut resp: reqwest::Response) -> Result<(u16, Bytes), FnfError> {
    let status = resp.status().as_u16();
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(FnfError::BadResponse {
            status,
            detail: format!("body larger than {MAX_BODY_BYTES} bytes"),
        });
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
        if buf.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(FnfError::BadResponse {
                status,
                detail: format!("body larger than {MAX_BODY_BYTES} bytes"),
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((status, buf.freeze()))
}

/// A reqwest failure as a typed error, with the underlying cause spelled out
/// (reqwest's own text is only "error sending request"). The URL is left out: its query
/// carries the SecurityToken, and this text ends up in status and Events.
pub fn transport_error(e: reqwest::Error) -> FnfError {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut detail = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    if timeout {
        FnfError::Timeout(detail)
    } else {
        FnfError::Connect(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_endpoints_are_region_first() {
        let e = Endpoint::region("cn-hangzhou", false).unwrap();
        assert_eq!(
            e.base_url().as_str(),
            "https://cn-hangzhou.fnf.aliyuncs.com/"
        );
        let e = Endpoint::region("ap-southeast-1", true).unwrap();
        assert_eq!(
            e.base_url().as_str(),
            "https://ap-southeast-1-internal.fnf.aliyuncs.com/"
        );
        assert!(Endpoint::region("cn-hangzhou.evil.com", false).is_err());
        assert!(Endpoint::region("", false).is_err());
    }

    #[test]
    fn plain_http_only_to_loopback_or_when_allowed() {
        assert!(Endpoint::url("http://127.0.0.1:8080", false).is_ok());
        assert!(Endpoint::url("http://[::1]:8080", false).is_ok());
        assert!(Endpoint::url("http://localhost:8080", false).is_ok());
        let err = Endpoint::url("http://fnf.example.com", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("plain http"), "{err}");
        assert!(Endpoint::url("http://fnf.example.com", true).is_ok());
        assert!(Endpoint::url("https://fnf.example.com", false).is_ok());
        assert!(Endpoint::url("ftp://fnf.example.com", true).is_err());
        assert!(Endpoint::url("not a url", true).is_err());
    }

    #[test]
    fn timestamps_have_no_fraction() {
        let t: Timestamp = "2016-02-23T12:46:24.123Z".parse().unwrap();
        assert_eq!(rpc_timestamp(t), "2016-02-23T12:46:24Z");
    }
}
