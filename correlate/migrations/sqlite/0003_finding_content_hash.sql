-- A finding re-read with the same modified_time but different content (an analyst changed its
-- workflow status without moving UpdatedAt) replaces the stored one; an identical re-read
-- does not. The hash is of the raw record.
ALTER TABLE findings ADD COLUMN raw_sha256 TEXT NOT NULL DEFAULT '';
