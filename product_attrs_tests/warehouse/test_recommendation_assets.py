"""The analytics assets materialized on the small demo data, on a real lake (SQLite catalog)."""

from __future__ import annotations


import dagster as dg
import numpy as np
import pandas as pd
import pytest

from product_attrs.catalog.assets import catalog_assets
from product_attrs.resources import PathsResource, WarehouseResource
from product_attrs.sample_data.generate import generate_all
from product_attrs.warehouse.assets import (
    analytics_assets,
    customer_attribute_affinity,
    similar_products,
    warehouse_catalog,
)
from product_attrs.warehouse.lake import Lake, reading
from product_attrs.warehouse.publish import publish_tables
from product_attrs_tests.lakes import data_root_lake


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    for e in result.get_asset_materialization_events():
        if e.asset_key.to_user_string() == asset:
            return {k: v.value for k, v in e.materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")


@pytest.fixture(scope="module")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, dg.ExecuteInProcessResult]:
    """Small demo data, the catalog ingested by the lead's assets, then every analytics asset."""
    data_dir = tmp_path_factory.mktemp("analytics") / "data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRODUCT_ATTRS_DATA_DIR", str(data_dir))
        for name in (
            "PRODUCT_ATTRS_CATALOG_DIR",
            "PRODUCT_ATTRS_DETECTION_DIR",
            "PRODUCT_ATTRS_INTERACTIONS",
        ):
            mp.delenv(name, raising=False)
        mp.setenv("PRODUCT_ATTRS_WORKERS", "2")
        generate_all(data_dir / "demo", small=True)
        resources = {"paths": PathsResource(), "warehouse": WarehouseResource()}
        assert dg.materialize([*catalog_assets, warehouse_catalog], resources=resources).success
        result = dg.materialize(analytics_assets, resources=resources)
    return data_root_lake(data_dir), result


def test_assets_publish_the_tables_and_pass_their_checks(demo_warehouse):
    warehouse, result = demo_warehouse
    assert result.success
    checks = _checks(result)
    assert checks == {name: True for name in checks}
    assert {
        "every_event_accounted_for",
        "k_recommendations_per_customer",
        "no_purchased_product_recommended",
        "shares_sum_to_one",
        "beats_popularity_baseline",
    } <= set(checks)

    events = _metadata(result, "customer_interactions")
    assert events["dagster/row_count"] + events["quarantined"] == events["rows_read"]
    # Events on products the catalog quarantined (no image, broken file) are quarantined in turn.
    assert set(events["quarantine_reasons"]) <= {"unknown_product"}

    recs = _metadata(result, "recommendations")
    assert recs["customers"] == 40 and recs["dagster/row_count"] == 400
    assert recs["hit_rate@10"] > recs["popularity_hit_rate@10"]
    assert recs["ndcg@10"] > 1.5 * recs["popularity_ndcg@10"]

    with reading(warehouse) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert {
            "catalog",
            "customer_interactions",
            "interactions_quarantine",
            "customer_attribute_affinity",
            "recommendations",
            "recommendation_metrics",
            "v_customer_top_attributes",
            "v_recommendations_explained",
            "v_quarantine_all",
        } <= tables
        assert "similar_products" not in tables  # no product_attributes yet: skipped
        n_all, n_catalog, n_events = con.execute(
            "SELECT (SELECT count(*) FROM v_quarantine_all), (SELECT count(*) FROM quarantine), "
            "(SELECT count(*) FROM interactions_quarantine)"
        ).fetchall()[0]
        assert n_all == n_catalog + n_events and n_events == events["quarantined"]
        bought_recommended = con.execute(
            "SELECT count(*) FROM recommendations r JOIN customer_interactions i "
            "ON i.customer_id = r.customer_id AND i.product_id = r.product_id AND i.event_type = 'purchase'"
        ).fetchall()[0][0]
        assert bought_recommended == 0
        customer = con.execute("SELECT min(customer_id) FROM recommendations").fetchall()[0][0]
        live = con.execute("SELECT product_id, reason FROM recommend_for($c)", {"c": customer}).fetchall()
        stored = con.execute(
            "SELECT product_id, reason FROM v_recommendations_explained WHERE customer_id = $c ORDER BY rank",
            {"c": customer},
        ).fetchall()
        assert live == stored


def test_predicted_attributes_are_used_and_similar_products_appear(
    demo_warehouse, monkeypatch: pytest.MonkeyPatch
):
    warehouse, _ = demo_warehouse
    monkeypatch.setenv("PRODUCT_ATTRS_DATA_DIR", str(warehouse.data_path.parent.parent))
    with reading(warehouse) as con:
        catalog = con.execute(
            "SELECT id, article_type, master_category, sub_category FROM catalog ORDER BY id"
        ).df()
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((len(catalog), 8)).astype(np.float32)
    emb[1] = emb[0] + 0.01  # a known nearest neighbour
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    predicted = pd.DataFrame(
        {
            "product_id": catalog["id"].astype("Int64"),
            "article_type": catalog["article_type"],
            "article_type_confidence": 0.9,
            "master_category": catalog["master_category"],
            "master_category_confidence": 0.9,
            "sub_category": catalog["sub_category"],
            "sub_category_confidence": 0.9,
            "embedding": list(emb),
        }
    )
    # As the extraction writes it: a row per image (a second, less confident image of the first
    # product; an image without a product id) and a fixed-size FLOAT[n] array.
    extra = predicted.iloc[[0, 1]].copy()
    extra["article_type_confidence"] = 0.1
    extra["product_id"] = pd.array([predicted["product_id"].iloc[0], pd.NA], dtype="Int64")
    extra["embedding"] = [-emb[0], emb[0]]
    predicted = pd.concat([predicted, extra], ignore_index=True)
    publish_tables(
        warehouse, {"product_attributes": predicted}, casts={"product_attributes": {"embedding": "FLOAT[8]"}}
    )
    result = dg.materialize(
        [customer_attribute_affinity, similar_products],
        resources={"paths": PathsResource(), "warehouse": WarehouseResource()},
    )
    assert result.success
    assert all(_checks(result).values())
    assert _metadata(result, "customer_attribute_affinity")["label_sources"] == {"predicted": len(catalog)}
    sim = _metadata(result, "similar_products")
    assert sim["products"] == len(catalog) and sim["embedding_dim"] == 8
    first, second = int(catalog["id"].iloc[0]), int(catalog["id"].iloc[1])
    with reading(warehouse) as con:
        top = con.execute(
            "SELECT similar_product_id FROM similar_products WHERE product_id = $p AND rank = 1", {"p": first}
        ).fetchall()
        live = con.execute("SELECT similar_product_id FROM similar_to($p, k := 1)", {"p": first}).fetchall()
    assert top == live == [(second,)]
