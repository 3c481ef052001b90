"""Dagster assets that write the lake's analytics tables.

Thin wrappers over product_attrs.warehouse.analytics; each publishes one lake snapshot through the
warehouse resource. duckdb and pandas are imported when an asset runs, not when the definitions load.
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from product_attrs.resources import DUCKDB_POOL, PathsResource, WarehouseResource
from product_attrs.warehouse.vocabulary import ATTRIBUTES, DEFAULT_EVENT_WEIGHTS, EVENT_TYPES

GROUP = "warehouse"


@asset(
    group_name=GROUP,
    deps=["catalog_splits", "raw_styles", "catalog", "detection_dataset"],
    pool=DUCKDB_POOL,
    kinds={"duckdb"},
    check_specs=[AssetCheckSpec("catalog_table_matches_splits", asset="warehouse_catalog", blocking=True)],
)
def warehouse_catalog(paths: PathsResource, warehouse: WarehouseResource) -> MaterializeResult:
    """Tables ``catalog`` and ``quarantine`` in the lake, and the view ``v_snapshots`` (who wrote what)."""
    import pandas as pd

    from product_attrs.catalog.ingest import CatalogFiles
    from product_attrs.warehouse.catalog_tables import catalog_table, quarantine_files, quarantine_table

    settings = paths.settings()
    splits = pd.read_parquet(CatalogFiles(settings.catalog_out_dir).splits)
    quarantine = quarantine_table(quarantine_files(settings))
    from product_attrs.warehouse.lake import SNAPSHOTS_VIEW

    counts = warehouse.publish(
        {"catalog": catalog_table(splits), "quarantine": quarantine}, views={"v_snapshots": SNAPSHOTS_VIEW}
    )
    by_reason = warehouse.read(
        "SELECT source, reason, count(*) AS n FROM quarantine GROUP BY ALL ORDER BY source, n DESC"
    )
    return MaterializeResult(
        metadata={
            "warehouse": warehouse.lake().describe(),
            "catalog_rows": counts["catalog"],
            "quarantine_rows": counts["quarantine"],
            "quarantine_by_reason": MetadataValue.md(by_reason.to_markdown(index=False)),
            "example_query": MetadataValue.md(
                "```sql\n"
                "SELECT article_type, count(*) FROM catalog WHERE split = 'train' "
                "GROUP BY ALL ORDER BY 2 DESC;\n"
                "```"
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


# --- Customer analytics: interactions, attribute affinity, recommendations, similar products ---------

#: The extraction asset that writes the warehouse table ``product_attributes`` (one row per image;
#: ``product_attributes`` itself is the partitioned per-batch Parquet).
PRODUCT_ATTRIBUTES_KEY = AssetKey("warehouse_product_attributes")


def _json(counts: dict) -> MetadataValue:
    return MetadataValue.json({str(k): v for k, v in counts.items()})


class InteractionsConfig(Config):
    """Accepted event types; any other type is quarantined as ``unknown_event_type``."""

    event_types: list[str] = list(EVENT_TYPES)


@asset(
    group_name=GROUP,
    deps=[warehouse_catalog],
    pool=DUCKDB_POOL,
    kinds={"duckdb"},
    check_specs=[AssetCheckSpec("every_event_accounted_for", asset="customer_interactions", blocking=True)],
)
def customer_interactions(
    context: AssetExecutionContext,
    config: InteractionsConfig,
    paths: PathsResource,
    warehouse: WarehouseResource,
) -> MaterializeResult:
    """Customer events checked against the catalog: table ``customer_interactions``; rejects in
    ``interactions_quarantine`` (and ``$DATA/interactions/quarantine.parquet``) with a reason, and
    the view ``v_quarantine_all`` over both quarantine tables."""
    from product_attrs.demo import ensure_interactions
    from product_attrs.warehouse import analytics

    settings = paths.settings()
    source = ensure_interactions(settings)
    quarantine_parquet = settings.data_dir / "interactions" / "quarantine.parquet"
    r = analytics.step_interactions(warehouse.lake(), source, config.event_types, quarantine_parquet)
    n_clean, n_quarantined = r.counts["customer_interactions"], r.counts["interactions_quarantine"]
    if r.skipped_files:
        context.log.info(f"not event tables, skipped: {r.skipped_files}")
    return MaterializeResult(
        metadata={
            "dagster/row_count": n_clean,
            "rows_read": r.n_read,
            "quarantined": n_quarantined,
            "quarantine_reasons": _json(r.quarantine_reasons),
            "event_counts": _json(r.event_counts),
            "customers": r.customers,
            "products": r.products,
            "first_event": r.first,
            "last_event": r.last,
            "files": MetadataValue.json(r.files),
            "skipped_files": _json(r.skipped_files),
            "quarantine_parquet": MetadataValue.path(str(quarantine_parquet)),
            "warehouse": warehouse.lake().describe(),
        },
        check_results=[
            AssetCheckResult(
                check_name="every_event_accounted_for",
                passed=n_clean + n_quarantined == r.n_read,
                metadata={"read": r.n_read, "clean": n_clean, "quarantined": n_quarantined},
            )
        ],
    )


class AffinityConfig(Config):
    """Event weights (types not listed weigh 0), recency half-life in days, and the confidence from
    which a predicted label replaces the catalog's."""

    event_weights: dict[str, float] = dict(DEFAULT_EVENT_WEIGHTS)
    half_life_days: float = 30.0
    min_confidence: float = 0.0


@asset(
    group_name=GROUP,
    deps=[customer_interactions, warehouse_catalog, PRODUCT_ATTRIBUTES_KEY],
    pool=DUCKDB_POOL,
    kinds={"duckdb"},
    check_specs=[
        AssetCheckSpec("shares_sum_to_one", asset="customer_attribute_affinity", blocking=True),
        AssetCheckSpec(
            "every_active_customer_has_affinity", asset="customer_attribute_affinity", blocking=True
        ),
    ],
)
def customer_attribute_affinity(config: AffinityConfig, warehouse: WarehouseResource) -> MaterializeResult:
    """Each customer's affinity to each attribute value (events weighted by type and recency), product
    features (predicted labels where ``product_attributes`` has them, else the catalog's) and popularity."""
    from product_attrs.warehouse import analytics
    from product_attrs.warehouse.affinity import AffinityParams

    params = AffinityParams(event_weights=config.event_weights, half_life_days=config.half_life_days)
    r = analytics.step_affinity(warehouse.lake(), params, min_confidence=config.min_confidence)
    return MaterializeResult(
        metadata={
            "dagster/row_count": r.counts["customer_attribute_affinity"],
            "customers": r.customers,
            "products": r.counts["product_features"],
            "label_sources": _json(r.label_sources),
            "as_of": r.as_of,
            "example_query": MetadataValue.md(
                "```sql\n"
                "SELECT * FROM v_customer_top_attributes WHERE customer_id = 'C00001' "
                "ORDER BY attribute, rank;\n"
                "```"
            ),
        },
        check_results=[
            AssetCheckResult(
                check_name="shares_sum_to_one",
                passed=r.max_share_sum_error < 1e-9,
                metadata={"max_abs_error": r.max_share_sum_error},
            ),
            AssetCheckResult(
                check_name="every_active_customer_has_affinity",
                passed=r.customers == r.customers_with_events,
                metadata={
                    "customers_with_affinity": r.customers,
                    "customers_with_weighted_events": r.customers_with_events,
                },
            ),
        ],
    )


class RecommendationsConfig(Config):
    """Top-k size, the weight of the popularity prior, attribute weights, and the evaluation hold-out."""

    k: int = 10
    popularity_weight: float = 0.25
    attribute_weights: dict[str, float] = {a: 1.0 for a in ATTRIBUTES}
    holdout_days: float = 14.0


@asset(
    group_name=GROUP,
    deps=[customer_attribute_affinity],
    pool=DUCKDB_POOL,
    kinds={"duckdb"},
    check_specs=[
        AssetCheckSpec("k_recommendations_per_customer", asset="recommendations", blocking=True),
        AssetCheckSpec("no_purchased_product_recommended", asset="recommendations", blocking=True),
        AssetCheckSpec("beats_popularity_baseline", asset="recommendations"),
    ],
)
def recommendations(config: RecommendationsConfig, warehouse: WarehouseResource) -> MaterializeResult:
    """Top-k products per customer with the matched attributes as ``reason``, evaluated on a time
    hold-out against a popularity baseline; macro ``recommend_for(customer_id)`` for one customer now."""
    from product_attrs.warehouse import analytics
    from product_attrs.warehouse.recommend import RecommenderParams

    params = RecommenderParams(
        k=config.k, popularity_weight=config.popularity_weight, attribute_weights=config.attribute_weights
    )
    r = analytics.step_recommendations(warehouse.lake(), params, holdout_days=config.holdout_days)
    k = config.k
    aff_hr, pop_hr = r.metric("affinity", "hit_rate"), r.metric("popularity", "hit_rate")
    aff_ndcg, pop_ndcg = r.metric("affinity", "ndcg"), r.metric("popularity", "ndcg")
    return MaterializeResult(
        metadata={
            "dagster/row_count": r.counts["recommendations"],
            "customers": r.customers,
            f"hit_rate@{k}": MetadataValue.float(aff_hr),
            f"ndcg@{k}": MetadataValue.float(aff_ndcg),
            f"popularity_hit_rate@{k}": MetadataValue.float(pop_hr),
            f"popularity_ndcg@{k}": MetadataValue.float(pop_ndcg),
            "customers_evaluated": int(r.metric("affinity", "customers")),
            "metrics": MetadataValue.md(r.metrics.to_markdown(index=False)),
            "preview": MetadataValue.md(r.preview.to_markdown(index=False)),
            "example_query": MetadataValue.md(
                "```sql\nSELECT * FROM recommend_for('C00001');  -- on the fly\n"
                "SELECT * FROM v_recommendations_explained WHERE customer_id = 'C00001' ORDER BY rank;\n```"
            ),
        },
        check_results=[
            AssetCheckResult(
                check_name="k_recommendations_per_customer",
                passed=r.customers_short == 0,
                metadata={"customers_with_fewer_than_k": r.customers_short, "k": k},
            ),
            AssetCheckResult(
                check_name="no_purchased_product_recommended",
                passed=r.purchased_recommended == 0,
                metadata={"purchased_products_recommended": r.purchased_recommended},
            ),
            AssetCheckResult(
                check_name="beats_popularity_baseline",
                passed=bool(aff_ndcg > pop_ndcg),
                severity=AssetCheckSeverity.WARN,
                metadata={f"ndcg@{k}": aff_ndcg, f"popularity_ndcg@{k}": pop_ndcg},
            ),
        ],
    )


class SimilarProductsConfig(Config):
    """Neighbours kept per product."""

    k: int = 10


_SIMILAR_CHECKS = ("k_neighbours_per_product", "no_product_similar_to_itself")


@asset(
    group_name=GROUP,
    deps=[PRODUCT_ATTRIBUTES_KEY, warehouse_catalog],
    pool=DUCKDB_POOL,
    kinds={"duckdb", "numpy"},
    output_required=False,
    check_specs=[AssetCheckSpec(name, asset="similar_products", blocking=True) for name in _SIMILAR_CHECKS],
)
def similar_products(
    context: AssetExecutionContext, config: SimilarProductsConfig, warehouse: WarehouseResource
):
    """Each product's nearest products by cosine similarity of its ``product_attributes`` embedding;
    macro ``similar_to(product_id)``. Skipped (not materialized) while that table is absent."""
    from product_attrs.warehouse import analytics

    r = analytics.step_similar_products(warehouse.lake(), k=config.k)
    if r is None:
        message = "no product_attributes table with embeddings in the warehouse yet: similar_products skipped"
        context.log.warning(message)
        for name in _SIMILAR_CHECKS:
            yield AssetCheckResult(
                check_name=name, passed=True, description=message, metadata={"skipped": True}
            )
        return
    yield MaterializeResult(
        metadata={
            "dagster/row_count": r.counts["similar_products"],
            "products": r.products,
            "embedding_dim": r.dimension,
            "mean_top1_similarity": MetadataValue.float(r.mean_top1_similarity),
            "example_query": MetadataValue.md(
                "```sql\nSELECT * FROM v_similar_products_explained WHERE product_id = 15970;\n```"
            ),
        },
        check_results=[
            AssetCheckResult(
                check_name="k_neighbours_per_product",
                passed=r.products_short == 0,
                metadata={"products_with_fewer_neighbours": r.products_short, "k": config.k},
            ),
            AssetCheckResult(
                check_name="no_product_similar_to_itself",
                passed=r.self_matches == 0,
                metadata={"self_matches": r.self_matches},
            ),
        ],
    )


analytics_assets = [customer_interactions, customer_attribute_affinity, recommendations, similar_products]
