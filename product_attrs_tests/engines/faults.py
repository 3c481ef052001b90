"""A fault for the engine tests: the worker process that first calls it dies, mid-run, batch in hand."""

from __future__ import annotations

import os
from pathlib import Path


def first_caller_dies(marker: Path) -> None:
    """Exit this process (no clean-up, as a killed worker) unless ``marker`` exists; create it first, so
    exactly one call in the whole run dies and the test can check that one did."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(1)
