//! The embedded store: one SQLite file in WAL mode, versioned migrations
//! (`correlate/migrations/sqlite`), one transaction per page and per correlation pass.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row};

use cairn_ingest::{DeadLetter, DirectoryObject, Finding, Page, Severity};

use super::{
    CorrelationChanges, DeliveryOutcome, Detection, Entity, IdentityExplanation, IdentityUpdate,
    Incident, IncidentDetail, IncidentFilter, IncidentPage, IncidentStatus, MergeReason,
    OutboxEvent, PageStats, PendingWriteBack, Store, StoreCounts, StoredDeadLetter,
};
use crate::archive::FindingsArchive;
use crate::error::{CorrelateError, Result};

/// SQLite limits bound parameters per statement; lookups by many ids go in chunks.
const IN_CHUNK: usize = 500;

/// Findings moved to the archive per transaction.
const ARCHIVE_BATCH: usize = 20_000;

/// The embedded SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Findings that left the window: `archive/` beside the database file.
    archive: FindingsArchive,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v).ok_or_else(|| CorrelateError::Corrupt {
        what: "timestamp",
        message: format!("{v} ms is out of range"),
    })
}

fn to_json<T: Serialize>(v: &T) -> String {
    // Serializing plain data structures (strings, lists, maps of strings) cannot fail.
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn from_json<T: DeserializeOwned>(what: &'static str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| CorrelateError::Corrupt {
        what,
        message: e.to_string(),
    })
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl SqliteStore {
    /// Moves one batch of findings older than `cutoff` to the archive: written and synced
    /// before the rows go, so a crash in between archives them again (readers keep the newest
    /// version of each). Only the exact version archived is removed: one that changed meanwhile
    /// stays.
    async fn archive_batch(&self, cutoff: DateTime<Utc>) -> Result<usize> {
        let rows = sqlx::query(
            "SELECT finding, identity_id FROM findings WHERE time < ? \
             ORDER BY time, source, finding_uid LIMIT ?",
        )
        .bind(ms(cutoff))
        .bind(ARCHIVE_BATCH as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(CorrelateError::storage("reading findings to archive"))?;
        if rows.is_empty() {
            return Ok(0);
        }
        let findings: Vec<Finding> = rows.iter().map(finding_from_row).collect::<Result<_>>()?;
        let archive = self.archive.clone();
        let written = findings.clone();
        tokio::task::spawn_blocking(move || archive.write(&written))
            .await
            .map_err(|e| CorrelateError::Internal(format!("archive write: {e}")))??;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(CorrelateError::storage("removing archived findings"))?;
        for f in &findings {
            // Only the version archived: a newer one that arrived meanwhile stays.
            let raw_sha256 = hex::encode(Sha256::digest(f.raw.as_bytes()));
            sqlx::query(
                "DELETE FROM findings WHERE source = ? AND finding_uid = ? AND modified_time = ? \
                 AND raw_sha256 = ?",
            )
            .bind(&f.source)
            .bind(&f.finding_uid)
            .bind(ms(f.modified_time))
            .bind(&raw_sha256)
            .execute(&mut *tx)
            .await
            .map_err(CorrelateError::storage("removing archived findings"))?;
            sqlx::query(
                "INSERT INTO archived_findings (source, finding_uid, time, modified_time, raw_sha256) \
                 VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (source, finding_uid) DO UPDATE SET time = excluded.time, \
                   modified_time = excluded.modified_time, raw_sha256 = excluded.raw_sha256 \
                 WHERE excluded.modified_time >= archived_findings.modified_time",
            )
            .bind(&f.source)
            .bind(&f.finding_uid)
            .bind(ms(f.time))
            .bind(ms(f.modified_time))
            .bind(&raw_sha256)
            .execute(&mut *tx)
            .await
            .map_err(CorrelateError::storage("recording archived findings"))?;
        }
        tx.commit()
            .await
            .map_err(CorrelateError::storage("removing archived findings"))?;
        Ok(findings.len())
    }

    /// Opens (creating if needed) the store at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                CorrelateError::Config(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(CorrelateError::storage(format!(
                "opening {}",
                path.display()
            )))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(CorrelateError::storage(format!(
                "opening {}",
                path.display()
            )))?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let archive = FindingsArchive::new(
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .join("archive"),
        );
        Ok(SqliteStore { pool, archive })
    }

    async fn detections_where(&self, clause: &str, binds: &[String]) -> Result<Vec<Detection>> {
        let sql = format!(
            "SELECT id, rule_id, title, entity_kind, entity_key, bucket, severity_id, first_seen, \
             last_seen, finding_uids, tactics, techniques, incident_id FROM detections WHERE {clause} \
             ORDER BY first_seen, id"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for b in binds {
            q = q.bind(b.as_str());
        }
        let rows = q
            .fetch_all(&self.pool)
            .await
            .map_err(CorrelateError::storage("reading detections"))?;
        rows.iter().map(detection_from_row).collect()
    }

    async fn incidents_from_rows(&self, rows: Vec<SqliteRow>) -> Result<Vec<Incident>> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut inc = incident_from_row(&row)?;
            let entities = sqlx::query(
                "SELECT kind, value FROM incident_entities WHERE incident_id = ? ORDER BY kind, value",
            )
            .bind(&inc.id)
            .fetch_all(&self.pool)
            .await
            .map_err(CorrelateError::storage("reading incident entities"))?;
            inc.entities = entities_from_rows(&entities)
                .map_err(CorrelateError::storage("reading incident entities"))?;
            out.push(inc);
        }
        Ok(out)
    }
}

fn get<'r, T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(
    row: &'r SqliteRow,
    col: &str,
) -> Result<T> {
    row.try_get(col)
        .map_err(CorrelateError::storage(format!("reading column {col}")))
}

fn detection_from_row(r: &SqliteRow) -> Result<Detection> {
    Ok(Detection {
        id: get(r, "id")?,
        rule_id: get(r, "rule_id")?,
        title: get(r, "title")?,
        entity_kind: get(r, "entity_kind")?,
        entity_key: get(r, "entity_key")?,
        bucket: get(r, "bucket")?,
        severity_id: get(r, "severity_id")?,
        first_seen: from_ms(get(r, "first_seen")?)?,
        last_seen: from_ms(get(r, "last_seen")?)?,
        finding_uids: from_json("detection evidence", &get::<String>(r, "finding_uids")?)?,
        tactics: from_json("detection tactics", &get::<String>(r, "tactics")?)?,
        techniques: from_json("detection techniques", &get::<String>(r, "techniques")?)?,
        incident_id: get(r, "incident_id")?,
    })
}

fn entities_from_rows(rows: &[SqliteRow]) -> std::result::Result<Vec<Entity>, sqlx::Error> {
    rows.iter()
        .map(|r| {
            Ok(Entity {
                kind: r.try_get("kind")?,
                value: r.try_get("value")?,
            })
        })
        .collect()
}

fn incident_from_row(r: &SqliteRow) -> Result<Incident> {
    let status: String = get(r, "status")?;
    let severity_id: i32 = get(r, "severity_id")?;
    Ok(Incident {
        id: get(r, "id")?,
        number: get(r, "number")?,
        title: get(r, "title")?,
        status: IncidentStatus::parse(&status).ok_or_else(|| CorrelateError::Corrupt {
            what: "incident status",
            message: status.clone(),
        })?,
        severity_id,
        severity: Severity::from_id(severity_id).caption().to_string(),
        first_seen: from_ms(get(r, "first_seen")?)?,
        last_seen: from_ms(get(r, "last_seen")?)?,
        created_at: from_ms(get(r, "created_at")?)?,
        updated_at: from_ms(get(r, "updated_at")?)?,
        tactics: from_json("incident tactics", &get::<String>(r, "tactics")?)?,
        techniques: from_json("incident techniques", &get::<String>(r, "techniques")?)?,
        sources: from_json("incident sources", &get::<String>(r, "sources")?)?,
        entities: Vec::new(),
        detection_count: get(r, "detection_count")?,
        finding_count: get(r, "finding_count")?,
        merged_into: get(r, "merged_into")?,
    })
}

fn finding_from_row(r: &SqliteRow) -> Result<Finding> {
    let mut f: Finding = from_json("finding", &get::<String>(r, "finding")?)?;
    f.identity_id = get(r, "identity_id")?;
    Ok(f)
}

/// Moves everything keyed on identity `old` to `new` (see [`Store::record_identities`]).
async fn move_identity(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    old: &str,
    new: &str,
) -> Result<()> {
    let ctx = || format!("moving identity {old} to {new}");
    sqlx::query("UPDATE findings SET identity_id = ? WHERE identity_id = ?")
        .bind(new)
        .bind(old)
        .execute(&mut **tx)
        .await
        .map_err(CorrelateError::storage(ctx()))?;
    let rows = sqlx::query(
        "SELECT id, rule_id, bucket, finding_uids, first_seen, last_seen, severity_id FROM detections \
         WHERE entity_kind = 'identity' AND entity_key = ?",
    )
    .bind(old)
    .fetch_all(&mut **tx)
    .await
    .map_err(CorrelateError::storage(ctx()))?;
    for r in &rows {
        let old_id: String = get(r, "id")?;
        let rule_id: String = get(r, "rule_id")?;
        let bucket: i64 = get(r, "bucket")?;
        let new_id = super::detection_id(&rule_id, new, bucket);
        let existing: Option<String> =
            sqlx::query_scalar("SELECT finding_uids FROM detections WHERE id = ?")
                .bind(&new_id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(CorrelateError::storage(ctx()))?;
        match existing {
            Some(uids) => {
                // The survivor already has this detection: fold the evidence into it.
                let mut all: std::collections::BTreeSet<String> =
                    from_json("detection evidence", &uids)?;
                all.extend(from_json::<Vec<String>>(
                    "detection evidence",
                    &get::<String>(r, "finding_uids")?,
                )?);
                sqlx::query(
                    "UPDATE detections SET finding_uids = ?, first_seen = min(first_seen, ?), \
                     last_seen = max(last_seen, ?), severity_id = max(severity_id, ?) WHERE id = ?",
                )
                .bind(to_json(&all))
                .bind(get::<i64>(r, "first_seen")?)
                .bind(get::<i64>(r, "last_seen")?)
                .bind(get::<i32>(r, "severity_id")?)
                .bind(&new_id)
                .execute(&mut **tx)
                .await
                .map_err(CorrelateError::storage(ctx()))?;
            }
            None => {
                sqlx::query(
                    "INSERT INTO detections (id, rule_id, title, entity_kind, entity_key, bucket, severity_id, \
                       first_seen, last_seen, finding_uids, tactics, techniques, incident_id, created_at, updated_at) \
                     SELECT ?, rule_id, replace(title, ?, ?), entity_kind, ?, bucket, severity_id, first_seen, \
                       last_seen, finding_uids, tactics, techniques, incident_id, created_at, updated_at \
                     FROM detections WHERE id = ?",
                )
                .bind(&new_id)
                .bind(old)
                .bind(new)
                .bind(new)
                .bind(&old_id)
                .execute(&mut **tx)
                .await
                .map_err(CorrelateError::storage(ctx()))?;
            }
        }
        sqlx::query("UPDATE OR IGNORE merge_reasons SET detection_id = ? WHERE detection_id = ?")
            .bind(&new_id)
            .bind(&old_id)
            .execute(&mut **tx)
            .await
            .map_err(CorrelateError::storage(ctx()))?;
        sqlx::query("DELETE FROM merge_reasons WHERE detection_id = ?")
            .bind(&old_id)
            .execute(&mut **tx)
            .await
            .map_err(CorrelateError::storage(ctx()))?;
        sqlx::query("DELETE FROM detections WHERE id = ?")
            .bind(&old_id)
            .execute(&mut **tx)
            .await
            .map_err(CorrelateError::storage(ctx()))?;
    }
    sqlx::query(
        "INSERT OR IGNORE INTO incident_entities (incident_id, kind, value) \
         SELECT incident_id, kind, ? FROM incident_entities WHERE kind = 'identity' AND value = ?",
    )
    .bind(new)
    .bind(old)
    .execute(&mut **tx)
    .await
    .map_err(CorrelateError::storage(ctx()))?;
    sqlx::query("DELETE FROM incident_entities WHERE kind = 'identity' AND value = ?")
        .bind(old)
        .execute(&mut **tx)
        .await
        .map_err(CorrelateError::storage(ctx()))?;
    sqlx::query(
        "UPDATE incidents SET title = replace(title, ?, ?) \
         WHERE id IN (SELECT incident_id FROM incident_entities WHERE kind = 'identity' AND value = ?)",
    )
    .bind(old)
    .bind(new)
    .bind(new)
    .execute(&mut **tx)
    .await
    .map_err(CorrelateError::storage(ctx()))?;
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE incidents SET {COUNTS} \
         WHERE id IN (SELECT incident_id FROM incident_entities WHERE kind = 'identity' AND value = ?)"
    )))
    .bind(new)
    .execute(&mut **tx)
    .await
    .map_err(CorrelateError::storage(ctx()))?;
    // The incidents now name the surviving identity: SIEMs hear of it.
    let touched: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT incident_id FROM incident_entities WHERE kind = 'identity' AND value = ?",
    )
    .bind(new)
    .fetch_all(&mut **tx)
    .await
    .map_err(CorrelateError::storage(ctx()))?;
    let now = ms(Utc::now());
    for id in touched {
        outbox_incident(tx, &id, now).await?;
    }
    Ok(())
}

/// Recomputes an incident's detection and finding counts from its detections.
/// An incident's counts and severity, recomputed from its detections whenever it changes.
/// Severity is its worst detection's, raised one level (to at most critical) when it spans
/// clouds (two or more of AWS, Azure / Microsoft 365 and Active Directory among its sources)
/// or stages (three or more ATT&CK tactics): one attacker across consoles or kill-chain
/// steps is worse than any one of the alerts.
const COUNTS: &str = "detection_count = (SELECT count(*) FROM detections WHERE incident_id = incidents.id), \
    finding_count = (SELECT count(DISTINCT j.value) FROM detections d, json_each(d.finding_uids) j \
                     WHERE d.incident_id = incidents.id), \
    severity_id = coalesce(min(5, (SELECT max(d.severity_id) FROM detections d WHERE d.incident_id = incidents.id) \
      + CASE WHEN (SELECT count(DISTINCT CASE WHEN s.value LIKE 'aws.%' THEN 'aws' \
                                          WHEN s.value LIKE 'azure.%' THEN 'azure' \
                                          WHEN s.value LIKE 'ad.%' THEN 'ad' END) \
                   FROM json_each(incidents.sources) s) >= 2 \
               OR (SELECT count(*) FROM json_each(incidents.tactics)) >= 3 \
             THEN 1 ELSE 0 END), severity_id)";

/// Writes the current state of incident `id` to the outbox, in the transaction that changed
/// it. The event id is the SHA-256 of that state (without `updated_at`), so writing the same
/// state twice adds nothing.
async fn outbox_incident(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    id: &str,
    now: i64,
) -> Result<()> {
    let ctx = "writing the outbox";
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?");
    let Some(row) = sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(CorrelateError::storage(ctx))?
    else {
        return Ok(());
    };
    let mut inc = incident_from_row(&row)?;
    let entities = sqlx::query(
        "SELECT kind, value FROM incident_entities WHERE incident_id = ? ORDER BY kind, value",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await
    .map_err(CorrelateError::storage(ctx))?;
    inc.entities = entities_from_rows(&entities).map_err(CorrelateError::storage(ctx))?;
    let rules: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT rule_id FROM detections WHERE incident_id = ? ORDER BY rule_id",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await
    .map_err(CorrelateError::storage(ctx))?;
    // The incident as the API shows it, plus the rules of its detections (for sink filters).
    let payload = |inc: &Incident| -> Result<String> {
        let mut v = serde_json::to_value(inc).map_err(|e| CorrelateError::Corrupt {
            what: "outbox payload",
            message: e.to_string(),
        })?;
        v["rules"] = serde_json::json!(rules);
        Ok(v.to_string())
    };
    let state = Incident {
        updated_at: inc.created_at,
        ..inc.clone()
    };
    let state_sha = hex::encode(Sha256::digest(payload(&state)?.as_bytes()));
    let last: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT event_id, state_sha FROM outbox WHERE incident_id = ? ORDER BY seq DESC LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(CorrelateError::storage(ctx))?;
    if last
        .as_ref()
        .is_some_and(|(_, s)| s.as_deref() == Some(state_sha.as_str()))
    {
        return Ok(());
    }
    // Chained to the incident's previous event: a state the incident returns to is news.
    let event_id = hex::encode(Sha256::digest(
        format!(
            "{}:{state_sha}",
            last.as_ref().map_or("", |(e, _)| e.as_str())
        )
        .as_bytes(),
    ));
    sqlx::query(
        "INSERT INTO outbox (event_id, incident_id, severity_id, payload, created_at, state_sha) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&event_id)
    .bind(id)
    .bind(inc.severity_id)
    .bind(payload(&inc)?)
    .bind(now)
    .bind(&state_sha)
    .execute(&mut **tx)
    .await
    .map_err(CorrelateError::storage(ctx))?;
    Ok(())
}

const INCIDENT_COLUMNS: &str = "id, number, title, status, severity_id, first_seen, last_seen, \
    created_at, updated_at, tactics, techniques, sources, detection_count, finding_count, merged_into";

#[async_trait]
impl Store for SqliteStore {
    async fn outbox_pending(
        &self,
        sink: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>> {
        let rows = sqlx::query(
            "SELECT o.seq, o.event_id, o.incident_id, o.severity_id, o.payload, o.created_at, \
               coalesce(d.attempts, 0) AS attempts \
             FROM outbox o LEFT JOIN outbox_deliveries d ON d.event_id = o.event_id AND d.sink = ? \
             WHERE d.delivered_at IS NULL AND d.rejected IS NULL \
               AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?) \
               AND NOT EXISTS (SELECT 1 FROM outbox e LEFT JOIN outbox_deliveries f \
                 ON f.event_id = e.event_id AND f.sink = ? \
                 WHERE e.incident_id = o.incident_id AND e.seq < o.seq \
                   AND f.delivered_at IS NULL AND f.rejected IS NULL) \
             ORDER BY o.seq LIMIT ?",
        )
        .bind(sink)
        .bind(ms(now))
        .bind(sink)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(CorrelateError::storage(format!(
            "reading the outbox of {sink}"
        )))?;
        rows.iter()
            .map(|r| {
                Ok(OutboxEvent {
                    seq: get(r, "seq")?,
                    event_id: get(r, "event_id")?,
                    incident_id: get(r, "incident_id")?,
                    severity_id: get(r, "severity_id")?,
                    payload: from_json("outbox payload", &get::<String>(r, "payload")?)?,
                    created_at: from_ms(get(r, "created_at")?)?,
                    attempts: get(r, "attempts")?,
                })
            })
            .collect()
    }

    async fn outbox_record(
        &self,
        sink: &str,
        outcomes: &[(String, DeliveryOutcome)],
    ) -> Result<()> {
        let ctx = format!("recording deliveries to {sink}");
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(CorrelateError::storage(ctx.clone()))?;
        let now = ms(Utc::now());
        for (event_id, outcome) in outcomes {
            let (next, delivered, rejected, error) = match outcome {
                DeliveryOutcome::Delivered => (None, Some(now), None, None),
                DeliveryOutcome::RetryAt(at, why) => {
                    (Some(ms(*at)), None, None, Some(why.as_str()))
                }
                DeliveryOutcome::Rejected(why) => {
                    (None, None, Some(why.as_str()), Some(why.as_str()))
                }
            };
            sqlx::query(
                "INSERT INTO outbox_deliveries (event_id, sink, attempts, next_attempt_at, delivered_at, rejected, last_error) \
                 VALUES (?, ?, 1, ?, ?, ?, ?) \
                 ON CONFLICT (event_id, sink) DO UPDATE SET attempts = attempts + 1, \
                   next_attempt_at = excluded.next_attempt_at, delivered_at = excluded.delivered_at, \
                   rejected = excluded.rejected, last_error = coalesce(excluded.last_error, last_error)",
            )
            .bind(event_id)
            .bind(sink)
            .bind(next)
            .bind(delivered)
            .bind(rejected)
            .bind(error)
            .execute(&mut *tx)
            .await
            .map_err(CorrelateError::storage(ctx.clone()))?;
        }
        tx.commit().await.map_err(CorrelateError::storage(ctx))
    }

    async fn outbox_depths(&self) -> Result<(i64, Vec<(String, i64)>)> {
        let ctx = "counting the outbox";
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.pool)
            .await
            .map_err(CorrelateError::storage(ctx))?;
        let rows = sqlx::query(
            "SELECT s.sink, (SELECT count(*) FROM outbox o LEFT JOIN outbox_deliveries d \
               ON d.event_id = o.event_id AND d.sink = s.sink \
               WHERE d.delivered_at IS NULL AND d.rejected IS NULL) AS depth \
             FROM (SELECT DISTINCT sink FROM outbox_deliveries) s ORDER BY s.sink",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(CorrelateError::storage(ctx))?;
        let depths = rows
            .iter()
            .map(|r| Ok((get(r, "sink")?, get(r, "depth")?)))
            .collect::<Result<Vec<_>>>()?;
        Ok((total, depths))
    }

    async fn outbox_depth(&self, sink: &str) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT count(*) FROM outbox o LEFT JOIN outbox_deliveries d \
               ON d.event_id = o.event_id AND d.sink = ? \
             WHERE d.delivered_at IS NULL AND d.rejected IS NULL",
        )
        .bind(sink)
        .fetch_one(&self.pool)
        .await
        .map_err(CorrelateError::storage(format!(
            "counting the outbox of {sink}"
        )))
    }

    async fn commit_page(&self, source_id: &str, page: &Page) -> Result<PageStats> {
        let ctx = || format!("committing a page of source {source_id}");
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(CorrelateError::storage(ctx()))?;
        let mut stats = PageStats::default();
        for f in &page.findings {
            let raw_sha256 = hex::encode(Sha256::digest(f.raw.as_bytes()));
            // A version already moved to the archive (or a newer one) is not new again.
            let archived = sqlx::query(
                "SELECT 1 FROM archived_findings WHERE source = ? AND finding_uid = ? \
                 AND (modified_time > ? OR (modified_time = ? AND raw_sha256 = ?))",
            )
            .bind(&f.source)
            .bind(&f.finding_uid)
            .bind(ms(f.modified_time))
            .bind(ms(f.modified_time))
            .bind(&raw_sha256)
            .fetch_optional(&mut *tx)
            .await
            .map_err(CorrelateError::storage(ctx()))?;
            if archived.is_some() {
                stats.unchanged += 1;
                continue;
            }
            let mut stored = f.clone();
            stored.identity_id = None;
            let done = sqlx::query(
                "INSERT INTO findings (source, finding_uid, time, modified_time, ingested_at, finding, raw_sha256) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (source, finding_uid) DO UPDATE SET \
                   time = excluded.time, modified_time = excluded.modified_time, \
                   ingested_at = excluded.ingested_at, finding = excluded.finding, \
                   raw_sha256 = excluded.raw_sha256 \
                 WHERE excluded.modified_time > findings.modified_time \
                    OR (excluded.modified_time = findings.modified_time \
                        AND excluded.raw_sha256 <> findings.raw_sha256)",
            )
            .bind(&f.source)
            .bind(&f.finding_uid)
            .bind(ms(f.time))
            .bind(ms(f.modified_time))
            .bind(ms(f.ingested_at))
            .bind(to_json(&stored))
            .bind(&raw_sha256)
            .execute(&mut *tx)
            .await
            .map_err(CorrelateError::storage(ctx()))?;
            if done.rows_affected() > 0 {
                stats.stored += 1;
            } else {
                stats.unchanged += 1;
            }
        }
        for d in &page.dead_letters {
            let hash = hex::encode(Sha256::digest(d.raw.as_bytes()));
            let done = sqlx::query(
                "INSERT INTO dead_letters (source, location, reason, raw, raw_sha256, at) \
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(&d.source)
            .bind(&d.location)
            .bind(&d.reason)
            .bind(&d.raw)
            .bind(hash)
            .bind(ms(d.at))
            .execute(&mut *tx)
            .await
            .map_err(CorrelateError::storage(ctx()))?;
            stats.dead_letters += done.rows_affected();
        }
        if let Some(sync) = page.directory_sync {
            let at = ms(sync.started_at);
            for o in &page.directory {
                sqlx::query(
                    "INSERT INTO directory_objects (source, uid, kind, display_name, object, synced_at) \
                     VALUES (?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (source, uid) DO UPDATE SET kind = excluded.kind, \
                       display_name = excluded.display_name, object = excluded.object, \
                       synced_at = excluded.synced_at",
                )
                .bind(&o.source)
                .bind(&o.uid)
                .bind(o.kind.as_str())
                .bind(&o.display_name)
                .bind(to_json(o))
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(CorrelateError::storage(ctx()))?;
                stats.directory_objects += 1;
            }
            if sync.complete {
                let gone =
                    sqlx::query("DELETE FROM directory_objects WHERE source = ? AND synced_at < ?")
                        .bind(source_id)
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .map_err(CorrelateError::storage(ctx()))?;
                stats.directory_removed += gone.rows_affected();
            }
        }
        if let Some(c) = &page.cursor {
            sqlx::query(
                "INSERT INTO source_cursors (source_id, cursor, updated_at) VALUES (?, ?, ?) \
                 ON CONFLICT (source_id) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
            )
            .bind(source_id)
            .bind(c)
            .bind(ms(Utc::now()))
            .execute(&mut *tx)
            .await
            .map_err(CorrelateError::storage(ctx()))?;
        }
        tx.commit().await.map_err(CorrelateError::storage(ctx()))?;
        Ok(stats)
    }

    async fn cursor(&self, source_id: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT cursor FROM source_cursors WHERE source_id = ?")
            .bind(source_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(CorrelateError::storage(format!(
                "reading the cursor of {source_id}"
            )))
    }

    async fn watermark(&self) -> Result<Option<DateTime<Utc>>> {
        let max: Option<i64> = sqlx::query_scalar("SELECT max(time) FROM findings")
            .fetch_one(&self.pool)
            .await
            .map_err(CorrelateError::storage("reading the watermark"))?;
        max.map(from_ms).transpose()
    }

    async fn findings_since(&self, since: DateTime<Utc>) -> Result<Vec<Finding>> {
        let rows = sqlx::query(
            "SELECT finding, identity_id FROM findings WHERE time >= ? ORDER BY time, source, finding_uid",
        )
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await
        .map_err(CorrelateError::storage("reading the correlation window"))?;
        rows.iter().map(finding_from_row).collect()
    }

    async fn findings_by_uid(&self, uids: &[String]) -> Result<Vec<Finding>> {
        let mut out = Vec::new();
        for chunk in uids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT finding, identity_id FROM findings WHERE finding_uid IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for u in chunk {
                q = q.bind(u.as_str());
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(CorrelateError::storage("reading findings by uid"))?;
            for r in &rows {
                out.push(finding_from_row(r)?);
            }
        }
        // Evidence older than the window has moved to the archive.
        let found: std::collections::HashSet<&str> =
            out.iter().map(|f| f.finding_uid.as_str()).collect();
        let missing: Vec<String> = uids
            .iter()
            .filter(|u| !found.contains(u.as_str()))
            .cloned()
            .collect();
        // Only uids the store archived are looked for, in their event days' folders.
        let mut days = std::collections::BTreeSet::new();
        for chunk in missing.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT DISTINCT time FROM archived_findings WHERE finding_uid IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for u in chunk {
                q = q.bind(u.as_str());
            }
            for r in q
                .fetch_all(&self.pool)
                .await
                .map_err(CorrelateError::storage("reading archived findings"))?
            {
                let t: i64 = get(&r, "time")?;
                if let Some(t) = DateTime::<Utc>::from_timestamp_millis(t) {
                    days.insert(t.date_naive());
                }
            }
        }
        if !days.is_empty() {
            let archive = self.archive.clone();
            let archived = tokio::task::spawn_blocking(move || archive.find(&missing, &days))
                .await
                .map_err(|e| CorrelateError::Internal(format!("archive lookup: {e}")))??;
            out.extend(archived);
        }
        out.sort_by(|a, b| {
            (a.time, &a.source, &a.finding_uid).cmp(&(b.time, &b.source, &b.finding_uid))
        });
        Ok(out)
    }

    fn archive(&self) -> &FindingsArchive {
        &self.archive
    }

    async fn archive_before(&self, cutoff: DateTime<Utc>) -> Result<usize> {
        // In batches, so a first pass over a large backlog holds one batch at a time.
        let mut moved = 0;
        loop {
            let n = self.archive_batch(cutoff).await?;
            moved += n;
            if n < ARCHIVE_BATCH {
                return Ok(moved);
            }
        }
    }

    async fn set_identities(&self, updates: &[IdentityUpdate]) -> Result<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(CorrelateError::storage("recording identities"))?;
        for u in updates {
            sqlx::query("UPDATE findings SET identity_id = ? WHERE source = ? AND finding_uid = ?")
                .bind(u.identity_id.as_deref())
                .bind(&u.source)
                .bind(&u.finding_uid)
                .execute(&mut *tx)
                .await
                .map_err(CorrelateError::storage("recording identities"))?;
        }
        tx.commit()
            .await
            .map_err(CorrelateError::storage("recording identities"))
    }

    async fn identity_assignments(
        &self,
        keys: &[String],
    ) -> Result<std::collections::HashMap<String, crate::identity::Assigned>> {
        let mut out = std::collections::HashMap::new();
        for chunk in keys.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT key, identity_id, assigned_at FROM identity_keys WHERE key IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for k in chunk {
                q = q.bind(k.as_str());
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(CorrelateError::storage("reading identity assignments"))?;
            for r in &rows {
                out.insert(
                    get::<String>(r, "key")?,
                    crate::identity::Assigned {
                        identity_id: get(r, "identity_id")?,
                        assigned_at: from_ms(get(r, "assigned_at")?)?,
                    },
                );
            }
        }
        Ok(out)
    }

    async fn record_identities(
        &self,
        assignments: &std::collections::BTreeMap<String, String>,
        aliases: &std::collections::BTreeMap<String, String>,
        links: &[crate::identity::Link],
    ) -> Result<()> {
        let ctx = "recording identity assignments";
        let now = ms(Utc::now());
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(CorrelateError::storage(ctx))?;
        for l in links {
            sqlx::query(
                "INSERT INTO identity_links (key_a, key_b, reason, at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&l.a)
            .bind(&l.b)
            .bind(&l.reason)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(CorrelateError::storage(ctx))?;
        }
        for (key, id) in assignments {
            sqlx::query(
                "INSERT INTO identity_keys (key, identity_id, assigned_at) VALUES (?, ?, ?) \
                 ON CONFLICT (key) DO UPDATE SET identity_id = excluded.identity_id",
            )
            .bind(key)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(CorrelateError::storage(ctx))?;
        }
        for (alias, id) in aliases {
            // Keys of the absorbed identity that this window did not mention follow it too.
            sqlx::query("UPDATE identity_keys SET identity_id = ? WHERE identity_id = ?")
                .bind(id)
                .bind(alias)
                .execute(&mut *tx)
                .await
                .map_err(CorrelateError::storage(ctx))?;
            sqlx::query(
                "INSERT INTO identity_aliases (alias, identity_id, at) VALUES (?, ?, ?) \
                 ON CONFLICT (alias) DO UPDATE SET identity_id = excluded.identity_id, at = excluded.at",
            )
            .bind(alias)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(CorrelateError::storage(ctx))?;
            // Aliases of the absorbed id now point at the survivor as well.
            sqlx::query("UPDATE identity_aliases SET identity_id = ? WHERE identity_id = ?")
                .bind(id)
                .bind(alias)
                .execute(&mut *tx)
                .await
                .map_err(CorrelateError::storage(ctx))?;
            move_identity(&mut tx, alias, id).await?;
        }
        tx.commit().await.map_err(CorrelateError::storage(ctx))
    }

    async fn identity_catalog(&self) -> Result<crate::identity::Catalog> {
        let ctx = "reading the identity catalog";
        let mut catalog = crate::identity::Catalog::default();
        let ids: Vec<String> = sqlx::query_scalar("SELECT DISTINCT identity_id FROM identity_keys")
            .fetch_all(&self.pool)
            .await
            .map_err(CorrelateError::storage(ctx))?;
        catalog.ids.extend(ids);
        let rows = sqlx::query(
            "SELECT identity_id, key FROM identity_keys \
             WHERE key LIKE 'sid:%' OR key LIKE 'guid:%' OR key LIKE 'aad:%' ORDER BY key",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(CorrelateError::storage(ctx))?;
        for r in &rows {
            catalog
                .anchors
                .entry(get::<String>(r, "identity_id")?)
                .or_default()
                .push(get(r, "key")?);
        }
        Ok(catalog)
    }

    async fn directory_objects(&self) -> Result<Vec<DirectoryObject>> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT object FROM directory_objects ORDER BY source, uid")
                .fetch_all(&self.pool)
                .await
                .map_err(CorrelateError::storage("reading directory objects"))?;
        rows.iter()
            .map(|o| from_json("directory object", o))
            .collect()
    }

    async fn identity_of_key(&self, key: &str) -> Result<Option<String>> {
        let id: Option<String> =
            sqlx::query_scalar("SELECT identity_id FROM identity_keys WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(CorrelateError::storage(format!(
                    "reading the identity of {key}"
                )))?;
        Ok(id)
    }

    async fn identity_explanation(&self, identity_id: &str) -> Result<Option<IdentityExplanation>> {
        let ctx = || format!("explaining identity {identity_id}");
        let surviving: Option<String> =
            sqlx::query_scalar("SELECT identity_id FROM identity_aliases WHERE alias = ?")
                .bind(identity_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(CorrelateError::storage(ctx()))?;
        let id = surviving.unwrap_or_else(|| identity_id.to_string());
        let keys: Vec<String> = sqlx::query_scalar(
            "SELECT key FROM identity_keys WHERE identity_id = ? ORDER BY assigned_at, key",
        )
        .bind(&id)
        .fetch_all(&self.pool)
        .await
        .map_err(CorrelateError::storage(ctx()))?;
        if keys.is_empty() {
            return Ok(None);
        }
        let aliases: Vec<String> = sqlx::query_scalar(
            "SELECT alias FROM identity_aliases WHERE identity_id = ? ORDER BY at, alias",
        )
        .bind(&id)
        .fetch_all(&self.pool)
        .await
        .map_err(CorrelateError::storage(ctx()))?;
        let rows = sqlx::query(
            "SELECT l.key_a, l.key_b, l.reason FROM identity_links l \
             JOIN identity_keys k ON k.key = l.key_a WHERE k.identity_id = ? ORDER BY l.at, l.key_a, l.key_b",
        )
        .bind(&id)
        .fetch_all(&self.pool)
        .await
        .map_err(CorrelateError::storage(ctx()))?;
        let links = rows
            .iter()
            .map(|r| {
                Ok(crate::identity::Link {
                    a: get(r, "key_a")?,
                    b: get(r, "key_b")?,
                    reason: get(r, "reason")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let key_set: std::collections::HashSet<&str> = keys.iter().map(String::as_str).collect();
        let directory = self
            .directory_objects()
            .await?
            .into_iter()
            .filter(|o| o.keys.iter().any(|k| key_set.contains(k.as_str())))
            .collect();
        let findings: i64 =
            sqlx::query_scalar("SELECT count(*) FROM findings WHERE identity_id = ?")
                .bind(&id)
                .fetch_one(&self.pool)
                .await
                .map_err(CorrelateError::storage(ctx()))?;
        Ok(Some(IdentityExplanation {
            identity_id: id,
            keys,
            aliases,
            links,
            directory,
            findings,
        }))
    }

    async fn identity_aliases(&self) -> Result<std::collections::HashMap<String, String>> {
        let rows = sqlx::query("SELECT alias, identity_id FROM identity_aliases")
            .fetch_all(&self.pool)
            .await
            .map_err(CorrelateError::storage("reading identity aliases"))?;
        rows.iter()
            .map(|r| Ok((get::<String>(r, "alias")?, get::<String>(r, "identity_id")?)))
            .collect()
    }

    async fn detections_by_id(&self, ids: &[String]) -> Result<Vec<Detection>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IN_CHUNK) {
            let clause = format!("id IN ({})", placeholders(chunk.len()));
            out.extend(self.detections_where(&clause, chunk).await?);
        }
        Ok(out)
    }

    async fn detections_for_entity(
        &self,
        rule_id: &str,
        entity_key: &str,
    ) -> Result<Vec<Detection>> {
        self.detections_where(
            "rule_id = ? AND entity_key = ?",
            &[rule_id.to_string(), entity_key.to_string()],
        )
        .await
    }

    async fn open_incidents(&self) -> Result<Vec<Incident>> {
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE status <> 'closed' ORDER BY number"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(CorrelateError::storage("reading open incidents"))?;
        self.incidents_from_rows(rows).await
    }

    async fn closed_incidents_since(&self, since: DateTime<Utc>) -> Result<Vec<Incident>> {
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents \
             WHERE status = 'closed' AND merged_into IS NULL AND last_seen >= ? ORDER BY number"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(ms(since))
            .fetch_all(&self.pool)
            .await
            .map_err(CorrelateError::storage("reading closed incidents"))?;
        self.incidents_from_rows(rows).await
    }

    async fn apply(&self, changes: &CorrelationChanges) -> Result<()> {
        let ctx = "writing correlation results";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(CorrelateError::storage(ctx))?;
        let now = ms(Utc::now());
        for inc in &changes.incidents {
            // Numbers are assigned here, once, in creation order.
            sqlx::query(
                "INSERT INTO incidents (id, number, title, status, severity_id, first_seen, last_seen, \
                   created_at, updated_at, tactics, techniques, sources, detection_count, finding_count) \
                 VALUES (?, (SELECT coalesce(max(number), 0) + 1 FROM incidents), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET title = excluded.title, severity_id = excluded.severity_id, \
                   first_seen = excluded.first_seen, last_seen = excluded.last_seen, updated_at = excluded.updated_at, \
                   tactics = excluded.tactics, techniques = excluded.techniques, sources = excluded.sources, \
                   detection_count = excluded.detection_count, finding_count = excluded.finding_count",
            )
            .bind(&inc.id)
            .bind(&inc.title)
            .bind(inc.status.as_str())
            .bind(inc.severity_id)
            .bind(ms(inc.first_seen))
            .bind(ms(inc.last_seen))
            .bind(ms(inc.created_at))
            .bind(ms(inc.updated_at))
            .bind(to_json(&inc.tactics))
            .bind(to_json(&inc.techniques))
            .bind(to_json(&inc.sources))
            .bind(inc.detection_count)
            .bind(inc.finding_count)
            .execute(&mut *tx)
            .await
            .map_err(CorrelateError::storage(ctx))?;
            for e in &inc.entities {
                sqlx::query(
                    "INSERT INTO incident_entities (incident_id, kind, value) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                )
                .bind(&inc.id)
                .bind(&e.kind)
                .bind(&e.value)
                .execute(&mut *tx)
                .await
                .map_err(CorrelateError::storage(ctx))?;
            }
        }
        for d in &changes.detections {
            sqlx::query(
                "INSERT INTO detections (id, rule_id, title, entity_kind, entity_key, bucket, severity_id, \
                   first_seen, last_seen, finding_uids, tactics, techniques, incident_id, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET title = excluded.title, severity_id = excluded.severity_id, \
                   first_seen = excluded.first_seen, last_seen = excluded.last_seen, \
                   finding_uids = excluded.finding_uids, incident_id = excluded.incident_id, \
                   updated_at = excluded.updated_at",
            )
            .bind(&d.id)
            .bind(&d.rule_id)
            .bind(&d.title)
            .bind(&d.entity_kind)
            .bind(&d.entity_key)
            .bind(d.bucket)
            .bind(d.severity_id)
            .bind(ms(d.first_seen))
            .bind(ms(d.last_seen))
            .bind(to_json(&d.finding_uids))
            .bind(to_json(&d.tactics))
            .bind(to_json(&d.techniques))
            .bind(d.incident_id.as_deref())
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(CorrelateError::storage(ctx))?;
        }
        for (absorbed, survivor) in &changes.merged {
            sqlx::query(
                "UPDATE incidents SET status = 'closed', merged_into = ?, updated_at = ? WHERE id = ?",
            )
            .bind(survivor)
            .bind(now)
            .bind(absorbed)
            .execute(&mut *tx)
            .await
            .map_err(CorrelateError::storage(ctx))?;
            for sql in [
                "UPDATE detections SET incident_id = ?1 WHERE incident_id = ?2",
                "INSERT OR IGNORE INTO incident_entities (incident_id, kind, value) \
                   SELECT ?1, kind, value FROM incident_entities WHERE incident_id = ?2",
                "UPDATE OR IGNORE merge_reasons SET incident_id = ?1 WHERE incident_id = ?2",
            ] {
                sqlx::query(sql)
                    .bind(survivor)
                    .bind(absorbed)
                    .execute(&mut *tx)
                    .await
                    .map_err(CorrelateError::storage(ctx))?;
            }
        }
        let recount: std::collections::BTreeSet<&String> = changes
            .incidents
            .iter()
            .map(|i| &i.id)
            .chain(changes.merged.iter().map(|(a, _)| a))
            .collect();
        for id in &recount {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE incidents SET {COUNTS} WHERE id = ?"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(CorrelateError::storage(ctx))?;
        }
        // The changes go out through the outbox, committed with them.
        for id in recount {
            outbox_incident(&mut tx, id, now).await?;
        }
        for r in &changes.reasons {
            sqlx::query(
                "INSERT INTO merge_reasons (incident_id, detection_id, reason, at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&r.incident_id)
            .bind(&r.detection_id)
            .bind(&r.reason)
            .bind(ms(r.at))
            .execute(&mut *tx)
            .await
            .map_err(CorrelateError::storage(ctx))?;
        }
        tx.commit().await.map_err(CorrelateError::storage(ctx))
    }

    async fn incidents(&self, filter: &IncidentFilter) -> Result<IncidentPage> {
        let mut clauses = vec!["1 = 1".to_string()];
        let mut binds: Vec<i64> = Vec::new();
        let mut status = None;
        if let Some(s) = filter.status {
            clauses.push("status = ?".into());
            status = Some(s.as_str());
        }
        if let Some(sev) = filter.min_severity {
            clauses.push("severity_id >= ?".into());
            binds.push(i64::from(sev));
        }
        if let Some(since) = filter.since {
            clauses.push("last_seen >= ?".into());
            binds.push(ms(since));
        }
        if let Some(n) = filter.before_number {
            clauses.push("number < ?".into());
            binds.push(n);
        }
        let limit = filter.limit.max(1);
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE {} ORDER BY number DESC LIMIT {}",
            clauses.join(" AND "),
            limit + 1
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some(s) = status {
            q = q.bind(s);
        }
        for b in binds {
            q = q.bind(b);
        }
        let mut rows = q
            .fetch_all(&self.pool)
            .await
            .map_err(CorrelateError::storage("listing incidents"))?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let items = self.incidents_from_rows(rows).await?;
        let next = if more {
            items.last().map(|i| i.number)
        } else {
            None
        };
        Ok(IncidentPage { items, next })
    }

    async fn incident(&self, id: &str) -> Result<Option<IncidentDetail>> {
        let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(CorrelateError::storage(format!("reading incident {id}")))?;
        let Some(incident) = self.incidents_from_rows(rows).await?.into_iter().next() else {
            return Ok(None);
        };
        let detections = self
            .detections_where("incident_id = ?", &[id.to_string()])
            .await?;
        let reasons = sqlx::query(
            "SELECT incident_id, detection_id, reason, at FROM merge_reasons WHERE incident_id = ? ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(CorrelateError::storage(format!("reading merge reasons of {id}")))?
        .iter()
        .map(|r| {
            Ok(MergeReason {
                incident_id: get(r, "incident_id")?,
                detection_id: get(r, "detection_id")?,
                reason: get(r, "reason")?,
                at: from_ms(get(r, "at")?)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(IncidentDetail {
            incident,
            detections,
            reasons,
        }))
    }

    async fn set_incident_status(&self, id: &str, status: IncidentStatus) -> Result<bool> {
        let ctx = format!("setting the status of incident {id}");
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(CorrelateError::storage(ctx.clone()))?;
        let now = ms(Utc::now());
        let done = sqlx::query(
            "UPDATE incidents SET status = ?, updated_at = ? WHERE id = ? AND merged_into IS NULL",
        )
        .bind(status.as_str())
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(CorrelateError::storage(ctx.clone()))?;
        let changed = done.rows_affected() == 1;
        if changed {
            // SIEMs hear of an analyst's decision as of any other change.
            outbox_incident(&mut tx, id, now).await?;
        }
        tx.commit().await.map_err(CorrelateError::storage(ctx))?;
        Ok(changed)
    }

    async fn incident_id_by_number(&self, number: i64) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT id FROM incidents WHERE number = ?")
            .bind(number)
            .fetch_optional(&self.pool)
            .await
            .map_err(CorrelateError::storage(format!(
                "looking up incident #{number}"
            )))
    }

    async fn pending_writebacks(
        &self,
        source: &str,
        limit: usize,
    ) -> Result<Vec<PendingWriteBack>> {
        let rows = sqlx::query(
            "SELECT DISTINCT f.finding, f.identity_id, i.id AS incident_id, i.number, i.title \
             FROM incidents i \
             JOIN detections d ON d.incident_id = i.id \
             JOIN json_each(d.finding_uids) j \
             JOIN findings f ON f.finding_uid = j.value AND f.source = ? \
             WHERE NOT EXISTS (SELECT 1 FROM writebacks w WHERE w.finding_uid = f.finding_uid AND w.incident_id = i.id) \
             ORDER BY i.number, f.finding_uid LIMIT ?",
        )
        .bind(source)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(CorrelateError::storage("reading pending write-backs"))?;
        rows.iter()
            .map(|r| {
                Ok(PendingWriteBack {
                    finding: finding_from_row(r)?,
                    incident_id: get(r, "incident_id")?,
                    incident_number: get(r, "number")?,
                    incident_title: get(r, "title")?,
                })
            })
            .collect()
    }

    async fn record_writebacks(&self, done: &[(String, String)]) -> Result<()> {
        let ctx = "recording write-backs";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(CorrelateError::storage(ctx))?;
        for (uid, incident) in done {
            sqlx::query(
                "INSERT OR IGNORE INTO writebacks (finding_uid, incident_id, at) VALUES (?, ?, ?)",
            )
            .bind(uid)
            .bind(incident)
            .bind(ms(Utc::now()))
            .execute(&mut *tx)
            .await
            .map_err(CorrelateError::storage(ctx))?;
        }
        tx.commit().await.map_err(CorrelateError::storage(ctx))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<StoredDeadLetter>> {
        let rows = sqlx::query(
            "SELECT id, source, location, reason, raw, at FROM dead_letters ORDER BY id DESC LIMIT ?",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(CorrelateError::storage("reading dead letters"))?;
        rows.iter()
            .map(|r| {
                Ok(StoredDeadLetter {
                    id: get(r, "id")?,
                    letter: DeadLetter {
                        source: get(r, "source")?,
                        location: get(r, "location")?,
                        reason: get(r, "reason")?,
                        raw: get(r, "raw")?,
                        at: from_ms(get(r, "at")?)?,
                    },
                })
            })
            .collect()
    }

    async fn counts(&self) -> Result<StoreCounts> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM findings) + (SELECT count(*) FROM archived_findings a \
                      WHERE NOT EXISTS (SELECT 1 FROM findings f \
                        WHERE f.source = a.source AND f.finding_uid = a.finding_uid)) AS findings, \
                    (SELECT count(*) FROM dead_letters) AS dead_letters, \
                    (SELECT count(*) FROM detections) AS detections, \
                    (SELECT count(*) FROM incidents) AS incidents",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(CorrelateError::storage("counting rows"))?;
        Ok(StoreCounts {
            findings: get(&row, "findings")?,
            dead_letters: get(&row, "dead_letters")?,
            detections: get(&row, "detections")?,
            incidents: get(&row, "incidents")?,
        })
    }
}
