//! The findings archive: findings that have left the correlation window, kept as Parquet files
//! of the findings schema, one folder per event day (`archive/day=2026-11-15/<hash>.parquet`,
//! Hive-style, so SQL sees a `day` column and prunes folders by it).
//!
//! The store moves findings here once they are older than what a pass loads (window and
//! lateness), so its hot table stays the size of the window. Archived findings stay available:
//! as evidence of the incidents that cite them, as the `findings_archive` table of a DataFusion
//! session ([`FindingsArchive::register`]), and to `cairn replay`. A file is written under a
//! unique temporary name, synced, renamed and its folder synced, so a crash leaves either the
//! whole file or none. A crash after writing but before the store removed the rows archives
//! them again later; [`FindingsArchive::read`] keeps the newest version of each finding.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::execution::context::SessionContext;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};

use cairn_ingest::schema::findings_from_batch;
use cairn_ingest::{Finding, finding_schema, to_record_batch};

use crate::error::{CorrelateError, Result};
use crate::store::Store;

/// The name of the archive's table in SQL sessions.
pub const ARCHIVE_TABLE: &str = "findings_archive";

/// Parquet files of findings that have left the window, under one folder.
#[derive(Debug, Clone)]
pub struct FindingsArchive {
    dir: PathBuf,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> CorrelateError {
    move |e| CorrelateError::Archive(format!("{what}: {e}"))
}

fn parquet(
    what: String,
) -> impl FnOnce(datafusion::parquet::errors::ParquetError) -> CorrelateError {
    move |e| CorrelateError::Archive(format!("{what}: {e}"))
}

impl FindingsArchive {
    /// The archive kept in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> FindingsArchive {
        FindingsArchive { dir: dir.into() }
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes findings, one file per event day; returns how many files were written.
    pub fn write(&self, findings: &[Finding]) -> Result<usize> {
        let mut by_day: BTreeMap<NaiveDate, Vec<Finding>> = BTreeMap::new();
        for f in findings {
            by_day
                .entry(f.time.date_naive())
                .or_default()
                .push(f.clone());
        }
        for (day, mut group) in by_day.iter_mut().map(|(d, g)| (*d, std::mem::take(g))) {
            group.sort_by(|a, b| {
                (a.time, &a.source, &a.finding_uid).cmp(&(b.time, &b.source, &b.finding_uid))
            });
            let mut hash = Sha256::new();
            for f in &group {
                hash.update(f.source.as_bytes());
                hash.update([0]);
                hash.update(f.finding_uid.as_bytes());
                hash.update([0]);
                hash.update(f.modified_time.timestamp_millis().to_be_bytes());
            }
            let folder = self.dir.join(day.format("day=%Y-%m-%d").to_string());
            std::fs::create_dir_all(&folder)
                .map_err(io(format!("creating {}", folder.display())))?;
            let name = format!("{}.parquet", &hex::encode(hash.finalize())[..32]);
            let path = folder.join(&name);
            // Unique per writer: two processes archiving at once never share a temporary file.
            let temporary = folder.join(format!(
                ".{name}.{}.{}.tmp",
                std::process::id(),
                Utc::now().timestamp_nanos_opt().unwrap_or_default()
            ));
            let batch = to_record_batch(&group).map_err(|e| {
                CorrelateError::Internal(format!("cannot build an archive batch: {e}"))
            })?;
            let file = File::create(&temporary)
                .map_err(io(format!("creating {}", temporary.display())))?;
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .build();
            let mut writer = ArrowWriter::try_new(file, finding_schema(), Some(props))
                .map_err(parquet(format!("writing {}", temporary.display())))?;
            writer
                .write(&batch)
                .map_err(parquet(format!("writing {}", temporary.display())))?;
            let file = writer
                .into_inner()
                .map_err(parquet(format!("writing {}", temporary.display())))?;
            file.sync_all()
                .map_err(io(format!("syncing {}", temporary.display())))?;
            std::fs::rename(&temporary, &path)
                .map_err(io(format!("renaming {}", temporary.display())))?;
            // The rename itself must be durable before the store forgets the rows.
            File::open(&folder)
                .and_then(|d| d.sync_all())
                .map_err(io(format!("syncing {}", folder.display())))?;
        }
        Ok(by_day.len())
    }

    /// The archive's files whose day may hold times in `[from, to)`, in day order.
    fn files(&self, wanted_day: impl Fn(NaiveDate) -> bool) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let days = match std::fs::read_dir(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(format!("reading {}", self.dir.display()))(e)),
        };
        let mut folders: Vec<(NaiveDate, PathBuf)> = days
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                let day =
                    NaiveDate::parse_from_str(name.to_str()?.strip_prefix("day=")?, "%Y-%m-%d")
                        .ok()?;
                Some((day, e.path()))
            })
            .filter(|(day, _)| wanted_day(*day))
            .collect();
        folders.sort();
        for (_, folder) in folders {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
                .map_err(io(format!("reading {}", folder.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
                .collect();
            files.sort();
            out.extend(files);
        }
        Ok(out)
    }

    /// Archived findings with event time in `[from, to)` (either bound open), oldest first;
    /// of a finding archived more than once, its newest version.
    pub fn read(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<Finding>> {
        self.read_where(
            |day| {
                from.is_none_or(|f| day >= f.date_naive())
                    && to.is_none_or(|t| day <= t.date_naive())
            },
            |f| !(from.is_some_and(|t| f.time < t) || to.is_some_and(|t| f.time >= t)),
        )
    }

    /// The newest version of the findings that `wanted` keeps, from the day folders that
    /// `wanted_day` keeps, oldest first.
    fn read_where(
        &self,
        wanted_day: impl Fn(NaiveDate) -> bool,
        wanted: impl Fn(&Finding) -> bool,
    ) -> Result<Vec<Finding>> {
        let mut newest: HashMap<(String, String), Finding> = HashMap::new();
        for path in self.files(wanted_day)? {
            let file = File::open(&path).map_err(io(format!("opening {}", path.display())))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.build())
                .map_err(parquet(format!("reading {}", path.display())))?;
            for batch in reader {
                let batch = batch.map_err(|e| {
                    CorrelateError::Archive(format!("reading {}: {e}", path.display()))
                })?;
                let findings = findings_from_batch(&batch).map_err(|e| {
                    CorrelateError::Archive(format!("reading {}: {e}", path.display()))
                })?;
                for f in findings {
                    if !wanted(&f) {
                        continue;
                    }
                    let key = (f.source.clone(), f.finding_uid.clone());
                    match newest.get(&key) {
                        Some(old) if old.modified_time >= f.modified_time => {}
                        _ => {
                            newest.insert(key, f);
                        }
                    }
                }
            }
        }
        let mut out: Vec<Finding> = newest.into_values().collect();
        out.sort_by(|a, b| {
            (a.time, &a.source, &a.finding_uid).cmp(&(b.time, &b.source, &b.finding_uid))
        });
        Ok(out)
    }

    /// Archived findings with these uids (any source), read from the folders of `days` only
    /// (the store knows each archived finding's event time).
    pub fn find(
        &self,
        uids: &[String],
        days: &std::collections::BTreeSet<NaiveDate>,
    ) -> Result<Vec<Finding>> {
        if uids.is_empty() || days.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: std::collections::HashSet<&str> = uids.iter().map(String::as_str).collect();
        self.read_where(
            |day| days.contains(&day),
            |f| wanted.contains(f.finding_uid.as_str()),
        )
    }

    /// Registers the archive as the `findings_archive` table of a SQL session: the findings
    /// schema plus `day` (`YYYY-MM-DD` of event time); empty until something is archived.
    /// A finding archived twice (see the module docs) appears twice here; [`read`](Self::read)
    /// keeps its newest version.
    pub async fn register(&self, ctx: &SessionContext) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(io(format!("creating {}", self.dir.display())))?;
        let url = format!(
            "{}/",
            self.dir
                .canonicalize()
                .unwrap_or(self.dir.clone())
                .display()
        );
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![(
                "day".to_string(),
                datafusion::arrow::datatypes::DataType::Utf8,
            )]);
        ctx.register_listing_table(ARCHIVE_TABLE, url, options, Some(finding_schema()), None)
            .await
            .map_err(|e| CorrelateError::Internal(format!("cannot register {ARCHIVE_TABLE}: {e}")))
    }
}

/// Every finding of `[from, to)` (either bound open) in the store's hot table and its archive,
/// the newest version of each, oldest first; `true` marks those read from the archive.
pub async fn all_findings(
    store: &dyn Store,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<Vec<(Finding, bool)>> {
    let archive = store.archive().clone();
    let archived = tokio::task::spawn_blocking(move || archive.read(from, to))
        .await
        .map_err(|e| CorrelateError::Internal(format!("archive read: {e}")))??;
    let mut newest: HashMap<(String, String), (Finding, bool)> = HashMap::new();
    let mut keep = |f: Finding, archived: bool| {
        let key = (f.source.clone(), f.finding_uid.clone());
        match newest.get(&key) {
            Some((old, _)) if old.modified_time > f.modified_time => {}
            _ => {
                newest.insert(key, (f, archived));
            }
        }
    };
    for f in archived {
        keep(f, true);
    }
    // The hot table last: it holds the newer version of a finding read again.
    for f in store
        .findings_since(from.unwrap_or(DateTime::<Utc>::MIN_UTC))
        .await?
    {
        if to.is_none_or(|t| f.time < t) {
            keep(f, false);
        }
    }
    let mut out: Vec<(Finding, bool)> = newest.into_values().collect();
    out.sort_by(|(a, _), (b, _)| {
        (a.time, &a.source, &a.finding_uid).cmp(&(b.time, &b.source, &b.finding_uid))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlator::{CorrelateConfig, run_pass};
    use crate::store::Store;
    use crate::store::sqlite::SqliteStore;
    use crate::stream_tests::commit;
    use cairn_ingest::Severity;
    use cairn_ingest::schema::CLASS_DETECTION_FINDING;
    use cairn_rules::RuleSet;

    fn finding(uid: &str, hours: i64) -> Finding {
        let t = DateTime::from_timestamp(1_763_280_000 + hours * 3600, 0).unwrap_or_default();
        let mut f = Finding::new(
            "aws.securityhub",
            uid.into(),
            CLASS_DETECTION_FINDING,
            t,
            format!("{{\"Id\":\"{uid}\"}}"),
        );
        f.set_severity(Severity::High);
        f.identity_keys = vec!["upn:ann@x.example".into()];
        f.fields.insert("ProductName", "GuardDuty");
        f
    }

    #[test]
    fn findings_round_trip_by_day_and_newest_version_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = FindingsArchive::new(dir.path().join("archive"));
        let findings = vec![finding("a", 0), finding("b", 20), finding("c", 30)];
        assert_eq!(
            archive.write(&findings).expect("write"),
            2,
            "two event days"
        );
        // The same findings again rewrite the same files.
        archive.write(&findings).expect("write again");
        assert_eq!(archive.read(None, None).expect("read"), findings);

        let mut newer = finding("b", 20);
        newer.modified_time += chrono::Duration::hours(1);
        newer.title = Some("updated".into());
        archive
            .write(std::slice::from_ref(&newer))
            .expect("write newer");
        let all = archive.read(None, None).expect("read");
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].title.as_deref(), Some("updated"));

        let from = findings[1].time;
        let to = findings[2].time;
        let some = archive.read(Some(from), Some(to)).expect("range");
        assert_eq!(
            some.iter()
                .map(|f| f.finding_uid.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
        let days = [findings[2].time.date_naive()].into_iter().collect();
        let found = archive
            .find(&["c".to_string(), "zz".to_string()], &days)
            .expect("find");
        assert_eq!(found, vec![findings[2].clone()]);
    }

    #[tokio::test]
    async fn a_pass_moves_what_left_the_window_and_it_stays_evidence_and_queryable() {
        let dir = tempfile::Builder::new()
            .prefix("cairn-archive")
            .tempdir()
            .expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("cairn.db"))
            .await
            .expect("store");
        // Three days of findings: the first day is older than window (48 h, the longest rule)
        // plus lateness (1 h) back from the newest.
        let findings: Vec<Finding> = [0, 1, 30, 60, 61]
            .iter()
            .map(|h| finding(&format!("f{h}"), *h))
            .collect();
        commit(&store, findings.clone()).await;
        let rules = RuleSet::builtin().await.expect("rules");
        let report = run_pass(&store, &rules, &CorrelateConfig::default())
            .await
            .expect("pass");
        assert_eq!(report.archived, 2, "{report:?}");
        assert_eq!(report.findings, 3);

        let again = run_pass(&store, &rules, &CorrelateConfig::default())
            .await
            .expect("pass again");
        assert_eq!(again.archived, 0);

        // Read again from the source, archived findings are no change; all are still counted.
        let stats = commit(&store, findings.clone()).await;
        assert_eq!((stats.stored, stats.unchanged), (0, 5));
        assert_eq!(store.counts().await.expect("counts").findings, 5);
        let every = all_findings(&store, None, None).await.expect("all");
        assert_eq!(
            every
                .iter()
                .map(|(f, archived)| (f.finding_uid.as_str(), *archived))
                .collect::<Vec<_>>(),
            [
                ("f0", true),
                ("f1", true),
                ("f30", false),
                ("f60", false),
                ("f61", false)
            ]
        );

        // Evidence lookups reach the archive.
        let old = store
            .findings_by_uid(&["f0".into(), "f60".into()])
            .await
            .expect("lookup");
        assert_eq!(
            old.iter()
                .map(|f| f.finding_uid.as_str())
                .collect::<Vec<_>>(),
            ["f0", "f60"]
        );
        assert_eq!(old[0].raw, findings[0].raw);

        // And SQL reaches it as `findings_archive`.
        let ctx = cairn_rules::sql::new_session();
        store.archive().register(&ctx).await.expect("register");
        let batches = ctx
            .sql(
                "SELECT finding_uid, fields['ProductName'] AS product, day FROM findings_archive \
                 WHERE day = '2025-11-16' ORDER BY finding_uid",
            )
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .expect("format")
            .to_string();
        assert!(
            text.contains("f0") && text.contains("f1") && text.contains("GuardDuty"),
            "{text}"
        );
        assert!(text.contains("2025-11-16"), "{text}");
        assert!(!text.contains("f30"), "{text}");
    }
}
