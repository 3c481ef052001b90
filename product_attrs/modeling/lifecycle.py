"""Train a model version from start to finish, the same way for every task.

    draft (resumed when a retry finds one) -> runner (epochs, checkpoints) -> the task's reports
    -> weights + manifest -> MLflow run and registered version -> promotion decision -> commit
    -> champion moved (only now, the version being complete)

Rank 0 owns the draft, the files and the registry; the other ranks train and return the same history.
A process killed at any point leaves its draft for the next attempt with the same settings and data
(a Dagster retry, the same command again) and nothing half-written among the versions.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from product_attrs.modeling import distributed as dist
from product_attrs.io import durable_write
from product_attrs.modeling.checkpoint import CheckpointError, load_checkpoint
from product_attrs.modeling.registry import ModelSpec, Promotion, Registry
from product_attrs.modeling.runner import Log, Runner, RunnerOptions, Task
from product_attrs.modeling.tracking import VERSION_TAG
from product_attrs.modeling.versions import (
    CHECKPOINT,
    WEIGHTS,
    Draft,
    VersionManifest,
    resume_key,
    write_json,
)


@dataclass
class Finished:
    """What a task reports once training is over (its files are already in the draft folder)."""

    metrics: dict[str, float]
    info: dict[str, Any]  # what serve.py needs to rebuild the model (goes to manifest.info)
    details: Any = None  # the task's full evaluation, for the caller


class ModelTask(Task, Protocol):
    """A runner task that can also build its model and report on it."""

    data_version: str

    def build(self, resuming: bool) -> tuple[nn.Module, str]:
        """The network and where its weights came from; `resuming`: the checkpoint's weights replace them."""

    def finish(self, model: nn.Module, folder: Path, history: list[dict[str, Any]]) -> Finished: ...


@dataclass
class TrainResult:
    """One training's outcome; `manifest` and `details` only on rank 0."""

    version: str
    version_dir: Path
    history: list[dict[str, Any]]
    model: nn.Module
    manifest: VersionManifest | None = None
    details: Any = None

    @property
    def metrics(self) -> dict[str, float]:
        return {
            k: (float("nan") if v is None else v)
            for k, v in (self.manifest.metrics if self.manifest else {}).items()
        }

    @property
    def promotion(self) -> Promotion | None:
        p = self.manifest.promotion if self.manifest else None
        return Promotion(**p) if p else None


def stderr_log(name: str, info: dist.DistInfo) -> Log:
    def log(msg: str) -> None:
        if info.is_main:
            print(f"[{name}] {msg}", file=sys.stderr, flush=True)

    return log


def train(
    spec: ModelSpec,
    make_task: Callable[[dist.DistInfo, torch.device, Log], ModelTask],
    registry: Registry,
    *,
    config: dict[str, Any],
    options: RunnerOptions,
    device: str = "auto",
    threads: int = 0,
    resume: str | Path = "auto",
    register: bool = True,
    keep_checkpoint: bool = False,
    log: Log | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train `spec` with the task `make_task` builds, alone or as one rank of a torchrun group.

    `resume`: "auto" continues the unfinished training with the same settings and data if there is one
    (what a retry needs), "never" always starts a new version, a path names a draft to continue.
    """
    info = dist.init_distributed(device)
    try:
        dev = dist.resolve_device(device, info)
        dist.seed_everything(options.seed + info.rank)
        if threads:
            torch.set_num_threads(threads)
        if dev.type == "cpu":
            torch.set_flush_denormal(True)  # denormal gradients made CPU conv backward several times slower
        log = log or stderr_log(spec.name, info)
        training = _Training(
            spec, registry, config, options, register, keep_checkpoint, log, on_epoch, info, dev
        )
        return training.fit(make_task(info, dev, log), resume)
    finally:
        dist.shutdown(info)


@dataclass
class _Training:
    """One training's fixed context, so that its steps need not pass it around."""

    spec: ModelSpec
    registry: Registry
    config: dict[str, Any]
    options: RunnerOptions
    register: bool
    keep_checkpoint: bool
    log: Log
    on_epoch: Callable[[dict[str, Any]], None] | None
    info: dist.DistInfo
    device: torch.device

    def fit(self, task: ModelTask, resume: str | Path) -> TrainResult:
        info, log = self.info, self.log
        store = self.registry.store(self.spec.name)
        key = resume_key(self.spec.name, self.config, task.data_version)
        draft = store.begin(key, task.data_version, resume) if info.is_main else None
        tracker, run_id = None, None
        try:
            version, folder, state = dist.broadcast_object(
                (draft.version, str(draft.dir), dict(draft.state)) if draft else None, info
            )
            folder = Path(folder)
            ckpt = load_checkpoint(folder / CHECKPOINT) if (folder / CHECKPOINT).is_file() else None
            if ckpt is not None and ckpt.get("resume_key") != key:
                raise CheckpointError(
                    f"{folder / CHECKPOINT} belongs to another training (settings or data differ)"
                )
            model, weights_source = task.build(resuming=ckpt is not None)
            weights_source = state.get("weights_source", weights_source)
            started = ckpt["position"]["epoch"] if ckpt else 0
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            attempts = [
                *state.get("attempts", []),
                {"started_at_epoch": started, "pid": os.getpid(), "at": now},
            ]
            log(
                f"{'resuming ' + version + f' after epoch {started}' if ckpt else 'new version ' + version}; "
                f"weights: {weights_source}"
            )
            tracker = self.registry.tracker if info.is_main else None
            run_id = state.get("mlflow_run_id")
            if tracker is not None:
                params = {**self.config, "data_version": task.data_version, "world_size": info.world_size}
                tags = {VERSION_TAG: version, "data_version": task.data_version}
                run_id = tracker.start_run(self.spec.name, version, params, tags, run_id)
            if draft is not None:
                draft.update(weights_source=weights_source, attempts=attempts, mlflow_run_id=run_id)

            def after_epoch(entry: dict[str, Any]) -> None:
                if tracker is not None:
                    tracker.log_metrics(run_id, entry, entry["epoch"])
                if self.on_epoch is not None:
                    self.on_epoch(entry)

            extra = {"resume_key": key, "config": self.config}
            runner = Runner(
                model, task, self.options, self.device, info, folder / CHECKPOINT, log, after_epoch, extra
            )
            run = runner.run(ckpt)
            manifest, details = None, None
            if draft is not None:
                manifest, details = self._finish(task, draft, model, run.history)
                folder = store.path(version)
            dist.barrier(info)
        except BaseException:
            if tracker is not None and run_id:
                try:
                    tracker.end_run(run_id, "FAILED")
                except Exception as exc:  # noqa: BLE001 - the training's own error is the one to raise
                    log(f"could not mark the MLflow run failed: {exc}")
            if draft is not None:
                draft.release()  # keep the draft: a retry with the same settings resumes it
            raise
        return TrainResult(version, folder, run.history, model, manifest, details)

    def _finish(
        self, task: ModelTask, draft: Draft, model: nn.Module, history: list[dict[str, Any]]
    ) -> tuple[VersionManifest, Any]:
        """Reports, weights and manifest into the draft; register; decide; commit; then move the champion."""
        spec, registry = self.spec, self.registry
        finished = task.finish(model, draft.dir, history)
        state_dict = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        durable_write(draft.dir / WEIGHTS, lambda tmp: torch.save(state_dict, tmp))
        write_json(draft.dir / "history.json", history)
        run_id = draft.state.get("mlflow_run_id")
        manifest = VersionManifest(
            name=spec.name,
            version=draft.version,
            task=spec.task,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            data_version=task.data_version,
            config=self.config,
            metrics=finished.metrics,
            info=finished.info,
            weights_source=draft.state["weights_source"],
            world_size=self.info.world_size,
            epochs=len(history),
            attempts=draft.state["attempts"],
            resume_key=draft.key,
            mlflow_run_id=run_id,
        )
        tracker = registry.tracker
        if tracker is not None and run_id:
            tracker.log_metrics(run_id, {f"final_{k}": v for k, v in finished.metrics.items()}, len(history))
            if self.register:
                manifest.registered_version = self._register(tracker, task, draft, manifest)
        if tracker is not None and manifest.registered_version is None:
            reason = "not registered in MLflow (registration off), so it cannot be served"
            metric = spec.rule.metric
            promotion = Promotion(False, draft.version, manifest.metric(metric), None, None, metric, reason)
        else:
            promotion = registry.decide(spec, manifest)
        manifest.promotion = promotion.to_dict()
        registry.store(spec.name).commit(draft, manifest, self.keep_checkpoint)
        if promotion.promoted and promotion.reason != "already the champion":
            registry.promote(spec, manifest)
        if tracker is not None and run_id:
            tracker.end_run(run_id, "FINISHED")
        self.log(
            f"{spec.name} {draft.version}: {spec.rule.metric} {manifest.metric(spec.rule.metric):.4f}; "
            f"champion: {promotion.reason}"
        )
        return manifest, finished.details

    def _register(self, tracker, task: ModelTask, draft: Draft, manifest: VersionManifest) -> str:
        """The registered version of this draft; a retry after registering does not register it twice."""
        registered = draft.state.get("registered_version")
        if registered is not None:
            return registered
        manifest.write(draft.dir)  # the registered files carry their manifest
        tracker.log_artifacts(manifest.mlflow_run_id, draft.dir, skip=(CHECKPOINT, "draft.json"))
        rule = self.spec.rule
        registered = tracker.register(
            self.spec.name,
            manifest.mlflow_run_id,
            {
                VERSION_TAG: draft.version,
                "data_version": task.data_version,
                "model_version_dir": str(self.registry.store(self.spec.name).path(draft.version)),
                rule.metric: rule.tag(manifest.metric(rule.metric)),
            },
        )
        draft.update(registered_version=registered)
        return registered
