"""The promotion rule and the Registry without MLflow or torch: a fake tracker stands in for the registry
server, so every branch of "which version is served" is checked in milliseconds (the mutation run of
modeling.registry uses this file; test_registry.py checks the same against a real SQLite MLflow store)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from product_attrs.modeling import registry as registry_module
from product_attrs.modeling.config import ConfigError
from product_attrs.modeling.registry import ModelSpec, NoChampionError, Promotion, PromotionRule, Registry
from product_attrs.modeling.tracking import RegistryError
from product_attrs.modeling.versions import MANIFEST, VersionManifest, VersionStore, resume_key

RULE = PromotionRule("score")
SPEC = ModelSpec("m", "toy", RULE)


# ---- the rule ---------------------------------------------------------------------------------------------
def test_a_decision_records_what_was_compared_and_why():
    assert RULE.decide("v2", 0.71, "v1", 0.7) == Promotion(
        True, "v2", 0.71, "v1", 0.7, "score", "score 0.7100 beats champion v1 (0.7000)"
    )
    assert RULE.decide("v2", 0.69, "v1", 0.7).to_dict() == {
        "promoted": False,
        "version": "v2",
        "value": 0.69,
        "champion_version": "v1",
        "champion_value": 0.7,
        "metric": "score",
        "reason": "score 0.6900 does not beat champion v1 (0.7000)",
    }


def test_every_reason_the_rule_gives():
    def said(*args) -> tuple[bool, str]:
        p = RULE.decide(*args)
        return p.promoted, p.reason

    assert said("v1", 0.7, None, None) == (True, "first champion")
    assert said("v1", 0.1, "v1", 0.7) == (True, "already the champion")  # even when "worse": it is itself
    for bad in (None, math.nan, math.inf, -math.inf):
        assert said("v2", bad, "v1", 0.7) == (False, "score is not a number")
        assert said("v2", bad, None, None) == (False, "score is not a number")
    for unknown in (None, math.nan, math.inf):
        assert said("v2", 0.1, "v1", unknown) == (True, "score 0.1000; champion v1 has no recorded score")


def test_ties_are_judged_at_the_rule_precision_in_both_directions():
    coarse = PromotionRule("score", precision=2)
    assert not coarse.decide("v2", 0.704, "v1", 0.7).promoted  # 0.70 == 0.70
    assert coarse.decide("v2", 0.706, "v1", 0.7).promoted  # 0.71 > 0.70
    assert RULE.decide("v2", 0.7000004, "v1", 0.7).promoted is False
    assert RULE.decide("v2", 0.700001, "v1", 0.7).promoted is True
    loss = PromotionRule("loss", direction="min")
    assert loss.decide("v2", 0.49, "v1", 0.5).promoted
    assert not loss.decide("v2", 0.5, "v1", 0.5).promoted
    assert not loss.decide("v2", 0.51, "v1", 0.5).promoted
    assert loss.decide("v2", 0.51, "v1", 0.5).reason == "loss 0.5100 does not beat champion v1 (0.5000)"


def test_the_stored_tag_has_the_rule_precision():
    assert RULE.tag(0.5) == "0.500000"
    assert PromotionRule("score", precision=3).tag(2 / 3) == "0.667"


def test_a_rule_has_a_direction():
    assert PromotionRule("a").direction == "max" and PromotionRule("a", "min").direction == "min"
    with pytest.raises(ValueError) as exc:
        PromotionRule("a", direction="up")
    assert str(exc.value) == "direction must be 'max' or 'min', not 'up'"


# ---- the registry without MLflow ------------------------------------------------------------------------
def _version(
    models: Path, score: float | None, *, champion: bool = False, name: str = "m"
) -> VersionManifest:
    """A complete version of model m written through the store as training writes it (no torch)."""
    store = VersionStore(models, "m")
    draft = store.begin(resume_key("m", {"n": len(store.versions())}, "d"), "d", "never")
    manifest = VersionManifest(
        name="m",
        version=draft.version,
        task="toy",
        created="now",
        data_version="d",
        config={},
        metrics={"score": score},
    )
    store.commit(draft, manifest)
    if champion:
        store.set_champion(draft.version)
    return manifest


def test_a_registry_without_a_tracking_uri_has_no_tracker(tmp_path):
    registry = Registry(str(tmp_path), "", "file:///art")
    assert registry.tracking_uri is None and registry.tracker is None
    assert registry.models_dir == tmp_path and registry.artifacts_uri == "file:///art"
    assert registry.store("m").root == tmp_path / "m"


def test_the_tracker_is_made_once_with_the_uris(tmp_path, monkeypatch):
    made = []

    class Made:
        def __init__(self, uri, artifacts):
            made.append((uri, artifacts))

    monkeypatch.setattr(registry_module, "Tracker", Made)
    registry = Registry(tmp_path, "sqlite:///x.db", "file:///art")
    first = registry.tracker
    assert (
        isinstance(first, Made) and registry.tracker is first and made == [("sqlite:///x.db", "file:///art")]
    )


def test_without_mlflow_the_store_pointer_is_the_champion(tmp_path):
    registry = Registry(tmp_path)
    assert registry.champion("m") is None and registry.champion_manifest("m") is None
    with pytest.raises(NoChampionError) as exc:
        registry.champion_dir("m")
    assert str(exc.value) == "no champion of m yet: materialize (or train) m first"
    first = _version(tmp_path, 0.5, champion=True)
    _version(tmp_path, 0.9)  # newer and better, but never promoted: not served
    assert registry.champion("m") == first.version
    assert registry.champion_dir("m") == tmp_path / "m" / first.version
    assert registry.champion_manifest("m") == first
    with pytest.raises(ConfigError):
        registry.champion("../m")


def test_a_champion_folder_gone_without_a_registry_to_fetch_it_from(tmp_path, monkeypatch):
    registry = Registry(tmp_path)
    version = "20260101T000000000000Z-d"
    monkeypatch.setattr(registry, "champion", lambda name: version)
    with pytest.raises(NoChampionError) as exc:
        registry.champion_dir("m")
    assert str(exc.value) == f"the champion of m is {version}, but {tmp_path / 'm' / version} is missing"


def test_without_mlflow_decide_reads_the_champion_manifest_and_promote_moves_the_pointer(tmp_path):
    registry = Registry(tmp_path)
    first = _version(tmp_path, 0.5)
    assert registry.decide(SPEC, first).reason == "first champion"
    registry.promote(SPEC, first)
    assert registry.store("m").champion() == first.version
    worse, better = _version(tmp_path, 0.4), _version(tmp_path, 0.6)
    decision = registry.decide(SPEC, worse)
    assert (decision.promoted, decision.champion_version, decision.champion_value) == (
        False,
        first.version,
        0.5,
    )
    assert registry.decide(SPEC, better).promoted
    registry.promote(SPEC, better)
    assert registry.champion("m") == better.version


def test_a_champion_without_the_metric_is_replaced(tmp_path):
    registry = Registry(tmp_path)
    _version(tmp_path, None, champion=True)
    decision = registry.decide(SPEC, _version(tmp_path, 0.1))
    assert decision.promoted and decision.champion_value != decision.champion_value  # NaN: no record


# ---- the registry with a (fake) MLflow ------------------------------------------------------------------
class FakeTracker:
    """The three calls the Registry makes on MLflow, answered from memory."""

    def __init__(self, alias: tuple[str, dict[str, str]] | None = None, files: dict[str, str] | None = None):
        self.alias = alias
        self.files = files or {}  # what a download writes: relative path -> text
        self.moved: list[tuple[str, str, dict[str, str]]] = []
        self.downloads: list[tuple[str, str, Path]] = []

    def champion(self, name: str) -> tuple[str, dict[str, str]] | None:
        """The alias of model "m"; no other model has a champion."""
        return None if self.alias is None or name != "m" else (self.alias[0], dict(self.alias[1]))

    def set_champion(self, name: str, registered_version: str, tags: dict[str, str]) -> None:
        self.moved.append((name, registered_version, tags))

    def download(self, name: str, registered_version: str, dest: Path) -> Path:
        self.downloads.append((name, registered_version, dest))
        for rel, text in self.files.items():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_text(text)
        return dest


def _tracked(models: Path, fake: FakeTracker) -> Registry:
    registry = Registry(models, "fake://registry")
    registry._tracker = fake
    return registry


def test_with_mlflow_the_alias_is_the_champion_not_the_pointer(tmp_path):
    pointer = _version(tmp_path, 0.9, champion=True)
    aliased = _version(tmp_path, 0.5)
    registry = _tracked(tmp_path, FakeTracker(("7", {"version": aliased.version, "score": "0.500000"})))
    assert registry.champion("m") == aliased.version != pointer.version
    assert registry.champion_dir("m") == tmp_path / "m" / aliased.version
    assert registry.champion_manifest("m") == aliased
    assert registry.tracker.downloads == []
    assert _tracked(tmp_path, FakeTracker(None)).champion("m") is None
    with pytest.raises(ConfigError):
        _tracked(tmp_path, FakeTracker(None)).champion("a/b")


def test_a_registered_version_not_made_by_this_project_is_refused(tmp_path):
    registry = _tracked(tmp_path, FakeTracker(("7", {"score": "0.5"})))
    with pytest.raises(RegistryError) as exc:
        registry.champion("m")
    assert str(exc.value) == ("champion v7 of m has no 'version' tag: it was not registered by this project")
    registry = _tracked(tmp_path, FakeTracker(("7", {"version": "../../etc"})))
    with pytest.raises(RegistryError) as exc:
        registry.champion("m")
    assert str(exc.value) == (
        "champion v7 of m has the 'version' tag '../../etc', which is not a version folder name: "
        "refusing to use it as a path"
    )
    registry = _tracked(tmp_path, FakeTracker(("7", {"version": "../" * 40 + "etc"})))
    with pytest.raises(RegistryError) as exc:
        registry.champion("m")
    assert f"tag '{'../' * 26}..'," in str(exc.value)  # a long tag is cut to 80 characters


def test_a_machine_without_the_folder_downloads_the_registered_files_once(tmp_path):
    version = "20260101T000000000000Z-d"
    manifest = VersionManifest("m", version, "toy", "now", "d", {}, {"score": 0.5})
    fake = FakeTracker(("7", {"version": version}), {"model/" + MANIFEST: "{}"})
    registry = _tracked(tmp_path, fake)
    cache = tmp_path / "m" / ".registry_cache" / version
    assert registry.champion_dir("m") == (cache / "model").resolve()
    assert fake.downloads == [("m", "7", cache)]
    manifest.write(cache / "model")
    assert registry.champion_dir("m") == (cache / "model").resolve()
    assert len(fake.downloads) == 1  # the cache answers the second time
    assert registry.champion_manifest("m") == manifest


def test_downloaded_files_that_lead_outside_the_models_folder_are_refused(tmp_path):
    version = "20260101T000000000000Z-d"
    outside = tmp_path / "outside"
    (outside / "model").mkdir(parents=True)
    (outside / "model" / MANIFEST).write_text("{}")
    models = tmp_path / "models"
    cache = models / "m" / ".registry_cache" / version
    cache.parent.mkdir(parents=True)
    os.symlink(outside, cache)  # a registry whose files hold a link out
    registry = _tracked(models, FakeTracker(("7", {"version": version})))
    with pytest.raises(RegistryError) as exc:
        registry.champion_dir("m")
    assert str(exc.value).startswith(f"the registered files of m {version} lead outside the models folder: ")


def test_with_mlflow_decide_reads_the_champion_metric_from_its_tag(tmp_path):
    champion = _version(tmp_path, 0.5)
    fake = FakeTracker(("7", {"version": champion.version, "score": "0.800000"}))
    registry = _tracked(tmp_path, fake)
    decision = registry.decide(SPEC, _version(tmp_path, 0.7))
    assert (decision.promoted, decision.champion_value) == (False, 0.8)  # the tag, not the manifest's 0.5
    fake.alias = ("7", {"version": champion.version})  # no tag: the manifest says
    decision = registry.decide(SPEC, _version(tmp_path, 0.7))
    assert (decision.promoted, decision.champion_value) == (True, 0.5)
    fake.alias = ("7", {"version": champion.version, "score": "high"})
    with pytest.raises(RegistryError) as exc:
        registry.decide(SPEC, _version(tmp_path, 0.1))
    assert str(exc.value) == "the champion of m has the 'score' tag 'high', which is not a number"
    fake.alias = ("7", {"version": champion.version, "score": "x" * 100})
    with pytest.raises(RegistryError) as exc:
        registry.decide(SPEC, _version(tmp_path, 0.1))
    assert f"tag '{'x' * 40}'," in str(exc.value)  # cut to 40 characters


def test_with_mlflow_promote_moves_the_alias_with_the_metric_tag_and_the_pointer(tmp_path):
    fake = FakeTracker()
    registry = _tracked(tmp_path, fake)
    unregistered = _version(tmp_path, 0.9)
    with pytest.raises(RegistryError) as exc:
        registry.promote(SPEC, unregistered)
    assert str(exc.value) == (
        f"m {unregistered.version} was not registered in MLflow: it cannot become the champion of a "
        "tracked registry"
    )
    assert fake.moved == [] and registry.store("m").champion() is None
    registered = _version(tmp_path, 0.71)
    registered.registered_version = "3"
    registry.promote(SPEC, registered)
    assert fake.moved == [("m", "3", {"score": "0.710000"})]
    assert registry.store("m").champion() == registered.version
