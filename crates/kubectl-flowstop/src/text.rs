//! Text that came from an object (status written from the cloud's answers, names, Event
//! notes) is shown through [`safe`]: control characters would otherwise reach the
//! terminal of whoever runs the plugin, where `ESC [ 2 J` clears the screen and other
//! sequences move the cursor, retitle the window or rewrite what was printed before.

use std::borrow::Cow;

/// `s` with every control character written out visibly: C0 (U+0000–U+001F, so a
/// newline or tab inside one field too), DEL (U+007F) and C1 (U+0080–U+009F). `\n`, `\r`
/// and `\t` as such, the others as `\u{1b}`. Everything else, backslashes included, is
/// left as it is; text without control characters is not copied.
pub fn safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_control(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// JSON for a terminal: serde_json escapes C0 itself but writes DEL and C1 as they are.
/// Outside strings JSON is ASCII punctuation, so these can only be inside one, where
/// `\u00XX` means the same character: the document is unchanged for a program reading it.
pub fn safe_json(v: &serde_json::Value) -> String {
    let raw = serde_json::to_string_pretty(v).expect("a Value serializes");
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        // A newline is the layout's; inside a string serde_json wrote it as `\n`.
        if is_control(c) && c != '\n' {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// YAML for a terminal. The emitter writes a string with a control character double-quoted
/// with YAML's escapes (`"\e[2J"`, `"\x9B"`, `"\N"`), and one with a newline as a block
/// scalar; should anything else come out raw, the document is written as JSON instead (JSON
/// is YAML), through [`safe_json`].
pub fn safe_yaml(v: &serde_json::Value) -> String {
    let yaml = serde_yaml_ng::to_string(v).expect("a Value serializes");
    if yaml.chars().any(|c| is_control(c) && c != '\n') {
        return format!("{}\n", safe_json(v));
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in [
            "",
            "Stopped",
            "Flow  f does not exist.",
            "back\\slash",
            "名前 ✓ café",
        ] {
            assert!(matches!(safe(s), Cow::Borrowed(b) if b == s), "{s}");
        }
    }

    #[test]
    fn escape_sequences_are_shown_not_sent() {
        assert_eq!(safe("\u{1b}[2Jgone"), "\\u{1b}[2Jgone");
        assert_eq!(
            safe("\u{1b}]0;pwned\u{7}title"),
            "\\u{1b}]0;pwned\\u{7}title"
        );
        assert_eq!(safe("a\u{0}b"), "a\\u{0}b");
    }

    #[test]
    fn newlines_and_tabs_inside_a_field_are_escaped() {
        assert_eq!(safe("one\ntwo\r\tthree"), "one\\ntwo\\r\\tthree");
    }

    #[test]
    fn del_and_c1_are_escaped_but_not_what_follows_them() {
        // U+009B is CSI on its own; U+0085 is NEL; U+00A0 (no-break space) is printable.
        assert_eq!(
            safe("x\u{7f}\u{80}\u{85}\u{9b}2J\u{9f}\u{a0}y"),
            "x\\u{7f}\\u{80}\\u{85}\\u{9b}2J\\u{9f}\u{a0}y"
        );
    }

    #[test]
    fn no_control_character_survives() {
        let all: String = (0u32..0x200).filter_map(char::from_u32).collect();
        let shown = safe(&all);
        assert!(!shown.chars().any(is_control), "{shown:?}");
        // Every printable character is still there, in order.
        let printable: String = all.chars().filter(|c| !is_control(*c)).collect();
        let kept: String = shown.chars().filter(|c| (*c as u32) >= 0xa0).collect();
        assert_eq!(
            kept,
            printable
                .chars()
                .filter(|c| (*c as u32) >= 0xa0)
                .collect::<String>()
        );
    }

    #[test]
    fn json_stays_the_same_document_without_raw_controls() {
        let v = serde_json::json!({"message": "\u{1b}[2J\u{7f}\u{9b}31m\n", "n": 1});
        let shown = safe_json(&v);
        assert!(
            !shown.contains(|c: char| is_control(c) && c != '\n'),
            "{shown:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn yaml_stays_the_same_document_without_raw_controls() {
        let every: String = (0u32..0xa0)
            .filter_map(char::from_u32)
            .filter(|c| is_control(*c))
            .collect();
        let v = serde_json::json!({"message": format!("\u{1b}[2J{every}end"), "n": 1});
        let shown = safe_yaml(&v);
        assert!(
            !shown.contains(|c: char| is_control(c) && c != '\n'),
            "{shown:?}"
        );
        let back: serde_json::Value = serde_yaml_ng::from_str(&shown).unwrap();
        assert_eq!(back, v);
    }
}
