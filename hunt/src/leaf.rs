//! Field tests on one event's values.

use cairn_rules::sigma::ir::{Cmp, Piece};

use crate::index::LeafProgram;

/// A text comparison, its pattern already folded when it is case-insensitive.
#[derive(Debug, Clone)]
pub(crate) enum TextTest {
    Equals(String),
    Contains(String),
    StartsWith(String),
    EndsWith(String),
    Glob(Glob),
}

impl TextTest {
    pub fn holds(&self, value: &str) -> bool {
        match self {
            TextTest::Equals(s) => value == s,
            TextTest::Contains(s) => value.contains(s.as_str()),
            TextTest::StartsWith(s) => value.starts_with(s.as_str()),
            TextTest::EndsWith(s) => value.ends_with(s.as_str()),
            TextTest::Glob(g) => g.matches(value),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(String),
    One,
    Star,
}

/// A pattern over the whole value with `*` (any run) and `?` (one character), as SQL's `LIKE`
/// with `%` and `_`.
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    toks: Vec<Tok>,
}

impl Glob {
    pub fn new(pieces: &[Piece]) -> Glob {
        let mut toks = Vec::new();
        for p in pieces {
            match p {
                Piece::Lit(s) if s.is_empty() => {}
                Piece::Lit(s) => toks.push(Tok::Lit(s.clone())),
                Piece::AnyChar => toks.push(Tok::One),
                // `**` is `*`.
                Piece::AnyRun if toks.last() == Some(&Tok::Star) => {}
                Piece::AnyRun => toks.push(Tok::Star),
            }
        }
        Glob { toks }
    }

    /// Whether the whole of `value` matches: the classic wildcard walk that backtracks only
    /// to the last `*` (enough, since a later `*` can absorb whatever an earlier one could).
    pub fn matches(&self, value: &str) -> bool {
        let b = value.as_bytes();
        let (mut t, mut i) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        loop {
            if let Some(tok) = self.toks.get(t) {
                match tok {
                    Tok::Star => {
                        star = Some((t + 1, i));
                        t += 1;
                        continue;
                    }
                    Tok::One if i < b.len() => {
                        i += char_len(b[i]);
                        t += 1;
                        continue;
                    }
                    Tok::Lit(s) if b[i..].starts_with(s.as_bytes()) => {
                        i += s.len();
                        t += 1;
                        continue;
                    }
                    _ => {}
                }
            } else if i == b.len() {
                return true;
            }
            match star {
                Some((after, from)) if from < b.len() => {
                    let next = from + char_len(b[from]);
                    star = Some((after, next));
                    t = after;
                    i = next;
                }
                _ => return false,
            }
        }
    }
}

/// Bytes of the UTF-8 character starting with `lead`.
fn char_len(lead: u8) -> usize {
    match lead {
        0..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// An event's values, as a leaf reads them.
pub(crate) trait Values {
    /// The field's value, when present.
    fn get(&self, field: u32) -> Option<&str>;
    /// The field's value in lower case, when present.
    fn lower(&self, field: u32) -> Option<&str>;
}

/// Whether `leaf` holds on an event; a missing field makes every test but `Empty` false.
pub(crate) fn holds(leaf: &LeafProgram, v: &impl Values) -> bool {
    match leaf {
        LeafProgram::Exists(f) => v.get(*f).is_some(),
        LeafProgram::Empty(f) => v.get(*f).is_none_or(str::is_empty),
        LeafProgram::Text { field, cased, test } => {
            let value = if *cased {
                v.get(*field)
            } else {
                v.lower(*field)
            };
            value.is_some_and(|x| test.holds(x))
        }
        LeafProgram::Number { field, op, value } => v
            .get(*field)
            .and_then(Cmp::number)
            .is_some_and(|x| op.holds(x, *value)),
        LeafProgram::FieldEq {
            field,
            other,
            cased: true,
        } => matches!((v.get(*field), v.get(*other)), (Some(a), Some(b)) if a == b),
        LeafProgram::FieldEq { field, other, .. } => {
            matches!((v.lower(*field), v.lower(*other)), (Some(a), Some(b)) if a == b)
        }
        LeafProgram::Cidr { field, network } => v
            .get(*field)
            .and_then(|x| cairn_rules::udf::cidr_contains(network, x))
            .unwrap_or(false),
        LeafProgram::Regex { field, regex } => v.get(*field).is_some_and(|x| regex.is_match(x)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        let pieces: Vec<Piece> = p
            .chars()
            .map(|c| match c {
                '*' => Piece::AnyRun,
                '?' => Piece::AnyChar,
                c => Piece::Lit(c.to_string()),
            })
            .collect();
        Glob::new(&pieces)
    }

    #[test]
    fn globs_match_like_sql_like() {
        for (p, v, want) in [
            ("*\\cmd.exe", "c:\\windows\\cmd.exe", true),
            ("*\\cmd.exe", "c:\\windows\\cmd.exe.bak", false),
            ("a*b*c", "a-x-b-y-c", true),
            ("a*b*c", "a-x-c-y-b", false),
            ("a?c", "abc", true),
            ("a?c", "aéc", true),
            ("a?c", "ac", false),
            ("*", "", true),
            ("*a*a", "banana", true),
            ("*ana", "bananas", false),
            ("", "", true),
            ("", "x", false),
        ] {
            assert_eq!(glob(p).matches(v), want, "{p} on {v}");
        }
    }
}
