"""Which Ray cluster the heavy steps run on, and how to size work to it.

``PRODUCT_ATTRS_RAY_ADDRESS`` chooses the engine: unset, the in-process path (the demo, one machine);
``local``, a Ray started in this process for this machine; ``auto`` or ``ray://host:port``, an existing
cluster (KubeRay in production, see deploy/). Resources are read from the cluster, never assumed: on 2
cores an actor asking for a whole CPU leaves Ray Data's read tasks none, and the pipeline never finishes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

#: The values PRODUCT_ATTRS_RAY_ADDRESS takes besides a ``ray://`` address.
LOCAL, AUTO = "local", "auto"


class RayAddressError(ValueError):
    """PRODUCT_ATTRS_RAY_ADDRESS is neither empty, ``local``, ``auto`` nor ``ray://host:port``."""


def check_address(address: str) -> str:
    """The normalized engine setting ("" = in-process); raises ``RayAddressError`` with what is accepted."""
    value = address.strip()
    if value in ("", LOCAL, AUTO) or (value.startswith("ray://") and len(value) > len("ray://")):
        return value
    raise RayAddressError(
        f"PRODUCT_ATTRS_RAY_ADDRESS={address!r}: expected unset (in-process), 'local', 'auto' or "
        "'ray://host:port'"
    )


@dataclass(frozen=True)
class Cluster:
    """What the connected cluster offers: totals, so work is split by what is there."""

    cpus: float
    gpus: float

    def actor_cpus(self, actors: int) -> float:
        """CPUs per model actor such that ``actors`` of them leave half a CPU for the read and decode
        tasks: at least 0.25, at most 1 (a model actor is one process; more cores go to more actors)."""
        spare = max(self.cpus - 0.5, 0.25 * actors)
        return max(0.25, min(1.0, spare / max(actors, 1)))


def init_options(address: str, **overrides: Any) -> dict[str, Any]:
    """``ray.init`` keywords for the engine ``address`` (not ""): no dashboard, worker logs to this
    process's stderr (a Dagster step shows them), and for ``local`` every CPU of this machine."""
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, **overrides}
    if check_address(address) == LOCAL:
        options.setdefault("num_cpus", os.cpu_count() or 1)
    return options


def init_address(address: str) -> str | None:
    """What ``ray.init(address=...)`` takes for the engine ``address``: None starts a local Ray."""
    address = check_address(address)
    if not address:
        raise RayAddressError("the in-process path (PRODUCT_ATTRS_RAY_ADDRESS unset) has no Ray to join")
    return None if address == LOCAL else address


def resources() -> Cluster:
    """The connected cluster's totals."""
    import ray

    res = ray.cluster_resources()
    return Cluster(cpus=float(res.get("CPU", 0.0)), gpus=float(res.get("GPU", 0.0)))


def connect(address: str, **overrides: Any) -> Cluster:
    """Start or join the Ray named by ``address`` (not "") once per process; returns its resources.
    A Dagster step has joined already (ComputeResource, dagster-ray's lifecycle): this only reads them."""
    import ray

    target = init_address(address)
    if not ray.is_initialized():
        ray.init(address=target, **init_options(address, **overrides))
    return resources()
