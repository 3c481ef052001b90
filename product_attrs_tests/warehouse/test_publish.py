from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from product_attrs.warehouse.lake import LakeMissing, snapshots
from product_attrs.warehouse.publish import (
    ParquetFiles,
    Partition,
    append_partition,
    publish_tables,
    read_table,
    sync_partitions,
    upsert,
)
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


def _types(lake, table: str) -> dict[str, str]:
    sql = f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{table}'"
    rows = read_table(lake, sql)
    return dict(zip(rows["column_name"], rows["data_type"]))


def test_casts_apply_to_partitions_and_upserts_and_a_cast_of_a_missing_column_is_ignored(tmp_path: Path):
    lake = tmp_lake(tmp_path)
    cast = {"score": "SMALLINT", "absent": "INTEGER"}
    frame = pd.DataFrame({"batch": ["b1"], "score": [3]})
    append_partition(lake, "p", frame, column="batch", key="b1", casts=cast)
    publish_tables(
        lake,
        {},
        casts={"q": cast},
        partitions={"q": Partition(pd.DataFrame({"batch": ["b1"], "score": [4]}), "batch", "b1")},
    )
    upsert(lake, "u", pd.DataFrame({"k": [1], "score": [5]}), keys=["k"], casts=cast)
    for table in ("p", "q", "u"):
        assert _types(lake, table)["score"] == "SMALLINT", table
        assert "absent" not in _types(lake, table)


def test_a_partition_that_first_arrives_empty_takes_text_later(tmp_path: Path):
    """An empty frame's object columns would be guessed INTEGER, and the next partition's reasons would not
    fit: they are created as text."""
    lake = tmp_lake(tmp_path)
    empty = pd.DataFrame({"folder": pd.Series([], dtype=object), "reason": pd.Series([], dtype=object)})
    assert append_partition(lake, "quarantine", empty, column="folder", key="a") == 0
    none = pd.DataFrame({"folder": ["b"], "reason": [None]})
    assert append_partition(lake, "quarantine", none, column="folder", key="b") == 1
    late = pd.DataFrame({"folder": ["c"], "reason": ["unreadable_image"], "n": [1]})
    assert append_partition(lake, "quarantine", late, column="folder", key="c") == 1
    assert _types(lake, "quarantine")["reason"] == "VARCHAR" and _types(lake, "quarantine")["n"] == "BIGINT"
    assert read_table(lake, "SELECT reason FROM quarantine WHERE folder = 'c'")["reason"].tolist() == [
        "unreadable_image"
    ]


def test_an_upsert_matches_on_every_key(tmp_path: Path):
    lake = tmp_lake(tmp_path)
    upsert(lake, "u", pd.DataFrame({"a": [1, 1], "b": ["x", "y"], "v": [10, 20]}), keys=["a", "b"])
    later = pd.DataFrame({"a": [1, 2], "b": ["y", "y"], "v": [21, 30]})
    assert upsert(lake, "u", later, keys=["a", "b"]) == 2
    got = read_table(lake, "SELECT a, b, v FROM u ORDER BY ALL")
    assert got.values.tolist() == [[1, "x", 10], [1, "y", 21], [2, "y", 30]]


def test_commit_messages_and_info_say_what_changed(tmp_path: Path):
    lake = tmp_lake(tmp_path)
    publish_tables(lake, {"a": pd.DataFrame({"x": [1]}), "b": pd.DataFrame({"x": [2]})}, info={"run_id": "r"})
    publish_tables(lake, {}, views={"v": "SELECT * FROM a"})
    one = pd.DataFrame({"batch": ["b1"]})
    append_partition(lake, "p", one, column="batch", key="b1", info={"run_id": "r"})
    upsert(lake, "u", pd.DataFrame({"k": [1]}), keys=["k"])
    (tmp_path / "files").mkdir()
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "files" / "b1.parquet")
    sync_partitions(lake, "s", {"b1": tmp_path / "files" / "b1.parquet"}, column="batch")
    got = [(s["message"], s["info"]) for s in snapshots(lake)[1:]]
    assert got == [
        ("replace a, b", {"run_id": "r"}),
        ("replace views", {}),
        ("replace p[batch=b1]", {"run_id": "r", "batch": "b1"}),
        ("upsert u", {}),
        ("sync s", {}),
    ]


def test_sync_casts_makes_views_and_keeps_its_record_of_files(tmp_path: Path):
    lake = tmp_lake(tmp_path)
    folder = tmp_path / "files"
    folder.mkdir()
    for name, n in (("b1", 2), ("b2", 1)):
        pd.DataFrame({"k": range(n), "embedding": [[0.5, 0.5]] * n}).to_parquet(folder / f"{name}.parquet")
    files = {p.stem: p for p in sorted(folder.glob("*.parquet"))}
    views = {"v": "SELECT k FROM s"}
    first = sync_partitions(lake, "s", files, column="batch", casts={"embedding": "FLOAT[]"}, views=views)
    assert first.counts == {"s": 3} and first.written == ("b1", "b2")
    assert _types(lake, "s")["embedding"] == "FLOAT[]"
    assert read_table(lake, "SELECT count(*) AS n FROM v")["n"].tolist() == [3]
    record = """SELECT "partition", fingerprint FROM lake_partitions WHERE "table" = 's' ORDER BY 1"""
    assert read_table(lake, record)["partition"].tolist() == ["b1", "b2"]
    before = len(snapshots(lake))
    again = sync_partitions(lake, "s", files, column="batch")
    assert (again.written, again.removed, again.unchanged) == ((), (), 2)
    # Nothing changed: nothing is written, not even the record, so no snapshot is made.
    assert len(snapshots(lake)) == before
    assert read_table(lake, "SELECT count(*) AS n FROM lake_partitions")["n"].tolist() == [2]
    gone = sync_partitions(lake, "s", {}, column="batch")
    assert gone.removed == ("b1", "b2") and gone.counts == {"s": 0}
    assert read_table(lake, "SELECT count(*) AS n FROM lake_partitions")["n"].tolist() == [0]
    assert sync_partitions(lake, "never", {}, column="batch").counts == {"never": 0}


def test_sync_rewrites_every_partition_of_a_table_it_has_no_record_of(tmp_path: Path):
    """A table that came from elsewhere (the migrated warehouse): no record of files, so all are written."""
    lake = tmp_lake(tmp_path)
    publish_tables(lake, {"s": pd.DataFrame({"k": [9], "batch": ["old"]})})
    pd.DataFrame({"k": [1]}).to_parquet(tmp_path / "b1.parquet")
    result = sync_partitions(lake, "s", {"b1": tmp_path / "b1.parquet"}, column="batch")
    assert result.written == ("b1",) and result.counts == {"s": 2}
