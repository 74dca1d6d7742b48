//! Where a backup goes: parsed once from the user's text into a [`Target`].
//!
//! The seed program took `bucket::prefix`; S3 users type `s3://bucket/prefix`;
//! and a local directory store lets people try the tool (or back up to a disk
//! or NAS) with no cloud account. Anything else is refused with a message that
//! lists the valid forms, so a typo never silently becomes a local directory
//! or a bucket named after the typo.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The text shown whenever a target cannot be parsed.
pub const VALID_FORMS: &str =
    "valid forms: bucket::prefix, s3://bucket/prefix, file:///path, /path, ./path, ../path, ~/path";

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
    /// local stores by absolute path, so `./b` and `/home/me/b` are one set.
    pub fn canonical(&self) -> String {
        match self {
            Target::Local { root } => std::path::absolute(root)
                .map(|abs| Target::Local { root: abs }.to_string())
                .unwrap_or_else(|_| self.to_string()),
            Target::S3 { .. } => self.to_string(),
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
            return local(rest);
        }
        if text.starts_with('/')
            || text.starts_with("./")
            || text.starts_with("../")
            || text == "."
            || text == ".."
        {
            return local(text);
        }
        if text == "~" || text.starts_with("~/") {
            let home = dirs::home_dir()
                .ok_or_else(|| TargetError::new(text, "cannot find the home directory for '~'"))?;
            let rest = text.trim_start_matches('~').trim_start_matches('/');
            return Ok(Target::Local {
                root: home.join(rest),
            });
        }
        if let Some((bucket, prefix)) = text.split_once("::") {
            return s3(text, bucket, prefix);
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

fn local(path: &str) -> Result<Target, TargetError> {
    Ok(Target::Local {
        root: PathBuf::from(path),
    })
}

fn s3(text: &str, bucket: &str, prefix: &str) -> Result<Target, TargetError> {
    validate_bucket(text, bucket)?;
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|seg| seg == ".." || seg == ".")
        || prefix.contains("//")
        || prefix.contains('\\')
        || prefix.contains('\0')
    {
        return Err(TargetError::new(
            text,
            format!("prefix '{prefix}' has an empty, '.' or '..' segment, a backslash or NUL"),
        ));
    }
    Ok(Target::S3 {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    })
}

/// Checks the bucket naming rules S3 enforces, so a typo fails here and not
/// as an obscure server error.
fn validate_bucket(text: &str, bucket: &str) -> Result<(), TargetError> {
    if bucket.is_empty() {
        return Err(TargetError::new(text, "no bucket name"));
    }
    let ok_chars = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == '_');
    let ok_ends = bucket
        .chars()
        .next()
        .zip(bucket.chars().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if !(3..=63).contains(&bucket.len()) || !ok_chars || !ok_ends || bucket.contains("..") {
        return Err(TargetError::new(
            text,
            format!(
                "'{bucket}' is not a valid bucket name (3-63 characters: lowercase letters, digits, '-', '.')"
            ),
        ));
    }
    Ok(())
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
        for t in ["/tmp/x", "./x", "../x", "file:///tmp/x"] {
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
        ] {
            let err = t.parse::<Target>().expect_err(t);
            assert!(err.to_string().contains("bucket::prefix"), "{err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for t in ["s3://bucket/a/b", "s3://bucket", "file:///tmp/x"] {
            assert_eq!(t.parse::<Target>().map(|t| t.to_string()).as_deref(), Ok(t));
        }
    }
}
