"""syncopt gate: green on a good artifact, red (exit 13, JUnit failure) on a perturbed one, one-line config errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from syncopt.cli import main
from syncopt.core.errors import UsageError
from syncopt.core.errors import GateBreach
from syncopt.deploy.gate import load_config, run_gates


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> tuple[Path, Path]:
    """A good fp32 ONNX artifact of mobile_2d tiny, and a copy with 10% noise on its convolution kernels."""
    import onnx
    from onnx import numpy_helper

    from syncopt.core.artifact import load_artifact, manifest_path
    from syncopt.core.atomic import sha256_file
    from syncopt.export import export
    from syncopt.models.registry import create

    work = tmp_path_factory.mktemp("gate")
    good = export(create("mobile_2d", "tiny"), "onnx", work / "good")
    bad_dir = work / "bad"
    bad_dir.mkdir()
    graph = onnx.load(str(good.path))
    rng = np.random.default_rng(0)
    for init in graph.graph.initializer:
        if len(init.dims) >= 3:  # convolution kernels
            w = numpy_helper.to_array(init)
            init.CopyFrom(numpy_helper.from_array(w + rng.normal(0, 0.1 * w.std(), w.shape).astype(w.dtype), init.name))
    bad_path = bad_dir / good.path.name
    onnx.save(graph, str(bad_path))
    (bad_dir / good.source_weights).write_bytes(good.weights_path.read_bytes())
    bad = good.model_copy(update={"sha256": sha256_file(bad_path)})  # a consistent manifest: only the numbers differ
    bad.write(manifest_path(bad_path))
    load_artifact(bad_path)
    return good.path, bad_path


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gates.yaml"
    path.write_text(text)
    return path


def _gates(artifact: Path, at_least: float = 0.01) -> str:
    return f"""
parity:
  - artifact: {artifact}
    clips: 2
speed:
  frames: 8
  rounds: 3
  warmup: 1
  contenders:
    ort: {{target: {artifact}}}
    eager: {{target: {artifact}, runtime: torch}}
  ratios:
    - {{faster: ort, slower: eager, at_least: {at_least}}}
  budgets:
    - {{contender: ort, machine: some-other-box, max_ms: 0.001}}
"""


def test_gate_passes_on_a_good_artifact(artifacts, tmp_path, capsys):
    report = tmp_path / "report.xml"
    with pytest.raises(SystemExit) as exc:
        main(["gate", "--config", str(_write(tmp_path, _gates(artifacts[0]))), "--junit", str(report), "--json"])
    assert exc.value.code == 0
    results = json.loads(capsys.readouterr().out)
    assert [(r["kind"], r["status"]) for r in results] == [("parity", "passed"), ("ratio", "passed"),
                                                            ("budget", "skipped")]
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "0" and suite.get("skipped") == "1"


def test_gate_fails_on_a_perturbed_artifact(artifacts, tmp_path, capsys):
    report = tmp_path / "report.xml"
    with pytest.raises(SystemExit) as exc:
        main(["gate", "--config", str(_write(tmp_path, _gates(artifacts[1]))), "--junit", str(report)])
    assert exc.value.code == GateBreach.exit_code
    assert capsys.readouterr().err.strip().startswith("error: 1 of 3 gates failed: parity")
    cases = ET.parse(report).getroot().iter("testcase")
    failures = {c.get("classname"): c.find("failure") for c in cases}
    assert failures["syncopt.deploy.gate.parity"] is not None and "max abs" in failures["syncopt.deploy.gate.parity"].get("message")
    assert failures["syncopt.deploy.gate.ratio"] is None


def test_unmet_speed_ratio_and_budget_fail(artifacts, tmp_path):
    config = load_config(_write(tmp_path, _gates(artifacts[0], at_least=1e6)))
    results = run_gates(config, machine="some-other-box")
    status = {r.kind: r.status for r in results}
    assert status == {"parity": "passed", "ratio": "failed", "budget": "failed"}


def test_stricter_tolerance_override_fails_fp32(artifacts, tmp_path):
    text = _gates(artifacts[0]).replace("speed:", "tolerances:\n  fp32: {max_abs: 0.0, max_rel: 0.0}\nspeed:", 1)
    config = load_config(_write(tmp_path, text))
    config.speed = None
    (parity,) = run_gates(config)
    assert parity.status == "failed" and "max abs" in parity.message


@pytest.mark.parametrize("text,message", [
    ("parity:\n  - clips: 2\n", "gates.yaml: parity.0.artifact: Field required"),
    ("parity:\n  - {artifact: a.onnx, clips: -1}\n", "gates.yaml: parity.0.clips: Input should be greater than or equal to 0 (got -1)"),
    ("speed:\n  contenders: {a: {target: x3d_s}}\n  ratios:\n    - {faster: a, slower: b, at_least: 2}\n",
     "gates.yaml: speed: ratios.0.slower: 'b' is not a contender (a)"),
    ("speed:\n  contenders: {a: {target: x3d_s}}\n  ratios:\n    - {faster: a, slower: a, at_least: fast}\n",
     "gates.yaml: speed.ratios.0.at_least: Input should be a valid number, unable to parse string as a number (got 'fast')"),
    ("parity:\n  - {artifact: a.onnx, tolerance: 1}\n", "gates.yaml: parity.0.tolerance: Extra inputs are not permitted (got 1)"),
    ("parity: [\n", "gates.yaml: line 2 not valid YAML"),
])
def test_malformed_gates_file_is_one_line_with_the_field_path(tmp_path, capsys, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(UsageError) as exc:
        load_config(path)
    assert str(exc.value).startswith(message)
    with pytest.raises(SystemExit) as code:
        main(["gate", "--config", str(path)])
    assert code.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message) and err.count("\n") == 1
