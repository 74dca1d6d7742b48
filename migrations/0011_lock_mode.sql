-- s3backup state, version 11 (the mode of each recorded Object Lock).
-- Never edit this file once shipped.

-- `mode` is S3's spelling, GOVERNANCE or COMPLIANCE, of the lock a locked
-- run wrote or extended on the version; NULL where it is not known (rows
-- recorded before this column). A run extends each version in its own
-- mode: extending a compliance lock in governance mode would weaken it on
-- a store that allows that, and S3 refuses it.
ALTER TABLE locks ADD COLUMN mode TEXT;
