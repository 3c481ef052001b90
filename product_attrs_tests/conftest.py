"""Shared fixtures: the real-data folder (skipping with a reason where absent) and a clean environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from product_attrs.settings import ENV_REAL_DATA

# Fuzzing: a few hundred examples per reader in `make test`, ten times more in `make test-all`
# (`--hypothesis-profile=deep`). No deadline: a 2-core CI machine shared with other jobs is slow now and then.
settings.register_profile(
    "default", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "deep", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("default")


def real_data_dir(name: str) -> Path:
    """The named folder under $PRODUCT_ATTRS_REAL_DATA, or skip the test saying why."""
    root = os.environ.get(ENV_REAL_DATA)
    if not root:
        pytest.skip(f"{ENV_REAL_DATA} is not set: real-data test skipped")
    folder = Path(root) / name
    if not folder.is_dir():
        pytest.skip(f"{folder} does not exist: real-data test skipped")
    return folder


@pytest.fixture
def data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private data root, with every input setting cleared so defaults (the demo data) apply."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("PRODUCT_ATTRS_DATA_DIR", str(data_dir))
    for name in (
        "PRODUCT_ATTRS_CATALOG_DIR",
        "PRODUCT_ATTRS_DETECTION_DIR",
        "PRODUCT_ATTRS_INTERACTIONS",
        "PRODUCT_ATTRS_GROCERY_DIR",
        "PRODUCT_ATTRS_RECOGNITION_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PRODUCT_ATTRS_WORKERS", "2")
    return data_dir


@pytest.fixture
def forget_test_instance():
    """A test instance (`instance_for_test`) registers itself as the process's definitions-state storage and
    is gone after the test; later materializations in this process would then fail on its dead weakref."""
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield
