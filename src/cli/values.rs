//! The value parsers of the command line: each turns one flag's text into
//! its value or a one-line reason naming what is wrong, so that clap
//! reports it as a usage error (exit 2) before anything runs.

use crate::store::MAX_TIMEOUT_SECS;

/// Checks that a filter pattern is valid gitignore syntax.
pub(crate) fn parse_pattern(text: &str) -> Result<String, String> {
    crate::fs::filter::Filters::new(&[text.to_string()], &[], &[])
        .map(|_| text.to_string())
        .map_err(|e| match e {
            crate::fs::filter::FilterError::Pattern { cause, .. } => {
                format!("'{text}' is not a valid pattern: {cause}")
            }
            other => other.to_string(),
        })
}

/// Parses sizes like `5MiB`, `8M`, `1G`, `1048576` (K, M, G, T are powers
/// of 1024), in bytes. A negative one (`-5`, which clap is told to pass on
/// rather than take for a flag) is refused as such.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.starts_with('-') && t[1..].starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "'{text}' is negative: give a size such as 64MiB, 500K or 1048576"
        ));
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size (examples: 5MiB, 64M, 1G, 1048576)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "'{text}' has an unknown unit (use K, M, G or T, e.g. 64MiB)"
            ));
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// The lowest `--max-bandwidth`, in bytes per second.
const MIN_RATE: u64 = 1024;

/// `--max-bandwidth`: a size per second, at least [`MIN_RATE`] (a limit of
/// 0 bytes per second would never let a transfer finish, and one under
/// 1 KiB/s trips the SDK's stall check). No upper bound: any rate up to
/// `u64::MAX` is paced without overflow (it then never waits).
pub(crate) fn parse_rate(text: &str) -> Result<u64, String> {
    match parse_size(text)? {
        0 => Err("a limit of 0 bytes per second would never finish: give more than 0 (e.g. 500K)".into()),
        // The SDK ends a transfer that moves nothing for 5 s (its stalled
        // stream protection); under 1 KiB/s the pieces come too far apart.
        n if n < MIN_RATE => Err(format!(
            "'{text}' is under 1K bytes per second, too slow for a request to keep going: give at least 1K"
        )),
        n => Ok(n),
    }
}

/// A `--cost-per-1000` SPEC ([`crate::cost`]); a bad item is named.
pub(crate) fn parse_cost(text: &str) -> Result<crate::cost::CostSpec, String> {
    text.parse().map_err(|e: crate::cost::CostError| e.to_string())
}

/// A PATH of `restore`: relative to the backup root, with no `..`, `.`
/// or empty segment (a leading or trailing `/` is dropped, as the restore
/// does). Such a path can never name a file of a backup, and the restore
/// used to report it as "none of the requested paths exist" (exit 1).
pub(crate) fn parse_restore_path(text: &str) -> Result<String, String> {
    crate::fs::safe_path::validate(text.trim_matches('/')).map_err(|e| e.to_string())?;
    Ok(text.to_string())
}

/// A SOURCE or DEST directory: any path but a Windows spelling that names
/// no one directory here ([`crate::fs::winpath::check_dir_spelling`]), so
/// `E:\x` on Linux or `C:rel` on Windows is a usage error, not a
/// directory quietly so named (or one relative to a drive's hidden
/// current directory). A `file://` URL names the directory a TARGET's
/// would ([`crate::fs::winpath::from_file_url`]), never a directory
/// literally named `file:`.
pub(crate) fn parse_dir(text: &str) -> Result<std::path::PathBuf, String> {
    let path = match crate::fs::winpath::from_file_url(text) {
        Some(path) => path.map_err(|e| e.to_string())?,
        None => text.to_string(),
    };
    crate::fs::winpath::check_dir_spelling(&path).map_err(|e| e.to_string())?;
    Ok(std::path::PathBuf::from(path))
}

/// Checks an `--endpoint-url` before any request: an http(s) URL with a
/// host and, if given, a numeric port. The SDK would otherwise report a
/// malformed one only as a failed connection.
pub(crate) fn parse_endpoint(text: &str) -> Result<String, String> {
    const EXAMPLE: &str = "e.g. http://localhost:9000 or https://s3.example.com";
    let lower = text.to_ascii_lowercase();
    let scheme_len = if lower.starts_with("http://") {
        7
    } else if lower.starts_with("https://") {
        8
    } else {
        return Err(format!("'{text}' is not an http:// or https:// URL ({EXAMPLE})"));
    };
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "'{text}' contains a space or control character ({EXAMPLE})"
        ));
    }
    let authority = text[scheme_len..].split(['/', '?', '#']).next().unwrap_or("");
    // A password there would be printed in errors and handed to hooks; S3
    // authenticates with the AWS credentials, never with the URL's.
    if authority.contains('@') {
        return Err(format!(
            "'{}' holds a user name or password; leave them out ({EXAMPLE}): requests are signed with the AWS credentials",
            text.split_once('@').map_or(text, |(_, h)| h)
        ));
    }
    let host_port = authority;
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, rest)) => (addr, rest.strip_prefix(':')),
            None => ("", None),
        },
        None => match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err(format!("'{text}' has no host name ({EXAMPLE})"));
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(format!("'{text}' has an invalid port '{port}' ({EXAMPLE})"));
    }
    Ok(text.to_string())
}

/// Checks a `--region` name: letters, digits, '-', '_' and '.', as region
/// names of S3 and S3-compatible servers are.
pub(crate) fn parse_region(text: &str) -> Result<String, String> {
    if text.is_empty()
        || !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "'{text}' is not a region name (letters, digits and '-', e.g. us-east-1, eu-west-3)"
        ));
    }
    Ok(text.to_string())
}

/// `--multipart-threshold`: a size within S3's part limits (5MiB to 5GiB),
/// since no object above 5GiB can be sent whole and parts below 5MiB are
/// refused. The engine used to raise or lower other values without a word.
pub(crate) fn parse_threshold(text: &str) -> Result<u64, String> {
    let n = parse_size(text)?;
    if !(crate::store::MIN_PART_SIZE..=crate::store::MAX_SINGLE_OBJECT).contains(&n) {
        return Err(format!(
            "multipart threshold '{text}' is outside 5MiB to 5GiB (S3's smallest part and largest single upload)"
        ));
    }
    Ok(n)
}

/// A whole number, 0 or more, for the options that count or time things.
/// Negative ones (which clap passes on for these options instead of taking
/// them for flags) are named as such rather than as "unexpected argument".
pub(crate) fn parse_whole(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix('-')
        && !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!("'{text}' is negative"));
    }
    t.parse::<u64>()
        .map_err(|e| format!("'{text}' is not a whole number ({e})"))
}

/// `--connect-timeout` and `--read-timeout`, in seconds: 1 to
/// [`MAX_TIMEOUT_SECS`]. 0 used to be replaced by the default without a word.
pub(crate) fn parse_timeout(text: &str) -> Result<u64, String> {
    match parse_whole(text)? {
        0 => Err("a timeout of 0 seconds would never let a request finish: give 1 or more".into()),
        n if n > MAX_TIMEOUT_SECS => Err(format!(
            "'{text}' seconds is more than a day ({MAX_TIMEOUT_SECS})"
        )),
        n => Ok(n),
    }
}

/// `forget --keep-last N`: 0 or more (0 keeps only the newest, which is never removed).
pub(crate) fn parse_keep_last(text: &str) -> Result<usize, String> {
    let n = parse_whole(text)?;
    usize::try_from(n).map_err(|_| format!("'{text}' is too large"))
}

/// A `--keep-*` count: a whole number, or `unlimited`
/// ([`crate::retention::policy::UNLIMITED`]).
pub(crate) fn parse_keep_count(text: &str) -> Result<usize, String> {
    if text.trim().eq_ignore_ascii_case("unlimited") {
        return Ok(crate::retention::policy::UNLIMITED);
    }
    parse_keep_last(text)
}

/// `backup --tag`: not empty, no comma (`--keep-tag a,b` means both), no
/// control character, at most 128 bytes.
pub(crate) fn parse_tag(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("empty tag".into());
    }
    if text.contains(',') {
        return Err(format!(
            "'{text}' has a comma: give each tag with its own --tag (--keep-tag a,b means tagged a and b)"
        ));
    }
    if text.chars().any(char::is_control) || text.len() > 128 {
        return Err(format!("{text:?} has a control character or is over 128 bytes"));
    }
    Ok(text.to_string())
}

/// `--keep-tag a,b`: one or more tags, each as [`parse_tag`] checks it.
pub(crate) fn parse_keep_tag(text: &str) -> Result<String, String> {
    for tag in text.split(',') {
        parse_tag(tag)?;
    }
    Ok(text.to_string())
}

/// `forget --keep-within`: a duration as humantime reads it (`30d`, `12h`,
/// `1y`); a negative one is named as such.
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    if text.trim().starts_with('-') {
        return Err(format!(
            "'{text}' is negative: give a duration such as 30d, 12h or 1y"
        ));
    }
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

/// `state … --set ID`: a set ID from 'state sets', which are 1 or more.
pub(crate) fn parse_set_id(text: &str) -> Result<i64, String> {
    match parse_whole(text)? {
        0 => Err("set IDs start at 1 (see 's3backup state sets')".into()),
        n => i64::try_from(n).map_err(|_| format!("'{text}' is too large")),
    }
}

/// `state runs --limit N`: 1 or more (0 would print nothing and say nothing).
pub(crate) fn parse_limit(text: &str) -> Result<u32, String> {
    match parse_whole(text)? {
        0 => Err("a limit of 0 would show no runs: give 1 or more".into()),
        n => u32::try_from(n).map_err(|_| format!("'{text}' is too large")),
    }
}

/// A `--set` or `--profile` name: not empty or blank (an empty profile
/// name would quietly mean none, an empty set name a set no one can name).
pub(crate) fn parse_name(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("empty name".into());
    }
    Ok(text.to_string())
}

/// An `--exclude-if-present NAME`: one entry's name, matched in each
/// directory, so not empty, not `.` or `..`, and without a `/` (or, as
/// Windows reads it, a `\\`).
pub(crate) fn parse_marker_name(text: &str) -> Result<String, String> {
    if text.is_empty() || text == "." || text == ".." {
        return Err(format!(
            "'{text}' is not a file name: give a plain name such as .nobackup"
        ));
    }
    if text.contains('/') || (cfg!(windows) && text.contains('\\')) {
        return Err(format!(
            "'{text}' has a '/': give a plain file name (matched in every directory), such as .nobackup"
        ));
    }
    Ok(text.to_string())
}

/// A backup `--set NAME`: a name that prints on one line of the `sets`
/// table (not blank, no control characters such as a newline or a tab).
/// A name of digits only is refused where a new set is named (see
/// [`crate::cli::sets::resolve`]), as it would read as a set ID in
/// `state … --set`; an older set named so still runs by its name.
pub(crate) fn parse_set_name(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("empty name".into());
    }
    if text.chars().any(char::is_control) {
        return Err(format!(
            "{text:?} has a control character (a newline, a tab, …): a set name must print on one line"
        ));
    }
    Ok(text.to_string())
}

/// The `--set` of `state files`, `state show` and `state runs`: a set ID
/// (digits, as `state sets` lists them) or a set's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetRef {
    /// A set ID.
    Id(i64),
    /// A set's name.
    Name(String),
}

/// Parses a [`SetRef`]: digits are an ID (0 and negative numbers are
/// refused as IDs), anything else a name.
pub(crate) fn parse_set_ref(text: &str) -> Result<SetRef, String> {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if digits(text.trim()) || text.trim().strip_prefix('-').is_some_and(digits) {
        return parse_set_id(text).map(SetRef::Id);
    }
    parse_set_name(text).map(SetRef::Name)
}

/// A snapshot ID as typed: not empty. An empty one is a prefix of every
/// ID, so it would be reported as "ambiguous" (or, with one snapshot,
/// quietly pick it).
pub(crate) fn parse_snapshot_id(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err(
            "empty snapshot name: give an ID from 's3backup snapshots', a unique prefix of one, or 'latest'"
                .into(),
        );
    }
    Ok(text.to_string())
}

/// The PATTERN of `state files`: a pattern as `--exclude` takes (see
/// [`parse_pattern`]), not empty (it would list nothing and say nothing).
pub(crate) fn parse_state_pattern(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("empty pattern: give one such as 'docs/*.pdf' or '*.txt'".into());
    }
    parse_pattern(text)
}

/// A PATTERN of `snapshots find`: as [`parse_state_pattern`], but not one
/// that would find nothing whatever the snapshots hold: in the syntax of
/// `--exclude` a pattern starting with `#` is a comment and one starting
/// with `!` re-includes, so neither matches a path.
pub(crate) fn parse_find_pattern(text: &str) -> Result<String, String> {
    let pattern = parse_state_pattern(text)?;
    match pattern.chars().next() {
        Some('#') => Err(format!(
            "'{text}' is a comment in the syntax of --exclude and finds nothing: write '\\{text}' for a name starting with '#'"
        )),
        Some('!') => Err(format!(
            "'{text}' is a negation in the syntax of --exclude and finds nothing: write '\\{text}' for a name starting with '!'"
        )),
        _ => Ok(pattern),
    }
}

pub(crate) fn parse_part_size(text: &str) -> Result<u64, String> {
    let n = parse_size(text)?;
    if !(crate::store::MIN_PART_SIZE..=crate::store::MAX_PART_SIZE).contains(&n) {
        return Err(format!(
            "part size '{text}' is outside S3's limits of 5MiB to 5GiB"
        ));
    }
    Ok(n)
}

/// `--max-delete` and `--max-change`: a count `N` or a share `P%` of the
/// set (0 to 100, decimals allowed).
pub(crate) fn parse_guard_limit(text: &str) -> Result<crate::plan::guard::Limit, String> {
    text.parse()
        .map_err(|e: crate::plan::guard::LimitError| e.to_string())
}

/// `--history MODE`: `auto`, `both`, `versions` or `off` (see [`crate::history::HistoryMode`]).
pub(crate) fn parse_history(text: &str) -> Result<crate::history::HistoryMode, String> {
    use crate::history::HistoryMode;
    [
        HistoryMode::Auto,
        HistoryMode::Both,
        HistoryMode::Versions,
        HistoryMode::Off,
    ]
    .into_iter()
    .find(|m| m.as_str() == text)
    .ok_or_else(|| format!("unknown history mode '{text}': give auto, both, versions or off"))
}

/// `--copy-cutoff SIZE`: 5 MiB (S3's smallest part) to 5 GiB (the most one CopyObject takes).
pub(crate) fn parse_copy_cutoff(text: &str) -> Result<u64, String> {
    let n = parse_size(text)?;
    if !(crate::store::MIN_PART_SIZE..=crate::store::MAX_SINGLE_OBJECT).contains(&n) {
        return Err(format!(
            "copy cutoff '{text}' is outside 5MiB to 5GiB (S3 copies at most 5GiB at once)"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("5MiB"), Ok(5 << 20));
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5XB").is_err());
        assert!(parse_part_size("1MiB").is_err());
    }

    #[test]
    fn checks_endpoints_and_regions() {
        for ok in [
            "http://localhost:9000",
            "https://s3.example.com",
            "http://127.0.0.1:9000/",
            "http://[::1]:9000",
            "HTTPS://host",
        ] {
            assert_eq!(parse_endpoint(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "not a url",
            "127.0.0.1:9000",
            "ftp://host",
            "http://",
            "http://:9000",
            "http://host:port",
            "http://host:99999",
            "http://ho st",
        ] {
            assert!(parse_endpoint(bad).unwrap_err().contains(bad), "{bad}");
        }
        // A password in the URL is refused without being repeated.
        for secret in ["http://user:SECRETPW@127.0.0.1:9000", "https://SECRETPW@host/"] {
            let e = parse_endpoint(secret).unwrap_err();
            assert!(
                e.contains("user name or password") && !e.contains("SECRETPW"),
                "{e}"
            );
        }
        assert!(parse_region("us-east-1").is_ok());
        assert!(parse_region("garage").is_ok());
        for bad in ["", "eu west 1", "us-east-1\n"] {
            assert!(parse_region(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers_names_and_patterns_are_checked() {
        assert!(parse_size("-5").unwrap_err().contains("negative"));
        assert!(parse_size("--json").unwrap_err().contains("not a size"));
        assert!(parse_rate("0").unwrap_err().contains("0 bytes per second"));
        assert!(parse_restore_path("a/../b").unwrap_err().contains("'..' segment"));
        assert_eq!(parse_restore_path("/docs/").as_deref(), Ok("/docs/"));
        assert_eq!(parse_rate("1K"), Ok(1024));
        assert!(parse_threshold("0").is_err());
        assert!(parse_threshold("6GiB").is_err());
        assert_eq!(parse_threshold("5MiB"), Ok(5 << 20));
        assert!(parse_timeout("0").unwrap_err().contains("0 seconds"));
        assert!(parse_timeout("-3").unwrap_err().contains("negative"));
        assert!(parse_timeout("86401").unwrap_err().contains("more than a day"));
        assert_eq!(parse_timeout("86400"), Ok(86_400));
        assert_eq!(parse_keep_last("0"), Ok(0));
        assert!(parse_keep_last("-1").unwrap_err().contains("negative"));
        assert!(parse_duration("-1d").unwrap_err().contains("negative"));
        assert!(parse_set_id("0").is_err() && parse_set_id("-2").is_err());
        assert!(parse_limit("0").is_err());
        assert!(parse_snapshot_id("").unwrap_err().contains("empty snapshot name"));
        assert!(parse_name(" ").is_err());
        assert!(parse_set_name("a\nb").is_err() && parse_set_name("\t").is_err());
        assert_eq!(parse_set_ref("12"), Ok(SetRef::Id(12)));
        assert_eq!(parse_set_ref("docs"), Ok(SetRef::Name("docs".into())));
        assert!(
            parse_set_ref("-1").is_err() && parse_set_ref("0").is_err() && parse_set_ref("a\rb").is_err()
        );
        for ok in ["docs/*.pdf", "docs/", "a[[]b", "[a-z]?"] {
            assert_eq!(parse_pattern(ok).as_deref(), Ok(ok));
        }
        for bad in ["a[", "x[ab"] {
            assert!(parse_pattern(bad).is_err(), "{bad:?}");
        }
        assert!(parse_state_pattern(" ").unwrap_err().contains("empty pattern"));
    }
}
