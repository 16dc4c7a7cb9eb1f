"""``python -m syncopt`` is the ``syncopt`` command."""

from syncopt.cli import run

run()
