"""Grocery Store list files and classes.csv: a bad line is quarantined with its reason; the run goes on."""

from __future__ import annotations

import os
from pathlib import Path

from product_attrs.catalog.grocery_layout import parse_grocery
from product_attrs_tests.bad_input.cases import Fault, quarantined, raised

HEADER = (
    "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),"
    "Iconic Image Path (str),Product Description Path (str)\n"
)
CLASS = "Golden-Delicious,0,Apple,0,/iconic/GD_Iconic.jpg,/iconic/GD_Description.txt\n"
GOOD = "train/Apple/gd_001.jpg, 0, 0\n"
BIG = "x" * 140_000  # over the csv module's 128 KiB field limit


def _folder(folder: Path, classes: str = "", train: str = "") -> Path:
    (folder / "classes.csv").write_text(HEADER + CLASS + classes, encoding="utf-8")
    (folder / "train.txt").write_text(GOOD + train, encoding="utf-8")
    return folder


def _list_line(line: str):
    def run(folder: Path) -> str:
        parsed = parse_grocery(_folder(folder, train=line))
        assert len(parsed.rows) == 1 and parsed.n_lines == 2, "the good line is kept, the bad one counted"
        return quarantined(parsed.quarantine["reason"])

    return run


def _classes_line(line: str):
    def run(folder: Path) -> str:
        parsed = parse_grocery(_folder(folder, classes=line))
        assert len(parsed.gallery) == 1, "the good class is kept"
        return quarantined(parsed.classes_quarantine["reason"])

    return run


def _path_kept_whole(folder: Path) -> str:
    parsed = parse_grocery(_folder(folder, train="train/Apple/gd\u2028002.jpg, 0, 0\n"))
    whole = parsed.rows["relative_path"].tolist() == ["train/Apple/gd_001.jpg", "train/Apple/gd\u2028002.jpg"]
    return f"kept: {len(parsed.rows)} rows" + (", path whole" if whole else ", path cut")


def _description(make):
    def run(folder: Path) -> str:
        _folder(folder)
        (folder / "iconic").mkdir()
        make(folder / "iconic" / "GD_Description.txt", folder)
        parsed = parse_grocery(folder)
        text = parsed.gallery["description"].iloc[0]
        kept = f"kept: {len(parsed.gallery)} class, description {text if isinstance(text, str) else 'none'}"
        refused = parsed.classes_quarantine
        return f"{kept}; {quarantined(refused['reason'])}" if len(refused) else kept

    return run


def _fifo(path: Path, folder: Path) -> None:
    os.mkfifo(path)  # reading it would block until a writer comes


def _link_out(path: Path, folder: Path) -> None:
    secret = folder.parent / f"{folder.name}-secret.txt"
    secret.write_text("secret")
    path.symlink_to(secret)


def _big_header(folder: Path) -> str:
    (folder / "classes.csv").write_text(f'"{BIG}",Class ID (int)\n' + CLASS)
    (folder / "train.txt").write_text(GOOD)
    try:
        parse_grocery(folder)
    except Exception as exc:  # noqa: BLE001 - the outcome is the error, whatever it is
        return raised(exc).replace(str(folder), "<folder>")
    return "no error"


FAULTS = [
    Fault(
        "grocery train.txt",
        "a class id with a superscript digit (0²)",
        "quarantine: unparseable_line",
        _list_line("train/Apple/gd_002.jpg, 0², 0\n"),
    ),
    Fault(
        "grocery train.txt",
        "a class id in Arabic-Indic digits (٠)",
        "quarantine: unparseable_line",
        _list_line("train/Apple/gd_002.jpg, ٠, 0\n"),
    ),
    Fault(
        "grocery train.txt",
        "a class id beyond int64",
        "quarantine: id_out_of_range",
        _list_line("train/Apple/gd_002.jpg, 99999999999999999999, 0\n"),
    ),
    Fault(
        "grocery train.txt",
        "a NUL byte in a line",
        "quarantine: nul_byte",
        _list_line("train/Apple/gd\x00002.jpg, 0, 0\n"),
    ),
    Fault(
        "grocery train.txt",
        "a line over 128 KiB",
        "quarantine: field_too_large",
        _list_line(f"train/Apple/{BIG}.jpg, 0, 0\n"),
    ),
    Fault(
        "grocery train.txt",
        "a path holding U+2028 (str.splitlines breaks there)",
        "kept: 2 rows, path whole",
        _path_kept_whole,
    ),
    Fault(
        "classes.csv",
        "a class id with a superscript digit (1²)",
        "quarantine: unparseable_line",
        _classes_line("Granny-Smith,1²,Apple,0,/a.jpg,/a.txt\n"),
    ),
    Fault(
        "classes.csv",
        "a class id beyond int64",
        "quarantine: id_out_of_range",
        _classes_line("Granny-Smith,99999999999999999999,Apple,0,/a.jpg,/a.txt\n"),
    ),
    Fault(
        "classes.csv",
        "a NUL byte in a line",
        "quarantine: nul_byte",
        _classes_line("Granny-Smith,1,Apple,0,/a\x00.jpg,/a.txt\n"),
    ),
    Fault(
        "classes.csv",
        "a quoted field over 128 KiB",
        "quarantine: field_too_large",
        _classes_line(f'Granny-Smith,1,Apple,0,/a.jpg,"{BIG}"\n'),
    ),
    Fault(
        "classes.csv",
        "an unquoted field over 128 KiB",
        "quarantine: field_too_large",
        _classes_line(f"Granny-Smith,1,Apple,0,/a.jpg,{BIG}\n"),
    ),
    Fault(
        "classes.csv",
        "a header with a field over 128 KiB",
        "error: GroceryFormatError: <folder>/classes.csv: the header line is not csv "
        "(a field is longer than 131,072 characters)",
        _big_header,
    ),
    Fault(
        "grocery description file",
        "a FIFO",
        "kept: 1 class, description none; quarantine: not_a_regular_file",
        _description(_fifo),
    ),
    Fault(
        "grocery description file",
        "a symlink to a file outside the dataset folder",
        "kept: 1 class, description none; quarantine: link_outside_catalog",
        _description(_link_out),
    ),
]
