"""parity --locate: the first node where an artifact leaves its reference, in ONNX, TFLite and OpenVINO; golden npz."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fragile import FRAGILE_NODE, fragile_fcn

import syncopt
from syncopt.parity import locate as locate_module
from syncopt.core.artifact import sha256_path
from syncopt.cli import main
from syncopt.compress.quantize import QuantizeConfig, calibration_set
from syncopt.compress.quantize.ort import ort_int8
from syncopt.export.onnx import export_onnx
from syncopt.parity.locate import NODE_TOLERANCES, build_reference, load_reference, locate, save_reference


@pytest.mark.slow
def test_locate_names_the_fragile_layer_in_onnx_and_tflite(tmp_path):
    from syncopt.export import export

    model = syncopt.create("fcn", "tiny", weights=fragile_fcn(tmp_path))
    config = QuantizeConfig(calibration_clips=16)
    _, qdq = ort_int8(model, calibration_set(model.spec, config), config, tmp_path / "ort")
    tflite = export(model, "tflite", tmp_path / "tflite", "int8", frames=50, calibration_clips=16)
    for artifact, runtime in ((qdq, "onnxruntime"), (tflite, "tflite")):
        report = locate(artifact.path, clips=1)
        assert report.runtime == runtime and not report.passed  # the outputs breach the INT8 contract
        assert report.first_breach is not None and report.first_breach.node == FRAGILE_NODE, report.first_breach
        upstream = [n for n in report.nodes if n.index < report.first_breach.index]
        assert upstream and all(n.cosine >= 0.99 for n in upstream)  # the video tower before it is fine
    assert next(n for n in report.nodes if n.node == FRAGILE_NODE).matched == "weights"  # TFLite: no ONNX names


@pytest.mark.slow
def test_locate_names_the_fragile_layer_in_openvino_int8(tmp_path):
    pytest.importorskip("nncf")
    from syncopt.export import export

    model = syncopt.create("fcn", "tiny", weights=fragile_fcn(tmp_path))
    # plain NNCF INT8 on the exporter's 64 calibration clips; min_cosine -1 turns off its cosine check, which
    # would return the fragile layer to float (with 16 clips the random input's video-tower mean reaches
    # cosine 0.988 and breaches first: docs/debugging.md)
    ir = export(model, "openvino", tmp_path, "int8", min_cosine=-1.0)
    report = locate(ir.path, clips=1)
    assert report.runtime == "openvino" and report.precision == "int8" and not report.passed
    assert report.first_breach is not None and report.first_breach.node == FRAGILE_NODE, report.first_breach
    assert report.first_breach.matched == "name" and report.first_breach.cosine < 0.5
    upstream = [n for n in report.nodes if n.index < report.first_breach.index]
    assert upstream and all(n.cosine >= 0.99 for n in upstream)  # the quantized video tower before it holds
    assert report.unmatched == 0  # tiny fcn: convert_model and NNCF keep every ONNX tensor name


@pytest.mark.slow
def test_locate_openvino_fp32_and_bf16_irs(tmp_path):
    ov = pytest.importorskip("openvino")
    from syncopt.export import export
    from syncopt.export.openvino import BIN, XML

    model = syncopt.create("fcn", "tiny")
    fp32 = export(model, "openvino", tmp_path, "fp32")
    reference = build_reference(fp32, clips=1)
    report = locate(fp32.path, reference)
    assert report.runtime == "openvino" and report.passed and report.first_breach is None
    assert report.unmatched == 0 and len(report.nodes) > 100 and {n.matched for n in report.nodes} == {"name"}
    assert max(n.relative for n in report.nodes) <= 1e-4

    # an op output without its tensor name is matched by the op's friendly name (the ONNX node's)
    graph = ov.Core().read_model(str(fp32.path / XML))
    relu = next(op for op in graph.get_ordered_ops() if op.get_type_name() == "Relu")
    tensor = sorted(relu.output(0).get_names())[0]
    relu.output(0).get_tensor().set_names(set())
    ov.save_model(graph, str(tmp_path / XML), compress_to_fp16=False)
    for name in (XML, BIN):  # renamed over: the IR's weights are still mapped from the old model.bin
        (tmp_path / name).replace(fp32.path / name)
    fp32.model_copy(update={"sha256": sha256_path(fp32.path)}).write(fp32.manifest)
    row = next(n for n in locate(fp32.path, reference).nodes if n.tensor == tensor)
    assert row.node == relu.get_friendly_name() and row.matched == "node" and not row.breach

    bf16 = locate(export(model, "openvino", tmp_path, "bf16").path, reference)
    assert bf16.precision == "bf16" and bf16.tolerance == NODE_TOLERANCES["fp16"] and bf16.unmatched == 0
    assert max(n.relative for n in bf16.nodes) > 1e-4  # really inferred in bfloat16 ...
    assert min(n.cosine for n in bf16.nodes) > 0.999  # ... and near fp32 everywhere


def test_golden_reference_round_trips(tmp_path):
    model = syncopt.create("fcn", "tiny")
    artifact = export_onnx(model, tmp_path, "fp32")
    reference = build_reference(artifact, clips=1)
    path = save_reference(reference, tmp_path / "golden.npz")
    loaded = load_reference(path)
    assert loaded.cases == reference.cases and loaded.nodes == reference.nodes
    assert loaded.weights.keys() == reference.weights.keys()
    for got, want in zip(loaded.tensors + loaded.feeds, reference.tensors + reference.feeds):
        assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)

    report = locate(artifact.path, loaded)
    assert report.passed and report.first_breach is None and len(report.nodes) > 20
    assert max(n.relative for n in report.nodes) <= 1e-4  # fp32 ONNX against its own export, torch outputs
    # a golden tensor changed by 1% of its range: that node is the first breach
    node = next(n for n in loaded.nodes if n["op"] == "Relu")
    tensor = node["outputs"][0]
    for values in loaded.tensors:
        values[tensor] = values[tensor] + 0.01 * np.abs(values[tensor]).max()
    assert locate(artifact.path, loaded).first_breach.tensor == tensor


def _cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code


def test_cli_locate_against_golden_needs_no_torch(tmp_path, monkeypatch, capsys):
    artifact = export_onnx(syncopt.create("fcn", "tiny"), tmp_path, "fp32")
    golden, plot = tmp_path / "golden.npz", tmp_path / "depth.png"
    assert _cli(["parity", str(artifact.path), "--save-reference", str(golden), "--clips", "1", "--json"]) == 0
    saved = json.loads(capsys.readouterr().out)
    assert golden.is_file() and saved[0]["passed"] and saved[0]["first_breach"] is None

    def no_reference(*args, **kwargs):
        raise AssertionError("the golden file should replace the torch reference")

    monkeypatch.setattr(locate_module, "build_reference", no_reference)
    assert _cli(["parity", str(artifact.path), "--reference", str(golden), "--plot", str(plot), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)[0]
    assert report["reference"].startswith("golden golden.npz") and report["passed"]
    assert [n["node"] for n in report["nodes"]] == [n["node"] for n in saved[0]["nodes"]]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_locate_errors(tmp_path, capsys):
    artifact = export_onnx(syncopt.create("fcn", "tiny"), tmp_path, "fp32")
    not_golden = tmp_path / "junk.npz"
    not_golden.write_bytes(b"not a zip")
    for argv, code in (([str(artifact.path), str(artifact.path), "--save-reference", str(tmp_path / "g.npz")], 2),
                       ([str(artifact.path), "--reference", str(tmp_path / "missing.npz")], 3),
                       ([str(artifact.path), "--reference", str(not_golden)], 3)):
        assert _cli(["parity", *argv]) == code
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
