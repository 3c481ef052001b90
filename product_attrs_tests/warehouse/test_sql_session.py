"""`make sql`: the lake opened read-only in Harlequin (through its DuckDB adapter), and `-c` for one query."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from product_attrs.warehouse.publish import publish_tables
from product_attrs.warehouse.sql_session import init_sql
from product_attrs_tests.lakes import data_root_lake

REPO = Path(__file__).resolve().parents[2]


def _sql(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "product_attrs.warehouse.sql_session", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_one_query_runs_through_the_init_script(data_env: Path):
    publish_tables(data_root_lake(data_env), {"catalog": pd.DataFrame({"id": [1, 2, 3]})})
    out = _sql("-c", "SELECT count(*) AS n FROM catalog")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["n", "3"]


def test_the_session_cannot_write(data_env: Path):
    publish_tables(data_root_lake(data_env), {"catalog": pd.DataFrame({"id": [1]})})
    out = _sql("-c", "INSERT INTO catalog VALUES (2)")
    assert out.returncode != 0 and "read-only" in out.stderr.lower()


def test_without_a_lake_it_says_what_to_run(data_env: Path):
    out = _sql("-c", "SELECT 1")
    assert out.returncode == 2 and "make demo" in out.stdout
    assert not (data_env / "lake").exists()


def test_harlequin_opens_the_lake_with_the_init_script(data_env: Path, tmp_path: Path):
    """What `make sql` starts: Harlequin's DuckDB adapter on an in-memory database, then the init script."""
    pytest.importorskip("harlequin_duckdb", reason="harlequin is installed by `make` (the sql extra)")
    from harlequin_duckdb.adapter import DuckDbAdapter

    lake = data_root_lake(data_env)
    publish_tables(lake, {"catalog": pd.DataFrame({"id": [1, 2, 3]})}, views={"v": "SELECT id FROM catalog"})
    script = tmp_path / "init.sql"
    script.write_text(init_sql(lake))
    connection = DuckDbAdapter((":memory:",), init_path=script).connect()
    cursor = connection.execute("SELECT count(*) FROM v")
    assert cursor is not None and cursor.fetchall().to_pylist() == [{"count_star()": 3}]
    names = {item.label for item in connection.get_catalog().items}
    assert "lake" in names


def test_the_init_script_is_what_a_plain_duckdb_session_needs(data_env: Path):
    lake = data_root_lake(data_env)
    publish_tables(lake, {"catalog": pd.DataFrame({"id": [7]})})
    with duckdb.connect() as con:
        for statement in init_sql(lake).splitlines():
            con.execute(statement)
        assert con.execute("SELECT id FROM catalog").fetchall() == [(7,)]
