//! The SQL side of rules: the DataFusion session every rule is planned and run in, and the
//! check that a rule's query is a read-only `SELECT` returning the detection columns.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::MemTable;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::logical_expr::LogicalPlan;

use cairn_ingest::finding_schema;

/// Name of the table rules query.
pub const FINDINGS_TABLE: &str = "findings";
/// Name of the table of resolved identities: one row per identity key.
pub const IDENTITIES_TABLE: &str = "identities";
/// Name of the table of directory accounts (AD, Entra ID, AWS) with their identity.
pub const DIRECTORY_TABLE: &str = "directory";

/// `identities`: `identity_id`, `key` (`sid:…`, `upn:…`, …), `key_type` and `value` (the key
/// without its type). Join on `findings.identity_id` or on `normalize_principal(…)`.
pub fn identities_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("identity_id", DataType::Utf8, false),
                Field::new("key", DataType::Utf8, false),
                Field::new("key_type", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, false),
            ]))
        })
        .clone()
}

/// `directory`: one row per directory account: `identity_id`, `source`, `provider`
/// (`active_directory`, `entra_id`, `aws_iam`, `aws_identity_center`, `override`), `kind` (`user`,
/// `group`, `override`), `uid`, `display_name`, `location`, `enabled`, `privileged`,
/// and `groups`.
pub fn directory_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("identity_id", DataType::Utf8, true),
                Field::new("source", DataType::Utf8, false),
                Field::new("provider", DataType::Utf8, false),
                Field::new("kind", DataType::Utf8, false),
                Field::new("uid", DataType::Utf8, false),
                Field::new("display_name", DataType::Utf8, true),
                Field::new("location", DataType::Utf8, true),
                Field::new("enabled", DataType::Boolean, true),
                Field::new("privileged", DataType::Boolean, true),
                Field::new(
                    "groups",
                    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                    false,
                ),
            ]))
        })
        .clone()
}

/// A session configured the way rules run: UTC, read-only SQL, and Cairn's functions
/// ([`crate::udf`]) registered.
pub fn new_session() -> SessionContext {
    let config = SessionConfig::new()
        .with_information_schema(false)
        .set_str("datafusion.execution.time_zone", "UTC");
    let ctx = SessionContext::new_with_config(config);
    for f in crate::udf::all() {
        ctx.register_udf(f);
    }
    ctx
}

/// Options that refuse DDL, DML and statements such as `SET` or `COPY`.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// The schema of the `findings` table rules see: the Finding schema without `raw`. The
/// verbatim record is evidence, kept in the store and read when an incident is opened; rules
/// read the event's values from `fields`, and the window does not carry a copy of every record.
pub fn window_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let fields: Vec<Field> = window_projection()
                .iter()
                .map(|i| finding_schema().field(*i).clone())
                .collect();
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// The indices of [`finding_schema`]'s columns that the window keeps, for
/// `RecordBatch::project` of a findings batch into [`window_schema`].
pub fn window_projection() -> &'static [usize] {
    static KEEP: OnceLock<Vec<usize>> = OnceLock::new();
    KEEP.get_or_init(|| {
        let full = finding_schema();
        (0..full.fields().len())
            .filter(|i| full.field(*i).name() != RAW_COLUMN)
            .collect()
    })
}

/// The Finding column the window leaves out (see [`window_schema`]).
pub const RAW_COLUMN: &str = "raw";

/// A session whose `findings` table is empty, for planning rules at load time.
pub(crate) fn planning_session() -> datafusion::error::Result<SessionContext> {
    let ctx = new_session();
    let schema: SchemaRef = window_schema();
    let table = MemTable::try_new(schema, vec![vec![]])?;
    ctx.register_table(FINDINGS_TABLE, Arc::new(table))?;
    for (name, schema) in [
        (IDENTITIES_TABLE, identities_schema()),
        (DIRECTORY_TABLE, directory_schema()),
    ] {
        ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![vec![]])?))?;
    }
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

/// Tables other than `findings` that `plan` reads (subqueries included), sorted.
pub(crate) fn tables_read(plan: &LogicalPlan) -> Vec<String> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut names = std::collections::BTreeSet::new();
    // The closure never fails, so neither does the walk.
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let name = scan.table_name.table();
            if name != FINDINGS_TABLE {
                names.insert(name.to_string());
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names.into_iter().collect()
}

/// A rule's `partition_by` as an expression evaluated on batches of [`window_schema`]; the
/// error says why the text is not a row-level SQL expression over `findings`.
pub fn partition_expr(
    expr: &str,
) -> Result<Arc<dyn datafusion::physical_plan::PhysicalExpr>, String> {
    row_expr(&new_session(), expr, &window_schema(), |e| {
        datafusion::logical_expr::cast(e, DataType::Utf8)
    })
}

/// A SQL boolean expression over one row of `schema`'s batches (a Sigma log source's `where`),
/// as an expression evaluated on whole batches; NULL counts as false where it is used. `ctx`
/// is a [`new_session`], shared by all the predicates of a rule set.
pub fn row_predicate(
    ctx: &SessionContext,
    expr: &str,
    schema: &SchemaRef,
) -> Result<Arc<dyn datafusion::physical_plan::PhysicalExpr>, String> {
    row_expr(ctx, expr, schema, |e| e)
}

fn row_expr(
    ctx: &SessionContext,
    expr: &str,
    schema: &SchemaRef,
    finish: impl FnOnce(datafusion::logical_expr::Expr) -> datafusion::logical_expr::Expr,
) -> Result<Arc<dyn datafusion::physical_plan::PhysicalExpr>, String> {
    use datafusion::logical_expr::simplify::SimplifyContext;
    use datafusion::optimizer::simplify_expressions::ExprSimplifier;
    let schema = datafusion::common::DFSchema::try_from(schema.as_ref().clone())
        .map_err(|e| e.strip_backtrace())?;
    let logical = ctx
        .parse_sql_expr(expr, &schema)
        .map_err(|e| e.strip_backtrace())?;
    if logical.is_volatile() {
        return Err("it is volatile (gives another value on each call)".into());
    }
    let text = finish(logical);
    // As the optimizer would: some functions (`coalesce`) only run once rewritten.
    let simplifier = ExprSimplifier::new(
        SimplifyContext::builder()
            .with_schema(Arc::new(schema.clone()))
            .build(),
    );
    let text = simplifier.simplify(text).map_err(|e| e.strip_backtrace())?;
    ctx.create_physical_expr(text, &schema)
        .map_err(|e| e.strip_backtrace())
}
