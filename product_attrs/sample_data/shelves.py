"""Shelf photos packed with products, annotated like SKU-110K, for training and testing the detector.

Each 320x240 picture shows 2 or 3 shelves with 4-20 products standing on them, often touching. Six
product classes differ in shape and colour (boxes, cans, bottles, cartons, jars, bags, 18-70 px), so a
small Faster R-CNN learns them in a few CPU minutes. Annotations are written twice: COCO json
(``annotations.json``, categories with non-contiguous ids like real COCO) and SKU-110K's header-less
CSV (``boxes.csv``: ``image_name,x1,y1,x2,y2,class,image_width,image_height``).

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

WIDTH, HEIGHT = 320, 240
JPEG_QUALITY = 90
_BOARD = 8  # shelf board thickness, px


@dataclass(frozen=True)
class ProductClass:
    id: int
    name: str
    w: tuple[int, int]  # width range, px (inclusive)
    h: tuple[int, int]
    colour: tuple[int, int, int]


#: Non-contiguous ids on purpose: a detector must map them to contiguous labels and back.
CATEGORIES: tuple[ProductClass, ...] = (
    ProductClass(3, "cereal_box", (28, 40), (45, 68), (236, 120, 30)),
    ProductClass(7, "soda_can", (20, 26), (30, 42), (200, 24, 34)),
    ProductClass(12, "water_bottle", (18, 26), (50, 70), (120, 192, 236)),
    ProductClass(25, "milk_carton", (26, 34), (45, 62), (246, 246, 246)),
    ProductClass(40, "jar", (32, 44), (28, 40), (200, 140, 40)),
    ProductClass(51, "chips_bag", (34, 48), (38, 54), (40, 170, 70)),
)
CATEGORY_NAMES: dict[int, str] = {c.id: c.name for c in CATEGORIES}


@dataclass
class Box:
    category_id: int
    x: int
    y: int
    w: int
    h: int
    iscrowd: int = 0
    fault: str | None = None


def _draw_object(draw: ImageDraw.ImageDraw, cls: ProductClass, x: int, y: int, w: int, h: int,
                 rng: np.random.Generator) -> None:
    """Draw one product filling exactly the box (x, y, w, h): the box is the tight extent of the drawing."""
    x1, y1 = x + w - 1, y + h - 1
    body = jitter_rgb(cls.colour, rng, 14)
    edge = tuple(int(c * 0.45) for c in body)
    if cls.name == "cereal_box":
        draw.rectangle((x, y, x1, y1), fill=body, outline=edge)
        draw.rectangle((x, y, x1, y + h // 6), fill=(190, 30, 40))
        draw.rectangle((x + w // 5, y + h // 3, x1 - w // 5, y + 2 * h // 3), fill=(250, 246, 220))
    elif cls.name == "soda_can":
        draw.rounded_rectangle((x, y, x1, y1), radius=w // 4, fill=body, outline=edge)
        draw.rectangle((x + 1, y + 2, x1 - 1, y + 4), fill=(200, 200, 210))
        draw.rectangle((x + 1, y1 - 4, x1 - 1, y1 - 2), fill=(200, 200, 210))
        draw.ellipse((x + w // 4, y + h // 3, x1 - w // 4, y + 2 * h // 3), fill=(250, 250, 250))
    elif cls.name == "water_bottle":
        neck = max(4, w * 2 // 5)
        nx = x + (w - neck) // 2
        draw.rectangle((nx, y, nx + neck - 1, y + h // 10), fill=(20, 60, 170))  # cap
        draw.rectangle((nx, y + h // 10, nx + neck - 1, y + h // 4), fill=body)
        draw.rounded_rectangle((x, y + h // 4 - 2, x1, y1), radius=w // 4, fill=body, outline=(60, 120, 170))
        draw.rectangle((x + 1, y + h // 2, x1 - 1, y + h // 2 + h // 6), fill=(250, 250, 250))
    elif cls.name == "milk_carton":
        gable = h // 5
        draw.polygon([(x, y + gable), (x + w // 2, y), (x1, y + gable)], fill=(225, 225, 230), outline=edge)
        draw.rectangle((x, y + gable, x1, y1), fill=body, outline=(120, 120, 130))
        draw.rectangle((x + 1, y + h // 2, x1 - 1, y + h // 2 + h // 5), fill=(40, 80, 200))
    elif cls.name == "jar":
        lid = max(5, h // 4)
        draw.rectangle((x, y, x1, y + lid), fill=(70, 44, 22))
        draw.rounded_rectangle((x + 2, y + lid, x1 - 2, y1), radius=w // 6, fill=body, outline=edge)
        draw.rectangle((x + 5, y + lid + h // 6, x1 - 5, y1 - h // 6), fill=(245, 235, 200))
    elif cls.name == "chips_bag":
        crimp = 4
        draw.rectangle((x, y + crimp, x1, y1 - crimp), fill=body, outline=edge)
        teeth_top = [(x + i, y + (crimp if (i // 3) % 2 else 0)) for i in range(0, w, 3)] + [(x1, y + crimp)]
        teeth_bot = [(x + i, y1 - (crimp if (i // 3) % 2 else 0)) for i in range(0, w, 3)] + [(x1, y1 - crimp)]
        draw.polygon([(x, y + crimp), *teeth_top, (x1, y + crimp)], fill=body)
        draw.polygon([(x, y1 - crimp), *teeth_bot, (x1, y1 - crimp)], fill=body)
        draw.ellipse((x + w // 5, y + h // 4, x1 - w // 5, y1 - h // 4), fill=(250, 215, 40))
    else:  # pragma: no cover - CATEGORIES is closed
        raise ValueError(cls.name)


def _scene(rng: np.random.Generator, n_target: int, *, overflow: bool, crowd: bool
           ) -> tuple[Image.Image, list[Box]]:
    """One shelf picture and its boxes; ``overflow`` lets the last product of a row run past the border."""
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
                    draw.rounded_rectangle((cx, cy, cx + cw - 1, cy + ch - 1), radius=2,
                                           fill=jitter_rgb((200, 24, 34), rng, 14), outline=(90, 10, 15))
            boxes.append(Box(7, x, board - levels * ch, cols * cw, levels * ch, iscrowd=1, fault="crowd"))
            x += cols * cw + int(rng.integers(4, 12))
        placed = 0
        while placed < per_row[row]:
            cls = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
            w = int(rng.integers(cls.w[0], cls.w[1] + 1))
            h = min(int(rng.integers(cls.h[0], cls.h[1] + 1)), board - top)
            row_full = x + w > WIDTH - 2
            spill = overflow and row == n_shelves - 1 and (row_full or placed == per_row[row] - 1)
            if spill:  # the row's last product runs 8 px to half its width past the right border
                x = min(max(x, WIDTH - w + 8), WIDTH - w + int(rng.integers(8, w // 2 + 1)))
            elif row_full:
                break
            _draw_object(draw, cls, x, board - h, w, h, rng)
            boxes.append(Box(cls.id, x, board - h, w, h, fault="out_of_border" if spill else None))
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
    """Write ``images/*.jpg``, ``annotations.json`` (COCO), ``boxes.csv`` (SKU-110K) and ``faults.json``.

    ``out_dir/images`` is emptied first so a re-run never leaves stale pictures behind.
    """
    if n_images < 5:
        raise ValueError(f"n_images must be at least 5 to plant every fault, got {n_images}")
    out_dir = Path(out_dir)
    rng = np.random.default_rng([seed, 110])
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
        img, boxes = _scene(rng, n_target, overflow=i == overflow_i, crowd=i == crowd_i)
        if i == degenerate_i:
            # An annotation-tool slip: a zero-width box on top of a real product.
            real = next(b for b in boxes if not b.iscrowd)
            boxes.append(Box(real.category_id, real.x + real.w // 2, real.y, 0, real.h, fault="degenerate"))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=JPEG_QUALITY)
        (image_dir / file_name).write_bytes(buf.getvalue())
        images.append({"id": image_id, "file_name": file_name, "width": WIDTH, "height": HEIGHT, "license": 1})
        if not boxes:
            faults["empty_images"].append(image_id)
        for b in boxes:
            ann_id = len(annotations) + 1
            annotations.append({
                "id": ann_id, "image_id": image_id, "category_id": b.category_id,
                "bbox": [b.x, b.y, b.w, b.h], "area": b.w * b.h, "iscrowd": b.iscrowd,
                "segmentation": box_rle(b.x, b.y, b.w, b.h) if b.iscrowd else _polygon(b),
            })
            if b.fault:
                faults[f"{b.fault}_boxes"].append({"annotation_id": ann_id, "image_id": image_id})
            if not b.iscrowd:
                csv_rows.append([file_name, b.x, b.y, b.x + b.w, b.y + b.h, CATEGORY_NAMES[b.category_id],
                                 WIDTH, HEIGHT])

    coco = {
        "info": {"description": "product_attrs demo shelf scenes (synthetic, SKU-110K-like)", "version": "1.0",
                 "year": 2026, "contributor": "product_attrs.sample_data", "date_created": "2026-06-30"},
        "licenses": [{"id": 1, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c.id, "name": c.name, "supercategory": "product"} for c in CATEGORIES],
    }
    (out_dir / "annotations.json").write_text(json.dumps(coco) + "\n", encoding="utf-8")
    with open(out_dir / "boxes.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(csv_rows)  # SKU-110K's CSVs have no header

    n_bad = len(faults["degenerate_boxes"]) + len(faults["crowd_boxes"])
    faults.update({
        "seed": seed,
        "n_images": n_images,
        "n_annotations": len(annotations),
        "n_csv_rows": len(csv_rows),  # crowd regions are not in the CSV
        "n_trainable_boxes": len(annotations) - n_bad,  # after dropping degenerate and crowd, clipping the rest
        "categories": {str(c.id): c.name for c in CATEGORIES},
    })
    (out_dir / "faults.json").write_text(json.dumps(faults, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return faults
