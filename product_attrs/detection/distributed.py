"""torch.distributed set-up from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and small helpers.

Without those variables everything runs in one process and the helpers are no-ops.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return rank() == 0


def init_distributed(device_pref: str = "auto") -> tuple[bool, torch.device]:
    """Join the process group when started by torchrun; returns (distributed, this process's device).

    Backend: nccl when each rank has a GPU, gloo on CPU.
    """
    want_cuda = device_pref.startswith("cuda") or (device_pref == "auto" and torch.cuda.is_available())
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        if want_cuda:
            return False, torch.device(device_pref if device_pref.startswith("cuda") else "cuda")
        return False, torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if want_cuda:
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not is_dist():
        dist.init_process_group(backend=backend, init_method="env://")
    log.info("DDP rank %d/%d on %s (%s)", rank(), world_size(), device, backend)
    return True, device


def cleanup() -> None:
    if is_dist():
        dist.destroy_process_group()


def barrier() -> None:
    if is_dist():
        dist.barrier()


def reduce_dict(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean of each value over all ranks (for logging the same loss everywhere)."""
    if not is_dist() or not values:
        return values
    keys = sorted(values)
    stacked = torch.stack([values[k].float() for k in keys])
    dist.all_reduce(stacked)
    stacked /= world_size()
    return dict(zip(keys, stacked))


def all_gather_object(obj: Any) -> list[Any]:
    if not is_dist():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
