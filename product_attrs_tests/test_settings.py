"""Settings read from the environment: bounded defaults and the roots a recognition folder may lie under."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from product_attrs.settings import Settings, default_workers


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 1), (4, 2), (8, 4), (64, 4)])
def test_workers_default_to_half_the_cores_and_at_most_4(
    cores: int, workers: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert default_workers(cores) == workers
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert Settings.from_env({"PRODUCT_ATTRS_DATA_DIR": str(tmp_path)}).workers == workers
    assert (
        Settings.from_env({"PRODUCT_ATTRS_DATA_DIR": str(tmp_path), "PRODUCT_ATTRS_WORKERS": "7"}).workers
        == 7
    )


def test_recognition_roots(tmp_path: Path) -> None:
    env = {"PRODUCT_ATTRS_DATA_DIR": str(tmp_path / "data")}
    default = Settings.from_env(env)
    assert default.recognition_roots == (tmp_path / "data", tmp_path / "data" / "demo" / "store_photos")
    extra = os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b" / ".." / "c")])
    env |= {"PRODUCT_ATTRS_RECOGNITION_DIR": str(tmp_path / "in"), "PRODUCT_ATTRS_RECOGNITION_ROOTS": extra}
    assert Settings.from_env(env).recognition_roots == (
        tmp_path / "data",
        tmp_path / "in",
        tmp_path / "a",
        tmp_path / "c",
    )
