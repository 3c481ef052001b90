"""Recognition of a photo folder on Ray Data: per-photo work in a pool of actors, the search on the driver.

Each actor loads the recognizer (and the detector, when one is used) once and runs
`retrieval.recognize.embed_objects` on a few photos at a time: decode, detect, crop, embed, as in-process.
It returns, per photo, its object rows with their crops' embeddings and predictions, or its quarantine
record. The driver puts photos back in input order (a lost photo is an error, a retried one is kept once)
and hands the whole to `retrieval.recognize.assemble_recognitions`, so the gallery search and the frame are
the in-process ones. Ray is imported inside the functions, so loading the Dagster definitions never
imports it.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from product_attrs.engines.ray_cluster import Cluster
from product_attrs.engines.ray_inference import actor_device, default_actors, indexed_paths, repeated_rows

if TYPE_CHECKING:
    from product_attrs.classification.serve import Classifier
    from product_attrs.retrieval.index import GalleryIndex
    from product_attrs.retrieval.recognize import Recognitions


class RecognizeActor:
    """One loaded recognizer (by version folder: the model is never pickled) and detector per actor.

    ``detector``: a detector version folder (loaded here), None (whole photos), or any picklable object
    with ``detect`` (a test's stand-in)."""

    def __init__(
        self,
        version_dir: str,
        device: str,
        detector: Any = None,
        root: str | None = None,
        score_thresh: float = 0.5,
        crop_pad: float = 0.05,
        batch_size: int = 64,
        photo_batch: int = 2,
    ) -> None:
        from product_attrs.classification.serve import Classifier

        self.classifier = Classifier.load(version_dir, device)
        if isinstance(detector, str):
            from product_attrs.detection.serve import Detector

            detector = Detector.load(detector, device)
        self.detector = detector
        self.root = Path(root) if root else None
        self.options = {
            "score_thresh": score_thresh,
            "crop_pad": crop_pad,
            "batch_size": batch_size,
            "photo_batch": photo_batch,
        }

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from product_attrs.retrieval.recognize import embed_objects, photo_name

        t = time.perf_counter()
        paths = [Path(str(p)) for p in batch["path"]]
        objects, done, bad = embed_objects(
            paths, self.classifier, detector=self.detector, root=self.root, **self.options
        )
        # Objects come photo by photo, in input order: a photo's rows are the next ones with its name.
        payloads, start = [], 0
        bad_by_path = {b["record_id"]: b for b in bad}
        for path in paths:
            name = photo_name(path, self.root) if str(path) not in bad_by_path else None
            end = start
            while name is not None and end < len(objects) and objects[end]["photo"] == name:
                end += 1
            part: dict[str, Any] = {"objects": objects[start:end], "bad": bad_by_path.get(str(path))}
            if end > start and done is not None:
                part["embeddings"] = done.embeddings[start:end]
                part["predictions"] = {k: v[start:end] for k, v in done.predictions.items()}
            payloads.append(pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL))
            start = end
        if start != len(objects):
            raise RuntimeError(f"{len(objects) - start} objects of this batch matched no photo")
        n = len(paths)
        return {
            "row": batch["row"],
            "payload": np.array(payloads, dtype=object),
            "seconds": np.full(n, (time.perf_counter() - t) / max(n, 1)),
        }


@dataclass
class RayRecognizer:
    """`retrieval.recognize.recognize_photos` with the per-photo work on a Ray cluster; ``seconds``:
    ``ray_wall`` (the pipeline's wall time) and ``ray_photos`` (actor busy time summed)."""

    version_dir: Path
    cluster: Cluster
    actors: int = 1
    photo_batch: int = 2
    num_gpus_per_actor: float = 0.0
    actor_cpus: float | None = None
    actor_cls: type = RecognizeActor
    actor_kwargs: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0

    def recognize(
        self,
        photos: Sequence[Path],
        classifier: Classifier,
        index: GalleryIndex,
        *,
        detector: Any = None,
        score_thresh: float = 0.5,
        min_similarity: float = 0.0,
        crop_pad: float = 0.05,
        batch_size: int = 64,
        root: Path | None = None,
    ) -> Recognitions:
        """The arguments of `recognize_photos`; ``detector`` is a version folder, a picklable detector or
        None. The same rows and quarantine as in-process, embeddings within float tolerance."""
        import ray

        from product_attrs.classification.serve import Served
        from product_attrs.retrieval.recognize import assemble_recognitions

        n = len(photos)
        parts: list[dict[str, Any] | None] = [None] * n
        seen = np.zeros(n, dtype=np.int64)
        t = time.perf_counter()
        if n:
            actors = max(1, int(self.actors))
            size = max(1, int(self.photo_batch))
            ds = indexed_paths(photos, blocks=max(1, -(-n // size)))
            ds = ds.map_batches(
                self.actor_cls,
                fn_constructor_kwargs={
                    "version_dir": str(self.version_dir),
                    "device": actor_device(self.num_gpus_per_actor),
                    "detector": str(detector) if isinstance(detector, Path) else detector,
                    "root": str(root) if root else None,
                    "score_thresh": score_thresh,
                    "crop_pad": crop_pad,
                    "batch_size": batch_size,
                    "photo_batch": size,
                    **self.actor_kwargs,
                },
                batch_size=size,  # a few photos at a time: a decoded 12-MP photo is 36 MB
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=self.actor_cpus or self.cluster.actor_cpus(actors),
                num_gpus=self.num_gpus_per_actor,
            )
            for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for r, payload in zip(np.asarray(out["row"], dtype=np.int64), out["payload"]):
                    seen[r] += 1
                    parts[r] = pickle.loads(payload)
                self._add("ray_photos", float(np.sum(out["seconds"])))
        self._add("ray_wall", time.perf_counter() - t)
        self.duplicates += repeated_rows(seen, "photos")
        objects: list[dict] = []
        bad: list[dict] = []
        embeddings: list[np.ndarray] = []
        predictions: dict[str, list[np.ndarray]] = {}
        for part in parts:
            assert part is not None
            objects += part["objects"]
            if part["bad"] is not None:
                bad.append(part["bad"])
            if part["objects"]:
                embeddings.append(part["embeddings"])
                for k, v in part["predictions"].items():
                    predictions.setdefault(k, []).append(v)
        done = (
            Served(np.concatenate(embeddings), {k: np.concatenate(v) for k, v in predictions.items()}, {})
            if objects
            else None
        )
        return assemble_recognitions(objects, done, bad, classifier, index, min_similarity)

    def _add(self, stage: str, value: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + value


def recognizer_for(
    classifier: Classifier,
    address: str,
    *,
    actors: int = 0,
    photo_batch: int = 2,
    num_gpus_per_actor: float = 0.0,
) -> RayRecognizer | None:
    """The Ray recognizer for an engine setting (joining the cluster once), or None for "" (in-process);
    ``actors`` 0 = `ray_inference.default_actors` of the cluster."""
    from product_attrs.engines.ray_cluster import connect

    if not address:
        return None
    cluster = connect(address)
    return RayRecognizer(
        Path(classifier.version_dir),
        cluster,
        actors=actors or default_actors(cluster),
        photo_batch=photo_batch,
        num_gpus_per_actor=num_gpus_per_actor,
    )
