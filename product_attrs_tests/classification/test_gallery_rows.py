"""Gallery images (a catalog's iconic images) as extra training rows of the recognizer."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from product_attrs.classification.config import ConfigError
from product_attrs.classification.data import gallery_training_rows, load_catalog


def _catalog(tmp_path: Path, gallery: pd.DataFrame | None) -> Path:
    pd.DataFrame(
        {
            "id": [1, 2],
            "image_path": ["a.jpg", "b.jpg"],
            "split": ["train", "test"],
            "subset": "all",
            "fine_label": ["x", "y"],
        }
    ).to_parquet(tmp_path / "splits.parquet")
    (tmp_path / "label_maps.json").write_text(json.dumps({"fine_label": ["x", "y"]}))
    if gallery is not None:
        gallery.to_parquet(tmp_path / "gallery.parquet")
    return tmp_path


def test_each_gallery_image_joins_training_the_asked_number_of_times(tmp_path: Path) -> None:
    gallery = pd.DataFrame(
        {"product_id": [0, 1], "fine_label": ["x", "y"], "image_path": ["gx.jpg", "gy.jpg"]}
    )
    catalog = load_catalog(_catalog(tmp_path, gallery))
    rows = gallery_training_rows(catalog, ["fine_label"], 3)
    assert len(rows) == 6
    assert rows["image_path"].value_counts().to_dict() == {"gx.jpg": 3, "gy.jpg": 3}
    assert (rows["split"] == "train").all() and (rows["subset"] == "all").all() and (rows["id"] < 0).all()
    assert gallery_training_rows(catalog, ["fine_label"], 0).empty


def test_asking_for_a_gallery_that_is_not_there_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no gallery.parquet"):
        gallery_training_rows(load_catalog(_catalog(tmp_path, None)), ["fine_label"], 1)


def test_a_gallery_without_the_head_column_says_which(tmp_path: Path) -> None:
    gallery = pd.DataFrame({"product_id": [0], "image_path": ["g.jpg"]})
    with pytest.raises(ConfigError, match=r"lacks columns \['fine_label'\]"):
        gallery_training_rows(load_catalog(_catalog(tmp_path, gallery)), ["fine_label"], 1)
