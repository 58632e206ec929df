"""Data parallelism with PyTorch's own engine: torchrun and DistributedDataParallel (lesson 12).

``torchrun --nproc_per_node N script.py`` starts N copies of the same script. Each copy (a
*rank*) finds who it is in environment variables that torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). Every rank holds a full copy of the model,
trains on its own share of each batch, and DistributedDataParallel (DDP) averages the gradients
across ranks during ``backward()``, so every rank takes the same optimiser step and the copies
never drift apart.

The course's ``train`` runs unchanged under DDP: only rank 0 shows the progress bar and calls the
hook, the logged loss is averaged over the ranks at each progress refresh, evaluation metrics are
averaged over the ranks, and only rank 0 writes checkpoints and results.

Example (the body of a script launched with ``torchrun --nproc_per_node 2 my_script.py``):
    >>> rank, world, device = setup()                 # gloo on CPU, nccl on CUDA
    >>> model = wrap_ddp(model, device)               # freeze layers BEFORE this line
    >>> batches = RankShard(Batches(x, y, batch_size=64, seed=0))   # 64 images per step in all
    >>> history = train(model, cross_entropy_loss, batches, device=device)
    >>> cleanup()
"""
from __future__ import annotations

import contextlib
import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .device import prefers_channels_last


def is_distributed() -> bool:
    """True inside a process group (after ``setup()`` under torchrun)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's number, 0 to world_size - 1 (0 outside torchrun)."""
    if is_distributed():
        return dist.get_rank()
    return int(os.environ.get("RANK", 0))       # under torchrun even before setup()


def world_size() -> int:
    """How many processes train together (1 outside torchrun)."""
    if is_distributed():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1))


def is_main_process() -> bool:
    """True on rank 0, the one process that prints, plots and writes files (and outside torchrun)."""
    return rank() == 0


def setup(backend: str | None = None, timeout_s: int = 300):
    """Join the process group that torchrun describes in the environment.

    Picks ``nccl`` when CUDA is available (one GPU per process: ``cuda:LOCAL_RANK``) and ``gloo``
    on the CPU. Without torchrun (no ``WORLD_SIZE`` in the environment) nothing is initialised and
    the script runs as one ordinary process.

    Returns:
        (rank, world_size, device)
    """
    from .device import resolve_device
    if "WORLD_SIZE" not in os.environ:
        return 0, 1, resolve_device("auto")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = resolve_device("auto").type == "cuda"      # $TORCH_DEVICE is read in one place
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"rank {local_rank} needs GPU {local_rank}, but this machine has "
                               f"{torch.cuda.device_count()}: start at most that many processes per "
                               f"machine, or run on the CPU with TORCH_DEVICE=cpu (gloo)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    backend = backend or ("nccl" if use_cuda else "gloo")
    if not is_distributed():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                                device_id=device if use_cuda else None)
    return dist.get_rank(), dist.get_world_size(), device


def cleanup() -> None:
    """Leave the process group (call at the end of the script, on every rank)."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank got here (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


@contextlib.contextmanager
def main_process_first():
    """Rank 0 runs the block first (e.g. builds a missing cache), the others after it has finished
    (and then load what it wrote instead of building it again at the same time)."""
    if not is_main_process():
        barrier()
    try:
        yield
    finally:
        if is_main_process():
            barrier()


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over all ranks (the tensor itself in a single process).

    A collective: every rank must call it, in the same order.
    """
    if not is_distributed() or world_size() == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world_size()


def reduce_metrics(metrics: dict) -> dict:
    """Average a dict of scalar metrics over the ranks, in one collective.

    Every rank weighs equally: give each rank the same number of evaluation examples (or all of
    them: then the mean equals each rank's value).
    """
    if not is_distributed() or world_size() == 1 or not metrics:
        return {k: float(v) for k, v in metrics.items()}
    names = sorted(metrics)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    values = torch.tensor([float(metrics[k]) for k in names], dtype=torch.float64, device=device)
    values = mean_over_ranks(values).tolist()
    return dict(zip(names, values))


def wrap_ddp(model: nn.Module, device=None, channels_last: bool | None = None) -> nn.Module:
    """Move ``model`` to ``device`` and wrap it in DistributedDataParallel (unchanged without torchrun).

    Freeze layers (and add LoRA adapters) BEFORE wrapping: DDP decides once, here, which
    parameters it averages gradients for (those with ``requires_grad``), and ignores the others.
    Freezing after wrapping makes DDP wait for gradients that never come.

    ``channels_last`` (default: ``prefers_channels_last``, as in ``train``) is applied before
    wrapping, because DDP must see the parameters in the layout they will keep.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if channels_last is None:
        channels_last = prefers_channels_last(model, device)
    model = model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)
    if not is_distributed():
        return model
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


class RankShard:
    """This rank's share of every batch of ``batches``: the same global batch, cut into pieces.

    Every rank iterates the same ``Batches`` (same data, same seed, so the same shuffled order and
    the same global batch at each step) and keeps piece ``rank`` of ``world_size`` near-equal
    pieces. Together the ranks see exactly the global batch of one process, so DDP's averaged
    gradient equals the one-process gradient (exactly when the pieces are equal in size and the
    model has no batch statistics: see ``helpers.surgery.freeze_bn_statistics``).

    For procedural worlds that render fresh batches, the other way is one stream per rank with
    its own seed (``seed + rank``): different data per rank, no need to cut.
    """

    def __init__(self, batches, rank_: int | None = None, world: int | None = None):
        self.batches = batches
        self.rank = rank() if rank_ is None else rank_
        self.world = world_size() if world is None else world

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            yield tuple(torch.tensor_split(t, self.world)[self.rank] if torch.is_tensor(t) else t
                        for t in batch)
