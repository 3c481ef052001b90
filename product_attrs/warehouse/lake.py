"""The warehouse is a DuckLake: Parquet data files plus a catalog database that records every commit.

A write is one DuckLake transaction that writes only the Parquet files of what it changes (a 2-row table
goes into the catalog itself, "inlined"); readers see the last committed snapshot, never half a commit,
and never wait. Every snapshot stays queryable (``AT (VERSION => n)``) until maintenance expires it, and
each carries the run and model versions that wrote it in its commit info.

The catalog is SQLite by default (a file under the data root, nothing to start) or PostgreSQL for a team
(``PRODUCT_ATTRS_LAKE_CATALOG=postgres:...``). PostgreSQL commits concurrently and DuckLake retries
commits that do not conflict; SQLite takes one writer at a time and answers a second "database is
locked", so ``transaction`` re-runs the whole body after a jittered wait, as DuckLake does for its own
conflicts. The lake is always attached as ``lake`` and made the default database, so unqualified table
names in SQL (ours, the views', the analysts') mean the lake's.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from product_attrs.warehouse.extensions import connection_config

#: The name the lake is attached under, here and in `make sql`.
LAKE = "lake"
#: The author recorded on every snapshot this project commits.
AUTHOR = "product_attrs"
#: Whole-transaction retries on a busy catalog or a write conflict, and the first wait (seconds).
MAX_ATTEMPTS = 12
FIRST_WAIT_S = 0.05

T = TypeVar("T")


class LakeError(RuntimeError):
    """The lake's settings are wrong or its catalog cannot be reached; the message says which."""


class LakeMissing(LakeError):
    """Nothing has been published yet: there is no catalog to read."""


@dataclass(frozen=True)
class Lake:
    """Where the lake is: ``catalog`` is ``sqlite:<file>`` or ``postgres:<libpq connection string>``.

    ``legacy``: an old copy-on-publish ``warehouse.duckdb``, migrated into the lake by the first writer.
    ``tags``: recorded in the commit info of every snapshot written through this handle (the run id)."""

    catalog: str
    data_path: Path
    legacy: Path | None = field(default=None, compare=False)
    tags: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("sqlite", "postgres") or not self.target.strip():
            raise LakeError(
                f"lake catalog {self.catalog!r}: expected 'sqlite:<file>' or 'postgres:<connection string>'"
            )

    @classmethod
    def from_settings(cls, settings: Any, tags: Mapping[str, Any] | None = None) -> Lake:
        return cls(
            settings.lake_catalog_spec,
            settings.lake_data_path,
            settings.legacy_warehouse_path,
            dict(tags or {}),
        )

    @property
    def kind(self) -> str:
        return self.catalog.split(":", 1)[0]

    @property
    def target(self) -> str:
        return self.catalog.split(":", 1)[1] if ":" in self.catalog else ""

    @property
    def sqlite_file(self) -> Path | None:
        return Path(self.target) if self.kind == "sqlite" else None

    def describe(self) -> str:
        """For logs and metadata: the catalog without a PostgreSQL password."""
        if self.kind == "sqlite":
            return self.catalog
        parts = [p for p in self.target.split() if not p.lower().startswith("password=")]
        return "postgres:" + " ".join(parts)

    def attach_sql(self, read_only: bool) -> str:
        """The ATTACH statement (also written into `make sql`'s init script)."""
        options = ["READ_ONLY"] if read_only else [f"DATA_PATH {_literal(str(self.data_path) + '/')}"]
        return f"ATTACH {_literal('ducklake:' + self.catalog)} AS {LAKE} ({', '.join(options)})"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _prepare_sqlite(path: Path) -> None:
    """Create the catalog file in WAL mode: readers then never block the writer, nor it them.

    The file is prepared under another name and linked into place, so that first writers at once never
    switch a file to WAL while another one initializes the lake in it (SQLite answers "database is
    locked", at once): the first link wins and the others use its file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        db = sqlite3.connect(tmp)
        try:
            db.execute("PRAGMA journal_mode=WAL").fetchall()
        finally:
            db.close()
        os.link(tmp, path)
    except FileExistsError:
        pass  # another writer's catalog file is in place
    finally:
        tmp.unlink(missing_ok=True)


def exists(lake: Lake) -> bool:
    """Whether the lake has a catalog yet (a PostgreSQL catalog is assumed to: connecting tells)."""
    return lake.sqlite_file is None or lake.sqlite_file.is_file()


def connect(lake: Lake, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """A connection with the lake attached as ``lake`` and in use; read-only unless asked.

    Raises ``LakeMissing`` when reading a lake that has never been written."""
    if read_only and not exists(lake):
        raise LakeMissing(f"no lake yet at {lake.describe()}: nothing has been published")
    if not read_only:
        if lake.sqlite_file is not None and not lake.sqlite_file.exists():
            _prepare_sqlite(lake.sqlite_file)
        lake.data_path.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config=connection_config())
    try:
        con.execute("SET TimeZone = 'UTC'").fetchall()
        _retrying(lambda: con.execute(lake.attach_sql(read_only)).fetchall(), _attach_retryable)
        con.execute(f"USE {LAKE}").fetchall()
    except duckdb.Error as exc:
        con.close()
        detail = _redact(lake, str(exc))
        cause = exc if detail == str(exc) else None  # DuckDB's own message would show the password
        if read_only and _never_created(exc):
            # A PostgreSQL database without DuckLake's tables: as for a SQLite file that is not there.
            raise LakeMissing(f"no lake yet at {lake.describe()}: nothing has been published") from cause
        raise LakeError(f"cannot attach the lake {lake.describe()}: {detail}") from cause
    except BaseException:
        con.close()
        raise
    return con


@contextmanager
def reading(lake: Lake) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection: every query on it sees the snapshot current when it was opened.

    It holds one read transaction for that: DuckLake pins a snapshot per transaction, and an autocommit
    query would see each commit made in between."""
    con = connect(lake, read_only=True)
    try:
        con.execute("BEGIN TRANSACTION").fetchall()
        yield con
    finally:
        con.close()


def retryable(exc: BaseException) -> bool:
    """A busy SQLite catalog, or a commit that lost to a concurrent one: running the body again may work.

    Also a table created by another writer since this connection attached, whose inlined-data table the
    connection does not know yet ("ducklake_inlined_data_<table>_<version> does not exist", DuckLake
    issues 1305/1413): a new connection knows it, and every attempt gets one."""
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and (
        "database is locked" in text
        or "conflict" in text
        or "could not serialize" in text
        or ("ducklake_inlined_data_" in text and "does not exist" in text)
    )


def _redact(lake: Lake, text: str) -> str:
    """``text`` without the catalog's PostgreSQL password (DuckDB repeats the connection string in its
    errors, which reach logs and the Dagster UI)."""
    for part in lake.target.split():
        key, _, value = part.partition("=")
        if key.lower() == "password" and value:
            text = text.replace(value, "***")
    return text


def _never_created(exc: BaseException) -> bool:
    """The read-only ATTACH of a catalog database in which no lake was ever created."""
    return "creating a new ducklake is explicitly disabled" in str(exc).lower()


def _attach_retryable(exc: BaseException) -> bool:
    """Also: two first writers creating the same new catalog at once (PostgreSQL: "already exists", a
    duplicate key in its own catalog); the loser finds the lake created when it attaches again."""
    text = str(exc).lower()
    return retryable(exc) or (
        "initialize ducklake" in text and ("already exists" in text or "duplicate key" in text)
    )


def _retrying(step: Callable[[], T], can_retry: Callable[[BaseException], bool] = retryable) -> T:
    for attempt in range(MAX_ATTEMPTS):
        try:
            return step()
        except duckdb.Error as exc:
            if not can_retry(exc) or attempt == MAX_ATTEMPTS - 1:
                raise
            time.sleep(FIRST_WAIT_S * (1.5**attempt) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")  # pragma: no cover


def transaction(
    lake: Lake, body: Callable[[duckdb.DuckDBPyConnection], T], *, message: str, info: Mapping[str, Any]
) -> T:
    """Run ``body`` in one lake transaction and commit it as one snapshot, tagged with ``message`` and
    ``info`` (JSON: the run id, model versions, a partition key). The whole body re-runs on a retryable
    error, so it must only write through the connection it is given."""
    migrate_once(lake)
    return _transaction(lake, body, message=message, info=info)


def _transaction(
    lake: Lake, body: Callable[[duckdb.DuckDBPyConnection], T], *, message: str, info: Mapping[str, Any]
) -> T:
    def attempt() -> T:
        # A new connection per attempt: one attached before a concurrent commit may keep a stale view
        # of the catalog (see ``retryable``).
        con = connect(lake, read_only=False)
        try:
            con.execute("BEGIN TRANSACTION").fetchall()
            try:
                result = body(con)
                con.execute(
                    f"CALL {LAKE}.set_commit_message(?, ?, extra_info => ?)",
                    [AUTHOR, message, json.dumps({**lake.tags, **info}, sort_keys=True, default=str)],
                ).fetchall()
                con.execute("COMMIT").fetchall()
            except BaseException:
                try:
                    con.execute("ROLLBACK").fetchall()
                except duckdb.Error:
                    pass  # the failed COMMIT already ended the transaction
                raise
            return result
        finally:
            con.close()

    return _retrying(attempt)


def relations(lake: Lake) -> set[str]:
    """Names of the lake's tables and views (empty before the first publish)."""
    if not exists(lake):
        return set()
    try:
        with reading(lake) as con:
            rows = con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = ?", [LAKE]
            ).fetchall()
    except LakeMissing:  # a PostgreSQL catalog never written
        return set()
    return {r[0] for r in rows}


def snapshots(lake: Lake) -> list[dict[str, Any]]:
    """Every live snapshot, oldest first: id, time, message and the decoded commit info."""
    with reading(lake) as con:
        rows = con.execute(
            f"SELECT snapshot_id, snapshot_time, commit_message, commit_extra_info FROM {LAKE}.snapshots() "
            "ORDER BY snapshot_id"
        ).fetchall()
    return [
        {"snapshot_id": int(r[0]), "time": r[1], "message": r[2], "info": json.loads(r[3]) if r[3] else {}}
        for r in rows
    ]


#: A view over the lake's snapshots with the commit info unpacked: which run and which model versions
#: wrote each one. "What did we predict before the retrain" is then the newest snapshot whose
#: classifier_versions do not list the new version (README, "Querying the warehouse").
SNAPSHOTS_VIEW = (
    "SELECT snapshot_id, snapshot_time, commit_message AS message, "
    "json_extract_string(commit_extra_info, '$.run_id') AS run_id, "
    "json_extract_string(commit_extra_info, '$.models.classifier_version[*]') AS classifier_versions, "
    "json_extract_string(commit_extra_info, '$.models.detector_version[*]') AS detector_versions, "
    f"commit_extra_info AS info, changes FROM {LAKE}.snapshots()"
)


# --- maintenance ---------------------------------------------------------------------------------------

#: Files no snapshot references are deleted only when older than this: a writer's transaction in flight
#: has written files that the catalog does not list yet.
ORPHAN_GRACE = "1 day"


def maintain(lake: Lake, retention_days: int) -> dict[str, int]:
    """Weekly upkeep: move inlined rows to Parquet, merge small adjacent files, expire snapshots older than
    ``retention_days`` (time travel reaches back that far, the current snapshot always stays), then delete
    the files only expired snapshots used and files no commit ever listed (failed or retried commits).
    Returns counts of what each step did."""
    if retention_days < 0:
        raise LakeError(f"retention_days must be >= 0, got {retention_days}")
    migrate_once(lake)
    con = connect(lake, read_only=False)
    try:

        def call(sql: str, *params: object) -> int:
            return len(_retrying(lambda: con.execute(sql, list(params)).fetchall()))

        return {
            "inlined_tables_flushed": call(f"CALL ducklake_flush_inlined_data('{LAKE}')"),
            "files_merged": call(f"CALL ducklake_merge_adjacent_files('{LAKE}')"),
            "snapshots_expired": call(
                f"CALL ducklake_expire_snapshots('{LAKE}', older_than => now() - to_days(?))", retention_days
            ),
            "old_files_deleted": call(f"CALL ducklake_cleanup_old_files('{LAKE}', cleanup_all => true)"),
            "orphan_files_deleted": call(
                f"CALL ducklake_delete_orphaned_files('{LAKE}', older_than => now() - INTERVAL (?))",
                ORPHAN_GRACE,
            ),
        }
    finally:
        con.close()


# --- migration of the copy-on-publish file -----------------------------------------------------------


def migrate_once(lake: Lake) -> dict[str, int] | None:
    """Move an old ``warehouse.duckdb`` into the lake, once: tables, views and table macros in one
    snapshot, then rename the file ``warehouse.duckdb.migrated``. A file lock beside it makes concurrent
    first writers migrate it once. Returns row counts, or None when there was nothing to migrate."""
    legacy = lake.legacy
    if legacy is None or not legacy.is_file():
        return None
    with open(legacy.with_name(legacy.name + ".migrate.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if not legacy.is_file():
            return None
        counts = _copy_legacy(lake, legacy)
        legacy.rename(legacy.with_name(legacy.name + ".migrated"))
        return counts


def _copy_legacy(lake: Lake, legacy: Path) -> dict[str, int]:
    old = "legacy_warehouse"

    def body(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
        con.execute(f"ATTACH {_literal(str(legacy))} AS {old} (READ_ONLY)").fetchall()
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = ? ORDER BY table_name", [old]
            ).fetchall()
        ]
        counts: dict[str, int] = {}
        for name in tables:
            select = _lake_select(con, f'{old}.main."{name}"')
            con.execute(f'CREATE OR REPLACE TABLE {LAKE}.main."{name}" AS {select}').fetchall()
            counts[name] = int(con.execute(f'SELECT count(*) FROM {LAKE}.main."{name}"').fetchall()[0][0])
        views = con.execute(
            "SELECT view_name, sql FROM duckdb_views() WHERE database_name = ? AND NOT internal", [old]
        ).fetchall()
        macros = con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() "
            "WHERE database_name = ? AND function_type IN ('macro', 'table_macro')",
            [old],
        ).fetchall()
        for _name, definition in views:
            con.execute(definition.replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1)).fetchall()
        for (name,) in macros:
            _copy_macro(con, old, name)
        con.execute(f"USE {LAKE}").fetchall()
        return counts

    return _transaction(lake, body, message="migrate warehouse.duckdb", info={"migrated_from": str(legacy)})


def _copy_macro(con: duckdb.DuckDBPyConnection, old: str, name: str) -> None:
    """Re-create one macro of the old file in the lake from its definition text (the analytics assets
    re-create their macros on their next run anyway)."""
    rows = con.execute(
        "SELECT parameters, macro_definition, function_type FROM duckdb_functions() "
        "WHERE database_name = ? AND function_name = ?",
        [old, name],
    ).fetchall()
    if not rows or rows[0][1] is None:
        return
    params, definition, kind = rows[0]
    body = f"TABLE {definition}" if kind == "table_macro" else definition
    con.execute(f'CREATE OR REPLACE MACRO {LAKE}.main."{name}"({", ".join(params)}) AS {body}').fetchall()


def _lake_select(con: duckdb.DuckDBPyConnection, source: str) -> str:
    """``SELECT`` from ``source`` with fixed-size arrays cast to lists, which DuckLake stores."""
    described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    casts = [
        f'CAST("{name}" AS {lake_type(str(sql_type))}) AS "{name}"'
        for name, sql_type, *_ in described
        if lake_type(str(sql_type)) != str(sql_type)
    ]
    return f"SELECT * REPLACE ({', '.join(casts)}) FROM {source}" if casts else f"SELECT * FROM {source}"


def lake_type(sql_type: str) -> str:
    """DuckLake has no fixed-size ARRAY type: ``FLOAT[512]`` is stored as the list ``FLOAT[]`` (the
    ``similar_to`` macro then uses ``list_cosine_similarity``)."""
    return re.sub(r"\[\d+\]$", "[]", sql_type.strip())
