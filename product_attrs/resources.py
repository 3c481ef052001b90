"""Dagster resources: paths, DuckDB, MLflow and compute device, one place for each.

No postponed annotations here: Dagster and pydantic read these hints at runtime.
"""


import os

from dagster import ConfigurableResource

from product_attrs.settings import (
    ENV_CATALOG_DIR,
    ENV_DATA_DIR,
    ENV_DETECTION_DIR,
    ENV_GROCERY_DIR,
    ENV_INTERACTIONS,
    ENV_RECOGNITION_DIR,
    Settings,
)

DUCKDB_POOL = "duckdb_writer"
GPU_POOL = "gpu_training"


class PathsResource(ConfigurableResource):
    """Where inputs are read and outputs written; empty fields fall back to the environment."""

    data_dir: str = ""
    catalog_dir: str = ""
    detection_dir: str = ""
    interactions_path: str = ""
    grocery_dir: str = ""
    recognition_dir: str = ""

    def settings(self) -> Settings:
        env = dict(os.environ)
        for name, value in (
            (ENV_DATA_DIR, self.data_dir),
            (ENV_CATALOG_DIR, self.catalog_dir),
            (ENV_DETECTION_DIR, self.detection_dir),
            (ENV_INTERACTIONS, self.interactions_path),
            (ENV_GROCERY_DIR, self.grocery_dir),
            (ENV_RECOGNITION_DIR, self.recognition_dir),
        ):
            if value:
                env[name] = value
        return Settings.from_env(env)


class ComputeResource(ConfigurableResource):
    """Which torch device training and inference use: 'auto' picks CUDA when present."""

    device: str = "auto"

    def torch_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
