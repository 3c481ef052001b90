"""The half of detection loading that both source formats share: parsers hand over raw records, this
checks them and turns them into a ``DetectionData``.

Image files are probed (missing or undecodable ones quarantined with their boxes), boxes are checked
against their image and category, clipped, and labelled from the label map, images are split, and the
assertion that every input box is either clean or quarantined is made here, once for both formats.
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from product_attrs import decode
from product_attrs.detection.dataset import (
    BOX_COLUMNS,
    IMAGE_COLUMNS,
    IMAGE_PREFIX,
    QUARANTINE_COLUMNS,
    SOURCE,
    DetectionData,
    assign_splits,
)

log = logging.getLogger(__name__)


def _frame(rows: list[dict[str, Any]], columns: dict[str, str]) -> pd.DataFrame:
    """A DataFrame with fixed columns and dtypes, also when there are no rows."""
    df = pd.DataFrame(rows, columns=list(columns))
    return (
        df.astype(columns) if len(df) else pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    )


# ----------------------------------------------------------------------------------------- images


def probe_image(path: Path) -> tuple[int, int] | str:
    """(width, height) of a readable image, else a reason code; decodes at reduced scale to be cheap.

    Through `decode.open_image`, like every decoder: a FIFO or a device is ``not_a_regular_file`` (never
    opened for a blocking read), more than ``decode.MAX_PIXELS`` is ``image_too_large``.
    """
    try:
        # JPEG: decoded at 1/8 scale, a speed hint only: any draft size, or none, reads the same size.
        with decode.open_image(path, draft_size=(1, 1)) as im:  # pragma: no mutate - a speed hint
            width, height = im.info.get("size_before_draft", im.size)
        return int(width), int(height)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the file cannot be trained on
        return decode.failure_reason(exc)


_PROBE_DETAIL = {
    "missing_image": "no such file",
    "not_a_regular_file": "not a regular file (a FIFO, a device, a folder)",
    "image_too_large": f"more than {decode.MAX_PIXELS:,} pixels",
    "transient_read_error": "a read or decode that may succeed on the next run",
}


def _probe_all(paths: list[Path]) -> list[tuple[int, int] | str]:
    workers = max(1, min(8, os.cpu_count() or 1))  # pragma: no mutate - how many threads, not what they find
    with ThreadPoolExecutor(workers) as pool:  # PIL decoding releases the GIL
        return list(pool.map(probe_image, paths))


# ------------------------------------------------------------------------------------------ boxes


def _clip_box(
    x1: float, y1: float, x2: float, y2: float, width: int, height: int
) -> tuple[tuple[float, float, float, float], bool] | str:
    """Clip xyxy to the image; returns ((x1,y1,x2,y2), clipped) or a reason code."""
    vals = (x1, y1, x2, y2)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
        return "invalid_coordinates"
    c = (
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    )
    if c[2] - c[0] <= 0 or c[3] - c[1] <= 0:
        return "degenerate_box"
    return tuple(float(v) for v in c), any(abs(a - b) > 1e-9 for a, b in zip(c, vals))  # type: ignore[return-value]


def _build_label_map(
    categories: list[tuple[int, str]], existing: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Labels 1..K in category-id order; categories already in `existing` keep their label."""
    out = [dict(m) for m in (existing or [])]
    known = {int(m["category_id"]) for m in out}
    next_label = max((int(m["label"]) for m in out), default=0) + 1
    for cid, name in sorted(categories):
        if cid not in known:
            out.append({"label": next_label, "category_id": int(cid), "name": str(name)})
            known.add(cid)
            next_label += 1
    return sorted(out, key=lambda m: m["label"])


@dataclass
class _RawImage:
    image_id: int
    file_name: str
    width: int | None
    height: int | None


@dataclass
class _RawBox:
    record_id: str  # quarantine id, "box:<id>"
    box_id: int | None
    image_id: int | None
    coords: tuple[float, float, float, float]  # xyxy, may be NaN
    category_id: int | None
    iscrowd: bool
    problem: tuple[str, str] | None = None  # (reason, detail) found while parsing


def _assemble(
    raw_images: list[_RawImage],
    raw_boxes: list[_RawBox],
    label_map: list[dict[str, Any]],
    images_dir: Path,
    quarantine: list[dict[str, str]],
    test_fraction: float,
    source: str,
    n_input_images: int,
) -> DetectionData:
    """Shared second half of both loaders: check files, clip boxes, split, account for everything."""

    def reject(record_id: str, reason: str, detail: str) -> None:
        quarantine.append({"source": SOURCE, "record_id": record_id, "reason": reason, "detail": detail})

    images_dir = images_dir.resolve()
    probes = _probe_all([images_dir / im.file_name for im in raw_images])
    good: dict[int, dict[str, Any]] = {}
    bad_images: dict[int, str] = {}
    for im, probe in zip(raw_images, probes):
        path = (images_dir / im.file_name).resolve()
        if isinstance(probe, str):
            bad_images[im.image_id] = probe
            reject(
                f"{IMAGE_PREFIX}{im.image_id}",
                probe,
                f"{im.file_name}: {_PROBE_DETAIL.get(probe, 'cannot be decoded')} ({path})",
            )
            continue
        w, h = probe
        mismatch = (im.width, im.height) != (w, h) and im.width is not None
        if mismatch:
            log.warning(  # pragma: no mutate - the log text is not behaviour (size_mismatch is the record)
                "%s: annotated size %sx%s but file is %sx%s; using the file's",
                im.file_name,
                im.width,
                im.height,
                w,
                h,
            )
        good[im.image_id] = {
            "image_id": im.image_id,
            "file_name": im.file_name,
            "file_path": str(path),
            "width": w,
            "height": h,
            "n_boxes": 0,
            "size_mismatch": bool(mismatch),
        }

    by_cid = {int(m["category_id"]): m for m in label_map}
    box_rows: list[dict[str, Any]] = []
    for b in raw_boxes:
        if b.problem is not None:
            reject(b.record_id, *b.problem)
            continue
        if b.image_id in bad_images:
            reject(
                b.record_id,
                bad_images[b.image_id],
                f"box of image {b.image_id}, whose file is {bad_images[b.image_id].replace('_image', '')}",
            )
            continue
        if b.image_id not in good:
            reject(b.record_id, "unknown_image", f"image_id {b.image_id} is not in the image list")
            continue
        if b.category_id not in by_cid:
            reject(b.record_id, "unknown_category", f"category_id {b.category_id} is not in the categories")
            continue
        img = good[b.image_id]
        clipped = _clip_box(*b.coords, img["width"], img["height"])
        if isinstance(clipped, str):
            detail = f"xyxy={list(b.coords)} in a {img['width']}x{img['height']} image {img['file_name']}"
            reject(b.record_id, clipped, detail)
            continue
        (x1, y1, x2, y2), was_clipped = clipped
        cat = by_cid[b.category_id]
        box_rows.append(
            {
                "box_id": b.box_id,
                "image_id": b.image_id,
                "x1": x1,
                "y1": y1,
                "x2": x2,
                "y2": y2,
                "category_id": b.category_id,
                "label": int(cat["label"]),
                "category_name": cat["name"],
                "iscrowd": b.iscrowd,
                "clipped": was_clipped,
            }
        )
        img["n_boxes"] += 1

    image_rows = list(good.values())
    for row, split in zip(image_rows, assign_splits([r["file_name"] for r in image_rows], test_fraction)):
        row["split"] = split
    images = _frame(image_rows, IMAGE_COLUMNS).sort_values("image_id", kind="stable").reset_index(drop=True)
    boxes = (
        _frame(box_rows, BOX_COLUMNS)
        .sort_values(["image_id", "box_id"], kind="stable")
        .reset_index(drop=True)
    )
    data = DetectionData(
        images=images,
        boxes=boxes,
        quarantine=_frame(quarantine, QUARANTINE_COLUMNS),
        label_map=label_map,
        n_input_images=n_input_images,
        n_input_boxes=len(raw_boxes),
        source=source,
        test_fraction=test_fraction,
    )
    lost = len(data.boxes) + data.n_quarantined_boxes != data.n_input_boxes
    assert not lost, "a box was lost"  # pragma: no mutate - the message text is not behaviour
    return data
