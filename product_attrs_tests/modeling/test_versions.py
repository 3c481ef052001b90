"""The version store: drafts become versions only whole, pointers name complete versions, a locked draft
is never taken over, and the manifest is strict JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from product_attrs.modeling.config import ConfigError
from product_attrs.modeling.versions import (
    CHAMPION,
    LATEST,
    MANIFEST,
    VersionError,
    VersionManifest,
    VersionStore,
    check_name,
    is_version_name,
    new_version_name,
    resume_key,
    write_json,
)


def _manifest(draft, **metrics) -> VersionManifest:
    return VersionManifest(
        name="m", version=draft.version, task="t", created="now", data_version="d", config={}, metrics=metrics
    )


def test_a_draft_is_invisible_until_committed(tmp_path):
    store = VersionStore(tmp_path, "m")
    draft = store.begin("key1", "data1234", "never")
    (draft.dir / "model.pt").write_bytes(b"w")
    assert store.versions() == [] and store.latest() is None
    final = store.commit(draft, _manifest(draft, score=0.5))
    assert final == tmp_path / "m" / draft.version and (final / "model.pt").read_bytes() == b"w"
    assert store.versions() == [draft.version] and store.latest() == draft.version
    assert (tmp_path / "m" / LATEST).read_text() == draft.version + "\n"
    assert store.champion() is None  # committing never promotes
    store.set_champion(draft.version)
    assert store.champion() == draft.version
    assert store.manifest(draft.version).metric("score") == 0.5
    assert draft.version.endswith("-data1234")


def test_auto_resume_takes_the_unlocked_draft_with_the_same_key(tmp_path):
    store = VersionStore(tmp_path, "m")
    first = store.begin("key1", "d", "auto")
    # While its process holds it, nobody else resumes it: a second training gets its own draft.
    second = store.begin("key1", "d", "auto")
    assert second.version != first.version
    first.release()
    second.release()
    again = store.begin("key1", "d", "auto")
    assert again.version in (first.version, second.version)
    assert store.begin("key2", "d", "auto").version not in (first.version, second.version)


def test_a_draft_held_by_another_live_process_is_not_taken(tmp_path):
    store = VersionStore(tmp_path, "m")
    draft = store.begin("key1", "d", "never")
    draft.release()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
                "print('locked', flush=True); time.sleep(30)"
            ),
            str(tmp_path / "m" / ".drafts" / f"{draft.version}.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert store.begin("key1", "d", "auto").version != draft.version
        with pytest.raises(ConfigError, match="another process is training it"):
            store.begin("key1", "d", draft.dir)
        assert draft.version not in store.prune_drafts()
    finally:
        holder.kill()
        holder.wait()
    assert store.begin("key1", "d", draft.dir).version == draft.version  # the lock died with its process


def test_explicit_resume_of_another_training_is_refused(tmp_path):
    store = VersionStore(tmp_path, "m")
    draft = store.begin("key1", "d", "never")
    draft.release()
    with pytest.raises(ConfigError, match="other settings or data"):
        store.begin("key2", "d", draft.dir)
    with pytest.raises(ConfigError, match="not an unfinished training"):
        store.begin("key1", "d", tmp_path)


def test_pointers_never_name_an_incomplete_version(tmp_path):
    store = VersionStore(tmp_path, "m")
    draft = store.begin("k", "d", "never")
    with pytest.raises(VersionError, match="not a complete version"):
        store.set_champion(draft.version)
    (store.root / CHAMPION).write_text("20990101T000000000000Z-gone\n")
    with pytest.raises(VersionError, match="not a complete version"):
        store.champion()
    with pytest.raises(VersionError, match="not a version name"):
        store.path("../../etc")


def test_manifest_is_strict_json_and_round_trips(tmp_path):
    store = VersionStore(tmp_path, "m")
    draft = store.begin("k", "d", "never")
    final = store.commit(draft, _manifest(draft, score=float("nan"), other=0.25))
    raw = json.loads((final / MANIFEST).read_text())  # json.loads rejects nothing, so check the text
    assert "NaN" not in (final / MANIFEST).read_text() and raw["metrics"]["score"] is None
    back = VersionManifest.read(final)
    assert back.metrics == {"score": None, "other": 0.25} and back.metric("score") != back.metric("score")
    (final / MANIFEST).write_text("{}")
    with pytest.raises(VersionError, match="manifest lacks"):
        VersionManifest.read(final)


def test_prune_removes_only_unlocked_drafts(tmp_path):
    store = VersionStore(tmp_path, "m")
    held = store.begin("a", "d", "never")
    left = store.begin("b", "d", "never")
    left.release()
    assert store.prune_drafts() == [left.version]
    assert held.dir.is_dir()


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "x y"])
def test_model_names_are_plain(name):
    with pytest.raises(ConfigError, match="must start with a letter or digit"):
        check_name(name)


# ---- names, keys and the manifest file -------------------------------------------------------------------
def test_a_bad_name_is_refused_with_what_it_is_and_the_rule():
    with pytest.raises(ConfigError) as exc:
        check_name("x y")
    assert str(exc.value) == (
        "model name 'x y' must start with a letter or digit and contain only letters, digits, '_', '.', '-'"
    )
    with pytest.raises(ConfigError, match=r"^gallery 'a/b' must"):
        check_name("a/b", "gallery")
    assert check_name("m-1.v_2") == "m-1.v_2" and VersionStore("/models", "m-1").name == "m-1"


def test_a_version_name_is_never_a_path():
    good = new_version_name("d")
    assert is_version_name(good) and is_version_name(good + "-2")
    for bad in (None, 3, "", "../x", f"{good}/../x", f"../{good}", "20260101T000000Z-d"):
        assert not is_version_name(bad), bad


def test_a_version_name_is_the_utc_time_and_the_data_version(monkeypatch):
    assert new_version_name("AB-cd_12/345").endswith("Z-ABcd1234")  # letters and digits, 8 at most
    assert new_version_name("--/..").endswith("Z-nodata")
    monkeypatch.setenv("TZ", "IST-5:30")  # a local time 5:30 from UTC must not leak into the name
    time.tzset()
    try:
        stamp = datetime.strptime(new_version_name("d").split("-")[0], "%Y%m%dT%H%M%S%fZ")
    finally:
        monkeypatch.undo()
        time.tzset()
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    assert abs((now - stamp).total_seconds()) < 60


def test_the_resume_key_is_the_model_settings_and_data_whatever_the_key_order():
    key = resume_key("m", {"lr": 0.1, "epochs": 3, "root": Path("/data")}, "d1")
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    assert key == resume_key("m", {"root": Path("/data"), "epochs": 3, "lr": 0.1}, "d1")
    others = [
        resume_key("m2", {"lr": 0.1, "epochs": 3, "root": Path("/data")}, "d1"),
        resume_key("m", {"lr": 0.2, "epochs": 3, "root": Path("/data")}, "d1"),
        resume_key("m", {"lr": 0.1, "epochs": 3, "root": Path("/data")}, "d2"),
    ]
    assert key not in others and len(set(others)) == 3
    # Drafts on disk carry their key: a new way of computing it would orphan every unfinished training.
    assert key == "5bd770dd8b6c7603"


def test_json_files_are_strict_indented_and_take_paths(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"a": [1.5, float("nan")], "b": (float("inf"), {"c": float("-inf")}), "p": Path("/m")})
    assert path.read_text() == (
        '{\n "a": [\n  1.5,\n  null\n ],\n "b": [\n  null,\n  {\n   "c": null\n  }\n ],\n "p": "/m"\n}'
    )


def test_a_manifest_needs_only_its_required_fields_and_ignores_unknown_ones(tmp_path):
    required = dict(name="m", version="v", task="t", created="c", data_version="d", config={}, metrics={})
    manifest = VersionManifest.from_dict({**required, "added_later": 1})
    assert manifest == VersionManifest(**required) and manifest.info == {} and manifest.attempts == []
    partial = {k: v for k, v in required.items() if k not in ("task", "created")}
    with pytest.raises(VersionError) as exc:
        VersionManifest.from_dict(partial)
    assert str(exc.value) == "manifest lacks ['created', 'task']"
    assert VersionManifest(**required).metric("absent") != VersionManifest(**required).metric("absent")
    with pytest.raises(VersionError) as exc:
        VersionManifest.read(tmp_path)
    assert str(exc.value) == f"no {MANIFEST} in {tmp_path}: not a model version folder"
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(VersionError) as exc:
        VersionManifest.read(tmp_path)
    assert str(exc.value).startswith(f"{tmp_path / MANIFEST} is not a valid manifest: Expecting")
    (tmp_path / MANIFEST).write_text("5")  # valid JSON, not a manifest
    with pytest.raises(VersionError, match="is not a valid manifest"):
        VersionManifest.read(tmp_path)


# ---- the store -----------------------------------------------------------------------------------------
def test_only_complete_version_folders_are_versions(tmp_path):
    store = VersionStore(tmp_path, "m")
    assert store.versions() == []
    draft = store.begin("k", "d", "never")
    store.commit(draft, _manifest(draft))
    (store.root / "notes").mkdir()
    (store.root / "notes" / MANIFEST).write_text("{}")  # a manifest, but not a version name
    (store.root / "20260101T000000000000Z-half").mkdir()  # a version name, but no manifest
    assert store.versions() == [draft.version]


def test_a_new_draft_records_its_key_and_owner(tmp_path):
    store = VersionStore(tmp_path, "m")
    draft = store.begin("k1", "data", "never")
    expected = {"key": "k1", "version": draft.version, "pid": os.getpid()}
    assert (
        draft.key == "k1"
        and draft.state == expected
        and draft.dir == tmp_path / "m" / ".drafts" / draft.version
    )
    assert json.loads((draft.dir / "draft.json").read_text()) == expected
    draft.release()
    draft.release()  # releasing twice is harmless
    assert draft._lock is None


def test_auto_is_the_default_and_resumes_the_newest_unlocked_draft(tmp_path):
    store = VersionStore(tmp_path, "m")
    older, newer = store.begin("k", "d", "never"), store.begin("k", "d", "never")
    assert older.version < newer.version
    newer.update(epoch=3)
    older.release()
    newer.release()
    resumed = store.begin("k", "d")
    assert (resumed.version, resumed.dir, resumed.key) == (newer.version, newer.dir, "k")
    assert resumed.state["epoch"] == 3
    # It is locked again: another training now gets the older draft, then a new one.
    second = store.begin("k", "d")
    third = store.begin("k", "d")
    assert second.version == older.version and third.version not in (older.version, newer.version)


def test_a_new_version_name_never_reuses_a_version_or_a_draft(tmp_path, monkeypatch):
    from product_attrs.modeling import versions

    store = VersionStore(tmp_path, "m")
    done = store.begin("k", "d", "never")
    store.commit(done, _manifest(done))
    pending = store.begin("k2", "d", "never")
    fresh = "20990101T000000000000Z-d"
    names, asked = [done.version, pending.version, fresh], []
    monkeypatch.setattr(versions, "new_version_name", lambda data: asked.append(data) or names.pop(0))
    assert store.begin("k3", "data", "never").version == fresh
    assert asked == ["data", "data", "data"]


def test_an_explicit_resume_takes_the_draft_folder_or_its_checkpoint(tmp_path):
    store = VersionStore(tmp_path, "m")
    draft = store.begin("k", "d", "never")
    draft.update(epoch=2)
    draft.checkpoint.write_bytes(b"c")
    draft.release()
    again = store.begin("k", "d", draft.checkpoint)
    assert (again.version, again.dir, again.key, again.state["epoch"]) == (draft.version, draft.dir, "k", 2)
    assert again.resumed
    with pytest.raises(ConfigError, match="another process is training it now"):
        store.begin("k", "d", draft.dir)  # `again` holds its lock
    again.release()
    with pytest.raises(ConfigError) as exc:
        store.begin("other", "d", draft.dir)
    assert str(exc.value) == (
        f"--resume {draft.dir}: it was started with other settings or data; resume it with the "
        "same settings, or start a new training"
    )


def test_commit_drops_the_checkpoint_unless_asked_to_keep_it(tmp_path):
    store = VersionStore(tmp_path, "m")
    for keep in (False, True):
        draft = store.begin(f"k{keep}", "d", "never")
        draft.checkpoint.write_bytes(b"c")
        final = (
            store.commit(draft, _manifest(draft), keep_checkpoint=keep)
            if keep
            else store.commit(draft, _manifest(draft))
        )
        assert (final / "checkpoint.pt").exists() is keep
        assert not (final / "draft.json").exists() and draft._lock is None
    assert not (store.root / ".drafts").exists()  # no draft left: the drafts folder goes too


def test_a_discarded_draft_is_gone_and_never_resumed(tmp_path):
    store = VersionStore(tmp_path, "m")
    draft = store.begin("k", "d", "never")
    store.discard(draft)
    assert not draft.dir.exists() and not (store.root / ".drafts" / f"{draft.version}.lock").exists()
    assert draft._lock is None
    assert store.begin("k", "d").version != draft.version
    store.discard(draft)  # discarding again (folder and lock already gone) is harmless
