//! Text from peers (Janus's reasons and frames, publishers' display names) made safe to show
//! in the systemd STATUS line and in logs. Both are line-oriented: a peer's `\n` would forge a
//! line (a `WATCHDOG=1` in sd_notify's `KEY=value` list, a fake entry in a text log), a NUL
//! cannot cross the C boundary of sd_notify at all, and terminal escapes or bidi overrides
//! would rewrite what an operator reads. Such characters are shown as `\u{..}` escapes
//! (`\n`, `\r`, `\t` as themselves), everything else is left as it is.

use std::borrow::Cow;
use std::fmt;

/// Whether `c` must not reach a line-oriented sink as it is.
fn is_hazard(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character (and bidi override) escaped; borrowed when there is none.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_hazard) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(Escaped(s).to_string())
}

/// Multi-line text of ours (an error with a line per skipped file) for the terminal: each
/// line escaped as [`escape_control`] does, the line breaks between them kept.
pub fn escape_lines(s: &str) -> String {
    s.split('\n')
        .map(escape_control)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `s` with every control character and bidi override taken out (runs of them become one
/// space), for names written into files (Matroska track names, the grid's captions), where
/// an escape would only be noise and the raw character would reach whoever prints the file's
/// metadata.
pub fn strip_hazards(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut gap = false;
    for c in s.chars() {
        if is_hazard(c) {
            gap = true;
            continue;
        }
        if gap && !out.is_empty() {
            out.push(' ');
        }
        gap = false;
        out.push(c);
    }
    out
}

/// Displays peer text with control characters escaped: `tracing::warn!(reason = %Escaped(&r))`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if is_hazard(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => fmt::Write::write_char(f, c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(escape_control("Alice Ü 😀"), Cow::Borrowed(_)));
        assert_eq!(
            escape_control("no\nWATCHDOG=1\0\r\t\u{1b}[31m\u{202e}x\u{85}"),
            "no\\nWATCHDOG=1\\u{0}\\r\\t\\u{1b}[31m\\u{202e}x\\u{85}"
        );
    }

    #[test]
    fn lines_are_kept_and_escaped_each() {
        assert_eq!(
            escape_lines("no recordings\n  skipped: a\u{1b}[2J.json: bad\r"),
            "no recordings\n  skipped: a\\u{1b}[2J.json: bad\\r"
        );
    }

    #[test]
    fn hazards_are_stripped_from_names() {
        assert_eq!(strip_hazards("Alice Ü"), "Alice Ü");
        assert_eq!(
            strip_hazards("\u{1b}[2J\u{1b}]0;pwned\u{7}Eve"),
            "[2J ]0;pwned Eve"
        );
        assert_eq!(strip_hazards("abc\u{202e}fdp.exe"), "abc fdp.exe");
        assert_eq!(strip_hazards("\n\r"), "");
    }
}
