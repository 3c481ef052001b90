"""Training loop: the loss goes down, warm-up ramps the LR, a non-finite loss stops training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from product_attrs.detection.dataset import load_detection_source
from product_attrs.detection.engine import NonFiniteLossError, train_one_epoch
from product_attrs.detection.loader import DetectionTorchDataset, collate
from product_attrs.detection.model import build_detector
from product_attrs_tests.detection.conftest import tiny_config


def test_a_few_steps_lower_the_loss(scenes_dir: Path) -> None:
    torch.manual_seed(0)
    data = load_detection_source(scenes_dir)
    ds = DetectionTorchDataset(data, None, train=True, hflip_prob=0.0)
    batch = [collate([ds[0], ds[1]])]
    model, _ = build_detector(tiny_config(), data.num_classes)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    losses = [train_one_epoch(model, opt, batch, torch.device("cpu"), epoch=1, log_every=0)["loss"] for _ in range(8)]
    assert losses[-1] < 0.7 * losses[0], losses


def test_warmup_ramps_lr_and_ends_at_base(scenes_dir: Path) -> None:
    data = load_detection_source(scenes_dir)
    ds = DetectionTorchDataset(data, None, train=True, hflip_prob=0.0)
    loader = [collate([ds[i], ds[i + 1]]) for i in (0, 2, 4)]
    model, _ = build_detector(tiny_config(), data.num_classes)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    seen: list[float] = []

    def recording_loader():  # the LR when a batch is fetched is the LR its step uses
        for batch in loader:
            seen.append(opt.param_groups[0]["lr"])
            yield batch

    train_one_epoch(model, opt, _Sized(recording_loader(), len(loader)), torch.device("cpu"), epoch=0,
                    warmup_iters=100, warmup_factor=0.1, log_every=0)
    assert seen[0] == pytest.approx(0.001) and seen[0] < seen[1] < seen[2]
    # Warm-up is cut to the epoch's length so that the LR is back at its base afterwards.
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


class _Sized:
    def __init__(self, it, n: int) -> None:
        self.it, self.n = it, n

    def __iter__(self):
        return iter(self.it)

    def __len__(self) -> int:
        return self.n


class _NanModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, images, targets):
        return {"loss_classifier": self.w * float("nan"), "loss_box_reg": self.w}


def test_non_finite_loss_stops_training() -> None:
    model = _NanModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = [([torch.zeros(3, 8, 8)], [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}])]
    with pytest.raises(NonFiniteLossError, match="loss is nan"):
        train_one_epoch(model, opt, batch, torch.device("cpu"), epoch=0, log_every=0)
    assert torch.equal(model.w.detach(), torch.ones(1))  # no step was taken
