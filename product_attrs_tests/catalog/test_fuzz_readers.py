"""Fuzz the catalog's text readers: any bytes in, no exception out but the documented format error, and
every line ends in exactly one place (a row, the quarantine, or the blank-line count)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from product_attrs.catalog.grocery_layout import (
    LIST_FILES,
    GroceryFormatError,
    count_list_lines,
    parse_grocery,
)
from product_attrs.catalog.styles import StylesFormatError, parse_styles
from product_attrs_tests.fuzz import damaged, join, line_end, lines_of, physical_lines

STYLES_HEADER = (
    "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
)
STYLES_GOOD = [
    "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt",
    '39386,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Casual,"Peter England Men Party Blue Jeans"',
    "53759,Men,Apparel,Topwear,Tshirts,Grey,Summer,,Casual,Puma Men Grey T-shirt, Extra",
]
CLASSES_HEADER = (
    "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),"
    "Iconic Image Path (str),Product Description Path (str)"
)
CLASSES_GOOD = [
    "Golden-Delicious,0,Apple,0,/iconic/GD_Iconic.jpg,/iconic/GD_Description.txt",
    "Granny-Smith,1,Apple,0,/iconic/GS_Iconic.jpg,/iconic/GS_Description.txt",
    "Oat-Milk,2,Milk,1,/iconic/OM_Iconic.jpg,",
]
LIST_GOOD = ["train/Apple/gd_001.jpg, 0, 0", "train/Apple/gs_001.jpg, 1, 0", "val/Milk/om.jpg, 2, 1"]


@pytest.fixture(scope="module")
def folder() -> Path:
    """One folder for all examples (Hypothesis runs a test many times within one function-scoped call)."""
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


@st.composite
def _file(draw: st.DrawFn, header: str, good: list[str], first: str | None = None) -> bytes:
    """Mostly a valid header then fuzzed lines, a third of them with damaged bytes; now and then a
    mutated header or plain noise (those mostly end in the whole-file format error)."""
    kind = draw(st.integers(0, 9))  # (Hypothesis favours small integers: 0 is the common case)
    if kind == 9:
        return draw(st.binary(max_size=300))
    head = draw(lines_of([header]).filter(bool))[0] if kind == 8 else header
    end = draw(line_end)
    lines = ([first] if first is not None else []) + draw(lines_of(good))
    body = join(lines, end).encode("utf-8")
    return (head + end).encode("utf-8") + (draw(damaged(body)) if kind % 3 == 1 else body)


@given(data=_file(STYLES_HEADER, STYLES_GOOD))
def test_styles_any_bytes_every_line_accounted_for(folder: Path, data: bytes) -> None:
    path = folder / "styles.csv"
    path.write_bytes(data)
    try:
        parsed = parse_styles(path)
    except StylesFormatError:
        event("format error")
        return  # the one whole-file verdict: not a styles table at all
    event(f"rows kept: {min(len(parsed.rows), 2)}, quarantined: {min(len(parsed.quarantine), 2)}")
    n_in = len(physical_lines(data)) - 1  # the header
    assert parsed.n_lines == n_in
    assert len(parsed.rows) + len(parsed.quarantine) + parsed.n_blank == n_in
    assert parsed.rows["id"].between(1, 2**63 - 1).all() and parsed.rows["id"].is_unique
    assert set(parsed.quarantine["record_id"]).isdisjoint(f"line:{n}" for n in parsed.rows["line"])


@given(
    classes=_file(CLASSES_HEADER, CLASSES_GOOD),
    lists=st.lists(_file(LIST_GOOD[0], LIST_GOOD), min_size=1, max_size=3),
)
def test_grocery_any_bytes_every_line_accounted_for(folder: Path, classes: bytes, lists: list[bytes]) -> None:
    for name in [*LIST_FILES.values(), "classes.csv"]:
        (folder / name).unlink(missing_ok=True)
    (folder / "classes.csv").write_bytes(classes)
    for data, name in zip(lists, LIST_FILES.values()):
        (folder / name).write_bytes(data)
    try:
        parsed = parse_grocery(folder)
    except GroceryFormatError:
        event("format error")
        return  # the one whole-file verdict: not a Grocery Store layout at all
    event(f"rows kept: {min(len(parsed.rows), 2)}, quarantined: {min(len(parsed.quarantine), 2)}")
    lines_in = {name: physical_lines(data) for data, name in zip(lists, LIST_FILES.values())}
    n_in = sum(len(lines) for lines in lines_in.values())
    assert parsed.n_lines + parsed.n_blank == n_in
    assert len(parsed.rows) + len(parsed.quarantine) == parsed.n_lines == count_list_lines(folder)
    assert parsed.rows["id"].tolist() == list(range(1, len(parsed.rows) + 1))
    class_lines = [line for line in physical_lines(classes.lstrip(b"\xef\xbb\xbf"))[1:] if line.strip()]
    # A class line is kept or refused; a refused description file is a record of its own (its class stays).
    refused = parsed.classes_quarantine
    refused_lines = refused[~refused["record_id"].str.endswith(":description")]
    assert len(parsed.gallery) + len(refused_lines) == len(class_lines)
