#!/usr/bin/env python3
"""Compares the digests written by the runners (LABEL=FILE ...) case by case:
a case passes when every runner printed the same digests for it and they match
the golden file. Prints each failure and ends with "N passed, M failed".
With --update, writes the golden file from the runs when they all agree."""
import sys
from collections import OrderedDict


def read(path):
    cases = OrderedDict()
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            name, rest = line.split(" ", 1)
            case = name.split("/", 1)[0]
            cases.setdefault(case, []).append(line)
    return cases


def main(argv):
    update = "--update" in argv
    argv = [a for a in argv if a != "--update"]
    golden_path, runs = argv[0], [a.split("=", 1) for a in argv[1:]]
    results = OrderedDict((label, read(path)) for label, path in runs)
    golden = {} if update else read(golden_path)
    first = next(iter(results.values()))
    names = list(OrderedDict.fromkeys(list(first) + [c for r in results.values() for c in r] + list(golden)))
    passed = failed = 0
    for case in names:
        lines = {label: r.get(case) for label, r in results.items()}
        problems = []
        ref = lines[runs[0][0]]
        for label, got in lines.items():
            if got is None:
                problems.append("%s printed nothing" % label)
            elif any(" ERROR " in l for l in got):
                problems.append("%s: %s" % (label, got[0]))
            elif got != ref:
                problems.append("%s differs from %s" % (label, runs[0][0]))
        if not update and not problems:
            if case not in golden:
                problems.append("no golden digests (new case? run ./build.sh conformance --update and commit)")
            elif golden[case] != ref:
                diff = [l for l in ref if l not in golden[case]]
                problems.append("differs from the golden digests: %s" % (diff[0] if diff else "outputs missing"))
        if problems:
            failed += 1
            print("FAIL %s: %s" % (case, "; ".join(problems)))
        else:
            passed += 1
    if update:
        if failed:
            print("not updating %s: the runs disagree" % golden_path)
            return 1
        with open(golden_path, "w") as f:
            for case in names:
                f.write("\n".join(first[case]) + "\n")
        print("wrote %s (%d cases)" % (golden_path, passed))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
