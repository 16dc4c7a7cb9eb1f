"""syncopt run: recipes run stage by stage, skip what is unchanged, resume after a kill; bad recipes fail in one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncopt.core.atomic import sha256_file
from syncopt.cli import main
from syncopt.core.errors import GateBreach, InputFileError, OutputFileError, ParityError, RecipeError
from syncopt.pipeline.recipe import ORDER, load_recipe
from syncopt.pipeline.runner import MANIFEST, PENDING, StageManifest, run_recipe

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny",
    "stages": {
        "train": {"model": "mobile_2d", "epochs": 1, "train_clips": 8, "val_clips": 4, "batch_size": 4, "workers": 1},
        "export": {"formats": ["onnx"], "precisions": ["fp32"]},
        "parity": {"clips": 1},
    },
}


def _write(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


def _manifest(run: Path, stage: str) -> StageManifest:
    return StageManifest.model_validate_json((run / stage / MANIFEST).read_text())


def _actions(report) -> dict[str, str]:
    return {s.stage: s.action for s in report.stages}


def _run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, Path, object]:
    """The tiny recipe (train 1 epoch on 8 clips -> ONNX -> parity), run once."""
    work = tmp_path_factory.mktemp("recipe")
    recipe = _write(work / "tiny.yaml", TINY)
    result = run_recipe(load_recipe(recipe), work / "run")
    assert result.error is None
    return recipe, work / "run", result.report


def _copy(first_run, tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the finished run (so a test may change it) and its recipe."""
    recipe, run, _ = first_run
    shutil.copytree(run, tmp_path / "run")
    return Path(shutil.copy(recipe, tmp_path / "tiny.yaml")), tmp_path / "run"


@pytest.mark.slow
def test_first_run_writes_verified_manifests_and_summary(first_run):
    _, run, report = first_run
    assert _actions(report) == {"train": "ran", "export": "ran", "parity": "ran"}
    for stage in ("train", "export", "parity"):
        m = _manifest(run, stage)
        assert m.status == "done" and m.wall_time_s > 0 and m.outputs
        assert all(sha256_file(run / p) == sha for p, sha in m.outputs.items())
        assert not (run / stage / PENDING).exists()
    assert set(_manifest(run, "export").inputs) == set(_manifest(run, "train").outputs)  # export reads train's model
    onnx = run / _manifest(run, "export").artifacts["onnx:fp32"]
    assert onnx.name == "mobile_2d_tiny_fp32.onnx" and onnx.is_file()
    train_row = _manifest(run, "train").rows[0]
    assert train_row.macs > 0 and train_row.size_mb > 0 and train_row.runtime == "torch"
    parity = json.loads((run / "parity" / "parity.json").read_text())["reports"]
    assert parity[0]["passed"] and parity[0]["outputs"][0]["max_abs"] <= 1e-4
    assert json.loads((run / "summary.json").read_text())["stages"][2]["rows"][0]["note"].startswith("passed")


@pytest.mark.slow
def test_rerun_skips_every_stage(first_run, tmp_path, capsys):
    recipe, run = _copy(first_run, tmp_path)
    before = {s: _manifest(run, s).finished for s in ("train", "export", "parity")}
    code, out, _ = _run_cli(["run", str(recipe), "--out", str(run), "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and {s["stage"]: s["action"] for s in report["stages"]} == dict.fromkeys(before, "skipped")
    assert {s: _manifest(run, s).finished for s in before} == before


@pytest.mark.slow
def test_changed_param_reruns_that_stage_and_downstream_only(first_run, tmp_path):
    recipe, run = _copy(first_run, tmp_path)
    trained = _manifest(run, "train").finished
    changed = json.loads(json.dumps(TINY))
    changed["stages"]["export"]["precisions"] = ["fp32", "fp16"]
    report = run_recipe(load_recipe(_write(recipe, changed)), run).report
    assert _actions(report) == {"train": "skipped", "export": "ran", "parity": "ran"}
    assert _manifest(run, "train").finished == trained
    assert len(json.loads((run / "parity" / "parity.json").read_text())["reports"]) == 2  # fp16 checked too
    # a change to the last stage reruns it alone
    changed["stages"]["parity"]["clips"] = 2
    report = run_recipe(load_recipe(_write(recipe, changed)), run).report
    assert _actions(report) == {"train": "skipped", "export": "skipped", "parity": "ran"}


@pytest.mark.slow
def test_outputs_that_no_longer_verify_rerun_the_stage(first_run, tmp_path):
    recipe, run = _copy(first_run, tmp_path)
    onnx = run / _manifest(run, "export").artifacts["onnx:fp32"]
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    report = run_recipe(load_recipe(recipe), run).report
    assert _actions(report)["train"] == "skipped" and _actions(report)["export"] == "ran"
    assert sha256_file(onnx) == _manifest(run, "export").outputs[f"export/{onnx.name}"]


@pytest.mark.slow
def test_run_killed_mid_stage_resumes_without_redoing_finished_stages(first_run, tmp_path):
    recipe, run = _copy(first_run, tmp_path)
    trained = _manifest(run, "train").finished
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "syncopt", "run", str(recipe), "--out", str(run), "--force", "export"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (run / "export" / PENDING).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "export" / MANIFEST).exists() and (run / "export" / PENDING).exists()  # killed mid-export
    report = run_recipe(load_recipe(recipe), run).report
    assert _actions(report)["train"] == "skipped" and _manifest(run, "train").finished == trained
    assert _actions(report)["export"] == "ran" and _manifest(run, "export").status == "done"
    assert not (run / "export" / PENDING).exists()


@pytest.mark.slow
def test_failed_gate_exits_with_its_code_and_reruns_next_time(first_run, tmp_path, capsys):
    recipe, run = _copy(first_run, tmp_path)
    gated = json.loads(json.dumps(TINY))
    gated["stages"]["gate"] = {"speed": {"frames": 8, "rounds": 2, "warmup": 1,
                                         "contenders": {"onnx": {"target": "export:onnx:fp32"},
                                                        "torch": {"target": "train"}},
                                         "ratios": [{"faster": "onnx", "slower": "torch", "at_least": 1000}]}}
    _write(recipe, gated)
    code, out, err = _run_cli(["run", str(recipe), "--out", str(run), "--json"], capsys)
    assert code == GateBreach.exit_code and err.strip().splitlines()[-1].startswith("error: 1 of 1 gates failed")
    assert json.loads(out)["stages"][-1]["action"] == "failed" and _manifest(run, "gate").status == "failed"
    assert (run / "gate" / "report.xml").read_text().count("<failure") == 1
    gated["stages"]["gate"]["speed"]["ratios"][0]["at_least"] = 1e-6
    report = run_recipe(load_recipe(_write(recipe, gated)), run).report
    assert _actions(report) == {"train": "skipped", "export": "skipped", "parity": "skipped", "gate": "ran"}


@pytest.mark.slow
def test_parity_tolerances_override_the_contract_per_precision(first_run, tmp_path):
    recipe, run = _copy(first_run, tmp_path)
    strict = json.loads(json.dumps(TINY))
    strict["stages"]["parity"]["tolerances"] = {"fp32": {"max_abs": 1e-12}}
    result = run_recipe(load_recipe(_write(recipe, strict)), run)
    assert isinstance(result.error, ParityError) and "max abs" in str(result.error) and "> 1e-12" in str(result.error)
    assert _actions(result.report) == {"train": "skipped", "export": "skipped", "parity": "failed"}
    assert _manifest(run, "parity").status == "failed" and _manifest(run, "parity").error == str(result.error)


BAD = [
    ("stages:\n  distill: {student: mobile_2d, epochs: abc}\n",
     "recipe.yaml: stages.distill.epochs: Input should be a valid integer"),
    ("stages:\n  trian: {model: fcn}\n", "recipe.yaml: stages.trian: unknown stage (stages: train, distill"),
    ("stages:\n  train: {model: fcm}\n", "recipe.yaml: stages.train.model: unknown model 'fcm' (did you mean fcn"),
    ("stages:\n  distill: {student: mobile_2d, teacher: nope}\n", "stages.distill.teacher: unknown model 'nope'"),
    ("stages:\n  train: {model: fcn, epochs: 0.5}\n", "stages.train.epochs: Input should be a valid integer"),
    ("stages: [1, 2\n", "recipe.yaml: line 2 not valid YAML"),
    ("- a\n- b\n", "a recipe is a mapping with a 'stages' section, not list"),
    ("stages: {}\n", "recipe.yaml: stages: no stages"),
    ("stages:\n  export: {}\n", "stages.export: needs a model stage before it"),
    ("stages:\n  train: {model: fcn}\n  export: {formats: [onnx, gif]}\n", "stages.export.formats: unknown format 'gif'"),
    ("stages:\n  train: {model: fcn}\n  export: {precisions: [int8]}\n",
     "stages.export.precisions: onnx exports fp32, fp16, not int8 (INT8 ONNX comes from the quantize stage)"),
    ("stages:\n  train: {model: fcn, preset: full}\n", "stages.train.preset: set preset once, at the top"),
    ("stages:\n  train: {model: fcn}\n  gate: {parity: [{artifact: quantize}]}\n",
     "stages.gate.parity.0.artifact: 'quantize' refers to the quantize stage, which this recipe does not run"),
    ("stages:\n  train: {model: fcn}\n  export: {}\n  parity: {artifacts: ['export:onnx:fp16']}\n",
     "stages.parity.artifacts.0: 'export:onnx:fp16': the export stage makes onnx x fp32"),
    ("stages:\n  train: {model: fcn}\n  export: {}\n  parity: {artifacts: [train]}\n",
     "'train' is a model, not an artifact"),
    ("stages:\n  train: {model: fcn}\n  distill: {student: mobile_2d, teacher: x3d_s}\n",
     "stages.distill.teacher: 'x3d_s' is not the train stage's model 'fcn'"),
    ("preset: huge\nstages:\n  train: {model: fcn}\n", "stages.train.model: 'fcn' has no preset 'huge'"),
    ("stages:\n  train: {model: fcn}\n  gate: {speed: {contenders: {a: {target: train}}, ratios: [{faster: a, "
     "slower: b, at_least: 2}]}}\n", "stages.gate.speed: ratios.0.slower: 'b' is not a contender"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_malformed_recipe_is_one_line_with_the_field_path(text, message, tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    code, _, err = _run_cli(["run", str(path), "--out", str(tmp_path / "run")], capsys)
    assert code == RecipeError.exit_code
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "run").exists()  # nothing written for a bad recipe


def test_missing_recipe_and_unknown_forced_stage(tmp_path, capsys):
    code, _, err = _run_cli(["run", str(tmp_path / "absent.yaml")], capsys)
    assert code == InputFileError.exit_code and "no recipe file at" in err
    recipe = _write(tmp_path / "tiny.yaml", TINY)
    code, _, err = _run_cli(["run", str(recipe), "--out", str(tmp_path / "run"), "--force", "bundle"], capsys)
    assert code == 2 and "--force bundle: not a stage of this recipe (train, export, parity)" in err
    (tmp_path / "file").write_text("x")
    code, _, err = _run_cli(["run", str(recipe), "--out", str(tmp_path / "file")], capsys)
    assert code == OutputFileError.exit_code and err.count("\n") == 1 and "a file stands where a folder is needed" in err


def test_shipped_recipes_validate():
    quick = load_recipe(ROOT / "recipes" / "quickstart.yaml")
    assert quick.stages.present() == list(ORDER) and quick.preset == "tiny"
    assert quick.stages.distill.teacher == quick.stages.train.model  # the train stage gives the teacher
    full = load_recipe(ROOT / "recipes" / "full.yaml")
    assert full.preset == "full" and full.stages.train.model == "i3d_wav2vec" and full.stages.distill.model == "x3d_s"
    assert full.stages.distill.preset == "full" and full.stages.train.preset == "full"


def _load_only_documented_errors(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recipe.yaml"
        path.write_bytes(data)
        try:
            recipe = load_recipe(path)
        except RecipeError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("recipe.yaml")
        else:
            assert recipe.stages.present()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_give_only_recipe_errors(data):
    _load_only_documented_errors(data)


_WORDS = ["stages", "name", "preset", "seed", *ORDER, "model", "student", "teacher", "epochs", "formats",
          "precisions", "artifacts", "targets", "source", "clips", "method", "speed", "contenders", "target",
          "fcn", "mobile_2d", "onnx", "tflite", "fp32", "int8", "tiny", "export:onnx:fp32", "quantize"]
_SCALARS = st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=True) | st.sampled_from(_WORDS) \
    | st.text(max_size=8)
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.sampled_from(_WORDS) | st.integers(0, 3), inner, max_size=4), max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({"stages": st.dictionaries(st.sampled_from(ORDER), _VALUES, max_size=4)},
                             optional={"preset": _VALUES, "seed": _VALUES, "name": _VALUES}) | _VALUES)
def test_fuzz_yaml_like_recipes_give_only_recipe_errors(data):
    _load_only_documented_errors(yaml.safe_dump(data).encode())
