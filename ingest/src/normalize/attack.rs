//! MITRE ATT&CK Enterprise tactic names → tactic ids (ATT&CK v18).
//!
//! Providers name tactics in prose (ASFF `TTPs/Defense Evasion/...`) or in camel case (Graph
//! `category: "DefenseEvasion"`); rules and incidents use the ids.

const TACTICS: &[(&str, &str)] = &[
    ("reconnaissance", "TA0043"),
    ("resourcedevelopment", "TA0042"),
    ("initialaccess", "TA0001"),
    ("execution", "TA0002"),
    ("persistence", "TA0003"),
    ("privilegeescalation", "TA0004"),
    ("defenseevasion", "TA0005"),
    ("credentialaccess", "TA0006"),
    ("discovery", "TA0007"),
    ("lateralmovement", "TA0008"),
    ("collection", "TA0009"),
    ("exfiltration", "TA0010"),
    ("commandandcontrol", "TA0011"),
    ("impact", "TA0040"),
];

/// The tactic id of a tactic name in any spacing or case; `None` for names that are not
/// ATT&CK tactics (Graph also uses categories such as `Malware` or `SuspiciousActivity`).
pub(crate) fn tactic_id(name: &str) -> Option<&'static str> {
    let key: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    TACTICS.iter().find(|(n, _)| *n == key).map(|(_, id)| *id)
}

/// Whether `s` has the shape of an ATT&CK technique id (`T1078`, `T1564.001`).
pub(crate) fn is_technique_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('T') else {
        return false;
    };
    let (main, sub) = match rest.split_once('.') {
        Some((m, s)) => (m, Some(s)),
        None => (rest, None),
    };
    main.len() == 4
        && main.chars().all(|c| c.is_ascii_digit())
        && sub.is_none_or(|s| s.len() == 3 && s.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tactic_names_in_both_spellings() {
        assert_eq!(tactic_id("Defense Evasion"), Some("TA0005"));
        assert_eq!(tactic_id("DefenseEvasion"), Some("TA0005"));
        assert_eq!(tactic_id("Command and Control"), Some("TA0011"));
        assert_eq!(tactic_id("SuspiciousActivity"), None);
    }

    #[test]
    fn technique_ids() {
        assert!(is_technique_id("T1564.001"));
        assert!(is_technique_id("T1078"));
        assert!(!is_technique_id("T15640"));
        assert!(!is_technique_id("TA0005"));
    }
}
