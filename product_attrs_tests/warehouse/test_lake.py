"""The lake as its users rely on it, on a SQLite catalog and on a real PostgreSQL server's (``lake``).

What a commit writes and leaves alone (data files compared before and after), partitions, upserts, synced
files, time travel by the model versions recorded in each snapshot, writers and readers in separate
processes at once, the one-time migration of the old ``warehouse.duckdb``, and the errors a wrong setting
gives. Tables of 1000 rows have data files; a few rows are inlined in the catalog instead.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import sqlite3
import time
import traceback
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from product_attrs.settings import ENV_LAKE_CATALOG, ENV_LAKE_DATA, get_settings
from product_attrs.warehouse import lake as lake_module
from product_attrs.warehouse.lake import (
    LAKE,
    Lake,
    LakeError,
    LakeMissing,
    migrate_once,
    reading,
    relations,
    snapshots,
)
from product_attrs.warehouse.publish import (
    append_partition,
    publish_tables,
    read_table,
    read_tables,
    sync_partitions,
    upsert,
)
from product_attrs_tests.warehouse import lake_procs, postgres
from product_attrs_tests.warehouse.lake_procs import ROWS, batch_frame

MIGRATED = "migrate warehouse.duckdb"


# --- helpers -------------------------------------------------------------------------------------------


def files_of(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, tuple[str | None, int, int]]:
    """The table's live data files: path -> (its delete file, size and mtime on disk)."""
    rows = con.execute("SELECT data_file, delete_file FROM ducklake_list_files(?, ?)", [LAKE, table])
    out = {}
    for data_file, delete_file in rows.fetchall():
        st = Path(data_file).stat()
        out[str(data_file)] = (delete_file, st.st_size, st.st_mtime_ns)
    return out


def changes(con: duckdb.DuckDBPyConnection, snapshot_id: int) -> dict[str, list[str]]:
    """What a snapshot did, as DuckLake records it (tables_created, views_created, ...)."""
    rows = con.execute(f"SELECT changes FROM {LAKE}.snapshots() WHERE snapshot_id = ?", [snapshot_id])
    return {k: list(v) for k, v in rows.fetchall()[0][0].items()}


def last_snapshot(con: duckdb.DuckDBPyConnection) -> int:
    return int(one(con, f"SELECT max(snapshot_id) FROM {LAKE}.snapshots()"))


def one(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    return con.execute(sql).fetchall()[0][0]


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def numbers(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"x": range(start, start + n)})


@pytest.fixture(scope="module")
def procs() -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    """Five spawned processes (multiprocessing's spawn context), started once for the module: the tests
    then time the commits, not Python importing DuckDB and pandas in each new process."""
    pool = concurrent.futures.ProcessPoolExecutor(5, mp_context=multiprocessing.get_context("spawn"))
    try:
        pids = {f.result(timeout=120) for f in [pool.submit(lake_procs.ready, 0.5) for _ in range(5)]}
        assert len(pids) == 5 and os.getpid() not in pids, "five processes of their own"
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --- publish_tables ------------------------------------------------------------------------------------


def test_publish_replaces_tables_views_and_a_macro_in_one_snapshot_and_leaves_other_tables_alone(lake: Lake):
    publish_tables(lake, {"keep": numbers(ROWS)})
    with reading(lake) as con:
        keep_files = files_of(con, "keep")
        before = last_snapshot(con)
    assert keep_files, "1000 rows are a data file, not inlined: the comparison below compares files"

    counts = publish_tables(
        lake,
        {"items": numbers(ROWS), "labels": pd.DataFrame({"x": [1, 2], "label": ["a", "b"]})},
        views={"big_items": "SELECT x FROM items WHERE x >= 990"},
        macros=[
            f"CREATE OR REPLACE MACRO {LAKE}.main.top_items(n) AS TABLE "
            "SELECT x FROM items ORDER BY x DESC LIMIT n"
        ],
    )

    assert counts == {"items": ROWS, "labels": 2}
    with reading(lake) as con:
        assert last_snapshot(con) == before + 1, "one publish is one snapshot"
        made = changes(con, before + 1)
        assert set(made["tables_created"]) == {"main.items", "main.labels"}
        assert made["views_created"] == ["main.big_items"]
        assert made["table_macros_created"] == ["main.top_items"]
        assert rows(con, "SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM labels)") == [(ROWS, 2)]
        assert one(con, "SELECT count(*) FROM big_items") == 10
        assert rows(con, "SELECT x FROM top_items(3)") == [(999,), (998,), (997,)]
        assert rows(con, "SELECT count(*), sum(x) FROM keep") == [(ROWS, sum(range(ROWS)))]
        assert files_of(con, "keep") == keep_files, "a table not named is not rewritten"

    publish_tables(lake, {"items": numbers(5, start=100)})
    with reading(lake) as con:
        assert rows(con, "SELECT x FROM items ORDER BY x") == [(x,) for x in range(100, 105)]
        assert files_of(con, "keep") == keep_files


def test_a_fixed_size_array_is_stored_as_a_list_that_cosine_similarity_takes(lake: Lake):
    frame = pd.DataFrame(
        {"id": [1, 2, 3], "embedding": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]}
    )
    publish_tables(lake, {"vectors": frame}, casts={"vectors": {"embedding": "FLOAT[4]"}})

    with reading(lake) as con:
        got = rows(
            con,
            "SELECT id, typeof(embedding), list_cosine_similarity(embedding, [1, 0, 0, 0]::FLOAT[]) "
            "FROM vectors ORDER BY id",
        )
        declared = one(
            con,
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'vectors' AND column_name = 'embedding'",
        )
    assert declared == "FLOAT[]", "cast to FLOAT (not pandas' DOUBLE), as a list (DuckLake has no arrays)"
    assert {t for _, t, _ in got} == {"FLOAT[]"}
    assert [sim for *_, sim in got] == pytest.approx([1.0, 0.0, 0.5**0.5], abs=1e-6)


# --- partitions ----------------------------------------------------------------------------------------


def test_a_partition_is_replaced_alone_checked_for_its_key_and_may_bring_a_new_column(lake: Lake):
    assert append_partition(lake, "events", batch_frame("b1"), column="batch", key="b1") == ROWS
    assert append_partition(lake, "events", batch_frame("b2"), column="batch", key="b2") == ROWS
    with reading(lake) as con:
        files = files_of(con, "events")
        batch_of = {f: one(con, f"SELECT string_agg(DISTINCT batch) FROM read_parquet('{f}')") for f in files}
        b2_rows = rows(con, "SELECT * FROM events WHERE batch = 'b2' ORDER BY i")
    b2_files = {f: v for f, v in files.items() if batch_of[f] == "b2"}
    assert b2_files and set(batch_of.values()) == {"b1", "b2"}, "a data file per batch"

    # Replacing b1 rewrites b1 only.
    assert append_partition(lake, "events", batch_frame("b1", 300), column="batch", key="b1") == 300
    with reading(lake) as con:
        now = files_of(con, "events")
        assert {f: now[f] for f in b2_files} == b2_files, "b2's files neither rewritten nor given deletes"
        assert not {f for f in files if batch_of[f] == "b1"} & set(now), "b1's old file is gone"
        assert rows(con, "SELECT * FROM events WHERE batch = 'b2' ORDER BY i") == b2_rows
        per_batch = rows(con, "SELECT batch, count(*) FROM events GROUP BY 1 ORDER BY 1")
        before = rows(con, f"SELECT snapshot_id FROM {LAKE}.snapshots()")
    assert per_batch == [("b1", 300), ("b2", ROWS)]

    # A frame for b1 holding a row of b2 is refused, and nothing is written.
    stray = pd.concat([batch_frame("b1", 10), batch_frame("b2", 1)])
    with pytest.raises(ValueError, match=r"events\[batch=b1\]: rows with another batch"):
        append_partition(lake, "events", stray, column="batch", key="b1")
    with reading(lake) as con:
        assert rows(con, f"SELECT snapshot_id FROM {LAKE}.snapshots()") == before, "no commit"
        assert files_of(con, "events") == now
        assert rows(con, "SELECT batch, count(*) FROM events GROUP BY 1 ORDER BY 1") == per_batch

    # A later partition with a new column: the column is added, older rows hold NULL.
    newer = batch_frame("b3", 3).assign(color=["red", "green", "blue"])
    assert append_partition(lake, "events", newer, column="batch", key="b3") == 3
    with reading(lake) as con:
        got = rows(con, "SELECT batch, count(*), count(color) FROM events GROUP BY 1 ORDER BY 1")
        colors = one(con, "SELECT string_agg(color, ',' ORDER BY i) FROM events WHERE batch = 'b3'")
    assert got == [("b1", 300, 0), ("b2", ROWS, 0), ("b3", 3, 3)]
    assert colors == "red,green,blue"


# --- upsert --------------------------------------------------------------------------------------------


def test_upsert_replaces_the_rows_whose_keys_arrive_and_adds_the_others(lake: Lake):
    first = pd.DataFrame({"id": [1, 2, 3], "name": ["one", "two", "three"]})
    assert upsert(lake, "names", first, keys=["id"]) == 3
    assert upsert(lake, "names", pd.DataFrame({"id": [2, 4], "name": ["TWO", "four"]}), keys=["id"]) == 2

    with reading(lake) as con:
        got = rows(con, "SELECT id, name FROM names ORDER BY id")
        messages = rows(con, f"SELECT commit_message FROM {LAKE}.snapshots() WHERE snapshot_id > 0")
    assert got == [(1, "one"), (2, "TWO"), (3, "three"), (4, "four")]
    assert messages == [("upsert names",), ("upsert names",)]


# --- sync_partitions -----------------------------------------------------------------------------------


def _write_batch_file(folder: Path, batch: str, n: int) -> Path:
    """As extraction writes a batch: a new file renamed into place."""
    path = folder / f"{batch}.parquet"
    tmp = folder / f".{batch}.tmp"
    batch_frame(batch, n).drop(columns="batch").to_parquet(tmp)
    os.replace(tmp, path)
    return path


def test_sync_rewrites_only_changed_files_removes_deleted_ones_and_publishes_also_in_the_same_snapshot(
    lake: Lake, tmp_path: Path
):
    folder = tmp_path / "extraction"
    folder.mkdir()
    files = {b: _write_batch_file(folder, b, ROWS) for b in ("b1", "b2", "b3")}

    first = sync_partitions(
        lake, "attrs", files, column="batch", also={"quarantine": pd.DataFrame({"k": [1]})}
    )
    assert (first.written, first.removed, first.unchanged) == (("b1", "b2", "b3"), (), 0)
    assert first.counts == {"quarantine": 1, "attrs": 3 * ROWS}
    with reading(lake) as con:
        before = files_of(con, "attrs")
        synced = last_snapshot(con)
        assert {"main.attrs", "main.quarantine"} <= set(changes(con, synced)["tables_created"])

    _write_batch_file(folder, "b2", 400)
    second = sync_partitions(
        lake, "attrs", files, column="batch", also={"quarantine": pd.DataFrame({"k": [1, 2]})}
    )
    assert (second.written, second.removed, second.unchanged) == (("b2",), (), 2)
    assert second.counts == {"quarantine": 2, "attrs": 2 * ROWS + 400}
    with reading(lake) as con:
        assert last_snapshot(con) == synced + 1, "the partitions and the `also` table: one snapshot"
        assert "main.quarantine" in changes(con, synced + 1)["tables_created"]
        after = files_of(con, "attrs")
    kept = {k: v for k, v in before.items() if k in after}
    assert len(kept) == len(before) - 1, "one file (b2's) replaced"
    assert kept == {k: after[k] for k in kept}, "b1's and b3's files untouched"

    files.pop("b3").unlink()
    third = sync_partitions(lake, "attrs", files, column="batch")
    assert (third.written, third.removed, third.unchanged) == ((), ("b3",), 2)
    with reading(lake) as con:
        assert rows(con, "SELECT batch, count(*) FROM attrs GROUP BY 1 ORDER BY 1") == [
            ("b1", ROWS),
            ("b2", 400),
        ]
        assert one(con, "SELECT count(*) FROM quarantine") == 2


# --- time travel and commit info -----------------------------------------------------------------------

#: What an analyst writes to see "what did we predict before the retrain": the snapshot just before the
#: first one written by the new classifier (a later commit of another table lists no model at all, so
#: "the last snapshot without v2" would be the wrong one), then the table as it was then.
BEFORE_RETRAIN = """
SET VARIABLE before_retrain = (
    SELECT max(snapshot_id) FROM lake.snapshots()
    WHERE snapshot_id < (
        SELECT min(snapshot_id) FROM lake.snapshots()
        WHERE list_contains(json_extract_string(commit_extra_info, '$.models.classifier_version[*]'), $new)
    )
)
"""
PREDICTED_THEN = (
    "SELECT id, label, classifier_version FROM product_attributes "
    "AT (VERSION => getvariable('before_retrain')) ORDER BY id"
)


def test_time_travel_finds_the_predictions_before_a_retrain_by_the_versions_in_the_commit_info(lake: Lake):
    def attributes(version: str) -> pd.DataFrame:
        labels = [f"shirt-{version}", f"shoe-{version}"]
        return pd.DataFrame({"id": [1, 2], "label": labels, "classifier_version": version})

    for run, version in (("run-1", "v1"), ("run-2", "v2")):
        publish_tables(
            dataclasses.replace(lake, tags={"run_id": run}),
            {"product_attributes": attributes(version)},
            info={"models": {"classifier_version": [version]}},
        )
    publish_tables(dataclasses.replace(lake, tags={"run_id": "run-3"}), {"catalog": numbers(3)})

    shots = snapshots(lake)[1:]
    assert [s["info"] for s in shots] == [
        {"run_id": "run-1", "models": {"classifier_version": ["v1"]}},
        {"run_id": "run-2", "models": {"classifier_version": ["v2"]}},
        {"run_id": "run-3"},
    ]
    assert [s["message"] for s in shots] == ["replace product_attributes"] * 2 + ["replace catalog"]
    v1 = shots[0]["snapshot_id"]

    with reading(lake) as con:
        at_v1 = rows(con, f"SELECT label FROM product_attributes AT (VERSION => {v1}) ORDER BY id")
        assert at_v1 == [("shirt-v1",), ("shoe-v1",)]
        assert rows(con, "SELECT label FROM product_attributes ORDER BY id") == [("shirt-v2",), ("shoe-v2",)]

        con.execute(BEFORE_RETRAIN, {"new": "v2"})
        assert one(con, "SELECT getvariable('before_retrain')") == v1
        assert rows(con, PREDICTED_THEN) == [(1, "shirt-v1", "v1"), (2, "shoe-v1", "v1")]


# --- readers and writers at once -----------------------------------------------------------------------


def test_an_open_reader_keeps_its_snapshot_while_a_writer_commits_and_a_new_reader_sees_the_commit(
    lake: Lake,
):
    publish_tables(lake, {"items": numbers(ROWS)})
    count = "SELECT count(*) FROM items"
    with reading(lake) as open_reader:
        assert one(open_reader, count) == ROWS
        started = time.monotonic()
        publish_tables(lake, {"items": numbers(2 * ROWS)})
        assert time.monotonic() - started < 30, "the writer is not held up by the open reader"
        assert one(open_reader, count) == ROWS, "the open reader keeps its snapshot"
        with reading(lake) as new_reader:
            assert one(new_reader, count) == 2 * ROWS
        assert one(open_reader, "SELECT sum(x) FROM items") == sum(range(ROWS))
    assert read_tables(lake, {"n": count})["n"].iloc[0, 0] == 2 * ROWS


def test_four_writers_at_once_all_commit_and_a_reader_never_sees_half_a_batch(
    lake: Lake, procs: concurrent.futures.ProcessPoolExecutor
):
    append_partition(lake, "events", batch_frame("b1", 0), column="batch", key="b1")  # the table exists
    start_at = time.time() + 0.5
    batches = ["b1", "b2", "b3", "b4"]
    watcher = procs.submit(lake_procs.watch, lake, "events", len(batches) * ROWS, start_at, start_at + 120)
    writers = [procs.submit(lake_procs.write_batch, lake, "events", b, start_at) for b in batches]

    assert [w.result(timeout=180) for w in writers] == [ROWS] * len(batches)
    seen = watcher.result(timeout=180)

    assert seen and seen[-1] == dict.fromkeys(batches, ROWS), "the reader saw every batch in the end"
    partial = [counts for counts in seen if any(n != ROWS for n in counts.values())]
    assert not partial, f"a reader saw part of a batch: {partial[:3]}"
    with reading(lake) as con:
        per_batch = rows(con, "SELECT batch, count(*) FROM events GROUP BY 1 ORDER BY 1")
    assert per_batch == [(b, ROWS) for b in batches]


@pytest.mark.slow  # a race: each run catches its loss only now and then (see `make test-all`)
def test_the_first_writers_of_a_new_lake_all_commit(
    lake: Lake, procs: concurrent.futures.ProcessPoolExecutor
):
    """Writers at once on a catalog never written: one creates the lake, the others find it created (on
    PostgreSQL the losers of the catalog creation failed; on SQLite the WAL switch or a stale view of the
    new table did, about 1 round in 10)."""
    start_at = time.time() + 0.5
    batches = ["b1", "b2", "b3"]
    writers = [procs.submit(lake_procs.write_batch, lake, "events", b, start_at) for b in batches]
    assert [w.result(timeout=180) for w in writers] == [ROWS] * len(batches)
    with reading(lake) as con:
        per_batch = rows(con, "SELECT batch, count(*) FROM events GROUP BY 1 ORDER BY 1")
    assert per_batch == [(b, ROWS) for b in batches]


# --- migration of the copy-on-publish warehouse.duckdb -------------------------------------------------


def make_legacy_warehouse(path: Path) -> list[tuple]:
    """A warehouse as the copy-on-publish code left it: a table with a FLOAT[4], a view, a table macro.
    Returns the table's rows."""
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE items AS SELECT i AS id, 'item ' || i AS name, [i, 1, 0, 0]::FLOAT[4] AS embedding "
            "FROM range(50) t(i)"
        )
        con.execute("CREATE VIEW even_items AS SELECT id, name FROM items WHERE id % 2 = 0")
        con.execute("CREATE MACRO top_items(n) AS TABLE SELECT id FROM items ORDER BY id DESC LIMIT n")
        return con.execute("SELECT id, name, embedding::FLOAT[] FROM items ORDER BY id").fetchall()


def test_the_first_writer_migrates_the_old_warehouse_once(lake: Lake, tmp_path: Path):
    legacy = tmp_path / "warehouse.duckdb"
    old_rows = make_legacy_warehouse(legacy)
    lake = dataclasses.replace(lake, legacy=legacy)
    assert relations(lake) == set(), "readers do not migrate: only a writer does"

    publish_tables(lake, {"fresh": numbers(3)})

    assert not legacy.exists() and legacy.with_name("warehouse.duckdb.migrated").is_file()
    assert relations(lake) == {"items", "even_items", "fresh"}
    with reading(lake) as con:
        assert rows(con, "SELECT id, name, embedding FROM items ORDER BY id") == old_rows
        assert rows(con, "SELECT DISTINCT typeof(embedding) FROM items") == [("FLOAT[]",)]
        assert one(con, "SELECT count(*) FROM even_items") == 25
        assert rows(con, "SELECT id FROM top_items(3)") == [(49,), (48,), (47,)]
    shots = snapshots(lake)
    assert [s["message"] for s in shots[1:]] == [MIGRATED, "replace fresh"]
    assert shots[1]["info"]["migrated_from"] == str(legacy)

    later = dataclasses.replace(lake)  # another writer, later
    assert migrate_once(later) is None
    publish_tables(later, {"fresh": numbers(4)})
    assert [s["message"] for s in snapshots(lake)].count(MIGRATED) == 1
    assert read_table(lake, "SELECT count(*) AS n FROM items")["n"].iloc[0] == len(old_rows)


def test_two_first_writers_at_once_migrate_the_old_warehouse_exactly_once(
    lake: Lake, tmp_path: Path, procs: concurrent.futures.ProcessPoolExecutor
):
    legacy = tmp_path / "warehouse.duckdb"
    old_rows = make_legacy_warehouse(legacy)
    lake = dataclasses.replace(lake, legacy=legacy)
    start_at = time.time() + 0.5
    writers = [procs.submit(lake_procs.publish_one, lake, name, start_at) for name in ("first", "second")]
    assert [w.result(timeout=180) for w in writers] == [{"first": 20}, {"second": 20}]

    assert [s["message"] for s in snapshots(lake)].count(MIGRATED) == 1
    assert relations(lake) == {"items", "even_items", "first", "second"}
    assert read_table(lake, "SELECT count(*) AS n FROM items")["n"].iloc[0] == len(old_rows)
    assert legacy.with_name("warehouse.duckdb.migrated").is_file()


# --- errors and settings -------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["mysql:x", "", "sqlite:", "postgres:  "])
def test_a_bad_catalog_spec_says_what_is_expected(spec: str, tmp_path: Path):
    with pytest.raises(LakeError, match=r"expected 'sqlite:<file>' or 'postgres:<connection string>'") as err:
        Lake(spec, tmp_path)
    assert repr(spec) in str(err.value)


def test_reading_a_lake_never_written_raises_lake_missing_and_it_has_no_relations(lake: Lake):
    with pytest.raises(LakeMissing, match="nothing has been published"):
        read_table(lake, "SELECT 1")
    with pytest.raises(LakeMissing):
        with reading(lake):
            pass
    assert relations(lake) == set()
    publish_tables(lake, {"t": numbers(2)})  # reading created nothing in the way of the first write
    assert relations(lake) == {"t"}


def test_the_catalog_setting_reaches_a_postgres_catalog(postgres_server, tmp_path: Path, monkeypatch):
    database = postgres_server.create_database()
    monkeypatch.setenv("PRODUCT_ATTRS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(ENV_LAKE_CATALOG, "postgres:" + postgres_server.conninfo(database))
    monkeypatch.setenv(ENV_LAKE_DATA, str(tmp_path / "files"))

    lake = Lake.from_settings(get_settings(), {"run_id": "run-pg"})
    assert lake.kind == "postgres"
    publish_tables(lake, {"items": numbers(ROWS)})

    # PostgreSQL itself holds the catalog: the table and the commit's run id are in that database.
    tables = postgres_server.psql(
        "SELECT table_name FROM ducklake_table WHERE end_snapshot IS NULL", database
    )
    assert tables.split() == ["items"]
    info = postgres_server.psql("SELECT commit_extra_info FROM ducklake_snapshot_changes", database)
    assert '"run_id": "run-pg"' in info
    assert not (tmp_path / "data" / "lake" / "catalog.sqlite").exists(), "no SQLite catalog beside it"
    assert list((tmp_path / "files").rglob("*.parquet")), "data files under PRODUCT_ATTRS_LAKE_DATA"
    assert read_table(lake, "SELECT count(*) AS n FROM items")["n"].iloc[0] == ROWS


def test_a_catalog_password_never_shows_in_an_error(postgres_server, tmp_path: Path):
    """DuckDB repeats the connection string in its errors; the password must not reach logs or the UI."""
    never_written = postgres_server.create_database()
    for database in ("no_such_database", never_written):
        lake = Lake(f"postgres:{postgres_server.conninfo(database)} password=hunter2", tmp_path / "data")
        assert "hunter2" not in lake.describe()
        with pytest.raises(LakeError) as err:
            read_table(lake, "SELECT 1")
        told = "".join(traceback.format_exception(err.value))
        assert database in told and "hunter2" not in told
    with pytest.raises(LakeError) as err:
        publish_tables(
            Lake(f"postgres:{postgres_server.conninfo('no_such_database')} password=hunter2", tmp_path / "d"),
            {"t": numbers(1)},
        )
    assert "hunter2" not in "".join(traceback.format_exception(err.value))


def test_preparing_a_sqlite_catalog_another_first_writer_is_initializing_does_not_fail(tmp_path: Path):
    """Two first writers at once: the second finds the catalog file the first is filling (and holding
    locked); switching that file to WAL answered "database is locked" (not a DuckDB error: no retry)."""
    path = tmp_path / "lake" / "catalog.sqlite"
    path.parent.mkdir()
    first = sqlite3.connect(path, isolation_level=None)
    try:
        first.execute("BEGIN IMMEDIATE")
        first.execute("CREATE TABLE ducklake_metadata (key VARCHAR)")
        lake_module._prepare_sqlite(path)
    finally:
        first.execute("ROLLBACK")
        first.close()
    assert [p.name for p in path.parent.iterdir()] == ["catalog.sqlite"], "no temporary file left"

    fresh = tmp_path / "fresh" / "catalog.sqlite"
    lake_module._prepare_sqlite(fresh)
    with closing(sqlite3.connect(fresh)) as db:
        assert db.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
    assert [p.name for p in fresh.parent.iterdir()] == ["catalog.sqlite"]


def test_without_postgresql_the_server_says_why_for_the_skip(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_ctl on PATH
    monkeypatch.setattr(postgres, "DEBIAN_GLOB", str(tmp_path / "postgresql" / "*" / "bin"))
    with pytest.raises(postgres.Unavailable, match="PostgreSQL not found: no initdb, pg_ctl, postgres, psql"):
        postgres.start()
