"""Label corrections from analysts: CSV files in ``<data>/corrections/``, checked row by row.

Each file has the header (`new_label` is optional; any other column is an error for that file)::

    product_id,head,value,who,when,new_label
    15970,article_type,Shirts,ana@shop,2026-11-29T10:00:00Z,
    39386,article_type,Cargo Pants,ben@shop,2026-11-29T10:05:00+01:00,yes

`head` is a label column of the catalog (label_maps.json: article_type, master_category, sub_category);
`value` must be one of its known labels unless `new_label` is yes/true/1, which says the analyst means a
class the catalog does not have yet; `when` is an ISO 8601 time (a time without zone is read as UTC).

Like the catalog's cleaning, nothing is dropped silently: every data line of every file ends either in the
clean table (one row per (product, head): the correction a refresh trains with) or in the quarantine with
a reason:

    malformed_line        a line whose field count is not the header's
    bad_header            a file whose header lacks a required column or has an unknown one (every line)
    missing_field         product_id, head, value, who or when empty
    bad_product_id        not an integer
    unknown_product       no such product in the catalog
    evaluation_product    a product of the test split: the fixed evaluation set that corrections never
                          touch, so that a refreshed model and the champion are scored on the same labels
    unknown_head          not a label column of the catalog
    unknown_label         not a known label of the head, and not flagged new_label
    bad_new_label_flag    new_label is neither empty nor yes/no/true/false/1/0
    bad_timestamp         `when` is not an ISO 8601 time
    conflicting_duplicate two or more corrections of the same product and head with different values:
                          all of them wait until an analyst settles it
    duplicate             the same correction again (same product, head, value): the first line is kept
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from product_attrs.catalog.styles import QUARANTINE_COLUMNS

SOURCE = "label_corrections"
REQUIRED = ("product_id", "head", "value", "who", "when")
OPTIONAL = ("new_label",)
CLEAN_COLUMNS = [
    "correction_id",
    "product_id",
    "head",
    "value",
    "new_label",
    "who",
    "corrected_at",
    "source_file",
    "line",
]
_TRUE, _FALSE = {"yes", "true", "1", "y"}, {"", "no", "false", "0", "n"}


@dataclass
class Corrections:
    clean: pd.DataFrame  # CLEAN_COLUMNS, one row per (product_id, head)
    quarantine: pd.DataFrame  # QUARANTINE_COLUMNS
    n_lines: int  # data lines read (blank lines excluded): len(clean) + len(quarantine)
    files: list[str]


def correction_files(folder: Path) -> list[Path]:
    """The CSV files analysts dropped into `folder` (not hidden ones, not sub-folders), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.csv") if p.is_file() and not p.name.startswith("."))


def fingerprint(path: Path) -> str:
    """Name, size and content hash: a file edited in place is a new file for the sensor."""
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:16]
    return f"{path.name}:{path.stat().st_size}:{digest}"


def correction_id(product_id: int, head: str, value: str, who: str, when: str) -> str:
    """Stable id of one correction (its content, not its file): what a model version records it saw."""
    text = "\x1f".join([str(product_id), head, value, who, when])
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _parse_when(text: str) -> str | None:
    """ISO 8601 time as a UTC 'YYYY-MM-DDTHH:MM:SSZ' string, or None."""
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        return None
    if ts is pd.NaT or pd.isna(ts):
        return None
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def read_rows(files: list[Path]) -> tuple[list[dict], list[dict], int]:
    """(parsed rows with their file and line, quarantine rows of unreadable lines, data lines read)."""
    rows, bad, n = [], [], 0
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        lines = list(csv.reader(io.StringIO(text)))
        if not lines:
            continue
        header = [h.strip().lower() for h in lines[0]]
        missing = [c for c in REQUIRED if c not in header]
        unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
        for number, fields in enumerate(lines[1:], start=2):
            if not any(f.strip() for f in fields):
                continue  # a blank line is no record
            n += 1
            record = f"{path.name}:{number}"
            if missing or unknown:
                detail = f"missing {missing}" if missing else f"unknown columns {unknown}"
                bad.append(_q(record, "bad_header", f"{detail}; expected {list(REQUIRED + OPTIONAL)}"))
            elif len(fields) != len(header):
                bad.append(_q(record, "malformed_line", f"{len(fields)} fields, header has {len(header)}"))
            else:
                row = {h: f.strip() for h, f in zip(header, fields, strict=True)}
                rows.append(row | {"source_file": path.name, "line": number})
    return rows, bad, n


def _q(record: str, reason: str, detail: str) -> dict:
    return {"source": SOURCE, "record_id": record, "reason": reason, "detail": detail}


def validate(
    rows: list[dict], splits: pd.DataFrame, label_maps: dict[str, list[str]]
) -> tuple[pd.DataFrame, list[dict]]:
    """Checked corrections (CLEAN_COLUMNS) and the quarantine rows of the rest, every row in one."""
    split_of = dict(zip(splits["id"].astype("int64"), splits["split"].astype(str), strict=True))
    known = {h: set(v) for h, v in label_maps.items()}
    ok: list[dict] = []
    bad: list[dict] = []
    for row in rows:
        record = f"{row['source_file']}:{row['line']}"
        empty = [c for c in REQUIRED if not row.get(c)]
        if empty:
            bad.append(_q(record, "missing_field", f"empty {empty}"))
            continue
        try:
            pid = int(row["product_id"])
        except ValueError:
            bad.append(_q(record, "bad_product_id", f"{row['product_id']!r} is not an integer"))
            continue
        head, value, flag = row["head"], row["value"], row.get("new_label", "").lower()
        when = _parse_when(row["when"])
        if pid not in split_of:
            bad.append(_q(record, "unknown_product", f"product {pid} is not in the catalog"))
        elif split_of[pid] == "test":
            bad.append(
                _q(record, "evaluation_product", f"product {pid} is in the test split (the evaluation set)")
            )
        elif head not in known:
            bad.append(_q(record, "unknown_head", f"{head!r}; heads are {sorted(known)}"))
        elif flag not in _TRUE | _FALSE:
            bad.append(_q(record, "bad_new_label_flag", f"new_label {row.get('new_label')!r}"))
        elif value not in known[head] and flag not in _TRUE:
            bad.append(
                _q(record, "unknown_label", f"{value!r} is no {head} label (set new_label=yes for a new one)")
            )
        elif when is None:
            bad.append(_q(record, "bad_timestamp", f"{row['when']!r} is not an ISO 8601 time"))
        else:
            ok.append(
                {
                    "correction_id": correction_id(pid, head, value, row["who"], when),
                    "product_id": pid,
                    "head": head,
                    "value": value,
                    "new_label": value not in known[head],
                    "who": row["who"],
                    "corrected_at": when,
                    "source_file": row["source_file"],
                    "line": int(row["line"]),
                    "_record": record,
                }
            )
    frame = pd.DataFrame(ok, columns=[*CLEAN_COLUMNS, "_record"])
    keep = []
    for (_, _), group in frame.groupby(["product_id", "head"], sort=True):
        if group["value"].nunique() > 1:
            values = sorted(group["value"].unique())
            for record in group["_record"]:
                bad.append(
                    _q(record, "conflicting_duplicate", f"values {values} for the same product and head")
                )
            continue
        first = group.sort_values(["source_file", "line"]).iloc[0]
        keep.append(first)
        for record in group["_record"]:
            if record != first["_record"]:
                bad.append(_q(record, "duplicate", f"same correction as {first['_record']}"))
    clean = pd.DataFrame(keep, columns=frame.columns).drop(columns="_record").reset_index(drop=True)
    clean = clean.astype({"product_id": "int64", "line": "int64", "new_label": "bool"})
    return clean, bad


def check_corrections(folder: Path, splits: pd.DataFrame, label_maps: dict[str, list[str]]) -> Corrections:
    """Every correction file under `folder`: the clean corrections and the quarantine with reasons."""
    files = correction_files(folder)
    rows, unreadable, n = read_rows(files)
    clean, bad = validate(rows, splits, label_maps)
    quarantine = pd.DataFrame(unreadable + bad, columns=QUARANTINE_COLUMNS)
    return Corrections(clean, quarantine, n, [p.name for p in files])


def apply_corrections(
    frame: pd.DataFrame, label_maps: dict[str, list[str]], corrections: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, list[str]], pd.Series]:
    """The catalog rows with the corrected labels, the label maps grown by the new labels (appended, so
    every known label keeps its index), and a boolean Series: which rows a correction changed or confirmed.
    Corrections of products not in `frame` are ignored (the caller counts what it applied)."""
    out = frame.copy()
    maps = {h: list(v) for h, v in label_maps.items()}
    corrected = pd.Series(False, index=out.index)
    ids = out["id"].astype("int64")
    for c in corrections.itertuples(index=False):
        hit = (ids == int(c.product_id)).to_numpy()
        if not hit.any() or c.head not in out.columns:
            continue
        if c.head in maps and c.value not in maps[c.head]:
            maps[c.head].append(c.value)
        out[c.head] = out[c.head].astype("object")
        out.loc[hit, c.head] = c.value
        corrected |= hit
    return out, maps, corrected


#: Where analysts drop correction files, and where the checked ones go (both under the data root).
INPUT_FOLDER = "corrections"
OUTPUT_FOLDER = "review"


def input_folder(data_dir: Path) -> Path:
    return Path(data_dir) / INPUT_FOLDER


def clean_path(data_dir: Path) -> Path:
    return Path(data_dir) / OUTPUT_FOLDER / "label_corrections.parquet"


def quarantine_path(data_dir: Path) -> Path:
    return Path(data_dir) / OUTPUT_FOLDER / "label_corrections_quarantine.parquet"
