-- s3backup state, version 1. Never edit this file once shipped: add 0002_….sql.

-- One row per (source directory, target) pair: a backup set.
CREATE TABLE backup_sets (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    target      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,            -- unix seconds
    -- 1 while remote changes exist that no uploaded manifest describes yet
    manifest_pending INTEGER NOT NULL DEFAULT 0,
    UNIQUE (source, target)
);

-- One row per file or directory known to exist remotely with this content.
-- A row is written only after its upload or copy succeeded.
CREATE TABLE files (
    set_id      INTEGER NOT NULL REFERENCES backup_sets (id) ON DELETE CASCADE,
    path        TEXT NOT NULL,               -- relative, '/'-separated
    kind        TEXT NOT NULL CHECK (kind IN ('f', 'd')),
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    mode        INTEGER NOT NULL,
    blake3      TEXT NOT NULL,               -- hex; '' for directories
    etag        TEXT NOT NULL,               -- '' for directories
    version_id  TEXT,
    uploaded_at INTEGER NOT NULL,            -- unix seconds
    -- when the local file was last seen with this content (ns): a row whose
    -- mtime is within 2 s of it is "racily clean" and is hashed again
    checked_ns  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (set_id, path)
) WITHOUT ROWID;

CREATE INDEX files_by_hash ON files (set_id, blake3);

-- History of runs, for inspection and for the one-run-at-a-time check.
CREATE TABLE runs (
    id           INTEGER PRIMARY KEY,
    set_id       INTEGER NOT NULL REFERENCES backup_sets (id) ON DELETE CASCADE,
    run_id       TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,              -- 'backup', …
    started_at   INTEGER NOT NULL,           -- unix milliseconds
    finished_at  INTEGER,
    status       TEXT NOT NULL,              -- 'running', 'ok', 'partial', 'failed'
    scanned      INTEGER NOT NULL DEFAULT 0,
    uploaded     INTEGER NOT NULL DEFAULT 0,
    copied       INTEGER NOT NULL DEFAULT 0,
    touched      INTEGER NOT NULL DEFAULT 0,
    unchanged    INTEGER NOT NULL DEFAULT 0,
    deleted      INTEGER NOT NULL DEFAULT 0,
    failed       INTEGER NOT NULL DEFAULT 0,
    bytes_sent   INTEGER NOT NULL DEFAULT 0,
    manifest_key TEXT,
    error        TEXT
);

CREATE INDEX runs_by_set ON runs (set_id, started_at);
