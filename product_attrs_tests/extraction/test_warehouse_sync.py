"""`warehouse_product_attributes` on a real lake: only the batches whose extraction file changed are
rewritten, a batch whose file is gone leaves the table, and the commit names the model versions."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd

from product_attrs.extraction.assets import warehouse_product_attributes
from product_attrs.resources import PathsResource, WarehouseResource
from product_attrs.warehouse.lake import reading, snapshots
from product_attrs.warehouse.publish import publish_tables
from product_attrs_tests.lakes import data_root_lake


def _batch(data: Path, name: str, ids: list[int], classifier: str) -> Path:
    path = data / "extraction" / f"{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "product_id": ids,
            "image_key": [f"{name}/{i}" for i in ids],
            "image_path": [f"/img/{i}.jpg" for i in ids],
            "article_type": ["Shirts"] * len(ids),
            "article_type_confidence": [0.9] * len(ids),
            "embedding": [[0.6, 0.8]] * len(ids),  # Python floats: DOUBLE in the file
            "classifier_version": classifier,
            "detector_version": None,
        }
    ).to_parquet(path, index=False)
    return path


def _run() -> dict:
    result = dg.materialize(
        [warehouse_product_attributes], resources={"paths": PathsResource(), "warehouse": WarehouseResource()}
    )
    assert result.success
    md = result.asset_materializations_for_node("warehouse_product_attributes")[0].metadata
    return {k: v.value for k, v in md.items()}


def test_only_changed_batches_are_rewritten(data_env: Path):
    lake = data_root_lake(data_env)
    publish_tables(
        lake, {"catalog": pd.DataFrame({"id": [1, 2, 3, 4], "product_display_name": list("abcd")})}
    )
    _batch(data_env, "catalog", [1, 2, 3], "attribute_classifier/v1")
    second = _batch(data_env, "incoming-a", [4], "attribute_classifier/v1")

    first = _run()
    assert (first["batches_written"], first["batches_unchanged"]) == (["catalog", "incoming-a"], 0)
    assert first["dagster/row_count"] == 4

    again = _run()  # nothing changed: nothing is rewritten
    assert (again["batches_written"], again["batches_removed"], again["batches_unchanged"]) == ([], [], 2)

    _batch(data_env, "catalog", [1, 2], "attribute_classifier/v2")  # re-extracted by a new champion
    retrained = _run()
    assert (retrained["batches_written"], retrained["batches_unchanged"]) == (["catalog"], 1)
    with reading(lake) as con:
        rows = con.execute(
            "SELECT batch, count(*), any_value(classifier_version), any_value(typeof(embedding)) "
            "FROM product_attributes GROUP BY ALL ORDER BY 1"
        ).fetchall()
        view = con.execute("SELECT count(*) FROM v_product_attributes").fetchall()[0][0]
    assert rows == [
        ("catalog", 2, "attribute_classifier/v2", "FLOAT[]"),
        ("incoming-a", 1, "attribute_classifier/v1", "FLOAT[]"),
    ]
    assert view == 3
    info = snapshots(lake)[-1]["info"]
    assert info["models"]["classifier_version"] == ["attribute_classifier/v1", "attribute_classifier/v2"]

    second.unlink()
    removed = _run()
    assert (removed["batches_written"], removed["batches_removed"]) == ([], ["incoming-a"])
    with reading(lake) as con:
        assert con.execute("SELECT DISTINCT batch FROM product_attributes").fetchall() == [("catalog",)]
