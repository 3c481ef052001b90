"""Dagster resources: where inputs are, the model registry, the warehouse and the compute device.

An asset that opens something asks for the resource that opens it (`models.registry()`,
`warehouse.publish(...)`) instead of assembling paths itself, so a test or a deployment swaps the
registry or the warehouse in one place. Nothing heavy is imported here: this module is loaded with the
definitions by every Dagster process.

No postponed annotations here: Dagster and pydantic read these hints at runtime.
"""

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

from dagster import ConfigurableResource, InitResourceContext
from dagster_ray import Lifecycle, RayResource
from pydantic import Field, PrivateAttr

from product_attrs.settings import (
    ENV_CATALOG_DIR,
    ENV_DATA_DIR,
    ENV_DETECTION_DIR,
    ENV_GROCERY_DIR,
    ENV_INTERACTIONS,
    ENV_LAKE_CATALOG,
    ENV_LAKE_DATA,
    ENV_MLFLOW,
    ENV_RECOGNITION_DIR,
    Settings,
)

DUCKDB_POOL = "duckdb_writer"
#: One slot per GPU (or per core on a CPU host): see automation.pool_limits.
TRAINING_POOL = "training"


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


class RegistryResource(ConfigurableResource):
    """The model registry: version stores under `<data>/models`, and MLflow unless it is off.

    Empty fields take the environment (PRODUCT_ATTRS_DATA_DIR; PRODUCT_ATTRS_MLFLOW_TRACKING_URI, else the
    SQLite store under the data root); tracking_uri "none" turns MLflow off (the stores' CHAMPION pointers
    decide what is served).
    """

    data_dir: str = ""
    tracking_uri: str = ""

    def registry(self):
        from product_attrs.modeling.registry import Registry

        env = dict(os.environ)
        if self.data_dir:
            env[ENV_DATA_DIR] = self.data_dir
        if self.tracking_uri:
            env[ENV_MLFLOW] = self.tracking_uri
        settings = Settings.from_env(env)
        return Registry(settings.models_dir, settings.mlflow_tracking_uri, settings.mlflow_artifacts_uri)


class WarehouseResource(ConfigurableResource):
    """The lake analysts query: every write is one DuckLake commit, tagged with the run that made it.

    Empty fields take the settings (PRODUCT_ATTRS_LAKE_CATALOG, else SQLite under the data root;
    PRODUCT_ATTRS_LAKE_DATA, else <data>/lake/data)."""

    catalog: str = ""
    data_path: str = ""
    _run_id: str = PrivateAttr(default="")

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._run_id = context.run.run_id if context.run is not None else ""

    def lake(self, **tags: Any):
        """The lake handle; ``tags`` (e.g. model versions) join the run id in each commit's info."""
        from product_attrs.warehouse.lake import Lake

        env = dict(os.environ)
        if self.catalog:
            env[ENV_LAKE_CATALOG] = self.catalog
        if self.data_path:
            env[ENV_LAKE_DATA] = self.data_path
        run = {"run_id": self._run_id} if self._run_id else {}
        return Lake.from_settings(Settings.from_env(env), {**run, **tags})

    def publish(
        self,
        tables: dict[str, Any],
        views: Optional[dict[str, str]] = None,
        casts: Optional[dict[str, dict[str, str]]] = None,
        partitions: Optional[dict[str, Any]] = None,
        **tags: Any,
    ) -> dict[str, int]:
        """Replace ``tables`` and ``partitions`` (``publish.Partition``) in one commit, tagged ``tags``."""
        from product_attrs.warehouse.publish import publish_tables

        lake = self.lake(**tags)
        return publish_tables(lake, tables, views=views, casts=casts, partitions=partitions)

    def read(self, sql: str):
        from product_attrs.warehouse.publish import read_table

        return read_table(self.lake(), sql)


class ComputeResource(RayResource):
    """Which torch device training and inference use, and on which engine.

    ``device``: 'auto' (the default) is CUDA when there is one, resolved where torch is already loaded
    (modeling.distributed.resolve_device), not here.

    ``engine``: "" = PRODUCT_ATTRS_RAY_ADDRESS; unset there too = in-process; "local", "auto",
    "ray://host:port" = Ray (product_attrs.engines.ray_cluster). It is a dagster-ray ``RayResource``, so
    the step's Ray lifecycle is the integration's: with an engine set, the step joins Ray at set-up (the
    Dagster UI logs where) and leaves it at teardown; a Ray already joined in this process (a test's) is
    kept as it is. In-process, ray is never imported. Binding a ``dagster_ray.kuberay`` resource's
    address here is how a cluster per run would plug in (deploy/README.md)."""

    device: str = "auto"
    engine: str = ""
    # This resource never creates a cluster, so there is nothing to delete at teardown.
    lifecycle: Lifecycle = Field(default_factory=lambda: Lifecycle(cleanup="never"))

    # dagster-ray's RayResource interface: where the engine is and what it is called.
    @property
    def host(self) -> str:
        address = self.ray()
        if address.startswith("ray://"):
            return address[len("ray://") :].rsplit(":", 1)[0]
        return "127.0.0.1" if address == "local" else address

    @property
    def ray_address(self) -> Optional[str]:  # type: ignore[override]
        from product_attrs.engines.ray_cluster import init_address

        return init_address(self.ray())

    @property
    def name(self) -> str:
        return f"Ray ({self.ray()})"

    @property
    def created(self) -> bool:
        return True  # an existing cluster, or the local one ray.init starts

    @property
    def ready(self) -> bool:
        return True

    @contextlib.contextmanager
    def yield_for_execution(self, context: InitResourceContext) -> Iterator["ComputeResource"]:
        if not self.ray():
            yield self  # in-process: no Ray, nothing to join
            return
        with super().yield_for_execution(context) as joined:
            yield joined

    def connect(self, context: Any) -> Any:
        import ray

        from product_attrs.engines.ray_cluster import init_options

        if ray.is_initialized():
            return None  # joined already: keep it (and leave it running at teardown)
        options = init_options(self.ray(), **self.ray_init_options)
        env = {**options.get("runtime_env", {}).get("env_vars", {}), **self.get_env_vars_to_inject()}
        if env:
            options["runtime_env"] = {**options.get("runtime_env", {}), "env_vars": env}
        self._context = ray.init(address=self.ray_address, **options)
        return self._context

    def ray_job_id(self) -> Optional[str]:
        """The Ray job this step runs as (for the asset's metadata), None in-process."""
        return self.runtime_job_id if self.ray() else None

    def ray(self) -> str:
        """The engine setting, checked: "" means the in-process path."""
        from product_attrs.engines.ray_cluster import check_address

        return check_address(self.engine or Settings.from_env().ray_address)

    def torch_device(self) -> str:
        return self.device

    def train(
        self,
        train: Callable[..., Any],
        *,
        name: str,
        storage: Path,
        workers: int = 1,
        use_gpu: Optional[bool] = None,
        log: Optional[Callable[[str], None]] = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Run ``train`` (a picklable call of a task's train()) on the engine; its TrainResult and the
        engine's metadata. In-process it logs through ``log``; on Ray each worker logs to stderr (a
        Dagster logger does not travel) and Ray's run folder goes under ``storage``."""
        address = self.ray()
        if not address:
            return train(log=log), {"engine": "in-process"}
        from product_attrs.engines import ray_train

        layout = ray_train.connect_and_plan(address, workers, use_gpu, self.device)
        if log is not None:
            log(f"{name}: training on Ray ({address}): {layout}")
        result = ray_train.train_on_ray(train, layout, storage=storage, name=name)
        return result, {**layout.metadata(), "ray_job_id": self.ray_job_id()}
