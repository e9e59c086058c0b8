//! The percent-encoder and canonicalizer: never panic; the encoding uses only unreserved
//! bytes and uppercase %XX, and form-decoding it gives the input back.
#![no_main]

use fnf::sign;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let encoded = sign::percent_encode(&text);
    let mut bytes = encoded.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().expect("two hex digits after %");
            let lo = bytes.next().expect("two hex digits after %");
            assert!(hi.is_ascii_hexdigit() && !hi.is_ascii_lowercase());
            assert!(lo.is_ascii_hexdigit() && !lo.is_ascii_lowercase());
        } else {
            assert!(b.is_ascii_alphanumeric() || b"-_.~".contains(&b), "{b}");
        }
    }
    let decoded: String = url::form_urlencoded::parse(format!("k={encoded}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default();
    assert_eq!(decoded, text);
    // Pairs split on '&' and '=': canonicalizing and signing never panic.
    let pairs: Vec<(&str, &str)> = text.split('&').map(|p| p.split_once('=').unwrap_or((p, ""))).collect();
    let canonical = sign::canonicalize(pairs.iter().copied());
    assert!(!canonical.contains(' '));
    let _ = sign::sign("POST", pairs, "secret");
});
