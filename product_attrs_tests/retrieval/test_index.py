"""Exact cosine search and recall@k on small galleries whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from product_attrs.retrieval.evaluate import evaluate_queries, recall_at_k
from product_attrs.retrieval.index import GalleryError, GalleryIndex, search_baseline


def _axes(n: int, dim: int) -> np.ndarray:
    return np.eye(n, dim, dtype=np.float32)


def test_search_returns_the_nearest_products_best_first() -> None:
    items = pd.DataFrame({"product_id": ["a", "b", "c", "d"]})
    index = GalleryIndex(_axes(4, 4) * 3.0, items)  # not unit length: the index normalises
    q = np.array([[0.9, 0.4, 0.1, 0.0], [0.05, 0.0, 0.2, 1.0]], dtype=np.float32)
    found = index.search(q, k=3)
    assert found.products.tolist() == [["a", "b", "c"], ["d", "c", "a"]]
    expected = q / np.linalg.norm(q, axis=1, keepdims=True)
    assert found.scores[0].tolist() == pytest.approx(
        [expected[0, 0], expected[0, 1], expected[0, 2]], abs=1e-6
    )
    assert found.rows.tolist() == [[0, 1, 2], [3, 2, 0]]


def test_several_images_of_a_product_are_max_pooled_not_repeated() -> None:
    # Product "x" has three images (rows 0, 2, 3); "y" one. A query near x ranks x once, then y.
    emb = np.array([[1, 0], [0, 1], [0.7, 0.7], [0.6, 0.8]], dtype=np.float32)
    index = GalleryIndex(emb, pd.DataFrame({"product_id": ["x", "y", "x", "x"]}))
    found = index.search(np.array([[1.0, 0.05]]), k=5)
    assert found.products.tolist() == [["x", "y"]]  # k is capped at the number of products
    assert found.rows[0, 0] == 0  # the best image of x, in the gallery's own row numbering
    assert found.rows[0, 1] == 1  # y's only image sits in row 1


def test_a_product_scores_its_best_image_not_the_sum_of_its_images() -> None:
    """Two middling images of "many" (cosine 0.6 each) must not outrank one close image of "one" (0.9):
    pooled by the sum, "many" would come first with 1.2; by the max it scores 0.6 and comes second."""
    emb = np.array([[0.6, 0.8, 0], [0.6, 0, 0.8], [0.9, np.sqrt(1 - 0.81), 0], [0, 0, 1]], dtype=np.float32)
    index = GalleryIndex(emb, pd.DataFrame({"product_id": ["many", "many", "one", "far"]}))
    found = index.search(np.array([[1.0, 0.0, 0.0]]), k=3)
    assert found.products.tolist() == [["one", "many", "far"]]
    assert found.scores[0].tolist() == pytest.approx([0.9, 0.6, 0.0], abs=1e-6)
    assert found.rows.tolist() == [[2, 0, 3]]  # of "many"'s two equal images, the first
    # Several queries at once: each row is pooled on its own.
    both = index.search(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), k=2)
    assert both.products.tolist() == [["one", "many"], ["far", "many"]]
    assert both.scores[1].tolist() == pytest.approx([1.0, 0.8], abs=1e-6)
    assert both.rows.tolist() == [[2, 0], [3, 1]]


def test_search_agrees_with_the_plain_baseline_on_random_data() -> None:
    rng = np.random.default_rng(3)
    g = rng.normal(size=(2000, 32)).astype(np.float32)
    q = rng.normal(size=(50, 32)).astype(np.float32)
    index = GalleryIndex(g, pd.DataFrame({"product_id": np.arange(2000)}))
    q_unit = q / np.linalg.norm(q, axis=1, keepdims=True)
    assert index.search(q, k=5).rows.tolist() == search_baseline(index.embeddings, q_unit, 5).tolist()


def test_recall_at_k_counts_hits_within_the_first_k() -> None:
    ranked = np.array([["a", "b"], ["b", "a"], ["c", "d"]], dtype=object)
    assert recall_at_k(ranked, ["a", "a", "z"], (1, 2)) == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3)}


def test_evaluate_queries_reports_recall_and_coarse_agreement() -> None:
    gallery = pd.DataFrame(
        {"fine_label": ["apple", "pear", "milk"], "coarse_label": ["fruit", "fruit", "dairy"]}
    )
    index = GalleryIndex(_axes(3, 3), gallery, key="fine_label")
    queries = pd.DataFrame(
        {
            "fine_label": ["apple", "pear", "milk", "kiwi"],
            "coarse_label": ["fruit", "fruit", "dairy", "fruit"],
        }
    )
    # Query 2 ("pear") looks most like apple, then pear; "kiwi" has no gallery image.
    emb = np.array([[1, 0.1, 0], [0.8, 0.6, 0], [0, 0, 1], [0.1, 0.2, 0.9]], dtype=np.float32)
    metrics, per_query, _ = evaluate_queries(index, emb, queries, ks=(1, 2))
    assert metrics["recall@1"] == pytest.approx(2 / 4)
    assert metrics["recall@2"] == pytest.approx(3 / 4)
    assert metrics["queries_without_gallery_product"] == 1
    assert metrics["recall@1_coarse_label"] == pytest.approx(3 / 4)  # pear->apple is still fruit
    assert per_query["matched"].tolist() == ["apple", "apple", "milk", "milk"]


@pytest.mark.parametrize(
    ("emb", "items", "message"),
    [
        (np.zeros((0, 4)), pd.DataFrame({"product_id": []}), "rows > 0"),
        (np.ones((2, 4)), pd.DataFrame({"product_id": [1]}), "2 embeddings but 1"),
        (np.ones((1, 4)), pd.DataFrame({"sku": [1]}), "no 'product_id' column"),
        (np.array([[np.nan, 1.0]]), pd.DataFrame({"product_id": [1]}), "^gallery embeddings contain NaN or"),
    ],
)
def test_a_gallery_that_cannot_be_searched_says_why(emb, items, message) -> None:
    with pytest.raises(GalleryError, match=message):
        GalleryIndex(emb, items)


def test_queries_of_the_wrong_width_are_refused() -> None:
    index = GalleryIndex(_axes(2, 4), pd.DataFrame({"product_id": [1, 2]}))
    with pytest.raises(GalleryError, match=r"\(n, 4\)"):
        index.search(np.ones((1, 3)))


def test_save_and_load_round_trip(tmp_path) -> None:
    index = GalleryIndex(_axes(3, 5), pd.DataFrame({"fine_label": ["a", "b", "c"]}), key="fine_label")
    index.save(tmp_path / "g", info={"model_version": "m/1"})
    again = GalleryIndex.load(tmp_path / "g")
    assert again.key == "fine_label" and again.items["fine_label"].tolist() == ["a", "b", "c"]
    assert again.info["model_version"] == "m/1"
    np.testing.assert_array_equal(again.embeddings, index.embeddings)
    with pytest.raises(FileNotFoundError, match="gallery_index"):
        GalleryIndex.load(tmp_path / "missing")


def test_queries_are_searched_block_by_block_with_the_same_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A score block is capped in size: many queries against a large gallery are cut into blocks."""
    from product_attrs.retrieval import index as index_module

    rng = np.random.default_rng(5)
    g = rng.normal(size=(12, 6)).astype(np.float32)
    q = rng.normal(size=(7, 6)).astype(np.float32)
    keys = ["p0", "p1", "p2", "p0", "p3", "p1", "p4", "p5", "p2", "p6", "p6", "p7"]
    whole = GalleryIndex(g, pd.DataFrame({"product_id": keys})).search(q, k=4)
    monkeypatch.setattr(index_module, "_BLOCK_VALUES", 30)  # 2 queries x 12 rows at a time
    blocks = GalleryIndex(g, pd.DataFrame({"product_id": keys})).search(q, k=4)
    assert blocks.products.tolist() == whole.products.tolist()
    assert blocks.rows.tolist() == whole.rows.tolist()
    np.testing.assert_allclose(blocks.scores, whole.scores, atol=1e-6)
    # Against a brute-force max over each product's rows.
    unit = g / np.linalg.norm(g, axis=1, keepdims=True)
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ unit.T
    for i in range(len(q)):
        best = {k: max(cos[i, j] for j in range(len(keys)) if keys[j] == k) for k in set(keys)}
        expected = sorted(best, key=lambda k: -best[k])[:4]
        assert blocks.products[i].tolist() == expected
        assert blocks.scores[i].tolist() == pytest.approx([best[k] for k in expected], abs=1e-5)
        assert [keys[r] for r in blocks.rows[i]] == expected
        assert cos[i, blocks.rows[i]].tolist() == pytest.approx(blocks.scores[i].tolist(), abs=1e-5)
    monkeypatch.setattr(index_module, "_BLOCK_VALUES", 1)  # fewer values than rows: one query at a time
    one = GalleryIndex(g, pd.DataFrame({"product_id": keys})).search(q, k=4)
    assert one.rows.tolist() == whole.rows.tolist()


def test_k_is_at_least_one_and_at_most_the_number_of_products() -> None:
    index = GalleryIndex(_axes(3, 3), pd.DataFrame({"product_id": ["a", "b", "c"]}))
    found = index.search(np.array([[0.0, 1.0, 0.0]]), k=0)
    assert found.products.tolist() == [["b"]] and found.rows.dtype == np.int64
    assert found.scores.dtype == np.float32
    assert index.search(np.array([[0.0, 1.0, 0.0]]), k=2).products.shape == (1, 2)
    assert index.search(np.zeros((0, 3)), k=2).products.shape == (0, 2)
    assert len(index) == 3 and index.dim == 3


def test_a_zero_vector_does_not_divide_by_zero() -> None:
    from product_attrs.retrieval.index import l2_normalize

    out = l2_normalize(np.array([[0.0, 0.0], [3.0, 4.0]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 0.0], [0.6, 0.8]], rtol=1e-6)


def test_a_one_dimensional_gallery_is_refused() -> None:
    with pytest.raises(GalleryError, match=r"rows > 0, got shape \(4,\)"):
        GalleryIndex(np.ones(4), pd.DataFrame({"product_id": [1, 2, 3, 4]}))
    with pytest.raises(GalleryError, match="NaN or infinite values$"):
        GalleryIndex(np.array([[np.inf, 1.0]]), pd.DataFrame({"product_id": [1]}))


def test_gallery_rows_are_renumbered_and_products_kept_in_first_seen_order() -> None:
    items = pd.DataFrame({"product_id": ["b", "a", "b", "c"]}, index=[10, 11, 12, 13])
    index = GalleryIndex(_axes(4, 4), items)
    assert index.items.index.tolist() == [0, 1, 2, 3] and index.items.columns.tolist() == ["product_id"]
    assert index.products.tolist() == ["b", "a", "c"]
    assert index.search(np.array([[0, 0, 1.0, 0]]), k=1).rows.tolist() == [[2]]


def test_gallery_json_describes_the_index(tmp_path) -> None:
    import json

    index = GalleryIndex(_axes(3, 5), pd.DataFrame({"product_id": ["a", "b", "a"]}))
    index.save(tmp_path / "g", info={"model_version": "m/1", "rows": "overridden"})
    info = json.loads((tmp_path / "g" / "gallery.json").read_text())
    assert info == {"model_version": "m/1", "key": "product_id", "rows": 3, "dim": 5, "products": 2}
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == [
        "gallery.json",
        "gallery.parquet",
        "gallery_embeddings.npy",
    ]
    index.save(tmp_path / "new" / "bare")  # a folder whose parent does not exist yet
    assert json.loads((tmp_path / "new" / "bare" / "gallery.json").read_text())["rows"] == 3
    GalleryIndex(_axes(2, 5), pd.DataFrame({"product_id": ["z", "y"]})).save(tmp_path / "new" / "bare")
    assert GalleryIndex.load(tmp_path / "new" / "bare").products.tolist() == ["z", "y"]  # replaced
    # A gallery.json written before the key was recorded: the key is product_id.
    del info["key"]
    (tmp_path / "g" / "gallery.json").write_text(json.dumps(info))
    assert GalleryIndex.load(tmp_path / "g").key == "product_id"


def test_the_baseline_returns_row_numbers_best_first() -> None:
    g = _axes(3, 3)
    out = search_baseline(g, np.array([[0.1, 0.0, 1.0], [0.0, 1.0, 0.2]], dtype=np.float32), k=2)
    assert out.dtype == np.int64 and out.tolist() == [[2, 0], [1, 2]]


def test_the_baseline_and_the_index_return_five_by_default() -> None:
    """The benchmark compares them at their defaults."""
    g = _axes(6, 6)
    index = GalleryIndex(g, pd.DataFrame({"product_id": range(6)}))
    assert search_baseline(g, g[:2]).shape == (2, 5) and index.search(g[:2]).products.shape == (2, 5)


def test_of_equally_good_images_the_first_in_the_gallery_is_named() -> None:
    """Rows are grouped by product with a stable sort, so ties go to the lowest row, whatever the size."""
    n = 300
    keys = [i % 7 for i in range(n)]
    emb = np.eye(7, dtype=np.float32)[keys]  # every image of a product is the same vector
    index = GalleryIndex(emb, pd.DataFrame({"product_id": keys}))
    found = index.search(np.eye(7, dtype=np.float32), k=1)
    assert found.products[:, 0].tolist() == list(range(7))
    assert found.rows[:, 0].tolist() == list(range(7))
