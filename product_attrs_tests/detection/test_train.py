"""Training command: version folder, resume, CLI flags from the dataclass, real tiny-coco."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from product_attrs.detection.config import DetectorConfig, config_from_args
from product_attrs.detection.train import (
    CHECKPOINT,
    build_parser,
    local_champion_map,
    resolve_version,
    restore_checkpoint,
    train_detector,
    _make_optimizer,
    _make_scheduler,
)
from product_attrs.detection.model import build_detector
from product_attrs_tests.detection.conftest import tiny_config


def test_version_folder(trained_version: Path) -> None:
    names = {p.name for p in trained_version.iterdir()}
    assert {"model.pt", "config.json", "label_map.json", "metrics.json", "manifest.json", "registry.json"} <= names
    assert CHECKPOINT not in names  # removed once the version is complete
    metrics = json.loads((trained_version / "metrics.json").read_text())
    assert {"mAP", "AP50", "AP75", "AR100", "per_class_AP"} <= set(metrics)
    manifest = json.loads((trained_version / "manifest.json").read_text())
    assert len(manifest["data_version"]) == 16 and manifest["build"]["weights_source"]
    assert DetectorConfig.from_dict(json.loads((trained_version / "config.json").read_text())) == tiny_config()
    assert resolve_version(trained_version.parent.parent, "latest") == trained_version
    # The first version is the local champion when MLflow is off.
    assert resolve_version(trained_version.parent.parent, "champion") == trained_version
    assert local_champion_map(trained_version.parent.parent) == metrics["mAP"]


def test_resume_restores_model_optimizer_and_epoch(scenes_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(epochs=2, max_steps_per_epoch=1)
    first = train_detector(cfg, scenes_dir, tmp_path, stop_after_epochs=1)
    ckpt_path = first.version_dir / CHECKPOINT
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 0 and [h["epoch"] for h in first.history] == [0]

    # restore_checkpoint puts every state back.
    model, _ = build_detector(cfg, 3)
    opt = _make_optimizer(cfg, model)
    sched = _make_scheduler(cfg, opt)
    start = restore_checkpoint(ckpt, model, opt, sched, None)
    assert start == 1
    for k, v in ckpt["model"].items():
        assert torch.equal(model.state_dict()[k], v), k
    momentum = [s["momentum_buffer"] for s in opt.state_dict()["state"].values()]
    saved = [s["momentum_buffer"] for s in ckpt["optimizer"]["state"].values()]
    assert len(momentum) == len(saved) > 0 and all(torch.equal(a, b) for a, b in zip(momentum, saved))
    assert sched.last_epoch == ckpt["lr_scheduler"]["last_epoch"] == 1

    # The resumed run continues at epoch 1 in the same folder and finishes the version.
    second = train_detector(cfg, scenes_dir, tmp_path, resume=ckpt_path)
    assert second.version_dir == first.version_dir
    assert [h["epoch"] for h in second.history] == [0, 1]
    assert second.history[0]["train"] == first.history[0]["train"]
    assert second.history[0]["eval"]["mAP"] == first.history[0]["eval"]["mAP"]
    assert (second.version_dir / "model.pt").is_file() and not ckpt_path.exists()


def test_cli_flags_come_from_the_dataclass(capsys) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--batch-size", "--lr", "--trainable-backbone-layers", "--no-amp", "--resume", "--profile"):
        assert flag in out
    cfg = config_from_args(parser.parse_args(["--profile", "full", "--lr", "0.5", "--no-amp", "--anchor-sizes", "8", "16", "32", "64", "128"]))
    assert cfg.arch == "fasterrcnn_resnet50_fpn_v2" and cfg.lr == 0.5 and cfg.amp is False
    assert cfg.anchor_sizes == (8, 16, 32, 64, 128) and cfg.min_size == 800  # untouched flags keep the profile
    assert config_from_args(parser.parse_args([])) == DetectorConfig.for_profile("demo")


@pytest.mark.real_data
def test_real_tiny_coco_trains_a_step_and_evaluates(tmp_path: Path) -> None:
    root = os.environ.get("PRODUCT_ATTRS_REAL_DATA")
    if not root or not (Path(root) / "tiny-coco" / "annotations" / "instances.json").is_file():
        pytest.skip("PRODUCT_ATTRS_REAL_DATA/tiny-coco is absent: no real COCO file to train a step on")
    cfg = tiny_config(max_steps_per_epoch=1, min_size=160, max_size=256)
    result = train_detector(cfg, Path(root) / "tiny-coco", tmp_path)
    m = result.metrics
    assert result.history[0]["train"]["steps"] == 1
    assert 0.0 <= m["mAP"] <= 1.0 and m["n_eval_images"] == 4
    label_map = json.loads((result.version_dir / "label_map.json").read_text())
    assert len(label_map) == 80
    state = torch.load(result.version_dir / "model.pt", weights_only=True)
    assert state["roi_heads.box_predictor.cls_score.weight"].shape[0] == 81


@pytest.mark.slow  # two processes each import torch and train: ~20 s
def test_ddp_with_torchrun_on_cpu(scenes_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "product_attrs.detection.train",
           "--dataset", str(scenes_dir), "--models-dir", str(tmp_path), "--no-mlflow", "--epochs", "1",
           "--max-steps-per-epoch", "2", "--batch-size", "2", "--fpn-channels", "32", "--box-head-dim", "64",
           "--min-size", "96", "--max-size", "128", "--num-threads", "1", "--device", "cpu"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "DDP rank 1/2 on cpu (gloo)" in out.stderr
    versions = [p for p in (tmp_path / "product_detector").iterdir() if p.is_dir()]
    assert len(versions) == 1 and (versions[0] / "model.pt").is_file()
