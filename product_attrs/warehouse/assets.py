"""Dagster assets that write the DuckDB warehouse: the only writers, in a pool of size one."""

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from product_attrs.catalog.ingest import CatalogFiles
from product_attrs.resources import DUCKDB_POOL, PathsResource
from product_attrs.warehouse.catalog_tables import catalog_table, quarantine_table
from product_attrs.warehouse.publish import publish_tables, read_table

GROUP = "warehouse"


@asset(
    group_name=GROUP,
    deps=["catalog_splits", "raw_styles", "catalog", "detection_dataset"],
    pool=DUCKDB_POOL,
    kinds={"duckdb"},
    check_specs=[AssetCheckSpec("catalog_table_matches_splits", asset="warehouse_catalog", blocking=True)],
)
def warehouse_catalog(context: AssetExecutionContext, paths: PathsResource) -> MaterializeResult:
    """Tables ``catalog`` and ``quarantine`` in the analysts' DuckDB file."""
    settings = paths.settings()
    files = CatalogFiles(settings.catalog_out_dir)
    splits = pd.read_parquet(files.splits)
    quarantine = quarantine_table(
        [files.styles_quarantine, files.catalog_quarantine, settings.detection_out_dir / "quarantine.parquet"]
    )
    counts = publish_tables(settings.warehouse_path, {"catalog": catalog_table(splits), "quarantine": quarantine})
    by_reason = read_table(
        settings.warehouse_path,
        "SELECT source, reason, count(*) AS n FROM quarantine GROUP BY ALL ORDER BY source, n DESC",
    )
    return MaterializeResult(
        metadata={
            "warehouse": str(settings.warehouse_path),
            "catalog_rows": counts["catalog"],
            "quarantine_rows": counts["quarantine"],
            "quarantine_by_reason": MetadataValue.md(by_reason.to_markdown(index=False)),
            "example_query": MetadataValue.md(
                "```sql\nSELECT article_type, count(*) FROM catalog WHERE split = 'train' GROUP BY ALL ORDER BY 2 DESC;\n```"
            ),
        },
        check_results=[
            AssetCheckResult(
                check_name="catalog_table_matches_splits",
                passed=counts["catalog"] == len(splits),
                metadata={"table_rows": counts["catalog"], "splits_rows": len(splits)},
            )
        ],
    )


warehouse_assets = [warehouse_catalog]
