"""The Grocery Store catalog: parsing, image cleaning, outputs, incrementality, the asset, the real set."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from product_attrs.catalog.grocery import ingest_grocery, main
from product_attrs.catalog.grocery_layout import GroceryFormatError, parse_grocery
from product_attrs_tests.conftest import real_data_dir

HEADER = (
    "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),"
    "Iconic Image Path (str),Product Description Path (str)"
)
ICONIC = "iconic-images-and-descriptions"
GD = "train/Fruit/Apple/Golden-Delicious"
GS = "train/Fruit/Apple/Granny-Smith"


def _image(path: Path, mode: str = "RGB", size: tuple[int, int] = (24, 16), orientation: int | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    color = {"RGB": (200, 30, 30), "L": 120}[mode]
    img = Image.new(mode, size, color)
    if orientation is None:
        img.save(path, format="JPEG", quality=90)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(path, format="JPEG", quality=90, exif=exif)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())


def make_grocery(root: Path) -> Path:
    """3 classes (one with no photos, one with a missing iconic image) and 13 non-blank list lines."""
    apple, milk = f"/{ICONIC}/Fruit/Apple", f"/{ICONIC}/Packages/Milk"
    classes = [
        HEADER,
        f"Golden-Delicious,0,Apple,0,{apple}/GD_Iconic.jpg,{apple}/GD_Description.txt",
        f"Granny-Smith,1,Apple,0,{apple}/GS_Iconic.jpg,{apple}/GS_Description.txt",
        f"Oat-Milk,2,Milk,1,{milk}/OM_Iconic.jpg,{milk}/OM_Description.txt",
    ]
    _write(root / "classes.csv", "\r\n".join(classes) + "\r\n")  # the real file has CRLF line ends
    _image(root / ICONIC / "Fruit/Apple/GD_Iconic.jpg")
    _write(root / ICONIC / "Fruit/Apple/GD_Description.txt", "A sweet yellow apple.\n")
    _image(root / ICONIC / "Packages/Milk/OM_Iconic.jpg", mode="L")  # GS_Iconic.jpg is missing
    _write(root / ICONIC / "Packages/Milk/OM_Description.txt", "Oat drink.")

    _image(root / GD / "gd_001.jpg")
    _image(root / GD / "gd_002.jpg", mode="L")
    _image(root / GS / "gs_001.jpg")
    _write(root / GD / "empty.jpg", "")
    _image(root / "val/Fruit/Apple/gd_010.jpg")
    _write(root / "val/Fruit/Apple/garbage.jpg", "not a jpeg at all")
    _image(root / "test/Fruit/Apple/gs_010.jpg", size=(30, 20), orientation=6)
    _image(root / "test/Fruit/Apple/gd_020.jpg")
    _write(
        root / "train.txt",
        "\n".join(
            [
                f"{GD}/gd_001.jpg, 0, 0",  # id 1
                f"{GD}/gd_002.jpg, 0, 0",  # id 2, grayscale
                "this is not a list line",  # unparseable_line
                f"{GS}/gs_001.jpg, 1, 0",  # id 3
                "",
                f"{GD}/empty.jpg, 0, 0",  # id 4, empty_file
                f"{GD}/missing.jpg, 0, 0",  # id 5, missing_image
                f"{GD}/gd_001.jpg, 0, 0",  # duplicate_path
            ]
        )
        + "\n",
    )
    _write(
        root / "val.txt",
        "\n".join(
            [
                "val/Fruit/Apple/gd_010.jpg, 0, 0",  # id 6
                "val/Fruit/Apple/x.jpg, 9, 0",  # unknown_class_id
                "val/Fruit/Apple/garbage.jpg, 0, 0",  # id 7, undecodable_image
            ]
        ),
    )
    _write(
        root / "test.txt",
        "\n".join(
            [
                "test/Fruit/Apple/gs_010.jpg, 1, 0",  # id 8, EXIF-rotated
                "test/Fruit/Apple/gd_020.jpg, 0, 1",  # coarse_mismatch
                "test/Fruit/Apple/gd_020.jpg, 0, 0",  # id 9
            ]
        )
        + "\n",
    )
    return root


@pytest.fixture
def grocery(tmp_path: Path) -> Path:
    return make_grocery(tmp_path / "grocery")


def _reasons(q: pd.DataFrame, source: str | None = None) -> dict[str, str]:
    rows = q if source is None else q[q["source"] == source]
    return dict(zip(rows["record_id"], rows["reason"]))


def test_parse_grocery_ids_labels_and_bad_lines(grocery: Path):
    parsed = parse_grocery(grocery)
    assert parsed.lines == {"train.txt": 7, "val.txt": 3, "test.txt": 3}
    assert parsed.n_blank == 1 and parsed.missing_list_files == []
    rows = parsed.rows
    assert rows["id"].tolist() == list(range(1, 10))
    assert rows["split"].tolist() == ["train"] * 5 + ["val"] * 2 + ["test"] * 2
    labels = ["fine_label", "coarse_label", "fine_id", "coarse_id"]
    assert rows.loc[rows["id"] == 3, labels].iloc[0].tolist() == ["Granny-Smith", "Apple", 1, 0]
    assert rows.loc[rows["id"] == 9, ["list_file", "line"]].iloc[0].tolist() == ["test.txt", 3]
    q = parsed.quarantine
    assert sorted(zip(q["source"], q["record_id"], q["reason"])) == [
        ("test.txt", "line:2", "coarse_mismatch"),
        ("train.txt", "line:3", "unparseable_line"),
        ("train.txt", "line:8", "duplicate_path"),
        ("val.txt", "line:2", "unknown_class_id"),
    ]
    assert len(rows) + len(q) == parsed.n_lines == 13
    g = parsed.gallery
    assert g["product_id"].tolist() == [0, 1, 2]
    assert g["relative_path"].iloc[0] == f"{ICONIC}/Fruit/Apple/GD_Iconic.jpg"  # leading "/" dropped
    assert g["description"].iloc[0] == "A sweet yellow apple."
    assert pd.isna(g["description"].iloc[1])  # no description file
    assert parsed.classes_quarantine.empty


def test_ingest_grocery_outputs(grocery: Path, tmp_path: Path):
    out = tmp_path / "out"
    counts = ingest_grocery(grocery, out, workers=1)
    assert counts["lines"] == 13 and counts["rows"] == 9
    assert counts["line_quarantined"] == 4 and counts["image_quarantined"] == 3 and counts["quarantined"] == 7
    assert counts["clean"] == 6 and counts["clean"] + counts["quarantined"] == counts["lines"]
    assert (counts["train"], counts["val"], counts["test"]) == (3, 1, 2)
    assert counts["converted"] == 2
    assert (counts["gallery"], counts["gallery_quarantined"], counts["gallery_converted"]) == (2, 1, 1)
    assert counts["images_checked"] == 10 and counts["images_reused"] == 0

    catalog = pd.read_parquet(out / "catalog.parquet")
    assert catalog["id"].tolist() == [1, 2, 3, 6, 8, 9]
    assert list(catalog.columns) == [
        "id",
        "split",
        "relative_path",
        "list_file",
        "line",
        "fine_id",
        "coarse_id",
        "fine_label",
        "coarse_label",
        "image_path",
        "image_sha1",
        "width",
        "height",
        "source_mode",
        "converted",
    ]
    by_id = catalog.set_index("id")
    assert by_id.loc[1, "image_path"] == str((grocery / GD / "gd_001.jpg").resolve())
    assert not by_id.loc[1, "converted"] and by_id.loc[1, "source_mode"] == "RGB"
    for pid, size in ((2, (24, 16)), (8, (20, 30))):  # grayscale copied; EXIF 6 rotated 90 degrees
        path = Path(by_id.loc[pid, "image_path"])
        assert by_id.loc[pid, "converted"] and path.suffix == ".png"
        assert path.is_relative_to(out / "images_rgb")
        with Image.open(path) as img:
            assert img.mode == "RGB" and img.size == size
        assert (by_id.loc[pid, "width"], by_id.loc[pid, "height"]) == size
    assert by_id.loc[2, "source_mode"] == "L"

    q = pd.read_parquet(out / "catalog_quarantine.parquet")
    assert list(q.columns) == ["source", "record_id", "reason", "detail"]
    assert _reasons(q, "catalog") == {"4": "empty_file", "5": "missing_image", "7": "undecodable_image"}
    assert _reasons(q, "gallery") == {"1": "missing_image"}
    assert "missing.jpg" in q.loc[q["record_id"] == "5", "detail"].iloc[0]

    splits = pd.read_parquet(out / "splits.parquet")
    assert list(splits.columns) == [*catalog.columns, "subset"]
    assert set(splits["subset"]) == {"all"} and splits["id"].tolist() == catalog["id"].tolist()

    maps = json.loads((out / "label_maps.json").read_text())
    assert maps == {
        "fine_label": ["Golden-Delicious", "Granny-Smith", "Oat-Milk"],
        "coarse_label": ["Apple", "Milk"],
    }

    gallery = pd.read_parquet(out / "gallery.parquet")
    assert gallery["product_id"].tolist() == [0, 2]
    assert list(gallery.columns) == [
        "product_id",
        "fine_label",
        "coarse_id",
        "coarse_label",
        "relative_path",
        "description",
        "image_path",
        "image_sha1",
        "width",
        "height",
        "source_mode",
        "converted",
    ]
    milk = gallery.set_index("product_id").loc[2]
    assert milk["converted"] and milk["description"] == "Oat drink." and milk["coarse_label"] == "Milk"
    with Image.open(milk["image_path"]) as img:
        assert img.mode == "RGB"
    assert len((out / "data_version.txt").read_text().strip()) == 16


def test_rerun_is_incremental_and_versioned(grocery: Path, tmp_path: Path):
    out = tmp_path / "out"
    ingest_grocery(grocery, out)
    version = (out / "data_version.txt").read_text()
    again = ingest_grocery(grocery, out)
    assert (again["images_checked"], again["images_reused"]) == (0, 10)
    assert (out / "data_version.txt").read_text() == version

    changed = grocery / "val/Fruit/Apple/gd_010.jpg"
    _image(changed, size=(40, 40))
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))  # mtime moves even on coarse clocks
    third = ingest_grocery(grocery, out)
    assert (third["images_checked"], third["images_reused"]) == (1, 9)
    assert (out / "data_version.txt").read_text() != version
    catalog = pd.read_parquet(out / "catalog.parquet").set_index("id")
    assert (catalog.loc[6, "width"], catalog.loc[6, "height"]) == (40, 40)

    other = tmp_path / "copy"  # another source folder never reuses this manifest
    make_grocery(other)
    assert ingest_grocery(other, out)["images_reused"] == 0


def test_missing_list_file_and_bad_classes_rows(grocery: Path, tmp_path: Path):
    (grocery / "val.txt").unlink()
    with open(grocery / "classes.csv", "a") as f:
        f.write("Granny-Smith,7,Apple,0,/x.jpg,/x.txt\r\n")  # duplicate name
        f.write("Kiwi,1,Kiwi,5,/x.jpg,/x.txt\r\n")  # duplicate id
        f.write("Lime,8,Milk,0,/x.jpg,/x.txt\r\n")  # coarse id 0 is Apple
        f.write("just one field\r\n")
    parsed = parse_grocery(grocery)
    assert parsed.missing_list_files == ["val.txt"] and parsed.n_lines == 10
    assert parsed.rows["id"].tolist() == list(range(1, 8))  # test.txt ids follow train.txt's
    assert sorted(parsed.classes_quarantine["reason"]) == [
        "coarse_name_conflict",
        "duplicate_class_id",
        "duplicate_class_name",
        "unparseable_line",
    ]
    assert len(parsed.gallery) == 3
    counts = ingest_grocery(grocery, tmp_path / "out")
    assert counts["missing_list_files"] == 1 and counts["val"] == 0 and counts["classes_quarantined"] == 4


def test_not_a_grocery_folder(tmp_path: Path):
    with pytest.raises(GroceryFormatError, match="classes.csv"):
        parse_grocery(tmp_path)
    _write(tmp_path / "classes.csv", "id,gender,masterCategory\n1,Men,Apparel\n")
    with pytest.raises(GroceryFormatError, match="header"):
        parse_grocery(tmp_path)
    _write(tmp_path / "classes.csv", HEADER + "\nApple,0,Apple,0,/a.jpg,/a.txt\n")
    with pytest.raises(GroceryFormatError, match="none of"):
        parse_grocery(tmp_path)  # no list file at all
    _write(tmp_path / "train.txt", "id,gender\n1,Men\n")
    with pytest.raises(GroceryFormatError, match="none of the 2 lines"):
        parse_grocery(tmp_path)


def test_command_prints_counts(grocery: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main([str(grocery), str(tmp_path / "out"), "--workers", "1"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["clean"] == 6 and counts["gallery"] == 2


def test_grocery_catalog_asset(grocery: Path, data_env: Path, monkeypatch: pytest.MonkeyPatch):
    import dagster

    import product_attrs.demo
    from product_attrs.catalog.assets import grocery_catalog
    from product_attrs.resources import PathsResource

    monkeypatch.setattr(product_attrs.demo, "ensure_grocery", lambda settings: grocery, raising=False)
    result = dagster.materialize([grocery_catalog], resources={"paths": PathsResource()})
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "grocery_every_line_accounted_for" and check.passed
    (mat,) = result.get_asset_materialization_events()
    meta = mat.materialization.metadata
    assert meta["dagster/row_count"].value == 6 and meta["gallery"].value == 2
    assert meta["rows_per_split"].value == {"train": 3, "test": 2, "val": 1}
    assert (data_env / "grocery" / "catalog.parquet").exists()


@pytest.mark.real_data
def test_ingest_real_grocery_store(tmp_path: Path):
    root = real_data_dir("grocery-store")
    lines = {
        n: sum(1 for x in (root / n).read_text().splitlines() if x.strip())
        for n in ("train.txt", "val.txt", "test.txt")
    }
    assert lines == {"train.txt": 2640, "val.txt": 296, "test.txt": 2485}
    counts = ingest_grocery(root, tmp_path / "out", workers=2)
    assert (counts["train"], counts["val"], counts["test"]) == (2640, 296, 2485)
    assert counts["quarantined"] == 0 and counts["classes_quarantined"] == 0
    assert counts["gallery_quarantined"] == 0
    assert counts["gallery"] == 81 and counts["fine_labels"] == 81 and counts["coarse_labels"] == 43
    catalog = pd.read_parquet(tmp_path / "out" / "catalog.parquet")
    assert catalog["id"].tolist() == list(range(1, 5422))
    assert pd.read_parquet(tmp_path / "out" / "catalog_quarantine.parquet").empty
    gallery = pd.read_parquet(tmp_path / "out" / "gallery.parquet")
    assert gallery["description"].notna().all() and gallery["image_path"].map(os.path.isfile).all()


@pytest.mark.timeout(30)  # before the fix a FIFO was "missing"; one that is_file() could not tell hung
def test_photos_that_are_not_regular_files_or_lead_outside_are_quarantined(grocery: Path, tmp_path: Path):
    outside = tmp_path / "elsewhere"
    _image(outside / "secret.jpg")
    _image(outside / "folder/gd_001.jpg")
    (grocery / GD / "missing.jpg").symlink_to(outside / "secret.jpg")  # id 5: a link out of the root
    os.mkfifo(grocery / GD / "empty.jpg.fifo")
    (grocery / GD / "empty.jpg").unlink()
    os.rename(grocery / GD / "empty.jpg.fifo", grocery / GD / "empty.jpg")  # id 4: a FIFO
    (grocery / "val/Fruit/Apple").rename(grocery / "val/Fruit/Apple-real")
    (grocery / "val/Fruit/Apple").symlink_to(outside / "folder")  # ids 6, 7: a folder link out
    counts = ingest_grocery(grocery, tmp_path / "out")
    q = pd.read_parquet(tmp_path / "out/catalog_quarantine.parquet")
    reasons = _reasons(q, "catalog")
    assert reasons == {
        "4": "not_a_regular_file",
        "5": "link_outside_catalog",
        "6": "link_outside_catalog",
        "7": "link_outside_catalog",
    }
    assert counts["clean"] + counts["quarantined"] == counts["lines"]
    manifest = pd.read_parquet(tmp_path / "out/image_manifest.parquet").set_index("file_name")
    assert pd.isna(manifest.loc[f"{GD}/missing.jpg", "sha1"]), "the linked file is never read"
