#!/usr/bin/env python3
"""Weighted TTP coverage of a list of shell commands, measured with `decnet tag`.

Usage:
    python3 scripts/command-coverage.py CSV [--decnet PATH] [--rules-dir DIR] [--top N]

CSV is a Kibana-style export (UTF-8, with or without BOM, one header row) whose columns are
command, time bucket, count. Counts may carry thousands separators ("1,281", "1 281").
Counts are summed per distinct command; each distinct command becomes one `command` tagging
event sent to `decnet tag --rules-dir DIR` on standard input:

    {"source_kind":"command","source_id":"row-<n>","attacker_ip":"192.0.2.1",
     "payload":{"command_text":<command>,"ts":<time>}}

`ts` puts every event in its own minute, two minutes apart: all events share one anchor
(192.0.2.1) and `decnet tag` applies the per-rule, per-anchor rate limit (RULES.md §4.7,
60 tags a minute by default), which would otherwise drop tags of the busiest rules.

The script then reads the tags (JSONL on standard output) and prints the share of executions
that received at least one tag, a per-rule table and the top N untagged commands.
"""
import argparse
import collections
import csv
import datetime
import json
import os
import re
import signal
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANCHOR_IP = "192.0.2.1"
TS_BASE = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
TS_STEP = datetime.timedelta(minutes=2)


def parse_count(text):
    """Parse an integer count that may contain thousands separators."""
    s = re.sub(r"[\s\u00a0\u202f,'_]", "", text or "")
    if re.fullmatch(r"\d{1,3}(?:\.\d{3})+", s):  # 1.281 (dot as thousands separator)
        s = s.replace(".", "")
    if not s:
        raise ValueError("empty count")
    try:
        return int(s)
    except ValueError:
        value = float(s)
        if value != int(value):
            raise ValueError("fractional count %r" % text)
        return int(value)


def read_commands(path):
    """Return an ordered dict command -> summed count, and the number of data rows read."""
    totals = collections.OrderedDict()
    rows = 0
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        for lineno, row in enumerate(reader, 1):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < 3:
                sys.stderr.write("%s:%d: expected 3 columns, got %d; skipped\n" % (path, reader.line_num, len(row)))
                continue
            command, count_text = row[0], row[-1]
            try:
                count = parse_count(count_text)
            except ValueError:
                if lineno == 1:  # header row
                    continue
                sys.stderr.write("%s:%d: bad count %r; skipped\n" % (path, reader.line_num, count_text))
                continue
            totals[command] = totals.get(command, 0) + count
            rows += 1
    return totals, rows


def default_decnet():
    release = os.path.join(REPO, "target", "release", "decnet")
    debug = os.path.join(REPO, "target", "debug", "decnet")
    return release if os.path.exists(release) else debug


def run_decnet(decnet, rules_dir, commands):
    lines = []
    for n, command in enumerate(commands):
        ts = (TS_BASE + n * TS_STEP).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(json.dumps({
            "source_kind": "command",
            "source_id": "row-%d" % n,
            "attacker_ip": ANCHOR_IP,
            "payload": {"command_text": command, "ts": ts},
        }, ensure_ascii=False))
    stdin = ("\n".join(lines) + "\n").encode("utf-8")
    try:
        proc = subprocess.run([decnet, "tag", "--rules-dir", rules_dir], input=stdin,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as e:
        sys.exit("error: cannot run %s: %s (build the engine or pass --decnet)" % (decnet, e))
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.decode("utf-8", "replace"))
        sys.exit("error: %s tag exited with status %d" % (decnet, proc.returncode))
    errors = [l for l in proc.stderr.decode("utf-8", "replace").splitlines() if l.strip()]
    if errors:
        sys.stderr.write("warning: decnet tag reported %d line(s) on stderr, first: %s\n" % (len(errors), errors[0]))
    tags = []
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            tag = json.loads(line)
        except ValueError:
            sys.stderr.write("warning: non-JSON output line skipped: %s\n" % line[:120])
            continue
        if isinstance(tag, dict) and "source_id" in tag and "rule_id" in tag:
            tags.append(tag)
    return tags


def short(text, width=100):
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= width else text[:width - 3] + "..."


def main():
    if hasattr(signal, "SIGPIPE"):  # quiet exit when piped into head
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    ap = argparse.ArgumentParser(description="Weighted TTP coverage of shell commands via `decnet tag`.")
    ap.add_argument("csv", metavar="CSV", help="command,bucket,count export (UTF-8, BOM allowed)")
    ap.add_argument("--decnet", default=None,
                    help="decnet binary (default: target/release/decnet if present, else target/debug/decnet)")
    ap.add_argument("--rules-dir", default=os.path.join(REPO, "rules", "ttp"), help="rule pack (default: rules/ttp)")
    ap.add_argument("--top", type=int, default=20, metavar="N", help="untagged commands to list (default 20)")
    args = ap.parse_args()

    totals, rows = read_commands(args.csv)
    commands = list(totals)
    total = sum(totals.values())
    tags = run_decnet(args.decnet or default_decnet(), args.rules_dir, commands)

    fired = collections.defaultdict(set)          # row index -> rule ids
    techniques = collections.defaultdict(set)     # rule id -> technique ids
    for tag in tags:
        sid = str(tag.get("source_id", ""))
        if not sid.startswith("row-"):
            continue
        try:
            idx = int(sid[4:])
        except ValueError:
            continue
        if not 0 <= idx < len(commands):
            continue
        rid = tag["rule_id"]
        fired[idx].add(rid)
        techniques[rid].add(tag.get("sub_technique_id") or tag.get("technique_id") or "?")

    tagged = sum(totals[commands[i]] for i in fired)
    share = 100.0 * tagged / total if total else 0.0
    print("read %d data rows, %d distinct commands, %d executions" % (rows, len(commands), total))
    print("tagged %d of %d executions (%.1f%%) over %d distinct commands" % (tagged, total, share, len(commands)))
    print("tagged distinct commands: %d of %d" % (len(fired), len(commands)))

    per_rule_exec = collections.Counter()
    per_rule_cmds = collections.Counter()
    for idx, rids in fired.items():
        for rid in rids:
            per_rule_exec[rid] += totals[commands[idx]]
            per_rule_cmds[rid] += 1
    print()
    print("%-7s %-22s %9s %8s %7s" % ("rule", "technique", "commands", "execs", "share"))
    for rid in sorted(per_rule_exec):
        tech = ",".join(sorted(techniques[rid]))
        print("%-7s %-22s %9d %8d %6.1f%%" % (rid, tech, per_rule_cmds[rid], per_rule_exec[rid],
                                             100.0 * per_rule_exec[rid] / total if total else 0.0))

    untagged = sorted(((totals[c], i, c) for i, c in enumerate(commands) if i not in fired),
                      key=lambda x: (-x[0], x[1]))
    print()
    print("top %d untagged commands (%d distinct, %d executions):"
          % (min(args.top, len(untagged)), len(untagged), sum(u[0] for u in untagged)))
    for count, _, command in untagged[:args.top]:
        print("%8d  %s" % (count, short(command)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
