"""Shelf photos packed with products, annotated like SKU-110K, for training and testing the detector.

Each 320x240 picture shows 2 or 3 shelves with 4-20 products standing on them, often touching. Six
product classes differ in shape and colour (boxes, cans, bottles, cartons, jars, bags, 18-70 px), so a
small Faster R-CNN learns them in a few CPU minutes. Annotations are written twice: COCO json
(``annotations.json``, categories with non-contiguous ids like real COCO) and SKU-110K's header-less
CSV (``boxes.csv``: ``image_name,x1,y1,x2,y2,class,image_width,image_height``).

Every product is one SKU of its class (``skus.py``: 5 per class, told apart by their labels), recorded
in the COCO annotations' extra ``"sku"`` field and listed in ``skus.json``, so the same scenes serve
product recognition. The SKUs come from their own random stream: the boxes of a seed are the ones
drawn before SKUs existed.

Planted, as real annotation files have them, and listed in ``faults.json``: a zero-width box, a box
running past the image border (must be clipped), an ``iscrowd`` region (RLE segmentation) covering a
pile of small items, and a picture with no boxes at all.

Same ``seed`` => byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from product_attrs.sample_data.drawing import jitter_rgb
from product_attrs.sample_data.skus import (  # noqa: F401 - CATEGORIES etc. stay public names here
    CATEGORIES,
    CATEGORY_NAMES,
    SKUS_BY_CLASS,
    ProductClass,
    Sku,
    draw_sku,
    sku_records,
)

WIDTH, HEIGHT = 320, 240
JPEG_QUALITY = 90
_BOARD = 8  # shelf board thickness, px


@dataclass
class Box:
    category_id: int
    x: int
    y: int
    w: int
    h: int
    iscrowd: int = 0
    fault: str | None = None
    sku: str | None = None  # None for crowd regions: a pile of tiny cans has no one SKU


def _pick_sku(cls: ProductClass, previous: Sku | None, sku_rng: np.random.Generator) -> Sku:
    """A SKU of ``cls``; next to the same class it is usually the same SKU again, as shelves have facings."""
    if previous is not None and previous.coarse == cls.name and sku_rng.random() < 0.7:
        return previous
    options = SKUS_BY_CLASS[cls.name]
    return options[int(sku_rng.integers(len(options)))]


def _draw_object(
    draw: ImageDraw.ImageDraw,
    sku: Sku,
    x: int,
    y: int,
    w: int,
    h: int,
    rng: np.random.Generator,
    sku_rng: np.random.Generator,
) -> None:
    """Draw one product filling exactly the box (x, y, w, h): the box is the tight extent of the drawing.

    The body colour still comes from the scene's ``rng`` (one draw, as before SKUs existed) and the
    label's from ``sku_rng``, so adding SKUs left every box of a seed where it was.
    """
    body = jitter_rgb(sku.cls.colour, rng, 14)
    draw_sku(draw, sku, x, y, w, h, sku_rng, body=body)


def _scene(
    rng: np.random.Generator,
    n_target: int,
    *,
    overflow: bool,
    crowd: bool,
    sku_rng: np.random.Generator,
    facings: float = 0.0,
) -> tuple[Image.Image, list[Box]]:
    """One shelf picture and its boxes; ``overflow`` lets the last product of a row run past the border.

    ``rng`` decides the layout (positions, sizes, classes) and ``sku_rng`` only which SKU each product
    is and its label's print, so the boxes of a seed do not depend on the SKU world. ``facings`` is the
    chance that a product is one more facing of its left neighbour (same SKU and size), as on store
    shelves; at 0 (the detector's scenes) it draws nothing from ``rng``.
    """
    wall = jitter_rgb((222, 216, 204), rng, 12)
    img = Image.new("RGB", (WIDTH, HEIGHT), wall)
    draw = ImageDraw.Draw(img)
    n_shelves = int(rng.integers(2, 4))
    row_h = HEIGHT // n_shelves
    boards = [row_h * (i + 1) - _BOARD for i in range(n_shelves)]
    wood = jitter_rgb((110, 72, 40), rng, 10)
    for b in boards:
        draw.rectangle((0, b, WIDTH - 1, b + _BOARD - 1), fill=wood)
        draw.line([(0, b), (WIDTH - 1, b)], fill=tuple(min(255, c + 50) for c in wood))
        for tx in rng.integers(5, WIDTH - 20, size=2):  # price tags: clutter that is not a product
            draw.rectangle((int(tx), b + 2, int(tx) + 12, b + _BOARD - 2), fill=(250, 250, 250))

    boxes: list[Box] = []
    per_row = [n_target // n_shelves + (1 if i < n_target % n_shelves else 0) for i in range(n_shelves)]
    for row, board in enumerate(boards):
        top = board - row_h + _BOARD + 2  # highest pixel an object may reach in this row
        x = int(rng.integers(2, 16))
        if crowd and row == 0:
            # A pile of tiny cans, too dense to box one by one: one iscrowd region instead.
            cw, ch = 10, 13
            cols, levels = int(rng.integers(5, 8)), 3
            for lv in range(levels):
                for c in range(cols - (lv % 2)):
                    cx = x + c * cw + (cw // 2 if lv % 2 else 0)
                    cy = board - (lv + 1) * ch
                    draw.rounded_rectangle(
                        (cx, cy, cx + cw - 1, cy + ch - 1),
                        radius=2,
                        fill=jitter_rgb((200, 24, 34), rng, 14),
                        outline=(90, 10, 15),
                    )
            boxes.append(Box(7, x, board - levels * ch, cols * cw, levels * ch, iscrowd=1, fault="crowd"))
            x += cols * cw + int(rng.integers(4, 12))
        placed = 0
        previous: Sku | None = None
        while placed < per_row[row]:
            repeat = facings > 0 and previous is not None and rng.random() < facings
            if repeat:
                cls, w, h = previous.cls, boxes[-1].w, boxes[-1].h
            else:
                cls = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
                w = int(rng.integers(cls.w[0], cls.w[1] + 1))
                h = min(int(rng.integers(cls.h[0], cls.h[1] + 1)), board - top)
            row_full = x + w > WIDTH - 2
            spill = overflow and row == n_shelves - 1 and (row_full or placed == per_row[row] - 1)
            if spill:  # the row's last product runs 8 px to half its width past the right border
                x = min(max(x, WIDTH - w + 8), WIDTH - w + int(rng.integers(8, w // 2 + 1)))
            elif row_full:
                break
            previous = previous if repeat else _pick_sku(cls, previous, sku_rng)
            _draw_object(draw, previous, x, board - h, w, h, rng, sku_rng)
            boxes.append(
                Box(cls.id, x, board - h, w, h, fault="out_of_border" if spill else None, sku=previous.name)
            )
            placed += 1
            if spill:
                break
            x += w + (0 if rng.random() < 0.35 else int(rng.integers(2, 14)))  # often touching
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0.0, 4.0, size=(HEIGHT, WIDTH, 3))
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB"), boxes


def box_rle(x: int, y: int, w: int, h: int, width: int = WIDTH, height: int = HEIGHT) -> dict:
    """COCO uncompressed RLE of a rectangle: run lengths over the column-major mask, zeros first."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[max(y, 0) : y + h, max(x, 0) : x + w] = 1
    flat = mask.flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"counts": counts, "size": [height, width]}


def _polygon(b: Box) -> list[list[int]]:
    return [[b.x, b.y, b.x + b.w, b.y, b.x + b.w, b.y + b.h, b.x, b.y + b.h]]


def generate_shelves(out_dir: Path, n_images: int = 60, seed: int = 0) -> dict:
    """Write ``images/*.jpg``, ``annotations.json`` (COCO), ``boxes.csv`` (SKU-110K), ``skus.json`` and
    ``faults.json``.

    Each COCO annotation carries the product's SKU in an extra ``"sku"`` field (null for crowd regions);
    ``skus.json`` lists the SKUs with their fine and coarse names. ``out_dir/images`` is emptied first so
    a re-run never leaves stale pictures behind.
    """
    if n_images < 5:
        raise ValueError(f"n_images must be at least 5 to plant every fault, got {n_images}")
    out_dir = Path(out_dir)
    rng = np.random.default_rng([seed, 110])
    sku_rng = np.random.default_rng([seed, 111])  # a separate stream: SKUs never move a box
    empty_i, overflow_i, crowd_i, degenerate_i = (int(i) for i in rng.permutation(n_images)[:4])
    image_dir = out_dir / "images"
    if image_dir.exists():
        shutil.rmtree(image_dir)
    image_dir.mkdir(parents=True)

    images, annotations, csv_rows = [], [], []
    faults: dict = {"empty_images": [], "degenerate_boxes": [], "out_of_border_boxes": [], "crowd_boxes": []}
    for i in range(n_images):
        image_id = i + 1
        file_name = f"shelf_{i:04d}.jpg"
        n_target = 0 if i == empty_i else int(rng.integers(4, 21))
        img, boxes = _scene(rng, n_target, overflow=i == overflow_i, crowd=i == crowd_i, sku_rng=sku_rng)
        if i == degenerate_i:
            # An annotation-tool slip: a zero-width box on top of a real product.
            real = next(b for b in boxes if not b.iscrowd)
            boxes.append(
                Box(
                    real.category_id,
                    real.x + real.w // 2,
                    real.y,
                    0,
                    real.h,
                    fault="degenerate",
                    sku=real.sku,
                )
            )
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=JPEG_QUALITY)
        (image_dir / file_name).write_bytes(buf.getvalue())
        images.append(
            {"id": image_id, "file_name": file_name, "width": WIDTH, "height": HEIGHT, "license": 1}
        )
        if not boxes:
            faults["empty_images"].append(image_id)
        for b in boxes:
            ann_id = len(annotations) + 1
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": b.category_id,
                    "bbox": [b.x, b.y, b.w, b.h],
                    "area": b.w * b.h,
                    "iscrowd": b.iscrowd,
                    "segmentation": box_rle(b.x, b.y, b.w, b.h) if b.iscrowd else _polygon(b),
                    "sku": b.sku,
                }
            )
            if b.fault:
                faults[f"{b.fault}_boxes"].append({"annotation_id": ann_id, "image_id": image_id})
            if not b.iscrowd:
                csv_rows.append(
                    [file_name, b.x, b.y, b.x + b.w, b.y + b.h, CATEGORY_NAMES[b.category_id], WIDTH, HEIGHT]
                )

    coco = {
        "info": {
            "description": "product_attrs demo shelf scenes (synthetic, SKU-110K-like)",
            "version": "1.0",
            "year": 2026,
            "contributor": "product_attrs.sample_data",
            "date_created": "2026-06-30",
        },
        "licenses": [
            {"id": 1, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}
        ],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c.id, "name": c.name, "supercategory": "product"} for c in CATEGORIES],
    }
    (out_dir / "annotations.json").write_text(json.dumps(coco) + "\n", encoding="utf-8")
    (out_dir / "skus.json").write_text(json.dumps(sku_records(), indent=2) + "\n", encoding="utf-8")
    with open(out_dir / "boxes.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(csv_rows)  # SKU-110K's CSVs have no header

    n_bad = len(faults["degenerate_boxes"]) + len(faults["crowd_boxes"])
    faults.update(
        {
            "seed": seed,
            "n_images": n_images,
            "n_annotations": len(annotations),
            "n_csv_rows": len(csv_rows),  # crowd regions are not in the CSV
            "n_trainable_boxes": len(annotations)
            - n_bad,  # after dropping degenerate and crowd, clipping the rest
            "categories": {str(c.id): c.name for c in CATEGORIES},
        }
    )
    (out_dir / "faults.json").write_text(
        json.dumps(faults, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return faults
