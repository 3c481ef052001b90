"""Which version is served: one promotion rule decides, one function answers, with or without MLflow.

With a tracking URI the MLflow alias `champion` is the truth (it can also be moved by hand in the MLflow
UI); without one, the store's CHAMPION pointer is. Every promotion moves both, so the pointer mirrors
the alias and a folder on disk always says what is served. Nothing ever falls back to "the latest
version": a worse retrain must never reach extraction, the gallery, the shelf counts or the browser.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from product_attrs.modeling.tracking import VERSION_TAG, RegistryError, Tracker
from product_attrs.modeling.versions import (
    VersionError,
    VersionManifest,
    VersionStore,
    check_name,
    is_version_name,
)
from product_attrs.paths import PathOutsideRoot, confine


class NoChampionError(VersionError):
    """No version of a model is served yet; the message says what to materialize or train."""


@dataclass(frozen=True)
class PromotionRule:
    """A new version becomes champion only if `metric` is strictly better than the champion's, compared
    at `precision` decimals (the precision the registry stores), so an identical retrain never wins."""

    metric: str
    direction: str = "max"
    precision: int = 6

    def __post_init__(self) -> None:
        if self.direction not in ("max", "min"):
            raise ValueError(f"direction must be 'max' or 'min', not {self.direction!r}")

    def tag(self, value: float) -> str:
        return f"{value:.{self.precision}f}"

    def decide(
        self, version: str, value: float, champion: str | None, champion_value: float | None
    ) -> Promotion:
        def result(promoted: bool, reason: str) -> Promotion:
            return Promotion(promoted, version, value, champion, champion_value, self.metric, reason)

        if champion == version:
            return result(True, "already the champion")
        if value is None or not math.isfinite(value):
            return result(False, f"{self.metric} is not a number")
        if champion is None:
            return result(True, "first champion")
        if champion_value is None or not math.isfinite(champion_value):
            return result(
                True, f"{self.metric} {value:.4f}; champion {champion} has no recorded {self.metric}"
            )
        new, old = round(value, self.precision), round(champion_value, self.precision)
        better = new > old if self.direction == "max" else new < old
        verb = "beats" if better else "does not beat"
        return result(better, f"{self.metric} {value:.4f} {verb} champion {champion} ({champion_value:.4f})")


@dataclass(frozen=True)
class ModelSpec:
    """A model the project trains: its name (folder, MLflow experiment and registered model), its task,
    its promotion rule, and the overlay of its task's settings it trains with."""

    name: str
    task: str
    rule: PromotionRule
    overlay: str | None = None
    description: str = ""


@dataclass
class Promotion:
    """What the rule decided and why; kept in the version's manifest and read by the asset check."""

    promoted: bool
    version: str
    value: float
    champion_version: str | None
    champion_value: float | None
    metric: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Registry:
    """The project's models: version stores under `models_dir`, and MLflow when `tracking_uri` is set."""

    def __init__(
        self, models_dir: Path | str, tracking_uri: str | None = None, artifacts_uri: str | None = None
    ) -> None:
        self.models_dir = Path(models_dir)
        self.tracking_uri = tracking_uri or None
        self.artifacts_uri = artifacts_uri
        self._tracker: Tracker | None = None

    @property
    def tracker(self) -> Tracker | None:
        if self.tracking_uri and self._tracker is None:
            self._tracker = Tracker(self.tracking_uri, self.artifacts_uri)
        return self._tracker

    def store(self, name: str) -> VersionStore:
        return VersionStore(self.models_dir, name)

    # ---- which version is served ---------------------------------------------------------------------
    def champion(self, name: str) -> str | None:
        """The champion's version folder name, or None when no version has been promoted yet."""
        check_name(name)
        tracker = self.tracker
        if tracker is None:
            return self.store(name).champion()
        found = tracker.champion(name)
        if found is None:
            return None
        registered, tags = found
        if VERSION_TAG not in tags:
            raise RegistryError(
                f"champion v{registered} of {name} has no '{VERSION_TAG}' tag: it was not "
                "registered by this project"
            )
        # A tag is text anyone with the MLflow UI can edit: it names a folder only if it is a version name.
        version = tags[VERSION_TAG]
        if not is_version_name(version):
            raise RegistryError(
                f"champion v{registered} of {name} has the '{VERSION_TAG}' tag {version[:80]!r}, which is "
                "not a version folder name: refusing to use it as a path"
            )
        return version

    def champion_dir(self, name: str) -> Path:
        """The folder of the version every consumer serves; NoChampionError when there is none."""
        version = self.champion(name)
        if version is None:
            raise NoChampionError(f"no champion of {name} yet: materialize (or train) {name} first")
        store = self.store(name)
        folder = store.path(version)
        if folder.is_dir():
            return folder
        tracker = self.tracker
        if tracker is None:
            raise NoChampionError(f"the champion of {name} is {version}, but {folder} is missing")
        registered, _ = tracker.champion(name) or (None, None)
        cache = store.root / ".registry_cache" / version
        if not (cache / "model" / "manifest.json").is_file():
            tracker.download(name, str(registered), cache)
        try:  # the downloaded files are the registry's: a symlink among them must not lead elsewhere
            folder = confine(self.models_dir, cache.relative_to(self.models_dir) / "model")
        except PathOutsideRoot as exc:
            raise RegistryError(
                f"the registered files of {name} {version} lead outside the models folder: {exc}"
            )
        return folder

    def champion_manifest(self, name: str) -> VersionManifest | None:
        version = self.champion(name)
        return None if version is None else VersionManifest.read(self.champion_dir(name))

    # ---- promotion ----------------------------------------------------------------------------------
    def decide(self, spec: ModelSpec, manifest: VersionManifest) -> Promotion:
        """The rule applied to `manifest` against the current champion (read from the same source that
        serving reads, so the decision and the served model cannot disagree)."""
        champion = self.champion(spec.name)
        champion_value = None  # pragma: no mutate - with no champion the rule never reads champion_value
        if champion is not None:
            tracker = self.tracker
            found = tracker.champion(spec.name) if tracker is not None else None
            if found is not None and spec.rule.metric in found[1]:
                text = found[1][spec.rule.metric]
                try:
                    champion_value = float(text)
                except ValueError:  # an edited tag must not read as "no recorded metric" (which promotes)
                    raise RegistryError(
                        f"the champion of {spec.name} has the '{spec.rule.metric}' tag {text[:40]!r}, "
                        "which is not a number"
                    ) from None
            else:
                champion_value = VersionManifest.read(self.champion_dir(spec.name)).metric(spec.rule.metric)
        return spec.rule.decide(manifest.version, manifest.metric(spec.rule.metric), champion, champion_value)

    def promote(self, spec: ModelSpec, manifest: VersionManifest) -> None:
        """Make a complete version the champion: the MLflow alias (when tracking) and the store pointer."""
        tracker = self.tracker
        if tracker is not None:
            if manifest.registered_version is None:
                raise RegistryError(
                    f"{spec.name} {manifest.version} was not registered in MLflow: it cannot "
                    "become the champion of a tracked registry"
                )
            tracker.set_champion(
                spec.name,
                manifest.registered_version,
                {spec.rule.metric: spec.rule.tag(manifest.metric(spec.rule.metric))},
            )
        self.store(spec.name).set_champion(manifest.version)
