"""Assembles the Definitions from the domain folders; nothing else.

Loading this module imports Dagster and the light config modules only (no torch, torchvision, mlflow,
pandas): the UI, the daemon and every step process pay that cost, so the heavy libraries are imported
inside the assets that use them (checked by product_attrs_tests/test_import_rules.py).
"""

from dagster import Definitions

from product_attrs.automation import default_executor, jobs, schedules, sensors
from product_attrs.catalog.assets import catalog_assets
from product_attrs.classification.assets import classification_assets, classification_checks
from product_attrs.detection.assets import detection_assets, detection_checks
from product_attrs.extraction.assets import extraction_assets
from product_attrs.resources import ComputeResource, PathsResource, RegistryResource, WarehouseResource
from product_attrs.retrieval.assets import recognition_assets
from product_attrs.shelf_app.assets import shelf_app_assets
from product_attrs.warehouse.assets import analytics_assets, warehouse_assets

defs = Definitions(
    assets=[
        *catalog_assets,
        *detection_assets,
        *classification_assets,
        *extraction_assets,
        *warehouse_assets,
        *analytics_assets,
        *recognition_assets,
        *shelf_app_assets,
    ],
    asset_checks=[*detection_checks, *classification_checks],
    jobs=jobs,
    schedules=schedules,
    sensors=sensors,
    executor=default_executor,
    resources={
        "paths": PathsResource(),
        "models": RegistryResource(),
        "warehouse": WarehouseResource(),
        "compute": ComputeResource(),
    },
)
