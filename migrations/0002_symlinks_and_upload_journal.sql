-- s3backup state, version 2. Never edit this file once shipped: add 0003_….sql.

-- Symlinks are kept as links ('l'): SQLite cannot alter a CHECK, so the
-- table is rebuilt with the same columns and the wider check.
CREATE TABLE files_v2 (
    set_id      INTEGER NOT NULL REFERENCES backup_sets (id) ON DELETE CASCADE,
    path        TEXT NOT NULL,               -- relative, '/'-separated (text form, see names.rs)
    kind        TEXT NOT NULL CHECK (kind IN ('f', 'd', 'l')),
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    mode        INTEGER NOT NULL,
    blake3      TEXT NOT NULL,               -- hex of the content (a link's: its target); '' for directories
    etag        TEXT NOT NULL,               -- '' for directories
    version_id  TEXT,
    uploaded_at INTEGER NOT NULL,            -- unix seconds
    checked_ns  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (set_id, path)
) WITHOUT ROWID;
INSERT INTO files_v2 (set_id, path, kind, size, mtime_ns, mode, blake3, etag, version_id, uploaded_at, checked_ns)
    SELECT set_id, path, kind, size, mtime_ns, mode, blake3, etag, version_id, uploaded_at, checked_ns FROM files;
DROP TABLE files;
ALTER TABLE files_v2 RENAME TO files;
CREATE INDEX files_by_hash ON files (set_id, blake3);

-- Multipart uploads begun and not yet completed or aborted: written as soon
-- as the store hands out the upload ID, so a run killed mid-upload can go
-- on from its finished parts, and an upload nobody will finish is aborted
-- instead of being left to accrue storage.
CREATE TABLE uploads (
    set_id      INTEGER NOT NULL REFERENCES backup_sets (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    upload_id   TEXT NOT NULL,
    -- the local file as it was when the upload began: resumed only if still so
    path        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    blake3      TEXT NOT NULL,
    part_size   INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,            -- unix seconds
    PRIMARY KEY (set_id, key)
);

-- Parts of a journaled upload that the store acknowledged.
CREATE TABLE upload_parts (
    set_id      INTEGER NOT NULL,
    key         TEXT NOT NULL,
    number      INTEGER NOT NULL,
    etag        TEXT NOT NULL,
    PRIMARY KEY (set_id, key, number),
    FOREIGN KEY (set_id, key) REFERENCES uploads (set_id, key) ON DELETE CASCADE
) WITHOUT ROWID;

-- Named sets: `backup SOURCE TARGET --set NAME` remembers the set's options
-- (JSON) under NAME so a cron line can be `s3backup backup --set NAME`.
ALTER TABLE backup_sets ADD COLUMN name TEXT;
ALTER TABLE backup_sets ADD COLUMN options TEXT;
CREATE UNIQUE INDEX backup_sets_by_name ON backup_sets (name) WHERE name IS NOT NULL;
