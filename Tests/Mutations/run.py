#!/usr/bin/env python3
"""Breaks the code on purpose, one mutation at a time, and checks that the tests named for it
fail: a test that passes with the behaviour it names broken proves nothing.

  python3 Tests/Mutations/run.py [--only TEXT] [--list]

Each entry of mutations.json names the files it changes, the (old, new) text pairs, and the
`swift test --filter` expression of the tests that must catch it. For each: apply, build,
run those tests, report CAUGHT (they failed) or MISSED (they passed), and restore the files,
also on Ctrl-C or a failed build. Needs what `bash Tests/run.sh` needs (root for the system
tests). Exits non-zero if any mutation was missed or could not be applied. Not part of CI:
a full run takes about 20 minutes here.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def sh(command, timeout):
    return subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def main():
    ap = argparse.ArgumentParser(description="Break the code on purpose; the named tests must fail.")
    ap.add_argument("--only", default="", help="run the mutations whose name contains this text")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    a = ap.parse_args()
    mutations = json.load(open(os.path.join(os.path.dirname(__file__), "mutations.json")))
    mutations = [m for m in mutations if a.only in m["name"]]
    if a.list:
        for m in mutations:
            print(f"{m['name']}  [{m['tests']}]")
        return 0
    bad = 0
    for m in mutations:
        saved = {f: open(os.path.join(ROOT, f)).read() for f in m["files"]}
        texts = dict(saved)
        missing = []
        for old, new in m["pairs"]:
            f = next((f for f in m["files"] if old in texts[f]), None)
            if f is None:
                missing.append(old[:60])
                continue
            texts[f] = texts[f].replace(old, new, 1)
        if missing:
            print(f"NOT APPLIED {m['name']}: text not found: {missing}", flush=True)
            bad += 1
            continue
        try:
            for f in m["files"]:
                open(os.path.join(ROOT, f), "w").write(texts[f])
            build = sh("swift build --build-tests 2>&1", 1800)
            if build.returncode != 0:
                errors = [l for l in build.stdout.splitlines() if "error:" in l][:2]
                print(f"NOT BUILT {m['name']}: {' | '.join(errors)}", flush=True)
                bad += 1
                continue
            test = sh(f"swift test --skip-build --filter '{m['tests']}' 2>&1", 1800)
            issues = [l.strip()[:200] for l in test.stdout.splitlines() if "recorded an issue" in l][:2]
            if test.returncode != 0:
                print(f"CAUGHT {m['name']} [{m['tests']}]: {' | '.join(issues)}", flush=True)
            else:
                print(f"MISSED {m['name']} [{m['tests']}]", flush=True)
                bad += 1
        finally:
            for f in m["files"]:
                open(os.path.join(ROOT, f), "w").write(saved[f])
    sh("swift build --build-tests 2>&1", 1800)   # the unmutated build again
    print(f"{len(mutations) - bad} caught, {bad} missed or not applied", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
