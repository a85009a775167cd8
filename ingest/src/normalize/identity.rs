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
//! | `guid:<guid>`  | AD objectGUID, and Entra's `onPremisesImmutableId` (its base64) |
//! | `aws:<arn>`    | AWS IAM user ARN                                            |
//! | `sso:<id>`     | AWS IAM Identity Center user id                             |
//!
//! [`normalize_principal`] maps one principal string in any of the forms records write
//! (`DOMAIN\user`, `user@domain`, an STS assumed-role ARN, a SID, an object id) to its key.

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
    /// `DOMAIN\user`, `user@NETBIOS`, `user@domain` (as a UPN) or a bare name with its domain
    /// alongside. A Kerberos principal `user@REALM` gives only its UPN-shaped key: whether the
    /// user part is a sAMAccountName or a UPN prefix is not known from the event, and an
    /// unauthenticated request can name anything, so one event never links two name keys.
    /// Machine accounts (`HOST$`) and built-in accounts are skipped.
    pub fn account(&mut self, domain: Option<&str>, name: Option<&str>) -> &mut Self {
        let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
            return self;
        };
        if let Some((d, n)) = name.split_once('\\') {
            return self.account(Some(d), Some(n));
        }
        if let Some((user, realm)) = name.split_once('@')
            && !realm.contains('.')
            && !user.is_empty()
        {
            return self.account(Some(realm), Some(user));
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

    /// Adds what an AWS principal ARN says about a person: an IAM user's ARN as itself; for an
    /// STS assumed-role session (`arn:aws:sts::…:assumed-role/<role>/<session>`), the session
    /// name when it is a UPN or e-mail, as SAML federation and IAM Identity Center set it.
    pub fn aws_principal(&mut self, arn: Option<&str>) -> &mut Self {
        let Some(arn) = arn.map(str::trim) else {
            return self;
        };
        match assumed_role_session(arn) {
            Some(session) => self.upn(Some(session)),
            None if arn.contains(":user/") => self.aws_arn(Some(arn)),
            None => self,
        }
    }

    /// Adds an AD objectGUID in its string form.
    pub fn guid(&mut self, guid: Option<&str>) -> &mut Self {
        if let Some(g) = guid
            .map(|g| g.trim().trim_matches(['{', '}']))
            .filter(|g| is_guid(g))
        {
            self.push(format!("guid:{}", g.to_lowercase()));
        }
        self
    }

    /// Adds an Entra `onPremisesImmutableId`: the base64 of the synced AD objectGUID's bytes.
    pub fn immutable_id(&mut self, immutable_id: Option<&str>) -> &mut Self {
        if let Some(guid) = immutable_id.and_then(guid_of_immutable_id) {
            self.push(format!("guid:{guid}"));
        }
        self
    }

    /// Adds an AWS IAM Identity Center (identity store) user id.
    pub fn sso_user(&mut self, user_id: Option<&str>) -> &mut Self {
        if let Some(id) = user_id.map(str::trim).filter(|s| !s.is_empty()) {
            self.push(format!("sso:{}", id.to_lowercase()));
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

/// The session name of an STS assumed-role ARN, if `arn` is one.
pub fn assumed_role_session(arn: &str) -> Option<&str> {
    let (_, resource) = arn
        .strip_prefix("arn:aws")?
        .split_once(":sts::")?
        .1
        .split_once(':')?;
    let mut parts = resource.strip_prefix("assumed-role/")?.splitn(2, '/');
    let _role = parts.next()?;
    parts.next().filter(|s| !s.is_empty())
}

/// Formats 16 GUID bytes in Microsoft's mixed-endian string form.
fn guid_string(b: &[u8; 16]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

/// The objectGUID string of the raw 16 bytes LDAP returns for `objectGUID`.
pub fn guid_of_bytes(bytes: &[u8]) -> Option<String> {
    let b: &[u8; 16] = bytes.try_into().ok()?;
    Some(guid_string(b))
}

/// The objectGUID behind an `onPremisesImmutableId` (base64 of the GUID's bytes).
pub fn guid_of_immutable_id(immutable_id: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(immutable_id.trim())
        .ok()?;
    guid_of_bytes(&bytes)
}

/// The SID string (`S-1-5-21-…`) of the binary `objectSid` LDAP returns.
pub fn sid_of_bytes(b: &[u8]) -> Option<String> {
    if b.len() < 8 {
        return None;
    }
    let count = usize::from(b[1]);
    if b.len() != 8 + 4 * count {
        return None;
    }
    let authority = b[2..8].iter().fold(0u64, |a, x| (a << 8) | u64::from(*x));
    let mut s = format!("S-{}-{authority}", b[0]);
    for i in 0..count {
        let at = 8 + 4 * i;
        let sub = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        s.push_str(&format!("-{sub}"));
    }
    Some(s)
}

/// The identity key of one principal string in any form records write it: `DOMAIN\user`,
/// `user@domain`, an STS assumed-role ARN (its session name), an IAM user ARN, a domain SID or
/// an Entra object id. `None` for what denotes no person (machine and built-in accounts,
/// well-known SIDs) or cannot be told apart (a bare name without domain).
pub fn normalize_principal(principal: &str) -> Option<String> {
    let p = principal.trim();
    let mut k = IdentityKeys::new();
    if p.starts_with("arn:aws") {
        k.aws_principal(Some(p));
    } else if p.get(..2).is_some_and(|s| s.eq_ignore_ascii_case("s-")) {
        k.sid(Some(p));
    } else if is_guid(p) {
        k.aad(Some(p));
    } else {
        k.account(None, Some(p));
    }
    k.into_vec().into_iter().next()
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
        Some("guid") => 4,
        _ => 5,
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
    fn principals_in_every_form() {
        for (input, key) in [
            ("CORP\\Alice", Some("sam:corp\\alice")),
            ("Alice@Corp.com", Some("upn:alice@corp.com")),
            (
                "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_0123/Alice@Corp.com",
                Some("upn:alice@corp.com"),
            ),
            (
                "arn:aws:iam::111122223333:user/alice",
                Some("aws:arn:aws:iam::111122223333:user/alice"),
            ),
            ("arn:aws:sts::111122223333:assumed-role/ci/build-42", None),
            ("s-1-5-21-1-2-3-1104", Some("sid:S-1-5-21-1-2-3-1104")),
            ("S-1-5-18", None),
            ("CORP\\WS01$", None),
            ("Alice@CORP", Some("sam:corp\\alice")),
            ("alice", None),
            ("张伟", None),
        ] {
            assert_eq!(normalize_principal(input).as_deref(), key, "{input}");
        }
    }

    #[test]
    fn a_kerberos_principal_gives_one_key_and_links_nothing() {
        let mut k = IdentityKeys::new();
        k.account(Some("OFFSEC.LAN"), Some("admmig@OFFSEC.LAN"));
        assert_eq!(k.into_vec(), ["upn:admmig@offsec.lan"]);
    }

    #[test]
    fn binary_directory_attributes() {
        // objectSid and objectGUID as LDAP returns them, and the immutable id Entra Connect
        // derives from that GUID.
        let sid = [
            1u8, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0x50, 4, 0,
            0,
        ];
        assert_eq!(sid_of_bytes(&sid).as_deref(), Some("S-1-5-21-1-2-3-1104"));
        let guid = [
            0x2c, 0x5a, 0x5b, 0x5e, 0x00, 0x00, 0x00, 0x40, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
            0xab, 0xcd,
        ];
        assert_eq!(
            guid_of_bytes(&guid).as_deref(),
            Some("5e5b5a2c-0000-4000-8000-00000000abcd")
        );
        use base64::Engine;
        let immutable = base64::engine::general_purpose::STANDARD.encode(guid);
        assert_eq!(
            guid_of_immutable_id(&immutable).as_deref(),
            Some("5e5b5a2c-0000-4000-8000-00000000abcd")
        );
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
