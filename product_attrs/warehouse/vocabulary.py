"""The names the analytics tables are built from: event types, the attributes customers have affinity
to, the default event weights. Plain data, no duckdb or pandas: the Dagster definitions read it at load
time for the launchpad defaults."""

from __future__ import annotations

EVENT_TYPES: tuple[str, ...] = ("view", "add_to_cart", "purchase")
ATTRIBUTES: tuple[str, ...] = ("article_type", "sub_category", "master_category", "base_colour", "gender")
#: Attributes the extraction model predicts; the others always come from the catalog.
PREDICTED_ATTRIBUTES: tuple[str, ...] = ("article_type", "master_category", "sub_category")
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
