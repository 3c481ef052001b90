from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from product_attrs.warehouse.affinity import (
    AffinityParams,
    customer_attribute_affinity,
    product_features,
    product_popularity,
)

AS_OF = datetime(2026, 1, 31)

CATALOG = pd.DataFrame(
    {
        "id": [1, 2, 3],
        "gender": ["Men", "Men", "Women"],
        "master_category": ["Apparel", "Apparel", "Footwear"],
        "sub_category": ["Topwear", "Bottomwear", "Shoes"],
        "article_type": ["Tshirts", "Jeans", "Heels"],
        "base_colour": ["Blue", "Blue", ""],
    }
)


def _events(rows: list[tuple[str, int, str, float]]) -> pd.DataFrame:
    """(customer, product, type, days before AS_OF)."""
    return pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "product_id": [r[1] for r in rows],
            "event_type": [r[2] for r in rows],
            "timestamp": [pd.Timestamp(AS_OF) - pd.Timedelta(days=r[3]) for r in rows],
        }
    )


EVENTS = _events(
    [
        ("C1", 1, "view", 0),  # 1 * 1
        ("C1", 2, "purchase", 10),  # 5 * 0.5
        ("C1", 1, "add_to_cart", 20),  # 3 * 0.25
        ("C1", 3, "view", -1),  # after as_of: left out
        ("C2", 3, "view", 10),  # 1 * 0.5
    ]
)
PARAMS = AffinityParams(half_life_days=10, as_of=AS_OF)


def _score(aff: pd.DataFrame, customer: str, attribute: str, value: str) -> pd.Series:
    row = aff.loc[
        (aff["customer_id"] == customer) & (aff["attribute"] == attribute) & (aff["value"] == value)
    ]
    assert len(row) == 1, (customer, attribute, value)
    return row.iloc[0]


def test_scores_weight_event_types_and_halve_every_half_life():
    aff = customer_attribute_affinity(EVENTS, product_features(CATALOG), PARAMS)
    tshirts = _score(aff, "C1", "article_type", "Tshirts")
    jeans = _score(aff, "C1", "article_type", "Jeans")
    assert tshirts["score"] == pytest.approx(1.0 + 0.75)
    assert jeans["score"] == pytest.approx(2.5)
    assert tshirts["share"] == pytest.approx(1.75 / 4.25)
    assert jeans["share"] == pytest.approx(2.5 / 4.25)
    assert tshirts["events"] == 2
    blue = _score(aff, "C1", "base_colour", "Blue")
    assert (blue["score"], blue["share"]) == (pytest.approx(4.25), pytest.approx(1.0))
    assert not ((aff["customer_id"] == "C1") & (aff["value"] == "Heels")).any(), (
        "events after as_of are ignored"
    )
    # An empty colour is no value at all: C2 has no colour affinity, but the other attributes.
    c2 = aff.loc[aff["customer_id"] == "C2"]
    assert set(c2["attribute"]) == {"article_type", "sub_category", "master_category", "gender"}
    assert _score(aff, "C2", "gender", "Women")["score"] == pytest.approx(0.5)


def test_weights_are_configurable_and_unlisted_types_weigh_nothing():
    params = AffinityParams(event_weights={"view": 2.0}, half_life_days=20, as_of=AS_OF)
    aff = customer_attribute_affinity(EVENTS, product_features(CATALOG), params)
    c1 = aff.loc[(aff["customer_id"] == "C1") & (aff["attribute"] == "article_type")]
    assert c1[["value", "score", "share"]].values.tolist() == [
        ["Tshirts", pytest.approx(2.0), pytest.approx(1.0)]
    ]


def test_shares_do_not_depend_on_the_reference_time():
    later = AffinityParams(half_life_days=10, as_of=datetime(2026, 3, 1))
    a = customer_attribute_affinity(EVENTS.iloc[:3], product_features(CATALOG), PARAMS)
    b = customer_attribute_affinity(EVENTS.iloc[:3], product_features(CATALOG), later)
    assert b["share"].to_numpy() == pytest.approx(a["share"].to_numpy())
    assert (b["score"] < a["score"]).all()


def test_popularity_covers_every_product_and_is_scaled_to_one():
    pop = product_popularity(EVENTS, product_features(CATALOG), PARAMS)
    assert pop["product_id"].tolist() == [2, 1, 3]  # 2.5, 1.75, 0.5
    assert pop["popularity"].tolist() == pytest.approx([1.0, 1.75 / 2.5, 0.5 / 2.5])
    assert pop["rank"].tolist() == [1, 2, 3]
    assert pop["customers"].tolist() == [1, 1, 1]


def test_predicted_labels_replace_the_catalogs_when_confident_enough():
    predicted = pd.DataFrame(
        {
            "product_id": [1, 2],
            "article_type": ["Shirts", "Trousers"],
            "article_type_confidence": [0.9, 0.3],
            "master_category": ["Apparel", "Apparel"],
            "master_category_confidence": [0.99, 0.99],
            "sub_category": ["Topwear", "Bottomwear"],
            "sub_category_confidence": [0.95, 0.95],
        }
    )
    f = product_features(CATALOG, predicted, min_confidence=0.5).set_index("product_id")
    assert f.loc[1, "article_type"] == "Shirts"
    assert f.loc[2, "article_type"] == "Jeans"  # prediction below the threshold: catalog label kept
    assert f.loc[1, "base_colour"] == "Blue"  # colour and gender always from the catalog
    assert f["label_source"].tolist() == ["predicted", "predicted", "catalog"]
    assert pd.isna(f.loc[3, "base_colour"])


def test_only_the_heads_present_are_used_and_each_product_takes_its_most_confident_image():
    predicted = pd.DataFrame(
        {
            "product_id": pd.array([1, 1, None], dtype="Int64"),
            "article_type": ["Shirts", "Kurtas", "Heels"],
            "article_type_confidence": [0.4, 0.8, 0.99],
        }
    )
    f = product_features(CATALOG, predicted).set_index("product_id")
    assert f.loc[1, "article_type"] == "Kurtas"  # the more confident of product 1's two images
    assert f.loc[1, "sub_category"] == "Topwear"  # no sub_category head: the catalog's
    assert f.loc[3, "article_type"] == "Heels" and f["label_source"].tolist() == [
        "predicted",
        "catalog",
        "catalog",
    ]
