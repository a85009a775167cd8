#!/usr/bin/env python3
"""Builds Cairn's bundled demo data set from the public samples in ../shared/data.

Run from the repository root:  python3 api/demo/build.py /path/to/shared/data
The output in api/demo/data/ is committed; the binary embeds it, so nothing reads the shared
folder at run or test time. Every change made to an upstream record is listed in
api/demo/README.md and is done here, in code, so it can be reviewed.
"""
import copy
import json
import os
import sys
from datetime import datetime, timedelta, timezone

SHARED = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

# The story happens on one (Monday) morning; every sample is moved onto it, keeping the
# spacing of its own events.
DAY = datetime(2026, 11, 16, tzinfo=timezone.utc)

VICTIM_SAM = "admmig"
VICTIM_DOMAIN = "OFFSEC"
VICTIM_SID = "S-1-5-21-4230534742-2542757381-3142984815-1111"
VICTIM_UPN = "admmig@offsec.lan"
VICTIM_AAD_ID = "5f3a8c2e-7b41-4d6a-9c0e-2b8f1d7a6e31"
ATTACKER_IP = "10.23.42.22"


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse(s):
    s = s.replace("Z", "+00:00")
    if "." in s:
        head, frac = s.split(".", 1)
        digits = "".join(c for c in frac if c.isdigit())
        zone = frac[len(digits):]
        s = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(s)


def evtx_file(stem):
    path = os.path.join(SHARED, "windows-evtx", stem + ".jsonl")
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


def retime_events(events, start):
    """Moves evtx-JSON events so the first one happens at `start`."""
    times = [parse(e["Event"]["System"]["TimeCreated"]["#attributes"]["SystemTime"]) for e in events]
    first = min(times)
    for e, t in zip(events, times):
        e["Event"]["System"]["TimeCreated"]["#attributes"]["SystemTime"] = iso(start + (t - first))
    return events


def at(h, m, s=0):
    return DAY + timedelta(hours=h, minutes=m, seconds=s)


def build_windows():
    out = []
    # Background: a local password-guessing tool on a workstation, no success (no detection).
    out += retime_events(evtx_file("TA0006-Credential_Access_T1110.xxx-Brut_force_ID_4776_4625-AccountRestore_local_bruteforce"), at(6, 12))
    # Background: Kerberoasting activity of another lab (single-event Sigma territory).
    out += retime_events(evtx_file("TA0006-Credential_Access_T1558-Steal_or_Forge_Kerberos_Tickets_ID4769-Kerberoast_ticket_with_low_encryption"), at(6, 40))
    # Background: a help-desk account creates and deletes a user (its own small incident).
    out += retime_events(evtx_file("TA0003-Persistence_T1136-Create_account_ID4720-4726_Fast_created-deleted_user"), at(7, 5))

    # Story, step 1: Kerberos password guessing against admmig (re-keyed from admin-hacker),
    # from the host that will later run PsExec.
    guessing = retime_events(evtx_file("TA0006-Credential_Access_T1110.xxx-Brut_force_ID4771-Kerberos_brutforce_with_valid_user"), at(8, 2))
    for e in guessing:
        d = e["Event"]["EventData"]
        d["TargetUserName"] = VICTIM_SAM
        d["TargetSid"] = VICTIM_SID
        d["IpAddress"] = "::ffff:" + ATTACKER_IP
    out += guessing
    # Step 2: admmig logs on to SRVDEFENDER01 over the network and runs PsExec (unchanged).
    out += retime_events(evtx_file("TA0008-Lateral_Movement_T1021.002-SMB_Windows_Admin_Shares_ID4688_4697_5140-5145_PSexec_remote_execution_admin_share"), at(8, 14))
    # Step 3: admmig creates a local account on JUMP01 (unchanged).
    out += retime_events(evtx_file("TA0003-Persistence_T1136-Create_account_ID4720-Local_user_created"), at(8, 35))
    # Step 4: honey-pot1 is added to Domain Admins and Enterprise Admins, by admmig
    # (re-keyed from lambda-user).
    groups = retime_events(evtx_file("TA0003-Persistence_T1098.xxx-Account_manipulation_ID4728-4756-Member_added_to_sensitive_domain_groups"), at(8, 41))
    for e in groups:
        d = e["Event"]["EventData"]
        if d.get("SubjectUserName") == "lambda-user":
            d["SubjectUserName"] = VICTIM_SAM
            d["SubjectUserSid"] = VICTIM_SID
    out += groups
    # Step 5: DCSync from admmig's session (unchanged).
    out += retime_events(evtx_file("TA0006-Credential_Access_T1003-Credential_dumping_ID4662-DCsync_attack_using_Mimikatz"), at(9, 5))
    out.sort(key=lambda e: e["Event"]["System"]["TimeCreated"]["#attributes"]["SystemTime"])
    return out


def build_graph():
    src = json.load(open(os.path.join(SHARED, "microsoft", "graph-security-v1.0", "list_alerts_v2.response.json"), encoding="utf-8"))
    original = src["value"][0]
    # Background: the documentation alert itself, moved onto the demo day (low, no user).
    background = copy.deepcopy(original)
    for k, t in [("createdDateTime", at(5, 50)), ("firstActivityDateTime", at(5, 31)),
                 ("lastActivityDateTime", at(5, 44)), ("lastUpdateDateTime", at(5, 55))]:
        background[k] = iso(t)
    for ev in background["evidence"]:
        ev["createdDateTime"] = iso(at(5, 50))

    # Story: the same Defender for Endpoint detection, raised on SRVDEFENDER01 where PsExec ran,
    # with the user evidence Defender attaches for the account behind it.
    alert = copy.deepcopy(original)
    alert["id"] = alert["providerAlertId"] = "da638671234567890123_1183215047"
    alert["incidentId"] = "28391"
    alert["severity"] = "high"
    alert["alertWebUrl"] = "https://security.microsoft.com/alerts/da638671234567890123_1183215047?tid=" + alert["tenantId"]
    alert["incidentWebUrl"] = "https://security.microsoft.com/incidents/28391?tid=" + alert["tenantId"]
    for k, t in [("createdDateTime", at(8, 31)), ("firstActivityDateTime", at(8, 15)),
                 ("lastActivityDateTime", at(8, 17)), ("lastUpdateDateTime", at(8, 33))]:
        alert[k] = iso(t)
    evidence = []
    for ev in alert["evidence"]:
        ev["createdDateTime"] = iso(at(8, 31))
        if ev["@odata.type"] == "#microsoft.graph.security.deviceEvidence":
            ev["deviceDnsName"] = "srvdefender01.offsec.lan"
            ev["mdeDeviceId"] = "3b9e0f3c1d2a45b6c7d8e9f00112233445566778"
            ev["ipInterfaces"] = ["10.23.42.10"]
            ev["vmMetadata"] = None
            ev["tags"] = []
        evidence.append(ev)
    evidence.append({
        "@odata.type": "#microsoft.graph.security.userEvidence",
        "createdDateTime": iso(at(8, 31)),
        "verdict": "suspicious",
        "remediationStatus": "none",
        "remediationStatusDetails": None,
        "roles": ["compromised"],
        "detailedRoles": [],
        "tags": [],
        "userAccount": {
            "accountName": VICTIM_SAM,
            "domainName": VICTIM_DOMAIN,
            "userSid": VICTIM_SID,
            "azureAdUserId": VICTIM_AAD_ID,
            "userPrincipalName": VICTIM_UPN,
            "displayName": "Migration Admin",
        },
    })
    evidence.append({
        "@odata.type": "#microsoft.graph.security.ipEvidence",
        "createdDateTime": iso(at(8, 31)),
        "verdict": "suspicious",
        "remediationStatus": "none",
        "remediationStatusDetails": None,
        "roles": ["attacker"],
        "detailedRoles": [],
        "tags": [],
        "ipAddress": ATTACKER_IP,
        "countryLetterCode": None,
    })
    alert["evidence"] = evidence
    return {"value": [background, alert]}


def build_securityhub():
    base = os.path.join(SHARED, "aws-securityhub-asff")
    findings = []
    # Story, step 6: with the stolen identity the attacker signs in to AWS through IAM Identity
    # Center (session name = UPN) and stops CloudTrail logging.
    trail = json.load(open(os.path.join(base, "ocsf-examples", "v1.1.0", "Security_Hub", "Detection_Finding", "samples", "sechub-guardduty.raw"), encoding="utf-8"))
    key = trail["Resources"][0]["Details"]["AwsIamAccessKey"]
    key["PrincipalId"] = "AROATMJPC7YEXAMPLE:" + VICTIM_UPN
    key["PrincipalName"] = "AWSReservedSSO_AdministratorAccess_5b8e0c2f4d1a7e93"
    for k, t in [("FirstObservedAt", at(10, 2)), ("LastObservedAt", at(10, 2)), ("CreatedAt", at(10, 12)),
                 ("UpdatedAt", at(10, 12))]:
        trail[k] = iso(t)
    trail["ProductFields"]["aws/guardduty/service/eventFirstSeen"] = iso(at(10, 2))
    trail["ProductFields"]["aws/guardduty/service/eventLastSeen"] = iso(at(10, 2))
    findings.append(trail)
    # Background: GuardDuty SSH brute force against an EC2 instance (medium, no identity).
    ssh = json.load(open(os.path.join(base, "awsdocs-guardduty-user-guide", "securityhub-integration_01.json"), encoding="utf-8"))
    for k, t in [("FirstObservedAt", at(3, 15)), ("LastObservedAt", at(7, 56)), ("CreatedAt", at(3, 34)),
                 ("UpdatedAt", at(8, 14))]:
        ssh[k] = iso(t)
    findings.append(ssh)
    # Background: CIS / FSBP control findings (compliance posture, not detections).
    export = json.load(open(os.path.join(base, "heimdall2", "asff_sample.json"), encoding="utf-8"))
    for i, f in enumerate(export["Findings"]):
        t = at(4, 0) + timedelta(minutes=i)
        for k in ("FirstObservedAt", "LastObservedAt", "CreatedAt", "UpdatedAt"):
            if k in f:
                f[k] = iso(t)
        findings.append(f)
    return {"Findings": findings}


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "ad-security-events.jsonl"), "w", encoding="utf-8") as fh:
        for e in build_windows():
            fh.write(json.dumps(e, ensure_ascii=False) + "\n")
    with open(os.path.join(OUT, "defender-alerts.json"), "w", encoding="utf-8") as fh:
        json.dump(build_graph(), fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    with open(os.path.join(OUT, "securityhub-findings.json"), "w", encoding="utf-8") as fh:
        json.dump(build_securityhub(), fh, indent=2, ensure_ascii=False)
        fh.write("\n")


if __name__ == "__main__":
    main()
