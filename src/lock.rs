//! Object Lock (S3's write-once retention), in the tool's own terms.
//!
//! A backup with `--lock-days N` asks the store to keep every object
//! version it writes (file objects, copies, content-area copies, the
//! manifest) unchanged and undeletable until the run's start plus N days;
//! without it, a bucket's default retention (if it has one) does the same
//! server-side. Either way the run records the lock its writes got in its
//! manifest's header ([`crate::manifest::Header::lock`]), and
//! `snapshots forget` / `--prune` leave what is still locked alone (see
//! [`crate::retention`]).
//!
//! How deletes behave on such a bucket (versioning is always on there): a
//! plain DELETE only adds a delete marker and is allowed whatever the
//! locks; deleting one specific version that is still locked is refused
//! (AccessDenied). s3backup only ever sends plain DELETEs, so no lock
//! refuses any of its requests; what a lock protects is the versions its
//! snapshots record, which a restore reads by version ID. A snapshot whose
//! manifest is locked is therefore never forgotten by the tool (a delete
//! marker would hide it while its bytes stay, billed, until the date).
//!
//! The mode, as S3 defines it: `governance` may be lifted or shortened by
//! a principal granted `s3:BypassGovernanceRetention` (s3backup never asks
//! to), `compliance` by nobody, the account's root included, until the
//! date. Governance is the default: a mistyped `--lock-days 3650` can then
//! still be undone by an administrator, and it already stops anyone using
//! the backup's own credentials (which should not hold the bypass right).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The longest `--lock-days` accepted: 100 years, as long as S3 lets a
/// bucket's default retention run (longer is surely a typo).
pub const MAX_LOCK_DAYS: u32 = 36_500;

/// S3's two retention modes (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Liftable by a principal with `s3:BypassGovernanceRetention`: the default.
    #[default]
    Governance,
    /// Liftable by nobody until the date.
    Compliance,
}

impl LockMode {
    /// The name the command line, manifests and JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        }
    }

    /// The value of S3's `x-amz-object-lock-mode` header.
    pub fn s3_name(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    /// Reads S3's spelling (any case); `None` for anything else.
    pub fn from_s3(text: &str) -> Option<LockMode> {
        match text.to_ascii_uppercase().as_str() {
            "GOVERNANCE" => Some(LockMode::Governance),
            "COMPLIANCE" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

/// A retention: what an object version carries, and what a run records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// How strict.
    pub mode: LockMode,
    /// Until when (UTC, whole seconds): nothing the lock covers can be
    /// deleted or overwritten before then.
    #[serde(with = "rfc3339")]
    pub until: DateTime<Utc>,
}

impl Retention {
    /// `days` days after `start`, cut to whole seconds (S3 keeps no finer).
    pub fn days_after(mode: LockMode, start: DateTime<Utc>, days: u32) -> Retention {
        let until = start + chrono::Duration::days(i64::from(days));
        Retention {
            mode,
            until: DateTime::from_timestamp(until.timestamp(), 0).unwrap_or(until),
        }
    }

    /// Whether it still holds at `now`.
    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        self.until > now
    }

    /// "governance until 2026-12-30T10:00:00Z", for messages and tables.
    pub fn describe(&self) -> String {
        format!("{} until {}", self.mode.as_str(), rfc3339::text(&self.until))
    }
}

/// A bucket's Object Lock, as GetObjectLockConfiguration tells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketLock {
    /// The default retention new object versions get when a write names
    /// none: its mode and length in days (S3's years counted as 365 days).
    pub default: Option<(LockMode, u32)>,
}

/// RFC 3339 text with whole seconds and `Z`, as S3 and the manifests write times.
mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// The text of `t`.
    pub(super) fn text(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    pub(super) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&text(t))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_round_trips_as_rfc3339() {
        let start = DateTime::parse_from_rfc3339("2026-11-30T10:00:00.750Z")
            .unwrap()
            .with_timezone(&Utc);
        let r = Retention::days_after(LockMode::Compliance, start, 2);
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"mode":"compliance","until":"2026-12-02T10:00:00Z"}"#);
        assert_eq!(serde_json::from_str::<Retention>(&text).unwrap(), r);
        assert!(r.holds_at(start) && !r.holds_at(r.until));
        assert_eq!(r.describe(), "compliance until 2026-12-02T10:00:00Z");
        assert_eq!(LockMode::from_s3("governance"), Some(LockMode::Governance));
        assert_eq!(LockMode::from_s3("x"), None);
    }
}
