"""The ``syncopt`` command line: thin typer verbs over the library's stage functions."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from syncopt.errors import SyncoptError

app = typer.Typer(
    name="syncopt",
    help=(
        "Audio-visual lip-sync models: reference SyncNets, distillation, pruning, INT8 and "
        "export with parity and speed gates.\n\n"
        "Errors print one line and exit non-zero; add --debug for the traceback."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        from syncopt import __version__

        typer.echo(f"syncopt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
) -> None:
    """Global options (handled before any command runs)."""


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
    from syncopt.catalog import describe_models

    rows = describe_models(preset)
    if as_json:
        typer.echo(json.dumps([r.model_dump() for r in rows], indent=2))
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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: a :class:`SyncoptError` becomes one line and its exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="syncopt")  # typer itself handles usage errors (exit 2) and --help
    except SyncoptError as exc:
        if "--debug" in args:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
