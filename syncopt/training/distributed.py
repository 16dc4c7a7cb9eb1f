"""Data-parallel training under ``torchrun``: the job's ranks, its process group, DDP and data shards.

``torchrun`` (also inside ``srun``) gives every process ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK`` plus the rendezvous address (https://pytorch.org/docs/stable/elastic/run.html,
"Environment Variables"). Without them the run is one process and every helper here is a no-op,
so single-process training takes the same code path. The backend is NCCL on CUDA and Gloo on
CPU. Only the trained model is wrapped in DistributedDataParallel; rank 0 alone logs, writes
checkpoints and reports while the other ranks wait at barriers.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from syncopt.core.errors import UsageError

T = TypeVar("T")


@dataclass(frozen=True)
class Rank:
    """This process's place in the job (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local) if torch.cuda.is_available() else torch.device("cpu")


def current() -> Rank:
    """The rank from torchrun's environment variables; :class:`UsageError` if they are malformed."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    try:
        rank, world, local = (int(os.environ.get(name, default)) for name, default in zip(names, ("0", "1", "0")))
    except ValueError as exc:
        raise UsageError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers ({exc})") from exc
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"RANK {rank} is outside WORLD_SIZE {world}")
    return Rank(rank, world, local)


def process_group(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn`` inside the job's process group: joined first (when there is more than one process
    and none is joined yet) and destroyed afterwards, on errors too."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> T:
        me = current()
        if me.world == 1 or dist.is_initialized():
            return fn(*args, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.set_device(me.local)
        try:
            _join("nccl" if torch.cuda.is_available() else "gloo")
        except (ValueError, RuntimeError) as exc:  # e.g. WORLD_SIZE set by hand without MASTER_ADDR/PORT
            raise UsageError(f"cannot join the process group of {me.world} processes: "
                             f"{str(exc).splitlines()[0]} (start the job with torchrun)") from exc
        try:
            result = fn(*args, **kwargs)
            dist.barrier()  # no rank tears down (rank 0 hosts the store) while another still talks to it
            return result
        finally:
            dist.destroy_process_group()

    return wrapper


def _join(backend: str) -> None:
    """Join the process group through the env:// rendezvous; after a restart, under keys of its own.

    torchrun's agent keeps one key-value store for the whole job, and a restarted job (after a
    rank died) would otherwise read the dead workers' addresses from it and fail to connect."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    if attempt == "0":
        dist.init_process_group(backend)
        return
    store, rank, world = next(dist.rendezvous("env://"))
    dist.init_process_group(backend, store=dist.PrefixStore(f"syncopt/attempt-{attempt}", store), rank=rank,
                            world_size=world)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (no-op for one process)."""
    if _active():
        dist.barrier()


def from_main(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (objects travel pickled between the job's own processes)."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gathered(items: list[T]) -> list[T]:
    """Every rank's ``items``, concatenated in rank order."""
    if not _active():
        return items
    parts: list[list[T]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def reduce(values: list[float], op: str = "sum") -> list[float]:
    """``values`` summed (``op="sum"``) or minimised (``"min"``) element-wise over the ranks."""
    if not _active():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MIN)
    return t.tolist()


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average the gradients of parameters trained outside DDP (e.g. distillation projections)."""
    if not _active():
        return
    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def average_buffers(model: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) so every rank holds the same
    model; DDP itself only copies rank 0's buffers at the start of each forward."""
    if not _active():
        return
    world = dist.get_world_size()
    for b in model.buffers():
        if b.is_floating_point():
            dist.all_reduce(b)
            b /= world


def wrap(model: nn.Module) -> nn.Module:
    """``model`` in DistributedDataParallel over the parameters that now require gradients
    (wrap again after freezing or unfreezing); the model itself for one process.

    ``find_unused_parameters``: objectives may leave outputs unused (a distillation without labels
    does not touch the in-sync head), which plain DDP would wait on forever.
    """
    if not _active():
        return model
    device_ids = [current().local] if torch.cuda.is_available() else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)


def _comm_device() -> torch.device:
    return current().device if dist.get_backend() == "nccl" else torch.device("cpu")


def shard(indices: range | list[int], me: Rank | None = None) -> list[int]:
    """This rank's share of ``indices``: every ``world``-th from ``rank``; the tail that would leave
    ranks unequal is dropped, so no item is on two ranks and every rank holds the same count."""
    me = me or current()
    usable = len(indices) - len(indices) % me.world
    return list(indices[me.rank:usable:me.world])


class EpochShuffle(Sampler[int]):
    """The first ``length`` positions of a permutation of ``range(n)`` drawn from ``(seed, epoch)``.

    Like ``DistributedSampler.set_epoch``: every epoch a new order, and a resumed run replays the
    order of the epoch it resumes at. ``length`` lets all ranks take the same number of batches.
    """

    def __init__(self, n: int, length: int, seed: int) -> None:
        self.n, self.length, self.seed, self.epoch = n, length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g)[:self.length].tolist())

    def __len__(self) -> int:
        return self.length
