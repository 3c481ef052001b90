"""A partition key is typed in a UI without login: it must never lead a read or a write out of the data
root."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import pytest

from product_attrs.automation import incoming_images_sensor, incoming_keys, ready_folders, register_batches
from product_attrs.extraction.batches import UnsafePartitionKey, check_key, incoming_key
from product_attrs.extraction.extract import batch_output, items_for_batch
from product_attrs_tests.extraction.conftest import (
    call_product_attributes,
    write_classifier_version,
    write_images,
)

HOSTILE = [
    "incoming-../../../x",
    "incoming-..",
    "incoming-",
    "incoming-.hidden",
    "incoming-a/b",
    "incoming-/etc",
    "incoming-x\x00",
    "catalog/../../x",
    "incoming-" + "a" * 200,
    "",
]


@pytest.mark.parametrize("key", HOSTILE)
def test_a_key_that_could_leave_the_data_root_is_refused_before_anything_is_read(tmp_path: Path, key: str):
    incoming = tmp_path / "data" / "incoming"
    write_images(tmp_path / "x", 2)  # what "../../x" would reach from incoming
    write_images(incoming / "a" / "b", 1)
    with pytest.raises(UnsafePartitionKey):
        items_for_batch(key, tmp_path / "no-splits.parquet", incoming)
    with pytest.raises(UnsafePartitionKey):
        batch_output(key, tmp_path / "data" / "extraction")


def test_safe_keys_pass_and_a_symlinked_folder_out_of_incoming_is_refused(tmp_path: Path):
    for key in ("catalog", "catalog-0-of-3", "incoming-batch-001", "incoming-2026.01.31_shop_7"):
        assert check_key(key) == key
    incoming = tmp_path / "incoming"
    write_images(tmp_path / "elsewhere", 2)
    incoming.mkdir()
    (incoming / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafePartitionKey, match="leads outside"):
        items_for_batch("incoming-link", tmp_path / "no-splits.parquet", incoming)
    assert ready_folders(incoming, min_age_seconds=0) == []  # the sensor does not offer it either


def test_the_asset_refuses_a_hostile_key_and_writes_nothing(data_env: Path):
    write_classifier_version(data_env / "models")
    write_images(data_env / "x", 2)  # <data>/incoming/../x: a folder the key would scan
    (data_env / "incoming").mkdir()
    key = "incoming-../x"
    with pytest.raises(dg.Failure, match="may contain only letters"):
        call_product_attributes(data_env, key)
    assert not list(data_env.rglob("*.parquet"))


def test_the_sensor_skips_a_folder_whose_name_cannot_be_a_key(data_env: Path, forget_test_instance):
    incoming = data_env / "incoming"
    for name in ("batch-001", "new photos", "café"):
        write_images(incoming / name, 1)
    old = time.time() - 300
    for p in incoming.rglob("*"):
        os.utime(p, (old, old))
    keys, refused = incoming_keys(ready_folders(incoming, 30))
    assert keys == ["incoming-batch-001"]
    assert len(refused) == 2 and all("incoming folder name" in r for r in refused)
    with pytest.raises(UnsafePartitionKey):
        incoming_key("new photos")
    with dg.instance_for_test() as instance:
        result = incoming_images_sensor(dg.build_sensor_context(instance=instance))
        assert [r.partition_key for r in result.run_requests] == ["incoming-batch-001"]
        assert result.dynamic_partitions_requests[0].partition_keys == ["incoming-batch-001"]
        with pytest.raises(UnsafePartitionKey):
            register_batches(instance, ["incoming-../x"])
        assert "incoming-../x" not in instance.get_dynamic_partitions("image_batches")
