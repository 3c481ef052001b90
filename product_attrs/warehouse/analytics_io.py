"""Reading the lake for the analytics steps: column names and types, and the embeddings matrix."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from product_attrs.warehouse.affinity import predicted_heads
from product_attrs.warehouse.lake import Lake, reading
from product_attrs.warehouse.publish import read_tables


def columns_of(warehouse: Lake, table: str) -> list[str]:
    """The column names of ``table``, in order."""
    sql = (
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_name = '{table}' ORDER BY ordinal_position"
    )
    return read_tables(warehouse, {"c": sql})["c"]["column_name"].tolist()


def embedding_type(warehouse: Lake, table: str = "product_attributes") -> str:
    """The SQL type of ``table.embedding`` (``FLOAT[512]``, ``FLOAT[]``), or "" when there is none."""
    sql = (
        "SELECT data_type FROM information_schema.columns "
        f"WHERE table_name = '{table}' AND column_name = 'embedding'"
    )
    rows = read_tables(warehouse, {"t": sql})["t"]
    return str(rows["data_type"].iloc[0]) if len(rows) else ""


def read_embeddings(warehouse: Lake, table: str = "product_attributes") -> tuple[np.ndarray, np.ndarray]:
    """(product ids, float32 matrix): one embedding per product (the table has a row per image: the
    most confident one, as for the labels), rows without a product id skipped. Arrow flattening
    avoids a Python object per vector (44k x 512 floats)."""
    heads = predicted_heads(columns_of(warehouse, table))
    order = f"{heads[0]}_confidence DESC NULLS LAST, {heads[0]}" if heads else "embedding"
    with reading(warehouse) as con:
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
