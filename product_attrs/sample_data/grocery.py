"""A Grocery-Store-Dataset-layout catalog of the SKU world, and store shelf photos to recognize it on.

``generate_grocery`` writes exactly the layout of the Grocery Store Dataset (Klasson et al., WACV 2019),
so the recognition code reads the demo and the real set the same way::

    train.txt, val.txt, test.txt    "train/Packages/<Coarse>/<Fine>/<Fine>_001.jpg, <fine id>, <coarse id>"
    classes.csv                     CRLF lines, no final newline, the real header; iconic and description
                                    paths start with "/" but are relative to the root
    train|val|test/Packages/<Coarse>/<Fine>/<Fine>_NNN.jpg          in-store photos (128x128, some 128x171
                                                                    portrait like the real 348x464 ones)
    iconic-images-and-descriptions/Packages/<Coarse>/<Fine>/<Fine>_Iconic.jpg, _Description.txt,
                                                                    _Information.txt

The fine class is the SKU (30), the coarse class the shelf class (6, named as the detector names them).
Planted faults, exactly one of each, each on a different SKU, listed in ``faults.json``:

- ``grayscale_photos``: a train photo stored as a single-channel JPEG (decodes, mode ``L``);
- ``zero_byte_photos``: a train photo of 0 bytes, as a broken download leaves it;
- ``missing_files``: a train.txt line whose photo does not exist;
- ``malformed_lines``: a val.txt line with the coarse id missing (``path, fine_id``); its photo exists;
- ``unknown_class_lines``: a test.txt line whose fine id (30) is not in classes.csv; its photo exists;
- ``missing_iconic``: a SKU listed in classes.csv whose iconic image is missing (its description and
  photos exist): a product that cannot be in the gallery.

``generate_store_photos`` writes shelf scenes of the same SKUs (the shelf scene code, another random
stream than the detector's training shelves) with the truth to score recognition end to end: per-photo
SKU counts (``truth.csv``) and boxes (``boxes.json``).

Same ``seed`` => byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from product_attrs.sample_data.shelves import HEIGHT, WIDTH, _scene
from product_attrs.sample_data.skus import SKUS, SKUS_BY_NAME, Sku, render_iconic, render_photo

#: Photos per SKU in (train, val, test) for each demo size.
PHOTOS_PER_SKU: dict[str, tuple[int, int, int]] = {"default": (12, 2, 8), "small": (2, 1, 1)}
#: Store shelf photos for each demo size.
STORE_PHOTOS: dict[str, int] = {"default": 8, "small": 4}

#: The chance that a store shelf product is one more facing of its neighbour: counts above 1 to get right.
FACINGS = 0.5
SPLITS = ("train", "val", "test")
TOP = "Packages"  # the real set's top folders are Fruit, Packages and Vegetables; ours are all packaged
ICONIC_ROOT = "iconic-images-and-descriptions"
CLASSES_HEADER = (
    "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),"
    "Iconic Image Path (str),Product Description Path (str)"
)
PHOTO_SIZE = 128
PORTRAIT_SIZE = (128, 171)  # 3:4, as the real set's 348x464 photos
PORTRAIT_SHARE = 0.1
ICONIC_SIZE = 128
JPEG_QUALITY = 90
#: The planted line/photo faults, in the order their SKUs are drawn, and the split each lives in.
PHOTO_FAULTS = {
    "grayscale": "train",
    "zero_byte": "train",
    "missing_file": "train",
    "malformed_line": "val",
    "unknown_class": "test",
}


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _sku_dir(sku: Sku) -> str:
    return f"{TOP}/{sku.coarse}/{sku.name}"


def photo_path(split: str, sku: Sku, k: int) -> str:
    """The list-file path of the ``k``-th (1-based) photo of ``sku`` in ``split``."""
    return f"{split}/{_sku_dir(sku)}/{sku.name}_{k:03d}.jpg"


def iconic_path(sku: Sku, suffix: str = "Iconic.jpg") -> str:
    """The classes.csv path (leading slash, relative to the root) of a SKU's iconic image or text."""
    return f"/{ICONIC_ROOT}/{_sku_dir(sku)}/{sku.name}_{suffix}"


def _plan_faults(
    rng: np.random.Generator, counts: dict[str, int]
) -> tuple[dict[tuple[str, int, int], str], Sku]:
    """Which photo carries which fault, each on its own SKU, and the SKU without an iconic image."""
    picks = [SKUS[int(i)] for i in rng.permutation(len(SKUS))[: len(PHOTO_FAULTS) + 1]]
    plan = {}
    for (kind, split), sku in zip(PHOTO_FAULTS.items(), picks):
        plan[(split, sku.fine_id, int(rng.integers(1, counts[split] + 1)))] = kind
    return plan, picks[-1]


def _photo_rng(seed: int, split: str, sku: Sku, k: int) -> np.random.Generator:
    """One stream per photo: a photo does not change when the number of photos per SKU does."""
    return np.random.default_rng([seed, 330, SPLITS.index(split), sku.fine_id, k])


def _render(seed: int, split: str, sku: Sku, k: int) -> Image.Image:
    rng = _photo_rng(seed, split, sku, k)
    size = PORTRAIT_SIZE if rng.random() < PORTRAIT_SHARE else PHOTO_SIZE
    return render_photo(sku, rng, size)


def _write_split(root: Path, split: str, n: int, seed: int, plan: dict, faults: dict) -> int:
    """Write one split's photos and list file; returns how many of its photos are portrait."""
    lines, portrait = [], 0
    for sku in SKUS:
        (root / split / _sku_dir(sku)).mkdir(parents=True, exist_ok=True)
        for k in range(1, n + 1):
            rel = photo_path(split, sku, k)
            kind = plan.get((split, sku.fine_id, k))
            line = f"{rel}, {sku.fine_id}, {sku.coarse_id}"
            where = {"list": f"{split}.txt", "line": len(lines) + 1, "path": rel}
            if kind == "malformed_line":
                line = f"{rel}, {sku.fine_id}"
                faults["malformed_lines"].append({**where, "raw": line})
            elif kind == "unknown_class":
                line = f"{rel}, {len(SKUS)}, {sku.coarse_id}"
                faults["unknown_class_lines"].append({**where, "class_id": len(SKUS)})
            elif kind == "missing_file":
                faults["missing_files"].append(where)
            lines.append(line)
            if kind == "missing_file":
                continue
            img = _render(seed, split, sku, k)
            portrait += img.size != (PHOTO_SIZE, PHOTO_SIZE)
            if kind == "zero_byte":
                data = b""
                faults["zero_byte_photos"].append(rel)
            elif kind == "grayscale":
                data = _jpeg(img.convert("L"))
                faults["grayscale_photos"].append(rel)
            else:
                data = _jpeg(img)
            (root / rel).write_bytes(data)
    (root / f"{split}.txt").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return portrait


def _information(sku: Sku) -> str:
    """The ``_Information.txt`` of a SKU, in the real set's ``Key: value`` shape (no final newline)."""
    return (
        f"Title: {sku.name.replace('-', ' ')} \nCountry and volume: Demo, 1 pcs \n"
        f"Description: {sku.description}\nURL: https://shop.example/produkt/{sku.name}"
    )


def _write_gallery(root: Path, missing_iconic: Sku) -> None:
    """Iconic images, descriptions and classes.csv (CRLF lines, no final newline, like the real file)."""
    rows = [CLASSES_HEADER]
    for sku in SKUS:
        folder = root / ICONIC_ROOT / _sku_dir(sku)
        folder.mkdir(parents=True, exist_ok=True)
        if sku != missing_iconic:
            (root / iconic_path(sku)[1:]).write_bytes(_jpeg(render_iconic(sku, ICONIC_SIZE)))
        (root / iconic_path(sku, "Description.txt")[1:]).write_text(sku.description + "\n", encoding="utf-8")
        (root / iconic_path(sku, "Information.txt")[1:]).write_text(_information(sku), encoding="utf-8")
        rows.append(
            f"{sku.name},{sku.fine_id},{sku.coarse},{sku.coarse_id},{iconic_path(sku)},"
            f"{iconic_path(sku, 'Description.txt')}"
        )
    (root / "classes.csv").write_bytes("\r\n".join(rows).encode("utf-8"))


def generate_grocery(
    out_dir: Path, n_per_sku: tuple[int, int, int] | None = None, seed: int = 0, small: bool = False
) -> dict:
    """Write the Grocery-Store-Dataset layout of the 30 SKUs to ``out_dir``; returns faults.json's content.

    ``n_per_sku`` is photos per SKU in (train, val, test), by default ``PHOTOS_PER_SKU`` of the size.
    Earlier photo and gallery folders are removed first, so a re-run leaves nothing stale behind.
    """
    counts = dict(zip(SPLITS, n_per_sku or PHOTOS_PER_SKU["small" if small else "default"]))
    if min(counts.values()) < 1:
        raise ValueError(f"every split needs at least 1 photo per SKU to plant its fault, got {counts}")
    root = Path(out_dir)
    for folder in (*SPLITS, ICONIC_ROOT):
        if (root / folder).exists():
            shutil.rmtree(root / folder)
    root.mkdir(parents=True, exist_ok=True)
    plan, missing_iconic = _plan_faults(np.random.default_rng([seed, 330]), counts)
    faults: dict = {
        key: []
        for key in (
            "grayscale_photos",
            "zero_byte_photos",
            "missing_files",
            "malformed_lines",
            "unknown_class_lines",
        )
    }
    portrait = sum(_write_split(root, split, counts[split], seed, plan, faults) for split in SPLITS)
    _write_gallery(root, missing_iconic)
    n_lines = sum(counts.values()) * len(SKUS)
    faults.update(
        {
            "missing_iconic": [
                {
                    "class_id": missing_iconic.fine_id,
                    "class_name": missing_iconic.name,
                    "path": iconic_path(missing_iconic),
                }
            ],
            "seed": seed,
            "photos_per_sku": counts,
            "n_classes": len(SKUS),
            "n_coarse_classes": len({s.coarse for s in SKUS}),
            "n_lines": {split: n * len(SKUS) for split, n in counts.items()},
            "n_photo_files": n_lines - 1,  # every listed photo but the missing one
            "n_good_photos": n_lines - 2,  # ... and but the 0-byte one
            # 128x171 instead of 128x128: not a fault, a property of the real set
            "n_portrait_photos": portrait,
            "n_iconic_images": len(SKUS) - 1,
        }
    )
    (root / "faults.json").write_text(json.dumps(faults, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return faults


# --- store photos ------------------------------------------------------------------------------------


def _write_truth(out_dir: Path, photos: dict[str, list[dict]]) -> None:
    """``truth.csv``: one ``photo,sku,count`` row per SKU present in a photo, photos and SKUs in order."""
    order = {s.name: s.fine_id for s in SKUS}
    with open(out_dir / "truth.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["photo", "sku", "count"])
        for name, boxes in photos.items():
            counts = Counter(b["sku"] for b in boxes)
            writer.writerows([name, sku, counts[sku]] for sku in sorted(counts, key=order.__getitem__))


def generate_store_photos(out_dir: Path, n_images: int = 8, seed: int = 0) -> dict:
    """Write ``store_NNNN.jpg`` shelf photos of the SKUs, ``truth.csv`` and ``boxes.json`` to ``out_dir``.

    The scenes are the detector's shelf scenes (8-20 products, no planted faults, with facings: runs of
    the same SKU) from their own random streams, so they differ from the training shelves of the same
    seed. ``boxes.json`` maps each photo to
    its boxes (``bbox`` as COCO's ``[x, y, w, h]``, ``category``, ``sku``); earlier photos are removed.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("store_*.jpg"):
        old.unlink()
    rng, sku_rng = np.random.default_rng([seed, 220]), np.random.default_rng([seed, 221])
    photos: dict[str, list[dict]] = {}
    for i in range(n_images):
        img, boxes = _scene(
            rng, int(rng.integers(8, 21)), overflow=False, crowd=False, sku_rng=sku_rng, facings=FACINGS
        )
        name = f"store_{i:04d}.jpg"
        (out_dir / name).write_bytes(_jpeg(img))
        photos[name] = [
            {
                "bbox": [b.x, b.y, b.w, b.h],
                "category_id": b.category_id,
                "category": SKUS_BY_NAME[b.sku].coarse,
                "sku": b.sku,
            }
            for b in boxes
        ]
    (out_dir / "boxes.json").write_text(json.dumps(photos, indent=1) + "\n", encoding="utf-8")
    _write_truth(out_dir, photos)
    seen = Counter(b["sku"] for boxes in photos.values() for b in boxes)
    return {
        "seed": seed,
        "n_images": n_images,
        "n_boxes": sum(seen.values()),
        "n_skus_seen": len(seen),
        "size": [WIDTH, HEIGHT],
    }
