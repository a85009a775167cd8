//! A Sigma rule's `detection` (named selections and the condition) as one SQL predicate.

use std::collections::HashMap;

use rsigma_parser::{
    ConditionExpr, Detection, DetectionItem, Detections, Quantifier, SelectorPattern, SigmaValue,
};

use super::Unsupported;
use super::mapping::SourceMapping;
use super::value::{balanced, item_sql};

/// The rule's condition over the events of one source, as a SQL boolean expression.
pub(crate) fn condition_sql(
    detections: &Detections,
    source: &SourceMapping,
) -> Result<String, Unsupported> {
    if detections.conditions.is_empty() {
        return Err(Unsupported::new("the rule has no condition"));
    }
    // Each selection is compiled once, even when the condition names it several times.
    let mut compiled: HashMap<&str, String> = HashMap::new();
    for (name, d) in &detections.named {
        compiled.insert(name.as_str(), detection_sql(d, source)?);
    }
    let parts = detections
        .conditions
        .iter()
        .map(|c| expr_sql(c, &compiled))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(or(parts))
}

fn or(parts: Vec<String>) -> String {
    balanced(&parts, "OR")
}

fn and(parts: Vec<String>) -> String {
    balanced(&parts, "AND")
}

fn expr_sql(e: &ConditionExpr, compiled: &HashMap<&str, String>) -> Result<String, Unsupported> {
    Ok(match e {
        ConditionExpr::And(xs) => and(xs
            .iter()
            .map(|x| expr_sql(x, compiled))
            .collect::<Result<_, _>>()?),
        ConditionExpr::Or(xs) => or(xs
            .iter()
            .map(|x| expr_sql(x, compiled))
            .collect::<Result<_, _>>()?),
        ConditionExpr::Not(x) => format!("(NOT {})", expr_sql(x, compiled)?),
        ConditionExpr::Identifier(name) => {
            compiled.get(name.as_str()).cloned().ok_or_else(|| {
                Unsupported::new(format!(
                    "the condition names `{name}`, which is not defined"
                ))
            })?
        }
        ConditionExpr::Selector {
            quantifier,
            pattern,
        } => {
            let mut names: Vec<&str> = compiled
                .keys()
                .copied()
                .filter(|n| match pattern {
                    // `them` leaves out names starting with `_` (Sigma specification).
                    SelectorPattern::Them => !n.starts_with('_'),
                    SelectorPattern::Pattern(p) => wildcard_match(p, n),
                })
                .collect();
            names.sort_unstable();
            if names.is_empty() {
                return Err(Unsupported::new(format!(
                    "`{quantifier} of {pattern}` matches no selection"
                )));
            }
            let parts: Vec<String> = names.iter().map(|n| compiled[n].clone()).collect();
            match quantifier {
                Quantifier::Any => or(parts),
                Quantifier::All => and(parts),
                Quantifier::Count(n) => {
                    let sum: Vec<String> = parts
                        .iter()
                        .map(|p| format!("CASE WHEN {p} THEN 1 ELSE 0 END"))
                        .collect();
                    format!("(({}) >= {n})", sum.join(" + "))
                }
            }
        }
    })
}

/// Sigma's selector patterns: `*` for any run of characters.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(p) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            match rest.find(p) {
                Some(at) => rest = &rest[at + p.len()..],
                None => return false,
            }
        }
    }
    true
}

fn detection_sql(d: &Detection, source: &SourceMapping) -> Result<String, Unsupported> {
    match d {
        Detection::AllOf(items) => Ok(and(items
            .iter()
            .map(|i| item(i, source))
            .collect::<Result<_, _>>()?)),
        Detection::AnyOf(ds) => Ok(or(ds
            .iter()
            .map(|d| detection_sql(d, source))
            .collect::<Result<_, _>>()?)),
        Detection::And(ds) => Ok(and(ds
            .iter()
            .map(|d| detection_sql(d, source))
            .collect::<Result<_, _>>()?)),
        Detection::Keywords(values) => keywords(values, &[]),
        Detection::ArrayMatch { .. } | Detection::Conditional { .. } => Err(Unsupported::new(
            "array object-scope blocks (`field[any]`) are not supported",
        )),
    }
}

fn item(i: &DetectionItem, source: &SourceMapping) -> Result<String, Unsupported> {
    match &i.field.name {
        None => keywords(&i.values, &i.field.modifiers),
        Some(name) => item_sql(
            &source.field(name),
            &i.field.modifiers,
            &i.values,
            &|other| source.field(other),
        ),
    }
}

/// Keywords search the event's values (its `fields` and typed text columns), as Sigma's
/// full-text search does; the verbatim record is evidence in the store, not part of the
/// correlation window. Normalizers that keep only some of a record's fields (Entra, ASFF) limit
/// what keywords can find there.
fn keywords(
    values: &[SigmaValue],
    modifiers: &[rsigma_parser::Modifier],
) -> Result<String, Unsupported> {
    let mut mods = modifiers.to_vec();
    if !mods.iter().any(|m| {
        matches!(
            m,
            rsigma_parser::Modifier::Contains
                | rsigma_parser::Modifier::StartsWith
                | rsigma_parser::Modifier::EndsWith
                | rsigma_parser::Modifier::Re
        )
    }) {
        mods.push(rsigma_parser::Modifier::Contains);
    }
    item_sql(KEYWORD_TEXT, &mods, values, &|f| f.to_string())
}

/// The text keywords search: the event's values and its typed text columns, one per line.
const KEYWORD_TEXT: &str = "concat_ws('\n', title, actor_user, user_name, src_ip, device_hostname, \
     resource_uid, array_to_string(map_values(fields), '\n'))";

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn selector_patterns() {
        assert!(wildcard_match("selection_*", "selection_img"));
        assert!(!wildcard_match("selection_*", "filter_main"));
        assert!(wildcard_match("*_main_*", "filter_main_x"));
        assert!(wildcard_match("sel", "sel"));
    }
}
