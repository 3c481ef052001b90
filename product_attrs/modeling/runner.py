"""The training loop every model shares: phases of epochs, AMP, channels_last, evaluation cadence,
checkpoints, resume and a non-finite loss that stops every rank at once.

In the manner of torchvision's references: the task (classification, detection) owns data, model and
loss; the runner owns the loop and its state. After every epoch rank 0 writes a checkpoint with the
model, optimizer, LR scheduler, grad scaler, position, history and each rank's random state. A run
resumed from it takes the same random draws as one that never stopped, because samplers are reseeded
from (seed, epoch) at every epoch start and the generators' states are restored: on CPU the resumed run
ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from product_attrs.modeling import distributed as dist
from product_attrs.modeling.checkpoint import CheckpointError, capture_rng, restore_rng, save_checkpoint

Log = Callable[[str], None]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite on some rank; the message says where and what to try."""


@dataclass
class Phase:
    """Epochs over one loader with one optimizer and one LR schedule (stepped every iteration)."""

    name: str
    epochs: int
    loader: Iterable
    optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer]
    scheduler: Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler | None]
    generator: torch.Generator | None = None  # reseeded from (seed, epoch) at each epoch start
    sampler: Any = None  # with set_epoch(epoch): DistributedSampler, class-balanced batches
    note: str = ""


@dataclass
class Step:
    """One batch's loss, quantities to sum over the epoch (the task turns them into means), and its size."""

    loss: torch.Tensor
    sums: dict[str, float]
    n: int


class Task(Protocol):
    """What the runner needs from a task."""

    def phases(self) -> list[Phase]: ...

    def step(self, model: nn.Module, batch: Any, device: torch.device) -> Step: ...

    def epoch_metrics(self, sums: dict[str, float], n: int) -> dict[str, float]: ...

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RunnerOptions:
    amp: bool = False  # float16 autocast with a grad scaler; CUDA only
    channels_last: bool = False
    eval_every: int = 1  # epochs between evaluations; the last epoch of a phase is always evaluated
    clip_grad_norm: float = 0.0
    max_steps: int = 0  # per epoch; 0 = the whole loader (smoke runs cap it)
    seed: int = 0


@dataclass
class Position:
    phase: int = 0
    phase_epoch: int = 0  # epochs completed in `phase`
    epoch: int = 0  # epochs completed in all


@dataclass
class RunState:
    position: Position
    history: list[dict[str, Any]] = field(default_factory=list)
    started_at_epoch: int = 0


class Runner:
    def __init__(
        self,
        model: nn.Module,
        task: Task,
        options: RunnerOptions,
        device: torch.device,
        info: dist.DistInfo,
        checkpoint: Path | None,
        log: Log,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        checkpoint_extra: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.task, self.options, self.device, self.info = model, task, options, device, info
        self.checkpoint_path, self.log, self.on_epoch = checkpoint, log, on_epoch
        self.extra = checkpoint_extra or {}
        self.amp = options.amp and device.type == "cuda"

    def _wrapped(self) -> nn.Module:
        self.model.to(self.device)
        if self.options.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if not self.info.enabled:
            return self.model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def run(self, ckpt: dict[str, Any] | None = None) -> RunState:
        state = RunState(Position(), [])
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            state = RunState(Position(**ckpt["position"]), list(ckpt["history"]), ckpt["position"]["epoch"])
        net = self._wrapped()
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        phases = self.task.phases()
        for index, phase in enumerate(phases):
            pos = state.position
            if index < pos.phase or phase.epochs == 0:
                continue
            if index > pos.phase:
                pos.phase, pos.phase_epoch = index, 0
            if pos.phase_epoch >= phase.epochs:
                continue
            params = [p for p in net.parameters() if p.requires_grad]
            optimizer = phase.optimizer(params)
            steps = _steps(phase.loader, self.options.max_steps)
            scheduler = phase.scheduler(optimizer, steps)
            if ckpt is not None and ckpt["position"]["phase"] == index and pos.phase_epoch > 0:
                _load_states(ckpt, optimizer, scheduler, scaler)
            if ckpt is not None and "rng" in ckpt:
                self._restore_rng(ckpt["rng"])
                ckpt = None  # restored once, at the first epoch this process runs
            self.log(f"{phase.name}: {phase.note}{phase.epochs} epochs, {steps} steps each")
            for epoch in range(pos.phase_epoch, phase.epochs):
                entry = self._epoch(net, phase, optimizer, scheduler, scaler, pos, epoch)
                pos.phase_epoch, pos.epoch = epoch + 1, pos.epoch + 1
                if pos.epoch % self.options.eval_every == 0 or epoch + 1 == phase.epochs:
                    metrics = self.task.evaluate(self.model, self.device)
                    entry.update(dist.broadcast_object(metrics, self.info))
                state.history.append(entry)
                self._save(state, optimizer, scheduler, scaler)
                self.log(
                    " ".join(
                        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in entry.items()
                        if not isinstance(v, dict)
                    )
                )
                if self.on_epoch is not None:
                    self.on_epoch(entry)
        return state

    def _epoch(
        self, net: nn.Module, phase: Phase, optimizer, scheduler, scaler, pos: Position, epoch: int
    ) -> dict[str, Any]:
        if phase.generator is not None:
            phase.generator.manual_seed((self.options.seed + 1) * 100_003 + pos.epoch)
        if phase.sampler is not None and hasattr(phase.sampler, "set_epoch"):
            phase.sampler.set_epoch(pos.epoch)
        net.train()
        start, n_images, sums = time.perf_counter(), 0, {}
        for step_index, batch in enumerate(phase.loader):
            if self.options.max_steps and step_index >= self.options.max_steps:
                break
            with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
                out = self.task.step(net, batch, self.device)
            value = float(out.loss.detach())
            if not dist.all_finite(value, self.device, self.info):
                raise NonFiniteLossError(
                    f"training loss is not finite at epoch {pos.epoch + 1} ({phase.name}) step {step_index} "
                    f"(this rank: {value}; {', '.join(f'{k}={v:.4g}' for k, v in out.sums.items())}); "
                    "lower the learning rate, check the input images or boxes, or disable amp"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(out.loss).backward()
            if self.options.clip_grad_norm > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(net.parameters(), self.options.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            n_images += out.n
            for k, v in out.sums.items():
                sums[k] = sums.get(k, 0.0) + v
        seconds = time.perf_counter() - start
        totals = dist.sum_across(
            {**sums, "_images": float(n_images), "_seconds": seconds}, self.device, self.info
        )
        n_all = int(totals.pop("_images"))
        wall = totals.pop("_seconds") / self.info.world_size
        return {
            "epoch": pos.epoch + 1,
            "phase": phase.name,
            "phase_epoch": epoch + 1,
            "lr": float(optimizer.param_groups[0]["lr"]),
            "seconds": seconds,
            "images_per_s": n_all / wall if wall > 0 else float("nan"),
            **self.task.epoch_metrics(totals, n_all),
        }

    def _restore_rng(self, states: list[dict[str, Any]]) -> None:
        if len(states) == self.info.world_size:
            restore_rng(states[self.info.rank])
        else:  # another world size: the stream cannot continue; start a reproducible one instead
            self.log(
                f"resuming with {self.info.world_size} processes instead of {len(states)}: "
                "random state reseeded"
            )
            dist.seed_everything(self.options.seed * 7919 + self.info.rank)

    def _save(self, state: RunState, optimizer, scheduler, scaler) -> None:
        rng = dist.all_gather_object(capture_rng(), self.info)
        if self.checkpoint_path is None or not self.info.is_main:
            return
        save_checkpoint(
            self.checkpoint_path,
            {
                "model": self.model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict(),
                "position": vars(state.position).copy(),
                "history": state.history,
                "rng": rng,
                **self.extra,
            },
        )


def _steps(loader: Iterable, max_steps: int) -> int:
    try:
        n = len(loader)  # type: ignore[arg-type]
    except TypeError:
        n = max_steps
    return max(1, min(n, max_steps) if max_steps else n)


def _load_states(ckpt: dict[str, Any], optimizer, scheduler, scaler) -> None:
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler"):
            scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint's optimizer state does not fit this model ({exc})") from None
