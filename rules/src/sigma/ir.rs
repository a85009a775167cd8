//! A compiled Sigma detection: the rule's condition as a tree of field tests, with the log
//! source's field names already resolved.
//!
//! It is what the compiler's front end (conditions, modifiers, field mappings) hands to its two
//! back ends: [`Predicate::to_sql`] for the live correlator, which runs rules as SQL over the
//! `findings` window, and `cairn hunt` (crate `cairn-hunt`), which runs thousands of rules over
//! files with shared string matchers. Both read the same tree, so they cannot disagree on what
//! a modifier means.
//!
//! Semantics every back end keeps: text compares case-insensitively unless [`Leaf::Text`] says
//! `cased` (its pattern is then kept as written, otherwise folded to lower case); a test of a
//! missing field is *false*, never unknown, so `not filter` holds for an event without the
//! filter's field.

use serde::{Deserialize, Serialize};

use super::value::{balanced, quote};

/// Where a leaf reads its value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FieldRef {
    /// A typed column of `findings` (e.g. `event_code` for Windows `EventID`).
    Column(String),
    /// A key of the record's `fields` map (as the normalizer kept it).
    Map(String),
    /// Sigma keywords: the record's values and typed text columns, one per line.
    Keywords,
}

impl FieldRef {
    /// The SQL expression reading this field over `findings`.
    pub fn to_sql(&self) -> String {
        match self {
            FieldRef::Column(c) => c.clone(),
            FieldRef::Map(k) => format!("fields[{}]", quote(k)),
            FieldRef::Keywords => KEYWORD_TEXT.to_string(),
        }
    }
}

/// The text keywords search: the event's values and its typed text columns, one per line.
/// Normalizers that keep only some of a record's fields (Entra, ASFF) limit what keywords can
/// find there.
pub const KEYWORD_TEXT: &str = "concat_ws('\n', title, actor_user, user_name, src_ip, \
     device_hostname, resource_uid, array_to_string(map_values(fields), '\n'))";

/// The typed text columns keywords search, in [`KEYWORD_TEXT`]'s order (before the values of
/// `fields`).
pub const KEYWORD_COLUMNS: [&str; 6] = [
    "title",
    "actor_user",
    "user_name",
    "src_ip",
    "device_hostname",
    "resource_uid",
];

/// Where in the value a text pattern must be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Position {
    /// The whole value.
    Exact,
    /// Anywhere.
    Contains,
    /// At the start.
    StartsWith,
    /// At the end.
    EndsWith,
}

/// One piece of a text pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Piece {
    /// Literal text.
    Lit(String),
    /// `*`: any run of characters, empty included.
    AnyRun,
    /// `?`: exactly one character.
    AnyChar,
}

/// A numeric comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Cmp {
    /// `gt`.
    Gt,
    /// `gte`.
    Gte,
    /// `lt`.
    Lt,
    /// `lte`.
    Lte,
}

impl Cmp {
    fn sql(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Gte => ">=",
            Cmp::Lt => "<",
            Cmp::Lte => "<=",
        }
    }

    /// Whether `left op right`, in the total order Arrow compares floats with (NaN above
    /// everything, -0 below +0), as the SQL back end does.
    pub fn holds(self, left: f64, right: f64) -> bool {
        let o = left.total_cmp(&right);
        match self {
            Cmp::Gt => o.is_gt(),
            Cmp::Gte => o.is_ge(),
            Cmp::Lt => o.is_lt(),
            Cmp::Lte => o.is_le(),
        }
    }

    /// A field's text as a number, as SQL's `try_cast(… AS DOUBLE)` reads it (surrounding
    /// whitespace allowed); `None` where the cast gives NULL.
    pub fn number(text: &str) -> Option<f64> {
        use arrow::compute::kernels::cast_utils::Parser;
        arrow::datatypes::Float64Type::parse(text)
    }
}

/// One test of one field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Leaf {
    /// The field is present (`exists: true`; `exists: false` is its negation).
    Exists(FieldRef),
    /// The field is missing or empty (a `null` value).
    Empty(FieldRef),
    /// A text comparison. Unless `cased`, the pattern is in lower case and the value is folded
    /// before comparing.
    Text {
        /// The field.
        field: FieldRef,
        /// Where the pattern must be.
        position: Position,
        /// Case-sensitive.
        cased: bool,
        /// The pattern, wildcards included.
        pattern: Vec<Piece>,
    },
    /// The value read as a number compared with a constant (`f64` bits, so leaves can be
    /// hashed and shared).
    Number {
        /// The field.
        field: FieldRef,
        /// The comparison.
        op: Cmp,
        /// `f64::to_bits` of the constant.
        value_bits: u64,
    },
    /// Two fields are equal (`fieldref`).
    FieldEq {
        /// The field.
        field: FieldRef,
        /// The field it must equal.
        other: FieldRef,
        /// Case-sensitive.
        cased: bool,
    },
    /// The value is an IP address in a network (`cidr`).
    Cidr {
        /// The field.
        field: FieldRef,
        /// The network, as written (checked at compile time).
        network: String,
    },
    /// The value matches a regular expression somewhere (`re`), flags included as `(?i)` etc.
    Regex {
        /// The field.
        field: FieldRef,
        /// The pattern, in Rust `regex` syntax.
        pattern: String,
    },
}

impl Leaf {
    /// The field this leaf reads first.
    pub fn field(&self) -> &FieldRef {
        match self {
            Leaf::Exists(f) | Leaf::Empty(f) => f,
            Leaf::Text { field, .. }
            | Leaf::Number { field, .. }
            | Leaf::FieldEq { field, .. }
            | Leaf::Cidr { field, .. }
            | Leaf::Regex { field, .. } => field,
        }
    }

    /// The leaf as a SQL boolean expression over `findings` (never NULL).
    pub fn to_sql(&self) -> String {
        match self {
            Leaf::Exists(f) => format!("({} IS NOT NULL)", f.to_sql()),
            Leaf::Empty(f) => {
                let c = f.to_sql();
                format!("({c} IS NULL OR {c} = '')")
            }
            Leaf::Text {
                field,
                position,
                cased,
                pattern,
            } => text_sql(&field.to_sql(), *position, *cased, pattern),
            Leaf::Number {
                field,
                op,
                value_bits,
            } => format!(
                "coalesce(try_cast({} AS DOUBLE) {} {:?}, false)",
                field.to_sql(),
                op.sql(),
                f64::from_bits(*value_bits)
            ),
            Leaf::FieldEq {
                field,
                other,
                cased: true,
            } => format!("coalesce({} = {}, false)", field.to_sql(), other.to_sql()),
            Leaf::FieldEq { field, other, .. } => format!(
                "coalesce(lower({}) = lower({}), false)",
                field.to_sql(),
                other.to_sql()
            ),
            Leaf::Cidr { field, network } => format!(
                "coalesce(cidr_match({}, {}), false)",
                field.to_sql(),
                quote(network)
            ),
            Leaf::Regex { field, pattern } => format!(
                "coalesce(regexp_like({}, {}), false)",
                field.to_sql(),
                quote(pattern)
            ),
        }
    }
}

/// A rule's condition over one log source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Predicate {
    /// One field test.
    Leaf(Leaf),
    /// Every one holds.
    And(Vec<Predicate>),
    /// Any one holds.
    Or(Vec<Predicate>),
    /// It does not hold.
    Not(Box<Predicate>),
    /// At least `n` of them hold (`2 of selection_*`).
    AtLeast(usize, Vec<Predicate>),
}

impl Predicate {
    /// `parts` joined by AND (one part stays itself).
    pub fn and(mut parts: Vec<Predicate>) -> Predicate {
        if parts.len() == 1 {
            parts.remove(0)
        } else {
            Predicate::And(parts)
        }
    }

    /// `parts` joined by OR (one part stays itself).
    pub fn or(mut parts: Vec<Predicate>) -> Predicate {
        if parts.len() == 1 {
            parts.remove(0)
        } else {
            Predicate::Or(parts)
        }
    }

    /// The predicate as a SQL boolean expression over `findings`. Long AND/OR lists become
    /// balanced trees: a Sigma list of hundreds of values would otherwise parse as a chain that
    /// deep, and planning recurses on it.
    pub fn to_sql(&self) -> String {
        match self {
            Predicate::Leaf(l) => l.to_sql(),
            Predicate::And(xs) => balanced(&xs.iter().map(Self::to_sql).collect::<Vec<_>>(), "AND"),
            Predicate::Or(xs) => balanced(&xs.iter().map(Self::to_sql).collect::<Vec<_>>(), "OR"),
            Predicate::Not(x) => format!("(NOT {})", x.to_sql()),
            Predicate::AtLeast(n, xs) => {
                let sum: Vec<String> = xs
                    .iter()
                    .map(|p| format!("CASE WHEN {} THEN 1 ELSE 0 END", p.to_sql()))
                    .collect();
                format!("(({}) >= {n})", sum.join(" + "))
            }
        }
    }

    /// Calls `f` on every leaf.
    pub fn visit_leaves<'a>(&'a self, f: &mut impl FnMut(&'a Leaf)) {
        match self {
            Predicate::Leaf(l) => f(l),
            Predicate::And(xs) | Predicate::Or(xs) | Predicate::AtLeast(_, xs) => {
                for x in xs {
                    x.visit_leaves(f);
                }
            }
            Predicate::Not(x) => x.visit_leaves(f),
        }
    }
}

/// `column` compared with one pattern.
fn text_sql(column: &str, position: Position, cased: bool, parts: &[Piece]) -> String {
    let wild = parts.iter().any(|p| !matches!(p, Piece::Lit(_)));
    let subject = if cased {
        column.to_string()
    } else {
        format!("lower({column})")
    };
    let literal = || {
        parts
            .iter()
            .map(|p| match p {
                Piece::Lit(s) => s.as_str(),
                _ => "",
            })
            .collect::<String>()
    };
    if !wild {
        let text = quote(&literal());
        return match position {
            Position::Exact => format!("coalesce({subject} = {text}, false)"),
            Position::Contains => format!("coalesce(strpos({subject}, {text}) > 0, false)"),
            Position::StartsWith => format!("coalesce(starts_with({subject}, {text}), false)"),
            Position::EndsWith => format!("coalesce(ends_with({subject}, {text}), false)"),
        };
    }
    let mut like = String::new();
    if matches!(position, Position::Contains | Position::EndsWith) {
        like.push('%');
    }
    for p in parts {
        match p {
            Piece::Lit(s) => {
                for c in s.chars() {
                    if matches!(c, '%' | '_' | '\\') {
                        like.push('\\');
                    }
                    like.push(c);
                }
            }
            Piece::AnyRun => like.push('%'),
            Piece::AnyChar => like.push('_'),
        }
    }
    if matches!(position, Position::Contains | Position::StartsWith) {
        like.push('%');
    }
    format!(
        "coalesce({subject} LIKE {} ESCAPE '\\', false)",
        quote(&like)
    )
}
