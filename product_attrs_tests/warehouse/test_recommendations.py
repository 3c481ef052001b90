from __future__ import annotations

import math
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
import pytest

from product_attrs.warehouse.affinity import (
    ATTRIBUTES,
    AffinityParams,
    customer_attribute_affinity,
    feature_values,
    product_features,
    product_popularity,
)
from product_attrs.warehouse.rec_metrics import evaluate, ranking_metrics
from product_attrs.warehouse.recommend import (
    RecommenderParams,
    popular_recommendations,
    purchases_of,
    recommend,
)
from product_attrs.warehouse.recommend_sql import RECOMMEND_FOR_MACRO, cell_tables, recommend_for
from product_attrs.warehouse.similar import similar_products, similar_to_macro

T0 = datetime(2026, 1, 1)


def _catalog(rows: list[tuple]) -> pd.DataFrame:
    cols = ["id", "gender", "master_category", "sub_category", "article_type", "base_colour"]
    return pd.DataFrame(rows, columns=cols)


def _events(rows: list[tuple[str, int, str, int]]) -> pd.DataFrame:
    """(customer, product, type, hours after T0)."""
    return pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "product_id": [r[1] for r in rows],
            "event_type": [r[2] for r in rows],
            "timestamp": [pd.Timestamp(T0) + pd.Timedelta(hours=r[3]) for r in rows],
        }
    )


CATALOG = _catalog(
    [
        (1, "Men", "Apparel", "Topwear", "Tshirts", "Blue"),
        (2, "Men", "Apparel", "Topwear", "Tshirts", "Blue"),
        (3, "Men", "Apparel", "Topwear", "Tshirts", "Blue"),
        (4, "Men", "Apparel", "Topwear", "Tshirts", "Red"),
        (5, "Men", "Apparel", "Bottomwear", "Jeans", "Blue"),
        (6, "Women", "Footwear", "Shoes", "Heels", "Black"),
    ]
)


def _fit(catalog: pd.DataFrame, events: pd.DataFrame, params: AffinityParams = AffinityParams()):
    features = product_features(catalog)
    return (
        features,
        customer_attribute_affinity(events, features, params),
        product_popularity(events, features, params),
    )


def test_recommendations_leave_out_purchases_and_name_the_matched_attributes():
    events = _events([("C1", 1, "view", 0), ("C1", 2, "purchase", 1)])
    features, aff, pop = _fit(CATALOG, events)
    recs = recommend(aff, features, pop, purchases_of(events), RecommenderParams(k=4, popularity_weight=0.0))
    assert recs["product_id"].tolist() == [1, 3, 4, 5]  # 2 was bought; 1 and 3 tie at 5.0: lower id first
    assert recs["rank"].tolist() == [1, 2, 3, 4]
    assert recs["score"].tolist() == pytest.approx([5.0, 5.0, 4.0, 3.0])
    # Equal contributions (every share is 1.0) list in attribute order; implied categories are left out.
    assert recs["reason"].tolist() == [
        "article_type=Tshirts, base_colour=Blue, gender=Men",
        "article_type=Tshirts, base_colour=Blue, gender=Men",
        "article_type=Tshirts, gender=Men",
        "base_colour=Blue, gender=Men, master_category=Apparel",
    ]


def test_the_strongest_match_comes_first_in_the_reason_and_popularity_breaks_ties():
    events = _events(
        [("C1", 4, "purchase", 0), ("C1", 5, "view", 1), ("C2", 3, "purchase", 2), ("C2", 3, "view", 1)]
    )
    features, aff, pop = _fit(CATALOG, events)
    recs = recommend(aff, features, pop, purchases_of(events), RecommenderParams(k=2, popularity_weight=0.1))
    c1 = recs.loc[recs["customer_id"] == "C1"]
    # The only other red T-shirt was bought, so blue T-shirts lead, 3 (popular with C2) before 1 and 2.
    assert c1["product_id"].tolist() == [3, 1]
    # Shares: gender=Men 1.0 > article_type=Tshirts 5/6 > base_colour=Blue 1/6.
    assert c1["reason"].iloc[0] == "gender=Men, article_type=Tshirts, base_colour=Blue"
    c2 = recs.loc[recs["customer_id"] == "C2"]
    assert 3 not in c2["product_id"].tolist()


def test_a_customer_without_history_gets_the_popularity_order():
    events = _events([("C1", 6, "purchase", 0), ("C1", 5, "view", 0)])
    features, aff, pop = _fit(CATALOG, events)
    recs = recommend(aff, features, pop, purchases_of(events), RecommenderParams(k=2), customers=["NEW"])
    assert recs["product_id"].tolist() == [6, 5]
    assert recs["reason"].tolist() == ["popular", "popular"]
    baseline = popular_recommendations(pop, purchases_of(events), ["C1", "NEW"], k=2)
    assert baseline.loc[baseline["customer_id"] == "C1", "product_id"].tolist() == [5, 1]  # 6 was bought
    assert baseline.loc[baseline["customer_id"] == "NEW", "product_id"].tolist() == [6, 5]


def _random_world(seed: int = 0, n_products: int = 240, n_customers: int = 20, n_events: int = 500):
    rng = np.random.default_rng(seed)
    types = {
        "Tshirts": ("Topwear", "Apparel"),
        "Shirts": ("Topwear", "Apparel"),
        "Jeans": ("Bottomwear", "Apparel"),
        "Heels": ("Shoes", "Footwear"),
        "Watches": ("Watches", "Accessories"),
    }
    names = list(types)
    rows = []
    for pid in range(100, 100 + n_products):
        art = names[rng.integers(len(names))]
        colour = ["Blue", "Red", "Black", None][rng.integers(4)]
        rows.append(
            (pid, ["Men", "Women", "Unisex"][rng.integers(3)], types[art][1], types[art][0], art, colour)
        )
    catalog = _catalog(rows)
    ev = _events(
        [
            (
                f"C{rng.integers(n_customers):02d}",
                int(100 + rng.integers(n_products // 3) * 3 % n_products),
                ["view", "view", "add_to_cart", "purchase"][rng.integers(4)],
                int(rng.integers(24 * 90)),
            )
            for _ in range(n_events)
        ]
    )
    return catalog, ev


def _brute_force(aff, features, pop, bought, params: RecommenderParams) -> dict[str, list[int]]:
    long = feature_values(features)
    out = {}
    for c, a in aff.groupby("customer_id"):
        contrib = a.assign(c=a["share"] * a["attribute"].map(params.weight))
        scored = long.merge(contrib[["attribute", "value", "c"]], on=["attribute", "value"])
        s = scored.groupby("product_id")["c"].sum().reindex(features["product_id"], fill_value=0.0)
        s = (s + params.popularity_weight * pop.set_index("product_id")["popularity"].reindex(s.index)).round(
            9
        )
        s = s.drop(index=bought.loc[bought["customer_id"] == c, "product_id"], errors="ignore")
        frame = s.rename("score").reset_index().sort_values(["score", "product_id"], ascending=[False, True])
        out[c] = frame["product_id"].head(params.k).tolist()
    return out


@pytest.mark.parametrize("seed,popularity_weight", [(0, 0.3), (2, 0.0), (3, 3.0)])
def test_batch_recommendations_equal_scoring_every_product(seed: int, popularity_weight: float):
    catalog, events = _random_world(seed)
    features, aff, pop = _fit(catalog, events)
    bought = purchases_of(events)
    weights = {**{a: 1.0 for a in ATTRIBUTES}, "gender": 0.5}
    params = RecommenderParams(k=7, popularity_weight=popularity_weight, attribute_weights=weights)
    recs = recommend(aff, features, pop, bought, params, block=7)  # several blocks
    expected = _brute_force(aff, features, pop, bought, params)
    got = {c: g.sort_values("rank")["product_id"].tolist() for c, g in recs.groupby("customer_id")}
    assert got == expected
    assert recs.merge(bought, on=["customer_id", "product_id"]).empty


def _warehouse_with_macro(features, events, pop, aff_params: AffinityParams, params: RecommenderParams):
    con = duckdb.connect()
    product_cells, cells = cell_tables(features, pop)
    for name, frame in {
        "customer_interactions": events,
        "product_features": features,
        "product_cells": product_cells,
        "cells": cells,
        "affinity_settings": aff_params.settings_table(None),
        "recommender_settings": params.settings_table(),
    }.items():
        con.register("_f", frame)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM _f").fetchall()
        con.unregister("_f")
    con.execute(RECOMMEND_FOR_MACRO).fetchall()
    return con


def test_the_one_customer_macro_reproduces_the_batch_table():
    catalog, events = _random_world(seed=1)
    aff_params = AffinityParams(half_life_days=7)
    features, aff, pop = _fit(catalog, events, aff_params)
    params = RecommenderParams(k=6, popularity_weight=0.25)
    recs = recommend(aff, features, pop, purchases_of(events), params)
    con = _warehouse_with_macro(features, events, pop, aff_params, params)
    cols = ["rank", "product_id", "score", "affinity_score", "popularity_score", "reason"]
    for customer, batch in recs.groupby("customer_id"):
        live = recommend_for(con, customer, k=6)
        assert (live["customer_id"] == customer).all()
        pd.testing.assert_frame_equal(
            live[cols].reset_index(drop=True),
            batch[cols].reset_index(drop=True),
            check_dtype=False,
            atol=1e-9,
        )
    unknown = recommend_for(con, "nobody", k=3)
    assert unknown["product_id"].tolist() == pop["product_id"].head(3).tolist()
    assert (unknown["reason"] == "popular").all()


def test_similar_products_find_the_known_nearest_neighbours_in_numpy_and_sql():
    emb = np.array(
        [
            [1.0, 0.0, 0.0],  # 10
            [0.9, 0.1, 0.0],  # 11: closest to 10
            [0.0, 1.0, 0.0],  # 12
            [0.0, 0.8, 0.6],  # 13: closest to 12 (0.8), then 14 (0.6)
            [0.0, 0.0, 2.0],  # 14: not normalised; closest to 13
        ],
        dtype=np.float32,
    )
    ids = np.array([10, 11, 12, 13, 14])
    shuffled = [2, 0, 4, 1, 3]
    sims = similar_products(ids[shuffled], emb[shuffled], k=2)
    top = sims.loc[sims["rank"] == 1].set_index("product_id")["similar_product_id"].to_dict()
    assert top == {10: 11, 11: 10, 12: 13, 13: 12, 14: 13}
    assert sims.loc[sims["product_id"] == 13, "similar_product_id"].tolist() == [12, 14]
    assert (sims["product_id"] != sims["similar_product_id"]).all()
    assert sims.groupby("product_id").size().tolist() == [2] * 5
    s_12_13 = sims.loc[(sims["product_id"] == 12) & (sims["rank"] == 1), "similarity"].iloc[0]
    assert s_12_13 == pytest.approx(0.8, abs=1e-6)

    con = duckdb.connect()
    con.register("_pa", pd.DataFrame({"product_id": ids, "embedding": [list(map(float, e)) for e in emb]}))
    con.execute(
        "CREATE TABLE product_attributes AS "
        "SELECT product_id, CAST(embedding AS FLOAT[]) AS embedding FROM _pa"
    ).fetchall()
    con.execute(similar_to_macro("FLOAT[]")).fetchall()
    for pid in ids:
        live = con.execute("SELECT * FROM similar_to($p, k := 2)", {"p": int(pid)}).df()
        batch = sims.loc[sims["product_id"] == pid]
        assert live["similar_product_id"].tolist() == batch["similar_product_id"].tolist()
        assert live["similarity"].to_numpy() == pytest.approx(batch["similarity"].to_numpy(), abs=1e-6)


def test_ranking_metrics_on_known_answers():
    relevant = pd.DataFrame({"customer_id": ["A", "B", "B", "C"], "product_id": [1, 2, 3, 4]})
    perfect = pd.DataFrame(
        {"customer_id": ["A", "B", "B", "C"], "rank": [1, 1, 2, 1], "product_id": [1, 2, 3, 4]}
    )
    assert ranking_metrics(perfect, relevant, k=10) == {"hit_rate": 1.0, "ndcg": 1.0, "customers": 3}
    partial = pd.DataFrame(
        {"customer_id": ["A", "A", "B", "B"], "rank": [1, 2, 1, 2], "product_id": [9, 1, 3, 8]}
    )  # A: hit at rank 2; B: one of two relevant at rank 1; C: no recommendations
    m = ranking_metrics(partial, relevant, k=10)
    assert m["hit_rate"] == pytest.approx(2 / 3)
    ndcg_a = 1 / math.log2(3)
    ndcg_b = 1 / (1 + 1 / math.log2(3))
    assert m["ndcg"] == pytest.approx((ndcg_a + ndcg_b + 0.0) / 3)
    assert ranking_metrics(partial, relevant, k=1)["hit_rate"] == pytest.approx(1 / 3)


def test_evaluation_prefers_the_recommender_that_knows_the_customers_taste():
    # Two customers with opposite tastes; the held-out week repeats them; popularity favours neither.
    catalog = _catalog(
        [(i, "Men", "Apparel", "Topwear", "Tshirts", "Blue") for i in range(1, 13)]
        + [(i, "Women", "Footwear", "Shoes", "Heels", "Red") for i in range(13, 25)]
    )
    rows = []
    for day in range(30):
        rows.append(("M", 1 + day % 12, "view", 24 * day))
        rows.append(("W", 13 + day % 12, "view", 24 * day))
        rows.append(("X", 1 + (day * 5) % 24, "view", 24 * day))  # broad browsing drives popularity
        rows.append(("X", 1 + (day * 7) % 24, "view", 24 * day + 1))
    ev = evaluate(_events(rows), product_features(catalog), holdout_days=7, params=RecommenderParams(k=10))
    assert ev.value("affinity", "hit_rate") == 1.0
    assert ev.value("affinity", "ndcg") > ev.value("popularity", "ndcg")
    assert set(ev.metrics["customers"]) == {3}


def test_a_catalog_with_fewer_attribute_combinations_than_k_still_fills_the_list():
    catalog = _catalog(
        [(i, "Men", "Apparel", "Topwear", "Tshirts", "Blue" if i % 2 else "Red") for i in range(1, 9)]
    )
    events = _events([("C1", 1, "purchase", 0), ("C1", 3, "purchase", 1), ("C2", 8, "view", 2)])
    features, aff, pop = _fit(catalog, events)
    recs = recommend(aff, features, pop, purchases_of(events), RecommenderParams(k=5))
    c1 = recs.loc[recs["customer_id"] == "C1", "product_id"].tolist()
    assert c1 == [5, 7, 8, 2, 4]  # blue first (liked colour), most popular first, bought 1 and 3 left out
    assert _brute_force(aff, features, pop, purchases_of(events), RecommenderParams(k=5))["C1"] == c1


def _similar_the_plain_way(ids: np.ndarray, emb: np.ndarray, k: int) -> pd.DataFrame:
    """The whole float64 matrix, rounded, each row fully sorted (ties to the lower id)."""
    order = np.argsort(ids, kind="stable")
    ids, emb = ids[order], emb[order].astype(np.float64)
    emb[~np.isfinite(emb).all(axis=1)] = 0
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = np.divide(emb, norms, out=np.zeros_like(emb), where=norms > 0)
    sims = np.round((emb.astype(np.float32) @ emb.astype(np.float32).T).astype(np.float64), 6)
    np.fill_diagonal(sims, -np.inf)
    rows = []
    for i, pid in enumerate(ids):
        top = np.argsort(-sims[i], kind="stable")[:k]
        rows += [(pid, r + 1, ids[j], sims[i, j]) for r, j in enumerate(top)]
    return pd.DataFrame(rows, columns=["product_id", "rank", "similar_product_id", "similarity"])


def test_similar_products_in_small_blocks_equal_the_plain_way():
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(300, 6)).astype(np.float32)
    emb[10:20] = emb[5]  # ten exact duplicates: ties broken by the lower id
    emb[30] = 0  # a zero vector ties with everything (similarity 0)
    emb[31, 2] = np.nan  # a broken vector is similar to nothing, and breaks no other row
    emb[32, 0] = np.inf
    ids = rng.permutation(np.arange(1000, 1300))
    expected = _similar_the_plain_way(ids, emb, k=7)
    for budget in (1, 12 * 300 * 7, 10**9):  # one row a block, 7 rows, everything at once
        got = similar_products(ids, emb, k=7, budget=budget)
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    broken = ids[[30, 31, 32]]
    assert (got.loc[got["product_id"].isin(broken), "similarity"] == 0).all()
    some = ids[[0, 5, 31]]
    part = similar_products(ids, emb, k=7, of=some)
    pd.testing.assert_frame_equal(part, expected[expected["product_id"].isin(some)].reset_index(drop=True))


def test_similar_products_memory_stays_within_the_block_budget():
    import tracemalloc

    from product_attrs.warehouse.similar import BLOCK_BYTES, block_rows

    assert block_rows(1_000_000) * 1_000_000 * 12 <= BLOCK_BYTES  # 5 rows a block at 1M products
    n = 6000  # the old float64 blocks of 1024 rows held ~150 MB here (8 GB at 1M products)
    emb = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    tracemalloc.start()
    try:
        sims = similar_products(np.arange(n), emb, k=5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(sims) == n * 5
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB"


def test_recommender_parameters_are_checked_and_listed_for_the_macro():
    assert RecommenderParams(k=1).k == 1
    with pytest.raises(ValueError) as exc:
        RecommenderParams(k=0)
    assert str(exc.value) == "k must be >= 1"
    with pytest.raises(ValueError) as exc:
        RecommenderParams(attribute_weights={"colour": 1.0, "gender": 1.0})
    assert str(exc.value) == f"unknown attributes ['colour']; known: {ATTRIBUTES}"
    params = RecommenderParams(k=3, popularity_weight=0.5, attribute_weights={"gender": 2})
    assert params.weight("gender") == 2.0 and params.weight("article_type") == 0.0  # unlisted: ignored
    assert params.settings_table().values.tolist() == [
        ["attribute_weight", "article_type", 0.0],
        ["attribute_weight", "sub_category", 0.0],
        ["attribute_weight", "master_category", 0.0],
        ["attribute_weight", "base_colour", 0.0],
        ["attribute_weight", "gender", 2.0],
        ["popularity_weight", "", 0.5],
        ["k", "", 3.0],
    ]
    assert params.settings_table().columns.tolist() == ["name", "key", "value"]


def test_purchases_are_the_distinct_bought_pairs():
    events = _events(
        [("C1", 1, "purchase", 0), ("C1", 1, "purchase", 5), ("C1", 2, "view", 1), ("C2", 1, "purchase", 2)]
    )
    assert purchases_of(events).values.tolist() == [["C1", 1], ["C2", 1]]
    assert purchases_of(events).index.tolist() == [0, 1]


@pytest.mark.parametrize(
    "seed, k, block, popularity_weight, zero",
    [(4, 1, 1, 0.05, "base_colour"), (5, 12, 5, 1.0, "article_type"), (6, 3, 64, 0.0, "gender")],
)
def test_batch_recommendations_equal_scoring_every_product_for_other_settings(
    seed: int, k: int, block: int, popularity_weight: float, zero: str
):
    catalog, events = _random_world(seed, n_customers=12, n_events=300)
    features, aff, pop = _fit(catalog, events)
    bought = purchases_of(events)
    weights = {**{a: 1.0 for a in ATTRIBUTES}, zero: 0.0, "sub_category": 0.7}
    params = RecommenderParams(k=k, popularity_weight=popularity_weight, attribute_weights=weights)
    recs = recommend(aff, features, pop, bought, params, block=block)
    expected = _brute_force(aff, features, pop, bought, params)
    got = {c: g.sort_values("rank")["product_id"].tolist() for c, g in recs.groupby("customer_id")}
    assert got == expected
    assert recs.groupby("customer_id")["rank"].apply(list).tolist() == [list(range(1, k + 1))] * len(expected)
    # The score is the affinity part plus the popularity part, each as reported.
    assert (recs["score"] - recs["affinity_score"] - recs["popularity_score"]).abs().max() < 1e-8
    lam_pop = popularity_weight * pop.set_index("product_id")["popularity"].reindex(recs["product_id"])
    assert recs["popularity_score"].to_numpy() == pytest.approx(lam_pop.to_numpy(), abs=1e-9)


def test_listed_customers_only_and_reasons_on_request():
    features, aff, pop = _fit(CATALOG, _events([("C1", 5, "view", 0), ("C2", 6, "view", 0)]))
    none = purchases_of(_events([]))
    params = RecommenderParams(k=2, popularity_weight=0.0)
    recs = recommend(aff, features, pop, none, params, customers=["C2", "NEW"], with_reasons=False)
    assert recs.columns.tolist() == [
        "customer_id",
        "rank",
        "product_id",
        "score",
        "affinity_score",
        "popularity_score",
        "reason",
    ]
    assert recs["customer_id"].tolist() == ["C2", "C2", "NEW", "NEW"] and recs["reason"].isna().all()
    assert recs.loc[recs["customer_id"] == "C2", "product_id"].tolist()[0] == 6
    assert recs.loc[recs["customer_id"] == "NEW", "score"].tolist() == [0.0, 0.0]  # no prior, no taste
    empty = recommend(aff, features, pop, none, params, customers=[])
    assert empty.empty and empty.columns.tolist() == recs.columns.tolist()


def test_the_popular_baseline_lists_ten_by_default_and_skips_what_was_bought():
    catalog = _catalog([(i, "Men", "Apparel", "Topwear", "Tshirts", "Blue") for i in range(1, 15)])
    events = _events(
        [("C1", i, "view", i) for i in range(1, 15) for _ in range(i)] + [("C1", 14, "purchase", 20)]
    )
    features, _, pop = _fit(catalog, events)
    recs = popular_recommendations(pop, purchases_of(events), ["C1", "C2"])
    assert recs.loc[recs["customer_id"] == "C1", "product_id"].tolist() == list(range(13, 3, -1))
    assert recs.loc[recs["customer_id"] == "C2", "product_id"].tolist() == list(range(14, 4, -1))
    assert recs["rank"].tolist() == list(range(1, 11)) * 2 and (recs["reason"] == "popular").all()
    assert recs["affinity_score"].eq(0.0).all() and (recs["score"] == recs["popularity_score"]).all()
    assert recs.dtypes["rank"] == "int64" and recs.dtypes["product_id"] == "int64"
