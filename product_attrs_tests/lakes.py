"""Lakes for tests: a SQLite-catalog lake in a temp folder, and the one a data root's settings name."""

from __future__ import annotations

from pathlib import Path

from product_attrs.settings import ENV_DATA_DIR, Settings
from product_attrs.warehouse.lake import Lake


def tmp_lake(root: Path) -> Lake:
    return Lake(f"sqlite:{root / 'lake' / 'catalog.sqlite'}", root / "lake" / "data")


def data_root_lake(data_dir: Path | None = None) -> Lake:
    """The lake of ``data_dir`` (default: the environment's data root), as the assets see it."""
    import os

    env = dict(os.environ)
    if data_dir is not None:
        env[ENV_DATA_DIR] = str(data_dir)
    return Lake.from_settings(Settings.from_env(env))
