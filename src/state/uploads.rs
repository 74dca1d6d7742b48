//! The multipart-upload journal: which uploads were begun and which of
//! their parts the store acknowledged, so a run killed halfway through a
//! large file goes on from its finished parts next time, and an upload
//! that will never be finished is found and aborted (incomplete uploads
//! are billed like objects until aborted).

use rusqlite::{OptionalExtension, params};

use super::{StateDb, StateResult};

/// A journaled upload with its acknowledged parts (number, ETag).
pub type UploadWithParts = (JournaledUpload, Vec<(i32, String)>);

/// A journaled multipart upload and the local file it was begun for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournaledUpload {
    /// The object key.
    pub key: String,
    /// The store's upload ID.
    pub upload_id: String,
    /// Relative path of the file (text form).
    pub path: String,
    /// Its size when the upload began.
    pub size: u64,
    /// Its mtime when the upload began.
    pub mtime_ns: i64,
    /// Its blake3 when the upload began.
    pub blake3: String,
    /// Part size used: a resume must cut the file the same way.
    pub part_size: u64,
    /// The additional checksum the upload was begun with: a resume must
    /// send the same one.
    pub checksum: Option<crate::fs::checksum::Algorithm>,
}

impl StateDb {
    /// Records a multipart upload as begun (replacing any older entry for the key).
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn begin_upload(&self, set_id: i64, u: &JournaledUpload) -> StateResult<()> {
        self.forget_upload(set_id, &u.key)?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO uploads
                 (set_id, key, upload_id, path, size, mtime_ns, blake3, part_size, started_at, checksum_algorithm)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    set_id,
                    u.key,
                    u.upload_id,
                    u.path,
                    u.size as i64,
                    u.mtime_ns,
                    u.blake3,
                    u.part_size as i64,
                    chrono::Utc::now().timestamp(),
                    u.checksum.map(|a| a.name())
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Records one acknowledged part.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn record_part(&self, set_id: i64, key: &str, number: i32, etag: &str) -> StateResult<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO upload_parts (set_id, key, number, etag) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut st| st.execute(params![set_id, key, number, etag]))
            .map_err(self.err())?;
        Ok(())
    }

    /// The journaled upload for `key` and its acknowledged parts (by number).
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn journaled_upload(&self, set_id: i64, key: &str) -> StateResult<Option<UploadWithParts>> {
        let upload = self
            .conn
            .query_row(
                "SELECT key, upload_id, path, size, mtime_ns, blake3, part_size, checksum_algorithm
                 FROM uploads WHERE set_id = ?1 AND key = ?2",
                params![set_id, key],
                row_to_upload,
            )
            .optional()
            .map_err(self.err())?;
        let Some(upload) = upload else {
            return Ok(None);
        };
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT number, etag FROM upload_parts WHERE set_id = ?1 AND key = ?2 ORDER BY number",
            )
            .map_err(self.err())?;
        let parts = st
            .query_map(params![set_id, key], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        Ok(Some((upload, parts)))
    }

    /// Every journaled upload of a set.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn journaled_uploads(&self, set_id: i64) -> StateResult<Vec<JournaledUpload>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT key, upload_id, path, size, mtime_ns, blake3, part_size, checksum_algorithm
                 FROM uploads WHERE set_id = ?1 ORDER BY key",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([set_id], row_to_upload)
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        Ok(rows)
    }

    /// Drops an upload from the journal (completed or aborted), parts included.
    ///
    /// # Errors
    /// A [`StateError`](crate::state::StateError) when the state file cannot be read or written.
    pub fn forget_upload(&self, set_id: i64, key: &str) -> StateResult<()> {
        self.conn
            .execute_batch("SAVEPOINT forget_upload")
            .and_then(|()| {
                self.conn.execute(
                    "DELETE FROM upload_parts WHERE set_id = ?1 AND key = ?2",
                    params![set_id, key],
                )
            })
            .and_then(|_| {
                self.conn.execute(
                    "DELETE FROM uploads WHERE set_id = ?1 AND key = ?2",
                    params![set_id, key],
                )
            })
            .and_then(|_| self.conn.execute_batch("RELEASE forget_upload"))
            .map_err(self.err())
    }
}

fn row_to_upload(r: &rusqlite::Row<'_>) -> rusqlite::Result<JournaledUpload> {
    Ok(JournaledUpload {
        key: r.get(0)?,
        upload_id: r.get(1)?,
        path: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        mtime_ns: r.get(4)?,
        blake3: r.get(5)?,
        part_size: r.get::<_, i64>(6)? as u64,
        checksum: r
            .get::<_, Option<String>>(7)?
            .and_then(|a| crate::fs::checksum::Algorithm::parse(&a)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journals_uploads_and_parts_until_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("state.db")).unwrap();
        let set = db.ensure_set("/src", "s3://b/p").unwrap();
        let u = JournaledUpload {
            key: "p/big".into(),
            upload_id: "u1".into(),
            path: "big".into(),
            size: 30,
            mtime_ns: 7,
            blake3: "h".into(),
            part_size: 10,
            checksum: None,
        };
        db.begin_upload(set, &u).unwrap();
        db.record_part(set, "p/big", 2, "e2").unwrap();
        db.record_part(set, "p/big", 1, "e1").unwrap();
        let (got, parts) = db.journaled_upload(set, "p/big").unwrap().unwrap();
        assert_eq!(got, u);
        assert_eq!(parts, [(1, "e1".to_string()), (2, "e2".to_string())]);
        assert_eq!(db.journaled_uploads(set).unwrap(), std::slice::from_ref(&u));

        // A new upload for the key replaces the old one and its parts.
        db.begin_upload(
            set,
            &JournaledUpload {
                upload_id: "u2".into(),
                ..u.clone()
            },
        )
        .unwrap();
        let (got, parts) = db.journaled_upload(set, "p/big").unwrap().unwrap();
        assert_eq!((got.upload_id.as_str(), parts.len()), ("u2", 0));

        db.forget_upload(set, "p/big").unwrap();
        assert!(db.journaled_upload(set, "p/big").unwrap().is_none());
        assert!(db.journaled_uploads(set).unwrap().is_empty());
    }
}
