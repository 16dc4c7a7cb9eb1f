"""The conversion matrix: every model x preset x format x precision -> exported / parity / failed.

``tiny`` cells are exported and checked by :func:`syncopt.parity.check_parity` (CoreML off
macOS: structural validation); ``full`` cells are export-only. Models carry the project's trained
weights where it ships them (syncopt/assets), else their initial ones. Run ``syncopt matrix`` or
``python -m syncopt.deploy.matrix``; it writes docs/conversion-matrix.md and the cells as JSON
beside it (conversion-matrix.json), from which ``update=True`` keeps the cells it does not re-run.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel

from syncopt.core.atomic import atomic_path
from syncopt.core.errors import BackendUnavailable, UsageError
from syncopt.core.formats import FORMATS
from syncopt.export import export
from syncopt.parity import NEAR_TIE_NATS

_MARK = {"passed": "✅", "exported": "📦", "failed": "❌", "skipped": "⏭️"}


class Cell(BaseModel):
    model: str
    preset: str
    format: str
    precision: str
    status: str  # passed | exported | failed | skipped
    detail: str = ""


def run_matrix(out: str | os.PathLike, models: Sequence[str] | None = None, presets: Sequence[str] = ("tiny", "full"),
               formats: Sequence[str] = tuple(FORMATS), work: str | os.PathLike = "artifacts/matrix",
               progress: Callable[[str], None] | None = None, synth_clips: int = 4, update: bool = False) -> list[Cell]:
    """Fill the matrix and write it as Markdown to ``out`` (cells as JSON beside it); returns the cells.

    ``update``: keep the cells of other models/presets/formats from the JSON of an earlier run.
    """
    import torch

    from syncopt.models.registry import create, get_entry, model_names
    from syncopt.models.sources import shipped_weights

    unknown = [f for f in formats if f not in FORMATS] + [p for p in presets if p not in ("tiny", "full")]
    if unknown:
        raise UsageError(f"unknown format or preset '{unknown[0]}' (formats: {', '.join(FORMATS)}; "
                         f"presets: tiny, full)")
    cells: list[Cell] = []
    for name in models or model_names():
        for preset in presets:
            if preset not in get_entry(name).presets:
                continue
            torch.manual_seed(0)  # models without shipped weights start random: the same cells on every run
            try:
                net = create(name, preset, weights=shipped_weights(name, preset))
            except Exception as exc:  # a model that does not build fails its whole row
                cells += [Cell(model=name, preset=preset, format=f, precision=p, status="failed",
                               detail=f"build: {_line(exc)}") for f in formats for p in FORMATS[f].precisions]
                continue
            for fmt in formats:
                for precision in FORMATS[fmt].precisions:
                    start = time.monotonic()
                    cell = _cell(net, name, preset, fmt, precision, Path(work) / f"{name}_{preset}", synth_clips)
                    cells.append(cell)
                    if progress:
                        progress(f"{name} {preset} {fmt} {precision}: {cell.status} {cell.detail} "
                                 f"({time.monotonic() - start:.0f} s)")
    if update and cells_path(out).is_file():
        done = {(c.model, c.preset, c.format) for c in cells}
        kept = [c for c in load_cells(cells_path(out)) if (c.model, c.preset, c.format) not in done]
        order = {name: i for i, name in enumerate(model_names())}
        cells = sorted(kept + cells, key=lambda c: order.get(c.model, len(order)))  # stable: keeps cell order
    with atomic_path(cells_path(out)) as tmp:
        tmp.write_text(json.dumps([c.model_dump() for c in cells], indent=1, ensure_ascii=False))
    with atomic_path(out) as tmp:
        tmp.write_text(render(cells, [f for f in FORMATS if any(c.format == f for c in cells)]))
    return cells


def cells_path(out: str | os.PathLike) -> Path:
    """Where the matrix's cells are kept as JSON: beside the Markdown file."""
    return Path(out).with_suffix(".json")


def load_cells(path: str | os.PathLike) -> list[Cell]:
    """The cells of an earlier run."""
    return [Cell.model_validate(c) for c in json.loads(Path(path).read_text())]


def _cell(net, name: str, preset: str, fmt: str, precision: str, folder: Path, synth_clips: int) -> Cell:
    from syncopt.parity import check_parity

    base = dict(model=name, preset=preset, format=fmt, precision=precision)
    try:
        artifact = export(net, fmt, folder, precision)
    except BackendUnavailable as exc:
        return Cell(**base, status="skipped", detail=_line(exc))
    except Exception as exc:
        return Cell(**base, status="failed", detail=f"export: {_line(exc)}")
    flex = [op for op in artifact.ops if op.startswith("Flex")]
    note = f"Flex ops {', '.join(flex)}" if flex else ""
    if preset != "tiny":
        return Cell(**base, status="exported", detail=note)
    try:
        report = check_parity(artifact.path, synth_clips=synth_clips)
    except Exception as exc:
        return Cell(**base, status="failed", detail=f"parity: {_line(exc)}")
    if report.note:
        summary = "structure ok" if report.passed else "; ".join(report.failures)
    else:
        summary = (f"max abs {max(o.max_abs for o in report.outputs):.1e}, min emb cos "
                   f"{min(o.min_cosine for o in report.outputs if o.output.endswith('_emb')):.4f}, {report.decisions}"
                   if report.passed else "; ".join(report.failures + [report.decisions]))
    return Cell(**base, status="passed" if report.passed else "failed", detail=summary)


def render(cells: list[Cell], formats: Sequence[str]) -> str:
    """Markdown: one grid per preset (rows models, columns format/precision), then the reasons."""
    from syncopt.models.sources import available_shipped

    columns = [(f, p) for f in formats for p in FORMATS[f].precisions]
    lines = ["# Conversion matrix", "",
             f"Generated by `syncopt matrix` on {platform.system()} {platform.machine()} "
             f"(Python {platform.python_version()}). ✅ parity passed (DESIGN tolerances; CoreML off macOS: "
             "structural validation) · 📦 exported (full presets are export-only) · ❌ failed · ⏭️ skipped: "
             "back-end or device absent here · blank: not run. TFLite cells are at the spec's standard length T "
             "(TFLite artifacts have a fixed T). Models carry the project's trained weights where it ships "
             f"them (syncopt/assets: {', '.join(available_shipped())}), else their initial random weights. Offset "
             "decisions are compared only on clips torch decides by at least "
             f"{NEAR_TIE_NATS:g} nats of mean log-probability; closer ones are near ties, not judged (see "
             "docs/export.md). Numbers in brackets refer to the notes below.", ""]
    notes: list[str] = []
    for preset in dict.fromkeys(c.preset for c in cells):
        lines += [f"## {preset}", "", "| model | " + " | ".join(f"{f} {p}" for f, p in columns) + " |",
                  "|---" * (len(columns) + 1) + "|"]
        for model in dict.fromkeys(c.model for c in cells if c.preset == preset):
            row = []
            for f, p in columns:
                cell = next((c for c in cells if (c.model, c.preset, c.format, c.precision) == (model, preset, f, p)), None)
                if cell is None:
                    row.append("")
                    continue
                if cell.detail:
                    if cell.detail not in notes:
                        notes.append(cell.detail)
                    row.append(f"{_MARK[cell.status]} [{notes.index(cell.detail) + 1}]")
                else:
                    row.append(_MARK[cell.status])
            lines.append(f"| {model} | " + " | ".join(row) + " |")
        lines.append("")
    lines += ["## Notes", ""] + [f"{i}. {n}" for i, n in enumerate(notes, 1)] + [""]
    return "\n".join(lines)


def _line(exc: BaseException, most: int = 240) -> str:
    """An error as one table-safe line of at most ``most`` characters: its start and its end (OpenVINO
    and ONNX Runtime put the reason last, after a source location and a stack of checks)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > most:
        text = f"{text[:most // 3]} … {text[-(most - most // 3 - 3):]}"
    return text.replace("|", "/")


if __name__ == "__main__":
    import sys

    run_matrix(sys.argv[1] if len(sys.argv) > 1 else "docs/conversion-matrix.md", progress=print)
