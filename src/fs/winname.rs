//! Names Windows cannot hold, mapped reversibly to names it can.
//!
//! A key written on Linux or macOS may name a file Windows refuses:
//! `a:b.txt`, `q?.txt`, `con.txt`, a name ending in a dot or a space. A
//! restore onto Windows writes such a name under a stand-in Windows
//! accepts, and a backup on Windows reads the stand-in back as the
//! original name, so a round trip Linux → Windows → Linux loses nothing.
//!
//! The stand-ins are rclone's (its `local` backend's encoding on Windows,
//! `lib/encoder`), the convention users of S3 tools already know:
//!
//! | in the name | becomes | where |
//! |---|---|---|
//! | `< > : " \| ? * \` | `＜ ＞ ： ＂ ｜ ？ ＊ ＼` (their full-width twins, U+FF1C …) | anywhere |
//! | control characters U+0000–U+001F | `␀`–`␟` (U+2400–U+241F) | anywhere |
//! | a space | `␠` (U+2420) | last character |
//! | a dot | `．` (U+FF0E) | last character |
//!
//! rclone leaves reserved device names alone; Windows opens the device
//! instead of a file for them (`con.txt` is the console), so here the
//! first letter of such a name (`CON`, `PRN`, `AUX`, `NUL`, `COM0`–`COM9`,
//! `LPT0`–`LPT9`, `COM¹²³`, `LPT¹²³`, `CONIN$`, `CONOUT$`, in any case,
//! with any extension) becomes its full-width twin: `con.txt` → `ｃon.txt`.
//!
//! A name that already holds one of the stand-ins where it would be read
//! back (a Japanese user's `a：b.txt`) gets rclone's quote `‛` (U+201B)
//! before it, and a `‛` is doubled where it would otherwise read as a
//! quote, so [`from_windows`]`(`[`to_windows`]`(n)) == n` for every name.
//! The other way round holds for every name but those holding `‛‛`
//! followed by an ordinary character, which read back with one `‛`.
//! A name works on one path component (no `/`).

use std::borrow::Cow;
use std::io;
use std::path::Path;

/// rclone's quote: the character after it is taken as it is.
const QUOTE: char = '\u{201B}';
/// The offset from a printable ASCII character to its full-width twin.
const FULL_WIDTH: u32 = 0xFEE0;
/// `␀`: the stand-in for U+0000; U+0001–U+001F follow it.
const SYMBOL_NUL: u32 = 0x2400;
/// The stand-in for a trailing space.
const SYMBOL_SPACE: char = '\u{2420}';
/// The stand-in for a trailing dot.
const FULL_STOP: char = '\u{FF0E}';

/// Characters Windows refuses anywhere in a name (besides `/` and controls).
const FORBIDDEN: [char; 8] = ['<', '>', ':', '"', '|', '?', '*', '\\'];

/// The stand-in Windows accepts for `name`: `name` itself for nearly all.
pub fn to_windows(name: &str) -> Cow<'_, str> {
    let c: Vec<char> = name.chars().collect();
    if !needs_encoding(name, &c) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    let mut start = 0;
    if reserved_as_stored(name) {
        // Reserved names start with an ASCII letter.
        out.push(twin(c[0]));
        start = 1;
    } else if is_wide_letter(c[0]) && reserved_as_stored(&fold_first(&c, 0)) {
        out.extend([QUOTE, c[0]]);
        start = 1;
    } else if c.len() > 1 && c[0] == QUOTE && is_wide_letter(c[1]) && reserved_as_stored(&fold_first(&c, 1)) {
        out.extend([QUOTE, QUOTE]);
        start = 1;
    }
    let last = c.len() - 1;
    for i in start..c.len() {
        let ch = c[i];
        let at_end = i == last;
        if forbidden(ch) {
            out.push(twin(ch));
        } else if at_end && (ch == ' ' || ch == '.') {
            out.push(if ch == ' ' { SYMBOL_SPACE } else { FULL_STOP });
        } else if stand_in(ch, at_end) {
            out.extend([QUOTE, ch]);
        } else if ch == QUOTE && i < last && quote_ahead(c[i + 1], i + 1 == last) {
            out.extend([QUOTE, QUOTE]);
        } else {
            out.push(ch);
        }
    }
    Cow::Owned(out)
}

/// The name a Windows name stands for: the inverse of [`to_windows`].
pub fn from_windows(name: &str) -> Cow<'_, str> {
    if !name
        .chars()
        .any(|ch| ch == QUOTE || stand_in(ch, true) || is_wide_letter(ch))
    {
        return Cow::Borrowed(name);
    }
    let c: Vec<char> = name.chars().collect();
    let quoted_first = c.len() > 1 && c[0] == QUOTE && is_wide_letter(c[1]);
    // The escape is read back where the name as stored, its first letter
    // folded, would be a device (the test `to_windows` made).
    let stored_rest = |from: usize| -> String { c[from..].iter().collect() };
    if quoted_first {
        if is_reserved(&format!("{}{}", fold(c[1]), stored_rest(2))) {
            return Cow::Owned(format!("{}{}", c[1], decode_from(&c, 2)));
        }
    } else if is_wide_letter(c[0]) && is_reserved(&format!("{}{}", fold(c[0]), stored_rest(1))) {
        return Cow::Owned(format!("{}{}", fold(c[0]), decode_from(&c, 1)));
    }
    Cow::Owned(decode_from(&c, 0))
}

/// A relative path (`/`-separated, as keys are) with each component
/// mapped by [`to_windows`]; the separators stay `/`.
pub fn path_to_windows(rel: &str) -> Cow<'_, str> {
    map_components(rel, to_windows)
}

/// The inverse of [`path_to_windows`]: each component by [`from_windows`].
pub fn path_from_windows(rel: &str) -> Cow<'_, str> {
    map_components(rel, from_windows)
}

/// `rel` with `f` applied to each `/`-separated component; borrowed when none changes.
fn map_components<'a>(rel: &'a str, f: fn(&str) -> Cow<'_, str>) -> Cow<'a, str> {
    if rel.split('/').all(|part| matches!(f(part), Cow::Borrowed(_))) {
        return Cow::Borrowed(rel);
    }
    let parts: Vec<Cow<'_, str>> = rel.split('/').map(f).collect();
    Cow::Owned(parts.join("/"))
}

/// Whether the file system holding `dir` (or its nearest existing
/// ancestor) refuses the names Windows refuses, so names are to be mapped
/// by [`to_windows`] there: always on Windows; elsewhere when creating a
/// probe file whose name holds a `:` fails with `EINVAL`, `EILSEQ` or
/// `ENOENT` (exFAT, FAT and NTFS drivers on Linux). Without `may_write`
/// (a dry run) nothing is created, and outside Windows the answer is `false`.
///
/// # Errors
/// Any other I/O error of creating or removing the probe file.
pub fn refused_by(dir: &Path, may_write: bool) -> io::Result<bool> {
    if cfg!(windows) {
        return Ok(true);
    }
    if !may_write {
        return Ok(false);
    }
    let Some(base) = crate::fs::case::nearest_existing(dir) else {
        return Ok(false);
    };
    let probe = base.join(format!(
        "{}-a:b",
        crate::fs::own::temp_name("probe").to_string_lossy()
    ));
    match crate::fs::case::create_new(&probe) {
        Ok(file) => {
            drop(file);
            std::fs::remove_file(&probe)?;
            Ok(false)
        }
        Err(e) if refuses(&e) => Ok(true),
        Err(e) => Err(e),
    }
}

/// `EILSEQ`, which `std::io::ErrorKind` does not name (Linux's number;
/// the BSDs' and macOS's is 86/92, handled by the kinds below there).
const EILSEQ: i32 = if cfg!(target_os = "linux") { 84 } else { 92 };

/// Whether creating a file failed because its name was refused
/// (`EINVAL`, `ENOENT` or `EILSEQ`).
fn refuses(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::InvalidInput | io::ErrorKind::NotFound)
        || e.raw_os_error() == Some(EILSEQ)
}

/// Whether Windows takes `name` for a device (see the module doc).
pub fn is_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$" => true,
        _ => {
            let (Some(kind), Some(n)) = (upper.get(..3), upper.get(3..)) else {
                return false;
            };
            (kind == "COM" || kind == "LPT")
                && matches!(
                    n,
                    "0" | "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "¹" | "²" | "³"
                )
        }
    }
}

/// Whether `name`, stored with its trailing space or dot replaced (as
/// [`to_windows`] does), is a device name: `con.` is (Windows drops the
/// dot), `con．` is not, so `con.` becomes `con．` alone.
fn reserved_as_stored(name: &str) -> bool {
    let stored = match name.strip_suffix(' ').or_else(|| name.strip_suffix('.')) {
        Some(head) if name.ends_with(' ') => format!("{head}{SYMBOL_SPACE}"),
        Some(head) => format!("{head}{FULL_STOP}"),
        None => return is_reserved(name),
    };
    is_reserved(&stored)
}

/// Whether a name needs any change (the fast path: almost every name does not).
fn needs_encoding(name: &str, c: &[char]) -> bool {
    let Some(&last) = c.last() else {
        return false;
    };
    c.iter()
        .any(|&ch| forbidden(ch) || stand_in(ch, false) || ch == QUOTE)
        || matches!(last, ' ' | '.' | SYMBOL_SPACE | FULL_STOP)
        || reserved_as_stored(name)
        || (is_wide_letter(c[0]) && reserved_as_stored(&fold_first(c, 0)))
}

/// The ordinary part of decoding, from `start`: quotes, stand-ins anywhere
/// and at the end.
fn decode_from(c: &[char], start: usize) -> String {
    let last = c.len().saturating_sub(1);
    let mut out = String::with_capacity(c.len());
    let mut i = start;
    while i < c.len() {
        let ch = c[i];
        if ch == QUOTE && i < last && (c[i + 1] == QUOTE || stand_in(c[i + 1], i + 1 == last)) {
            out.push(c[i + 1]);
            i += 2;
            continue;
        }
        if stand_in(ch, i == last) {
            out.push(original(ch));
        } else {
            out.push(ch);
        }
        i += 1;
    }
    out
}

/// Whether Windows refuses `ch` anywhere in a name.
fn forbidden(ch: char) -> bool {
    FORBIDDEN.contains(&ch) || (ch as u32) < 0x20
}

/// Whether `ch` reads back as another character (`at_end`: in last place).
fn stand_in(ch: char, at_end: bool) -> bool {
    let u = ch as u32;
    (SYMBOL_NUL..SYMBOL_NUL + 0x20).contains(&u)
        || char::from_u32(u.wrapping_sub(FULL_WIDTH)).is_some_and(|a| FORBIDDEN.contains(&a))
        || (at_end && (ch == SYMBOL_SPACE || ch == FULL_STOP))
}

/// Whether a `‛` before `next` must be doubled to stay a plain `‛`.
fn quote_ahead(next: char, next_at_end: bool) -> bool {
    forbidden(next)
        || stand_in(next, next_at_end)
        || next == QUOTE
        || (next_at_end && matches!(next, ' ' | '.'))
}

/// The stand-in for a forbidden character or a letter.
fn twin(ch: char) -> char {
    let u = ch as u32;
    let mapped = if u < 0x20 { SYMBOL_NUL + u } else { u + FULL_WIDTH };
    char::from_u32(mapped).unwrap_or(ch)
}

/// The character a stand-in stands for.
fn original(ch: char) -> char {
    match ch {
        SYMBOL_SPACE => ' ',
        FULL_STOP => '.',
        _ if (SYMBOL_NUL..SYMBOL_NUL + 0x20).contains(&(ch as u32)) => {
            char::from_u32(ch as u32 - SYMBOL_NUL).unwrap_or(ch)
        }
        _ => fold(ch),
    }
}

/// A full-width character's ASCII twin (others unchanged).
fn fold(ch: char) -> char {
    let u = ch as u32;
    if (0xFF01..=0xFF5E).contains(&u) {
        char::from_u32(u - FULL_WIDTH).unwrap_or(ch)
    } else {
        ch
    }
}

/// Whether `ch` is a full-width Latin letter (`Ａ`–`Ｚ`, `ａ`–`ｚ`).
fn is_wide_letter(ch: char) -> bool {
    fold(ch) != ch && fold(ch).is_ascii_alphabetic()
}

/// The name from `c[at]` on, with that character folded to ASCII.
fn fold_first(c: &[char], at: usize) -> String {
    let mut s = String::with_capacity(c.len());
    s.push(fold(c[at]));
    s.extend(&c[at + 1..]);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pair(name: &str, windows: &str) {
        assert_eq!(to_windows(name), windows, "to_windows({name:?})");
        assert_eq!(from_windows(windows), name, "from_windows({windows:?})");
    }

    #[test]
    fn ordinary_names_pass_untouched() {
        for name in [
            "report.txt",
            "a b.c",
            "café",
            ".hidden",
            "console.log",
            "com10",
            "nul_x",
        ] {
            assert!(matches!(to_windows(name), Cow::Borrowed(_)), "{name}");
            assert_eq!(from_windows(name), name);
        }
        pair("x‛y", "x‛y");
    }

    #[test]
    fn forbidden_characters_become_their_full_width_twins() {
        pair("a:b.txt", "a：b.txt");
        pair("q?.txt", "q？.txt");
        pair(r#"<>:"|?*\"#, "＜＞：＂｜？＊＼");
        pair("tab\there", "tab␉here");
        pair("nul\0", "nul␀");
    }

    #[test]
    fn a_trailing_dot_or_space_is_replaced_only_at_the_end() {
        pair("name.", "name．");
        pair("name ", "name␠");
        pair("a. b", "a. b");
        pair("...", "..．");
        pair(" ", "␠");
    }

    #[test]
    fn reserved_device_names_are_escaped_in_any_case_and_with_any_extension() {
        pair("con.txt", "ｃon.txt");
        pair("AUX", "ＡUX");
        pair("Lpt1.tar.gz", "Ｌpt1.tar.gz");
        pair("com³", "ｃom³");
        pair("nul .log", "ｎul .log");
        pair("CONOUT$", "ＣONOUT$");
        // With its dot replaced, `con.` is no device name any more.
        pair("con.", "con．");
        pair("con．", "con‛．");
        assert!(!is_reserved("console"));
        assert!(!is_reserved("com10"));
    }

    #[test]
    fn names_that_already_hold_a_stand_in_are_quoted() {
        pair("a：b", "a‛：b");
        pair("end．", "end‛．");
        pair("end␠", "end‛␠");
        pair("ｃon.txt", "‛ｃon.txt");
        pair("‛ｃon", "‛‛ｃon");
        pair("‛:", "‛‛：");
        pair("‛‛", "‛‛‛");
        pair("x‛ ", "x‛‛␠");
        // A stand-in where it is not read back needs no quote.
        pair("a．b", "a．b");
        pair("ｃonsole", "ｃonsole");
    }

    #[test]
    fn paths_are_mapped_component_by_component() {
        assert_eq!(path_to_windows("a:b/con/c."), "a：b/ｃon/c．");
        assert_eq!(path_from_windows("a：b/ｃon/c．"), "a:b/con/c.");
        assert!(matches!(
            path_to_windows("docs/2024/report.pdf"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn no_mapped_name_holds_anything_windows_refuses() {
        for name in ["a:b", "con", "x.", "y ", "\u{1}", "lpt9.x"] {
            let w = to_windows(name);
            assert!(!w.chars().any(forbidden), "{w}");
            assert!(!w.ends_with(['.', ' ']), "{w}");
            assert!(!is_reserved(&w), "{w}");
        }
    }

    /// Names made of the characters the rules treat specially, plus a few others.
    fn tricky_name() -> impl Strategy<Value = String> {
        let chars = prop::sample::select(vec![
            'a', 'c', 'o', 'n', 'x', '.', ' ', ':', '*', '\\', '\u{1}', '‛', '：', '＊', '．', '␠', '␁',
            'ｃ', 'Ｃ', '1', '¹', '$',
        ]);
        prop::collection::vec(chars, 1..8).prop_map(|v| v.into_iter().collect())
    }

    /// Names Windows accepts, made of the characters that read back as others.
    fn windows_name() -> impl Strategy<Value = String> {
        let chars = prop::sample::select(vec![
            'a', 'c', 'o', 'n', '.', ' ', '‛', '：', '＊', '．', '␠', '␁', 'ｃ', 'Ｃ', '1', '¹',
        ]);
        prop::collection::vec(chars, 1..8).prop_map(|v| {
            let mut name: String = v.into_iter().collect();
            if name.ends_with(['.', ' ']) {
                name.push('z');
            }
            name
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn every_name_round_trips(name in tricky_name()) {
            let w = to_windows(&name);
            prop_assert_eq!(from_windows(&w), name.as_str(), "via {:?}", w);
            prop_assert!(!w.chars().any(forbidden));
            prop_assert!(!w.ends_with(['.', ' ']));
            prop_assert!(!is_reserved(&w));
        }

        #[test]
        fn windows_names_read_back_the_same(name in windows_name()) {
            prop_assume!(!is_reserved(&name) && !name.contains("‛‛"));
            let original = from_windows(&name).into_owned();
            prop_assert_eq!(to_windows(&original), name.as_str(), "via {:?}", original);
        }
    }
}
