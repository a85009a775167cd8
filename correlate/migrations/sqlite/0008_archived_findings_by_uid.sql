-- Evidence lookups ask which findings were archived by uid alone (any source).
CREATE INDEX archived_findings_by_uid ON archived_findings (finding_uid);
