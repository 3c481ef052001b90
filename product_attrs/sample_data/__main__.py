"""``python -m product_attrs.sample_data --out DIR [--seed N] [--small]``: write the demo data set."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from product_attrs.sample_data.generate import generate_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m product_attrs.sample_data",
        description="Write the demo data set: a Kaggle-layout catalog, shelf scenes (COCO + SKU-110K CSV), "
        "customer interactions, a Grocery-Store-Dataset-layout SKU catalog and store photos, with planted "
        "faults listed in faults.json.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder to write catalog/, shelves/, interactions/, grocery/, store_photos/ to",
    )
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    parser.add_argument("--small", action="store_true", help="tiny version for fast tests")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    m = generate_all(args.out, seed=args.seed, small=args.small)
    cat, sh, it, gr, st = m["catalog"], m["shelves"], m["interactions"], m["grocery"], m["store_photos"]
    print(
        f"catalog      {m['paths']['catalog']}: {cat['n_rows']} styles.csv lines, "
        f"{cat['n_products']} products, "
        f"{cat['n_image_files']} image files ({cat['n_good_images']} decodable)"
    )
    print(
        f"shelves      {m['paths']['shelves']}: {sh['n_images']} images, "
        f"{sh['n_annotations']} COCO annotations, "
        f"{sh['n_csv_rows']} boxes.csv rows"
    )
    print(
        f"interactions {m['paths']['interactions']}: {it['n_customers']} customers, {it['n_events']} events "
        f"{it['event_counts']}"
    )
    print(
        f"grocery      {m['paths']['grocery']}: {gr['n_classes']} SKUs, {gr['n_coarse_classes']} classes, "
        f"{gr['n_lines']} list lines, {gr['n_photo_files']} photos, {gr['n_iconic_images']} iconic images"
    )
    print(
        f"store_photos {m['paths']['store_photos']}: {st['n_images']} photos, {st['n_boxes']} products "
        f"of {st['n_skus_seen']} SKUs (truth.csv, boxes.json)"
    )
    print(
        f"planted faults are listed in catalog/, shelves/ and grocery/faults.json; "
        f"done in {time.perf_counter() - start:.1f} s (seed {args.seed}, size {m['size']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
