from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from product_attrs.warehouse.affinity import (
    AFFINITY_COLUMNS,
    FEATURE_COLUMNS,
    AffinityParams,
    affinity_as_of,
    customer_attribute_affinity,
    feature_values,
    predicted_heads,
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


def test_parameters_are_checked_and_round_trip_through_the_settings_table():
    for bad in (0, -1.0):
        with pytest.raises(ValueError) as exc:
            AffinityParams(half_life_days=bad)
        assert str(exc.value) == "half_life_days must be positive"
    with pytest.raises(ValueError) as exc:
        AffinityParams(event_weights={"view": 1.0, "purchase": -0.1})
    assert str(exc.value) == "event weights must be >= 0"
    AffinityParams(event_weights={"view": 0.0}, half_life_days=0.01)  # zero weight and a short life are fine
    params = AffinityParams(event_weights={"view": 1, "purchase": 5}, half_life_days=10, as_of=AS_OF)
    table = params.settings_table(AS_OF)
    assert table.columns.tolist() == ["name", "key", "value"]
    assert table.values.tolist() == [
        ["event_weight", "view", 1.0],
        ["event_weight", "purchase", 5.0],
        ["half_life_days", "", 10.0],
        ["as_of_epoch_s", "", pd.Timestamp(AS_OF).timestamp()],
    ]
    assert len(params.settings_table(None)) == 3  # no reference time: the macro uses the latest event
    back = AffinityParams.from_settings_table(table)
    assert back == AffinityParams(event_weights={"view": 1.0, "purchase": 5.0}, half_life_days=10.0)


def test_the_reference_time_is_the_latest_event_unless_given():
    latest = EVENTS["timestamp"].max()
    assert affinity_as_of(EVENTS) == latest.to_pydatetime() == AS_OF + pd.Timedelta(days=1)
    assert affinity_as_of(EVENTS, PARAMS) == AS_OF
    assert affinity_as_of(EVENTS.iloc[:0]) is None
    # Decayed to the latest event by default: C1's view of product 3 (a day after AS_OF) counts fully.
    aff = customer_attribute_affinity(EVENTS, product_features(CATALOG), AffinityParams(half_life_days=10))
    assert _score(aff, "C1", "article_type", "Heels")["score"] == pytest.approx(1.0)
    assert aff["events"].dtype == "int64" and aff.columns.tolist() == AFFINITY_COLUMNS


def test_without_events_every_product_has_zero_popularity_ranked_by_id():
    pop = product_popularity(EVENTS.iloc[:0], product_features(CATALOG), PARAMS)
    assert pop.values.tolist() == [[1, 0.0, 0, 0.0, 1], [2, 0.0, 0, 0.0, 2], [3, 0.0, 0, 0.0, 3]]
    assert customer_attribute_affinity(EVENTS.iloc[:0], product_features(CATALOG), PARAMS).empty
    # Nor without a reference time (no events, no latest event).
    assert product_popularity(EVENTS.iloc[:0], product_features(CATALOG)).equals(pop)


def test_popularity_counts_distinct_customers():
    events = _events([("C1", 1, "view", 0), ("C1", 1, "view", 0), ("C2", 1, "view", 0), ("C2", 2, "view", 0)])
    pop = product_popularity(events, product_features(CATALOG), PARAMS).set_index("product_id")
    assert pop["customers"].to_dict() == {1: 2, 2: 1, 3: 0}
    assert pop["score"].to_dict() == {1: pytest.approx(3.0), 2: pytest.approx(1.0), 3: 0.0}
    assert {str(t) for t in pop.reset_index().dtypes} == {"int64", "float64"}


def test_catalog_only_features_are_trimmed_and_say_so():
    catalog = CATALOG.assign(gender=[" Men ", "Men", "  "])
    f = product_features(catalog)
    assert f.columns.tolist() == FEATURE_COLUMNS and f["product_id"].tolist() == [1, 2, 3]
    assert f["gender"].tolist()[:2] == ["Men", "Men"] and pd.isna(f.loc[2, "gender"])
    assert f["label_source"].tolist() == ["catalog"] * 3
    no_rows = pd.DataFrame({"product_id": [], "article_type": [], "article_type_confidence": []})
    assert product_features(catalog, no_rows).equals(f)  # an empty prediction table changes nothing


def test_a_single_prediction_at_the_default_threshold_is_used():
    predicted = pd.DataFrame(
        {"product_id": [3], "article_type": [" Flats "], "article_type_confidence": [0.0]}
    )
    f = product_features(CATALOG, predicted).set_index("product_id")
    assert f.loc[3, "article_type"] == "Flats" and f.loc[3, "label_source"] == "predicted"
    assert f.loc[1, "article_type"] == "Tshirts" and f.loc[1, "label_source"] == "catalog"
    blank = predicted.assign(article_type=["  "], article_type_confidence=[1.0])
    assert product_features(CATALOG, blank).set_index("product_id").loc[3, "article_type"] == "Heels"


def test_predicted_heads_need_their_confidence_and_keep_the_vocabulary_order():
    cols = ["sub_category", "sub_category_confidence", "article_type", "article_type_confidence", "gender"]
    assert predicted_heads(cols) == ["article_type", "sub_category"]
    assert predicted_heads(["article_type", "master_category_confidence"]) == []
    assert predicted_heads(pd.DataFrame(columns=cols)) == ["article_type", "sub_category"]


def test_feature_values_are_the_non_empty_values_in_long_form():
    long = feature_values(product_features(CATALOG))
    assert long.columns.tolist() == ["product_id", "attribute", "value"]
    assert long.loc[long["attribute"] == "base_colour"].values.tolist() == [
        [1, "base_colour", "Blue"],
        [2, "base_colour", "Blue"],
    ]
    assert long.loc[long["attribute"] == "article_type"].values.tolist() == [
        [3, "article_type", "Heels"],
        [2, "article_type", "Jeans"],
        [1, "article_type", "Tshirts"],
    ]
    assert len(long) == 14 and long["product_id"].dtype == "int64" and long.index.tolist() == list(range(14))
