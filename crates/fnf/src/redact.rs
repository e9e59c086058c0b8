//! Making a foreign answer's text fit to show. Error text from fnf or STS ends up in the
//! status and Events of objects, in logs, and on people's terminals; it may quote what the
//! server was sent (a SecurityToken, an OIDC token) or keys it handed out. Every such text
//! goes through one `Redactor`: the secrets it knows are replaced, the length is bounded,
//! and control characters are written as visible escapes.

use crate::credentials::Credentials;
use crate::sign::percent_encode;
use std::fmt;

/// What stands in for a secret.
pub const REDACTED: &str = "[redacted]";
/// The most characters kept of a message.
pub const MAX_MESSAGE: usize = 1024;
/// The most characters kept of a code, a request id, a path.
pub const MAX_SHORT: usize = 128;
/// The most characters kept of a body quoted because it was not what we expected.
pub const MAX_EXCERPT: usize = 200;

/// Text that went through a `Redactor`: no secret it knew, bounded, no control character.
/// Only this module makes one, so an error holding `Clean` fields cannot carry raw text.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Clean(String);

impl Clean {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Clean {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Clean {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl From<Clean> for String {
    fn from(c: Clean) -> String {
        c.0
    }
}

/// The secrets one call knows of, in every form a server may echo them: as sent, and
/// percent-encoded once or twice (a signature error echoes the string it signed), with
/// upper- or lowercase hex.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is replaced whole.
    forms: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} forms)", self.forms.len())
    }
}

impl Redactor {
    /// Knows no secret: only bounds and escapes.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        Self::none().with(secrets)
    }

    /// The secret and the token of `c` (the AccessKeyId is not a secret).
    pub fn for_credentials(c: &Credentials) -> Self {
        Self::none().with_credentials(c)
    }

    pub fn with_credentials(self, c: &Credentials) -> Self {
        self.with(
            std::iter::once(c.access_key_secret.expose())
                .chain(c.security_token.as_ref().map(|t| t.expose())),
        )
    }

    pub fn with<'a>(mut self, secrets: impl IntoIterator<Item = &'a str>) -> Self {
        for s in secrets.into_iter().filter(|s| !s.is_empty()) {
            let once = percent_encode(s);
            let once_lower = lower_hex(&once);
            let forms = [
                s.to_string(),
                percent_encode(&once),
                percent_encode(&once_lower),
                once,
                once_lower,
            ];
            self.forms.extend(forms);
        }
        self.forms
            .sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        self.forms.dedup();
        self
    }

    /// `text` with every known secret replaced, then at most `max` characters (marked
    /// with … when cut), control characters escaped. Redacting before cutting: a cut
    /// through a secret would leave its beginning.
    pub fn clean(&self, text: &str, max: usize) -> Clean {
        let mut text = text.to_string();
        for form in &self.forms {
            if text.contains(form.as_str()) {
                text = text.replace(form.as_str(), REDACTED);
            }
        }
        Clean(printable(&text, max))
    }

    /// As `clean`, for a body that may not be UTF-8.
    pub fn clean_bytes(&self, body: &[u8], max: usize) -> Clean {
        self.clean(&String::from_utf8_lossy(body), max)
    }
}

/// `%2F` → `%2f`.
fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut hex_left = 0;
    for c in encoded.chars() {
        if hex_left > 0 {
            out.push(c.to_ascii_lowercase());
            hex_left -= 1;
        } else {
            if c == '%' {
                hex_left = 2;
            }
            out.push(c);
        }
    }
    out
}

/// At most `max` characters, marked with … when cut, with every control character (C0,
/// DEL, C1) written as a visible escape (`\u{1b}`), so that no escape sequence reaches a
/// terminal.
pub fn printable(s: &str, max: usize) -> String {
    let cut = match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    };
    let mut out = String::with_capacity(cut.len() + 3);
    for c in cut.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    if cut.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_a_secret_is_replaced() {
        let r = Redactor::new(["se/cret+", "to=ken/1"]);
        let text = format!(
            "a {} b {} c {} d {} e {} f se/cret+",
            percent_encode("to=ken/1"),
            percent_encode(&percent_encode("to=ken/1")),
            "to%3dken%2f1",
            "to%253dken%252f1",
            percent_encode("se/cret+"),
        );
        let clean = r.clean(&text, MAX_MESSAGE).into_string();
        for leak in ["to=ken", "to%3", "to%25", "se/cret", "se%2"] {
            assert!(!clean.contains(leak), "{leak} in {clean}");
        }
        assert_eq!(clean.matches(REDACTED).count(), 6, "{clean}");
    }

    #[test]
    fn a_secret_is_redacted_before_the_cut() {
        let r = Redactor::new(["abcdefghij"]);
        let clean = r.clean(&format!("{}abcdefghij", "x".repeat(5)), 8);
        assert_eq!(clean.as_str(), "xxxxx[re…");
    }

    #[test]
    fn control_characters_are_escaped_and_length_is_bounded() {
        assert_eq!(printable("\u{1b}[2Jgone", 100), "\\u{1b}[2Jgone");
        assert_eq!(
            printable("a\nb\u{7f}\u{9b}c", 100),
            "a\\u{a}b\\u{7f}\\u{9b}c"
        );
        assert_eq!(printable("héllo wörld", 5), "héllo…");
        assert_eq!(printable("ok", 2), "ok");
        let none = Redactor::none();
        assert_eq!(none.clean("", 3).as_str(), "");
        assert_eq!(
            none.clean_bytes(b"\xff\x1b]0;t\x07", 10).as_str(),
            "\u{fffd}\\u{1b}]0;t\\u{7}"
        );
    }

    #[test]
    fn empty_secrets_are_ignored() {
        let r = Redactor::new(["", "s"]);
        assert_eq!(r.clean("a s", 20).as_str(), "a [redacted]");
        assert_eq!(Redactor::new([""]).clean("text", 10).as_str(), "text");
    }
}
