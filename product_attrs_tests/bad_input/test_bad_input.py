"""Every bad-input case does what the README's table says it does, and the table lists every case."""

from __future__ import annotations

from pathlib import Path

import pytest

from product_attrs_tests.bad_input import table
from product_attrs_tests.bad_input.cases import Fault, all_faults

FAULTS = all_faults()


@pytest.mark.parametrize("case", FAULTS, ids=[f.id for f in FAULTS])
def test_bad_input_gets_what_the_readme_says(case: Fault, tmp_path: Path) -> None:
    assert case.run(tmp_path) == case.expect


def test_case_names_are_unique() -> None:
    ids = [f.id for f in FAULTS]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_the_readme_table_lists_every_case() -> None:
    assert table.main(["--check"]) == 0, "run: python -m product_attrs_tests.bad_input.table"
