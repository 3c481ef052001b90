"""The Dagster side: Config generated from the dataclass, assets materialised on the tiny catalog."""

from __future__ import annotations

import dataclasses
import json

import dagster as dg
import pytest

from product_attrs.classification.assets import (
    AttributeClassifierConfig,
    TextBaselineConfig,
    attribute_classifier,
    attribute_classifier_is_champion,
    classification_assets,
    classification_checks,
    text_baseline,
    train_config_from,
)
from product_attrs.classification.config import TextConfig, TrainConfig
from product_attrs.resources import GPU_POOL, ComputeResource, PathsResource
from product_attrs_tests.classification.conftest import make_tiny_catalog
from product_attrs_tests.classification.helpers import FAST


def test_config_is_generated_from_the_dataclass():
    assert set(AttributeClassifierConfig.model_fields) == {"profile"} | {
        f.name for f in dataclasses.fields(TrainConfig)
    }
    assert set(TextBaselineConfig.model_fields) == {f.name for f in dataclasses.fields(TextConfig)}
    assert train_config_from(AttributeClassifierConfig(profile="full")).backbone == "resnet50"
    assert train_config_from(AttributeClassifierConfig(image_size=48)).image_size == 48


def test_asset_wiring():
    spec = attribute_classifier.specs_by_key[dg.AssetKey("attribute_classifier")]
    assert dg.AssetKey("catalog_splits") in {d.asset_key for d in spec.deps}
    assert spec.group_name == "training"
    assert attribute_classifier.op.pool == GPU_POOL
    text_deps = {d.asset_key for d in text_baseline.specs_by_key[dg.AssetKey("text_baseline")].deps}
    assert text_deps == {dg.AssetKey("catalog_splits"), dg.AssetKey("attribute_classifier")}
    assert classification_assets == [attribute_classifier, text_baseline]
    assert classification_checks == [attribute_classifier_is_champion]
    assert next(iter(attribute_classifier_is_champion.check_specs)).blocking


def _materialize(data_dir, config: dict):
    return dg.materialize(
        [attribute_classifier, attribute_classifier_is_champion, text_baseline],
        resources={"paths": PathsResource(data_dir=str(data_dir)), "compute": ComputeResource(device="cpu")},
        run_config={"ops": {"attribute_classifier": {"config": config}}},
        raise_on_error=False,
    )


def _check(result) -> dg.AssetCheckEvaluation:
    return result.get_asset_check_evaluations()[0]


@pytest.mark.slow
def test_materialize_registers_champion_and_fuses(tmp_path):
    make_tiny_catalog(tmp_path, scale=2)
    first = _materialize(tmp_path, dict(FAST))
    assert first.success
    meta = first.asset_materializations_for_node("attribute_classifier")[0].metadata
    assert meta["test_top1"].value > meta["majority_rate"].value
    assert "| image | article_type | top20 |" in meta["results"].value
    assert meta["registered_version"].value == "1"
    assert _check(first).passed
    text_meta = first.asset_materializations_for_node("text_baseline")[0].metadata
    assert "fusion_top1" in text_meta["side_by_side"].value

    # A much worse model is registered but does not take the champion alias. The check fails: as an
    # error that blocks downstream when it does not even beat the majority rate, else as a warning.
    worse = _materialize(tmp_path, {**FAST, "phase1_epochs": 1, "phase2_epochs": 0, "phase1_lr": 1e-6})
    check = _check(worse)
    assert not check.passed
    if check.metadata["beats_majority"].value:
        assert check.severity == dg.AssetCheckSeverity.WARN
        assert worse.asset_materializations_for_node("text_baseline")
    else:
        assert check.severity == dg.AssetCheckSeverity.ERROR
        assert not worse.asset_materializations_for_node("text_baseline")  # blocked downstream
    models = tmp_path / "models" / "attribute_classifier"
    manifest = json.loads((models / (models / "LATEST").read_text().strip() / "model.json").read_text())
    assert manifest["promotion"]["promoted"] is False and manifest["promotion"]["champion_version"] == "1"
    assert (tmp_path / "mlflow" / "mlflow.db").is_file()
    # The registered models carry their weights and manifest (a version folder) inside their artifacts.
    assert len(list((tmp_path / "mlflow" / "artifacts").rglob("extra_files/model.pt"))) == 2
