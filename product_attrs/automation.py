"""Jobs, schedules and sensors."""

from dagster import AssetSelection, define_asset_job

ingest_catalog_job = define_asset_job(
    name="ingest_catalog",
    selection=AssetSelection.groups("ingestion") | AssetSelection.assets("warehouse_catalog"),
    description="Parse, check and clean the catalog and detection data; publish catalog and quarantine to DuckDB.",
)

jobs = [ingest_catalog_job]
schedules: list = []
sensors: list = []
