"""One customer's recommendations in the warehouse, computed when asked: the ``recommend_for`` macro.

The SQL twin of ``warehouse.recommend.recommend`` (same score, same ties, same reasons), for a customer
whose events are newer than the last batch. ``cell_tables`` builds the tables the macro scores on;
``recommend_for`` runs it. Kept apart from the batch path because it is SQL text, not NumPy.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from product_attrs.warehouse.affinity import ATTRIBUTES


def cell_tables(features: pd.DataFrame, popularity: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``product_cells`` (product_id, cell_id, popularity) and ``cells``: what the one-customer macro
    scores on. A cell is a distinct attribute tuple (2.7k cells for the 44k real catalog): one row with
    its attributes, ``max_popularity`` and its products as lists sorted by popularity (desc), so the
    macro scores cells and opens only the few that can reach the top k."""
    con = duckdb.connect()
    try:
        con.register("_f", features[["product_id", *ATTRIBUTES]])
        con.register("_p", popularity[["product_id", "popularity"]])
        cols = ", ".join(ATTRIBUTES)
        product_cells = con.execute(
            f"""
            SELECT f.product_id, CAST(dense_rank() OVER (ORDER BY {cols}) AS INTEGER) AS cell_id,
                   coalesce(p.popularity, 0.0) AS popularity
            FROM _f f LEFT JOIN _p p USING (product_id)
            ORDER BY product_id
            """
        ).df()
        con.register("_pc", product_cells)
        cells = con.execute(
            f"""
            SELECT pc.cell_id, {", ".join(f"any_value(f.{a}) AS {a}" for a in ATTRIBUTES)},
                   count(*) AS n_products, max(pc.popularity) AS max_popularity,
                   list(pc.product_id ORDER BY pc.popularity DESC, pc.product_id) AS product_ids,
                   list(pc.popularity ORDER BY pc.popularity DESC, pc.product_id) AS popularity
            FROM _pc pc JOIN _f f USING (product_id)
            GROUP BY pc.cell_id ORDER BY pc.cell_id
            """
        ).df()
    finally:
        con.close()
    return product_cells, cells


_ATTRS = ", ".join(ATTRIBUTES)
_X_ATTRS = ", ".join(f"x.{a}" for a in ATTRIBUTES)
_CONTRIB_JOINS = "\n    ".join(
    f"LEFT JOIN contrib a{i} ON a{i}.attribute = '{a}' AND a{i}.value = c.{a}"
    for i, a in enumerate(ATTRIBUTES)
)

#: ``SELECT * FROM recommend_for('C00042')`` (or ``recommend_for('C00042', k := 5)``): one customer's
#: recommendations computed now from ``customer_interactions``, the same definition as the batch
#: ``recommendations`` table (which it reproduces for the events the batch saw). Reads the tables
#: ``customer_interactions``, ``product_cells``, ``cells``, ``affinity_settings`` and
#: ``recommender_settings``. A customer without events gets the popularity order.
#:
#: Fast because it scores cells, not products: the k-th best score is at least the k-th best of
#: (cell score + prior of the cell's most popular product) over cells where nothing was bought, so
#: only cells whose best product reaches that bound are opened, and in them only products that reach
#: it. No window functions either: they cost milliseconds each even on ten rows.
RECOMMEND_FOR_MACRO = f"""
CREATE OR REPLACE MACRO recommend_for(cid, k := 10) AS TABLE
WITH ev AS (
    SELECT e.product_id, e.event_type, epoch(e."timestamp") AS ts, pc.cell_id
    FROM customer_interactions e JOIN product_cells pc USING (product_id)
    WHERE e.customer_id = cid
),
weighted AS (
    SELECT c.*, s.value * pow(0.5, ((SELECT max(ts) FROM ev) - ev.ts) / 86400.0
           / (SELECT value FROM affinity_settings WHERE name = 'half_life_days')) AS w
    FROM ev
    JOIN affinity_settings s ON s.name = 'event_weight' AND s.key = ev.event_type
    JOIN cells c USING (cell_id)
    WHERE s.value > 0
),
aff AS (
    SELECT attribute, value, sum(w) AS score
    FROM (UNPIVOT (SELECT w, {_ATTRS} FROM weighted) ON {_ATTRS} INTO NAME attribute VALUE value)
    GROUP BY ALL
),
totals AS (SELECT attribute, sum(score) AS total FROM aff GROUP BY ALL),
contrib AS (
    SELECT a.attribute, a.value, aw.value * a.score / t.total AS contribution, round(contribution, 9) AS shown
    FROM aff a JOIN totals t USING (attribute)
    JOIN recommender_settings aw ON aw.name = 'attribute_weight' AND aw.key = a.attribute
    WHERE aw.value > 0
),
lam AS (SELECT value AS lam FROM recommender_settings WHERE name = 'popularity_weight'),
bought AS (SELECT DISTINCT product_id, cell_id FROM ev WHERE event_type = 'purchase'),
scored_cells AS (
    SELECT c.cell_id, c.max_popularity, c.cell_id IN (SELECT cell_id FROM bought) AS has_bought,
           {" + ".join(f"coalesce(a{i}.contribution, 0)" for i in range(len(ATTRIBUTES)))} AS affinity_score
    FROM cells c
    {_CONTRIB_JOINS}
),
bound AS (  -- fewer than k cells without purchases: no bound, open every cell
    SELECT CASE WHEN n < k THEN -1e308 ELSE m END - 1e-9 AS lower
    FROM (
        SELECT count(*) AS n, min(b) AS m FROM (
            SELECT affinity_score + (SELECT lam FROM lam) * max_popularity AS b
            FROM scored_cells WHERE NOT has_bought ORDER BY b DESC LIMIT k
        )
    )
),
candidates AS (
    SELECT s.cell_id, s.affinity_score,
           unnest(c.product_ids) AS product_id, unnest(c.popularity) AS popularity
    FROM scored_cells s JOIN cells c USING (cell_id)
    WHERE s.affinity_score + (SELECT lam FROM lam) * s.max_popularity >= (SELECT lower FROM bound)
),
best AS (
    SELECT product_id, cell_id, affinity_score AS a, lam * popularity AS p, a + p AS raw
    FROM candidates CROSS JOIN lam
    WHERE raw >= (SELECT lower FROM bound) AND product_id NOT IN (SELECT product_id FROM bought)
    ORDER BY raw DESC, product_id
    LIMIT k + 10  -- slack for near-ties that rounding turns into exact ties
),
scored AS (
    SELECT product_id, cell_id, round(raw, 9) AS score, round(a, 9) AS affinity_score,
           round(p, 9) AS popularity_score
    FROM best ORDER BY score DESC, product_id LIMIT k
),
shown AS (
    SELECT u.product_id, u.attribute, u.value, c.shown
    FROM (UNPIVOT (SELECT s.product_id, {_X_ATTRS} FROM scored s JOIN cells x USING (cell_id))
          ON {_ATTRS} INTO NAME attribute VALUE value) u
    JOIN contrib c USING (attribute, value)
    WHERE c.shown > 0
),
flags AS (
    SELECT product_id, bool_or(attribute = 'article_type') AS has_article,
           bool_or(attribute = 'sub_category') AS has_sub
    FROM shown GROUP BY ALL
),
reasons AS (
    SELECT product_id, string_agg(attribute || '=' || value, ', ' ORDER BY shown DESC, attribute) AS reason
    FROM shown JOIN flags USING (product_id)
    WHERE NOT ((attribute = 'sub_category' AND has_article)
               OR (attribute = 'master_category' AND (has_article OR has_sub)))
    GROUP BY ALL
),
ranked AS (
    SELECT a.product_id, count(*) AS rank
    FROM scored a JOIN scored b ON b.score > a.score OR (b.score = a.score AND b.product_id <= a.product_id)
    GROUP BY ALL
)
SELECT cid AS customer_id, r.rank, s.product_id, s.score, s.affinity_score, s.popularity_score,
       coalesce(x.reason, 'popular') AS reason
FROM scored s JOIN ranked r USING (product_id) LEFT JOIN reasons x USING (product_id)
ORDER BY r.rank
"""


def recommend_for(con: duckdb.DuckDBPyConnection, customer_id: str, k: int = 10) -> pd.DataFrame:
    """Run the ``recommend_for`` macro (it must exist in ``con``'s database) for one customer."""
    return con.execute("SELECT * FROM recommend_for($cid, k := $k)", {"cid": customer_id, "k": int(k)}).df()
