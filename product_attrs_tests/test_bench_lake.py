"""bench/bench_lake.py at tiny sizes runs the old copy-on-publish baseline and the lake side by side, writes
its JSON where it is told (never over the committed bench/results/lake.json); bench/analyst_loop.py reads a
lake being written without a torn read, and its checks do catch what no snapshot can show."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def analyst_loop():
    yield _module("analyst_loop")
    sys.modules.pop("analyst_loop", None)


@pytest.mark.slow
def test_tiny_run_writes_both_sides_and_every_row(tmp_path: Path) -> None:
    rows = 50
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "bench_lake.py"),
            *("--events", "2000", "--embeddings", "100", "--recognitions", "200"),
            *("--batch-rows", str(rows), "--repeats", "1", "--postgres", "none"),
            *("--results", str(tmp_path), "--workdir", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "lake.json").read_text())
    figures, floor = result["figures"], result["floor"]
    assert (
        result["name"] == "lake"
        and "SUBSET" in result["notes"]
        and "PostgreSQL not measured" in result["notes"]
    )
    assert figures["lake_4_batches_at_once_rows"] == 4 * rows  # every concurrent batch is in the lake
    assert figures["lake_orphan_files"] == 0
    for side, names in (
        (figures, ("lake_2row_publish", "lake_batch_append")),
        (floor, ("old_2row_publish", "old_batch_rebuild")),
    ):
        for name in names:
            assert side[f"{name}_seconds"] > 0
            assert side[f"{name}_write_mb"] >= 0 and side[f"{name}_wchar_mb"] > 0
    assert figures["lake_batch_append_disk_growth_mb"] > 0  # the batch's Parquet file
    assert floor["old_2row_publish_file_rewritten_mb"] > 0  # the whole file, copied
    for name in ("lake", "old"):
        assert (figures | floor)[f"{name}_4_batches_at_once_seconds"] > 0
        assert (figures | floor)[f"{name}_4_batches_serial_seconds"] > 0
    assert not any(tmp_path.glob("bench_lake_*")), "the warehouses are removed"


def _observation(snapshot: int, batches: dict[str, int], parts: dict[str, str] | None, **counts: int) -> dict:
    return {
        "snapshot": snapshot,
        "counts": counts or {"product_attributes": sum(batches.values())},
        "batches": batches,
        "duplicates": 0,
        "partitions": parts,
        "partition_rows": len(parts or {}),
    }


def test_torn_reads_are_told(analyst_loop) -> None:
    torn = analyst_loop.torn
    good = _observation(5, {"a": 3, "b": 3}, {"a": "1:1", "b": "1:2"})
    assert torn(good, None, 3) == []
    assert torn(_observation(6, {"a": 3, "b": 4}, {"a": "1:1", "b": "9:9"}), good, None) == []  # b rewritten
    assert torn({**good, "duplicates": 2}, None, None)  # a partition's DELETE + INSERT seen half-way
    assert torn(_observation(6, {"a": 3, "c": 3}, {"a": "1:1"}), good, None)  # a batch not recorded
    assert torn(
        _observation(6, {"a": 3, "b": 5}, {"a": "1:1", "b": "1:2"}), good, None
    )  # same file, new count
    assert torn(_observation(5, {"a": 3, "b": 3}, {"a": "1:1", "b": "1:2"}, x=1), good, None)  # same snapshot
    assert torn(_observation(4, {"a": 3, "b": 3}, {"a": "1:1", "b": "1:2"}), good, None)  # snapshot went back
    assert torn(good, None, 4)  # a writer that always writes 4 rows


@pytest.mark.slow
def test_analyst_loop_waits_for_the_lake_and_reads_it_whole_while_batches_commit(
    analyst_loop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    bench_lake = _module("bench_lake")
    from product_attrs.settings import get_settings
    from product_attrs.warehouse.lake import Lake
    from product_attrs.warehouse.publish import sync_partitions

    monkeypatch.setenv("PRODUCT_ATTRS_DATA_DIR", str(tmp_path))
    lake = Lake.from_settings(get_settings())
    folder, rows = tmp_path / "extraction", 20
    folder.mkdir()
    commits = []

    def writer() -> None:  # the lake appears after the loop started; each commit rewrites one batch's rows
        time.sleep(1.0)
        for i in range(4):
            pq.write_table(bench_lake.attributes_batch(i, rows, 8, seed=i), folder / f"b{i % 2}.parquet")
            files = {p.stem: p for p in sorted(folder.glob("*.parquet"))}
            commits.append(sync_partitions(lake, "product_attributes", files, column="batch"))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        out = analyst_loop.run_loop(lake, seconds=4, interval=0.2, wait_s=60, expect_batch_rows=rows)
    finally:
        thread.join(timeout=120)
    assert len(commits) == 4
    assert out["errors"] == 0 and out["torn_reads"] == 0, out
    assert out["waited_for_lake_s"] > 0.5 and out["checks"] >= 5 and out["snapshots_seen"] >= 1
    sys.modules.pop("bench_lake", None)
