"""A toy task for the shared lifecycle: a small MLP on random points, with every source of randomness a
real task has (shuffling, augmentation noise, dropout), two phases, and a score the test can choose."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from product_attrs.modeling.lifecycle import Finished
from product_attrs.modeling.registry import ModelSpec, PromotionRule
from product_attrs.modeling.runner import Phase, Step

TOY = ModelSpec("toy_model", "toy", PromotionRule("score"))


class ToyTask:
    def __init__(self, config: dict[str, Any], info, device, log) -> None:
        self.config, self.info = config, info
        self.data_version = "toydata01"
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(96, 8, generator=g)
        self.y = (self.x[:, 0] + self.x[:, 1] > 0).long()
        self.evaluations = 0

    def build(self, resuming: bool) -> tuple[nn.Module, str]:
        model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 2))
        return model, "random init"

    def _phase(self, name: str, epochs: int, lr: float) -> Phase:
        data = TensorDataset(self.x, self.y)
        generator = torch.Generator()
        sampler = DistributedSampler(data, seed=1) if self.info.enabled else None
        loader = DataLoader(data, batch_size=8, shuffle=sampler is None, sampler=sampler, generator=generator)
        return Phase(
            name,
            epochs,
            loader,
            lambda params: torch.optim.SGD(params, lr=lr, momentum=0.9),
            lambda opt, steps: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps * epochs),
            generator=generator,
            sampler=sampler,
        )

    def phases(self) -> list[Phase]:
        return [
            self._phase("warm", self.config.get("epochs1", 2), 0.1),
            self._phase("tune", self.config.get("epochs2", 2), 0.02),
        ]

    def step(self, model: nn.Module, batch: Any, device: torch.device) -> Step:
        x, y = batch
        x = x + 0.1 * torch.randn_like(x)  # augmentation drawn from the global generator
        loss = F.cross_entropy(model(x), y)
        if self.config.get("nan_on_rank") == self.info.rank:
            loss = loss * math.nan
        return Step(loss, {"loss": float(loss.detach()) * len(x)}, len(x))

    def epoch_metrics(self, sums: dict[str, float], n: int) -> dict[str, float]:
        return {"train_loss": sums["loss"] / max(n, 1)}

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        self.evaluations += 1
        model.eval()
        with torch.no_grad():
            acc = float((model(self.x).argmax(1) == self.y).float().mean())
        return {"test_acc": acc}

    def finish(self, model: nn.Module, folder: Path, history: list[dict[str, Any]]) -> Finished:
        (folder / "report.txt").write_text(f"{len(history)} epochs\n")
        score = self.config.get("score", history[-1]["test_acc"])
        return Finished({"score": score, "test_acc": history[-1]["test_acc"]}, {"layers": 2}, history[-1])


def train_toy(registry, config: dict[str, Any], **kwargs):
    from product_attrs.modeling import lifecycle
    from product_attrs.modeling.runner import RunnerOptions

    kwargs.setdefault("log", lambda m: None)
    return lifecycle.train(
        TOY,
        lambda info, dev, log: ToyTask(config, info, dev, log),
        registry,
        config=config,
        options=RunnerOptions(eval_every=config.get("eval_every", 1), seed=config.get("seed", 0)),
        device="cpu",
        threads=1,
        **kwargs,
    )
