"""How much each customer likes each attribute value, and how popular each product is, in DuckDB SQL.

An event adds ``event_weight * 0.5 ** (age_days / half_life_days)`` to every attribute value of its
product: a purchase says more than a view, and last week says more than last quarter. ``share`` is a
customer's score for a value over their total for that attribute, which makes scores comparable
between a customer with five events and one with five hundred; the recommender scores with shares.
Shares do not depend on the reference time ``as_of`` (it scales every weight alike), so the batch
tables and the one-customer query agree whatever "now" each of them uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import pandas as pd

from product_attrs.warehouse.vocabulary import ATTRIBUTES, DEFAULT_EVENT_WEIGHTS, PREDICTED_ATTRIBUTES

#: Attributes matched between customers and products, most specific first.

FEATURE_COLUMNS = ["product_id", *ATTRIBUTES, "label_source"]
AFFINITY_COLUMNS = ["customer_id", "attribute", "value", "score", "share", "events"]
POPULARITY_COLUMNS = ["product_id", "score", "customers", "popularity", "rank"]


@dataclass(frozen=True)
class AffinityParams:
    """Event weights (types not listed weigh 0) and the recency half-life; ``as_of`` defaults to the
    latest event, so a re-run on the same data gives the same numbers."""

    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    half_life_days: float = 30.0
    as_of: datetime | None = None

    def __post_init__(self) -> None:
        if self.half_life_days <= 0:
            raise ValueError("half_life_days must be positive")
        if any(w < 0 for w in self.event_weights.values()):
            raise ValueError("event weights must be >= 0")

    def settings_table(self, as_of: datetime | None) -> pd.DataFrame:
        """The parameters as rows (name, key, value): the one-customer SQL macro reads them from here."""
        rows = [("event_weight", t, float(w)) for t, w in self.event_weights.items()]
        rows.append(("half_life_days", "", float(self.half_life_days)))
        if as_of is not None:
            rows.append(("as_of_epoch_s", "", pd.Timestamp(as_of).timestamp()))
        return pd.DataFrame(rows, columns=["name", "key", "value"])

    @classmethod
    def from_settings_table(cls, table: pd.DataFrame) -> "AffinityParams":
        """The inverse of ``settings_table`` (without ``as_of``: a later fit decays to its own data)."""
        weights = {str(r.key): float(r.value) for r in table.itertuples() if r.name == "event_weight"}
        half_life = float(table.loc[table["name"] == "half_life_days", "value"].iloc[0])
        return cls(event_weights=weights, half_life_days=half_life)


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'").fetchall()  # pragma: no mutate - SQL and zone names ignore case
    return con


def product_features(
    catalog: pd.DataFrame, product_attributes: pd.DataFrame | None = None, min_confidence: float = 0.0
) -> pd.DataFrame:
    """One row per catalog product with the attributes to match on (FEATURE_COLUMNS).

    Predicted labels (``product_attributes``) win over the catalog's where their confidence reaches
    ``min_confidence``: that is what the extraction is for, and it covers products whose catalog
    labels are missing. Colour and gender always come from the catalog. ``label_source`` says which.
    Only heads present as ``{a}`` and ``{a}_confidence`` columns are used; a product with several
    rows (one per image) takes its most confident one; rows without a product id are ignored.
    """
    has_rows = product_attributes is not None and len(product_attributes) > 0
    heads = predicted_heads(product_attributes) if has_rows else []
    con = _connect()
    try:
        con.register("_catalog", catalog)  # pragma: no mutate - SQL ignores case
        if heads:
            cols = ["product_id"] + [c for a in heads for c in (a, f"{a}_confidence")]
            con.register("_predicted_rows", product_attributes[cols])  # pragma: no mutate - SQL ignores case
            first = heads[0]
            con.execute(
                f"""
                CREATE TEMP TABLE _predicted AS
                SELECT * FROM _predicted_rows WHERE product_id IS NOT NULL
                QUALIFY row_number() OVER (
                    PARTITION BY product_id ORDER BY {first}_confidence DESC NULLS LAST, {first}
                ) = 1
                """
            ).fetchall()

            def pick_one(a: str) -> str:
                if a not in heads:
                    return f"nullif(trim(c.{a}), '') AS {a}"
                return (
                    f"CASE WHEN p.{a}_confidence >= $min_conf AND nullif(trim(p.{a}), '') IS NOT NULL "
                    f"THEN trim(p.{a}) ELSE nullif(trim(c.{a}), '') END AS {a}"
                )

            pick = ",\n".join(pick_one(a) for a in PREDICTED_ATTRIBUTES)
            used = " OR ".join(  # pragma: no mutate - SQL ignores case
                f"(p.{a}_confidence >= $min_conf AND p.{a} IS NOT NULL)" for a in heads
            )
            source = f"CASE WHEN {used} THEN 'predicted' ELSE 'catalog' END"
            join = "LEFT JOIN _predicted p ON p.product_id = c.id"  # pragma: no mutate - SQL ignores case
        else:
            pick = ",\n".join(f"nullif(trim(c.{a}), '') AS {a}" for a in PREDICTED_ATTRIBUTES)
            source, join = "'catalog'", ""
        sql = f"""
            SELECT CAST(c.id AS BIGINT) AS product_id, {pick},
                   nullif(trim(c.base_colour), '') AS base_colour, nullif(trim(c.gender), '') AS gender,
                   {source} AS label_source
            FROM _catalog c {join}
            ORDER BY product_id
        """
        params = {"min_conf": float(min_confidence)} if join else None  # pragma: no mutate - SQL ignores case
        # execute(sql, None) is execute(sql), so the condition is not behaviour
        out = con.execute(sql, params).df() if params else con.execute(sql).df()  # pragma: no mutate
    finally:
        con.close()
    return out[FEATURE_COLUMNS]


def predicted_heads(columns: pd.DataFrame | list[str]) -> list[str]:
    """The predicted attributes present with their confidence, in PREDICTED_ATTRIBUTES order."""
    # set() of a DataFrame is also its column names: the isinstance only says what is meant
    names = set(columns.columns if isinstance(columns, pd.DataFrame) else columns)  # pragma: no mutate
    return [a for a in PREDICTED_ATTRIBUTES if a in names and f"{a}_confidence" in names]


def feature_values(features: pd.DataFrame) -> pd.DataFrame:
    """The long form (product_id, attribute, value) without empty values: what joins to affinity."""
    long = features.melt(  # pragma: no mutate - value_name="value" is melt's default
        id_vars="product_id", value_vars=list(ATTRIBUTES), var_name="attribute", value_name="value"
    )
    long = long.dropna(subset=["value"])  # pragma: no mutate - product_id and attribute are never null
    return long.sort_values(["attribute", "value", "product_id"], ignore_index=True).astype(
        {"product_id": "int64", "attribute": str, "value": str}
    )


# epoch() is seconds; the age is measured from $as_of, later events are left out.
_WEIGHTED_EVENTS_SQL = """
    SELECT e.customer_id, e.product_id,
           w.weight * pow(0.5, ($as_of - epoch(e."timestamp")) / 86400.0 / $half_life) AS w
    FROM _events e JOIN _weights w ON w.event_type = e.event_type
    WHERE w.weight > 0 AND epoch(e."timestamp") <= $as_of
"""


def _as_of(events: pd.DataFrame, params: AffinityParams) -> datetime | None:
    if params.as_of is not None:
        return params.as_of
    return None if events.empty else pd.Timestamp(events["timestamp"].max()).to_pydatetime()


def _register(con: duckdb.DuckDBPyConnection, events: pd.DataFrame, params: AffinityParams) -> float:
    columns = events[["customer_id", "product_id", "event_type", "timestamp"]]
    con.register("_events", columns)  # pragma: no mutate - SQL ignores case
    weights = pd.DataFrame(
        {
            "event_type": list(params.event_weights),  # pragma: no mutate - SQL ignores case
            "weight": list(map(float, params.event_weights.values())),  # pragma: no mutate - SQL ignores case
        }
    )
    con.register("_weights", weights)  # pragma: no mutate - SQL ignores case
    as_of = _as_of(events, params)
    if as_of is None:
        return 0.0  # pragma: no mutate - there are no events, so nothing is decayed to this time
    return pd.Timestamp(as_of).timestamp()


def customer_attribute_affinity(
    events: pd.DataFrame, features: pd.DataFrame, params: AffinityParams = AffinityParams()
) -> pd.DataFrame:
    """(customer_id, attribute, value, score, share, events) for every value a customer touched."""
    con = _connect()
    try:
        as_of = _register(con, events, params)
        con.register("_values", feature_values(features))  # pragma: no mutate - SQL ignores case
        sql = f"""
            WITH w AS ({_WEIGHTED_EVENTS_SQL}),
            agg AS (
                SELECT w.customer_id, v.attribute, v.value, sum(w.w) AS score, count(*) AS events
                FROM w JOIN _values v USING (product_id)
                GROUP BY ALL
            )
            SELECT customer_id, attribute, value, score,
                   score / sum(score) OVER (PARTITION BY customer_id, attribute) AS share, events
            FROM agg
            ORDER BY customer_id, attribute, score DESC, value
        """
        life = float(params.half_life_days)
        decay = {"half_life": life, "as_of": as_of}  # pragma: no mutate - SQL ignores case
        out = con.execute(sql, decay).df()
    finally:
        con.close()
    return out[AFFINITY_COLUMNS].astype({"events": "int64"})


def product_popularity(
    events: pd.DataFrame, features: pd.DataFrame, params: AffinityParams = AffinityParams()
) -> pd.DataFrame:
    """Every catalog product's decayed, weighted event mass; ``popularity`` is that over the maximum
    (0..1, 0 for products nobody touched), ``rank`` orders by it with product id as the tie-break."""
    con = _connect()
    try:
        as_of = _register(con, events, params)
        con.register("_products", features[["product_id"]])  # pragma: no mutate - SQL ignores case
        sql = f"""
            WITH w AS ({_WEIGHTED_EVENTS_SQL}),
            agg AS (
                SELECT product_id, sum(w) AS score, count(DISTINCT customer_id) AS customers
                FROM w GROUP BY ALL
            ),
            joined AS (
                SELECT p.product_id, coalesce(a.score, 0.0) AS score, coalesce(a.customers, 0) AS customers
                FROM _products p LEFT JOIN agg a USING (product_id)
            )
            SELECT product_id, score, customers,
                   coalesce(score / nullif(max(score) OVER (), 0), 0.0) AS popularity,
                   row_number() OVER (ORDER BY score DESC, product_id) AS rank
            FROM joined
            ORDER BY rank
        """
        life = float(params.half_life_days)
        decay = {"half_life": life, "as_of": as_of}  # pragma: no mutate - SQL ignores case
        out = con.execute(sql, decay).df()
    finally:
        con.close()
    return out[POPULARITY_COLUMNS].astype({"product_id": "int64", "customers": "int64", "rank": "int64"})


def affinity_as_of(events: pd.DataFrame, params: AffinityParams = AffinityParams()) -> datetime | None:
    """The reference time the scores are decayed to (the latest event unless given)."""
    return _as_of(events, params)
