"""The fusion weight learned on the image model's validation predictions: the choice follows validation,
never test, and without validation predictions the fixed weight applies exactly as before."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from product_attrs.classification import text_baseline as tb
from product_attrs.classification.config import TextConfig
from product_attrs.classification.data import encode_labels, load_catalog
from product_attrs.classification.text_baseline import (
    choose_fusion,
    fit_temperature,
    late_fusion,
    run_text_baseline,
    with_temperature,
    write_text_baseline,
)
from product_attrs.modeling.versions import VersionManifest
from product_attrs_tests.classification.test_text_baseline import _image_version

HEADS = ("article_type", "master_category", "sub_category")


def _onehot(labels: pd.Series, classes: list[str], rng: np.random.Generator, right: bool) -> np.ndarray:
    """Confident probabilities: on the true class (right) or on a random wrong one."""
    probs = np.full((len(labels), len(classes)), 0.01 / len(classes))
    for i, label in enumerate(labels.astype("object").where(labels.notna(), None)):
        true = classes.index(label) if label in classes else 0
        pick = true if right else rng.choice([c for c in range(len(classes)) if c != true])
        probs[i, pick] += 0.99
    return probs / probs.sum(axis=1, keepdims=True)


def _version(tmp_path, catalog, val_image_right: bool | None, seed: int = 0):
    """An image version with random test probabilities and, unless None, validation predictions on half of
    the train rows that are always right or always (confidently) wrong."""
    rng = np.random.default_rng(seed)
    maps = {h: catalog.label_maps[h] for h in HEADS}
    test_ids = catalog.split("test")["id"].to_numpy()
    train = catalog.split("train")
    val = train.iloc[::2]

    def write(d):
        np.savez(
            d / "test_predictions.npz",
            ids=test_ids,
            **{f"probs__{h}": rng.dirichlet(np.ones(len(m)), size=len(test_ids)) for h, m in maps.items()},
        )
        if val_image_right is not None:
            np.savez(
                d / "val_predictions.npz",
                ids=val["id"].to_numpy(),
                **{f"probs__{h}": _onehot(val[h], m, rng, val_image_right) for h, m in maps.items()},
            )

    return _image_version(tmp_path, maps, write), val


def test_useless_image_on_validation_means_a_small_image_weight(tiny_catalog, tmp_path):
    catalog = load_catalog(tiny_catalog)
    version, val = _version(tmp_path, catalog, val_image_right=False)
    result = run_text_baseline(catalog, TextConfig(), version)
    f = result.fusion
    assert f.source == "validation" and f.weight <= 0.2 and f.n_val == len(val)
    assert f.val_top1 == max(f.val_top1_by_weight.values()) >= f.val_top1_text > f.val_top1_image == 0.0
    assert f.val_top1_fixed < f.val_top1 and f.refit is True
    # The validation table scores all three models on those rows; the manifest and files record the choice.
    assert set(result.validation.results["model"]) == {"image", "text", "fusion"}
    assert result.validation.metric("article_type", model="image") == 0.0
    out = write_text_baseline(result, TextConfig(), catalog, tmp_path / "models")
    manifest = VersionManifest.read(out)
    assert manifest.info["fusion"]["weight"] == f.weight and manifest.info["fusion"]["source"] == "validation"
    assert manifest.metrics["fusion_image_weight"] == f.weight
    assert manifest.metrics["fusion_val_top1"] == pytest.approx(f.val_top1)
    assert json.loads((out / "fusion.json").read_text())["val_top1_by_weight"] == f.val_top1_by_weight
    assert (out / "validation_results.csv").exists()


def test_a_perfect_image_on_validation_gets_at_least_half(tiny_catalog, tmp_path):
    catalog = load_catalog(tiny_catalog)
    version, _ = _version(tmp_path, catalog, val_image_right=True)
    f = run_text_baseline(catalog, TextConfig(), version).fusion
    assert f.val_top1 == 1.0 and f.weight >= 0.5


def test_test_rows_never_decide(tiny_catalog, tmp_path, monkeypatch):
    catalog = load_catalog(tiny_catalog)
    version, val = _version(tmp_path, catalog, val_image_right=False)
    first = run_text_baseline(catalog, TextConfig(), version)
    # Shuffle every test label: the test scores change, the choice may not.
    frame = catalog.frame.copy()
    is_test = (frame["split"] == "test").fillna(False).to_numpy(bool)
    for h in HEADS:
        frame.loc[is_test, h] = frame.loc[is_test, h].sample(frac=1.0, random_state=1).to_numpy()
    second = run_text_baseline(dataclasses.replace(catalog, frame=frame), TextConfig(), version)
    assert second.fusion == first.fusion
    assert second.evaluation.results["top1"].tolist() != first.evaluation.results["top1"].tolist()

    # The Naive Bayes the weight is chosen with never saw the validation rows; the refit sees all train.
    fitted: list[set[int]] = []
    real_fit = tb.fit_text_model
    monkeypatch.setattr(
        tb, "fit_text_model", lambda train, *a: fitted.append(set(train["id"])) or real_fit(train, *a)
    )
    run_text_baseline(catalog, TextConfig(), version)
    train_ids, val_ids = set(catalog.split("train")["id"]), set(val["id"])
    assert fitted == [train_ids - val_ids, train_ids]
    fitted.clear()
    kept = run_text_baseline(catalog, TextConfig(fusion_refit=False), version)
    assert fitted == [train_ids - val_ids] and kept.fusion.refit is False


def test_without_validation_predictions_the_fixed_weight_applies_as_before(tiny_catalog, tmp_path):
    catalog = load_catalog(tiny_catalog)
    version, _ = _version(tmp_path, catalog, val_image_right=None)
    cfg = TextConfig(fusion_weight=0.3)
    result = run_text_baseline(catalog, cfg, version)
    assert result.fusion.source == "fixed" and result.fusion.weight == 0.3 and result.validation is None
    # Exactly the old computation: NB on all train rows, late_fusion with the fixed weight.
    test, train = catalog.split("test"), catalog.split("train")
    maps = {h: catalog.label_maps[h] for h in HEADS}
    text = tb.fit_text_model(train, list(HEADS), maps, cfg).predict_proba(tb._texts(test))
    with np.load(version / "test_predictions.npz") as npz:
        image = {h: npz[f"probs__{h}"] for h in HEADS}
    y = encode_labels(test, cfg.head_specs(), maps)[:, 0]
    fused = late_fusion(image["article_type"], text["article_type"], 0.3, "geometric")
    assert result.evaluation.metric("article_type", model="fusion") == pytest.approx(
        float((fused.argmax(1) == y)[y >= 0].mean())
    )
    # With validation predictions but tuning off: the fixed weight too.
    tuned_off, _ = _version(tmp_path / "b", catalog, val_image_right=False)
    off = run_text_baseline(catalog, TextConfig(fusion_weight=0.3, fusion_tune=False), tuned_off)
    assert off.fusion.source == "fixed" and off.fusion.weight == 0.3 and off.validation is None


def test_choice_ties_go_to_the_weight_nearest_half_and_temperatures_fit():
    # Both models right on every row: every weight ties, 0.5 wins.
    targets = np.array([[0], [1], [2]])
    right = np.eye(3) * 0.9 + 0.1 / 3
    cfg = TextConfig(heads="article_type")
    choice = choose_fusion({"article_type": right}, {"article_type": right}, targets, ["article_type"], cfg)
    assert choice.weight == 0.5 and choice.val_top1 == 1.0 and choice.temperatures == {}
    # An over-confident model whose top class is right 60% of the time gets a temperature above 1.
    rng = np.random.default_rng(0)
    n, k = 500, 5
    y = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.6, y, (y + 1) % k)
    probs = np.full((n, k), 1e-4)
    probs[np.arange(n), pred] = 1.0
    probs /= probs.sum(axis=1, keepdims=True)
    t = fit_temperature(probs, y)
    assert t > 1.5
    assert with_temperature(probs, t)[np.arange(n), pred].mean() == pytest.approx(0.6, abs=0.1)
    tuned = choose_fusion(
        {"article_type": probs},
        {"article_type": probs},
        y[:, None],
        ["article_type"],
        TextConfig(heads="article_type", fusion_temperature=True),
    )
    assert tuned.temperatures["article_type"]["image"] == pytest.approx(t)
