"""Mobile bundles: a self-describing zip (or folder) of TFLite and/or CoreML models for app developers.

Layout::

    manifest.json      format version, syncopt version, model, spec with layouts, preprocessing,
                       offset range and label meaning, metrics, parity results, sha256 of every file
    README.md          the tensor contract for app developers
    models/            <name>_<preset>_<precision>_T<frames>.tflite, <name>_<preset>_<precision>.mlpackage/

``verify`` checks the checksums and the manifest schema, that parity figures are present and
passed, and loads and runs every bundled TFLite model on a synthetic clip (a CoreML package gets
structural validation off macOS). Zips are extracted safely: absolute paths, ``..`` components,
symlinks, duplicate names and oversized archives are refused before anything is written.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ValidationError

from syncopt.core.artifact import Artifact, atomic_dir, load_artifact, sha256_path
from syncopt.core.atomic import atomic_path, sha256_file, temp_dir
from syncopt.core.errors import (
    BundleError,
    InputFileError,
    OutputFileError,
    SyncoptError,
    UsageError,
)
from syncopt.core.formats import FORMATS, artifact_bytes, bundle_targets
from syncopt.core.spec import MFCC, ModelSpec, TensorSpec

FORMAT_VERSION = 1
TARGET_FORMATS = bundle_targets()  # android: tflite, ios: coreml
MAX_UNPACKED_BYTES = 4 << 30  # refuse archives that claim to unpack to more than 4 GiB


class BundledModel(BaseModel):
    file: str  # relative to the bundle root
    format: Literal["tflite", "coreml"]
    precision: str
    frames: int | None  # fixed clip length T, if any
    batch: int | None
    inputs: tuple[TensorSpec, ...]  # in the model file's own layouts and shapes
    outputs: tuple[TensorSpec, ...]
    ops: list[str]
    size_bytes: int


class ParitySummary(BaseModel):
    file: str
    runtime: str
    passed: bool
    tolerance: dict[str, float | None]
    outputs: list[dict[str, float | str]]
    decision_agreement: float | None
    failures: list[str]
    note: str = ""


class BundleManifest(BaseModel):
    format_version: int
    syncopt_version: str
    created: str
    model: str
    preset: str
    targets: list[Literal["android", "ios"]]
    spec: ModelSpec
    preprocessing: dict[str, object]
    offset_range: dict[str, object]
    labels: dict[str, str]
    models: list[BundledModel]
    metrics: dict[str, object]
    parity: list[ParitySummary]
    files: dict[str, str]  # path -> sha256, every file but manifest.json


class VerifyReport(BaseModel):
    bundle: str
    model: str
    files_checked: int
    runs: list[str]
    passed: bool = True


# -- building ---------------------------------------------------------------------------------------

def make_bundle(source: str | os.PathLike, target: str, out: str | os.PathLike, frames: int | None = None,
                precisions: tuple[str, ...] = ("fp32", "int8"), parity_clips: int = 4) -> Path:
    """Bundle a student run directory (exported here) or one TFLite/CoreML artifact for ``target``.

    ``target`` is android (TFLite), ios (CoreML) or both. A run directory is exported to each
    target's format in ``precisions`` (TFLite at ``frames``, default the spec's standard length);
    every model gets a parity check against its torch source before it is packed.
    """
    from syncopt.parity import check_parity

    targets = ["android", "ios"] if target == "both" else [target]
    if any(t not in TARGET_FORMATS for t in targets):
        raise UsageError(f"unknown target '{target}' (choose android, ios or both)")
    with temp_dir("bundle") as tmp:
        artifacts, metrics = _artifacts(Path(source), targets, target, Path(tmp) / "export", frames, precisions)
        parity = [check_parity(a.manifest, synth_clips=parity_clips) for a in artifacts]
        root = Path(tmp) / "bundle"
        (root / "models").mkdir(parents=True)
        models = []
        for art in artifacts:
            dest = root / "models" / art.path.name
            (shutil.copytree if art.path.is_dir() else shutil.copyfile)(art.path, dest)
            models.append(_bundled(art, dest.relative_to(root).as_posix(), dest))
        spec = artifacts[0].spec
        manifest = BundleManifest(
            format_version=FORMAT_VERSION, syncopt_version=_version(),
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            model=spec.name, preset=spec.preset, targets=targets, spec=spec,
            preprocessing=_preprocessing(spec), offset_range=_offset_range(spec), labels=_labels(spec),
            models=models, metrics=metrics,
            parity=[_parity_summary(r, m.file) for r, m in zip(parity, models)], files={},
        )
        (root / "README.md").write_text(readme(manifest))
        manifest.files = {p: sha256_file(root / p) for p in _files(root)}
        (root / "manifest.json").write_text(manifest.model_dump_json(indent=2))
        return _publish(root, Path(out))


def _artifacts(source: Path, targets: list[str], target: str, work: Path, frames: int | None,
               precisions: tuple[str, ...]) -> tuple[list[Artifact], dict[str, object]]:
    """The artifacts to bundle and the training metrics, from a run directory or one artifact."""
    if source.is_dir() and (source / "config.json").is_file():
        from syncopt.export import export
        from syncopt.models.sources import resolve

        net = resolve(source).build()
        artifacts = []
        for t in targets:
            fmt = TARGET_FORMATS[t]
            for precision in precisions:
                artifacts.append(export(net, fmt, work, precision, **FORMATS[fmt].export_options(frames)))
        return artifacts, _run_metrics(source)
    if source.exists():
        art = load_artifact(source)
        wanted = [TARGET_FORMATS[t] for t in targets]
        if wanted != [art.format]:
            fits = {v: k for k, v in TARGET_FORMATS.items()}.get(art.format)
            raise UsageError(f"{art.path.name} is a {art.format} artifact: "
                             + (f"it makes an {fits} bundle only, not {target}" if fits else
                                "phones take tflite (android) or coreml (ios)")
                             + "; pass a run directory to export every target")
        return [art], {}
    raise InputFileError(f"{source}: no such run directory or artifact")


def _run_metrics(run: Path) -> dict[str, object]:
    """Validation metrics from a run's report.json: a distillation's student stats, or a training run's last epoch."""
    path = run / "report.json"
    if not path.is_file():
        return {}
    report = json.loads(path.read_text())
    if "student" in report:
        return {"source": "distillation report (student)", **report["student"]}
    if report.get("history"):
        return {"source": f"training report, epoch {report['history'][-1]['epoch']} validation",
                **report["history"][-1]["val"]}
    return {}


def _bundled(art: Artifact, rel: str, path: Path) -> BundledModel:
    native = {t.name: t for t in art.native}
    return BundledModel(
        file=rel, format=art.format, precision=art.precision, frames=art.frames, batch=art.batch,
        inputs=tuple(native.get(t.name, t) for t in art.spec.inputs),
        outputs=tuple(native.get(t.name, t) for t in art.spec.outputs), ops=art.ops, size_bytes=artifact_bytes(path),
    )


def _parity_summary(report, file: str) -> ParitySummary:
    return ParitySummary(file=file, runtime=report.runtime, passed=report.passed,
                         tolerance=report.tolerance.model_dump(), outputs=[o.model_dump() for o in report.outputs],
                         decision_agreement=report.decision_agreement, failures=report.failures, note=report.note)


def _preprocessing(spec: ModelSpec) -> dict[str, object]:
    pre = spec.preprocessing
    out: dict[str, object] = pre.model_dump() | {
        "video": f"face crops {pre.crop_size}x{pre.crop_size}, {pre.channel_order.upper()}, pixels 0..255 -> "
                 f"(pixel - {pre.pixel_mean:g}) / {pre.pixel_std:g}, {pre.fps:g} fps",
        "audio": f"mono {pre.sample_rate} Hz, " + (f"{pre.audio_per_frame} samples per video frame, -1..1"
                                                    if pre.audio_features == "waveform" else
                                                    f"MFCC {pre.num_mfcc} x {pre.mfcc_per_frame} per video frame"),
    }
    if pre.audio_features == "mfcc":
        out["mfcc"] = MFCC.model_dump() | {"equals": "python_speech_features.mfcc defaults",
                                           "steps_per_video_frame": pre.mfcc_per_frame}
    return out


def _offset_range(spec: ModelSpec) -> dict[str, object]:
    k = spec.max_offset
    return {"min": -k, "max": k, "unit": f"video frames at {spec.preprocessing.fps:g} fps",
            "meaning": "offset o: video frame t matches audio frame t - o; positive = the audio leads the video"}


def _labels(spec: ModelSpec) -> dict[str, str]:
    """What each output means: the spec's description, and the offset index convention where it applies."""
    k = spec.max_offset
    known = {
        "offset_logits": f"per-frame log-probability of each offset; channel j is offset j - {k} (j = 0..{2 * k}); "
                         "the clip offset maximises the mean over frames",
        "correlation": f"cosine similarity of video frame t and audio frame t - o; channel j is o = j - {k}",
        "sync_prob": "probability that frame t is in sync (offset 0)",
        "video_emb": "per-frame video embedding",
        "audio_emb": "per-frame audio embedding",
    }
    return {t.name: known.get(t.name) or t.description for t in spec.outputs}


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.relative_to(root).as_posix() != "manifest.json")


def _publish(root: Path, out: Path) -> Path:
    """Write ``root`` as a zip (``out`` ends in .zip) or a folder, atomically."""
    if out.suffix == ".zip":
        with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for rel in ["manifest.json", *_files(root)]:
                zf.write(root / rel, rel)
    else:
        with atomic_dir(out) as tmp:
            shutil.copytree(root, tmp, dirs_exist_ok=True)
    return out


def readme(m: BundleManifest) -> str:
    """The app developer's README: files, tensor contract, preprocessing, how to read the outputs."""
    pre = m.preprocessing
    lines = [f"# {m.model} ({m.preset}) — syncopt mobile bundle", "",
             f"Targets: {', '.join(m.targets)}. Bundle format {m.format_version}, syncopt {m.syncopt_version}, "
             f"created {m.created}. `manifest.json` holds everything below in machine-readable form, plus the "
             "sha256 of every file (`syncopt bundle verify` checks them).", "", "## Models", "",
             "| file | format | precision | clip length T | batch | size |", "|---|---|---|---|---|---|"]
    for x in m.models:
        lines.append(f"| `{x.file}` | {x.format} | {x.precision} | {x.frames or 'any'} | {x.batch or 'any'} | "
                     f"{x.size_bytes / 1e6:.2f} MB |")
    lines += ["", "TFLite models are fixed at one clip length T and batch 1: feed T-frame windows (and their "
              "audio); slide the window for longer clips. INT8 models take and return float32 tensors "
              "(quantization happens inside).", "", "## Tensor contract", ""]
    contracts: dict[tuple, list[str]] = {}
    for x in m.models:
        contracts.setdefault((x.inputs, x.outputs), []).append(f"`{x.file}`")
    for (inputs, outputs), files in contracts.items():
        lines += [", ".join(files) + ":", "",
                  "| tensor | direction | shape | layout | dtype | meaning |", "|---|---|---|---|---|---|"]
        for direction, tensors in (("input", inputs), ("output", outputs)):
            for t in tensors:
                meaning = t.description if direction == "input" else m.labels.get(t.name, "")
                if direction == "input" and t.value_range:
                    meaning += f" (range {t.value_range[0]:g}..{t.value_range[1]:g})"
                lines.append(f"| `{t.name}` | {direction} | {tuple(t.shape)} | {t.layout} | {t.dtype} | {meaning} |")
        lines.append("")
    lines += ["Layout letters: N batch, C channels, T video frames, H/W height/width, F MFCC coefficients.", "",
              "## Preprocessing", "", f"- video: {pre['video']}", f"- audio: {pre['audio']}"]
    if "mfcc" in pre:
        lines.append("- MFCC: " + ", ".join(f"{k} {v}" for k, v in pre["mfcc"].items()))
    r = m.offset_range
    lines += ["", "## Reading the outputs", "", f"Offsets range {r['min']}..{r['max']} {r['unit']}; {r['meaning']}.", ""]
    lines += [f"- `{name}`: {meaning}" for name, meaning in m.labels.items()]
    lines += ["", "## Quality", ""]
    if m.metrics:
        figures = [f"{k} {v:.3f}" for k, v in m.metrics.items() if isinstance(v, float)]
        figures += [f"{k} at {max(v, key=int)} {v[max(v, key=int)]:.3f}" for k, v in m.metrics.items()
                    if isinstance(v, dict) and v and all(str(x).isdigit() for x in v)]
        lines.append(f"Metrics ({m.metrics.get('source', '')}): " + ", ".join(figures))
    for p in m.parity:
        verdict = "passed" if p.passed else "FAILED: " + "; ".join(p.failures)
        agree = "" if p.decision_agreement is None else f", offset decisions agree on {p.decision_agreement:.1%}"
        lines.append(f"- parity of `{p.file}` ({p.runtime}) against PyTorch fp32: {verdict}{agree}"
                     + (f" ({p.note})" if p.note else ""))
    return "\n".join(lines) + "\n"


# -- verifying ----------------------------------------------------------------------------------------

def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a zip into ``dest`` after checking every entry; :class:`BundleError` on the first unsafe one."""
    dest = Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(f"{Path(archive).name} is not a readable zip ({exc})") from exc
    with zf:
        infos = zf.infolist()
        seen: set[str] = set()
        for info in infos:
            name = info.filename
            parts = PurePosixPath(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
                raise BundleError(f"unsafe entry '{name}' in {Path(archive).name}: absolute path")
            if ".." in parts:
                raise BundleError(f"unsafe entry '{name}' in {Path(archive).name}: '..' leaves the bundle")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise BundleError(f"unsafe entry '{name}' in {Path(archive).name}: symbolic link")
            if name in seen:
                raise BundleError(f"unsafe entry '{name}' in {Path(archive).name}: duplicate name")
            seen.add(name)
        if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
            raise BundleError(f"{Path(archive).name} unpacks to more than {MAX_UNPACKED_BYTES >> 30} GiB")
        try:
            zf.extractall(dest)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, OSError) as exc:
            # bad CRC, lying sizes, a member offset before the file's start (EINVAL from seek; fuzzing)
            if isinstance(exc, OSError) and exc.errno not in (None, errno.EINVAL):  # the extraction's own writes
                raise OutputFileError(f"cannot unpack {Path(archive).name} into {dest}: {exc.strerror}") from exc
            raise BundleError(f"{Path(archive).name}: a damaged member ({exc})") from exc
    return dest


def verify_bundle(path: str | os.PathLike) -> VerifyReport:
    """Check a bundle (zip or folder); :class:`BundleError` naming the first failure."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"no bundle at {p}")
    with temp_dir("verify") as tmp:
        root = p if p.is_dir() else safe_extract(p, tmp)
        return _verify_root(root, str(p))


def _verify_root(root: Path, label: str) -> VerifyReport:
    mpath = root / "manifest.json"
    if not mpath.is_file():
        raise BundleError(f"{label}: no manifest.json")
    try:
        manifest = BundleManifest.model_validate_json(mpath.read_text())
    except (ValidationError, ValueError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else None
        where = ".".join(map(str, first["loc"])) + ": " + first["msg"] if first else str(exc).splitlines()[0]
        raise BundleError(f"{label}: manifest.json does not match the bundle schema ({where})") from exc
    if manifest.format_version != FORMAT_VERSION:
        raise BundleError(f"{label}: bundle format {manifest.format_version}; this syncopt reads {FORMAT_VERSION}")
    present = set(_files(root))
    if extra := sorted(present - set(manifest.files)):
        raise BundleError(f"{label}: file '{extra[0]}' is not listed in the manifest")
    for rel, digest in manifest.files.items():
        if rel not in present:
            raise BundleError(f"{label}: '{rel}' is listed in the manifest but missing")
        if sha256_file(root / rel) != digest:
            raise BundleError(f"{label}: sha256 of '{rel}' does not match the manifest (modified or corrupt)")
    parity = {x.file: x for x in manifest.parity}
    runs = []
    for model in manifest.models:
        check = parity.get(model.file)
        if check is None or not (check.outputs or check.note):
            raise BundleError(f"{label}: no parity figures for {model.file}")
        if not check.passed:
            raise BundleError(f"{label}: {model.file} failed parity: {'; '.join(check.failures)}")
        runs.append(_run_model(root, manifest, model))
    return VerifyReport(bundle=label, model=manifest.model, files_checked=len(manifest.files), runs=runs)


def _artifact(root: Path, manifest: BundleManifest, model: BundledModel) -> Artifact:
    native = tuple(t for t in (*model.inputs, *model.outputs)
                   if t != next(s for s in (*manifest.spec.inputs, *manifest.spec.outputs) if s.name == t.name))
    return Artifact(format=model.format, precision=model.precision, file=model.file,
                    sha256=sha256_path(root / model.file), spec=manifest.spec, native=native, frames=model.frames,
                    batch=model.batch, ops=model.ops, source_model=manifest.model, source_preset=manifest.preset,
                    source_weights="", syncopt_version=manifest.syncopt_version, manifest=str(root / "manifest.json"))


def _run_model(root: Path, manifest: BundleManifest, model: BundledModel) -> str:
    """Run a bundled model on a synthetic clip (outputs finite, shaped by the spec); where its runtime cannot
    run here (CoreML off macOS), validate its structure."""
    import numpy as np

    art = _artifact(root, manifest, model)
    row = FORMATS[model.format]
    runs, reason = row.available("run")
    if not runs and row.validate:
        if problems := row.load("validate")(art):
            raise BundleError(f"{model.file}: {problems[0]}")
        return f"{model.file}: {row.title} package structure valid ({reason})"
    from syncopt.data.datasets import synth_dataset
    from syncopt.runtimes import load

    spec = manifest.spec
    frames = model.frames or spec.standard_frames
    clip = synth_dataset(spec, "test", 1, num_frames=frames)[0]
    try:
        out = load(art, row.runtime).run({t.name: clip[t.name][None] for t in spec.inputs})
    except SyncoptError as exc:
        raise BundleError(f"{model.file} did not run: {exc}") from exc
    except Exception as exc:  # noqa: BLE001  the interpreter raises RuntimeError/ValueError on a broken model
        raise BundleError(f"{model.file} did not run: {' '.join(str(exc).split())[:200]}") from exc
    sizes = spec.sizes(frames, 1)
    for t in spec.outputs:
        if out[t.name].shape != t.concrete_shape(sizes) or not np.isfinite(out[t.name]).all():
            raise BundleError(f"{model.file}: output '{t.name}' is {out[t.name].shape} or not finite")
    return f"{model.file}: ran on a {frames}-frame synthetic clip (outputs shaped by the spec, finite)"


def _version() -> str:
    from syncopt import __version__

    return __version__
