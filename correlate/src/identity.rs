//! Identity resolution: one `identity_id` per person across AD, Entra ID and AWS.
//!
//! Each finding carries `identity_keys`, the identifiers it asserts for one principal (a
//! Graph `userEvidence` gives UPN, on-premises SID, sAMAccountName and Entra object id
//! together; a Windows logon gives name, domain and SID). Directory objects do the same with
//! authority: an AD user's objectSid, objectGUID, `DOMAIN\sam` and UPN; an Entra user's
//! object id, UPN, `onPremisesSecurityIdentifier` and `onPremisesImmutableId` (the AD
//! objectGUID); an Identity Center user's id, user name and e-mails. Keys that appear
//! together in one record or object belong to one account, and accounts that share a key
//! are one identity: the resolver joins them with a union-find and records, for every join
//! it makes, the [`Link`] and its reason. Display names never link anything: two people may
//! share one.
//!
//! Ids are stable. A new identity is named by its most recognisable key (a UPN, else
//! `domain\sam`, else the Entra id, else the SID) and that name is stored for every key. When
//! later records add keys, the identity keeps its id; when a record links two known
//! identities, the one assigned first survives and the other becomes an alias of it, so that
//! detections and incidents already keyed on either still resolve.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use cairn_ingest::normalize::identity::{display_key, key_rank};
use cairn_ingest::{DirectoryKind, DirectoryObject, Finding};

/// An identity id already assigned to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    /// The identity id.
    pub identity_id: String,
    /// When the key was first assigned to it (the older id wins when identities join).
    pub assigned_at: DateTime<Utc>,
}

/// What a resolution changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Findings whose `identity_id` changed.
    pub findings_changed: usize,
    /// Keys to (re)assign: key → identity id.
    pub assignments: BTreeMap<String, String>,
    /// Identity ids absorbed by another: old id → surviving id.
    pub aliases: BTreeMap<String, String>,
    /// The joins this resolution made between keys not yet known to be one identity.
    pub links: Vec<Link>,
    /// Joins refused because they would have made two accounts (different SIDs, GUIDs or
    /// Entra object ids) one person.
    pub conflicts: Vec<Conflict>,
}

/// What the store knows of identities beyond this window: the anchor keys of each identity
/// id (so a reused name cannot carry a new account into an old identity) and every id in use.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Identity id → its anchor keys (`sid:`, `guid:`, `aad:`).
    pub anchors: HashMap<String, Vec<String>>,
    /// Every identity id assigned so far.
    pub ids: std::collections::HashSet<String>,
}

/// Why two identity keys are one identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Link {
    /// One key.
    pub a: String,
    /// The other key.
    pub b: String,
    /// What said they are one account ("one user in directory ad: Alice Smith", "named
    /// together in defender record da123").
    pub reason: String,
}

/// Key types that name exactly one account. Two different values of one type are two
/// accounts: no name key (UPN, e-mail, `DOMAIN\\sam`) joins them, because names are reused
/// (a leaver's `jsmith` given to a new hire) and can be chosen by whoever writes the record;
/// only an operator's override can.
const ANCHOR_TYPES: &[&str] = &["sid", "guid", "aad"];

fn is_anchor(key: &str) -> bool {
    key.split_once(':')
        .is_some_and(|(t, _)| ANCHOR_TYPES.contains(&t))
}

/// Whether two sets of anchor keys can be one identity: for every anchor type both name,
/// they share a value.
fn compatible(a: &[String], b: &[String]) -> bool {
    ANCHOR_TYPES.iter().all(|t| {
        let of = |set: &[String]| -> Vec<String> {
            set.iter()
                .filter(|k| k.split_once(':').map(|(kt, _)| kt) == Some(*t))
                .cloned()
                .collect()
        };
        let (x, y) = (of(a), of(b));
        x.is_empty() || y.is_empty() || x.iter().any(|k| y.contains(k))
    })
}

/// Disjoint sets over interned identity keys. Each root knows its set's anchor keys seen in
/// this pass (`anchors`) and the anchors the store holds for the identities its keys were
/// assigned to before (`stored`).
#[derive(Default)]
struct UnionFind {
    parent: Vec<usize>,
    index: HashMap<String, usize>,
    keys: Vec<String>,
    anchors: Vec<Vec<String>>,
    stored: Vec<Vec<String>>,
    /// Key → stored anchors of the identity it is assigned to.
    seeds: HashMap<String, Vec<String>>,
}

/// Who asserts that keys are one account, which decides what may refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assertion {
    /// An operator's override: always joins.
    Override,
    /// A directory account (current truth): refused only by this pass's anchors, so a
    /// directory can hand a leaver's name to a new hire.
    Directory,
    /// A record: refused also by the anchors stored for the keys' identities, so a record
    /// naming two people by name only cannot join them.
    Record,
}

fn union_of(a: &[String], b: &[String]) -> Vec<String> {
    let mut out = a.to_vec();
    out.extend(b.iter().filter(|k| !a.contains(k)).cloned());
    out
}

/// Two keys a record asserted to be one account, refused because their sets hold different
/// accounts' anchors.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Conflict {
    /// One key.
    pub a: String,
    /// The other key.
    pub b: String,
    /// What asserted it.
    pub reason: String,
}

impl UnionFind {
    fn intern(&mut self, key: &str) -> usize {
        if let Some(i) = self.index.get(key) {
            return *i;
        }
        let i = self.parent.len();
        self.parent.push(i);
        self.index.insert(key.to_string(), i);
        self.keys.push(key.to_string());
        self.anchors.push(if is_anchor(key) {
            vec![key.to_string()]
        } else {
            Vec::new()
        });
        self.stored
            .push(self.seeds.get(key).cloned().unwrap_or_default());
        i
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    /// Joins the sets of `a` and `b` unless they hold different accounts' anchors (see
    /// [`Assertion`]). `Ok(true)` when they were apart and now are one.
    fn union(&mut self, a: usize, b: usize, by: Assertion) -> Result<bool, ()> {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return Ok(false);
        }
        let allowed = match by {
            Assertion::Override => true,
            Assertion::Directory => compatible(&self.anchors[ra], &self.anchors[rb]),
            Assertion::Record => compatible(
                &union_of(&self.anchors[ra], &self.stored[ra]),
                &union_of(&self.anchors[rb], &self.stored[rb]),
            ),
        };
        if !allowed {
            return Err(());
        }
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[hi] = lo;
        let moved = std::mem::take(&mut self.anchors[hi]);
        self.anchors[lo] = union_of(&self.anchors[lo], &moved);
        let moved = std::mem::take(&mut self.stored[hi]);
        self.stored[lo] = union_of(&self.stored[lo], &moved);
        Ok(true)
    }

    /// Joins all `keys` as one account, recording a link for every join that was news and a
    /// conflict for every join refused.
    fn assert_same(
        &mut self,
        keys: &[String],
        by: Assertion,
        reason: impl Fn() -> String,
        links: &mut Vec<Link>,
        conflicts: &mut Vec<Conflict>,
    ) {
        // Anchors first: an account's own ids join before any of its names can pull one of
        // them into another account's set (an admin account whose `mail` is the person's UPN).
        let mut keys: Vec<String> = keys.to_vec();
        keys.sort_by_key(|k| !is_anchor(k));
        let keys = &keys[..];
        let ids: Vec<usize> = keys.iter().map(|k| self.intern(k)).collect();
        for (pair, names) in ids.windows(2).zip(keys.windows(2)) {
            match self.union(pair[0], pair[1], by) {
                Ok(true) => links.push(Link {
                    a: names[0].clone(),
                    b: names[1].clone(),
                    reason: reason(),
                }),
                Ok(false) => {}
                Err(()) => conflicts.push(Conflict {
                    a: names[0].clone(),
                    b: names[1].clone(),
                    reason: reason(),
                }),
            }
        }
    }
}

/// Rank of an id's form, for ties between identities assigned in the same pass: a UPN reads
/// best, then `domain\sam`, then the rest.
fn id_rank(id: &str) -> u8 {
    if id.contains('@') {
        0
    } else if id.contains('\\') {
        1
    } else {
        2
    }
}

/// Resolves `identity_id` for every finding in place, given the directory's accounts, the ids
/// already assigned to (some of) the keys and the store's `catalog` of identities.
pub fn resolve(
    findings: &mut [Finding],
    directory: &[DirectoryObject],
    known: &HashMap<String, Assigned>,
    catalog: &Catalog,
) -> Resolution {
    let mut uf = UnionFind {
        seeds: known
            .iter()
            .filter_map(|(k, a)| Some((k.clone(), catalog.anchors.get(&a.identity_id)?.clone())))
            .collect(),
        ..UnionFind::default()
    };
    let mut links = Vec::new();
    let mut conflicts = Vec::new();
    // Directory objects first, in a fixed order, so that links name the directory's word
    // before an event's whenever both say the same.
    let mut accounts: Vec<&DirectoryObject> = directory
        .iter()
        .filter(|o| o.kind != DirectoryKind::Group)
        .collect();
    accounts.sort_by(|a, b| (&a.source, &a.uid).cmp(&(&b.source, &b.uid)));
    // Where a directory lists a key among its account's keys: its UPN before its e-mail.
    let mut directory_position: HashMap<&str, usize> = HashMap::new();
    for o in accounts {
        let by = if o.kind == DirectoryKind::Override {
            Assertion::Override
        } else {
            Assertion::Directory
        };
        uf.assert_same(&o.keys, by, || o.reason(), &mut links, &mut conflicts);
        for (i, k) in o.keys.iter().enumerate() {
            directory_position.entry(k.as_str()).or_insert(i);
        }
    }
    let mut order: Vec<usize> = (0..findings.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&findings[a], &findings[b]);
        (a.time, &a.source, &a.finding_uid).cmp(&(b.time, &b.source, &b.finding_uid))
    });
    for i in order {
        let f = &findings[i];
        uf.assert_same(
            &f.identity_keys,
            Assertion::Record,
            || format!("named together in {} record {}", f.source, f.finding_uid),
            &mut links,
            &mut conflicts,
        );
    }
    // Keys known to belong to one identity stay together even if no record in this window
    // names them together, unless this window shows them on different accounts.
    let mut by_known_id: HashMap<&str, usize> = HashMap::new();
    for i in 0..uf.keys.len() {
        if let Some(a) = known.get(&uf.keys[i]) {
            match by_known_id.get(a.identity_id.as_str()) {
                Some(&j) => {
                    let _ = uf.union(i, j, Assertion::Directory);
                }
                None => {
                    by_known_id.insert(a.identity_id.as_str(), i);
                }
            }
        }
    }

    // Per set: its keys, the ids already assigned in it, and its best key.
    let mut sets: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..uf.keys.len() {
        let root = uf.find(i);
        sets.entry(root).or_default().push(i);
    }
    // A join of two keys already assigned to one identity was explained when it was made.
    links.retain(|l| match (known.get(&l.a), known.get(&l.b)) {
        (Some(a), Some(b)) => a.identity_id != b.identity_id,
        _ => true,
    });
    let mut resolution = Resolution {
        links,
        conflicts,
        ..Resolution::default()
    };
    // First every set's id, then the assignments and aliases that follow from all of them.
    let mut id_of_root: HashMap<usize, String> = HashMap::new();
    let mut taken: std::collections::HashSet<String> = catalog.ids.clone();
    let mut claimed: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (root, members) in &sets {
        let set_anchors = &uf.anchors[*root];
        // An identity whose stored anchors belong to other accounts cannot be this set's,
        // even if a reused name points at it; nor can one another set already took.
        let survivor = members
            .iter()
            .filter_map(|&i| known.get(&uf.keys[i]))
            .filter(|a| fits(catalog, set_anchors, &a.identity_id))
            .filter(|a| !claimed.contains(&a.identity_id))
            .min_by(|a, b| {
                (a.assigned_at, id_rank(&a.identity_id), &a.identity_id).cmp(&(
                    b.assigned_at,
                    id_rank(&b.identity_id),
                    &b.identity_id,
                ))
            })
            .map(|a| a.identity_id.clone());
        let id = survivor.unwrap_or_else(|| {
            let best = members
                .iter()
                .map(|&i| &uf.keys[i])
                .min_by(|a, b| {
                    let pos = |k: &str| directory_position.get(k).copied().unwrap_or(usize::MAX);
                    (key_rank(a), pos(a), *a).cmp(&(key_rank(b), pos(b), *b))
                })
                .map(|k| display_key(k).to_string());
            let base = best.unwrap_or_default();
            // A new account whose name another identity already holds gets its own id.
            let mut id = base.clone();
            let mut n = 2;
            while taken.contains(&id) {
                id = format!("{base}#{n}");
                n += 1;
            }
            id
        });
        taken.insert(id.clone());
        claimed.insert(id.clone());
        id_of_root.insert(*root, id);
    }
    for (root, members) in &sets {
        let id = &id_of_root[root];
        let set_anchors = &uf.anchors[*root];
        for &i in members {
            let key = &uf.keys[i];
            match known.get(key) {
                Some(a) if &a.identity_id == id => {}
                Some(a) => {
                    // A compatible identity that lost to an older one is absorbed by it; one
                    // that holds other accounts, or is another set's id, keeps its accounts
                    // and only loses this (reused) key.
                    // Two identities whose stored accounts differ are never one by aliasing.
                    let stored = |id: &str| catalog.anchors.get(id).cloned().unwrap_or_default();
                    if fits(catalog, set_anchors, &a.identity_id)
                        && compatible(&stored(id), &stored(&a.identity_id))
                        && !claimed.contains(&a.identity_id)
                    {
                        resolution.aliases.insert(a.identity_id.clone(), id.clone());
                    }
                    resolution.assignments.insert(key.clone(), id.clone());
                }
                None => {
                    resolution.assignments.insert(key.clone(), id.clone());
                }
            }
        }
    }
    for f in findings.iter_mut() {
        // The account's anchor decides when a record's names were refused to it.
        let key = f
            .identity_keys
            .iter()
            .find(|k| is_anchor(k))
            .or_else(|| f.identity_keys.first());
        let resolved = key.and_then(|k| {
            let i = *uf.index.get(k.as_str())?;
            id_of_root.get(&uf.find(i)).cloned()
        });
        if f.identity_id != resolved {
            f.identity_id = resolved;
            resolution.findings_changed += 1;
        }
    }
    resolution
}

/// Whether identity `id`'s stored anchors are compatible with a set's.
fn fits(catalog: &Catalog, set_anchors: &[String], id: &str) -> bool {
    compatible(
        set_anchors,
        catalog
            .anchors
            .get(id)
            .map(Vec::as_slice)
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_ingest::schema::CLASS_AUTHENTICATION;

    fn finding(uid: &str, keys: &[&str]) -> Finding {
        let mut f = Finding::new(
            "t",
            uid.into(),
            CLASS_AUTHENTICATION,
            Utc::now(),
            "{}".into(),
        );
        f.identity_keys = keys.iter().map(|k| k.to_string()).collect();
        f
    }

    fn known(r: &Resolution, at: i64) -> HashMap<String, Assigned> {
        r.assignments
            .iter()
            .map(|(k, id)| {
                (
                    k.clone(),
                    Assigned {
                        identity_id: id.clone(),
                        assigned_at: DateTime::from_timestamp(at, 0).expect("time"),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn keys_seen_together_join_across_sources() {
        let mut fs = vec![
            finding("ad", &["sam:offsec\\admmig", "sid:S-1-5-21-1-2-3-1111"]),
            finding("krb", &["sid:S-1-5-21-1-2-3-1111"]),
            finding(
                "graph",
                &[
                    "upn:admmig@offsec.lan",
                    "sid:S-1-5-21-1-2-3-1111",
                    "sam:offsec\\admmig",
                ],
            ),
            finding("aws", &["upn:admmig@offsec.lan"]),
            finding("other", &["sam:offsec\\bob"]),
            finding("none", &[]),
        ];
        let r = resolve(&mut fs, &[], &HashMap::new(), &Catalog::default());
        assert_eq!(r.findings_changed, 5);
        let ids: Vec<_> = fs.iter().map(|f| f.identity_id.as_deref()).collect();
        assert_eq!(
            ids,
            [
                Some("admmig@offsec.lan"),
                Some("admmig@offsec.lan"),
                Some("admmig@offsec.lan"),
                Some("admmig@offsec.lan"),
                Some("offsec\\bob"),
                None
            ]
        );
        assert!(r.aliases.is_empty());
        let again = resolve(&mut fs, &[], &known(&r, 0), &Catalog::default());
        assert_eq!(
            again,
            Resolution::default(),
            "resolving again changes nothing"
        );
    }

    #[test]
    fn an_identity_keeps_its_id_when_later_records_add_keys() {
        let mut ad = vec![finding(
            "ad",
            &["sam:offsec\\admmig", "sid:S-1-5-21-1-2-3-1111"],
        )];
        let first = resolve(&mut ad, &[], &HashMap::new(), &Catalog::default());
        assert_eq!(ad[0].identity_id.as_deref(), Some("offsec\\admmig"));
        let mut later = vec![
            finding("ad", &["sam:offsec\\admmig", "sid:S-1-5-21-1-2-3-1111"]),
            finding(
                "graph",
                &["upn:admmig@offsec.lan", "sid:S-1-5-21-1-2-3-1111"],
            ),
            finding("aws", &["upn:admmig@offsec.lan"]),
        ];
        let second = resolve(&mut later, &[], &known(&first, 0), &Catalog::default());
        assert!(
            later
                .iter()
                .all(|f| f.identity_id.as_deref() == Some("offsec\\admmig"))
        );
        assert_eq!(
            second
                .assignments
                .get("upn:admmig@offsec.lan")
                .map(String::as_str),
            Some("offsec\\admmig")
        );
        assert!(second.aliases.is_empty());
    }

    #[test]
    fn when_two_known_identities_join_the_older_survives_and_the_other_is_an_alias() {
        let mut ad = vec![finding(
            "ad",
            &["sam:offsec\\admmig", "sid:S-1-5-21-1-2-3-1111"],
        )];
        let mut known_ids = known(
            &resolve(&mut ad, &[], &HashMap::new(), &Catalog::default()),
            100,
        );
        let mut aws = vec![finding("aws", &["upn:admmig@offsec.lan"])];
        known_ids.extend(known(
            &resolve(&mut aws, &[], &HashMap::new(), &Catalog::default()),
            200,
        ));
        let mut link = vec![finding(
            "graph",
            &["upn:admmig@offsec.lan", "sid:S-1-5-21-1-2-3-1111"],
        )];
        let r = resolve(&mut link, &[], &known_ids, &Catalog::default());
        assert_eq!(link[0].identity_id.as_deref(), Some("offsec\\admmig"));
        assert_eq!(
            r.aliases.get("admmig@offsec.lan").map(String::as_str),
            Some("offsec\\admmig")
        );
    }

    #[test]
    fn result_does_not_depend_on_record_order() {
        let make = || {
            vec![
                finding("a", &["sid:S-1-5-21-9-9-9-500"]),
                finding("b", &["sam:corp\\x", "sid:S-1-5-21-9-9-9-500"]),
                finding(
                    "c",
                    &["aad:00000000-0000-0000-0000-000000000001", "sam:corp\\x"],
                ),
            ]
        };
        let mut forward = make();
        let mut backward = make();
        backward.reverse();
        resolve(&mut forward, &[], &HashMap::new(), &Catalog::default());
        resolve(&mut backward, &[], &HashMap::new(), &Catalog::default());
        backward.reverse();
        let a: Vec<_> = forward.iter().map(|f| f.identity_id.clone()).collect();
        let b: Vec<_> = backward.iter().map(|f| f.identity_id.clone()).collect();
        assert_eq!(a, b);
        assert_eq!(a[0].as_deref(), Some("corp\\x"));
    }

    fn account(source: &str, uid: &str, keys: &[&str], kind: DirectoryKind) -> DirectoryObject {
        let mut o = DirectoryObject::new(source, "active_directory", uid, kind);
        o.keys = keys.iter().map(|k| k.to_string()).collect();
        o
    }

    fn catalog_of(r: &Resolution) -> Catalog {
        let mut c = Catalog::default();
        for (k, id) in &r.assignments {
            c.ids.insert(id.clone());
            if is_anchor(k) {
                c.anchors.entry(id.clone()).or_default().push(k.clone());
            }
        }
        c
    }

    #[test]
    fn a_reused_name_does_not_carry_a_new_account_into_the_leavers_identity() {
        let leaver = account(
            "ad",
            "ga",
            &[
                "sid:S-1-5-21-1-2-3-1001",
                "guid:aaaa",
                "sam:corp\\jsmith",
                "upn:jsmith@corp.example",
            ],
            DirectoryKind::User,
        );
        let first = resolve(&mut [], &[leaver], &HashMap::new(), &Catalog::default());
        assert_eq!(first.assignments["sam:corp\\jsmith"], "jsmith@corp.example");

        // The leaver's account is gone; a new hire gets the same names.
        let new_hire = account(
            "ad",
            "gb",
            &[
                "sid:S-1-5-21-1-2-3-2002",
                "guid:bbbb",
                "sam:corp\\jsmith",
                "upn:jsmith@corp.example",
            ],
            DirectoryKind::User,
        );
        let mut logon = vec![finding(
            "e1",
            &["sam:corp\\jsmith", "sid:S-1-5-21-1-2-3-2002"],
        )];
        let second = resolve(
            &mut logon,
            &[new_hire],
            &known(&first, 0),
            &catalog_of(&first),
        );
        assert_eq!(
            logon[0].identity_id.as_deref(),
            Some("jsmith@corp.example#2")
        );
        assert_eq!(
            second.assignments["sam:corp\\jsmith"],
            "jsmith@corp.example#2"
        );
        assert!(
            second.aliases.is_empty(),
            "the leaver's identity is not absorbed"
        );
    }

    #[test]
    fn records_cannot_join_two_sids_but_an_override_can() {
        let mut fs = vec![
            finding("a", &["sam:corp\\x", "sid:S-1-5-21-1-2-3-1001"]),
            finding("b", &["sam:corp\\x", "sid:S-1-5-21-1-2-3-1002"]),
        ];
        let r = resolve(&mut fs, &[], &HashMap::new(), &Catalog::default());
        assert_eq!(r.conflicts.len(), 1, "{:?}", r.conflicts);
        assert_ne!(fs[0].identity_id, fs[1].identity_id);

        let override_ = account(
            "overrides",
            "person-1",
            &["sid:S-1-5-21-1-2-3-1001", "sid:S-1-5-21-1-2-3-1002"],
            DirectoryKind::Override,
        );
        let r = resolve(&mut fs, &[override_], &HashMap::new(), &Catalog::default());
        assert!(r.conflicts.is_empty(), "{:?}", r.conflicts);
        assert_eq!(fs[0].identity_id, fs[1].identity_id);
    }

    #[test]
    fn a_record_naming_two_known_people_by_name_only_does_not_join_them() {
        let x = account(
            "entra",
            "p",
            &[
                "aad:00000000-0000-4000-8000-00000000000p",
                "upn:alice@corp.example",
            ],
            DirectoryKind::User,
        );
        let y = account(
            "entra",
            "q",
            &[
                "aad:00000000-0000-4000-8000-00000000000q",
                "upn:a.smith@corp.example",
            ],
            DirectoryKind::User,
        );
        let first = resolve(&mut [], &[x, y], &HashMap::new(), &Catalog::default());
        let mut record = vec![finding(
            "aws",
            &["upn:alice@corp.example", "upn:a.smith@corp.example"],
        )];
        let second = resolve(&mut record, &[], &known(&first, 0), &catalog_of(&first));
        assert_eq!(second.conflicts.len(), 1, "{:?}", second.conflicts);
        assert!(second.aliases.is_empty(), "{:?}", second.aliases);
        assert!(second.assignments.is_empty(), "{:?}", second.assignments);
    }

    #[test]
    fn an_accounts_own_ids_join_before_a_name_shared_with_another_account() {
        // The admin account is read first and carries Alice's address as its mail.
        let admin = account(
            "ad",
            "adm",
            &["upn:alice@corp.example", "sid:S-1-5-21-1-2-3-2001"],
            DirectoryKind::User,
        );
        let alice = account(
            "entra",
            "alice",
            &[
                "upn:alice@corp.example",
                "aad:00000000-0000-4000-8000-0000000000a1",
                "sid:S-1-5-21-1-2-3-1001",
            ],
            DirectoryKind::User,
        );
        let r = resolve(
            &mut [],
            &[admin, alice],
            &HashMap::new(),
            &Catalog::default(),
        );
        assert_eq!(
            r.assignments["aad:00000000-0000-4000-8000-0000000000a1"],
            r.assignments["sid:S-1-5-21-1-2-3-1001"],
            "Alice's Entra id stays with her SID"
        );
        assert_ne!(
            r.assignments["sid:S-1-5-21-1-2-3-1001"],
            r.assignments["sid:S-1-5-21-1-2-3-2001"]
        );
        assert_eq!(r.conflicts.len(), 1, "{:?}", r.conflicts);
    }
}
