"""The per-op table LOOM_PROFILE=1 prints at exit: run a program with it and check
the table's columns against each other (calls, total ms, mean us, median us, share)."""
import os
import re
import subprocess
import sys

out = subprocess.run([sys.argv[1]], env=dict(os.environ, LOOM_PROFILE="1"), capture_output=True, text=True)
if out.returncode != 0:
    sys.exit("%s failed (%d): %s" % (sys.argv[1], out.returncode, out.stderr))
lines = out.stderr.splitlines()
head = [i for i, l in enumerate(lines) if l.split() == ["op", "calls", "total", "ms", "mean", "us", "median", "us",
                                                         "share"]]
if len(head) != 1:
    sys.exit("no profile table header in:\n" + out.stderr)
rows, share = {}, 0.0
for l in lines[head[0] + 1:]:
    if l.startswith("total"):
        break
    m = re.match(r"(\S.*?)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)%$", l)
    if not m:
        sys.exit("not a table row: %r" % l)
    name, calls, total, mean, median, pct = m.group(1), int(m.group(2)), *map(float, m.groups()[2:])
    if calls < 1 or abs(total * 1e3 / calls - mean) > 0.051 + 1e3 * 0.05 / calls:
        sys.exit("%s: %d calls, %.1f ms in all, but a mean of %.1f us" % (name, calls, total, mean))
    if calls == 1 and abs(median - mean) > 0.051:
        sys.exit("%s: one call, but its median %.1f us is not its mean %.1f us" % (name, median, mean))
    if median > total * 1e3 + 50.1:  # a call takes no longer than all of them (total printed to 0.1 ms)
        sys.exit("%s: median %.1f us over the total %.1f ms" % (name, median, total))
    rows[name] = calls
    share += pct
if rows.get("add") != 1 or abs(share - 100) > 0.1 * len(rows) + 0.05:
    sys.exit("expected one add and shares summing to 100%%: %s, %.1f%%" % (rows, share))
print("profile table ok: %d ops" % len(rows))
