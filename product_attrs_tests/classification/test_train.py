"""Training the classifier on the tiny catalog: it learns, writes its version folder, resumes to the same
weights, and fails clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from product_attrs.classification.config import ConfigError
from product_attrs.classification.serve import Classifier
from product_attrs.classification.train import main, train
from product_attrs.modeling.registry import Registry
from product_attrs.modeling.runner import NonFiniteLossError
from product_attrs.modeling.versions import VersionManifest, VersionStore
from product_attrs_tests.classification.helpers import fast_config
from product_attrs_tests.modeling.helpers import free_port, set_ddp_env

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tiny_catalog, tmp_path_factory):
    torch.set_num_threads(1)
    models = tmp_path_factory.mktemp("models")
    return train(fast_config(), tiny_catalog, Registry(models), device="cpu", log=lambda m: None), models


def _train(cfg, catalog, models, **kwargs):
    return train(cfg, catalog, Registry(models), device="cpu", log=lambda m: None, **kwargs)


def test_beats_chance_and_majority(trained):
    result, _ = trained
    n_classes = len(VersionManifest.read(result.version_dir).info["label_maps"]["article_type"])
    assert result.metrics["test_top1"] > max(1 / n_classes, result.metrics["majority_rate"]) + 0.15
    assert result.metrics["test_top1_top20"] > 0.5


def test_version_folder_is_complete(trained):
    result, models = trained
    d = result.version_dir
    for name in (
        "model.pt",
        "manifest.json",
        "history.json",
        "results.csv",
        "per_class.csv",
        "confused_pairs.csv",
        "test_predictions.npz",
        "curves.png",
        "samples.png",
    ):
        assert (d / name).is_file(), name
    assert not (d / "checkpoint.pt").exists()  # training state is not part of a finished version
    manifest = VersionManifest.read(d)
    assert manifest.data_version == "tiny0000deadbeef" and manifest.task == "classification"
    assert manifest.info["heads"][0] == {"column": "article_type", "weight": 2.0}
    store = VersionStore(models, "attribute_classifier")
    assert store.latest() == store.champion() == d.name  # the first version is the champion (MLflow off)
    assert manifest.promotion["reason"] == "first champion"
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert {h["phase"] for h in result.history} == {"phase1", "phase2"}
    assert all(np.isfinite(h["test_loss"]) for h in result.history)
    assert json.loads((d / "history.json").read_text()) == json.loads(json.dumps(result.history))


def test_missing_classes_reported_not_crashing(trained):
    result, _ = trained
    assert result.details.missing_from_train["article_type"] == ["Purple Circle"]
    assert result.manifest.info["missing_from_train"]["article_type"] == ["Purple Circle"]
    per_class = result.details.per_class
    purple = per_class[(per_class["class"] == "Purple Circle") & (per_class["group"] == "all")]
    assert bool(purple["missing_from_train"].iloc[0]) and purple["n_train"].iloc[0] == 0
    groups = set(result.details.results["group"])
    assert groups == {"top20", "rest", "all"}
    assert len(result.details.confused) > 0


def test_saved_version_reloads_with_same_predictions(trained):
    result, _ = trained
    served = Classifier.load(result.version_dir)
    x = torch.randn(2, 3, 32, 32)
    assert set(served.model(x)) == {"article_type", "master_category", "sub_category"}
    assert served.manifest.metrics["test_top1"] == pytest.approx(result.metrics["test_top1"])
    with torch.no_grad():
        assert torch.allclose(served.model.cpu().embed(x), result.model.cpu().eval().embed(x), atol=1e-6)


class Crash(Exception):
    """Stands for a killed process, after an epoch's checkpoint."""


def test_a_crashed_training_resumes_to_the_weights_of_an_uninterrupted_one(tiny_catalog, tmp_path):
    """Shuffling, RandomResizedCrop, flips and dropout all continue their random streams after a resume."""
    cfg = fast_config(phase1_epochs=2, phase2_epochs=1, dropout=0.5)

    def crash(entry):
        if entry["epoch"] == 2:
            raise Crash

    with pytest.raises(Crash):
        _train(cfg, tiny_catalog, tmp_path / "a", on_epoch=crash)
    resumed = _train(cfg, tiny_catalog, tmp_path / "a")
    straight = _train(cfg, tiny_catalog, tmp_path / "b")
    assert [a["started_at_epoch"] for a in resumed.manifest.attempts] == [0, 2]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    a, b = resumed.model.state_dict(), straight.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert VersionStore(tmp_path / "a", "attribute_classifier").versions() == [resumed.version]


def test_resuming_with_another_backbone_is_refused(tiny_catalog, tmp_path):
    cfg = fast_config(phase1_epochs=2, phase2_epochs=0, max_train_rows=20, max_test_rows=10)

    def crash(entry):
        raise Crash

    with pytest.raises(Crash):
        _train(cfg, tiny_catalog, tmp_path, on_epoch=crash)
    (draft,) = [p for p in (tmp_path / "attribute_classifier" / ".drafts").iterdir() if p.is_dir()]
    with pytest.raises(ConfigError, match="other settings or data"):
        _train(fast_config(backbone="resnet18", freeze_stages=0), tiny_catalog, tmp_path, resume=draft)
    # With resume="auto" other settings simply start their own version.
    other = _train(
        fast_config(phase1_epochs=1, phase2_epochs=0, max_train_rows=20, max_test_rows=10, seed=3),
        tiny_catalog,
        tmp_path,
    )
    assert [a["started_at_epoch"] for a in other.manifest.attempts] == [0]


def test_a_diverging_training_stops_with_a_clear_error_and_no_version(tiny_catalog, tmp_path):
    with pytest.raises(
        NonFiniteLossError, match=r"not finite at epoch \d .phase1. step \d.*lower the learning rate"
    ):
        _train(fast_config(phase1_lr=1e30, freeze_stages=0), tiny_catalog, tmp_path)
    assert VersionStore(tmp_path, "attribute_classifier").versions() == []


def test_unknown_label_column_is_a_clear_cli_error(tiny_catalog, tmp_path, capsys):
    code = main(
        [
            "--catalog-dir",
            str(tiny_catalog),
            "--models-dir",
            str(tmp_path),
            "--no-mlflow",
            "--heads",
            "article_type:1,colour_name:0.5",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "unknown label column 'colour_name'" in err and "base_colour" in err


def test_missing_catalog_says_what_to_run(tmp_path, capsys):
    assert main(["--catalog-dir", str(tmp_path), "--no-mlflow"]) == 2
    assert "catalog_splits" in capsys.readouterr().err


def _torchrun_cmd(tiny_catalog: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "product_attrs.classification.train",
        "--catalog-dir",
        str(tiny_catalog),
        "--models-dir",
        str(out),
        "--no-mlflow",
        "--offline",
        "--device",
        "cpu",
        "--backbone",
        "efficientnet_lite0",
        "--freeze-stages",
        "8",
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--phase1-epochs",
        "1",
        "--phase2-epochs",
        "0",
        "--embedding-dim",
        "32",
        "--max-train-rows",
        "32",
        "--max-test-rows",
        "16",
    ]


def _ddp_rank(rank: int, world: int, port: int, catalog: Path, out: Path, queue) -> None:
    set_ddp_env(rank, world, port)
    cfg = fast_config(
        phase1_epochs=1, phase2_epochs=0, batch_size=8, embedding_dim=32, max_train_rows=32, max_test_rows=8
    )
    result = _train(cfg, catalog, out)
    checksum = float(sum(p.double().sum() for p in result.model.parameters()))
    queue.put((rank, result.version, len(result.history), checksum))


def test_ddp_two_processes_gloo_in_process(tiny_catalog, tmp_path):
    """train() joins the gloo group the environment describes; both ranks end with identical weights."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("fork")  # no re-import of torch: the test stays a few seconds
    queue = ctx.SimpleQueue()
    mp.start_processes(
        _ddp_rank, args=(2, free_port(), tiny_catalog, tmp_path, queue), nprocs=2, start_method="fork"
    )
    results = sorted(queue.get() for _ in range(2))
    assert [r[0] for r in results] == [0, 1]
    assert results[0][1] == results[1][1]  # rank 0 chose the version and broadcast it
    assert results[0][2] == results[1][2] == 1
    assert results[0][3] == pytest.approx(results[1][3], rel=1e-6)  # gradients were averaged across ranks
    store = VersionStore(tmp_path, "attribute_classifier")
    assert store.versions() == [results[0][1]] and store.manifest(results[0][1]).world_size == 2


@pytest.mark.slow
def test_ddp_two_cpu_processes_gloo(tiny_catalog, tmp_path):
    """torchrun starts the same command twice; gloo syncs gradients; rank 0 writes the version folder."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        _torchrun_cmd(tiny_catalog, tmp_path),
        env=env,
        cwd=REPO,
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = VersionStore(tmp_path, "attribute_classifier")
    version = store.path(store.latest())
    manifest = store.manifest(store.latest())
    history = json.loads((version / "history.json").read_text())
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"])
    assert manifest.info["n_train"] == 32 and manifest.world_size == 2
    assert sorted(p.name for p in store.root.iterdir()) == sorted(["CHAMPION", "LATEST", version.name])


def test_channels_last_and_amp_flags_run_on_cpu(tiny_catalog, tmp_path):
    """The GPU options are accepted on CPU: channels_last is applied, AMP is a no-op there."""
    cfg = fast_config(
        phase1_epochs=1, phase2_epochs=0, channels_last=True, amp=True, max_train_rows=20, max_test_rows=10
    )
    result = _train(cfg, tiny_catalog, tmp_path)
    assert np.isfinite(result.history[0]["train_loss"])
