"""The batch recommender on small worlds, in well under a second each: what the mutation run of
warehouse.recommend uses (test_recommendations.py checks the same on larger worlds, and against the
one-customer SQL macro)."""

from __future__ import annotations

import pandas as pd
import pytest

from product_attrs.warehouse.affinity import ATTRIBUTES
from product_attrs.warehouse.recommend import (
    RECOMMENDATION_COLUMNS,
    RecommenderParams,
    explain,
    purchases_of,
    recommend,
)
from product_attrs_tests.warehouse.test_recommendations import (
    CATALOG,
    _brute_force,
    _catalog,
    _events,
    _fit,
    _random_world,
)

SETTINGS = [
    # seed, k, block, popularity weight, attribute weighed 0
    (10, 1, 1, 0.05, None),
    (11, 3, 2, 0.0, "base_colour"),
    (12, 5, 64, 0.3, "gender"),
    (13, 12, 3, 3.0, "article_type"),
    (14, 2, 4, 1e-4, None),
]


@pytest.mark.parametrize("seed, k, block, popularity_weight, zero", SETTINGS)
def test_small_worlds_equal_scoring_every_product(seed, k, block, popularity_weight, zero):
    catalog, events = _random_world(seed, n_products=45, n_customers=7, n_events=90)
    features, aff, pop = _fit(catalog, events)
    bought = purchases_of(events)
    weights = {a: 1.0 for a in ATTRIBUTES}
    if zero:
        weights[zero] = 0.0
    weights["sub_category"] = 0.6
    params = RecommenderParams(k=k, popularity_weight=popularity_weight, attribute_weights=weights)
    recs = recommend(aff, features, pop, bought, params, block=block, with_reasons=False)
    assert recs.columns.tolist() == RECOMMENDATION_COLUMNS
    expected = _brute_force(aff, features, pop, bought, params)
    got = {c: g.sort_values("rank")["product_id"].tolist() for c, g in recs.groupby("customer_id")}
    assert got == expected
    assert recs["rank"].tolist() == [r for c in sorted(expected) for r in range(1, len(expected[c]) + 1)]
    assert (recs["score"] - recs["affinity_score"] - recs["popularity_score"]).abs().max() < 1e-8
    lam_pop = popularity_weight * pop.set_index("product_id")["popularity"].reindex(recs["product_id"])
    assert recs["popularity_score"].to_numpy() == pytest.approx(lam_pop.to_numpy(), abs=1e-9)
    assert recs.dtypes["rank"] == "int64" and recs.dtypes["product_id"] == "int64"


def test_a_customer_who_bought_most_of_a_cell_still_gets_k_products():
    """The bound counts the purchases in a cell: five of six blue T-shirts bought leaves one there."""
    catalog = _catalog(
        [(i, "Men", "Apparel", "Topwear", "Tshirts", "Blue") for i in range(1, 7)]
        + [(i, "Women", "Footwear", "Shoes", "Heels", "Red") for i in range(7, 13)]
    )
    events = _events([("C1", i, "purchase", i) for i in range(1, 6)] + [("C2", 7, "view", 0)])
    features, aff, pop = _fit(catalog, events)
    bought = purchases_of(events)
    for lam in (0.0, 0.5):
        params = RecommenderParams(k=4, popularity_weight=lam)
        recs = recommend(aff, features, pop, bought, params)
        c1 = recs.loc[recs["customer_id"] == "C1"]
        assert c1["product_id"].tolist()[0] == 6 and len(c1) == 4
        assert c1["product_id"].tolist() == _brute_force(aff, features, pop, bought, params)["C1"]


def test_reasons_name_the_matches_strongest_first_without_implied_categories():
    events = _events([("C1", 1, "view", 0), ("C1", 5, "view", 1), ("C1", 5, "view", 2)])
    features, aff, _ = _fit(CATALOG, events)
    recs = pd.DataFrame({"customer_id": "C1", "product_id": [6, 5, 4, 3, 2, 1]}, index=[5, 4, 3, 2, 1, 0])
    weights = {**{a: 1.0 for a in ATTRIBUTES}, "gender": 0.1}
    reasons = explain(recs, aff, features, RecommenderParams(attribute_weights=weights))
    assert reasons.index.tolist() == [5, 4, 3, 2, 1, 0]
    assert reasons.tolist() == [
        "popular",  # 6: women's heels, nothing in common
        "base_colour=Blue, article_type=Jeans, gender=Men",  # 5: blue (share 1) before jeans (2/3)
        "article_type=Tshirts, gender=Men",  # 4: a red T-shirt
        "base_colour=Blue, article_type=Tshirts, gender=Men",
        "base_colour=Blue, article_type=Tshirts, gender=Men",
        "base_colour=Blue, article_type=Tshirts, gender=Men",
    ]


def test_purchases_outside_the_listed_customers_or_the_catalog_change_nothing():
    """A purchase of a product no longer in the catalog, or by a customer not asked about, must not hide
    another customer's product (their keys must not collide)."""
    features, aff, pop = _fit(CATALOG, _events([("C1", 1, "view", 0), ("C2", 6, "view", 1)]))
    params = RecommenderParams(k=6, popularity_weight=0.1)
    none = purchases_of(_events([]))
    foreign = pd.DataFrame({"customer_id": ["C2", "ZZ"], "product_id": [999, 1]})
    expected = recommend(aff, features, pop, none, params)
    got = recommend(aff, features, pop, foreign, params)
    assert got["product_id"].tolist() == expected["product_id"].tolist()
    assert len(got.loc[got["customer_id"] == "C1"]) == 6


def test_a_product_missing_from_the_popularity_table_counts_as_unpopular():
    features, aff, pop = _fit(CATALOG, _events([("C1", 2, "view", 0), ("C2", 3, "view", 1)]))
    params = RecommenderParams(k=3, popularity_weight=1.0)
    recs = recommend(aff, features, pop.loc[pop["product_id"] != 3], purchases_of(_events([])), params)
    c2 = recs.loc[recs["customer_id"] == "C2"]
    assert c2["product_id"].tolist() == [2, 1, 3]  # 3 ties 1 and 2 on taste, but has no popularity now
    assert c2["popularity_score"].tolist() == [pytest.approx(0.999, abs=1e-3), 0.0, 0.0]
