"""The weekly lake upkeep, run as the Dagster job the schedule launches, on a real lake."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import pytest

from product_attrs.definitions import defs
from product_attrs.settings import Settings
from product_attrs.warehouse.lake import LakeError, maintain, reading, snapshots
from product_attrs.warehouse.publish import append_partition, publish_tables
from product_attrs_tests.lakes import data_root_lake


def _files(lake) -> list[Path]:
    return sorted(p for p in lake.data_path.rglob("*.parquet") if p.is_file())


def _history(lake) -> None:
    """Five batches appended one by one and a table replaced three times: many small files."""
    for i in range(5):
        frame = pd.DataFrame({"batch": f"b{i}", "x": range(100)})
        append_partition(lake, "attrs", frame, column="batch", key=f"b{i}")
    for i in range(1, 4):
        publish_tables(lake, {"t": pd.DataFrame({"x": range(1000 * i)})})


def test_the_weekly_job_compacts_and_keeps_time_travel_within_the_retention(data_env: Path):
    lake = data_root_lake(data_env)
    _history(lake)
    orphan = lake.data_path / "main" / "attrs" / "left-by-a-killed-commit.parquet"
    orphan.write_bytes(b"PAR1")
    os.utime(orphan, (time.time() - 3 * 86400,) * 2)
    fresh_orphan = orphan.with_name("a-commit-in-flight.parquet")
    fresh_orphan.write_bytes(b"PAR1")
    before = _files(lake)
    first = snapshots(lake)[1]["snapshot_id"]

    result = defs.resolve_job_def("lake_maintenance").execute_in_process()
    assert result.success
    done = result.output_for_node("maintain_lake")
    assert done["files_merged"] >= 1 and done["snapshots_expired"] == 0
    assert done["orphan_files_deleted"] == 1
    assert not orphan.exists() and fresh_orphan.exists()  # a file younger than a day may be in flight
    assert len(_files(lake)) < len(before)
    with reading(lake) as con:  # 30 days of history kept: the first batch's commit is still readable
        assert con.execute(f"SELECT count(*) FROM attrs AT (VERSION => {first})").fetchall() == [(100,)]
        assert con.execute("SELECT count(*) FROM attrs").fetchall() == [(500,)]
        assert con.execute("SELECT count(*) FROM t").fetchall() == [(3000,)]


def test_a_zero_day_retention_keeps_only_the_current_snapshot(tmp_path: Path):
    from product_attrs_tests.lakes import tmp_lake

    lake = tmp_lake(tmp_path)
    _history(lake)
    before = len(snapshots(lake))
    done = maintain(lake, retention_days=0)
    # The merge commits a snapshot of its own, which stays: every earlier one expires.
    assert len(snapshots(lake)) == 1 and done["snapshots_expired"] == before
    with reading(lake) as con:
        assert con.execute("SELECT count(*) FROM attrs").fetchall() == [(500,)]
        assert con.execute("SELECT count(*) FROM t").fetchall() == [(3000,)]
    # Only the current rows' files remain: one per table after the merge.
    assert {p.parent.name for p in _files(lake)} == {"attrs", "t"} and len(_files(lake)) == 2


def test_a_negative_retention_is_refused(tmp_path: Path):
    from product_attrs_tests.lakes import tmp_lake

    with pytest.raises(LakeError, match="retention_days must be >= 0"):
        maintain(tmp_lake(tmp_path), retention_days=-1)


def test_the_maintenance_job_on_a_data_root_without_a_lake_does_nothing(data_env: Path):
    result = defs.resolve_job_def("lake_maintenance").execute_in_process()
    assert result.success and result.output_for_node("maintain_lake") == {}
    assert not (data_env / "lake").exists()


def test_the_schedule_runs_the_job_weekly():
    schedule = defs.resolve_schedule_def("weekly_lake_maintenance")
    assert schedule.cron_schedule == "0 4 * * 0" and schedule.job_name == "lake_maintenance"
    assert Settings.from_env({}).lake_retention_days == 30
    assert Settings.from_env({"PRODUCT_ATTRS_LAKE_RETENTION_DAYS": "7"}).lake_retention_days == 7
