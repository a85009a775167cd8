//! The Microsoft Defender XDR source: Graph security alerts (`alerts_v2`) and incidents
//! (`incidents?$expand=alerts`), incremental on `lastUpdateDateTime`.
//!
//! Graph makes alerts visible minutes after their last update, so each query re-reads a
//! look-back overlap and skips the `(id, lastUpdateDateTime)` versions it already delivered.
//! Incidents bring their alerts; both are stored (alerts de-duplicate against the alert feed
//! in the store). An incident that Defender merged into another names it in
//! `redirectIncidentId`; the source fetches the surviving incident so Cairn does not keep
//! only the dead one. Every page commits with the cursor that follows it.

mod config;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::value::RawValue;

pub use config::{DefenderConfig, DefenderFeed};

use crate::dead_letter::DeadLetter;
use crate::error::{IngestError, Result};
use crate::microsoft::GRAPH_SCOPE;
use crate::microsoft::odata::{Feed, FeedRunner};
use crate::microsoft::{push_record, unkeyed_to_dead_letters};
use crate::reader::Record;
use crate::source::{Page, Source};

/// Reads Defender XDR through Microsoft Graph.
pub struct DefenderSource {
    config: DefenderConfig,
    runner: FeedRunner,
}

impl DefenderSource {
    /// A source with a Graph client for `config.auth`.
    pub fn connect(id: &str, config: &DefenderConfig) -> Result<DefenderSource> {
        Ok(DefenderSource {
            config: config.clone(),
            runner: FeedRunner::connect(id, "Graph", &config.auth, GRAPH_SCOPE, config.validate())?,
        })
    }

    fn feed(&self, which: DefenderFeed) -> Feed {
        let base = self.config.graph_url.trim_end_matches('/');
        let mut query = vec![("$top".to_string(), self.config.page_size.to_string())];
        let (path, time_field) = match which {
            DefenderFeed::Alerts => ("/v1.0/security/alerts_v2", "lastUpdateDateTime"),
            DefenderFeed::Incidents => {
                query.push(("$expand".into(), "alerts".into()));
                ("/v1.0/security/incidents", "lastUpdateDateTime")
            }
            // Sign-ins do not change once written.
            DefenderFeed::Signins => ("/v1.0/auditLogs/signIns", "createdDateTime"),
        };
        Feed {
            name: which.name().into(),
            url: format!("{base}{path}"),
            filter_field: Some(time_field.into()),
            version_pointer: format!("/{time_field}"),
            version_extra: Vec::new(),
            id_pointer: "/id".into(),
            query,
            next_link_field: "@odata.nextLink".into(),
        }
    }

    /// The records a page yields: an incident brings its expanded alerts, each kept as the
    /// exact text it had inside the incident.
    fn expand(record: Record) -> Vec<Record> {
        let nested: Vec<Record> = serde_json::from_str::<HashMap<String, &RawValue>>(&record.raw)
            .ok()
            .and_then(|m| {
                m.get("alerts")
                    .and_then(|a| serde_json::from_str::<Vec<&RawValue>>(a.get()).ok())
            })
            .unwrap_or_default()
            .into_iter()
            .filter_map(|raw| {
                serde_json::from_str(raw.get()).ok().map(|value| Record {
                    value,
                    raw: raw.get().to_string(),
                })
            })
            .collect();
        let mut out = vec![record];
        out.extend(nested);
        out
    }

    /// Defender merged an incident into `target`: bring the live one too.
    async fn follow_redirect(&self, page: &mut Page, target: &str) -> Result<()> {
        let url = format!(
            "{}/v1.0/security/incidents/{target}?$expand=alerts",
            self.config.graph_url.trim_end_matches('/')
        );
        let body = self
            .runner
            .client
            .get(&url)
            .await
            .map_err(|e| IngestError::Upstream {
                source_id: self.runner.source_id.clone(),
                status: e.status,
                retry_after: None,
                message: format!(
                    "Graph incident {target} (redirect target) failed: {}",
                    e.message
                ),
            })?;
        let text = String::from_utf8_lossy(&body).into_owned();
        match serde_json::from_str(&text) {
            Ok(value) => {
                for r in Self::expand(Record { value, raw: text }) {
                    self.push(page, &r, format!("graph/incidents/{target}"));
                }
            }
            Err(e) => page.dead_letters.push(DeadLetter::new(
                &self.runner.source_id,
                format!("graph/incidents/{target}"),
                format!("unreadable redirect target: {e}"),
                &body,
            )),
        }
        Ok(())
    }

    fn push(&self, page: &mut Page, record: &Record, location: String) {
        push_record(&self.runner.source_id, page, record, location, None);
    }
}

#[async_trait]
impl Source for DefenderSource {
    fn id(&self) -> &str {
        &self.runner.source_id
    }

    async fn next_page(&mut self, cursor: Option<&str>) -> Result<Option<Page>> {
        let lookback = chrono::Duration::from_std(self.config.lookback).unwrap_or_default();
        let initial = chrono::Duration::from_std(self.config.initial_lookback).unwrap_or_default();
        let feeds: Vec<Feed> = self.config.feeds.iter().map(|f| self.feed(*f)).collect();
        let Some(polled) = self.runner.next(&feeds, cursor, lookback, initial).await? else {
            return Ok(None);
        };
        let (feed, page_no) = (&polled.feed, polled.page_no);
        let mut page = Page::default();
        for (i, record) in polled.page.records.into_iter().enumerate() {
            let location = format!("graph/{}/page {page_no}[{i}]", feed.name);
            let redirect = record.value.get("redirectIncidentId").and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v.as_i64().map(|n| n.to_string()))
            });
            for r in Self::expand(record) {
                self.push(&mut page, &r, location.clone());
            }
            if let Some(target) = redirect {
                self.follow_redirect(&mut page, &target).await?;
            }
        }
        unkeyed_to_dead_letters(
            &self.runner.source_id,
            &mut page,
            polled.page.unkeyed,
            &format!("graph/{}/page {page_no}", feed.name),
        );
        page.cursor = Some(polled.cursor);
        Ok(Some(page))
    }
}
