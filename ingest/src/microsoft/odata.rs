//! Incremental reading of a Microsoft list API (Graph `@odata.nextLink`, ARM `nextLink`).
//!
//! A [`Feed`] names the collection, the time field to filter on, and the fields that make a
//! version of a record. Each query asks for records updated since the feed's high-water mark
//! minus the look-back overlap (`$filter=<field> ge <time>`) and follows the next-page links;
//! the link of the next page is part of the cursor, so a run that stops resumes on the page
//! it did not commit. Versions already delivered inside the overlap are skipped.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{MicrosoftClient, RequestError};
use crate::incremental::{Overlap, version_key};
use crate::reader::Record;

/// One list API read incrementally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// Name in cursors and error messages (`alerts_v2`, `incidents`).
    pub name: String,
    /// Collection URL without query (`https://graph.microsoft.com/v1.0/security/alerts_v2`).
    pub url: String,
    /// Field compared in `$filter` (`lastUpdateDateTime`, `properties/lastModifiedTimeUtc`);
    /// `None` for collections that cannot be filtered on time (every run reads them whole
    /// and skips the versions already delivered).
    pub filter_field: Option<String>,
    /// JSON pointer of the record's update time (`/lastUpdateDateTime`).
    pub version_pointer: String,
    /// Further fields that make a new version when they change (`/properties/status`).
    pub version_extra: Vec<String>,
    /// JSON pointer of the record's id.
    pub id_pointer: String,
    /// Other query parameters (`$top`, `$expand`, `api-version`).
    pub query: Vec<(String, String)>,
    /// Name of the next-page link in the body (`@odata.nextLink` or `nextLink`).
    pub next_link_field: String,
}

/// Where a feed stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedCursor {
    /// High-water update time and the versions delivered inside the overlap.
    #[serde(flatten)]
    pub overlap: Overlap,
    /// The query in progress: its start and the link of its next page.
    pub query: Option<FeedQuery>,
}

/// A query in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedQuery {
    /// Start of the time filter.
    pub since: DateTime<Utc>,
    /// Link of the next page (`None` before the first).
    pub next_link: Option<String>,
    /// Pages committed so far.
    pub pages: u64,
}

/// A page of a feed.
#[derive(Debug, Default)]
pub struct FeedPage {
    /// New versions, as received.
    pub records: Vec<Record>,
    /// Versions skipped as already delivered (or older than asked for).
    pub skipped: usize,
    /// Records without an id or a readable update time.
    pub unkeyed: Vec<Record>,
    /// True when this page ended the query.
    pub last: bool,
}

/// Per-feed cursors of a source, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedCursors {
    /// By feed name.
    #[serde(default)]
    pub feeds: BTreeMap<String, FeedCursor>,
}

impl FeedCursors {
    /// Parses a stored cursor; an unreadable one is an error, not a silent restart.
    pub fn parse(s: Option<&str>) -> Result<FeedCursors, String> {
        match s {
            None => Ok(FeedCursors::default()),
            Some(t) => serde_json::from_str(t).map_err(|e| format!("unreadable cursor: {e}")),
        }
    }

    /// The cursor as stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// OData's form of a time: RFC 3339, UTC, with `Z`.
fn odata_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Percent-encodes a query value (spaces as `%20`, which every OData service reads; `+` is
/// not read as a space by all of them).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~$:,'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Feed {
    /// The first page's URL of a query starting at `since`.
    pub fn first_url(&self, since: DateTime<Utc>) -> String {
        let filter = self
            .filter_field
            .as_ref()
            .map(|f| format!("{f} ge {}", odata_time(since)));
        let query: Vec<String> = self
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(filter.as_deref().map(|f| ("$filter", f)))
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        format!("{}?{}", self.url, query.join("&"))
    }
}

#[derive(Deserialize)]
struct ListBody<'a> {
    #[serde(borrow, default)]
    value: Vec<&'a RawValue>,
}

/// Parses a list page: its records (exact text kept) and its next link.
pub fn parse_list(
    body: &[u8],
    next_link_field: &str,
) -> Result<(Vec<Record>, Option<String>), String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("response is not UTF-8: {e}"))?;
    let list: ListBody<'_> =
        serde_json::from_str(text).map_err(|e| format!("unreadable response body: {e}"))?;
    let envelope: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("unreadable response body: {e}"))?;
    let next = envelope
        .get(next_link_field)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let records = list
        .value
        .into_iter()
        .map(|raw| {
            serde_json::from_str(raw.get())
                .map(|value| Record {
                    value,
                    raw: raw.get().to_string(),
                })
                .map_err(|e| format!("unreadable record: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((records, next))
}

/// Reads the next page of `feed`, updating `cursor` (which the caller commits with the page).
pub async fn next_page(
    client: &MicrosoftClient,
    feed: &Feed,
    cursor: &mut FeedCursor,
    now: DateTime<Utc>,
    lookback: chrono::Duration,
    initial: chrono::Duration,
) -> Result<FeedPage, RequestError> {
    let mut query = cursor.query.take().unwrap_or_else(|| FeedQuery {
        since: cursor.overlap.next_since(now, lookback, initial),
        next_link: None,
        pages: 0,
    });
    let url = query
        .next_link
        .clone()
        .unwrap_or_else(|| feed.first_url(query.since));
    let body = match client.get(&url).await {
        Ok(b) => b,
        Err(e) => {
            // Not committed: the same page is asked for again next time.
            cursor.query = Some(query);
            return Err(e);
        }
    };
    let (records, next) = match parse_list(&body, &feed.next_link_field) {
        Ok(r) => r,
        Err(message) => {
            cursor.query = Some(query);
            return Err(RequestError {
                status: None,
                message,
            });
        }
    };
    let mut page = FeedPage::default();
    for record in records {
        let id = record
            .value
            .pointer(&feed.id_pointer)
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let version = record
            .value
            .pointer(&feed.version_pointer)
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let updated = version
            .as_deref()
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            .map(|t| t.with_timezone(&Utc));
        let (Some(id), Some(version), Some(updated)) = (id, version, updated) else {
            page.unkeyed.push(record);
            continue;
        };
        let extra: Vec<String> = feed
            .version_extra
            .iter()
            .map(|p| {
                record
                    .value
                    .pointer(p)
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            })
            .collect();
        let mut parts: Vec<&str> = vec![&feed.name, &id, &version];
        parts.extend(extra.iter().map(String::as_str));
        if updated < query.since || !cursor.overlap.remember(version_key(&parts), updated) {
            page.skipped += 1;
            continue;
        }
        page.records.push(record);
    }
    query.pages += 1;
    match next {
        Some(link) => {
            query.next_link = Some(link);
            let floor = cursor
                .overlap
                .high_water
                .map(|h| h - lookback)
                .map(|f| f.min(query.since));
            cursor.overlap.prune_before(floor);
            cursor.query = Some(query);
        }
        None => {
            cursor
                .overlap
                .prune_before(cursor.overlap.high_water.map(|h| h - lookback));
            page.last = true;
        }
    }
    Ok(page)
}

/// The next page of the first feed of a source not finished in this run.
pub struct Polled {
    /// The feed it came from.
    pub feed: Feed,
    /// Its page number in the current query (from 1).
    pub page_no: u64,
    /// The page.
    pub page: FeedPage,
    /// The source's cursor after this page (to commit with it).
    pub cursor: String,
}

/// What every Microsoft source shares: its id, its authenticated client, and which of its
/// feeds have finished in this run.
pub struct FeedRunner {
    /// The configured source id.
    pub source_id: String,
    /// Service named in errors (`Graph`, `ARM`, `Sentinel`).
    api: &'static str,
    tenant: String,
    /// The authenticated client.
    pub client: MicrosoftClient,
    done: std::collections::BTreeSet<String>,
}

impl FeedRunner {
    /// Checks the source's configuration (`validated`) and builds a client for `scope`.
    pub fn connect(
        source_id: &str,
        api: &'static str,
        auth: &super::ConnectionConfig,
        scope: &str,
        validated: Result<(), String>,
    ) -> crate::Result<FeedRunner> {
        let fail = |message: String| crate::IngestError::Config {
            source_id: source_id.to_string(),
            message,
        };
        validated.map_err(fail)?;
        let client = MicrosoftClient::new(auth, scope).map_err(fail)?;
        Ok(FeedRunner {
            source_id: source_id.to_string(),
            api,
            tenant: auth.tenant_id.clone(),
            client,
            done: std::collections::BTreeSet::new(),
        })
    }

    /// Reads the next page of the first of `feeds` not finished in this run (a feed whose
    /// query ends is finished). `None` when every feed is.
    pub async fn next(
        &mut self,
        feeds: &[Feed],
        cursor: Option<&str>,
        lookback: chrono::Duration,
        initial: chrono::Duration,
    ) -> crate::Result<Option<Polled>> {
        let mut cursors =
            FeedCursors::parse(cursor).map_err(|message| crate::IngestError::Config {
                source_id: self.source_id.clone(),
                message,
            })?;
        for feed in feeds {
            if self.done.contains(&feed.name) {
                continue;
            }
            let fc = cursors.feeds.entry(feed.name.clone()).or_default();
            let page_no = fc.query.as_ref().map_or(1, |q| q.pages + 1);
            let page = next_page(&self.client, feed, fc, Utc::now(), lookback, initial)
                .await
                .map_err(|e| crate::IngestError::Upstream {
                    source_id: self.source_id.clone(),
                    status: e.status,
                    retry_after: None,
                    message: format!(
                        "{} {} page {page_no} for tenant {} failed: {}",
                        self.api, feed.name, self.tenant, e.message
                    ),
                })?;
            if page.last {
                self.done.insert(feed.name.clone());
            }
            return Ok(Some(Polled {
                feed: feed.clone(),
                page_no,
                page,
                cursor: cursors.to_json(),
            }));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_url_filters_on_the_time_field() {
        let feed = Feed {
            name: "alerts_v2".into(),
            url: "https://graph.microsoft.com/v1.0/security/alerts_v2".into(),
            filter_field: Some("lastUpdateDateTime".into()),
            version_pointer: "/lastUpdateDateTime".into(),
            version_extra: Vec::new(),
            id_pointer: "/id".into(),
            query: vec![("$top".into(), "100".into())],
            next_link_field: "@odata.nextLink".into(),
        };
        let since = DateTime::from_timestamp(1_763_280_000, 0).expect("time");
        assert_eq!(
            feed.first_url(since),
            "https://graph.microsoft.com/v1.0/security/alerts_v2?$top=100&$filter=lastUpdateDateTime%20ge%202025-11-16T08:00:00.000Z"
        );
    }

    #[test]
    fn list_pages_keep_records_verbatim_and_their_link() {
        let (records, next) = parse_list(
            br#"{"@odata.context":"x","value":[{"id": "a",  "n":1},{"id":"b"}],"@odata.nextLink":"https://graph.microsoft.com/v1.0/next"}"#,
            "@odata.nextLink",
        )
        .expect("page");
        assert_eq!(records[0].raw, r#"{"id": "a",  "n":1}"#);
        assert_eq!(
            next.as_deref(),
            Some("https://graph.microsoft.com/v1.0/next")
        );
        assert!(parse_list(br#"{"value":[{"id": "a""#, "@odata.nextLink").is_err());
    }
}
