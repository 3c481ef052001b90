"""The champion alias moves only when test top-1 improves (a local sqlite MLflow in tmp_path)."""

from __future__ import annotations

import math

import pytest

from product_attrs.classification.tracking import (
    CHAMPION_ALIAS,
    REGISTERED_MODEL,
    current_champion,
    decide_promotion,
    promote_if_better,
)


def test_rule_promotes_only_strict_improvements():
    assert decide_promotion("1", 0.7, None, None).reason == "first champion"
    assert not decide_promotion("2", 0.65, "1", 0.7).promoted
    assert not decide_promotion("3", 0.70, "1", 0.7).promoted  # a tie keeps the champion
    assert decide_promotion("4", 0.71, "1", 0.7).promoted
    assert not decide_promotion("5", math.nan, "1", 0.7).promoted
    assert not decide_promotion(None, 0.99, "1", 0.7).promoted
    assert decide_promotion("1", 0.7, "1", 0.7).promoted  # re-running on the champion is not a demotion


mlflow = pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store for the module (creating its tables takes seconds); each test its own model name."""
    path = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{path / 'mlflow.db'}", path


def _register(store, name: str, n: int) -> list[str]:
    uri, path = store
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.create_registered_model(name)
    return [str(client.create_model_version(name, source=str(path / f"{name}{i}")).version) for i in range(n)]


@pytest.mark.slow  # creating the sqlite store's tables takes ~10 s on the shared machine
def test_champion_moves_only_on_improvement(store):
    uri, _ = store
    v1, v2, v3, v4 = _register(store, REGISTERED_MODEL, 4)
    assert current_champion(uri) == (None, None)
    first = promote_if_better(uri, v1, 0.70)
    assert first.promoted and first.reason == "first champion"
    worse = promote_if_better(uri, v2, 0.65)
    assert not worse.promoted and "does not beat" in worse.reason
    tie = promote_if_better(uri, v3, 0.70)
    assert not tie.promoted
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert str(client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS).version) == v1
    better = promote_if_better(uri, v4, 0.71)
    assert better.promoted and better.champion_version == v1 and better.champion_value == pytest.approx(0.70)
    assert current_champion(uri) == (v4, pytest.approx(0.71))


@pytest.mark.slow
def test_nan_or_unregistered_never_promotes(store):
    uri, _ = store
    (v1,) = _register(store, "other_model", 1)
    assert not promote_if_better(uri, v1, float("nan"), name="other_model").promoted
    assert not promote_if_better(uri, None, 0.9, name="other_model").promoted


def test_a_tie_at_the_stored_precision_keeps_the_champion():
    from product_attrs.classification.tracking import decide_promotion

    # The champion's top-1 comes back from a tag written as f"{value:.6f}".
    champion = float(f"{0.75451234:.6f}")
    decision = decide_promotion("2", 0.75451234, "1", champion)
    assert not decision.promoted and "does not beat" in decision.reason
    assert decide_promotion("2", 0.7546, "1", champion).promoted
