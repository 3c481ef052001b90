"""Detect + recognize with known answers: products pasted at known boxes on a shelf photo must be found
and counted, and a folder of photos that are copies of gallery images must be named exactly.

The network is untrained: identical pixels give identical embeddings (cosine 1), which is all these
tests need to check the plumbing (files, crops, search, counts, quarantine) end to end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from product_attrs.detection.serve import DETECTION_COLUMNS
from product_attrs.retrieval.evaluate import evaluate_recognizer
from product_attrs.retrieval.gallery import build_gallery, gallery_rows, gallery_table
from product_attrs.retrieval.recognize import count_accuracy, list_photos, product_counts, recognize_photos
from product_attrs_tests.retrieval.conftest import PRODUCTS, SIZE, product_image, write_recognizer


def test_copies_of_gallery_images_are_recognized_exactly(tmp_path: Path, catalog: Path) -> None:
    classifier = write_recognizer(tmp_path / "models")
    rows = gallery_rows(catalog, "iconic", classifier.heads[0])
    index, quarantine = build_gallery(classifier, rows, batch_size=3)
    assert len(index) == 4 and quarantine.empty
    table = gallery_table(index)
    assert table["fine_label"].tolist() == PRODUCTS and len(table["embedding"][0]) == 32
    ev = evaluate_recognizer(classifier, index, catalog, split="test")
    assert ev.metrics["queries"] == 3
    assert ev.metrics["recall@1"] == 1.0 and ev.metrics["recall@1_coarse_label"] == 1.0
    assert ev.per_query["similarity"].to_numpy() == pytest.approx(1.0, abs=1e-5)
    assert "top1_fine_label" in ev.metrics and "top1_coarse_label" in ev.metrics


def test_train_photos_can_join_the_gallery(tmp_path: Path, catalog: Path) -> None:
    classifier = write_recognizer(tmp_path / "models")
    rows = gallery_rows(catalog, "both", classifier.heads[0])
    assert rows["gallery_source"].value_counts().to_dict() == {"iconic": 4, "train_photos": 1}
    index, _ = build_gallery(classifier, rows)
    assert len(index.products) == 4  # the train photo of 'oat' pools with oat's iconic image


def test_an_unreadable_gallery_image_is_quarantined_not_dropped(tmp_path: Path, catalog: Path) -> None:
    classifier = write_recognizer(tmp_path / "models")
    rows = gallery_rows(catalog, "iconic", classifier.heads[0])
    Path(rows.loc[3, "image_path"]).write_bytes(b"")
    index, quarantine = build_gallery(classifier, rows)
    assert index.items["fine_label"].tolist() == PRODUCTS[:3]
    assert quarantine[["source", "reason"]].values.tolist() == [["gallery_index", "unreadable_image"]]


class BoxesDetector:
    """A stand-in for the detector: the boxes where products were pasted, with a score."""

    def __init__(self, boxes: dict[int, list[tuple[float, float, float, float, float]]]) -> None:
        self.boxes = boxes

    def detect(self, images, score_thresh: float = 0.0, **_) -> pd.DataFrame:
        rows = [
            {
                "image": i,
                "label": 1,
                "category_id": 1,
                "category_name": "product",
                "score": s,
                "x1": x1,
                "y1": y1,
                "x2": x2,
                "y2": y2,
            }
            for i in range(len(images))
            for (x1, y1, x2, y2, s) in self.boxes.get(i, [])
            if s >= score_thresh
        ]
        return pd.DataFrame(rows, columns=DETECTION_COLUMNS)


def test_shelf_photo_counts_each_product(tmp_path: Path, catalog: Path) -> None:
    classifier = write_recognizer(tmp_path / "models")
    index, _ = build_gallery(classifier, gallery_rows(catalog, "iconic", classifier.heads[0]))
    shelf = Image.new("RGB", (5 * SIZE, SIZE), "white")
    layout = [0, 0, 1, 3, 0]  # apple x3, milk x1, soda x1
    boxes = []
    for slot, product in enumerate(layout):
        shelf.paste(product_image(product), (slot * SIZE, 0))
        boxes.append((slot * SIZE, 0, (slot + 1) * SIZE, SIZE, 0.9))
    boxes.append((0, 0, SIZE, SIZE, 0.1))  # below the score threshold: not an object
    photos = tmp_path / "photos"
    (photos / "aisle1").mkdir(parents=True)
    shelf.save(photos / "aisle1" / "shelf.png")
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    found = recognize_photos(
        list_photos(photos),
        classifier,
        index,
        detector=BoxesDetector({0: boxes}),
        score_thresh=0.5,
        crop_pad=0.0,
        root=photos,
    )
    assert found.quarantine["record_id"].tolist() == [str(photos / "broken.jpg")]
    assert found.rows["product"].tolist() == ["apple", "apple", "milk", "soda", "apple"]
    assert found.rows["similarity"].to_numpy() == pytest.approx(1.0, abs=1e-5)
    assert found.rows["photo"].unique().tolist() == ["aisle1/shelf.png"]
    counts = product_counts(found.rows)
    assert counts[["product", "facings"]].values.tolist() == [["apple", 3], ["milk", 1], ["soda", 1]]
    assert counts["share"].tolist() == pytest.approx([0.6, 0.2, 0.2])
    assert counts["coarse_label"].tolist() == ["fruit", "dairy", "drink"]
    truth = pd.DataFrame({"photo": ["aisle1/shelf.png"] * 2, "product": ["apple", "milk"], "count": [3, 2]})
    acc = count_accuracy(counts, truth)
    assert acc["objects_matched"] == pytest.approx(4 / 5) and acc["pairs_exact"] == pytest.approx(1 / 3)


def test_without_a_detector_a_photo_is_one_product_and_weak_matches_are_unknown(
    tmp_path: Path, catalog: Path
) -> None:
    classifier = write_recognizer(tmp_path / "models")
    index, _ = build_gallery(classifier, gallery_rows(catalog, "iconic", classifier.heads[0]))
    photos = tmp_path / "photos"
    photos.mkdir()
    product_image(1).save(photos / "a.png")
    Image.fromarray(np.full((SIZE, SIZE, 3), 128, np.uint8)).save(photos / "b.png")  # in no gallery
    found = recognize_photos(list_photos(photos), classifier, index, min_similarity=0.999, root=photos)
    assert found.rows["product"].tolist() == ["milk", "unknown"]
    assert found.rows["recognized"].tolist() == [True, False]
    assert found.rows["runner_up"].notna().all()
