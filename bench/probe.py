"""The frozen-feature probe: ImageNet pooled features of a backbone that never sees this catalog, plus a
logistic regression per label column. Every trained profile must beat it, so it is measured beside them.

    # fashion: EfficientNet-Lite0 at 96x128 (the catalog's own 3:4 aspect), article_type, top20 / rest / all
    python bench/probe.py --catalog fashion
    # grocery: 224 px, fine / coarse labels, fitted on the train + val photos, scored on test
    python bench/probe.py --catalog grocery
    # a smoke run on a subset (its JSON goes under --work-dir/results, not bench/results)
    python bench/probe.py --catalog fashion --max-rows 1000 --threads 1

Features are cached as .npy under `--cache-dir` (default `--work-dir`/probe_features), keyed by the
catalog's data version, the rows, the input size and the backbone, so a second run only fits (seconds to a
minute). The catalogs come from `$PRODUCT_ATTRS_REAL_DATA` (default ../shared/data) through the project's
own ingestion, or from `--splits-dir`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REAL_DATA = REPO.parent / "shared" / "data"
DEFAULT_WORK_DIR = Path("/tmp/product_attrs_bench_real")
#: Inverse L2 strength on standardized features (sklearn's C multiplies the summed loss, so it regularizes
#: less as rows grow). Looked at on the fashion *train* rows only (2,000 fitted, 1,000 held out, 96x128):
#: held-out top-1 0.746 / 0.743 / 0.735 / 0.737 / 0.731 for C = 0.01 / 0.03 / 0.1 / 0.3 / 1: flat within
#: noise, 0.03 in the middle of the good range. Never chosen on test rows.
C_DEFAULT = 0.03
MAX_ITER = 3000
#: What the CLI measures per catalog: the issue's protocol.
CATALOGS: dict[str, dict[str, Any]] = {
    "fashion": {
        "folder": "fashion-product-images-small",
        "catalog": "catalog",
        "columns": ("article_type",),
        "size": (96, 128),
        "splits_train": ("train",),
    },
    "grocery": {
        "folder": "grocery-store",
        "catalog": "grocery",
        "columns": ("fine_label", "coarse_label"),
        "size": (224, 224),
        "splits_train": ("train", "val"),
    },
}

Log = Callable[[str], None]


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """PyTorch and BLAS limited to `threads` (0: leave the defaults), restored afterwards."""
    import torch
    from threadpoolctl import threadpool_limits

    if threads <= 0:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(previous)


def feature_transform(size: tuple[int, int], mean: Sequence[float], std: Sequence[float]):
    """Resize to (width, height) without cropping: the catalog's square-only test transform would squash
    60x80 product shots, and a probe should see what the image shows."""
    from torchvision import transforms

    width, height = size
    return transforms.Compose(
        [
            transforms.Resize((height, width), antialias=True),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def extract_features(
    paths: list[str],
    size: tuple[int, int],
    backbone: str = "efficientnet_lite0",
    batch_size: int = 32,
    workers: int = 0,
    log: Log = print,
) -> tuple[np.ndarray, str]:
    """(rows, features) float32 pooled ImageNet features, NaN rows for unreadable files; and the weights'
    source. Runs on the CPU: the probe is the CPU floor."""
    import torch

    from product_attrs.classification.model import Backbone, _load_backbone_state, imagenet_state_dict
    from product_attrs.classification.serve import _collate, _Files

    net = Backbone(backbone)
    state, source = imagenet_state_dict(backbone, allow_download=False)
    _load_backbone_state(net, state, source)
    # channels_last + batches of 32: 2-3x faster with oneDNN on one CPU thread than NCHW batches of 128,
    # which spend more time in page faults than in arithmetic (measured on the 2-core machine).
    net = net.eval().to(memory_format=torch.channels_last)
    out = np.full((len(paths), net.out_features), np.nan, np.float32)
    loader = torch.utils.data.DataLoader(
        _Files(paths, feature_transform(size, net.mean, net.std)),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
    )
    done, start, errors = 0, time.perf_counter(), 0
    with torch.inference_mode():
        for idx, x, bad in loader:
            errors += len(bad)
            if len(idx):
                out[idx.numpy()] = net(x.contiguous(memory_format=torch.channels_last)).float().numpy()
            done += len(idx) + len(bad)
            if done % (batch_size * 200) < batch_size or done == len(paths):
                rate = done / max(time.perf_counter() - start, 1e-9)
                log(f"  features {done}/{len(paths)} ({rate:.0f} images/s)")
    if errors:
        log(f"  {errors} images could not be read: left out")
    return out, source


def cached_features(
    frame: pd.DataFrame,
    data_version: str,
    size: tuple[int, int],
    backbone: str,
    cache_dir: Path | None,
    log: Log = print,
    **extract: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Features of `frame`'s images, from `cache_dir` when the same rows, data version, size and backbone
    were extracted before; `info` says where they came from and how long the extraction took."""
    ids = frame["id"].to_numpy(dtype=np.int64)
    rows = hashlib.sha1(ids.tobytes()).hexdigest()[:12]
    key = f"{backbone}_{size[0]}x{size[1]}_{data_version}_{len(ids)}_{rows}"
    if cache_dir is not None:
        npy, sidecar = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
        if npy.exists() and sidecar.exists():
            info = json.loads(sidecar.read_text()) | {"cached": True, "file": str(npy)}
            log(f"  features of {len(ids)} rows from the cache ({npy.name})")
            return np.load(npy), info
    start = time.perf_counter()
    feats, source = extract_features(
        frame["image_path"].astype(str).tolist(), size, backbone, log=log, **extract
    )
    info = {
        "seconds": round(time.perf_counter() - start, 1),
        "rows": len(ids),
        "failed": int(np.isnan(feats[:, 0]).sum()) if len(feats) else 0,
        "weights": source,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f"{key}.tmp.npy"
        np.save(tmp, feats)
        tmp.replace(cache_dir / f"{key}.npy")
        (cache_dir / f"{key}.json").write_text(json.dumps(info, indent=1) + "\n")
    return feats, info | {"cached": False}


def _groups(frame: pd.DataFrame) -> list[str]:
    """The subset groups to report (the top-k group, then rest), then 'all'."""
    present = set(frame["subset"].dropna().astype(str)) - {"all"} if "subset" in frame else set()
    return [*sorted(present - {"rest"}), *(["rest"] if "rest" in present else []), "all"]


def frozen_probe(
    catalog_dir: Path | str,
    columns: Sequence[str],
    size: tuple[int, int] = (96, 128),
    splits_train: Sequence[str] = ("train",),
    split_test: str = "test",
    backbone: str = "efficientnet_lite0",
    cache_dir: Path | str | None = None,
    threads: int = 0,
    max_rows: int = 0,
    max_test_rows: int | None = None,
    seed: int = 0,
    c: float = C_DEFAULT,
    max_iter: int = MAX_ITER,
    batch_size: int = 32,
    workers: int = 0,
    log: Log = print,
) -> dict[str, Any]:
    """Top-1 of a logistic regression on frozen ImageNet features, per column and subset group.

    Fitted on `splits_train` rows, scored on `split_test` rows (`max_rows` / `max_test_rows` cap them with
    the classifier's own reproducible sampling, for smoke runs). A test row whose class has no training
    row counts as wrong, as in the classifier's evaluation. Returns a JSON-ready dict.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from product_attrs.classification.data import cap_rows, load_catalog

    started = time.perf_counter()
    catalog = load_catalog(catalog_dir)
    frame = catalog.frame
    train = cap_rows(
        frame[frame["split"].isin(list(splits_train)).fillna(False).to_numpy(bool)].reset_index(drop=True),
        max_rows,
        seed,
    )
    test = cap_rows(catalog.split(split_test), max_rows if max_test_rows is None else max_test_rows, seed)
    cache = Path(cache_dir) if cache_dir is not None else None
    log(f"probe: {backbone} {size[0]}x{size[1]}, {len(train)} train / {len(test)} {split_test} rows")
    with torch_threads(threads):
        x_train, info_train = cached_features(
            train, catalog.data_version, size, backbone, cache, log, batch_size=batch_size, workers=workers
        )
        x_test, info_test = cached_features(
            test, catalog.data_version, size, backbone, cache, log, batch_size=batch_size, workers=workers
        )
        features_s = time.perf_counter() - started
        ok_train, ok_test = np.isfinite(x_train[:, 0]), np.isfinite(x_test[:, 0])
        scaler = StandardScaler().fit(x_train[ok_train])
        z_train = scaler.transform(np.nan_to_num(x_train))
        z_test = scaler.transform(np.nan_to_num(x_test))
        fit_start = time.perf_counter()
        top1: dict[str, dict[str, float]] = {}
        majority: dict[str, dict[str, float]] = {}
        n_iter: dict[str, int] = {}
        groups_test = test["subset"].astype(str).to_numpy(object) if "subset" in test else None
        for column in columns:
            y_train = train[column].astype("object").where(train[column].notna(), None).to_numpy(object)
            y_test = test[column].astype("object").where(test[column].notna(), None).to_numpy(object)
            fit_rows = ok_train & (y_train != None)  # noqa: E711 - element-wise on an object array
            clf = LogisticRegression(C=c, max_iter=max_iter).fit(
                z_train[fit_rows], y_train[fit_rows].astype(str)
            )
            n_iter[column] = int(np.max(clf.n_iter_))
            labelled = y_test != None  # noqa: E711
            # Unreadable test images count as wrong: the catalog promised them.
            pred = np.where(ok_test, clf.predict(z_test), None)
            hit = (pred == y_test) & labelled
            common = pd.Series(y_train[fit_rows]).value_counts().index[0]
            top1[column], majority[column] = {}, {}
            for group in _groups(test):
                rows = labelled & (True if group == "all" else groups_test == group)
                top1[column][group] = float(hit[rows].mean()) if rows.any() else float("nan")
                majority[column][group] = (
                    float((y_test[rows] == common).mean()) if rows.any() else float("nan")
                )
            log(f"  {column}: " + ", ".join(f"{g} {v:.4f}" for g, v in top1[column].items()))
        fit_s = time.perf_counter() - fit_start
    return {
        "backbone": backbone,
        "weights": info_train.get("weights"),
        "size": list(size),
        "c": c,
        "max_iter": max_iter,
        "data_version": catalog.data_version,
        "splits_train": list(splits_train),
        "split_test": split_test,
        "n_train": int(ok_train.sum()),
        "n_test": len(test),
        "failed_images": int((~ok_train).sum() + (~ok_test).sum()),
        "top1": top1,
        "majority_top1": majority,
        "n_iter": n_iter,
        "converged": {k: v < max_iter for k, v in n_iter.items()},
        "features_cached": bool(info_train["cached"] and info_test["cached"]),
        # Extraction time when the features were made (the cache keeps it), and this run's own times.
        "extraction_seconds": round(info_train["seconds"] + info_test["seconds"], 1),
        "features_seconds": round(features_s, 1),
        "fit_seconds": round(fit_s, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def figure_names(result: dict[str, Any], key: str = "top1", prefix: str = "") -> dict[str, float]:
    """Flat figure names: `article_type_top20_top1` per group, `fine_top1` where a column has only 'all'."""
    out = {}
    for column, groups in result[key].items():
        short = column.removesuffix("_label")
        for group, value in groups.items():
            if group == "all" and len(groups) == 1:
                out[f"{prefix}{short}_top1"] = value
            else:
                out[f"{prefix}{short}_{group}_top1"] = value
    return out


def write_bench_json(
    name: str,
    command: str,
    figures: dict[str, Any],
    floor: dict[str, Any],
    seconds: float,
    notes: str,
    data_version: str | None,
    results_dir: Path | None = None,
) -> Path:
    """bench_results.write_result, importable from here (bench/ is not a package)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_results import write_result

    return write_result(
        name,
        command,
        figures,
        floor,
        seconds,
        notes=notes,
        data_version=data_version,
        results_dir=results_dir,
    )


def catalog_dir_for(which: str, real_data: Path, work_dir: Path, splits_dir: Path | None, log: Log) -> Path:
    """The ingested catalog folder: `splits_dir`, or the project's ingestion of the real data, reused when
    its splits.parquet is already there."""
    if splits_dir is not None:
        return splits_dir
    spec = CATALOGS[which]
    out = work_dir / spec["catalog"]
    if (out / "splits.parquet").exists():
        log(f"reusing {out}/splits.parquet (delete it to ingest again)")
        return out
    source = real_data / spec["folder"]
    if not source.is_dir():
        raise FileNotFoundError(f"no {spec['folder']} under {real_data}: set PRODUCT_ATTRS_REAL_DATA")
    start = time.perf_counter()
    if which == "grocery":
        from product_attrs.catalog.grocery import ingest_grocery

        counts = ingest_grocery(source, out, workers=2)
    else:
        from product_attrs.catalog.ingest import ingest_catalog

        counts = ingest_catalog(source, out, workers=2)
    log(f"ingested {source} in {time.perf_counter() - start:.1f}s: {counts}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", choices=sorted(CATALOGS), required=True)
    ap.add_argument(
        "--real-data", default=None, help="folder holding the catalogs ($PRODUCT_ATTRS_REAL_DATA)"
    )
    ap.add_argument("--splits-dir", default=None, help="an ingested catalog folder to use as it is")
    ap.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR), help="ingested catalogs and the cache")
    ap.add_argument("--cache-dir", default=None, help="feature cache (default WORK_DIR/probe_features)")
    ap.add_argument("--max-rows", type=int, default=0, help="cap train and test rows (smoke runs)")
    ap.add_argument("--size", default=None, help="input WIDTHxHEIGHT (fashion 96x128, grocery 224x224)")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    ap.add_argument("--c", type=float, default=C_DEFAULT, help="inverse regularization strength")
    args = ap.parse_args(argv)
    spec = CATALOGS[args.catalog]
    work = Path(args.work_dir)
    real = Path(args.real_data or os.environ.get("PRODUCT_ATTRS_REAL_DATA") or DEFAULT_REAL_DATA)
    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else spec["size"]
    try:
        catalog_dir = catalog_dir_for(
            args.catalog, real, work, Path(args.splits_dir) if args.splits_dir else None, print
        )
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    result = frozen_probe(
        catalog_dir,
        spec["columns"],
        size=size,
        splits_train=spec["splits_train"],
        backbone=args.backbone,
        cache_dir=Path(args.cache_dir) if args.cache_dir else work / "probe_features",
        threads=args.threads,
        max_rows=args.max_rows,
        c=args.c,
    )
    print(json.dumps(result, indent=1))
    figures = figure_names(result) | {
        "extraction_seconds": result["extraction_seconds"],
        "fit_seconds": result["fit_seconds"],
    }
    cached = (
        f"features from the cache (extracted in {result['extraction_seconds']:.0f} s)"
        if result["features_cached"]
        else f"features extracted in this run ({result['extraction_seconds']:.0f} s)"
    )
    subset = f"SUBSET: at most {args.max_rows} train / test rows; " if args.max_rows else ""
    notes = (
        f"{subset}{args.backbone} ImageNet pooled features, frozen, {size[0]}x{size[1]} resize; "
        f"StandardScaler + LogisticRegression(C={args.c}); fit on {'+'.join(spec['splits_train'])} "
        f"({result['n_train']} rows), scored on test ({result['n_test']}); {cached}; threads {args.threads}; "
        "floor: the majority class"
    )
    out = write_bench_json(
        f"probe_real_{args.catalog}",
        "PRODUCT_ATTRS_REAL_DATA=../shared/data python bench/probe.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        figures,
        figure_names(result, "majority_top1", "majority_"),
        result["seconds"],
        notes,
        result["data_version"],
        results_dir=work / "results" if args.max_rows else None,
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
