"""Publish tables to the lake: each call is one DuckLake commit that writes only what it changes.

- ``publish_tables``: replace whole tables (and views and macros) together, e.g. the catalog, the
  recommendations. Tables not named are untouched: no copy of anything else.
- ``append_partition`` (or ``partitions=`` of ``publish_tables``): replace the rows of one partition of a
  table (one extraction batch, one recognized folder) and nothing else; other writers' partitions commit
  beside it. ``sync_partitions`` brings a table of file-backed partitions up to date with its files.
- ``upsert``: replace the rows whose keys arrive, add the new ones.

Analysts reading meanwhile see the snapshot before or after a commit, never between. Writers do not hold
a lock while they compute: a commit is retried when the catalog is busy (see ``lake.transaction``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from product_attrs.warehouse.lake import LAKE, Lake, lake_type, reading, transaction

#: The name each incoming frame is registered under while its table is built (connection-local).
_INCOMING = "_incoming"


@dataclass(frozen=True)
class ParquetFiles:
    """Parquet files that DuckDB reads straight into a table, streaming: the union of every extraction batch
    is never held as one DataFrame. Each file's stem goes into ``stem_column`` (e.g. the batch name)."""

    paths: tuple[Path, ...]
    stem_column: str

    def relation(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
        files = [str(p) for p in self.paths]
        rel = con.read_parquet(files, filename=True, union_by_name=True)
        return rel.project(f'* EXCLUDE (filename), parse_filename(filename, true) AS "{self.stem_column}"')


Frame = pd.DataFrame | ParquetFiles


@dataclass(frozen=True)
class Partition:
    """The rows of a table whose ``column`` is ``key`` (one extraction batch, one recognized folder)."""

    frame: Frame
    column: str
    key: str


def _select(con: duckdb.DuckDBPyConnection, frame: Frame, cast: Mapping[str, str] | None) -> str:
    """Register ``frame`` as ``_incoming`` and return the SELECT that gives it the lake's column types:
    ``cast`` first (types pandas cannot express, e.g. ``{"embedding": "FLOAT[512]"}``), then fixed-size
    arrays as lists (DuckLake stores no ARRAY type)."""
    con.register(_INCOMING, frame.relation(con) if isinstance(frame, ParquetFiles) else frame)
    described = con.execute(f"DESCRIBE SELECT * FROM {_INCOMING}").fetchall()
    given = {name: str(sql_type) for name, sql_type, *_ in described}
    text = {col: "VARCHAR" for col in _untyped_columns(frame)}  # pragma: no mutate - SQL is case-insensitive
    wanted = {**given, **text, **(cast or {})}
    replace = [
        f'CAST("{col}" AS {lake_type(sql_type)}) AS "{col}"'
        for col, sql_type in wanted.items()
        if col in given and lake_type(sql_type) != given[col]
    ]
    if not replace:
        return f"SELECT * FROM {_INCOMING}"
    return f"SELECT * REPLACE ({', '.join(replace)}) FROM {_INCOMING}"


def _untyped_columns(frame: Frame) -> list[str]:
    """Object columns with no value (an empty frame, a column of None): DuckDB would guess INTEGER, and a
    later partition's text would not fit the table it created. Text is what they hold when they hold any."""
    if not isinstance(frame, pd.DataFrame):
        return []
    return [str(c) for c in frame.columns if frame[c].dtype == object and frame[c].isna().all()]


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(sql).fetchall()[0][0])


def publish_tables(
    lake: Lake,
    tables: Mapping[str, Frame],
    views: Mapping[str, str] | None = None,
    casts: Mapping[str, Mapping[str, str]] | None = None,
    macros: Sequence[str] = (),
    info: Mapping[str, Any] | None = None,
    partitions: Mapping[str, Partition] | None = None,
) -> dict[str, int]:
    """Replace ``tables`` and the ``partitions`` (table -> one partition's rows), then create ``views`` and
    run the ``CREATE OR REPLACE MACRO`` statements, in one snapshot; returns row counts per table (for a
    partition: its rows)."""

    def body(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name, part in (partitions or {}).items():
            counts[name] = _write_partition(con, name, part, (casts or {}).get(name))
        for name, frame in tables.items():
            select = _select(con, frame, (casts or {}).get(name))
            con.execute(f'CREATE OR REPLACE TABLE {LAKE}.main."{name}" AS {select}').fetchall()
            con.unregister(_INCOMING)
            counts[name] = _count(con, f'SELECT count(*) FROM {LAKE}.main."{name}"')
        for name, sql in (views or {}).items():
            con.execute(f'CREATE OR REPLACE VIEW {LAKE}.main."{name}" AS {sql}').fetchall()
        for statement in macros:
            con.execute(statement).fetchall()
        return counts

    what = [*(f"{t}[{p.column}={p.key}]" for t, p in (partitions or {}).items()), *tables]
    return transaction(lake, body, message=f"replace {', '.join(what) or 'views'}", info=info or {})


def _table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    rows = con.execute(
        "SELECT count(*) FROM duckdb_tables() "  # pragma: no mutate - SQL is case-insensitive
        "WHERE database_name = ? AND table_name = ?",  # pragma: no mutate
        [LAKE, table],
    ).fetchall()
    return bool(rows[0][0])


def _insert(con: duckdb.DuckDBPyConnection, table: str, select: str) -> None:
    """Insert by column name, first adding the columns the table does not have yet (a new head)."""
    have = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM duckdb_columns() "  # pragma: no mutate - SQL is case-insensitive
            "WHERE database_name = ? AND table_name = ?",  # pragma: no mutate
            [LAKE, table],
        ).fetchall()
    }
    for name, sql_type, *_ in con.execute(f"DESCRIBE {select}").fetchall():
        if name not in have:
            con.execute(f'ALTER TABLE {LAKE}.main."{table}" ADD COLUMN "{name}" {sql_type}').fetchall()
    con.execute(f'INSERT INTO {LAKE}.main."{table}" BY NAME {select}').fetchall()


def _write_partition(
    con: duckdb.DuckDBPyConnection, table: str, part: Partition, casts: Mapping[str, str] | None
) -> int:
    select = _select(con, part.frame, casts)
    stray = con.execute(
        f'SELECT count(*) FROM ({select}) WHERE "{part.column}" IS DISTINCT FROM $1', [part.key]
    )
    if stray.fetchall()[0][0]:
        raise ValueError(f"partition {table}[{part.column}={part.key}]: rows with another {part.column}")
    if not _table_exists(con, table):
        con.execute(f'CREATE TABLE {LAKE}.main."{table}" AS {select}').fetchall()
    else:
        con.execute(f'DELETE FROM {LAKE}.main."{table}" WHERE "{part.column}" = $1', [part.key]).fetchall()
        _insert(con, table, select)
    con.unregister(_INCOMING)
    rows = con.execute(f'SELECT count(*) FROM {LAKE}.main."{table}" WHERE "{part.column}" = $1', [part.key])
    return int(rows.fetchall()[0][0])


def append_partition(
    lake: Lake,
    table: str,
    frame: Frame,
    *,
    column: str,
    key: str,
    casts: Mapping[str, str] | None = None,
    info: Mapping[str, Any] | None = None,
) -> int:
    """Make ``table``'s rows with ``column = key`` exactly ``frame`` (whose ``column`` must hold ``key``);
    other partitions are not read or rewritten. Returns the partition's row count."""
    part = Partition(frame, column, key)
    counts = publish_tables(
        lake,
        {},
        casts={table: casts} if casts else None,
        info={**(info or {}), column: key},
        partitions={table: part},
    )
    return counts[table]


def upsert(
    lake: Lake,
    table: str,
    frame: Frame,
    *,
    keys: Sequence[str],
    casts: Mapping[str, str] | None = None,
    info: Mapping[str, Any] | None = None,
) -> int:
    """Replace the rows of ``table`` whose ``keys`` arrive in ``frame`` and add the others; returns the
    number of rows written."""
    on = " AND ".join(f't."{k}" IS NOT DISTINCT FROM i."{k}"' for k in keys)  # pragma: no mutate - SQL case

    def body(con: duckdb.DuckDBPyConnection) -> int:
        select = _select(con, frame, casts)
        if not _table_exists(con, table):
            con.execute(f'CREATE TABLE {LAKE}.main."{table}" AS {select}').fetchall()
        else:
            con.execute(
                f'DELETE FROM {LAKE}.main."{table}" t WHERE EXISTS (SELECT 1 FROM ({select}) i WHERE {on})'
            ).fetchall()
            _insert(con, table, select)
        n = _count(con, f"SELECT count(*) FROM ({select})")
        con.unregister(_INCOMING)
        return n

    return transaction(lake, body, message=f"upsert {table}", info=info or {})


#: The lake's record of which file each synced partition came from (see ``sync_partitions``).
PARTITIONS_TABLE = "lake_partitions"


@dataclass(frozen=True)
class SyncResult:
    written: tuple[str, ...]  # partitions added or replaced (their file changed)
    removed: tuple[str, ...]  # partitions whose file is gone
    unchanged: int
    counts: dict[str, int]  # rows per table replaced alongside (``also``)


def fingerprint(path: Path) -> str:
    """Size and modification time: every writer of these files renames a new file into place."""
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def sync_partitions(
    lake: Lake,
    table: str,
    files: Mapping[str, Path],
    *,
    column: str,
    also: Mapping[str, Frame] | None = None,
    views: Mapping[str, str] | None = None,
    casts: Mapping[str, str] | None = None,
    info: Mapping[str, Any] | None = None,
) -> SyncResult:
    """Make ``table`` hold one partition per file of ``files`` (partition key -> Parquet file), rewriting
    only the partitions whose file changed since the last sync and deleting those whose file is gone;
    ``also`` are whole tables replaced in the same snapshot; ``casts`` give the partitions' column types.
    Cost follows the change, not the table."""

    def body(con: duckdb.DuckDBPyConnection) -> SyncResult:
        seen: dict[str, str] = {}
        if _table_exists(con, PARTITIONS_TABLE):
            rows = con.execute(
                f'SELECT "partition", fingerprint FROM {LAKE}.main.{PARTITIONS_TABLE} WHERE "table" = $1',
                [table],
            ).fetchall()
            seen = {str(k): str(f) for k, f in rows}
        if not _table_exists(con, table):
            seen = {}
        now = {key: fingerprint(path) for key, path in files.items()}
        written = tuple(sorted(k for k in now if seen.get(k) != now[k]))
        removed = tuple(sorted(k for k in seen if k not in now))
        for key in removed:
            con.execute(f'DELETE FROM {LAKE}.main."{table}" WHERE "{column}" = $1', [key]).fetchall()
        for key in written:
            select = _select(con, ParquetFiles((files[key],), column), casts)
            if not _table_exists(con, table):
                con.execute(f'CREATE TABLE {LAKE}.main."{table}" AS {select}').fetchall()
            else:
                con.execute(f'DELETE FROM {LAKE}.main."{table}" WHERE "{column}" = $1', [key]).fetchall()
                _insert(con, table, select)
            con.unregister(_INCOMING)
        record = pd.DataFrame(
            {"table": table, "partition": list(now), "fingerprint": [now[k] for k in now]},
            columns=["table", "partition", "fingerprint"],
        ).astype(str)
        if written or removed or seen.keys() != now.keys() or not _table_exists(con, PARTITIONS_TABLE):
            con.register(_INCOMING, record)
            if _table_exists(con, PARTITIONS_TABLE):
                con.execute(
                    f'DELETE FROM {LAKE}.main.{PARTITIONS_TABLE} WHERE "table" = $1', [table]
                ).fetchall()
                con.execute(
                    f"INSERT INTO {LAKE}.main.{PARTITIONS_TABLE} SELECT * FROM {_INCOMING}"
                ).fetchall()
            else:
                con.execute(
                    f"CREATE TABLE {LAKE}.main.{PARTITIONS_TABLE} AS SELECT * FROM {_INCOMING}"
                ).fetchall()
            con.unregister(_INCOMING)
        counts: dict[str, int] = {}
        for name, frame in (also or {}).items():
            select = _select(con, frame, None)
            con.execute(f'CREATE OR REPLACE TABLE {LAKE}.main."{name}" AS {select}').fetchall()
            con.unregister(_INCOMING)
            counts[name] = _count(con, f'SELECT count(*) FROM {LAKE}.main."{name}"')
        for name, sql in (views or {}).items():
            con.execute(f'CREATE OR REPLACE VIEW {LAKE}.main."{name}" AS {sql}').fetchall()
        exists = _table_exists(con, table)
        counts[table] = _count(con, f'SELECT count(*) FROM {LAKE}.main."{table}"') if exists else 0
        return SyncResult(written, removed, len(now) - len(written), counts)

    return transaction(lake, body, message=f"sync {table}", info=info or {})


def read_table(lake: Lake, sql: str) -> pd.DataFrame:
    with reading(lake) as con:
        return con.execute(sql).df()


def read_tables(lake: Lake, queries: Mapping[str, str]) -> dict[str, pd.DataFrame]:
    """Several queries on one read-only connection, i.e. one consistent snapshot of the lake."""
    with reading(lake) as con:
        return {name: con.execute(sql).df() for name, sql in queries.items()}
