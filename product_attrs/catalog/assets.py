"""Dagster assets of the catalog: thin wrappers over ``product_attrs.catalog.ingest``."""

import json

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)

from product_attrs.demo import ensure_catalog
from product_attrs.resources import DUCKDB_POOL, PathsResource, WarehouseResource

GROUP = "ingestion"


def _preview(frame, n: int = 10) -> MetadataValue:
    return MetadataValue.md(frame.head(n).to_markdown(index=False))


def _counts(series) -> MetadataValue:
    return MetadataValue.json({str(k): int(v) for k, v in series.value_counts(dropna=False).items()})


@asset(
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    check_specs=[AssetCheckSpec("every_line_accounted_for", asset="raw_styles", blocking=True)],
)
def raw_styles(context: AssetExecutionContext, paths: PathsResource) -> MaterializeResult:
    """styles.csv parsed line by line: long lines repaired and flagged, bad lines quarantined."""
    from product_attrs.catalog.ingest import CatalogFiles, step_parse_styles

    settings = paths.settings()
    catalog_dir = ensure_catalog(settings)
    files = CatalogFiles(settings.catalog_out_dir)
    parsed = step_parse_styles(catalog_dir, files)
    accounted = len(parsed.rows) + len(parsed.quarantine) + parsed.n_blank
    context.log.info(
        f"{len(parsed.rows)} rows, {parsed.n_repaired} repaired, {len(parsed.quarantine)} quarantined"
    )
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(parsed.rows),
            "source": str(catalog_dir / "styles.csv"),
            "lines": parsed.n_lines,
            "repaired_lines": parsed.n_repaired,
            "quarantined_lines": len(parsed.quarantine),
            "quarantine_reasons": _counts(parsed.quarantine["reason"]),
            "repaired_preview": _preview(parsed.rows[parsed.rows["repaired"]]),
            "path": str(files.styles),
        },
        check_results=[
            AssetCheckResult(
                check_name="every_line_accounted_for",
                passed=accounted == parsed.n_lines,
                metadata={"lines": parsed.n_lines, "rows+quarantined+blank": accounted},
            )
        ],
    )


@asset(group_name=GROUP, kinds={"pillow", "parquet"})
def image_manifest(context: AssetExecutionContext, paths: PathsResource) -> MaterializeResult:
    """Every image file decoded once (size, mode, hash); unchanged files are not re-read."""
    from product_attrs.catalog.ingest import CatalogFiles, step_manifest

    settings = paths.settings()
    catalog_dir = ensure_catalog(settings)
    files = CatalogFiles(settings.catalog_out_dir)
    result = step_manifest(catalog_dir, files, workers=settings.workers)
    m = result.manifest
    context.log.info(f"checked {result.n_checked} files, reused {result.n_reused}")
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(m),
            "files_checked": result.n_checked,
            "files_reused": result.n_reused,
            "modes": _counts(m["mode"]),
            "errors": _counts(m["error"].dropna().str.partition(":")[0]),
            "path": str(files.manifest),
        }
    )


@asset(
    group_name=GROUP,
    deps=[raw_styles, image_manifest],
    kinds={"pandas", "parquet"},
    check_specs=[
        AssetCheckSpec("clean_plus_quarantined_equals_input", asset="catalog", blocking=True),
        AssetCheckSpec("images_are_rgb", asset="catalog", blocking=True),
    ],
)
def catalog(context: AssetExecutionContext, paths: PathsResource) -> MaterializeResult:
    """One row per product with a decodable, upright RGB image; the rest quarantined with a reason."""
    import pandas as pd

    from product_attrs.catalog.clean import CATALOG_SOURCE
    from product_attrs.catalog.ingest import CatalogFiles, step_clean

    settings = paths.settings()
    files = CatalogFiles(settings.catalog_out_dir)
    result = step_clean(settings.catalog_dir, files)
    rows_in = len(pd.read_parquet(files.styles, columns=["id"]))
    q = result.quarantine
    quarantined = int((q["source"] == CATALOG_SOURCE).sum())
    cat = result.catalog
    not_rgb = int(((cat["source_mode"] != "RGB") & ~cat["converted"]).sum())
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(cat),
            "rows_in": rows_in,
            "quarantined": quarantined,
            "quarantine_reasons": _counts(q["reason"]),
            "converted_to_rgb": result.n_converted,
            "converted_from_modes": _counts(cat.loc[cat["converted"], "source_mode"]),
            "orphan_images": result.n_orphan_images,
            "preview": _preview(cat.drop(columns=["image_sha1"])),
            "path": str(files.catalog),
        },
        check_results=[
            AssetCheckResult(
                check_name="clean_plus_quarantined_equals_input",
                passed=len(cat) + quarantined == rows_in,
                metadata={"clean": len(cat), "quarantined": quarantined, "input": rows_in},
            ),
            AssetCheckResult(
                check_name="images_are_rgb",
                passed=not_rgb == 0,
                severity=AssetCheckSeverity.ERROR,
                metadata={"rows_not_rgb": not_rgb},
            ),
        ],
    )


class SplitConfig(Config):
    """The seed's protocol by default: even years train, odd years test, top-20 articleTypes."""

    train_years: str = "even"
    missing_year: str = "unassigned"
    top_k: int = 20
    subset_column: str = "article_type"
    label_columns: list[str] = ["article_type", "master_category", "sub_category"]

    def rule(self):
        from product_attrs.catalog.splits import SplitRule

        return SplitRule(
            train_years=self.train_years,
            missing_year=self.missing_year,
            top_k=self.top_k,
            subset_column=self.subset_column,
            label_columns=tuple(self.label_columns),
        )


@asset(
    group_name=GROUP,
    deps=[catalog],
    kinds={"pandas", "parquet"},
    check_specs=[AssetCheckSpec("every_row_in_one_split", asset="catalog_splits", blocking=True)],
)
def catalog_splits(
    context: AssetExecutionContext, config: SplitConfig, paths: PathsResource
) -> MaterializeResult:
    """Year-based train/test split, top-k / rest subsets, and label maps stable across splits."""
    from product_attrs.catalog.ingest import CatalogFiles, step_splits
    from product_attrs.catalog.splits import SPLIT_VALUES

    settings = paths.settings()
    files = CatalogFiles(settings.catalog_out_dir)
    result, version = step_splits(files, config.rule())
    s = result.splits
    bad = int((~s["split"].isin(SPLIT_VALUES)).sum())
    only_one_split = {
        col: sorted(
            set(s.loc[s["split"] == "test", col].dropna()) - set(s.loc[s["split"] == "train", col].dropna())
        )
        for col in config.label_columns
    }
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(s),
            "counts": MetadataValue.json(result.counts),
            "top_classes": MetadataValue.json(result.top_classes),
            "classes": MetadataValue.json({k: len(v) for k, v in result.label_maps.items()}),
            "test_classes_missing_from_train": MetadataValue.json(only_one_split),
            "data_version": version,
            "path": str(files.splits),
        },
        data_version=DataVersion(version),
        check_results=[
            AssetCheckResult(
                check_name="every_row_in_one_split",
                passed=bad == 0,
                metadata={"rows_without_valid_split": bad, "label_maps": json.dumps(list(result.label_maps))},
            )
        ],
    )


@asset(
    group_name=GROUP,
    kinds={"pillow", "parquet"},
    check_specs=[AssetCheckSpec("grocery_every_line_accounted_for", asset="grocery_catalog", blocking=True)],
)
def grocery_catalog(context: AssetExecutionContext, paths: PathsResource) -> MaterializeResult:
    """Grocery Store photos and gallery, cleaned like the fashion catalog into their own folder."""
    import pandas as pd

    from product_attrs.catalog.clean import CATALOG_SOURCE
    from product_attrs.catalog.grocery import GroceryFiles, ingest_grocery
    from product_attrs.catalog.grocery_layout import LIST_FILES, count_list_lines
    from product_attrs.demo import ensure_grocery

    settings = paths.settings()
    root = ensure_grocery(settings)
    files = GroceryFiles(settings.grocery_out_dir)
    counts = ingest_grocery(root, files.out_dir, settings.workers)
    version = files.data_version.read_text().strip()
    photos = pd.read_parquet(files.catalog, columns=["id", "split"])
    q = pd.read_parquet(files.catalog_quarantine)
    photo_q = int(q["source"].isin([*LIST_FILES.values(), CATALOG_SOURCE]).sum())
    lines = count_list_lines(root)
    context.log.info(f"{len(photos)} photos, {photo_q} quarantined, {counts['gallery']} gallery images")
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(photos),
            "rows_per_split": _counts(photos["split"]),
            "quarantine_reasons": _counts(q["reason"]),
            "quarantine_by_source": _counts(q["source"]),
            "gallery": counts["gallery"],
            "gallery_quarantined": counts["gallery_quarantined"],
            "converted_to_rgb": counts["converted"] + counts["gallery_converted"],
            "images_checked": counts["images_checked"],
            "images_reused": counts["images_reused"],
            "classes": MetadataValue.json(
                {"fine_label": counts["fine_labels"], "coarse_label": counts["coarse_labels"]}
            ),
            "source": str(root),
            "path": str(files.catalog),
            "gallery_path": str(files.gallery),
            "data_version": version,
        },
        data_version=DataVersion(version),
        check_results=[
            AssetCheckResult(
                check_name="grocery_every_line_accounted_for",
                passed=len(photos) + photo_q == lines,
                metadata={"list_lines": lines, "clean": len(photos), "quarantined": photo_q},
            )
        ],
    )


@asset(
    group_name="review",
    deps=[catalog_splits],
    pool=DUCKDB_POOL,
    kinds={"pandas", "duckdb"},
    check_specs=[AssetCheckSpec("every_correction_accounted_for", asset="label_corrections", blocking=True)],
)
def label_corrections(
    context: AssetExecutionContext, paths: PathsResource, warehouse: WarehouseResource
) -> MaterializeResult:
    """Analysts' label corrections (CSV files in <data>/corrections/, header
    ``product_id,head,value,who,when,new_label``), checked: a known product of the train split, a known
    head, a known label or one flagged new, a valid time, no conflicting duplicates. The rest goes to the
    quarantine with a reason. Written to <data>/review/label_corrections.parquet (what a refresh trains
    with) and the lake tables ``label_corrections`` and ``label_corrections_quarantine``."""
    import pandas as pd

    from product_attrs.catalog.corrections import (
        check_corrections,
        clean_path,
        input_folder,
        quarantine_path,
    )
    from product_attrs.catalog.ingest import CatalogFiles
    from product_attrs.io import write_parquet

    settings = paths.settings()
    files = CatalogFiles(settings.catalog_out_dir)
    splits = pd.read_parquet(files.splits, columns=["id", "split"])
    label_maps = json.loads(files.label_maps.read_text())
    result = check_corrections(input_folder(settings.data_dir), splits, label_maps)
    write_parquet(result.clean, clean_path(settings.data_dir))
    write_parquet(result.quarantine, quarantine_path(settings.data_dir))
    warehouse.publish({"label_corrections": result.clean, "label_corrections_quarantine": result.quarantine})
    accounted = len(result.clean) + len(result.quarantine)
    context.log.info(
        f"{result.n_lines} correction lines in {len(result.files)} files: {len(result.clean)} accepted, "
        f"{len(result.quarantine)} quarantined"
    )
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(result.clean),
            "files": MetadataValue.json(result.files),
            "lines": result.n_lines,
            "quarantined": len(result.quarantine),
            "quarantine_reasons": _counts(result.quarantine["reason"]),
            "new_labels": int(result.clean["new_label"].sum()) if len(result.clean) else 0,
            "preview": _preview(result.clean),
            "path": str(clean_path(settings.data_dir)),
        },
        check_results=[
            AssetCheckResult(
                check_name="every_correction_accounted_for",
                passed=accounted == result.n_lines,
                metadata={"lines": result.n_lines, "accepted+quarantined": accounted},
            )
        ],
    )


catalog_assets = [raw_styles, image_manifest, catalog, catalog_splits, grocery_catalog, label_corrections]
