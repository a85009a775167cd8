//! `.slt` files (the `sqllogictest` format) run against the engine rules run in: the
//! DataFusion session with Cairn's functions and its `findings`, `identities` and `directory`
//! tables. Each file under `tests/slt/` starts from a fresh engine holding a small fixed
//! directory (see [`directory`]) and no findings.

use std::path::PathBuf;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};

use cairn_correlate::engine::Engine;
use cairn_ingest::directory::provider;
use cairn_ingest::{DirectoryKind, DirectoryObject, to_record_batch};

use crate::repo_root;

/// Two people: Ann, whose AD account is disabled, and Ben, with an AD and an Entra account.
fn directory() -> (
    std::collections::BTreeMap<String, String>,
    Vec<DirectoryObject>,
) {
    let account = |provider: &str, uid: &str, keys: &[&str], enabled: bool| {
        let mut o = DirectoryObject::new("dir", provider, uid, DirectoryKind::User);
        o.keys = keys.iter().map(|k| k.to_string()).collect();
        o.enabled = Some(enabled);
        o
    };
    let objects = vec![
        account(
            provider::ACTIVE_DIRECTORY,
            "ann-ad",
            &[
                "sid:S-1-5-21-1-2-3-1001",
                "sam:corp\\ann",
                "upn:ann@corp.example",
            ],
            false,
        ),
        account(
            provider::ACTIVE_DIRECTORY,
            "ben-ad",
            &[
                "sid:S-1-5-21-1-2-3-1002",
                "sam:corp\\ben",
                "upn:ben@corp.example",
            ],
            true,
        ),
        account(
            provider::ENTRA_ID,
            "ben-entra",
            &[
                "aad:00000000-0000-4000-8000-000000000002",
                "upn:ben@corp.example",
            ],
            true,
        ),
    ];
    let mut keys = std::collections::BTreeMap::new();
    for o in &objects {
        let id = o
            .keys
            .iter()
            .find(|k| k.starts_with("upn:"))
            .map(|k| k.trim_start_matches("upn:").to_string())
            .unwrap_or_default();
        for k in &o.keys {
            keys.insert(k.clone(), id.clone());
        }
    }
    (keys, objects)
}

struct CairnSql {
    engine: Engine,
}

/// An `.slt` statement or query that failed, in words.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct SqlError(pub(crate) String);

/// Query results as `.slt` rows: `NULL` for nulls, `(empty)` for empty strings.
pub(crate) fn rows(batches: &[RecordBatch]) -> Result<DBOutput<DefaultColumnType>, SqlError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    let mut width = 0;
    for b in batches {
        width = b.num_columns();
        let formatters = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SqlError(e.to_string()))?;
        for row in 0..b.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| {
                        let v = f.value(row).to_string();
                        if v.is_empty() { "(empty)".into() } else { v }
                    })
                    .collect(),
            );
        }
    }
    Ok(DBOutput::Rows {
        types: vec![DefaultColumnType::Any; width],
        rows,
    })
}

#[async_trait]
impl AsyncDB for CairnSql {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let batches = self
            .engine
            .query_batches(sql)
            .await
            .map_err(|e| SqlError(e.to_string()))?;
        rows(&batches)
    }

    async fn shutdown(&mut self) {}
}

async fn engine() -> Result<CairnSql, SqlError> {
    let batch = to_record_batch(&[]).map_err(|e| SqlError(e.to_string()))?;
    let engine = Engine::new(vec![batch]).map_err(|e| SqlError(e.to_string()))?;
    let (keys, objects) = directory();
    engine
        .set_identities(&keys, &objects)
        .map_err(|e| SqlError(e.to_string()))?;
    Ok(CairnSql { engine })
}

/// The `.slt` files directly in `dir` (under the repository root), in name order.
pub(crate) fn slt_files(dir: &str) -> Vec<PathBuf> {
    let dir = repo_root().join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn slt_files_pass() {
    let files = slt_files("tests/slt");
    assert!(!files.is_empty(), "no .slt files in tests/slt");
    let mut failures = Vec::new();
    for f in &files {
        let mut runner = Runner::new(engine);
        if let Err(e) = runner.run_file_async(f).await {
            failures.push(format!("{}: {e}", f.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
