//! The DataFusion side of correlation: a session whose `findings` table holds the window, and
//! the evaluation of one rule into typed rows.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int32Type, TimeUnit, TimestampMillisecondType};
use chrono::{DateTime, Utc};
use datafusion::catalog::MemTable;
use datafusion::execution::context::SessionContext;

use arrow::array::{ArrayRef, BooleanArray, ListBuilder, StringArray, StringBuilder};

use cairn_ingest::DirectoryObject;
use cairn_rules::Rule;
use cairn_rules::sql::{
    DIRECTORY_TABLE, FINDINGS_TABLE, IDENTITIES_TABLE, directory_schema, identities_schema,
    new_session, read_only, window_projection, window_schema,
};

use crate::error::{CorrelateError, Result};

/// Rows per batch of the `findings` table (DataFusion's default batch size).
const SCAN_BATCH_ROWS: usize = 8192;

/// One row a rule returned.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHit {
    /// The entity.
    pub entity_key: String,
    /// Earliest evidence.
    pub first_seen: DateTime<Utc>,
    /// Latest evidence.
    pub last_seen: DateTime<Utc>,
    /// The evidence.
    pub finding_uids: Vec<String>,
    /// Row-level severity, if the rule returns one.
    pub severity_id: Option<i32>,
    /// Row-level title, if the rule returns one.
    pub title: Option<String>,
}

/// A DataFusion session over one correlation window.
pub struct Engine {
    ctx: SessionContext,
}

impl Engine {
    /// A session whose `findings` table holds `batches` (of [`cairn_ingest::finding_schema`]) without their
    /// `raw` column ([`window_schema`]).
    pub fn new(batches: Vec<RecordBatch>) -> Result<Engine> {
        let batches = batches
            .iter()
            .map(|b| b.project(window_projection()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| CorrelateError::Internal(format!("cannot project the window: {e}")))?;
        Engine::with_window(batches)
    }

    /// A session whose `findings` table holds `batches`, already of [`window_schema`].
    pub fn with_window(batches: Vec<RecordBatch>) -> Result<Engine> {
        let ctx = new_session();
        // Small batches spread over one partition per core: DataFusion parallelises over
        // partitions, and cannot split one large batch.
        let parts = ctx.state().config().target_partitions().max(1);
        let mut partitions: Vec<Vec<RecordBatch>> = vec![Vec::new(); parts];
        let mut next = 0;
        for batch in batches {
            let mut offset = 0;
            while offset < batch.num_rows() {
                let len = SCAN_BATCH_ROWS.min(batch.num_rows() - offset);
                partitions[next % parts].push(batch.slice(offset, len));
                next += 1;
                offset += len;
            }
        }
        let table = MemTable::try_new(window_schema(), partitions).map_err(|e| {
            CorrelateError::Internal(format!("cannot build the findings table: {e}"))
        })?;
        ctx.register_table(FINDINGS_TABLE, Arc::new(table))
            .map_err(|e| {
                CorrelateError::Internal(format!("cannot register the findings table: {e}"))
            })?;
        let engine = Engine { ctx };
        engine.set_identities(&Default::default(), &[])?;
        Ok(engine)
    }

    /// Fills the `identities` table (key → identity) and the `directory` table.
    pub fn set_identities(
        &self,
        keys: &std::collections::BTreeMap<String, String>,
        directory: &[DirectoryObject],
    ) -> Result<()> {
        let internal = |e: &dyn std::fmt::Display| {
            CorrelateError::Internal(format!("cannot build the identity tables: {e}"))
        };
        let mut ids = Vec::with_capacity(keys.len());
        let mut key_col = Vec::with_capacity(keys.len());
        let mut types = Vec::with_capacity(keys.len());
        let mut values = Vec::with_capacity(keys.len());
        for (k, id) in keys {
            let (t, v) = k.split_once(':').unwrap_or(("", k.as_str()));
            ids.push(id.as_str());
            key_col.push(k.as_str());
            types.push(t);
            values.push(v);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(StringArray::from(key_col)),
            Arc::new(StringArray::from(types)),
            Arc::new(StringArray::from(values)),
        ];
        let identities =
            RecordBatch::try_new(identities_schema(), columns).map_err(|e| internal(&e))?;
        let identity_of = |o: &DirectoryObject| o.keys.iter().find_map(|k| keys.get(k).cloned());
        let mut groups = ListBuilder::new(StringBuilder::new());
        for o in directory {
            for g in &o.groups {
                groups.values().append_value(g);
            }
            groups.append(true);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(
                directory.iter().map(identity_of).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from_iter_values(
                directory.iter().map(|o| &o.source),
            )),
            Arc::new(StringArray::from_iter_values(
                directory.iter().map(|o| &o.provider),
            )),
            Arc::new(StringArray::from_iter_values(
                directory.iter().map(|o| o.kind.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                directory.iter().map(|o| &o.uid),
            )),
            Arc::new(StringArray::from(
                directory
                    .iter()
                    .map(|o| o.display_name.as_deref())
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                directory
                    .iter()
                    .map(|o| o.location.as_deref())
                    .collect::<Vec<_>>(),
            )),
            Arc::new(BooleanArray::from(
                directory.iter().map(|o| o.enabled).collect::<Vec<_>>(),
            )),
            Arc::new(BooleanArray::from(
                directory.iter().map(|o| o.privileged).collect::<Vec<_>>(),
            )),
            Arc::new(groups.finish()),
        ];
        let directory_batch =
            RecordBatch::try_new(directory_schema(), columns).map_err(|e| internal(&e))?;
        for (name, batch) in [
            (IDENTITIES_TABLE, identities),
            (DIRECTORY_TABLE, directory_batch),
        ] {
            let table =
                MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(|e| internal(&e))?;
            self.ctx.deregister_table(name).map_err(|e| internal(&e))?;
            self.ctx
                .register_table(name, Arc::new(table))
                .map_err(|e| internal(&e))?;
        }
        Ok(())
    }

    /// The result of a read-only `sql` over the window (tests, diagnostics, `.slt` files).
    pub async fn query_batches(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let failed = |e: datafusion::error::DataFusionError| {
            CorrelateError::Internal(format!("query failed: {}", e.strip_backtrace()))
        };
        self.ctx
            .sql_with_options(sql, read_only())
            .await
            .map_err(failed)?
            .collect()
            .await
            .map_err(failed)
    }

    /// The first column of `sql`'s result as text (for tests and diagnostics).
    pub async fn query(&self, sql: &str) -> Result<Vec<Option<String>>> {
        let batches = self.query_batches(sql).await?;
        let mut out = Vec::new();
        for b in &batches {
            let col = cast(b.column(0), &DataType::Utf8)
                .map_err(|e| CorrelateError::Internal(format!("cannot read the result: {e}")))?;
            let col = col.as_string::<i32>();
            out.extend(col.iter().map(|v| v.map(str::to_string)));
        }
        Ok(out)
    }

    /// Runs `rule` over the window. Rows without an entity are skipped (counted in the
    /// returned number) because a detection about nothing cannot be merged or worked.
    pub async fn evaluate(&self, rule: &Rule) -> Result<(Vec<RuleHit>, usize)> {
        let failed = |e: datafusion::error::DataFusionError| CorrelateError::Rule {
            rule_id: rule.id.clone(),
            message: e.strip_backtrace(),
        };
        let batches = self
            .ctx
            .sql_with_options(&rule.sql, read_only())
            .await
            .map_err(failed)?
            .collect()
            .await
            .map_err(failed)?;
        let mut hits = Vec::new();
        let mut skipped = 0;
        for b in &batches {
            skipped += read_hits(rule, b, &mut hits)?;
        }
        Ok((hits, skipped))
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a Arc<dyn Array>> {
    batch.schema().index_of(name).ok().map(|i| batch.column(i))
}

fn cast_to(rule: &Rule, array: &Arc<dyn Array>, to: &DataType) -> Result<Arc<dyn Array>> {
    cast(array, to).map_err(|e| CorrelateError::Rule {
        rule_id: rule.id.clone(),
        message: format!("cannot read a result column as {to}: {e}"),
    })
}

fn read_hits(rule: &Rule, batch: &RecordBatch, out: &mut Vec<RuleHit>) -> Result<usize> {
    let missing = |name: &str| CorrelateError::Rule {
        rule_id: rule.id.clone(),
        message: format!("result has no `{name}` column"),
    };
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let entity = cast_to(
        rule,
        column(batch, "entity_key").ok_or_else(|| missing("entity_key"))?,
        &DataType::Utf8,
    )?;
    let first = cast_to(
        rule,
        column(batch, "first_seen").ok_or_else(|| missing("first_seen"))?,
        &ts,
    )?;
    let last = cast_to(
        rule,
        column(batch, "last_seen").ok_or_else(|| missing("last_seen"))?,
        &ts,
    )?;
    let uids = cast_to(
        rule,
        column(batch, "finding_uids").ok_or_else(|| missing("finding_uids"))?,
        &list,
    )?;
    let severity = column(batch, "severity_id")
        .map(|c| cast_to(rule, c, &DataType::Int32))
        .transpose()?;
    let title = column(batch, "title")
        .map(|c| cast_to(rule, c, &DataType::Utf8))
        .transpose()?;

    let entity = entity.as_string::<i32>();
    let first = first.as_primitive::<TimestampMillisecondType>();
    let last = last.as_primitive::<TimestampMillisecondType>();
    let uids = uids.as_list::<i32>();
    let severity = severity.as_ref().map(|s| s.as_primitive::<Int32Type>());
    let title = title.as_ref().map(|t| t.as_string::<i32>());

    let mut skipped = 0;
    for row in 0..batch.num_rows() {
        if entity.is_null(row)
            || first.is_null(row)
            || last.is_null(row)
            || entity.value(row).is_empty()
        {
            skipped += 1;
            continue;
        }
        let to_time = |v: i64| {
            DateTime::from_timestamp_millis(v).ok_or_else(|| CorrelateError::Rule {
                rule_id: rule.id.clone(),
                message: format!("timestamp {v} ms out of range"),
            })
        };
        let mut finding_uids: Vec<String> = if uids.is_null(row) {
            Vec::new()
        } else {
            let values = uids.value(row);
            let values = values.as_string::<i32>();
            (0..values.len())
                .filter(|i| !values.is_null(*i))
                .map(|i| values.value(i).to_string())
                .collect()
        };
        finding_uids.sort();
        finding_uids.dedup();
        out.push(RuleHit {
            entity_key: entity.value(row).to_string(),
            first_seen: to_time(first.value(row))?,
            last_seen: to_time(last.value(row))?,
            finding_uids,
            severity_id: severity.filter(|s| !s.is_null(row)).map(|s| s.value(row)),
            title: title
                .filter(|t| !t.is_null(row))
                .map(|t| t.value(row).to_string()),
        });
    }
    Ok(skipped)
}
