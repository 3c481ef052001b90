"""Model versions on disk: a folder per version, drafts a retry resumes, and atomic pointers.

    <models_dir>/<name>/
        <version>/            a complete version: model.pt, manifest.json, the task's reports
        .drafts/<version>/    a training in progress (checkpoint.pt, draft.json); `.lock` beside it
        LATEST, CHAMPION      one line each: a version folder name

A version folder appears only complete: training writes into a draft, and `commit` renames the draft
into place after every file in it is on disk. So a reader listing versions never sees half a model, and
the champion pointer can only ever name a complete version. A draft is locked (flock) by the process
training it; a crashed process releases the lock, and the next training with the same resume key (same
model, settings and data) picks the draft up and resumes it. Every pointer and manifest is written to a
temporary file, fsynced and renamed.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from product_attrs.io import durable_write, fsync_dir
from product_attrs.modeling.config import ConfigError

MANIFEST = "manifest.json"
WEIGHTS = "model.pt"
CHECKPOINT = "checkpoint.pt"
DRAFTS = ".drafts"
LATEST = "LATEST"
CHAMPION = "CHAMPION"
_DRAFT_STATE = "draft.json"
SCHEMA = 1
# A model name is a folder, an MLflow experiment and a registered model: no path separators.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_VERSION_RE = re.compile(r"[0-9]{8}T[0-9]{12}Z-[A-Za-z0-9]+(-[0-9]+)?")


def is_version_name(text: object) -> bool:
    """Whether ``text`` is a version folder name (so never a path: no separator, no '..')."""
    return isinstance(text, str) and _VERSION_RE.fullmatch(text) is not None


class VersionError(FileNotFoundError):
    """A version, pointer or manifest that is missing or malformed; the message says which and what to run."""


def check_name(name: str, what: str = "model name") -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigError(
            f"{what} {name!r} must start with a letter or digit and contain only letters, digits, "
            "'_', '.', '-'"
        )
    return name


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null: the manifest is strict JSON that any reader can parse."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, obj: Any) -> None:
    durable_write(path, lambda tmp: tmp.write_text(json.dumps(_json_safe(obj), indent=1, default=str)))


@dataclass
class VersionManifest:
    """What a version is, read without torch: its model, settings, data, scores and registry record.

    `info` holds what the task's serve.py needs to rebuild the network (heads and label maps, or the
    detector's label map and architecture); `promotion` is the decision taken when it was trained.
    """

    name: str
    version: str
    task: str
    created: str
    data_version: str
    config: dict[str, Any]
    metrics: dict[str, float | None]
    info: dict[str, Any] = field(default_factory=dict)
    weights_source: str = ""
    world_size: int = 1
    epochs: int = 0
    attempts: list[dict[str, Any]] = field(
        default_factory=list
    )  # one entry per (re)start: resumed from where
    resume_key: str = ""
    mlflow_run_id: str | None = None
    registered_version: str | None = None
    promotion: dict[str, Any] | None = None
    schema: int = SCHEMA

    def metric(self, name: str) -> float:
        value = self.metrics.get(name)
        return float("nan") if value is None else float(value)  # pragma: no mutate - "NAN" is nan too

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VersionManifest:
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = required - set(data)
        if missing:
            raise VersionError(f"manifest lacks {sorted(missing)}")
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def read(cls, version_dir: Path) -> VersionManifest:
        path = Path(version_dir) / MANIFEST
        if not path.is_file():
            raise VersionError(f"no {MANIFEST} in {version_dir}: not a model version folder")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise VersionError(f"{path} is not a valid manifest: {exc}") from None

    def write(self, version_dir: Path) -> None:
        write_json(Path(version_dir) / MANIFEST, self.to_dict())


def resume_key(name: str, config: dict[str, Any], data_version: str) -> str:
    """Trainings with the same model, settings and data are the same training: a retry resumes it."""
    text = json.dumps({"name": name, "config": config, "data": data_version}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def new_version_name(data_version: str) -> str:
    """Sortable by time to the microsecond, and naming the data it was trained on."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    tag = re.sub(r"[^A-Za-z0-9]", "", data_version)[:8] or "nodata"
    return f"{stamp}-{tag}"


@dataclass
class Draft:
    """A training in progress: its folder, its lock, and what must survive a crash (draft.json)."""

    version: str
    dir: Path
    key: str
    state: dict[str, Any]
    _lock: Any = field(default=None, repr=False)

    @property
    def checkpoint(self) -> Path:
        return self.dir / CHECKPOINT

    @property
    def resumed(self) -> bool:
        return self.checkpoint.is_file()

    def update(self, **values: Any) -> None:
        self.state.update(values)
        write_json(self.dir / _DRAFT_STATE, self.state)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file drops the flock
            self._lock = None


def _try_lock(path: Path):
    """An open, exclusively flock'ed file, or None when another live process holds it."""
    handle = open(path, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


class VersionStore:
    """The versions of one model under `<models_dir>/<name>`."""

    def __init__(self, models_dir: Path | str, name: str) -> None:
        self.name = check_name(name)
        self.root = Path(models_dir) / name

    # ---- reading ------------------------------------------------------------------------------------
    def path(self, version: str) -> Path:
        if not _VERSION_RE.fullmatch(version or ""):  # pragma: no mutate - "" and "XXXX" both fail the match
            raise VersionError(f"{version!r} is not a version name of {self.name}")
        return self.root / version

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if _VERSION_RE.fullmatch(p.name) and (p / MANIFEST).is_file()
        )

    def _pointer(self, name: str) -> str | None:
        path = self.root / name
        if not path.is_file():
            return None
        version = path.read_text().strip()
        if not (self.path(version) / MANIFEST).is_file():
            raise VersionError(f"{path} names {version!r}, which is not a complete version of {self.name}")
        return version

    def latest(self) -> str | None:
        return self._pointer(LATEST)

    def champion(self) -> str | None:
        return self._pointer(CHAMPION)

    def manifest(self, version: str) -> VersionManifest:
        return VersionManifest.read(self.path(version))

    # ---- writing ------------------------------------------------------------------------------------
    def _drafts(self) -> Path:
        return self.root / DRAFTS

    def begin(self, key: str, data_version: str, resume: str | Path = "auto") -> Draft:
        """A locked draft to train into: the unfinished one with this key (resume="auto"), the named
        draft or version folder (a path), or a new one (resume="never")."""
        drafts = self._drafts()
        drafts.mkdir(parents=True, exist_ok=True)
        if resume not in ("auto", "never"):
            return self._reopen(Path(resume), key)
        if resume == "auto":
            for folder in sorted(drafts.iterdir(), reverse=True):
                state = self._state(folder)
                if folder.is_dir() and state.get("key") == key:
                    lock = _try_lock(drafts / f"{folder.name}.lock")
                    if lock is not None:
                        return Draft(folder.name, folder, key, state, lock)
        version = new_version_name(data_version)
        while (drafts / version).exists() or (self.root / version).exists():
            version = new_version_name(data_version)
        lock = _try_lock(
            drafts / f"{version}.lock"
        )  # before the folder exists: prune_drafts never sees it unlocked
        folder = drafts / version
        folder.mkdir()
        draft = Draft(version, folder, key, {"key": key, "version": version, "pid": os.getpid()}, lock)
        draft.update()
        return draft

    def _reopen(self, path: Path, key: str) -> Draft:
        """An explicit --resume: a draft folder (or its checkpoint file) of this model."""
        folder = path.parent if path.is_file() else path
        if folder.parent != self._drafts() or not folder.is_dir():
            raise ConfigError(
                f"--resume {path}: not an unfinished training of {self.name} "
                f"(drafts are under {self._drafts()})"
            )
        state = self._state(folder)
        if state.get("key") != key:
            raise ConfigError(
                f"--resume {path}: it was started with other settings or data; resume it with the "
                "same settings, or start a new training"
            )
        lock = _try_lock(folder.parent / f"{folder.name}.lock")
        if lock is None:
            raise ConfigError(f"--resume {path}: another process is training it now")
        return Draft(folder.name, folder, key, state, lock)

    @staticmethod
    def _state(folder: Path) -> dict[str, Any]:
        try:
            return json.loads((folder / _DRAFT_STATE).read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def commit(self, draft: Draft, manifest: VersionManifest, keep_checkpoint: bool = False) -> Path:
        """Write the manifest, move the draft into place as a complete version, point LATEST at it."""
        if not keep_checkpoint:
            draft.checkpoint.unlink(missing_ok=True)
        (draft.dir / _DRAFT_STATE).unlink(missing_ok=True)  # pragma: no mutate - begin always wrote it
        manifest.write(draft.dir)
        final = self.path(draft.version)
        os.rename(draft.dir, final)
        fsync_dir(self.root)
        lock = self._drafts() / f"{draft.version}.lock"
        lock.unlink(missing_ok=True)  # pragma: no mutate - it exists: begin created it, this process holds it
        draft.release()
        self._write_pointer(LATEST, draft.version)
        self.prune_drafts()
        return final

    def set_champion(self, version: str) -> None:
        if not (self.path(version) / MANIFEST).is_file():
            raise VersionError(
                f"cannot make {version!r} the champion of {self.name}: it is not a complete version"
            )
        self._write_pointer(CHAMPION, version)

    def _write_pointer(self, name: str, version: str) -> None:
        durable_write(self.root / name, lambda tmp: tmp.write_text(version + "\n"))

    def prune_drafts(self) -> list[str]:
        """Remove drafts no live process holds and no retry can use any more (their settings or data
        differ from every training since); returns their names."""
        drafts = self._drafts()
        if not drafts.is_dir():
            return []
        removed = []
        for folder in sorted(p for p in drafts.iterdir() if p.is_dir()):
            lock_path = drafts / f"{folder.name}.lock"
            lock = _try_lock(lock_path)
            if lock is None:
                continue
            try:
                shutil.rmtree(folder)
                lock_path.unlink(missing_ok=True)  # pragma: no mutate - _try_lock has just created it
                removed.append(folder.name)
            finally:
                lock.close()
        if not any(drafts.iterdir()):
            drafts.rmdir()
        return removed

    def discard(self, draft: Draft) -> None:
        shutil.rmtree(draft.dir, ignore_errors=True)
        (self._drafts() / f"{draft.version}.lock").unlink(missing_ok=True)
        draft.release()
