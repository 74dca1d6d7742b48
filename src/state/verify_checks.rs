//! The `verify_checks` table: what `verify --deep --sample` downloaded and
//! checked, and when ([`crate::verify::sample`]), per target and object
//! key, with the content (blake3, or the ETag without one) the check was of
//! and what it found.

use std::collections::HashMap;

use rusqlite::params;

use super::{StateDb, StateError, StateResult};

/// What one check of an object found (the table's `result` text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    /// Downloaded whole and it held the content: the check covers it.
    Intact,
    /// Missing or other bytes: read again first next time.
    Damaged,
    /// The store would not give the bytes (archived, access denied, kept
    /// failing): not covered, but taken after the others, oldest attempt
    /// first, so that it does not hold the cycle up.
    Unreadable,
}

impl CheckResult {
    /// The text the table holds.
    fn as_str(self) -> &'static str {
        match self {
            CheckResult::Intact => "intact",
            CheckResult::Damaged => "damaged",
            CheckResult::Unreadable => "unreadable",
        }
    }

    /// The result the table's text names (an unknown text is taken as
    /// damaged: checked again first).
    fn from_text(text: &str) -> CheckResult {
        match text {
            "intact" => CheckResult::Intact,
            "unreadable" => CheckResult::Unreadable,
            _ => CheckResult::Damaged,
        }
    }
}

/// One object's last check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyCheck {
    /// The object's key in the store.
    pub key: String,
    /// The content checked: blake3 hex, or the ETag for an entry without one.
    pub content: String,
    /// When, nanoseconds since the epoch.
    pub checked_ns: i64,
    /// What the check found.
    pub result: CheckResult,
}

impl StateDb {
    /// The last check of each object of `target` (its text as the state
    /// keys a set's target, endpoint included: `crate::store::set_target`),
    /// by key.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read.
    pub fn verify_checks(&self, target: &str) -> StateResult<HashMap<String, VerifyCheck>> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, content, checked_ns, result FROM verify_checks WHERE target = ?1")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([target], |r| {
                Ok(VerifyCheck {
                    key: r.get(0)?,
                    content: r.get(1)?,
                    checked_ns: r.get(2)?,
                    result: CheckResult::from_text(&r.get::<_, String>(3)?),
                })
            })
            .map_err(self.err())?;
        rows.map(|r| r.map(|c| (c.key.clone(), c)))
            .collect::<Result<_, _>>()
            .map_err(self.err())
    }

    /// Records `checks` of `target`'s objects (each replacing the key's
    /// last check), in one transaction.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be written.
    pub fn record_verify_checks(&mut self, target: &str, checks: &[VerifyCheck]) -> StateResult<()> {
        let path = self.path.clone();
        let err = |source| StateError::Sqlite {
            path: path.clone(),
            cause: source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO verify_checks (target, key, content, checked_ns, result)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(err)?;
            for c in checks {
                stmt.execute(params![target, c.key, c.content, c.checked_ns, c.result.as_str()])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_replaces_the_last_one_of_its_key_and_targets_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(&dir.path().join("s.db")).unwrap();
        let check = |key: &str, content: &str, at: i64, result| VerifyCheck {
            key: key.into(),
            content: content.into(),
            checked_ns: at,
            result,
        };
        let (ok, bad, unread) = (CheckResult::Intact, CheckResult::Damaged, CheckResult::Unreadable);
        db.record_verify_checks(
            "s3://b/p",
            &[
                check("p/a", "h1", 1, ok),
                check("p/b", "h2", 2, bad),
                check("p/c", "h2", 3, unread),
            ],
        )
        .unwrap();
        db.record_verify_checks("s3://b/p", &[check("p/a", "h3", 5, ok)])
            .unwrap();
        db.record_verify_checks("s3://b/q", &[check("q/a", "h1", 1, ok)])
            .unwrap();
        let got = db.verify_checks("s3://b/p").unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got["p/a"], check("p/a", "h3", 5, ok));
        assert_eq!(got["p/b"], check("p/b", "h2", 2, bad));
        assert_eq!(got["p/c"], check("p/c", "h2", 3, unread));
    }
}
