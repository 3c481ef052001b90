"""Training on the tiny catalog: it learns, writes its version folder, resumes, and fails clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from product_attrs.classification.config import ConfigError, HeadSpec
from product_attrs.classification.engine import NonFiniteLossError, train_one_epoch
from product_attrs.classification.train import (
    latest_version_dir,
    load_checkpoint,
    load_model_version,
    main,
    restore_checkpoint,
    train,
)
from product_attrs_tests.classification.helpers import fast_config, set_ddp_env

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tiny_catalog, tmp_path_factory):
    torch.set_num_threads(1)
    models = tmp_path_factory.mktemp("models")
    return train(fast_config(), tiny_catalog, models, device="cpu", log=lambda m: None), models


def test_beats_chance_and_majority(trained):
    result, _ = trained
    n_classes = len(json.loads((result.version_dir / "model.json").read_text())["label_maps"]["article_type"])
    assert result.metrics["test_top1"] > max(1 / n_classes, result.majority_rate) + 0.15
    assert result.metrics["test_top1_top20"] > 0.5


def test_version_folder_is_complete(trained):
    result, models = trained
    d = result.version_dir
    for name in (
        "model.pt",
        "model.json",
        "checkpoint.pt",
        "history.json",
        "results.csv",
        "per_class.csv",
        "confused_pairs.csv",
        "test_predictions.npz",
        "curves.png",
        "samples.png",
    ):
        assert (d / name).is_file(), name
    manifest = json.loads((d / "model.json").read_text())
    assert manifest["data_version"] == "tiny0000deadbeef"
    assert manifest["heads"][0] == {"column": "article_type", "weight": 2.0}
    assert latest_version_dir(models) == d
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert {h["phase"] for h in result.history} == {"phase1", "phase2"}
    assert all(np.isfinite(h["test_loss"]) for h in result.history)


def test_missing_classes_reported_not_crashing(trained):
    result, _ = trained
    assert result.evaluation.missing_from_train["article_type"] == ["Purple Circle"]
    per_class = result.evaluation.per_class
    purple = per_class[(per_class["class"] == "Purple Circle") & (per_class["group"] == "all")]
    assert bool(purple["missing_from_train"].iloc[0]) and purple["n_train"].iloc[0] == 0
    groups = set(result.evaluation.results["group"])
    assert groups == {"top20", "rest", "all"}
    assert len(result.evaluation.confused) > 0


def test_saved_version_reloads_with_same_predictions(trained, tiny_catalog):
    result, _ = trained
    model, manifest = load_model_version(result.version_dir)
    x = torch.randn(2, 3, 32, 32)
    assert set(model(x)) == {"article_type", "master_category", "sub_category"}
    assert manifest["metrics"]["test_top1"] == pytest.approx(result.metrics["test_top1"])


def test_resume_restores_model_optimizer_and_epoch(tiny_catalog, tmp_path):
    cfg = fast_config(phase1_epochs=1, phase2_epochs=0)
    first = train(cfg, tiny_catalog, tmp_path, device="cpu", log=lambda m: None)
    ckpt = load_checkpoint(first.version_dir)

    # restore_checkpoint puts model, optimizer and position back exactly.
    model, _ = load_model_version(first.version_dir)
    for p in model.parameters():
        p.data.zero_()
    model.freeze_stages(
        cfg.freeze_stages
    )  # the optimizer holds the same (trainable) parameters as in training
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    state = restore_checkpoint(ckpt, model, optimizer)
    assert (state.phase, state.phase_epoch, state.global_epoch) == (0, 1, 1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["model"][k]), k
    saved = ckpt["optimizer"]["state"]
    assert saved and all(
        torch.equal(optimizer.state_dict()["state"][i]["momentum_buffer"], s["momentum_buffer"])
        for i, s in saved.items()
    )

    # Continuing: one more epoch in the same version folder, history kept.
    resumed = train(
        fast_config(phase1_epochs=2, phase2_epochs=0),
        tiny_catalog,
        tmp_path,
        device="cpu",
        resume=first.version_dir,
        log=lambda m: None,
    )
    assert resumed.version_dir == first.version_dir
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.history[0] == first.history[0]


def test_resume_with_another_backbone_is_refused(tiny_catalog, tmp_path):
    first = train(
        fast_config(phase1_epochs=1, phase2_epochs=0, max_train_rows=20, max_test_rows=10),
        tiny_catalog,
        tmp_path,
        device="cpu",
        log=lambda m: None,
    )
    with pytest.raises(ConfigError, match="backbone"):
        train(
            fast_config(backbone="resnet18", freeze_stages=0),
            tiny_catalog,
            tmp_path,
            resume=first.version_dir,
        )


def test_non_finite_loss_stops_with_clear_error():
    model = torch.nn.Module()
    head = torch.nn.Linear(4, 3)
    model.forward = lambda x: {"a": head(x.flatten(1)[:, :4])}
    batch = (torch.full((2, 3, 2, 2), float("nan")), torch.tensor([[0], [1]]), torch.tensor([0, 1]))
    with pytest.raises(NonFiniteLossError, match="training loss is nan at epoch 3 step 0"):
        train_one_epoch(
            model,
            [batch],
            torch.optim.SGD(head.parameters(), lr=0.1),
            [HeadSpec("a", 1.0)],
            torch.device("cpu"),
            epoch=3,
        )


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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_rank(rank: int, world: int, port: int, catalog: Path, out: Path, queue) -> None:
    set_ddp_env(rank, world, port)
    cfg = fast_config(
        phase1_epochs=1, phase2_epochs=0, batch_size=8, embedding_dim=32, max_train_rows=32, max_test_rows=8
    )
    result = train(cfg, catalog, out, device="cpu", log=lambda m: None)
    checksum = float(sum(p.double().sum() for p in result.model.parameters()))
    queue.put((rank, result.version, len(result.history), checksum))


def test_ddp_two_processes_gloo_in_process(tiny_catalog, tmp_path):
    """train() joins the gloo group the environment describes; both ranks end with identical weights."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("fork")  # no re-import of torch: the test stays a few seconds
    queue = ctx.SimpleQueue()
    mp.start_processes(
        _ddp_rank, args=(2, _free_port(), tiny_catalog, tmp_path, queue), nprocs=2, start_method="fork"
    )
    results = sorted(queue.get() for _ in range(2))
    assert [r[0] for r in results] == [0, 1]
    assert results[0][1] == results[1][1]  # rank 0 chose the version and broadcast it
    assert results[0][2] == results[1][2] == 1
    assert results[0][3] == pytest.approx(results[1][3], rel=1e-6)  # gradients were averaged across ranks
    manifest = json.loads((latest_version_dir(tmp_path) / "model.json").read_text())
    assert manifest["world_size"] == 2


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
    version = latest_version_dir(tmp_path)
    manifest = json.loads((version / "model.json").read_text())
    history = json.loads((version / "history.json").read_text())
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"])
    assert manifest["n_train"] == 32 and manifest["world_size"] == 2
    assert len(list((tmp_path / "attribute_classifier").iterdir())) == 2  # one version folder + LATEST


def test_channels_last_and_amp_flags_run_on_cpu(tiny_catalog, tmp_path):
    """The GPU options are accepted on CPU: channels_last is applied, AMP is a no-op there."""
    cfg = fast_config(
        phase1_epochs=1, phase2_epochs=0, channels_last=True, amp=True, max_train_rows=20, max_test_rows=10
    )
    result = train(cfg, tiny_catalog, tmp_path, device="cpu", log=lambda m: None)
    assert np.isfinite(result.history[0]["train_loss"])
