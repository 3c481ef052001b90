"""A training step whose process is killed (SIGKILL) mid-run is retried by Dagster, and the retry resumes
the same version from its last checkpoint: it ends with the weights of an uninterrupted training and
leaves no half-finished version behind."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import torch
from dagster import DagsterEventType, build_reconstructable_job, execute_job, instance_for_test

from product_attrs.classification.config import PROFILES, TrainConfig
from product_attrs.classification.train import train
from product_attrs.modeling.registry import Registry
from product_attrs.modeling.versions import CHECKPOINT, WEIGHTS, VersionStore
from product_attrs_tests.classification.conftest import make_tiny_catalog
from product_attrs_tests.classification.helpers import FAST

CONFIG = {**FAST, "phase1_epochs": 4, "phase2_epochs": 2}


def training_job(data_dir: str):
    """The classifier asset in a job with the project's executor (one forked process per step)."""
    from dagster import Definitions, define_asset_job

    from product_attrs.automation import default_executor
    from product_attrs.classification.assets import attribute_classifier
    from product_attrs.resources import ComputeResource, PathsResource, RegistryResource

    job = define_asset_job(
        "train_classifier", selection=["attribute_classifier"], executor_def=default_executor
    )
    defs = Definitions(
        assets=[attribute_classifier],
        jobs=[job],
        resources={
            "paths": PathsResource(data_dir=data_dir),
            "models": RegistryResource(data_dir=data_dir, tracking_uri="none"),
            "compute": ComputeResource(device="cpu"),
        },
    )
    return defs.resolve_job_def("train_classifier")


def _kill_after_first_checkpoint(drafts: Path, killed: list[int], stop: threading.Event) -> None:
    """Like an out-of-memory killer: SIGKILL the step's process once it has written a checkpoint."""
    while not stop.is_set() and not killed:
        for state in drafts.glob("*/draft.json") if drafts.is_dir() else []:
            if (state.parent / CHECKPOINT).is_file():
                pid = json.loads(state.read_text())["pid"]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.02)


def test_a_killed_training_step_is_retried_and_resumes_its_version(tmp_path: Path, forget_test_instance):
    make_tiny_catalog(tmp_path, scale=2)
    (tmp_path / "dagster_home").mkdir()
    drafts = tmp_path / "models" / "attribute_classifier" / ".drafts"
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_after_first_checkpoint, args=(drafts, killed, stop), daemon=True)
    killer.start()
    # The step processes rebuild this module's job from the repository folder.
    job = build_reconstructable_job(
        __name__,
        "training_job",
        reconstructable_args=(str(tmp_path),),
        reconstructor_working_directory=str(Path(__file__).resolve().parents[1]),
    )
    try:
        with instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
            result = execute_job(
                job, instance, run_config={"ops": {"attribute_classifier": {"config": CONFIG}}}
            )
            assert result.success
            events = [e.event_type for e in result.all_events]
    finally:
        stop.set()
        killer.join(timeout=5)
    assert len(killed) == 1, "the step was never killed: the test proved nothing"
    assert DagsterEventType.STEP_UP_FOR_RETRY in events and DagsterEventType.STEP_RESTARTED in events

    store = VersionStore(tmp_path / "models", "attribute_classifier")
    (version,) = store.versions()  # one version: the retry continued it instead of starting another
    manifest = store.manifest(version)
    starts = [a["started_at_epoch"] for a in manifest.attempts]
    assert starts[0] == 0 and len(starts) == 2 and 1 <= starts[1] < 6
    assert manifest.attempts[0]["pid"] == killed[0] != manifest.attempts[1]["pid"]
    assert not drafts.exists() and store.champion() == version

    straight = train(
        TrainConfig(**{**PROFILES.values("demo"), **CONFIG}).validate(),
        tmp_path / "catalog",
        Registry(tmp_path / "straight"),
        device="cpu",
        log=lambda m: None,
    )
    resumed = torch.load(store.path(version) / WEIGHTS, weights_only=True)
    uninterrupted = torch.load(straight.version_dir / WEIGHTS, weights_only=True)
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
