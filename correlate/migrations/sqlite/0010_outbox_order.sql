-- The SHA-256 of the incident state an event carries: a state written again right after itself
-- adds nothing, while a state the incident returns to later (closed, then active again) is a
-- new event, whose id chains to the event before it.
ALTER TABLE outbox ADD COLUMN state_sha TEXT;
CREATE INDEX outbox_by_incident ON outbox (incident_id, seq);
