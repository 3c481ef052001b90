"""styles.csv: lines that cannot be a product row are quarantined with their reason; the run goes on."""

from __future__ import annotations

from pathlib import Path

from product_attrs.catalog.styles import parse_styles
from product_attrs_tests.bad_input.cases import Fault, quarantined

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"
GOOD = "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt\n"


def _styles(line: str):
    def run(folder: Path) -> str:
        path = folder / "styles.csv"
        path.write_bytes((HEADER + GOOD + line).encode("utf-8", errors="surrogateescape"))
        parsed = parse_styles(path)
        assert len(parsed.rows) == 1, "the good line is kept"
        return quarantined(parsed.quarantine["reason"])

    return run


FAULTS = [
    Fault(
        "styles.csv", "a line with too few fields", "quarantine: too_few_fields", _styles("1,Men,Apparel\n")
    ),
]
