"""Reading the warehouse for the analytics assets, and publishing tables, views and macros at once.

``publish_tables`` covers tables and views; the analytics also leave table macros (``recommend_for``,
``similar_to``) for analysts, which must land in the same atomic snapshot as the tables they read, so
``publish`` here does what ``publish_tables`` does plus macros, through the same ``snapshot``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from product_attrs.warehouse.affinity import predicted_heads
from product_attrs.warehouse.publish import publish_tables, snapshot


def relations(warehouse: Path) -> set[str]:
    """Names of the tables and views in the warehouse (empty if the file does not exist yet)."""
    if not Path(warehouse).exists():
        return set()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    return {r[0] for r in rows}


def read_tables(warehouse: Path, queries: Mapping[str, str]) -> dict[str, pd.DataFrame]:
    """Several queries on one read-only connection, i.e. one consistent snapshot of the file."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'").fetchall()
        return {name: con.execute(sql).df() for name, sql in queries.items()}


def columns_of(warehouse: Path, table: str) -> list[str]:
    """The column names of ``table``, in order."""
    sql = (
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_name = '{table}' ORDER BY ordinal_position"
    )
    return read_tables(warehouse, {"c": sql})["c"]["column_name"].tolist()


def embedding_type(warehouse: Path, table: str = "product_attributes") -> str:
    """The SQL type of ``table.embedding`` (``FLOAT[512]``, ``FLOAT[]``), or "" when there is none."""
    sql = (
        "SELECT data_type FROM information_schema.columns "
        f"WHERE table_name = '{table}' AND column_name = 'embedding'"
    )
    rows = read_tables(warehouse, {"t": sql})["t"]
    return str(rows["data_type"].iloc[0]) if len(rows) else ""


def read_embeddings(warehouse: Path, table: str = "product_attributes") -> tuple[np.ndarray, np.ndarray]:
    """(product ids, float32 matrix): one embedding per product (the table has a row per image: the
    most confident one, as for the labels), rows without a product id skipped. Arrow flattening
    avoids a Python object per vector (44k x 512 floats)."""
    heads = predicted_heads(columns_of(warehouse, table))
    order = f"{heads[0]}_confidence DESC NULLS LAST, {heads[0]}" if heads else "embedding"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        t = con.execute(
            f"""
            SELECT CAST(product_id AS BIGINT) AS product_id, CAST(embedding AS FLOAT[]) AS embedding
            FROM "{table}"
            WHERE product_id IS NOT NULL AND embedding IS NOT NULL AND len(embedding) > 0
            QUALIFY row_number() OVER (PARTITION BY product_id ORDER BY {order}) = 1
            ORDER BY product_id
            """
        ).to_arrow_table()
    return embeddings_from_arrow(t)


def embeddings_from_arrow(t: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    ids = t.column("product_id").to_numpy().astype(np.int64)
    if len(ids) == 0:
        return ids, np.zeros((0, 0), dtype=np.float32)
    col = t.column("embedding").combine_chunks()
    lengths = col.value_lengths().to_numpy()
    if (lengths != lengths[0]).any():
        raise ValueError(f"embeddings have different lengths: {sorted(set(lengths.tolist()))[:5]}")
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return ids, flat.reshape(len(ids), int(lengths[0]))


def publish(
    warehouse: Path,
    tables: Mapping[str, pd.DataFrame],
    views: Mapping[str, str] | None = None,
    macros: Sequence[str] = (),
) -> dict[str, int]:
    """Replace ``tables``, then create ``views`` and run the ``CREATE OR REPLACE MACRO`` statements, in
    one atomic snapshot; returns row counts per table. Without macros this is ``publish_tables``."""
    if not macros:
        return publish_tables(Path(warehouse), tables, views)
    counts: dict[str, int] = {}
    with snapshot(Path(warehouse)) as con:
        for name, frame in tables.items():
            con.register("_incoming", frame)
            con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM _incoming').fetchall()
            con.unregister("_incoming")
            counts[name] = int(con.execute(f'SELECT count(*) FROM "{name}"').fetchall()[0][0])
        for name, sql in (views or {}).items():
            con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {sql}').fetchall()
        for statement in macros:
            con.execute(statement).fetchall()
    return counts
