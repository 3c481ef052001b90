"""The shape of a bad-input case and where the cases are collected from.

A case builds its hostile input under a temporary folder, runs the real code on it and returns what happened
as one short string (``quarantine: bad_id``, ``error: UnsafePartitionKey``, ``skipped: not_a_regular_file``).
`test_bad_input.py` runs every case and checks that string against ``expect``; `table.py` prints the same
cases as the README's "What bad input gets" table. So a row of that table is a test that passed.

Cases live in the modules ``*_faults.py`` of this package, each with a list ``FAULTS``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Fault:
    #: Where the input enters, as a user names it: "styles.csv", "images folder", "partition key".
    where: str
    #: What is wrong with it, in words.
    fault: str
    #: What happens, exactly as ``run`` reports it.
    expect: str
    #: Builds the input under the given empty folder, runs the real code, returns the outcome.
    run: Callable[[Path], str]

    @property
    def id(self) -> str:
        return f"{self.where}: {self.fault}"


def quarantined(reasons) -> str:
    """The outcome of a run that quarantined records: their distinct reasons, sorted."""
    return "quarantine: " + ", ".join(sorted({str(r) for r in reasons}))


def raised(exc: BaseException) -> str:
    """The outcome of a refused input: the error's type and its first line."""
    return f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def all_faults() -> list[Fault]:
    """Every case of every ``*_faults`` module of this package, in module then list order."""
    package = importlib.import_module(__package__)
    faults: list[Fault] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.endswith("_faults"):
            faults.extend(importlib.import_module(f"{__package__}.{info.name}").FAULTS)
    return faults
