"""The README's figures table, generated from bench/results/*.json so that a figure and its evidence never
drift apart (the format is ../shared/BENCH.md's).

    python bench/readme_table.py            # rewrite the table between the README's bench-table markers
    python bench/readme_table.py --check    # exit 1 when the README is out of date (CI, before a commit)

One row per measure of issue 14 with its floor (the simple baseline of the same run, or the frozen probe)
and its goal; a measure whose JSON is missing reads "not measured". Every other JSON (or what is left of
one) follows as a row of its own, so a new benchmark shows without editing this file.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
COLUMNS = ("measure", "figure", "floor", "goal", "command", "seconds", "commit")
#: (JSON name, section, key, label): where a figure or a floor may be found, the first present wins.
Source = tuple[str, str, str, str]


@dataclass(frozen=True)
class Measure:
    label: str
    figure: list[Source]
    floor: list[Source] = field(default_factory=list)
    goal: float | None = None
    goal_text: str = ""
    #: The goal also bounds the training time (figures.train_seconds) and asks for a CPU run.
    max_train_seconds: float | None = None


_PROBE_FASHION = "frozen probe"
MEASURES = [
    Measure(
        "fashion image, article_type top-20 top-1",
        [("classifier_real_fashion", "figures", "image_top20_top1", "")],
        [
            ("classifier_real_fashion", "floor", "frozen_probe_top20_top1", _PROBE_FASHION),
            ("probe_real_fashion", "figures", "article_type_top20_top1", _PROBE_FASHION),
        ],
        0.85,
        ">= 0.85 (CPU, <= 60 min)",
        max_train_seconds=3600,
    ),
    Measure(
        "fashion image, article_type rest top-1",
        [("classifier_real_fashion", "figures", "image_rest_top1", "")],
        [
            ("classifier_real_fashion", "floor", "frozen_probe_rest_top1", _PROBE_FASHION),
            ("probe_real_fashion", "figures", "article_type_rest_top1", _PROBE_FASHION),
        ],
        0.45,
        ">= 0.45",
    ),
    Measure(
        "fashion image + text fusion, top-20 top-1",
        [("classifier_real_fashion", "figures", "fusion_top20_top1", "")],
        [
            ("classifier_real_fashion", "floor", "text_top20_top1", "text alone"),
            ("classifier_real_fashion", "figures", "text_top20_top1", "text alone"),
        ],
        0.93,
        ">= 0.93",
    ),
    Measure(
        "fashion image + text fusion, rest top-1",
        [("classifier_real_fashion", "figures", "fusion_rest_top1", "")],
        [
            ("classifier_real_fashion", "floor", "text_rest_top1", "text alone"),
            ("classifier_real_fashion", "figures", "text_rest_top1", "text alone"),
        ],
        0.55,
        ">= 0.55",
    ),
    Measure(
        "grocery fine top-1 (81 products)",
        [
            ("recognizer_real_grocery_all_products", "figures", "fine_top1", ""),
            ("recognizer_real_grocery", "figures", "fine_top1", "products held out"),
        ],
        [
            ("recognizer_real_grocery", "floor", "frozen_probe_fine_top1", "frozen probe"),
            ("probe_real_grocery", "figures", "fine_top1", "frozen probe"),
        ],
        0.82,
        ">= 0.82",
    ),
    Measure(
        "grocery coarse top-1",
        [
            ("recognizer_real_grocery_all_products", "figures", "coarse_top1", ""),
            ("recognizer_real_grocery", "figures", "coarse_top1", "products held out"),
        ],
        [
            ("recognizer_real_grocery", "floor", "frozen_probe_coarse_top1", "frozen probe"),
            ("probe_real_grocery", "figures", "coarse_top1", "frozen probe"),
        ],
        0.88,
        ">= 0.88",
    ),
    Measure(
        "grocery unseen products, recall@1",
        [("recognizer_real_grocery", "figures", "unseen_recall_at_1", "")],
        [("recognizer_real_grocery", "floor", "imagenet_unseen_recall_at_1", "ImageNet features")],
        0.45,
        ">= 0.45",
    ),
]


def load_results(results_dir: Path) -> dict[str, dict[str, Any]]:
    """JSON name (file stem: a GPU run's ends in _gpu) -> its content."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(results_dir).glob("*.json"))}


def fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{round(value, 4):g}"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _find(results: dict[str, dict], sources: list[Source]) -> tuple[Source, Any] | None:
    for source in sources:
        name, section, key, _ = source
        values = results.get(name, {}).get(section, {})
        if key in values:
            return source, values[key]
    return None


def _provenance(result: dict[str, Any] | None) -> list[str]:
    """command, seconds and commit cells of one JSON."""
    if result is None:
        return ["", "", ""]
    return [
        f"`{result.get('command', '')}`",
        f"{result.get('seconds', 0):,.0f}",
        str(result.get("commit", "")),
    ]


def _goal_cell(m: Measure, value: Any, result: dict[str, Any] | None) -> str:
    if m.goal is None:
        return m.goal_text
    if result is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return m.goal_text
    met = value >= m.goal
    if m.max_train_seconds is not None:
        seconds = result.get("figures", {}).get("train_seconds")
        met = met and not result.get("machine", {}).get("gpu") and seconds is not None
        met = met and seconds <= m.max_train_seconds
    return f"{m.goal_text}: {'met' if met else 'not met'}"


def table_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """The issue's measures first, then one row per JSON for whatever figures those did not show."""
    used: set[tuple[str, str, str]] = set()
    rows = []
    for m in MEASURES:
        found = _find(results, m.figure)
        floor = _find(results, m.floor)
        if floor:
            (f_name, f_section, f_key, f_label), f_value = floor
            used.add((f_name, f_section, f_key))
            floor_cell = f"{fmt(f_value)} ({f_label})" if f_label else fmt(f_value)
        else:
            floor_cell = ""
        if found is None:
            rows.append([m.label, "not measured", floor_cell, m.goal_text, "", "", ""])
            continue
        (name, section, key, _), value = found
        used.add((name, section, key))
        rows.append(
            [
                m.label,
                fmt(value),
                floor_cell,
                _goal_cell(m, value, results[name]),
                *_provenance(results[name]),
            ]
        )
    for name, result in results.items():
        figures = {k: v for k, v in result.get("figures", {}).items() if (name, "figures", k) not in used}
        floor = {k: v for k, v in result.get("floor", {}).items() if (name, "floor", k) not in used}
        if not figures and not floor:
            continue
        label = name + (f" ({result['machine']['gpu']})" if result.get("machine", {}).get("gpu") else "")
        if len(figures) < len(result.get("figures", {})):
            label += ", other figures"
        rows.append(
            [
                label,
                "; ".join(f"{k} {fmt(v)}" for k, v in figures.items()),
                "; ".join(f"{k} {fmt(v)}" for k, v in floor.items()),
                "",
                *_provenance(result),
            ]
        )
    return rows


def render(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "<!-- generated by bench/readme_table.py from bench/results/*.json: edit those, not this -->",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table_rows(results)]
    return "\n".join(lines)


def update(readme_text: str, table: str) -> str:
    """`readme_text` with the part between the markers replaced by `table`."""
    start, end = readme_text.find(START), readme_text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README needs the markers {START} and {END}, in that order")
    return readme_text[: start + len(START)] + "\n" + table + "\n" + readme_text[end:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readme", default=str(BENCH.parent / "README.md"))
    ap.add_argument("--results", default=str(BENCH / "results"), help="folder of the JSON results")
    ap.add_argument("--check", action="store_true", help="exit 1 when the README's table is out of date")
    args = ap.parse_args(argv)
    readme = Path(args.readme)
    text = readme.read_text()
    try:
        new = update(text, render(load_results(Path(args.results))))
    except ValueError as exc:
        print(f"{readme}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            diff = difflib.unified_diff(
                text.splitlines(), new.splitlines(), "README", "generated", lineterm=""
            )
            print("\n".join(diff))
            print(f"{readme} is out of date: run python bench/readme_table.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        readme.write_text(new)
        print(f"rewrote the table in {readme}")
    else:
        print(f"{readme} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
