-- s3backup state, version 9 (S3 Object Lock). Never edit this file once shipped.

-- The Object Lock retention known on the object version a file row names
-- (`files.version_id`): written by a run with `--lock-days`, or extended by
-- one (PutObjectRetention). A row whose version is not here, or is here
-- with another version ID, has no lock known. `until` is in Unix seconds.
CREATE TABLE locks (
    set_id      INTEGER NOT NULL REFERENCES backup_sets (id) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    version_id  TEXT NOT NULL,
    until       INTEGER NOT NULL,
    PRIMARY KEY (set_id, path)
) WITHOUT ROWID;
