"""Shelf analytics from detections: facings (products) per class per image and share of shelf.

Share of shelf is reported three ways, because retailers use all three: by count of facings, by
horizontal shelf width the products occupy (linear share of shelf), and by box area.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

SHELF_COLUMNS = [
    "image",
    "category_id",
    "category_name",
    "facings",
    "share_facings",
    "share_width",
    "share_area",
]


def shelf_share(
    detections: pd.DataFrame,
    score_thresh: float = 0.5,
    label_map: list[dict[str, Any]] | None = None,
    image_col: str = "image",
) -> pd.DataFrame:
    """Per image and class: facings and shares (each share sums to 1 over the classes of an image).

    `detections`: rows with `image_col`, category_id, category_name, score, x1, y1, x2, y2 (as
    `Detector.detect` returns). With `label_map`, every class appears for every image (0 when absent),
    so per-class averages over images are right. Images without any detection have no rows.
    """
    d = detections[detections["score"] >= score_thresh].copy()
    d["width"] = (d["x2"] - d["x1"]).clip(lower=0)
    d["area"] = d["width"] * (d["y2"] - d["y1"]).clip(lower=0)
    g = d.groupby([image_col, "category_id", "category_name"], as_index=False).agg(
        facings=("score", "size"), width=("width", "sum"), area=("area", "sum")
    )
    if label_map is not None and len(g):
        classes = pd.DataFrame(
            [{"category_id": int(m["category_id"]), "category_name": m["name"]} for m in label_map]
        )
        grid = pd.DataFrame({image_col: sorted(g[image_col].unique())}).merge(classes, how="cross")
        g = grid.merge(g, on=[image_col, "category_id", "category_name"], how="left").fillna(
            {"facings": 0, "width": 0.0, "area": 0.0}
        )
        g["facings"] = g["facings"].astype("int64")
    totals = g.groupby(image_col)[["facings", "width", "area"]].transform("sum")
    g["share_facings"] = g["facings"] / totals["facings"].where(totals["facings"] > 0)
    g["share_width"] = g["width"] / totals["width"].where(totals["width"] > 0)
    g["share_area"] = g["area"] / totals["area"].where(totals["area"] > 0)
    out = (
        g.rename(columns={image_col: "image"})[SHELF_COLUMNS]
        if image_col == "image"
        else g[[image_col, *SHELF_COLUMNS[1:]]]
    )
    return out.sort_values([out.columns[0], "category_id"]).reset_index(drop=True)


def shelf_summary(shares: pd.DataFrame) -> pd.DataFrame:
    """Per class over all images: total facings and mean shares (images weighted equally)."""
    return (
        shares.groupby(["category_id", "category_name"], as_index=False)
        .agg(
            facings=("facings", "sum"),
            images=("facings", lambda s: int((s > 0).sum())),
            share_facings=("share_facings", "mean"),
            share_width=("share_width", "mean"),
            share_area=("share_area", "mean"),
        )
        .sort_values("facings", ascending=False)
        .reset_index(drop=True)
    )


def shelf_tables(
    detector, data, score_thresh: float = 0.5, batch_size: int = 4
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per image and class, per class summary) of the served detector over every image of a detection
    dataset (`DetectionData`), each image named by its id, file and split."""
    images = data.images.reset_index(drop=True)
    detections = detector.detect(
        images["file_path"].tolist(), batch_size=batch_size, score_thresh=score_thresh
    )
    shares = shelf_share(detections, score_thresh=score_thresh, label_map=data.label_map)
    shares = shares.merge(
        images[["image_id", "file_name", "split"]].rename_axis("image").reset_index(), on="image", how="left"
    ).drop(columns="image")
    front = ["image_id", "file_name", "split"]
    shares = shares[front + [c for c in shares.columns if c not in front]]
    return shares, shelf_summary(shares.rename(columns={"image_id": "image"}))
