"""The nightly schedule and the incoming-folder sensor, evaluated against an ephemeral instance."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

from dagster import (
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
)

import pytest

from product_attrs.automation import incoming_images_sensor, nightly_retrain
from product_attrs.definitions import defs
from product_attrs_tests.extraction.conftest import write_images


@pytest.fixture(autouse=True)
def _forget(forget_test_instance):
    yield


def test_sensor_turns_a_finished_incoming_folder_into_one_batch(data_env: Path):
    incoming = data_env / "incoming"
    write_images(incoming / "batch-001", 3)
    write_images(incoming / "still-copying", 1)
    old = time.time() - 300
    for p in [*(incoming / "batch-001").iterdir(), incoming / "batch-001"]:
        os.utime(p, (old, old))
    with instance_for_test() as instance:
        result = incoming_images_sensor(build_sensor_context(instance=instance))
        assert isinstance(result, SensorResult)
        assert [r.partition_key for r in result.run_requests] == ["incoming-batch-001"]
        assert result.dynamic_partitions_requests[0].partition_keys == ["incoming-batch-001"]
        # Once the partition exists, the same folder is not requested again.
        instance.add_dynamic_partitions("image_batches", ["incoming-batch-001"])
        again = incoming_images_sensor(build_sensor_context(instance=instance))
        assert isinstance(again, SkipReason)


def test_nightly_schedule_retrains_with_the_full_profile_and_reextracts_the_catalog():
    with instance_for_test() as instance:
        context = build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 11, 24, 2, tzinfo=timezone.utc)
        )
        request = nightly_retrain(context)
        assert request.partition_key == "catalog"
        assert request.run_config["ops"]["attribute_classifier"]["config"]["profile"] == "full"
        assert request.run_config["ops"]["product_detector"]["config"]["profile"] == "full"
        assert "catalog" in instance.get_dynamic_partitions("image_batches")
    job = defs.resolve_job_def("nightly_retrain_and_extract")
    selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert {"attribute_classifier", "product_detector", "product_attributes", "recommendations"} <= selected


def test_no_asset_that_runs_a_model_holds_a_writer_slot():
    """Lake commits need no exclusion; a slot held while a model loads and runs would only make SQL steps
    queue behind it."""
    from product_attrs.automation import WRITER_SLOTS, pool_limits
    from product_attrs.definitions import defs
    from product_attrs.resources import DUCKDB_POOL

    writers = {}
    for node in defs.resolve_asset_graph().asset_nodes:
        op = node.assets_def.op if node.assets_def.is_executable else None
        if op is not None and op.pool == DUCKDB_POOL:
            writers[node.key.to_user_string()] = node.assets_def.required_resource_keys
    assert writers and all(not ({"models", "compute"} & keys) for keys in writers.values()), writers
    assert "warehouse_product_attributes" in writers and "shelf_share" not in writers
    assert pool_limits()[DUCKDB_POOL] == WRITER_SLOTS == 4
