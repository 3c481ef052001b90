"""The clean catalog: one row per product whose image decodes, every image usable as RGB.

Rows whose image is missing or broken go to quarantine with the reason, so that
clean + quarantined = parsed rows, always. Images that are not plain upright RGB (grayscale, CMYK, RGBA,
palette, EXIF-rotated, 16-bit) get a converted PNG copy; the original files are never modified.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from product_attrs import decode
from product_attrs.catalog.images import file_error
from product_attrs.catalog.styles import QUARANTINE_COLUMNS

CATALOG_SOURCE = "catalog"
IMAGES_SOURCE = "images"
_PREFERRED_EXT = (".jpg", ".jpeg", ".png", ".webp")


def to_rgb(img: Image.Image) -> Image.Image:
    """Upright RGB: EXIF orientation applied; transparency composited onto white, as a web page shows it."""
    img = decode.to_8bit(ImageOps.exif_transpose(img))  # 16-bit: stretched in float32, not float64
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # pragma: no mutate - convert() itself picks RGBA for P with transparency
    if img.mode in (
        "RGBA",
        "LA",
        "PA",
        "RGBa",
        "La",  # pragma: no mutate - PIL converts La to nothing, so it fails either way (no decoder makes it)
    ):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # pragma: no mutate - PIL clips 256
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img  # pragma: no mutate - RGB to RGB is a copy


def write_rgb_copy(src: Path, dst: Path) -> tuple[int, int]:
    """``to_rgb(src)`` as PNG at ``dst`` (kept if there: the name says the content); its (width, height).

    ``src`` is decoded like the manifest decoded it (`decode.open_image`): it may have changed since.
    """
    if not dst.exists():
        with decode.open_image(src, max_pixels=decode.MAX_PIXELS) as img:
            rgb = to_rgb(img)
        tmp = dst.with_suffix(".tmp")  # pragma: no mutate - the temporary's name is never seen
        rgb.save(tmp, format="PNG")  # pragma: no mutate - PIL takes the format name in any case
        tmp.replace(dst)
    with Image.open(dst) as done:
        return done.size


def conversion_error(exc: BaseException) -> str:
    """``reason: detail`` of a failed RGB copy: the manifest's reasons where they apply (a file replaced by a
    FIFO, a transient read error that the next run retries), else ``conversion_failed``."""
    return file_error(exc, otherwise="conversion_failed")


def needs_conversion(mode: str | None, orientation: int | None) -> bool:
    return mode != "RGB" or (orientation is not None and orientation not in (0, 1))


@dataclass
class CleanResult:
    catalog: pd.DataFrame
    quarantine: pd.DataFrame
    n_converted: int
    n_orphan_images: int


def _pick_file(manifest: pd.DataFrame) -> pd.DataFrame:
    """One file per product id: ``<id>.jpg`` first (the Kaggle layout), then other extensions."""
    m = manifest[manifest["product_id"].notna()].copy()
    ext = m["file_name"].str.lower().str.extract(r"(\.[a-z0-9]+)$")[0]
    ext = ext.fillna("")  # pragma: no mutate - no extension ranks last, as "" or as anything else
    m["_rank"] = [(_PREFERRED_EXT.index(e) if e in _PREFERRED_EXT else len(_PREFERRED_EXT)) for e in ext]
    m = m.sort_values(["product_id", "_rank", "file_name"])
    return m.drop_duplicates("product_id").drop(columns="_rank")


def clean_catalog(
    rows: pd.DataFrame, manifest: pd.DataFrame, images_dir: Path, converted_dir: Path
) -> CleanResult:
    """Join parsed rows to their image, quarantine the broken, convert the non-RGB."""
    files = _pick_file(manifest).set_index("product_id")
    merged = rows.join(files, on="id", how="left")  # pragma: no mutate - "left" is join's default
    merged = merged.reset_index(drop=True)  # pragma: no mutate - a kept old index is never selected
    quarantine: list[dict] = []
    missing = merged["file_name"].isna().to_numpy()
    broken = (~missing) & merged["error"].notna().to_numpy()
    for r in merged.loc[missing, ["id"]].itertuples(index=False):  # pragma: no mutate - read by name
        quarantine.append(_q(r.id, "missing_image", f"no file for id {r.id} in {images_dir}"))
    broken_rows = merged.loc[broken, ["id", "file_name", "error"]]
    for r in broken_rows.itertuples(index=False):  # pragma: no mutate - fields are read by name
        reason, _, detail = str(r.error).partition(": ")
        quarantine.append(_q(r.id, reason, f"{r.file_name}: {detail}"))

    keep = ~(missing | broken)
    orientation = merged["exif_orientation"].fillna(1)
    orientation = orientation.astype("int64").to_numpy()  # pragma: no mutate - float64 compares the same
    convert = keep & ((merged["mode"] != "RGB").fillna(True).to_numpy() | ~np.isin(orientation, (0, 1)))
    prefix = str(images_dir) + "/"
    names = merged["file_name"].fillna("").astype(str)  # pragma: no mutate - a missing name is never kept
    image_paths = np.where(keep, prefix + names, None).astype(object)
    widths = merged["width"].to_numpy(dtype=object, copy=True)  # pragma: no mutate - always a new array
    heights = merged["height"].to_numpy(dtype=object, copy=True)  # pragma: no mutate - always a new array
    converted_dir.mkdir(parents=True, exist_ok=True)
    for i in np.flatnonzero(convert):
        r = merged.iloc[i]
        pid, src = int(r["id"]), images_dir / str(r["file_name"])
        dst = converted_dir / f"{pid}-{str(r['sha1'])[:12]}.png"
        try:
            widths[i], heights[i] = write_rgb_copy(src, dst)
        except Exception as exc:  # noqa: BLE001 - file changed since the manifest, or decoder failed
            reason, _, detail = conversion_error(exc).partition(": ")
            quarantine.append(_q(pid, reason, f"{r['file_name']}: {detail}"))
            keep[i] = False  # pragma: no mutate - None is False in a bool array
            continue
        image_paths[i] = str(dst)
    converted = convert & keep

    merged["image_path"] = pd.array(image_paths, dtype="string")
    merged["converted"] = converted
    merged["width"] = pd.array(widths, dtype="Int64")  # pragma: no mutate - inferred Int64; cast below too
    merged["height"] = pd.array(heights, dtype="Int64")  # pragma: no mutate - inferred Int64; cast below too
    merged = merged.rename(columns={"mode": "source_mode", "sha1": "image_sha1"})
    columns = [
        *[c for c in rows.columns if c not in ("line", "repaired")],
        "image_path",
        "image_sha1",
        "width",
        "height",
        "source_mode",
        "converted",
        "repaired",
        "line",
    ]
    catalog = merged.loc[keep, columns].reset_index(drop=True)
    catalog = catalog.astype({"width": "Int64", "height": "Int64"})

    listed = set(rows["id"].tolist())
    orphans = manifest[~manifest["product_id"].isin(listed) | manifest["product_id"].isna()]
    for name in orphans["file_name"]:
        quarantine.append(
            {
                "source": IMAGES_SOURCE,
                "record_id": str(name),
                "reason": "orphan_image",
                "detail": f"{name} has no row in styles.csv",
            }
        )
    return CleanResult(
        catalog=catalog,
        quarantine=pd.DataFrame(quarantine, columns=QUARANTINE_COLUMNS),
        n_converted=int(converted.sum()),
        n_orphan_images=len(orphans),
    )


def _q(pid: int, reason: str, detail: str) -> dict:
    return {"source": CATALOG_SOURCE, "record_id": str(pid), "reason": reason, "detail": detail}
