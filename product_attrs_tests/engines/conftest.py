"""One local Ray per test module, as the suite's machine has it: 2 CPUs, no dashboard. Its workers import
this checkout (PYTHONPATH), not whichever copy the virtualenv was installed from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from product_attrs.engines.ray_cluster import Cluster, connect

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    try:
        yield connect("local")
    finally:
        ray.shutdown()
