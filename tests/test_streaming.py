"""Streaming sync: chunked state-carrying inference equals the offline causal model, in torch and
through exported ONNX / TFLite steps; incremental MFCC; the `syncopt stream` verb."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from mediautil import write_video
from syncopt.data.media import fit_audio, mfcc_for_frames
from syncopt.data.synth import SynthConfig, make_clip
from syncopt.data.preprocess import audio_to_tensor, frames_to_tensor
from syncopt.models.registry import create
from syncopt.export.stream import export_stream
from syncopt.inference.streaming import MfccStream, StreamingSync
from syncopt.models.sources import resolve


@pytest.fixture(scope="module")
def model():
    """fcn_causal with non-trivial BatchNorm statistics and predictor refinement (so every
    state tensor matters)."""
    torch.manual_seed(1)
    net = create("fcn_causal", "tiny")
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        net.refine[-1].weight.normal_(0, 0.1)
        net.refine[-1].bias.normal_(0, 0.1)
    return net.eval()


def _chunked(model, x, sizes, lookahead):
    state, outs, pos = model.initial_state(), [], 0
    with torch.no_grad():
        for n in sizes:
            out, state = model.step(x["video"][:, :, pos:pos + n], x["audio"][..., 4 * pos:4 * (pos + n)],
                                    torch.ones(1, n), state)
            outs.append(out)
            pos += n
        s = model.spec.preprocessing.crop_size
        out, _ = model.step(torch.zeros(1, 3, lookahead, s, s), torch.zeros(1, 1, 13, 4 * lookahead),
                            torch.zeros(1, lookahead), state)
        outs.append(out)
    return {k: torch.cat([o[k] for o in outs], -1)[..., lookahead:] for k in ("offset_logits", "sync_prob")}


@pytest.mark.parametrize("sizes", [[37], [10, 10, 17], [5, 1, 7, 3, 10, 11], [1] * 37])
def test_chunked_steps_equal_offline(model, sizes):
    x = model.spec.example_inputs(T=37, seed=3)
    with torch.no_grad():
        offline = model(**x)
    streamed = _chunked(model, x, sizes, model.lookahead)
    for name in ("offset_logits", "sync_prob"):
        assert streamed[name].shape == offline[name].shape
        assert (streamed[name] - offline[name]).abs().max() < 1e-5


def test_outputs_are_causal_within_lookahead(model):
    """Changing inputs after frame t + L leaves outputs up to t unchanged; changing frame t + L does not."""
    x = model.spec.example_inputs(T=30, seed=4)
    t, la = 12, model.lookahead
    with torch.no_grad():
        base = model(**x)["offset_logits"]
        late = {k: v.clone() for k, v in x.items()}
        late["video"][:, :, t + la + 1:] = 0
        late["audio"][..., 4 * (t + la + 1):] = 0
        edge = {k: v.clone() for k, v in x.items()}
        edge["audio"][..., 4 * (t + la):4 * (t + la + 1)] = 0
        after = model(**late)["offset_logits"]
        at_edge = model(**edge)["offset_logits"]
    assert torch.allclose(after[..., :t + 1], base[..., :t + 1], atol=1e-6, rtol=0)
    assert not torch.equal(at_edge[..., t], base[..., t])


def test_mfcc_stream_matches_offline():
    audio = make_clip(7, SynthConfig(num_frames=30)).audio
    stream = MfccStream()
    for piece in np.array_split(audio, [1, 500, 3333, 3334, 9000]):
        stream.push(piece)
    cols = np.concatenate([stream.columns(0, 7), stream.columns(7, 40), stream.columns(40, 100)], axis=1)
    assert np.abs(cols - mfcc_for_frames(audio, 30)[:, :100]).max() < 1e-4
    with pytest.raises(ValueError, match="released"):
        stream.columns(50, 60)


def test_streaming_sync_on_raw_media_equals_offline(model):
    clip = make_clip(11, SynthConfig(num_frames=43))
    audio = np.concatenate([clip.audio, clip.audio[:1500]])  # longer than the video: trimmed as offline
    pre = model.spec.preprocessing
    t_len = len(clip.frames)
    with torch.no_grad():
        offline = model(video=frames_to_tensor(clip.frames, pre)[None],
                        audio=audio_to_tensor(fit_audio(audio, t_len), t_len, pre)[None])
    rng = np.random.default_rng(0)
    stream = StreamingSync(model, record=True)
    results, fi, ai = [], 0, 0
    while fi < t_len or ai < len(audio):
        nf, na = int(rng.integers(0, 6)), int(rng.integers(0, 4000))
        results += stream.push(clip.frames[fi:fi + nf], audio[ai:ai + na])
        fi, ai = min(fi + nf, t_len), ai + na
    results += stream.finish()
    assert [r.frame for r in results] == list(range(t_len))
    logits = np.stack([o["offset_logits"] for o in stream.outputs], axis=-1)
    assert np.abs(logits - offline["offset_logits"][0].numpy()).max() < 1e-5
    probs = np.array([r.sync_prob for r in results])
    assert np.abs(probs - offline["sync_prob"][0].numpy()).max() < 1e-5
    assert [r.frame_offset for r in results] == (offline["offset_logits"][0].argmax(0) - 15).tolist()


def test_frames_are_released_after_the_lookahead(model):
    """With all audio in, frame t comes out once frame t + L + 1 (its successor's successor ... ) arrived."""
    clip = make_clip(12, SynthConfig(num_frames=20))
    stream = StreamingSync(model)
    stream.push(clip.frames[:0], clip.audio)
    for f in range(1, 21):
        stream.push(clip.frames[f - 1:f], np.zeros(0, np.float32))
        assert stream.emitted == max(0, f - 1 - model.lookahead)
    assert len(stream.finish()) == 1 + model.lookahead and stream.emitted == 20
    with pytest.raises(Exception, match="already finished"):
        stream.push(clip.frames[:1], clip.audio[:10])


@pytest.fixture(scope="module")
def shipped():
    """fcn_causal with the weights shipped in syncopt/assets."""
    return resolve("fcn_causal", "tiny", None, shipped=True).build()


@pytest.fixture(scope="module")
def steps(shipped, tmp_path_factory):
    """The shipped model's 5-frame streaming step exported to ONNX and TFLite (when onnx2tf is installed)."""
    out = tmp_path_factory.mktemp("steps")
    formats = ["onnx"] + (["tflite"] if importlib.util.find_spec("onnx2tf") else [])
    return {fmt: export_stream(shipped, fmt, out, chunk_frames=5) for fmt in formats}


def _step_artifact(steps, fmt):
    if fmt not in steps:
        pytest.skip("the tflite extra (onnx2tf) is not installed")
    return steps[fmt]


def test_tflite_step_refuses_int8_and_square_chunks(model, tmp_path):
    """A 31-frame chunk makes the (1, 31, 31) logits look the same channel-first and channels-last."""
    from syncopt.core.errors import UsageError

    with pytest.raises(UsageError, match="fp32 or fp16"):
        export_stream(model, "tflite", tmp_path, chunk_frames=5, precision="int8")
    with pytest.raises(UsageError, match="31-frame TFLite step makes offset_logits square"):
        export_stream(model, "tflite", tmp_path, chunk_frames=31)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_exported_step_state_round_trips(shipped, steps, fmt):
    """State tensors keep their names and shapes through export; carried from chunk to chunk
    through the runtime they reproduce the offline causal model (fp32: max abs <= 1e-4)."""
    from syncopt.core.artifact import load_artifact
    from syncopt.runtimes import load

    artifact = load_artifact(_step_artifact(steps, fmt).manifest)  # as written to disk
    n, la, t_len = 5, shipped.lookahead, 23
    shapes = shipped.state_shapes()
    assert {t.name: t.shape for t in artifact.spec.inputs[3:]} == shapes
    assert {t.name: t.shape for t in artifact.spec.outputs[2:]} == {f"{k}_out": v for k, v in shapes.items()}
    if fmt == "tflite":  # every tensor's own layout recorded: the spec's shape permuted
        native = {t.name: t for t in artifact.native}
        for t in (*artifact.spec.inputs, *artifact.spec.outputs):
            assert sorted(native[t.name].shape) == sorted(t.shape) and len(native[t.name].layout) == len(t.layout)
        assert {native[k].layout for k in shapes} == {"NCT"}  # state inputs stay channel-first
    session = load(artifact)
    x = shipped.spec.example_inputs(T=t_len, seed=5)
    with torch.no_grad():
        offline = shipped(**x)
    total = n * -(-(t_len + la) // n)
    video = torch.cat([x["video"], torch.zeros(1, 3, total - t_len, 48, 48)], 2)
    audio = torch.cat([x["audio"], torch.zeros(1, 1, 13, 4 * (total - t_len))], -1)
    valid = (torch.arange(total) < t_len).float()[None]

    def run(carry: bool) -> dict[str, np.ndarray]:
        state = {k: v.numpy() for k, v in shipped.initial_state().items()}
        outs = []
        for p in range(0, total, n):
            r = session.run({"video": video[:, :, p:p + n], "audio": audio[..., 4 * p:4 * (p + n)],
                             "valid": valid[:, p:p + n], **state})
            assert all(r[f"{k}_out"].shape == s for k, s in shapes.items())
            if carry:
                state = {k: r[f"{k}_out"] for k in state}
            outs.append(r)
        return {k: np.concatenate([o[k] for o in outs], -1)[..., la:la + t_len] for k in ("offset_logits", "sync_prob")}

    carried = run(carry=True)
    for name in ("offset_logits", "sync_prob"):
        assert np.abs(carried[name] - offline[name].numpy()).max() <= 1e-4
    assert np.abs(run(carry=False)["offset_logits"] - offline["offset_logits"].numpy()).max() > 1e-2


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_streaming_sync_on_exported_step_equals_torch(shipped, steps, fmt):
    """StreamingSync over a runtime session (fixed 5-frame chunks) gives the torch stream's frames."""
    from syncopt.runtimes import load

    session = load(_step_artifact(steps, fmt))
    clip = make_clip(14, SynthConfig(num_frames=41))
    streams = [StreamingSync(shipped, record=True), StreamingSync(session, record=True)]
    results: list[list] = [[], []]
    rng = np.random.default_rng(2)
    fi = ai = 0
    while fi < len(clip.frames) or ai < len(clip.audio):
        nf, na = int(rng.integers(0, 4)), int(rng.integers(0, 3000))
        for stream, out in zip(streams, results):
            out += stream.push(clip.frames[fi:fi + nf], clip.audio[ai:ai + na])
        fi, ai = fi + nf, ai + na
    for stream, out in zip(streams, results):
        out += stream.finish()
    torch_results, artifact_results = results
    assert [r.frame for r in artifact_results] == list(range(41))
    logits = [np.stack([o["offset_logits"] for o in s.outputs]) for s in streams]
    assert np.abs(logits[0] - logits[1]).max() <= 1e-4
    assert [r.frame_offset for r in artifact_results] == [r.frame_offset for r in torch_results]
    assert [r.offset for r in artifact_results] == [r.offset for r in torch_results]


def test_stream_cli_json_lines_and_errors(model, tmp_path):
    from syncopt.models.weights import save_state_dict

    weights = save_state_dict(model, tmp_path / "causal.safetensors")
    clip = make_clip(13, SynthConfig(num_frames=30, crop_size=64))
    video = write_video(tmp_path / "clip.avi", clip.frames, clip.audio)
    cmd = [sys.executable, "-m", "syncopt", "stream", str(video), "--crop", "full", "--weights", str(weights)]
    res = subprocess.run([*cmd, "--json", "--chunk-ms", "120"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["frame"] for r in lines] == list(range(30))
    assert all(-15 <= r["offset"] <= 15 and r["in_sync"] == (abs(r["offset"]) <= 1) for r in lines)
    bad = subprocess.run([*cmd[:4], str(tmp_path / "absent.mp4"), *cmd[5:]], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 3 and bad.stderr.strip() == f"error: video not found: {tmp_path / 'absent.mp4'}"
    wrong = subprocess.run([*cmd[:5], "--model", "fcn"], capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "not causal" in wrong.stderr and "Traceback" not in wrong.stderr


@pytest.mark.slow
def test_stream_cli_on_exported_step_matches_torch(tmp_path):
    """`syncopt export --stream-chunk` then `syncopt stream --model STEP.onnx`: the same per-frame
    offsets as streaming the shipped torch weights."""
    clip = make_clip(15, SynthConfig(num_frames=30, crop_size=64))
    video = write_video(tmp_path / "clip.avi", clip.frames, clip.audio)
    cli = [sys.executable, "-m", "syncopt"]
    weights = str(resolve("fcn_causal", "tiny", None, shipped=True).weights)  # the shipped file
    exported = subprocess.run([*cli, "export", "fcn_causal", "--format", "onnx", "--stream-chunk", "5", "--weights",
                               str(weights), "--out", str(tmp_path), "--json"], capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr
    [manifest] = json.loads(exported.stdout)
    step = tmp_path / manifest["file"]
    runs = {}
    for name, model in (("torch", "fcn_causal"), ("onnx", str(step))):
        res = subprocess.run([*cli, "stream", str(video), "--crop", "full", "--json", "--model", model],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        runs[name] = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["frame"] for r in runs["onnx"]] == list(range(30))
    for key in ("frame_offset", "offset", "in_sync"):
        assert [r[key] for r in runs["onnx"]] == [r[key] for r in runs["torch"]]
    assert max(abs(a["sync_prob"] - b["sync_prob"]) for a, b in zip(runs["onnx"], runs["torch"])) <= 1e-4
    plain = subprocess.run([*cli, "export", "fcn", "--format", "onnx", "--out", str(tmp_path / "fcn")],
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr
    [fcn] = (tmp_path / "fcn").glob("*.onnx")
    wrong = subprocess.run([*cli, "stream", str(video), "--model", str(fcn)], capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "not a streaming step" in wrong.stderr and "Traceback" not in wrong.stderr
