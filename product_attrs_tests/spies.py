"""Spies shared by tests that check what the code did, not only what it returned."""

from __future__ import annotations

import numpy as np
import pytest


def array_dtypes(monkeypatch: pytest.MonkeyPatch) -> list[np.dtype]:
    """The dtype of every array `np.asarray` / `np.array` make from now on (e.g. to catch a float64 copy)."""
    seen: list[np.dtype] = []

    def spy(real):
        def wrapped(a, dtype=None, *args, **kwargs):
            out = real(a, dtype, *args, **kwargs)
            seen.append(out.dtype)
            return out

        return wrapped

    monkeypatch.setattr(np, "asarray", spy(np.asarray))
    monkeypatch.setattr(np, "array", spy(np.array))
    return seen
