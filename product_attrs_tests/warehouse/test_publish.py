from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from product_attrs.warehouse.lake import LakeMissing
from product_attrs.warehouse.publish import ParquetFiles, publish_tables, read_table
from product_attrs_tests.lakes import tmp_lake


def test_publish_creates_and_replaces_tables(tmp_path: Path):
    wh = tmp_lake(tmp_path)
    counts = publish_tables(wh, {"a": pd.DataFrame({"x": [1, 2, 3]}), "b": pd.DataFrame({"y": ["p"]})})
    assert counts == {"a": 3, "b": 1}
    publish_tables(wh, {"a": pd.DataFrame({"x": [9]})}, views={"a_big": "SELECT * FROM a WHERE x > 5"})
    assert read_table(wh, "SELECT x FROM a")["x"].tolist() == [9]
    assert read_table(wh, "SELECT y FROM b")["y"].tolist() == ["p"]  # untouched tables are kept
    assert read_table(wh, "SELECT count(*) AS n FROM a_big")["n"].iloc[0] == 1


def test_parquet_files_are_published_by_duckdb_with_their_stem(tmp_path: Path):
    """Every extraction batch in one table, read by DuckDB from the files, each row named by its file."""
    for name, keys in (("catalog", ["a", "b"]), ("incoming-x", ["c"])):
        pd.DataFrame({"image_key": keys, "embedding": [[1.0, 0.0]] * len(keys)}).to_parquet(
            tmp_path / f"{name}.parquet"
        )
    wh = tmp_lake(tmp_path)
    files = ParquetFiles(tuple(sorted(tmp_path.glob("*.parquet"))), stem_column="batch")
    counts = publish_tables(wh, {"attrs": files}, casts={"attrs": {"embedding": "FLOAT[2]"}})
    assert counts == {"attrs": 3}
    got = read_table(wh, "SELECT batch, image_key, typeof(embedding) AS t FROM attrs ORDER BY image_key")
    assert got["batch"].tolist() == ["catalog", "catalog", "incoming-x"]
    assert got["t"].unique().tolist() == ["FLOAT[]"]  # DuckLake stores lists, not fixed-size arrays


ANALYST = """
import sys
from pathlib import Path
from product_attrs.warehouse.lake import Lake, connect
lake = Lake(sys.argv[1], Path(sys.argv[2]))
pinned, live = connect(lake), connect(lake)
pinned.execute("BEGIN TRANSACTION")  # a transaction reads one snapshot throughout
count = lambda c: c.execute("SELECT count(*) FROM a").fetchall()[0][0]
print(count(pinned), count(live), flush=True)
sys.stdin.readline()
print(count(pinned), count(live), flush=True)
"""


def test_publish_succeeds_while_an_analyst_holds_a_read_only_connection(tmp_path: Path):
    wh = tmp_lake(tmp_path)
    publish_tables(wh, {"a": pd.DataFrame({"x": [1, 2]})})
    analyst = subprocess.Popen(
        [sys.executable, "-c", ANALYST, wh.catalog, str(wh.data_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert analyst.stdout.readline().split() == ["2", "2"]  # the analyst's sessions are open now
        publish_tables(wh, {"a": pd.DataFrame({"x": [1, 2, 3, 4]})})
        out, _ = analyst.communicate("\n", timeout=60)
        # An analyst's transaction keeps its snapshot; the next query outside one sees the new table whole.
        assert out.split() == ["2", "4"]
        assert analyst.returncode == 0
        assert read_table(wh, "SELECT count(*) AS n FROM a")["n"].iloc[0] == 4
    finally:
        analyst.kill()


def test_a_failed_publish_leaves_the_warehouse_as_it_was(tmp_path: Path):
    wh = tmp_lake(tmp_path)
    publish_tables(wh, {"a": pd.DataFrame({"x": [1]})})
    with pytest.raises(duckdb.Error):
        publish_tables(wh, {"a": pd.DataFrame({"x": [2]})}, views={"broken": "SELECT * FROM nowhere"})
    assert read_table(wh, "SELECT x FROM a")["x"].tolist() == [1]


def test_batches_with_different_columns_are_matched_by_name(tmp_path: Path):
    """A later extraction batch may add a column or write them in another order: columns are matched by
    name, a column a batch lacks is null there, and every cast applies."""
    pd.DataFrame({"image_key": ["a"], "score": [1], "embedding": [[1.0, 0.0]]}).to_parquet(
        tmp_path / "b1.parquet"
    )
    pd.DataFrame({"embedding": [[0.0, 1.0]], "image_key": ["b"], "colour": ["red"], "score": [2]}).to_parquet(
        tmp_path / "b2.parquet"
    )
    wh = tmp_lake(tmp_path)
    files = ParquetFiles((tmp_path / "b1.parquet", tmp_path / "b2.parquet"), stem_column="batch")
    casts = {"attrs": {"embedding": "FLOAT[2]", "score": "SMALLINT"}}
    assert publish_tables(wh, {"attrs": files}, casts=casts) == {"attrs": 2}
    got = read_table(
        wh,
        "SELECT image_key, batch, colour, score, typeof(score) AS ts, typeof(embedding) AS te"
        " FROM attrs ORDER BY image_key",
    )
    assert got["image_key"].tolist() == ["a", "b"] and got["batch"].tolist() == ["b1", "b2"]
    assert got["colour"].isna().tolist() == [True, False] and got["score"].tolist() == [1, 2]
    assert got["ts"].unique().tolist() == ["SMALLINT"] and got["te"].unique().tolist() == ["FLOAT[]"]


def test_reading_a_missing_warehouse_fails_and_creates_nothing(tmp_path: Path):
    """Readers open read-only: a typo in the path is an error, not a new empty warehouse."""
    wh = tmp_lake(tmp_path)
    with pytest.raises(LakeMissing, match="nothing has been published"):
        read_table(wh, "SELECT 1")
    assert not any(tmp_path.iterdir())
