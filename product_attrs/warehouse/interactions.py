"""Customer events: read (CSV or Parquet, a file or a folder), validate, and split in time for evaluation.

Every input row ends in exactly one place: ``events`` (clean, typed) or ``quarantine`` (the project-wide
shape ``source, record_id, reason, detail``), so the asset can assert clean + quarantined = input.
Validation is DuckDB SQL over all-string columns, so a bad value becomes a reason, never an exception.
A CSV is read one line per record (a quote never runs on into the next line), undecodable bytes are
replaced, and a line is read at most `LINE_LIMIT` characters at a time, so no line can exhaust memory.
"""

from __future__ import annotations

import gzip
import io
import zlib
from operator import itemgetter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from product_attrs.catalog.styles import FIELD_LIMIT, INT64_MAX, line_fields
from product_attrs.paths import open_regular
from product_attrs.warehouse.vocabulary import EVENT_TYPES

REQUIRED_COLUMNS: tuple[str, ...] = ("customer_id", "product_id", "event_type", "timestamp")
EVENT_COLUMNS: list[str] = ["customer_id", "product_id", "event_type", "timestamp", "record_id"]
QUARANTINE_COLUMNS: list[str] = ["source", "record_id", "reason", "detail"]
SOURCE = "interactions"
SUFFIXES = (".csv", ".csv.gz", ".parquet")

#: A CSV line longer than this (16 fields at the csv module's limit) is quarantined as field_too_large
#: without ever being held whole in memory.
LINE_LIMIT = 16 * FIELD_LIMIT

#: Quarantine reasons, in the order they are tested (a row gets the first that applies).
REASONS = (
    "malformed_line",
    "nul_byte",
    "field_too_large",
    "missing_customer_id",
    "bad_product_id",
    "id_out_of_range",
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
    n_blank: int = 0  # blank CSV lines, skipped (not rows): n_read + n_blank + headers = lines


@dataclass(frozen=True)
class HoldOut:
    """Events before ``cutoff`` (to fit on) and from ``cutoff`` on (to score against)."""

    history: pd.DataFrame
    holdout: pd.DataFrame
    cutoff: datetime


def _is_table_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(SUFFIXES) and not path.name.startswith(".")


class InteractionsFormatError(ValueError):
    """No file under the path is an event table (none has the columns, or none can be read at all)."""


class _Unreadable(Exception):
    """A table file that cannot be read at all (corrupt gzip, an unreadable header): skipped, with why."""


def _lines(path: Path) -> Iterator[str | None]:
    """The lines of a CSV (or .csv.gz) without their line ends; None for one over `LINE_LIMIT`.

    Undecodable bytes are replaced, so a line is judged alone; only ``\\r\\n``, ``\\r`` and ``\\n`` end
    a line, as for the csv module. A FIFO is refused (`open_regular`) instead of blocking.
    """
    with open_regular(path) as raw:
        binary = gzip.GzipFile(fileobj=raw, mode="rb") if path.name.lower().endswith(".gz") else raw
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="replace", newline=None)
        try:
            while line := text.readline(LINE_LIMIT + 1):
                if line.endswith("\n"):
                    yield line[:-1]
                elif len(line) <= LINE_LIMIT:
                    yield line  # the last line, without a line end
                else:
                    while line and not line.endswith("\n"):  # skip the rest of the line
                        line = text.readline(LINE_LIMIT)
                    yield None
        except (OSError, EOFError, zlib.error) as exc:  # a corrupt or truncated gzip stream
            raise _Unreadable(f"cannot be read: {exc}") from None
        finally:
            text.detach()  # the ``with`` closes the file itself


def _header(lines: Iterator[str | None]) -> tuple[list[str], int]:
    """The first non-blank line's fields, and how many blank lines came before it."""
    n_blank = 0
    for line in lines:
        if line is not None and not line.strip():
            n_blank += 1
            continue
        fields = line_fields(line) if line is not None else ("field_too_large", "")
        if isinstance(fields, tuple):
            raise _Unreadable(f"its header line is not csv ({fields[0]})")
        return fields, n_blank
    raise _Unreadable("it has no header line")


def _csv_header(path: Path) -> list[str]:
    lines = _lines(path)
    try:
        return _header(lines)[0]
    finally:
        lines.close()


def _columns(path: Path) -> list[str]:
    if path.name.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
            raise _Unreadable(f"cannot be read as parquet: {str(exc)[:200]}") from None
    return _csv_header(path)


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
        try:
            columns = _columns(candidate)
        except _Unreadable as exc:
            skipped[str(candidate)] = str(exc)
            continue
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            skipped[str(candidate)] = f"missing columns {missing}"
        else:
            files.append(candidate)
    if not files:
        raise InteractionsFormatError(
            f"no file under {path} has the columns {list(REQUIRED_COLUMNS)} (skipped: {skipped})"
        )
    return files, skipped


RAW_COLUMNS = [*REQUIRED_COLUMNS, "_malformed", "_reason", "record_id"]


def read_raw(files: Sequence[Path], root: Path | None = None) -> pd.DataFrame:
    """The required columns of every file as nullable strings, plus ``record_id`` = ``file:row``.

    Rows are numbered from 1 after the header, blank lines skipped, so ``interactions.csv:1`` is the
    first data line. A CSV line that cannot be a row becomes one whose ``_reason`` says why
    (`REASONS`) and whose ``_malformed`` holds its text. ``attrs["n_blank"]`` counts the blank lines.
    """
    parts = []
    n_blank = 0
    for f in files:
        if f.name.lower().endswith(".parquet"):
            frame = pd.read_parquet(f, columns=list(REQUIRED_COLUMNS)).astype("string")
            frame["_malformed"] = frame["_reason"] = pd.Series(pd.NA, index=frame.index, dtype="string")
        else:
            frame, blank = _read_csv(f)
            n_blank += blank
        name = str(f.relative_to(root)) if root is not None and f.is_relative_to(root) else f.name
        frame["record_id"] = [f"{name}:{i}" for i in range(1, len(frame) + 1)]
        parts.append(frame[RAW_COLUMNS])
    out = pd.concat(parts, ignore_index=True)
    out.attrs["n_blank"] = n_blank
    return out


def _read_csv(path: Path) -> tuple[pd.DataFrame, int]:
    """One row per non-blank line after the header, and the number of blank lines."""
    lines = _lines(path)
    rows: list[tuple[str | None, ...]] = []
    problems: dict[int, tuple[str, str]] = {}  # row -> (reason, the line's text)
    try:
        header, n_blank = _header(lines)
        pick, n = itemgetter(*(header.index(c) for c in REQUIRED_COLUMNS)), len(header)
        bad = (None,) * len(REQUIRED_COLUMNS)
        for line in lines:
            if line is None:
                problems[len(rows)] = ("field_too_large", f"<a line longer than {LINE_LIMIT:,} characters>")
                rows.append(bad)
                continue
            if '"' in line or "\x00" in line or len(line) > FIELD_LIMIT:
                fields = line_fields(line)  # the slow, careful path
            else:
                fields = line.split(",")
            if isinstance(fields, list) and len(fields) == n:
                rows.append(pick(fields))
                continue
            if not line.strip():
                n_blank += 1
                continue
            if isinstance(fields, tuple):
                reason = "malformed_line" if fields[0] == "unparseable_line" else fields[0]
                problems[len(rows)] = (reason, line[:500].replace("\x00", "\\0"))
            else:
                problems[len(rows)] = ("malformed_line", line[:500])
            rows.append(bad)
    except _Unreadable as exc:
        raise InteractionsFormatError(f"{path} {exc}") from None
    finally:
        lines.close()
    frame = pd.DataFrame(rows, columns=list(REQUIRED_COLUMNS), dtype="string")
    at = list(problems)
    for i, column in enumerate(("_reason", "_malformed")):
        values = pd.Series(pd.NA, index=frame.index, dtype="string")
        values.iloc[at] = [problem[i] for problem in problems.values()]
        frame[column] = values
    return frame, n_blank


_VALIDATE_SQL = """
WITH raw AS (
    SELECT *,
           nullif(trim(customer_id), '') AS c,
           coalesce(regexp_full_match(trim(product_id), '[0-9]+'), false) AS p_digits,
           CASE WHEN regexp_full_match(trim(product_id), '[0-9]+') AND try_cast(trim(product_id) AS HUGEINT)
                     BETWEEN 1 AND $int64_max THEN try_cast(trim(product_id) AS BIGINT) END AS p,
           lower(trim(event_type)) AS e,
           timezone('UTC', try_cast(trim("timestamp") AS TIMESTAMPTZ)) AS t
    FROM _raw
),
checked AS (
    SELECT *, CASE
        WHEN _reason IS NOT NULL THEN _reason
        WHEN c IS NULL THEN 'missing_customer_id'
        WHEN NOT p_digits THEN 'bad_product_id'
        WHEN p IS NULL THEN 'id_out_of_range'
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
""".replace("$int64_max", str(INT64_MAX))


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
    return LoadedInteractions(sort_events(events), quarantine, files, len(raw), skipped, raw.attrs["n_blank"])


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
