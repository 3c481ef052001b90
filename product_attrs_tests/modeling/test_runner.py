"""The shared training loop: a crashed run resumes to the same weights, evaluation follows its cadence,
and a non-finite loss on one rank stops every rank."""

from __future__ import annotations

import pytest
import torch

from product_attrs.modeling.registry import Registry
from product_attrs.modeling.runner import NonFiniteLossError
from product_attrs.modeling.versions import CHECKPOINT, VersionStore
from product_attrs_tests.modeling.helpers import free_port, set_ddp_env
from product_attrs_tests.modeling.toy import TOY, train_toy


class Crash(Exception):
    """Stands for a killed process: raised after an epoch's checkpoint is written."""


def crash_after(epoch: int):
    def on_epoch(entry: dict) -> None:
        if entry["epoch"] == epoch:
            raise Crash

    return on_epoch


@pytest.mark.parametrize("crash_epoch", [1, 2, 3])  # inside phase 1, at the phase boundary, inside phase 2
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, crash_epoch):
    config = {"epochs1": 2, "epochs2": 2}
    with pytest.raises(Crash):
        train_toy(Registry(tmp_path / "a"), config, on_epoch=crash_after(crash_epoch))
    store = VersionStore(tmp_path / "a", TOY.name)
    assert store.versions() == []  # nothing half-finished among the versions
    (draft,) = [p for p in (store.root / ".drafts").iterdir() if p.is_dir()]
    assert (draft / CHECKPOINT).is_file()

    resumed = train_toy(Registry(tmp_path / "a"), config)
    straight = train_toy(Registry(tmp_path / "b"), config)
    assert resumed.version == draft.name and store.versions() == [draft.name]
    assert [a["started_at_epoch"] for a in resumed.manifest.attempts] == [0, crash_epoch]
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    a, b = resumed.model.state_dict(), straight.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (store.root / ".drafts").exists() and not (resumed.version_dir / CHECKPOINT).exists()


def test_other_settings_start_a_new_version_instead_of_resuming(tmp_path):
    with pytest.raises(Crash):
        train_toy(Registry(tmp_path), {"epochs1": 2}, on_epoch=crash_after(1))
    other = train_toy(Registry(tmp_path), {"epochs1": 2, "seed": 1})
    assert other.manifest.attempts[0]["started_at_epoch"] == 0 and len(other.manifest.attempts) == 1
    # The abandoned draft is gone once a newer training of the model is committed.
    assert VersionStore(tmp_path, TOY.name).versions() == [other.version]
    assert not (tmp_path / TOY.name / ".drafts").exists()


def test_resume_never_starts_over(tmp_path):
    with pytest.raises(Crash):
        train_toy(Registry(tmp_path), {"epochs1": 2}, on_epoch=crash_after(1))
    fresh = train_toy(Registry(tmp_path), {"epochs1": 2}, resume="never")
    assert [a["started_at_epoch"] for a in fresh.manifest.attempts] == [0]


def test_evaluation_every_n_epochs_and_at_the_end_of_each_phase(tmp_path):
    result = train_toy(Registry(tmp_path), {"epochs1": 3, "epochs2": 3, "eval_every": 2})
    evaluated = [h["epoch"] for h in result.history if "test_acc" in h]
    assert evaluated == [2, 3, 4, 6]  # every 2nd epoch, plus the last of phase 1 (3) and of phase 2 (6)
    assert [h["phase"] for h in result.history] == ["warm"] * 3 + ["tune"] * 3


def test_a_non_finite_loss_stops_with_a_clear_error(tmp_path):
    with pytest.raises(NonFiniteLossError, match="not finite at epoch 1 .warm. step 0"):
        train_toy(Registry(tmp_path), {"nan_on_rank": 0})


def _rank(rank: int, world: int, port: int, root, queue) -> None:
    set_ddp_env(rank, world, port)
    try:
        train_toy(Registry(root), {"nan_on_rank": 1})
        queue.put((rank, "finished"))
    except NonFiniteLossError as exc:
        queue.put((rank, str(exc)))


def test_a_non_finite_loss_on_one_rank_stops_every_rank(tmp_path):
    """Rank 1 alone sees NaN; rank 0 must stop too instead of waiting in the gradient all-reduce."""
    import torch.multiprocessing as mp

    queue = mp.get_context("fork").SimpleQueue()
    ctx = mp.start_processes(
        _rank, args=(2, free_port(), tmp_path, queue), nprocs=2, start_method="fork", join=False
    )
    assert ctx.join(timeout=60) or ctx.join(timeout=60), "a rank is still running (hung)"
    results = dict(queue.get() for _ in range(2))
    assert "not finite" in results[0] and "not finite" in results[1]
    assert "this rank: nan" in results[1] and "this rank: nan" not in results[0]


def _rank_trains(rank: int, world: int, port: int, root, queue) -> None:
    set_ddp_env(rank, world, port)
    result = train_toy(Registry(root), {"epochs1": 1, "epochs2": 1})
    queue.put((rank, result.version, float(sum(p.double().sum() for p in result.model.parameters()))))


def test_ddp_ranks_share_one_version_and_end_with_the_same_weights(tmp_path):
    import torch.multiprocessing as mp

    queue = mp.get_context("fork").SimpleQueue()
    mp.start_processes(_rank_trains, args=(2, free_port(), tmp_path, queue), nprocs=2, start_method="fork")
    (_, v0, w0), (_, v1, w1) = sorted(queue.get() for _ in range(2))
    assert v0 == v1 and w0 == pytest.approx(w1, rel=1e-9)
    store = VersionStore(tmp_path, TOY.name)
    assert store.versions() == [v0] and store.manifest(v0).world_size == 2
