"""The detector as a task of the shared runner: the loss goes down, the LR schedule (warm-up, then cosine or
multistep), and a non-finite loss stops training before any step."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from product_attrs.detection.config import PROFILES, DetectorConfig
from product_attrs.detection.loader import collate
from product_attrs.detection.task import DetectionTask, lr_factor
from product_attrs.modeling.config import resolve
from product_attrs.modeling.distributed import DistInfo
from product_attrs.modeling.runner import NonFiniteLossError, Runner, RunnerOptions
from product_attrs_tests.detection.conftest import quiet, tiny_config

CPU = torch.device("cpu")


def _runner(model: torch.nn.Module, task, **options) -> Runner:
    return Runner(model, task, RunnerOptions(**options), CPU, DistInfo(), None, quiet)


def test_a_few_steps_lower_the_loss(scenes_dir: Path) -> None:
    # A constant LR (no warm-up, no milestone reached) and one fixed batch seen 8 times.
    cfg = tiny_config(epochs=8, warmup_iters=0, lr_scheduler="multistep", lr_steps=(100,), hflip_prob=0.0)
    task = DetectionTask(cfg, scenes_dir, DistInfo(), CPU, quiet)
    torch.manual_seed(0)
    model, weights_source = task.build(resuming=False)
    assert weights_source == "package:efficientnet-lite0"
    batch = collate([task.train_ds[0], task.train_ds[1]])
    phase = dataclasses.replace(task.phases()[0], loader=[batch], generator=None, sampler=None)
    task.phases = lambda: [phase]  # the task's own optimizer and LR schedule, over the fixed batch
    state = _runner(model, task, eval_every=100).run()

    history = state.history
    assert [h["epoch"] for h in history] == list(range(1, 9))
    assert all(h["lr"] == pytest.approx(0.01) for h in history)
    losses = [h["train_loss"] for h in history]
    assert losses[-1] < 0.7 * losses[0], losses
    # The total is the sum of torchvision's four losses, and every figure is per image (2 images per step).
    parts = ("train_loss_classifier", "train_loss_box_reg", "train_loss_objectness", "train_loss_rpn_box_reg")
    assert history[0]["train_loss"] == pytest.approx(sum(history[0][k] for k in parts))
    # Only the last epoch is evaluated (eval_every=100), on the test split, with the COCO figures.
    assert "mAP" not in history[0] and 0.0 <= history[-1]["mAP"] <= 1.0
    assert history[-1]["n_eval_images"] == task.n_eval > 0


def _cfg(**values) -> DetectorConfig:
    return resolve(DetectorConfig, PROFILES, "demo", None, values)


def test_lr_factor_warmup_then_cosine() -> None:
    f = lr_factor(_cfg(epochs=4, lr_scheduler="cosine", warmup_iters=2, warmup_factor=0.1), steps_per_epoch=3)
    # Linear warm-up from warmup_factor over the first warmup_iters iterations...
    assert f(0) == pytest.approx(0.1)
    assert f(1) == pytest.approx(0.55)  # 0.1 * (1 - 1/2) + 1/2
    assert f(2) == 1.0  # ...then the cosine of epoch 0
    # ...a cosine over epochs, constant within an epoch: 0.5 * (1 + cos(pi * epoch / epochs)).
    assert [f(3), f(5)] == pytest.approx([0.8535533905932737] * 2)  # epoch 1: (1 + sqrt(2)/2) / 2
    assert f(6) == pytest.approx(0.5)
    assert f(11) == pytest.approx(0.14644660940672624)  # epoch 3: (1 - sqrt(2)/2) / 2
    assert f(12) == pytest.approx(0.0, abs=1e-12)  # after the last step of the last epoch

    # A warm-up longer than the first epoch is cut to it: epoch 1 starts on the schedule itself.
    g = lr_factor(_cfg(epochs=4, warmup_iters=50, warmup_factor=0.001), steps_per_epoch=4)
    assert g(0) == pytest.approx(0.001)
    assert g(2) == pytest.approx(0.001 * 0.5 + 0.5)
    assert g(3) == pytest.approx(0.001 * 0.25 + 0.75)
    assert g(4) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_lr_factor_multistep() -> None:
    f = lr_factor(
        _cfg(epochs=5, lr_scheduler="multistep", lr_steps=(2, 4), lr_gamma=0.1, warmup_iters=0),
        steps_per_epoch=3,
    )
    assert [f(i) for i in range(6)] == [1.0] * 6  # epochs 0 and 1
    assert [f(6), f(11)] == pytest.approx([0.1, 0.1])  # gamma once from epoch 2
    assert [f(12), f(14)] == pytest.approx([0.01, 0.01])  # and again from epoch 4
    # Warm-up multiplies the schedule of the first epoch.
    w = lr_factor(
        _cfg(
            epochs=5, lr_scheduler="multistep", lr_steps=(1,), lr_gamma=0.5, warmup_iters=2, warmup_factor=0.2
        ),
        steps_per_epoch=3,
    )
    assert [w(0), w(1), w(2), w(3)] == pytest.approx([0.2, 0.6, 1.0, 0.5])


def test_the_task_schedule_is_the_lr_factor(scenes_dir: Path) -> None:
    # The phase's scheduler steps the task's optimizer through cfg.lr * lr_factor, iteration by iteration.
    cfg = tiny_config(epochs=3, lr=0.02, warmup_iters=2, warmup_factor=0.1, lr_scheduler="cosine")
    task = DetectionTask(cfg, scenes_dir, DistInfo(), CPU, quiet)
    phase = task.phases()[0]
    assert phase.epochs == 3
    params = [torch.nn.Parameter(torch.zeros(1))]
    opt = phase.optimizer(params)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    sched = phase.scheduler(opt, 2)
    f = lr_factor(cfg, 2)
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.02 * f(i) for i in range(6)])
    assert seen == pytest.approx([0.002, 0.011, 0.015, 0.015, 0.005, 0.005])
    adamw = DetectionTask(tiny_config(optimizer="adamw"), scenes_dir, DistInfo(), CPU, quiet).phases()[0]
    assert isinstance(adamw.optimizer(params), torch.optim.AdamW)


class _NanModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, images, targets):
        return {"loss_classifier": self.w * float("nan"), "loss_box_reg": self.w}


def test_non_finite_loss_stops_training(scenes_dir: Path) -> None:
    task = DetectionTask(tiny_config(), scenes_dir, DistInfo(), CPU, quiet)
    batch = (
        [torch.zeros(3, 8, 8)],
        [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}],
    )
    phase = dataclasses.replace(task.phases()[0], loader=[batch], generator=None, sampler=None)
    task.phases = lambda: [phase]
    model = _NanModel()
    with pytest.raises(
        NonFiniteLossError, match=r"training loss is not finite at epoch 1 \(train\) step 0"
    ) as exc:
        _runner(model, task).run()
    assert "loss_classifier=nan" in str(exc.value) and "lower the learning rate" in str(exc.value)
    assert torch.equal(model.w.detach(), torch.ones(1))  # no step was taken
