-- s3backup state, version 6 (the delete guard). Never edit this file once shipped.

-- The device SOURCE's root was on at the set's last successful backup
-- (Unix st_dev, Windows volume serial number, as decimal text): `--delete`
-- refuses to run when it changes (an unmounted disk leaves its empty mount
-- point on the parent's device). NULL until a run records it.
ALTER TABLE backup_sets ADD COLUMN source_device TEXT;
