//! The `backup_sets` table: one row per (source, target) pair, which
//! every other table's rows belong to, and the names given to sets.

use rusqlite::{OptionalExtension, params};

use super::{StateDb, StateError, StateResult};

/// A named set's row: what identifies it, and its saved options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedSet {
    /// The source text that identifies the set (with its target) in the state file.
    pub source: String,
    /// The target text that identifies it.
    pub target: String,
    /// The saved options, as JSON (written and read by the CLI's named sets).
    pub options: String,
}

impl StateDb {
    /// The ID of the set for (source, target), if it was ever backed up.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn find_set(&self, source: &str, target: &str) -> StateResult<Option<i64>> {
        self.conn
            .prepare_cached("SELECT id FROM backup_sets WHERE source = ?1 AND target = ?2")
            .and_then(|mut st| st.query_row(params![source, target], |r| r.get(0)).optional())
            .map_err(self.err())
    }

    /// The ID of the set for (source, target), creating it if new.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn ensure_set(&self, source: &str, target: &str) -> StateResult<i64> {
        if let Some(id) = self.find_set(source, target)? {
            return Ok(id);
        }
        self.conn
            .execute(
                "INSERT INTO backup_sets (source, target, created_at) VALUES (?1, ?2, ?3)",
                params![source, target, chrono::Utc::now().timestamp()],
            )
            .map_err(self.err())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Gives set `set_id` the name `name` and remembers its options (JSON).
    /// A name another set has is refused: sets are renamed deliberately.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn name_set(&self, set_id: i64, name: &str, options: &str) -> StateResult<()> {
        let owner: Option<(i64, String, String)> = self
            .conn
            .query_row(
                "SELECT id, source, target FROM backup_sets WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.err())?;
        if let Some((id, source, target)) = owner
            && id != set_id
        {
            return Err(StateError::NameTaken {
                name: name.to_string(),
                set_source: source,
                target,
            });
        }
        self.conn
            .execute(
                "UPDATE backup_sets SET name = ?2, options = ?3 WHERE id = ?1",
                rusqlite::params![set_id, name, options],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The set named `name`, with its saved options.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn named_set(&self, name: &str) -> StateResult<Option<NamedSet>> {
        self.conn
            .query_row(
                "SELECT source, target, options FROM backup_sets WHERE name = ?1",
                [name],
                |r| {
                    Ok(NamedSet {
                        source: r.get(0)?,
                        target: r.get(1)?,
                        options: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    })
                },
            )
            .optional()
            .map_err(self.err())
    }

    /// The device SOURCE's root was on at set `set_id`'s last successful
    /// backup (see `fs::own::device_of`), if one was recorded.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read.
    pub fn source_device(&self, set_id: i64) -> StateResult<Option<String>> {
        self.conn
            .query_row(
                "SELECT source_device FROM backup_sets WHERE id = ?1",
                [set_id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(self.err())
    }

    /// Records the device SOURCE's root is on, after a successful backup of set `set_id`.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be written.
    pub fn set_source_device(&self, set_id: i64, device: &str) -> StateResult<()> {
        self.conn
            .execute(
                "UPDATE backup_sets SET source_device = ?2 WHERE id = ?1",
                params![set_id, device],
            )
            .map_err(self.err())?;
        Ok(())
    }
}
