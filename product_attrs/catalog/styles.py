"""Parse a Kaggle-layout ``styles.csv`` so that no good row is lost.

The real file has lines where an unquoted comma inside ``productDisplayName`` adds an 11th field, and
``pandas.read_csv`` refuses the whole file. We read it line by line with the ``csv`` module: a line whose
extra fields can only belong to the last column is repaired and flagged; anything else goes to quarantine
with its line number, raw text and reason.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

#: The Kaggle header, in order, and the snake_case names we publish.
STYLES_COLUMNS: dict[str, str] = {
    "id": "id",
    "gender": "gender",
    "masterCategory": "master_category",
    "subCategory": "sub_category",
    "articleType": "article_type",
    "baseColour": "base_colour",
    "season": "season",
    "year": "year",
    "usage": "usage",
    "productDisplayName": "product_display_name",
}
TEXT_COLUMNS = [c for c in STYLES_COLUMNS.values() if c not in ("id", "year")]
#: Values that mean "unknown" in the Kaggle file (pandas would also turn ``NA`` into NaN).
MISSING_MARKERS = frozenset({"", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"})
QUARANTINE_COLUMNS = ["source", "record_id", "reason", "detail"]

_YEAR = re.compile(r"^\d{4}(\.0)?$")
_ID = re.compile(r"^\d+$")


class StylesFormatError(ValueError):
    """The file is not a styles table at all (wrong header, not text): nothing row-level can be done."""


@dataclass
class ParsedStyles:
    rows: pd.DataFrame
    quarantine: pd.DataFrame
    n_lines: int
    n_repaired: int
    n_blank: int


def parse_styles_text(text: str, source: str = "styles.csv") -> ParsedStyles:
    """Parse the text of a styles file; see the module docstring for the rules."""
    lines = text.splitlines()
    if not lines:
        raise StylesFormatError(f"{source} is empty")
    header = next(csv.reader([lines[0].lstrip("\ufeff")]))
    header = [h.strip() for h in header]
    expected = list(STYLES_COLUMNS)
    if header != expected:
        raise StylesFormatError(f"{source}: header {header!r} is not the Kaggle styles header {expected!r}")
    n = len(expected)
    records: list[dict] = []
    quarantine: list[dict] = []
    seen: dict[int, int] = {}
    n_repaired = n_blank = 0

    def reject(line_no: int, raw: str, reason: str, detail: str) -> None:
        quarantine.append(
            {
                "source": source,
                "record_id": f"line:{line_no}",
                "reason": reason,
                "detail": f"{detail} | raw: {raw[:500]}",
            }
        )

    for line_no, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            n_blank += 1
            continue
        if "\x00" in raw:
            reject(line_no, raw.replace("\x00", "\\0"), "nul_byte", "line contains a NUL byte")
            continue
        if '"' in raw:  # only quoted lines need the csv module; a plain split is 5x faster
            try:
                fields = next(csv.reader([raw], strict=True))
            except csv.Error as exc:
                reject(line_no, raw, "unparseable_line", f"csv error: {exc}")
                continue
        else:
            fields = raw.split(",")
        repaired = False
        if len(fields) > n:
            # Extra commas can only belong to the free-text last column when the columns before it
            # still look right: an integer id and a year (or nothing) in the year column.
            fields = fields[: n - 1] + [",".join(fields[n - 1 :])]
            repaired = True
        if len(fields) < n:
            reject(line_no, raw, "too_few_fields", f"expected {n} fields, saw {len(fields)}")
            continue
        raw_id, raw_year = fields[0].strip(), fields[7].strip()
        if not _ID.match(raw_id):
            reject(line_no, raw, "bad_id", f"id {raw_id!r} is not a positive integer")
            continue
        if raw_year and raw_year not in MISSING_MARKERS and not _YEAR.match(raw_year):
            reason = "unrepairable_extra_fields" if repaired else "bad_year"
            reject(line_no, raw, reason, f"year {raw_year!r} is not a 4-digit year")
            continue
        pid = int(raw_id)
        if pid in seen:
            reject(line_no, raw, "duplicate_id", f"id {pid} already on line {seen[pid]}")
            continue
        seen[pid] = line_no
        fields[0] = pid
        fields[7] = int(float(raw_year)) if raw_year and raw_year not in MISSING_MARKERS else None
        fields.append(line_no)
        fields.append(repaired)
        n_repaired += repaired
        records.append(fields)

    rows = pd.DataFrame(records, columns=[*STYLES_COLUMNS.values(), "line", "repaired"])
    rows["id"] = rows["id"].astype("int64")
    rows["year"] = rows["year"].astype("Int64")
    rows["line"] = rows["line"].astype("int64")
    rows["repaired"] = rows["repaired"].astype(bool)
    for col in TEXT_COLUMNS:
        values = rows[col].astype("string").str.strip()
        rows[col] = values.mask(values.isin(MISSING_MARKERS))
    return ParsedStyles(
        rows=rows,
        quarantine=pd.DataFrame(quarantine, columns=QUARANTINE_COLUMNS),
        n_lines=len(lines) - 1,
        n_repaired=n_repaired,
        n_blank=n_blank,
    )


def parse_styles(path: Path) -> ParsedStyles:
    """Read ``styles.csv``; undecodable bytes are replaced (and the row kept) rather than failing the file."""
    if not path.exists():
        raise FileNotFoundError(f"no styles file at {path}")
    data = path.read_bytes()
    text = data.decode("utf-8", errors="replace")
    return parse_styles_text(text, source=path.name)
