"""The refresh: a correction changes the training rows; the champion moves only on a better test top-1."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from product_attrs.catalog.corrections import check_corrections, clean_path
from product_attrs.classification.config import PROFILES, TrainConfig
from product_attrs.classification.task import ClassificationTask
from product_attrs.classification.train import train
from product_attrs.io import write_parquet
from product_attrs.modeling.config import ConfigError, resolve
from product_attrs.modeling.distributed import DistInfo
from product_attrs.modeling.registry import Registry
from product_attrs.modeling.versions import VersionManifest, VersionStore
from product_attrs_tests.classification.helpers import fast_config

HEADER = "product_id,head,value,who,when,new_label\n"


def _corrections(tmp_path: Path, catalog: Path, lines: list[str]) -> Path:
    """Corrections checked like the label_corrections asset does, written where 'auto' finds them."""
    import json

    folder = tmp_path / "data" / "corrections"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "c.csv").write_text(HEADER + "\n".join(lines) + "\n")
    splits = pd.read_parquet(catalog / "splits.parquet")
    result = check_corrections(folder, splits, json.loads((catalog / "label_maps.json").read_text()))
    assert result.quarantine.empty, result.quarantine
    return write_parquet(result.clean, clean_path(tmp_path / "data"))


def _task(cfg: TrainConfig, catalog: Path) -> ClassificationTask:
    return ClassificationTask(cfg, catalog, DistInfo(), torch.device("cpu"), lambda m: None, False)


def test_the_refresh_profile_is_data():
    cfg = resolve(TrainConfig, PROFILES, "refresh")
    assert (cfg.start_from, cfg.corrections, cfg.correction_weight) == ("champion", "auto", 3)
    assert cfg.freeze_stages > 0 and cfg.phase1_epochs == 0
    with pytest.raises(ConfigError, match="correction_weight"):
        resolve(TrainConfig, PROFILES, "refresh", None, {"correction_weight": 0})


def test_a_correction_changes_the_next_refreshs_training_rows(tiny_catalog, tmp_path):
    splits = pd.read_parquet(tiny_catalog / "splits.parquet")
    row = splits[(splits["split"] == "train") & (splits["article_type"] == "Red Circle")].iloc[0]
    pid = int(row["id"])
    path = _corrections(
        tmp_path, tiny_catalog, [f"{pid},article_type,Green Square,ana,2026-11-29T10:00:00Z,"]
    )
    before = _task(fast_config(), tiny_catalog)
    after = _task(fast_config(corrections=str(path), correction_weight=3), tiny_catalog)

    def label(task):
        rows = pd.concat([task.train_rows, task.val_rows])
        return rows.loc[rows["id"] == pid, "article_type"].item()

    assert label(before) == "Red Circle" and label(after) == "Green Square"
    assert len(after.corrections_seen) == 1 and before.corrections_seen == []
    assert after.data_version != before.data_version  # a draft never resumes with other corrections
    assert after.test_rows["id"].tolist() == before.test_rows["id"].tolist()  # the evaluation set is fixed
    if pid in set(after.train_rows["id"]):  # not held out for validation: weighted 3x in every phase
        rows = after.weighted(after.train_rows.assign(_pos=range(len(after.train_rows))))
        assert (rows["id"] == pid).sum() == 3 and len(rows) == len(after.train_rows) + 2


def test_the_champion_does_not_move_on_a_worse_refresh(tiny_catalog, tmp_path):
    """A real champion, then a refresh from it whose corrections teach nonsense (every training product
    relabelled to one class, weighted 3x): it scores worse on the fixed test split and is not promoted; its
    manifest still records the corrections it saw and the champion it started from."""
    registry = Registry(tmp_path / "models", f"sqlite:///{tmp_path / 'mlflow.db'}", f"file://{tmp_path}/art")
    quiet = {"device": "cpu", "log": lambda m: None, "allow_download": False}
    champion = train(fast_config(), tiny_catalog, registry, **quiet)
    assert champion.promotion.promoted
    splits = pd.read_parquet(tiny_catalog / "splits.parquet")
    train_ids = splits.loc[(splits["split"] == "train") & splits["article_type"].notna(), "id"]
    _corrections(
        tmp_path,
        tiny_catalog,
        [f"{pid},article_type,Blue Square,ana,2026-11-29T10:00:00Z," for pid in train_ids],
    )
    refresh = resolve(
        TrainConfig,
        PROFILES,
        "refresh",
        None,
        {
            **{
                k: v
                for k, v in fast_config().to_dict().items()
                if k not in ("phase1_epochs", "freeze_stages")
            },
            "start_from": "champion",
            "corrections": "auto",
            "correction_weight": 3,
            "phase2_epochs": 2,
            "freeze_stages": 4,
        },
    )
    result = train(refresh, tiny_catalog, registry, data_dir=tmp_path / "data", **quiet)
    assert result.metrics["test_top1"] < champion.metrics["test_top1"]
    assert not result.promotion.promoted
    assert registry.champion("attribute_classifier") == champion.version
    manifest = VersionManifest.read(
        VersionStore(tmp_path / "models", "attribute_classifier").path(result.version)
    )
    assert len(manifest.info["corrections"]["ids"]) == len(train_ids)
    assert manifest.info["corrections"]["weight"] == 3
    assert champion.version in manifest.weights_source  # started from the champion's weights
    assert manifest.config["start_from"] == "champion"


def test_a_refresh_without_a_champion_says_so(tiny_catalog, tmp_path):
    cfg = fast_config(start_from="champion")
    with pytest.raises(ConfigError, match="no champion"):
        train(cfg, tiny_catalog, Registry(tmp_path / "models"), device="cpu", log=lambda m: None)
