"""torch.distributed from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), the same for every model.

Started alone, everything runs in one process and the collectives are no-ops. Under torchrun, NCCL joins
the GPUs and gloo the CPU processes; rank 0 owns the files, the registry and the logs.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes in the environment (a no-op when started alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistInfo(rank, world, local_rank, False)
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local_rank, True)


def shutdown(info: DistInfo) -> None:
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(device: str, info: DistInfo) -> torch.device:
    """'auto' is CUDA when there is one; under DDP each rank takes its own GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and info.enabled:
        return torch.device("cuda", info.local_rank)
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def broadcast_object(value: Any, info: DistInfo) -> Any:
    """Rank 0's value on every rank (e.g. the version name rank 0 chose)."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(value: Any, info: DistInfo) -> list[Any]:
    if not info.enabled:
        return [value]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, value)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_finite(value: float, device: torch.device, info: DistInfo) -> bool:
    """True when `value` is finite on every rank.

    Every rank learns the same answer before backward, so either all stop or none does: a rank that
    stopped alone would leave the others waiting forever in DDP's gradient all-reduce.
    """
    finite = bool(np.isfinite(value))
    if not info.enabled:
        return finite
    flag = torch.tensor([1.0 if finite else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


def sum_across(values: dict[str, float], device: torch.device, info: DistInfo) -> dict[str, float]:
    """Each value summed over the ranks (epoch totals of the training statistics)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))
