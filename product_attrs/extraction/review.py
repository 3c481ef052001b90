"""The review queue: extracted products whose prediction is uncertain, ranked by what a label would teach.

Pure pandas over the `product_attributes` rows (no torch): the score is
`classification.uncertainty.uncertainty_score` (top-1/top-2 margin, plus a bonus when the image and text
models disagree); a row joins the queue when its top-1 probability is low, its margin small, or the two
models disagree. Products of the evaluation set (the test split) are left out: a correction there would be
quarantined (it would move the goalposts the champion is judged by). The export is a CSV with image links
and a static HTML sheet (images beside the predictions, the correction-file header to fill in).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import pandas as pd

from product_attrs.classification.uncertainty import reasons, uncertainty_score

QUEUE_COLUMNS = [
    "rank",
    "product_id",
    "image_key",
    "image_path",
    "head",
    "predicted",
    "confidence",
    "runner_up",
    "margin",
    "text_predicted",
    "score",
    "reasons",
    "predictions",
    "classifier_version",
]


def build_review_queue(
    attributes: pd.DataFrame,
    head: str,
    text_predicted: pd.Series | None = None,
    exclude_ids: set[int] | None = None,
    limit: int = 0,
) -> pd.DataFrame:
    """The uncertain rows of `attributes` for `head`, most uncertain first (QUEUE_COLUMNS).

    `text_predicted`: the text model's label per row of `attributes` (same index), for the disagreement
    term; `exclude_ids`: products never queued (the evaluation set); `limit`: keep the top rows (0 = all).
    One row per product (its most uncertain image)."""
    frame = attributes.reset_index(drop=True)
    if text_predicted is not None:
        frame = frame.assign(_text=text_predicted.reset_index(drop=True).astype("object").to_numpy())
    if exclude_ids:
        ids = pd.to_numeric(frame["product_id"], errors="coerce")
        frame = frame[~ids.isin(list(exclude_ids)).to_numpy(bool)].reset_index(drop=True)
    predicted = frame[head].astype("object")
    confidence = frame[f"{head}_confidence"].astype("float64").to_numpy()
    margin_col = f"{head}_margin"
    margin = (
        frame[margin_col].astype("float64").to_numpy() if margin_col in frame else np.full(len(frame), np.nan)
    )
    # Without a recorded runner-up the margin is at most the confidence's distance to its complement.
    margin = np.where(np.isnan(margin), np.clip(2 * confidence - 1, 0, 1), margin)
    second = confidence - margin
    if text_predicted is not None:
        text = frame["_text"].to_numpy()
        disagree = np.array(
            [
                t is not None and not pd.isna(t) and p is not None and str(t) != str(p)
                for t, p in zip(text, predicted)
            ],
            dtype=bool,
        )
    else:
        text, disagree = np.full(len(frame), None, dtype=object), np.zeros(len(frame), bool)
    score = uncertainty_score(confidence, second, disagree)
    why = reasons(confidence, margin, disagree)
    heads = [c.removesuffix("_confidence") for c in frame.columns if c.endswith("_confidence")]
    others = [
        "; ".join(f"{h}={r[h]} ({r[f'{h}_confidence']:.2f})" for h in heads if pd.notna(r[h]))
        for _, r in frame[[*heads, *(f"{h}_confidence" for h in heads)]].iterrows()
    ]
    runner = frame[f"{head}_runner_up"] if f"{head}_runner_up" in frame else pd.Series([None] * len(frame))
    queue = pd.DataFrame(
        {
            "product_id": frame["product_id"],
            "image_key": frame["image_key"].astype(str),
            "image_path": frame["image_path"].astype(str),
            "head": head,
            "predicted": predicted.to_numpy(),
            "confidence": confidence,
            "runner_up": runner.astype("object").to_numpy(),
            "margin": margin,
            "text_predicted": text,
            "score": score,
            "reasons": why,
            "predictions": others,
            "classifier_version": frame.get("classifier_version", pd.Series([None] * len(frame))).to_numpy(),
        }
    )
    queue = queue[(queue["reasons"] != "").to_numpy() & ~np.isnan(confidence)]
    queue = queue.sort_values(["score", "product_id"], ascending=[False, True], kind="stable")
    # One row per product (its most uncertain image); an image without a product id is its own row.
    key = queue["product_id"].astype("string").fillna("image:" + queue["image_key"])
    queue = queue[~key.duplicated(keep="first").to_numpy()]
    if limit:
        queue = queue.head(limit)
    queue.insert(0, "rank", np.arange(1, len(queue) + 1))
    return queue.reset_index(drop=True)[QUEUE_COLUMNS]


def export_csv(queue: pd.DataFrame, path: Path) -> Path:
    """The queue as CSV with `image_url` (file:// links) and empty correction columns to fill in."""
    out = queue.copy()
    out["image_url"] = [Path(p).resolve().as_uri() if p else "" for p in out["image_path"]]
    out["value"], out["who"], out["when"], out["new_label"] = "", "", "", ""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    out.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def export_html(queue: pd.DataFrame, path: Path, title: str = "Review queue") -> Path:
    """A static HTML sheet: each image beside its predicted labels, score and reasons (relative image links,
    so the sheet opens from the data root on any machine that has it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in queue.itertuples(index=False):
        try:
            src = os.path.relpath(r.image_path, path.parent)
        except ValueError:  # another drive
            src = Path(r.image_path).resolve().as_uri()
        rows.append(
            "<tr>"
            f'<td>{r.rank}</td><td><img src="{html.escape(src)}" alt="{r.product_id}" height="120"></td>'
            f"<td>{r.product_id}</td><td><b>{html.escape(str(r.predicted))}</b> ({r.confidence:.2f})</td>"
            f"<td>{html.escape(str(r.runner_up))}</td><td>{r.margin:.2f}</td>"
            f"<td>{html.escape(str(r.text_predicted) if r.text_predicted is not None else '')}</td>"
            f"<td>{r.score:.3f}</td><td>{html.escape(r.reasons)}</td>"
            f"<td><small>{html.escape(r.predictions)}</small></td>"
            "</tr>"
        )
    head = (
        "<tr><th>#</th><th>image</th><th>product</th><th>predicted</th><th>runner-up</th><th>margin</th>"
        "<th>text model</th><th>score</th><th>why</th><th>all predictions</th></tr>"
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif}}
td,th{{border-bottom:1px solid #ddd;padding:4px;text-align:left}}</style>
</head><body><h1>{html.escape(title)}</h1>
<p>{len(queue)} products, most uncertain first. To correct one, add a line to a CSV file in the data root's
<code>corrections/</code> folder with the header
<code>product_id,head,value,who,when,new_label</code> (when: ISO 8601; new_label: yes for a class the
catalog does not have yet).</p>
<table>{head}{"".join(rows)}</table></body></html>
"""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
