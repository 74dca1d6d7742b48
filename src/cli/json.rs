//! JSON as `--json` prints it: one line per value, exact, and safe to show
//! on a terminal.

use serde::Serialize;

/// `value` as one line of JSON, with the C1 control characters (U+0080
/// to U+009F, and DEL), which JSON leaves raw, escaped as `\u00XX`: the
/// line parses to the same names, and none of them can drive a terminal.
/// (The JSON text is ASCII outside its strings, so only names change.)
pub(crate) fn json_line(value: &impl Serialize) -> Result<String, serde_json::Error> {
    use std::fmt::Write as _;
    let text = serde_json::to_string(value)?;
    if !text.chars().any(|c| ('\u{7f}'..='\u{9f}').contains(&c)) {
        return Ok(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if ('\u{7f}'..='\u{9f}').contains(&c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_escape_c1_controls_and_stay_exact() {
        let name = "a\u{9b}31m\u{1b}b\u{7f}";
        let line = json_line(&serde_json::json!({ "path": name })).unwrap();
        assert!(!line.chars().any(char::is_control), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["path"], name);
    }
}
