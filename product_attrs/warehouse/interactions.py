"""Customer events: read (CSV or Parquet, a file or a folder), validate, and split in time for evaluation.

Every input row ends in exactly one place: ``events`` (clean, typed) or ``quarantine`` (the project-wide
shape ``source, record_id, reason, detail``), so the asset can assert clean + quarantined = input.
Validation is DuckDB SQL over all-string columns, so a bad value becomes a reason, never an exception.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from product_attrs.warehouse.vocabulary import EVENT_TYPES

REQUIRED_COLUMNS: tuple[str, ...] = ("customer_id", "product_id", "event_type", "timestamp")
EVENT_COLUMNS: list[str] = ["customer_id", "product_id", "event_type", "timestamp", "record_id"]
QUARANTINE_COLUMNS: list[str] = ["source", "record_id", "reason", "detail"]
SOURCE = "interactions"
SUFFIXES = (".csv", ".csv.gz", ".parquet")

#: Quarantine reasons, in the order they are tested (a row gets the first that applies).
REASONS = (
    "malformed_line",
    "missing_customer_id",
    "bad_product_id",
    "unknown_event_type",
    "bad_timestamp",
    "unknown_product",
    "duplicate_event",
)


@dataclass(frozen=True)
class LoadedInteractions:
    """The outcome of a load: clean events, quarantined rows, and which files were (not) read."""

    events: pd.DataFrame  # EVENT_COLUMNS; timestamp is naive UTC
    quarantine: pd.DataFrame  # QUARANTINE_COLUMNS
    files: list[Path]
    n_read: int  # rows read from the files: must equal len(events) + len(quarantine)
    skipped_files: dict[str, str] = field(default_factory=dict)  # path -> why it was not read


@dataclass(frozen=True)
class HoldOut:
    """Events before ``cutoff`` (to fit on) and from ``cutoff`` on (to score against)."""

    history: pd.DataFrame
    holdout: pd.DataFrame
    cutoff: datetime


def _is_table_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(SUFFIXES) and not path.name.startswith(".")


def _columns(path: Path) -> list[str]:
    if path.name.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    return list(pd.read_csv(path, nrows=0).columns)


def find_interaction_files(path: Path) -> tuple[list[Path], dict[str, str]]:
    """The event files under ``path`` and, separately, table files that lack the event columns.

    A folder may hold other tables beside the events (the demo writes ``customers.csv`` next to
    ``interactions.csv``); those are reported as skipped rather than read or silently ignored.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no interactions at {path}")
    candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if _is_table_file(p))
    files: list[Path] = []
    skipped: dict[str, str] = {}
    for candidate in candidates:
        missing = [c for c in REQUIRED_COLUMNS if c not in _columns(candidate)]
        if missing:
            skipped[str(candidate)] = f"missing columns {missing}"
        else:
            files.append(candidate)
    if not files:
        raise ValueError(
            f"no file under {path} has the columns {list(REQUIRED_COLUMNS)} (skipped: {skipped})"
        )
    return files, skipped


def read_raw(files: Sequence[Path], root: Path | None = None) -> pd.DataFrame:
    """The required columns of every file as nullable strings, plus ``record_id`` = ``file:row``.

    Rows are numbered from 1 after the header, so ``interactions.csv:1`` is the first data line. A CSV
    line with the wrong number of fields becomes a row whose ``_malformed`` holds its text.
    """
    parts = []
    for f in files:
        if f.name.lower().endswith(".parquet"):
            frame = pd.read_parquet(f, columns=list(REQUIRED_COLUMNS)).astype("string")
            frame["_malformed"] = pd.Series(pd.NA, index=frame.index, dtype="string")
        else:
            frame = _read_csv(f)
        name = str(f.relative_to(root)) if root is not None and f.is_relative_to(root) else f.name
        frame["record_id"] = [f"{name}:{i}" for i in range(1, len(frame) + 1)]
        parts.append(frame[[*REQUIRED_COLUMNS, "_malformed", "record_id"]])
    return pd.concat(parts, ignore_index=True)


def _read_csv(path: Path) -> pd.DataFrame:
    """pandas' fast parser; if a line has too many fields, the file again line by line, keeping it."""
    try:
        # No usecols: with it pandas drops a line's surplus fields instead of failing on them.
        frame = pd.read_csv(path, dtype="string", keep_default_na=False)[list(REQUIRED_COLUMNS)]
        frame["_malformed"] = pd.Series(pd.NA, index=frame.index, dtype="string")
        return frame
    except pd.errors.ParserError:
        pass
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    rows: list[list[str | None]] = []
    with opener(path, "rt", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        where = [header.index(c) for c in REQUIRED_COLUMNS]
        for fields in reader:
            if not fields:
                continue  # blank line, as pandas skips it
            if len(fields) != len(header):
                rows.append([None] * len(REQUIRED_COLUMNS) + [",".join(fields)[:500]])
            else:
                rows.append([fields[i] for i in where] + [None])
    return pd.DataFrame(rows, columns=[*REQUIRED_COLUMNS, "_malformed"], dtype="string")


_VALIDATE_SQL = """
WITH raw AS (
    SELECT *,
           nullif(trim(customer_id), '') AS c,
           try_cast(trim(product_id) AS BIGINT) AS p,
           lower(trim(event_type)) AS e,
           timezone('UTC', try_cast(trim("timestamp") AS TIMESTAMPTZ)) AS t
    FROM _raw
),
checked AS (
    SELECT *, CASE
        WHEN _malformed IS NOT NULL THEN 'malformed_line'
        WHEN c IS NULL THEN 'missing_customer_id'
        WHEN p IS NULL THEN 'bad_product_id'
        WHEN e IS NULL OR e NOT IN (SELECT event_type FROM _types) THEN 'unknown_event_type'
        WHEN t IS NULL THEN 'bad_timestamp'
        WHEN p NOT IN (SELECT product_id FROM _products) THEN 'unknown_product'
    END AS reason
    FROM raw
),
deduped AS (
    SELECT *, CASE WHEN reason IS NULL AND row_number() OVER (PARTITION BY c, p, e, t ORDER BY _order) > 1
                   THEN 'duplicate_event' ELSE reason END AS final_reason
    FROM checked
)
SELECT * FROM deduped ORDER BY _order
"""


def validate(
    raw: pd.DataFrame, product_ids: Iterable[int], event_types: Sequence[str] = EVENT_TYPES
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split string rows (``read_raw``'s shape) into typed clean events and quarantine rows with reasons.

    Timestamps without a zone are taken as UTC and all are stored as naive UTC. Exact repeats of an
    event (same customer, product, type and instant) are quarantined as ``duplicate_event``: double
    logging would otherwise inflate affinity and popularity.
    """
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'").fetchall()
        con.register("_raw", raw.assign(_order=range(len(raw))))
        con.register("_products", pd.DataFrame({"product_id": pd.Series(list(product_ids), dtype="int64")}))
        con.register("_types", pd.DataFrame({"event_type": [str(t).lower() for t in event_types]}))
        out = con.execute(_VALIDATE_SQL).df()
    finally:
        con.close()
    bad = out["final_reason"].notna()
    clean = out.loc[~bad]
    events = pd.DataFrame(
        {
            "customer_id": clean["c"].astype(str).to_numpy(),
            "product_id": clean["p"].astype("int64").to_numpy(),
            "event_type": clean["e"].astype(str).to_numpy(),
            "timestamp": pd.to_datetime(clean["t"]).astype("datetime64[us]").to_numpy(),
            "record_id": clean["record_id"].astype(str).to_numpy(),
        }
    )
    q = out.loc[bad]
    fields = (
        "customer_id="
        + q["customer_id"].fillna("<null>")
        + " product_id="
        + q["product_id"].fillna("<null>")
        + " event_type="
        + q["event_type"].fillna("<null>")
        + " timestamp="
        + q["timestamp"].fillna("<null>")
    )
    detail = ("raw: " + q["_malformed"]).fillna(fields)
    quarantine = pd.DataFrame(
        {
            "source": SOURCE,
            "record_id": q["record_id"].astype(str).to_numpy(),
            "reason": q["final_reason"].astype(str).to_numpy(),
            "detail": detail.astype(str).to_numpy(),
        }
    ).astype("string")
    return events, quarantine


def sort_events(events: pd.DataFrame) -> pd.DataFrame:
    """Customer-major order: one customer's events sit together, so DuckDB's zone maps make a
    ``WHERE customer_id = ?`` lookup read a few row groups instead of the whole table."""
    return events.sort_values(["customer_id", "timestamp", "product_id", "event_type"], ignore_index=True)


def load_interactions(
    path: Path, product_ids: Iterable[int], event_types: Sequence[str] = EVENT_TYPES
) -> LoadedInteractions:
    """Read every event file under ``path`` and validate it against the catalog's product ids."""
    path = Path(path)
    files, skipped = find_interaction_files(path)
    raw = read_raw(files, root=path if path.is_dir() else path.parent)
    events, quarantine = validate(raw, product_ids, event_types)
    return LoadedInteractions(sort_events(events), quarantine, files, len(raw), skipped)


def time_holdout(events: pd.DataFrame, holdout_days: float = 14.0, cutoff: datetime | None = None) -> HoldOut:
    """A global time cut: the last ``holdout_days`` of events are held out (or those from ``cutoff`` on).

    One cut for everyone (not each customer's last N events) mirrors production, where a model fit
    today is judged on what happens next, and keeps a purchase's own views on the same side of the cut.
    """
    if cutoff is None:
        cutoff = pd.Timestamp(events["timestamp"].max()).to_pydatetime() - timedelta(days=holdout_days)
    ts = pd.Timestamp(cutoff)
    before = events["timestamp"] < ts
    return HoldOut(
        events.loc[before].reset_index(drop=True), events.loc[~before].reset_index(drop=True), cutoff
    )
