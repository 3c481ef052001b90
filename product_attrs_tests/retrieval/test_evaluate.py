"""The recognizer evaluation with a stand-in classifier (no network: fast enough to run per mutant): which
photos are queries, what is counted as unreadable, seen and unseen, and what the command line prints."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from product_attrs.retrieval import evaluate, gallery
from product_attrs.retrieval.evaluate import evaluate_recognizer, held_out_products
from product_attrs.retrieval.index import GalleryIndex

PRODUCTS = ["a", "b", "c"]
COARSE = {"a": "fruit", "b": "fruit", "c": "dairy"}


class FakeClassifier:
    """Embeds a photo on the axis of the product its file name starts with; names every product right but
    "c" (which it calls "a": it was trained without "c"); files named ``broken*`` are unreadable."""

    heads = ["fine_label", "coarse_label"]

    def __init__(self, holdout: dict | None = None) -> None:
        self.manifest = SimpleNamespace(info={} if holdout is None else {"holdout_products": holdout})
        self.calls: list[tuple[list[str], int, int]] = []

    def predict_files(self, paths: list[str], *, batch_size: int = 64, workers: int = 1) -> SimpleNamespace:
        self.calls.append(([Path(p).stem for p in paths], batch_size, workers))
        errors = {i: "cannot be decoded" for i, p in enumerate(paths) if "broken" in p}
        emb = np.zeros((len(paths), 3), dtype=np.float32)
        for i, p in enumerate(paths):
            emb[i, PRODUCTS.index(Path(p).stem[0]) if i not in errors else 0] = 1.0
        return SimpleNamespace(embeddings=emb, errors=errors, names=[Path(p).stem[0] for p in paths])

    def labels(self, served: SimpleNamespace, head: str) -> list[str]:
        fine = ["a" if n == "c" else n for n in served.names]
        return fine if head == "fine_label" else [COARSE[n] for n in served.names]


def _catalog(tmp_path: Path) -> Path:
    rows = [
        ("a1", "test"),
        ("b1", "test"),
        ("c1", "test"),
        ("broken_a", "test"),
        ("a2", "train"),
        ("b2", None),
    ]
    frame = pd.DataFrame(
        {
            "image_path": [f"/photos/{name}.jpg" for name, _ in rows],
            # A nullable string column, as some writers give: a missing split compares as NA, not False.
            "split": pd.array([split for _, split in rows], dtype="string"),
            "fine_label": [name.removeprefix("broken_")[0] for name, _ in rows],
        }
    )
    frame["coarse_label"] = frame["fine_label"].map(COARSE)
    frame.to_parquet(tmp_path / "splits.parquet")
    return tmp_path


def _index() -> GalleryIndex:
    items = pd.DataFrame({"fine_label": PRODUCTS, "coarse_label": [COARSE[p] for p in PRODUCTS]})
    return GalleryIndex(np.eye(3, dtype=np.float32), items, key="fine_label")


def test_the_test_photos_are_queried_unreadable_ones_counted_and_unseen_ones_scored_apart(tmp_path: Path):
    classifier = FakeClassifier({"column": "fine_label", "classes": ["c"]})
    ev = evaluate_recognizer(classifier, _index(), _catalog(tmp_path), batch_size=7, workers=3)
    assert classifier.calls == [(["a1", "b1", "c1", "broken_a"], 7, 3)]
    m = ev.metrics
    assert (m["queries"], m["unreadable_queries"], m["queries_unseen"], m["split"]) == (3, 1, 1, "test")
    assert (m["recall@1"], m["recall@1_seen"], m["recall@1_unseen"]) == (1.0, 1.0, 1.0)
    assert m["top1_fine_label"] == pytest.approx(2 / 3)
    assert (m["top1_fine_label_seen"], m["top1_fine_label_unseen"]) == (1.0, 0.0)
    assert (m["top1_coarse_label"], m["top1_coarse_label_seen"], m["top1_coarse_label_unseen"]) == (1.0,) * 3
    q = ev.per_query
    assert q["image_path"].tolist() == ["/photos/a1.jpg", "/photos/b1.jpg", "/photos/c1.jpg"]
    assert q["seen"].tolist() == [True, True, False]
    assert q["predicted_fine_label"].tolist() == ["a", "b", "a"]
    assert q["predicted_coarse_label"].tolist() == ["fruit", "fruit", "dairy"]
    assert q["matched"].tolist() == ["a", "b", "c"]


def test_without_a_holdout_no_seen_and_unseen_top1_is_reported(tmp_path: Path):
    classifier = FakeClassifier()
    ev = evaluate_recognizer(classifier, _index(), _catalog(tmp_path), split="train")
    assert classifier.calls[0][1:] == (64, 1)  # batch size and loader workers by default
    assert ev.metrics["queries"] == 1 and ev.metrics["split"] == "train"
    assert ev.metrics["top1_fine_label"] == 1.0
    assert not any(k.startswith("top1_") and k.endswith("seen") for k in ev.metrics)
    assert ev.per_query["image_path"].tolist() == ["/photos/a2.jpg"]


def test_max_rows_takes_a_fixed_sample_in_catalog_order(tmp_path: Path):
    classifier = FakeClassifier()
    ev = evaluate_recognizer(classifier, _index(), _catalog(tmp_path), max_rows=2)
    assert classifier.calls[0][0] == ["c1", "broken_a"]  # the same two on every run, in catalog order
    assert ev.metrics["queries"] == 1 and ev.metrics["unreadable_queries"] == 1
    columns = ["image_path", "split", "fine_label", "coarse_label", "seen", "matched", "similarity", "top_k"]
    assert ev.per_query.columns.tolist() == columns + [
        "matched_coarse_label",
        "predicted_fine_label",
        "predicted_coarse_label",
    ]
    everything = FakeClassifier()
    evaluate_recognizer(everything, _index(), _catalog(tmp_path), max_rows=4)
    assert everything.calls[0][0] == ["a1", "b1", "c1", "broken_a"]


def test_a_head_the_catalog_lacks_is_not_scored(tmp_path: Path):
    catalog = _catalog(tmp_path)
    pd.read_parquet(catalog / "splits.parquet").drop(columns="coarse_label").to_parquet(
        catalog / "splits.parquet"
    )
    ev = evaluate_recognizer(FakeClassifier(), _index(), catalog)
    assert "top1_coarse_label" not in ev.metrics and "predicted_coarse_label" not in ev.per_query
    assert ev.metrics["top1_fine_label"] == pytest.approx(2 / 3)


def test_the_held_out_products_of_a_version():
    assert held_out_products(FakeClassifier({"column": "fine_label", "classes": ["c", 7]})) == ["c", "7"]
    assert held_out_products(FakeClassifier({"classes": ["c"]})) == ["c"]  # the column defaults to the head
    assert held_out_products(FakeClassifier({"column": "coarse_label", "classes": ["dairy"]})) == []
    assert held_out_products(FakeClassifier({"column": "fine_label", "classes": None})) == []
    assert held_out_products(FakeClassifier(None)) == []
    assert held_out_products(FakeClassifier({})) == []


def test_mean_of_nothing_is_nan():
    assert math.isnan(evaluate._mean(np.array([], dtype=bool)))
    assert evaluate._mean(np.array([True, False, True, True])) == 0.75


def test_the_command_prints_the_metrics_and_writes_the_queries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    catalog = _catalog(tmp_path)
    classifier = FakeClassifier({"column": "fine_label", "classes": ["c"]})
    seen: dict[str, object] = {}

    def load(path: Path, device: str = "auto") -> FakeClassifier:
        seen["load"] = (path, device)
        return classifier

    def rows(catalog_dir: Path, which: str, key: str) -> pd.DataFrame:
        seen["rows"] = (catalog_dir, which, key)
        return pd.DataFrame({"fine_label": PRODUCTS})

    def build(clf: FakeClassifier, frame: pd.DataFrame, batch_size: int, workers: int):
        seen["build"] = (clf, len(frame), batch_size, workers)
        return _index(), pd.DataFrame({"record_id": ["x", "y"]})

    monkeypatch.setattr(evaluate.Classifier, "load", staticmethod(load))
    monkeypatch.setattr(gallery, "gallery_rows", rows)
    monkeypatch.setattr(gallery, "build_gallery", build)
    out = tmp_path / "per_query.parquet"
    argv = ["--model-dir", "m/1", "--catalog-dir", str(catalog), "--gallery", "both", "--split", "train"]
    argv += ["--batch-size", "5", "--workers", "2", "--device", "cuda", "--out", str(out)]
    assert evaluate.main(argv) == 0
    assert seen == {
        "load": (Path("m/1"), "cuda"),
        "rows": (catalog, "both", "fine_label"),
        "build": (classifier, 3, 5, 2),
    }
    assert classifier.calls[0][1:] == (5, 2)
    text = capsys.readouterr().out
    assert text.startswith('{\n "recall@1": ')  # indented by one space
    printed = json.loads(text)
    assert (printed["gallery_rows"], printed["gallery_quarantined"], printed["queries"]) == (3, 2, 1)
    assert printed["split"] == "train"
    assert pd.read_parquet(out)["image_path"].tolist() == ["/photos/a2.jpg"]
    assert "__index_level_0__" not in pq.read_schema(out).names

    classifier.calls.clear()
    assert evaluate.main(["--model-dir", "m/1", "--catalog-dir", str(catalog)]) == 0
    assert seen["load"] == (Path("m/1"), "cpu") and seen["rows"] == (catalog, "iconic", "fine_label")
    assert seen["build"] == (classifier, 3, 64, 1) and classifier.calls[0][1:] == (64, 1)
    printed = json.loads(capsys.readouterr().out)
    assert printed["split"] == "test" and printed["queries"] == 3 and printed["recall@1_unseen"] == 1.0


def test_the_command_says_what_it_needs(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as stop:
        evaluate.main(["--help"])
    assert stop.value.code == 0
    text = " " + " ".join(capsys.readouterr().out.split()) + " "
    assert text.startswith(" usage: python -m product_attrs.retrieval.evaluate ")
    for phrase in (
        "recall@k of a catalog split's photos against a gallery, and the classifier heads' top-1",
        "a classifier version folder (manifest.json, model.pt)",
        "the ingested catalog (splits.parquet, gallery.parquet)",
        "iconic, train_photos or both",
        "write per-query results (Parquet) here",
    ):
        assert f" {phrase} " in text  # whole, not inside other words
    for argv in (["--catalog-dir", "c"], ["--model-dir", "m"]):
        with pytest.raises(SystemExit) as stop:
            evaluate.main(argv)
        assert stop.value.code == 2
    assert "the following arguments are required" in capsys.readouterr().err


def test_recall_needs_one_true_key_per_query():
    from product_attrs.retrieval.evaluate import recall_at_k

    with pytest.raises(ValueError, match="2 ranked rows but 1 true keys"):
        recall_at_k(np.array([["a"], ["b"]], dtype=object), ["a"])
    assert recall_at_k(np.array([["a", "b", "c", "d", "e"]], dtype=object), ["e"]) == {1: 0.0, 5: 1.0}
    empty = recall_at_k(np.zeros((0, 5), dtype=object), [])
    assert list(empty) == [1, 5] and all(math.isnan(v) for v in empty.values())


def test_per_query_results_name_the_match_its_similarity_and_the_top_k():
    from product_attrs.retrieval.evaluate import evaluate_queries

    items = pd.DataFrame(
        {
            "fine_label": PRODUCTS,
            "coarse_label": [COARSE[p] for p in PRODUCTS],
            "colour_label": ["r", "g", "b"],
        }
    )
    index = GalleryIndex(np.eye(3, dtype=np.float32), items, key="fine_label")
    queries = pd.DataFrame({"fine_label": ["b", "c"], "coarse_label": ["fruit", "fruit"]}, index=[7, 3])
    emb = np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    metrics, per_query, result = evaluate_queries(index, emb, queries, ks=(1, 3))
    assert per_query.index.tolist() == [0, 1]
    assert queries.columns.tolist() == ["fine_label", "coarse_label"]  # the caller's frame is not changed
    assert per_query["matched"].tolist() == ["b", "c"]
    assert per_query["similarity"].tolist() == pytest.approx([0.8, 1.0])
    assert per_query["top_k"].map(json.loads).tolist() == [["b", "a", "c"], ["c", "a", "b"]]
    assert per_query["matched_coarse_label"].tolist() == ["fruit", "dairy"]
    assert metrics["recall@1_coarse_label"] == 0.5
    # The key is scored as recall@1, and a label the queries lack is not compared.
    assert "recall@1_fine_label" not in metrics and "recall@1_colour_label" not in metrics
    assert "matched_colour_label" not in per_query and "matched_fine_label" not in per_query
    assert (metrics["gallery_products"], metrics["queries"], metrics["held_out_products"]) == (3, 2, 0)
    assert metrics["queries_without_gallery_product"] == 0
    assert result.products.shape == (2, 3)
    assert {"recall@3", "recall@3_seen", "recall@3_unseen"} <= set(metrics) and "recall@5_seen" not in metrics
    # k is the largest of ks: two of the three products for ks=(1, 2).
    _, two, _ = evaluate_queries(index, emb, queries, ks=(1, 2))
    assert two["top_k"].map(json.loads).tolist() == [["b", "a"], ["c", "a"]]


def test_no_queries_give_empty_results_not_errors():
    from product_attrs.retrieval.evaluate import evaluate_queries

    queries = pd.DataFrame({"fine_label": pd.Series([], dtype=str), "coarse_label": pd.Series([], dtype=str)})
    metrics, per_query, _ = evaluate_queries(_index(), np.zeros((0, 3), dtype=np.float32), queries)
    assert metrics["queries"] == 0 and math.isnan(metrics["recall@1"])
    assert "recall@1_coarse_label" not in metrics
    assert len(per_query) == 0 and {"matched", "similarity", "top_k", "seen"} <= set(per_query.columns)


def test_a_split_without_photos_gives_no_queries(tmp_path: Path):
    ev = evaluate_recognizer(FakeClassifier({"classes": ["c"]}), _index(), _catalog(tmp_path), split="val")
    assert (ev.metrics["queries"], ev.metrics["unreadable_queries"]) == (0, 0)
    assert math.isnan(ev.metrics["recall@1"]) and math.isnan(ev.metrics["top1_fine_label_unseen"])
    assert len(ev.per_query) == 0


def test_the_sample_of_max_rows_is_the_same_on_every_run(tmp_path: Path):
    names = [f"{p}{i}" for i in range(8) for p in PRODUCTS]
    frame = pd.DataFrame(
        {
            "image_path": [f"/photos/{n}.jpg" for n in names],
            "split": "test",
            "fine_label": [n[0] for n in names],
        }
    )
    frame.to_parquet(tmp_path / "splits.parquet")
    classifier = FakeClassifier()
    evaluate_recognizer(classifier, _index(), tmp_path, max_rows=5)
    assert classifier.calls[0][0] == ["b3", "c3", "c4", "c6", "b7"]  # in catalog order
