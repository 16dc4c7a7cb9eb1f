"""Per-node INT8 sensitivity and float fallback (ONNX Runtime QDQ) on a model with one fragile layer."""

from __future__ import annotations

import json

import pytest
from fragile import FRAGILE_NODE, fragile_fcn

from syncopt.cli import main
from syncopt.compress.quantize import QuantizeConfig, quantize
from syncopt.compress.sensitivity import sensitivity
from syncopt.core.artifact import load_artifact


@pytest.mark.slow
def test_sensitivity_ranks_the_fragile_node_first(tmp_path):
    config = QuantizeConfig(weights=str(fragile_fcn(tmp_path)), calibration_clips=8, sensitivity_clips=4)
    report = sensitivity("fcn", config, tmp_path / "out")
    first, second = report.nodes[:2]
    assert first.node == FRAGILE_NODE and first.nmse > 100 * second.nmse and first.cosine < 0.9
    assert {n.op for n in report.nodes} <= {"Conv", "MatMul", "Gemm"}  # only nodes INT8 can keep float
    saved = json.loads((tmp_path / "out" / "fcn_tiny_int8_sensitivity.json").read_text())
    assert saved["nodes"][0]["node"] == FRAGILE_NODE
    assert (tmp_path / "out" / "fcn_tiny_int8_sensitivity.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_fallback_keeps_exactly_the_fragile_node_float_and_passes(tmp_path):
    config = QuantizeConfig(weights=str(fragile_fcn(tmp_path)), calibration_clips=16, eval_clips=40, speed_runs=5,
                            fallback="auto", max_drop=1.0, min_cosine=0.99)
    report = quantize("fcn", config, tmp_path / "out")
    fb = report.fallback
    plain = fb.steps[0]
    assert plain.float_nodes == [] and not plain.passed  # plain INT8 breaks the INT8 tolerance
    assert plain.min_embedding_cosine < 0.99 or plain.offset_agreement < 0.99 or plain.accuracy_drop > 1.0
    assert fb.kept_float == [FRAGILE_NODE] and fb.passed and len(fb.steps) == 2
    assert report.float_ops == load_artifact(report.artifact).float_ops == [FRAGILE_NODE]  # the manifest names it
    assert report.within_tolerance and report.accuracy_drop <= 1.0
    assert report.offset_agreement >= 0.99 and report.min_embedding_cosine >= 0.99
    assert fb.int8_bytes == report.int8_bytes and fb.size_cost > 1.0  # a float weight costs bytes
    assert fb.latency_ms is not None and fb.speed_cost > 0

    import onnx

    graph = onnx.load(report.artifact).graph  # the installed artifact: that Conv reads float weights
    conv = next(n for n in graph.node if n.name == FRAGILE_NODE)
    assert conv.input[1] in {t.name for t in graph.initializer}


def test_cli_fallback_and_sensitivity_errors(tmp_path, capsys):
    for argv, code in ((["--fallback", "maybe"], 2), (["--fallback", "auto", "--method", "tflite"], 2),
                       (["--sensitivity", "--method", "inc"], 2), (["--min-cosine", "2"], 2)):
        with pytest.raises(SystemExit) as exc:
            main(["quantize", "fcn", *argv, "--out", str(tmp_path)])
        assert exc.value.code == code
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err


def test_fallback_candidates_are_the_nodes_the_judged_outputs_depend_on(tmp_path):
    """fcn_lips ranks offsets by the cosine alone: its head's convolutions feed only sync_prob, so returning
    them to float cannot help the offsets or embeddings the fallback judges, and they are no candidates."""
    import onnx

    import syncopt
    from syncopt.compress.sensitivity import JUDGED_OUTPUTS, upstream_nodes
    from syncopt.export import export

    artifact = export(syncopt.create("fcn_lips", "tiny"), "onnx", tmp_path, "fp32")
    convs = {n.name for n in onnx.load(str(artifact.path)).graph.node if n.op_type == "Conv"}
    judged = upstream_nodes(artifact.path, JUDGED_OUTPUTS) & convs
    head = {name for name in convs if name.startswith("/predictor/")}
    assert head and not head & judged
    assert judged == convs - head and any(name.startswith("/video_encoder/") for name in judged)
    assert head <= upstream_nodes(artifact.path, ("sync_prob",))
