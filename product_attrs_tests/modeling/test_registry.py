"""One promotion rule, one answer to "which version is served", with MLflow and without it."""

from __future__ import annotations

import math
import os

import pytest

from product_attrs.modeling.registry import NoChampionError, PromotionRule, Registry
from product_attrs.modeling.tracking import RegistryError
from product_attrs.modeling.versions import VersionStore
from product_attrs_tests.modeling.toy import TOY, train_toy

RULE = PromotionRule("test_top1")


def test_rule_promotes_only_strict_improvements():
    assert RULE.decide("v1", 0.7, None, None).reason == "first champion"
    assert not RULE.decide("v2", 0.65, "v1", 0.7).promoted
    assert not RULE.decide("v3", 0.70, "v1", 0.7).promoted  # a tie keeps the champion
    assert RULE.decide("v4", 0.71, "v1", 0.7).promoted
    assert not RULE.decide("v5", math.nan, "v1", 0.7).promoted
    assert not RULE.decide("v5", math.nan, None, None).promoted  # not even a first champion without a number
    assert RULE.decide("v1", 0.7, "v1", 0.7).promoted  # re-deciding on the champion is not a demotion


def test_a_tie_at_the_stored_precision_keeps_the_champion():
    champion = float(RULE.tag(0.75451234))  # what the registry hands back
    decision = RULE.decide("v2", 0.75451234, "v1", champion)
    assert not decision.promoted and "does not beat" in decision.reason
    assert RULE.decide("v2", 0.7546, "v1", champion).promoted


def test_lower_is_better_when_the_rule_says_so():
    loss = PromotionRule("test_loss", direction="min")
    assert loss.decide("v2", 0.4, "v1", 0.5).promoted and not loss.decide("v2", 0.6, "v1", 0.5).promoted
    with pytest.raises(ValueError, match="direction"):
        PromotionRule("x", direction="up")


def test_without_mlflow_the_store_decides_and_only_a_better_version_is_served(tmp_path):
    registry = Registry(tmp_path)
    with pytest.raises(NoChampionError, match="materialize .or train. toy_model first"):
        registry.champion_dir(TOY.name)
    first = train_toy(registry, {"score": 0.5})
    worse = train_toy(registry, {"score": 0.4})
    tie = train_toy(registry, {"score": 0.5})
    better = train_toy(registry, {"score": 0.6})
    assert [r.promotion.promoted for r in (first, worse, tie, better)] == [True, False, False, True]
    assert worse.promotion.champion_version == first.version
    assert registry.champion_dir(TOY.name) == better.version_dir
    assert VersionStore(tmp_path, TOY.name).latest() == better.version
    assert (better.version_dir / "report.txt").is_file() and (better.version_dir / "model.pt").is_file()


def test_a_worse_retrain_is_committed_but_the_champion_stays_where_it_was(tmp_path):
    """The decision not to promote must also be acted on: the worse version is complete (LATEST names it)
    but the CHAMPION pointer, and so every consumer, still serves the better one."""
    registry = Registry(tmp_path)
    first = train_toy(registry, {"score": 0.5})
    worse = train_toy(registry, {"score": 0.4})
    assert first.promotion.promoted and not worse.promotion.promoted
    store = registry.store(TOY.name)
    assert store.latest() == worse.version and store.champion() == first.version
    assert registry.champion(TOY.name) == first.version
    assert registry.champion_dir(TOY.name) == first.version_dir


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    """One SQLite store for the module (creating its tables takes seconds)."""
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()


def test_with_mlflow_the_alias_decides_and_the_pointer_mirrors_it(tmp_path, mlflow_uri):
    uri, artifacts = mlflow_uri
    registry = Registry(tmp_path, uri, artifacts)
    first = train_toy(registry, {"score": 0.5})
    worse = train_toy(registry, {"score": 0.3})
    assert (first.manifest.registered_version, worse.manifest.registered_version) == ("1", "2")
    assert first.promotion.promoted and not worse.promotion.promoted
    tracker = registry.tracker
    registered, tags = tracker.champion(TOY.name)
    assert registered == "1" and tags["version"] == first.version and tags["score"] == "0.500000"
    assert registry.store(TOY.name).champion() == first.version == registry.champion(TOY.name)
    run = tracker.client.get_run(worse.manifest.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["final_score"] == 0.3
    # Someone moves the alias by hand in the MLflow UI: serving follows the registry, not the pointer.
    tracker.client.set_registered_model_alias(TOY.name, "champion", "2")
    assert registry.champion_dir(TOY.name) == worse.version_dir
    # A machine without the version folder gets the registered files.
    elsewhere = Registry(tmp_path / "elsewhere", uri, artifacts)
    fetched = elsewhere.champion_dir(TOY.name)
    assert (
        fetched != worse.version_dir
        and (fetched / "model.pt").read_bytes() == (worse.version_dir / "model.pt").read_bytes()
    )
    tracker.client.set_registered_model_alias(TOY.name, "champion", "1")


def test_a_registry_error_is_an_error_not_no_champion(tmp_path, mlflow_uri):
    """An unreadable store must never read as "no champion yet" (which would promote anything)."""
    broken = tmp_path / "mlflow.db"
    broken.write_bytes(b"not a database " * 100)  # e.g. a store damaged by a full disk
    registry = Registry(tmp_path, f"sqlite:///{broken}", mlflow_uri[1])
    with pytest.raises(RegistryError, match="MLflow at sqlite"):
        registry.champion(TOY.name)
    with pytest.raises(RegistryError):
        train_toy(registry, {"score": 0.9})
    assert registry.store(TOY.name).champion() is None  # nothing was promoted


def _open_store(uri: str, artifacts: str, start, queue) -> None:
    from product_attrs.modeling.tracking import Tracker

    start.wait()
    try:
        run = Tracker(uri, artifacts).start_run("race", "r", {}, {})
        queue.put(("ok", run))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        queue.put(("error", str(exc)))


def test_two_trainings_creating_the_store_at_once_both_succeed(tmp_path):
    """Two trainings that start together on a new SQLite store (the demo's first minute) must not race to
    create its tables: that failed one of them with an alembic error."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    start, queue = ctx.Event(), ctx.SimpleQueue()
    uri, artifacts = f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "artifacts").as_uri()
    procs = [ctx.Process(target=_open_store, args=(uri, artifacts, start, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=120)
    results = [queue.get() for _ in range(2)]
    assert [r[0] for r in results] == ["ok", "ok"], results


def _train(registry: Registry, name: str, score: float):
    from product_attrs.modeling import lifecycle
    from product_attrs.modeling.registry import ModelSpec
    from product_attrs.modeling.runner import RunnerOptions
    from product_attrs_tests.modeling.toy import ToyTask

    config = {"score": score, "epochs1": 1, "epochs2": 0}
    return lifecycle.train(
        ModelSpec(name, "toy", RULE_SCORE),
        lambda info, dev, log: ToyTask(config, info, dev, log),
        registry,
        config=config,
        options=RunnerOptions(seed=0),
        device="cpu",
        threads=1,
        log=lambda m: None,
    )


RULE_SCORE = PromotionRule("score")


def _proxy_404():
    from mlflow.exceptions import MlflowException

    return MlflowException(
        "API request to endpoint /api/2.0/mlflow/registered-models/alias failed with error code 404 != 200. "
        "Response body: '<html><title>404 Not Found</title></html>'",
        error_code="ENDPOINT_NOT_FOUND",
    )


@pytest.mark.parametrize(
    "name, failure",
    [
        ("toy_outage_404", _proxy_404),
        ("toy_outage_locked", lambda: __import__("sqlite3").OperationalError("database is locked")),
    ],
    ids=["proxy 404 page", "locked sqlite"],
)
def test_a_store_failure_while_reading_the_champion_fails_training_and_promotes_nothing(
    tmp_path, mlflow_uri, monkeypatch, name, failure
):
    """Read as "no champion yet", a failed read made any retrain (here a worse one) the champion."""
    uri, artifacts = mlflow_uri
    registry = Registry(tmp_path, uri, artifacts)
    first = _train(registry, name, 0.5)
    assert registry.champion(name) == first.version

    def fail(*args, **kwargs):
        raise failure()

    monkeypatch.setattr(registry.tracker.client, "get_model_version_by_alias", fail)
    with pytest.raises(RegistryError, match="reading the champion"):
        _train(registry, name, 0.3)
    monkeypatch.undo()
    assert registry.champion(name) == first.version == registry.store(name).champion()


def test_a_hostile_mlflow_tag_is_never_used_as_a_path(tmp_path, mlflow_uri):
    """Anyone with the MLflow UI can edit a version's tags: a `version` tag that is not a version folder name
    is refused, on this machine and on one that would download the registered files."""
    uri, artifacts = mlflow_uri
    name = "toy_hostile_tag"
    registry = Registry(tmp_path / "models", uri, artifacts)
    first = _train(registry, name, 0.5)
    client = registry.tracker.client
    registered = first.manifest.registered_version
    (tmp_path / "x").mkdir()
    for hostile in ("../../x", "/etc", f"{first.version}/../../../x"):
        client.set_model_version_tag(name, registered, "version", hostile)
        for reg in (registry, Registry(tmp_path / "elsewhere", uri, artifacts)):
            with pytest.raises(RegistryError, match="not a version folder name"):
                reg.champion_dir(name)
    assert not (tmp_path / "elsewhere").exists() and sorted(os.listdir(tmp_path / "x")) == []
    client.set_model_version_tag(name, registered, "version", first.version)
    # An edited metric tag must not read as "the champion has no score" (which promotes anything).
    client.set_model_version_tag(name, registered, "score", "high")
    with pytest.raises(RegistryError, match="not a number"):
        _train(registry, name, 0.1)
    assert registry.champion(name) == first.version
