-- s3backup state, version 3. Never edit this file once shipped: add 0004_….sql.

-- What the file system said about a file besides size and mtime, so a file
-- rewritten at the same size with its mtime put back (tar -x, cp -p,
-- rsync -t, touch -r) is still hashed again: its change time (ns), inode
-- and device. NULL: not known (rows written before this version, or rebuilt
-- from a manifest), so the next backup hashes the file once.
ALTER TABLE files ADD COLUMN ctime_ns INTEGER;
ALTER TABLE files ADD COLUMN inode INTEGER;
ALTER TABLE files ADD COLUMN device INTEGER;
