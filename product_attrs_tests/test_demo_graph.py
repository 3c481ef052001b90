"""The whole demo graph from an empty data folder in one materialization, with small settings."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance

from product_attrs.definitions import defs
from product_attrs.extraction.assets import image_batches
from product_attrs.extraction.extract import CATALOG_KEY
from product_attrs.warehouse.lake import reading, snapshots
from product_attrs.warehouse.sql_session import init_sql
from product_attrs_tests.classification.helpers import FAST
from product_attrs_tests.lakes import data_root_lake

#: Minutes of training would prove nothing more here than seconds do; the demo profile is measured in bench/.
FAST_RUN_CONFIG = {
    "ops": {
        "attribute_classifier": {"config": {**FAST, "phase1_epochs": 2, "phase2_epochs": 1}},
        "product_detector": {"config": {"epochs": 1, "max_steps_per_epoch": 2, "batch_size": 2}},
        "product_attributes": {"config": {"batch_size": 32, "workers": 0}},
        "product_recognizer": {"config": {**FAST, "image_size": 48, "phase1_epochs": 2, "phase2_epochs": 1}},
        # A detector trained two steps finds little: the recognition path is tested on whole photos here,
        # with detector boxes in product_attrs_tests/retrieval.
        "recognitions": {"config": {"use_detector": False}},
    }
}


def test_whole_demo_graph_from_an_empty_data_folder(data_env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PRODUCT_ATTRS_DEMO_SIZE", "small")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(image_batches.name, [CATALOG_KEY])
    # The job `dagster asset materialize --select '*' --partition catalog` runs.
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, partition_key=CATALOG_KEY, run_config=FAST_RUN_CONFIG, raise_on_error=True
    )
    assert result.success
    failed = [
        e.check_name
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity.value == "ERROR"
    ]
    assert not failed, failed
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    expected = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert materialized == expected, expected - materialized

    with reading(data_root_lake(data_env)) as con:
        n_catalog = con.execute("SELECT count(*) FROM catalog").fetchall()[0][0]
        attrs = con.execute(
            "SELECT count(*), count(DISTINCT product_id), min(article_type_confidence) "
            "FROM product_attributes"
        ).fetchall()[0]
        dim = con.execute("SELECT len(embedding) FROM product_attributes LIMIT 1").fetchall()[0][0]
        shelf = con.execute(
            "SELECT count(DISTINCT image_id), max(abs(s - 1)) FROM "
            "(SELECT image_id, sum(share_facings) AS s FROM shelf_share "
            "GROUP BY image_id HAVING sum(facings) > 0)"
        ).fetchall()[0]
        n_recs = con.execute("SELECT count(*) FROM recommendations").fetchall()[0][0]
        gallery = con.execute(
            "SELECT count(*), count(DISTINCT fine_label), max(abs(list_dot_product(embedding::FLOAT[], "
            "embedding::FLOAT[]) - 1)) FROM gallery"
        ).fetchall()[0]
        n_gallery_q = con.execute("SELECT count(*) FROM gallery_evaluation").fetchall()[0][0]
        recognized = con.execute(
            "SELECT count(*), count(DISTINCT photo), count(*) FILTER (product IS NULL) FROM recognitions"
        ).fetchall()[0]
        queue = con.execute(
            "SELECT count(*), count(*) FILTER (reasons = ''), count(DISTINCT product_id) FROM review_queue"
        ).fetchall()[0]
        shares = con.execute(
            "SELECT max(abs(s - 1)) FROM "
            "(SELECT photo, sum(share) AS s FROM shelf_product_counts GROUP BY photo)"
        ).fetchall()[0][0]
    assert attrs[0] == attrs[1] == n_catalog  # every clean product has its attributes, once
    assert attrs[2] > 0
    assert dim == FAST["embedding_dim"]
    if shelf[0]:  # a detector trained two steps may find nothing; where it does, shares sum to 1
        assert shelf[1] < 1e-6
    assert n_recs > 0
    # The small demo grocery set: 30 SKUs, one without an iconic image (a planted fault).
    assert gallery[:2] == (29, 29) and gallery[2] < 1e-4
    assert n_gallery_q > 0
    assert recognized[0] == recognized[1] == 4 and recognized[2] == 0  # 4 store photos, one product each
    assert shares < 1e-6
    assert queue[0] > 0 and queue[1] == 0 and queue[2] == queue[0]  # uncertain products, one row each

    # The README's queries, as an analyst runs them in `make sql` (one session, the same init script).
    lake = data_root_lake(data_env)
    with duckdb.connect() as con:
        for statement in init_sql(lake).splitlines():
            con.execute(statement)
        for query in readme_queries():
            con.execute(query).fetchall()
    # Every commit of the run is tagged with it; the attributes' commit names the models that wrote them.
    commits = [s["info"] for s in snapshots(lake) if s["message"]]
    assert commits and {c.get("run_id") for c in commits} == {result.run_id}
    versions = [c["models"]["classifier_version"] for c in commits if "models" in c]
    assert versions and all(len(v) == 1 and v[0].startswith("attribute_classifier/") for v in versions), (
        versions
    )


def readme_queries() -> list[str]:
    """The statements of the SQL block under the README's "Querying the warehouse"."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Querying the warehouse", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sql\n", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
