"""The Grocery Store Dataset's layout: its list files and ``classes.csv``, read line by line into rows.

Layout of the source folder (Klasson et al., WACV 2019): ``train.txt``, ``val.txt`` and ``test.txt`` with
lines ``<relative image path>, <fine id>, <coarse id>``, and ``classes.csv`` with one row per product (its
names, ids, an iconic catalog image and a description file; paths start with ``/`` but are relative to the
root). Every non-blank list line becomes a row or a quarantine record with a reason; nothing here opens an
image (``catalog.grocery`` decodes and cleans them).

Photo ids are assigned in reading order (train.txt, then val.txt, then test.txt; line order within a
file), starting at 1 and counting only lines that become rows: stable for unchanged list files, and a bad
line never shifts the ids of the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from product_attrs.catalog.styles import (
    FIELD_LIMIT,
    INT64_MAX,
    QUARANTINE_COLUMNS,
    ascii_id,
    line_fields,
    split_lines,
)
from product_attrs.paths import FileTooLarge, NotARegularFile, PathOutsideRoot, confine, read_regular

#: split name -> list file, in the order ids are assigned.
LIST_FILES: dict[str, str] = {"train": "train.txt", "val": "val.txt", "test": "test.txt"}
CLASSES_FILE = "classes.csv"
#: The first five columns are required; the description column is optional.
CLASSES_HEADER = [
    "Class Name (str)",
    "Class ID (int)",
    "Coarse Class Name (str)",
    "Coarse Class ID (int)",
    "Iconic Image Path (str)",
    "Product Description Path (str)",
]
PHOTO_COLUMNS = [
    "id",
    "split",
    "relative_path",
    "list_file",
    "line",
    "fine_id",
    "coarse_id",
    "fine_label",
    "coarse_label",
]
GALLERY_COLUMNS = ["product_id", "fine_label", "coarse_id", "coarse_label", "relative_path", "description"]
#: A description file larger than this is left out (the gallery row is kept without it).
DESCRIPTION_LIMIT = 1 << 20


class GroceryFormatError(ValueError):
    """The folder is not a Grocery Store Dataset layout: nothing line-level can be done."""


@dataclass(frozen=True)
class GroceryClass:
    fine_id: int
    fine_label: str
    coarse_id: int
    coarse_label: str


@dataclass
class ParsedGrocery:
    rows: pd.DataFrame  # PHOTO_COLUMNS, one per good list line
    gallery: pd.DataFrame  # GALLERY_COLUMNS, one per good classes.csv row
    quarantine: pd.DataFrame  # bad list lines (source = the list file)
    classes_quarantine: pd.DataFrame  # bad classes.csv lines (source = classes.csv)
    lines: dict[str, int]  # non-blank lines per list file
    n_blank: int
    missing_list_files: list[str]

    @property
    def n_lines(self) -> int:
        return sum(self.lines.values())


def _quarantine_row(source: str, record_id: str, reason: str, detail: str) -> dict:
    return {"source": source, "record_id": record_id, "reason": reason, "detail": detail[:800]}


def relative_path(raw: str) -> str | None:
    """A path relative to the root, or None when it is empty or would leave the root (``..``)."""
    text = raw.strip().replace("\\", "/").lstrip("/")
    parts = PurePosixPath(text).parts
    if not text or ".." in parts:
        return None
    return str(PurePosixPath(*parts))


def _read_lines(path: Path) -> list[str]:
    """Undecodable bytes are replaced rather than failing the file: the line is then judged alone."""
    return split_lines(read_regular(path).decode("utf-8", errors="replace").lstrip("\ufeff"))


def _id(text: str) -> int | str:
    """A class id (the dataset's start at 0), or the reason it is not one."""
    reason = ascii_id(text.strip(), minimum=0)
    return "unparseable_line" if reason == "bad_id" else reason


def _check_header(lines: list[str], path: Path) -> None:
    if not lines:
        raise GroceryFormatError(f"{path} is empty")
    fields = line_fields(lines[0])
    if isinstance(fields, tuple):
        raise GroceryFormatError(f"{path}: the header line is not csv ({fields[1]})")
    header = [h.strip().lower() for h in fields]
    expected = [h.lower() for h in CLASSES_HEADER]
    if header[:5] != expected[:5]:
        raise GroceryFormatError(f"{path}: header {header!r} is not the Grocery Store's {CLASSES_HEADER}")


def parse_classes(root: Path) -> tuple[dict[int, GroceryClass], pd.DataFrame, pd.DataFrame]:
    """classes.csv -> (classes by fine id, gallery rows, quarantine); the first good row of an id wins."""
    path = root / CLASSES_FILE
    if not path.is_file():
        raise GroceryFormatError(f"no {CLASSES_FILE} in {root}: not a Grocery Store Dataset folder")
    lines = _read_lines(path)
    _check_header(lines, path)
    classes: dict[int, GroceryClass] = {}
    names: dict[str, int] = {}
    coarse_names: dict[int, str] = {}
    gallery: list[dict] = []
    quarantine: list[dict] = []

    def reject(line_no: int, raw: str, reason: str, detail: str) -> None:
        quarantine.append(_quarantine_row(CLASSES_FILE, f"line:{line_no}", reason, f"{detail} | raw: {raw}"))

    n_data = 0
    for line_no, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        n_data += 1
        fields = line_fields(raw)
        if isinstance(fields, tuple):
            reject(line_no, raw.replace("\x00", "\\0"), *fields)
            continue
        fields = [f.strip() for f in fields]
        if len(fields) < 5:
            reject(line_no, raw, "unparseable_line", f"expected at least 5 fields, saw {len(fields)}")
            continue
        name, fine, coarse_name, coarse = fields[0], _id(fields[1]), fields[2], _id(fields[3])
        if "unparseable_line" in (fine, coarse) or not name or not coarse_name:
            reject(line_no, raw, "unparseable_line", "needs a name, an integer id, a coarse name and id")
            continue
        if isinstance(fine, str) or isinstance(coarse, str):
            reject(line_no, raw, "id_out_of_range", f"class ids must be in 0..{INT64_MAX}")
            continue
        if fine in classes:
            reject(line_no, raw, "duplicate_class_id", f"class id {fine} already on an earlier line")
            continue
        if name in names:
            reject(line_no, raw, "duplicate_class_name", f"{name!r} already has class id {names[name]}")
            continue
        if coarse_names.setdefault(coarse, coarse_name) != coarse_name:
            earlier = coarse_names[coarse]
            reject(line_no, raw, "coarse_name_conflict", f"coarse id {coarse} is {earlier!r} earlier")
            continue
        classes[fine] = GroceryClass(fine, name, coarse, coarse_name)
        names[name] = fine
        description_path = relative_path(fields[5]) if len(fields) > 5 else None
        description, problem = _description(root, description_path)
        if problem is not None:  # the class stays; its description file is the record refused
            quarantine.append(_quarantine_row(CLASSES_FILE, f"line:{line_no}:description", *problem))
        gallery.append(
            {
                "product_id": fine,
                "fine_label": name,
                "coarse_id": coarse,
                "coarse_label": coarse_name,
                "relative_path": relative_path(fields[4]),
                "description": description,
            }
        )
    if n_data and not classes:
        raise GroceryFormatError(f"{path}: none of its {n_data} rows is a valid class")
    frame = pd.DataFrame(gallery, columns=GALLERY_COLUMNS).astype(
        {
            "product_id": "int64",
            "coarse_id": "int64",
            "fine_label": "string",
            "coarse_label": "string",
            "relative_path": "string",
            "description": "string",
        }
    )
    return classes, frame, pd.DataFrame(quarantine, columns=QUARANTINE_COLUMNS)


def _description(root: Path, rel: str | None) -> tuple[str | None, tuple[str, str] | None]:
    """The text of a description file and, when it may not be read, (reason, detail) for quarantine.

    A file that leads out of the dataset folder (a link to a credentials file would end up in the
    published ``gallery.description``), that is not a regular file (a FIFO would block) or that is over
    `DESCRIPTION_LIMIT` is refused; a missing one is simply no description, as the dataset has classes
    without one."""
    if rel is None:
        return None, None
    try:
        path = confine(root, rel)
    except PathOutsideRoot as exc:  # a symlink loop too
        return None, ("link_outside_catalog", f"description {rel!r}: {exc}")
    try:
        data = read_regular(path, DESCRIPTION_LIMIT)
    except FileNotFoundError:
        return None, None
    except NotARegularFile as exc:
        return None, ("not_a_regular_file", f"description {rel!r}: {exc}")
    except FileTooLarge as exc:
        return None, ("description_too_large", f"description {rel!r}: {exc}")
    except OSError as exc:
        return None, ("unreadable_file", f"description {rel!r}: {exc}")
    return data.decode("utf-8", errors="replace").strip(), None


@dataclass
class _ListState:
    """What reading the list files accumulates: rows, quarantine and the first line of each path."""

    classes: dict[int, GroceryClass]
    rows: list[dict]
    quarantine: list[dict]
    seen: dict[str, str]
    n_shaped: int = 0
    n_blank: int = 0


def _parse_line(state: _ListState, split: str, list_file: str, line_no: int, raw: str) -> None:
    def reject(reason: str, detail: str) -> None:
        row = _quarantine_row(list_file, f"line:{line_no}", reason, f"{detail} | raw: {raw}")
        state.quarantine.append(row)

    if "\x00" in raw:
        raw = raw.replace("\x00", "\\0")
        return reject("nul_byte", "line contains a NUL byte")
    if len(raw) > FIELD_LIMIT:
        raw = raw[:500]
        return reject("field_too_large", f"the line is longer than {FIELD_LIMIT:,} characters")
    parts = raw.rsplit(",", 2)  # the path is first, so a comma inside it does not break the ids
    if len(parts) != 3:
        return reject("unparseable_line", "expected '<path>, <fine id>, <coarse id>'")
    fine, coarse = _id(parts[1]), _id(parts[2])
    if "unparseable_line" in (fine, coarse) or not parts[0].strip():
        return reject("unparseable_line", "expected '<path>, <fine id>, <coarse id>' with integer ids")
    state.n_shaped += 1
    if isinstance(fine, str) or isinstance(coarse, str):
        return reject("id_out_of_range", f"class ids must be in 0..{INT64_MAX}")
    rel = relative_path(parts[0])
    if rel is None:
        return reject("bad_path", f"path {parts[0].strip()!r} leaves the dataset folder")
    cls = state.classes.get(fine)
    if cls is None:
        return reject("unknown_class_id", f"fine id {fine} is not in {CLASSES_FILE}")
    if cls.coarse_id != coarse:
        return reject("coarse_mismatch", f"coarse id {coarse}; {CLASSES_FILE} has {cls.coarse_id} for {fine}")
    if rel in state.seen:
        return reject("duplicate_path", f"{rel} already listed at {state.seen[rel]}")
    state.seen[rel] = f"{list_file}:{line_no}"
    state.rows.append(
        {
            "id": len(state.rows) + 1,
            "split": split,
            "relative_path": rel,
            "list_file": list_file,
            "line": line_no,
            "fine_id": fine,
            "coarse_id": coarse,
            "fine_label": cls.fine_label,
            "coarse_label": cls.coarse_label,
        }
    )


def parse_grocery(root: Path) -> ParsedGrocery:
    """Read classes.csv and the list files line by line; see the module docstring for ids and rules."""
    root = Path(root)
    classes, gallery, classes_quarantine = parse_classes(root)
    state = _ListState(classes=classes, rows=[], quarantine=[], seen={})
    lines: dict[str, int] = {}
    missing: list[str] = []
    for split, name in LIST_FILES.items():
        path = root / name
        if not path.is_file():
            missing.append(name)
            continue
        lines[name] = 0
        for line_no, raw in enumerate(_read_lines(path), start=1):
            if not raw.strip():
                state.n_blank += 1
                continue
            lines[name] += 1
            _parse_line(state, split, name, line_no, raw)
    if len(missing) == len(LIST_FILES):
        names = list(LIST_FILES.values())
        raise GroceryFormatError(f"none of {names} in {root}: not a Grocery Store Dataset folder")
    if sum(lines.values()) and not state.n_shaped:
        raise GroceryFormatError(
            f"none of the {sum(lines.values())} lines of {list(lines)} in {root} "
            "reads '<path>, <fine id>, <coarse id>'"
        )
    rows = pd.DataFrame(state.rows, columns=PHOTO_COLUMNS).astype(
        {
            "id": "int64",
            "split": "string",
            "relative_path": "string",
            "list_file": "string",
            "line": "int64",
            "fine_id": "int64",
            "coarse_id": "int64",
            "fine_label": "string",
            "coarse_label": "string",
        }
    )
    return ParsedGrocery(
        rows=rows,
        gallery=gallery,
        quarantine=pd.DataFrame(state.quarantine, columns=QUARANTINE_COLUMNS),
        classes_quarantine=classes_quarantine,
        lines=lines,
        n_blank=state.n_blank,
        missing_list_files=missing,
    )


def count_list_lines(root: Path) -> int:
    """Non-blank lines of the list files, counted without the parser: what the asset check compares to."""
    return sum(
        sum(1 for line in _read_lines(root / name) if line.strip())
        for name in LIST_FILES.values()
        if (root / name).is_file()
    )
