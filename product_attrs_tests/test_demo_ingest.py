"""The ingestion graph on the generated demo data: every planted fault ends where it should."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from dagster import materialize
from PIL import Image

from product_attrs.warehouse.lake import reading
from product_attrs_tests.lakes import data_root_lake
from product_attrs.catalog.assets import catalog_assets
from product_attrs.detection.assets import detection_boxes_accounted_for, detection_dataset
from product_attrs.resources import PathsResource, WarehouseResource
from product_attrs.sample_data.generate import generate_all
from product_attrs.warehouse.assets import warehouse_catalog


def test_ingestion_graph_on_demo_data(data_env: Path):
    generate_all(data_env / "demo", small=True)
    faults = json.loads((data_env / "demo" / "catalog" / "faults.json").read_text())

    result = materialize(
        [*catalog_assets, detection_dataset, detection_boxes_accounted_for, warehouse_catalog],
        resources={"paths": PathsResource(), "warehouse": WarehouseResource()},
    )
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks and all(checks.values()), checks

    with reading(data_root_lake(data_env)) as con:
        q = con.execute("SELECT source, record_id, reason FROM quarantine").df()
        cat = con.execute("SELECT * FROM catalog").df().set_index("id")
    by_id = q[q["source"] == "catalog"].set_index("record_id")["reason"].to_dict()
    for pid in faults["missing_images"]:
        assert by_id[str(pid)] == "missing_image"
    for pid in faults["zero_byte"]:
        assert by_id[str(pid)] == "empty_file"
    for pid in faults["truncated"] + faults["not_an_image"]:
        assert by_id[str(pid)] == "undecodable_image"

    lines = q[q["source"] == "styles.csv"].set_index("record_id")["reason"].to_dict()
    for bad in faults["unrepairable_lines"]:
        assert f"line:{bad['line']}" in lines
    dup_line = faults["duplicate_id_lines"][0]["lines"][1]
    assert lines[f"line:{dup_line}"] == "duplicate_id"

    styles = pd.read_parquet(data_env / "catalog" / "styles.parquet").set_index("id")
    assert sorted(styles.index[styles["repaired"]]) == sorted(x["id"] for x in faults["long_lines"])
    assert "," in styles.loc[faults["long_lines"][0]["id"], "product_display_name"]

    for kind in ("grayscale", "cmyk", "rgba", "palette", "exif_rotated"):
        for pid in faults[kind]:
            with Image.open(cat.loc[pid, "image_path"]) as img:
                assert img.mode == "RGB", (kind, pid)
                if kind == "exif_rotated":
                    assert img.size == (60, 80)
    for pid in faults["no_year"]:
        if pid in cat.index:
            assert cat.loc[pid, "split"] == "unassigned"
    # Every parsed row is either clean or quarantined, exactly once.
    assert len(cat) + len(by_id) == len(styles)
    assert set(cat.index).isdisjoint(int(i) for i in by_id)
    assert set(cat["split"]) <= {"train", "test", "unassigned"} and {"train", "test"} <= set(cat["split"])

    det = q[q["source"] == "detection"]
    assert "degenerate_box" in set(det["reason"])
    boxes = pd.read_parquet(data_env / "detection" / "boxes.parquet")
    assert boxes["iscrowd"].sum() == 1 and boxes["clipped"].sum() >= 1


def test_demo_inputs_are_generated_when_the_data_folder_is_empty(data_env: Path):
    from product_attrs.catalog.assets import image_manifest, raw_styles

    result = materialize([raw_styles, image_manifest], resources={"paths": PathsResource()})
    assert result.success
    assert (data_env / "demo" / "catalog" / "styles.csv").exists()
    assert (data_env / "catalog" / "image_manifest.parquet").exists()


def test_a_named_catalog_folder_that_is_missing_is_a_clear_error(data_env: Path, monkeypatch):
    import pytest
    from product_attrs.catalog.assets import raw_styles
    from product_attrs.demo import MissingInputError

    monkeypatch.setenv("PRODUCT_ATTRS_CATALOG_DIR", str(data_env / "nowhere"))
    with pytest.raises(MissingInputError, match="PRODUCT_ATTRS_CATALOG_DIR"):
        materialize([raw_styles], resources={"paths": PathsResource()})
