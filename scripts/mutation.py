"""Mutation testing of the modules whose logic is pure and fast to test (``make mutation``).

Each module is mutated by mutmut in a scratch copy of the repository (``build/mutation/<module>/``) against
the test files named for it, so a run takes minutes, not the hours of the whole suite per mutant. A mutant
the tests kill (or time out on) counts as killed; one they let through, or that no test reaches, counts as
survived. Mutants that cannot change behaviour are marked in the code with ``# pragma: no mutate`` and a
one-line reason, and are not counted.

    python scripts/mutation.py                 every module, then the score table
    python scripts/mutation.py catalog.splits  one module (its short name)
    python scripts/mutation.py --record        also store the scores in scripts/mutation_scores.json
    python scripts/mutation.py --readme        rewrite README.md's table from that file (runs nothing
                                               unless modules are named)
    python scripts/mutation.py --survivors     list the surviving mutants (then: cd build/mutation/<m> &&
                                               mutmut show <name>)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build" / "mutation"
README = REPO / "README.md"
SCORES = REPO / "scripts" / "mutation_scores.json"
START, END = "<!-- mutation-table:start -->", "<!-- mutation-table:end -->"
GOAL = 0.90

T = "product_attrs_tests/"
#: module (short name under product_attrs) -> the test files that cover it, fastest that still do the job.
MODULES: dict[str, list[str]] = {
    "catalog.styles": [T + "catalog/test_styles.py"],
    "catalog.clean": [T + "catalog/test_clean.py"],
    "catalog.splits": [T + "catalog/test_splits.py"],
    "detection.cleaning": [T + "detection/test_dataset.py"],
    "modeling.registry": [T + "modeling/test_promotion.py"],
    "modeling.versions": [T + "modeling/test_versions.py"],
    "retrieval.index": [T + "retrieval/test_index.py"],
    # A stand-in classifier instead of test_unseen_products' network tests (seconds each), whose fast
    # tests of the seen/unseen split stay.
    "retrieval.evaluate": [
        T + "retrieval/test_index.py",
        T + "retrieval/test_evaluate.py",
        T + "retrieval/test_unseen_products.py::test_seen_and_unseen_products_are_scored_apart",
        T + "retrieval/test_unseen_products.py::test_without_a_holdout_every_query_is_seen",
    ],
    # The fast unit tests of the re-use rule (a stand-in classifier); test_extract.py runs real networks.
    "extraction.extract": [T + "extraction/test_reuse.py"],
    "warehouse.affinity": [T + "warehouse/test_affinity.py"],
    "warehouse.recommend": [T + "warehouse/test_recommend_fast.py"]
    + [
        T + "warehouse/test_recommendations.py::" + name  # the small exact ones; the rest take seconds each
        for name in (
            "test_recommendations_leave_out_purchases_and_name_the_matched_attributes",
            "test_the_strongest_match_comes_first_in_the_reason_and_popularity_breaks_ties",
            "test_a_customer_without_history_gets_the_popularity_order",
            "test_a_catalog_with_fewer_attribute_combinations_than_k_still_fills_the_list",
            "test_recommender_parameters_are_checked_and_listed_for_the_macro",
            "test_purchases_are_the_distinct_bought_pairs",
            "test_listed_customers_only_and_reasons_on_request",
            "test_the_popular_baseline_lists_ten_by_default_and_skips_what_was_bought",
        )
    ],
    "warehouse.publish": [T + "warehouse/test_publish.py", T + "warehouse/test_lake.py"],
}
KILLED = {"killed", "timeout", "segfault", "suspicious"}
SURVIVED = {"survived", "no tests"}


@dataclass
class Score:
    module: str
    killed: int
    survived: int
    skipped: int
    seconds: float
    survivors: list[str]

    @property
    def total(self) -> int:
        return self.killed + self.survived

    @property
    def score(self) -> float:
        return self.killed / self.total if self.total else 1.0


def _config(module: str) -> str:
    path = "product_attrs/" + module.replace(".", "/") + ".py"
    tests = json.dumps(MODULES[module])
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["product_attrs"]\n'
        f'only_mutate = ["{path}"]\n'
        f"pytest_add_cli_args_test_selection = {tests}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]\n'
        'also_copy = ["product_attrs_tests"]\n'
        'process_isolation = "forkserver"\n'
    )


def _scratch(module: str) -> Path:
    """A copy of the code, the tests and pyproject.toml with this module's mutmut section."""
    work = BUILD / module
    work.mkdir(parents=True, exist_ok=True)
    # mutmut keeps a mutant's verdict until its function changes: new tests would not be run against it.
    shutil.rmtree(work / "mutants", ignore_errors=True)
    for tree in ("product_attrs", "product_attrs_tests"):
        shutil.rmtree(work / tree, ignore_errors=True)
        shutil.copytree(REPO / tree, work / tree, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    text = (REPO / "pyproject.toml").read_text()
    (work / "pyproject.toml").write_text(text + _config(module))
    return work


def _mutmut() -> str:
    found = shutil.which("mutmut", path=str(Path(sys.executable).parent))
    if found is None:
        sys.exit("mutmut is not installed: pip install -c requirements.lock -e '.[dev]'")
    return found


_LINE = re.compile(r"^\s*(\S+): (.+)$")


def run_module(module: str, children: int) -> Score:
    work = _scratch(module)
    env = {**os.environ, "PYTHONPATH": "", "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.perf_counter()
    done = subprocess.run(
        [_mutmut(), "run", "--max-children", str(children)], cwd=work, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"mutmut failed on {module} (exit {done.returncode})")
    listing = subprocess.run(
        [_mutmut(), "results", "--all", "true"], cwd=work, env=env, capture_output=True, text=True, check=True
    ).stdout
    killed = survived = skipped = 0
    survivors: list[str] = []
    for line in listing.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        name, status = m.groups()
        if status in KILLED:
            killed += 1
        elif status in SURVIVED:
            survived += 1
            survivors.append(f"{name} ({status})")
        else:
            skipped += 1
    return Score(module, killed, survived, skipped, seconds, survivors)


def render(scores: dict[str, dict]) -> str:
    lines = [
        "| module | mutants | killed | survived | score | commit |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for module in MODULES:
        if module not in scores:
            lines.append(f"| `{module}` | not run | | | | |")
            continue
        s = scores[module]
        total = s["killed"] + s["survived"]
        lines.append(
            f"| `{module}` | {total} | {s['killed']} | {s['survived']} | {s['killed'] / max(total, 1):.1%} "
            f"| {s['commit']} |"
        )
    killed = sum(s["killed"] for s in scores.values())
    total = killed + sum(s["survived"] for s in scores.values())
    lines.append(f"| all | {total} | {killed} | {total - killed} | {killed / max(total, 1):.1%} | |")
    return "\n".join(lines)


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def record(scores: list[Score]) -> dict[str, dict]:
    stored = json.loads(SCORES.read_text()) if SCORES.exists() else {}
    for s in scores:
        stored[s.module] = {
            "killed": s.killed,
            "survived": s.survived,
            "skipped": s.skipped,
            "seconds": round(s.seconds, 1),
            "commit": _commit(),
        }
    SCORES.write_text(json.dumps(dict(sorted(stored.items())), indent=1) + "\n")
    return stored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("modules", nargs="*", help=f"short names, default all: {', '.join(MODULES)}")
    parser.add_argument("--children", type=int, default=max(1, (os.cpu_count() or 1)))
    parser.add_argument("--record", action="store_true", help=f"store the scores in {SCORES.name}")
    parser.add_argument("--readme", action="store_true", help=f"rewrite README.md's table from {SCORES.name}")
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {list(MODULES)}")
    todo = args.modules or ([] if args.readme else list(MODULES))
    scores = []
    for module in todo:
        score = run_module(module, args.children)
        scores.append(score)
        print(
            f"{module}: {score.killed}/{score.total} killed ({score.score:.1%}) in {score.seconds:.0f} s",
            flush=True,
        )
        if args.survivors:
            for name in score.survivors:
                print(f"  survived: {name}")
    if args.record:
        record(scores)
    if args.readme:
        stored = json.loads(SCORES.read_text()) if SCORES.exists() else {}
        text = README.read_text()
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        README.write_text(f"{head}{START}\n{render(stored)}\n{END}{tail}")
    for s in scores:
        print(f"| `{s.module}` | {s.total} | {s.killed} | {s.survived} | {s.score:.1%} |")
    return 0 if all(s.score >= GOAL for s in scores) else 1


if __name__ == "__main__":
    sys.exit(main())
