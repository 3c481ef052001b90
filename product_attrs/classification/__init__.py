"""Multitask product classifier: product image -> article type, master/sub category, and an embedding.

Modules (only `assets.py` imports Dagster):
    config         TrainConfig / TextConfig dataclasses, the demo/full profiles, CLI flags generated from them
    data           the catalog_splits contract (splits.parquet, label_maps.json) -> labelled image datasets,
                   and P x K class-balanced batches
    model          backbone (ResNet / EfficientNet-Lite0) + 512-d embedding neck + one head per label column
    metric         metric learning for retrieval: ArcMargin (ArcFace) head, batch-hard triplet loss
    engine         one training epoch (AMP, channels_last, non-finite loss check) and prediction
    evaluate       per-class top-1/top-5 per head, top-k vs rest, confused pairs, classes missing from train
    text_baseline  Naive Bayes on product_display_name and late fusion with the image model
    tracking       MLflow run, registered model (`attribute_classifier` by default), the `champion` alias rule
    report         curves and sample-prediction pictures
    train          train() and the command `python -m product_attrs.classification.train` (torchrun-ready)
    assets         attribute_classifier, text_baseline, and the blocking champion check
"""
