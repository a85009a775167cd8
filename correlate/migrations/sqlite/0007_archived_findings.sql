-- Findings moved to the Parquet archive: which version of each, so that a source reading an
-- archived finding again is told it is unchanged, and evidence lookups know it exists.
CREATE TABLE archived_findings (
    source          TEXT    NOT NULL,
    finding_uid     TEXT    NOT NULL,
    time            INTEGER NOT NULL,
    modified_time   INTEGER NOT NULL,
    raw_sha256      TEXT    NOT NULL,
    PRIMARY KEY (source, finding_uid)
);
