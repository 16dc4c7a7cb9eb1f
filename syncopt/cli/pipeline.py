"""``syncopt run``: recipes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from syncopt.cli.app import app
from syncopt.cli.output import print_run
from syncopt.core.atomic import OUTPUT_FOLDER


@app.command("run")
def run_cmd(
    recipe: Annotated[str, typer.Argument(help="Recipe YAML, e.g. recipes/quickstart.yaml.")],
    out: Annotated[str | None, typer.Option(parser=OUTPUT_FOLDER, help="Run directory (default: runs/<recipe name>).")] = None,
    force: Annotated[list[str] | None, typer.Option(help="Rerun this stage even if unchanged (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's summary as JSON.")] = False,
) -> None:
    """Run a recipe: train -> distill -> prune -> quantize -> export -> parity -> bench -> bundle -> gate,
    each stage optional, each into OUT/<stage>/ with a manifest (inputs' and outputs' sha256,
    parameters, wall time). Unchanged stages are skipped, so an interrupted run resumes where it
    stopped. Ends with a summary table (accuracy, MACs, size, latency per stage and runtime);
    exits 14 on a malformed recipe, or with the failing stage's code. See recipes/quickstart.yaml.

    Example: syncopt run recipes/quickstart.yaml --out runs/quickstart
    """
    from syncopt.pipeline.recipe import load_recipe
    from syncopt.pipeline.runner import run_recipe

    parsed = load_recipe(recipe)
    result = run_recipe(parsed, out or f"runs/{parsed.name or Path(recipe).stem}", force=tuple(force or ()))
    if as_json:
        typer.echo(result.report.model_dump_json(indent=2))
    else:
        print_run(result.report)
    if result.error is not None:
        raise result.error

