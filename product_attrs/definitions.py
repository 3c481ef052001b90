"""Assembles the Definitions from the domain folders; nothing else."""

from dagster import Definitions

from product_attrs.automation import jobs, schedules, sensors
from product_attrs.catalog.assets import catalog_assets
from product_attrs.detection.assets import detection_assets, detection_checks
from product_attrs.resources import ComputeResource, PathsResource
from product_attrs.warehouse.assets import warehouse_assets

defs = Definitions(
    assets=[*catalog_assets, *detection_assets, *warehouse_assets],
    asset_checks=[*detection_checks],
    jobs=jobs,
    schedules=schedules,
    sensors=sensors,
    resources={"paths": PathsResource(), "compute": ComputeResource()},
)
