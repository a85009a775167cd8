//! One detection item (a field, its modifiers and values) as a [`Predicate`]: modifiers are
//! resolved here (`windash`, `base64offset`, `wide` spell their variants, numbers and
//! `base64` compare case-sensitively), so back ends only see plain field tests.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsigma_parser::{Modifier, SigmaString, SigmaValue, SpecialChar, StringPart};

use super::Unsupported;
use super::ir::{Cmp, FieldRef, Leaf, Piece, Position, Predicate};

/// A SQL string literal.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `parts` joined by `op` (`AND`, `OR`) as a balanced tree of parentheses: a Sigma list of
/// hundreds of values would otherwise parse as a chain that deep, and planning recurses on it.
pub(crate) fn balanced(parts: &[String], op: &str) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        _ if parts.len() <= 8 => format!("({})", parts.join(&format!(" {op} "))),
        _ => {
            let chunk = parts.len().div_ceil(8);
            let groups: Vec<String> = parts.chunks(chunk).map(|c| balanced(c, op)).collect();
            format!("({})", groups.join(&format!(" {op} ")))
        }
    }
}

/// The item `field|modifiers: values` as a predicate; `resolve` reads another field (for
/// `fieldref`).
pub(crate) fn item(
    field: &FieldRef,
    modifiers: &[Modifier],
    values: &[SigmaValue],
    resolve: &dyn Fn(&str) -> FieldRef,
) -> Result<Predicate, Unsupported> {
    let has = |m: Modifier| modifiers.contains(&m);
    for m in modifiers {
        if matches!(
            m,
            Modifier::Expand
                | Modifier::Minute
                | Modifier::Hour
                | Modifier::Day
                | Modifier::Week
                | Modifier::Month
                | Modifier::Year
        ) {
            return Err(Unsupported::new(format!(
                "the `{}` modifier is not supported",
                modifier_name(*m)
            )));
        }
    }
    if values.is_empty() {
        return Err(Unsupported::new("a detection item has no value"));
    }
    if has(Modifier::Exists) {
        let want = match values {
            [SigmaValue::Bool(b)] => *b,
            [SigmaValue::String(s)]
                if s.as_plain().is_some_and(|p| p.eq_ignore_ascii_case("true")) =>
            {
                true
            }
            [SigmaValue::String(s)]
                if s.as_plain()
                    .is_some_and(|p| p.eq_ignore_ascii_case("false")) =>
            {
                false
            }
            _ => return Err(Unsupported::new("`exists` needs true or false")),
        };
        let exists = Predicate::Leaf(Leaf::Exists(field.clone()));
        return Ok(if want {
            exists
        } else {
            Predicate::Not(Box::new(exists))
        });
    }
    let mut parts = Vec::with_capacity(values.len());
    for v in values {
        parts.push(value(field, modifiers, v, resolve)?);
    }
    let body = if has(Modifier::All) {
        Predicate::and(parts)
    } else {
        Predicate::or(parts)
    };
    Ok(if has(Modifier::Neq) {
        // `neq`: the field is present and differs from every value.
        Predicate::And(vec![
            Predicate::Leaf(Leaf::Exists(field.clone())),
            Predicate::Not(Box::new(body)),
        ])
    } else {
        body
    })
}

fn modifier_name(m: Modifier) -> String {
    format!("{m:?}").to_lowercase()
}

/// One value of an item.
fn value(
    field: &FieldRef,
    modifiers: &[Modifier],
    value: &SigmaValue,
    resolve: &dyn Fn(&str) -> FieldRef,
) -> Result<Predicate, Unsupported> {
    let has = |m: Modifier| modifiers.contains(&m);
    let cased = has(Modifier::Cased);
    for (m, op) in [
        (Modifier::Gt, Cmp::Gt),
        (Modifier::Gte, Cmp::Gte),
        (Modifier::Lt, Cmp::Lt),
        (Modifier::Lte, Cmp::Lte),
    ] {
        if has(m) {
            let n = match value {
                SigmaValue::Integer(i) => *i as f64,
                SigmaValue::Float(f) => *f,
                SigmaValue::String(s) => s
                    .as_plain()
                    .and_then(|p| p.trim().parse::<f64>().ok())
                    .ok_or_else(|| {
                        Unsupported::new(format!(
                            "`{}` needs a number, got `{s}`",
                            modifier_name(m)
                        ))
                    })?,
                other => {
                    return Err(Unsupported::new(format!(
                        "`{}` needs a number, got `{other}`",
                        modifier_name(m)
                    )));
                }
            };
            return Ok(Predicate::Leaf(Leaf::Number {
                field: field.clone(),
                op,
                value_bits: n.to_bits(),
            }));
        }
    }
    if has(Modifier::FieldRef) {
        let other = match value {
            SigmaValue::String(s) => s.as_plain().ok_or_else(|| {
                Unsupported::new("`fieldref` needs a field name without wildcards")
            })?,
            _ => return Err(Unsupported::new("`fieldref` needs a field name")),
        };
        if has(Modifier::Contains) || has(Modifier::StartsWith) || has(Modifier::EndsWith) {
            return Err(Unsupported::new(
                "`fieldref` with contains/startswith/endswith is not supported",
            ));
        }
        return Ok(Predicate::Leaf(Leaf::FieldEq {
            field: field.clone(),
            other: resolve(&other),
            cased,
        }));
    }
    if has(Modifier::Cidr) {
        let SigmaValue::String(s) = value else {
            return Err(Unsupported::new("`cidr` needs a network"));
        };
        let net = s
            .as_plain()
            .ok_or_else(|| Unsupported::new("`cidr` needs a network without wildcards"))?;
        let valid = crate::udf::cidr_contains(&net, "0.0.0.0").is_some()
            && crate::udf::cidr_contains(&net, "::").is_some();
        if !valid {
            return Err(Unsupported::new(format!("`{net}` is not a CIDR network")));
        }
        return Ok(Predicate::Leaf(Leaf::Cidr {
            field: field.clone(),
            network: net,
        }));
    }
    if has(Modifier::Re) {
        let SigmaValue::String(s) = value else {
            return Err(Unsupported::new("`re` needs a pattern"));
        };
        let mut flags = String::new();
        for (m, f) in [
            (Modifier::IgnoreCase, 'i'),
            (Modifier::Multiline, 'm'),
            (Modifier::DotAll, 's'),
        ] {
            if has(m) {
                flags.push(f);
            }
        }
        let pattern = if flags.is_empty() {
            s.original.clone()
        } else {
            format!("(?{flags}){}", s.original)
        };
        regex::Regex::new(&pattern).map_err(|e| {
            Unsupported::new(format!(
                "regular expression `{}` is not supported by Rust's regex engine: {}",
                s.original,
                e.to_string().lines().last().unwrap_or("invalid")
            ))
        })?;
        return Ok(Predicate::Leaf(Leaf::Regex {
            field: field.clone(),
            pattern,
        }));
    }
    let position = if has(Modifier::Contains) {
        Position::Contains
    } else if has(Modifier::StartsWith) {
        Position::StartsWith
    } else if has(Modifier::EndsWith) {
        Position::EndsWith
    } else {
        Position::Exact
    };
    let text = |cased: bool, parts: &[StringPart]| {
        Predicate::Leaf(Leaf::Text {
            field: field.clone(),
            position,
            cased,
            pattern: pieces(parts, cased),
        })
    };
    match value {
        SigmaValue::Null => Ok(Predicate::Leaf(Leaf::Empty(field.clone()))),
        SigmaValue::Bool(b) => Ok(Predicate::Leaf(Leaf::Text {
            field: field.clone(),
            position: Position::Exact,
            cased: false,
            pattern: vec![Piece::Lit(b.to_string())],
        })),
        SigmaValue::Integer(i) => Ok(text(true, &plain(&i.to_string()))),
        SigmaValue::Float(f) => Ok(text(true, &plain(&f.to_string()))),
        SigmaValue::String(s) => {
            let variants = encode(s, modifiers)?;
            let cased = cased || variants.encoded;
            Ok(Predicate::or(
                variants.patterns.iter().map(|p| text(cased, p)).collect(),
            ))
        }
    }
}

/// A Sigma string as pattern pieces, folded to lower case unless `cased`; adjacent literals
/// are joined.
fn pieces(parts: &[StringPart], cased: bool) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    for p in parts {
        match p {
            StringPart::Plain(s) => {
                let s = if cased { s.clone() } else { s.to_lowercase() };
                match out.last_mut() {
                    Some(Piece::Lit(prev)) => prev.push_str(&s),
                    _ => out.push(Piece::Lit(s)),
                }
            }
            StringPart::Special(SpecialChar::WildcardMulti) => out.push(Piece::AnyRun),
            StringPart::Special(SpecialChar::WildcardSingle) => out.push(Piece::AnyChar),
        }
    }
    out
}

fn plain(s: &str) -> Vec<StringPart> {
    vec![StringPart::Plain(s.to_string())]
}

/// The string patterns a value stands for after `windash`, `wide`/`utf16*` and `base64*`.
struct Variants {
    patterns: Vec<Vec<StringPart>>,
    /// Base64 output is case-sensitive.
    encoded: bool,
}

fn encode(s: &SigmaString, modifiers: &[Modifier]) -> Result<Variants, Unsupported> {
    let has = |m: Modifier| modifiers.contains(&m);
    let mut patterns = vec![s.parts.clone()];
    if has(Modifier::WindAsh) {
        patterns = patterns.iter().flat_map(|p| windash(p)).collect();
    }
    let b64 = has(Modifier::Base64) || has(Modifier::Base64Offset);
    let utf16 = [Modifier::Wide, Modifier::Utf16be, Modifier::Utf16]
        .into_iter()
        .find(|m| has(*m));
    if utf16.is_some() && !b64 {
        return Err(Unsupported::new(
            "`wide`/`utf16` without `base64` compares raw UTF-16 bytes, which text fields do not hold",
        ));
    }
    if !b64 {
        return Ok(Variants {
            patterns,
            encoded: false,
        });
    }
    let mut out = Vec::new();
    for p in &patterns {
        let text = plain_text(p).ok_or_else(|| {
            Unsupported::new("`base64`/`base64offset` values cannot hold wildcards")
        })?;
        let bytes = match utf16 {
            Some(Modifier::Wide) => text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            Some(Modifier::Utf16be) => text.encode_utf16().flat_map(u16::to_be_bytes).collect(),
            Some(_) => [0xff_u8, 0xfe]
                .into_iter()
                .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
                .collect(),
            None => text.into_bytes(),
        };
        if has(Modifier::Base64Offset) {
            out.extend(base64_offsets(&bytes).into_iter().map(|v| plain(&v)));
        } else {
            out.push(plain(&BASE64.encode(&bytes)));
        }
    }
    Ok(Variants {
        patterns: out,
        encoded: true,
    })
}

fn plain_text(parts: &[StringPart]) -> Option<String> {
    parts
        .iter()
        .map(|p| match p {
            StringPart::Plain(s) => Some(s.as_str()),
            StringPart::Special(_) => None,
        })
        .collect()
}

/// The three encodings of `bytes` at offsets 0, 1 and 2 of a base64 stream, without the
/// characters that depend on the neighbouring bytes (pySigma's `base64offset`).
pub(crate) fn base64_offsets(bytes: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END_TRIM: [usize; 3] = [0, 3, 2];
    (0..3)
        .map(|i| {
            let mut padded = vec![b' '; i];
            padded.extend_from_slice(bytes);
            let enc = BASE64.encode(&padded);
            let trim = END_TRIM[(bytes.len() + i) % 3];
            let end = enc.len().saturating_sub(trim);
            enc.get(START[i]..end).unwrap_or("").to_string()
        })
        .collect()
}

/// Dashes Windows command lines accept in place of `-` or `/` before an option.
const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];

/// Every spelling of `parts` with each option prefix (`-x`, `/x` at the start of a word)
/// replaced by each of [`DASHES`] (pySigma's `windash`).
fn windash(parts: &[StringPart]) -> Vec<Vec<StringPart>> {
    let mut out: Vec<Vec<StringPart>> = vec![Vec::new()];
    for part in parts {
        let StringPart::Plain(s) = part else {
            for o in &mut out {
                o.push(part.clone());
            }
            continue;
        };
        let chars: Vec<char> = s.chars().collect();
        let mut spellings: Vec<String> = vec![String::new()];
        for (i, c) in chars.iter().enumerate() {
            let word = |c: &char| c.is_alphanumeric() || *c == '_';
            let at_option = matches!(c, '-' | '/')
                && (i == 0 || !word(&chars[i - 1]))
                && chars.get(i + 1).is_some_and(word);
            if at_option && spellings.len() < 125 {
                spellings = spellings
                    .iter()
                    .flat_map(|s| {
                        DASHES.iter().map(move |d| {
                            let mut n = s.clone();
                            n.push(*d);
                            n
                        })
                    })
                    .collect();
            } else {
                for s in &mut spellings {
                    s.push(*c);
                }
            }
        }
        out = out
            .iter()
            .flat_map(|o| {
                spellings.iter().map(move |s| {
                    let mut n = o.clone();
                    n.push(StringPart::Plain(s.clone()));
                    n
                })
            })
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64offset_matches_pysigma() {
        // pySigma: `base64offset` of "/c " → "L2Mg", "9jI", "vYy".
        assert_eq!(base64_offsets(b"/c "), vec!["L2Mg", "9jI", "vYy"]);
    }

    #[test]
    fn windash_spells_every_dash_at_option_starts_only() {
        let v = windash(&plain("net user -add a-b"));
        let texts: Vec<String> = v.iter().filter_map(|p| plain_text(p)).collect();
        assert_eq!(texts.len(), 5);
        assert!(texts.contains(&"net user /add a-b".to_string()));
        assert!(texts.contains(&"net user \u{2015}add a-b".to_string()));
    }
}
