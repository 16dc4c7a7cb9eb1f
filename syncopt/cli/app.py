"""The ``syncopt`` application: root options, and the process around every command (one-line errors and
exit codes, signals, a closed stdout, hidden back-end warnings, one scratch folder)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from syncopt.core.atomic import process_temp_dir
from syncopt.core.errors import Interrupted, OutputFileError, SyncoptError


@dataclass
class _State:
    debug: bool = False  # `syncopt --debug`: tracebacks instead of one-line errors (set by main)


app_state = _State()


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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: a :class:`SyncoptError` becomes one line and its exit code, and so
    do a malformed command line (unknown command or option, bad value, missing argument: exit 2), an
    interrupt (SIGINT 130, SIGTERM 143) and results that standard output cannot take (exit 15; help
    text cut off by a closed pipe, as `| head` does, is not an error).
    Scratch files live in a folder of this process (:func:`syncopt.core.atomic.process_temp_dir`),
    removed however the command ends; without --debug, back-ends' warnings are not shown."""
    args = sys.argv[1:] if argv is None else argv
    debug = app_state.debug = "--debug" in args
    try:
        with process_temp_dir(), _console(debug):
            if sys.stdout is None:  # started with stdout closed (`>&-`): the results would be lost
                raise OutputFileError("standard output is closed: nowhere to print the results "
                                      "(redirect it to a file or /dev/null)")
            code = app(args=args, prog_name="syncopt", standalone_mode=False)
    except typer.TyperException as exc:  # typer's own command-line errors
        if message := exc.format_message():  # empty when `syncopt` alone has already printed the help
            ctx = getattr(exc, "ctx", None)
            typer.echo(f"error: {message} (see {ctx.command_path if ctx else 'syncopt'} --help)", err=True)
        sys.exit(exc.exit_code)
    except SyncoptError as exc:
        if debug:
            raise
        if isinstance(exc.__cause__, BrokenPipeError) and "--help" in args:  # `syncopt train --help | head`
            sys.exit(0)  # help is read in part by design; only results lost in a pipe are an error
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        if debug:
            raise
        typer.echo("error: interrupted; nothing written under the final name", err=True)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)  # typer.Exit's code, else success


def run() -> None:
    """The ``syncopt`` console script and ``python -m syncopt``: :func:`main`, then the process ends
    without tearing the interpreter down (exit handlers run and the standard streams are flushed):
    with torch loaded, finalising its modules costs about 0.4 s of a command's wall time."""
    import atexit
    import os

    try:
        main()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    if not isinstance(code, int):  # sys.exit("message") prints it, as the interpreter would
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


@contextlib.contextmanager
def _console(debug: bool) -> Iterator[None]:
    """While a command runs: SIGINT and SIGTERM raise :class:`Interrupted` (so every ``with`` block
    cleans up), a failed write to stdout is an :class:`OutputFileError`, and back-ends' warnings and
    log lines below ERROR (torch's UserWarnings, its ``W1203 ...`` log lines) are hidden unless ``debug``."""
    import logging
    import os
    import signal
    import threading
    import warnings

    def interrupted(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    handlers = ({s: signal.signal(s, interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
                if threading.current_thread() is threading.main_thread() else {})
    stdout, sys.stdout = sys.stdout, _Stdout(sys.stdout) if sys.stdout is not None else None
    log_floor = logging.root.manager.disable
    with warnings.catch_warnings():
        if not debug:
            warnings.simplefilter("ignore")
            logging.disable(logging.WARNING)
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO and WARNING lines
        try:
            yield
        finally:
            sys.stdout = stdout
            logging.disable(log_floor)
            for s, handler in handlers.items():
                signal.signal(s, handler)


class _Stdout:
    """``sys.stdout`` while a command runs: a write that fails (a closed pipe, a full disk) raises
    :class:`OutputFileError`, so it is one line and exit 15, not click's silent exit 1 on EPIPE."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        with self._errors():
            return self._stream.write(text)

    def flush(self) -> None:
        with self._errors():
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        import os

        try:
            yield
        except OSError as exc:
            with contextlib.suppress(OSError, ValueError):  # what is still buffered goes nowhere, quietly
                os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
            raise OutputFileError(f"cannot print the results to standard output ({exc.strerror or exc})") from exc

