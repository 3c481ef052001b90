from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from product_attrs.warehouse.interactions import (
    QUARANTINE_COLUMNS,
    SOURCE,
    find_interaction_files,
    load_interactions,
    time_holdout,
)

HEADER = "customer_id,product_id,event_type,timestamp\n"
CATALOG_IDS = [10, 11, 12]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_bad_rows_are_quarantined_with_their_reason_and_line(tmp_path: Path):
    csv = _write(
        tmp_path / "events.csv",
        HEADER
        + "C1,10,view,2026-01-01T10:00:00Z\n"  # 1 ok
        + ",10,view,2026-01-01T10:00:00Z\n"  # 2 no customer
        + "C1,abc,view,2026-01-01T10:00:00Z\n"  # 3 product id not a number
        + "C1,10,wishlist,2026-01-01T10:00:00Z\n"  # 4 unknown event type
        + "C1,10,view,yesterday\n"  # 5 bad timestamp
        + "C1,999,view,2026-01-01T10:00:00Z\n"  # 6 not in the catalog
        + "C1,10,view,2026-01-01T10:00:00Z\n"  # 7 exact repeat of 1
        + " C2 ,11, Purchase ,2026-01-02 12:00:00\n",  # 8 ok after trimming; no zone = UTC
    )
    loaded = load_interactions(csv, CATALOG_IDS)
    assert loaded.n_read == 8
    assert len(loaded.events) + len(loaded.quarantine) == loaded.n_read
    q = loaded.quarantine
    assert list(q.columns) == QUARANTINE_COLUMNS
    assert (q["source"] == SOURCE).all()
    assert dict(zip(q["record_id"], q["reason"])) == {
        "events.csv:2": "missing_customer_id",
        "events.csv:3": "bad_product_id",
        "events.csv:4": "unknown_event_type",
        "events.csv:5": "bad_timestamp",
        "events.csv:6": "unknown_product",
        "events.csv:7": "duplicate_event",
    }
    assert "event_type=wishlist" in q.loc[q["record_id"] == "events.csv:4", "detail"].iloc[0]
    ev = loaded.events
    assert ev[["customer_id", "product_id", "event_type"]].values.tolist() == [
        ["C1", 10, "view"],
        ["C2", 11, "purchase"],
    ]
    assert ev["timestamp"].tolist() == [
        pd.Timestamp("2026-01-01 10:00:00"),
        pd.Timestamp("2026-01-02 12:00:00"),
    ]
    assert ev["record_id"].tolist() == ["events.csv:1", "events.csv:8"]


def test_a_line_with_too_many_fields_is_quarantined_not_fatal(tmp_path: Path):
    csv = _write(
        tmp_path / "e.csv",
        HEADER
        + "C1,10,view,2026-01-01T10:00:00Z\n"
        + "C1,10,view,2026-01-01,extra\n"
        + "C2,11,view,2026-01-02T10:00:00Z\n",
    )
    loaded = load_interactions(csv, CATALOG_IDS)
    assert loaded.n_read == 3
    assert loaded.events["record_id"].tolist() == ["e.csv:1", "e.csv:3"]
    q = loaded.quarantine
    assert q[["record_id", "reason"]].values.tolist() == [["e.csv:2", "malformed_line"]]
    assert q["detail"].iloc[0] == "raw: C1,10,view,2026-01-01,extra"


def test_timestamps_with_an_offset_are_stored_in_utc(tmp_path: Path):
    csv = _write(tmp_path / "e.csv", HEADER + "C1,10,view,2026-01-01T12:00:00+02:00\n")
    assert load_interactions(csv, CATALOG_IDS).events["timestamp"].iloc[0] == pd.Timestamp(
        "2026-01-01 10:00:00"
    )


def test_a_folder_of_csv_and_parquet_is_read_and_other_tables_are_reported(tmp_path: Path):
    folder = tmp_path / "interactions"
    _write(folder / "day1.csv", HEADER + "C1,10,view,2026-01-01T10:00:00Z\n")
    (folder / "part").mkdir()
    pd.DataFrame(
        {
            "customer_id": ["C2", "C3"],
            "product_id": [11, 12],
            "event_type": ["add_to_cart", "refund"],
            "timestamp": pd.to_datetime(["2026-01-02 10:00", "2026-01-02 11:00"], utc=True),
            "extra": [1, 2],
        }
    ).to_parquet(folder / "part" / "day2.parquet")
    _write(folder / "customers.csv", "customer_id,gender\nC1,Men\n")
    files, skipped = find_interaction_files(folder)
    assert [f.name for f in files] == ["day1.csv", "day2.parquet"]
    assert list(skipped) == [str(folder / "customers.csv")]
    loaded = load_interactions(folder, CATALOG_IDS)
    assert sorted(loaded.events["customer_id"]) == ["C1", "C2"]
    assert loaded.events.loc[loaded.events["customer_id"] == "C2", "timestamp"].iloc[0] == pd.Timestamp(
        "2026-01-02 10:00"
    )
    assert loaded.quarantine[["record_id", "reason"]].values.tolist() == [
        ["part/day2.parquet:2", "unknown_event_type"]
    ]


def test_a_folder_without_any_event_table_is_an_error(tmp_path: Path):
    _write(tmp_path / "x" / "customers.csv", "customer_id,gender\nC1,Men\n")
    with pytest.raises(ValueError, match="no file under"):
        load_interactions(tmp_path / "x", CATALOG_IDS)
    with pytest.raises(FileNotFoundError):
        load_interactions(tmp_path / "missing", CATALOG_IDS)


def test_time_holdout_is_a_global_cut_in_time():
    events = pd.DataFrame(
        {
            "customer_id": ["A", "A", "B", "B"],
            "product_id": [1, 2, 3, 4],
            "event_type": ["view"] * 4,
            "timestamp": pd.to_datetime(["2026-01-01", "2026-01-20", "2026-01-10", "2026-01-30"]),
        }
    )
    split = time_holdout(events, holdout_days=14)
    assert split.cutoff == datetime(2026, 1, 16)
    assert split.history["product_id"].tolist() == [1, 3]
    assert split.holdout["product_id"].tolist() == [2, 4]
    assert time_holdout(events, cutoff=datetime(2026, 1, 15)).history["product_id"].tolist() == [1, 3]
