"""Recommendations from attribute affinity, with a popularity baseline and the reason for each pick.

A product's score for a customer is ``sum over attributes of weight[a] * share(customer, a, value of
the product) + popularity_weight * popularity(product)``, products the customer bought left out, ties
broken by product id, scores rounded to 1e-9 so that the batch and the SQL paths rank alike.

Two implementations of that one definition, checked against each other by the tests:

- ``recommend`` (batch, every customer): NumPy/SciPy. Products with identical attributes (a *cell*)
  differ only by popularity, so affinity is a sparse (customers x cells) matrix product, and a
  per-customer lower bound on the k-th best score leaves a few dozen candidate products to score
  (see ``recommend``). Exact, and it scales to 50k customers x 44k products, where a SQL join of
  customers to every product (billions of rows) does not.
- ``RECOMMEND_FOR_MACRO`` in ``warehouse.recommend_sql`` (one customer, on the fly, in the warehouse):
  a DuckDB table macro that recomputes the customer's affinity from the raw events (so it reflects
  events newer than the last batch) and applies the same bound over cells.

Similar products by embedding are in ``warehouse.similar``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
from scipy import sparse

from product_attrs.warehouse.affinity import ATTRIBUTES, feature_values

SCORE_DECIMALS = 9
RECOMMENDATION_COLUMNS = [
    "customer_id",
    "rank",
    "product_id",
    "score",
    "affinity_score",
    "popularity_score",
    "reason",
]
POPULAR_REASON = "popular"


@dataclass(frozen=True)
class RecommenderParams:
    """``k`` per customer; attribute weights multiply shares; the popularity prior is small so that it
    mostly orders products of equal affinity."""

    k: int = 10
    popularity_weight: float = 0.25
    attribute_weights: Mapping[str, float] = field(default_factory=lambda: {a: 1.0 for a in ATTRIBUTES})

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError("k must be >= 1")
        unknown = set(self.attribute_weights) - set(ATTRIBUTES)
        if unknown:
            raise ValueError(f"unknown attributes {sorted(unknown)}; known: {ATTRIBUTES}")

    def weight(self, attribute: str) -> float:
        return float(self.attribute_weights.get(attribute, 0.0))

    def settings_table(self) -> pd.DataFrame:
        """(name, key, value) rows that the one-customer macro reads."""
        rows = [("attribute_weight", a, self.weight(a)) for a in ATTRIBUTES]
        rows += [("popularity_weight", "", float(self.popularity_weight)), ("k", "", float(self.k))]
        return pd.DataFrame(rows, columns=["name", "key", "value"])


def purchases_of(events: pd.DataFrame) -> pd.DataFrame:
    """Distinct (customer_id, product_id) bought: never recommended back."""
    bought = events.loc[events["event_type"] == "purchase", ["customer_id", "product_id"]]
    return bought.drop_duplicates(ignore_index=True)


@dataclass(frozen=True)
class _Cells:
    """Products grouped by identical attribute tuples (cells), sorted within a cell by popularity."""

    values: pd.DataFrame  # attribute, value, code: the columns of the customer x value matrix
    cell_codes: (
        np.ndarray
    )  # (n_attributes, n_cells): value code per attribute, n_values (a zero column) if none
    cell_of_product: np.ndarray  # (n_products,)
    order: np.ndarray  # product positions sorted by (cell, popularity desc, product id)
    start: np.ndarray  # (n_cells,) first index in ``order`` of each cell
    size: np.ndarray  # (n_cells,)
    key: np.ndarray  # cell + (1 - popularity) / 2 along ``order``: ascending, for threshold searches

    @property
    def n_cells(self) -> int:
        return self.cell_codes.shape[1]


def _cells(features: pd.DataFrame, pop: np.ndarray) -> _Cells:
    ids = features["product_id"].to_numpy(dtype=np.int64)  # pragma: no mutate - it is int64 already
    rows, codes, offset = [], [], 0
    for a in ATTRIBUTES:
        # A NaN left in (the default `other`) is missing to Categorical too, and scores nothing.
        col = features[a].astype(object).where(features[a].notna(), None)  # pragma: no mutate
        cats = sorted({str(v) for v in col if v is not None})
        rows.append(
            pd.DataFrame({"attribute": a, "value": cats, "code": np.arange(offset, offset + len(cats))})
        )
        # Categories inferred from `col` are the same sorted values; any negative code means "none".
        code = pd.Categorical(col, categories=cats).codes.astype(np.int64)  # pragma: no mutate
        codes.append(np.where(code >= 0, code + offset, -1))  # pragma: no mutate - see above
        offset += len(cats)
    values = pd.concat(rows, ignore_index=True)  # pragma: no mutate - its index is never read
    cell_keys, cell_of_product = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
    cell_of_product = cell_of_product.reshape(-1)
    cell_codes = np.where(cell_keys >= 0, cell_keys, offset).T.copy()
    order = np.lexsort((ids, -pop, cell_of_product))
    size = np.bincount(cell_of_product, minlength=len(cell_keys))
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    key = cell_of_product[order] + (1.0 - pop[order]) / 2.0
    return _Cells(values, cell_codes, cell_of_product, order, start, size, key)


def recommend(
    affinity: pd.DataFrame,
    features: pd.DataFrame,
    popularity: pd.DataFrame,
    purchases: pd.DataFrame,
    params: RecommenderParams = RecommenderParams(),
    customers: Sequence[str] | None = None,
    block: int = 1024,  # pragma: no mutate - the block size bounds memory, not the result
    with_reasons: bool = True,
) -> pd.DataFrame:
    """Top-k products for each customer (RECOMMENDATION_COLUMNS), with the matched attributes as reason.

    ``affinity`` is ``customer_attribute_affinity``'s output, ``popularity`` ``product_popularity``'s,
    ``purchases`` (customer_id, product_id) pairs to exclude. ``customers`` defaults to everyone in
    ``affinity``; a listed customer without affinity gets the popularity order.

    Exact, without scoring every product for every customer. Products of one cell (identical
    attributes) share their affinity score, so per block of customers: (1) cell scores, the weighted
    sum over attributes of the customer's share of the cell's value (a sparse matrix product); (2) a
    lower bound T on each customer's k-th best score: with m the most purchases any one customer has
    in a cell, the cell's (m + j)-th most popular product bounds from below the score of the
    customer's j-th best unbought product there, and T is the k-th best of these guarantees over all
    cells; (3) only products scoring >= T can make the list: cells whose best product reaches T, and
    in them the most popular products down to T; (4) those few candidates are scored exactly
    (float64), bought ones dropped, and sorted (score desc, product id).
    """
    customers = sorted(affinity["customer_id"].unique()) if customers is None else list(customers)
    feats = features.sort_values("product_id", ignore_index=True)  # pragma: no mutate - index unread
    product_ids = feats["product_id"].to_numpy(dtype=np.int64)  # pragma: no mutate - int64 already
    pop_by_id = popularity.set_index("product_id")["popularity"]
    pop = pop_by_id.reindex(product_ids).fillna(0.0).to_numpy(dtype=np.float64)
    cells = _cells(feats, pop)
    lam = float(params.popularity_weight)
    n_products, n_cells = len(product_ids), cells.n_cells

    cust_index = pd.Index(customers)
    coded = affinity[["customer_id", "attribute", "value", "share"]].merge(
        cells.values,
        on=["attribute", "value"],  # pragma: no mutate - the only shared columns
    )
    crow = cust_index.get_indexer(coded["customer_id"])
    keep = crow >= 0
    by_row = np.argsort(crow[keep], kind="stable")  # pragma: no mutate - order in a row: the same sum
    crow = crow[keep][by_row]
    vcol = coded["code"].to_numpy(dtype=np.int64)[keep][by_row]  # pragma: no mutate - int64 already
    share = coded["share"].to_numpy(dtype=np.float64)[keep][by_row]  # pragma: no mutate - float64 already

    b_row = cust_index.get_indexer(purchases["customer_id"])
    b_pos = pd.Index(product_ids).get_indexer(purchases["product_id"])
    ok = (b_row >= 0) & (b_pos >= 0)
    bought_keys = np.unique(b_row[ok].astype(np.int64) * n_products + b_pos[ok])
    most_bought = np.zeros(n_cells, dtype=np.int64)
    if len(bought_keys):
        rc = pd.DataFrame(
            {"r": bought_keys // n_products, "c": cells.cell_of_product[bought_keys % n_products]}
        )
        per_cell = rc.value_counts().groupby(level="c").max()
        most_bought[per_cell.index.to_numpy()] = per_cell.to_numpy()
    # guard[c, j]: popularity prior of the (most_bought[c] + j + 1)-th product of cell c. Whoever the
    # customer, cell c holds j + 1 unbought products scoring at least cell score + guard[c, j].
    k = params.k
    nth = most_bought[:, None] + np.arange(k)[None, :]
    has_guard = nth < cells.size[:, None]
    guard_pop = pop[cells.order[np.minimum(cells.start[:, None] + nth, n_products - 1)]]
    guard = np.where(has_guard, lam * guard_pop, -np.inf)
    best = lam * pop[cells.order[cells.start]]
    kk = min(k, n_cells)
    weights = [(j, params.weight(a)) for j, a in enumerate(ATTRIBUTES) if params.weight(a)]
    # The bounding pass runs in float32 (half the memory traffic of the customers x cells matrices);
    # ``slack`` covers its rounding, so candidates are a superset, then scored exactly in float64.
    slack = 1e-5
    guard32, best32 = guard.astype(np.float32), best.astype(np.float32)
    # (values + 1) x cells, weight[a] where the cell has the value; the shares are ~90% zeros, so a
    # sparse product beats a dense matmul (and a gather per attribute) severalfold.
    rows = np.concatenate([cells.cell_codes[j] for j, _ in weights]) if weights else np.zeros(0, np.int64)
    cols = np.tile(np.arange(n_cells), len(weights))
    data = np.repeat(np.array([w for _, w in weights], dtype=np.float32), n_cells)
    incidence = sparse.csr_matrix((data, (rows, cols)), shape=(len(cells.values) + 1, n_cells))

    parts: list[tuple[np.ndarray, ...]] = []
    for lo_c in range(0, len(customers), block):
        hi_c = min(lo_c + block, len(customers))
        lo, hi = np.searchsorted(crow, [lo_c, hi_c])
        shares = np.zeros((hi_c - lo_c, len(cells.values) + 1))  # last column: "no value", always 0
        np.add.at(shares, (crow[lo:hi] - lo_c, vcol[lo:hi]), share[lo:hi])
        approx = (sparse.csr_matrix(shares, dtype=np.float32) @ incidence).toarray()
        # The k-th best guaranteed score: only the kk cells with the best first guarantee can hold
        # the k best guarantees, so look at their k guarantees each (kk x k values per customer).
        first = approx + guard32[:, 0]
        if kk < n_cells:
            top_cells = np.argpartition(-first, kk - 1, axis=1)[:, :kk]
        else:
            top_cells = np.broadcast_to(np.arange(n_cells), (hi_c - lo_c, n_cells))
        sure = np.take_along_axis(approx, top_cells, axis=1)[:, :, None] + guard32[top_cells]
        sure = sure.reshape(hi_c - lo_c, -1)
        lower = np.partition(sure, sure.shape[1] - k, axis=1)[:, sure.shape[1] - k].astype(np.float64) - slack
        r, c = np.nonzero(approx + best32 >= lower[:, None])
        base = np.zeros(len(r))
        for j, w in weights:
            base += w * shares[r, cells.cell_codes[j, c]]
        if lam > 0:
            need = np.clip((lower[r] - base - slack) / lam - slack, 0.0, 1.0)  # popularity needed to reach T
            end = np.searchsorted(cells.key, c + (1.0 - need) / 2.0, side="right")
            m = np.clip(end - cells.start[c], 0, cells.size[c])
        else:
            m = cells.size[c]
        m = np.where(np.isfinite(lower[r]), m, cells.size[c])
        rr = np.repeat(r, m)
        within = np.arange(int(m.sum())) - np.repeat(np.cumsum(m) - m, m)
        pos = cells.order[np.repeat(cells.start[c], m) + within]
        aff_score = np.repeat(base, m)
        score = np.round(aff_score + lam * pop[pos], SCORE_DECIMALS)
        fresh = ~np.isin((rr + lo_c).astype(np.int64) * n_products + pos, bought_keys)
        rr, pos, score, aff_score = rr[fresh], pos[fresh], score[fresh], aff_score[fresh]
        srt = np.lexsort((product_ids[pos], -score, rr))
        rr, pos, score, aff_score = rr[srt], pos[srt], score[srt], aff_score[srt]
        first = np.searchsorted(rr, rr, side="left")
        rank = np.arange(len(rr)) - first + 1
        top = rank <= params.k
        parts.append((rr[top] + lo_c, rank[top], pos[top], score[top], aff_score[top]))

    if parts:
        c_idx, rank, pos, score, aff_score = (np.concatenate(x) for x in zip(*parts))
    else:
        c_idx = rank = pos = np.zeros(0, np.int64)
        score = aff_score = np.zeros(0)
    recs = pd.DataFrame(
        {
            "customer_id": np.asarray(customers, dtype=object)[c_idx],
            "rank": rank.astype(np.int64),
            "product_id": product_ids[pos],
            "score": score,
            "affinity_score": np.round(aff_score, SCORE_DECIMALS),
            "popularity_score": np.round(lam * pop[pos], SCORE_DECIMALS),
        }
    )
    recs["reason"] = explain(recs, affinity, features, params) if with_reasons else None
    return recs[RECOMMENDATION_COLUMNS]


#: Implied categories are dropped from a reason: sub_category when the article_type matched too,
#: master_category when either did ("article_type=Belts" already says "sub_category=Belts").
_IMPLIED = """
    NOT ((attribute = 'sub_category' AND bool_or(attribute = 'article_type') OVER (PARTITION BY {key}))
         OR (attribute = 'master_category'
             AND bool_or(attribute IN ('article_type', 'sub_category')) OVER (PARTITION BY {key})))
"""

_EXPLAIN_SQL = f"""
WITH contributions AS (
    SELECT r._row, v.attribute, v.value, round(w.weight * a.share, 9) AS contribution
    FROM _recs r
    JOIN _values v ON v.product_id = r.product_id
    JOIN _affinity a ON a.customer_id = r.customer_id AND a.attribute = v.attribute AND a.value = v.value
    JOIN _weights w ON w.attribute = v.attribute
),
matched AS (
    SELECT * FROM contributions WHERE contribution > 0 QUALIFY {_IMPLIED.format(key="_row")}
)
SELECT r._row, coalesce(
    string_agg(m.attribute || '=' || m.value, ', ' ORDER BY m.contribution DESC, m.attribute), $popular
) AS reason
FROM _recs r LEFT JOIN matched m USING (_row)
GROUP BY r._row ORDER BY r._row
"""


def explain(
    recs: pd.DataFrame, affinity: pd.DataFrame, features: pd.DataFrame, params: RecommenderParams
) -> pd.Series:
    """For each (customer_id, product_id) row: the attribute values they share, strongest first
    (``article_type=Tshirts, base_colour=Blue``; implied parent categories left out), or ``popular``
    when nothing matched."""
    con = duckdb.connect()
    try:
        rows = recs[["customer_id", "product_id"]].assign(_row=np.arange(len(recs)))
        con.register("_recs", rows)  # pragma: no mutate - SQL ignores case
        con.register("_values", feature_values(features))  # pragma: no mutate - SQL ignores case
        shares = affinity[["customer_id", "attribute", "value", "share"]]
        con.register("_affinity", shares)  # pragma: no mutate - SQL ignores case
        w = [params.weight(a) for a in ATTRIBUTES]
        weights = {"attribute": list(ATTRIBUTES), "weight": w}  # pragma: no mutate - SQL ignores case
        con.register("_weights", pd.DataFrame(weights))  # pragma: no mutate - SQL ignores case
        named = {"popular": POPULAR_REASON}  # pragma: no mutate - SQL ignores case
        out = con.execute(_EXPLAIN_SQL, named).df()
    finally:
        con.close()
    # The reasons are strings (objects) already, whatever the dtype asked for.
    return pd.Series(out["reason"].to_numpy(), index=recs.index, dtype=object)  # pragma: no mutate


def popular_recommendations(
    popularity: pd.DataFrame, purchases: pd.DataFrame, customers: Sequence[str], k: int = 10
) -> pd.DataFrame:
    """The baseline: the k most popular products each customer has not bought (same columns)."""
    con = duckdb.connect()
    try:
        ranked = popularity[["product_id", "popularity", "rank"]]
        bought = purchases[["customer_id", "product_id"]]
        con.register("_pop", ranked)  # pragma: no mutate - SQL ignores case
        con.register("_bought", bought)  # pragma: no mutate - SQL ignores case
        # Customer ids are strings: a Series of them is of objects (even empty, in pandas 2).
        listed = pd.Series(list(customers), dtype=object)  # pragma: no mutate
        table = pd.DataFrame({"customer_id": listed})  # pragma: no mutate - SQL ignores case
        con.register("_customers", table)  # pragma: no mutate - SQL ignores case
        sql = """
            WITH most_bought AS (
                SELECT coalesce(max(n), 0) AS n FROM (SELECT count(*) AS n FROM _bought GROUP BY customer_id)
            ),
            head AS (SELECT * FROM _pop WHERE rank <= $k + (SELECT n FROM most_bought)),
            cand AS (
                SELECT c.customer_id, h.product_id, h.popularity, h.rank AS pop_rank
                FROM _customers c CROSS JOIN head h
                ANTI JOIN _bought b ON b.customer_id = c.customer_id AND b.product_id = h.product_id
            )
            SELECT customer_id, row_number() OVER (PARTITION BY customer_id ORDER BY pop_rank) AS rank,
                   product_id, round(popularity, 9) AS score, 0.0 AS affinity_score,
                   round(popularity, 9) AS popularity_score,
                   $reason AS reason
            FROM cand QUALIFY rank <= $k ORDER BY customer_id, rank
        """
        named = {"k": int(k), "reason": POPULAR_REASON}  # pragma: no mutate - SQL ignores case
        out = con.execute(sql, named).df()
    finally:
        con.close()
    return out[RECOMMENDATION_COLUMNS].astype({"rank": "int64", "product_id": "int64"})
