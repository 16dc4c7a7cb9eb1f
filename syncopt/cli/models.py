"""``syncopt models``: the registered models with parameters and MACs."""

from __future__ import annotations

from typing import Annotated

import typer

from syncopt.cli.app import app
from syncopt.cli.output import to_json


@app.command("models")
def models_cmd(
    preset: Annotated[str, typer.Option(help="Preset to describe: 'full' (paper size), 'tiny' (tests/CPU) or 'all'.")] = "full",
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")] = False,
) -> None:
    """List every registered model with its parameters and MACs at the spec's standard input.

    Counts are measured by building the model on the meta device and tracing one forward
    (no weights are allocated), at batch 1 and the spec's standard clip length (25 frames = 1 s).

    Example: syncopt models --preset tiny --json
    """
    from syncopt.models.catalog import describe_models

    rows = describe_models(preset)
    if as_json:
        typer.echo(to_json([r.model_dump() for r in rows]))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"syncopt models (MACs at batch 1, {rows[0].frames} frames = 1 s of video)")
    for col in ("model", "preset", "params", "GMACs", "inputs (per clip)", "min T", "offsets"):
        table.add_column(col, justify="right" if col in ("params", "GMACs", "min T", "offsets") else "left")
    for r in rows:
        inputs = "  ".join(f"{k} {v.removeprefix('Bx')}" for k, v in r.inputs.items())
        table.add_row(r.name, r.preset, f"{r.params / 1e6:.2f} M", f"{r.macs / 1e9:.2f}", inputs,
                      str(r.min_frames), f"±{r.max_offset}")
    Console().print(table)

