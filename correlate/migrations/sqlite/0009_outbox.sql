-- The transactional outbox: one event per new state of an incident, written in the same
-- transaction as the incident, and its delivery state per sink.
CREATE TABLE outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    -- SHA-256 of the payload: the same incident state is the same event, written once.
    event_id    TEXT    NOT NULL UNIQUE,
    incident_id TEXT    NOT NULL,
    severity_id INTEGER NOT NULL,
    payload     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE outbox_deliveries (
    event_id        TEXT    NOT NULL REFERENCES outbox (event_id),
    sink            TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    delivered_at    INTEGER,
    rejected        TEXT,
    last_error      TEXT,
    PRIMARY KEY (event_id, sink)
);
