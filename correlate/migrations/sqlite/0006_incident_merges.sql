-- An open incident that a later detection links to an older one is merged into it: it is
-- closed and names the incident that absorbed it (its detections move there).
ALTER TABLE incidents ADD COLUMN merged_into TEXT REFERENCES incidents (id);
