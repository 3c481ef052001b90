"""The Dagster side: Config generated from the dataclass, assets materialised on the tiny catalog."""

from __future__ import annotations

import dataclasses
import dagster as dg
import pytest

from product_attrs.classification.assets import (
    ClassifierConfig,
    TextBaselineConfig,
    attribute_classifier,
    attribute_classifier_is_champion,
    classification_assets,
    classification_checks,
    product_recognizer,
    product_recognizer_is_champion,
    text_baseline,
)
from product_attrs.classification.config import PROFILES, TEXT_PROFILES, TextConfig, TrainConfig
from product_attrs.modeling.assets import ENGINE_FIELDS, resolve_config
from product_attrs.modeling.versions import VersionStore
from product_attrs.resources import TRAINING_POOL, ComputeResource, PathsResource, RegistryResource
from product_attrs_tests.classification.conftest import make_tiny_catalog
from product_attrs_tests.classification.helpers import FAST


def test_config_is_generated_from_the_dataclass():
    assert set(ClassifierConfig.model_fields) == {"profile", *ENGINE_FIELDS} | {
        f.name for f in dataclasses.fields(TrainConfig)
    }
    assert set(TextBaselineConfig.model_fields) == {"profile"} | {
        f.name for f in dataclasses.fields(TextConfig)
    }
    assert resolve_config(ClassifierConfig(profile="full"), TrainConfig, PROFILES).backbone == "resnet50"
    assert resolve_config(ClassifierConfig(image_size=48), TrainConfig, PROFILES).image_size == 48
    assert (
        resolve_config(TextBaselineConfig(fusion_weight=0.3), TextConfig, TEXT_PROFILES).fusion_weight == 0.3
    )


def test_asset_wiring():
    spec = attribute_classifier.specs_by_key[dg.AssetKey("attribute_classifier")]
    assert dg.AssetKey("catalog_splits") in {d.asset_key for d in spec.deps}
    assert spec.group_name == "training"
    assert attribute_classifier.op.pool == TRAINING_POOL
    text_deps = {d.asset_key for d in text_baseline.specs_by_key[dg.AssetKey("text_baseline")].deps}
    assert text_deps == {dg.AssetKey("catalog_splits"), dg.AssetKey("attribute_classifier")}
    assert classification_assets == [attribute_classifier, text_baseline, product_recognizer]
    assert classification_checks == [attribute_classifier_is_champion, product_recognizer_is_champion]
    recognizer = product_recognizer.specs_by_key[dg.AssetKey("product_recognizer")]
    assert recognizer.group_name == "recognition" and product_recognizer.op.pool == TRAINING_POOL
    assert next(iter(attribute_classifier_is_champion.check_specs)).blocking
    assert attribute_classifier.op.retry_policy.max_retries >= 1  # a killed training is retried (and resumes)


def _materialize(data_dir, config: dict):
    return dg.materialize(
        [attribute_classifier, attribute_classifier_is_champion, text_baseline],
        resources={
            "paths": PathsResource(data_dir=str(data_dir)),
            "models": RegistryResource(data_dir=str(data_dir)),
            "compute": ComputeResource(device="cpu"),
        },
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
    if check.metadata["beats_floor"].value:
        assert check.severity == dg.AssetCheckSeverity.WARN
        assert worse.asset_materializations_for_node("text_baseline")
    else:
        assert check.severity == dg.AssetCheckSeverity.ERROR
        assert not worse.asset_materializations_for_node("text_baseline")  # blocked downstream
    store = VersionStore(tmp_path / "models", "attribute_classifier")
    first_version, second_version = store.versions()
    manifest = store.manifest(store.latest())
    assert store.latest() == second_version and store.champion() == first_version
    assert manifest.promotion["promoted"] is False and manifest.promotion["champion_version"] == first_version
    assert manifest.registered_version == "2"
    assert (tmp_path / "mlflow" / "mlflow.db").is_file()
    # The registered models carry their version folder (weights and manifest) in their artifacts.
    logged = list((tmp_path / "mlflow" / "artifacts").rglob("model/manifest.json"))
    assert len(logged) == 2 and len(list((tmp_path / "mlflow" / "artifacts").rglob("model/model.pt"))) == 2
