"""Train a model version with Ray Train: the lifecycle's training, as the loop of a ``TorchTrainer``.

Ray starts ``workers`` processes with torch.distributed already joined (gloo on CPU, NCCL on GPU) and
torchrun's variables set (RANK, WORLD_SIZE, LOCAL_RANK), so ``modeling.lifecycle.train`` runs in each
exactly as under torchrun: rank 0 owns the draft, the files, MLflow and the champion; the others train.

A worker that dies makes Ray restart the whole group (``FailureConfig``); the restarted loop calls the
same training with ``resume="auto"``, which finds the unfinished draft (same model, settings and data)
and continues after its last epoch checkpoint. So the data root must be one filesystem for every worker
(one machine, or a shared volume on the cluster). Rank 0 hands its ``TrainResult`` to the driver as a
Ray checkpoint, so the caller gets what the in-process path returns.

Ray is imported when a training starts, never at import; Dagster never (engines are below the assets).
"""

from __future__ import annotations

import functools
import pickle
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from product_attrs.engines.ray_cluster import Cluster, connect

#: ``modeling.lifecycle.TrainResult``, not imported (nor torch): resources.py, loaded by every asset module
#: (serving and warehouse ones included), reaches this module, and those must import no trainer or torch.
TrainResult = Any

#: The file rank 0 pickles its TrainResult into (inside the Ray checkpoint the driver reads).
RESULT_FILE = "train_result.pkl"
#: Retries of a worker group that lost a worker; each resumes the draft from its last epoch.
MAX_FAILURES = 2


class RayTrainError(RuntimeError):
    """The Ray training ended without a result (every retry failed); the message says why."""


@dataclass(frozen=True)
class Plan:
    """How a training is laid out on the cluster: what the TorchTrainer asks for, and why."""

    workers: int
    cpus_per_worker: float
    use_gpu: bool

    def metadata(self) -> dict[str, Any]:
        return {"engine": "ray", **{f"ray_{k}": v for k, v in asdict(self).items()}}


def worker_cpus(cluster: Cluster, workers: int) -> float:
    """An equal share of the cluster's CPUs per worker, less half a CPU for Ray's own tasks, in quarters,
    at least a quarter: 2 cores, 1 worker -> 1.5; 2 workers -> 0.75 (a whole CPU each would leave
    nothing else a slot)."""
    share = (cluster.cpus - 0.5) / max(workers, 1)
    return max(0.25, int(share * 4) / 4)


def plan(cluster: Cluster, workers: int = 1, use_gpu: bool | None = None, device: str = "auto") -> Plan:
    """The layout of ``workers`` ranks on ``cluster``; ``use_gpu`` None = one GPU per worker when the
    cluster has that many and ``device`` allows it (a "cpu" training on GPU workers would get NCCL, which
    cannot reduce CPU tensors)."""
    if workers < 1:
        raise ValueError(f"ray_workers={workers}: at least one worker trains")
    if device == "cpu" and use_gpu:
        raise ValueError("ray_use_gpu with device 'cpu': choose one")
    gpu = (cluster.gpus >= workers and device != "cpu") if use_gpu is None else use_gpu
    if gpu and cluster.gpus < workers:
        raise ValueError(f"ray_use_gpu with {workers} workers, but the cluster has {cluster.gpus:g} GPUs")
    return Plan(workers, worker_cpus(cluster, workers), gpu)


def connect_and_plan(
    address: str, workers: int = 1, use_gpu: bool | None = None, device: str = "auto"
) -> Plan:
    """Join the cluster ``address`` names (PRODUCT_ATTRS_RAY_ADDRESS) and lay the training out on it."""
    return plan(connect(address), workers, use_gpu, device)


def _loop(train: Callable[[], TrainResult]) -> None:
    """One rank: train, then rank 0 reports its result as a checkpoint (every rank reports: a barrier)."""
    import ray.train

    result = train()
    if ray.train.get_context().get_world_rank() != 0:
        ray.train.report({"rank": ray.train.get_context().get_world_rank()})
        return
    result.model = result.model.cpu()
    with tempfile.TemporaryDirectory() as tmp:
        with open(Path(tmp) / RESULT_FILE, "wb") as out:
            pickle.dump(result, out, protocol=pickle.HIGHEST_PROTOCOL)
        ray.train.report(
            {"version": result.version, "epochs": len(result.history)},
            checkpoint=ray.train.Checkpoint.from_directory(tmp),
        )


def train_on_ray(
    train: Callable[[], TrainResult],
    layout: Plan,
    *,
    storage: Path | str,
    name: str,
    max_failures: int = MAX_FAILURES,
) -> TrainResult:
    """Run ``train`` (a picklable call of a task's train(), resume="auto") on ``layout.workers`` Ray
    workers; rank 0's TrainResult. Ray's run folder under ``storage`` is removed once it is read."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    run_name = f"{name}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    trainer = TorchTrainer(
        functools.partial(_loop, train),
        scaling_config=ScalingConfig(
            num_workers=layout.workers,
            use_gpu=layout.use_gpu,
            resources_per_worker={"CPU": layout.cpus_per_worker},
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=str(Path(storage).resolve()),
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )
    try:
        outcome = trainer.fit()
    except Exception as exc:
        raise RayTrainError(
            f"{name}: Ray training failed after {max_failures} retries ({exc}); the draft is kept, so the "
            "next run with the same settings and data resumes it"
        ) from exc
    if outcome.error is not None or outcome.checkpoint is None:
        raise RayTrainError(f"{name}: Ray training returned no result ({outcome.error})")
    with outcome.checkpoint.as_directory() as folder:
        with open(Path(folder) / RESULT_FILE, "rb") as stored:
            result = pickle.load(stored)  # noqa: S301 - written by rank 0 of this very training
    shutil.rmtree(Path(storage) / run_name, ignore_errors=True)
    return result
