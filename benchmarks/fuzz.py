"""Longer fuzz run: the hypothesis properties of tests/test_reliability.py (``test_fuzz_*``) with many cases.

The tests run each property for a bounded count in CI; this runs the very same properties with
``--examples`` cases each (they read SYNCOPT_FUZZ_EXAMPLES) and writes results/fuzz.json: per
property the passing / failing / invalid case counts hypothesis reports and its outcome, and the
cases per loader (a loader may have several properties: media has random bytes and damaged videos).
A failure is a bug to fix: an input that crashed with something other than a documented error.

Usage: make fuzz   (or: python benchmarks/fuzz.py --examples 10000)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from results_io import write_results

ROOT = Path(__file__).resolve().parent.parent
# The lines hypothesis' pytest plugin prints with --hypothesis-show-statistics (one per phase).
_HEADER = re.compile(r"^(tests/\S+::(test_fuzz_\w+)):$")
_COUNTS = re.compile(r"(\d+) passing, (\d+) failing, and (\d+) invalid test cases")
_OUTCOME = re.compile(r"^(PASSED|FAILED|ERROR) tests/\S+::(test_fuzz_\w+)")
LOADERS = {  # property -> the loader it attacks
    "test_fuzz_random_bytes_as_media_give_only_documented_errors": "media",
    "test_fuzz_damaged_video_decodes_or_gives_a_documented_error": "media",
    "test_fuzz_spec_validator_rejects_random_tensors_with_its_error": "input tensors",
    "test_fuzz_malformed_manifests_give_one_line_errors": "manifests",
    "test_fuzz_random_bytes_as_weights_are_refused_with_weights_error": "weights",
    "test_fuzz_gates_files_parse_or_give_one_usage_error": "gates files",
    "test_fuzz_damaged_onnx_with_a_matching_manifest_gives_one_line": "ONNX bytes",
    "test_fuzz_damaged_bundles_verify_or_give_one_bundle_error": "zip bundles",
    "test_fuzz_recipes_load_or_give_one_recipe_error": "recipes",
}


def parse(output: str) -> dict[str, dict]:
    """Per property: case counts summed over hypothesis' phases, and the pytest outcome."""
    props: dict[str, dict] = {}
    current = None
    for line in output.splitlines():
        if header := _HEADER.match(line):
            current = props.setdefault(header.group(2), {"passing": 0, "failing": 0, "invalid": 0})
        elif current is not None and (counts := _COUNTS.search(line)):
            for key, value in zip(("passing", "failing", "invalid"), counts.groups()):
                current[key] += int(value)
        elif outcome := _OUTCOME.match(line):
            props.setdefault(outcome.group(2), {"passing": 0, "failing": 0, "invalid": 0})["outcome"] = outcome.group(1)
    return props


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10000, help="cases per property")
    parser.add_argument("-k", default="test_fuzz_", help="pytest -k expression selecting the properties")
    args = parser.parse_args()
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "pytest", "tests/test_reliability.py", "-k", args.k, "-q", "-rA",
                          "-p", "no:cacheprovider", "--hypothesis-show-statistics"], cwd=ROOT, capture_output=True,
                         text=True, env=os.environ | {"SYNCOPT_FUZZ_EXAMPLES": str(args.examples)})
    props = parse(run.stdout)
    if not props:
        sys.exit(f"no fuzz properties ran (pytest exit {run.returncode}):\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    failed = sorted(name for name, p in props.items() if p.get("outcome") != "PASSED")
    if unknown := sorted(set(props) - set(LOADERS)):
        sys.exit(f"fuzz properties without a loader in LOADERS: {', '.join(unknown)}")
    per_loader: dict[str, int] = {}
    for name, p in props.items():
        per_loader[LOADERS[name]] = per_loader.get(LOADERS[name], 0) + p["passing"] + p["failing"]
    path = write_results("fuzz", {"examples_per_property": args.examples, "properties": props,
                                  "cases_per_loader": per_loader,
                                  "total_cases": sum(p["passing"] + p["failing"] for p in props.values()),
                                  "failed": failed, "seconds": round(time.perf_counter() - start, 1)})
    for name, p in props.items():
        print(f"{name}: {p['passing']} passing, {p['failing']} failing, {p['invalid']} invalid — {p.get('outcome')}")
    print(f"wrote {path}")
    if failed:
        print(run.stdout[-6000:])
        sys.exit(1)


if __name__ == "__main__":
    main()
