"""An analyst reading the lake while it is being published: one check every 200 ms, errors and torn reads.

    PRODUCT_ATTRS_DATA_DIR=... python bench/analyst_loop.py SECONDS [--interval 0.2] [--wait 600]
        [--expect-batch-rows N] [--while-pid PID] [--results DIR]

The lake is the project's (``get_settings()`` + ``Lake.from_settings``), so with PRODUCT_ATTRS_DATA_DIR (or
PRODUCT_ATTRS_LAKE_CATALOG) set it follows e.g. the lake of a running ``make demo``; the loop first waits (up
to ``--wait`` seconds) for the lake to exist. It holds one read-only connection, as an analyst's session
would, and each check is one read transaction (one snapshot): the lake's snapshot id, the row count of every
table, and product_attributes' rows per batch. A torn read is what no committed snapshot can show:
- a (batch, image_key) twice in product_attributes (a partition's DELETE + INSERT seen half-way);
- a batch of product_attributes that ``lake_partitions`` does not list, when it lists that table's batches
  (the table and its record of partitions are written in the same commit);
- a batch whose row count changed while its ``lake_partitions`` fingerprint did not;
- any table's count changing while the snapshot id did not, or the snapshot id going back;
- with ``--expect-batch-rows N``: a batch of another size than N (a writer that always writes N rows).
Writes bench/results/lake_analyst_loop.json (or into ``--results``): checks, errors, torn reads, snapshots
seen, check latency.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# This checkout's code (not an installed copy of the package), and the bench helpers beside this file.
sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

import duckdb  # noqa: E402

from product_attrs.settings import get_settings  # noqa: E402
from product_attrs.warehouse.lake import LAKE, Lake, LakeError, connect, exists  # noqa: E402
from product_attrs.warehouse.publish import PARTITIONS_TABLE  # noqa: E402

ATTRIBUTES = "product_attributes"
#: Details kept of the first errors and torn reads (all are counted).
KEEP = 20


def wait_for_lake(lake: Lake, wait_s: float, poll_s: float = 0.5) -> duckdb.DuckDBPyConnection:
    """A read-only connection once the lake exists and attaches; raises TimeoutError after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        if exists(lake):
            try:
                return connect(lake, read_only=True)
            except LakeError:
                pass  # its catalog is being created
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no lake at {lake.describe()} after {wait_s:.0f} s")
        time.sleep(poll_s)


def observe(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """One read transaction: snapshot id, rows per table, product_attributes per batch, lake_partitions."""
    con.execute("BEGIN TRANSACTION").fetchall()
    try:
        snapshot = int(con.execute(f"SELECT id FROM {LAKE}.current_snapshot()").fetchall()[0][0])
        tables = sorted(
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_catalog = ? AND table_type = 'BASE TABLE'",
                [LAKE],
            ).fetchall()
        )
        counts: dict[str, int] = {}
        if tables:
            union = " UNION ALL ".join(
                f"SELECT '{t.replace(chr(39), chr(39) * 2)}', count(*) FROM {LAKE}.main.\"{t}\""
                for t in tables
            )
            counts = {str(t): int(n) for t, n in con.execute(union).fetchall()}
        batches: dict[str, int] = {}
        duplicates = 0
        if ATTRIBUTES in counts:
            rows = con.execute(
                f"SELECT batch, count(*), count(*) - count(DISTINCT image_key) FROM {LAKE}.main.{ATTRIBUTES} "
                "GROUP BY batch"
            ).fetchall()
            batches = {str(b): int(n) for b, n, _ in rows}
            duplicates = sum(int(d) for *_, d in rows)
        partitions: dict[str, str] | None = None
        partition_rows = 0
        if PARTITIONS_TABLE in counts:
            found = con.execute(
                f'SELECT "partition", fingerprint FROM {LAKE}.main.{PARTITIONS_TABLE} WHERE "table" = ?',
                [ATTRIBUTES],
            ).fetchall()
            partition_rows = len(found)
            partitions = {str(k): str(f) for k, f in found} if found else None
    finally:
        con.execute("COMMIT").fetchall()
    return {
        "snapshot": snapshot,
        "counts": counts,
        "batches": batches,
        "duplicates": duplicates,
        "partitions": partitions,
        "partition_rows": partition_rows,
    }


def torn(now: dict[str, Any], before: dict[str, Any] | None, expect_batch_rows: int | None) -> list[str]:
    """What in ``now`` (and since ``before``) no committed snapshot can show; empty when all is well."""
    found = []
    if now["duplicates"]:
        found.append(f"{now['duplicates']} duplicate (batch, image_key) rows")
    parts = now["partitions"]
    if parts is not None:
        if now["partition_rows"] != len(parts):
            found.append(f"{PARTITIONS_TABLE} lists a {ATTRIBUTES} partition twice")
        stray = sorted(set(now["batches"]) - set(parts))
        if stray:
            found.append(f"batches not in {PARTITIONS_TABLE}: {stray[:5]}")
    if expect_batch_rows is not None:
        off = {b: n for b, n in now["batches"].items() if n != expect_batch_rows}
        if off:
            found.append(f"batches of other sizes than {expect_batch_rows}: {dict(list(off.items())[:5])}")
    if before is not None:
        if now["snapshot"] < before["snapshot"]:
            found.append(f"snapshot went back from {before['snapshot']} to {now['snapshot']}")
        elif now["snapshot"] == before["snapshot"] and now["counts"] != before["counts"]:
            found.append(f"counts changed within snapshot {now['snapshot']}")
        if parts is not None and before["partitions"] is not None:
            for batch, n in now["batches"].items():
                same_file = parts.get(batch) is not None and parts.get(batch) == before["partitions"].get(
                    batch
                )
                if same_file and batch in before["batches"] and before["batches"][batch] != n:
                    found.append(f"batch {batch}: {before['batches'][batch]} -> {n} rows, same fingerprint")
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_loop(
    lake: Lake,
    seconds: float,
    interval: float,
    wait_s: float,
    expect_batch_rows: int | None,
    while_pid: int | None = None,
) -> dict[str, Any]:
    t0 = time.monotonic()
    con = wait_for_lake(lake, wait_s)
    waited = time.monotonic() - t0
    checks = errors = torn_reads = late = 0
    error_details: list[str] = []
    torn_details: list[str] = []
    latencies: list[float] = []
    snapshots: set[int] = set()
    last_counts: dict[str, int] = {}
    before: dict[str, Any] | None = None
    start = time.monotonic()
    tick = 0
    try:
        while time.monotonic() - start < seconds and (while_pid is None or _alive(while_pid)):
            t = time.monotonic()
            try:
                if con is None:
                    con = connect(lake, read_only=True)
                now = observe(con)
            except (duckdb.Error, LakeError) as exc:
                errors += 1
                if len(error_details) < KEEP:
                    error_details.append(
                        f"{time.monotonic() - start:.1f}s: {' '.join(str(exc).split())[:300]}"
                    )
                if con is not None:
                    con.close()
                con = None  # a fresh session for the next check
            else:
                latencies.append(time.monotonic() - t)
                problems = torn(now, before, expect_batch_rows)
                if problems:
                    torn_reads += 1
                    if len(torn_details) < KEEP:
                        torn_details.append(f"snapshot {now['snapshot']}: {'; '.join(problems)}")
                snapshots.add(now["snapshot"])
                last_counts = now["counts"]
                before = now
            checks += 1
            tick += 1
            next_at = start + tick * interval
            if time.monotonic() > next_at:  # the check overran its slot: skip to the next free one
                missed = int((time.monotonic() - next_at) // interval) + 1
                late += 1
                tick += missed
                next_at = start + tick * interval
            time.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        if con is not None:
            con.close()
    wal = Path(str(lake.sqlite_file) + "-wal") if lake.sqlite_file else None
    ms = sorted(x * 1000 for x in latencies)
    return {
        "checks": checks,
        "errors": errors,
        "torn_reads": torn_reads,
        "snapshots_seen": len(snapshots),
        "checks_late": late,
        "check_ms_median": statistics.median(ms) if ms else None,
        "check_ms_p95": ms[min(len(ms) - 1, int(0.95 * len(ms)))] if ms else None,
        "check_ms_max": ms[-1] if ms else None,
        "waited_for_lake_s": waited,
        "tables_at_end": len(last_counts),
        "rows_at_end": sum(last_counts.values()),
        "catalog_wal_mb_at_end": wal.stat().st_size / 1e6 if wal is not None and wal.exists() else None,
        "error_details": error_details,
        "torn_details": torn_details,
        "loop_seconds": time.monotonic() - start,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("seconds", type=float, help="how long to keep reading")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between checks (0.2)")
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for the lake to exist")
    parser.add_argument("--expect-batch-rows", type=int, default=None, help="every batch has this many rows")
    parser.add_argument(
        "--while-pid", type=int, default=None, help="stop early when this process (e.g. make demo) has ended"
    )
    parser.add_argument(
        "--results", type=Path, default=None, help="folder of the JSON (default bench/results)"
    )
    args = parser.parse_args(argv)
    from bench_results import write_result

    settings = get_settings()
    lake = Lake.from_settings(settings)
    print(f"reading {lake.describe()} for {args.seconds:.0f} s", flush=True)
    out = run_loop(lake, args.seconds, args.interval, args.wait, args.expect_batch_rows, args.while_pid)
    details = {k: out.pop(k) for k in ("error_details", "torn_details")}
    loop_seconds = out.pop("loop_seconds")
    for kind, lines in details.items():
        for line in lines:
            print(f"{kind}: {line}", flush=True)
    notes = (
        f"one read-only session on {lake.kind} catalog ({settings.data_dir.name}/), a check every "
        f"{args.interval * 1000:.0f} ms: snapshot id, rows per table, {ATTRIBUTES} per batch in one read "
        f"transaction; torn = duplicate (batch, image_key), a batch missing from {PARTITIONS_TABLE}, a count "
        "changed without a new fingerprint or snapshot"
        + (f", a batch of other than {args.expect_batch_rows} rows" if args.expect_batch_rows else "")
        + (f"; first error: {details['error_details'][0]}" if details["error_details"] else "")
        + (f"; first torn read: {details['torn_details'][0]}" if details["torn_details"] else "")
    )
    command = "python bench/analyst_loop.py " + " ".join(argv if argv is not None else sys.argv[1:])
    path = write_result(
        "lake_analyst_loop", command, out, {}, loop_seconds, notes=notes, results_dir=args.results
    )
    print(f"{out['checks']} checks, {out['errors']} errors, {out['torn_reads']} torn reads; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
