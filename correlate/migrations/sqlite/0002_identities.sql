-- Identity ids are assigned once and kept: when a new record links two known identities, the
-- older id survives and the other becomes an alias, so detections and incidents keyed on the
-- old id stay valid.
CREATE TABLE identity_keys (
    key         TEXT PRIMARY KEY,
    identity_id TEXT    NOT NULL,
    assigned_at INTEGER NOT NULL
);
CREATE INDEX identity_keys_by_id ON identity_keys (identity_id);

CREATE TABLE identity_aliases (
    alias       TEXT PRIMARY KEY,
    identity_id TEXT    NOT NULL,
    at          INTEGER NOT NULL
);
