from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from product_attrs.catalog.splits import SplitRule, data_version, make_splits, write_splits


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


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_years": "prime"}, "train_years must be 'even' or 'odd', not 'prime'"),
        ({"missing_year": "drop"}, "missing_year must be one of .*, not 'drop'"),
        ({"top_k": 0}, "top_k must be at least 1, not 0"),
    ],
)
def test_bad_rule_says_which_setting_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SplitRule(**kwargs)


def test_top_1_is_a_valid_rule():
    r = make_splits(catalog_frame(), SplitRule(top_k=1))
    assert r.top_classes == ["Shirts"] and set(r.splits["subset"]) == {"top1", "rest"}


def test_missing_label_column_is_named_before_any_work():
    with pytest.raises(KeyError, match=r"label columns \['colour'\] are not in the catalog"):
        make_splits(catalog_frame(), SplitRule(label_columns=("colour",)))


def test_counts_per_split_and_subset():
    r = make_splits(catalog_frame(), SplitRule(top_k=2))
    # train: Tshirts 3, Shirts 3 (top2), Jeans 2, Watches 2, Socks 1 (rest); test: the other halves and Rare.
    assert r.counts == {
        "train_top2": 6,
        "train_rest": 5,
        "test_top2": 5,
        "test_rest": 5,
        "unassigned_top2": 1,
    }


def test_a_catalog_with_gaps_in_its_index_keeps_every_subset():
    """Cleaning drops rows, so the index has holes: the subset must follow the rows, not the positions."""
    frame = catalog_frame()
    frame.index = frame.index * 10 + 7
    s = make_splits(frame, SplitRule(top_k=2)).splits
    assert s["subset"].notna().all() and str(s["subset"].dtype) == "string"
    assert s.loc[s["article_type"] == "Tshirts", "subset"].eq("top2").all()


def test_data_version_ignores_where_the_image_lies_and_how_the_row_was_read():
    frame = catalog_frame()
    frame["image_path"] = [f"/data/images/{i}.jpg" for i in frame["id"]]
    frame["line"] = range(2, len(frame) + 2)
    frame["converted"] = False
    frame["repaired"] = False
    v = data_version(frame)
    moved = frame.assign(
        image_path=[f"/other/root/{i}.png" for i in frame["id"]],
        line=frame["line"] + 5,
        converted=True,
        repaired=True,
    )
    assert data_version(moved) == v
    assert data_version(frame.reset_index(drop=True).iloc[::-1].reset_index(drop=True)) == v


def test_data_version_is_pinned():
    """Stored model versions and Dagster data versions carry this hash: a change of the recipe (or of
    pandas' hashing) would silently retrain everything, so the value itself is pinned."""
    assert data_version(catalog_frame()) == "4ca0d455a60aaf61"  # the frame has a missing year, too


def test_write_splits_writes_what_training_reads(tmp_path: Path):
    frame = catalog_frame()
    frame.index = frame.index + 100
    r = make_splits(frame, SplitRule(top_k=2))
    out = tmp_path / "nested" / "splits"
    write_splits(r, out, "abc123")
    write_splits(r, out, "abc123")  # a rerun overwrites
    assert sorted(p.name for p in out.iterdir()) == [
        "data_version.txt",
        "label_maps.json",
        "splits.parquet",
        "top_classes.json",
    ]
    assert pq.read_schema(out / "splits.parquet").names == list(r.splits.columns)  # no index column
    back = pd.read_parquet(out / "splits.parquet")
    pd.testing.assert_frame_equal(back, r.splits.reset_index(drop=True))
    assert json.loads((out / "label_maps.json").read_text()) == r.label_maps
    assert json.loads((out / "top_classes.json").read_text()) == ["Shirts", "Tshirts"]
    assert (out / "data_version.txt").read_text() == "abc123\n"
