-- Findings whose provider has been told which incident they joined (Security Hub write-back).
CREATE TABLE writebacks (
    finding_uid TEXT    NOT NULL,
    incident_id TEXT    NOT NULL REFERENCES incidents (id),
    at          INTEGER NOT NULL,
    PRIMARY KEY (finding_uid, incident_id)
);
