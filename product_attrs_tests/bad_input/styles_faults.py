"""styles.csv: lines that cannot be a product row are quarantined with their reason; the run goes on."""

from __future__ import annotations

import os
from pathlib import Path

from product_attrs.catalog.styles import parse_styles
from product_attrs_tests.bad_input.cases import Fault, quarantined, raised

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"
GOOD = "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt\n"
REST = ",Men,Apparel,Topwear,Shirts,Red,Fall,2011,Casual,Red Shirt\n"
BIG = "x" * 140_000  # over the csv module's 128 KiB field limit


def _styles(line: str):
    def run(folder: Path) -> str:
        path = folder / "styles.csv"
        path.write_bytes((HEADER + GOOD + line).encode("utf-8", errors="surrogateescape"))
        parsed = parse_styles(path)
        assert len(parsed.rows) == 1, "the good line is kept"
        return quarantined(parsed.quarantine["reason"])

    return run


def _name_kept_whole(folder: Path) -> str:
    path = folder / "styles.csv"
    path.write_text(HEADER + "7,Men,Apparel,Topwear,Shirts,Red,Fall,2011,Casual,Red\u2028Shirt\x85XL\n")
    parsed = parse_styles(path)
    assert parsed.quarantine.empty and parsed.n_lines == 1
    whole = parsed.rows["product_display_name"].iloc[0] == "Red\u2028Shirt\x85XL"
    return "kept: 1 row, name whole" if whole else "kept: name cut"


def _big_header(folder: Path) -> str:
    path = folder / "styles.csv"
    path.write_text(f'"{BIG}",gender\n' + GOOD)
    try:
        parse_styles(path)
    except Exception as exc:  # noqa: BLE001 - the outcome is the error, whatever it is
        return raised(exc)
    return "no error"


FAULTS = [
    Fault(
        "styles.csv", "a line with too few fields", "quarantine: too_few_fields", _styles("1,Men,Apparel\n")
    ),
    Fault("styles.csv", "an id in Arabic-Indic digits (١٢٣)", "quarantine: bad_id", _styles("١٢٣" + REST)),
    Fault("styles.csv", "an id with a superscript digit (1²)", "quarantine: bad_id", _styles("1²" + REST)),
    Fault(
        "styles.csv",
        "an id beyond int64 (99999999999999999999)",
        "quarantine: id_out_of_range",
        _styles("99999999999999999999" + REST),
    ),
    Fault("styles.csv", "id 0", "quarantine: id_out_of_range", _styles("0" + REST)),
    Fault(
        "styles.csv",
        "a quoted field over 128 KiB",
        "quarantine: field_too_large",
        _styles(f'8,Men,Apparel,Topwear,Shirts,Red,Fall,2011,Casual,"{BIG}"\n'),
    ),
    Fault(
        "styles.csv",
        "an unquoted field over 128 KiB",
        "quarantine: field_too_large",
        _styles(f"8,Men,Apparel,Topwear,Shirts,Red,Fall,2011,Casual,{BIG}\n"),
    ),
    Fault(
        "styles.csv",
        "a NUL byte in a line",
        "quarantine: nul_byte",
        _styles("8,Men,Apparel,Topwear,Shirts,Red,Fall,2011,Casual,Red\x00Shirt\n"),
    ),
    Fault(
        "styles.csv",
        "a product name holding U+2028 and \\x85 (str.splitlines breaks there)",
        "kept: 1 row, name whole",
        _name_kept_whole,
    ),
    Fault(
        "styles.csv",
        "a header with a field over 128 KiB",
        "error: StylesFormatError: styles.csv: the header line is not csv "
        "(a field is longer than 131,072 characters)",
        _big_header,
    ),
]


def _fifo(folder: Path) -> str:
    os.mkfifo(folder / "styles.csv")  # opening a FIFO for reading blocks until a writer comes
    try:
        parse_styles(folder / "styles.csv")
    except Exception as exc:  # noqa: BLE001 - the outcome is the error, whatever it is
        return f"error: {type(exc).__name__}"  # its message names the tmp folder
    return "no error"


FAULTS.append(Fault("styles.csv", "a FIFO named styles.csv", "error: NotARegularFile", _fifo))
