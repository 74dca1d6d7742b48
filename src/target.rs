//! Where a backup goes: parsed once from the user's text into a [`Target`].
//!
//! The seed program took `bucket::prefix`; S3 users type `s3://bucket/prefix`;
//! and a local directory store lets people try the tool (or back up to a disk
//! or NAS) with no cloud account. Anything else is refused with a message that
//! lists the valid forms, so a typo never silently becomes a local directory
//! or a bucket named after the typo.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use crate::fs::winpath::{WindowsForm, windows_form};

/// The text shown whenever a target cannot be parsed.
#[cfg(not(windows))]
pub(crate) const VALID_FORMS: &str =
    "valid forms: bucket::prefix, s3://bucket/prefix, file:///path, /path, ./path, ../path, ~/path";

/// The text shown whenever a target cannot be parsed (Windows adds its
/// drive, network and verbatim paths).
#[cfg(windows)]
pub(crate) const VALID_FORMS: &str = r"valid forms: bucket::prefix, s3://bucket/prefix, file:///C:/path, C:\path, C:/path, \\server\share\path, \\?\C:\path, .\path, ..\path, ~\path";

/// A parsed backup destination: an S3 bucket and key prefix, or a local directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An S3 (or S3-compatible) bucket and a key prefix without leading or trailing `/`.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix; empty means the bucket root.
        prefix: String,
    },
    /// A directory on a local (or mounted) file system holding the same layout as a bucket.
    Local {
        /// The store's root directory.
        root: PathBuf,
    },
}

/// Why a target text was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid target '{text}': {reason} ({VALID_FORMS})")]
pub struct TargetError {
    text: String,
    reason: String,
}

impl TargetError {
    fn new(text: &str, reason: impl Into<String>) -> Self {
        Self {
            text: text.to_string(),
            reason: reason.into(),
        }
    }
}

impl Target {
    /// The key prefix under which files live ("" for the bucket root or a local store).
    pub fn prefix(&self) -> &str {
        match self {
            Target::S3 { prefix, .. } => prefix,
            Target::Local { .. } => "",
        }
    }

    /// A stable text used to identify the backup set in the state database:
    /// local stores by their real path (symlinks resolved, see [`real_path`]),
    /// so `./b`, `/home/me/b` and a link to it are one set, with one lock.
    pub(crate) fn canonical(&self) -> String {
        match self {
            Target::Local { root } => Target::Local {
                root: real_path(root),
            }
            .to_string(),
            Target::S3 { .. } => self.to_string(),
        }
    }
}

/// `path` made absolute with symlinks resolved as far as it exists (its
/// longest existing ancestor canonicalised, the rest appended), so two
/// spellings of one place compare equal even before it is created.
pub(crate) fn real_path(path: &Path) -> PathBuf {
    let Ok(abs) = std::path::absolute(path) else {
        return path.to_path_buf();
    };
    let mut rest = Vec::new();
    let mut base = abs.as_path();
    loop {
        if let Ok(c) = crate::fs::winpath::canonicalize(base) {
            let mut out = c;
            for part in rest.iter().rev() {
                match part {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(n) => out.push(n),
                    _ => {}
                }
            }
            return out;
        }
        match (base.parent(), base.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                base = parent;
            }
            _ => return abs,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Target::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Target::Local { root } => write!(f, "file://{}", root.display()),
        }
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(TargetError::new(text, "empty"));
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            return s3(text, bucket, prefix);
        }
        if let Some(rest) = text.strip_prefix("file://") {
            if rest.is_empty() {
                return Err(TargetError::new(text, "no directory after file://"));
            }
            // file://HOST/path names a host, so file://relative is no path;
            // file://./x (how a relative store displays) is unambiguous.
            if !(is_explicit_path(rest)) {
                return Err(TargetError::new(
                    text,
                    format!(
                        "a file:// URL takes an absolute path, file:///path (or file://./path), or give a plain './{rest}'"
                    ),
                ));
            }
            // file:///C:/x names the drive path C:/x on Windows.
            if cfg!(windows)
                && let Some(drive) = rest.strip_prefix('/')
                && windows_form(drive) == Some(WindowsForm::Drive)
            {
                return local(drive);
            }
            return local(rest);
        }
        if let Some(form) = windows_form(text) {
            return windows_path(text, form);
        }
        if is_explicit_path(text) {
            return local(text);
        }
        if text == "~" || text.starts_with("~/") || (cfg!(windows) && text.starts_with("~\\")) {
            let home = dirs::home_dir()
                .ok_or_else(|| TargetError::new(text, "cannot find the home directory for '~'"))?;
            let rest = text.trim_start_matches('~').trim_start_matches(['/', '\\']);
            return Ok(Target::Local {
                root: home.join(rest),
            });
        }
        if let Some((bucket, prefix)) = text.split_once("::") {
            if prefix.starts_with(':') {
                return Err(TargetError::new(
                    text,
                    format!(
                        "prefix '{prefix}' starts with ':' (bucket and prefix are separated by exactly '::')"
                    ),
                ));
            }
            // The seed's form tolerates one leading '/': `bucket::/docs`.
            return s3(text, bucket, prefix.strip_prefix('/').unwrap_or(prefix));
        }
        if text.contains("://") {
            return Err(TargetError::new(text, "unsupported scheme"));
        }
        Err(TargetError::new(
            text,
            "not a bucket::prefix, an s3:// URL or a local path",
        ))
    }
}

/// Whether `text` is unmistakably a path: absolute, or starting with `.`/`..`.
fn is_explicit_path(text: &str) -> bool {
    text.starts_with('/') || text.starts_with("./") || text.starts_with("../") || text == "." || text == ".."
}

/// A target spelled as a Windows path ([`windows_form`]): a local store on
/// Windows; refused elsewhere, where `C:\x` would be a strange relative
/// directory name that no one means, and refused everywhere when it does
/// not name one fixed directory (`C:x`, a `\\.\` device).
fn windows_path(text: &str, form: WindowsForm) -> Result<Target, TargetError> {
    match form {
        WindowsForm::DriveRelative if cfg!(windows) => Err(TargetError::new(
            text,
            r"a drive letter without '\' is relative to that drive's current directory: write the full path, e.g. C:\backup",
        )),
        WindowsForm::Device => Err(TargetError::new(text, r"a device path (\\.\) is no directory")),
        _ if cfg!(windows) => local(text),
        _ => Err(TargetError::new(
            text,
            "a Windows path, and this is not Windows: give this system's path (e.g. /mnt/c/backup or ./backup)",
        )),
    }
}

fn local(path: &str) -> Result<Target, TargetError> {
    Ok(Target::Local {
        root: PathBuf::from(path),
    })
}

/// The directory under every target prefix that holds the tool's own
/// objects (manifests, spare copies): no target may be it or lie under it.
pub(crate) const OWN_AREA: &str = ".s3backup";

/// An S3 target from its bucket and the prefix as typed after the bucket's
/// separator. One trailing `/` is dropped (the seed's own example is
/// `restore 1230128380123::linkedin/ …`); an empty segment anywhere else
/// (`s3://bkt//x`, `bkt::a//b`, `bkt::a//`) is refused rather than
/// quietly collapsed, as are `.`/`..` segments, backslashes, NUL, and a
/// segment named [`OWN_AREA`], which would mix a backup with the tool's
/// own objects of a backup one level up.
fn s3(text: &str, bucket: &str, prefix: &str) -> Result<Target, TargetError> {
    validate_bucket(text, bucket)?;
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    if !prefix.is_empty() {
        let segments: Vec<&str> = prefix.split('/').collect();
        if segments
            .iter()
            .any(|seg| seg.is_empty() || *seg == ".." || *seg == ".")
            || prefix.contains('\\')
            || prefix.contains('\0')
        {
            return Err(TargetError::new(
                text,
                format!("prefix '{prefix}' has an empty, '.' or '..' segment, a backslash or NUL"),
            ));
        }
        if segments.contains(&OWN_AREA) {
            return Err(TargetError::new(
                text,
                format!(
                    "prefix '{prefix}' is or lies under '{OWN_AREA}', the area s3backup keeps its manifests in: choose another prefix"
                ),
            ));
        }
    }
    Ok(Target::S3 {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    })
}

/// Checks a bucket name against S3's naming rules for general purpose
/// buckets, so a typo fails here, naming the rule, and not as a bare
/// `HTTP 400` (a HEAD answer has no body to explain it). The rules, from
/// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html>:
/// 3 to 63 characters; only lowercase letters, digits, `.` and `-`;
/// beginning and ending with a letter or digit; no two adjacent periods;
/// not formatted as an IPv4 address.
///
/// Uppercase letters and `_` are refused although S3 kept some buckets so
/// named, created in us-east-1 before March 2018: such names cannot be
/// created any more, cannot be reached with virtual-hosted addressing (they
/// are not DNS names), and MinIO, Ceph RGW (by default) and R2 refuse them
/// too, so a `my_bucket` here is far more likely a typo than one of those.
/// S3's reserved prefixes and suffixes (`xn--`, `-s3alias`, `--x-s3`, …)
/// are not checked: names with them are access-point aliases and directory
/// buckets, which the S3 API takes where a bucket name goes.
fn validate_bucket(text: &str, bucket: &str) -> Result<(), TargetError> {
    if bucket.is_empty() {
        return Err(TargetError::new(text, "no bucket name"));
    }
    let length = bucket.chars().count();
    let broken = if !(3..=63).contains(&length) {
        format!("it has {length} characters, not 3 to 63")
    } else if let Some(c) = bucket
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        match c {
            'A'..='Z' => "it has an uppercase letter".to_string(),
            _ => format!("it contains {c:?}"),
        }
    } else if !bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        "it does not begin and end with a letter or digit".to_string()
    } else if bucket.contains("..") {
        "it has two adjacent periods".to_string()
    } else if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        "it is formatted as an IP address".to_string()
    } else {
        return Ok(());
    };
    Err(TargetError::new(
        text,
        format!(
            "'{bucket}' is not a valid bucket name: {broken} (S3 bucket names are 3-63 lowercase letters, digits, '.' and '-', beginning and ending with a letter or digit)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3t(bucket: &str, prefix: &str) -> Target {
        Target::S3 {
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn parses_seed_form() {
        assert_eq!("mybucket::docs/x".parse(), Ok(s3t("mybucket", "docs/x")));
        assert_eq!("mybucket::".parse(), Ok(s3t("mybucket", "")));
        assert_eq!(
            "1230128380123::linkedin/".parse(),
            Ok(s3t("1230128380123", "linkedin"))
        );
    }

    #[test]
    fn parses_s3_url() {
        assert_eq!("s3://b-1/p/q/".parse(), Ok(s3t("b-1", "p/q")));
        assert_eq!("s3://bucket".parse(), Ok(s3t("bucket", "")));
    }

    #[test]
    fn parses_local_forms() {
        for t in [
            "/tmp/x",
            "./x",
            "../x",
            "file:///tmp/x",
            "file://./x",
            "file://../x",
        ] {
            assert!(matches!(t.parse::<Target>(), Ok(Target::Local { .. })), "{t}");
        }
        let Ok(Target::Local { root }) = "file:///srv/b".parse::<Target>() else {
            panic!("not local")
        };
        assert_eq!(root, PathBuf::from("/srv/b"));
    }

    #[test]
    fn refuses_malformed() {
        for t in [
            "",
            "just-a-name",
            "s3://",
            "bucket:prefix",
            "ftp://x/y",
            "Bad_Bucket::x",
            "ab::x",
            "b..b::x",
            "bucket::a/../b",
            "bucket::a//b",
            "file://",
            // Issue 12: empty segments, ':x', relative file URLs, the tool's own area.
            "s3://bkt//x",
            "s3://bkt/x//",
            "bkt::a//",
            "bkt:::x",
            "file://relative",
            "file://host/x",
            "bkt::.s3backup",
            "s3://bkt/.s3backup/manifests",
            "bkt::docs/.s3backup/x",
        ] {
            let err = t.parse::<Target>().expect_err(t);
            assert!(err.to_string().contains("bucket::prefix"), "{err}");
        }
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in [
            "abc",
            "my-bucket.2",
            "1230128380123",
            &"a".repeat(63),
            "ap--ol-s3",
            "b--use1-az4--x-s3",
        ] {
            assert!(ok.parse::<Target>().is_err(), "a bare name is no target");
            assert_eq!(format!("{ok}::p").parse(), Ok(s3t(ok, "p")), "{ok}");
        }
        for (bad, rule) in [
            ("my_bucket", "contains '_'"),
            ("MyBucket", "uppercase"),
            ("ab", "2 characters"),
            (&"a".repeat(64), "64 characters"),
            ("-bkt", "begin and end"),
            ("bkt.", "begin and end"),
            ("b..b", "adjacent periods"),
            ("192.168.5.4", "IP address"),
            ("b\u{e9}b", "contains '\u{e9}'"),
        ] {
            let err = format!("s3://{bad}/x").parse::<Target>().unwrap_err().to_string();
            assert!(
                err.contains(&format!("'{bad}' is not a valid bucket name")),
                "{err}"
            );
            assert!(err.contains(rule), "{bad}: {err}");
        }
    }

    #[test]
    fn one_trailing_slash_is_dropped_and_one_leading_slash_after_colons() {
        assert_eq!("s3://bkt/x/".parse(), Ok(s3t("bkt", "x")));
        assert_eq!("s3://bkt/".parse(), Ok(s3t("bkt", "")));
        assert_eq!("bkt::/x".parse(), Ok(s3t("bkt", "x")));
        assert_eq!("bkt::/".parse(), Ok(s3t("bkt", "")));
        assert_eq!("s3://bkt/a.s3backup/x".parse(), Ok(s3t("bkt", "a.s3backup/x")));
    }

    const WINDOWS_PATHS: [&str; 7] = [
        r"C:\Users\me\Reports",
        r"E:\backup",
        "E:/backup",
        r"\\nas\docs\backup",
        r"\\?\E:\backup",
        r"\\?\UNC\nas\docs",
        r".\backup",
    ];

    #[cfg(windows)]
    #[test]
    fn windows_paths_are_local_stores_on_windows() {
        for t in WINDOWS_PATHS {
            assert_eq!(
                t.parse(),
                Ok(Target::Local {
                    root: PathBuf::from(t)
                }),
                "{t}"
            );
        }
        assert_eq!(
            "file:///C:/x".parse(),
            Ok(Target::Local {
                root: PathBuf::from("C:/x")
            })
        );
    }

    #[cfg(not(windows))]
    #[test]
    fn windows_paths_are_refused_elsewhere_with_the_reason() {
        for t in WINDOWS_PATHS {
            let err = t.parse::<Target>().expect_err(t).to_string();
            assert!(err.contains("a Windows path, and this is not Windows"), "{err}");
        }
        // A file URL keeps naming this system's absolute path.
        assert_eq!(
            "file:///C:/x".parse(),
            Ok(Target::Local {
                root: PathBuf::from("/C:/x")
            })
        );
    }

    #[test]
    fn drive_relative_and_device_paths_are_refused_everywhere() {
        // Elsewhere `C:x` is first of all a Windows path: no advice to
        // write `C:\backup`, which is refused there too.
        let drive = if cfg!(windows) {
            "relative to that drive's current directory"
        } else {
            "a Windows path, and this is not Windows"
        };
        for (t, why) in [
            ("C:", drive),
            ("D:backup", drive),
            (r"\\.\PhysicalDrive0", "device path"),
        ] {
            let err = t.parse::<Target>().expect_err(t).to_string();
            assert!(err.contains(why), "{t}: {err}");
        }
        // Two colons stay the bucket form (and its bucket rules).
        assert!(
            "C::x"
                .parse::<Target>()
                .unwrap_err()
                .to_string()
                .contains("not a valid bucket name")
        );
    }

    #[test]
    fn display_round_trips() {
        for t in ["s3://bucket/a/b", "s3://bucket", "file:///tmp/x"] {
            assert_eq!(t.parse::<Target>().map(|t| t.to_string()).as_deref(), Ok(t));
        }
    }
}
