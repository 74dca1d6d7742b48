-- s3backup state, version 6. Never edit this file once shipped: add 0007_….sql.

-- Request accounting (issue 16): the requests each run sent to its store,
-- by kind, and the body bytes each way. Additive: older runs read as 0.
ALTER TABLE runs ADD COLUMN req_list INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN req_head INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN req_get INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN req_put INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN req_copy INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN req_multipart_parts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN req_multipart_other INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN req_delete INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN req_other INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN req_bytes_sent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN req_bytes_received INTEGER NOT NULL DEFAULT 0;
