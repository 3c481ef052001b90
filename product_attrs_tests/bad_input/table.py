"""The README's "What bad input gets" table, made from the cases that `test_bad_input.py` runs.

python -m product_attrs_tests.bad_input.table           rewrite the table in README.md
python -m product_attrs_tests.bad_input.table --check   exit 1 if README.md is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from product_attrs_tests.bad_input.cases import Fault, all_faults

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- bad-input:start -->", "<!-- bad-input:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(faults: list[Fault]) -> str:
    lines = ["| Where | Input fault | What happens |", "| --- | --- | --- |"]
    lines += [f"| {_cell(f.where)} | {_cell(f.fault)} | `{_cell(f.expect)}` |" for f in faults]
    return "\n".join(lines)


def updated(text: str, table: str) -> str:
    if START not in text or END not in text:
        raise ValueError(f"README has no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    new = updated(text, render(all_faults()))
    if args.check:
        if new != text:
            print(f"{args.readme} is out of date: run python -m product_attrs_tests.bad_input.table")
            return 1
        return 0
    args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
