"""Ray Train runs the model lifecycle: a version registered as in-process, the champion rule unchanged,
and a worker killed mid-training resumed from its last epoch checkpoint by the TorchTrainer's retry.

One local Ray for the module (2 CPUs, no dashboard), as the suite's machine has; its workers import this
checkout (PYTHONPATH), not whichever copy the virtualenv was installed from.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

import pytest

from product_attrs.classification.train import train as train_classifier
from product_attrs.engines import ray_train
from product_attrs.engines.ray_cluster import Cluster
from product_attrs.modeling.registry import Registry
from product_attrs.modeling.versions import VersionStore
from product_attrs_tests.classification.conftest import make_tiny_catalog
from product_attrs_tests.classification.helpers import fast_config

ROOT = Path(__file__).resolve().parents[2]
NAME = "attribute_classifier"


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    yield Cluster(cpus=2.0, gpus=0.0)
    ray.shutdown()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return make_tiny_catalog(tmp_path_factory.mktemp("ray_catalog"), scale=2)


def _call(models: Path, catalog: Path, **kwargs: Any):
    """The picklable training the workers run: the classifier's own train(), on CPU."""
    return functools.partial(
        train_classifier,
        fast_config(),
        catalog,
        Registry(models),
        device="cpu",
        allow_download=False,
        **kwargs,
    )


def _exit_once(marker: str, entry: dict[str, Any]) -> None:
    """The first worker to finish epoch 1 dies as a lost node would (no cleanup, no exception)."""
    if entry["epoch"] == 1 and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)


def test_workers_share_the_cluster_less_half_a_cpu():
    assert ray_train.worker_cpus(Cluster(2, 0), 1) == 1.5
    assert ray_train.worker_cpus(Cluster(2, 0), 2) == 0.75
    assert ray_train.worker_cpus(Cluster(1, 0), 4) == 0.25
    assert ray_train.plan(Cluster(16, 4), 4) == ray_train.Plan(4, 3.75, True)
    assert ray_train.plan(Cluster(16, 1), 2).use_gpu is False
    with pytest.raises(ValueError, match="has 1 GPUs"):
        ray_train.plan(Cluster(16, 1), 2, use_gpu=True)


def test_the_classifier_trains_on_ray_and_the_champion_rule_applies(local_ray, catalog, tmp_path: Path):
    models = tmp_path / "models"
    start = time.perf_counter()
    first = ray_train.train_on_ray(
        _call(models, catalog), ray_train.plan(local_ray, 1), storage=tmp_path / "ray", name=NAME
    )
    one_worker_s = time.perf_counter() - start
    store = VersionStore(models, NAME)
    assert store.versions() == [first.version] and store.champion() == first.version
    assert first.manifest.world_size == 1 and first.promotion.reason == "first champion"
    assert first.details is not None and (first.version_dir / "model.pt").is_file()
    assert not (tmp_path / "ray").exists() or not any((tmp_path / "ray").iterdir())

    start = time.perf_counter()
    second = ray_train.train_on_ray(
        _call(models, catalog, resume="never"),
        ray_train.plan(local_ray, 2),
        storage=tmp_path / "ray",
        name=NAME,
    )
    two_workers_s = time.perf_counter() - start
    assert second.manifest.world_size == 2 and second.version != first.version
    promotion = second.promotion
    assert promotion.champion_version == first.version
    beats = round(second.metrics["test_top1"], 4) > round(first.metrics["test_top1"], 4)
    assert promotion.promoted is beats
    assert store.champion() == (second.version if beats else first.version)
    print(f"ray train: 1 worker {one_worker_s:.1f} s, 2 workers {two_workers_s:.1f} s")


def test_a_killed_worker_resumes_from_its_last_epoch(local_ray, catalog, tmp_path: Path):
    models, marker = tmp_path / "models", tmp_path / "killed"
    result = ray_train.train_on_ray(
        _call(models, catalog, on_epoch=functools.partial(_exit_once, str(marker))),
        ray_train.plan(local_ray, 1),
        storage=tmp_path / "ray",
        name=NAME,
    )
    assert marker.is_file(), "no worker was killed: the test proved nothing"
    store = VersionStore(models, NAME)
    assert store.versions() == [result.version]  # the retry continued the draft, not a new version
    attempts = result.manifest.attempts
    assert [a["started_at_epoch"] for a in attempts] == [0, 1]
    assert attempts[0]["pid"] == int(marker.read_text()) != attempts[1]["pid"]
    assert [e["epoch"] for e in result.history] == [1, 2, 3, 4]
    assert store.champion() == result.version
