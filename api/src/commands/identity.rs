//! `cairn identity show`: why Cairn believes a set of accounts is one person.

use std::process::ExitCode;

use anyhow::bail;

use cairn_correlate::Store;
use cairn_correlate::store::IdentityExplanation;
use cairn_ingest::normalize::identity::normalize_principal;

/// Finds the identity `name` denotes (a principal in any form, an identity id, or a
/// directory display name or account name) and prints its explanation.
pub async fn show(store: &dyn Store, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let ids = find(store, name).await?;
    if ids.is_empty() {
        bail!(
            "no identity known for {name:?}; identities are resolved by `cairn correlate` from \
             ingested records and directory sources"
        );
    }
    let mut explained = Vec::new();
    for id in &ids {
        if let Some(e) = store.identity_explanation(id).await?
            && !explained
                .iter()
                .any(|x: &IdentityExplanation| x.identity_id == e.identity_id)
        {
            explained.push(e);
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&explained)?);
    } else {
        if explained.len() > 1 {
            println!(
                "{name:?} matches {} different identities (display names are never used to \
                 join accounts):\n",
                explained.len()
            );
        }
        for e in &explained {
            print!("{}", render(e));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn find(store: &dyn Store, name: &str) -> anyhow::Result<Vec<String>> {
    if let Some(key) = normalize_principal(name)
        && let Some(id) = store.identity_of_key(&key).await?
    {
        return Ok(vec![id]);
    }
    for key in [
        format!("upn:{}", name.to_lowercase()),
        format!("aad:{}", name.to_lowercase()),
        format!("guid:{}", name.to_lowercase()),
        format!("sso:{}", name.to_lowercase()),
    ] {
        if let Some(id) = store.identity_of_key(&key).await? {
            return Ok(vec![id]);
        }
    }
    if store.identity_explanation(name).await?.is_some() {
        return Ok(vec![name.to_string()]);
    }
    // A display or account name: every directory account that answers to it.
    let wanted = name.to_lowercase();
    let mut ids = Vec::new();
    for o in store.directory_objects().await? {
        let answers = o
            .display_name
            .as_deref()
            .is_some_and(|d| d.to_lowercase() == wanted)
            || ["sAMAccountName", "userName", "userPrincipalName"]
                .iter()
                .any(|a| {
                    o.attributes
                        .get(*a)
                        .is_some_and(|v| v.to_lowercase() == wanted)
                });
        if !answers {
            continue;
        }
        for k in &o.keys {
            if let Some(id) = store.identity_of_key(k).await? {
                if !ids.contains(&id) {
                    ids.push(id);
                }
                break;
            }
        }
    }
    Ok(ids)
}

fn render(e: &IdentityExplanation) -> String {
    let mut out = format!("Identity {}\n", e.identity_id);
    out.push_str(&format!("  keys ({}):\n", e.keys.len()));
    for k in &e.keys {
        out.push_str(&format!("    {k}\n"));
    }
    if !e.aliases.is_empty() {
        out.push_str(&format!("  absorbed ids: {}\n", e.aliases.join(", ")));
    }
    out.push_str(&format!("  directory accounts ({}):\n", e.directory.len()));
    for o in &e.directory {
        let state = match (o.enabled, o.privileged) {
            (Some(false), _) => " [disabled]",
            (_, Some(true)) => " [privileged]",
            _ => "",
        };
        out.push_str(&format!(
            "    {} {} {}{state}  ({})\n",
            o.source,
            o.kind.as_str(),
            o.display_name.as_deref().unwrap_or(&o.uid),
            o.location.as_deref().unwrap_or(&o.uid)
        ));
    }
    out.push_str(&format!(
        "  why these keys are one person ({} links):\n",
        e.links.len()
    ));
    for l in &e.links {
        out.push_str(&format!("    {} ↔ {}: {}\n", l.a, l.b, l.reason));
    }
    out.push_str(&format!("  findings resolved to it: {}\n\n", e.findings));
    out
}
