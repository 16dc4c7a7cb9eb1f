"""ONNX export from the spec, runtimes, and parity judged by the DESIGN tolerances."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import syncopt
from syncopt.core.artifact import load_artifact
from syncopt.core.atomic import sha256_file
from syncopt.core.errors import InputSpecError, WeightsError
from syncopt.export import export
from syncopt.parity import TOLERANCES, check_parity
from syncopt.runtimes import load
from syncopt.models.sources import shipped_weights
from syncopt.models.weights import save_state_dict


@pytest.fixture(scope="module")
def fcn_fp32(tmp_path_factory):
    out = tmp_path_factory.mktemp("artifacts")
    # trained weights: the attention gates start at zero, so initial weights would skip the attention
    return export(syncopt.create("fcn_attn", "tiny", weights=shipped_weights("fcn_attn", "tiny")), "onnx", out, "fp32")


def test_manifest_records_spec_hash_and_source(fcn_fp32):
    art = load_artifact(fcn_fp32.path)
    assert art.spec == syncopt.create("fcn_attn", "tiny").spec
    assert art.sha256 == sha256_file(art.path)
    assert art.weights_path.is_file()
    graph = onnx.load(str(art.path))
    assert [i.name for i in graph.graph.input] == art.spec.input_names
    assert [o.name for o in graph.graph.output] == art.spec.output_names
    time_dim = graph.graph.input[0].type.tensor_type.shape.dim[2]
    assert time_dim.dim_param == "T"  # dynamic time axis from the spec


def test_fp32_parity_passes_at_two_lengths(fcn_fp32):
    report = check_parity(fcn_fp32.path, frames=(0, 41), synth_clips=0)
    assert report.passed, report.failures
    assert report.cases[0].startswith("random T=5") and report.cases[1].startswith("random T=41")
    for o in report.outputs:
        assert o.max_abs <= TOLERANCES["fp32"].max_abs and o.max_rel <= TOLERANCES["fp32"].max_rel
    assert report.decision_agreement == 1.0


def test_fp16_parity_within_fp16_tolerance(tmp_path):
    art = export(syncopt.create("fcn", "tiny"), "onnx", tmp_path, "fp16")
    graph = onnx.load(str(art.path))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.graph.initializer)
    report = check_parity(art.path, synth_clips=0)
    assert report.passed, report.failures
    assert max(o.max_abs for o in report.outputs) > 0  # it really is another precision


def test_fp16_weights_are_float16_and_the_file_smaller(tmp_path):
    net = syncopt.create("fcn_attn", "tiny")  # the largest graph of the tiny FCNs: its fp16 file once outgrew fp32
    files = {p: export(net, "onnx", tmp_path, p).path for p in ("fp32", "fp16")}
    graphs = {p: onnx.load(str(f)).graph for p, f in files.items()}
    conv_weights = {n.input[1] for n in graphs["fp16"].node if n.op_type == "Conv"}
    assert {t.data_type for t in graphs["fp16"].initializer if t.name in conv_weights} == {onnx.TensorProto.FLOAT16}
    weight_bytes = {p: sum(len(t.raw_data) for t in g.initializer) for p, g in graphs.items()}
    assert weight_bytes["fp16"] <= 0.55 * weight_bytes["fp32"]
    assert files["fp16"].stat().st_size < 0.9 * files["fp32"].stat().st_size  # 0.82 (the graph is most of it)


@pytest.mark.xfail(strict=True, reason="issue #8, docs/export.md 'fp16 and the trained heads': the fp16 towers leave "
                   "~1e-3 in the cosine correlation and the trained head multiplies it by ~15 (0.0152 here)")
def test_fp16_parity_of_trained_fcn_offset_logits(tmp_path):
    art = export(syncopt.create("fcn", "tiny", weights=shipped_weights("fcn", "tiny")), "onnx", tmp_path, "fp16")
    report = check_parity(art.path, synth_clips=4)  # the conversion matrix's inputs
    assert report.decision_agreement == 1.0
    logits = next(o for o in report.outputs if o.output == "offset_logits")
    assert logits.max_abs <= TOLERANCES["fp16"].max_abs


def test_runtime_rejects_bad_feeds(fcn_fp32):
    session = load(fcn_fp32)
    feeds = fcn_fp32.spec.example_inputs(T=8)
    feeds["video"] = feeds["video"][:, :2]
    with pytest.raises(InputSpecError, match="input 'video' has shape"):
        session.run(feeds)


def test_tampered_artifact_is_refused(tmp_path):
    art = export(syncopt.create("fcn", "tiny"), "onnx", tmp_path, "fp32")
    data = bytearray(art.path.read_bytes())
    data[-10] ^= 0xFF
    art.path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256 of fcn_tiny_fp32.onnx does not match"):
        load_artifact(art.path)


def test_exports_of_other_weights_into_one_folder_keep_each_artifacts_source(tmp_path):
    torch.manual_seed(0)
    first = export(syncopt.create("fcn", "tiny"), "onnx", tmp_path, "fp32")
    torch.manual_seed(1)
    second = export(syncopt.create("fcn", "tiny"), "onnx", tmp_path, "fp16")  # other random weights
    assert first.weights_path.name == "fcn_tiny.safetensors"
    assert second.weights_path.name == f"fcn_tiny-{second.source_weights_sha256[:12]}.safetensors"
    assert sha256_file(first.weights_path) == first.source_weights_sha256 != second.source_weights_sha256
    assert check_parity(first.path, synth_clips=0).passed  # its reference is still its own weights
    torch.manual_seed(1)
    again = export(syncopt.create("fcn", "tiny"), "onnx", tmp_path, "fp32")  # the same weights: the same file
    assert again.weights_path == second.weights_path
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == sorted({first.source_weights, second.source_weights})


def test_changed_source_weights_are_named_not_compared(tmp_path):
    art = export(syncopt.create("fcn", "tiny"), "onnx", tmp_path, "fp32")
    torch.manual_seed(5)
    save_state_dict(syncopt.create("fcn", "tiny"), art.weights_path)  # replaced behind the manifest's back
    res = subprocess.run([sys.executable, "-m", "syncopt", "parity", str(art.path), "--clips", "0"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 7 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("error: source weights fcn_tiny.safetensors of fcn_tiny_fp32.onnx changed")


def test_perturbed_weights_fail_parity_with_exit_code(tmp_path):
    art = export(syncopt.create("fcn", "tiny"), "onnx", tmp_path, "fp32")
    graph = onnx.load(str(art.path))
    rng = np.random.default_rng(0)
    for init in graph.graph.initializer:  # every conv weight gets 5% relative noise
        values = numpy_helper.to_array(init)
        if values.ndim >= 3:
            noisy = values + 0.05 * values.std() * rng.standard_normal(values.shape).astype(values.dtype)
            init.CopyFrom(numpy_helper.from_array(noisy, init.name))
    onnx.save(graph, str(art.path))
    manifest = json.loads((tmp_path / "fcn_tiny_fp32.onnx.json").read_text())
    manifest["sha256"] = sha256_file(art.path)  # a consistent but wrong artifact
    (tmp_path / "fcn_tiny_fp32.onnx.json").write_text(json.dumps(manifest))
    res = subprocess.run([sys.executable, "-m", "syncopt", "parity", str(art.path), "--clips", "0"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 9
    assert res.stderr.startswith("error: parity breached — fcn_tiny_fp32.onnx:") and "max abs" in res.stderr
    assert "FAIL" in res.stdout


def test_unknown_format_is_reported_and_others_still_export(tmp_path):
    res = subprocess.run([sys.executable, "-m", "syncopt", "export", "fcn", "--format", "onnx,bogus",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "error: bogus: unknown format 'bogus'" in res.stderr
    assert (tmp_path / "fcn_tiny_fp32.onnx").is_file() and (tmp_path / "fcn_tiny_fp32.onnx.json").is_file()


def test_offset_decisions_are_judged_only_where_torch_is_not_near_a_tie():
    from syncopt.parity import NEAR_TIE_NATS, compare_decisions

    def logits(scores: list[float]) -> np.ndarray:  # one clip, offsets -1..1, the same scores at all 6 frames
        return np.repeat(np.asarray(scores, np.float32)[:, None], 6, axis=1)

    # torch picks offset 0 by 2 nats (decisive) in clip 0, by NEAR_TIE_NATS / 2 in clip 1
    ref = {"offset_logits": np.stack([logits([0.0, 3.0, 1.0]), logits([0.0, 1.0, 1.0 - NEAR_TIE_NATS / 2])])}
    same = {"offset_logits": ref["offset_logits"] + 0.01}
    flipped = {"offset_logits": np.stack([logits([0.0, 1.0, 3.0]), logits([0.0, 1.0, 1.1])])}
    assert compare_decisions(same, ref, 1) == ([True], 1)
    assert compare_decisions(flipped, ref, 1) == ([False], 1)  # the near tie's flip is not counted
