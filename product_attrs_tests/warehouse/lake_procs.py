"""What the lake tests run in other processes (spawned: they must be importable by name).

Writers wait for a common start time, so they really commit at once; the watcher opens a new read
connection every ~50 ms, as an analyst re-running a query would, and returns what each one saw.
"""

from __future__ import annotations

import os
import time

import pandas as pd

from product_attrs.warehouse.lake import Lake, reading
from product_attrs.warehouse.publish import append_partition, publish_tables

ROWS = 1000


def ready(hold_s: float) -> int:
    """Run once per pool worker before the tests time anything (the imports are done by now); holding the
    worker a moment makes each of the first calls land in a process of its own."""
    time.sleep(hold_s)
    return os.getpid()


def _wait_until(start_at: float) -> None:
    time.sleep(max(0.0, start_at - time.time()))


def batch_frame(batch: str, rows: int = ROWS) -> pd.DataFrame:
    return pd.DataFrame({"batch": batch, "i": range(rows), "value": [float(i) for i in range(rows)]})


def write_batch(lake: Lake, table: str, batch: str, start_at: float) -> int:
    """Replace ``batch`` of ``table`` with ROWS rows; returns the partition's row count."""
    _wait_until(start_at)
    return append_partition(lake, table, batch_frame(batch), column="batch", key=batch)


def watch(lake: Lake, table: str, total: int, start_at: float, deadline: float) -> list[dict[str, int]]:
    """Rows per batch as each new reader saw them, until ``total`` rows are seen or ``deadline``. Any
    error a read raises reaches the test."""
    _wait_until(start_at)
    seen: list[dict[str, int]] = []
    while time.time() < deadline:
        with reading(lake) as con:
            rows = con.execute(f'SELECT batch, count(*) FROM "{table}" GROUP BY batch').fetchall()
        counts = {str(b): int(n) for b, n in rows}
        seen.append(counts)
        if sum(counts.values()) >= total:
            break
        time.sleep(0.05)
    return seen


def publish_one(lake: Lake, table: str, start_at: float) -> dict[str, int]:
    """A first write of the day: replace ``table`` (migrating an old warehouse first, if there is one)."""
    _wait_until(start_at)
    return publish_tables(lake, {table: pd.DataFrame({"x": range(20)})})
