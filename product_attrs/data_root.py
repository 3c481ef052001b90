"""What may be wiped as a data root: only a folder the project itself made one.

`make clean-data` deletes everything in ``$PRODUCT_ATTRS_DATA_DIR``. With that variable empty it once ran
``find -mindepth 1 -delete`` in the repository. So the folder must carry the marker file `MARKER`, which
`mark` writes when the project first sets a data root up (``python -m product_attrs.automation``, run by
``make dagster-home``, ``make demo`` and ``make ui``), and must not be "/", the repository, the home folder
or a folder above one of them, marker or not. Standard library only: `make clean-data` needs no venv.

    python -m product_attrs.data_root clean PATH    # empty PATH, exit code 2 and a message when refused
    python -m product_attrs.data_root mark PATH     # declare an existing folder a data root
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

MARKER = ".product_attrs_data_root"
#: Kept by `clean`: the marker itself and the folder's README.
KEEP = {MARKER, "README.md"}
REPOSITORY = Path(__file__).resolve().parents[1]


class NotADataRoot(ValueError):
    """A folder that `clean` refuses to empty; the message says why and what to do."""


def mark(root: Path) -> Path:
    """Create ``root`` if needed and declare it a data root (idempotent)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    marker = root / MARKER
    if not marker.exists():
        marker.write_text("This folder is a product_attrs data root: `make clean-data` may empty it.\n")
    return root


def allowed(path: str) -> Path:
    """The resolved folder ``path`` names, unless it is empty, "/", the repository, the home folder or a
    folder above one of them (`NotADataRoot`): those are never a data root, marker or not."""
    if not path or not path.strip():
        raise NotADataRoot("PRODUCT_ATTRS_DATA_DIR is empty: refusing to delete anything")
    root = Path(path).expanduser().resolve()
    protected = {"the file system root": Path("/"), "the repository": REPOSITORY}
    home = os.environ.get("HOME")
    if home:
        protected["the home folder"] = Path(home).resolve()
    for what, folder in protected.items():
        if folder == root or folder.is_relative_to(root):
            raise NotADataRoot(f"{root} is {what} or holds it: refusing to delete anything")
    return root


def check(path: str) -> Path:
    """The data root ``path`` names, or `NotADataRoot` saying why it must not be emptied."""
    root = allowed(path)
    if not root.is_dir():
        raise NotADataRoot(f"{root} is not a folder")
    if not (root / MARKER).is_file():
        raise NotADataRoot(
            f"{root} has no {MARKER} marker, so it was not set up as a data root: refusing to delete "
            f"anything (if it is one, run: python -m product_attrs.data_root mark {root})"
        )
    return root


def clean(path: str) -> list[str]:
    """Delete everything in the data root ``path`` but `KEEP`; symlinks are removed, never followed."""
    root = check(path)
    removed = []
    for entry in sorted(root.iterdir()):
        if entry.name in KEEP:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry.name)
    return removed


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("clean", "mark"):
        print("usage: python -m product_attrs.data_root clean|mark PATH", file=sys.stderr)
        return 2
    command, path = args
    try:
        if command == "mark":
            print(f"{mark(allowed(path))} is a data root")
        else:
            removed = clean(path)
            print(f"emptied {Path(path).resolve()} ({len(removed)} entries removed)")
    except NotADataRoot as exc:
        print(f"clean-data: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
