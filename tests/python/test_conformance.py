"""The conformance runners' handling of bad case files: a malformed file or a
case naming an unknown op fails with a message while the other cases run."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("LOOM_BUILD_DIR", os.path.join(ROOT, "build"))


def runners():
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bindings", "python"))
    yield "python", [sys.executable, os.path.join(ROOT, "tests", "conformance", "run.py")], env
    c = os.path.join(BUILD, "tests", "conformance", "loom_conformance")
    if os.path.exists(c):
        yield "c", [c], env
    cs = os.path.join(ROOT, "tests", "conformance", "csharp", "bin", "Release", "net10.0", "Loom.Conformance.dll")
    if os.path.exists(cs):
        yield "csharp", ["dotnet", cs], env


class Coverage(unittest.TestCase):
    def test_every_registered_op_has_a_case(self):
        import loom
        with open(os.path.join(ROOT, "tests", "conformance", "cases", "ops.json")) as f:
            covered = {c["op"] for c in json.load(f)["cases"]}
        missing = sorted({op["name"] for op in loom.describe_ops()} - covered)
        self.assertEqual(missing, [], "operators without a conformance case (add them to make_cases.py)")


class BadCaseFiles(unittest.TestCase):
    def test_bad_cases_fail_alone(self):
        with tempfile.TemporaryDirectory() as d:
            good = {"name": "good", "op": "add", "inputs": [{"shape": [2], "seed": 1}, {"shape": [2], "seed": 2}]}
            cases = {"cases": [{"name": "unknown", "op": "NoSuchOp", "inputs": []},
                               {"name": "bad_params", "op": "add", "inputs": [{"shape": [2], "seed": 1}], "params": {"x": 1}},
                               good]}
            path = os.path.join(d, "cases.json")
            with open(path, "w") as f:
                json.dump(cases, f)
            broken = os.path.join(d, "broken.json")
            with open(broken, "w") as f:
                f.write('{"cases": [ {"name": "x", ')
            seen = set()
            for label, cmd, env in runners():
                r = subprocess.run(cmd + [broken, path], env=env, capture_output=True, text=True, timeout=120)
                out = r.stdout.splitlines()
                self.assertTrue(any(l.startswith("broken.json ERROR") or "broken.json ERROR" in l for l in out), (label, out))
                self.assertTrue(any(l.startswith("unknown ERROR") and "NoSuchOp" in l for l in out), (label, out))
                self.assertTrue(any(l.startswith("bad_params ERROR") for l in out), (label, out))
                good_lines = [l for l in out if l.startswith("good/out0 ")]
                self.assertEqual(len(good_lines), 1, (label, out))
                seen.add(good_lines[0])
            self.assertEqual(len(seen), 1, "the runners disagree on the good case: %s" % seen)


if __name__ == "__main__":
    unittest.main()
