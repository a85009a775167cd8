#!/usr/bin/env python3
"""Rebuilds hunt/sigma/sigmahq-windows.jsonl.gz, the SigmaHQ Windows rule set `cairn hunt`
bundles: one JSON object per rule file ({"path": ..., "text": ...}), sorted by path.

Usage: scripts/bundle-sigma.py SIGMA_REPO_CHECKOUT
(the folder that holds SigmaHQ's `rules/windows`)."""
import gzip, json, os, sys

root = sys.argv[1]
out = os.path.join(os.path.dirname(__file__), "..", "hunt", "sigma", "sigmahq-windows.jsonl.gz")
paths = []
for d, _, files in os.walk(os.path.join(root, "rules", "windows")):
    paths += [os.path.join(d, f) for f in files if f.endswith((".yml", ".yaml"))]
paths.sort()
# mtime=0: the same rules give the same bytes.
with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz:
    for p in paths:
        with open(p, encoding="utf-8") as f:
            rel = os.path.relpath(p, root)
            gz.write((json.dumps({"path": rel, "text": f.read()}) + "\n").encode())
print(f"{len(paths)} rules -> {os.path.normpath(out)}")
