-- s3backup state, version 5. Never edit this file once shipped: add 0006_….sql.

-- Content a backup is about to replace or delete and must first copy into
-- the content area (history, `src/history.rs`). The row leaves `files`
-- and enters this table in one transaction, before the store is asked; the
-- entry goes once the copy is confirmed (or the object is found no longer
-- to hold that content). A run killed in between leaves the entry, and the
-- next run copies that content first, before it writes or deletes
-- anything at that path, so no content a snapshot lists is lost to a kill.
CREATE TABLE preserving (
    set_id      INTEGER NOT NULL REFERENCES backup_sets (id) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('f', 'l')),
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    mode        INTEGER NOT NULL,
    blake3      TEXT NOT NULL,
    etag        TEXT NOT NULL,
    PRIMARY KEY (set_id, path)
) WITHOUT ROWID;

-- Objects copied into the content area by each run.
ALTER TABLE runs ADD COLUMN history_kept INTEGER NOT NULL DEFAULT 0;
