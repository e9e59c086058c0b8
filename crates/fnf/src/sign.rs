//! Alibaba Cloud RPC signature, "V2" (`SignatureMethod=HMAC-SHA1`, `SignatureVersion=1.0`).
//!
//! Everything here is pure: no clock, no randomness, no I/O. The caller supplies
//! `Timestamp` and `SignatureNonce` among the parameters, which keeps every function
//! testable against fixed vectors and against Alibaba's own SDK code.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Percent-encodes `input` the way every official SDK does for V2: UTF-8 bytes, only
/// `A-Z a-z 0-9 - _ . ~` left as-is, everything else `%XY` with uppercase hex
/// (so space is `%20`, `*` is `%2A`, `~` stays `~`).
pub fn percent_encode(input: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(input.len() * 3);
    for &b in input.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0x0f) as usize] as char);
        }
    }
    out
}

/// The canonicalized query string: every parameter except `Signature`, sorted by name
/// (byte order), each name and value percent-encoded, joined as `a=b&c=d`.
/// Empty values are kept as `Name=`: the SDKs sign them that way.
pub fn canonicalize<'a, I>(params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut pairs: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(k, _)| *k != "Signature")
        .collect();
    // Sort by name, then value, so a repeated name still canonicalizes deterministically.
    pairs.sort_unstable();
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&percent_encode(k));
        out.push('=');
        out.push_str(&percent_encode(v));
    }
    out
}

/// `METHOD&%2F&percentEncode(canonicalized)`.
pub fn string_to_sign<'a, I>(method: &str, params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    format!("{}&%2F&{}", method, percent_encode(&canonicalize(params)))
}

/// Base64 of HMAC-SHA1 over `string_to_sign`, keyed with `secret + "&"`.
pub fn sign_string(string_to_sign: &str, access_key_secret: &str) -> String {
    let key = format!("{access_key_secret}&");
    let mut mac =
        Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The `Signature` value for a request with `method` and all of its query and body
/// parameters (a `Signature` entry among them is ignored).
pub fn sign<'a, I>(method: &str, params: I, access_key_secret: &str) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    sign_string(&string_to_sign(method, params), access_key_secret)
}

/// Encodes parameters as `a=b&c=d` with the same strict encoding, for a URL query or an
/// `application/x-www-form-urlencoded` body. The order is kept as given.
pub fn encode_pairs<'a, I>(params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    params
        .into_iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_follows_the_v2_rules() {
        let cases = [
            ("abcXYZ019-_.~", "abcXYZ019-_.~"),
            (" ", "%20"),
            ("*", "%2A"),
            ("+", "%2B"),
            ("/", "%2F"),
            ("=", "%3D"),
            ("&", "%26"),
            ("%", "%25"),
            (":", "%3A"),
            ("中", "%E4%B8%AD"),
            ("é", "%C3%A9"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(percent_encode(input), want, "encoding {input:?}");
        }
    }

    /// Alibaba's documented example (ECS DescribeRegions), fnf-api.md 1.5 A.
    #[test]
    fn documented_describe_regions_vector() {
        let params = [
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ];
        assert_eq!(
            canonicalize(params),
            "AccessKeyId=testid&Action=DescribeRegions&Format=XML&SignatureMethod=HMAC-SHA1\
             &SignatureNonce=3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf&SignatureVersion=1.0\
             &Timestamp=2016-02-23T12%3A46%3A24Z&Version=2014-05-26"
        );
        assert_eq!(
            string_to_sign("GET", params),
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML\
             %26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf\
             %26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            sign("GET", params, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    /// Vectors from the official SDKs' own unit tests, fnf-api.md 1.6.
    #[test]
    fn official_sdk_vectors() {
        // alibabacloud-go/openapi-util Test_GetRPCSignature (empty method).
        assert_eq!(
            sign("", [("test", "ok")], "accessKeySecret"),
            "jHx/oHoHNrbVfhncHEvPdHXZwHU="
        );
        // darabonba-openapi-util python test_get_rpc_signature.
        assert_eq!(
            sign("GET", [("query", "test"), ("body", "test")], "secret"),
            "XlUyV4sXjOuX5FnjUz9IF9tm5rU="
        );
        // alibaba-cloud-sdk-go signer test: key = secret + suffix; ours always adds "&".
        assert_eq!(string_to_sign("GET", []), "GET&%2F&");
        assert_eq!(
            string_to_sign("GET", [("key", "value")]),
            "GET&%2F&key%3Dvalue"
        );
        assert_eq!(
            string_to_sign(
                "GET",
                [("key", "value"), ("q", "http://domain/?q=value&q2=value2")]
            ),
            "GET&%2F&key%3Dvalue%26q%3Dhttp%253A%252F%252Fdomain%252F%253Fq%253Dvalue%2526q2%253Dvalue2"
        );
    }

    #[test]
    fn signature_parameter_is_never_signed() {
        let with = sign("POST", [("A", "1"), ("Signature", "junk")], "s");
        let without = sign("POST", [("A", "1")], "s");
        assert_eq!(with, without);
    }

    #[test]
    fn empty_values_are_signed_as_name_equals() {
        assert_eq!(
            canonicalize([("SignatureType", ""), ("A", "b")]),
            "A=b&SignatureType="
        );
    }
}
