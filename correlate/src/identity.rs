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

/// Disjoint sets over interned identity keys.
#[derive(Default)]
struct UnionFind {
    parent: Vec<usize>,
    index: HashMap<String, usize>,
    keys: Vec<String>,
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
        i
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    /// Joins the sets of `a` and `b`; returns whether they were apart.
    fn union(&mut self, a: usize, b: usize) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[hi] = lo;
        true
    }

    /// Joins all `keys` as one account, recording a link for every join that was news.
    fn assert_same(&mut self, keys: &[String], reason: impl Fn() -> String, links: &mut Vec<Link>) {
        let ids: Vec<usize> = keys.iter().map(|k| self.intern(k)).collect();
        for (pair, names) in ids.windows(2).zip(keys.windows(2)) {
            if self.union(pair[0], pair[1]) {
                links.push(Link {
                    a: names[0].clone(),
                    b: names[1].clone(),
                    reason: reason(),
                });
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

/// Resolves `identity_id` for every finding in place, given the directory's accounts and
/// the ids already assigned to (some of) the keys.
pub fn resolve(
    findings: &mut [Finding],
    directory: &[DirectoryObject],
    known: &HashMap<String, Assigned>,
) -> Resolution {
    let mut uf = UnionFind::default();
    let mut links = Vec::new();
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
        uf.assert_same(&o.keys, || o.reason(), &mut links);
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
            || format!("named together in {} record {}", f.source, f.finding_uid),
            &mut links,
        );
    }
    // Keys known to belong to one identity stay together even if no record in this window
    // names them together.
    let mut by_known_id: HashMap<&str, usize> = HashMap::new();
    for i in 0..uf.keys.len() {
        if let Some(a) = known.get(&uf.keys[i]) {
            match by_known_id.get(a.identity_id.as_str()) {
                Some(&j) => {
                    uf.union(i, j);
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
        ..Resolution::default()
    };
    let mut id_of_root: HashMap<usize, String> = HashMap::new();
    for (root, members) in &sets {
        let survivor = members
            .iter()
            .filter_map(|&i| known.get(&uf.keys[i]))
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
            best.unwrap_or_default()
        });
        for &i in members {
            let key = &uf.keys[i];
            match known.get(key) {
                Some(a) if a.identity_id == id => {}
                Some(a) => {
                    resolution.aliases.insert(a.identity_id.clone(), id.clone());
                    resolution.assignments.insert(key.clone(), id.clone());
                }
                None => {
                    resolution.assignments.insert(key.clone(), id.clone());
                }
            }
        }
        id_of_root.insert(*root, id);
    }
    for f in findings.iter_mut() {
        let resolved = f.identity_keys.first().and_then(|k| {
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
        let r = resolve(&mut fs, &[], &HashMap::new());
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
        let again = resolve(&mut fs, &[], &known(&r, 0));
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
        let first = resolve(&mut ad, &[], &HashMap::new());
        assert_eq!(ad[0].identity_id.as_deref(), Some("offsec\\admmig"));
        let mut later = vec![
            finding("ad", &["sam:offsec\\admmig", "sid:S-1-5-21-1-2-3-1111"]),
            finding(
                "graph",
                &["upn:admmig@offsec.lan", "sid:S-1-5-21-1-2-3-1111"],
            ),
            finding("aws", &["upn:admmig@offsec.lan"]),
        ];
        let second = resolve(&mut later, &[], &known(&first, 0));
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
        let mut known_ids = known(&resolve(&mut ad, &[], &HashMap::new()), 100);
        let mut aws = vec![finding("aws", &["upn:admmig@offsec.lan"])];
        known_ids.extend(known(&resolve(&mut aws, &[], &HashMap::new()), 200));
        let mut link = vec![finding(
            "graph",
            &["upn:admmig@offsec.lan", "sid:S-1-5-21-1-2-3-1111"],
        )];
        let r = resolve(&mut link, &[], &known_ids);
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
        resolve(&mut forward, &[], &HashMap::new());
        resolve(&mut backward, &[], &HashMap::new());
        backward.reverse();
        let a: Vec<_> = forward.iter().map(|f| f.identity_id.clone()).collect();
        let b: Vec<_> = backward.iter().map(|f| f.identity_id.clone()).collect();
        assert_eq!(a, b);
        assert_eq!(a[0].as_deref(), Some("corp\\x"));
    }
}
