-- Accounts and groups of directory sources (AD over LDAP, Entra users, AWS principals,
-- identities.toml). A synchronisation rewrites its source's rows; rows it did not write are
-- gone from the directory and are deleted when it completes.
CREATE TABLE directory_objects (
    source       TEXT    NOT NULL,
    uid          TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    display_name TEXT,
    object       TEXT    NOT NULL,   -- the DirectoryObject as JSON
    synced_at    INTEGER NOT NULL,
    PRIMARY KEY (source, uid)
);

-- Why keys are one identity: each join the resolver made, with its reason. The first reason
-- found for a pair is kept.
CREATE TABLE identity_links (
    key_a  TEXT    NOT NULL,
    key_b  TEXT    NOT NULL,
    reason TEXT    NOT NULL,
    at     INTEGER NOT NULL,
    PRIMARY KEY (key_a, key_b)
);
CREATE INDEX identity_links_by_b ON identity_links (key_b);
