"""Fuzz the interactions reader: any CSV bytes in, no exception out but InteractionsFormatError, and every
line after the header is an event, a quarantine record or a counted blank line.

The reading half (bytes -> string rows) is fuzzed on every run; the whole load, whose DuckDB validation
costs ~50 ms an example, is marked slow (``make test-all`` runs it with the deep profile).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from product_attrs.warehouse.interactions import (
    REASONS,
    InteractionsFormatError,
    find_interaction_files,
    load_interactions,
    read_raw,
)
from product_attrs_tests.fuzz import damaged, join, line_end, lines_of, physical_lines

HEADER = "customer_id,product_id,event_type,timestamp"
GOOD = [
    "C1,10,view,2026-01-01T10:00:00Z",
    "C2,11,purchase,2026-01-02 12:00:00",
    '"C3",12,add_to_cart,2026-01-03T10:00:00+02:00',
    " C4 ,10, View ,2026-01-04T10:00:00Z",
]


@pytest.fixture(scope="module")
def folder() -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


@st.composite
def event_files(draw: st.DrawFn) -> bytes:
    """Mostly the header then fuzzed lines (a third with damaged bytes); now and then a mutated header
    or noise. (Hypothesis favours small integers: 0 is the common case.)"""
    kind = draw(st.integers(0, 9))
    if kind == 9:
        return draw(st.binary(max_size=300))
    head = draw(lines_of([HEADER]).filter(bool))[0] if kind == 8 else HEADER
    end = draw(line_end)
    body = join(draw(lines_of(GOOD)), end).encode("utf-8")
    return (head + end).encode("utf-8") + (draw(damaged(body)) if kind % 3 == 1 else body)


def _lines_in(data: bytes) -> list[str]:
    return physical_lines(data.removeprefix(b"\xef\xbb\xbf"))


@given(data=event_files())
def test_reading_any_bytes_every_line_accounted_for(folder: Path, data: bytes) -> None:
    path = folder / "events.csv"
    path.write_bytes(data)
    try:
        files, _ = find_interaction_files(path)
        raw = read_raw(files)
    except InteractionsFormatError:
        event("format error")
        return  # the one whole-file verdict: no usable event table
    event(f"rows: {min(len(raw), 2)}, malformed: {min(int(raw['_reason'].notna().sum()), 2)}")
    assert len(raw) + raw.attrs["n_blank"] == len(_lines_in(data)) - 1  # all but the header
    assert set(raw["_reason"].dropna()) <= set(REASONS)
    assert raw["record_id"].tolist() == [f"events.csv:{i}" for i in range(1, len(raw) + 1)]


@pytest.mark.slow
@given(data=event_files())
def test_interactions_any_bytes_every_line_accounted_for(folder: Path, data: bytes) -> None:
    path = folder / "events.csv"
    path.write_bytes(data)
    try:
        loaded = load_interactions(path, [10, 11, 12])
    except InteractionsFormatError:
        event("format error")
        return
    event(f"kept: {min(len(loaded.events), 2)}, quarantined: {min(len(loaded.quarantine), 2)}")
    assert len(loaded.events) + len(loaded.quarantine) == loaded.n_read
    assert loaded.n_read + loaded.n_blank == len(_lines_in(data)) - 1
    assert loaded.events["product_id"].between(1, 2**63 - 1).all()
    assert set(loaded.quarantine["reason"]) <= set(REASONS)
    assert set(loaded.events["record_id"]).isdisjoint(loaded.quarantine["record_id"])
