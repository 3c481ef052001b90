"""Naive Bayes on product names, and late fusion with the image model's saved test probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from product_attrs.classification.config import TextConfig
from product_attrs.classification.data import load_catalog
from product_attrs.classification.text_baseline import late_fusion, run_text_baseline, write_text_baseline
from product_attrs.modeling.versions import VersionManifest, VersionStore
from product_attrs_tests.modeling.helpers import commit_version


def _image_version(root, label_maps, write):
    return commit_version(
        root / "models",
        "attribute_classifier",
        "classification",
        torch.nn.Linear(1, 1),
        info={"label_maps": label_maps},
        write=write,
    )


def test_fusion_is_a_probability_and_respects_weight():
    img = np.array([[0.8, 0.2, 0.0]])
    txt = np.array([[0.1, 0.1, 0.8]])
    for method in ("geometric", "arithmetic"):
        fused = late_fusion(img, txt, 0.5, method)
        assert fused.sum() == pytest.approx(1.0) and (fused >= 0).all()
    assert late_fusion(img, txt, 1.0, "arithmetic").argmax() == 0
    assert late_fusion(img, txt, 0.0, "geometric").argmax() == 2


def test_text_alone_beats_majority(tiny_catalog):
    result = run_text_baseline(load_catalog(tiny_catalog), TextConfig())
    assert result.fused_with is None and set(result.evaluation.results["model"]) == {"text"}
    ev = result.evaluation
    assert ev.metric("article_type", "top20", model="text") > 0.6
    assert ev.missing_from_train["article_type"] == ["Purple Circle"]


def test_fusion_side_by_side_with_saved_image_predictions(tiny_catalog, tmp_path):
    catalog = load_catalog(tiny_catalog)
    test = catalog.split("test")
    # An image model version whose test predictions are saved as training saves them, for some test ids.
    maps = {h: catalog.label_maps[h] for h in ("article_type", "master_category", "sub_category")}
    ids = test["id"].to_numpy()[::-1][:20]
    rng = np.random.default_rng(0)
    probs = {f"probs__{h}": rng.dirichlet(np.ones(len(m)), size=len(ids)) for h, m in maps.items()}
    version = _image_version(tmp_path, maps, lambda d: np.savez(d / "test_predictions.npz", ids=ids, **probs))

    result = run_text_baseline(catalog, TextConfig(), version)
    assert result.n_test == 20 and result.fused_with == str(version)
    assert set(result.evaluation.results["model"]) == {"image", "text", "fusion"}
    assert {"image_top1", "text_top1", "fusion_top1"} <= set(result.side_by_side.columns)
    out = write_text_baseline(result, TextConfig(), catalog, tmp_path / "models")
    assert {"text_model.pkl", "manifest.json", "results.csv", "side_by_side.csv"} <= {
        p.name for p in out.iterdir()
    }
    manifest = VersionManifest.read(out)
    assert manifest.name == "text_baseline" and manifest.info["fused_with"] == str(version)
    assert manifest.metrics["fusion_article_type_all_top1"] == pytest.approx(
        result.evaluation.metric("article_type", "all", model="fusion")
    )
    assert VersionStore(tmp_path / "models", "text_baseline").latest() == out.name


def test_mismatched_label_maps_mean_no_fusion(tiny_catalog, tmp_path):
    version = _image_version(
        tmp_path, {"article_type": ["x"]}, lambda d: np.savez(d / "test_predictions.npz", ids=np.array([1]))
    )
    result = run_text_baseline(load_catalog(tiny_catalog), TextConfig(), version)
    assert result.fused_with is None
