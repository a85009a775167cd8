//! Sigma correlation rules (`event_count`, `value_count`, `temporal`, `temporal_ordered`) as
//! windowed SQL over the events their base rules match.
//!
//! Windows slide: for every matching event, the events of the same group in the `timespan`
//! ending at it are counted, so a burst is found wherever it starts (Sigma's specification asks
//! for no fixed boundaries where the backend allows it). One detection row per entity (the
//! first `group-by` field that names an identity, host or IP, else the first) gathers every
//! window that met the condition.

use rsigma_parser::{
    ConditionExpr, ConditionOperator, CorrelationCondition, CorrelationRule, CorrelationType,
    WindowMode,
};

use super::detection::condition_sql;
use super::mapping::SigmaMappings;
use super::value::{balanced, quote};
use super::{BaseRule, Unsupported};
use crate::rule::EntityKind;

/// The SQL of `corr` and the kind of entity its rows are about.
pub(crate) fn correlation_sql(
    corr: &CorrelationRule,
    condition_given: bool,
    bases: &[&BaseRule],
    mappings: &SigmaMappings,
) -> Result<(String, EntityKind), Unsupported> {
    if corr.window != WindowMode::Sliding {
        return Err(Unsupported::new(format!(
            "`{}` windows are not supported (only sliding)",
            corr.window.as_str()
        )));
    }
    if corr.group_by.is_empty()
        && matches!(
            corr.correlation_type,
            CorrelationType::Temporal | CorrelationType::TemporalOrdered
        )
    {
        return Err(Unsupported::new("a temporal correlation needs `group-by`"));
    }
    let value_field = match (&corr.correlation_type, &corr.condition) {
        (CorrelationType::ValueCount, CorrelationCondition::Threshold { field: Some(f), .. }) => {
            match f.as_slice() {
                [one] => Some(one.clone()),
                _ => {
                    return Err(Unsupported::new(
                        "`value_count` over several fields is not supported",
                    ));
                }
            }
        }
        (CorrelationType::ValueCount, _) => {
            return Err(Unsupported::new("`value_count` needs `condition.field`"));
        }
        (
            CorrelationType::EventCount
            | CorrelationType::Temporal
            | CorrelationType::TemporalOrdered,
            _,
        ) => None,
        (other, _) => {
            return Err(Unsupported::new(format!(
                "correlation type `{}` is not supported",
                other.as_str()
            )));
        }
    };

    // The events: one SELECT per base rule and log source, with the group-by values read the
    // way that source names them.
    let mut selects = Vec::new();
    for base in bases {
        for source in &base.sources {
            let cond = condition_sql(&base.rule.detection, source)?;
            let mut cols = vec![
                "time".to_string(),
                "finding_uid".to_string(),
                format!("{} AS sigma_rule", quote(&base.reference)),
            ];
            for (i, g) in corr.group_by.iter().enumerate() {
                cols.push(format!(
                    "{} AS g{i}",
                    source.field(&field_for(corr, base, g)).to_sql()
                ));
            }
            if let Some(v) = &value_field {
                cols.push(format!(
                    "{} AS v",
                    source.field(&field_for(corr, base, v)).to_sql()
                ));
            }
            selects.push(format!(
                "SELECT {} FROM findings WHERE ({}) AND {}",
                cols.join(", "),
                source.predicate,
                cond
            ));
        }
    }
    let events = selects.join("\n  UNION ALL ");
    let span = corr.timespan.seconds;
    if span == 0 || span > crate::rule::MAX_WINDOW.as_secs() {
        return Err(Unsupported::new(format!(
            "timespan `{}` must be more than zero and at most 48h (the correlation window)",
            corr.timespan.original
        )));
    }

    let (entity_index, kind) = entity(corr, mappings);
    let entity_sql = |alias: &str| match entity_index {
        None => quote(&format!(
            "sigma:{}",
            corr.id.as_deref().unwrap_or(&corr.title)
        )),
        Some(i) if kind == EntityKind::Resource => format!(
            "{} || {alias}.g{i}",
            quote(&format!("{}=", corr.group_by[i]))
        ),
        Some(i) => format!("{alias}.g{i}"),
    };
    let same_group: Vec<String> = (0..corr.group_by.len())
        .map(|i| format!("b.g{i} = a.g{i}"))
        .collect();
    let group_cols: Vec<String> = (0..corr.group_by.len())
        .map(|i| format!("a.g{i}"))
        .collect();

    let hits = if corr.correlation_type == CorrelationType::TemporalOrdered {
        ordered_hits(corr, condition_given, bases, span, &entity_sql("e0"))?
    } else {
        let measure = match corr.correlation_type {
            CorrelationType::EventCount => "count(DISTINCT b.finding_uid)".to_string(),
            CorrelationType::ValueCount => "count(DISTINCT b.v)".to_string(),
            _ => "count(DISTINCT b.sigma_rule)".to_string(),
        };
        let having = match (&corr.correlation_type, &corr.condition) {
            (CorrelationType::Temporal, CorrelationCondition::Extended(e)) => presence_sql(e)?,
            (CorrelationType::Temporal, _) if !condition_given => {
                format!("{measure} >= {}", bases.len())
            }
            (_, CorrelationCondition::Threshold { predicates, .. }) => {
                lower_bounds_only(predicates)?;
                threshold(&measure, predicates)
            }
            (_, CorrelationCondition::Extended(_)) => {
                return Err(Unsupported::new(
                    "a boolean condition is only meaningful for `temporal`",
                ));
            }
        };
        let mut on = same_group;
        on.push(format!(
            "b.time > a.time - INTERVAL '{span} seconds' AND b.time <= a.time"
        ));
        let mut group = vec!["a.finding_uid".to_string(), "a.sigma_rule".to_string()];
        group.extend(group_cols.iter().cloned());
        format!(
            "SELECT {entity} AS entity, min(b.time) AS first_time, max(b.time) AS last_time, \
             array_agg(DISTINCT b.finding_uid) AS uids\n  FROM events a JOIN events b ON {on}\n  \
             GROUP BY {group}\n  HAVING {having}",
            entity = entity_sql("a"),
            on = on.join(" AND "),
            group = group.join(", "),
        )
    };
    let sql = format!(
        "WITH events AS (\n  {events}\n), hits AS (\n  {hits}\n)\n\
         SELECT entity AS entity_key, min(first_time) AS first_seen, max(last_time) AS last_seen,\n  \
         array_distinct(flatten(array_agg(uids))) AS finding_uids\n\
         FROM hits WHERE entity IS NOT NULL GROUP BY entity"
    );
    Ok((sql, kind))
}

/// `temporal_ordered`: one event of each rule, in the rules' order, within the timespan.
fn ordered_hits(
    corr: &CorrelationRule,
    condition_given: bool,
    bases: &[&BaseRule],
    span: u64,
    entity: &str,
) -> Result<String, Unsupported> {
    // Only a condition that means "every rule" is honoured: a chain of k events in order is
    // what the joins find, so a condition that k - 1 rules also meet would be missed.
    let k = bases.len() as u64;
    let met_by = |count: u64, predicates: &[(ConditionOperator, u64)]| {
        predicates.iter().all(|(op, n)| holds(*op, count, *n))
    };
    if let CorrelationCondition::Threshold { predicates, .. } = &corr.condition
        && condition_given
        && (!met_by(k, predicates) || met_by(k - 1, predicates))
    {
        return Err(Unsupported::new(
            "`temporal_ordered` with a condition other than all rules is not supported",
        ));
    }
    if matches!(corr.condition, CorrelationCondition::Extended(_)) {
        return Err(Unsupported::new(
            "`temporal_ordered` with a boolean condition is not supported",
        ));
    }
    let mut from = "events e0".to_string();
    let mut uids = vec!["e0.finding_uid".to_string()];
    for (k, base) in bases.iter().enumerate().skip(1) {
        let prev = k - 1;
        let mut on = vec![
            format!("e{k}.sigma_rule = {}", quote(&base.reference)),
            format!("e{k}.time >= e{prev}.time"),
            format!("e{k}.time <= e0.time + INTERVAL '{span} seconds'"),
        ];
        on.extend((0..corr.group_by.len()).map(|i| format!("e{k}.g{i} = e0.g{i}")));
        from.push_str(&format!("\n  JOIN events e{k} ON {}", on.join(" AND ")));
        uids.push(format!("e{k}.finding_uid"));
    }
    let last = bases.len() - 1;
    Ok(format!(
        "SELECT {entity} AS entity, e0.time AS first_time, e{last}.time AS last_time, \
         make_array({uids}) AS uids\n  FROM {from}\n  WHERE e0.sigma_rule = {first}",
        uids = uids.join(", "),
        first = quote(&bases[0].reference),
    ))
}

/// The field a base rule calls group-by field `name` (through the correlation's aliases).
fn field_for(corr: &CorrelationRule, base: &BaseRule, name: &str) -> String {
    corr.aliases
        .iter()
        .find(|a| a.alias == name)
        .and_then(|a| {
            a.mapping
                .get(&base.reference)
                .or_else(|| base.rule.id.as_ref().and_then(|id| a.mapping.get(id)))
                .or_else(|| base.rule.name.as_ref().and_then(|n| a.mapping.get(n)))
        })
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

/// Which group-by field is the detection's entity, and what kind it is.
fn entity(corr: &CorrelationRule, mappings: &SigmaMappings) -> (Option<usize>, EntityKind) {
    let classified = corr
        .group_by
        .iter()
        .enumerate()
        .find_map(|(i, g)| mappings.entity_of(g).map(|k| (i, k)));
    match classified {
        Some((i, k)) => (Some(i), k),
        None if corr.group_by.is_empty() => (None, EntityKind::Resource),
        None => (Some(0), EntityKind::Resource),
    }
}

fn holds(op: ConditionOperator, got: u64, n: u64) -> bool {
    match op {
        ConditionOperator::Lt => got < n,
        ConditionOperator::Lte => got <= n,
        ConditionOperator::Gt => got > n,
        ConditionOperator::Gte => got >= n,
        ConditionOperator::Eq => got == n,
        ConditionOperator::Neq => got != n,
    }
}

/// Every window here ends at an event and looks back, so a lower bound (`gt`, `gte`) is found
/// wherever it is first met, but an upper bound would be met by the first event of any burst.
fn lower_bounds_only(predicates: &[(ConditionOperator, u64)]) -> Result<(), Unsupported> {
    if predicates
        .iter()
        .all(|(op, _)| matches!(op, ConditionOperator::Gt | ConditionOperator::Gte))
    {
        Ok(())
    } else {
        Err(Unsupported::new(
            "only `gt`/`gte` conditions are supported on sliding windows (an upper bound or `eq` would hold at the start of every burst)",
        ))
    }
}

fn threshold(measure: &str, predicates: &[(ConditionOperator, u64)]) -> String {
    predicates
        .iter()
        .map(|(op, n)| {
            let op = match op {
                ConditionOperator::Lt => "<",
                ConditionOperator::Lte => "<=",
                ConditionOperator::Gt => ">",
                ConditionOperator::Gte => ">=",
                ConditionOperator::Eq => "=",
                ConditionOperator::Neq => "<>",
            };
            format!("{measure} {op} {n}")
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// A `temporal` boolean condition (`rule_a and (rule_b or rule_c)`) over which rules occurred.
fn presence_sql(e: &ConditionExpr) -> Result<String, Unsupported> {
    Ok(match e {
        ConditionExpr::And(xs) | ConditionExpr::Or(xs) => {
            let op = if matches!(e, ConditionExpr::And(_)) {
                "AND"
            } else {
                "OR"
            };
            let parts = xs.iter().map(presence_sql).collect::<Result<Vec<_>, _>>()?;
            balanced(&parts, op)
        }
        ConditionExpr::Not(x) => format!("(NOT {})", presence_sql(x)?),
        ConditionExpr::Identifier(name) => format!(
            "(max(CASE WHEN b.sigma_rule = {} THEN 1 ELSE 0 END) = 1)",
            quote(name)
        ),
        ConditionExpr::Selector { .. } => {
            return Err(Unsupported::new(
                "selectors (`1 of …`) in a correlation condition are not supported",
            ));
        }
    })
}
