-- Cairn embedded store, version 1.
-- Times are Unix epoch milliseconds (UTC); lists and maps are JSON text.

-- Normalized findings of the live window. The whole row is kept as JSON (`finding`);
-- the key, the clock and the resolved identity are columns because they are queried.
CREATE TABLE findings (
    source          TEXT    NOT NULL,
    finding_uid     TEXT    NOT NULL,
    time            INTEGER NOT NULL,
    modified_time   INTEGER NOT NULL,
    ingested_at     INTEGER NOT NULL,
    identity_id     TEXT,
    finding         TEXT    NOT NULL,
    PRIMARY KEY (source, finding_uid)
);
CREATE INDEX findings_by_time ON findings (time);
CREATE INDEX findings_by_uid ON findings (finding_uid);

CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT    NOT NULL,
    location    TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    raw         TEXT    NOT NULL,
    raw_sha256  TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    UNIQUE (source, location, raw_sha256)
);

CREATE TABLE source_cursors (
    source_id   TEXT PRIMARY KEY,
    cursor      TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE incidents (
    id              TEXT PRIMARY KEY,
    number          INTEGER NOT NULL UNIQUE,
    title           TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('new', 'active', 'closed')),
    severity_id     INTEGER NOT NULL,
    first_seen      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    tactics         TEXT    NOT NULL,
    techniques      TEXT    NOT NULL,
    sources         TEXT    NOT NULL,
    detection_count INTEGER NOT NULL,
    finding_count   INTEGER NOT NULL
);
CREATE INDEX incidents_by_status ON incidents (status);

CREATE TABLE incident_entities (
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    kind        TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (incident_id, kind, value)
);
CREATE INDEX incident_entities_by_value ON incident_entities (kind, value);

CREATE TABLE detections (
    id           TEXT PRIMARY KEY,
    rule_id      TEXT    NOT NULL,
    title        TEXT    NOT NULL,
    entity_kind  TEXT    NOT NULL,
    entity_key   TEXT    NOT NULL,
    bucket       INTEGER NOT NULL,
    severity_id  INTEGER NOT NULL,
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    finding_uids TEXT    NOT NULL,
    tactics      TEXT    NOT NULL,
    techniques   TEXT    NOT NULL,
    incident_id  TEXT REFERENCES incidents (id),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (rule_id, entity_key, bucket)
);
CREATE INDEX detections_by_incident ON detections (incident_id);

CREATE TABLE merge_reasons (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id  TEXT    NOT NULL REFERENCES incidents (id),
    detection_id TEXT    NOT NULL REFERENCES detections (id),
    reason       TEXT    NOT NULL,
    at           INTEGER NOT NULL,
    UNIQUE (incident_id, detection_id)
);
