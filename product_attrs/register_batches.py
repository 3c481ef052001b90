"""Register image batches (dynamic partitions) in the Dagster instance, e.g. before a CLI run.

``python -m product_attrs.register_batches [KEY ...]`` (default: ``catalog``). The CLI
``dagster asset materialize --select '*' --partition catalog`` needs the partition to exist; the nightly
schedule and the incoming-folder sensor register theirs themselves.
"""

from __future__ import annotations

import sys

from dagster import DagsterInstance

from product_attrs.extraction.assets import image_batches
from product_attrs.extraction.extract import CATALOG_KEY


def main(argv: list[str] | None = None) -> int:
    keys = (sys.argv[1:] if argv is None else argv) or [CATALOG_KEY]
    with DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions(image_batches.name))
        new = [k for k in keys if k not in known]
        if new:
            instance.add_dynamic_partitions(image_batches.name, new)
    print(f"image batches registered: {', '.join(keys)}" + (f" (new: {', '.join(new)})" if new else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
