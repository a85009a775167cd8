//! The Finding schema: one flattened, OCSF-aligned row per security record, whatever its source.
//!
//! Every normalizer produces [`Finding`] rows; [`FindingBatchBuilder`] turns them into Arrow
//! [`RecordBatch`]es of [`finding_schema`], which the correlator queries with SQL. Columns are
//! flattened OCSF attributes (`cloud.account.uid` becomes `account_uid`) so rules stay short.

use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, AsArray, Int32Builder, ListBuilder, MapBuilder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fields::Fields;

/// OCSF class `Detection Finding` (2004): an alert raised by a security product.
pub const CLASS_DETECTION_FINDING: i32 = 2004;
/// OCSF class `Compliance Finding` (2003): a control evaluated against a standard.
pub const CLASS_COMPLIANCE_FINDING: i32 = 2003;
/// OCSF class `Vulnerability Finding` (2002).
pub const CLASS_VULNERABILITY_FINDING: i32 = 2002;
/// OCSF class `Authentication` (3002): logons, logoffs, Kerberos and NTLM authentication.
pub const CLASS_AUTHENTICATION: i32 = 3002;
/// OCSF class `Account Change` (3001): accounts created, enabled, changed, deleted.
pub const CLASS_ACCOUNT_CHANGE: i32 = 3001;
/// OCSF class `Authorize Session` (3003): privileges assigned to a new logon.
pub const CLASS_AUTHORIZE_SESSION: i32 = 3003;
/// OCSF class `Entity Management` (3004): directory objects read or changed.
pub const CLASS_ENTITY_MANAGEMENT: i32 = 3004;
/// OCSF class `Group Management` (3006): members added to or removed from groups.
pub const CLASS_GROUP_MANAGEMENT: i32 = 3006;
/// OCSF class `Process Activity` (1007).
pub const CLASS_PROCESS_ACTIVITY: i32 = 1007;
/// OCSF class `Network File Activity` (4010): access to files on shares.
pub const CLASS_NETWORK_FILE_ACTIVITY: i32 = 4010;
/// OCSF class `File System Activity` (1001): local objects opened, read, deleted.
pub const CLASS_FILE_ACTIVITY: i32 = 1001;
/// OCSF class `Network Activity` (4001): connections allowed or blocked.
pub const CLASS_NETWORK_ACTIVITY: i32 = 4001;
/// OCSF `Base Event` (0): a record that no more specific class describes.
pub const CLASS_BASE_EVENT: i32 = 0;

/// OCSF `severity_id` values (0–6, 99).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    /// 0: the source did not say.
    Unknown = 0,
    /// 1: informational.
    Informational = 1,
    /// 2: low.
    Low = 2,
    /// 3: medium.
    Medium = 3,
    /// 4: high.
    High = 4,
    /// 5: critical.
    Critical = 5,
    /// 6: fatal.
    Fatal = 6,
}

impl Severity {
    /// The OCSF `severity_id`.
    pub fn id(self) -> i32 {
        self as i32
    }

    /// The OCSF caption of this severity (`severity` column).
    pub fn caption(self) -> &'static str {
        match self {
            Severity::Unknown => "Unknown",
            Severity::Informational => "Informational",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
            Severity::Fatal => "Fatal",
        }
    }

    /// The severity with OCSF id `id`; ids outside 0–6 are `Unknown`.
    pub fn from_id(id: i32) -> Severity {
        match id {
            1 => Severity::Informational,
            2 => Severity::Low,
            3 => Severity::Medium,
            4 => Severity::High,
            5 => Severity::Critical,
            6 => Severity::Fatal,
            _ => Severity::Unknown,
        }
    }

    /// Parses a caption or common vendor label (`HIGH`, `informational`, `Sev3` is not one).
    pub fn parse_label(label: &str) -> Option<Severity> {
        match label.trim().to_ascii_lowercase().as_str() {
            "informational" | "info" | "information" => Some(Severity::Informational),
            "low" => Some(Severity::Low),
            "medium" | "moderate" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            "fatal" => Some(Severity::Fatal),
            "unknown" | "unspecified" => Some(Severity::Unknown),
            _ => None,
        }
    }
}

/// One normalized security record: a row of [`finding_schema`].
///
/// Field docs name the OCSF attribute each column corresponds to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// OCSF `time`: when the activity happened (event time, UTC), the correlation clock.
    pub time: DateTime<Utc>,
    /// OCSF `metadata.processed_time`: when Cairn ingested the record.
    pub ingested_at: DateTime<Utc>,
    /// OCSF `finding_info.modified_time`: the provider's last update of the record. A newer
    /// version of the same `(source, finding_uid)` replaces the older one.
    pub modified_time: DateTime<Utc>,
    /// OCSF `finding_info.uid` / `metadata.uid`: the provider's stable id of the record.
    pub finding_uid: String,
    /// OCSF `metadata.log_provider`: Cairn's name of the feed (`aws.securityhub`,
    /// `azure.defender`, `ad.windows`, …).
    pub source: String,
    /// OCSF `metadata.product.name`: the product that produced it (GuardDuty, Microsoft
    /// Defender for Endpoint, Microsoft-Windows-Security-Auditing, …).
    pub product: Option<String>,
    /// OCSF `class_uid` (2004 Detection Finding, 3002 Authentication, 3001 Account Change, …).
    pub class_uid: i32,
    /// OCSF `metadata.event_code`: the Windows Event ID, the ASFF type or the provider's alert type.
    pub event_code: Option<String>,
    /// OCSF `severity_id` (0–6).
    pub severity_id: i32,
    /// OCSF `severity`: the caption of `severity_id`.
    pub severity: String,
    /// OCSF `finding_info.title` (or `message` for events).
    pub title: Option<String>,
    /// OCSF `status` (New, In Progress, Suppressed, Resolved), as the provider reports it.
    pub status: Option<String>,
    /// OCSF `cloud.provider` (AWS, Azure); empty for on-premises records.
    pub cloud_provider: Option<String>,
    /// OCSF `cloud.account.uid`: AWS account, Azure tenant or subscription, or AD domain.
    pub account_uid: Option<String>,
    /// OCSF `cloud.region`.
    pub region: Option<String>,
    /// OCSF `resources[0].uid`: the primary cloud resource (ARN, Azure resource id).
    pub resource_uid: Option<String>,
    /// OCSF `resources[0].type`.
    pub resource_type: Option<String>,
    /// OCSF `actor.user.name`: the principal that acted, as seen in the record.
    pub actor_user: Option<String>,
    /// OCSF `actor.user.uid`: its id (SID, principal id, Entra object id).
    pub actor_uid: Option<String>,
    /// OCSF `actor.user.domain`.
    pub actor_domain: Option<String>,
    /// OCSF `user.name`: the account acted on or authenticated (logon target, created account).
    pub user_name: Option<String>,
    /// OCSF `user.uid`.
    pub user_uid: Option<String>,
    /// OCSF `user.domain`.
    pub user_domain: Option<String>,
    /// OCSF `group.name`: the group of a group-membership change.
    pub group_name: Option<String>,
    /// OCSF `group.uid`: its SID or object id.
    pub group_uid: Option<String>,
    /// Typed identifiers (`sid:`, `upn:`, `sam:`, `aad:`, `aws:`) that this record asserts for
    /// the principal it is about; the correlator resolves them into `identity_id`.
    pub identity_keys: Vec<String>,
    /// Cairn's resolved identity (one person across AD, Entra ID and AWS); filled by the
    /// correlator, empty when the record names no resolvable principal.
    pub identity_id: Option<String>,
    /// OCSF `src_endpoint.ip`.
    pub src_ip: Option<String>,
    /// OCSF `device.hostname`, lower-cased.
    pub device_hostname: Option<String>,
    /// OCSF `finding_info.attacks[].technique.uid`: MITRE ATT&CK technique ids.
    pub attack_techniques: Vec<String>,
    /// OCSF `finding_info.attacks[].tactic.uid`: MITRE ATT&CK tactic ids.
    pub attack_tactics: Vec<String>,
    /// OCSF `compliance.control` / `compliance.requirements`.
    pub compliance_controls: Vec<String>,
    /// OCSF `unmapped`: source-specific fields as strings (Windows `EventData`, ASFF
    /// `ProductFields`), so rules can reach what the flat columns do not carry.
    pub fields: Fields,
    /// OCSF `raw_data`: the original record, kept verbatim for evidence.
    pub raw: String,
}

impl Finding {
    /// A finding with the required columns set and every optional column empty.
    pub fn new(
        source: &str,
        finding_uid: String,
        class_uid: i32,
        time: DateTime<Utc>,
        raw: String,
    ) -> Finding {
        Finding {
            time,
            ingested_at: time,
            modified_time: time,
            finding_uid,
            source: source.to_string(),
            product: None,
            class_uid,
            event_code: None,
            severity_id: Severity::Unknown.id(),
            severity: Severity::Unknown.caption().to_string(),
            title: None,
            status: None,
            cloud_provider: None,
            account_uid: None,
            region: None,
            resource_uid: None,
            resource_type: None,
            actor_user: None,
            actor_uid: None,
            actor_domain: None,
            user_name: None,
            user_uid: None,
            user_domain: None,
            group_name: None,
            group_uid: None,
            identity_keys: Vec::new(),
            identity_id: None,
            src_ip: None,
            device_hostname: None,
            attack_techniques: Vec::new(),
            attack_tactics: Vec::new(),
            compliance_controls: Vec::new(),
            fields: Fields::new(),
            raw,
        }
    }

    /// Sets `severity_id` and `severity` together.
    pub fn set_severity(&mut self, severity: Severity) {
        self.severity_id = severity.id();
        self.severity = severity.caption().to_string();
    }
}

fn utc_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn utf8_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The Arrow field of the `fields` map column (its entries are `keys` → `values`).
fn fields_map_field() -> Field {
    let entries = Field::new(
        "entries",
        DataType::Struct(
            vec![
                Field::new("keys", DataType::Utf8, false),
                Field::new("values", DataType::Utf8, true),
            ]
            .into(),
        ),
        false,
    );
    Field::new("fields", DataType::Map(Arc::new(entries), false), false)
}

/// The Arrow schema of the `findings` table; the order of [`Finding`]'s fields.
pub fn finding_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let s = |name: &str| Field::new(name, DataType::Utf8, true);
            Arc::new(Schema::new(vec![
                Field::new("time", utc_ms(), false),
                Field::new("ingested_at", utc_ms(), false),
                Field::new("modified_time", utc_ms(), false),
                Field::new("finding_uid", DataType::Utf8, false),
                Field::new("source", DataType::Utf8, false),
                s("product"),
                Field::new("class_uid", DataType::Int32, false),
                s("event_code"),
                Field::new("severity_id", DataType::Int32, false),
                Field::new("severity", DataType::Utf8, false),
                s("title"),
                s("status"),
                s("cloud_provider"),
                s("account_uid"),
                s("region"),
                s("resource_uid"),
                s("resource_type"),
                s("actor_user"),
                s("actor_uid"),
                s("actor_domain"),
                s("user_name"),
                s("user_uid"),
                s("user_domain"),
                s("group_name"),
                s("group_uid"),
                Field::new("identity_keys", utf8_list(), false),
                s("identity_id"),
                s("src_ip"),
                s("device_hostname"),
                Field::new("attack_techniques", utf8_list(), false),
                Field::new("attack_tactics", utf8_list(), false),
                Field::new("compliance_controls", utf8_list(), false),
                fields_map_field(),
                Field::new("raw", DataType::Utf8, false),
            ]))
        })
        .clone()
}

/// Appends [`Finding`]s column by column and finishes them as a [`RecordBatch`] of
/// [`finding_schema`].
pub struct FindingBatchBuilder {
    time: TimestampMillisecondBuilder,
    ingested_at: TimestampMillisecondBuilder,
    modified_time: TimestampMillisecondBuilder,
    finding_uid: StringBuilder,
    source: StringBuilder,
    product: StringBuilder,
    class_uid: Int32Builder,
    event_code: StringBuilder,
    severity_id: Int32Builder,
    severity: StringBuilder,
    title: StringBuilder,
    status: StringBuilder,
    cloud_provider: StringBuilder,
    account_uid: StringBuilder,
    region: StringBuilder,
    resource_uid: StringBuilder,
    resource_type: StringBuilder,
    actor_user: StringBuilder,
    actor_uid: StringBuilder,
    actor_domain: StringBuilder,
    user_name: StringBuilder,
    user_uid: StringBuilder,
    user_domain: StringBuilder,
    group_name: StringBuilder,
    group_uid: StringBuilder,
    identity_keys: ListBuilder<StringBuilder>,
    identity_id: StringBuilder,
    src_ip: StringBuilder,
    device_hostname: StringBuilder,
    attack_techniques: ListBuilder<StringBuilder>,
    attack_tactics: ListBuilder<StringBuilder>,
    compliance_controls: ListBuilder<StringBuilder>,
    fields: MapBuilder<StringBuilder, StringBuilder>,
    raw: StringBuilder,
    len: usize,
}

impl Default for FindingBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl FindingBatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        let ts = || TimestampMillisecondBuilder::new().with_timezone("UTC");
        let list = || ListBuilder::new(StringBuilder::new());
        FindingBatchBuilder {
            time: ts(),
            ingested_at: ts(),
            modified_time: ts(),
            finding_uid: StringBuilder::new(),
            source: StringBuilder::new(),
            product: StringBuilder::new(),
            class_uid: Int32Builder::new(),
            event_code: StringBuilder::new(),
            severity_id: Int32Builder::new(),
            severity: StringBuilder::new(),
            title: StringBuilder::new(),
            status: StringBuilder::new(),
            cloud_provider: StringBuilder::new(),
            account_uid: StringBuilder::new(),
            region: StringBuilder::new(),
            resource_uid: StringBuilder::new(),
            resource_type: StringBuilder::new(),
            actor_user: StringBuilder::new(),
            actor_uid: StringBuilder::new(),
            actor_domain: StringBuilder::new(),
            user_name: StringBuilder::new(),
            user_uid: StringBuilder::new(),
            user_domain: StringBuilder::new(),
            group_name: StringBuilder::new(),
            group_uid: StringBuilder::new(),
            identity_keys: list(),
            identity_id: StringBuilder::new(),
            src_ip: StringBuilder::new(),
            device_hostname: StringBuilder::new(),
            attack_techniques: list(),
            attack_tactics: list(),
            compliance_controls: list(),
            fields: MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()),
            raw: StringBuilder::new(),
            len: 0,
        }
    }

    /// Number of rows appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no row is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one row.
    pub fn append(&mut self, f: &Finding) {
        self.time.append_value(f.time.timestamp_millis());
        self.ingested_at
            .append_value(f.ingested_at.timestamp_millis());
        self.modified_time
            .append_value(f.modified_time.timestamp_millis());
        self.finding_uid.append_value(&f.finding_uid);
        self.source.append_value(&f.source);
        self.product.append_option(f.product.as_deref());
        self.class_uid.append_value(f.class_uid);
        self.event_code.append_option(f.event_code.as_deref());
        self.severity_id.append_value(f.severity_id);
        self.severity.append_value(&f.severity);
        self.title.append_option(f.title.as_deref());
        self.status.append_option(f.status.as_deref());
        self.cloud_provider
            .append_option(f.cloud_provider.as_deref());
        self.account_uid.append_option(f.account_uid.as_deref());
        self.region.append_option(f.region.as_deref());
        self.resource_uid.append_option(f.resource_uid.as_deref());
        self.resource_type.append_option(f.resource_type.as_deref());
        self.actor_user.append_option(f.actor_user.as_deref());
        self.actor_uid.append_option(f.actor_uid.as_deref());
        self.actor_domain.append_option(f.actor_domain.as_deref());
        self.user_name.append_option(f.user_name.as_deref());
        self.user_uid.append_option(f.user_uid.as_deref());
        self.user_domain.append_option(f.user_domain.as_deref());
        self.group_name.append_option(f.group_name.as_deref());
        self.group_uid.append_option(f.group_uid.as_deref());
        append_list(&mut self.identity_keys, &f.identity_keys);
        self.identity_id.append_option(f.identity_id.as_deref());
        self.src_ip.append_option(f.src_ip.as_deref());
        self.device_hostname
            .append_option(f.device_hostname.as_deref());
        append_list(&mut self.attack_techniques, &f.attack_techniques);
        append_list(&mut self.attack_tactics, &f.attack_tactics);
        append_list(&mut self.compliance_controls, &f.compliance_controls);
        for (k, v) in f.fields.iter() {
            self.fields.keys().append_value(k);
            self.fields.values().append_value(v);
        }
        // The map builder only fails when keys and values differ in length, which the loop
        // above rules out.
        let _ = self.fields.append(true);
        self.raw.append_value(&f.raw);
        self.len += 1;
    }

    /// Finishes the pending rows as a batch and resets the builder.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.ingested_at.finish()),
            Arc::new(self.modified_time.finish()),
            Arc::new(self.finding_uid.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.product.finish()),
            Arc::new(self.class_uid.finish()),
            Arc::new(self.event_code.finish()),
            Arc::new(self.severity_id.finish()),
            Arc::new(self.severity.finish()),
            Arc::new(self.title.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.cloud_provider.finish()),
            Arc::new(self.account_uid.finish()),
            Arc::new(self.region.finish()),
            Arc::new(self.resource_uid.finish()),
            Arc::new(self.resource_type.finish()),
            Arc::new(self.actor_user.finish()),
            Arc::new(self.actor_uid.finish()),
            Arc::new(self.actor_domain.finish()),
            Arc::new(self.user_name.finish()),
            Arc::new(self.user_uid.finish()),
            Arc::new(self.user_domain.finish()),
            Arc::new(self.group_name.finish()),
            Arc::new(self.group_uid.finish()),
            Arc::new(self.identity_keys.finish()),
            Arc::new(self.identity_id.finish()),
            Arc::new(self.src_ip.finish()),
            Arc::new(self.device_hostname.finish()),
            Arc::new(self.attack_techniques.finish()),
            Arc::new(self.attack_tactics.finish()),
            Arc::new(self.compliance_controls.finish()),
            Arc::new(self.fields.finish()),
            Arc::new(self.raw.finish()),
        ];
        // The next batch is likely the size of this one: allocating the large columns at that
        // size once saves their repeated doubling (a copy of every raw record each time).
        let rows = self.len;
        let bytes = |c: &ArrayRef| c.as_string_opt::<i32>().map_or(0, |s| s.value_data().len());
        self.raw = StringBuilder::with_capacity(rows, bytes(&columns[33]));
        if let Some(map) = columns[32].as_map_opt() {
            let entries = map.entries();
            let keys = StringBuilder::with_capacity(entries.len(), bytes(entries.column(0)));
            let values = StringBuilder::with_capacity(entries.len(), bytes(entries.column(1)));
            self.fields = MapBuilder::with_capacity(None, keys, values, rows);
        }
        self.len = 0;
        RecordBatch::try_new(finding_schema(), columns)
    }
}

fn append_list(builder: &mut ListBuilder<StringBuilder>, values: &[String]) {
    for v in values {
        builder.values().append_value(v);
    }
    builder.append(true);
}

/// Builds one batch from a slice of findings.
pub fn to_record_batch(findings: &[Finding]) -> Result<RecordBatch, ArrowError> {
    let mut builder = FindingBatchBuilder::new();
    for f in findings {
        builder.append(f);
    }
    builder.finish()
}

/// Reads the rows of a batch of [`finding_schema`] back into findings (the archive's way back
/// from Parquet); a missing column or one of another type is an error naming it.
pub fn findings_from_batch(batch: &RecordBatch) -> Result<Vec<Finding>, ArrowError> {
    use arrow::array::{GenericListArray, MapArray, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Int32Type, TimestampMillisecondType};

    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| ArrowError::SchemaError(format!("no column `{name}`")))
    };
    let wrong = |name: &str| ArrowError::SchemaError(format!("column `{name}` has another type"));
    let text = |name: &str| -> Result<&StringArray, ArrowError> {
        column(name)?
            .as_string_opt::<i32>()
            .ok_or_else(|| wrong(name))
    };
    let stamp = |name: &str| -> Result<&TimestampMillisecondArray, ArrowError> {
        column(name)?
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| wrong(name))
    };
    let int = |name: &str| {
        column(name)?
            .as_primitive_opt::<Int32Type>()
            .ok_or_else(|| wrong(name))
    };
    let list = |name: &str| -> Result<&GenericListArray<i32>, ArrowError> {
        column(name)?
            .as_list_opt::<i32>()
            .ok_or_else(|| wrong(name))
    };
    let opt = |a: &StringArray, row: usize| a.is_valid(row).then(|| a.value(row).to_string());
    let strings = |a: &GenericListArray<i32>, row: usize| -> Result<Vec<String>, ArrowError> {
        let values = a.value(row);
        let s = values
            .as_string_opt::<i32>()
            .ok_or_else(|| ArrowError::SchemaError("a list column holds no strings".into()))?;
        Ok(s.iter().flatten().map(str::to_string).collect())
    };
    let when = |a: &TimestampMillisecondArray, row: usize| {
        DateTime::from_timestamp_millis(a.value(row)).ok_or_else(|| {
            ArrowError::InvalidArgumentError(format!("timestamp {} out of range", a.value(row)))
        })
    };

    let (time, ingested_at, modified_time) = (
        stamp("time")?,
        stamp("ingested_at")?,
        stamp("modified_time")?,
    );
    let (class_uid, severity_id) = (int("class_uid")?, int("severity_id")?);
    let fields: &MapArray = column("fields")?
        .as_map_opt()
        .ok_or_else(|| wrong("fields"))?;
    let names = [
        "finding_uid",
        "source",
        "product",
        "event_code",
        "severity",
        "title",
        "status",
        "cloud_provider",
        "account_uid",
        "region",
        "resource_uid",
        "resource_type",
        "actor_user",
        "actor_uid",
        "actor_domain",
        "user_name",
        "user_uid",
        "user_domain",
        "group_name",
        "group_uid",
        "identity_id",
        "src_ip",
        "device_hostname",
        "raw",
    ];
    let t: Vec<&StringArray> = names.iter().map(|n| text(n)).collect::<Result<_, _>>()?;
    let lists: Vec<&GenericListArray<i32>> = [
        "identity_keys",
        "attack_techniques",
        "attack_tactics",
        "compliance_controls",
    ]
    .iter()
    .map(|n| list(n))
    .collect::<Result<_, _>>()?;

    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let entries = fields.value(row);
        let (Some(keys), Some(values)) = (
            entries.column(0).as_string_opt::<i32>(),
            entries.column(1).as_string_opt::<i32>(),
        ) else {
            return Err(wrong("fields"));
        };
        let mut f = Fields::new();
        for i in 0..keys.len() {
            if values.is_valid(i) {
                f.insert(keys.value(i), values.value(i));
            }
        }
        out.push(Finding {
            time: when(time, row)?,
            ingested_at: when(ingested_at, row)?,
            modified_time: when(modified_time, row)?,
            finding_uid: t[0].value(row).to_string(),
            source: t[1].value(row).to_string(),
            product: opt(t[2], row),
            class_uid: class_uid.value(row),
            event_code: opt(t[3], row),
            severity_id: severity_id.value(row),
            severity: t[4].value(row).to_string(),
            title: opt(t[5], row),
            status: opt(t[6], row),
            cloud_provider: opt(t[7], row),
            account_uid: opt(t[8], row),
            region: opt(t[9], row),
            resource_uid: opt(t[10], row),
            resource_type: opt(t[11], row),
            actor_user: opt(t[12], row),
            actor_uid: opt(t[13], row),
            actor_domain: opt(t[14], row),
            user_name: opt(t[15], row),
            user_uid: opt(t[16], row),
            user_domain: opt(t[17], row),
            group_name: opt(t[18], row),
            group_uid: opt(t[19], row),
            identity_keys: strings(lists[0], row)?,
            identity_id: opt(t[20], row),
            src_ip: opt(t[21], row),
            device_hostname: opt(t[22], row),
            attack_techniques: strings(lists[1], row)?,
            attack_tactics: strings(lists[2], row)?,
            compliance_controls: strings(lists[3], row)?,
            fields: f,
            raw: t[23].value(row).to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_matches_schema_and_keeps_rows() {
        let t = DateTime::from_timestamp_millis(1_700_000_000_123).expect("valid time");
        let mut f = Finding::new(
            "ad.windows",
            "dc1/42".into(),
            CLASS_AUTHENTICATION,
            t,
            "{}".into(),
        );
        f.fields.insert("LogonType", "3");
        f.attack_tactics.push("TA0006".into());
        let mut g = f.clone();
        g.finding_uid = "dc1/43".into();
        g.product = Some("Microsoft-Windows-Security-Auditing".into());
        g.identity_keys = vec!["sid:S-1-5-21-1-2-3-1104".into(), "upn:ann@x.example".into()];
        g.identity_id = Some("ann@x.example".into());
        g.src_ip = Some("10.0.0.5".into());
        g.set_severity(Severity::High);
        let batch = to_record_batch(&[f.clone(), g.clone()]).expect("batch");
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), finding_schema());
        assert_eq!(findings_from_batch(&batch).expect("decode"), vec![f, g]);
    }

    #[test]
    fn severity_labels_parse_case_insensitively() {
        assert_eq!(Severity::parse_label("HIGH"), Some(Severity::High));
        assert_eq!(
            Severity::parse_label("informational"),
            Some(Severity::Informational)
        );
        assert_eq!(Severity::parse_label("sev3"), None);
        assert_eq!(Severity::from_id(5).caption(), "Critical");
    }
}
