"""The warehouse analytics steps: each reads what it needs from the warehouse, computes, publishes one
atomic snapshot and returns counts and checks for the Dagster asset (or a script) to report.

Tables written (one step each):

- ``customer_interactions`` (clean events) and ``interactions_quarantine`` (the project's quarantine
  shape; the asset also writes it as Parquet), view ``v_quarantine_all`` (``quarantine`` + it);
- ``product_features``, ``product_popularity``, ``customer_attribute_affinity``, ``affinity_settings``,
  and ``product_cells`` + ``cells`` (products grouped by attribute tuple, for the macro); view
  ``v_customer_top_attributes``;
- ``recommendations``, ``recommendation_metrics``, ``recommender_settings``; view
  ``v_recommendations_explained``; macro ``recommend_for(customer_id, k := 10)``;
- ``similar_products``; view ``v_similar_products_explained``; macro ``similar_to(product_id, k := 10)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from product_attrs.warehouse.affinity import (
    AffinityParams,
    affinity_as_of,
    customer_attribute_affinity,
    predicted_heads,
    product_features,
    product_popularity,
)
from product_attrs.warehouse.analytics_io import columns_of, embedding_type, read_embeddings
from product_attrs.warehouse.interactions import EVENT_TYPES, load_interactions
from product_attrs.warehouse.lake import Lake, relations
from product_attrs.warehouse.publish import publish_tables, read_tables
from product_attrs.warehouse.rec_metrics import evaluate
from product_attrs.warehouse.recommend import RecommenderParams, purchases_of, recommend
from product_attrs.warehouse.recommend_sql import RECOMMEND_FOR_MACRO, cell_tables
from product_attrs.warehouse.similar import similar_products, similar_to_macro

PRODUCT_ATTRIBUTES_TABLE = "product_attributes"

VIEWS_AFFINITY = {
    "v_customer_top_attributes": """
        SELECT customer_id, attribute, rank, value, round(share, 4) AS share, round(score, 4) AS score, events
        FROM (
            SELECT *,
                   row_number() OVER (PARTITION BY customer_id, attribute ORDER BY score DESC, value) AS rank
            FROM customer_attribute_affinity
        )
        WHERE rank <= 3
    """,
}

VIEWS_RECOMMENDATIONS = {
    "v_recommendations_explained": """
        SELECT r.customer_id, r.rank, r.product_id, c.product_display_name, f.article_type, f.base_colour,
               f.gender, r.score, r.affinity_score, r.popularity_score, r.reason, c.image_path
        FROM recommendations r
        LEFT JOIN product_features f USING (product_id)
        LEFT JOIN catalog c ON c.id = r.product_id
        ORDER BY r.customer_id, r.rank
    """,
}

VIEWS_SIMILAR = {
    "v_similar_products_explained": """
        SELECT s.product_id, a.product_display_name, a.article_type, s.rank, s.similar_product_id,
               b.product_display_name AS similar_display_name, b.article_type AS similar_article_type,
               s.similarity
        FROM similar_products s
        LEFT JOIN catalog a ON a.id = s.product_id
        LEFT JOIN catalog b ON b.id = s.similar_product_id
        ORDER BY s.product_id, s.rank
    """,
}


@dataclass(frozen=True)
class InteractionsResult:
    counts: dict[str, int]
    n_read: int
    quarantine_reasons: dict[str, int]
    files: list[str]
    skipped_files: dict[str, str]
    customers: int
    products: int
    event_counts: dict[str, int]
    first: str
    last: str
    quarantine: pd.DataFrame  # for the lead's catalog-wide quarantine table


def step_interactions(
    warehouse: Lake,
    source: Path,
    event_types: Sequence[str] = EVENT_TYPES,
    quarantine_parquet: Path | None = None,
) -> InteractionsResult:
    """Validate the events against ``catalog`` and publish ``customer_interactions`` + quarantine.

    The rejects go to their own table (the catalog's ``quarantine`` table is rewritten by
    ``warehouse_catalog``, which runs first) and the view ``v_quarantine_all`` shows both.
    """
    catalog_ids = read_tables(warehouse, {"ids": "SELECT id FROM catalog"})["ids"]["id"]
    loaded = load_interactions(source, catalog_ids, event_types)
    if quarantine_parquet is not None:
        quarantine_parquet.parent.mkdir(parents=True, exist_ok=True)
        loaded.quarantine.to_parquet(quarantine_parquet, index=False)
    views = {}
    if "quarantine" in relations(warehouse):
        views["v_quarantine_all"] = (
            "SELECT * FROM quarantine UNION ALL BY NAME SELECT * FROM interactions_quarantine"
        )
    counts = publish_tables(
        warehouse,
        {"customer_interactions": loaded.events, "interactions_quarantine": loaded.quarantine},
        views=views,
    )
    ev = loaded.events
    return InteractionsResult(
        counts=counts,
        n_read=loaded.n_read,
        quarantine_reasons={str(k): int(v) for k, v in loaded.quarantine["reason"].value_counts().items()},
        files=[str(f) for f in loaded.files],
        skipped_files=loaded.skipped_files,
        customers=int(ev["customer_id"].nunique()),
        products=int(ev["product_id"].nunique()),
        event_counts={str(k): int(v) for k, v in ev["event_type"].value_counts().items()},
        first=str(ev["timestamp"].min()) if len(ev) else "",
        last=str(ev["timestamp"].max()) if len(ev) else "",
        quarantine=loaded.quarantine,
    )


def _catalog_and_predictions(warehouse: Lake) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    queries = {
        "catalog": "SELECT id, gender, master_category, sub_category, article_type, base_colour FROM catalog"
    }
    if PRODUCT_ATTRIBUTES_TABLE in relations(warehouse):
        heads = predicted_heads(columns_of(warehouse, PRODUCT_ATTRIBUTES_TABLE))
        if heads:
            cols = ", ".join(["product_id"] + [c for a in heads for c in (a, f"{a}_confidence")])
            queries["predicted"] = f"SELECT {cols} FROM {PRODUCT_ATTRIBUTES_TABLE}"
    tables = read_tables(warehouse, queries)
    return tables["catalog"], tables.get("predicted")


@dataclass(frozen=True)
class AffinityResult:
    counts: dict[str, int]
    label_sources: dict[str, int]
    as_of: str
    customers: int
    customers_with_events: int
    max_share_sum_error: float


def step_affinity(
    warehouse: Lake, params: AffinityParams = AffinityParams(), min_confidence: float = 0.0
) -> AffinityResult:
    """Product features (predicted labels where present), popularity and customer affinity."""
    catalog, predicted = _catalog_and_predictions(warehouse)
    features = product_features(catalog, predicted, min_confidence=min_confidence)
    events = read_tables(
        warehouse, {"e": "SELECT customer_id, product_id, event_type, timestamp FROM customer_interactions"}
    )["e"]
    affinity = customer_attribute_affinity(events, features, params)
    popularity = product_popularity(events, features, params)
    as_of = affinity_as_of(events, params)
    product_cells, cells = cell_tables(features, popularity)
    counts = publish_tables(
        warehouse,
        {
            "product_features": features,
            "product_cells": product_cells,
            "cells": cells,
            "product_popularity": popularity,
            "customer_attribute_affinity": affinity,
            "affinity_settings": params.settings_table(as_of),
        },
        views=VIEWS_AFFINITY,
    )
    share_sums = affinity.groupby(["customer_id", "attribute"])["share"].sum()
    weighted = events["event_type"].map({k: v for k, v in params.event_weights.items()}).fillna(0) > 0
    return AffinityResult(
        counts=counts,
        label_sources={str(k): int(v) for k, v in features["label_source"].value_counts().items()},
        as_of=str(as_of),
        customers=int(affinity["customer_id"].nunique()),
        customers_with_events=int(events.loc[weighted, "customer_id"].nunique()),
        max_share_sum_error=float((share_sums - 1.0).abs().max()) if len(share_sums) else 0.0,
    )


@dataclass(frozen=True)
class RecommendationsResult:
    counts: dict[str, int]
    metrics: pd.DataFrame
    customers: int
    customers_short: int  # customers with history and fewer than k recommendations (catalog permitting)
    purchased_recommended: int
    preview: pd.DataFrame = field(repr=False)

    def metric(self, recommender: str, name: str) -> float:
        row = self.metrics.loc[self.metrics["recommender"] == recommender]
        return float(row[name].iloc[0])


_CHECK_SQL = """
WITH hist AS (SELECT DISTINCT customer_id FROM customer_interactions),
bought AS (SELECT DISTINCT customer_id, product_id FROM customer_interactions WHERE event_type = 'purchase'),
expected AS (
    SELECT h.customer_id,
           least($k, (SELECT count(*) FROM product_features) - count(b.product_id)) AS n
    FROM hist h LEFT JOIN bought b USING (customer_id) GROUP BY ALL
),
got AS (SELECT customer_id, count(*) AS n FROM recommendations GROUP BY ALL)
SELECT
    (SELECT count(*) FROM expected e LEFT JOIN got g USING (customer_id) WHERE coalesce(g.n, 0) < e.n)
        AS short,
    (SELECT count(*) FROM recommendations r JOIN bought b USING (customer_id, product_id))
        AS bought_recommended
"""


def step_recommendations(
    warehouse: Lake, params: RecommenderParams = RecommenderParams(), holdout_days: float = 14.0
) -> RecommendationsResult:
    """Top-k per customer from the published affinity, the hold-out evaluation against popularity,
    and the one-customer macro."""
    t = read_tables(
        warehouse,
        {
            "events": "SELECT customer_id, product_id, event_type, timestamp FROM customer_interactions",
            "features": "SELECT * FROM product_features",
            "popularity": "SELECT * FROM product_popularity",
            "affinity": "SELECT * FROM customer_attribute_affinity",
            "settings": "SELECT * FROM affinity_settings",
        },
    )
    events, features = t["events"], t["features"]
    customers = sorted(events["customer_id"].unique())
    recs = recommend(
        t["affinity"], features, t["popularity"], purchases_of(events), params, customers=customers
    )
    evaluation = evaluate(
        events, features, AffinityParams.from_settings_table(t["settings"]), params, holdout_days
    )
    counts = publish_tables(
        warehouse,
        {
            "recommendations": recs,
            "recommendation_metrics": evaluation.metrics,
            "recommender_settings": params.settings_table(),
        },
        views=VIEWS_RECOMMENDATIONS,
        macros=[RECOMMEND_FOR_MACRO],
    )
    checks = read_tables(warehouse, {"c": _CHECK_SQL.replace("$k", str(int(params.k)))})["c"].iloc[0]
    return RecommendationsResult(
        counts=counts,
        metrics=evaluation.metrics,
        customers=len(customers),
        customers_short=int(checks["short"]),
        purchased_recommended=int(checks["bought_recommended"]),
        preview=recs.head(20),
    )


@dataclass(frozen=True)
class SimilarResult:
    counts: dict[str, int]
    products: int
    dimension: int
    products_short: int  # products with fewer than min(k, n - 1) neighbours
    self_matches: int
    mean_top1_similarity: float


def step_similar_products(warehouse: Lake, k: int = 10) -> SimilarResult | None:
    """Nearest products by embedding; None (nothing written) when ``product_attributes`` or its
    ``embedding`` column is absent or holds no vector."""
    if PRODUCT_ATTRIBUTES_TABLE not in relations(warehouse) or not embedding_type(warehouse):
        return None
    ids, emb = read_embeddings(warehouse)
    if len(ids) == 0:
        return None
    sims = similar_products(ids, emb, k=k)
    macro = similar_to_macro(embedding_type(warehouse))
    counts = publish_tables(warehouse, {"similar_products": sims}, views=VIEWS_SIMILAR, macros=[macro])
    per = sims.groupby("product_id").size().reindex(ids, fill_value=0)
    top1 = sims.loc[sims["rank"] == 1, "similarity"]
    return SimilarResult(
        counts=counts,
        products=len(ids),
        dimension=int(emb.shape[1]),
        products_short=int((per < min(k, len(ids) - 1)).sum()),
        self_matches=int((sims["product_id"] == sims["similar_product_id"]).sum()),
        mean_top1_similarity=float(top1.mean()) if len(top1) else 0.0,
    )
