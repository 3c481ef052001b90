"""Training command: version folder, resume after a crash, CLI flags from the dataclass, real tiny-coco."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from product_attrs.detection.config import PROFILES, DetectorConfig
from product_attrs.detection.evaluate import STAT_NAMES
from product_attrs.detection.task import lr_factor
from product_attrs.detection.train import build_parser, main, train
from product_attrs.modeling.checkpoint import load_checkpoint
from product_attrs.modeling.config import ConfigError, from_args, resolve
from product_attrs.modeling.registry import Registry
from product_attrs.modeling.versions import CHECKPOINT, MANIFEST, WEIGHTS, VersionManifest, VersionStore
from product_attrs_tests.detection.conftest import quiet, tiny_config

TINY_FLAGS = [
    "--epochs",
    "1",
    "--max-steps-per-epoch",
    "2",
    "--batch-size",
    "2",
    "--fpn-channels",
    "32",
    "--box-head-dim",
    "64",
    "--min-size",
    "96",
    "--max-size",
    "128",
    "--threads",
    "1",
]


def _same(a, b) -> bool:
    """Equal as JSON (NaN, which some COCO figures are when there is nothing to measure, equals NaN)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_version_folder(trained_version: Path) -> None:
    names = {p.name for p in trained_version.iterdir()}
    assert {WEIGHTS, MANIFEST, "history.json"} <= names
    assert CHECKPOINT not in names  # removed once the version is complete
    manifest = VersionManifest.read(trained_version)
    assert (manifest.name, manifest.task, manifest.version) == (
        "product_detector",
        "detection",
        trained_version.name,
    )
    assert {"mAP", "AP50", "AP75", "AR100"} <= set(manifest.metrics) and set(manifest.metrics) == set(
        STAT_NAMES
    )
    assert 0.0 <= manifest.metric("mAP") <= 1.0
    assert set(manifest.info["per_class_AP"]) == {"red", "green", "blue"}
    assert [m["name"] for m in manifest.info["label_map"]] == ["red", "green", "blue"]
    assert (
        manifest.info["num_classes"] == 3
        and manifest.info["build"]["weights_source"] == manifest.weights_source
    )
    assert manifest.info["n_train_images"] + manifest.info["n_eval_images"] == 10  # session_scenes
    assert len(manifest.data_version) == 16 and manifest.weights_source == "package:efficientnet-lite0"
    assert manifest.epochs == 1 and manifest.world_size == 1
    assert [a["started_at_epoch"] for a in manifest.attempts] == [0]
    assert DetectorConfig.from_dict(manifest.config) == tiny_config()
    history = json.loads((trained_version / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1] and history[0]["mAP"] == manifest.metrics["mAP"]
    assert history[0]["train_loss"] > 0
    state = torch.load(trained_version / WEIGHTS, weights_only=True)
    assert state["roi_heads.box_predictor.cls_score.weight"].shape[0] == 4  # 3 classes + background

    models = trained_version.parent.parent
    store = VersionStore(models, "product_detector")
    assert store.versions() == [trained_version.name] and store.latest() == trained_version.name
    assert not (trained_version.parent / ".drafts").exists()  # nothing unfinished is left behind
    # The first version is the champion when MLflow is off (the store's pointer decides).
    assert store.champion() == trained_version.name
    assert Registry(models).champion_dir("product_detector") == trained_version
    assert manifest.promotion["promoted"] and manifest.promotion["reason"] == "first champion"


class _Crash(Exception):
    """A process dying after its first epoch."""


def test_resume_after_a_crash_continues_the_same_version(scenes_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(epochs=2, max_steps_per_epoch=1)
    registry = Registry(tmp_path / "models")
    store = registry.store("product_detector")
    crashed: list[dict] = []

    def crash_after_first_epoch(entry: dict) -> None:
        crashed.append(json.loads(json.dumps(entry)))
        raise _Crash

    with pytest.raises(_Crash):
        train(cfg, scenes_dir, registry, device="cpu", log=quiet, on_epoch=crash_after_first_epoch)
    assert [e["epoch"] for e in crashed] == [1]
    # Nothing is committed; the draft holds the checkpoint of epoch 1.
    assert store.versions() == [] and store.latest() is None and store.champion() is None
    drafts = [p for p in (store.root / ".drafts").iterdir() if p.is_dir()]
    assert len(drafts) == 1 and (drafts[0] / CHECKPOINT).is_file()
    ckpt = load_checkpoint(drafts[0] / CHECKPOINT)
    assert ckpt["position"]["epoch"] == 1 and [h["epoch"] for h in ckpt["history"]] == [1]

    # The same training again (resume="auto") continues that draft after epoch 1 and finishes the version.
    resumed = train(cfg, scenes_dir, registry, device="cpu", log=quiet)
    assert resumed.version == drafts[0].name and resumed.version_dir == store.path(drafts[0].name)
    assert [a["started_at_epoch"] for a in resumed.manifest.attempts] == [0, 1]
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert _same(resumed.history[0], crashed[0])
    assert resumed.manifest.epochs == 2 and store.versions() == [resumed.version]
    assert store.latest() == store.champion() == resumed.version
    assert not (resumed.version_dir / CHECKPOINT).exists() and not (store.root / ".drafts").exists()
    on_disk = json.loads((resumed.version_dir / "history.json").read_text())
    assert [h["epoch"] for h in on_disk] == [1, 2]
    # The optimizer's schedule continued where it stopped: one step per epoch, cosine over 2 epochs.
    f = lr_factor(cfg, 1)
    assert [h["lr"] for h in resumed.history] == pytest.approx([cfg.lr * f(1), cfg.lr * f(2)])
    assert resumed.history[0]["lr"] == pytest.approx(0.005)

    # ...and it ends with exactly the weights of a training that never stopped.
    straight = train(cfg, scenes_dir, Registry(tmp_path / "straight"), device="cpu", log=quiet)
    assert [a["started_at_epoch"] for a in straight.manifest.attempts] == [0]
    a = torch.load(resumed.version_dir / WEIGHTS, weights_only=True)
    b = torch.load(straight.version_dir / WEIGHTS, weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _same(resumed.manifest.metrics, straight.manifest.metrics)


def test_cli_flags_come_from_the_dataclass(capsys) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--dataset",
        "--models-dir",
        "--device",
        "--resume",
        "--no-mlflow",
        "--keep-checkpoint",
        "--offline",
        "--profile",
        "--batch-size",
        "--lr",
        "--trainable-backbone-layers",
        "--no-amp",
        "--threads",
        "--weights-file",
        "--num-workers",
        "--anchor-sizes",
    ):
        assert flag in out, flag
    for gone in ("--num-threads", "--weights-path", "--workers "):
        assert gone not in out, gone
    argv = ["--profile", "full", "--lr", "0.5", "--no-amp", "--anchor-sizes", "8", "16", "32", "64", "128"]
    cfg = from_args(parser.parse_args(argv), DetectorConfig, PROFILES)
    assert cfg.arch == "fasterrcnn_resnet50_fpn_v2" and cfg.lr == 0.5 and cfg.amp is False
    assert (
        cfg.anchor_sizes == (8, 16, 32, 64, 128) and cfg.min_size == 800
    )  # untouched flags keep the profile
    assert from_args(parser.parse_args([]), DetectorConfig, PROFILES) == resolve(
        DetectorConfig, PROFILES, "demo"
    )
    assert from_args(parser.parse_args(["--threads", "3"]), DetectorConfig, PROFILES).threads == 3
    with pytest.raises(ConfigError, match="lr must be a positive number"):
        from_args(parser.parse_args(["--lr", "nan"]), DetectorConfig, PROFILES)
    with pytest.raises(ConfigError, match="unknown setting 'num_threads'"):
        resolve(DetectorConfig, PROFILES, "demo", None, {"num_threads": 1})


def test_command_exit_codes(scenes_dir: Path, tmp_path: Path, capsys) -> None:
    models = tmp_path / "models"
    run = [
        "--dataset",
        str(scenes_dir),
        "--models-dir",
        str(models),
        "--no-mlflow",
        "--device",
        "cpu",
        *TINY_FLAGS,
    ]
    assert main([*run, "--optimizer", "rmsprop"]) == 2  # a setting that cannot work
    assert "error: optimizer 'rmsprop' is not sgd or adamw" in capsys.readouterr().err
    # A diverging training stops at the first non-finite loss and commits nothing.
    assert main([*run, "--lr", "1e30", "--warmup-iters", "0", "--clip-grad-norm", "0"]) == 1
    assert "error: training loss is not finite" in capsys.readouterr().err
    store = VersionStore(models, "product_detector")
    assert store.versions() == [] and store.latest() is None and store.champion() is None


@pytest.mark.real_data
def test_real_tiny_coco_trains_a_step_and_evaluates(tmp_path: Path) -> None:
    root = os.environ.get("PRODUCT_ATTRS_REAL_DATA")
    if not root or not (Path(root) / "tiny-coco" / "annotations" / "instances.json").is_file():
        pytest.skip("PRODUCT_ATTRS_REAL_DATA/tiny-coco is absent: no real COCO file to train a step on")
    cfg = tiny_config(max_steps_per_epoch=1, min_size=160, max_size=256)
    result = train(cfg, Path(root) / "tiny-coco", Registry(tmp_path), device="cpu", log=quiet)
    [epoch] = result.history
    assert epoch["images_per_s"] * epoch["seconds"] == pytest.approx(cfg.batch_size)  # one step of 2 images
    assert 0.0 <= result.metrics["mAP"] <= 1.0
    info = result.manifest.info
    assert info["n_eval_images"] == epoch["n_eval_images"] == 4
    assert len(info["label_map"]) == 80
    state = torch.load(result.version_dir / WEIGHTS, weights_only=True)
    assert state["roi_heads.box_predictor.cls_score.weight"].shape[0] == 81


@pytest.mark.slow  # two processes each import torch and train: ~20 s
def test_ddp_with_torchrun_on_cpu(scenes_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    args = [
        "--dataset",
        str(scenes_dir),
        "--models-dir",
        str(tmp_path),
        "--no-mlflow",
        "--device",
        "cpu",
        *TINY_FLAGS,
    ]
    build_parser().parse_args(args)  # every flag still exists (argparse exits on an unknown one)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "-m",
        "product_attrs.detection.train",
        *args,
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    store = VersionStore(tmp_path, "product_detector")
    [version] = store.versions()
    assert store.latest() == store.champion() == version
    manifest = store.manifest(version)
    assert manifest.world_size == 2 and manifest.epochs == 1
    assert 0.0 <= manifest.metric("mAP") <= 1.0
    # Both ranks evaluated a shard of the test images; the figures are over all of them.
    history = json.loads((store.path(version) / "history.json").read_text())
    assert history[0]["n_eval_images"] == manifest.info["n_eval_images"]
    assert (store.path(version) / WEIGHTS).is_file() and not (store.path(version) / CHECKPOINT).exists()
    assert json.loads(out.stdout)["version_dir"] == str(store.path(version))
