-- s3backup state, version 4. Never edit this file once shipped: add 0005_….sql.

-- Objects a backup is deleting (a path whose type changed, or `--delete`):
-- the row leaves `files` and its path enters this table in one transaction,
-- before the store is asked; the entry goes when the store confirmed (or
-- the row comes back when it refused). A run killed in between leaves the
-- entry, and the next run deletes the object first, so no object is left
-- in the bucket unclaimed by either table. `kind` says whether there is an
-- object at all ('d': a directory's row, none).
CREATE TABLE deleting (
    set_id      INTEGER NOT NULL REFERENCES backup_sets (id) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('f', 'd', 'l')),
    PRIMARY KEY (set_id, path)
) WITHOUT ROWID;
