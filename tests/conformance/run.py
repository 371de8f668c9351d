#!/usr/bin/env python3
"""Conformance runner in Python: executes every case of the given JSON files
through the Python binding and prints one line per output, "<name> <sha256 of
its raw bytes>", or "<case> ERROR <message>" for a case that cannot run (the
others still run). Usage: run.py CASES.json... > digests.txt"""
import hashlib
import json
import os
import sys

import loom
from loom import _abi


def raw(value):
    """A parameter's text: numbers exactly as written in the case file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "(" + ",".join(raw(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def params_of(d):
    return {k: raw(v) for k, v in (d or {}).items()}


def make_input(spec, shape=None, dtype=None):
    loom.seed(int(spec.get("seed", "0")))
    shape = shape if shape is not None else tuple(int(s) for s in spec["shape"])
    x = loom._invoke("random_uniform", [], {"shape": raw(list(shape)) if shape else "()",
                                            "low": raw(spec.get("low", "-1")), "high": raw(spec.get("high", "1")),
                                            "dtype": dtype or spec.get("dtype", "float32")})
    for dt in spec.get("cast", []):
        x = loom._invoke("cast", [x], {"dtype": dt})
    return x


def digest(a):
    return hashlib.sha256(a.tobytes()).hexdigest()


def run_op_case(c, emit):
    inputs = [make_input(s) for s in c["inputs"]]
    loom.seed(int(c.get("seed", "0")))
    outs = loom._invoke(c["op"], inputs, params_of(c.get("params")))
    outs = outs if isinstance(outs, list) else [outs]
    n = int(c.get("outputs", "1"))
    for i in range(n):
        emit("%s/out%d" % (c["name"], i), digest(outs[i]))


def fill(arr, spec, seed):
    s = dict(spec)
    s["seed"] = str(seed)
    x = make_input(s, arr.shape, arr.dtype)
    loom._check(loom._LIB.loom_ndarray_copy_to(arr.handle, x.handle))


def run_graph_case(c, base, emit):
    net = loom.Symbol.load(os.path.join(base, c["graph"]))
    shapes = {k: tuple(int(d) for d in v) for k, v in c["shapes"].items()}
    reqs = {k: "null" for k in shapes}
    ex = net.simple_bind(grad_req=reqs, **shapes)
    specs = c.get("inputs", {})
    seed = int(c.get("seed", "0"))
    args, auxs = ex.arg_dict, ex.aux_dict
    for i, (name, a) in enumerate(args.items()):
        fill(a, specs.get(name, {}), seed * 1000 + i)
    for j, (name, a) in enumerate(auxs.items()):
        fill(a, specs.get(name, {"low": "0.5", "high": "1.5"}), seed * 1000 + 500 + j)
    train = c.get("train", True)
    steps = int(c.get("steps", "0"))
    if steps == 0:
        outs = ex.forward(is_train=train)
        if c.get("backward", True):
            ex.backward()
        for i, o in enumerate(outs):
            emit("%s/out%d" % (c["name"], i), digest(o))
        for name, g in ex.grad_dict.items():
            emit("%s/grad:%s" % (c["name"], name), digest(g))
    else:
        opt = c["optimizer"]
        nstate = len(loom.describe_op(opt["op"])["inputs"]) - 2
        has_t = any(p["name"] == "t" for p in loom.describe_op(opt["op"])["params"])
        params = [n for n in net.list_arguments() if n not in shapes]
        grads = ex.grad_dict
        states = {n: [loom._invoke("zeros", [], {"shape": raw(list(args[n].shape)), "dtype": args[n].dtype})
                      for _ in range(nstate)] for n in params}
        for step in range(1, steps + 1):
            ex.forward(is_train=True)
            ex.backward()
            for n in params:
                p = params_of(opt.get("params"))
                if has_t:
                    p["t"] = str(step)
                loom._invoke(opt["op"], [args[n], grads[n]] + states[n], p, out=[args[n]] + states[n])
        for n in params:
            emit("%s/arg:%s" % (c["name"], n), digest(args[n]))
    for name, a in auxs.items():
        emit("%s/aux:%s" % (c["name"], name), digest(a))


def run_kvstore_case(c, emit):
    """Init from one drawn value, then each push (one drawn value per seed, value i on
    cpu(i) when "devices") followed by a pull, digested."""
    from loom import kv as kvs
    spec, key = c["value"], c.get("key", "w")
    store = kvs.create(c["kvstore"])
    if "updater" in c:
        store.set_updater(c["updater"]["op"], **params_of(c["updater"].get("params")))
    init = make_input(spec)
    store.init(key, init)
    for step, push in enumerate(c["pushes"]):
        values = []
        for i, seed in enumerate(push):
            s = dict(spec)
            s["seed"] = seed
            x = make_input(s)
            if c.get("devices"):
                on = loom.zeros(x.shape, x.dtype, ctx=loom.cpu(i))
                loom._check(loom._LIB.loom_ndarray_copy_to(on.handle, x.handle))
                x = on
            values.append(x)
        store.push(key, values)
        out = loom.zeros(init.shape, init.dtype)
        store.pull(key, out)
        emit("%s/pull%d" % (c["name"], step), digest(out))


def main(files):
    for path in files:
        base = os.path.dirname(os.path.abspath(path))
        with open(path) as f:
            try:
                doc = json.load(f, parse_float=str, parse_int=str)
            except ValueError as e:
                print("%s ERROR malformed case file: %s" % (os.path.basename(path), e))
                continue
        for c in doc.get("cases", []):
            lines = []
            try:
                if "op" in c:
                    run_op_case(c, lambda n, d: lines.append("%s %s" % (n, d)))
                elif "kvstore" in c:
                    run_kvstore_case(c, lambda n, d: lines.append("%s %s" % (n, d)))
                else:
                    run_graph_case(c, base, lambda n, d: lines.append("%s %s" % (n, d)))
                loom.wait_all()
            except Exception as e:  # one bad case must not stop the others
                lines = ["%s ERROR %s" % (c.get("name", "?"), " ".join(str(e).split()))]
            print("\n".join(lines))
            sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
