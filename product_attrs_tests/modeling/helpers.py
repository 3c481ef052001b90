"""Model versions for tests, written through the version store (draft, manifest, commit, pointers) exactly
as training writes them, without training."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from product_attrs.modeling.versions import WEIGHTS, VersionManifest, VersionStore, resume_key


def commit_version(
    models_dir: Path,
    name: str,
    task: str,
    model: torch.nn.Module,
    *,
    config: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    data_version: str = "testdata",
    champion: bool = True,
    write: Callable[[Path], None] | None = None,
) -> Path:
    """A complete version of `name` holding `model`'s weights (and what `write` puts in the draft folder);
    the champion unless `champion` is False."""
    store = VersionStore(models_dir, name)
    config = config or {}
    draft = store.begin(
        resume_key(name, {**config, "_n": len(store.versions())}, data_version), data_version, "never"
    )
    torch.save(model.state_dict(), draft.dir / WEIGHTS)
    if write is not None:
        write(draft.dir)
    manifest = VersionManifest(
        name=name,
        version=draft.version,
        task=task,
        created="2026-01-01T00:00:00Z",
        data_version=data_version,
        config=config,
        metrics=metrics or {},
        info=info or {},
    )
    folder = store.commit(draft, manifest)
    if champion:
        store.set_champion(draft.version)
    return folder


def set_ddp_env(rank: int, world: int, port: int) -> None:
    """The environment torchrun gives each process, for tests that start ranks with multiprocessing."""
    import os

    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
