//! Where an object's requests may go. An object that brings its own Secret may name any
//! endpoint: it can only expose its own keys. An object that uses the operator's own
//! credentials may only reach hosts on the operator's allowlist, so nobody who can
//! create an ExecutionStop can have the operator's keys, tokens or signed requests sent
//! to a server of their choosing, or make it call an internal service and read the
//! answer back from status.

use super::Cannot;
use crate::crd::Target;
use fnf::Endpoint;

/// The hosts Alibaba documents for fnf, public and VPC, in every region:
/// `<region>.fnf.aliyuncs.com`, `<region>-internal.fnf.aliyuncs.com`, and the
/// account-prefixed `<account-id>.<region>[-internal].fnf.aliyuncs.com`.
pub const DEFAULT_ALLOWED_HOSTS: &str = "*.fnf.aliyuncs.com,*.*.fnf.aliyuncs.com";

/// One allowed host: DNS labels, each literal or `*` for exactly one label
/// (`*.fnf.aliyuncs.com` allows `cn-hangzhou.fnf.aliyuncs.com`, not
/// `a.b.fnf.aliyuncs.com`), or an IP address written as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern(Vec<String>);

impl std::str::FromStr for HostPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        if s.parse::<std::net::IpAddr>().is_ok() {
            return Ok(Self(vec![s]));
        }
        let label_ok = |l: &str| {
            l == "*"
                || (!l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        };
        let labels: Vec<String> = s.split('.').map(String::from).collect();
        if !labels.iter().all(|l| label_ok(l)) || labels.iter().all(|l| l == "*") {
            return Err(format!(
                "allowed endpoint host {s:?}: use DNS labels, each a name or `*` for one label (not only `*`), or an IP address"
            ));
        }
        Ok(Self(labels))
    }
}

impl HostPattern {
    /// Whether `host` (as the URL parser normalized it: lower case, IDNA, IPv6 in
    /// brackets) is allowed. No DNS lookup: a name is judged as written.
    fn matches(&self, host: &url::Host<&str>) -> bool {
        match host {
            url::Host::Domain(d) => {
                let labels: Vec<&str> = d.split('.').collect();
                labels.len() == self.0.len()
                    && labels
                        .iter()
                        .zip(&self.0)
                        .all(|(l, p)| !l.is_empty() && (p == "*" || p == l))
            }
            url::Host::Ipv4(ip) => self.0.len() == 1 && self.0[0] == ip.to_string(),
            url::Host::Ipv6(ip) => self.0.len() == 1 && self.0[0] == ip.to_string(),
        }
    }
}

/// Parses a comma-separated list of host patterns.
pub fn parse_allowlist(s: &str) -> Result<Vec<HostPattern>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// What the operator was configured with: its default endpoint (trusted as the cluster
/// admin set it), whether plain http off loopback is allowed, and the allowlist.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub default: Option<Endpoint>,
    pub allow_insecure_http: bool,
    pub allowed_hosts: Vec<HostPattern>,
}

/// The endpoint of an object's requests, or why it may not have one. Pure: nothing is
/// resolved or contacted here, so a refused host never sees a connection.
pub fn resolve(spec: &impl Target, config: &Endpoints) -> Result<Endpoint, Cannot> {
    match (spec.endpoint(), spec.region_id(), &config.default) {
        (Some(text), _, _) => {
            let endpoint = object_endpoint(text, config)?;
            if spec.credentials_secret_ref().is_some() {
                return Ok(endpoint);
            }
            let url = endpoint.base_url();
            if !url.username().is_empty() || url.password().is_some() {
                return Err(Cannot::EndpointNotAllowed(
                    "spec.endpoint carries user information (user@host), which is refused with the operator's credentials".into(),
                ));
            }
            let host = url.host().expect("Endpoint::url checks for a host");
            if config.allowed_hosts.iter().any(|p| p.matches(&host)) {
                Ok(endpoint)
            } else {
                Err(Cannot::EndpointNotAllowed(format!(
                    "spec.endpoint host {host} is not on the operator's allowlist of endpoint hosts; \
                     objects that use the operator's credentials may only call allowed hosts \
                     (set spec.credentialsSecretRef to use your own keys with any endpoint)"
                )))
            }
        }
        (None, Some(region), _) => {
            Endpoint::region(region, false).map_err(|e| Cannot::Unusable(e.to_string()))
        }
        (None, None, Some(default)) => Ok(default.clone()),
        (None, None, None) => Err(Cannot::Unusable(
            "no endpoint: set spec.regionId or spec.endpoint, or start the operator with --region or --endpoint".into(),
        )),
    }
}

/// The region whose quota an endpoint draws on. fnf's quotas are token buckets per account
/// (the reference notes, "API rate limits"), and each region is served on its own: the
/// public and the VPC (`-internal`) host of a region, with or without the account prefix,
/// and `regionId` are one quota. Any other endpoint (an emulator, a proxy) is `None`: its
/// region cannot be told from its name, so all of them share one bucket per AccessKeyId,
/// and no spelling of a host (`localhost`, `127.0.0.1`, a DNS alias) gains any quota.
pub fn quota_region(endpoint: &Endpoint) -> Option<String> {
    match endpoint {
        Endpoint::Region { region, .. } => Some(region.clone()),
        Endpoint::Url(url) => {
            let labels: Vec<&str> = url.host_str()?.split('.').collect();
            match labels.as_slice() {
                [region, "fnf", "aliyuncs", "com"] | [_, region, "fnf", "aliyuncs", "com"] => Some(
                    region
                        .strip_suffix("-internal")
                        .unwrap_or(region)
                        .to_string(),
                ),
                _ => None,
            }
        }
    }
}

/// An object's `spec.endpoint`. Plain http off loopback is never allowed to an object,
/// whatever `--allow-insecure-http` says: that flag is the cluster admin's word about the
/// operator's own `--endpoint`, and an object naming that very endpoint may use it too.
/// Anything else would send the signed request (and with the operator's credentials, its
/// security token) in clear text to a host a namespace editor chose.
fn object_endpoint(text: &str, config: &Endpoints) -> Result<Endpoint, Cannot> {
    match Endpoint::url(text, false) {
        Ok(e) => Ok(e),
        Err(refused) => match (
            &config.default,
            Endpoint::url(text, config.allow_insecure_http),
        ) {
            (Some(own), Ok(e)) if e.base_url() == own.base_url() => Ok(e),
            _ => Err(Cannot::Unusable(refused.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ExecutionStopSpec;

    fn spec(endpoint: &str, own_secret: bool) -> ExecutionStopSpec {
        ExecutionStopSpec {
            flow_name: "f".into(),
            execution_name: "e".into(),
            options: crate::crd::StopOptions {
                endpoint: Some(endpoint.into()),
                credentials_secret_ref: own_secret.then(|| crate::crd::SecretRef {
                    name: "creds".into(),
                }),
                ..Default::default()
            },
            ttl_seconds_after_finished: None,
        }
    }

    fn defaults() -> Endpoints {
        Endpoints {
            default: None,
            allow_insecure_http: false,
            allowed_hosts: parse_allowlist(DEFAULT_ALLOWED_HOSTS).unwrap(),
        }
    }

    #[test]
    fn the_default_allowlist_takes_alibabas_fnf_hosts_and_nothing_that_looks_like_them() {
        let allowed = [
            "https://cn-hangzhou.fnf.aliyuncs.com",
            "https://cn-hangzhou-internal.fnf.aliyuncs.com/",
            "https://ap-southeast-1.fnf.aliyuncs.com:443/",
            "https://1234567890123456.cn-shanghai.fnf.aliyuncs.com",
            "https://1234567890123456.cn-shanghai-internal.fnf.aliyuncs.com",
            "https://CN-Beijing.FNF.AliyunCS.com",
        ];
        for url in allowed {
            assert!(
                resolve(&spec(url, false), &defaults()).is_ok(),
                "{url} should be allowed"
            );
        }
        let refused = [
            "https://fnf.aliyuncs.com.evil.test",
            "https://cn-hangzhou.fnf.aliyuncs.com.evil.test/",
            "https://evil-aliyuncs.com",
            "https://cn-hangzhou.evil-fnf.aliyuncs.com",
            "https://fnf.aliyuncs.com",
            "https://aliyuncs.com",
            "https://a.b.c.fnf.aliyuncs.com",
            "https://cn-hangzhou.fnf.aliyuncs.com@evil.test/",
            "https://user:pw@cn-hangzhou.fnf.aliyuncs.com/",
            "https://cn-hangzhou.fnf.aliyuncs.com.",
            "https://127.0.0.1:8443",
            "https://[::1]:8443",
            "https://169.254.169.254/latest/meta-data",
            "https://kubernetes.default.svc",
            "https://fnf.cn-hangzhou.aliyuncs.com",
            "https://cn-hangzhou.fnf.aliyuncs.com%2eevil.test",
        ];
        for url in refused {
            let r = resolve(&spec(url, false), &defaults());
            assert!(
                matches!(
                    r,
                    Err(Cannot::EndpointNotAllowed(_)) | Err(Cannot::Unusable(_))
                ),
                "{url} should be refused: {r:?}"
            );
        }
        let msg = match resolve(&spec("https://evil.test", false), &defaults()) {
            Err(Cannot::EndpointNotAllowed(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(
            msg.contains("spec.endpoint") && msg.contains("allowlist"),
            "{msg}"
        );
    }

    #[test]
    fn an_object_with_its_own_secret_may_name_any_endpoint_but_not_plain_http_afar() {
        for url in [
            "https://evil.test",
            "https://127.0.0.1:8443",
            "http://127.0.0.1:1",
        ] {
            assert!(resolve(&spec(url, true), &defaults()).is_ok(), "{url}");
        }
        assert!(matches!(
            resolve(&spec("http://evil.test", true), &defaults()),
            Err(Cannot::Unusable(_))
        ));
    }

    #[test]
    fn one_region_is_one_quota_however_it_is_spelled() {
        let region = |text: &str| quota_region(&Endpoint::url(text, true).unwrap());
        let hangzhou = quota_region(&Endpoint::region("cn-hangzhou", false).unwrap());
        assert_eq!(hangzhou.as_deref(), Some("cn-hangzhou"));
        for text in [
            "https://cn-hangzhou.fnf.aliyuncs.com",
            "https://CN-Hangzhou.fnf.aliyuncs.com:443/",
            "https://cn-hangzhou-internal.fnf.aliyuncs.com",
            "https://1234567890123456.cn-hangzhou.fnf.aliyuncs.com",
            "https://1234567890123456.cn-hangzhou-internal.fnf.aliyuncs.com/",
        ] {
            assert_eq!(region(text), hangzhou, "{text}");
        }
        assert_eq!(
            quota_region(&Endpoint::region("cn-hangzhou", true).unwrap()),
            hangzhou
        );
        assert_eq!(
            region("https://cn-shanghai.fnf.aliyuncs.com").as_deref(),
            Some("cn-shanghai")
        );
        // Hosts whose region cannot be told share one bucket, however they are spelled.
        for text in [
            "http://127.0.0.1:9000",
            "http://localhost:9000/",
            "http://0x7f.0.0.1:9001",
            "https://proxy.test",
            "https://evil-fnf.aliyuncs.com.test",
        ] {
            assert_eq!(region(text), None, "{text}");
        }
    }

    #[test]
    fn allow_insecure_http_covers_the_operators_own_endpoint_only() {
        let config = Endpoints {
            default: Some(Endpoint::url("http://fnf.internal.test:9000", true).unwrap()),
            allow_insecure_http: true,
            allowed_hosts: parse_allowlist("*.internal.test,other.test").unwrap(),
        };
        for own_secret in [false, true] {
            let r = resolve(&spec("http://evil.internal.test:9000", own_secret), &config);
            assert!(
                matches!(r, Err(Cannot::Unusable(ref m)) if m.contains("plain http")),
                "a tenant's http endpoint must be refused (own secret: {own_secret}): {r:?}"
            );
            assert!(
                resolve(&spec("http://other.test", own_secret), &config).is_err(),
                "{own_secret}"
            );
            assert!(
                resolve(&spec("http://fnf.internal.test:9000/", own_secret), &config).is_ok(),
                "the operator's own endpoint, spelled out (own secret: {own_secret})"
            );
        }
        assert!(resolve(&spec("http://127.0.0.1:9", true), &config).is_ok());
    }

    #[test]
    fn region_and_operator_default_endpoints_are_trusted() {
        let mut s = spec("x", false);
        s.options.endpoint = None;
        s.options.region_id = Some("cn-hangzhou".into());
        assert!(resolve(&s, &defaults()).is_ok());
        s.options.region_id = None;
        assert!(matches!(resolve(&s, &defaults()), Err(Cannot::Unusable(_))));
        let config = Endpoints {
            default: Some(Endpoint::url("http://127.0.0.1:9", false).unwrap()),
            ..defaults()
        };
        assert!(resolve(&s, &config).is_ok());
    }

    #[test]
    fn patterns_are_labels_or_addresses() {
        let list = parse_allowlist("localhost, *.example.test,127.0.0.1,::1").unwrap();
        let config = Endpoints {
            allowed_hosts: list,
            ..defaults()
        };
        for url in [
            "https://localhost:8443",
            "https://a.example.test",
            "https://127.0.0.1",
            "https://[::1]:1",
        ] {
            assert!(resolve(&spec(url, false), &config).is_ok(), "{url}");
        }
        for url in [
            "https://example.test",
            "https://a.b.example.test",
            "https://127.0.0.2",
        ] {
            assert!(resolve(&spec(url, false), &config).is_err(), "{url}");
        }
        for bad in ["*", "*.*", "a..b", "exa mple.test", "a/b"] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad}");
        }
    }
}
