"""The version store: drafts become versions only whole, pointers name complete versions, a locked draft
is never taken over, and the manifest is strict JSON."""

from __future__ import annotations

import json
import subprocess
import sys

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
