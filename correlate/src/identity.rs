//! Identity resolution: one `identity_id` per person across AD, Entra ID and AWS.
//!
//! Each finding carries `identity_keys`, the identifiers it asserts for one principal (a
//! Graph `userEvidence` gives UPN, on-premises SID, sAMAccountName and Entra object id
//! together; a Windows logon gives name, domain and SID). Keys that appear together in one
//! record belong to one account, and accounts that share a key are one identity: the
//! resolver joins them with a union-find and names each identity by its most recognisable
//! key (a UPN, else `domain\sam`, else the Entra id, else the SID).
//!
//! The result is deterministic for a set of findings, whatever their order.

use std::collections::HashMap;

use cairn_ingest::Finding;
use cairn_ingest::normalize::identity::{display_key, key_rank};

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

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // Keep the smaller index as root so the structure does not depend on call order
            // more than necessary; the canonical name below is order-independent anyway.
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[hi] = lo;
        }
    }
}

/// Resolves `identity_id` for every finding in place; returns how many findings changed.
pub fn resolve(findings: &mut [Finding]) -> usize {
    let mut uf = UnionFind::default();
    for f in findings.iter() {
        let ids: Vec<usize> = f.identity_keys.iter().map(|k| uf.intern(k)).collect();
        for pair in ids.windows(2) {
            uf.union(pair[0], pair[1]);
        }
    }
    // The canonical key of each set: best rank, then smallest text.
    let mut canonical: HashMap<usize, usize> = HashMap::new();
    for i in 0..uf.keys.len() {
        let root = uf.find(i);
        let best = canonical.entry(root).or_insert(i);
        let (cur, cand) = (&uf.keys[*best], &uf.keys[i]);
        if (key_rank(cand), cand) < (key_rank(cur), cur) {
            *best = i;
        }
    }
    let mut changed = 0;
    for f in findings.iter_mut() {
        let resolved = f.identity_keys.first().map(|k| {
            let i = uf.index[k.as_str()];
            let root = uf.find(i);
            display_key(&uf.keys[canonical[&root]]).to_string()
        });
        if f.identity_id != resolved {
            f.identity_id = resolved;
            changed += 1;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_ingest::schema::CLASS_AUTHENTICATION;
    use chrono::Utc;

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

    #[test]
    fn keys_seen_together_join_across_sources() {
        let mut fs = vec![
            // AD: name + SID.
            finding("ad", &["sam:offsec\\admmig", "sid:S-1-5-21-1-2-3-1111"]),
            // Kerberos failure: SID only.
            finding("krb", &["sid:S-1-5-21-1-2-3-1111"]),
            // Graph userEvidence: UPN + SID + sam.
            finding(
                "graph",
                &[
                    "upn:admmig@offsec.lan",
                    "sid:S-1-5-21-1-2-3-1111",
                    "sam:offsec\\admmig",
                ],
            ),
            // AWS session name: UPN only.
            finding("aws", &["upn:admmig@offsec.lan"]),
            // Someone else.
            finding("other", &["sam:offsec\\bob"]),
            finding("none", &[]),
        ];
        assert_eq!(resolve(&mut fs), 5);
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
        assert_eq!(resolve(&mut fs), 0, "resolving again changes nothing");
    }

    #[test]
    fn result_does_not_depend_on_order() {
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
        resolve(&mut forward);
        resolve(&mut backward);
        backward.reverse();
        let a: Vec<_> = forward.iter().map(|f| f.identity_id.clone()).collect();
        let b: Vec<_> = backward.iter().map(|f| f.identity_id.clone()).collect();
        assert_eq!(a, b);
        assert_eq!(a[0].as_deref(), Some("corp\\x"));
    }
}
