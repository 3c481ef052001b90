from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from product_attrs.warehouse.publish import publish_tables, read_table


def test_publish_creates_and_replaces_tables(tmp_path: Path):
    wh = tmp_path / "warehouse.duckdb"
    counts = publish_tables(wh, {"a": pd.DataFrame({"x": [1, 2, 3]}), "b": pd.DataFrame({"y": ["p"]})})
    assert counts == {"a": 3, "b": 1}
    publish_tables(wh, {"a": pd.DataFrame({"x": [9]})}, views={"a_big": "SELECT * FROM a WHERE x > 5"})
    assert read_table(wh, "SELECT x FROM a")["x"].tolist() == [9]
    assert read_table(wh, "SELECT y FROM b")["y"].tolist() == ["p"]  # untouched tables are kept
    assert read_table(wh, "SELECT count(*) AS n FROM a_big")["n"].iloc[0] == 1
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files left behind"


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
