"""Customer interactions: each CSV line is judged alone and ends in the events or the quarantine."""

from __future__ import annotations

import gzip
from pathlib import Path

from product_attrs.warehouse.interactions import (
    find_interaction_files,
    load_interactions,
)
from product_attrs_tests.bad_input.cases import Fault, quarantined, raised

HEADER = b"customer_id,product_id,event_type,timestamp\n"
GOOD = b"C1,10,view,2026-01-01T10:00:00Z\n"
LATER = b"C2,11,view,2026-01-02T10:00:00Z\n"
BIG = b"x" * 140_000  # over the csv module's 128 KiB field limit


def _events(line: bytes):
    def run(folder: Path) -> str:
        path = folder / "events.csv"
        path.write_bytes(HEADER + GOOD + line + LATER)
        loaded = load_interactions(path, [10, 11])
        assert {"events.csv:1", f"events.csv:{loaded.n_read}"} <= set(loaded.events["record_id"]), "good kept"
        assert len(loaded.events) + len(loaded.quarantine) == loaded.n_read
        if loaded.quarantine.empty:
            return f"kept: {len(loaded.events)} events"
        return quarantined(loaded.quarantine["reason"])

    return run


def _folder_with(name: str, data: bytes):
    def run(folder: Path) -> str:
        (folder / "good.csv").write_bytes(HEADER + GOOD)
        (folder / name).write_bytes(data)
        files, skipped = find_interaction_files(folder)
        loaded = load_interactions(folder, [10, 11])
        assert [f.name for f in files] == ["good.csv"] and len(loaded.events) == 1
        return "skipped: " + skipped[str(folder / name)]

    return run


def _only(data: bytes):
    def run(folder: Path) -> str:
        (folder / "events.csv").write_bytes(data)
        try:
            load_interactions(folder / "events.csv", [10, 11])
        except ValueError as exc:  # InteractionsFormatError is one
            return (
                raised(exc)
                .replace(f"{folder}/", "")
                .replace("['customer_id', 'product_id', 'event_type', 'timestamp']", "[...]")
            )
        return "no error"

    return run


FAULTS = [
    Fault(
        "interactions",
        "a product id in Arabic-Indic digits (١٠)",
        "quarantine: bad_product_id",
        _events("C1,١٠,view,2026-01-01T10:00:00Z\n".encode()),
    ),
    Fault(
        "interactions",
        "a product id as '1_0' or '10.0' (DuckDB's cast reads both as 10)",
        "quarantine: bad_product_id",
        _events(b"C1,1_0,view,2026-01-01T11:00:00Z\nC1,10.0,view,2026-01-01T12:00:00Z\n"),
    ),
    Fault(
        "interactions",
        "a product id beyond int64, or 0",
        "quarantine: id_out_of_range",
        _events(b"C1,99999999999999999999,view,2026-01-01T11:00:00Z\nC1,0,view,2026-01-01T12:00:00Z\n"),
    ),
    Fault(
        "interactions",
        "a NUL byte in a line",
        "quarantine: nul_byte",
        _events(b"C\x001,10,view,2026-01-01\n"),
    ),
    Fault(
        "interactions",
        "a field over 128 KiB, quoted or not",
        "quarantine: field_too_large",
        _events(b'"' + BIG + b'",10,view,2026-01-01\n' + BIG + b",10,view,2026-01-01\n"),
    ),
    Fault(
        "interactions",
        "a line over 2 MiB (never held whole in memory)",
        "quarantine: field_too_large",
        _events(b"C1," + b"9" * 3_000_000 + b",view,2026-01-01\n"),
    ),
    Fault(
        "interactions",
        "an unterminated quote (it would swallow the lines after it)",
        "quarantine: malformed_line",
        _events(b'"C1,10,view,2026-01-01T11:00:00Z\n'),
    ),
    Fault(
        "interactions",
        "a line with too few fields",
        "quarantine: malformed_line",
        _events(b"C1,10,view\n"),
    ),
    Fault(
        "interactions",
        "bytes that are not UTF-8 in a customer id",
        "kept: 3 events",
        _events(b"C\xff9,10,view,2026-01-01T11:00:00Z\n"),
    ),
    Fault(
        "interactions",
        "a corrupt .csv.gz beside a good file",
        "skipped: cannot be read: Not a gzipped file (b'cu')",
        _folder_with("bad.csv.gz", HEADER + GOOD),
    ),
    Fault(
        "interactions",
        "a .csv.gz whose header line is over 128 KiB",
        "skipped: its header line is not csv (field_too_large)",
        _folder_with("big.csv.gz", gzip.compress(b'"' + BIG + b'",x\n')),
    ),
    Fault(
        "interactions",
        "a file of binary garbage",
        "error: InteractionsFormatError: no file under events.csv has the columns [...] "
        "(skipped: {'events.csv': 'its header line is not csv (nul_byte)'})",
        _only(bytes(range(256)) * 4),
    ),
]
