"""Year-based train/test splits, the top-k / rest sub-split, and label maps that never shift.

The seed's protocol: even years train, odd years test; the 20 most frequent articleTypes (counted on
train) form the ``top20`` subset, everything else ``rest``. Label maps are built over the whole clean
catalog, so a class missing from one split keeps the same index everywhere.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

SPLIT_VALUES = ("train", "test", "unassigned")


@dataclass(frozen=True)
class SplitRule:
    """How rows are split; the defaults are the seed's."""

    train_years: str = "even"  # "even" or "odd": the parity of years that go to train
    missing_year: str = "unassigned"  # where rows without a year go: train, test or unassigned
    top_k: int = 20
    subset_column: str = "article_type"
    label_columns: tuple[str, ...] = ("article_type", "master_category", "sub_category")

    def __post_init__(self) -> None:
        if self.train_years not in ("even", "odd"):
            raise ValueError(f"train_years must be 'even' or 'odd', not {self.train_years!r}")
        if self.missing_year not in SPLIT_VALUES:
            raise ValueError(f"missing_year must be one of {SPLIT_VALUES}, not {self.missing_year!r}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, not {self.top_k}")

    @property
    def top_name(self) -> str:
        return f"top{self.top_k}"


def assign_split(years: pd.Series, rule: SplitRule) -> pd.Series:
    train_parity = 0 if rule.train_years == "even" else 1
    split = pd.Series(
        rule.missing_year,
        index=years.index,
        dtype="object",  # pragma: no mutate - None infers str from the string missing_year: same values
    )
    known = years.notna()
    known_years = years[known].astype("int64")  # pragma: no mutate - astype(None) is float64: same parity
    is_train = (known_years % 2) == train_parity
    split[known] = is_train.map({True: "train", False: "test"})
    return split.astype("string")


@dataclass
class SplitResult:
    splits: pd.DataFrame
    label_maps: dict[str, list[str]]
    top_classes: list[str]
    counts: dict[str, int] = field(default_factory=dict)


def make_splits(catalog: pd.DataFrame, rule: SplitRule = SplitRule()) -> SplitResult:
    missing = [c for c in (rule.subset_column, *rule.label_columns) if c not in catalog.columns]
    if missing:
        raise KeyError(f"label columns {missing} are not in the catalog (columns: {list(catalog.columns)})")
    out = catalog.copy()
    out["split"] = assign_split(out["year"], rule)
    train_labels = out.loc[out["split"] == "train", rule.subset_column].dropna()
    counts = train_labels.value_counts()
    # Ties broken by name so that the subset is deterministic.
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    top = [name for name, _ in ranked[: rule.top_k]]
    out["subset"] = pd.Series(
        [rule.top_name if v in set(top) else "rest" for v in out[rule.subset_column]],
        index=out.index,
        dtype="string",
    )
    label_maps = build_label_maps(out, rule.label_columns)
    split_counts = {f"{s}_{sub}": int(n) for (s, sub), n in out.groupby(["split", "subset"]).size().items()}
    return SplitResult(splits=out, label_maps=label_maps, top_classes=top, counts=split_counts)


def build_label_maps(catalog: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    return {c: sorted(str(v) for v in catalog[c].dropna().unique()) for c in columns}


def data_version(catalog: pd.DataFrame) -> str:
    """A content hash of what a model learns from: ids, labels and image bytes (by their sha1)."""
    cols = [c for c in catalog.columns if c not in ("image_path", "line", "converted", "repaired")]
    frame = catalog[cols].sort_values("id").astype("string").fillna("<NA>")
    digest = hashlib.sha256()
    digest.update(",".join(cols).encode())
    hashes = pd.util.hash_pandas_object(frame, index=False)  # pragma: no mutate - index=None is falsy too
    digest.update(hashes.to_numpy().tobytes())
    return digest.hexdigest()[:16]


def write_splits(result: SplitResult, out_dir: Path, version: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    result.splits.to_parquet(out_dir / "splits.parquet", index=False)
    (out_dir / "label_maps.json").write_text(
        json.dumps(result.label_maps, indent=1)  # pragma: no mutate - readers parse it: the layout is free
    )
    (out_dir / "top_classes.json").write_text(
        json.dumps(result.top_classes, indent=1)  # pragma: no mutate - readers parse it: the layout is free
    )
    (out_dir / "data_version.txt").write_text(version + "\n")
