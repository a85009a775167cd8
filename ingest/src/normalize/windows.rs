//! Windows Security event log records as JSON → Finding.
//!
//! Three shapes arrive in practice and all map to the same row:
//! - evtx JSON (`{"Event": {"System": {...}, "EventData": {...}}}`), as the `evtx` crate and
//!   `evtx_dump` write it;
//! - Winlogbeat / Elastic Agent (`{"winlog": {"event_id": ..., "event_data": {...}}}`);
//! - flat records (NXLog, OTRF/Mordor) whose `EventData` names are top-level keys beside
//!   `EventID` and `Channel`, and Sentinel / Log Analytics `SecurityEvent` rows, whose
//!   `EventData` column is the event's XML `<EventData>` element as a string.
//!
//! Every `EventData` field stays available to rules in `fields`; the principal columns follow
//! OCSF: for Authentication the `user` is the account that logged on and the `actor` the
//! subject that requested it; for account and group changes the `actor` made the change to
//! the `user` (or group member).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::identity::IdentityKeys;
use super::json::{checked_time, truncate};
use super::{Format, NormalizeError, Normalizer, Shape};
use crate::fields::Fields;
use crate::json::{Json, Object};
use crate::schema::{
    CLASS_ACCOUNT_CHANGE, CLASS_AUTHENTICATION, CLASS_AUTHORIZE_SESSION, CLASS_BASE_EVENT,
    CLASS_ENTITY_MANAGEMENT, CLASS_FILE_ACTIVITY, CLASS_GROUP_MANAGEMENT, CLASS_NETWORK_ACTIVITY,
    CLASS_NETWORK_FILE_ACTIVITY, CLASS_PROCESS_ACTIVITY, Finding, Severity,
};

const FORMAT: &str = "windows_event";
/// The `source` column of Windows and Active Directory events.
pub const SOURCE: &str = "ad.windows";

/// Normalizes Windows event log records (Security channel and others) in any JSON shape.
///
/// It reads the borrowed [`Json`] tree (Windows events are most of the volume, and their many
/// short fields are what a `serde_json::Value` is slowest at); a `Value` is read through it.
pub struct WindowsEventNormalizer;

/// The parts of a Windows event that every shape carries, gathered in one place.
struct WinEvent<'a> {
    event_id: u32,
    channel: Option<Cow<'a, str>>,
    provider: Option<Cow<'a, str>>,
    computer: Option<Cow<'a, str>>,
    record_id: Option<Cow<'a, str>>,
    time: DateTime<Utc>,
    keywords: Option<Cow<'a, str>>,
    data: Fields,
}

impl Normalizer for WindowsEventNormalizer {
    fn format(&self) -> Format {
        Format::WindowsEvent
    }

    fn recognises(&self, r: &dyn Shape) -> bool {
        r.has_path(&["Event", "System"])
            || r.has_path(&["winlog", "event_id"])
            || (r.has("EventID")
                && [
                    "Channel",
                    "SourceName",
                    "ProviderName",
                    "Computer",
                    "Hostname",
                ]
                .iter()
                .any(|k| r.has(k)))
    }

    fn normalize(&self, r: &Map<String, Value>, raw: &str) -> Result<Finding, NormalizeError> {
        read_event(&Object::from_map(r), raw)
    }

    fn normalize_borrowed(
        &self,
        r: &Object<'_>,
        raw: &str,
    ) -> Option<Result<Finding, NormalizeError>> {
        Some(read_event(r, raw))
    }
}

fn read_event(r: &Object<'_>, raw: &str) -> Result<Finding, NormalizeError> {
    let ev = if r.path(&["Event", "System"]).is_some() {
        from_evtx_json(r)?
    } else if r.path(&["winlog", "event_id"]).is_some() {
        from_winlogbeat(r)?
    } else {
        from_flat(r)?
    };
    Ok(to_finding(ev, raw))
}

fn invalid(field: &'static str, value: &str, reason: &str) -> NormalizeError {
    NormalizeError::InvalidField {
        format: FORMAT,
        field,
        value: truncate(value),
        reason: reason.into(),
    }
}

fn parse_event_id(v: Option<&Json<'_>>, field: &'static str) -> Result<u32, NormalizeError> {
    // evtx writes `{"#attributes": {"Qualifiers": ..}, "#text": 4624}` when qualifiers exist.
    let v = match v {
        Some(Json::Object(o)) => o.get("#text"),
        other => other,
    };
    let raw = v
        .and_then(Json::scalar_text)
        .ok_or(NormalizeError::MissingField {
            format: FORMAT,
            field,
        })?;
    raw.trim()
        .parse::<u32>()
        .map_err(|_| invalid(field, &raw, "not an event id"))
}

fn parse_required_time(
    raw: Option<Cow<'_, str>>,
    field: &'static str,
) -> Result<DateTime<Utc>, NormalizeError> {
    let raw = raw.ok_or(NormalizeError::MissingField {
        format: FORMAT,
        field,
    })?;
    checked_time(FORMAT, field, &raw)
}

/// Flattens `EventData`/`UserData` values to strings: scalars as text, nested values as JSON.
fn flatten_into(out: &mut Fields, data: &Object<'_>) {
    for (k, v) in data.iter() {
        if k.starts_with('#') {
            continue;
        }
        // A repeated key's last occurrence decides, as in a `serde_json` map: a later null
        // removes an earlier value.
        match v {
            Json::Object(inner) if !inner.is_empty() && !inner.contains_key("#text") => {
                flatten_into(out, inner)
            }
            Json::Object(inner) => match inner.get("#text").and_then(Json::scalar_text) {
                Some(t) => out.insert(k, t),
                None => out.remove(k),
            },
            Json::Array(_) => out.insert(k, v.to_value().to_string()),
            Json::String(s) => out.insert(k, s),
            other => match other.scalar_text() {
                Some(t) => out.insert(k, t),
                None => out.remove(k),
            },
        }
    }
}

fn object<'r, 'a>(
    r: &'r Object<'a>,
    keys: &[&str],
    field: &'static str,
) -> Result<&'r Object<'a>, NormalizeError> {
    r.path(keys)
        .and_then(Json::as_object)
        .ok_or(NormalizeError::MissingField {
            format: FORMAT,
            field,
        })
}

fn from_evtx_json<'r>(r: &'r Object<'_>) -> Result<WinEvent<'r>, NormalizeError> {
    let event = object(r, &["Event"], "Event")?;
    let system = object(event, &["System"], "Event.System")?;
    let mut data = Fields::with_capacity(32, 1024);
    for section in ["EventData", "UserData"] {
        if let Some(d) = event.get(section).and_then(Json::as_object) {
            flatten_into(&mut data, d);
        }
    }
    Ok(WinEvent {
        event_id: parse_event_id(system.get("EventID"), "Event.System.EventID")?,
        channel: system.text(&["Channel"]),
        provider: system.text(&["Provider", "#attributes", "Name"]),
        computer: system.text(&["Computer"]),
        record_id: system.text(&["EventRecordID"]),
        time: parse_required_time(
            system.text(&["TimeCreated", "#attributes", "SystemTime"]),
            "Event.System.TimeCreated.SystemTime",
        )?,
        keywords: system.text(&["Keywords"]),
        data,
    })
}

fn from_winlogbeat<'r>(r: &'r Object<'_>) -> Result<WinEvent<'r>, NormalizeError> {
    let w = object(r, &["winlog"], "winlog")?;
    let mut data = Fields::with_capacity(32, 1024);
    for section in ["event_data", "user_data"] {
        if let Some(d) = w.get(section).and_then(Json::as_object) {
            flatten_into(&mut data, d);
        }
    }
    Ok(WinEvent {
        event_id: parse_event_id(w.get("event_id"), "winlog.event_id")?,
        channel: w.text(&["channel"]),
        provider: w.text(&["provider_name"]),
        computer: w
            .text(&["computer_name"])
            .or_else(|| r.text(&["host", "name"])),
        record_id: w.text(&["record_id"]),
        time: parse_required_time(r.text(&["@timestamp"]), "@timestamp")?,
        keywords: w.get("keywords").and_then(Json::as_array).map(|k| {
            Cow::Owned(
                k.iter()
                    .filter_map(Json::scalar_text)
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        }),
        data,
    })
}

/// Envelope keys of flat exporters that are not event data.
const FLAT_ENVELOPE: &[&str] = &["Message", "@version", "tags", "host", "port", "Keywords"];

fn from_flat<'r>(r: &'r Object<'_>) -> Result<WinEvent<'r>, NormalizeError> {
    let time_raw = [
        "@timestamp",
        "TimeGenerated",
        "TimeCreated",
        "EventTime",
        "timestamp",
    ]
    .iter()
    .find_map(|k| r.text(&[k]));
    let mut data = Fields::with_capacity(r.len(), 2048);
    for (k, v) in r.iter() {
        if FLAT_ENVELOPE.contains(&k) {
            continue;
        }
        if k == "EventData"
            && let Json::String(xml) = v
            && xml.trim_start().starts_with('<')
        {
            // Log Analytics keeps the parsed columns it knows beside the XML; the XML has all.
            for (name, value) in event_data_xml(xml)? {
                data.insert(name, value);
            }
            continue;
        }
        match v.scalar_text() {
            Some(t) => data.insert(k, t),
            // A repeated key's last occurrence decides, as in a `serde_json` map.
            None => data.remove(k),
        }
    }
    Ok(WinEvent {
        event_id: parse_event_id(r.get("EventID"), "EventID")?,
        channel: r.text(&["Channel"]),
        provider: r
            .text(&["SourceName"])
            .or_else(|| r.text(&["ProviderName"]))
            .or_else(|| r.text(&["EventSourceName"])),
        computer: r.text(&["Computer"]).or_else(|| r.text(&["Hostname"])),
        record_id: r
            .text(&["EventRecordID"])
            .or_else(|| r.text(&["RecordNumber"])),
        time: parse_required_time(time_raw, "@timestamp")?,
        keywords: r.text(&["Keywords"]),
        data,
    })
}

/// The `<Data Name="…">value</Data>` pairs of an `<EventData>` XML element, as Log Analytics
/// stores them in `SecurityEvent.EventData`. Unnamed `<Data>` elements are numbered
/// (`Data1`, `Data2`, …) as Winlogbeat names them (`param1`…) would clash with real names.
fn event_data_xml(xml: &str) -> Result<Vec<(String, String)>, NormalizeError> {
    use quick_xml::Reader;
    use quick_xml::events::Event;

    let bad = |e: &dyn std::fmt::Display| invalid("EventData", xml, &format!("bad XML: {e}"));
    let mut reader = Reader::from_str(xml);
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut text = String::new();
    let mut unnamed = 0usize;
    loop {
        match reader.read_event().map_err(|e| bad(&e))? {
            Event::Start(e) if e.local_name().as_ref() == b"Data" => {
                let mut name = None;
                for a in e.attributes() {
                    let a = a.map_err(|e| bad(&e))?;
                    if a.key.local_name().as_ref() == b"Name" {
                        name = Some(
                            a.decode_and_unescape_value(reader.decoder())
                                .map_err(|e| bad(&e))?
                                .into_owned(),
                        );
                    }
                }
                current = Some(name.unwrap_or_else(|| {
                    unnamed += 1;
                    format!("Data{unnamed}")
                }));
                text.clear();
            }
            Event::Text(t) if current.is_some() => {
                text.push_str(&t.decode().map_err(|e| bad(&e))?);
            }
            Event::GeneralRef(r) if current.is_some() => {
                let name = r.decode().map_err(|e| bad(&e))?;
                match quick_xml::escape::resolve_predefined_entity(&name) {
                    Some(c) => text.push_str(c),
                    None => match r.resolve_char_ref().map_err(|e| bad(&e))? {
                        Some(c) => text.push(c),
                        None => return Err(bad(&format!("unknown entity &{name};"))),
                    },
                }
            }
            Event::CData(t) if current.is_some() => {
                text.push_str(&String::from_utf8_lossy(&t.into_inner()));
            }
            Event::End(e) if e.local_name().as_ref() == b"Data" => {
                if let Some(name) = current.take() {
                    out.push((name, std::mem::take(&mut text)));
                }
            }
            Event::Empty(e) if e.local_name().as_ref() == b"Data" => {
                // `<Data Name="X" />` is an empty value: keep the name, as evtx does.
                for a in e.attributes().flatten() {
                    if a.key.local_name().as_ref() == b"Name" {
                        out.push((
                            String::from_utf8_lossy(&a.value).into_owned(),
                            String::new(),
                        ));
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// OCSF class and a short description of the Security events Cairn maps.
fn describe(event_id: u32) -> (i32, Option<&'static str>) {
    match event_id {
        4624 => (
            CLASS_AUTHENTICATION,
            Some("An account was successfully logged on"),
        ),
        4625 => (CLASS_AUTHENTICATION, Some("An account failed to log on")),
        4634 => (CLASS_AUTHENTICATION, Some("An account was logged off")),
        4647 => (CLASS_AUTHENTICATION, Some("User initiated logoff")),
        4648 => (
            CLASS_AUTHENTICATION,
            Some("A logon was attempted using explicit credentials"),
        ),
        4768 => (
            CLASS_AUTHENTICATION,
            Some("A Kerberos authentication ticket (TGT) was requested"),
        ),
        4769 => (
            CLASS_AUTHENTICATION,
            Some("A Kerberos service ticket was requested"),
        ),
        4770 => (
            CLASS_AUTHENTICATION,
            Some("A Kerberos service ticket was renewed"),
        ),
        4771 => (
            CLASS_AUTHENTICATION,
            Some("Kerberos pre-authentication failed"),
        ),
        4776 => (
            CLASS_AUTHENTICATION,
            Some("The computer attempted to validate the credentials for an account"),
        ),
        4964 => (
            CLASS_AUTHENTICATION,
            Some("Special groups have been assigned to a new logon"),
        ),
        4627 => (CLASS_AUTHENTICATION, Some("Group membership information")),
        4672 => (
            CLASS_AUTHORIZE_SESSION,
            Some("Special privileges assigned to new logon"),
        ),
        4720 => (CLASS_ACCOUNT_CHANGE, Some("A user account was created")),
        4722 => (CLASS_ACCOUNT_CHANGE, Some("A user account was enabled")),
        4723 => (
            CLASS_ACCOUNT_CHANGE,
            Some("An attempt was made to change an account's password"),
        ),
        4724 => (
            CLASS_ACCOUNT_CHANGE,
            Some("An attempt was made to reset an account's password"),
        ),
        4725 => (CLASS_ACCOUNT_CHANGE, Some("A user account was disabled")),
        4726 => (CLASS_ACCOUNT_CHANGE, Some("A user account was deleted")),
        4738 => (CLASS_ACCOUNT_CHANGE, Some("A user account was changed")),
        4740 => (CLASS_ACCOUNT_CHANGE, Some("A user account was locked out")),
        4741 => (CLASS_ACCOUNT_CHANGE, Some("A computer account was created")),
        4742 => (CLASS_ACCOUNT_CHANGE, Some("A computer account was changed")),
        4765 => (
            CLASS_ACCOUNT_CHANGE,
            Some("SID History was added to an account"),
        ),
        4766 => (
            CLASS_ACCOUNT_CHANGE,
            Some("An attempt to add SID History to an account failed"),
        ),
        4767 => (CLASS_ACCOUNT_CHANGE, Some("A user account was unlocked")),
        4781 => (
            CLASS_ACCOUNT_CHANGE,
            Some("The name of an account was changed"),
        ),
        4794 => (
            CLASS_ACCOUNT_CHANGE,
            Some(
                "An attempt was made to set the Directory Services Restore Mode administrator password",
            ),
        ),
        4727 | 4731 | 4754 => (
            CLASS_GROUP_MANAGEMENT,
            Some("A security-enabled group was created"),
        ),
        4728 => (
            CLASS_GROUP_MANAGEMENT,
            Some("A member was added to a security-enabled global group"),
        ),
        4729 => (
            CLASS_GROUP_MANAGEMENT,
            Some("A member was removed from a security-enabled global group"),
        ),
        4732 => (
            CLASS_GROUP_MANAGEMENT,
            Some("A member was added to a security-enabled local group"),
        ),
        4733 => (
            CLASS_GROUP_MANAGEMENT,
            Some("A member was removed from a security-enabled local group"),
        ),
        4756 => (
            CLASS_GROUP_MANAGEMENT,
            Some("A member was added to a security-enabled universal group"),
        ),
        4757 => (
            CLASS_GROUP_MANAGEMENT,
            Some("A member was removed from a security-enabled universal group"),
        ),
        4661 => (
            CLASS_ENTITY_MANAGEMENT,
            Some("A handle to an object was requested"),
        ),
        4662 => (
            CLASS_ENTITY_MANAGEMENT,
            Some("An operation was performed on an object"),
        ),
        5136 => (
            CLASS_ENTITY_MANAGEMENT,
            Some("A directory service object was modified"),
        ),
        5137 => (
            CLASS_ENTITY_MANAGEMENT,
            Some("A directory service object was created"),
        ),
        4706 => (
            CLASS_ENTITY_MANAGEMENT,
            Some("A new trust was created to a domain"),
        ),
        4865 => (
            CLASS_ENTITY_MANAGEMENT,
            Some("A trusted forest information entry was added"),
        ),
        4688 => (
            CLASS_PROCESS_ACTIVITY,
            Some("A new process has been created"),
        ),
        4697 => (
            CLASS_PROCESS_ACTIVITY,
            Some("A service was installed in the system"),
        ),
        5140 => (
            CLASS_NETWORK_FILE_ACTIVITY,
            Some("A network share object was accessed"),
        ),
        5145 => (
            CLASS_NETWORK_FILE_ACTIVITY,
            Some(
                "A network share object was checked to see whether client can be granted desired access",
            ),
        ),
        4656 => (
            CLASS_FILE_ACTIVITY,
            Some("A handle to an object was requested"),
        ),
        4658 => (
            CLASS_FILE_ACTIVITY,
            Some("The handle to an object was closed"),
        ),
        4660 => (CLASS_FILE_ACTIVITY, Some("An object was deleted")),
        4663 => (
            CLASS_FILE_ACTIVITY,
            Some("An attempt was made to access an object"),
        ),
        4689 => (CLASS_PROCESS_ACTIVITY, Some("A process has exited")),
        5156 => (
            CLASS_NETWORK_ACTIVITY,
            Some("The Windows Filtering Platform has permitted a connection"),
        ),
        5157 => (
            CLASS_NETWORK_ACTIVITY,
            Some("The Windows Filtering Platform has blocked a connection"),
        ),
        5158 => (
            CLASS_NETWORK_ACTIVITY,
            Some("The Windows Filtering Platform has permitted a bind to a local port"),
        ),
        4719 => (CLASS_BASE_EVENT, Some("System audit policy was changed")),
        1102 => (CLASS_BASE_EVENT, Some("The audit log was cleared")),
        _ => (CLASS_BASE_EVENT, None),
    }
}

/// Failures of authentication are worth a second look; everything else is informational
/// until a rule says otherwise.
fn severity(ev: &WinEvent) -> Severity {
    let failed_status = ev
        .data
        .get("Status")
        .is_some_and(|s| !matches!(s, "0x0" | "0" | "-"));
    let audit_failure = ev.keywords.as_deref().is_some_and(is_audit_failure)
        || ev
            .data
            .get("EventType")
            .is_some_and(|t| t.eq_ignore_ascii_case("AUDIT_FAILURE"));
    match ev.event_id {
        4625 | 4771 => Severity::Low,
        4768 | 4769 | 4776 if failed_status => Severity::Low,
        1102 => Severity::Medium,
        _ if audit_failure => Severity::Low,
        _ => Severity::Informational,
    }
}

/// The Audit Failure keyword (bit 52) in any of the forms exporters write: hex, the signed
/// decimal of NXLog, or Winlogbeat's words.
fn is_audit_failure(keywords: &str) -> bool {
    const AUDIT_FAILURE: u64 = 0x0010_0000_0000_0000;
    let k = keywords.trim();
    let bits = if let Some(hex) = k.strip_prefix("0x").or_else(|| k.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if let Ok(signed) = k.parse::<i64>() {
        Some(signed as u64)
    } else {
        k.parse::<u64>().ok()
    };
    match bits {
        Some(b) => b & AUDIT_FAILURE != 0,
        None => k.to_ascii_lowercase().contains("audit failure"),
    }
}

/// One principal of an event: name, domain and id fields, as written.
struct Principal {
    name: Option<String>,
    domain: Option<String>,
    uid: Option<String>,
}

impl WinEvent<'_> {
    /// A field's value, unless blank or `-` (Windows' "no value").
    fn get(&self, key: &str) -> Option<String> {
        self.data
            .get(key)
            .filter(|v| {
                let t = v.trim();
                !t.is_empty() && t != "-"
            })
            .map(str::to_string)
    }

    fn principal(&self, name: &str, domain: &str, sid: &[&str]) -> Principal {
        Principal {
            name: self.get(name),
            domain: self.get(domain),
            uid: sid.iter().find_map(|k| self.get(k)),
        }
    }
}

fn keys_of(p: &Principal) -> Vec<String> {
    // A computer account's SID is a domain SID too, but a computer is not a person.
    if p.name
        .as_deref()
        .is_some_and(|n| n.trim_end().ends_with('$'))
    {
        return Vec::new();
    }
    let mut k = IdentityKeys::new();
    k.account(p.domain.as_deref(), p.name.as_deref())
        .sid(p.uid.as_deref());
    k.into_vec()
}

fn clean_ip(ip: Option<String>) -> Option<String> {
    let ip = ip?;
    let ip = ip.strip_prefix("::ffff:").unwrap_or(&ip).to_string();
    if matches!(ip.as_str(), "::1" | "127.0.0.1" | "0.0.0.0") {
        None
    } else {
        Some(ip)
    }
}

fn to_finding(ev: WinEvent<'_>, raw: &str) -> Finding {
    let computer = ev.computer.as_ref().map(|c| c.to_lowercase());
    let channel = ev.channel.clone().unwrap_or(Cow::Borrowed("Security"));
    // Event ids are per provider: 1102 or 4624 mean something else outside the Security log.
    let (class_uid, description) = if channel.eq_ignore_ascii_case("Security") {
        describe(ev.event_id)
    } else {
        (CLASS_BASE_EVENT, None)
    };
    let uid = match (&computer, &ev.record_id) {
        // Exporters differ in the channel's case; the uid must not.
        (Some(c), Some(r)) => format!("{c}:{}:{r}", channel.to_lowercase()),
        _ => {
            use sha2::{Digest, Sha256};
            format!("sha256:{}", hex::encode(Sha256::digest(raw.as_bytes())))
        }
    };
    let mut f = Finding::new(SOURCE, uid, class_uid, ev.time, raw.to_string());
    f.product = ev.provider.as_deref().map(str::to_string);
    f.event_code = Some(ev.event_id.to_string());
    f.set_severity(severity(&ev));
    f.title = Some(match description {
        Some(d) => d.to_string(),
        None => format!("{} event {}", channel, ev.event_id),
    });
    f.device_hostname = computer.clone();
    // The AD domain is the DNS suffix of the computer that logged the event.
    f.account_uid = computer
        .as_deref()
        .and_then(|c| c.split_once('.'))
        .map(|(_, d)| d.to_string());

    let subject = ev.principal("SubjectUserName", "SubjectDomainName", &["SubjectUserSid"]);
    let target = ev.principal(
        "TargetUserName",
        "TargetDomainName",
        &["TargetUserSid", "TargetSid"],
    );
    let about = match class_uid {
        CLASS_AUTHENTICATION => {
            set_actor(&mut f, &subject);
            set_user(&mut f, &target);
            &target
        }
        CLASS_AUTHORIZE_SESSION => {
            set_user(&mut f, &subject);
            &subject
        }
        CLASS_GROUP_MANAGEMENT => {
            set_actor(&mut f, &subject);
            f.user_name = ev.get("MemberName");
            f.user_uid = ev.get("MemberSid");
            f.group_name = target.name.clone();
            f.group_uid = target.uid.clone();
            &subject
        }
        _ => {
            set_actor(&mut f, &subject);
            set_user(&mut f, &target);
            // A change made by the system (a DC's machine account locking a user out) is
            // about its target; one made by a person is about that person.
            if keys_of(&subject).is_empty() {
                &target
            } else {
                &subject
            }
        }
    };
    f.identity_keys = keys_of(about);
    f.src_ip = clean_ip(
        ev.get("IpAddress")
            .or_else(|| ev.get("SourceAddress"))
            .or_else(|| ev.get("ClientAddress")),
    );

    f.fields = ev.data;
    f.fields.rewrite_values(canonical_guid);
    f.fields
        .insert("EventID", f.event_code.as_deref().unwrap_or_default());
    f.fields.insert("Channel", channel);
    if let Some(c) = ev.computer {
        f.fields.insert("Computer", c);
    }
    if let Some(p) = ev.provider {
        f.fields.insert("Provider_Name", p);
    }
    if let Some(r) = ev.record_id {
        f.fields.insert("EventRecordID", r);
    }
    f
}

/// A GUID-typed value in the form Windows writes it in event XML (`{AE6286BE-D372-…}`).
/// Renderers differ (`evtx` writes `{ae6286be-…}`, older ones `AE6286BE-…`); rules and the
/// `.evtx` ↔ JSON equivalence need one form.
fn canonical_guid(v: &str) -> Option<String> {
    let inner = v
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(v);
    let is_guid = inner.len() == 36
        && inner.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if !is_guid {
        return None;
    }
    let canonical = format!("{{{}}}", inner.to_ascii_uppercase());
    (canonical != v).then_some(canonical)
}

fn set_actor(f: &mut Finding, p: &Principal) {
    f.actor_user = p.name.clone();
    f.actor_domain = p.domain.clone();
    f.actor_uid = p.uid.clone();
}

fn set_user(f: &mut Finding, p: &Principal) {
    f.user_name = p.name.clone();
    f.user_domain = p.domain.clone();
    f.user_uid = p.uid.clone();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_failure_keyword_in_every_exporter_form() {
        assert!(is_audit_failure("0x8010000000000000"));
        assert!(is_audit_failure("-9218868437227405312"));
        assert!(is_audit_failure("Audit Failure"));
        assert!(!is_audit_failure("0x8020000000000000"));
        assert!(!is_audit_failure("-9214364837600034816"));
    }
}
