"""Batch inference on Ray Data: files decoded in CPU tasks, the classifier in a pool of actors.

The result has the in-process contract (`classification.serve.Served`, one row per path, unreadable files
as errors by position), so `extraction.extract.extract_batch` builds the same table and quarantine from it
whichever engine ran. Rows are put back by position, not by arrival: a retried block cannot duplicate an
image and a lost one is an error, never a silently shorter table. Ray is imported inside the functions, so
loading the Dagster definitions never imports it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from product_attrs.engines.ray_cluster import Cluster

if TYPE_CHECKING:
    import pandas as pd

    from product_attrs.classification.serve import Classifier, Served, Transform
    from product_attrs.extraction.extract import ExtractionResult

#: Column prefixes of a head's class index / confidence and its runner-up's in the actor's output blocks.
_PRED, _CONF, _SECOND, _SECOND_CONF = "pred/", "conf/", "second/", "second_conf/"


class LostRowsError(RuntimeError):
    """Ray returned fewer rows than it was given: the batch is not written (all or nothing)."""


def _decode(batch: dict[str, np.ndarray], transform: Transform, shape: tuple[int, ...]) -> dict[str, Any]:
    """A Ray Data CPU task: decode and transform files exactly as the in-process loader does."""
    from product_attrs.classification.serve import decode_file

    t = time.perf_counter()
    n = len(batch["row"])
    images = np.zeros((n, *shape), dtype=np.float32)
    errors = np.full(n, "", dtype=object)
    for j, path in enumerate(batch["path"]):
        tensor, error = decode_file(str(path), transform)
        if tensor is None:
            errors[j] = error
        else:
            images[j] = tensor.numpy()
    return {
        "row": batch["row"],
        "image": images,
        "error": errors,
        "decode_s": np.full(n, (time.perf_counter() - t) / max(n, 1)),
    }


def indexed_paths(paths: Sequence[Any], blocks: int) -> Any:
    """``paths`` as a Ray dataset of (row, path) in ``blocks`` blocks, with Ray Data's progress output off;
    results are put back by ``row``, whatever order they arrive in."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    items = [{"row": i, "path": str(p)} for i, p in enumerate(paths)]
    return ray.data.from_items(items, override_num_blocks=blocks)


def repeated_rows(seen: np.ndarray, what: str) -> int:
    """How many rows came back more than once (a retried block: same values, kept once); a row that never
    came back raises ``LostRowsError``, so nothing is written (all or nothing)."""
    lost = int((seen == 0).sum())
    if lost:
        raise LostRowsError(f"{lost} of {len(seen)} {what} came back from Ray without a row")
    return int((seen > 1).sum())


def actor_device(num_gpus_per_actor: float) -> str:
    return "cuda" if num_gpus_per_actor > 0 else "cpu"


#: A decode worker's own memory before its batch: Python with torch and PIL imported. Ray Data measured
#: 455 to 460 MiB per decode worker on the demo model's images and asks for a quarter more than it sees.
DECODE_WORKER_MEMORY = 576 * 2**20


def decode_memory(batch_size: int, shape: tuple[int, ...]) -> int:
    """Bytes a decode task holds: the worker itself and its batch of float32 images twice (being filled,
    being handed on). Reserving it also keeps decoding its own stage: Ray Data never fuses map stages
    whose resources differ, so decoding scales with the CPUs instead of running inside the model actors."""
    return DECODE_WORKER_MEMORY + 2 * batch_size * int(np.prod(shape)) * 4


#: Images per Ray Data run: every run starts the actor pool (a model load each), so a run is large
#: (32 in-process chunks); its rows are still written as 2,048-row groups by the extraction.
RAY_CHUNK_ROWS = 65_536


def _no_predictions(heads: Sequence[str], n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per head, class -1 and confidence NaN: what an unreadable image keeps (as in-process)."""
    return (
        {h: np.full(n, -1, dtype=np.int64) for h in heads},
        {h: np.full(n, np.nan, dtype=np.float32) for h in heads},
    )


class ClassifierActor:
    """One loaded classifier per actor (loaded once, by version folder: the model is never pickled)."""

    def __init__(self, version_dir: str, device: str) -> None:
        from product_attrs.classification.serve import Classifier

        self.classifier = Classifier.load(version_dir, device)
        self.ready_at = time.time()  # wall clock: the driver's start-up figure is the first actor ready

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        t = time.perf_counter()
        c = self.classifier
        n = len(batch["row"])
        ok = np.asarray(batch["error"] == "", dtype=bool)
        embeddings = np.zeros((n, c.model.neck[0].out_features), dtype=np.float32)
        pred, conf = _no_predictions(c.heads, n)
        second, second_conf = _no_predictions(c.heads, n)
        if ok.any():
            x = torch.from_numpy(np.ascontiguousarray(batch["image"][ok]))
            embeddings[ok], best = c.forward_top2(x)
            for h, (k, p, k2, p2) in best.items():
                pred[h][ok], conf[h][ok], second[h][ok], second_conf[h][ok] = k, p, k2, p2
        out: dict[str, Any] = {"row": batch["row"], "error": batch["error"], "embedding": embeddings}
        for prefix, values in ((_PRED, pred), (_CONF, conf), (_SECOND, second), (_SECOND_CONF, second_conf)):
            out |= {prefix + h: values[h] for h in c.heads}
        out["decode_s"] = batch["decode_s"]
        out["model_s"] = np.full(n, (time.perf_counter() - t) / max(n, 1))
        out["ready_at"] = np.full(n, self.ready_at)
        return out


@dataclass
class RayPredictor:
    """`extract.Predict` on a Ray cluster: call it with a chunk's paths; ``seconds`` adds up over calls
    (``ray_wall``: the pipelines' wall time; ``ray_start_up``: the part of it until the first model actor
    was ready (planning, the actor's process and imports, the model load); ``ray_decode`` / ``ray_model``:
    busy time summed over tasks and actors, to see which stage is the bottleneck)."""

    version_dir: Path
    transform: Transform
    heads: list[str]
    cluster: Cluster
    actors: int = 1
    batch_size: int = 128
    num_gpus_per_actor: float = 0.0
    #: CPUs per model actor; None = sized from the cluster (`Cluster.actor_cpus`), a bench may pin it
    actor_cpus: float | None = None
    #: the model actor class and extra constructor arguments (a test's actor that dies once)
    actor_cls: type = ClassifierActor
    actor_kwargs: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0

    @classmethod
    def for_classifier(cls, classifier: Classifier, cluster: Cluster, **options: Any) -> RayPredictor:
        return cls(Path(classifier.version_dir), classifier.transform(), classifier.heads, cluster, **options)

    def __call__(self, paths: Sequence[str]) -> Served:
        import ray
        from PIL import Image

        from product_attrs.classification.serve import Served

        n = len(paths)
        shape = tuple(self.transform(Image.new("RGB", (8, 8))).shape)
        dim = None
        embeddings: np.ndarray | None = None
        pred, conf = _no_predictions(self.heads, n)
        second, second_conf = _no_predictions(self.heads, n)
        errors: dict[int, str] = {}
        seen = np.zeros(n, dtype=np.int64)
        t = time.perf_counter()
        started, ready = time.time(), math.inf
        if n:
            actors = max(1, int(self.actors))
            actor_cpus = self.actor_cpus or self.cluster.actor_cpus(actors)
            spare = self.cluster.cpus - actors * actor_cpus
            blocks = min(n, max(math.ceil(n / self.batch_size), 2 * max(1, int(self.cluster.cpus))))
            ds = indexed_paths(paths, blocks)
            ds = ds.map_batches(
                _decode,
                fn_kwargs={"transform": self.transform, "shape": shape},
                batch_size=self.batch_size,
                batch_format="numpy",
                num_cpus=min(1.0, max(spare, 0.25)),  # what the actors leave: a whole CPU may not exist
                memory=decode_memory(self.batch_size, shape),
            )
            ds = ds.map_batches(
                self.actor_cls,
                fn_constructor_kwargs={
                    "version_dir": str(self.version_dir),
                    "device": actor_device(self.num_gpus_per_actor),
                    **self.actor_kwargs,
                },
                batch_size=self.batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=actor_cpus,
                num_gpus=self.num_gpus_per_actor,
            )
            for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
                rows = np.asarray(out["row"], dtype=np.int64)
                if "ready_at" in out:  # a stand-in actor may not say
                    ready = min(ready, float(np.min(out["ready_at"])))
                if embeddings is None:
                    dim = out["embedding"].shape[1]
                    embeddings = np.zeros((n, dim), dtype=np.float32)
                np.add.at(seen, rows, 1)
                embeddings[rows] = out["embedding"]
                for h in self.heads:
                    pred[h][rows], conf[h][rows] = out[_PRED + h], out[_CONF + h]
                    if _SECOND + h in out:  # a stand-in actor may give the top-1 only
                        second[h][rows], second_conf[h][rows] = out[_SECOND + h], out[_SECOND_CONF + h]
                for r, e in zip(rows, out["error"]):
                    if e:
                        errors[int(r)] = str(e)
                self._add("ray_decode", float(np.sum(out["decode_s"])))
                self._add("ray_model", float(np.sum(out["model_s"])))
        self._add("ray_wall", time.perf_counter() - t)
        if math.isfinite(ready):
            self._add("ray_start_up", max(ready - started, 0.0))
        self.duplicates += repeated_rows(seen, "images")
        if embeddings is None:
            embeddings = np.zeros((0, dim or 0), dtype=np.float32)
        predictions = pred | {f"{h}__confidence": conf[h] for h in self.heads}
        predictions |= {f"{h}__second": second[h] for h in self.heads}
        predictions |= {f"{h}__second_confidence": second_conf[h] for h in self.heads}
        return Served(embeddings, predictions, errors)

    def _add(self, stage: str, value: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + value


def default_actors(cluster: Cluster) -> int:
    """One actor per GPU on a GPU cluster, else one per two CPUs (decoding needs the rest), at least one."""
    if cluster.gpus >= 1:
        return int(cluster.gpus)
    return max(1, int(cluster.cpus // 2))


def predictor_for(
    classifier: Classifier,
    address: str,
    *,
    batch_size: int = 128,
    actors: int = 0,
    num_gpus_per_actor: float = 0.0,
) -> RayPredictor | None:
    """The Ray predictor for an engine setting (joining the cluster once), or None for "" (in-process);
    ``actors`` 0 = `default_actors` of the cluster."""
    from product_attrs.engines.ray_cluster import connect

    if not address:
        return None
    cluster = connect(address)
    return RayPredictor.for_classifier(
        classifier,
        cluster,
        actors=actors or default_actors(cluster),
        batch_size=batch_size,
        num_gpus_per_actor=num_gpus_per_actor,
    )


def extract_batch_on_ray(
    items: pd.DataFrame,
    classifier: Classifier,
    detector=None,
    previous: pd.DataFrame | None = None,
    *,
    cluster: Cluster,
    actors: int = 1,
    batch_size: int = 128,
    num_gpus_per_actor: float = 0.0,
    **options: Any,
) -> ExtractionResult:
    """`extract.extract_batch` with the classification on Ray: the same rows, columns and quarantine."""
    from product_attrs.extraction.extract import extract_batch

    predict = RayPredictor.for_classifier(
        classifier, cluster, actors=actors, batch_size=batch_size, num_gpus_per_actor=num_gpus_per_actor
    )
    result = extract_batch(
        items, classifier, detector, previous, batch_size=batch_size, predict=predict, **options
    )
    result.seconds |= predict.seconds
    return result
