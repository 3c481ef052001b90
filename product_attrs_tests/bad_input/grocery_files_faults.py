"""The Grocery Store folder: a listed photo that is not a regular file or leads out of the dataset is
quarantined with its reason and never read; the other photos are ingested."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from PIL import Image

from product_attrs.catalog.grocery import ingest_grocery
from product_attrs_tests.bad_input.cases import Fault, quarantined

CLASSES = (
    "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),"
    "Iconic Image Path (str),Product Description Path (str)\n"
    "Golden-Delicious,0,Apple,0,/iconic/GD_Iconic.jpg,\n"
)


def _grocery(make_bad: Callable[[Path, Path], None]):
    """``train/ok.jpg`` is good; ``make_bad(root, folder)`` puts the hostile photo at ``train/bad.jpg``."""

    def run(folder: Path) -> str:
        root = folder / "grocery"
        (root / "train").mkdir(parents=True)
        (root / "iconic").mkdir()
        Image.new("RGB", (24, 16)).save(root / "train/ok.jpg")
        Image.new("RGB", (24, 16)).save(root / "iconic/GD_Iconic.jpg")
        (root / "classes.csv").write_text(CLASSES)
        (root / "train.txt").write_text("train/ok.jpg, 0, 0\ntrain/bad.jpg, 0, 0\n")
        make_bad(root, folder)
        counts = ingest_grocery(root, folder / "out")
        assert (counts["clean"], counts["quarantined"]) == (1, 1)
        q = pd.read_parquet(folder / "out/catalog_quarantine.parquet")
        return quarantined(q["reason"])

    return run


def _fifo(root: Path, folder: Path) -> None:
    os.mkfifo(root / "train/bad.jpg")


def _link_out(root: Path, folder: Path) -> None:
    Image.new("RGB", (24, 16)).save(folder / "secret.jpg")
    (root / "train/bad.jpg").symlink_to(folder / "secret.jpg")


def _folder_link_out(root: Path, folder: Path) -> None:
    (folder / "elsewhere").mkdir()
    Image.new("RGB", (24, 16)).save(folder / "elsewhere/bad.jpg")
    (root / "train.txt").write_text("train/ok.jpg, 0, 0\nlinked/bad.jpg, 0, 0\n")
    (root / "linked").symlink_to(folder / "elsewhere")


FAULTS = [
    Fault("grocery folder", "a listed photo is a FIFO", "quarantine: not_a_regular_file", _grocery(_fifo)),
    Fault(
        "grocery folder",
        "a listed photo is a symlink to a file outside the dataset",
        "quarantine: link_outside_catalog",
        _grocery(_link_out),
    ),
    Fault(
        "grocery folder",
        "a listed photo is under a folder symlinked outside the dataset",
        "quarantine: link_outside_catalog",
        _grocery(_folder_link_out),
    ),
]
