"""Gallery images the decoder refuses are quarantined with the manifest's reason, never hang the build."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from product_attrs.retrieval.gallery import build_gallery, gallery_rows
from product_attrs_tests.retrieval.conftest import PRODUCTS, write_recognizer


@pytest.mark.timeout(60)  # before the fix, the loader blocked forever on the FIFO
def test_a_fifo_in_the_gallery_is_quarantined_as_not_a_regular_file(tmp_path: Path, catalog: Path) -> None:
    classifier = write_recognizer(tmp_path / "models")
    rows = gallery_rows(catalog, "iconic", classifier.heads[0])
    path = Path(rows.loc[3, "image_path"])
    path.unlink()
    os.mkfifo(path)
    index, quarantine = build_gallery(classifier, rows)
    assert index.items["fine_label"].tolist() == PRODUCTS[:3]
    assert quarantine[["source", "reason"]].values.tolist() == [["gallery_index", "not_a_regular_file"]]
