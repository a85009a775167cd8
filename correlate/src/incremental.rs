//! Incremental rule evaluation over a window kept in memory between ticks.
//!
//! The window is a list of Arrow segments (one per batch of new rows) with a liveness flag per
//! row. For every distinct `partition_by` expression of the rules (see [`cairn_rules::rule`])
//! an index maps each value of the expression to its rows; rows where it is NULL belong to no
//! part and are never read by partial evaluations. A tick takes the rows that arrived,
//! changed or left since the last one, collects the parts (index values) they belong to, and
//! evaluates each partitioned rule only over the rows of those parts; rules without
//! `partition_by`, rules never evaluated before, and rules whose other tables (`identities`,
//! `directory`) changed run over the whole window.
//!
//! Why that equals a full recompute: a partitioned rule's result over the window is the union
//! of its results over the parts. A part no row entered or left since the rule last ran over it
//! has the same rows, so the rule would give the same rows for it as it gave then; those are
//! already detections, and folding a detection again changes nothing. The correlator's
//! incremental-equals-full test checks this on random streams for the whole pack.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::{cast, concat_batches, filter_record_batch};
use arrow::datatypes::DataType;
use datafusion::physical_plan::PhysicalExpr;

use cairn_ingest::{DirectoryObject, Finding, to_record_batch};
use cairn_rules::sql::{
    DIRECTORY_TABLE, IDENTITIES_TABLE, partition_expr, window_projection, window_schema,
};
use cairn_rules::{Rule, RuleSet};

use crate::engine::{Engine, RuleHit};
use crate::error::{CorrelateError, Result};

/// Row number in the window (across segments, until the next compaction).
type RowId = u32;

/// Segments smaller than this are merged when the window is compacted.
const SMALL_SEGMENT: usize = 64 * 1024;
/// Fewer dead rows than this are never worth a compaction.
const MIN_DEAD_TO_COMPACT: usize = 256;
/// More small segments than this are merged even when few rows are dead.
const MAX_SEGMENTS: usize = 256;

/// What changed in the window since the last tick.
#[derive(Debug, Default, Clone)]
pub struct WindowDelta {
    /// New findings, and new versions of findings already in the window (same source and uid).
    pub upserts: Vec<Finding>,
    /// `(source, finding_uid)` of findings that left the window (archived or deleted).
    pub removed: Vec<(String, String)>,
}

impl WindowDelta {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removed.is_empty()
    }
}

/// How one rule was evaluated at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluation {
    /// Over the whole window.
    Full,
    /// Over the rows of the parts the tick touched.
    Partial,
    /// Not at all: no part of the rule was touched.
    Skipped,
}

/// One rule's result at a tick.
#[derive(Debug)]
pub struct RuleOutcome<'r> {
    /// The rule.
    pub rule: &'r Rule,
    /// How it was evaluated.
    pub evaluation: Evaluation,
    /// Its rows and the number of rows skipped for naming no entity, or its error.
    pub result: Result<(Vec<RuleHit>, usize)>,
    /// How long its evaluation took.
    pub took: std::time::Duration,
    /// Rows of the table it was evaluated over.
    pub rows: usize,
}

/// What a tick did, for reports and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickStats {
    /// Rules evaluated over the whole window.
    pub rules_full: usize,
    /// Rules evaluated over touched parts only.
    pub rules_partial: usize,
    /// Rules not evaluated: nothing of theirs changed.
    pub rules_skipped: usize,
    /// Rows the rule evaluations read, summed over rules.
    pub rows_evaluated: usize,
    /// Rows in the window.
    pub window_rows: usize,
    /// Whether the tick dropped dead rows from memory and renumbered the rest.
    pub compacted: bool,
}

/// `part_of` of a row whose value is NULL: it belongs to no part.
const NO_PART: u32 = u32::MAX;

/// One `partition_by` expression's index: value → part, part → rows, row → part.
struct PartitionIndex {
    expr: Arc<dyn PhysicalExpr>,
    parts: HashMap<String, u32>,
    members: Vec<Vec<RowId>>,
    part_of: Vec<u32>,
}

impl PartitionIndex {
    fn new(text: &str) -> Result<PartitionIndex> {
        let expr = partition_expr(text)
            .map_err(|e| CorrelateError::Internal(format!("partition_by `{text}`: {e}")))?;
        Ok(PartitionIndex {
            expr,
            parts: HashMap::new(),
            members: Vec::new(),
            part_of: Vec::new(),
        })
    }

    /// Indexes `segment`, whose first row is `self.part_of.len()`.
    fn extend(&mut self, text: &str, segment: &RecordBatch) -> Result<()> {
        let failed = |e: &dyn std::fmt::Display| {
            CorrelateError::Internal(format!("cannot evaluate partition_by `{text}`: {e}"))
        };
        let values = self
            .expr
            .evaluate(segment)
            .and_then(|v| v.into_array(segment.num_rows()))
            .map_err(|e| failed(&e))?;
        let values = cast(&values, &DataType::Utf8).map_err(|e| failed(&e))?;
        let values = values.as_string::<i32>();
        for i in 0..values.len() {
            let row =
                RowId::try_from(self.part_of.len()).map_err(|_| failed(&"more than 2^32 rows"))?;
            if values.is_null(i) {
                self.part_of.push(NO_PART);
                continue;
            }
            let value = values.value(i);
            let part = match self.parts.get(value) {
                Some(p) => *p,
                None => {
                    let p = u32::try_from(self.members.len())
                        .ok()
                        .filter(|p| *p != NO_PART)
                        .ok_or_else(|| failed(&"more than 2^32 parts"))?;
                    self.parts.insert(value.to_string(), p);
                    self.members.push(Vec::new());
                    p
                }
            };
            self.members[part as usize].push(row);
            self.part_of.push(part);
        }
        Ok(())
    }

    /// Renumbers rows after a compaction (`remap[old]` is the new id, `None` if dropped)
    /// and forgets parts without rows.
    fn compact(&mut self, remap: &[Option<RowId>]) {
        let mut part_of = Vec::with_capacity(remap.iter().flatten().count());
        let mut members: Vec<Vec<RowId>> = Vec::new();
        let mut new_part: HashMap<u32, u32> = HashMap::new();
        for (old, new) in remap.iter().enumerate() {
            if new.is_none() {
                continue;
            }
            let old_part = self.part_of[old];
            if old_part == NO_PART {
                part_of.push(NO_PART);
                continue;
            }
            let len = members.len() as u32;
            let p = *new_part.entry(old_part).or_insert(len);
            if p == len {
                members.push(Vec::new());
            }
            members[p as usize].push(part_of.len() as RowId);
            part_of.push(p);
        }
        self.parts = std::mem::take(&mut self.parts)
            .into_iter()
            .filter_map(|(v, p)| new_part.get(&p).map(|np| (v, *np)))
            .collect();
        self.members = members;
        self.part_of = part_of;
    }

    fn memory_bytes(&self) -> usize {
        let values: usize = self.parts.keys().map(|k| 48 + k.capacity()).sum();
        values
            + self
                .members
                .iter()
                .map(|m| 24 + m.capacity() * 4)
                .sum::<usize>()
            + self.part_of.capacity() * 4
    }
}

/// The tables besides `findings`, as the last tick saw them.
struct TablesSeen {
    /// The `identities` table, when a rule reads it.
    keys: Option<BTreeMap<String, String>>,
    directory: Vec<DirectoryObject>,
    /// The `directory` table's `identity_id` column.
    directory_ids: Vec<Option<String>>,
}

/// The window kept between ticks, with its partition indexes; see the module docs.
#[derive(Default)]
pub struct IncrementalEngine {
    segments: Vec<RecordBatch>,
    /// First row id of each segment.
    starts: Vec<usize>,
    rows: usize,
    live: Vec<bool>,
    live_rows: usize,
    /// Event time (ms) of each row, for [`IncrementalEngine::expire_before`].
    times: Vec<i64>,
    /// `source \x1f finding_uid` → (row, content hash).
    by_uid: HashMap<String, (RowId, u64)>,
    indexes: BTreeMap<String, PartitionIndex>,
    /// Rows that left or were replaced since the last tick.
    dead_since_tick: Vec<RowId>,
    /// First row appended since the last tick.
    new_since: usize,
    /// Rules evaluated over everything at least once, by id and text.
    evaluated: HashSet<u64>,
    tables: Option<TablesSeen>,
    /// Share of the window above which touched parts are evaluated as the whole window.
    partial_limit: Option<f64>,
}

fn uid_key(source: &str, uid: &str) -> String {
    let mut k = String::with_capacity(source.len() + uid.len() + 1);
    k.push_str(source);
    k.push('\x1f');
    k.push_str(uid);
    k
}

/// A hash of everything a rule can see of `f` (all columns but `raw`).
pub fn content_hash(f: &Finding) -> u64 {
    // Destructured so that a new column cannot be forgotten here.
    let Finding {
        time,
        ingested_at,
        modified_time,
        finding_uid,
        source,
        product,
        class_uid,
        event_code,
        severity_id,
        severity,
        title,
        status,
        cloud_provider,
        account_uid,
        region,
        resource_uid,
        resource_type,
        actor_user,
        actor_uid,
        actor_domain,
        user_name,
        user_uid,
        user_domain,
        group_name,
        group_uid,
        identity_keys,
        identity_id,
        src_ip,
        device_hostname,
        attack_techniques,
        attack_tactics,
        compliance_controls,
        fields,
        raw: _,
    } = f;
    let mut h = DefaultHasher::new();
    (time, ingested_at, modified_time, finding_uid, source).hash(&mut h);
    (product, class_uid, event_code, severity_id, severity, title).hash(&mut h);
    (status, cloud_provider, account_uid, region, resource_uid).hash(&mut h);
    (
        resource_type,
        actor_user,
        actor_uid,
        actor_domain,
        user_name,
    )
        .hash(&mut h);
    (user_uid, user_domain, group_name, group_uid, identity_keys).hash(&mut h);
    (identity_id, src_ip, device_hostname, attack_techniques).hash(&mut h);
    (attack_tactics, compliance_controls).hash(&mut h);
    fields.len().hash(&mut h);
    for (k, v) in fields.iter() {
        (k, v).hash(&mut h);
    }
    h.finish()
}

/// Identifies a rule with everything that shapes its detections (window, entity, severity),
/// so a changed rule counts as new.
fn rule_key(rule: &Rule) -> u64 {
    let mut h = DefaultHasher::new();
    match serde_json::to_string(rule) {
        Ok(text) => text.hash(&mut h),
        Err(_) => (&rule.id, &rule.sql, &rule.partition_by, rule.window).hash(&mut h),
    }
    h.finish()
}

fn internal(what: &str) -> impl Fn(arrow::error::ArrowError) -> CorrelateError + '_ {
    move |e| CorrelateError::Internal(format!("{what}: {e}"))
}

impl IncrementalEngine {
    /// An empty window: the first tick evaluates every rule over everything.
    pub fn new() -> IncrementalEngine {
        IncrementalEngine::default()
    }

    /// Evaluates partitioned rules over the whole window instead of their touched parts when
    /// those hold more than `share` of it (default 0.5: gathering most of the window costs
    /// more than reading it, and a partitioned rule gives the same over both).
    pub fn with_partial_limit(mut self, share: f64) -> IncrementalEngine {
        self.partial_limit = Some(share);
        self
    }

    /// Findings in the window.
    pub fn len(&self) -> usize {
        self.live_rows
    }

    /// True when the window holds no finding.
    pub fn is_empty(&self) -> bool {
        self.live_rows == 0
    }

    /// Bytes the window's Arrow segments and its indexes hold (estimated for hash maps).
    pub fn memory_bytes(&self) -> usize {
        let batches: usize = self
            .segments
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum();
        let uids: usize = self.by_uid.keys().map(|k| 64 + k.capacity()).sum();
        let indexes: usize = self.indexes.values().map(|i| i.memory_bytes()).sum();
        batches + uids + indexes + self.live.capacity() + self.times.capacity() * 8
    }

    /// What turns the window into `window` (every finding it should hold now): new and
    /// changed findings, and those it holds that `window` has not.
    pub fn diff(&self, window: &[Finding]) -> WindowDelta {
        let mut delta = WindowDelta::default();
        let mut seen: HashSet<String> = HashSet::with_capacity(window.len());
        for f in window {
            let key = uid_key(&f.source, &f.finding_uid);
            let hash = content_hash(f);
            match self.by_uid.get(&key) {
                Some((_, h)) if *h == hash => {}
                _ => delta.upserts.push(f.clone()),
            }
            seen.insert(key);
        }
        for key in self.by_uid.keys() {
            if !seen.contains(key)
                && let Some((source, uid)) = key.split_once('\x1f')
            {
                delta.removed.push((source.to_string(), uid.to_string()));
            }
        }
        delta
    }

    fn kill(&mut self, row: RowId) {
        let r = row as usize;
        if self.live[r] {
            self.live[r] = false;
            self.live_rows -= 1;
            self.dead_since_tick.push(row);
        }
    }

    /// Applies `delta`: replaced and removed rows die, new versions are appended.
    pub fn apply(&mut self, delta: WindowDelta) -> Result<()> {
        for (source, uid) in &delta.removed {
            if let Some((row, _)) = self.by_uid.remove(&uid_key(source, uid)) {
                self.kill(row);
            }
        }
        if delta.upserts.is_empty() {
            return Ok(());
        }
        let mut upserts = delta.upserts;
        for f in &mut upserts {
            // The window has no `raw` column (`window_schema`); copying it would be waste.
            f.raw = String::new();
        }
        // Two versions of one finding in one delta: the last one wins, as in the store.
        let mut last: HashMap<String, usize> = HashMap::with_capacity(upserts.len());
        for (i, f) in upserts.iter().enumerate() {
            last.insert(uid_key(&f.source, &f.finding_uid), i);
        }
        let mut keep: Vec<usize> = last.values().copied().collect();
        keep.sort_unstable();
        let upserts: Vec<Finding> = keep.into_iter().map(|i| upserts[i].clone()).collect();
        let batch = to_record_batch(&upserts)
            .map_err(internal("cannot build a window segment"))?
            .project(window_projection())
            .map_err(internal("cannot project a window segment"))?;
        let start = self.rows;
        for (i, f) in upserts.iter().enumerate() {
            let row = RowId::try_from(start + i).map_err(|_| {
                CorrelateError::Internal("the window holds more than 2^32 rows".into())
            })?;
            let key = uid_key(&f.source, &f.finding_uid);
            if let Some((old, _)) = self.by_uid.insert(key, (row, content_hash(f))) {
                self.kill(old);
            }
            self.live.push(true);
            self.times.push(f.time.timestamp_millis());
        }
        self.live_rows += upserts.len();
        self.rows += upserts.len();
        self.starts.push(start);
        self.segments.push(batch);
        Ok(())
    }

    /// Removes findings whose event time is before `cutoff` (a window without a store).
    pub fn expire_before(&mut self, cutoff: chrono::DateTime<chrono::Utc>) {
        let cutoff = cutoff.timestamp_millis();
        let old: Vec<RowId> = (0..self.rows)
            .filter(|r| self.live[*r] && self.times[*r] < cutoff)
            .map(|r| r as RowId)
            .collect();
        if old.is_empty() {
            return;
        }
        let schema = window_schema();
        let (Ok(source_col), Ok(uid_col)) =
            (schema.index_of("source"), schema.index_of("finding_uid"))
        else {
            return;
        };
        for row in old {
            let r = row as usize;
            let seg = self.starts.partition_point(|s| *s <= r) - 1;
            let batch = &self.segments[seg];
            let i = r - self.starts[seg];
            let source = batch.column(source_col).as_string::<i32>().value(i);
            let uid = batch.column(uid_col).as_string::<i32>().value(i);
            let key = uid_key(source, uid);
            if self.by_uid.get(&key).is_some_and(|(at, _)| *at == row) {
                self.by_uid.remove(&key);
            }
            self.kill(row);
        }
    }

    /// Every live row, as batches (for rules evaluated over the whole window).
    fn live_batches(&self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::with_capacity(self.segments.len());
        for (seg, start) in self.segments.iter().zip(&self.starts) {
            let live = &self.live[*start..*start + seg.num_rows()];
            if live.iter().all(|l| *l) {
                out.push(seg.clone());
            } else if live.iter().any(|l| *l) {
                let mask = BooleanArray::from(live.to_vec());
                out.push(filter_record_batch(seg, &mask).map_err(internal("cannot filter"))?);
            }
        }
        Ok(out)
    }

    /// The live rows among `rows` (sorted, distinct) as one batch.
    fn gather(&self, rows: &[RowId]) -> Result<Vec<RecordBatch>> {
        // Per segment, a mask of the rows taken: filtering copies runs of rows, which is far
        // cheaper than gathering them one by one, and keeps the table in several batches.
        let mut out = Vec::new();
        let mut i = 0;
        for (seg, start) in self.segments.iter().zip(&self.starts) {
            let end = start + seg.num_rows();
            let mut mask: Option<Vec<bool>> = None;
            while i < rows.len() && (rows[i] as usize) < end {
                let m = mask.get_or_insert_with(|| vec![false; seg.num_rows()]);
                m[rows[i] as usize - start] = true;
                i += 1;
            }
            if let Some(m) = mask {
                let taken = filter_record_batch(seg, &BooleanArray::from(m))
                    .map_err(internal("cannot gather rows"))?;
                out.push(taken);
            }
        }
        Ok(out)
    }

    /// Brings every index up to the rows appended since it last ran, creating indexes for
    /// expressions new to it. Returns the expressions that could not be evaluated: their
    /// index is dropped and their rules run over the whole window.
    fn index(&mut self, rules: &RuleSet) -> HashSet<String> {
        let wanted: BTreeSet<&str> = rules
            .rules()
            .filter_map(|r| r.partition_by.as_deref())
            .collect();
        self.indexes
            .retain(|text, _| wanted.contains(text.as_str()));
        let mut broken = HashSet::new();
        for text in wanted {
            let result = match self.indexes.remove(text) {
                Some(index) => Ok(index),
                None => PartitionIndex::new(text),
            }
            .and_then(|mut index| {
                for (seg, start) in self.segments.iter().zip(&self.starts) {
                    if *start >= index.part_of.len() {
                        index.extend(text, seg)?;
                    }
                }
                Ok(index)
            });
            match result {
                Ok(index) => {
                    self.indexes.insert(text.to_string(), index);
                }
                Err(e) => {
                    tracing::warn!(partition_by = text, error = %e, "Rules with this partition_by run over the whole window");
                    broken.insert(text.to_string());
                }
            }
        }
        broken
    }

    /// Drops dead rows when they outnumber the live ones, renumbering rows and indexes.
    fn compact(&mut self) -> Result<bool> {
        let dead = self.rows - self.live_rows;
        let many_small = self
            .segments
            .iter()
            .filter(|s| s.num_rows() < SMALL_SEGMENT)
            .count()
            > MAX_SEGMENTS;
        if !(dead > self.live_rows.max(MIN_DEAD_TO_COMPACT) || many_small) {
            return Ok(false);
        }
        let mut remap: Vec<Option<RowId>> = Vec::with_capacity(self.rows);
        let mut next: RowId = 0;
        for live in &self.live {
            remap.push(live.then(|| {
                let id = next;
                next += 1;
                id
            }));
        }
        let live = self.live_batches()?;
        let mut segments: Vec<RecordBatch> = Vec::new();
        let mut pending: Vec<RecordBatch> = Vec::new();
        let flush = |pending: &mut Vec<RecordBatch>, segments: &mut Vec<RecordBatch>| {
            if pending.is_empty() {
                return Ok(());
            }
            let merged = concat_batches(&window_schema(), pending.iter())
                .map_err(internal("cannot compact the window"))?;
            pending.clear();
            segments.push(merged);
            Ok::<(), CorrelateError>(())
        };
        for b in live {
            if b.num_rows() >= SMALL_SEGMENT {
                flush(&mut pending, &mut segments)?;
                segments.push(b);
            } else {
                pending.push(b);
                if pending.iter().map(RecordBatch::num_rows).sum::<usize>() >= SMALL_SEGMENT {
                    flush(&mut pending, &mut segments)?;
                }
            }
        }
        flush(&mut pending, &mut segments)?;
        let mut starts = Vec::with_capacity(segments.len());
        let mut at = 0;
        for s in &segments {
            starts.push(at);
            at += s.num_rows();
        }
        for (row, _) in self.by_uid.values_mut() {
            if let Some(new) = remap[*row as usize] {
                *row = new;
            }
        }
        for index in self.indexes.values_mut() {
            index.compact(&remap);
        }
        self.times = self
            .times
            .iter()
            .zip(&remap)
            .filter_map(|(t, r)| r.map(|_| *t))
            .collect();
        self.live = vec![true; at];
        self.rows = at;
        self.live_rows = at;
        self.segments = segments;
        self.starts = starts;
        self.new_since = at;
        self.dead_since_tick.clear();
        Ok(true)
    }

    /// Evaluates `rules` over what changed since the last tick (see the module docs).
    ///
    /// A tick that fails leaves the changes pending: the next one evaluates them again.
    pub async fn tick<'r>(
        &mut self,
        rules: &'r RuleSet,
        keys: &BTreeMap<String, String>,
        directory: &[DirectoryObject],
    ) -> Result<(Vec<RuleOutcome<'r>>, TickStats)> {
        let broken = self.index(rules);
        let reads_identities = rules
            .rules()
            .any(|r| r.reads.iter().any(|t| t == IDENTITIES_TABLE));
        let tables_now = TablesSeen {
            // Only kept when a rule reads it: it changes with nearly every new key.
            keys: reads_identities.then(|| keys.clone()),
            directory: directory.to_vec(),
            directory_ids: directory
                .iter()
                .map(|o| o.keys.iter().find_map(|k| keys.get(k).cloned()))
                .collect(),
        };
        let (keys_changed, directory_changed) = match &self.tables {
            None => (true, true),
            Some(seen) => (
                seen.keys != tables_now.keys,
                seen.directory != tables_now.directory
                    || seen.directory_ids != tables_now.directory_ids,
            ),
        };
        let changed_rows: Vec<RowId> = self
            .dead_since_tick
            .iter()
            .copied()
            .chain((self.new_since..self.rows).map(|r| r as RowId))
            .collect();

        // Rules by the table they need: the whole window (`None`) or the touched parts of one
        // partition expression; each partial table is dropped once its rules ran.
        let mut groups: BTreeMap<Option<&'r str>, Vec<(usize, &'r Rule)>> = BTreeMap::new();
        for (i, rule) in rules.rules().enumerate() {
            let reads_changed = rule.reads.iter().any(|t| {
                (t == IDENTITIES_TABLE && keys_changed)
                    || (t == DIRECTORY_TABLE && directory_changed)
            });
            let partial = match rule.partition_by.as_deref() {
                Some(text) if !broken.contains(text) => {
                    self.evaluated.contains(&rule_key(rule)) && !reads_changed
                }
                _ => false,
            };
            let table = if partial {
                rule.partition_by.as_deref()
            } else {
                None
            };
            groups.entry(table).or_default().push((i, rule));
        }

        let mut stats = TickStats {
            window_rows: self.live_rows,
            ..TickStats::default()
        };
        let mut full: Option<(Engine, usize)> = None;
        let mut outcomes: Vec<(usize, RuleOutcome<'r>)> = Vec::with_capacity(rules.len());
        let mut evaluated_now: Vec<u64> = Vec::new();
        for (table, members) in groups {
            let rows = match table {
                Some(text) => Some(self.touched_rows(text, &changed_rows)?),
                None => None,
            };
            // When most of the window is touched, the window itself is the cheaper table; a
            // partitioned rule gives the same over it.
            let limit = self.partial_limit.unwrap_or(0.5);
            let over_window = rows
                .as_ref()
                .is_none_or(|r| r.len() as f64 > limit * self.live_rows as f64);
            let partial_table = match &rows {
                Some(r) if !over_window && !r.is_empty() => {
                    let engine = Engine::with_window(self.gather(r)?)?;
                    engine.set_identities(keys, directory)?;
                    Some((engine, r.len()))
                }
                _ => None,
            };
            if over_window && full.is_none() {
                let batches = self.live_batches()?;
                let n = batches.iter().map(RecordBatch::num_rows).sum();
                let engine = Engine::with_window(batches)?;
                engine.set_identities(keys, directory)?;
                full = Some((engine, n));
            }
            let engine = if over_window {
                full.as_ref()
            } else {
                partial_table.as_ref()
            };
            for (i, rule) in members {
                let Some((engine, rows)) = engine else {
                    stats.rules_skipped += 1;
                    outcomes.push((
                        i,
                        RuleOutcome {
                            rule,
                            evaluation: Evaluation::Skipped,
                            result: Ok((Vec::new(), 0)),
                            took: std::time::Duration::ZERO,
                            rows: 0,
                        },
                    ));
                    continue;
                };
                let evaluation = if over_window {
                    stats.rules_full += 1;
                    Evaluation::Full
                } else {
                    stats.rules_partial += 1;
                    Evaluation::Partial
                };
                stats.rows_evaluated += rows;
                let started = std::time::Instant::now();
                let result = engine.evaluate(rule).await;
                let took = started.elapsed();
                // Only a rule whose partition index works may skip parts later.
                let indexed = rule
                    .partition_by
                    .as_deref()
                    .is_some_and(|t| !broken.contains(t));
                if result.is_ok() && evaluation == Evaluation::Full && indexed {
                    evaluated_now.push(rule_key(rule));
                }
                outcomes.push((
                    i,
                    RuleOutcome {
                        rule,
                        evaluation,
                        result,
                        took,
                        rows: *rows,
                    },
                ));
            }
        }
        outcomes.sort_by_key(|(i, _)| *i);
        let outcomes: Vec<RuleOutcome<'r>> = outcomes.into_iter().map(|(_, o)| o).collect();

        // Nothing failed: the tick's state becomes the engine's.
        self.evaluated.extend(evaluated_now);
        for o in &outcomes {
            // A rule that failed is evaluated over everything next time, as if new.
            if o.result.is_err() {
                self.evaluated.remove(&rule_key(o.rule));
            }
        }
        let current: HashSet<u64> = rules.rules().map(rule_key).collect();
        self.evaluated.retain(|k| current.contains(k));
        self.tables = Some(tables_now);
        self.dead_since_tick.clear();
        self.new_since = self.rows;
        stats.compacted = match self.compact() {
            Ok(done) => done,
            Err(e) => {
                // The window stays as it was, dead rows included; the next tick tries again.
                tracing::warn!(error = %e, "Could not compact the correlation window");
                false
            }
        };
        Ok((outcomes, stats))
    }

    /// The live rows in the parts of `text` that `changed` rows belong to, sorted.
    fn touched_rows(&self, text: &str, changed: &[RowId]) -> Result<Vec<RowId>> {
        let Some(index) = self.indexes.get(text) else {
            return Err(CorrelateError::Internal(format!(
                "no index for partition_by `{text}`"
            )));
        };
        let parts: HashSet<u32> = changed
            .iter()
            .map(|r| index.part_of[*r as usize])
            .filter(|p| *p != NO_PART)
            .collect();
        let mut rows: Vec<RowId> = parts
            .iter()
            .flat_map(|p| index.members[*p as usize].iter().copied())
            .filter(|r| self.live[*r as usize])
            .collect();
        rows.sort_unstable();
        rows.dedup();
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::MixedRecords;

    #[test]
    fn compaction_keeps_the_live_rows_and_their_parts() {
        let mut records = MixedRecords::new(3, 20, 5, 9);
        let at = chrono::DateTime::from_timestamp(1_763_280_000, 0).unwrap_or_default();
        let findings: Vec<Finding> = (0..3000).map(|_| records.record(at)).collect();
        let mut engine = IncrementalEngine::new();
        engine
            .apply(WindowDelta {
                upserts: findings.clone(),
                removed: Vec::new(),
            })
            .expect("apply");
        let set = futures::executor::block_on(RuleSet::builtin()).expect("rules");
        assert!(engine.index(&set).is_empty());
        engine
            .apply(WindowDelta {
                upserts: Vec::new(),
                removed: findings[..2500]
                    .iter()
                    .map(|f| (f.source.clone(), f.finding_uid.clone()))
                    .collect(),
            })
            .expect("remove");
        assert!(engine.compact().expect("compact"));
        assert_eq!((engine.rows, engine.len()), (500, 500));
        let index = &engine.indexes["identity_id"];
        let rows: usize = index.members.iter().map(Vec::len).sum();
        assert_eq!(rows, 500);
        let kept = engine
            .gather(&(0..500).collect::<Vec<_>>())
            .expect("gather");
        assert_eq!(kept.iter().map(RecordBatch::num_rows).sum::<usize>(), 500);
    }
}
