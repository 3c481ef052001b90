"""Metric learning for retrieval: the ArcMargin head, batch-hard triplets, class-balanced batches, and a
second catalog (grocery-like: fine_label / coarse_label, every row subset "all") trained as its own model."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from product_attrs.classification.config import ConfigError, TrainConfig, resolve_config
from product_attrs.classification.data import IGNORE_INDEX, ClassBalancedBatchSampler
from product_attrs.classification.engine import predict
from product_attrs.classification.evaluate import evaluate_model, majority_rate
from product_attrs.classification.metric import ArcMarginHead, batch_hard_triplet_loss
from product_attrs.classification.train import (
    build_parser,
    latest_version_dir,
    load_model_version,
    train,
)
from product_attrs_tests.classification.helpers import fast_config, set_ddp_env

GROCERY_HEADS = "fine_label:1.0,coarse_label:0.5"


# ---- ArcMargin head --------------------------------------------------------------------------------------


def _arc_head(margin: float = 0.3, scale: float = 16.0, easy_margin: bool = False) -> ArcMarginHead:
    """Two classes along the axes of the plane, so an embedding at angle t is t away from class 0."""
    head = ArcMarginHead(2, 2, margin, scale, easy_margin)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 0.5]]))  # norms must not matter
    return head


def _at(theta: float, norm: float = 2.0) -> torch.Tensor:
    return torch.tensor([[math.cos(theta), math.sin(theta)]], dtype=torch.float64).float() * norm


@pytest.mark.parametrize("theta", [0.2, 0.6, 1.2])
def test_arc_margin_lowers_the_target_logit_by_the_angular_margin(theta):
    m, s = 0.3, 16.0
    logits = _arc_head(m, s)(_at(theta), torch.tensor([0]))
    assert logits[0, 0].item() == pytest.approx(s * math.cos(theta + m), abs=1e-4)
    assert logits[0, 1].item() == pytest.approx(s * math.sin(theta), abs=1e-4)  # non-target: plain s cos
    plain = _arc_head(m, s)(_at(theta), torch.tensor([IGNORE_INDEX]))  # no label: no margin anywhere
    assert plain[0, 0].item() - logits[0, 0].item() == pytest.approx(
        s * (math.cos(theta) - math.cos(theta + m)), abs=1e-4
    )


def test_arc_margin_past_pi_minus_m_falls_back_and_easy_margin_skips_obtuse_angles():
    m, s = 0.5, 10.0
    theta = math.pi - 0.2  # theta + m > pi: cos(theta + m) would rise again
    logits = _arc_head(m, s)(_at(theta), torch.tensor([0]))
    assert logits[0, 0].item() == pytest.approx(s * (math.cos(theta) - m * math.sin(m)), abs=1e-4)
    easy = _arc_head(m, s, easy_margin=True)(_at(2.0), torch.tensor([0]))
    assert easy[0, 0].item() == pytest.approx(s * math.cos(2.0), abs=1e-4)


@pytest.mark.parametrize("theta", [0.0, 1e-4, math.pi - 1e-4, math.pi])
def test_arc_margin_gradients_are_finite_at_the_poles(theta):
    head = _arc_head(0.5, 30.0)
    emb = _at(theta).requires_grad_(True)
    loss = F.cross_entropy(head(emb, torch.tensor([0])), torch.tensor([0]))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(emb.grad).all() and torch.isfinite(head.weight.grad).all()


# ---- batch-hard triplet loss -----------------------------------------------------------------------------


def _ring(angles: list[float], scale: float = 3.0) -> torch.Tensor:
    a = torch.tensor(angles, dtype=torch.float64)
    return (torch.stack([a.cos(), a.sin()], dim=1) * scale).float()


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_batch_hard_triplet_loss_known_answer(distance):
    # Classes 0 and 1 on an arc; a class-2 singleton far away (no positive: no anchor, never hardest
    # negative) and an unlabelled row next to the first anchor (ignored entirely).
    angles = [0.0, 0.2, 1.0, 1.5, math.pi, 0.05]
    labels = torch.tensor([0, 0, 1, 1, 2, IGNORE_INDEX])
    d = (lambda x: 1 - math.cos(x)) if distance == "cosine" else (lambda x: 2 * math.sin(x / 2))
    margin = 0.5  # some anchors inside the margin, some beyond it, for both distances
    # anchor: (hardest positive angle, hardest negative angle)
    pairs = [(0.2, 1.0), (0.2, 0.8), (0.5, 0.8), (0.5, 1.3)]
    expected = np.mean([max(0.0, d(p) - d(n) + margin) for p, n in pairs])
    loss = batch_hard_triplet_loss(_ring(angles), labels, margin, distance)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    assert 0 < expected and any(d(p) - d(n) + margin < 0 for p, n in pairs)


def test_triplet_loss_without_valid_anchor_is_zero_with_a_gradient():
    emb = _ring([0.0, 1.0, 2.0]).requires_grad_(True)
    loss = batch_hard_triplet_loss(emb, torch.tensor([0, 1, IGNORE_INDEX]))
    loss.backward()
    assert loss.item() == 0.0 and emb.grad is not None and torch.isfinite(emb.grad).all()


def test_triplet_gradients_finite_for_identical_rows():
    emb = _ring([0.3, 0.3, 0.3, 2.0]).requires_grad_(True)
    batch_hard_triplet_loss(emb, torch.tensor([0, 0, 1, 1]), distance="euclidean").backward()
    assert torch.isfinite(emb.grad).all()


# ---- class-balanced batches ------------------------------------------------------------------------------


def _labels(counts: list[int]) -> np.ndarray:
    return np.concatenate([np.full(n, c) for c, n in enumerate(counts)])


@pytest.mark.parametrize("counts", [[8, 8, 8, 8], [13, 2, 7, 5, 9], [40, 3, 3, 3]])
def test_every_batch_has_k_rows_of_p_classes_and_every_row_is_seen(counts):
    labels = np.concatenate([_labels(counts), [IGNORE_INDEX, IGNORE_INDEX]])
    p, k = 3, 4
    sampler = ClassBalancedBatchSampler(labels, p, k, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == max(
        math.ceil(sum(max(1, math.ceil(n / k)) for n in counts) / p), max(math.ceil(n / k) for n in counts)
    )
    for batch in batches:
        classes, per_class = np.unique(labels[batch], return_counts=True)
        assert len(classes) == p and (per_class == k).all()
    seen = set(np.concatenate(batches).tolist())
    assert seen == set(np.flatnonzero(labels != IGNORE_INDEX).tolist())  # all labelled rows, no unlabelled
    assert sampler.n_unlabelled == 2


def test_balanced_batches_change_with_the_epoch_and_repeat_with_the_seed():
    labels = _labels([9, 9, 9, 9])
    a, b = ClassBalancedBatchSampler(labels, 2, 3, seed=5), ClassBalancedBatchSampler(labels, 2, 3, seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first


def test_balanced_batches_shard_across_ranks():
    labels = _labels([10, 6, 9, 4, 7])
    full = ClassBalancedBatchSampler(labels, 2, 4, seed=3)
    ranks = [ClassBalancedBatchSampler(labels, 2, 4, seed=3, rank=r, world_size=2) for r in (0, 1)]
    shards = [list(r) for r in ranks]
    assert len(shards[0]) == len(shards[1]) == len(ranks[0]) == math.ceil(len(full) / 2)
    everything = full.epoch_batches()
    padded = everything + everything[: 2 * len(ranks[0]) - len(everything)]  # equal steps on both ranks
    assert shards == [padded[0::2], padded[1::2]]


def test_too_few_classes_for_a_batch_is_a_config_error():
    with pytest.raises(ConfigError, match="only 2 labelled classes"):
        ClassBalancedBatchSampler(_labels([5, 5]), 4, 2)


# ---- configuration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"metric_loss": "cosface"}, "unknown metric_loss 'cosface'"),
        ({"metric_loss": "arcface", "metric_weight": 0.0}, "metric_weight must be a positive"),
        ({"arc_margin": -0.1}, "arc_margin must be in"),
        ({"arc_margin": 2.0}, "arc_margin must be in"),
        ({"arc_scale": 0.0}, "arc_scale must be a positive"),
        ({"triplet_margin": float("nan")}, "triplet_margin must be a positive"),
        ({"triplet_distance": "manhattan"}, "unknown triplet_distance"),
        ({"metric_column": "colour"}, "metric_column 'colour' is not one of the heads"),
        ({"samples_per_class": 1}, "samples_per_class must be 0"),
        ({"samples_per_class": 5, "batch_size": 32}, "multiple of it"),
        ({"samples_per_class": 16, "batch_size": 16}, "at least 2 classes"),
        ({"metric_loss": "triplet"}, "metric_loss=triplet needs positives"),
    ],
)
def test_bad_metric_settings_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(TrainConfig, "demo", overrides)


def test_metric_defaults_change_nothing_and_flags_exist():
    cfg = resolve_config(TrainConfig, "demo")
    assert (cfg.metric_loss, cfg.samples_per_class, cfg.metric_column) == ("none", 0, "")
    assert cfg.metric_target() == "article_type"
    args = build_parser().parse_args(
        [
            "--metric-loss",
            "triplet",
            "--samples-per-class",
            "4",
            "--heads",
            GROCERY_HEADS,
            "--metric-column",
            "coarse_label",
            "--model-name",
            "product_recognizer",
            "--registered-model",
            "product_recognizer",
        ]
    )
    from product_attrs.classification.config import config_from_args

    cfg = config_from_args(args)
    assert (cfg.metric_loss, cfg.classes_per_batch(), cfg.metric_target()) == ("triplet", 8, "coarse_label")
    assert (args.model_name, args.registered_model) == ("product_recognizer", "product_recognizer")


# ---- evaluation on a catalog without a top-k / rest split ------------------------------------------------


def test_all_rows_one_subset_gives_one_group_and_nan_rest():
    probs = np.eye(3)[[0, 1, 2, 0]] * 0.9 + 0.05
    targets = np.array([[0], [1], [1], [0]])
    ev = evaluate_model(
        "image",
        {"fine_label": probs},
        targets,
        ["fine_label"],
        {"fine_label": ["a", "b", "c"]},
        np.array(["all"] * 4, dtype=object),
        np.array([[0], [0], [1]]),
    )
    assert ev.results["group"].tolist() == ["all"]
    assert ev.metric("fine_label", "all") == pytest.approx(0.75)
    assert math.isnan(ev.metric("fine_label", "rest"))
    assert majority_rate(np.array([0, 0, 1]), targets[:, 0]) == pytest.approx(0.5)


# ---- a grocery-like catalog trained end to end -----------------------------------------------------------


@pytest.fixture(scope="module")
def grocery_catalog(tiny_catalog, tmp_path_factory) -> Path:
    """The tiny catalog's images relabelled: fine_label (colour+shape), coarse_label (shape), subset all."""
    frame = pd.read_parquet(tiny_catalog / "splits.parquet")
    frame = frame.rename(columns={"article_type": "fine_label", "master_category": "coarse_label"})
    frame["subset"] = pd.Series(["all"] * len(frame), dtype="string")
    out = tmp_path_factory.mktemp("grocery") / "catalog"
    out.mkdir()
    frame.to_parquet(out / "splits.parquet", index=False)
    maps = {c: sorted(frame[c].dropna().unique().tolist()) for c in ("fine_label", "coarse_label")}
    (out / "label_maps.json").write_text(json.dumps(maps))
    (out / "data_version.txt").write_text("grocery0deadbeef\n")
    return out


def _grocery_config(**overrides) -> TrainConfig:
    settings = {"phase1_epochs": 2, "phase2_epochs": 0, "max_test_rows": 16, **overrides}
    return fast_config(heads=GROCERY_HEADS, **settings)


def _same_embeddings(result, version_dir: Path) -> tuple[torch.nn.Module, dict]:
    model, manifest = load_model_version(version_dir)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    trained = result.model.cpu().eval()
    with torch.no_grad():
        a, b = trained.embed(x), model.embed(x)
    assert torch.equal(a, b)
    assert torch.allclose(b.norm(dim=1), torch.ones(4), atol=1e-5)
    return model, manifest


def _check_grocery_manifest(manifest: dict, result) -> None:
    assert manifest["name"] == "product_recognizer"
    assert manifest["embedding_normalized"] is True and manifest["similarity"] == "cosine"
    assert manifest["metrics"]["test_top1_rest"] is None  # no "rest" rows: NaN, written as null
    assert manifest["metrics"]["test_top1_fine_label"] == pytest.approx(result.metrics["test_top1"])
    assert np.isfinite(result.metrics["test_top1_coarse_label"]) and np.isfinite(result.majority_rate)
    assert set(result.evaluation.results["group"]) == {"all"}


def test_arcface_end_to_end(grocery_catalog, tmp_path):
    result = train(
        _grocery_config(metric_loss="arcface", metric_weight=0.5),
        grocery_catalog,
        tmp_path,
        device="cpu",
        log=lambda m: None,
        model_name="product_recognizer",
        registered_model="product_recognizer",
    )
    assert all(np.isfinite(h["train_metric_loss"]) for h in result.history)
    manifest = json.loads((result.version_dir / "model.json").read_text())
    _check_grocery_manifest(manifest, result)
    metric = manifest["metric"]
    assert (metric["loss"], metric["column"], metric["weight"]) == ("arcface", "fine_label", 0.5)
    assert metric["head"] == {
        "type": "arc_margin",
        "column": "fine_label",
        "n_classes": 7,  # the label map's classes, the test-only one included
        "margin": 0.3,
        "scale": 16.0,
        "easy_margin": False,
    }
    assert "metric_head.weight" in torch.load(result.version_dir / "model.pt", weights_only=True)
    model, _ = _same_embeddings(result, result.version_dir)
    assert model.metric_head is not None and model.metric_head.weight.shape == (7, 64)
    assert latest_version_dir(tmp_path, model_name="product_recognizer") == result.version_dir
    assert latest_version_dir(tmp_path) is None  # the attribute classifier's folder is untouched
    assert not (tmp_path / "attribute_classifier").exists()


def test_triplet_end_to_end_with_balanced_batches(grocery_catalog, tmp_path):
    cfg = _grocery_config(metric_loss="triplet", samples_per_class=4, triplet_distance="euclidean")
    result = train(
        cfg, grocery_catalog, tmp_path, device="cpu", log=lambda m: None, model_name="product_recognizer"
    )
    # 6 train classes of 14,14,12,12,6,6 rows (a few unlabelled) -> 4-row chunks, 4 classes per batch.
    assert result.history[0]["images_per_s"] > 0 and all(
        np.isfinite(h["train_metric_loss"]) for h in result.history
    )
    manifest = json.loads((result.version_dir / "model.json").read_text())
    _check_grocery_manifest(manifest, result)
    assert manifest["metric"]["loss"] == "triplet" and manifest["metric"]["head"] is None
    assert manifest["metric"]["samples_per_class"] == 4
    model, _ = _same_embeddings(result, result.version_dir)
    assert model.metric_head is None


def test_predict_embeddings_raw_or_normalised(grocery_catalog):
    from product_attrs.classification import data as cdata
    from product_attrs.classification.model import MultiTaskClassifier

    torch.manual_seed(0)
    model = MultiTaskClassifier("resnet18", {"fine_label": 7}, embedding_dim=8).eval()
    catalog = cdata.load_catalog(grocery_catalog)
    heads = TrainConfig(heads="fine_label").head_specs()
    transform = cdata.build_transform(32, False, model.mean, model.std)
    ds = cdata.make_dataset(catalog.split("test").head(6), heads, catalog.label_maps, transform)
    loader = torch.utils.data.DataLoader(ds, batch_size=3)
    raw = predict(model, loader, heads, torch.device("cpu"))
    unit = predict(model, loader, heads, torch.device("cpu"), normalize=True)
    assert not raw.embeddings_normalized and unit.embeddings_normalized
    assert np.allclose(np.linalg.norm(unit.embeddings, axis=1), 1, atol=1e-5)
    norms = np.linalg.norm(raw.embeddings, axis=1, keepdims=True)
    assert np.allclose(unit.embeddings, raw.embeddings / norms, atol=1e-5)


def test_bad_model_name_is_refused(grocery_catalog, tmp_path):
    with pytest.raises(ConfigError, match="model_name '../x'"):
        train(_grocery_config(), grocery_catalog, tmp_path, model_name="../x")


# ---- separate registry entries (a temporary MLflow store) ------------------------------------------------

mlflow = pytest.importorskip("mlflow")


def test_model_name_gets_its_own_registry_entry_and_champion(grocery_catalog, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    # The attribute classifier already has a champion that a grocery model must not move.
    client.create_registered_model("attribute_classifier")
    fashion = client.create_model_version("attribute_classifier", source=str(tmp_path / "fashion"))
    client.set_registered_model_alias("attribute_classifier", "champion", fashion.version)
    result = train(
        _grocery_config(phase1_epochs=1),
        grocery_catalog,
        tmp_path / "models",
        device="cpu",
        log=lambda m: None,
        mlflow_tracking_uri=uri,
        mlflow_artifacts_uri=(tmp_path / "artifacts").as_uri(),
        model_name="product_recognizer",
        registered_model="product_recognizer",
    )
    assert result.registered_version == "1" and result.promotion.promoted
    assert str(client.get_model_version_by_alias("product_recognizer", "champion").version) == "1"
    champion = client.get_model_version_by_alias("attribute_classifier", "champion")
    assert str(champion.version) == str(fashion.version)
    assert len(client.search_model_versions("name='attribute_classifier'")) == 1
    assert mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name("product_recognizer") is not None
    manifest = json.loads((result.version_dir / "model.json").read_text())
    assert manifest["mlflow"]["registered_model"] == "product_recognizer"
    assert sorted(os.listdir(tmp_path / "models")) == ["product_recognizer"]


# ---- DDP: class-balanced batches sharded across ranks ----------------------------------------------------


def _ddp_rank(rank: int, world: int, port: int, catalog: Path, out: Path, queue) -> None:
    set_ddp_env(rank, world, port)
    cfg = _grocery_config(
        phase1_epochs=1, batch_size=8, samples_per_class=4, metric_loss="arcface", max_test_rows=8
    )
    result = train(cfg, catalog, out, device="cpu", log=lambda m: None, model_name="product_recognizer")
    checksum = float(sum(p.double().sum() for p in result.model.parameters()))
    queue.put((rank, len(result.history), checksum))


def test_ddp_balanced_batches_and_arcface_in_two_processes(grocery_catalog, tmp_path):
    """Each rank takes its share of the same P x K batches; the ArcMargin head's gradients are averaged."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("fork")
    queue = ctx.SimpleQueue()
    mp.start_processes(
        _ddp_rank, args=(2, port, grocery_catalog, tmp_path, queue), nprocs=2, start_method="fork"
    )
    results = sorted(queue.get() for _ in range(2))
    assert [r[:2] for r in results] == [(0, 1), (1, 1)]
    assert results[0][2] == pytest.approx(results[1][2], rel=1e-6)
    manifest = json.loads((latest_version_dir(tmp_path, "product_recognizer") / "model.json").read_text())
    assert manifest["world_size"] == 2 and manifest["metric"]["head"]["n_classes"] == 7
