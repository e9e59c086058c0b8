//! STS stand-in: the unsigned `AssumeRoleWithOIDC` (2015-04-01) that RRSA uses.

use super::auth::{StsKey, param};
use super::error::ApiError;
use fnf::http::rpc_timestamp;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

fn arn_ok(arn: &str, kind: &str) -> bool {
    // acs:ram::<account digits>:<kind>/<name>
    let Some(rest) = arn.strip_prefix("acs:ram::") else {
        return false;
    };
    let Some((account, resource)) = rest.split_once(':') else {
        return false;
    };
    let Some(name) = resource
        .strip_prefix(kind)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return false;
    };
    !account.is_empty() && account.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty()
}

/// A JWT has three non-empty base64url parts.
fn looks_like_jwt(t: &str) -> bool {
    let parts: Vec<&str> = t.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn sts_error(status: u16, code: &'static str, message: String) -> ApiError {
    ApiError {
        status,
        code,
        message,
    }
}

/// Checks the call and issues keys. `accepted` lists the tokens accepted (any JWT when empty).
pub fn assume_role(
    params: &[(String, String)],
    accepted: &[String],
    now: Timestamp,
) -> Result<(Value, String, StsKey), ApiError> {
    let get = |k: &str| param(params, k).ok_or_else(|| ApiError::missing_param(k));
    if get("Version")? != "2015-04-01" {
        return Err(ApiError::version_not_supported(get("Version")?));
    }
    let role = get("RoleArn")?;
    if !arn_ok(role, "role") {
        return Err(sts_error(
            400,
            "InvalidParameter.RoleArn",
            format!("The parameter RoleArn {role:?} is wrongly formed."),
        ));
    }
    let provider = get("OIDCProviderArn")?;
    if !arn_ok(provider, "oidc-provider") {
        return Err(sts_error(
            400,
            "InvalidParameter.OIDCProviderArn",
            format!("The parameter OIDCProviderArn {provider:?} is wrongly formed."),
        ));
    }
    let token = get("OIDCToken")?;
    let token_ok = (4..=20_000).contains(&token.len())
        && looks_like_jwt(token)
        && (accepted.is_empty() || accepted.iter().any(|a| a == token));
    if !token_ok {
        return Err(sts_error(
            400,
            "AuthenticationFail.OIDCToken.Invalid",
            "The OIDC token is invalid or expired.".into(),
        ));
    }
    let session = param(params, "RoleSessionName").unwrap_or("session");
    let duration: i64 = match param(params, "DurationSeconds") {
        None => 3600,
        Some(d) => match d.parse() {
            Ok(n @ 900..=43200) => n,
            _ => {
                return Err(sts_error(
                    400,
                    "InvalidParameter.DurationSeconds",
                    "DurationSeconds must be 900 to 43200.".into(),
                ));
            }
        },
    };
    let id = format!("STS.{:024x}", rand::random::<u128>() >> 32);
    let key = StsKey {
        secret: format!("{:040x}", rand::random::<u128>()),
        token: format!("CAIS{:064x}", rand::random::<u128>()),
        expires: now + SignedDuration::from_secs(duration),
        account: role.to_string(),
    };
    let body = json!({
        "AssumedRoleUser": {"Arn": format!("{role}/{session}"), "AssumedRoleId": format!("{:017}:{session}", rand::random::<u64>() % 100_000_000_000_000_000)},
        "Credentials": {
            "AccessKeyId": id,
            "AccessKeySecret": key.secret,
            "SecurityToken": key.token,
            "Expiration": rpc_timestamp(key.expires),
        },
        "OIDCTokenInfo": {"Issuer": "https://oidc.emulator.local", "Subject": "system:serviceaccount", "ClientIds": "sts.aliyuncs.com"},
    });
    Ok((body, id, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(role: &str, token: &str) -> Vec<(String, String)> {
        [
            ("Action", "AssumeRoleWithOIDC"),
            ("Version", "2015-04-01"),
            ("RoleArn", role),
            ("OIDCProviderArn", "acs:ram::123:oidc-provider/ack-rrsa-c1"),
            ("OIDCToken", token),
            ("DurationSeconds", "900"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn issues_keys_for_a_good_call() {
        let now: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let (body, id, key) =
            assume_role(&params("acs:ram::123:role/r", "a.b.c"), &[], now).unwrap();
        assert!(id.starts_with("STS."));
        assert_eq!(body["Credentials"]["Expiration"], "2024-01-01T00:15:00Z");
        assert_eq!(
            key.expires,
            "2024-01-01T00:15:00Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn refuses_bad_arns_and_tokens() {
        let now = Timestamp::UNIX_EPOCH;
        let code =
            |p: Vec<(String, String)>, acc: &[String]| assume_role(&p, acc, now).unwrap_err().code;
        assert_eq!(
            code(params("arn:aws:iam::1:role/r", "a.b.c"), &[]),
            "InvalidParameter.RoleArn"
        );
        assert_eq!(
            code(params("acs:ram::123:role/r", "not-a-jwt"), &[]),
            "AuthenticationFail.OIDCToken.Invalid"
        );
        assert_eq!(
            code(params("acs:ram::123:role/r", "a.b.c"), &["x.y.z".into()]),
            "AuthenticationFail.OIDCToken.Invalid"
        );
    }
}
