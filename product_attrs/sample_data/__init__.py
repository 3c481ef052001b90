"""The embedded demo data set: a Kaggle-layout catalog, SKU-110K-like shelf scenes and customer events.

Plain Python (numpy + Pillow), no Dagster: ``python -m product_attrs.sample_data --out DIR``.
"""

from product_attrs.sample_data.catalog import generate_catalog
from product_attrs.sample_data.generate import generate_all
from product_attrs.sample_data.interactions import generate_interactions
from product_attrs.sample_data.shelves import generate_shelves

__all__ = ["generate_all", "generate_catalog", "generate_interactions", "generate_shelves"]
