"""Label corrections: every line ends in exactly one place, the bad ones in quarantine with a reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from product_attrs.catalog.corrections import (
    CLEAN_COLUMNS,
    apply_corrections,
    check_corrections,
    correction_id,
)

SPLITS = pd.DataFrame(
    {
        "id": [1, 2, 3, 4, 5],
        "split": ["train", "train", "train", "test", "train"],
        "article_type": ["Shirts", "Jeans", "Shirts", "Jeans", "Tshirts"],
    }
)
MAPS = {"article_type": ["Jeans", "Shirts", "Tshirts"], "master_category": ["Apparel"]}
HEADER = "product_id,head,value,who,when,new_label\n"


def _check(tmp_path: Path, *files: str):
    folder = tmp_path / "corrections"
    folder.mkdir()
    for i, text in enumerate(files):
        (folder / f"batch{i}.csv").write_text(text)
    return check_corrections(folder, SPLITS, MAPS)


def test_bad_corrections_are_quarantined_with_their_reason(tmp_path):
    lines = [
        "1,article_type,Tshirts,ana,2026-11-29T10:00:00Z,",  # good
        "99,article_type,Shirts,ana,2026-11-29T10:00:00Z,",  # unknown product
        "4,article_type,Shirts,ana,2026-11-29T10:00:00Z,",  # test split: the evaluation set
        "2,colour,Blue,ana,2026-11-29T10:00:00Z,",  # unknown head
        "2,article_type,Kurtas,ana,2026-11-29T10:00:00Z,",  # unknown label, not flagged
        "5,article_type,Kurtas,ana,2026-11-29T10:00:00Z,yes",  # explicit new label: accepted
        "3,article_type,Jeans,ana,yesterday,",  # bad timestamp
        "x7,article_type,Jeans,ana,2026-11-29T10:00:00Z,",  # bad product id
        "3,article_type,,ana,2026-11-29T10:00:00Z,",  # missing value
        "3,article_type,Jeans,ana,2026-11-29T10:00:00Z,,extra",  # malformed line
        "3,master_category,Apparel,ana,2026-11-29T10:00:00Z,maybe",  # bad flag
        "",  # a blank line is no record
    ]
    conflicts = "\n".join(
        [
            "2,article_type,Shirts,ben,2026-11-29T11:00:00+01:00,",
            "2,article_type,Tshirts,cy,2026-11-29T12:00:00Z,",  # conflicts with the line above
            "1,article_type,Tshirts,ana,2026-11-29T10:00:00Z,",  # the same as file 0's first line
        ]
    )
    result = _check(tmp_path, HEADER + "\n".join(lines) + "\n", HEADER + conflicts + "\n")
    reasons = dict(zip(result.quarantine["record_id"], result.quarantine["reason"], strict=True))
    assert reasons == {
        "batch0.csv:3": "unknown_product",
        "batch0.csv:4": "evaluation_product",
        "batch0.csv:5": "unknown_head",
        "batch0.csv:6": "unknown_label",
        "batch0.csv:8": "bad_timestamp",
        "batch0.csv:9": "bad_product_id",
        "batch0.csv:10": "missing_field",
        "batch0.csv:11": "malformed_line",
        "batch0.csv:12": "bad_new_label_flag",
        "batch1.csv:2": "conflicting_duplicate",
        "batch1.csv:3": "conflicting_duplicate",
        "batch1.csv:4": "duplicate",
    }
    assert (result.quarantine["detail"] != "").all()
    clean = result.clean
    assert list(clean.columns) == CLEAN_COLUMNS
    assert sorted(zip(clean["product_id"], clean["value"], clean["new_label"])) == [
        (1, "Tshirts", False),
        (5, "Kurtas", True),
    ]
    # Every data line in exactly one place.
    assert len(clean) + len(result.quarantine) == result.n_lines == 14
    assert clean.loc[clean["product_id"] == 1, "correction_id"].item() == correction_id(
        1, "article_type", "Tshirts", "ana", "2026-11-29T10:00:00Z"
    )


def test_a_file_with_a_bad_header_quarantines_every_line(tmp_path):
    result = _check(tmp_path, "product,head,value\n1,article_type,Jeans\n2,article_type,Jeans\n")
    assert result.clean.empty
    assert result.quarantine["reason"].tolist() == ["bad_header", "bad_header"]


def test_times_are_normalised_to_utc(tmp_path):
    result = _check(tmp_path, HEADER + "1,article_type,Jeans,ana,2026-11-29T11:30:00+01:00,\n")
    assert result.clean["corrected_at"].tolist() == ["2026-11-29T10:30:00Z"]


def test_no_folder_is_no_corrections(tmp_path):
    result = check_corrections(tmp_path / "absent", SPLITS, MAPS)
    assert result.clean.empty and result.quarantine.empty and result.n_lines == 0


def test_apply_replaces_labels_and_appends_new_ones(tmp_path):
    result = _check(
        tmp_path,
        HEADER + "1,article_type,Jeans,ana,2026-11-29T10:00:00Z,\n5,article_type,Kurtas,ana,2026-11-29,yes\n",
    )
    frame, maps, corrected = apply_corrections(SPLITS, MAPS, result.clean)
    assert frame["article_type"].tolist() == ["Jeans", "Jeans", "Shirts", "Jeans", "Kurtas"]
    assert maps["article_type"] == ["Jeans", "Shirts", "Tshirts", "Kurtas"]  # known labels keep their index
    assert corrected.tolist() == [True, False, False, False, True]
    assert SPLITS["article_type"].tolist()[0] == "Shirts"  # the input is not modified
