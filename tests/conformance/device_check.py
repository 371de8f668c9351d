#!/usr/bin/env python3
"""Device conformance: every op case of cases/ops.json run on cpu(0) and on a
device (default gpu(0)) from the same inputs, outputs and input gradients
compared. Float32 results must agree to a relative error of 1e-5 (float64:
1e-12; integers exactly); random ops must give the same bits, since the
device uses the same counter-based generator.

Each case ends as one of:
  match         outputs (and gradients, for differentiable ops) agree
  mismatch      they do not (the worst element is printed)
  missing       the device backend has no kernel for the op
  missing-grad  outputs agree; the backend has no kernel for the op's gradient
  error         the op failed on the device (its message is printed)
  host          the op runs on the CPU whatever the context (nothing to compare)
  skip          the case fails on the CPU as well

Usage: device_check.py [--ctx gpu(0)] [--only OP,...] [--json FILE] [--require-all]
Exit status: 1 when a case mismatches or fails on the device, or, with
--require-all, when any kernel is missing; 0 otherwise. The GPU backend is
found as usual (LOOM_CUDA_LIBRARY, beside libloom, the library path)."""
import argparse
import json
import os
import sys

import numpy as np

import loom
from loom import _abi
from run import make_input, raw  # the conformance runner's inputs, drawn the same way

HERE = os.path.dirname(os.path.abspath(__file__))
TOLERANCE = {"float32": (1e-5, 1e-6), "float64": (1e-12, 1e-13)}


def worst_error(got, want):
    """The largest error beyond tolerance as a string, or None when they agree."""
    if got.shape != want.shape or got.dtype != want.dtype:
        return "shape/dtype %s %s vs %s %s" % (got.shape, got.dtype, want.shape, want.dtype)
    if got.dtype.name not in TOLERANCE:
        bad = np.flatnonzero(got != want)
        return None if bad.size == 0 else "%d of %d elements differ" % (bad.size, got.size)
    rtol, atol = TOLERANCE[got.dtype.name]
    g, w = got.astype(np.float64), want.astype(np.float64)
    same_nan = np.isnan(g) & np.isnan(w)
    err = np.where(same_nan, 0.0, np.abs(g - w))
    limit = atol + rtol * np.abs(w)
    over = ~(err <= limit)
    if not over.any():
        return None
    i = int(np.argmax(np.where(over, err / np.maximum(limit, 1e-300), 0)))
    return "element %d: %r vs %r" % (i, got.flat[i], want.flat[i])


def device_inputs(case, ctx, info):
    inputs = [make_input(s) for s in case["inputs"]]
    if ctx is not None:
        inputs = [x.copyto(ctx) for x in inputs]
    params = {k: raw(v) for k, v in (case.get("params") or {}).items()}
    if ctx is not None and not inputs and any(p["name"] == "ctx" for p in info["params"]):
        params["ctx"] = repr(ctx)
    return inputs, params


def forward(case, ctx, info):
    """The case's outputs computed on ctx (None: the CPU), as NumPy arrays."""
    inputs, params = device_inputs(case, ctx, info)
    loom.seed(int(case.get("seed", "0")))
    outs = loom._invoke(case["op"], inputs, params)
    outs = outs if isinstance(outs, list) else [outs]
    return [o.asnumpy() for o in outs[:int(case.get("outputs", "1"))]]


def gradients(case, ctx, info):
    """Gradients of the float inputs for a head gradient of ones on output 0."""
    inputs, params = device_inputs(case, ctx, info)
    floats = [x for x in inputs if x.dtype in TOLERANCE]
    for x in floats:
        x.attach_grad()
    loom.seed(int(case.get("seed", "0")))
    with loom.record(train=True):
        outs = loom._invoke(case["op"], inputs, params)
    outs = outs if isinstance(outs, list) else [outs]
    if outs[0].dtype not in TOLERANCE:
        return []
    outs[0].backward()
    return [x.grad.asnumpy() for x in floats]


def compare(what, got, want):
    for i, (g, w) in enumerate(zip(got, want)):
        e = worst_error(g, w)
        if e:
            return "%s %d: %s" % (what, i, e)
    return None


def missing_kernel(e):
    return e.status == _abi.LOOM_ERR_BACKEND_UNAVAILABLE and "kernel for" in str(e)


def check(case, ctx, info):
    """(status, detail) of one case; see the module doc for the statuses."""
    if not case["inputs"] and not any(p["name"] == "ctx" for p in info["params"]):
        return "host", "runs on the CPU whatever the context"
    try:
        want = forward(case, None, info)
    except loom.LoomError as e:
        return "skip", "fails on the CPU too: %s" % e
    try:
        got = forward(case, ctx, info)
    except loom.LoomError as e:
        return ("missing", str(e).split(";")[0]) if missing_kernel(e) else ("error", str(e))
    bad = compare("output", got, want)
    if bad:
        return "mismatch", bad
    if not (info.get("differentiable") and any(s.get("dtype", "float32") in TOLERANCE and not s.get("cast")
                                               for s in case["inputs"])):
        return "match", ""
    try:
        want = gradients(case, None, info)
    except loom.LoomError as e:
        return "match", "no gradient on the CPU either: %s" % e
    try:
        got = gradients(case, ctx, info)
    except loom.LoomError as e:
        if missing_kernel(e):
            return "missing-grad", str(e).split(";")[0]
        return "error", "gradient: %s" % e
    bad = compare("gradient", got, want)
    return ("mismatch", bad) if bad else ("match", "")


def parse_ctx(text):
    kind, _, rest = text.partition("(")
    i = int(rest.rstrip(")") or 0)
    return loom.gpu(i) if kind == "gpu" else loom.cpu(i)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ctx", default="gpu(0)")
    ap.add_argument("--only", default="", help="comma-separated op names")
    ap.add_argument("--json", help="write the per-case results here")
    ap.add_argument("--require-all", action="store_true", help="a missing kernel fails too")
    a = ap.parse_args()
    ctx = parse_ctx(a.ctx)
    print(loom.backend_describe(), flush=True)
    cases = json.load(open(os.path.join(HERE, "cases", "ops.json")))["cases"]
    only = set(filter(None, a.only.split(",")))
    infos = {d["name"]: d for d in loom.describe_ops()}
    results = {}
    for c in cases:
        if only and c["op"] not in only:
            continue
        status, detail = check(c, ctx, infos[c["op"]])
        results[c["name"]] = {"op": c["op"], "status": status, "detail": detail}
        if status not in ("match", "missing", "missing-grad", "host"):
            print("%-40s %-8s %s" % (c["name"], status, detail), flush=True)
    counts = {}
    for r in results.values():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    for status, what in (("missing", "no kernel"), ("missing-grad", "no gradient kernel")):
        ops = sorted({r["op"] for r in results.values() if r["status"] == status})
        if ops:
            print("%s on %s for: %s" % (what, a.ctx, ", ".join(ops)))
    print("%s: %s" % (a.ctx, ", ".join("%d %s" % (counts[k], k) for k in sorted(counts))))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1, sort_keys=True)
    bad = counts.get("mismatch", 0) + counts.get("error", 0)
    if a.require_all:
        bad += counts.get("missing", 0) + counts.get("missing-grad", 0)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
