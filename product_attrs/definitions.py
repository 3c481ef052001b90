"""Assembles the Definitions from the domain folders; nothing else."""

from dagster import Definitions

from product_attrs.automation import jobs, schedules, sensors
from product_attrs.catalog.assets import catalog_assets
from product_attrs.classification.assets import classification_assets, classification_checks
from product_attrs.detection.assets import detection_assets, detection_checks
from product_attrs.extraction.assets import extraction_assets
from product_attrs.resources import ComputeResource, PathsResource
from product_attrs.retrieval.assets import recognition_assets, recognition_checks
from product_attrs.warehouse.assets import analytics_assets, shelf_assets, warehouse_assets

defs = Definitions(
    assets=[
        *catalog_assets,
        *detection_assets,
        *classification_assets,
        *extraction_assets,
        *warehouse_assets,
        *analytics_assets,
        *shelf_assets,
        *recognition_assets,
    ],
    asset_checks=[*detection_checks, *classification_checks, *recognition_checks],
    jobs=jobs,
    schedules=schedules,
    sensors=sensors,
    resources={"paths": PathsResource(), "compute": ComputeResource()},
)
