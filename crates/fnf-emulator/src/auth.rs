//! Checking a request's V2 signature, time and nonce, the way the service does.

use super::error::ApiError;
use fnf::http::rpc_timestamp;
use fnf::sign;
use jiff::{SignedDuration, Timestamp};
use std::collections::{HashMap, VecDeque};

/// Keys issued by the STS stand-in.
#[derive(Clone, Debug)]
pub struct StsKey {
    pub secret: String,
    pub token: String,
    pub expires: Timestamp,
    pub account: String,
}

#[derive(Debug, Default)]
pub struct Keys {
    /// AccessKeyId → secret; each such key is its own account.
    pub static_keys: HashMap<String, String>,
    pub sts: HashMap<String, StsKey>,
}

/// Nonces seen inside the skew window, oldest first, so a replay is refused.
#[derive(Debug, Default)]
pub struct Nonces {
    seen: HashMap<(String, String), Timestamp>,
    order: VecDeque<(Timestamp, (String, String))>,
}

impl Nonces {
    /// Records the nonce; false if it was already used inside `window`.
    pub fn fresh(
        &mut self,
        key: &str,
        nonce: &str,
        now: Timestamp,
        window: SignedDuration,
    ) -> bool {
        while let Some((t, _)) = self.order.front() {
            if *t + window >= now {
                break;
            }
            let (_, k) = self.order.pop_front().expect("front exists");
            self.seen.remove(&k);
        }
        let k = (key.to_string(), nonce.to_string());
        if self.seen.contains_key(&k) {
            return false;
        }
        self.seen.insert(k.clone(), now);
        self.order.push_back((now, k));
        true
    }
}

pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn required<'a>(params: &'a [(String, String)], name: &str) -> Result<&'a str, ApiError> {
    param(params, name).ok_or_else(|| ApiError::missing_param(name))
}

/// Verifies the request and returns the account it acts for.
pub fn verify(
    method: &str,
    params: &[(String, String)],
    keys: &Keys,
    nonces: &mut Nonces,
    now: Timestamp,
    window: SignedDuration,
) -> Result<String, ApiError> {
    let id = required(params, "AccessKeyId")?;
    let given = required(params, "Signature")?;
    let nonce = required(params, "SignatureNonce")?;
    let timestamp = required(params, "Timestamp")?;
    if required(params, "SignatureMethod")? != "HMAC-SHA1" {
        return Err(ApiError::invalid_argument(
            "SignatureMethod must be HMAC-SHA1",
        ));
    }
    if required(params, "SignatureVersion")? != "1.0" {
        return Err(ApiError::invalid_argument("SignatureVersion must be 1.0"));
    }
    let (secret, account) = match (keys.static_keys.get(id), keys.sts.get(id)) {
        (Some(secret), _) => (secret.as_str(), id.to_string()),
        (None, Some(k))
            if k.expires > now && param(params, "SecurityToken") == Some(k.token.as_str()) =>
        {
            (k.secret.as_str(), k.account.clone())
        }
        _ => return Err(ApiError::invalid_access_key(id)),
    };
    let sent: Timestamp = parse_timestamp(timestamp).ok_or_else(|| {
        ApiError::invalid_argument(format!(
            "Timestamp {timestamp:?} is not yyyy-MM-ddTHH:mm:ssZ"
        ))
    })?;
    if now.duration_since(sent).abs() > window {
        return Err(ApiError::time_skewed(timestamp, &rpc_timestamp(now)));
    }
    let expected = sign::sign(
        method,
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        secret,
    );
    if expected != given {
        return Err(ApiError::signature_mismatch());
    }
    if !nonces.fresh(id, nonce, now, window) {
        return Err(ApiError::nonce_used(nonce));
    }
    Ok(account)
}

fn parse_timestamp(s: &str) -> Option<Timestamp> {
    // The documented form has no fraction; a fraction is tolerated, an offset is not.
    if !s.ends_with('Z') {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &str, ts: &str, nonce: &str) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = [
            ("AccessKeyId", "ak"),
            ("Action", "StopExecution"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", nonce),
            ("Timestamp", ts),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let sig = sign::sign(
            "POST",
            p.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            secret,
        );
        p.push(("Signature".into(), sig));
        p
    }

    fn keys() -> Keys {
        Keys {
            static_keys: [("ak".to_string(), "sk".to_string())].into(),
            sts: HashMap::new(),
        }
    }

    #[test]
    fn accepts_good_and_refuses_bad_requests() {
        let now: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let w = SignedDuration::from_mins(15);
        let mut n = Nonces::default();
        let code = |r: Result<String, ApiError>| r.map_err(|e| e.code);
        assert_eq!(
            code(verify(
                "POST",
                &signed("sk", "2024-01-01T00:00:00Z", "n1"),
                &keys(),
                &mut n,
                now,
                w
            )),
            Ok("ak".into())
        );
        assert_eq!(
            code(verify(
                "POST",
                &signed("sk", "2024-01-01T00:00:00Z", "n1"),
                &keys(),
                &mut n,
                now,
                w
            )),
            Err("SignatureNonceUsed")
        );
        assert_eq!(
            code(verify(
                "GET",
                &signed("sk", "2024-01-01T00:00:00Z", "n2"),
                &keys(),
                &mut n,
                now,
                w
            )),
            Err("SignatureNotMatch")
        );
        assert_eq!(
            code(verify(
                "POST",
                &signed("bad", "2024-01-01T00:00:00Z", "n3"),
                &keys(),
                &mut n,
                now,
                w
            )),
            Err("SignatureNotMatch")
        );
        assert_eq!(
            code(verify(
                "POST",
                &signed("sk", "2023-12-31T23:44:00Z", "n4"),
                &keys(),
                &mut n,
                now,
                w
            )),
            Err("RequestTimeTooSkewed")
        );
        let mut p = signed("sk", "2024-01-01T00:00:00Z", "n5");
        p[0].1 = "other".into();
        assert_eq!(
            code(verify("POST", &p, &keys(), &mut n, now, w)),
            Err("InvalidAccessKeyID")
        );
        p.retain(|(k, _)| k != "Signature");
        assert_eq!(
            code(verify("POST", &p, &keys(), &mut n, now, w)),
            Err("MissingRequiredParams")
        );
    }

    #[test]
    fn nonces_are_forgotten_after_the_window() {
        let mut n = Nonces::default();
        let w = SignedDuration::from_secs(10);
        let t0: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        assert!(n.fresh("ak", "x", t0, w));
        assert!(!n.fresh("ak", "x", t0 + SignedDuration::from_secs(5), w));
        assert!(n.fresh("other", "x", t0, w));
        assert!(n.fresh("ak", "x", t0 + SignedDuration::from_secs(11), w));
    }
}
