//! The AWS Security Hub source: `GetFindings` (ASFF) or `GetFindingsV2` (OCSF), incremental,
//! multi-account, lossless.
//!
//! Each run reads, for every account scope (an assumed role, or the default credentials),
//! the findings updated since the scope's high-water mark minus a look-back overlap, oldest
//! first, 100 per page. Findings already delivered inside the overlap are recognised by
//! `(product, id, updated)` and skipped, so the overlap costs requests, not duplicates (and
//! services that ignore the filter, such as moto, are handled the same way). Every page is
//! one store transaction together with the cursor that follows it; a page that fails is not
//! committed and the next run repeats it. Because analysts' workflow changes do not move
//! `UpdatedAt`, open findings are re-read every `reconcile_interval`.
//!
//! Delivery: at least once from Security Hub, exactly once into the store (findings are
//! keyed by `(source, finding_uid)` and versioned by `modified_time`).

mod client;
mod config;
mod cursor;
mod import;
#[cfg(test)]
mod tests;
mod writeback;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;

pub use client::{ApiError, ApiPage, FindingsApi, RateLimiter, SdkFindingsApi};
pub use config::{DEFAULT_SCOPE, SecurityHubApi, SecurityHubConfig};
pub use cursor::{Cursor, QueryCursor, QueryKind, ScopeCursor, dedupe_key};
pub use import::{ImportFinding, ImportReport, MAX_FINDING_BYTES, SecurityHubImport};
pub use writeback::{MAX_PER_CALL, SecurityHubWriteBack, WriteBack, WriteBackReport};

use crate::dead_letter::DeadLetter;
use crate::error::{IngestError, Result};
use crate::normalize::normalize;
use crate::reader::Record;
use crate::source::{Page, Source};

/// The `source` column of Security Hub findings, from either API.
pub const SOURCE: &str = "aws.securityhub";

/// Reads Security Hub as a [`Source`].
pub struct SecurityHubSource {
    id: String,
    config: SecurityHubConfig,
    apis: BTreeMap<String, Arc<dyn FindingsApi>>,
    /// Scopes whose incremental query finished in this run.
    done: BTreeSet<String>,
}

impl SecurityHubSource {
    /// A source reading Security Hub through the AWS SDK.
    pub async fn connect(id: &str, config: &SecurityHubConfig) -> Result<SecurityHubSource> {
        config.validate().map_err(|message| IngestError::Config {
            source_id: id.to_string(),
            message,
        })?;
        let mut apis: BTreeMap<String, Arc<dyn FindingsApi>> = BTreeMap::new();
        for scope in config.scopes() {
            let api = SdkFindingsApi::connect(config, &scope).await;
            apis.insert(scope, Arc::new(api));
        }
        Ok(Self::with_apis(id, config.clone(), apis))
    }

    /// A source over given page fetchers, one per scope (tests script them).
    pub fn with_apis(
        id: &str,
        config: SecurityHubConfig,
        apis: BTreeMap<String, Arc<dyn FindingsApi>>,
    ) -> SecurityHubSource {
        SecurityHubSource {
            id: id.to_string(),
            config,
            apis,
            done: BTreeSet::new(),
        }
    }

    fn api_name(&self) -> &'static str {
        match self.config.api {
            SecurityHubApi::GetFindings => "GetFindings",
            SecurityHubApi::GetFindingsV2 => "GetFindingsV2",
        }
    }
}

/// The dedupe identity of one finding version, for either format.
fn version_key(record: &Record) -> Option<(String, chrono::DateTime<Utc>)> {
    let v = &record.value;
    let s = |p: &str| v.pointer(p).and_then(|x| x.as_str()).map(str::to_string);
    let (product, id, updated) = if v.get("SchemaVersion").is_some() {
        (
            s("/ProductArn").unwrap_or_default(),
            s("/Id")?,
            s("/UpdatedAt")?,
        )
    } else {
        let updated = s("/finding_info/modified_time_dt")
            .or_else(|| {
                v.pointer("/finding_info/modified_time")
                    .map(|t| t.to_string())
            })
            .or_else(|| s("/time_dt"))?;
        (
            s("/metadata/product/uid").unwrap_or_default(),
            s("/finding_info/uid")?,
            updated,
        )
    };
    let parsed = chrono::DateTime::parse_from_rfc3339(&updated)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            updated
                .parse::<i64>()
                .ok()
                .and_then(chrono::DateTime::from_timestamp_millis)
        })?;
    Some((dedupe_key(&product, &id, &updated), parsed))
}

#[async_trait]
impl Source for SecurityHubSource {
    fn id(&self) -> &str {
        &self.id
    }

    async fn next_page(&mut self, cursor: Option<&str>) -> Result<Option<Page>> {
        let mut state = Cursor::parse(cursor).map_err(|message| IngestError::Config {
            source_id: self.id.clone(),
            message,
        })?;
        let now = Utc::now();
        let lookback = chrono::Duration::from_std(self.config.lookback).unwrap_or_default();
        let initial = chrono::Duration::from_std(self.config.initial_lookback).unwrap_or_default();
        let reconcile =
            chrono::Duration::from_std(self.config.reconcile_interval).unwrap_or_default();

        for scope in self.config.scopes() {
            if self.done.contains(&scope) {
                continue;
            }
            let Some(api) = self.apis.get(&scope).cloned() else {
                return Err(IngestError::Internal(format!(
                    "no client for scope {scope}"
                )));
            };
            let sc = state.scopes.entry(scope.clone()).or_default();
            let mut query = match sc.query.take() {
                Some(q) => q,
                None => {
                    // A first run has nothing to reconcile; later runs re-read open findings
                    // when the interval has passed, then read what changed.
                    if sc.last_reconcile.is_none() {
                        sc.last_reconcile = Some(now);
                    }
                    let due = sc.last_reconcile.is_some_and(|t| now - t >= reconcile)
                        && sc.overlap.high_water.is_some();
                    let kind = if due {
                        QueryKind::Open { started: now }
                    } else {
                        QueryKind::Updated {
                            since: sc.overlap.next_since(now, lookback, initial),
                        }
                    };
                    QueryCursor {
                        kind,
                        next_token: None,
                        pages: 0,
                    }
                }
            };
            let fetched = api
                .page(
                    &query.kind,
                    query.next_token.as_deref(),
                    self.config.page_size,
                )
                .await
                .map_err(|e| IngestError::Upstream {
                    source_id: self.id.clone(),
                    status: e.status,
                    retry_after: e.retry_after,
                    message: format!(
                        "{} page {} for account scope `{scope}` in {} failed: {}",
                        self.api_name(),
                        query.pages + 1,
                        self.config.region,
                        e.message
                    ),
                })?;

            let mut page = Page::default();
            let since = match &query.kind {
                QueryKind::Updated { since } => Some(*since),
                QueryKind::Open { .. } => None,
            };
            for (i, record) in fetched.records.into_iter().enumerate() {
                let location = format!(
                    "{}/{scope}/page {}[{i}]",
                    self.config.region,
                    query.pages + 1
                );
                if let Some(since) = since {
                    match version_key(&record) {
                        Some((key, updated)) => {
                            // Older than asked for: a service that ignores the filter (moto
                            // does) must not re-deliver what the overlap no longer remembers.
                            if updated < since {
                                continue;
                            }
                            // Inside the overlap, skip versions already delivered.
                            if !sc.overlap.remember(key, updated) {
                                continue;
                            }
                        }
                        None => {
                            page.dead_letters.push(DeadLetter::new(
                                &self.id,
                                location,
                                "finding has no id or update time to deduplicate on".into(),
                                record.raw.as_bytes(),
                            ));
                            continue;
                        }
                    }
                }
                match normalize(&record.value, &record.raw) {
                    Ok(mut f) => {
                        f.source = SOURCE.to_string();
                        f.ingested_at = now;
                        page.findings.push(f);
                    }
                    Err(e) => page.dead_letters.push(DeadLetter::new(
                        &self.id,
                        location,
                        e.to_string(),
                        record.raw.as_bytes(),
                    )),
                }
            }
            query.pages += 1;
            match fetched.next_token {
                Some(token) => {
                    query.next_token = Some(token);
                    sc.query = Some(query);
                }
                None => {
                    if let QueryKind::Open { started } = query.kind {
                        sc.last_reconcile = Some(started);
                    } else {
                        self.done.insert(scope.clone());
                    }
                }
            }
            // Keys stay while a query that can still return them is running.
            let keep_from = sc
                .query
                .as_ref()
                .and_then(|q| match q.kind {
                    QueryKind::Updated { since } => Some(since),
                    QueryKind::Open { .. } => None,
                })
                .into_iter()
                .chain(sc.overlap.high_water.map(|h| h - lookback))
                .min();
            sc.overlap.prune_before(keep_from);
            page.cursor = Some(state.to_json());
            return Ok(Some(page));
        }
        Ok(None)
    }
}
