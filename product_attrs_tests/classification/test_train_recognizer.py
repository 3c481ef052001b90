"""A second catalog (grocery-like: fine_label / coarse_label, every row subset "all") trained end to end as
its own model: ArcMargin and triplet losses, a separate store, registry entry and champion, and DDP."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from product_attrs.classification.config import ConfigError
from product_attrs.classification.serve import Classifier
from product_attrs.classification.task import predict
from product_attrs.classification.train import train
from product_attrs.modeling.registry import Registry
from product_attrs.modeling.versions import VersionManifest, VersionStore
from product_attrs_tests.classification.helpers import fast_config, grocery_catalog_from
from product_attrs_tests.modeling.helpers import free_port, set_ddp_env

GROCERY_HEADS = "fine_label:1.0,coarse_label:0.5"
RECOGNIZER = "product_recognizer"


@pytest.fixture(scope="module")
def grocery_catalog(tiny_catalog, tmp_path_factory) -> Path:
    """The tiny catalog's images relabelled: fine_label (colour+shape), coarse_label (shape), subset all."""
    out = tmp_path_factory.mktemp("grocery") / "catalog"
    return grocery_catalog_from(tiny_catalog, out, "grocery0deadbeef")


def _grocery_config(**overrides):
    settings = {"phase1_epochs": 2, "phase2_epochs": 0, "max_test_rows": 16, **overrides}
    return fast_config(heads=GROCERY_HEADS, **settings)


def _train(cfg, catalog: Path, models: Path, **kwargs):
    return train(
        cfg,
        catalog,
        Registry(models, kwargs.pop("tracking_uri", None), kwargs.pop("artifacts_uri", None)),
        model=RECOGNIZER,
        device="cpu",
        log=lambda m: None,
        **kwargs,
    )


def _same_embeddings(result) -> Classifier:
    """The served version embeds exactly as the trained network, on the unit sphere."""
    served = Classifier.load(result.version_dir)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = result.model.cpu().eval().embed(x), served.model.cpu().embed(x)
    assert torch.allclose(a, b, atol=1e-6)  # served channels_last: the same numbers up to summation order
    assert torch.allclose(b.norm(dim=1), torch.ones(4), atol=1e-5)
    return served


def _check_grocery_manifest(manifest: VersionManifest, result) -> None:
    assert manifest.name == RECOGNIZER
    assert manifest.info["embedding_normalized"] is True and manifest.info["similarity"] == "cosine"
    assert manifest.metrics["test_top1_rest"] is None  # no "rest" rows: NaN, written as null
    assert manifest.metrics["test_top1_fine_label"] == pytest.approx(result.metrics["test_top1"])
    assert np.isfinite(result.metrics["test_top1_coarse_label"]) and np.isfinite(
        result.metrics["majority_rate"]
    )
    assert set(result.details.results["group"]) == {"all"}


def test_arcface_end_to_end(grocery_catalog, tmp_path):
    result = _train(_grocery_config(metric_loss="arcface", metric_weight=0.5), grocery_catalog, tmp_path)
    assert all(np.isfinite(h["train_metric_loss"]) for h in result.history)
    manifest = VersionManifest.read(result.version_dir)
    _check_grocery_manifest(manifest, result)
    metric = manifest.info["metric"]
    assert (metric["metric_loss"], metric["column"], metric["metric_weight"]) == (
        "arcface",
        "fine_label",
        0.5,
    )
    # The label map's classes, the test-only one included.
    assert metric["head"] == {
        "column": "fine_label",
        "n_classes": 7,
        "margin": 0.3,
        "scale": 16.0,
        "easy_margin": False,
    }
    assert "metric_head.weight" in torch.load(result.version_dir / "model.pt", weights_only=True)
    served = _same_embeddings(result)
    assert served.model.metric_head is not None and served.model.metric_head.weight.shape == (7, 64)
    assert VersionStore(tmp_path, RECOGNIZER).latest() == result.version
    assert not (tmp_path / "attribute_classifier").exists()  # the attribute classifier's store is untouched


def test_triplet_end_to_end_with_balanced_batches(grocery_catalog, tmp_path):
    cfg = _grocery_config(metric_loss="triplet", samples_per_class=4, triplet_distance="euclidean")
    result = _train(cfg, grocery_catalog, tmp_path)
    # 6 train classes of 14,14,12,12,6,6 rows (a few unlabelled) -> 4-row chunks, 4 classes per batch.
    assert result.history[0]["images_per_s"] > 0
    assert all(np.isfinite(h["train_metric_loss"]) for h in result.history)
    manifest = VersionManifest.read(result.version_dir)
    _check_grocery_manifest(manifest, result)
    assert manifest.info["metric"]["metric_loss"] == "triplet" and manifest.info["metric"]["head"] is None
    assert manifest.info["metric"]["samples_per_class"] == 4
    assert _same_embeddings(result).model.metric_head is None


def test_predict_embeddings_raw_or_normalised(grocery_catalog):
    from product_attrs.classification import data as cdata
    from product_attrs.classification.config import TrainConfig
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
    with pytest.raises(ConfigError, match="model name '../x'"):
        train(_grocery_config(), grocery_catalog, Registry(tmp_path), model="../x")


mlflow = pytest.importorskip("mlflow")


def test_model_name_gets_its_own_registry_entry_and_champion(grocery_catalog, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    # The attribute classifier already has a champion that a grocery model must not move.
    client.create_registered_model("attribute_classifier")
    fashion = client.create_model_version("attribute_classifier", source=str(tmp_path / "fashion"))
    client.set_registered_model_alias("attribute_classifier", "champion", fashion.version)
    result = _train(
        _grocery_config(phase1_epochs=1),
        grocery_catalog,
        tmp_path / "models",
        tracking_uri=uri,
        artifacts_uri=(tmp_path / "artifacts").as_uri(),
    )
    assert result.manifest.registered_version == "1" and result.promotion.promoted
    assert str(client.get_model_version_by_alias(RECOGNIZER, "champion").version) == "1"
    champion = client.get_model_version_by_alias("attribute_classifier", "champion")
    assert str(champion.version) == str(fashion.version)
    assert len(client.search_model_versions("name='attribute_classifier'")) == 1
    assert client.get_experiment_by_name(RECOGNIZER) is not None
    assert sorted(os.listdir(tmp_path / "models")) == [RECOGNIZER]


def _ddp_rank(rank: int, world: int, port: int, catalog: Path, out: Path, queue) -> None:
    set_ddp_env(rank, world, port)
    cfg = _grocery_config(
        phase1_epochs=1, batch_size=8, samples_per_class=4, metric_loss="arcface", max_test_rows=8
    )
    result = _train(cfg, catalog, out)
    checksum = float(sum(p.double().sum() for p in result.model.parameters()))
    queue.put((rank, len(result.history), checksum))


def test_ddp_balanced_batches_and_arcface_in_two_processes(grocery_catalog, tmp_path):
    """Each rank takes its share of the same P x K batches; the ArcMargin head's gradients are averaged."""
    import torch.multiprocessing as mp

    queue = mp.get_context("fork").SimpleQueue()
    mp.start_processes(
        _ddp_rank, args=(2, free_port(), grocery_catalog, tmp_path, queue), nprocs=2, start_method="fork"
    )
    results = sorted(queue.get() for _ in range(2))
    assert [r[:2] for r in results] == [(0, 1), (1, 1)]
    assert results[0][2] == pytest.approx(results[1][2], rel=1e-6)
    store = VersionStore(tmp_path, RECOGNIZER)
    manifest = store.manifest(store.latest())
    assert manifest.world_size == 2 and manifest.info["metric"]["head"]["n_classes"] == 7
    assert math.isfinite(manifest.metric("test_top1"))
