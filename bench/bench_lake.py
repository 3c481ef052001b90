"""What a publish costs: the old copy-on-publish DuckDB file vs the DuckLake (SQLite catalog; PostgreSQL too).

Usage: python bench/bench_lake.py [--quick] [--postgres auto|none|<libpq string>] [--results DIR]

Both warehouses hold the same seeded data: 1M customer events, 44k product_attributes rows with 512-d
float embeddings (44 extraction batches of 1,000 rows: FLOAT[512] in the old file, FLOAT[] in the lake) and
100k recognitions. Then, on each side:
1. publish of a 2-row table; 2. publish of one 1,000-row extraction batch: the old way rebuilds the whole
   product_attributes table from every batch's Parquet file (as the old warehouse_product_attributes did)
   in its copy of the file; the lake appends the batch's partition (``append_partition``).
   Each is run 5 times, the median is reported: wall seconds; CPU seconds of this process (all threads,
   steadier than the wall on a shared machine); bytes written measured two ways: ``write_mb`` is the
   process's /proc/self/io ``write_bytes`` delta (bytes it sent to the storage layer; ``wchar_mb``: bytes
   passed to write-like calls), ``disk_growth_mb`` the growth of the files on disk (du of the lake's data
   folder and catalog; for the old file, ``file_rewritten_mb`` is the size of the copy each publish writes
   whole, its growth is the table's). ``attach_seconds``: what every lake transaction pays first, a
   connection with the lake attached (it loads the DuckLake and catalog extensions).
3. 4 extraction batches publishing at once (4 spawned processes, released together by a barrier after
   their imports), vs the same 4 publishes one after another; all 4,000 rows must be present afterwards.
   The old way serialises on its file lock and each rebuilds the table.
With PostgreSQL (``--postgres auto`` starts a throwaway cluster from /usr/lib/postgresql/15/bin when run as
root, and skips it otherwise), the server's own writes are added from /proc/<pid>/io of its processes.
``--quick``: 100k events, 4k embeddings, 10k recognitions (1-2 min on 2 shared cores). A run at other sizes
than the full one writes its JSON only where ``--results`` says. The analysts' side (reads during
publishes) is bench/analyst_loop.py.
Writes bench/results/lake.json: ``figures`` are the lake's, ``floor`` the old copy-on-publish file's.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# This checkout's code (not an installed copy of the package), and the bench helpers beside this file.
sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

import duckdb  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from product_attrs.io import fsync_dir  # noqa: E402
from product_attrs.warehouse import lake as lake_module  # noqa: E402
from product_attrs.warehouse.lake import LAKE, Lake, connect, reading  # noqa: E402
from product_attrs.warehouse.publish import ParquetFiles, append_partition, publish_tables, sync_partitions  # noqa: E402

MB = 1e6  # figures in MB are 10^6 bytes
DIM = 512
WRITERS = 4
REPEATS = 5
PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass(frozen=True)
class Sizes:
    events: int
    embeddings: int
    recognitions: int
    batch_rows: int = 1000
    dim: int = DIM

    @property
    def batches(self) -> int:
        return max(1, -(-self.embeddings // self.batch_rows))


FULL = Sizes(events=1_000_000, embeddings=44_000, recognitions=100_000)
QUICK = Sizes(events=100_000, embeddings=4_000, recognitions=10_000)


# --- the baseline: the OLD copy-on-publish publish (product_attrs/warehouse/publish.py before 8dd24b3) -----
# A faithful minimal copy, since the product code no longer has it: under a file lock, copy the whole
# warehouse.duckdb, CREATE OR REPLACE the tables in the copy, CHECKPOINT, rename it over the old file and
# fsync the folder.


@contextmanager
def old_writer_lock(warehouse: Path) -> Iterator[None]:
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with open(warehouse.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def old_snapshot(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection on a private copy that replaces the warehouse when the block succeeds."""
    with old_writer_lock(warehouse):
        for pattern in (f".{warehouse.name}.*.tmp", f".{warehouse.name}.*.tmp.wal"):
            for stale in warehouse.parent.glob(pattern):
                stale.unlink(missing_ok=True)
        tmp = warehouse.with_name(f".{warehouse.name}.{uuid.uuid4().hex}.tmp")
        wal = tmp.with_name(tmp.name + ".wal")
        con = None
        try:
            if warehouse.exists():
                shutil.copyfile(warehouse, tmp)
            con = duckdb.connect(str(tmp))
            yield con
            con.execute("CHECKPOINT").fetchall()
            con.close()
            os.replace(tmp, warehouse)
            fsync_dir(warehouse.parent)
        except BaseException:
            if con is not None:
                con.close()
            tmp.unlink(missing_ok=True)
            raise
        finally:
            wal.unlink(missing_ok=True)


def old_publish_tables(
    warehouse: Path,
    tables: Mapping[str, pd.DataFrame | pa.Table | ParquetFiles],
    casts: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, int]:
    """The old ``publish_tables``: replace ``tables`` in a copy of the whole file, renamed over it."""
    counts: dict[str, int] = {}
    with old_snapshot(warehouse) as con:
        for name, frame in tables.items():
            con.register("_incoming", frame.relation(con) if isinstance(frame, ParquetFiles) else frame)
            cast = (casts or {}).get(name) or {}
            select = (
                "*"
                if not cast
                else "* REPLACE (" + ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in cast.items()) + ")"
            )
            con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT {select} FROM _incoming').fetchall()
            con.unregister("_incoming")
            counts[name] = int(con.execute(f'SELECT count(*) FROM "{name}"').fetchall()[0][0])
    return counts


def old_publish_attributes(warehouse: Path, batches: Path, dim: int) -> int:
    """The old warehouse_product_attributes: every batch file of the extraction folder, the whole table."""
    files = ParquetFiles(tuple(sorted(batches.glob("*.parquet"))), stem_column="batch")
    counts = old_publish_tables(
        warehouse, {"product_attributes": files}, casts={"product_attributes": {"embedding": f"FLOAT[{dim}]"}}
    )
    return counts["product_attributes"]


# --- data -----------------------------------------------------------------------------------------------

EVENT_TYPES = np.array(["view", "click", "add_to_cart", "purchase"])
ARTICLE_TYPES = np.array([f"type_{i}" for i in range(40)])
COLOURS = np.array([f"colour_{i}" for i in range(30)])
GENDERS = np.array(["Men", "Women", "Boys", "Girls", "Unisex"])


def events_table(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-01-01T00:00:00", "s")
    return pa.table(
        {
            "customer_id": rng.integers(0, 50_000, n, dtype=np.int64),
            "product_id": rng.integers(0, 44_000, n, dtype=np.int64),
            "event_type": EVENT_TYPES[rng.integers(0, len(EVENT_TYPES), n)],
            "timestamp": pa.array(start + rng.integers(0, 180 * 86400, n).astype("timedelta64[s]")),
        }
    )


def recognitions_table(n: int, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    photo = rng.integers(0, max(1, n // 8), n)
    x1, y1 = rng.uniform(0, 3000, n), rng.uniform(0, 2000, n)
    return pa.table(
        {
            "folder": np.array([f"/data/store_photos/shelf_{i % 10}" for i in photo]),
            "photo": np.array([f"photo_{i:06d}.jpg" for i in photo]),
            "photo_sha1": np.array([f"{i:040x}" for i in photo]),
            "object": rng.integers(0, 30, n, dtype=np.int64),
            "x1": x1,
            "y1": y1,
            "x2": x1 + rng.uniform(20, 400, n),
            "y2": y1 + rng.uniform(20, 600, n),
            "detector_score": rng.uniform(0.3, 1.0, n),
            "detector_class": np.full(n, "product"),
            "product": np.array([f"p{i}" for i in rng.integers(0, 81, n)]),
            "similarity": rng.uniform(0, 1, n),
            "runner_up": np.array([f"p{i}" for i in rng.integers(0, 81, n)]),
            "runner_up_similarity": rng.uniform(0, 1, n),
            "recognized": rng.uniform(0, 1, n) > 0.2,
            "predicted": np.array([f"c{i}" for i in rng.integers(0, 42, n)]),
            "predicted_confidence": rng.uniform(0, 1, n).astype(np.float32),
            "detector_version": np.full(n, "detector-v3"),
        }
    )


def attributes_batch(index: int, rows: int, dim: int, seed: int) -> pa.Table:
    """One extraction batch as product_attributes rows (the batch name is the file's stem)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(index * rows, (index + 1) * rows, dtype=np.int64)
    emb = rng.normal(size=(rows, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), dim).cast(pa.list_(pa.float32()))
    columns: dict[str, Any] = {
        "product_id": ids,
        "image_key": np.array([str(i) for i in ids]),
        "image_path": np.array([f"images/{i}.jpg" for i in ids]),
        "image_sha1": np.array([f"{i:040x}" for i in ids]),
    }
    for head, labels in (("article_type", ARTICLE_TYPES), ("base_colour", COLOURS), ("gender", GENDERS)):
        columns[head] = labels[rng.integers(0, len(labels), rows)]
        columns[f"{head}_confidence"] = rng.uniform(0.2, 1.0, rows).astype(np.float32)
    columns["embedding"] = embedding
    columns["objects"] = np.full(rows, "[]")
    columns["n_objects"] = np.zeros(rows, dtype=np.int64)
    columns["classifier_version"] = np.full(rows, "fashion_attributes/v7")
    columns["detector_version"] = np.full(rows, "detector-v3")
    return pa.table(columns)


def write_batch(folder: Path, name: str, index: int, sizes: Sizes) -> Path:
    """Write one batch's Parquet file (float32 embeddings, list<float>) as extraction does, named ``name``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.parquet"
    pq.write_table(attributes_batch(index, sizes.batch_rows, sizes.dim, seed=1000 + index), path)
    return path


# --- measuring ------------------------------------------------------------------------------------------


def proc_io(pid: int | str = "self") -> dict[str, int]:
    """/proc/<pid>/io: write_bytes (sent to the storage layer, counted when a page is dirtied), wchar (bytes
    passed to write-like calls, cached or not) and cancelled_write_bytes (dirty pages of truncated files)."""
    out = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, value = line.split(":")
        out[key.strip()] = int(value)
    return out


def disk_bytes(*paths: Path) -> int:
    """Allocated bytes of the files under ``paths`` (du): files, or folders walked."""
    total = 0
    for root in paths:
        if root.is_file():
            total += root.stat().st_blocks * 512
        elif root.is_dir():
            for folder, _, files in os.walk(root):
                for name in files:
                    try:
                        total += (Path(folder) / name).stat().st_blocks * 512
                    except FileNotFoundError:
                        pass
    return total


def measure(call: Callable[[], Any], disk: Callable[[], int], server_io: Callable[[], int] | None) -> dict:
    """Wall seconds, CPU seconds of this process (all its threads: less sensitive than the wall to other jobs
    on the machine), its /proc io deltas and the disk growth around ``call``."""
    d0, s0 = disk(), server_io() if server_io else 0
    io0 = proc_io()
    t, cpu = time.perf_counter(), time.process_time()
    result = call()
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    io1 = proc_io()
    out = {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "write_bytes": io1["write_bytes"] - io0["write_bytes"],
        "wchar": io1["wchar"] - io0["wchar"],
        "cancelled_write_bytes": io1["cancelled_write_bytes"] - io0["cancelled_write_bytes"],
        "disk_growth": disk() - d0,
        "result": result,
    }
    if server_io:
        time.sleep(0.2)  # let the server reap the closed connection's backend (its io joins the postmaster's)
        out["server_write_bytes"] = server_io() - s0
    return out


def median_of(runs: list[dict]) -> dict:
    medians = {k: statistics.median(run[k] for run in runs) for k in runs[0] if k != "result"}
    return medians | {"result": runs[-1]["result"]}


@contextmanager
def counting_retries() -> Iterator[list[Any]]:
    """Count the lake's whole-transaction retries in this process (lake._retrying asks ``retryable``):
    yields [count, set of the first line of each reason]."""
    counter: list[Any] = [0, set()]
    original = lake_module.retryable

    def counting(exc: BaseException) -> bool:
        again = original(exc)
        if again:
            counter[0] += 1
            counter[1].add(" ".join(str(exc).split())[:240])
        return again

    lake_module.retryable = counting
    try:
        yield counter
    finally:
        lake_module.retryable = original


# --- the sides ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OldSide:
    """The copy-on-publish file and the extraction folder its product_attributes is rebuilt from."""

    warehouse: Path
    batches: Path
    dim: int

    def disk(self) -> int:
        return disk_bytes(self.warehouse)

    def build(self, events: pa.Table, recognitions: pa.Table) -> None:
        old_publish_tables(self.warehouse, {"customer_events": events, "recognitions": recognitions})
        old_publish_attributes(self.warehouse, self.batches, self.dim)

    def publish_small(self, frame: pd.DataFrame) -> None:
        old_publish_tables(self.warehouse, {"tiny": frame})

    def publish_batch(self, path: Path) -> int:
        assert path.parent == self.batches, (
            "extraction writes its batch into the folder the table is built from"
        )
        return old_publish_attributes(self.warehouse, self.batches, self.dim)

    def rows(self, keys: list[str]) -> int:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            q = "SELECT count(*) FROM product_attributes WHERE batch IN (SELECT unnest(?))"
            return int(con.execute(q, [keys]).fetchall()[0][0])


@dataclass(frozen=True)
class LakeSide:
    lake: Lake
    server_pid: int | None = None  # PostgreSQL's postmaster

    def disk(self) -> int:
        catalog = self.lake.sqlite_file
        files = [catalog, *(catalog.parent.glob(catalog.name + "-*"))] if catalog else []
        return disk_bytes(self.lake.data_path, *files)

    def server_io(self) -> int:
        """write_bytes of the PostgreSQL server: its postmaster (with the reaped backends) and children."""
        if self.server_pid is None:
            return 0
        children = Path(f"/proc/{self.server_pid}/task/{self.server_pid}/children").read_text().split()
        total = 0
        for pid in [self.server_pid, *map(int, children)]:
            try:
                total += proc_io(pid)["write_bytes"]
            except (FileNotFoundError, ProcessLookupError):
                pass
        return total

    def build(self, events: pa.Table, recognitions: pa.Table, batch_files: Mapping[str, Path]) -> None:
        publish_tables(self.lake, {"customer_events": events, "recognitions": recognitions})
        sync_partitions(self.lake, "product_attributes", dict(batch_files), column="batch")

    def publish_small(self, frame: pd.DataFrame) -> None:
        publish_tables(self.lake, {"tiny": frame})

    def publish_batch(self, path: Path) -> int:
        return append_partition(
            self.lake, "product_attributes", ParquetFiles((path,), "batch"), column="batch", key=path.stem
        )

    def orphan_files(self) -> int:
        """Parquet files in the data folder that the catalog does not know (a failed commit's, say)."""
        with reading(self.lake) as con:
            known = {
                Path(r[0]).name
                for table in ("ducklake_data_file", "ducklake_delete_file")
                for r in con.execute(f"SELECT path FROM __ducklake_metadata_{LAKE}.{table}").fetchall()
            }
        return len({p.name for p in self.lake.data_path.rglob("*.parquet")} - known)

    def rows(self, keys: list[str]) -> int:
        with reading(self.lake) as con:
            q = "SELECT count(*) FROM product_attributes WHERE batch IN (SELECT unnest(?))"
            return int(con.execute(q, [keys]).fetchall()[0][0])


Side = OldSide | LakeSide


def _writer(side: Side, path: Path, barrier: Any, queue: Any) -> None:
    """One extraction batch's publish in its own process, released with the others by ``barrier``."""
    try:
        with counting_retries() as retries:
            barrier.wait()
            start, io0 = time.time(), proc_io()
            rows = side.publish_batch(path)
            end, io1 = time.time(), proc_io()
        queue.put(
            {
                "batch": path.stem,
                "rows": rows,
                "start": start,
                "end": end,
                "write_bytes": io1["write_bytes"] - io0["write_bytes"],
                "retries": retries[0],
                "retry_reasons": sorted(retries[1]),
            }
        )
    except BaseException as exc:  # the parent reports it
        queue.put({"batch": path.stem, "error": f"{type(exc).__name__}: {exc}"})
        raise


def at_once(side: Side, paths: list[Path]) -> dict:
    """``paths`` published by as many spawned processes at once: wall from their release to the last end."""
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(len(paths) + 1), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(side, p, barrier, queue)) for p in paths]
    for p in procs:
        p.start()
    barrier.wait(timeout=300)  # every child has imported everything
    released = time.time()
    done = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [d["error"] for d in done if "error" in d]
    if errors:
        raise RuntimeError(f"concurrent publishes failed: {errors}")
    return {
        "seconds": max(d["end"] for d in done) - released,
        "each_seconds": [round(d["end"] - d["start"], 3) for d in done],
        "write_bytes": sum(d["write_bytes"] for d in done),
        "retries": sum(d["retries"] for d in done),
        "retry_reasons": sorted({r for d in done for r in d["retry_reasons"]}),
    }


def serial(side: Side, paths: list[Path]) -> dict:
    with counting_retries() as retries:
        t = time.perf_counter()
        for p in paths:
            side.publish_batch(p)
        return {
            "seconds": time.perf_counter() - t,
            "retries": retries[0],
            "retry_reasons": sorted(retries[1]),
        }


def run_side(label: str, side: Side, sizes: Sizes, spare: Path, repeats: int = REPEATS) -> dict[str, Any]:
    """The measures of one side (the warehouse already holds the data): 2-row table, one batch, 4 at once."""
    server = side.server_io if isinstance(side, LakeSide) and side.server_pid else None
    tiny = pd.DataFrame({"key": ["a", "b"], "value": [1.0, 2.0]})
    attach = None
    if isinstance(
        side, LakeSide
    ):  # what every lake transaction pays first: a connection with the lake attached
        connect(side.lake, read_only=False).close()  # warm-up: the extension files into the page cache
        attach = median_of(
            [
                measure(lambda: connect(side.lake, read_only=False).close(), side.disk, None)
                for _ in range(repeats)
            ]
        )
    small = median_of([measure(lambda: side.publish_small(tiny), side.disk, server) for _ in range(repeats)])
    print(f"{label}: 2-row publish {json.dumps(_rounded(small))}", flush=True)
    file_after_small = side.disk()
    # The old way rebuilds the table from the extraction folder, where extraction wrote the new batch.
    folder = side.batches if isinstance(side, OldSide) else spare / label
    batch_runs = []
    for i in range(repeats):
        path = write_batch(folder, f"{label}_new_{i}", sizes.batches + 10 + i, sizes)
        run = measure(lambda p=path: side.publish_batch(p), side.disk, server)
        assert run["result"] >= sizes.batch_rows, run
        batch_runs.append(run)
    batch = median_of(batch_runs)
    print(f"{label}: 1 batch publish {json.dumps(_rounded(batch))}", flush=True)
    file_after_batch = side.disk()
    # Extraction wrote every batch file before the 4 publishes start.
    concurrent = [write_batch(folder, f"{label}_at_once_{i}", 100 + i, sizes) for i in range(WRITERS)]
    together = at_once(side, concurrent)
    keys = [p.stem for p in concurrent]
    present = side.rows(keys)
    assert present == WRITERS * sizes.batch_rows, f"{label}: {present} of {WRITERS * sizes.batch_rows} rows"
    one_by_one = [write_batch(folder, f"{label}_serial_{i}", 200 + i, sizes) for i in range(WRITERS)]
    after = serial(side, one_by_one)
    present_serial = side.rows([p.stem for p in one_by_one])
    assert present_serial == WRITERS * sizes.batch_rows, f"{label} serial: {present_serial} rows"
    out = {
        "small": small,
        "batch": batch,
        "at_once": together,
        "serial": after,
        "rows_at_once": present,
        "disk_after_small": file_after_small,
        "disk_after_batch": file_after_batch,
        "orphan_files": side.orphan_files() if isinstance(side, LakeSide) else None,
        "attach": attach,
    }
    print(f"{label}: {WRITERS} at once {json.dumps(together)}; serial {json.dumps(after)}", flush=True)
    return out


def _rounded(d: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items() if k != "result"}


# --- PostgreSQL -----------------------------------------------------------------------------------------


class PostgresUnavailable(RuntimeError):
    """The throwaway cluster could not be started (the bench then goes on without PostgreSQL)."""


def _as_postgres(*cmd: str, check: bool = True) -> None:
    done = subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, cwd="/")
    if check and done.returncode != 0:
        raise PostgresUnavailable(
            f"{Path(cmd[0]).name} failed: {(done.stderr or done.stdout).strip()[-500:]}"
        )


@contextmanager
def throwaway_postgres() -> Iterator[tuple[str, int]]:
    """A PostgreSQL 15 cluster in a fresh folder of /tmp, on a Unix socket only, run as the user postgres;
    yields the libpq string of its database ``lake`` and the postmaster's pid; stopped and removed after."""
    root = Path(tempfile.mkdtemp(prefix="bench_lake_pg_"))
    try:
        shutil.chown(root, "postgres")
        data, port = root / "data", "5432"
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        opts = f"-k {root} -c listen_addresses='' -p {port}"
        _as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"
        )
        try:
            _as_postgres(str(PG_BIN / "createdb"), "-h", str(root), "-p", port, "lake")
            pid = int((data / "postmaster.pid").read_text().splitlines()[0])
            yield f"dbname=lake host={root} port={port} user=postgres", pid
        finally:
            _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop", check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def postgres_available() -> str | None:
    """Why a throwaway cluster cannot be started here, or None."""
    if not (PG_BIN / "initdb").is_file():
        return f"no PostgreSQL binaries at {PG_BIN}"
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return "not root (runuser -u postgres is needed)"
    return None


# --- main -----------------------------------------------------------------------------------------------


def build_inputs(work: Path, sizes: Sizes) -> tuple[pa.Table, pa.Table, dict[str, Path]]:
    t = time.perf_counter()
    events, recognitions = events_table(sizes.events), recognitions_table(sizes.recognitions)
    batches = work / "extraction"
    files = {}
    for i in range(sizes.batches):
        rows = min(sizes.batch_rows, sizes.embeddings - i * sizes.batch_rows)
        path = batches / f"batch_{i:03d}.parquet"
        batches.mkdir(parents=True, exist_ok=True)
        pq.write_table(attributes_batch(i, rows, sizes.dim, seed=i), path)
        files[path.stem] = path
    print(f"inputs generated in {time.perf_counter() - t:.1f} s", flush=True)
    return events, recognitions, files


def lake_figures(prefix: str, r: dict[str, Any]) -> dict[str, Any]:
    """The lake's figures; with a PostgreSQL catalog, whose writes happen in the server's processes, the
    server's write_bytes replace wchar and the disk growth (the lake's data folder only)."""
    s, b = r["small"], r["batch"]
    server = "server_write_bytes" in s
    out = {}
    out[f"{prefix}_attach_seconds"] = r["attach"]["seconds"]
    for name, m in (("2row_publish", s), ("batch_append", b)):
        out[f"{prefix}_{name}_seconds"] = m["seconds"]
        out[f"{prefix}_{name}_cpu_seconds"] = m["cpu_seconds"]
        out[f"{prefix}_{name}_write_mb"] = m["write_bytes"] / MB
        if server:
            out[f"{prefix}_{name}_server_write_mb"] = m["server_write_bytes"] / MB
        else:
            out[f"{prefix}_{name}_wchar_mb"] = m["wchar"] / MB
            out[f"{prefix}_{name}_disk_growth_mb"] = m["disk_growth"] / MB
    out[f"{prefix}_{WRITERS}_batches_at_once_seconds"] = r["at_once"]["seconds"]
    out[f"{prefix}_{WRITERS}_batches_serial_seconds"] = r["serial"]["seconds"]
    out[f"{prefix}_{WRITERS}_batches_at_once_rows"] = r["rows_at_once"]
    out[f"{prefix}_{WRITERS}_batches_at_once_retries"] = r["at_once"]["retries"]
    out[f"{prefix}_orphan_files"] = r["orphan_files"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100k events, 4k embeddings, 10k recognitions")
    parser.add_argument("--events", type=int, help="override the number of customer events")
    parser.add_argument("--embeddings", type=int, help="override the number of product_attributes rows")
    parser.add_argument("--recognitions", type=int, help="override the number of recognitions rows")
    parser.add_argument("--batch-rows", type=int, help="override the rows of an extraction batch (1,000)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="runs of each single publish (median)")
    parser.add_argument(
        "--postgres",
        default="auto",
        help="'auto' (a throwaway cluster when possible), 'none', or a libpq string of an empty database",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where the warehouses go (default /tmp)")
    parser.add_argument(
        "--results", type=Path, default=None, help="folder of the JSON (default bench/results)"
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    sizes = Sizes(
        events=args.events or base.events,
        embeddings=args.embeddings or base.embeddings,
        recognitions=args.recognitions or base.recognitions,
        batch_rows=args.batch_rows or base.batch_rows,
    )
    subset = sizes != FULL or args.repeats != REPEATS
    if subset and args.results is None:
        parser.error("a run at other sizes than the full one writes its JSON only where --results says")
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    results: dict[str, dict[str, Any]] = {}
    pg_skipped = None
    with tempfile.TemporaryDirectory(prefix="bench_lake_", dir=args.workdir or "/tmp") as tmp:
        work = Path(tmp)
        events, recognitions, files = build_inputs(work, sizes)
        spare = work / "new_batches"

        old = OldSide(work / "old" / "warehouse.duckdb", work / "old" / "extraction", sizes.dim)
        shutil.copytree(work / "extraction", old.batches)
        t = time.perf_counter()
        old.build(events, recognitions)
        print(f"old: built {old.disk() / MB:.1f} MB in {time.perf_counter() - t:.1f} s", flush=True)
        results["old"] = run_side("old", old, sizes, spare, args.repeats)
        results["old"]["file_mb"] = old.disk() / MB

        sqlite = LakeSide(Lake(f"sqlite:{work / 'lake' / 'catalog.sqlite'}", work / "lake" / "data"))
        t = time.perf_counter()
        sqlite.build(events, recognitions, files)
        print(f"lake: built {sqlite.disk() / MB:.1f} MB in {time.perf_counter() - t:.1f} s", flush=True)
        results["lake"] = run_side("lake", sqlite, sizes, spare, args.repeats)

        if args.postgres != "none":
            pg_skipped = postgres_available() if args.postgres == "auto" else None
            if pg_skipped is None:
                server = throwaway_postgres() if args.postgres == "auto" else _given(args.postgres)
                try:
                    with server as (conn, pid):
                        pg = LakeSide(Lake(f"postgres:{conn}", work / "pg_lake_data"), server_pid=pid)
                        t = time.perf_counter()
                        pg.build(events, recognitions, files)
                        print(f"pg: built in {time.perf_counter() - t:.1f} s", flush=True)
                        results["pg"] = run_side("pg", pg, sizes, spare, args.repeats)
                except PostgresUnavailable as exc:
                    pg_skipped = str(exc)
            if pg_skipped is not None:
                print(f"PostgreSQL skipped: {pg_skipped}", flush=True)

    o, lk = results["old"], results["lake"]
    figures = lake_figures("lake", lk)
    figures["lake_2row_goal_met"] = bool(
        lk["small"]["seconds"] < 1.0
        and lk["small"]["write_bytes"] < 5 * MB
        and lk["small"]["disk_growth"] < 5 * MB
    )
    if "pg" in results:
        figures |= lake_figures("pg_lake", results["pg"])
    floor = {
        "old_2row_publish_seconds": o["small"]["seconds"],
        "old_2row_publish_cpu_seconds": o["small"]["cpu_seconds"],
        "old_2row_publish_write_mb": o["small"]["write_bytes"] / MB,
        "old_2row_publish_wchar_mb": o["small"]["wchar"] / MB,
        "old_2row_publish_file_rewritten_mb": o["disk_after_small"] / MB,
        "old_batch_rebuild_seconds": o["batch"]["seconds"],
        "old_batch_rebuild_cpu_seconds": o["batch"]["cpu_seconds"],
        "old_batch_rebuild_write_mb": o["batch"]["write_bytes"] / MB,
        "old_batch_rebuild_wchar_mb": o["batch"]["wchar"] / MB,
        "old_batch_rebuild_file_rewritten_mb": o["disk_after_batch"] / MB,
        f"old_{WRITERS}_batches_at_once_seconds": o["at_once"]["seconds"],
        f"old_{WRITERS}_batches_serial_seconds": o["serial"]["seconds"],
    }
    pg_note = (
        "; pg_lake: a PostgreSQL 15 catalog (a throwaway local cluster on a Unix socket), its write_mb is "
        "this process's (Parquet files), server_write_mb the server processes' /proc io write_bytes (catalog "
        "rows + WAL; pages a later checkpoint writes are not counted)"
        if "pg" in results
        else f"; PostgreSQL not measured ({pg_skipped or 'asked not to'})"
    )
    notes = (
        f"{'SUBSET run; ' if subset else ''}{sizes.events:,} events, {sizes.embeddings:,} x {sizes.dim}-d "
        f"embeddings in {sizes.batches} batches of {sizes.batch_rows:,}, {sizes.recognitions:,} "
        f"recognitions; medians of {args.repeats}; figures: the DuckLake (SQLite catalog) via "
        "publish_tables / append_partition; floor: the old copy-on-publish file (copy, CREATE OR "
        "REPLACE, CHECKPOINT, rename, fsync, file lock) rebuilding product_attributes from every batch "
        "file; write_mb = /proc/self/io write_bytes delta, wchar_mb = its wchar delta, disk_growth_mb = "
        "du growth of lake data + catalog, file_rewritten_mb = size of the copy each old publish writes; "
        f"MB = 10^6 bytes; {WRITERS} at once = {WRITERS} spawned processes released together, all rows "
        "asserted present; goal for the lake's 2-row publish: < 1 s and < 5 MB written"
        f"{pg_note}; {os.cpu_count()} cores shared with other jobs (1-min load average {load_before:.0f} at "
        f"the start, {os.getloadavg()[0]:.0f} at the end)"
    )
    command = (
        "python bench/bench_lake.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    )
    out = _write(command, figures, floor, time.perf_counter() - start, notes, args.results)
    print(f"wrote {out}")
    return 0


@contextmanager
def _given(conn: str) -> Iterator[tuple[str, int | None]]:
    yield conn, None


def _write(
    command: str, figures: dict, floor: dict, seconds: float, notes: str, results: Path | None
) -> Path:
    from bench_results import write_result

    return write_result("lake", command, figures, floor, seconds, notes=notes, results_dir=results)


if __name__ == "__main__":
    sys.exit(main())
