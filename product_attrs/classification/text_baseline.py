"""The text baseline (Naive Bayes on product_display_name) and its late fusion with the image model.

The seed found a Naive Bayes on the product name alone reaches 85% top-1 on the top-20 article types, close
to the CNN; names and pictures fail on different products, so fusing their probabilities helps. Both
models are trained on the same `train` split and scored on the same `test` rows by the same evaluation
code, so the table compares like with like. Fusion: weighted geometric (or arithmetic) mean of the two
probability vectors.

How much to trust each model is learned where it can be without touching test: when the image model's
version also saved `val_predictions.npz` (train rows it did not train on), a Naive Bayes fitted on the
other train rows predicts those rows too, and the image weight that maximises their top-1 of the primary
head is chosen (ties: the weight nearest 0.5). Naive Bayes is then refitted on every train row for test
(`fusion_refit`): every name helps the rare classes (on the real catalog, leaving a random tenth of train
out cost the text model 0.05-0.14 points top-20 and 0.1-0.35 rest, in 3 of 3 draws), and the weight stays
valid because the refitted model, like the one it was chosen with, scores rows it never saw. Without
validation predictions the fixed `fusion_weight` applies.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.naive_bayes import MultinomialNB

from product_attrs.classification.config import HeadSpec, TextConfig
from product_attrs.classification.data import IGNORE_INDEX, Catalog, check_heads, encode_labels
from product_attrs.classification.evaluate import Evaluation, combine, evaluate_model, results_pivot
from product_attrs.modeling.versions import VersionManifest, VersionStore, resume_key

TEXT_MODEL_NAME = "text_baseline"
TEXT_COLUMN = "product_display_name"
TEST_PREDICTIONS = "test_predictions.npz"
VAL_PREDICTIONS = "val_predictions.npz"
_EPS = 1e-6
#: Temperatures tried per model when `fusion_temperature` is on (log-spaced, 1.0 included).
_TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 61))


@dataclass
class TextModel:
    """A shared TF-IDF vocabulary and one Naive Bayes per head, over the catalog's full label space."""

    vectorizer: TfidfVectorizer
    classifiers: dict[str, MultinomialNB | None]
    label_maps: dict[str, list[str]]

    def predict_proba(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Probabilities over every class of the label map; classes never seen in train get 0."""
        x = self.vectorizer.transform(texts)
        out = {}
        for head, clf in self.classifiers.items():
            full = np.zeros((len(texts), len(self.label_maps[head])), dtype=np.float64)
            if clf is None:  # no labelled training row at all: uniform
                full[:] = 1.0 / full.shape[1]
            else:
                full[:, clf.classes_] = clf.predict_proba(x)
            out[head] = full
        return out


def _texts(frame: pd.DataFrame) -> list[str]:
    return frame[TEXT_COLUMN].astype("object").where(frame[TEXT_COLUMN].notna(), "").astype(str).tolist()


def fit_text_model(
    train: pd.DataFrame, heads: list[str], label_maps: dict[str, list[str]], cfg: TextConfig
) -> TextModel:
    vectorizer = TfidfVectorizer(
        ngram_range=(1, cfg.text_ngram_max),
        max_features=cfg.text_max_features,
        sublinear_tf=True,
        lowercase=True,
    )
    x = vectorizer.fit_transform(_texts(train))
    targets = encode_labels(train, [HeadSpec(h, 1.0) for h in heads], label_maps)
    classifiers: dict[str, MultinomialNB | None] = {}
    for j, head in enumerate(heads):
        mask = targets[:, j] != IGNORE_INDEX
        classifiers[head] = (
            MultinomialNB(alpha=cfg.text_alpha).fit(x[mask], targets[mask, j]) if mask.any() else None
        )
    return TextModel(vectorizer, classifiers, {h: label_maps[h] for h in heads})


def late_fusion(
    p_image: np.ndarray, p_text: np.ndarray, weight: float, method: str = "geometric"
) -> np.ndarray:
    """Combine two (rows, classes) probability matrices; `weight` is the image's share."""
    if method == "arithmetic":
        fused = weight * p_image + (1 - weight) * p_text
    else:
        log = weight * np.log(np.clip(p_image, _EPS, 1)) + (1 - weight) * np.log(np.clip(p_text, _EPS, 1))
        fused = np.exp(log - log.max(axis=1, keepdims=True))
    return fused / fused.sum(axis=1, keepdims=True)


def load_image_predictions(
    version_dir: Path | None, heads: list[str], label_maps: dict[str, list[str]], file: str = TEST_PREDICTIONS
) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """(ids, probs per head) saved by the image model's training (`file`: test or validation predictions),
    if its label spaces match this catalog."""
    if version_dir is None or not (version_dir / file).exists():
        return None
    image_maps = VersionManifest.read(version_dir).info.get("label_maps", {})
    if any(image_maps.get(h) != label_maps[h] for h in heads):
        return None
    with np.load(version_dir / file) as npz:
        if not all(f"probs__{h}" in npz for h in heads):
            return None
        return npz["ids"], {h: npz[f"probs__{h}"] for h in heads}


def _align(frame: pd.DataFrame, ids: np.ndarray, probs: dict[str, np.ndarray]):
    """`frame`'s rows that have predictions, and the predictions in the same order (first of duplicates)."""
    position = pd.Series(np.arange(len(ids)), index=ids)
    position = position[~position.index.duplicated()]
    rows = frame[frame["id"].isin(position.index)].reset_index(drop=True)
    take = position.loc[rows["id"].to_numpy()].to_numpy()
    return rows, {h: p[take] for h, p in probs.items()}


def with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): T > 1 flattens, T < 1 sharpens; T == 1 returns `probs` untouched."""
    if temperature == 1.0:
        return probs
    z = np.log(np.clip(probs, _EPS, 1)) / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, targets: np.ndarray) -> float:
    """The temperature (from a log-spaced grid) with the least negative log-likelihood on labelled rows."""
    mask = targets != IGNORE_INDEX
    if not mask.any():
        return 1.0
    logp = np.log(np.clip(probs[mask], _EPS, 1))
    true = logp[np.arange(mask.sum()), targets[mask]]
    nll = []
    for t in _TEMPERATURES:
        z = logp / t
        top = z.max(axis=1)
        nll.append(float(np.mean(top + np.log(np.exp(z - top[:, None]).sum(axis=1)) - true / t)))
    return float(_TEMPERATURES[int(np.argmin(nll))])


def _top1(probs: np.ndarray, targets: np.ndarray) -> float:
    mask = targets != IGNORE_INDEX
    return float((probs[mask].argmax(axis=1) == targets[mask]).mean()) if mask.any() else float("nan")


@dataclass
class FusionChoice:
    """The fusion applied to test and, when it was chosen on validation rows, the evidence (else Nones)."""

    method: str
    weight: float
    source: str = "fixed"  # "fixed" (fusion_weight) or "validation" (chosen on val_predictions.npz)
    temperatures: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # head -> model -> T
    n_val: int = 0
    val_top1: float | None = None  # primary head, fused with the chosen weight
    val_top1_image: float | None = None
    val_top1_text: float | None = None
    val_top1_fixed: float | None = None  # the same rows fused with the fixed fusion_weight, for comparison
    val_top1_by_weight: dict[str, float] = dataclasses.field(default_factory=dict)
    refit: bool | None = None  # whether the test text model was refitted on every train row

    def apply(self, image: dict[str, np.ndarray], text: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for head in image:
            t = self.temperatures.get(head, {})
            out[head] = late_fusion(
                with_temperature(image[head], t.get("image", 1.0)),
                with_temperature(text[head], t.get("text", 1.0)),
                self.weight,
                self.method,
            )
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def choose_fusion(
    image: dict[str, np.ndarray],
    text: dict[str, np.ndarray],
    targets: np.ndarray,
    heads: list[str],
    cfg: TextConfig,
) -> FusionChoice:
    """The image weight on `cfg.fusion_grid` that maximises top-1 of the primary head on these validation
    rows (ties: nearest 0.5, then the smaller), after per-model temperatures when `fusion_temperature`."""
    temperatures = {
        h: {
            "image": fit_temperature(image[h], targets[:, j]),
            "text": fit_temperature(text[h], targets[:, j]),
        }
        if cfg.fusion_temperature
        else {}
        for j, h in enumerate(heads)
    }
    primary, y = heads[0], targets[:, 0]
    grid = [round(float(w), 6) for w in np.linspace(0.0, 1.0, cfg.fusion_grid)]

    def fused_top1(weight: float) -> float:
        choice = FusionChoice(cfg.fusion_method, weight, temperatures=temperatures)
        return _top1(choice.apply({primary: image[primary]}, {primary: text[primary]})[primary], y)

    labelled = int((y != IGNORE_INDEX).sum())
    if not labelled:  # nothing to choose on: the fixed weight, said so
        return FusionChoice(cfg.fusion_method, cfg.fusion_weight, "fixed (no labelled validation row)")
    scores = {w: fused_top1(w) for w in grid}
    best = max(scores.values())
    weight = min((w for w, v in scores.items() if v == best), key=lambda w: (abs(w - 0.5), w))
    return FusionChoice(
        cfg.fusion_method,
        weight,
        "validation",
        {h: t for h, t in temperatures.items() if t},
        n_val=labelled,
        val_top1=best,
        val_top1_image=_top1(image[primary], y),
        val_top1_text=_top1(text[primary], y),
        val_top1_fixed=fused_top1(cfg.fusion_weight),
        val_top1_by_weight={f"{w:g}": v for w, v in scores.items()},
    )


@dataclass
class TextBaselineResult:
    model: TextModel
    evaluation: Evaluation  # text, and image + fusion when image predictions were available
    side_by_side: pd.DataFrame
    n_test: int
    fused_with: str | None
    fusion: FusionChoice | None = None  # how image and text were fused (None: no image predictions)
    validation: Evaluation | None = None  # image, text and fusion on the validation rows the choice used


def run_text_baseline(
    catalog: Catalog, cfg: TextConfig, image_version_dir: Path | None = None
) -> TextBaselineResult:
    """Fit on train, score on test; with the image model's test predictions, also image and fusion (its
    weight chosen on the image model's validation rows when it saved them, else `fusion_weight`)."""
    cfg = cfg.validate()
    specs = cfg.head_specs()
    check_heads(specs, catalog)
    heads = [h.column for h in specs]
    label_maps = {h: catalog.label_maps[h] for h in heads}
    train, test = catalog.split("train"), catalog.split("test")

    image = load_image_predictions(image_version_dir, heads, label_maps)
    val = load_image_predictions(image_version_dir, heads, label_maps, VAL_PREDICTIONS)
    fused_with, fusion, validation, model = None, None, None, None
    if image is not None:
        test, image_probs = _align(test, *image)
        fused_with = str(image_version_dir)
        fusion = FusionChoice(cfg.fusion_method, cfg.fusion_weight)
        if val is not None and cfg.fusion_tune:
            val_rows, val_image = _align(train, *val)
            if len(val_rows):
                fit_rows = train[~train["id"].isin(val_rows["id"])].reset_index(drop=True)
                val_model = fit_text_model(fit_rows, heads, label_maps, cfg)
                val_text = val_model.predict_proba(_texts(val_rows))
                val_targets = encode_labels(val_rows, specs, label_maps)
                fusion = choose_fusion(val_image, val_text, val_targets, heads, cfg)
                fusion.refit = cfg.fusion_refit
                model = None if cfg.fusion_refit else val_model
                groups = val_rows["subset"].astype(str).to_numpy(dtype=object)
                fit_targets = encode_labels(fit_rows, specs, label_maps)
                validation = combine(
                    *(
                        evaluate_model(name, probs, val_targets, heads, label_maps, groups, fit_targets)
                        for name, probs in (
                            ("image", val_image),
                            ("text", val_text),
                            ("fusion", fusion.apply(val_image, val_text)),
                        )
                    )
                )
    if model is None:
        model = fit_text_model(train, heads, label_maps, cfg)
    text_probs = model.predict_proba(_texts(test))
    targets = encode_labels(test, specs, label_maps)
    train_targets = encode_labels(train, specs, label_maps)
    groups = test["subset"].astype(str).to_numpy(dtype=object)
    evals = [evaluate_model("text", text_probs, targets, heads, label_maps, groups, train_targets)]
    if image is not None:
        evals.insert(
            0, evaluate_model("image", image_probs, targets, heads, label_maps, groups, train_targets)
        )
        fused = fusion.apply(image_probs, text_probs)
        evals.append(evaluate_model("fusion", fused, targets, heads, label_maps, groups, train_targets))
    evaluation = combine(*evals)
    return TextBaselineResult(
        model, evaluation, results_pivot(evaluation.results), len(test), fused_with, fusion, validation
    )


def write_text_baseline(
    result: TextBaselineResult, cfg: TextConfig, catalog: Catalog, models_dir: Path
) -> Path:
    """A version of `text_baseline` through the version store: text_model.pkl, results.csv, side_by_side.csv,
    per_class.csv and the manifest (the top-1 per model, head and group as metrics)."""
    store = VersionStore(models_dir, TEXT_MODEL_NAME)
    config = dataclasses.asdict(cfg)
    draft = store.begin(
        resume_key(TEXT_MODEL_NAME, config, catalog.data_version), catalog.data_version, "never"
    )
    with open(draft.dir / "text_model.pkl", "wb") as f:
        pickle.dump(result.model, f)
    result.evaluation.results.to_csv(draft.dir / "results.csv", index=False)
    result.evaluation.per_class.to_csv(draft.dir / "per_class.csv", index=False)
    result.side_by_side.to_csv(draft.dir / "side_by_side.csv", index=False)
    if result.validation is not None:
        result.validation.results.to_csv(draft.dir / "validation_results.csv", index=False)
    if result.fusion is not None:
        (draft.dir / "fusion.json").write_text(json.dumps(result.fusion.to_dict(), indent=1) + "\n")
    r = result.evaluation.results
    metrics = {
        f"{m}_{h}_{g}_top1": v for m, h, g, v in r[["model", "head", "group", "top1"]].itertuples(index=False)
    } | _fusion_metrics(result.fusion)
    manifest = VersionManifest(
        name=TEXT_MODEL_NAME,
        version=draft.version,
        task="text",
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        data_version=catalog.data_version,
        config=config,
        metrics=metrics,
        info={
            "label_maps": result.model.label_maps,
            "n_test": result.n_test,
            "fused_with": result.fused_with,
            "fusion": result.fusion.to_dict() if result.fusion is not None else None,
        },
    )
    return store.commit(draft, manifest)


def _fusion_metrics(fusion: FusionChoice | None) -> dict[str, float]:
    """The chosen image weight and its validation top-1, as numbers a run can be compared on."""
    if fusion is None:
        return {}
    out = {"fusion_image_weight": fusion.weight}
    if fusion.val_top1 is not None:
        out["fusion_val_top1"] = fusion.val_top1
    return out


def log_text_baseline(
    result: TextBaselineResult,
    cfg: TextConfig,
    catalog: Catalog,
    version_dir: Path,
    tracking_uri: str | None,
    artifacts_uri: str | None = None,
) -> str | None:
    """One MLflow run (experiment `text_baseline`): params, top-1/top-5 per model and group, the tables."""
    if not tracking_uri:
        return None
    from product_attrs.modeling.tracking import Tracker

    tracker = Tracker(tracking_uri, artifacts_uri)
    run_id = tracker.start_run(
        TEXT_MODEL_NAME,
        version_dir.name,
        {**dataclasses.asdict(cfg), "data_version": catalog.data_version, "fused_with": result.fused_with},
        {"data_version": catalog.data_version},
    )
    r = result.evaluation.results
    tracker.log_metrics(
        run_id,
        {
            f"{m}_{h}_{g}_{k}": v
            for m, h, g, t1, t5 in r[["model", "head", "group", "top1", "top5"]].itertuples(index=False)
            for k, v in (("top1", t1), ("top5", t5))
        }
        | _fusion_metrics(result.fusion),
        step=0,
    )
    tracker.log_artifacts(
        run_id, version_dir, artifact_path="text_baseline", skip=("text_model.pkl", "per_class.csv")
    )
    tracker.end_run(run_id)
    return run_id


def load_latest_text_model(models_dir: Path) -> tuple[TextModel | None, str | None]:
    """The newest committed text model (and its version), or (None, None) when none was trained; the
    review queue's second opinion."""
    store = VersionStore(models_dir, TEXT_MODEL_NAME)
    version = store.latest()
    if version is None or not (store.path(version) / "text_model.pkl").is_file():
        return None, None
    with open(store.path(version) / "text_model.pkl", "rb") as f:
        return pickle.load(f), version


def text_labels(model: TextModel, frame: pd.DataFrame, head: str) -> pd.Series:
    """The text model's top-1 label of `head` for each row of `frame` (None where it has no such head)."""
    if head not in model.classifiers or frame.empty:
        return pd.Series([None] * len(frame), index=frame.index, dtype="object")
    probs = model.predict_proba(_texts(frame))[head]
    names = model.label_maps[head]
    return pd.Series([names[k] for k in probs.argmax(1)], index=frame.index, dtype="object")
