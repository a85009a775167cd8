//! Typed, normalized identifiers of a principal, as records assert them.
//!
//! A record that names one account by several identifiers at once (a Graph `userEvidence`
//! with UPN, on-premises SID and sAMAccountName; a Windows logon with name, domain and SID)
//! states that these identifiers are the same account. Normalizers collect them as keys of
//! the forms below; the correlator joins keys that co-occur into one identity.
//!
//! | key            | from                                                        |
//! |----------------|-------------------------------------------------------------|
//! | `sid:S-1-5-21-…` | AD / local account SID (well-known and machine SIDs skipped) |
//! | `upn:user@domain` | UPN, e-mail-shaped principal names and AWS session names  |
//! | `sam:domain\user` | NetBIOS domain and sAMAccountName                          |
//! | `aad:<guid>`   | Entra ID object id                                          |
//! | `aws:<arn>`    | AWS IAM user ARN                                            |

/// Accounts that every Windows host has and that never denote a person.
const BUILTIN_ACCOUNTS: &[&str] = &[
    "system",
    "local service",
    "network service",
    "anonymous logon",
    "iusr",
    "-",
];

/// Collects the normalized identifiers of one principal, without duplicates.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IdentityKeys(Vec<String>);

impl IdentityKeys {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, key: String) {
        if !self.0.contains(&key) {
            self.0.push(key);
        }
    }

    /// Adds a SID if it denotes a domain or local account (`S-1-5-21-…`), not a well-known one.
    pub fn sid(&mut self, sid: Option<&str>) -> &mut Self {
        if let Some(s) = sid.map(str::trim) {
            let upper = s.to_ascii_uppercase();
            if upper.starts_with("S-1-5-21-") && upper.len() > "S-1-5-21-".len() {
                self.push(format!("sid:{upper}"));
            }
        }
        self
    }

    /// Adds a UPN or e-mail-shaped name (`user@domain`), case-folded.
    pub fn upn(&mut self, upn: Option<&str>) -> &mut Self {
        if let Some(u) = upn.map(str::trim)
            && is_upn(u)
        {
            self.push(format!("upn:{}", u.to_lowercase()));
        }
        self
    }

    /// Adds an account name in any of the forms Windows and directories write it:
    /// `DOMAIN\user`, `user@domain` (as a UPN) or a bare name with its domain alongside.
    /// Machine accounts (`HOST$`) and built-in accounts are skipped.
    pub fn account(&mut self, domain: Option<&str>, name: Option<&str>) -> &mut Self {
        let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
            return self;
        };
        if let Some((d, n)) = name.split_once('\\') {
            return self.account(Some(d), Some(n));
        }
        if is_upn(name) {
            return self.upn(Some(name));
        }
        let lower = name.to_lowercase();
        let user_part = lower.split('@').next().unwrap_or(&lower);
        if user_part.ends_with('$')
            || BUILTIN_ACCOUNTS.contains(&lower.as_str())
            || lower.starts_with("dwm-")
            || lower.starts_with("umfd-")
        {
            return self;
        }
        if let Some(d) = domain.and_then(netbios_domain) {
            self.push(format!("sam:{d}\\{lower}"));
        }
        self
    }

    /// Adds an Entra ID object id.
    pub fn aad(&mut self, object_id: Option<&str>) -> &mut Self {
        if let Some(id) = object_id.map(str::trim).filter(|s| is_guid(s)) {
            self.push(format!("aad:{}", id.to_lowercase()));
        }
        self
    }

    /// Adds an AWS IAM user ARN.
    pub fn aws_arn(&mut self, arn: Option<&str>) -> &mut Self {
        if let Some(a) = arn.map(str::trim).filter(|a| a.starts_with("arn:aws")) {
            self.push(format!("aws:{a}"));
        }
        self
    }

    /// The keys collected, in insertion order.
    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

fn is_upn(s: &str) -> bool {
    match s.split_once('@') {
        // `HOST$@REALM` is a computer's Kerberos principal, not a person.
        Some((user, domain)) => {
            !user.is_empty()
                && !user.ends_with('$')
                && domain.contains('.')
                && !domain.contains('@')
                && !s.contains(' ')
        }
        None => false,
    }
}

fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// The NetBIOS form of a domain: `OFFSEC.LAN` → `offsec`. Windows writes either form in the
/// same field; the first DNS label is the NetBIOS name in the usual AD set-up (a directory
/// sync corrects the rest).
fn netbios_domain(domain: &str) -> Option<String> {
    let d = domain.trim();
    if d.is_empty() || d == "-" {
        return None;
    }
    let first = d.split('.').next().unwrap_or(d);
    let lower = first.to_lowercase();
    if [
        "nt authority",
        "builtin",
        "font driver host",
        "window manager",
    ]
    .contains(&lower.as_str())
    {
        return None;
    }
    Some(lower)
}

/// The display form of an identity key: the value without its type prefix.
pub fn display_key(key: &str) -> &str {
    key.split_once(':').map(|(_, v)| v).unwrap_or(key)
}

/// Rank of a key type when choosing an identity's canonical id: people know UPNs best.
pub fn key_rank(key: &str) -> u8 {
    match key.split_once(':').map(|(t, _)| t) {
        Some("upn") => 0,
        Some("sam") => 1,
        Some("aad") => 2,
        Some("sid") => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_forms_normalize_to_the_same_keys() {
        let mut a = IdentityKeys::new();
        a.account(Some("OFFSEC.LAN"), Some("Admmig"))
            .sid(Some("S-1-5-21-4230534742-2542757381-3142984815-1111"));
        let mut b = IdentityKeys::new();
        b.account(None, Some("OFFSEC\\admmig"));
        assert_eq!(
            a.clone().into_vec(),
            vec![
                "sam:offsec\\admmig",
                "sid:S-1-5-21-4230534742-2542757381-3142984815-1111"
            ]
        );
        assert_eq!(b.into_vec(), vec!["sam:offsec\\admmig"]);
    }

    #[test]
    fn machine_builtin_and_wellknown_principals_are_skipped() {
        let mut k = IdentityKeys::new();
        k.account(Some("OFFSEC"), Some("ROOTDC1$"))
            .account(Some("NT AUTHORITY"), Some("SYSTEM"))
            .account(Some("-"), Some("-"))
            .account(Some("OFFSEC.LAN"), Some("ROOTDC1$@OFFSEC.LAN"))
            .sid(Some("S-1-5-18"))
            .sid(Some("S-1-0-0"));
        assert!(k.into_vec().is_empty());
    }

    #[test]
    fn upns_and_object_ids() {
        let mut k = IdentityKeys::new();
        k.upn(Some("Alice@Contoso.com"))
            .account(None, Some("alice@contoso.com"))
            .aad(Some("5E5B5A2C-0000-4000-8000-00000000ABCD"))
            .aad(Some("not-a-guid"));
        assert_eq!(
            k.into_vec(),
            vec![
                "upn:alice@contoso.com",
                "aad:5e5b5a2c-0000-4000-8000-00000000abcd"
            ]
        );
    }
}
