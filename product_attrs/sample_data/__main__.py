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
        description="Write the demo data set: a Kaggle-layout catalog, shelf scenes (COCO + SKU-110K CSV) "
        "and customer interactions, with planted faults listed in faults.json.",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write catalog/, shelves/, interactions/ to")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    parser.add_argument("--small", action="store_true", help="tiny version for fast tests")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    m = generate_all(args.out, seed=args.seed, small=args.small)
    cat, sh, it = m["catalog"], m["shelves"], m["interactions"]
    print(f"catalog      {m['paths']['catalog']}: {cat['n_rows']} styles.csv lines, {cat['n_products']} products, "
          f"{cat['n_image_files']} image files ({cat['n_good_images']} decodable)")
    print(f"shelves      {m['paths']['shelves']}: {sh['n_images']} images, {sh['n_annotations']} COCO annotations, "
          f"{sh['n_csv_rows']} boxes.csv rows")
    print(f"interactions {m['paths']['interactions']}: {it['n_customers']} customers, {it['n_events']} events "
          f"{it['event_counts']}")
    print(f"planted faults are listed in catalog/faults.json and shelves/faults.json; "
          f"done in {time.perf_counter() - start:.1f} s (seed {args.seed}, size {m['size']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
