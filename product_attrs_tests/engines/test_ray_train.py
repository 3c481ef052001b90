"""Ray Train runs the model lifecycle: a version registered as in-process, the champion rule unchanged,
and a worker killed mid-training resumed from its last epoch checkpoint by the TorchTrainer's retry.

One local Ray for the module (the ``cluster`` fixture in conftest.py).
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
from product_attrs_tests.classification.helpers import FAST, fast_config

NAME = "attribute_classifier"
#: Two epochs: enough for a checkpoint to resume from, and short (Ray's start-up dominates anyway).
SHORT = {"phase1_epochs": 2, "phase2_epochs": 0}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return make_tiny_catalog(tmp_path_factory.mktemp("ray_catalog"), scale=2)


def _call(models: Path, catalog: Path, **kwargs: Any):
    """The picklable training the workers run: the classifier's own train(), on CPU."""
    return functools.partial(
        train_classifier,
        fast_config(**SHORT),
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
    assert ray_train.plan(Cluster(16, 4), 2, device="cpu").use_gpu is False
    with pytest.raises(ValueError, match="device 'cpu'"):
        ray_train.plan(Cluster(16, 4), 2, use_gpu=True, device="cpu")
    with pytest.raises(ValueError, match="has 1 GPUs"):
        ray_train.plan(Cluster(16, 1), 2, use_gpu=True)


def test_the_classifier_asset_trains_on_ray_and_the_champion_rule_applies(cluster, tmp_path: Path):
    """The asset, with a Ray address, trains through the TorchTrainer; its version is judged against the
    champion an in-process training made, by the same rule."""
    import dagster as dg

    from product_attrs.classification.assets import attribute_classifier
    from product_attrs.resources import ComputeResource, PathsResource, RegistryResource

    catalog = make_tiny_catalog(tmp_path, scale=2)
    models = tmp_path / "models"
    before = train_classifier(
        fast_config(**SHORT), catalog, Registry(models), device="cpu", allow_download=False, log=print
    )
    start = time.perf_counter()
    outcome = dg.materialize(
        [attribute_classifier],
        resources={
            "paths": PathsResource(data_dir=str(tmp_path)),
            "models": RegistryResource(data_dir=str(tmp_path), tracking_uri="none"),
            "compute": ComputeResource(device="cpu", engine="local"),
        },
        run_config={"ops": {"attribute_classifier": {"config": {**FAST, **SHORT, "ray_workers": 1}}}},
    )
    print(f"asset on Ray, 1 worker: {time.perf_counter() - start:.1f} s")
    assert outcome.success
    (materialization,) = outcome.asset_materializations_for_node("attribute_classifier")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert meta["engine"] == "ray" and meta["ray_workers"] == 1 and meta["ray_cpus_per_worker"] == 1.5
    store = VersionStore(models, NAME)
    after = store.manifest(meta["version"])
    assert store.versions() == sorted([before.version, after.version]) and after.world_size == 1
    promotion = after.promotion
    assert promotion["champion_version"] == before.version
    beats = round(after.metric("test_top1"), 4) > round(before.metrics["test_top1"], 4)
    assert promotion["promoted"] is beats
    assert store.champion() == (after.version if beats else before.version)
    assert not any((tmp_path / "ray").iterdir())  # Ray's run folder is gone once the result is read


@pytest.mark.slow
def test_two_workers_train_one_version(cluster, catalog, tmp_path: Path):
    start = time.perf_counter()
    result = ray_train.train_on_ray(
        _call(tmp_path / "models", catalog), ray_train.plan(cluster, 2), storage=tmp_path / "ray", name=NAME
    )
    print(f"2 workers: {time.perf_counter() - start:.1f} s")
    assert result.manifest.world_size == 2 and result.promotion.reason == "first champion"
    assert result.details is not None and VersionStore(tmp_path / "models", NAME).champion() == result.version


def test_a_killed_worker_resumes_from_its_last_epoch(cluster, catalog, tmp_path: Path):
    models, marker = tmp_path / "models", tmp_path / "killed"
    start = time.perf_counter()
    result = ray_train.train_on_ray(
        _call(models, catalog, on_epoch=functools.partial(_exit_once, str(marker))),
        ray_train.plan(cluster, 1),
        storage=tmp_path / "ray",
        name=NAME,
    )
    print(f"killed and resumed: {time.perf_counter() - start:.1f} s")
    assert marker.is_file(), "no worker was killed: the test proved nothing"
    store = VersionStore(models, NAME)
    assert store.versions() == [result.version]  # the retry continued the draft, not a new version
    attempts = result.manifest.attempts
    assert [a["started_at_epoch"] for a in attempts] == [0, 1]
    assert attempts[0]["pid"] == int(marker.read_text()) != attempts[1]["pid"]
    assert [e["epoch"] for e in result.history] == [1, 2]
    assert store.champion() == result.version


@pytest.mark.slow
def test_the_detector_trains_through_the_same_path(cluster, tmp_path: Path):
    from product_attrs.detection.train import train as train_detector
    from product_attrs_tests.detection.conftest import make_scenes, tiny_config

    scenes = make_scenes(tmp_path / "scenes", n_images=10)
    call = functools.partial(
        train_detector, tiny_config(epochs=2), scenes, Registry(tmp_path / "models"), device="cpu"
    )
    result = ray_train.train_on_ray(call, ray_train.plan(cluster, 2), storage=tmp_path / "ray", name="det")
    assert result.manifest.world_size == 2 and result.manifest.epochs == 2
    assert VersionStore(tmp_path / "models", "product_detector").champion() == result.version
