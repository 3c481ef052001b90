"""The re-use rule of extraction, with a stand-in classifier and detector (no network: fast enough to run
per mutant): a row is kept only when its image bytes *and* both model versions are what they were."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from product_attrs.classification.serve import Served
from product_attrs.extraction.batches import UnknownBatchError, UnsafePartitionKey
from product_attrs.extraction.extract import (
    batch_folder,
    batch_output,
    embeddings_matrix,
    extract_batch,
    extract_to_parquet,
    file_sha1,
    items_for_batch,
)

LABELS = ["Shirts", "Watches"]
COLUMNS = [
    "product_id",
    "image_key",
    "image_path",
    "image_sha1",
    "article_type",
    "article_type_confidence",
    "article_type_runner_up",
    "article_type_margin",
    "embedding",
    "objects",
    "n_objects",
    "classifier_version",
    "detector_version",
    "extracted_at",
]


class FakeClassifier:
    """Labels an image by its name's length, embeds it on an axis picked by the version; files named
    ``broken*`` are unreadable. Records which paths it was asked to classify."""

    heads = ["article_type"]

    def __init__(self, version: str) -> None:
        self.version = version
        self.calls: list[list[str]] = []

    def predict_files(self, paths: list[str], *, batch_size: int = 0, workers: int = -1) -> Served:
        self.calls.append(list(paths))
        self.options = (batch_size, workers)
        errors = {i: f"{Path(p).name}: cannot be decoded" for i, p in enumerate(paths) if "broken" in p}
        axis = int(self.version.rsplit("/", 1)[-1]) % 4
        emb = np.zeros((len(paths), 4), dtype=np.float32)
        emb[:, axis] = 1.0
        cls = np.array([-1 if i in errors else len(Path(p).stem) % 2 for i, p in enumerate(paths)], dtype=int)
        conf = np.where(cls >= 0, 0.75, 0.0).astype(np.float64)
        return Served(emb, {"article_type": cls, "article_type__confidence": conf}, errors)

    def labels(self, served: Served, head: str) -> list[str | None]:
        return [LABELS[k] if k >= 0 else None for k in served.predictions[head]]

    @property
    def classified(self) -> list[str]:
        return [Path(p).stem for call in self.calls for p in call]


class FakeDetector:
    """One box per image, scored 0.87654, with coordinates that need rounding."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.calls: list[tuple[list[str], int, float]] = []

    def detect(self, paths: list[str], batch_size: int = 0, score_thresh: float = -1.0) -> pd.DataFrame:
        self.calls.append(([Path(p).name for p in paths], batch_size, score_thresh))
        return pd.DataFrame(
            {
                "image": list(range(len(paths))),
                "category_name": ["bottle"] * len(paths),
                "score": [0.87654] * len(paths),
                "x1": [1.04] * len(paths),
                "y1": [2.06] * len(paths),
                "x2": [10.0] * len(paths),
                "y2": [20.0] * len(paths),
            }
        )


def _items(names: list[str], sha: str = "a") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "product_id": pd.array(range(1, len(names) + 1), dtype="Int64"),
            "image_key": pd.Series(names, dtype=object),
            "image_path": pd.Series([f"/nowhere/{n}.jpg" for n in names], dtype=object),
            "image_sha1": pd.Series([sha * 40] * len(names), dtype=object),
        }
    )


# ------------------------------------------------------------------------------- extract_batch


def test_unchanged_images_and_models_are_reused_without_classifying_again() -> None:
    items = _items(["k2", "k1", "k3"])
    first = extract_batch(items, FakeClassifier("clf/1"))
    assert (first.n_new, first.n_reused) == (3, 0)
    assert first.attributes["image_key"].tolist() == ["k1", "k2", "k3"]  # sorted by key
    again_clf = FakeClassifier("clf/1")
    again = extract_batch(items, again_clf, previous=first.attributes)
    assert (again.n_new, again.n_reused) == (0, 3)
    assert again_clf.classified == []
    pd.testing.assert_frame_equal(again.attributes, first.attributes)  # extracted_at kept too


def test_a_new_classifier_version_re_extracts_every_image() -> None:
    items = _items(["k1", "k2", "k3"])
    first = extract_batch(items, FakeClassifier("clf/1"))
    newer = FakeClassifier("clf/2")
    again = extract_batch(items, newer, previous=first.attributes)
    assert (again.n_new, again.n_reused) == (3, 0)
    assert newer.classified == ["k1", "k2", "k3"]
    assert again.attributes["classifier_version"].tolist() == ["clf/2"] * 3
    assert embeddings_matrix(again.attributes)[:, 2].tolist() == [1.0] * 3  # the new version's embeddings


def test_a_new_detector_version_re_extracts_every_image() -> None:
    items = _items(["k1", "k2"])
    first = extract_batch(items, FakeClassifier("clf/1"), FakeDetector("det/1"))
    same = extract_batch(items, FakeClassifier("clf/1"), FakeDetector("det/1"), previous=first.attributes)
    assert (same.n_new, same.n_reused) == (0, 2)
    newer = FakeDetector("det/2")
    again = extract_batch(items, FakeClassifier("clf/1"), newer, previous=first.attributes)
    assert (again.n_new, again.n_reused) == (2, 0)
    assert again.attributes["detector_version"].tolist() == ["det/2"] * 2
    assert newer.calls[0][0] == ["k1.jpg", "k2.jpg"]
    # Detection switched off (or on) is a change of models too.
    off = extract_batch(items, FakeClassifier("clf/1"), None, previous=first.attributes)
    assert (off.n_new, off.n_reused) == (2, 0)
    assert off.attributes["detector_version"].isna().all()
    back_on = extract_batch(items, FakeClassifier("clf/1"), FakeDetector("det/1"), previous=off.attributes)
    assert (back_on.n_new, back_on.n_reused) == (2, 0)
    # Without a detector before and now, rows are re-used (no version on either side is the same).
    still_off = extract_batch(items, FakeClassifier("clf/1"), None, previous=off.attributes)
    assert (still_off.n_new, still_off.n_reused) == (0, 2)


def test_only_rows_of_the_current_models_and_bytes_are_reused() -> None:
    items = _items(["k1", "k2", "k3", "k4"])
    old = extract_batch(items.iloc[:2], FakeClassifier("clf/1")).attributes  # k1, k2 by the old version
    cur = extract_batch(items.iloc[2:], FakeClassifier("clf/2")).attributes  # k3, k4 by the current one
    changed = items.copy()
    changed.loc[changed["image_key"] == "k4", "image_sha1"] = "b" * 40
    clf = FakeClassifier("clf/2")
    done = extract_batch(changed, clf, previous=pd.concat([old, cur], ignore_index=True))
    assert (done.n_new, done.n_reused) == (3, 1)
    assert clf.classified == ["k1", "k2", "k4"]
    a = done.attributes
    assert a["image_key"].tolist() == ["k1", "k2", "k3", "k4"]
    assert a["classifier_version"].tolist() == ["clf/2"] * 4
    assert a.loc[a["image_key"] == "k4", "image_sha1"].tolist() == ["b" * 40]
    assert len(a) == len(a["image_key"].unique())  # no row twice


def test_unreadable_images_are_quarantined_not_labelled() -> None:
    items = _items(["k1", "broken", "k2"])
    det = FakeDetector("det/1")
    result = extract_batch(items, FakeClassifier("clf/1"), det, detector_batch_size=3, score_threshold=0.25)
    assert (result.n_new, result.n_reused) == (2, 0)
    assert det.calls == [(["k1.jpg", "k2.jpg"], 3, 0.25)]  # the unreadable file is not detected in
    a = result.attributes
    assert a["image_key"].tolist() == ["k1", "k2"]
    assert a["article_type"].tolist() == ["Shirts", "Shirts"]
    assert str(a["article_type"].dtype) == "string"
    assert a["article_type_confidence"].tolist() == [0.75, 0.75]
    assert a["article_type_confidence"].dtype == np.float32
    assert (
        a["objects"].map(json.loads).tolist()
        == [[{"label": "bottle", "score": 0.8765, "box": [1.0, 2.1, 10.0, 20.0]}]] * 2
    )
    assert a["n_objects"].tolist() == [1, 1]
    assert a["embedding"].tolist() == [[0.0, 1.0, 0.0, 0.0]] * 2
    assert set(result.seconds) == {"classify", "detect"}
    q = result.quarantine
    assert q.columns.tolist() == ["source", "record_id", "reason", "detail"]
    assert q.values.tolist() == [
        ["extraction", "broken", "unreadable_image", "broken.jpg: cannot be decoded"]
    ]
    # Without a detector: no objects, and no detection time.
    plain = extract_batch(items, FakeClassifier("clf/1"))
    assert plain.attributes["objects"].tolist() == ["[]", "[]"]
    assert plain.attributes["n_objects"].tolist() == [0, 0]
    assert plain.attributes["detector_version"].isna().all()
    assert set(plain.seconds) == {"classify"}


def test_a_batch_with_nothing_new_does_not_call_the_detector() -> None:
    items = _items(["k1"])
    first = extract_batch(items, FakeClassifier("clf/1"), FakeDetector("det/1"))
    det = FakeDetector("det/1")
    again = extract_batch(items, FakeClassifier("clf/1"), det, previous=first.attributes)
    assert det.calls == [] and "detect" not in again.seconds
    empty = extract_batch(_items([]), FakeClassifier("clf/1"), FakeDetector("det/1"))
    assert (len(empty.attributes), empty.n_new, empty.n_reused) == (0, 0, 0)
    assert extract_batch(items, FakeClassifier("clf/1"), previous=pd.DataFrame()).n_new == 1


# -------------------------------------------------------------------------- extract_to_parquet


def test_chunked_extraction_re_extracts_after_a_new_model_version(tmp_path: Path) -> None:
    items = _items(["k5", "k1", "k4", "broken", "k2", "k3"])
    out = tmp_path / "catalog.parquet"
    first = extract_to_parquet(items, FakeClassifier("clf/1"), None, out, chunk_rows=2, preview_rows=3)
    assert (first.rows, first.n_new, first.n_reused, first.chunks) == (5, 5, 0, 3)
    assert first.counts == Counter({"Shirts": 5})
    assert first.preview["image_key"].tolist() == ["k1", "k2", "k3"]
    assert first.preview.index.tolist() == [0, 1, 2]
    assert first.quarantine["record_id"].tolist() == ["broken"]
    assert set(first.seconds) == {"classify"}
    table = pd.read_parquet(out)
    assert table["image_key"].tolist() == ["k1", "k2", "k3", "k4", "k5"]
    assert pq.read_schema(out).names == table.columns.tolist() == COLUMNS  # no index column stored

    clf = FakeClassifier("clf/1")
    same = extract_to_parquet(items, clf, None, out, chunk_rows=2)
    assert (same.rows, same.n_new, same.n_reused) == (5, 0, 5)
    assert clf.classified == ["broken"]  # only the unreadable one is tried again
    assert pd.read_parquet(out)["extracted_at"].tolist() == table["extracted_at"].tolist()

    newer = FakeClassifier("clf/2")
    again = extract_to_parquet(items, newer, None, out, chunk_rows=2)
    assert (again.rows, again.n_new, again.n_reused) == (5, 5, 0)
    assert sorted(newer.classified) == ["broken", "k1", "k2", "k3", "k4", "k5"]
    assert pd.read_parquet(out)["classifier_version"].tolist() == ["clf/2"] * 5


def test_chunked_extraction_of_nothing_writes_an_empty_table(tmp_path: Path) -> None:
    out = tmp_path / "empty.parquet"
    summary = extract_to_parquet(_items([]), FakeClassifier("clf/1"), None, out)
    assert (summary.rows, summary.chunks, summary.n_new) == (0, 1, 0)
    assert summary.quarantine.columns.tolist() == ["source", "record_id", "reason", "detail"]
    assert len(pd.read_parquet(out)) == 0
    assert "__index_level_0__" not in pq.read_schema(out).names
    only_broken = extract_to_parquet(_items(["broken"]), FakeClassifier("clf/1"), None, out, chunk_rows=0)
    assert (only_broken.rows, only_broken.chunks) == (0, 1)
    assert only_broken.quarantine["reason"].tolist() == ["unreadable_image"]


def test_quarantine_follows_the_order_of_the_items(tmp_path: Path) -> None:
    items = _items(["k9", "broken_b", "k1", "broken_a"])
    out = tmp_path / "b.parquet"
    summary = extract_to_parquet(items, FakeClassifier("clf/1"), None, out, chunk_rows=1)
    assert summary.quarantine["record_id"].tolist() == ["broken_b", "broken_a"]
    assert summary.quarantine.index.tolist() == [0, 1]
    assert summary.chunks == 4


# ----------------------------------------------------------------------------- batches and files


def test_file_sha1_is_the_digest_of_the_bytes(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_bytes(b"abc")
    assert file_sha1(tmp_path / "x.jpg") == "a9993e364706816aba3e25717850c26c9cd0d89d"


def test_batch_folders_and_outputs_stay_where_they_belong(tmp_path: Path) -> None:
    assert batch_folder("incoming-monday", tmp_path) == tmp_path / "monday"
    assert batch_output("incoming-monday", tmp_path) == (tmp_path / "incoming-monday.parquet").resolve()
    assert batch_output("catalog", tmp_path, ".json").name == "catalog.json"
    (tmp_path / "out").symlink_to(tmp_path.parent)  # a folder that is a link out of the incoming folder
    with pytest.raises(UnsafePartitionKey, match="incoming-out: folder 'out' leads outside"):
        batch_folder("incoming-out", tmp_path)
    (tmp_path / "catalog.parquet").symlink_to(tmp_path.parent / "elsewhere.parquet")
    with pytest.raises(UnsafePartitionKey, match="catalog: its output would leave the extraction folder"):
        batch_output("catalog", tmp_path)


def test_items_of_the_catalog_its_shards_and_an_incoming_folder(tmp_path: Path) -> None:
    splits = tmp_path / "splits.parquet"
    pd.DataFrame(
        {"id": [10, 11, 12, 13], "image_path": [f"/i/{i}.jpg" for i in range(4)], "image_sha1": list("abcd")}
    ).to_parquet(splits)
    cat = items_for_batch("catalog", splits, tmp_path)
    assert cat.columns.tolist() == ["product_id", "image_key", "image_path", "image_sha1"]
    assert cat.values.tolist() == [
        [10, "10", "/i/0.jpg", "a"],
        [11, "11", "/i/1.jpg", "b"],
        [12, "12", "/i/2.jpg", "c"],
        [13, "13", "/i/3.jpg", "d"],
    ]
    assert str(cat["product_id"].dtype) == "Int64"
    shard = items_for_batch("catalog-1-of-3", splits, tmp_path)
    assert shard["image_key"].tolist() == ["10", "13"] and shard.index.tolist() == [0, 1]
    assert items_for_batch("catalog-0-of-1", splits, tmp_path)["image_key"].tolist() == [
        "10",
        "11",
        "12",
        "13",
    ]
    with pytest.raises(UnknownBatchError, match=r"shard index must be in 0\.\.2"):
        items_for_batch("catalog-3-of-3", splits, tmp_path)

    incoming = tmp_path / "incoming"
    (incoming / "mon" / "sub").mkdir(parents=True)
    (incoming / "mon" / "sub" / "123.JPG").write_bytes(b"abc")
    (incoming / "mon" / "notes.txt").write_bytes(b"not an image")
    (incoming / "mon" / "photo.png").write_bytes(b"")
    inc = items_for_batch("incoming-mon", splits, incoming)
    assert inc.columns.tolist() == ["product_id", "image_key", "image_path", "image_sha1"]
    assert inc["image_key"].tolist() == ["mon/photo.png", "mon/sub/123.JPG"]
    assert inc["image_path"].tolist() == [
        str(incoming / "mon" / "photo.png"),
        str(incoming / "mon/sub/123.JPG"),
    ]
    assert inc["image_sha1"].tolist()[1] == "a9993e364706816aba3e25717850c26c9cd0d89d"
    assert inc["product_id"].tolist() == [pd.NA, 123] and str(inc["product_id"].dtype) == "Int64"
    with pytest.raises(UnknownBatchError, match="no folder"):
        items_for_batch("incoming-tue", splits, incoming)
    with pytest.raises(UnknownBatchError, match="unknown batch 'nightly'"):
        items_for_batch("nightly", splits, incoming)


def test_the_defaults_and_the_bookkeeping_of_a_batch() -> None:
    clf, det = FakeClassifier("clf/1"), FakeDetector("det/1")
    result = extract_batch(_items(["k2", "k1"]), clf, det)
    assert clf.options == (128, 1) and det.calls[0][1:] == (8, 0.5)
    extract_batch(_items(["k1"]), clf, det, batch_size=3, workers=0)
    assert clf.options == (3, 0)
    a = result.attributes
    assert a.index.tolist() == [0, 1] and a["image_key"].tolist() == ["k1", "k2"]
    assert str(a["extracted_at"].dt.tz) == "UTC"
    assert (pd.Timestamp.now(tz="UTC") - a["extracted_at"]).abs().max() < pd.Timedelta(minutes=5)
    assert all(0 <= s < 60 for s in result.seconds.values())
    assert a["product_id"].tolist() == [2, 1]  # each row keeps its own columns through the sort


def test_a_batch_emptied_of_images_rewrites_an_empty_table(tmp_path: Path) -> None:
    out = tmp_path / "batch.parquet"
    extract_to_parquet(_items(["k1", "k2"]), FakeClassifier("clf/1"), None, out)
    summary = extract_to_parquet(_items([]), FakeClassifier("clf/1"), None, out)
    assert (summary.rows, summary.n_reused, summary.chunks) == (0, 0, 1)
    assert len(pd.read_parquet(out)) == 0


def test_every_image_extension_is_taken_from_an_incoming_folder(tmp_path: Path) -> None:
    folder = tmp_path / "incoming" / "drop"
    folder.mkdir(parents=True)
    names = ["a.jpg", "b.jpeg", "c.png", "d.webp", "e.bmp", "f.gif", "g.tif", "h.tiff", "i.JPG", "j.txt", "k"]
    for name in names:
        (folder / name).write_bytes(b"x")
    (folder / "sub.png").mkdir()  # a folder named like an image is not one
    items = items_for_batch("incoming-drop", tmp_path / "splits.parquet", tmp_path / "incoming")
    assert [key.removeprefix("drop/") for key in items["image_key"]] == names[:9]
    assert str(items["product_id"].dtype) == "Int64" and items["product_id"].isna().all()  # no numeric names


def test_the_preview_holds_the_first_ten_rows_and_one_image_is_one_chunk(tmp_path: Path) -> None:
    names = [f"k{i:02d}" for i in range(12)]
    summary = extract_to_parquet(_items(names), FakeClassifier("clf/1"), None, tmp_path / "a.parquet")
    assert summary.preview["image_key"].tolist() == names[:10] and summary.chunks == 1
    one = extract_to_parquet(
        _items(["k1"]), FakeClassifier("clf/1"), None, tmp_path / "b.parquet", chunk_rows=1
    )
    assert one.chunks == 1
    assert embeddings_matrix(pd.read_parquet(tmp_path / "b.parquet")).dtype == np.float32


def test_rows_reused_from_a_file_of_other_column_types_are_cast_to_the_new_ones(tmp_path: Path) -> None:
    """An output written by an older version (here: timestamps in ns, not us) is re-used, and its rows are
    written with the types of the first chunk, so the new file has one schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "batch.parquet"
    items = _items(["k1", "k2", "k3", "k4"])
    extract_to_parquet(items, FakeClassifier("clf/1"), None, out, chunk_rows=2)
    table = pq.read_table(out)
    at = table.schema.get_field_index("extracted_at")
    old_type = pa.timestamp("ns", tz="UTC")
    pq.write_table(table.set_column(at, "extracted_at", table.column(at).cast(old_type)), out)
    changed = items.copy()
    changed.loc[changed["image_key"].isin(["k1", "k2"]), "image_sha1"] = "b" * 40  # the first chunk is new
    summary = extract_to_parquet(changed, FakeClassifier("clf/1"), None, out, chunk_rows=2)
    assert (summary.n_new, summary.n_reused) == (2, 2)
    written = pq.read_table(out)
    assert written.schema.field("extracted_at").type != old_type and written.num_rows == 4


def test_a_chunk_reads_only_the_earlier_rows_in_its_key_range(tmp_path: Path) -> None:
    from product_attrs.extraction.extract import _previous_rows

    out = tmp_path / "batch.parquet"
    extract_to_parquet(_items(["k1", "k2", "k3", "k4", "k5"]), FakeClassifier("clf/1"), None, out)
    assert _previous_rows(out, pd.Series(["k4", "k2"]))["image_key"].tolist() == ["k2", "k3", "k4"]
    assert _previous_rows(out, pd.Series(["k5"]))["image_key"].tolist() == ["k5"]
    assert _previous_rows(out, pd.Series([], dtype=object)).empty


def test_the_summary_adds_up_the_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from itertools import count

    from product_attrs.extraction import extract as module

    ticks = count()
    monkeypatch.setattr(module.time, "perf_counter", lambda: float(next(ticks)))  # every stage takes 1 s
    items = _items(["broken", "k1", "k2", "k3"])
    summary = extract_to_parquet(
        items, FakeClassifier("clf/1"), None, tmp_path / "a.parquet", chunk_rows=2, preview_rows=2
    )
    assert summary.seconds == {"classify": 2.0}  # two chunks, a second each
    assert summary.preview["image_key"].tolist() == [
        "k1",
        "k2",
    ]  # one row of the first chunk, one of the next
    assert summary.preview.columns.tolist() == COLUMNS and summary.preview.index.tolist() == [0, 1]
