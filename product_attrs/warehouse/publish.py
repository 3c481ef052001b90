"""Publish tables to the analysts' DuckDB file without ever breaking a reader.

DuckDB takes a file lock: a writer cannot open a file that an analyst holds open, and a reader of a file
being rewritten could see a half-written table. So a publish copies the current warehouse to a new file,
replaces the tables there, checkpoints it, and atomically renames it over the old one. Open read-only
sessions keep reading their snapshot; new sessions see the new one whole. A file lock serialises writers
(Dagster's ``duckdb_writer`` pool already does; the lock also covers scripts run by hand).

A publish that fails removes its copy; one that was killed (OOM, SIGKILL, power cut) cannot, and its copy is
as large as the warehouse. Since only the holder of the writer lock ever has a copy open, every copy found
by the next holder belongs to a dead publish, and is removed before that one starts its own.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from product_attrs.io import fsync_dir

#: The name each incoming frame is registered under while its table is built (connection-local).
_INCOMING = "_incoming"


@contextmanager
def writer_lock(warehouse: Path) -> Iterator[None]:
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with open(warehouse.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def stale_copies(warehouse: Path) -> list[Path]:
    """Copies (and their WAL files) that earlier publishes left: only call it holding the writer lock."""
    return sorted(
        p
        for pattern in (f".{warehouse.name}.*.tmp", f".{warehouse.name}.*.tmp.wal")
        for p in warehouse.parent.glob(pattern)
        if p.is_file() or p.is_symlink()
    )


@contextmanager
def snapshot(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection on a private copy that replaces the warehouse when the block succeeds."""
    with writer_lock(warehouse):
        for stale in stale_copies(warehouse):
            stale.unlink(missing_ok=True)
        tmp = warehouse.with_name(f".{warehouse.name}.{uuid.uuid4().hex}.tmp")
        wal = tmp.with_name(tmp.name + ".wal")
        con = None
        try:
            if warehouse.exists():
                shutil.copyfile(warehouse, tmp)
            con = duckdb.connect(str(tmp))
            yield con
            con.execute("CHECKPOINT").fetchall()
            con.close()
            os.replace(tmp, warehouse)
            fsync_dir(warehouse.parent)
        except BaseException:
            if con is not None:
                con.close()
            tmp.unlink(missing_ok=True)
            raise
        finally:
            wal.unlink(missing_ok=True)


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


def publish_tables(
    warehouse: Path,
    tables: Mapping[str, pd.DataFrame | ParquetFiles],
    views: Mapping[str, str] | None = None,
    casts: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, int]:
    """Replace ``tables`` (and create ``views``) in one atomic step; returns row counts per table.

    ``casts`` gives SQL types for columns pandas cannot express, e.g. ``{"t": {"embedding": "FLOAT[512]"}}``
    so that DuckDB's array functions apply.
    """
    counts: dict[str, int] = {}
    with snapshot(warehouse) as con:
        for name, frame in tables.items():
            con.register(_INCOMING, frame.relation(con) if isinstance(frame, ParquetFiles) else frame)
            cast = (casts or {}).get(name) or {}
            select = (
                "*"
                if not cast
                else "* REPLACE ("  # pragma: no mutate - SQL keywords are case-insensitive
                + ", ".join(f'CAST("{col}" AS {sql_type}) AS "{col}"' for col, sql_type in cast.items())
                + ")"
            )
            con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT {select} FROM {_INCOMING}').fetchall()
            con.unregister(_INCOMING)
            counts[name] = int(con.execute(f'SELECT count(*) FROM "{name}"').fetchall()[0][0])
        for name, sql in (views or {}).items():
            con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {sql}').fetchall()
    return counts


def read_table(warehouse: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).df()
