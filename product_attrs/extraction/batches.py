"""The names of image batches (the dynamic partitions of `product_attributes`), without pandas or torch:
the Dagster definitions, the schedule and the sensor import them at load time."""

from __future__ import annotations

import re

CATALOG_KEY = "catalog"
INCOMING_PREFIX = "incoming-"
SHARD = re.compile(r"^catalog-(\d+)-of-(\d+)$")


class UnknownBatchError(ValueError):
    """A partition key that names no batch."""


def incoming_key(folder_name: str) -> str:
    return f"{INCOMING_PREFIX}{folder_name}"
