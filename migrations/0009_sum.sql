-- s3backup state, version 9 (checksums S3 keeps). Never edit this file once shipped.

-- The additional checksum the store said a file's object has
-- (`backup --checksum-algorithm`), as `algorithm:value` (value as S3 prints
-- it: base64, a composite one with `-N`); NULL when none was asked for or
-- the store named none. `verify --checksums` compares the store's with it.
ALTER TABLE files ADD COLUMN checksum TEXT;

-- The algorithm a journaled multipart upload was begun with (NULL: none):
-- a run with another one begins a new upload instead of resuming it.
ALTER TABLE uploads ADD COLUMN checksum_algorithm TEXT;
