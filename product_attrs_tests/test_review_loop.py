"""The improvement loop through Dagster, on real parts (materialize, the data root's lake, files): the review
queue from an extraction, the checked corrections, and the sensor that starts a refresh."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from product_attrs.automation import REFRESH_RUN_CONFIG, corrections_sensor, refresh_job
from product_attrs.catalog.assets import label_corrections
from product_attrs.definitions import defs
from product_attrs.extraction.assets import review_queue, warehouse_product_attributes
from product_attrs.extraction.extract import file_sha1
from product_attrs.resources import PathsResource, RegistryResource, WarehouseResource
from product_attrs.warehouse.publish import publish_tables, read_table
from product_attrs_tests.extraction.conftest import LABELS, call_product_attributes, write_classifier_version
from product_attrs_tests.extraction.conftest import write_images
from product_attrs_tests.lakes import data_root_lake


@pytest.fixture(autouse=True)
def _forget(forget_test_instance):
    yield


def _catalog(data: Path, n: int = 8) -> pd.DataFrame:
    """A catalog folder the assets read: splits (half train, half test) and label maps."""
    paths = write_images(data / "img", n)
    frame = pd.DataFrame(
        {
            "id": [int(p.stem) for p in paths],
            "image_path": [str(p) for p in paths],
            "image_sha1": [file_sha1(p) for p in paths],
            "split": ["train" if i % 2 == 0 else "test" for i in range(n)],
            "product_display_name": ["leather watch" if i % 3 else "cotton shirt" for i in range(n)],
            "article_type": ["Watches" if i % 3 else "Shirts" for i in range(n)],
            "master_category": "Accessories",
        }
    )
    (data / "catalog").mkdir(parents=True, exist_ok=True)
    frame.to_parquet(data / "catalog" / "splits.parquet", index=False)
    (data / "catalog" / "label_maps.json").write_text(json.dumps(LABELS))
    publish_tables(data_root_lake(data), {"catalog": frame[["id", "product_display_name"]]})
    return frame


def _resources() -> dict:
    return {
        "paths": PathsResource(),
        "warehouse": WarehouseResource(),
        "models": RegistryResource(tracking_uri="none"),
    }


def test_review_queue_is_published_and_exported(data_env: Path):
    catalog = _catalog(data_env)
    write_classifier_version(data_env / "models")  # a random champion: every prediction is uncertain
    call_product_attributes(data_env, "catalog")
    result = dg.materialize([warehouse_product_attributes, review_queue], resources=_resources())
    assert result.success
    queue = read_table(data_root_lake(data_env), "SELECT * FROM review_queue ORDER BY rank")
    train_ids = set(catalog.loc[catalog["split"] == "train", "id"])
    assert len(queue) > 0 and set(queue["product_id"]) <= train_ids  # the test split is never queued
    assert queue["score"].is_monotonic_decreasing and queue["rank"].tolist() == list(range(1, len(queue) + 1))
    assert (queue["reasons"] != "").all() and queue["image_path"].map(lambda p: Path(p).is_file()).all()
    assert {"predicted", "confidence", "runner_up", "margin", "predictions"} <= set(queue.columns)
    assert queue["margin"].notna().all()  # extraction now keeps the runner-up
    csv = pd.read_csv(data_env / "review" / "review_queue.csv")
    assert len(csv) == len(queue) and csv["image_url"].str.startswith("file://").all()
    html = (data_env / "review" / "review_queue.html").read_text()
    assert html.count("<img ") == len(queue) and "product_id,head,value,who,when,new_label" in html


def test_label_corrections_accepts_good_lines_and_quarantines_the_rest(data_env: Path):
    catalog = _catalog(data_env)
    train = catalog.loc[catalog["split"] == "train", "id"].tolist()
    test = catalog.loc[catalog["split"] == "test", "id"].tolist()
    folder = data_env / "corrections"
    folder.mkdir(parents=True)
    (folder / "monday.csv").write_text(
        "product_id,head,value,who,when,new_label\n"
        f"{train[0]},article_type,Shirts,ana,2026-11-29T10:00:00Z,\n"
        f"{train[1]},article_type,Sunglasses,ana,2026-11-29T10:00:00Z,yes\n"
        f"{test[0]},article_type,Shirts,ana,2026-11-29T10:00:00Z,\n"
        f"{train[2]},article_type,Socks,ana,2026-11-29T10:00:00Z,\n"
        "12345,article_type,Shirts,ana,2026-11-29T10:00:00Z,\n"
    )
    result = dg.materialize([label_corrections], resources=_resources())
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    lake = data_root_lake(data_env)
    clean = read_table(lake, "SELECT * FROM label_corrections ORDER BY product_id")
    assert clean["product_id"].tolist() == sorted(train[:2]) and clean["new_label"].sum() == 1
    q = read_table(lake, "SELECT reason FROM label_corrections_quarantine ORDER BY record_id")
    assert sorted(q["reason"]) == ["evaluation_product", "unknown_label", "unknown_product"]
    assert len(pd.read_parquet(data_env / "review" / "label_corrections.parquet")) == 2


def test_a_dropped_corrections_file_starts_a_refresh_once(data_env: Path):
    folder = data_env / "corrections"
    folder.mkdir(parents=True)
    with dg.instance_for_test() as instance:
        assert isinstance(corrections_sensor(dg.build_sensor_context(instance=instance)), dg.SkipReason)
        path = folder / "monday.csv"
        path.write_text("product_id,head,value,who,when,new_label\n1,article_type,Shirts,ana,2026-11-29,\n")
        fresh = corrections_sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(fresh, dg.SkipReason)  # still being written: waits for the next tick
        old = time.time() - 120
        os.utime(path, (old, old))
        context = dg.build_sensor_context(instance=instance)
        request = corrections_sensor(context)
        assert isinstance(request, dg.RunRequest)
        assert request.run_config == REFRESH_RUN_CONFIG and request.tags["trigger"] == "corrections"
        again = corrections_sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor))
        assert isinstance(again, dg.SkipReason)  # the same file does not start a second refresh
        path.write_text(path.read_text() + "1,master_category,Apparel,ana,2026-11-29,\n")  # edited
        os.utime(path, (old, old))
        edited = corrections_sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor))
        assert isinstance(edited, dg.RunRequest) and edited.run_key != request.run_key


def test_the_refresh_job_checks_corrections_then_trains_with_the_refresh_profile():
    job = defs.resolve_job_def(refresh_job.name)
    assert {n.name for n in job.graph.nodes} >= {"label_corrections", "attribute_classifier"}
    assert REFRESH_RUN_CONFIG["ops"]["attribute_classifier"]["config"]["profile"] == "refresh"
    assert defs.resolve_sensor_def("corrections_sensor").job_name == refresh_job.name
    assert dg.validate_run_config(job, REFRESH_RUN_CONFIG)  # the profile and its fields are accepted


def test_the_queue_ranks_uncertain_rows_first_one_row_per_product():
    from product_attrs.extraction.review import build_review_queue

    attributes = pd.DataFrame(
        {
            "product_id": [1, 1, 2, 3, 4, None, None],
            "image_key": ["a", "b", "c", "d", "e", "f", "g"],
            "image_path": ["/x"] * 7,
            "article_type": ["Shirts", "Shirts", "Watches", "Shirts", "Shirts", "Watches", "Shirts"],
            "article_type_confidence": [0.50, 0.90, 0.99, 0.55, 0.60, 0.52, 0.51],
            "article_type_runner_up": ["Watches"] * 7,
            "article_type_margin": [0.05, 0.85, 0.98, 0.15, 0.25, 0.10, 0.08],
        }
    )
    text = pd.Series(["Shirts", "Shirts", "Watches", "Shirts", "Watches", "Watches", "Shirts"])
    queue = build_review_queue(attributes, "article_type", text, exclude_ids={3})
    # 2 is sure and agrees: not queued; 3 is in the evaluation set; 4's margin is fine but the text model
    # disagrees, which outranks everything; product 1 once (image a); the images without a product id each.
    assert queue["image_key"].tolist() == ["e", "a", "g", "f"]
    assert queue["reasons"].tolist()[:2] == ["models_disagree", "small_margin"]
