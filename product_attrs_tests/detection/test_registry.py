"""MLflow: runs are logged, versions registered, alias `champion` moves only to a better mAP."""

from __future__ import annotations

from pathlib import Path

from product_attrs.detection.registry import CHAMPION, MODEL_NAME, Tracker, should_promote


def test_should_promote() -> None:
    assert should_promote(0.3, None)
    assert should_promote(0.31, 0.3)
    assert not should_promote(0.3, 0.3)
    assert not should_promote(0.2, 0.3)
    assert not should_promote(float("nan"), None)
    assert should_promote(0.1, float("nan"))


def test_registry_champion_alias(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    artifacts = (tmp_path / "mlflow" / "artifacts").as_uri()
    folder = tmp_path / "version"
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"weights")
    results = []
    for m in (0.30, 0.20, 0.45):
        t = Tracker(uri, artifacts)
        t.start(run_name=f"run-{m}")
        t.log_params({"lr": 0.01})
        t.log_metrics({"mAP": m, "skipped_nan": float("nan")}, step=0)
        t.log_version_folder(folder)
        results.append(t.register({"mAP": m}, {"data_version": "abc"}))
        t.end()
    assert [r[:2] for r in results] == [("1", True), ("2", False), ("3", True)]
    assert results[2][2] == 0.30
    champ = t.client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    assert str(champ.version) == "3" and champ.tags["data_version"] == "abc"
    run = t.client.get_run(champ.run_id)
    assert run.data.metrics["mAP"] == 0.45
    assert [a.path for a in t.client.list_artifacts(champ.run_id, "model")] == ["model/model.pt"]
    assert str(tmp_path / "mlflow" / "artifacts") in run.info.artifact_uri


def test_disabled_tracker_is_a_no_op() -> None:
    t = Tracker(None)
    assert t.start("x") is None and t.register({"mAP": 1.0}, {}) == (None, False, None)
