from __future__ import annotations

import pandas as pd
import pytest

from product_attrs.catalog.splits import SplitRule, data_version, make_splits


def catalog_frame() -> pd.DataFrame:
    rows = []
    pid = 0
    # article types with decreasing frequency; 'Rare' appears only in a test (odd) year.
    for article, n in [("Tshirts", 6), ("Shirts", 5), ("Jeans", 4), ("Watches", 3), ("Socks", 2)]:
        for k in range(n):
            pid += 1
            rows.append(
                {
                    "id": pid,
                    "article_type": article,
                    "master_category": "Apparel",
                    "sub_category": "Topwear",
                    "year": 2010 + (k % 2),
                }
            )
    rows.append(
        {
            "id": 100,
            "article_type": "Rare",
            "master_category": "Footwear",
            "sub_category": "Shoes",
            "year": 2013,
        }
    )
    rows.append(
        {
            "id": 101,
            "article_type": "Tshirts",
            "master_category": "Apparel",
            "sub_category": "Topwear",
            "year": None,
        }
    )
    frame = pd.DataFrame(rows)
    frame["year"] = frame["year"].astype("Int64")
    return frame


def test_even_years_train_odd_years_test_and_missing_year_unassigned():
    s = make_splits(catalog_frame(), SplitRule(top_k=2)).splits.set_index("id")
    assert (s.loc[s["year"].notna() & (s["year"] % 2 == 0), "split"] == "train").all()
    assert (s.loc[s["year"].notna() & (s["year"] % 2 == 1), "split"] == "test").all()
    assert s.loc[101, "split"] == "unassigned"


def test_rule_is_configurable():
    s = make_splits(catalog_frame(), SplitRule(train_years="odd", missing_year="train")).splits.set_index(
        "id"
    )
    assert s.loc[100, "split"] == "train" and s.loc[101, "split"] == "train"
    assert (s.loc[s["year"] == 2010, "split"] == "test").all()


def test_top_k_counted_on_train_and_rest():
    r = make_splits(catalog_frame(), SplitRule(top_k=2))
    assert r.top_classes == ["Shirts", "Tshirts"]  # 3 train rows each: ties broken by name
    s = r.splits.set_index("id")
    assert s.loc[100, "subset"] == "rest"
    assert set(s.loc[s["article_type"] == "Jeans", "subset"]) == {"rest"}
    assert set(s.loc[s["article_type"] == "Tshirts", "subset"]) == {"top2"}


def test_label_maps_cover_all_classes_so_indices_never_shift():
    r = make_splits(catalog_frame(), SplitRule(top_k=2))
    assert r.label_maps["article_type"] == ["Jeans", "Rare", "Shirts", "Socks", "Tshirts", "Watches"]
    # 'Rare' exists only in test, yet it has an index; dropping it from train changes nothing.
    assert r.label_maps["master_category"] == ["Apparel", "Footwear"]


def test_unknown_label_column_is_a_clear_error():
    with pytest.raises(KeyError, match="colour"):
        make_splits(catalog_frame(), SplitRule(label_columns=("colour",)))


@pytest.mark.parametrize("kwargs", [{"train_years": "prime"}, {"missing_year": "drop"}, {"top_k": 0}])
def test_bad_rule_is_rejected(kwargs):
    with pytest.raises(ValueError):
        SplitRule(**kwargs)


def test_data_version_changes_with_content_not_order():
    frame = catalog_frame()
    v = data_version(frame)
    assert data_version(frame.sample(frac=1, random_state=1)) == v
    changed = frame.copy()
    changed.loc[0, "article_type"] = "Shirts"
    assert data_version(changed) != v
