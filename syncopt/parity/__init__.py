"""Parity of an exported artifact against its PyTorch source on the same inputs.

Tolerances are the parity contract of docs/DESIGN.md:

| precision | check against torch fp32 |
|---|---|
| fp32 | max abs <= 1e-4 and max rel <= 1e-3 on every output |
| fp16 | max abs <= 1e-2; offset decision identical on >= 99.5% of clips |
| int8 | embedding cosine >= 0.99; offset decision identical on >= 99% of clips |

bf16 (OpenVINO's bfloat16 inference) is held to the fp16 row: DESIGN.md has no bf16 row, and bf16
keeps fewer mantissa bits than fp16 (8 against 11), so this is the stricter reading, not a new bar.

Relative error is ``|a - b| / max(|b|, 0.1)``: below 0.1 in magnitude the absolute bound rules.
Offset decisions are compared only on clips the torch model decides clearly: a clip whose best
offset beats the runner-up by less than ``NEAR_TIE_NATS`` of mean per-frame log-probability is a
near tie (typical of untrained weights), counted in ``near_ties`` and left out of the agreement;
with every clip a near tie the agreement is not judged (``decision_agreement`` None).
Inputs: random inputs from the spec at several lengths, and synthetic test clips. An artifact
fixed at one clip length (TFLite) is compared at that length only, with the same inputs otherwise.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from pydantic import BaseModel, Field

from syncopt.core.artifact import load_artifact
from syncopt.core.formats import FORMATS
from syncopt.core.spec import EMBEDDINGS
from syncopt.runtimes import load

REL_FLOOR = 0.1
# Trained tiny fcn: synthetic clips decide by 0.9-9.9 nats, random inputs by 0.13-0.25; initial
# weights by 0.001-0.02 (docs/export.md, "INT8 decisions and near ties").
NEAR_TIE_NATS = 0.1


class Tolerance(BaseModel):
    """Thresholds of a parity check (finite: a NaN threshold would fail or pass every artifact)."""

    max_abs: float | None = Field(None, ge=0, allow_inf_nan=False)
    max_rel: float | None = Field(None, ge=0, allow_inf_nan=False)
    min_cosine: float | None = Field(None, ge=-1, le=1)
    min_agreement: float | None = Field(None, ge=0, le=1)


TOLERANCES = {
    "fp32": Tolerance(max_abs=1e-4, max_rel=1e-3),
    "fp16": Tolerance(max_abs=1e-2, min_agreement=0.995),
    "bf16": Tolerance(max_abs=1e-2, min_agreement=0.995),  # the fp16 row (module docstring)
    "int8": Tolerance(min_cosine=0.99, min_agreement=0.99),
}


class OutputError(BaseModel):
    output: str
    max_abs: float
    max_rel: float
    min_cosine: float


class ParityReport(BaseModel):
    artifact: str
    runtime: str
    precision: str
    tolerance: Tolerance
    cases: list[str]
    outputs: list[OutputError]  # worst case over all inputs, per output
    decision_agreement: float | None  # share of decisive clips whose offset decision matches torch (None: none)
    near_ties: int = 0  # clips left out of the agreement: torch's decision margin < NEAR_TIE_NATS
    failures: list[str]
    note: str = ""  # what was checked instead of numbers, when the artifact cannot run here

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def decisions(self) -> str:
        """The offset-decision comparison in words."""
        ties = f", {self.near_ties} near ties not judged" if self.near_ties else ""
        if self.decision_agreement is None:
            return f"offset decisions not judged ({self.near_ties} clips, all near ties)" if self.near_ties else ""
        return f"offset decisions agree on {self.decision_agreement:.1%}{ties}"


def check_parity(artifact_path: str | os.PathLike, runtime: str | None = None, frames: tuple[int, ...] = (0, 41),
                 synth_clips: int = 8, tolerances: dict[str, Tolerance] | None = None) -> ParityReport:
    """Run the artifact and its torch source on the same inputs and judge them by the tolerances.

    ``frames``: lengths of random inputs (0 means the spec's minimum length); ``synth_clips``:
    number of synthetic test clips (2 s, or the artifact's fixed length) also compared;
    ``tolerances``: per precision, replacing :data:`TOLERANCES` (gates and recipes set their own).
    """
    artifact = load_artifact(artifact_path)
    row = FORMATS.get(artifact.format)
    if row is not None and row.validate and runtime in (None, row.runtime):
        runs, reason = row.available("run")
        if not runs:
            return _structure(artifact, row, reason)
    session = load(artifact, runtime)
    reference = load(artifact, "torch")
    spec = artifact.spec
    cases: list[tuple[str, dict[str, torch.Tensor]]] = []
    for i, t in enumerate(frames):
        t = artifact.frames or t or spec.min_frames
        cases.append((f"random T={t} B={1 + i % 2}", spec.example_inputs(T=t, batch=1 + i % 2, seed=100 + i)))
    cases += _synthetic_cases(spec, synth_clips, artifact.frames or 50)

    worst: dict[str, OutputError] = {}
    agree: list[bool] = []
    near_ties = 0
    for _, feeds in cases:
        got, ref = session.run(feeds), reference.run(feeds)
        for name in spec.output_names:
            err = _errors(name, got[name].astype(np.float32), ref[name])
            prev = worst.get(name)
            worst[name] = err if prev is None else OutputError(
                output=name, max_abs=max(prev.max_abs, err.max_abs), max_rel=max(prev.max_rel, err.max_rel),
                min_cosine=min(prev.min_cosine, err.min_cosine))
        judged, ties = compare_decisions(got, ref, spec.max_offset)
        agree += judged
        near_ties += ties
    tol = (tolerances or {}).get(artifact.precision, TOLERANCES[artifact.precision])
    report = ParityReport(artifact=str(artifact.path), runtime=session.name, precision=artifact.precision,
                          tolerance=tol, cases=[c for c, _ in cases], outputs=list(worst.values()),
                          decision_agreement=float(np.mean(agree)) if agree else None, near_ties=near_ties,
                          failures=[])
    report.failures = _judge(report, tol)
    return report


def _structure(artifact, row, reason: str) -> ParityReport:
    """An artifact whose runtime cannot run here (CoreML off macOS): its structure validated against the spec."""
    return ParityReport(artifact=str(artifact.path), runtime=row.runtime, precision=artifact.precision,
                        tolerance=TOLERANCES[artifact.precision], cases=[], outputs=[], decision_agreement=None,
                        failures=row.load("validate")(artifact),
                        note=f"structure only: numeric parity needs the runtime ({reason})")


def _errors(name: str, got: np.ndarray, ref: np.ndarray) -> OutputError:
    if got.shape != ref.shape:
        return OutputError(output=name, max_abs=float("inf"), max_rel=float("inf"), min_cosine=-1.0)
    diff = np.abs(got - ref)
    rel = diff / np.maximum(np.abs(ref), REL_FLOOR)
    if name in EMBEDDINGS:  # per-frame embedding vectors along the channel axis
        a, b = np.moveaxis(got, 1, -1).reshape(-1, got.shape[1]), np.moveaxis(ref, 1, -1).reshape(-1, ref.shape[1])
    else:
        a, b = got.reshape(1, -1), ref.reshape(1, -1)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return OutputError(output=name, max_abs=float(diff.max()), max_rel=float(rel.max()), min_cosine=float(cos.min()))


def compare_decisions(got: dict[str, np.ndarray], ref: dict[str, np.ndarray],
                      max_offset: int) -> tuple[list[bool], int]:
    """Per clip torch decides clearly, whether ``got`` decides the same offset; and how many clips
    were near ties (torch's margin below ``NEAR_TIE_NATS``), left out."""
    agree, near_ties = [], 0
    for (offset, _), (expected, margin) in zip(_decisions(got, max_offset), _decisions(ref, max_offset)):
        if margin < NEAR_TIE_NATS:
            near_ties += 1
        else:
            agree.append(offset == expected)
    return agree, near_ties


def _decisions(outputs: dict[str, np.ndarray], max_offset: int) -> list[tuple[int, float]]:
    """``(offset, margin)`` decided for each batch item: the margin is the best clip score minus the
    runner-up's, in nats of mean log-probability; SyncNet's mean distances have no common scale,
    so its margins are infinite (every clip is judged)."""
    from syncopt.models.decode import decode_dense
    from syncopt.models.syncnet import windowed_offset

    if "offset_logits" in outputs:
        decided = []
        for logits in outputs["offset_logits"]:
            result = decode_dense(torch.from_numpy(logits))
            best, runner_up = sorted(result.offset_scores, reverse=True)[:2]
            decided.append((result.offset, best - runner_up))
        return decided
    return [(windowed_offset(torch.from_numpy(v).T, torch.from_numpy(a).T, vshift=max_offset).offset, float("inf"))
            for v, a in zip(outputs["video_emb"], outputs["audio_emb"])]


def _judge(report: ParityReport, tol: Tolerance) -> list[str]:
    """The failures of ``report`` under ``tol`` (empty: within tolerance)."""
    failures = []
    for o in report.outputs:
        if tol.max_abs is not None and not o.max_abs <= tol.max_abs:
            failures.append(f"{o.output}: max abs {o.max_abs:.3g} > {tol.max_abs:g}")
        if tol.max_rel is not None and not o.max_rel <= tol.max_rel:
            failures.append(f"{o.output}: max rel {o.max_rel:.3g} > {tol.max_rel:g}")
        if tol.min_cosine is not None and o.output in EMBEDDINGS and not o.min_cosine >= tol.min_cosine:
            failures.append(f"{o.output}: cosine {o.min_cosine:.4f} < {tol.min_cosine:g}")
    if tol.min_agreement is not None and report.decision_agreement is not None \
            and not report.decision_agreement >= tol.min_agreement:
        failures.append(f"offset decisions agree on {report.decision_agreement:.1%} < {tol.min_agreement:.1%}")
    return failures


def _synthetic_cases(spec, count: int, frames: int) -> list[tuple[str, dict[str, torch.Tensor]]]:
    from syncopt.data.datasets import reads_lips, synth_dataset

    if count <= 0 or reads_lips(spec):  # lip-motion models: no synthetic clips exist, random inputs only
        return []

    data = synth_dataset(spec, "test", count, num_frames=frames)
    batch = [data[i] for i in range(count)]
    feeds = {name: torch.stack([b[name] for b in batch]) for name in spec.input_names}
    return [(f"synthetic clips x{count} (T={frames})", feeds)]
