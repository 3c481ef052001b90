"""Multitask product classifier: product image -> article type, master/sub category, and an embedding.
The grocery recognizer is the same model with the `recognizer` overlay.

Modules (only `assets.py` imports Dagster; the lifecycle is modeling's):
    config         TrainConfig / TextConfig, the demo/full profiles, the recognizer overlay, the two models
    data           the catalog_splits contract (splits.parquet, label_maps.json) -> labelled image datasets,
                   and P x K class-balanced batches
    model          backbone (ResNet / EfficientNet-Lite0) + 512-d embedding neck + one head per label column
    metric         metric learning for retrieval: ArcMargin (ArcFace) head, batch-hard triplet loss
    losses         the weighted multitask cross-entropy
    task           the classifier as a lifecycle task: phases, step, evaluation, the version's reports
    evaluate       per-class top-1/top-5 per head, top-k vs rest, confused pairs, classes missing from train
    report         the version folder's tables, test probabilities, curves and sample pictures
    train          train() and the command `python -m product_attrs.classification.train` (torchrun-ready)
    serve          a version loaded for inference (the champion by default) and batch prediction
    text_baseline  Naive Bayes on product_display_name and late fusion with the champion image model
    assets         attribute_classifier, product_recognizer, text_baseline, and their champion checks
"""
