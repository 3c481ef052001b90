"""`make clean-data` empties a data root and nothing else: never the repository, "/", $HOME, or a folder that
the project did not set up (an empty PRODUCT_ATTRS_DATA_DIR once deleted the whole repository)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from product_attrs.data_root import MARKER, NotADataRoot, check, mark

REPO = Path(__file__).resolve().parents[1]


def _skeleton(folder: Path) -> Path:
    """A copy of the repository's skeleton: what the tests run, so the real checkout is never a target."""
    (folder / "product_attrs").mkdir(parents=True)
    shutil.copy(REPO / "Makefile", folder / "Makefile")
    shutil.copy(REPO / "product_attrs" / "data_root.py", folder / "product_attrs" / "data_root.py")
    (folder / "product_attrs" / "__init__.py").write_text("")
    (folder / "pyproject.toml").write_text("# the project\n")
    return folder


def _clean(path: str, repo: Path, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "product_attrs.data_root", "clean", path],
        cwd=repo,
        env={**os.environ, "HOME": str(home), "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """A home folder holding a repository copy and an unmarked folder; home and repository carry the marker
    (so only the rule that protects them can)."""
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    (home / "photos" / "keep.txt").write_text("precious")
    mark(_skeleton(home / "project"))
    mark(home)
    return tmp_path


@pytest.mark.parametrize(
    "path",
    ["", "  ", "{home}", "{tmp}", "{home}/project", "{home}/project/product_attrs/..", "{home}/photos"],
    ids=["empty", "blank", "home", "above home", "repository", "repository via ..", "unmarked"],
)
def test_clean_refuses_what_is_not_a_data_root_and_deletes_nothing(world: Path, path: str):
    home = world / "home"
    before = _tree(world)
    result = _clean(path.format(home=home, tmp=world), repo=home / "project", home=home)
    assert result.returncode == 2, result
    assert result.stderr.startswith("clean-data: ") and "refusing to delete anything" in result.stderr
    assert _tree(world) == before


def test_the_file_system_root_and_a_missing_folder_are_no_data_roots(tmp_path: Path):
    """Checked in process, without ever running a delete on "/"."""
    with pytest.raises(NotADataRoot, match="file system root"):
        check("/")
    with pytest.raises(NotADataRoot, match="not a folder"):
        check(str(tmp_path / "missing"))


def test_clean_empties_a_marked_data_root_but_keeps_its_readme_and_follows_no_symlink(world: Path):
    home = world / "home"
    data = mark(home / "project" / "data")
    (data / "README.md").write_text("what is here")
    (data / "models" / "m").mkdir(parents=True)
    (data / "warehouse.duckdb").write_bytes(b"x")
    (data / "photos").symlink_to(home / "photos")
    result = _clean(str(data), repo=home / "project", home=home)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in data.iterdir()) == [MARKER, "README.md"]
    assert (home / "photos" / "keep.txt").read_text() == "precious"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("how", ["command line", "environment"])
def test_make_clean_data_with_an_empty_data_dir_deletes_nothing(tmp_path: Path, how: str):
    """The real Makefile target, run in a copy of the repository's skeleton."""
    copy = _skeleton(tmp_path / "repo")
    before = _tree(copy)
    venv = Path(sys.executable).parent.parent
    args = ["make", "-s", "-C", str(copy), "clean-data", f"VENV={venv}"]
    env = {**os.environ, "HOME": str(tmp_path)}
    if how == "command line":
        args.append("PRODUCT_ATTRS_DATA_DIR=")
    else:
        env["PRODUCT_ATTRS_DATA_DIR"] = ""
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "PRODUCT_ATTRS_DATA_DIR is empty" in result.stderr
    assert _tree(copy) == before
