"""``syncopt ensemble``: finished runs of one model and preset as one output ensemble
(:class:`syncopt.models.ensemble.SyncEnsemble`), a run directory like ``syncopt train``'s.

Unlike a soup (:mod:`syncopt.training.soup`) the runs need not share an initialisation: each keeps its own
weights and the ensemble averages their offset logits, at the members' summed cost. Every command
that reads runs (evaluate, export, distill, sync, the shipped-weights manifest) takes it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from syncopt.core.errors import UsageError
from syncopt.models.ensemble import SyncEnsemble
from syncopt.models.registry import create
from syncopt.training.soup import read_runs, write_combined
from syncopt.training.train import TrainReport


def ensemble_runs(runs: Sequence[str | os.PathLike], out: str | os.PathLike, mirror: bool = False) -> TrainReport:
    """Write ``out``, a run directory holding ``runs`` as one ensemble (with ``mirror``, each run also on the
    mirror image of the lips: then one run is enough), and return its report."""
    reports = read_runs(runs, "an ensemble" + (" with mirror views" if mirror else ""), least=1 if mirror else 2)
    first = reports[0].config
    for run, report in zip(runs[1:], reports[1:]):
        if (report.config.model, report.config.preset) != (first.model, first.preset):
            raise UsageError(f"{run} is {report.config.model} ({report.config.preset}), {runs[0]} is {first.model} "
                             f"({first.preset}): an ensemble's members are runs of one model and preset")
    members = [create(first.model, first.preset, weights=Path(r) / "model.safetensors") for r in runs]
    if any(isinstance(m, SyncEnsemble) for m in members):
        raise UsageError("a run given is an ensemble already: list its members' runs instead")
    return write_combined(SyncEnsemble(members, mirror), reports, out, ensemble_of=[r.config for r in reports],
                          mirror_views=mirror)
