"""The names of image batches (the dynamic partitions of `product_attributes`), without pandas or torch:
the Dagster definitions, the schedule and the sensor import them at load time.

A partition key is typed by anyone who can open the Dagster UI (it has no login), and an incoming key
becomes a folder to scan and a Parquet file to write. So every key passes `check_key` before it is used:
letters, digits, '.', '_', '-', no leading dot, no '..', at most `MAX_KEY_LENGTH` characters.
"""

from __future__ import annotations

import re

CATALOG_KEY = "catalog"
INCOMING_PREFIX = "incoming-"
SHARD = re.compile(r"^catalog-(\d+)-of-(\d+)$")
MAX_KEY_LENGTH = 128
_SAFE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


class UnknownBatchError(ValueError):
    """A partition key that names no batch."""


class UnsafePartitionKey(UnknownBatchError):
    """A partition key (or incoming folder name) that could lead a path out of the data root."""


def _check(text: str, what: str) -> str:
    if not isinstance(text, str) or not text:
        raise UnsafePartitionKey(f"{what} {text!r} is empty")
    if len(text) > MAX_KEY_LENGTH:
        raise UnsafePartitionKey(f"{what} {text[:40]!r}... is longer than {MAX_KEY_LENGTH} characters")
    if ".." in text or not _SAFE.fullmatch(text):
        raise UnsafePartitionKey(
            f"{what} {text!r} may contain only letters, digits, '.', '_', '-' (no leading '.', no '..')"
        )
    return text


def check_key(key: str) -> str:
    """``key`` if it is safe as a file name (and, for ``incoming-<name>``, ``<name>`` as a folder name);
    `UnsafePartitionKey`, saying which rule it breaks, if not."""
    _check(key, "partition key")
    if key.startswith(INCOMING_PREFIX):
        _check(key.removeprefix(INCOMING_PREFIX), "incoming folder name")
    return key


def incoming_key(folder_name: str) -> str:
    """The batch of the folder ``<data>/incoming/<folder_name>``; `UnsafePartitionKey` for a name that is
    not safe as a key (the sensor reports such folders instead of extracting them)."""
    _check(folder_name, "incoming folder name")
    return check_key(f"{INCOMING_PREFIX}{folder_name}")
