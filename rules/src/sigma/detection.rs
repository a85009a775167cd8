//! A Sigma rule's `detection` (named selections and the condition) as one [`Predicate`].

use std::collections::HashMap;

use rsigma_parser::{
    ConditionExpr, Detection, DetectionItem, Detections, Quantifier, SelectorPattern, SigmaValue,
};

use super::Unsupported;
use super::ir::{FieldRef, Predicate};
use super::mapping::SourceMapping;
use super::value::item as item_predicate;

/// The rule's condition over the events of one source, as a SQL boolean expression.
pub(crate) fn condition_sql(
    detections: &Detections,
    source: &SourceMapping,
) -> Result<String, Unsupported> {
    Ok(condition(detections, source)?.to_sql())
}

/// The rule's condition over the events of one source.
pub(crate) fn condition(
    detections: &Detections,
    source: &SourceMapping,
) -> Result<Predicate, Unsupported> {
    if detections.conditions.is_empty() {
        return Err(Unsupported::new("the rule has no condition"));
    }
    // Each selection is compiled once, even when the condition names it several times.
    let mut compiled: HashMap<&str, Predicate> = HashMap::new();
    for (name, d) in &detections.named {
        compiled.insert(name.as_str(), detection(d, source)?);
    }
    let parts = detections
        .conditions
        .iter()
        .map(|c| expr(c, &compiled))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Predicate::or(parts))
}

fn expr(e: &ConditionExpr, compiled: &HashMap<&str, Predicate>) -> Result<Predicate, Unsupported> {
    let all = |xs: &[ConditionExpr]| {
        xs.iter()
            .map(|x| expr(x, compiled))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match e {
        ConditionExpr::And(xs) => Predicate::and(all(xs)?),
        ConditionExpr::Or(xs) => Predicate::or(all(xs)?),
        ConditionExpr::Not(x) => Predicate::Not(Box::new(expr(x, compiled)?)),
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
            let parts: Vec<Predicate> = names.iter().map(|n| compiled[n].clone()).collect();
            match quantifier {
                Quantifier::Any => Predicate::or(parts),
                Quantifier::All => Predicate::and(parts),
                Quantifier::Count(n) => Predicate::AtLeast(*n as usize, parts),
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

fn detection(d: &Detection, source: &SourceMapping) -> Result<Predicate, Unsupported> {
    let each = |ds: &[Detection]| {
        ds.iter()
            .map(|d| detection(d, source))
            .collect::<Result<Vec<_>, _>>()
    };
    match d {
        Detection::AllOf(items) => Ok(Predicate::and(
            items
                .iter()
                .map(|i| item(i, source))
                .collect::<Result<_, _>>()?,
        )),
        Detection::AnyOf(ds) => Ok(Predicate::or(each(ds)?)),
        Detection::And(ds) => Ok(Predicate::and(each(ds)?)),
        Detection::Keywords(values) => keywords(values, &[]),
        Detection::ArrayMatch { .. } | Detection::Conditional { .. } => Err(Unsupported::new(
            "array object-scope blocks (`field[any]`) are not supported",
        )),
    }
}

fn item(i: &DetectionItem, source: &SourceMapping) -> Result<Predicate, Unsupported> {
    match &i.field.name {
        None => keywords(&i.values, &i.field.modifiers),
        Some(name) => item_predicate(
            &source.field(name),
            &i.field.modifiers,
            &i.values,
            &|other| source.field(other),
        ),
    }
}

/// Keywords search the event's values (its `fields` and typed text columns), as Sigma's
/// full-text search does; the verbatim record is evidence in the store, not part of the
/// correlation window.
fn keywords(
    values: &[SigmaValue],
    modifiers: &[rsigma_parser::Modifier],
) -> Result<Predicate, Unsupported> {
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
    item_predicate(&FieldRef::Keywords, &mods, values, &|f| {
        FieldRef::Map(f.to_string())
    })
}

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
