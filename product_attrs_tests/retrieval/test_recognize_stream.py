"""Recognition streams a folder: a few photos are decoded at a time whatever the folder's size, the rows are
those of one pass over the whole folder, and every photo it cannot or must not read is recorded with why.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from product_attrs.classification.serve import Classifier
from product_attrs.detection.serve import DETECTION_COLUMNS
from product_attrs.retrieval.gallery import build_gallery, gallery_rows
from product_attrs.retrieval.recognize import PHOTO_BATCH, list_photos, recognize_photos
from product_attrs_tests.bad_input.recognition_faults import png_header
from product_attrs_tests.retrieval.conftest import SIZE, product_image, write_recognizer

#: An odd photo size, so that the photos alive can be told from crops and gallery images.
PHOTO = (4 * SIZE + 3, SIZE + 1)


_IMAGES: list[weakref.ref[Image.Image]] = []


@pytest.fixture
def track_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every PIL image made from now on is remembered weakly, so the live ones can be counted."""
    init = Image.Image.__init__

    def tracked(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        _IMAGES.append(weakref.ref(self))

    monkeypatch.setattr(Image.Image, "__init__", tracked)


def _live_photos() -> int:
    return sum(1 for r in _IMAGES if (o := r()) is not None and o.size == PHOTO)


class GridDetector:
    """Boxes on each product slot of every photo (the same for every photo), and the photos alive then."""

    def __init__(self) -> None:
        self.alive: list[int] = []

    def detect(self, images, score_thresh: float = 0.0, **_) -> pd.DataFrame:
        self.alive.append(_live_photos())
        rows = [
            {"image": i, "label": 1, "category_id": 1, "category_name": "product", "score": 0.9}
            | {"x1": s * SIZE, "y1": 0, "x2": (s + 1) * SIZE, "y2": SIZE}
            for i in range(len(images))
            for s in range(4)
        ]
        return pd.DataFrame(rows, columns=DETECTION_COLUMNS)


def _shelves(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    for k in range(n):
        shelf = Image.new("RGB", PHOTO, "white")
        for slot in range(4):
            shelf.paste(product_image((k + slot) % 4), (slot * SIZE, 0))
        shelf.save(folder / f"shelf{k:02d}.png")


@pytest.fixture
def setup(tmp_path: Path, catalog: Path):
    classifier = write_recognizer(tmp_path / "models")
    index, _ = build_gallery(classifier, gallery_rows(catalog, "iconic", classifier.heads[0]))
    return classifier, index


def test_a_big_folder_holds_a_few_photos_at_a_time(
    tmp_path: Path, setup, monkeypatch: pytest.MonkeyPatch, track_images: None
) -> None:
    classifier, index = setup
    photos = tmp_path / "photos"
    _shelves(photos, 13)
    assert _live_photos() == 0
    detector = GridDetector()
    alive_at_embedding: list[int] = []
    forward = Classifier.forward

    def counting_forward(self, x):
        alive_at_embedding.append(_live_photos())
        return forward(self, x)

    monkeypatch.setattr(Classifier, "forward", counting_forward)  # every batch of crops goes through it
    found = recognize_photos(
        list_photos(photos), classifier, index, detector=detector, batch_size=8, root=photos
    )
    assert len(found.rows) == 13 * 4 and found.quarantine.empty
    assert len(detector.alive) == -(-13 // PHOTO_BATCH)  # 13 photos in batches
    assert max(detector.alive) <= PHOTO_BATCH and max(alive_at_embedding) <= PHOTO_BATCH
    alive_at_embedding.clear()
    recognize_photos(list_photos(photos), classifier, index, batch_size=8, root=photos)  # whole photos
    assert max(alive_at_embedding) <= PHOTO_BATCH
    assert _live_photos() == 0


def test_streaming_gives_the_rows_of_one_pass_over_the_folder(tmp_path: Path, setup) -> None:
    classifier, index = setup
    photos = tmp_path / "photos"
    _shelves(photos, 7)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")  # between good photos: batches still fill up
    listed = list_photos(photos)
    runs = [
        recognize_photos(
            listed,
            classifier,
            index,
            detector=GridDetector(),
            batch_size=3,
            crop_pad=0.0,
            root=photos,
            photo_batch=b,
        )
        for b in (100, 1, 3)
    ]
    for run in runs[1:]:
        pd.testing.assert_frame_equal(run.rows, runs[0].rows)
        pd.testing.assert_frame_equal(run.quarantine, runs[0].quarantine)
    # The plain way: each crop embedded alone and matched; the products and similarities agree.
    rows = runs[0].rows
    assert rows["product"].tolist() == [
        ["apple", "milk", "oat", "soda"][(k + s) % 4] for k in range(7) for s in range(4)
    ]
    assert rows["similarity"].to_numpy() == pytest.approx(1.0, abs=1e-5)
    assert rows["photo"].unique().tolist() == [f"shelf{k:02d}.png" for k in range(7)]
    assert runs[0].quarantine["reason"].tolist() == ["unreadable_image"]


def test_photos_that_cannot_or_must_not_be_read_are_recorded_with_why(tmp_path: Path, setup) -> None:
    classifier, index = setup
    photos, outside = tmp_path / "photos", tmp_path / "outside"
    photos.mkdir()
    outside.mkdir()
    product_image(1).save(photos / "good.png")
    product_image(2).save(outside / "secret.png")
    (photos / "leak.png").symlink_to(outside / "secret.png")  # leads out of the folder: never read
    (photos / "inside.png").symlink_to(photos / "good.png")  # stays inside: read
    os.mkfifo(photos / "pipe.jpg")  # would block a plain open() forever
    (photos / "huge.png").write_bytes(png_header(10_000, 10_000))  # 100 MP claimed
    (photos / "bomb.png").write_bytes(png_header(30_000, 30_000))  # past PIL's own bomb limit
    (photos / "empty.jpg").write_bytes(b"")
    found = recognize_photos(list_photos(photos), classifier, index, root=photos)
    assert found.rows[["photo", "product"]].values.tolist() == [["good.png", "milk"], ["inside.png", "milk"]]
    reasons = dict(zip(found.quarantine["record_id"], found.quarantine["reason"]))
    assert reasons == {
        str(photos / "bomb.png"): "image_too_large",
        str(photos / "empty.jpg"): "unreadable_image",
        str(photos / "huge.png"): "image_too_large",
        str(photos / "leak.png"): "outside_folder",
        str(photos / "pipe.jpg"): "not_a_regular_file",
    }
    assert "outside" in found.quarantine.set_index("reason").loc["outside_folder", "detail"]
