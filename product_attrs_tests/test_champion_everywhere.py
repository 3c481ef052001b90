"""One answer to "which model": after a worse retrain of every model, every consumer still serves the
champion.

The classifier, the detector and the recognizer are each trained twice through their assets, the second
time far worse. Then extraction, the ONNX export, the text fusion, the gallery, the recognitions and the
share of shelf run, and each must have used the first versions: with MLflow (the registry alias decides)
and without it (the stores' CHAMPION pointers decide).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import DagsterInstance

from product_attrs.warehouse.lake import reading
from product_attrs_tests.lakes import data_root_lake
from product_attrs.definitions import defs
from product_attrs.extraction.batches import CATALOG_KEY
from product_attrs.modeling.versions import VersionStore
from product_attrs_tests.classification.helpers import FAST

TRAININGS = ["attribute_classifier", "product_detector", "product_recognizer"]
INGESTION = [
    "raw_styles",
    "image_manifest",
    "catalog",
    "catalog_splits",
    "detection_dataset",
    "grocery_catalog",
    "warehouse_catalog",
]
CONSUMERS = [
    "product_attributes",
    "warehouse_product_attributes",
    "product_detector_onnx",
    "text_baseline",
    "gallery_index",
    "recognitions",
    "shelf_share",
]
GOOD = {
    "attribute_classifier": {**FAST, "phase1_epochs": 2, "phase2_epochs": 1},
    "product_recognizer": {**FAST, "image_size": 48, "phase1_epochs": 2, "phase2_epochs": 1},
    "product_detector": {
        "epochs": 2,
        "max_steps_per_epoch": 4,
        "batch_size": 2,
        "min_size": 160,
        "max_size": 224,
        "fpn_channels": 32,
        "box_head_dim": 64,
        "warmup_iters": 2,
    },
}
#: The same models trained one step at a learning rate that cannot move them: worse on every metric.
WORSE = {
    "attribute_classifier": {
        **GOOD["attribute_classifier"],
        "phase1_epochs": 1,
        "phase2_epochs": 0,
        "phase1_lr": 1e-7,
        "pretrained": "none",
    },
    "product_recognizer": {
        **GOOD["product_recognizer"],
        "phase1_epochs": 1,
        "phase2_epochs": 0,
        "phase1_lr": 1e-7,
        "pretrained": "none",
    },
    "product_detector": {
        **GOOD["product_detector"],
        "epochs": 1,
        "max_steps_per_epoch": 1,
        "lr": 1e-9,
        "pretrained": False,
    },
}


def _run(instance, selection: list[str], config: dict, raise_on_error: bool = True):
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={_key(a) for a in selection}
    )
    return job.execute_in_process(
        instance=instance,
        partition_key=CATALOG_KEY,
        raise_on_error=raise_on_error,
        run_config={"ops": {k: {"config": v} for k, v in config.items()}},
    )


def _key(name: str):
    from dagster import AssetKey

    return AssetKey(name)


def _metadata(result, asset: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.mark.parametrize("mlflow", ["on", "off"])
def test_every_consumer_serves_the_champion_after_a_worse_retrain(data_env: Path, monkeypatch, mlflow):
    monkeypatch.setenv("PRODUCT_ATTRS_DEMO_SIZE", "small")
    if mlflow == "off":
        monkeypatch.setenv("PRODUCT_ATTRS_MLFLOW_TRACKING_URI", "none")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("image_batches", [CATALOG_KEY])
    _run(instance, INGESTION + TRAININGS, GOOD)
    _run(instance, TRAININGS, WORSE, raise_on_error=False)  # blocking checks may fail: that is their job

    stores = {name: VersionStore(data_env / "models", name) for name in TRAININGS}
    champion = {}
    for name, store in stores.items():
        first, second = store.versions()
        worse = store.manifest(second)
        metric = {"product_detector": "mAP"}.get(name, "test_top1")
        assert worse.metric(metric) <= store.manifest(first).metric(metric), name
        assert not worse.promotion["promoted"] and worse.promotion["champion_version"] == first, name
        assert store.latest() == second and store.champion() == first, name
        assert (worse.registered_version is not None) == (mlflow == "on")
        champion[name] = f"{name}/{first}"

    served = _run(
        instance,
        CONSUMERS,
        {
            "product_attributes": {"batch_size": 32, "workers": 0, "detect": "always"},
            # A detector trained a few steps scores low: keep every box, so that recognitions has rows.
            "recognitions": {"score_thresh": 0.0},
        },
    )
    assert _metadata(served, "product_attributes")["classifier"] == champion["attribute_classifier"]
    assert _metadata(served, "product_attributes")["detector"] == champion["product_detector"]
    assert (
        _metadata(served, "product_detector_onnx")["detector"] == champion["product_detector"].split("/")[1]
    )
    assert _metadata(served, "text_baseline")["fused_with"].endswith(champion["attribute_classifier"])
    assert _metadata(served, "gallery_index")["recognizer"].startswith(champion["product_recognizer"])
    assert _metadata(served, "recognitions")["recognizer"] == champion["product_recognizer"]
    assert _metadata(served, "recognitions")["detector"] == champion["product_detector"]
    assert _metadata(served, "shelf_share")["detector"] == champion["product_detector"]
    with reading(data_root_lake(data_env)) as con:
        served_by = {
            f"{t}.{c}": con.execute(f"SELECT DISTINCT {c} FROM {t}").fetchall()
            for t, c in (
                ("product_attributes", "classifier_version"),
                ("product_attributes", "detector_version"),
                ("gallery", "model_version"),
                ("recognitions", "model_version"),
                ("recognitions", "detector_version"),
            )
        }
    assert served_by == {
        "product_attributes.classifier_version": [(champion["attribute_classifier"],)],
        "product_attributes.detector_version": [(champion["product_detector"],)],
        "gallery.model_version": [(champion["product_recognizer"],)],
        "recognitions.model_version": [(champion["product_recognizer"],)],
        "recognitions.detector_version": [(champion["product_detector"],)],
    }
    onnx = json.loads(
        (
            stores["product_detector"].path(champion["product_detector"].split("/")[1]) / "onnx_parity.json"
        ).read_text()
    )
    assert onnx["onnx"].endswith("model.onnx")
