-- s3backup state, version 6 (rolling deep verify). Never edit this file once shipped.

-- What `verify --deep --sample` checked and when, so each run takes the
-- files never checked first, then those attempted longest ago. Keyed by
-- the target as the state keys targets (`backup_sets.target`: a bucket and
-- prefix with the endpoint or profile when one is given, or a local
-- store's root) and the object key; `content` is the blake3 (or, without
-- one, the ETag) the check was of: a key whose content changed since
-- counts as never checked. `result`: `intact`, `damaged` (missing or other
-- bytes) or `unreadable` (the store would not give the bytes).
CREATE TABLE IF NOT EXISTS verify_checks (
    target      TEXT NOT NULL,
    key         TEXT NOT NULL,
    content     TEXT NOT NULL,
    checked_ns  INTEGER NOT NULL,
    result      TEXT NOT NULL,
    PRIMARY KEY (target, key)
) WITHOUT ROWID;
