#!/usr/bin/env python3
"""Pass rate of the ONNX node tests for the priority ops of OPS.md.

usage: kiln test-onnx -v ../shared/onnx-tests/node > run.txt
       scripts/node-coverage.py run.txt [../shared/onnx-tests]

Two views: tests that use only priority ops (what an engine implementing the
list can attempt) and tests that contain at least one priority op."""
import os
import re
import sys


def main():
    run = sys.argv[1]
    suite = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(__file__), "..", "..", "shared", "onnx-tests")
    priority = set()
    in_table = False
    for line in open(os.path.join(suite, "OPS.md")):
        if line.startswith("## Priority ops"):
            in_table = True
        elif line.startswith("## ") and in_table:
            break
        elif in_table and line.startswith("| ") and not line.startswith("| group"):
            cells = [c.strip() for c in line.split("|")]
            if len(cells) > 3 and cells[2] and not cells[2].startswith("-"):
                priority.add(cells[2])
    tests = {}
    with open(os.path.join(suite, "INDEX.tsv")) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(header, line.rstrip("\n").split("\t")))
            ops = set(row["ops"].split(",")) if row["ops"] != "-" else set()
            if row["nested_ops"] != "-":
                ops |= set(row["nested_ops"].split(","))
            tests[row["test"]] = ops
    status = {}
    for line in open(run):
        m = re.match(r"^(PASS|FAIL|SKIP|FAIL \(known\)) (\S+?)(:|$)", line)
        if m:
            status[m.group(2)] = m.group(1).split()[0]
    only = [t for t, ops in tests.items() if ops and ops <= priority]
    some = [t for t, ops in tests.items() if ops & priority]
    for label, group in (("only priority ops", only), ("at least one priority op", some)):
        passed = sum(1 for t in group if status.get(t) == "PASS")
        print(f"{label}: {passed}/{len(group)} pass ({100.0 * passed / max(1, len(group)):.1f}%)")
    missing = [t for t in only if status.get(t) != "PASS"]
    if missing:
        print("not passing (only priority ops):")
        for t in sorted(missing):
            print(f"  {t}: {status.get(t, 'not run')}")


if __name__ == "__main__":
    main()
