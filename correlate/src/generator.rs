//! Seeded synthetic findings for benchmarks and property tests: a mixed stream of AD, Entra ID,
//! Defender and Security Hub records about many people, hosts and addresses, shaped like what
//! the normalizers produce (event codes, the `fields` the pack reads, a JSON `raw` record).
//!
//! The generator is deterministic for a seed, so a figure or a failure can be reproduced.

use chrono::{DateTime, Utc};

use cairn_ingest::schema::{CLASS_AUTHENTICATION, CLASS_BASE_EVENT, CLASS_DETECTION_FINDING};
use cairn_ingest::{Finding, Severity};

/// A small deterministic generator (SplitMix64): no dependency, same stream everywhere.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// One of `items`.
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Mixed records about `people` people, `hosts` hosts and `addresses` addresses.
#[derive(Debug, Clone)]
pub struct MixedRecords {
    rng: Rng,
    /// Distinct people.
    pub people: usize,
    /// Distinct hosts.
    pub hosts: usize,
    /// Distinct remote addresses.
    pub addresses: usize,
    next_uid: u64,
}

impl MixedRecords {
    /// A generator with its seed and population sizes.
    pub fn new(seed: u64, people: usize, hosts: usize, addresses: usize) -> MixedRecords {
        MixedRecords {
            rng: Rng(seed),
            people: people.max(1),
            hosts: hosts.max(1),
            addresses: addresses.max(1),
            next_uid: 0,
        }
    }

    /// One record at `at`.
    pub fn record(&mut self, at: DateTime<Utc>) -> Finding {
        let r = &mut self.rng;
        let person = format!("user{}@corp.example", r.below(self.people));
        let host = format!("ws{}.corp.example", r.below(self.hosts));
        let a = r.below(self.addresses);
        let ip = if a.is_multiple_of(3) {
            format!("10.{}.{}.{}", (a >> 16) & 255, (a >> 8) & 255, a & 255)
        } else {
            format!("198.{}.{}.{}", 18 + (a >> 16) % 2, (a >> 8) & 255, a & 255)
        };
        self.next_uid += 1;
        let uid = format!("g{:x}", self.next_uid);
        // Weights follow a domain controller's mix: mostly logons, some Kerberos and process
        // events, few provider alerts.
        let kind = r.below(100);
        let (source, class, code) = match kind {
            0..=29 => ("ad.windows", CLASS_AUTHENTICATION, "4624"),
            30..=41 => ("ad.windows", CLASS_AUTHENTICATION, "4625"),
            42..=51 => ("ad.windows", CLASS_AUTHENTICATION, "4769"),
            52..=54 => ("ad.windows", CLASS_AUTHENTICATION, "4768"),
            55..=67 => ("ad.windows", CLASS_BASE_EVENT, "4688"),
            68 => ("ad.windows", CLASS_BASE_EVENT, "4662"),
            69 => ("ad.windows", CLASS_BASE_EVENT, "4728"),
            70 => ("ad.windows", CLASS_BASE_EVENT, "1102"),
            71..=88 => ("azure.entra", CLASS_AUTHENTICATION, "signIn"),
            89..=93 => (
                "azure.defender",
                CLASS_DETECTION_FINDING,
                "SuspiciousActivity",
            ),
            _ => (
                "aws.securityhub",
                CLASS_DETECTION_FINDING,
                "UnauthorizedAccess:IAMUser-ConsoleLogin",
            ),
        };
        let severity = if class == CLASS_DETECTION_FINDING {
            match r.below(3) {
                0 => Severity::Medium,
                1 => Severity::High,
                _ => Severity::Low,
            }
        } else {
            Severity::Informational
        };
        let mut f = Finding::new(source, uid, class, at, String::new());
        f.event_code = Some(code.into());
        f.set_severity(severity);
        f.identity_keys = vec![format!("upn:{person}")];
        f.identity_id = Some(person.clone());
        f.actor_user = Some(person.clone());
        f.src_ip = Some(ip.clone());
        f.device_hostname = Some(host.clone());
        if source == "ad.windows" {
            f.fields.insert("Channel", "Security");
            f.fields.insert("Computer", "dc1.corp.example");
            f.fields.insert("TargetUserName", &person);
            f.fields.insert("IpAddress", &ip);
            match code {
                "4624" | "4625" => {
                    f.fields.insert("LogonType", ["2", "3", "10"][r.below(3)]);
                    f.fields.insert("WorkstationName", &host);
                }
                "4769" => {
                    f.fields
                        .insert("ServiceName", format!("svc{}", r.below(200)));
                    f.fields
                        .insert("TicketEncryptionType", ["0x12", "0x17"][r.below(2)]);
                }
                "4688" => {
                    f.fields.insert(
                        "NewProcessName",
                        [
                            "C:\\Windows\\System32\\cmd.exe",
                            "C:\\Windows\\explorer.exe",
                        ][r.below(2)],
                    );
                    f.fields.insert(
                        "CommandLine",
                        [
                            "cmd.exe /c whoami",
                            "explorer.exe",
                            "powershell -nop -w hidden",
                        ][r.below(3)],
                    );
                }
                _ => {}
            }
        }
        // A compact JSON record of what the finding says, about the size of a normalized
        // Windows event's original.
        let mut raw = serde_json::Map::new();
        raw.insert("EventID".into(), code.into());
        raw.insert("TimeCreated".into(), at.to_rfc3339().into());
        raw.insert("User".into(), person.into());
        raw.insert("Host".into(), host.into());
        raw.insert("IpAddress".into(), ip.into());
        for (k, v) in f.fields.iter() {
            raw.insert(k.to_string(), v.to_string().into());
        }
        f.raw = serde_json::Value::Object(raw).to_string();
        f
    }
}
