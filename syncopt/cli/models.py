"""``syncopt models``: the registered models with parameters and MACs."""

from __future__ import annotations

from typing import Annotated

import typer

from syncopt.cli.app import app
from syncopt.cli.output import print_models, to_json


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
    print_models(rows)

