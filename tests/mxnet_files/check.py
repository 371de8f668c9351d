"""Loads symbol files written by MXNet itself, infers their shapes, binds them and runs a
forward pass. Usage: check.py MANIFEST DIR; the manifest (JSON, manifest.json here) lists
each file with the public repository, path and commit it came from and the input shapes to
bind it with; the files are read from DIR (by default the manifest's folder, where they are
kept with their sources recorded). Prints one line per file and exits non-zero if any file fails."""
import json
import os
import sys
import traceback

import numpy as np

import loom


def check(entry, folder):
    sym = loom.Symbol.load(os.path.join(folder, entry["file"]))
    shapes = {k: tuple(v) for k, v in entry["inputs"].items()}
    args, outs, aux = sym.infer_shape(**shapes)
    want = entry.get("outputs")
    if want is not None and [list(o) for o in outs] != want:
        raise AssertionError("output shapes %s, expected %s (MXNet's rules)" % (outs, want))
    reqs = {n: "null" for n in sym.list_arguments()}
    ex = sym.simple_bind(grad_req=reqs, **shapes)
    rng = np.random.default_rng(0)
    for name, arr in ex.arg_dict.items():
        if name in shapes and entry.get("integer_inputs", {}).get(name):
            arr.copyfrom(rng.integers(0, entry["integer_inputs"][name], arr.shape))
        else:
            arr.copyfrom(rng.uniform(-0.1, 0.1, arr.shape))
    res = ex.forward(is_train=False)
    for o in res:
        v = o.asnumpy()
        if not np.all(np.isfinite(v)):
            raise AssertionError("non-finite output")
    return outs


def main():
    manifest = sys.argv[1]
    folder = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(manifest))
    entries = json.load(open(manifest))["files"]
    failed = 0
    for e in entries:
        try:
            outs = check(e, folder)
            print("ok   %-40s %s (%s:%s@%s)" % (e["file"], outs, e["repo"], e["path"], e["commit"][:10]))
        except Exception as ex:  # noqa: BLE001 - every failure is reported by file
            failed += 1
            print("FAIL %-40s %s" % (e["file"], str(ex).splitlines()[0] if str(ex) else type(ex).__name__))
            if os.environ.get("VERBOSE"):
                traceback.print_exc()
    print("%d passed, %d failed" % (len(entries) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
