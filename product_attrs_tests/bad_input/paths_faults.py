"""Names and paths from people and stores we do not control: partition keys typed in the Dagster UI,
folders dropped under incoming/, model files, MLflow tags, the data root `make clean-data` empties, the
copies a killed publish leaves. None may lead a read, a write or a delete out of its folder, or run code."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch

from product_attrs_tests.bad_input.cases import Fault, raised


def _without(text: str, folder: Path) -> str:
    return text.replace(str(folder.resolve()), "<tmp>").replace(str(folder), "<tmp>")


def _key(key: str, symlink: str | None = None):
    def run(folder: Path) -> str:
        from product_attrs.extraction.extract import items_for_batch

        incoming = folder / "data" / "incoming"
        (folder / "x").mkdir()
        (folder / "x" / "1.jpg").write_bytes(b"not read")
        incoming.mkdir(parents=True)
        if symlink:
            (incoming / symlink).symlink_to(folder / "x")
        try:
            items = items_for_batch(key, folder / "splits.parquet", incoming)
        except ValueError as exc:
            return _without(raised(exc), folder)
        return f"read {len(items)} images"

    return run


def _folder(name: str):
    def run(folder: Path) -> str:
        from product_attrs.automation import incoming_keys

        keys, refused = incoming_keys([name])
        return f"skipped: {refused[0]}" if refused else f"batch {keys[0]}"

    return run


class _Payload:
    def __reduce__(self):
        return (exec, ("import os; os.environ['PRODUCT_ATTRS_PWNED'] = '1'",))


def _pickled(load):
    def run(folder: Path) -> str:
        path = folder / "model.pt"
        torch.save({"model": {"w": torch.zeros(1)}, "extra": _Payload()}, path)
        try:
            load(path)
        except Exception as exc:  # noqa: BLE001 - the outcome is reported
            outcome = _without(raised(exc), folder)
        else:
            outcome = "loaded"
        if os.environ.pop("PRODUCT_ATTRS_PWNED", None):
            outcome += " (and ran its code)"
        return outcome

    return run


def _checkpoint(path: Path):
    from product_attrs.modeling.checkpoint import load_checkpoint

    return load_checkpoint(path)


def _weights(path: Path):
    from product_attrs.modeling.weights import read_state_dict

    return read_state_dict(path)


class _Tracker:
    """The MLflow answer for a champion whose tags someone edited in the MLflow UI."""

    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = tags

    def champion(self, name: str):
        return "1", self.tags


def _tag(tags: dict[str, str]):
    def run(folder: Path) -> str:
        from product_attrs.modeling.registry import Registry

        registry = Registry(folder / "models", "sqlite:///unused.db")
        registry._tracker = _Tracker(tags)
        try:
            return f"served {registry.champion_dir('toy_model')}"
        except Exception as exc:  # noqa: BLE001 - the outcome is reported
            return _without(raised(exc), folder)

    return run


def _clean(path: str | None, marked: bool = False):
    def run(folder: Path) -> str:
        from product_attrs.data_root import check, mark

        (folder / "keep.txt").write_text("x")
        if marked:
            mark(folder)
        try:
            check(str(folder) if path is None else path)
        except ValueError as exc:
            return _without(raised(exc), folder)
        return "would empty it"

    return run


def _failed_commit(folder: Path) -> str:
    from product_attrs.warehouse.lake import Lake
    from product_attrs.warehouse.publish import publish_tables, read_table

    lake = Lake(f"sqlite:{folder / 'catalog.sqlite'}", folder / "data")
    publish_tables(lake, {"t": pd.DataFrame({"x": [1]})})
    try:  # the new table is written, then a view fails: the whole commit must go
        publish_tables(lake, {"t": pd.DataFrame({"x": [2]})}, views={"v": "SELECT * FROM nowhere"})
    except Exception as exc:  # noqa: BLE001 - the outcome names what was raised
        kept = read_table(lake, "SELECT x FROM t")["x"].tolist()
        return f"{type(exc).__name__}; the lake keeps its last commit (x = {kept})"
    return "committed"


FAULTS = [
    Fault(
        "partition key",
        "'incoming-../../../x' typed in the UI",
        "error: UnsafePartitionKey: partition key 'incoming-../../../x' may contain only letters, digits, "
        "'.', '_', '-' (no leading '.', no '..')",
        _key("incoming-../../../x"),
    ),
    Fault(
        "partition key",
        "'incoming-' (the whole incoming folder)",
        "error: UnsafePartitionKey: incoming folder name '' is empty",
        _key("incoming-"),
    ),
    Fault(
        "incoming folder name",
        "a symlink to a folder elsewhere",
        "error: UnsafePartitionKey: incoming-link: folder 'link' leads outside the incoming folder",
        _key("incoming-link", symlink="link"),
    ),
    Fault(
        "incoming folder name",
        "characters a key may not have ('new photos')",
        "skipped: incoming folder name 'new photos' may contain only letters, digits, '.', '_', '-' "
        "(no leading '.', no '..')",
        _folder("new photos"),
    ),
    Fault(
        "training checkpoint",
        "a pickle payload (code run on load)",
        "error: CheckpointError: checkpoint <tmp>/model.pt cannot be read safely (it holds pickled objects, "
        "not only tensors: a file that could run code when loaded is refused)",
        _pickled(_checkpoint),
    ),
    Fault(
        "model weights file",
        "a pickle payload (code run on load)",
        "error: WeightsUnavailableError: weights file <tmp>/model.pt is not a PyTorch state dict (it holds "
        "pickled objects, not only tensors: a file that could run code when loaded is refused)",
        _pickled(_weights),
    ),
    Fault(
        "MLflow tag",
        "champion 'version' tag edited to '../../x'",
        "error: RegistryError: champion v1 of toy_model has the 'version' tag '../../x', which is not a "
        "version folder name: refusing to use it as a path",
        _tag({"version": "../../x"}),
    ),
    Fault(
        "MLflow tag",
        "champion 'version' tag edited to '/etc'",
        "error: RegistryError: champion v1 of toy_model has the 'version' tag '/etc', which is not a version "
        "folder name: refusing to use it as a path",
        _tag({"version": "/etc"}),
    ),
    Fault(
        "clean-data root",
        "PRODUCT_ATTRS_DATA_DIR empty",
        "error: NotADataRoot: PRODUCT_ATTRS_DATA_DIR is empty: refusing to delete anything",
        _clean(""),
    ),
    Fault(
        "clean-data root",
        "/",
        "error: NotADataRoot: / is the file system root or holds it: refusing to delete anything",
        _clean("/"),
    ),
    Fault(
        "clean-data root",
        "a folder the project did not set up (no marker)",
        "error: NotADataRoot: <tmp> has no .product_attrs_data_root marker, so it was not set up as a data "
        "root: refusing to delete anything (if it is one, run: python -m product_attrs.data_root mark <tmp>)",
        _clean(None),
    ),
    Fault(
        "warehouse publish",
        "a publish whose view fails after its table was written",
        "CatalogException; the lake keeps its last commit (x = [1])",
        _failed_commit,
    ),
]
