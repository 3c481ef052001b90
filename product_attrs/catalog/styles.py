"""Parse a Kaggle-layout ``styles.csv`` so that no good row is lost.

The real file has lines where an unquoted comma inside ``productDisplayName`` adds an 11th field, and
``pandas.read_csv`` refuses the whole file. We read it line by line with the ``csv`` module: a line whose
extra fields can only belong to the last column is repaired and flagged; anything else goes to quarantine
with its line number, raw text and reason.

The line-level rules here (`split_lines`, `line_fields`, `ascii_id`) are shared by every text reader of
the project (grocery lists, SKU-110K csv, interactions), so a NUL byte, a 200 KiB field or an id like
``²`` gets the same reason wherever it turns up.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from product_attrs.paths import read_regular

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

_YEAR = re.compile(r"[0-9]{4}(\.0)?")
_DIGITS = re.compile(r"[0-9]+")
_LINE_END = re.compile(r"\r\n|\r|\n")
INT64_MAX = 2**63 - 1
#: The csv module's default field limit (128 KiB). A longer field is quarantined as ``field_too_large``,
#: quoted or not, instead of raising ``csv.Error`` (or, unquoted, slipping through).
FIELD_LIMIT = 131072


def split_lines(text: str) -> list[str]:
    """Lines as the csv module ends them (``\\r\\n``, ``\\r``, ``\\n``); ``str.splitlines`` also breaks
    on ``\\x1c``, ``\\x85`` or U+2028, which a product name may hold, and would cut its row in two."""
    lines = _LINE_END.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


def line_fields(raw: str) -> list[str] | tuple[str, str]:
    """The comma-separated fields of one line, or ``(reason, detail)`` when it has none to trust:
    ``nul_byte``, ``field_too_large`` or ``unparseable_line`` (a quote the csv module rejects)."""
    if "\x00" in raw:
        return "nul_byte", "line contains a NUL byte"
    if '"' in raw:  # only quoted lines need the csv module; a plain split is 5x faster
        try:
            fields = next(csv.reader([raw], strict=True))
        except csv.Error as exc:
            if "field limit" in str(exc):
                return "field_too_large", f"a field is longer than {FIELD_LIMIT:,} characters"
            return "unparseable_line", f"csv error: {exc}"
    else:
        fields = raw.split(",")
    if len(raw) > FIELD_LIMIT:  # pragma: no mutate - only a fast path: no field is longer than its line
        if max(map(len, fields)) > FIELD_LIMIT:
            return "field_too_large", f"a field is longer than {FIELD_LIMIT:,} characters"
    return fields


def ascii_id(text: str, minimum: int = 1) -> int | str:
    """The integer id in ``text``, or why not: ``bad_id`` unless ASCII digits only (``str.isdigit`` and
    ``int`` also take ``²`` or ``١٢``), ``id_out_of_range`` outside ``minimum``..int64 (the id column)."""
    if not _DIGITS.fullmatch(text):
        return "bad_id"
    # More than 19 digits is past int64; the check also keeps int() away from its 4,300-digit limit.
    if len(text.lstrip("0")) > 19:  # pragma: no mutate - > 20 alike: 20 digits fail the range check
        return "id_out_of_range"
    value = int(text)
    return value if minimum <= value <= INT64_MAX else "id_out_of_range"


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
    lines = split_lines(text)
    if not lines:
        raise StylesFormatError(f"{source} is empty")
    header = line_fields(lines[0].lstrip("\ufeff"))
    if isinstance(header, tuple):
        raise StylesFormatError(f"{source}: the header line is not csv ({header[1]})")
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
        fields = line_fields(raw)
        if isinstance(fields, tuple):
            reject(line_no, raw.replace("\x00", "\\0"), *fields)
            continue
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
        pid = ascii_id(raw_id)
        if isinstance(pid, str):
            reject(line_no, raw, pid, f"id {raw_id[:40]!r} is not an integer in 1..{INT64_MAX}")
            continue
        if raw_year and raw_year not in MISSING_MARKERS and not _YEAR.fullmatch(raw_year):
            reason = "unrepairable_extra_fields" if repaired else "bad_year"
            reject(line_no, raw, reason, f"year {raw_year!r} is not a 4-digit year")
            continue
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
    data = read_regular(path)  # a FIFO named styles.csv is an error, not a hang
    text = data.decode(
        "utf-8",  # pragma: no mutate - decode's default codec, and codec names ignore case
        errors="replace",
    )
    return parse_styles_text(text, source=path.name)
