"""Training checkpoints: atomic writes, weights-only reads, and the random state a resumed run needs.

A run resumed from the checkpoint of epoch k must take the same random draws in epoch k+1 as a run that
never stopped (augmentation, dropout, shuffling), or resuming silently changes the model. So the
checkpoint carries the Python, NumPy, torch and CUDA generator states of every rank, and loading uses
`weights_only=True`: a checkpoint file is data, never code to unpickle.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from product_attrs.io import durable_write
from product_attrs.modeling.weights import why_unloadable


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the run; the message says which file and why."""


def capture_rng() -> dict[str, Any]:
    """This process's random state, in types `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    """random.setstate wants tuples; a checkpoint may hand back lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    durable_write(Path(path), lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise CheckpointError(f"checkpoint {path} cannot be read safely ({why_unloadable(exc)})") from None
