"""The settings contract: every environment variable the project reads, read here and nowhere else."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_DATA_DIR = "PRODUCT_ATTRS_DATA_DIR"
ENV_CATALOG_DIR = "PRODUCT_ATTRS_CATALOG_DIR"
ENV_DETECTION_DIR = "PRODUCT_ATTRS_DETECTION_DIR"
ENV_INTERACTIONS = "PRODUCT_ATTRS_INTERACTIONS"
ENV_REAL_DATA = "PRODUCT_ATTRS_REAL_DATA"
ENV_WORKERS = "PRODUCT_ATTRS_WORKERS"
ENV_DEMO_SIZE = "PRODUCT_ATTRS_DEMO_SIZE"
ENV_GROCERY_DIR = "PRODUCT_ATTRS_GROCERY_DIR"
ENV_RECOGNITION_DIR = "PRODUCT_ATTRS_RECOGNITION_DIR"
#: Extra folders (os.pathsep-separated) under which `recognitions` may read a folder named in run config.
ENV_RECOGNITION_ROOTS = "PRODUCT_ATTRS_RECOGNITION_ROOTS"
ENV_MLFLOW = "PRODUCT_ATTRS_MLFLOW_TRACKING_URI"
ENV_OFFLINE = "PRODUCT_ATTRS_OFFLINE"
#: The lake's catalog database: "sqlite:<file>" (default <data>/lake/catalog.sqlite) or, for a team,
#: "postgres:<libpq connection string>", e.g. "postgres:dbname=lake host=db.internal user=etl".
ENV_LAKE_CATALOG = "PRODUCT_ATTRS_LAKE_CATALOG"
#: Where the lake's Parquet data files go (default <data>/lake/data/); recorded in the catalog on creation.
ENV_LAKE_DATA = "PRODUCT_ATTRS_LAKE_DATA"
#: The engine of extraction, gallery embedding and training: unset = in-process, "local" = a Ray started
#: here, "auto" or "ray://host:port" = an existing Ray cluster (product_attrs.engines.ray_cluster).
ENV_RAY_ADDRESS = "PRODUCT_ATTRS_RAY_ADDRESS"
#: Days of lake snapshots kept for time travel by the weekly maintenance (default 30).
ENV_LAKE_RETENTION_DAYS = "PRODUCT_ATTRS_LAKE_RETENTION_DAYS"
#: PRODUCT_ATTRS_MLFLOW_TRACKING_URI=none: no MLflow; the model stores' CHAMPION pointers decide what is
#: served.
MLFLOW_OFF = "none"


@dataclass(frozen=True)
class Settings:
    """Where inputs come from and where outputs go; all paths absolute.

    ``workers`` (PRODUCT_ATTRS_WORKERS): processes one run may use to decode images. The default is
    ``default_workers()``, half the cores and at most 4, not every core: up to 4 runs run at once.
    """

    data_dir: Path
    catalog_dir: Path
    detection_dir: Path
    interactions_path: Path
    real_data_dir: Path | None
    workers: int
    demo_size: str = "default"  # "default" or "small": the size of generated demo data
    #: A Grocery-Store-Dataset layout (train.txt/val.txt/test.txt, classes.csv, iconic images).
    grocery_dir: Path | None = None
    #: A folder of photos (store shelves, single products) to recognize against the gallery.
    recognition_dir: Path | None = None
    #: Further folders under which a recognition folder typed in run config may lie.
    extra_recognition_roots: tuple[Path, ...] = ()
    #: MLflow tracking URI: "" means the SQLite store under the data root, "none" no MLflow at all.
    mlflow_uri: str = ""
    #: Never try to download pretrained weights (machines without internet fail fast instead of waiting).
    offline: bool = False
    #: The lake's catalog ("" = SQLite under the data root) and data folder ("" = under the data root).
    lake_catalog: str = ""
    lake_data: str = ""
    lake_retention_days: int = 30
    #: "" (in-process), "local", "auto" or "ray://host:port".
    ray_address: str = ""

    # Everything below derives from data_dir so that one variable moves all outputs.
    @property
    def demo_dir(self) -> Path:
        return self.data_dir / "demo"

    @property
    def catalog_out_dir(self) -> Path:
        return self.data_dir / "catalog"

    @property
    def detection_out_dir(self) -> Path:
        return self.data_dir / "detection"

    @property
    def grocery_out_dir(self) -> Path:
        return self.data_dir / "grocery"

    @property
    def recognition_out_dir(self) -> Path:
        return self.data_dir / "recognition"

    @property
    def recognition_roots(self) -> tuple[Path, ...]:
        """Where a recognition folder named in run config may lie: the data root, the recognition folder's
        and any listed in PRODUCT_ATTRS_RECOGNITION_ROOTS. Anything else is refused before it is read."""
        default = (self.data_dir, self.recognition_dir) if self.recognition_dir else (self.data_dir,)
        return (*default, *self.extra_recognition_roots)

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def mlflow_dir(self) -> Path:
        return self.data_dir / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str | None:
        if self.mlflow_uri.lower() == MLFLOW_OFF:
            return None
        return self.mlflow_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifacts_uri(self) -> str:
        return (self.mlflow_dir / "artifacts").as_uri()

    @property
    def legacy_warehouse_path(self) -> Path:
        """The DuckDB file of the copy-on-publish warehouse, migrated into the lake once."""
        return self.data_dir / "warehouse.duckdb"

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def lake_catalog_spec(self) -> str:
        return self.lake_catalog or f"sqlite:{self.lake_dir / 'catalog.sqlite'}"

    @property
    def lake_data_path(self) -> Path:
        return Path(self.lake_data).expanduser().resolve() if self.lake_data else self.lake_dir / "data"

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster_home"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        data_dir = Path(env.get(ENV_DATA_DIR) or "data").expanduser().resolve()
        demo = data_dir / "demo"

        def path_or(name: str, default: Path) -> Path:
            value = env.get(name)
            return Path(value).expanduser().resolve() if value else default

        real = env.get(ENV_REAL_DATA)
        return cls(
            data_dir=data_dir,
            catalog_dir=path_or(ENV_CATALOG_DIR, demo / "catalog"),
            detection_dir=path_or(ENV_DETECTION_DIR, demo / "shelves"),
            interactions_path=path_or(ENV_INTERACTIONS, demo / "interactions"),
            real_data_dir=Path(real).expanduser().resolve() if real else None,
            workers=int(env.get(ENV_WORKERS) or default_workers()),
            demo_size=env.get(ENV_DEMO_SIZE) or "default",
            grocery_dir=path_or(ENV_GROCERY_DIR, demo / "grocery"),
            recognition_dir=path_or(ENV_RECOGNITION_DIR, demo / "store_photos"),
            extra_recognition_roots=tuple(
                Path(p).expanduser().resolve()
                for p in (env.get(ENV_RECOGNITION_ROOTS) or "").split(os.pathsep)
                if p.strip()
            ),
            mlflow_uri=(env.get(ENV_MLFLOW) or "").strip(),
            offline=(env.get(ENV_OFFLINE) or "").strip().lower() not in ("", "0", "false", "no"),
            lake_catalog=(env.get(ENV_LAKE_CATALOG) or "").strip(),
            lake_data=(env.get(ENV_LAKE_DATA) or "").strip(),
            lake_retention_days=int(env.get(ENV_LAKE_RETENTION_DAYS) or 30),
            ray_address=(env.get(ENV_RAY_ADDRESS) or "").strip(),
        )


def default_workers(cpu_count: int | None = None) -> int:
    """Half the cores, 1 to 4: each of up to 4 concurrent runs forks this many decoders, so every core
    per run would oversubscribe the machine 4 times (and hold 4 times the memory)."""
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return max(1, min(4, cores // 2))


def get_settings() -> Settings:
    """Read the environment now (not at import), so tests can point it elsewhere."""
    return Settings.from_env()
