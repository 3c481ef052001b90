"""Offline evaluation: fit on the history, score top-k lists on the held-out events.

The relevant items of a customer are the distinct products they touched after the cutoff (any event
type by default), less those they had already bought before it (which neither recommender may show).
Only customers with both history and relevant held-out items are scored; both recommenders see
exactly the same customers, history and targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from product_attrs.warehouse.affinity import AffinityParams, customer_attribute_affinity, product_popularity
from product_attrs.warehouse.interactions import EVENT_TYPES, time_holdout
from product_attrs.warehouse.recommend import (
    RecommenderParams,
    popular_recommendations,
    purchases_of,
    recommend,
)

METRIC_COLUMNS = [
    "recommender",
    "k",
    "hit_rate",
    "ndcg",
    "customers",
    "relevant_items",
    "cutoff",
    "holdout_days",
]


def ranking_metrics(recs: pd.DataFrame, relevant: pd.DataFrame, k: int = 10) -> dict[str, float]:
    """Mean hit rate@k and NDCG@k (binary relevance) over the customers in ``relevant``.

    ``recs``: (customer_id, rank, product_id), rank from 1; ``relevant``: (customer_id, product_id).
    A customer in ``relevant`` without recommendations counts as a miss; customers only in ``recs``
    are ignored. Hit rate: share of customers with at least one relevant product in their top k.
    NDCG: DCG = sum of 1/log2(rank+1) over relevant products in the top k, over the best possible DCG
    for that customer's number of relevant products.
    """
    rel = relevant[["customer_id", "product_id"]].drop_duplicates()
    customers = rel["customer_id"].unique()
    if len(customers) == 0:
        return {"hit_rate": float("nan"), "ndcg": float("nan"), "customers": 0}
    top = recs.loc[recs["rank"] <= k, ["customer_id", "product_id", "rank"]]
    hits = top.merge(rel, on=["customer_id", "product_id"])
    dcg = 1.0 / np.log2(hits["rank"].to_numpy() + 1.0)
    dcg_per = pd.Series(dcg, index=hits["customer_id"].to_numpy()).groupby(level=0).sum()
    n_rel = rel.groupby("customer_id").size().clip(upper=k)
    discounts = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    idcg = pd.Series(discounts[n_rel.to_numpy() - 1], index=n_rel.index)
    ndcg = (dcg_per.reindex(idcg.index, fill_value=0.0) / idcg).reindex(customers)
    hit = pd.Series(1.0, index=dcg_per.index).reindex(customers, fill_value=0.0)
    return {"hit_rate": float(hit.mean()), "ndcg": float(ndcg.mean()), "customers": int(len(customers))}


@dataclass(frozen=True)
class Evaluation:
    metrics: pd.DataFrame  # METRIC_COLUMNS, one row per recommender
    affinity_recs: pd.DataFrame
    popular_recs: pd.DataFrame
    relevant: pd.DataFrame

    def value(self, recommender: str, metric: str) -> float:
        row = self.metrics.loc[self.metrics["recommender"] == recommender]
        return float(row[metric].iloc[0])


def evaluate(
    events: pd.DataFrame,
    features: pd.DataFrame,
    affinity_params: AffinityParams = AffinityParams(),
    params: RecommenderParams = RecommenderParams(),
    holdout_days: float = 14.0,
    target_events: Sequence[str] = EVENT_TYPES,
) -> Evaluation:
    """Affinity recommender vs popularity baseline on a time hold-out of ``events``."""
    split = time_holdout(events, holdout_days=holdout_days)
    history, holdout = split.history, split.holdout
    bought = purchases_of(history)
    relevant = holdout.loc[
        holdout["event_type"].isin(list(target_events)), ["customer_id", "product_id"]
    ].drop_duplicates()
    relevant = relevant.loc[relevant["customer_id"].isin(set(history["customer_id"]))]
    relevant = (
        relevant.merge(bought, on=["customer_id", "product_id"], how="left", indicator=True)
        .query("_merge == 'left_only'")
        .drop(columns="_merge")
        .reset_index(drop=True)
    )
    customers = sorted(relevant["customer_id"].unique())
    hist_params = AffinityParams(
        affinity_params.event_weights, affinity_params.half_life_days, as_of=split.cutoff
    )
    affinity = customer_attribute_affinity(history, features, hist_params)
    popularity = product_popularity(history, features, hist_params)
    rec_aff = recommend(
        affinity, features, popularity, bought, params, customers=customers, with_reasons=False
    )
    rec_pop = popular_recommendations(popularity, bought, customers, k=params.k)
    rows = []
    for name, recs in (("affinity", rec_aff), ("popularity", rec_pop)):
        m = ranking_metrics(recs, relevant, k=params.k)
        rows.append(
            {
                "recommender": name,
                "k": params.k,
                "hit_rate": m["hit_rate"],
                "ndcg": m["ndcg"],
                "customers": m["customers"],
                "relevant_items": len(relevant),
                "cutoff": pd.Timestamp(split.cutoff),
                "holdout_days": float(holdout_days),
            }
        )
    return Evaluation(pd.DataFrame(rows, columns=METRIC_COLUMNS), rec_aff, rec_pop, relevant)
