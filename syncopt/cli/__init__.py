"""The ``syncopt`` command line: typer verbs, one module per stage group, that parse options, call the
library's stage functions and print (:mod:`syncopt.cli.output`); the process around them is
:mod:`syncopt.cli.app`."""

from syncopt.cli.app import app, main, run

# isort: off
# The verbs register on import, in --help's order: the pipeline's.
from syncopt.cli import models, training, compress, export, inference, analysis, deploy, pipeline  # noqa: F401, E402
# isort: on

__all__ = ["app", "main", "run"]
