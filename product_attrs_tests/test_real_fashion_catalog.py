"""The ingest_catalog job on the real Fashion Product Images catalog, checked against a plain reading."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from product_attrs.warehouse.lake import reading
from product_attrs_tests.lakes import data_root_lake
from product_attrs_tests.conftest import real_data_dir

pytestmark = pytest.mark.real_data


def independent_reading(root: Path) -> dict:
    """What the files say, read without any project code."""
    with open(root / "styles.csv", newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))[1:]
    ids = [int(r[0]) for r in lines]
    images = {p.name: p for p in (root / "images").iterdir()}
    missing = {i for i in ids if f"{i}.jpg" not in images}
    empty = {i for i in ids if f"{i}.jpg" in images and images[f"{i}.jpg"].stat().st_size == 0}
    gray = set()
    for i in set(ids) - missing - empty:
        with Image.open(images[f"{i}.jpg"]) as img:
            if img.mode != "RGB":
                gray.add(i)
    return {
        "ids": set(ids),
        "long": sum(len(r) == 11 for r in lines),
        "missing": missing,
        "empty": empty,
        "gray": gray,
    }


def test_ingest_catalog_job_on_real_fashion_catalog(data_env: Path, monkeypatch: pytest.MonkeyPatch):
    root = real_data_dir("fashion-product-images-small")
    coco = real_data_dir("tiny-coco")
    monkeypatch.setenv("PRODUCT_ATTRS_CATALOG_DIR", str(root))
    monkeypatch.setenv("PRODUCT_ATTRS_DETECTION_DIR", str(coco))
    from product_attrs.definitions import defs

    result = defs.resolve_job_def("ingest_catalog").execute_in_process(raise_on_error=True)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())

    truth = independent_reading(root)
    assert truth["long"] == 22 and len(truth["missing"]) == 326 and len(truth["empty"]) == 3
    with reading(data_root_lake(data_env)) as con:
        catalog_ids = {r[0] for r in con.execute("SELECT id FROM catalog").fetchall()}
        q = con.execute("SELECT record_id, reason FROM quarantine WHERE source = 'catalog'").fetchall()
        styles_q = con.execute("SELECT count(*) FROM quarantine WHERE source = 'styles.csv'").fetchall()[0][0]
        splits = dict(con.execute("SELECT split, count(*) FROM catalog GROUP BY 1").fetchall())
        paths = dict(con.execute("SELECT id, image_path FROM catalog").fetchall())
        coco_q = con.execute("SELECT count(*) FROM quarantine WHERE source = 'detection'").fetchall()[0][0]
    reasons = {int(i): r for i, r in q}
    assert {i for i, r in reasons.items() if r == "missing_image"} == truth["missing"]
    assert {i for i, r in reasons.items() if r == "empty_file"} == truth["empty"]
    assert styles_q == 0  # all 22 long lines were repaired, none quarantined
    assert catalog_ids == truth["ids"] - truth["missing"] - truth["empty"]
    assert len(truth["gray"]) == 128
    for i in truth["gray"]:
        with Image.open(paths[i]) as img:
            assert img.mode == "RGB"
    assert set(splits) == {"train", "test"}  # the row without a year has no image
    assert coco_q == 0  # tiny-coco is clean: all 197 boxes kept, the crowd box flagged not dropped

    import pandas as pd

    styles = pd.read_parquet(data_env / "catalog" / "styles.parquet")
    assert int(styles["repaired"].sum()) == 22
    repaired = styles.set_index("id").loc[44065]
    assert repaired["product_display_name"] == "Perfume and Body Mist, Blue"
