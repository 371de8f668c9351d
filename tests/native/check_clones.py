#!/usr/bin/env python3
"""Fails when a function compiled in several builds (target_clones: its AVX-512
and AVX2 builds) calls a function of the library's own that has only its
baseline build: the loop the clone exists for would then run as SSE2 code.
The bodies such clones call are marked LOOM_CLONE_BODY (native/src/ops/vecmath.h).

usage: check_clones.py OBJDUMP LIBRARY"""
import re
import subprocess
import sys

objdump, lib = sys.argv[1], sys.argv[2]
out = subprocess.run([objdump, "-d", "--no-show-raw-insn", "-C", lib], check=True, capture_output=True,
                     text=True).stdout
head = re.compile(r"^[0-9a-f]+ <(.*)>:$")
call = re.compile(r"\s(?:call|jmp)\s+[0-9a-f]+ <(.*)>\s*$")
clones, bad, cur = 0, [], None
for line in out.splitlines():
    m = head.match(line)
    if m:
        cur = m.group(1)
        cloned = "[clone .avx512f]" in cur or "[clone .avx2]" in cur
        clones += cloned
        continue
    if not cur or not cloned:
        continue
    m = call.search(line)
    if not m:
        continue
    target = m.group(1)
    if "@plt" in target or "[clone ." in target or target == cur or re.search(r"\+0x[0-9a-f]+$", target):
        continue  # a library call, another clone, or a jump inside the function
    # The name without its return type ("void loom::..."); std:: code is not ours.
    name = re.sub(r"^[^(]*? (?=[^ (]*::)", "", target.split("(")[0]) if "(" in target else target
    if name.startswith("loom::"):
        bad.append("%s\n    calls %s" % (cur, target))
if clones < 10:
    sys.exit("check_clones: only %d cloned functions found in %s; is it the library built with them?" % (clones, lib))
if bad:
    sys.exit("check_clones: cloned functions call baseline-only code (mark the callee LOOM_CLONE_BODY):\n  "
             + "\n  ".join(sorted(set(bad))))
print("check_clones: %d cloned builds, none calls baseline-only code of the library" % clones)
