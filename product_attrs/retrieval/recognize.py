"""Detect + recognize: which catalog products are in each photo, and how many of each.

With a detector, every box above a score is cropped, embedded and matched to the gallery, so a shelf
photo gives a count per product (share of shelf by product, not only by the detector's coarse class).
Without one, the whole photo is one query (a photo of a single product). A match below
``min_similarity`` is kept as ``unknown``: the gallery may lack the product, and analysts must see that.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from product_attrs.catalog.clean import to_rgb
from product_attrs.catalog.styles import QUARANTINE_COLUMNS
from product_attrs.classification.serve import Classifier, Served
from product_attrs.decode import MAX_FILE_BYTES, failure_reason, open_image
from product_attrs.paths import PathOutsideRoot, is_within, read_regular
from product_attrs.retrieval.index import GalleryIndex
from product_attrs.settings import ENV_RECOGNITION_DIR, ENV_RECOGNITION_ROOTS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
UNKNOWN = "unknown"
RECOGNITION_SOURCE = "recognitions"
RECOGNITION_COLUMNS = [
    "photo",
    "photo_sha1",
    "object",
    "x1",
    "y1",
    "x2",
    "y2",
    "detector_score",
    "detector_class",
    "product",
    "similarity",
    "runner_up",
    "runner_up_similarity",
    "recognized",
    "predicted",
    "predicted_confidence",
]


def list_photos(folder: Path) -> list[Path]:
    """Every image name under ``folder`` (recursively), in a stable order: regular files, and also FIFOs,
    devices and symlinks (to anywhere), so that `recognize_photos` records each one it cannot read instead
    of dropping it unseen. Symlinked sub-folders are not walked."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no photo folder at {folder}")
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not p.is_dir()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


class FolderNotAllowed(PathOutsideRoot):
    """A recognition folder outside every allowed root: run config is typed by anyone in the UI."""


def allowed_folder(folder: str, roots: Sequence[Path]) -> Path:
    """``folder`` resolved (symlinks followed), if it lies under one of ``roots``; else `FolderNotAllowed`,
    raised before anything in it is read."""
    if "\x00" in folder:
        raise FolderNotAllowed("recognitions.folder contains a NUL byte")
    resolved = Path(folder).expanduser().resolve()
    if not any(is_within(root, resolved) for root in roots):
        raise FolderNotAllowed(
            f"recognitions.folder is outside the allowed roots (the data root, "
            f"{ENV_RECOGNITION_DIR}, {ENV_RECOGNITION_ROOTS}); add its root to {ENV_RECOGNITION_ROOTS}\n"
            f"{resolved} is not under any of: {', '.join(map(str, roots))}"
        )
    return resolved


@dataclass
class Recognitions:
    rows: pd.DataFrame  # one row per recognized object (RECOGNITION_COLUMNS + the gallery's label columns)
    quarantine: pd.DataFrame  # photos that could not be read, with the reason


#: Photos decoded at a time: the bound on the pixels held whatever the folder's size (a decoded 12-MP photo
#: is 36 MB, and the detector's float tensor of it 144 MB, normalised copy another 144 MB: 4 at a time
#: peaked at 2.1 GB for 1,000 photos, bench/bench_memory.py). Detection sees batches of 2 photos instead of
#: 4: the same boxes for photos of one size; others are padded to the batch's largest, which moves boxes
#: by < 1e-3 (test_batched_detection_equals_one_by_one).
PHOTO_BATCH = 2


def _open(path: Path) -> tuple[Image.Image, str]:
    """The upright RGB image and the SHA-1 of its bytes, from one read of the file (a regular file only,
    the pixel limit and the deadline of `product_attrs.decode.open_image`)."""
    data = read_regular(path, limit=MAX_FILE_BYTES)
    with open_image(data) as img:
        return to_rgb(img), hashlib.sha1(data).hexdigest()


def photo_name(path: Path, root: Path | None) -> str:
    """A photo's name in the rows: its path under ``root`` when given."""
    return str(path.relative_to(root)) if root else str(path)


def _crop(img: Image.Image, box: Sequence[float], pad: float) -> Image.Image:
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * pad, (y2 - y1) * pad
    left, top = max(0, int(round(x1 - dx))), max(0, int(round(y1 - dy)))
    right, bottom = min(img.width, int(round(x2 + dx))), min(img.height, int(round(y2 + dy)))
    return img.crop((left, top, max(right, left + 1), max(bottom, top + 1)))


def _decoded(
    photos: Iterable[Path], root: Path | None, bad: list[dict], size: int
) -> Iterator[list[tuple[Path, Image.Image, str]]]:
    """Lists of up to ``size`` decoded photos; a photo that cannot be read goes to ``bad`` with its reason,
    and a symlink leading out of ``root`` is not read at all."""
    chunk: list[tuple[Path, Image.Image, str]] = []
    for path in photos:
        try:
            if root is not None and not is_within(root, path):
                raise PathOutsideRoot(f"{path} leads to {Path(path).resolve()}, outside {root}")
            chunk.append((path, *_open(path)))
        except Exception as exc:  # noqa: BLE001 - recorded per photo
            bad.append(
                {
                    "source": RECOGNITION_SOURCE,
                    "record_id": str(path),
                    "reason": "outside_folder" if isinstance(exc, PathOutsideRoot) else failure_reason(exc),
                    "detail": re.sub(r" <[^<>]* at 0x[0-9a-f]+>", "", f"{type(exc).__name__}: {exc}")[:300],
                }
            )
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Embedder:
    """Crops in, embeddings out, in batches of ``batch_size`` across photos (as `Classifier.predict_images`
    over all crops would batch them): only transformed crops wait for a batch, never pixels."""

    def __init__(self, classifier: Classifier, batch_size: int) -> None:
        self.classifier, self.batch_size = classifier, batch_size
        self.transform = classifier.transform()
        self.pending: list[torch.Tensor] = []
        self.embeddings: list[np.ndarray] = []
        self.best: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {h: [] for h in classifier.heads}

    def add(self, crop: Image.Image) -> None:
        self.pending.append(self.transform(crop.convert("RGB")))
        if len(self.pending) == self.batch_size:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            emb, best = self.classifier.forward(torch.stack(self.pending))
            self.pending = []
            self.embeddings.append(emb)
            for h, kc in best.items():
                self.best[h].append(kc)

    def served(self) -> Served:
        self.flush()
        predictions: dict[str, np.ndarray] = {}
        for h, parts in self.best.items():
            predictions[h] = np.concatenate([k for k, _ in parts])
            predictions[f"{h}__confidence"] = np.concatenate([c for _, c in parts])
        return Served(np.concatenate(self.embeddings), predictions, {})


def _chunk_objects(
    chunk: list[tuple[Path, Image.Image, str]],
    embedder: _Embedder,
    root: Path | None,
    detector,
    score_thresh: float,
    crop_pad: float,
) -> list[dict]:
    """The object rows of a few decoded photos, their crops handed to ``embedder`` in the same order."""
    objects: list[dict] = []
    detections = None
    if detector is not None:
        detections = detector.detect([img for _, img, _ in chunk], score_thresh=score_thresh)
    for i, (path, img, sha1) in enumerate(chunk):
        name = photo_name(path, root)
        if detections is None:
            boxes = [(None, None, None, (0.0, 0.0, float(img.width), float(img.height)))]
        else:
            d = detections[detections["image"] == i]
            boxes = [
                (j, float(r.score), str(r.category_name), (r.x1, r.y1, r.x2, r.y2))
                for j, r in enumerate(d.itertuples(index=False))
            ]
        for j, score, cls, box in boxes:
            objects.append(
                {
                    "photo": name,
                    "photo_sha1": sha1,
                    "object": 0 if j is None else j,
                    "x1": box[0],
                    "y1": box[1],
                    "x2": box[2],
                    "y2": box[3],
                    "detector_score": score,
                    "detector_class": cls,
                }
            )
            embedder.add(img if j is None else _crop(img, box, crop_pad))
    return objects


def recognize_photos(
    photos: Sequence[Path],
    classifier: Classifier,
    index: GalleryIndex,
    *,
    detector=None,
    score_thresh: float = 0.5,
    min_similarity: float = 0.0,
    crop_pad: float = 0.05,
    batch_size: int = 64,
    root: Path | None = None,
    photo_batch: int = PHOTO_BATCH,
) -> Recognitions:
    """Crops (or whole photos) -> embeddings -> best gallery product; one row per object.

    Streams: ``photo_batch`` photos are decoded, detected and cropped at a time and their crops embedded,
    so memory holds a few photos whatever the folder's size (1,000 12-MP photos decoded at once were
    ~36 GB). With ``root``, a photo whose path (symlinks followed) leaves it is not read.
    """
    objects, done, bad = embed_objects(
        photos,
        classifier,
        detector=detector,
        score_thresh=score_thresh,
        crop_pad=crop_pad,
        batch_size=batch_size,
        root=root,
        photo_batch=photo_batch,
    )
    return assemble_recognitions(objects, done, bad, classifier, index, min_similarity)


def embed_objects(
    photos: Sequence[Path],
    classifier: Classifier,
    *,
    detector=None,
    score_thresh: float = 0.5,
    crop_pad: float = 0.05,
    batch_size: int = 64,
    root: Path | None = None,
    photo_batch: int = PHOTO_BATCH,
) -> tuple[list[dict], Served | None, list[dict]]:
    """The per-photo work of `recognize_photos` (decode, detect, crop, embed), wherever it runs: the object
    rows, their crops' embeddings and predictions in the same order (None without objects), and the
    quarantine records of the photos that could not be read."""
    objects: list[dict] = []
    bad: list[dict] = []
    embedder = _Embedder(classifier, batch_size)
    for chunk in _decoded(photos, root, bad, max(1, photo_batch)):
        objects += _chunk_objects(chunk, embedder, root, detector, score_thresh, crop_pad)
        chunk.clear()  # the pixels go before the next photos are decoded
    return objects, (embedder.served() if objects else None), bad


def assemble_recognitions(
    objects: list[dict],
    done: Served | None,
    bad: list[dict],
    classifier: Classifier,
    index: GalleryIndex,
    min_similarity: float = 0.0,
) -> Recognitions:
    """The gallery search and the frame of `recognize_photos`, from `embed_objects`' output (on the driver
    whichever engine embedded the crops)."""
    rows = pd.DataFrame(objects, columns=RECOGNITION_COLUMNS[:9])
    if objects:
        assert done is not None
        found = index.search(done.embeddings, k=2)
        rows["product"] = found.products[:, 0].astype(str)
        rows["similarity"] = found.scores[:, 0]
        has_second = found.products.shape[1] > 1
        rows["runner_up"] = found.products[:, 1].astype(str) if has_second else None
        rows["runner_up_similarity"] = found.scores[:, 1] if has_second else np.nan
        rows["recognized"] = rows["similarity"] >= min_similarity
        rows.loc[~rows["recognized"], "product"] = UNKNOWN
        head = classifier.heads[0]
        rows["predicted"] = classifier.labels(done, head)
        rows["predicted_confidence"] = done.predictions[f"{head}__confidence"]
        labels = [c for c in index.items.columns if c.endswith("_label") and c != index.key]
        labels += [c for c in ("product_id",) if c in index.items.columns]
        if labels:
            first = index.items.drop_duplicates(index.key).set_index(index.key)[labels]
            rows = rows.join(first, on="product")
    else:
        rows = pd.DataFrame(columns=RECOGNITION_COLUMNS)
    rows["model_version"] = classifier.version
    return Recognitions(rows.reset_index(drop=True), pd.DataFrame(bad, columns=QUARANTINE_COLUMNS))


def product_counts(recognitions: pd.DataFrame) -> pd.DataFrame:
    """Per photo and product: facings (objects) and share of the photo's objects. A photo is named by
    ``folder`` and ``photo`` when the rows say which folder they came from."""
    photo = [c for c in ("folder", "photo") if c in recognitions.columns]
    if recognitions.empty:
        return pd.DataFrame(columns=[*photo, "product", "facings", "share"])
    extra = [c for c in recognitions.columns if c.endswith("_label") or c == "product_id"]
    counts = recognitions.groupby([*photo, "product"], dropna=False).size().rename("facings").reset_index()
    counts["share"] = counts["facings"] / counts.groupby(photo)["facings"].transform("sum")
    if extra:
        counts = counts.merge(
            recognitions[["product", *extra]].drop_duplicates("product"), on="product", how="left"
        )
    order = [*photo, "facings", "product"]
    return counts.sort_values(order, ascending=[True] * len(photo) + [False, True]).reset_index(drop=True)


def replace_folder(previous: pd.DataFrame | None, new: pd.DataFrame, folder: str) -> pd.DataFrame:
    """The table of every folder recognized so far, with ``folder``'s rows replaced by ``new``."""
    if previous is None or previous.empty or "folder" not in previous.columns:
        return new.reset_index(drop=True)
    kept = previous[previous["folder"] != folder]
    return pd.concat([kept, new], ignore_index=True) if len(kept) else new.reset_index(drop=True)


def count_accuracy(counts: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Against ``truth`` (photo, product, count): exact-count share of (photo, product) pairs, and the
    share of objects counted under the right product (sum of min(predicted, true) / true objects)."""
    t = truth.groupby(["photo", "product"])["count"].sum()
    p = counts.set_index(["photo", "product"])["facings"]
    both = pd.concat([t.rename("true"), p.rename("pred")], axis=1).fillna(0)
    return {
        "pairs_exact": float((both["true"] == both["pred"]).mean()) if len(both) else float("nan"),
        "objects_matched": float(np.minimum(both["true"], both["pred"]).sum() / max(both["true"].sum(), 1)),
        "true_objects": int(both["true"].sum()),
        "predicted_objects": int(both["pred"].sum()),
    }
