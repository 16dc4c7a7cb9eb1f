"""Every command's error paths (issue 11): for each (command, bad input) the exit code is the
documented one (syncopt/core/errors.py, docs/errors.md), stderr is exactly one line naming the problem,
there is no traceback, and no output file is left behind.

Commands run in-process through ``syncopt.cli.main`` (a subprocess costs ~5 s of imports each).
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import syncopt
from mediautil import write_video
from syncopt.cli import main
from syncopt.core.errors import (BundleError, ClipTooShortError, InputFileError, MediaError, NoAudioError,
                            OutputFileError, SyncoptError, UsageError, WeightsError)

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "tests" / "fixtures" / "example.avi"
ASSETS = Path(syncopt.__file__).parent / "assets"
TINY = ["--train-clips", "4", "--val-clips", "2", "--epochs", "1", "--batch-size", "2"]
FCN = ["--model", "fcn", "--preset", "tiny"]  # sync's default model is to change


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, str]:
    """Bad inputs of every kind the issue lists, by name (paths as strings for argv)."""
    d = tmp_path_factory.mktemp("bad")
    faces = np.zeros((40, 64, 64, 3), np.uint8)
    tone = 0.3 * np.sin(np.arange(40 * 640) / 7.0)
    (d / "notes.txt").write_text("not a video")
    (d / "header_only.avi").write_bytes(EXAMPLE.read_bytes()[:2048])  # truncated inside the container header
    (d / "binary.yaml").write_bytes(EXAMPLE.read_bytes()[:64])
    (d / "syntax.yaml").write_text("parity: [\n  - artifact: x\n")
    (d / "field.yaml").write_text("parity:\n  - artifact: 3\n")
    weights = (ASSETS / "fcn_tiny_synth.safetensors").read_bytes()
    (d / "trunc.safetensors").write_bytes(weights[: len(weights) // 2])
    shutil.copy(ASSETS / "fcn_attn_tiny_synth.safetensors", d / "other.safetensors")  # another model's
    torch.save(syncopt.create("fcn", "tiny").state_dict(), d / "full.pt")
    (d / "trunc.pt").write_bytes((d / "full.pt").read_bytes()[:5000])
    # run directories whose checkpoint is truncated, or belongs to another model
    (d / "run_trunc").mkdir()
    (d / "run_trunc" / "checkpoint.pt").write_bytes((d / "full.pt").read_bytes()[:5000])
    (d / "run_other").mkdir()
    torch.save({"model": syncopt.create("fcn_attn", "tiny").state_dict(), "optimizer": {}, "scheduler": {},
                "epoch": 1, "history": []}, d / "run_other" / "checkpoint.pt")
    # an ONNX artifact whose file was truncated after export (its manifest's sha256 no longer matches)
    from syncopt.export import export

    art = export(syncopt.create("fcn", "tiny"), "onnx", d / "art")
    art.path.write_bytes(art.path.read_bytes()[:1000])
    # issue 23: non-finite weights (a NaN in a safetensors file, an inf in a .pt, a NaN in a checkpoint)
    state = syncopt.create("fcn", "tiny").state_dict()
    first = next(k for k, v in state.items() if v.is_floating_point())
    save_file({**state, first: state[first].clone().fill_(float("nan"))}, str(d / "nan.safetensors"))
    torch.save({**state, first: torch.full_like(state[first], float("inf"))}, d / "inf.pt")
    (d / "run_nan").mkdir()
    torch.save({"model": {**state, first: state[first].clone().fill_(float("nan"))}, "optimizer": {},
                "scheduler": {}, "epoch": 1, "history": []}, d / "run_nan" / "checkpoint.pt")
    # a video cut after 2% of its bytes: 3 frames decode, its header declares 317
    (d / "cut.avi").write_bytes(EXAMPLE.read_bytes()[:22000])
    # not regular files: kept apart, since the inputs-untouched check stats every file under d
    odd = tmp_path_factory.mktemp("odd")
    os.mkfifo(odd / "fifo.mp4")
    (odd / "loop_a.mp4").symlink_to(odd / "loop_b.mp4")
    (odd / "loop_b.mp4").symlink_to(odd / "loop_a.mp4")
    (odd / "dangling.mp4").symlink_to(odd / "gone.mp4")
    return {
        "missing": str(d / "absent.mp4"),
        "not_media": str(d / "notes.txt"),
        "header_only": str(d / "header_only.avi"),
        "mute": str(write_video(d / "mute.avi", faces, None)),
        "constant": str(write_video(d / "constant.avi", faces, np.full(40 * 640, 0.2))),
        "short": str(write_video(d / "short.avi", faces[:3], tone[:3 * 640])),
        "dir": str(d),
        **{k: str(d / f) for k, f in [("trunc_st", "trunc.safetensors"), ("trunc_pt", "trunc.pt"),
                                      ("other_st", "other.safetensors"), ("binary_yaml", "binary.yaml"),
                                      ("syntax_yaml", "syntax.yaml"), ("field_yaml", "field.yaml"),
                                      ("run_trunc", "run_trunc"), ("run_other", "run_other")]},
        "trunc_onnx": str(art.path),
        "example": str(EXAMPLE),
        **{k: str(d / f) for k, f in [("nan_st", "nan.safetensors"), ("inf_pt", "inf.pt"), ("run_nan", "run_nan"),
                                      ("cut", "cut.avi")]},
        **{k: str(odd / f) for k, f in [("fifo", "fifo.mp4"), ("loop", "loop_a.mp4"), ("dangling", "dangling.mp4")]},
        "odd": str(odd),
    }


MISSING, NOT_MEDIA, MUTE = "{missing}", "{not_media}", "{mute}"
CASES = [  # (id, argv, error class, a fragment of the message)
    ("models-preset", ["models", "--preset", "huge"], UsageError, "unknown preset 'huge'"),
    # the command line itself (typer's errors), one line too
    ("cli-command", ["synk", "{example}"], UsageError, "No such command 'synk'. Did you mean 'sync'?"),
    ("cli-option", ["models", "--presett", "tiny"], UsageError, "No such option: --presett (Possible options: --preset) (see syncopt models --help)"),
    ("cli-value", ["export", "fcn", "--frames", "ten", "--out", "{out}"], UsageError,
     "Invalid value for '--frames': must be an integer in [1, 1500], got 'ten'"),
    ("cli-argument", ["sync"], UsageError, "Missing argument 'videos'. (see syncopt sync --help)"),
    ("train-model", ["train", "nosuch", "--out", "{out}", *TINY], UsageError, "unknown model 'nosuch'"),
    ("train-data", ["train", "fcn", "--data", "{out}/nope", "--out", "{out}", *TINY], InputFileError,
     "data source not found"),
    ("train-batch", ["train", "fcn", "--out", "{out}", *TINY, "--batch-size", "16"], UsageError,
     "4 training clips make no full batch of 16"),
    ("train-video-weights", ["train", "i3d_wav2vec", "--video-weights", "{trunc_pt}", "--out", "{out}", *TINY],
     WeightsError, "cannot read weights trunc.pt: truncated or corrupt"),
    ("train-checkpoint-truncated", ["train", "fcn", "--out", "{run_trunc}", *TINY], WeightsError,
     "truncated or corrupt checkpoint"),
    ("train-checkpoint-other-model", ["train", "fcn", "--out", "{run_other}", *TINY], WeightsError,
     "weights do not fit fcn (checkpoint"),
    ("train-mirror-pixels", ["train", "fcn", "--mirror", "--out", "{out}", *TINY], UsageError,
     "--mirror trains on mirrored lip motion; fcn reads crops"),
    ("average-not-a-run", ["average", "{dir}", "{run_other}", "--out", "{out}"], UsageError,
     "is not a finished training run"),
    ("average-one-run", ["average", "{dir}", "--out", "{out}"], UsageError, "averaging needs at least two runs"),
    ("ensemble-not-a-run", ["ensemble", "{dir}", "{run_other}", "--out", "{out}"], UsageError,
     "is not a finished training run"),
    ("ensemble-one-run", ["ensemble", "{dir}", "--out", "{out}"], UsageError, "an ensemble needs at least two runs"),
    ("evaluate-other-model", ["evaluate", "fcn", "--weights", "{other_st}", "--clips", "2"], WeightsError,
     "weights do not fit fcn (preset tiny)"),
    ("evaluate-truncated-safetensors", ["evaluate", "fcn", "--weights", "{trunc_st}"], WeightsError,
     "cannot read weights trunc.safetensors: truncated or corrupt"),
    ("evaluate-truncated-pt", ["evaluate", "fcn", "--weights", "{trunc_pt}"], WeightsError,
     "cannot read weights trunc.pt: truncated or corrupt"),
    ("evaluate-not-a-run", ["evaluate", "{dir}"], UsageError, "is a directory without config.json"),
    ("sync-missing", ["sync", MISSING], InputFileError, "video not found"),
    ("sync-truncated-video", ["sync", "{header_only}", *FCN, "--crop", "full"], MediaError,
     "header_only.avi is not a readable media file"),
    ("sync-constant-audio", ["sync", "{constant}", *FCN, "--crop", "full"], NoAudioError,
     "the audio track is silent or constant"),
    ("sync-model", ["sync", "{example}", "--model", "nosuch"], UsageError, "unknown model 'nosuch'"),
    ("sync-model-without-weights", ["sync", "{example}", "--model", "x3d_s", "--preset", "tiny"], UsageError,
     "no weights for x3d_s (preset tiny): pass --weights"),
    ("sync-weights", ["sync", "{example}", "--weights", "{trunc_st}"], WeightsError, "truncated or corrupt"),
    ("sync-chunk", ["sync", "{example}", "--crop", "full", "--chunk", "0"], UsageError,
     "Invalid value for '--chunk': must be an integer in [1, 10000], got 0"),
    ("sync-unwritable-plot", ["sync", "{example}", "--crop", "full", "--plot", "{not_media}/x.png"],
     OutputFileError, "cannot write"),
    # issue 23, part 2: what the path is, named; a truncated file is corrupt; non-finite weights
    *[(f"sync-{name}", ["sync", path, *FCN], InputFileError, message) for name, path, message in [
        ("directory", "{dir}", "is a directory, not a video file"),
        ("fifo", "{fifo}", "fifo.mp4 is a FIFO (named pipe), not a video file"),
        ("symlink-loop", "{loop}", "loop_a.mp4: a symlink loop"),
        ("device", "/dev/urandom", "/dev/urandom is a character device, not a video file"),
        ("dangling-symlink", "{dangling}", "dangling.mp4 (a symlink to a missing file)")]],
    ("sync-truncated-short", ["sync", "{cut}", *FCN, "--crop", "full"], MediaError,
     "cut.avi is corrupt or truncated (video decoding stopped at 0.08 s (3 of the 317 frames its header declares)): "
     "fcn: clip of 3 frames is shorter than the model's receptive field"),
    ("sync-nan-weights", ["sync", "{example}", *FCN, "--weights", "{nan_st}"], WeightsError,
     "weights for fcn (preset tiny): tensor 'video_encoder.features.0.weight' holds NaN (3528 of 3528 values); "
     "refusing non-finite"),
    ("export-inf-weights", ["export", "fcn", "--weights", "{inf_pt}", "--out", "{out}"], WeightsError,
     "tensor 'video_encoder.features.0.weight' holds inf"),
    ("train-checkpoint-nan", ["train", "fcn", "--out", "{run_nan}", *TINY], WeightsError,
     "weights for fcn (checkpoint"),
    ("stream-fifo", ["stream", "{fifo}", "--crop", "full"], InputFileError, "is a FIFO (named pipe), not a video file"),
    ("calibrate-clips", ["calibrate", "fcn", "--clips", "0", "--out", "{out}/c.json"], UsageError,
     "Invalid value for '--clips': must be an integer in [1, 10000], got 0"),
    ("calibrate-weights", ["calibrate", "fcn", "--weights", "{other_st}", "--out", "{out}/c.json"], WeightsError,
     "weights do not fit fcn"),
    ("explain-missing", ["explain", MISSING, "--out", "{out}"], InputFileError, "video not found"),
    ("explain-not-media", ["explain", NOT_MEDIA, "--out", "{out}"], MediaError, "not a readable media file"),
    ("explain-no-audio", ["explain", MUTE, "--out", "{out}", "--crop", "full"], NoAudioError,
     "mute.avi has no audio stream"),
    ("explain-too-short", ["explain", "{short}", "--out", "{out}", "--crop", "full"], ClipTooShortError,
     "clip of 3 frames is shorter than the model's receptive field of 5 frames"),
    ("export-model", ["export", "nosuch", "--out", "{out}"], UsageError, "unknown model 'nosuch'"),
    ("export-format", ["export", "fcn", "--format", "onxx", "--out", "{out}"], UsageError,
     "unknown format 'onxx'"),
    ("export-precision", ["export", "fcn", "--precision", "fp8", "--out", "{out}"], UsageError,
     "ONNX export supports fp32, fp16"),
    ("export-weights", ["export", "fcn", "--weights", "{trunc_pt}", "--out", "{out}"], WeightsError,
     "truncated or corrupt"),
    ("parity-missing", ["parity", "{out}/model.onnx"], InputFileError, "no artifact manifest"),
    ("parity-truncated", ["parity", "{trunc_onnx}"], WeightsError, "does not match its manifest"),
    ("matrix-format", ["matrix", "--models", "fcn", "--formats", "onxx", "--out", "{out}/m.md",
                       "--work", "{out}/w"], UsageError, "unknown format or preset 'onxx'"),
    ("matrix-model", ["matrix", "--models", "nosuch", "--out", "{out}/m.md", "--work", "{out}/w"], UsageError,
     "unknown model 'nosuch'"),
    ("distill-student", ["distill", "--student", "nosuch", "--out", "{out}", *TINY], UsageError,
     "unknown model 'nosuch'"),
    ("distill-teacher-missing", ["distill", "--teacher-weights", "{out}/t.safetensors", "--out", "{out}", *TINY],
     InputFileError, "weights file not found"),
    ("bench-runtime", ["bench", "fcn", "--runtimes", "nosuch", "--out", "{out}/b.json"], UsageError,
     "unknown runtime 'nosuch'"),
    ("bench-batch", ["bench", "fcn", "--batch", "0", "--out", "{out}/b.json"], UsageError,
     "Invalid value for '--batch': must be an integer in [1, 4096], got 0"),
    ("bench-pipeline-not-media", ["bench", "--pipeline", "sync", NOT_MEDIA, "--out", "{out}/b.json"], MediaError,
     "not a readable media file"),
    ("stream-missing", ["stream", MISSING, "--crop", "full"], InputFileError, "video not found"),
    ("stream-not-media", ["stream", NOT_MEDIA, "--crop", "full"], MediaError, "not a readable media source"),
    ("stream-no-audio", ["stream", MUTE, "--crop", "full"], NoAudioError, "mute.avi has no decodable audio stream"),
    ("stream-model", ["stream", "{example}", "--model", "fcn"], UsageError, "model 'fcn' is not causal"),
    ("bundle-missing", ["bundle", "{out}/run", "--out", "{out}/b.zip"], InputFileError,
     "no such run directory or artifact"),
    ("bundle-target", ["bundle", "{out}/run", "--target", "windows", "--out", "{out}/b.zip"], UsageError,
     "unknown target 'windows'"),
    ("bundle-verify-not-zip", ["bundle", "verify", NOT_MEDIA], BundleError, "notes.txt is not a readable zip"),
    ("gate-missing", ["gate", "--config", "{out}/gates.yaml"], InputFileError, "no gates file"),
    ("gate-yaml-syntax", ["gate", "--config", "{syntax_yaml}"], UsageError, "syntax.yaml: line 2 not valid YAML"),
    ("gate-field", ["gate", "--config", "{field_yaml}"], UsageError,
     "field.yaml: parity.0.artifact: Input should be a valid string"),
    ("gate-binary", ["gate", "--config", "{binary_yaml}"], UsageError, "binary.yaml: not a UTF-8 text file"),
    ("prune-criterion", ["prune", "fcn", "--criterion", "random", "--out", "{out}"], UsageError,
     "unknown pruning criterion 'random'"),
    ("prune-weights", ["prune", "fcn", "--weights", "{other_st}", "--out", "{out}"], WeightsError,
     "weights do not fit fcn"),
    ("robustness-corruption", ["robustness", "fcn", "--corruptions", "rain", "--out", "{out}/r.json"], UsageError,
     "unknown corruption 'rain'"),
    ("robustness-truncated", ["robustness", "{trunc_onnx}", "--out", "{out}/r.json"], WeightsError,
     "does not match its manifest"),
    ("robustness-too-short", ["robustness", "fcn", "--frames", "2", "--out", "{out}/r.json"], ClipTooShortError,
     "clip of 2 frames is shorter than the model's receptive field"),
    ("quantize-missing", ["quantize", "{out}/model.onnx", "--out", "{out}"], InputFileError,
     "no artifact manifest"),
    ("quantize-method", ["quantize", "fcn", "--method", "int4", "--out", "{out}"], UsageError,
     "unknown quantization method 'int4'"),
    ("quantize-truncated", ["quantize", "{trunc_onnx}", "--out", "{out}"], WeightsError,
     "does not match its manifest"),
]


def _run(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr().err


@pytest.mark.parametrize("argv,error,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_with_its_exit_code_and_leaves_nothing(bad, tmp_path, monkeypatch, capsys, argv,
                                                                      error, message):
    work, out = tmp_path / "cwd", tmp_path / "out"
    work.mkdir()
    monkeypatch.chdir(work)  # commands' default output folders land here
    before = {p: p.stat().st_mtime_ns for p in Path(bad["dir"]).rglob("*")}
    code, err = _run([a.format(**bad, out=out) for a in argv], capsys)
    assert code == error.exit_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err
    left = [p for p in (*work.rglob("*"), *(out.rglob("*") if out.exists() else ()))]
    assert not left, f"left behind: {left}"
    assert {p: p.stat().st_mtime_ns for p in Path(bad["dir"]).rglob("*")} == before  # inputs untouched


def test_every_command_has_error_cases():
    from syncopt.cli import app

    commands = {c.name for c in app.registered_commands}
    covered = {c[1][0] for c in CASES if not c[0].startswith("cli-")}
    # `run` (recipes) tests its own errors in tests/test_recipe.py
    assert commands - {"run"} <= covered, f"no error case for {sorted(commands - {'run'} - covered)}"


def test_debug_reraises_with_the_cause(bad, capsys):
    with pytest.raises(WeightsError, match="truncated or corrupt") as exc:
        main(["--debug", "evaluate", "fcn", "--weights", bad["trunc_pt"]])
    assert exc.value.__cause__ is not None  # the back-end's own exception, shown in the traceback
    assert capsys.readouterr().err == ""


def _error_classes(cls: type = SyncoptError) -> list[type]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _error_classes(sub))]


def test_exit_code_table_in_docs_matches_errors_py():
    classes = sorted(_error_classes(), key=lambda c: c.exit_code)
    assert len({c.exit_code for c in classes}) == len(classes), "exit codes must be distinct"
    text = (ROOT / "docs" / "errors.md").read_text()
    table = text.split("<!-- exit-codes: generated from syncopt/core/errors.py -->")[1].split("<!-- end exit-codes -->")[0]
    rows = table.strip().splitlines()[2:]  # below the header and its rule
    assert rows == [f"| {c.exit_code} | `{c.__name__}` | {inspect.getdoc(c).splitlines()[0]} |" for c in classes]


def test_no_module_raises_the_base_class():
    """Exit 1 is left to bugs: every known problem has its own class and code."""
    offenders = [f"{path.relative_to(ROOT)}:{number}" for path in (ROOT / "syncopt").rglob("*.py")
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"raise SyncoptError\(", line)]
    assert offenders == []


# -- generated from the CLI's own option list (issue 23) ------------------------------------------

def _params(kind: type) -> list[tuple[str, object, object]]:
    """(command, command object, parameter) for every option whose typer parser is a ``kind``."""
    import typer

    from syncopt.cli import app

    commands = typer.main.get_command(app).commands
    return [(name, cmd, p) for name, cmd in commands.items() for p in cmd.params
            if isinstance(p.type_descriptor.parameter_info.parser, kind)]


def _filler(cmd, skip) -> list[str]:
    """What a command needs besides the option under test: its arguments and required options, as 'x'."""
    argv = []
    for p in cmd.params:
        if p is not skip and p.required:
            argv += ["x"] if p.param_type_name == "argument" else [p.opts[0], "x"]
    return argv


def test_every_numeric_option_has_a_range():
    import typer

    from syncopt.core.bounds import IntList, Range
    from syncopt.cli import app

    unbounded = [f"{name} {p.opts[0]}" for name, cmd in typer.main.get_command(app).commands.items()
                 for p in cmd.params if p.param_type_name == "option" and p.type_descriptor.annotation in (int, float)
                 and not isinstance(p.type_descriptor.parameter_info.parser, (Range, IntList))]
    assert unbounded == [], f"numeric options without a syncopt.core.bounds range: {unbounded}"
    assert len(_params(Range)) >= 40  # the generated test below covers them


def _bad_values(parser) -> list[str]:
    from syncopt.core.bounds import IntList

    if isinstance(parser, IntList):
        r, ok = parser.item, str(int(parser.item.lo))
        return [str(int(r.lo) - 1), f"{ok},{int(r.hi) + 1}", "abc", f"{ok},,{ok}", ",".join([ok] * (parser.most + 1))]
    r = parser
    below = r.lo if r.lo_open else r.lo - 1
    values = {"abc", "", str(int(below) if r.integer else below), str(int(r.hi) + 1 if r.integer else r.hi * 2 + 1),
              "1e400", "99999999999999999999999"}
    values |= {v for v in ("0", "-1") if r.problem(int(v)) is not None}
    if r.integer:
        values.add("1.5")
    else:
        values |= {"nan", "inf", "-inf", "1e309", "NaN"}
    return sorted(values)


def _numeric_cases() -> list:
    from syncopt.core.bounds import IntList, Range

    return [pytest.param(cmd, p, v, id=f"{name}{p.opts[0]}={v}") for name, cmd, p in _params((Range, IntList))
            for v in _bad_values(p.type_descriptor.parameter_info.parser)]


@pytest.mark.parametrize("cmd,param,value", _numeric_cases())
def test_out_of_range_numbers_are_one_line_usage_errors_at_parse_time(cmd, param, value, capsys, tmp_path,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _run([cmd.name, param.opts[0], value, *_filler(cmd, param)], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"error: Invalid value for '{param.opts[0]}': must be "), err
    assert list(tmp_path.iterdir()) == []


def test_ranges_accept_their_ends_and_name_what_was_typed():
    from syncopt.core.bounds import FRAMES, LR, PROBABILITY, SEED

    assert FRAMES("1") == 1 and FRAMES("1500") == 1500 and SEED(str(2**32 - 1)) == 2**32 - 1
    assert LR("10") == 10.0 and LR("1e-9") == 1e-9 and PROBABILITY("0.5") == 0.5
    for rng, text in ((LR, "0"), (PROBABILITY, "1"), (FRAMES, "1501"), (LR, "1e309")):
        with pytest.raises(ValueError, match=f"got {text}$"):
            rng(text)


OUTPUT_NAMES = {"out", "plot", "render", "junit", "work"}


def test_every_output_option_is_checked_at_parse_time():
    import typer

    from syncopt.core.atomic import OutputTarget
    from syncopt.cli import app

    unchecked = [f"{name} {p.opts[0]}" for name, cmd in typer.main.get_command(app).commands.items()
                 for p in cmd.params if p.name in OUTPUT_NAMES
                 and not isinstance(p.type_descriptor.parameter_info.parser, OutputTarget)]
    assert unchecked == []


def _output_cases() -> list:
    from syncopt.core.atomic import OutputTarget

    cases = []
    for name, cmd, p in _params(OutputTarget):
        folder = p.type_descriptor.parameter_info.parser.folder
        places = ["{file}/sub/x.out", "/proc/syncopt-no/x.out"]  # under a file; a place that takes no files
        if folder is not None:  # a file where a folder goes, or the reverse
            places.append("{file}" if folder else "{dir}")
        cases += [pytest.param(cmd, p, place, id=f"{name}{p.opts[0]}={place}") for place in places]
    return cases


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("cmd,param,place", _output_cases())
def test_unwritable_outputs_exit_15_before_any_work(cmd, param, place, capsys, tmp_path, monkeypatch):
    """The other arguments are dummies ('x'): had any work started, the exit code would be another."""
    import time

    (tmp_path / "file").write_text("a file")
    (tmp_path / "dir").mkdir()
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    code, err = _run([cmd.name, param.opts[0], place.format(file=tmp_path / "file", dir=tmp_path / "dir"),
                      *_filler(cmd, param)], capsys)
    assert time.perf_counter() - start < 10.0  # parsing only (a loaded 2-core machine takes ~2 s at worst)
    lines = err.strip().splitlines()
    assert code == OutputFileError.exit_code and len(lines) == 1 and lines[0].startswith("error: cannot write "), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"] and not any((tmp_path / "dir").iterdir())
