//! Running the index over one batch of events.
//!
//! Per batch: each log source's `where` is evaluated once (DataFusion, column at a time); the
//! fields the rules read are pulled out of the `fields` map once, and folded to lower case
//! once. Per event: every field's automaton runs once over its value and names the units
//! whose required anchors are there; only those units (and the unanchored units of the
//! event's sources) evaluate their condition, with each shared leaf computed at most once.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, BooleanArray, MapArray, RecordBatch, StringArray};
use arrow::datatypes::DataType;

use cairn_rules::sigma::ir::{FieldRef, KEYWORD_COLUMNS};

use crate::HuntError;
use crate::index::{HuntRules, Node};
use crate::leaf::{Values, holds};

/// Rows of a batch matched by rules: `(row, rule)` pairs in row order, then rule order.
pub type Matches = Vec<(u32, u32)>;

/// Per-worker buffers reused across batches.
#[derive(Default)]
pub struct Scratch {
    stamp: u32,
    unit_stamp: Vec<u32>,
    leaf_stamp: Vec<u32>,
    leaf_value: Vec<bool>,
    anchor_stamp: Vec<u32>,
    candidates: Vec<u32>,
    in_source: Vec<bool>,
}

impl Scratch {
    /// A number no earlier event of this index used: a unit, leaf or anchor whose stamp is it
    /// has been seen for the current event.
    fn next_stamp(&mut self, rules: &HuntRules) -> u32 {
        if self.unit_stamp.len() != rules.units.len()
            || self.leaf_stamp.len() != rules.leaves.len()
            || self.anchor_stamp.len() != rules.anchor_count
            || self.stamp == u32::MAX
        {
            self.unit_stamp = vec![0; rules.units.len()];
            self.leaf_stamp = vec![0; rules.leaves.len()];
            self.leaf_value = vec![false; rules.leaves.len()];
            self.anchor_stamp = vec![0; rules.anchor_count];
            self.stamp = 0;
        }
        self.stamp += 1;
        self.stamp
    }
}

/// Which rows each log source's `where` selects.
pub(crate) fn source_masks(
    rules: &HuntRules,
    batch: &RecordBatch,
) -> Result<Vec<BooleanArray>, HuntError> {
    rules
        .sources
        .iter()
        .map(|s| {
            let value = s.expr.evaluate(batch).map_err(|e| HuntError::Evaluate {
                sql: s.sql.clone(),
                reason: e.strip_backtrace(),
            })?;
            let array = value
                .into_array(batch.num_rows())
                .map_err(|e| HuntError::Evaluate {
                    sql: s.sql.clone(),
                    reason: e.strip_backtrace(),
                })?;
            match array.as_boolean_opt() {
                Some(b) => Ok(b.clone()),
                None => Err(HuntError::Evaluate {
                    sql: s.sql.clone(),
                    reason: format!("gives {} values, not booleans", array.data_type()),
                }),
            }
        })
        .collect()
}

pub(crate) fn selected(mask: &BooleanArray, row: usize) -> bool {
    mask.is_valid(row) && mask.value(row)
}

/// Where a field's values are in a batch.
enum Column {
    Absent,
    Text(StringArray),
    /// Row → index into the map's values (`u32::MAX`: the row has no such key).
    Map(Vec<u32>),
    Keywords(Vec<String>),
}

/// A batch with the fields the rules read pulled out.
pub(crate) struct Prepared {
    columns: Vec<Column>,
    map_values: Option<StringArray>,
    /// Per field: its values in lower case (`None` for fields no case-insensitive test reads).
    lower: Vec<Option<Lowered>>,
}

/// A field's values folded to lower case, end to end: row `r` is `text[starts[r]..ends[r]]`
/// (`usize::MAX`: the row has no value).
struct Lowered {
    text: String,
    starts: Vec<usize>,
    ends: Vec<usize>,
}

impl Prepared {
    pub fn new(rules: &HuntRules, batch: &RecordBatch) -> Result<Prepared, HuntError> {
        let rows = batch.num_rows();
        let mut columns: Vec<Column> = Vec::with_capacity(rules.fields.len());
        let mut map_keys: HashMap<&str, u32> = HashMap::new();
        for (i, f) in rules.fields.iter().enumerate() {
            columns.push(match f {
                FieldRef::Column(name) => match batch.column_by_name(name) {
                    Some(c) => Column::Text(text_column(c.as_ref(), name)?),
                    None => Column::Absent,
                },
                FieldRef::Map(key) => {
                    map_keys.insert(key.as_str(), i as u32);
                    Column::Absent
                }
                FieldRef::Keywords => Column::Keywords(keyword_texts(batch)?),
            });
        }
        let map = batch
            .column_by_name("fields")
            .and_then(|c| c.as_any().downcast_ref::<MapArray>());
        let mut map_values = None;
        if let Some(map) = map {
            let keys = map.keys().as_string::<i32>();
            let offsets = map.value_offsets();
            for row in 0..rows {
                if map.is_null(row) {
                    continue;
                }
                for e in offsets[row] as usize..offsets[row + 1] as usize {
                    let Some(field) = map_keys.get(keys.value(e)) else {
                        continue;
                    };
                    let col = &mut columns[*field as usize];
                    if let Column::Absent = col {
                        *col = Column::Map(vec![u32::MAX; rows]);
                    }
                    if let Column::Map(at) = col {
                        // The first entry wins, as map access in SQL does.
                        if at[row] == u32::MAX {
                            at[row] = e as u32;
                        }
                    }
                }
            }
            map_values = Some(map.values().as_string::<i32>().clone());
        }
        let mut prepared = Prepared {
            columns,
            map_values,
            lower: Vec::new(),
        };
        let mut lower = Vec::with_capacity(rules.fields.len());
        for (i, needed) in rules.lowered.iter().enumerate() {
            lower.push(if *needed {
                prepared.lowered(i as u32, rows)
            } else {
                None
            });
        }
        prepared.lower = lower;
        Ok(prepared)
    }

    fn lowered(&self, field: u32, rows: usize) -> Option<Lowered> {
        if matches!(self.columns[field as usize], Column::Absent) {
            return None;
        }
        let mut l = Lowered {
            text: String::new(),
            ends: Vec::with_capacity(rows),
            starts: Vec::with_capacity(rows),
        };
        for row in 0..rows {
            match self.value(field, row) {
                Some(v) => {
                    let start = l.text.len();
                    if v.is_ascii() {
                        l.text.push_str(v);
                        l.text[start..].make_ascii_lowercase();
                    } else {
                        // As SQL's `lower()`: the whole string, so a final sigma is right.
                        l.text.push_str(&v.to_lowercase());
                    }
                    l.starts.push(start);
                    l.ends.push(l.text.len());
                }
                None => {
                    l.starts.push(usize::MAX);
                    l.ends.push(usize::MAX);
                }
            }
        }
        Some(l)
    }

    fn value(&self, field: u32, row: usize) -> Option<&str> {
        match &self.columns[field as usize] {
            Column::Absent => None,
            Column::Text(a) => a.is_valid(row).then(|| a.value(row)),
            Column::Map(at) => {
                let e = at[row];
                let values = self.map_values.as_ref()?;
                (e != u32::MAX && values.is_valid(e as usize)).then(|| values.value(e as usize))
            }
            Column::Keywords(k) => k.get(row).map(String::as_str),
        }
    }

    fn lower_value(&self, field: u32, row: usize) -> Option<&str> {
        match &self.lower[field as usize] {
            Some(l) => {
                let start = l.starts[row];
                (start != usize::MAX).then(|| &l.text[start..l.ends[row]])
            }
            // Only fields no case-insensitive test reads have no lowered copy.
            None => None,
        }
    }
}

/// A typed column as text (Windows `EventID` is the `event_code` string column; other types
/// are cast).
fn text_column(c: &dyn Array, name: &str) -> Result<StringArray, HuntError> {
    if let Some(s) = c.as_string_opt::<i32>() {
        return Ok(s.clone());
    }
    let cast = arrow::compute::cast(c, &DataType::Utf8).map_err(|e| HuntError::Evaluate {
        sql: name.to_string(),
        reason: e.to_string(),
    })?;
    Ok(cast.as_string::<i32>().clone())
}

/// What Sigma keywords search, per row: the typed text columns, then the values of `fields`,
/// one per line (as SQL's `concat_ws` over them: NULLs left out).
pub(crate) fn keyword_texts(batch: &RecordBatch) -> Result<Vec<String>, HuntError> {
    let rows = batch.num_rows();
    let mut out = vec![String::new(); rows];
    let mut first = vec![true; rows];
    let mut push = |row: usize, s: &str, out: &mut Vec<String>| {
        if !first[row] {
            out[row].push('\n');
        }
        first[row] = false;
        out[row].push_str(s);
    };
    let mut typed = Vec::new();
    for name in KEYWORD_COLUMNS {
        if let Some(c) = batch.column_by_name(name) {
            typed.push(text_column(c.as_ref(), name)?);
        }
    }
    let map = batch
        .column_by_name("fields")
        .and_then(|c| c.as_any().downcast_ref::<MapArray>());
    for row in 0..rows {
        for c in &typed {
            if c.is_valid(row) {
                push(row, c.value(row), &mut out);
            }
        }
        // `array_to_string` of the map's values: non-null values joined by newlines (an
        // empty map still adds its empty string).
        let mut joined = String::new();
        if let Some(map) = map.filter(|m| m.is_valid(row)) {
            let values = map.values().as_string::<i32>();
            let offsets = map.value_offsets();
            let mut first_value = true;
            for e in offsets[row] as usize..offsets[row + 1] as usize {
                if values.is_valid(e) {
                    if !first_value {
                        joined.push('\n');
                    }
                    first_value = false;
                    joined.push_str(values.value(e));
                }
            }
            push(row, &joined, &mut out);
        }
    }
    Ok(out)
}

struct RowValues<'a> {
    prepared: &'a Prepared,
    row: usize,
}

impl Values for RowValues<'_> {
    fn get(&self, field: u32) -> Option<&str> {
        self.prepared.value(field, self.row)
    }

    fn lower(&self, field: u32) -> Option<&str> {
        self.prepared.lower_value(field, self.row)
    }
}

impl HuntRules {
    /// The rules that match each row of `batch` (a findings batch), through the index.
    pub fn matches(
        &self,
        batch: &RecordBatch,
        scratch: &mut Scratch,
    ) -> Result<Matches, HuntError> {
        let masks = source_masks(self, batch)?;
        let prepared = Prepared::new(self, batch)?;
        let mut out = Vec::new();
        let mut sources = Vec::with_capacity(masks.len());
        scratch.in_source = vec![false; masks.len()];
        for row in 0..batch.num_rows() {
            for s in sources.drain(..) {
                scratch.in_source[s] = false;
            }
            sources.extend((0..masks.len()).filter(|s| selected(&masks[*s], row)));
            if sources.is_empty() {
                continue;
            }
            for s in &sources {
                scratch.in_source[*s] = true;
            }
            let stamp = scratch.next_stamp(self);
            scratch.candidates.clear();
            for s in &sources {
                for u in &self.always[*s] {
                    scratch.unit_stamp[*u as usize] = stamp;
                    scratch.candidates.push(*u);
                }
            }
            let values = RowValues {
                prepared: &prepared,
                row,
            };
            for m in &self.matchers {
                if !m.sources.iter().any(|s| scratch.in_source[*s as usize]) {
                    continue;
                }
                let value = if m.cased {
                    values.get(m.field)
                } else {
                    values.lower(m.field)
                };
                let Some(value) = value else { continue };
                for hit in m.automaton.find_overlapping_iter(value) {
                    // An anchor found twice in one value starts its units once.
                    let a = (m.anchor_base as usize) + hit.pattern().as_usize();
                    if scratch.anchor_stamp[a] == stamp {
                        continue;
                    }
                    scratch.anchor_stamp[a] = stamp;
                    for u in &m.units[hit.pattern().as_usize()] {
                        let unit = &self.units[*u as usize];
                        if scratch.unit_stamp[*u as usize] != stamp
                            && scratch.in_source[unit.source as usize]
                        {
                            scratch.unit_stamp[*u as usize] = stamp;
                            scratch.candidates.push(*u);
                        }
                    }
                }
            }
            let first = out.len();
            let candidates = std::mem::take(&mut scratch.candidates);
            for u in &candidates {
                let unit = &self.units[*u as usize];
                if self.eval(&unit.tree, &values, scratch, stamp) {
                    out.push((row as u32, unit.rule));
                }
            }
            scratch.candidates = candidates;
            out[first..].sort_unstable();
        }
        // Sorted by row, then rule: a rule whose two sources both select a row matches it once.
        out.dedup();
        Ok(out)
    }

    fn eval(&self, n: &Node, v: &RowValues<'_>, scratch: &mut Scratch, stamp: u32) -> bool {
        match n {
            Node::Leaf(l) => {
                let l = *l as usize;
                if scratch.leaf_stamp[l] != stamp {
                    scratch.leaf_stamp[l] = stamp;
                    scratch.leaf_value[l] = holds(&self.leaves[l], v);
                }
                scratch.leaf_value[l]
            }
            Node::And(xs) => xs.iter().all(|x| self.eval(x, v, scratch, stamp)),
            Node::Or(xs) => xs.iter().any(|x| self.eval(x, v, scratch, stamp)),
            Node::Not(x) => !self.eval(x, v, scratch, stamp),
            Node::AtLeast(k, xs) => {
                let mut n = 0;
                for x in xs {
                    if self.eval(x, v, scratch, stamp) {
                        n += 1;
                        if n >= *k {
                            return true;
                        }
                    }
                }
                *k == 0
            }
        }
    }
}
