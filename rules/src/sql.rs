//! The SQL side of rules: the DataFusion session every rule is planned and run in, and the
//! check that a rule's query is a read-only `SELECT` returning the detection columns.

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::MemTable;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::logical_expr::LogicalPlan;

use cairn_ingest::finding_schema;

/// Name of the table rules query.
pub const FINDINGS_TABLE: &str = "findings";

/// A session configured the way rules run: UTC, one target partition per core, and only
/// read-only SQL allowed.
pub fn new_session() -> SessionContext {
    let config = SessionConfig::new()
        .with_information_schema(false)
        .set_str("datafusion.execution.time_zone", "UTC");
    SessionContext::new_with_config(config)
}

/// Options that refuse DDL, DML and statements such as `SET` or `COPY`.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// A session whose `findings` table is empty, for planning rules at load time.
pub(crate) fn planning_session() -> datafusion::error::Result<SessionContext> {
    let ctx = new_session();
    let schema: SchemaRef = finding_schema();
    let table = MemTable::try_new(schema, vec![vec![]])?;
    ctx.register_table(FINDINGS_TABLE, Arc::new(table))?;
    Ok(ctx)
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_time(t: &DataType) -> bool {
    matches!(t, DataType::Timestamp(_, _))
}

fn is_string_list(t: &DataType) -> bool {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            is_string(f.data_type())
        }
        _ => false,
    }
}

fn is_integer(t: &DataType) -> bool {
    t.is_integer()
}

/// A result column: its name, the test of its type, and that type in words.
type ColumnCheck = (&'static str, fn(&DataType) -> bool, &'static str);

/// Plans `sql` and checks its output columns; the error says what is missing or mistyped.
pub(crate) async fn check_query(ctx: &SessionContext, sql: &str) -> Result<LogicalPlan, String> {
    let df = ctx
        .sql_with_options(sql, read_only())
        .await
        .map_err(|e| e.strip_backtrace())?;
    let plan = df.logical_plan().clone();
    let schema = plan.schema();
    let required: [ColumnCheck; 4] = [
        ("entity_key", is_string, "a string"),
        ("first_seen", is_time, "a timestamp"),
        ("last_seen", is_time, "a timestamp"),
        ("finding_uids", is_string_list, "a list of strings"),
    ];
    let optional: [ColumnCheck; 2] = [
        ("severity_id", is_integer, "an integer"),
        ("title", is_string, "a string"),
    ];
    for (name, ok, what) in required {
        match schema.fields().iter().find(|f| f.name() == name) {
            None => return Err(format!("the query must return a column `{name}` ({what})")),
            Some(f) if !ok(f.data_type()) => {
                return Err(format!(
                    "column `{name}` must be {what}, the query returns {}",
                    f.data_type()
                ));
            }
            Some(_) => {}
        }
    }
    for (name, ok, what) in optional {
        if let Some(f) = schema.fields().iter().find(|f| f.name() == name)
            && !ok(f.data_type())
        {
            return Err(format!(
                "column `{name}` must be {what}, the query returns {}",
                f.data_type()
            ));
        }
    }
    Ok(plan)
}
