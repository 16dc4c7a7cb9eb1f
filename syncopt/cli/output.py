"""How the command line prints: strict JSON, atomic text files, result tables."""

from __future__ import annotations

from typing import Any

import typer


def to_json(value: Any) -> str:
    """Strict JSON of models, lists and dicts: a NaN or inf is ``null`` (``json.dumps`` writes bare NaN)."""
    import pydantic_core

    return pydantic_core.to_json(value, indent=2, inf_nan_mode="null").decode()



def write_text(path: str, text: str) -> None:
    from syncopt.core.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text)



def print_sync(res) -> None:
    note = " — synthetic-data weights shipped with syncopt (not trained on real video)" if res.synthetic_weights else ""
    typer.echo(f"{res.video}: {res.frames} frames ({res.duration_s:.2f} s), {res.model}/{res.preset}{note}")
    if res.trained_on:
        typer.echo(f"  weights trained on: {res.trained_on}")
    for line in res.media_notes:
        typer.echo(f"  note: {line}")
    for t in res.tracks:
        typer.echo(f"  track {t.track} frames {t.start_frame}-{t.start_frame + t.num_frames - 1}: "
                   f"AV offset {t.offset_frames:+d} frames ({t.offset_ms:+.0f} ms), confidence {t.confidence:.3f}"
                   + (f", offset probability {t.offset_probability:.2f}{' (calibrated)' if res.calibrated else ''}"
                      if t.offset_probability is not None else "")
                   + f"{'  [UNCERTAIN]' if t.uncertain else ''}{'  [speaking]' if t.speaking else ''}")
        if t.inconsistency is not None and t.inconsistency.segments:
            spans = ", ".join(f"{g.start_s:.2f}-{g.end_s:.2f} s ({g.offset:+d})" for g in t.inconsistency.segments)
            typer.echo(f"    inconsistent: {spans}; score {t.inconsistency.score:.2f}")
    if res.speakers is not None and len(res.tracks) > 1:
        turns = ", ".join(f"#{u.track} {u.start_s:.2f}-{u.end_s:.2f} s" for u in res.speakers.turns) or "none"
        typer.echo(f"  speaker turns: {turns}")

