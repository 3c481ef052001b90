from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from product_attrs.warehouse.publish import ParquetFiles, publish_tables, read_table


def test_publish_creates_and_replaces_tables(tmp_path: Path):
    wh = tmp_path / "warehouse.duckdb"
    counts = publish_tables(wh, {"a": pd.DataFrame({"x": [1, 2, 3]}), "b": pd.DataFrame({"y": ["p"]})})
    assert counts == {"a": 3, "b": 1}
    publish_tables(wh, {"a": pd.DataFrame({"x": [9]})}, views={"a_big": "SELECT * FROM a WHERE x > 5"})
    assert read_table(wh, "SELECT x FROM a")["x"].tolist() == [9]
    assert read_table(wh, "SELECT y FROM b")["y"].tolist() == ["p"]  # untouched tables are kept
    assert read_table(wh, "SELECT count(*) AS n FROM a_big")["n"].iloc[0] == 1
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files left behind"


def test_parquet_files_are_published_by_duckdb_with_their_stem(tmp_path: Path):
    """Every extraction batch in one table, read by DuckDB from the files, each row named by its file."""
    for name, keys in (("catalog", ["a", "b"]), ("incoming-x", ["c"])):
        pd.DataFrame({"image_key": keys, "embedding": [[1.0, 0.0]] * len(keys)}).to_parquet(
            tmp_path / f"{name}.parquet"
        )
    wh = tmp_path / "warehouse.duckdb"
    files = ParquetFiles(tuple(sorted(tmp_path.glob("*.parquet"))), stem_column="batch")
    counts = publish_tables(wh, {"attrs": files}, casts={"attrs": {"embedding": "FLOAT[2]"}})
    assert counts == {"attrs": 3}
    got = read_table(wh, "SELECT batch, image_key, typeof(embedding) AS t FROM attrs ORDER BY image_key")
    assert got["batch"].tolist() == ["catalog", "catalog", "incoming-x"]
    assert got["t"].unique().tolist() == ["FLOAT[2]"]


ANALYST = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print(con.execute("SELECT count(*) FROM a").fetchall()[0][0], flush=True)
sys.stdin.readline()
print(con.execute("SELECT count(*) FROM a").fetchall()[0][0], flush=True)
"""


def test_publish_succeeds_while_an_analyst_holds_a_read_only_connection(tmp_path: Path):
    wh = tmp_path / "warehouse.duckdb"
    publish_tables(wh, {"a": pd.DataFrame({"x": [1, 2]})})
    analyst = subprocess.Popen(
        [sys.executable, "-c", ANALYST, str(wh)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert analyst.stdout.readline().strip() == "2"  # the analyst's session is open now
        publish_tables(wh, {"a": pd.DataFrame({"x": [1, 2, 3, 4]})})
        out, _ = analyst.communicate("\n", timeout=60)
        # The open session keeps its consistent snapshot; a new session sees the new table whole.
        assert out.strip() == "2"
        assert analyst.returncode == 0
        assert read_table(wh, "SELECT count(*) AS n FROM a")["n"].iloc[0] == 4
    finally:
        analyst.kill()


def test_a_failed_publish_leaves_the_warehouse_as_it_was(tmp_path: Path):
    wh = tmp_path / "warehouse.duckdb"
    publish_tables(wh, {"a": pd.DataFrame({"x": [1]})})
    with pytest.raises(duckdb.Error):
        publish_tables(wh, {"a": pd.DataFrame({"x": [2]})}, views={"broken": "SELECT * FROM nowhere"})
    assert read_table(wh, "SELECT x FROM a")["x"].tolist() == [1]
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_next_publish_removes_the_copies_of_killed_publishes(tmp_path: Path):
    wh = tmp_path / "warehouse.duckdb"
    publish_tables(wh, {"a": pd.DataFrame({"x": [1]})})
    # What a publish killed mid-copy (SIGKILL, OOM) leaves: a copy as large as the warehouse, and its WAL.
    stale = tmp_path / ".warehouse.duckdb.0123456789abcdef0123456789abcdef.tmp"
    stale.write_bytes(wh.read_bytes()[: wh.stat().st_size // 2])
    (tmp_path / (stale.name + ".wal")).write_bytes(b"wal")
    other = tmp_path / ".other.duckdb.0123.tmp"  # another file's copy is not ours to remove
    other.write_bytes(b"x")
    publish_tables(wh, {"a": pd.DataFrame({"x": [2]})})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.duckdb.0123.tmp",
        "warehouse.duckdb",
        "warehouse.lock",
    ]
    assert read_table(wh, "SELECT x FROM a")["x"].tolist() == [2]


def test_a_publish_that_fails_mid_copy_removes_its_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import shutil

    wh = tmp_path / "warehouse.duckdb"
    publish_tables(wh, {"a": pd.DataFrame({"x": [1]})})

    def half_copy(src, dst):
        Path(dst).write_bytes(Path(src).read_bytes()[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", half_copy)
    with pytest.raises(OSError, match="No space left"):
        publish_tables(wh, {"a": pd.DataFrame({"x": [2]})})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["warehouse.duckdb", "warehouse.lock"]
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
    wh = tmp_path / "warehouse.duckdb"
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
    assert got["ts"].unique().tolist() == ["SMALLINT"] and got["te"].unique().tolist() == ["FLOAT[2]"]


def test_reading_a_missing_warehouse_fails_and_creates_nothing(tmp_path: Path):
    """Readers open read-only: a typo in the path is an error, not a new empty warehouse."""
    wh = tmp_path / "warehouse.duckdb"
    with pytest.raises(duckdb.Error):
        read_table(wh, "SELECT 1")
    assert not wh.exists()
