"""The improvement loop, simulated on the real fashion catalog: labels chosen by the review queue's ranking
against labels chosen at random.

    python bench/bench_review_loop.py                 # the committed figures (a few minutes on 2 cores)
    python bench/bench_review_loop.py --seeds 0       # one seed
    python bench/bench_review_loop.py --rounds 2 --per-round 200 --max-test-rows 2000   # a smoke run

Protocol (issue 16): start from a model trained on 10% of the train split's labels; run 4 rounds, each
adding 500 labels chosen by the review queue's score (`classification.uncertainty`: top-1/top-2 margin)
against 500 chosen at random, the "analyst" answering with the catalog's true label; after each round
retrain and score top-1 on the fixed test split (odd years), which no round ever labels. The reference is
the same model trained on every train label.

"Freeze the layers that work": the model is the cpu profile's EfficientNet-Lite0 (ImageNet weights,
96x128) with the *whole* backbone frozen and only the article_type head trained per round. The frozen
features come from the classifier's own feature cache (stages 0-5, plain and mirrored views, built by
`bench_classifier_real.py --profile cpu` and reused when its key matches; built here otherwise), run once
through the remaining ImageNet stages and pooled to 1280 numbers per view. Each round then trains a
linear softmax head from scratch (fixed seed, fixed epochs) on both views of the labelled rows: seconds,
so the whole simulation, queue and random, several seeds, and the all-labels reference, runs on 2 CPU
cores. The uncertainty score of the bench is the image model's margin alone (no text model in the loop).

Figures go to bench/results/review_loop_fashion.json (a smoke run: under --work-dir/results) and the plot
to bench/results/review_loop_fashion.png.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

from product_attrs.classification.uncertainty import rank, top2, uncertainty_score  # noqa: E402

HEAD = "article_type"


def log(msg: str) -> None:
    print(msg, flush=True)


def pooled_features(splits_dir: Path, work: Path, threads: int) -> dict[str, np.ndarray]:
    """Frozen ImageNet features (1280 per view) of every train row (2 views) and test row (1 view), their
    labels and subset group; cached as one .npz under `work`, keyed by the cache files it was built from."""
    import torch
    import torch.nn.functional as F

    from product_attrs.classification import feature_cache as fc
    from product_attrs.classification.config import PROFILES, TrainConfig
    from product_attrs.classification.task import ClassificationTask
    from product_attrs.modeling.config import resolve
    from product_attrs.modeling.distributed import DistInfo

    cfg = resolve(TrainConfig, PROFILES, "cpu")
    device = torch.device("cpu")
    task = ClassificationTask(cfg, splits_dir, DistInfo(), device, log, allow_download=False)
    model, source = task.build(False)
    model.eval()
    import pandas as pd

    fit = pd.concat([task.train_rows, task.val_rows], ignore_index=True)
    test = task.test_rows
    common = {
        "size": cfg.input_size(),
        "weights_source": f"{cfg.backbone}:{cfg.pretrained}:{cfg.weights_file}",
        "data_version": task.data_version,
        "device": device,
        "workers": cfg.num_workers,
        "log": log,
    }
    folder = task.catalog.catalog_dir / fc.CACHE_FOLDER
    fit_paths, test_paths = fit["image_path"].astype(str).tolist(), test["image_path"].astype(str).tolist()
    keys = [
        fc.cache_key(model, fit_paths, common["size"], 2, common["weights_source"], task.data_version),
        fc.cache_key(model, test_paths, common["size"], 1, common["weights_source"], task.data_version),
    ]
    # Threads only now: the cache key sums the frozen weights in float, and the sum's last bits depend on
    # the number of threads (a key computed under 1 thread missed the cache built under 2).
    if threads:
        torch.set_num_threads(threads)
    out_path = work / f"pooled_{hashlib.sha1('_'.join(keys).encode()).hexdigest()[:16]}.npz"
    if out_path.exists():
        log(f"pooled features: reusing {out_path}")
        # allow_pickle: files written before the subset column was stored as text held it as objects
        return dict(np.load(out_path, allow_pickle=True))
    fit_cache = fc.build_cache(model, fit_paths, folder, views=2, **common)
    test_cache = fc.build_cache(model, test_paths, folder, views=1, **common)
    stage = cfg.freeze_stages

    @torch.no_grad()
    def pool(cache: np.ndarray, view: int) -> np.ndarray:
        n = cache.shape[1]
        out = np.zeros((n, model.backbone.out_features), np.float32)
        start = time.perf_counter()
        for i in range(0, n, 256):
            x = torch.from_numpy(np.asarray(cache[view, i : i + 256], dtype=np.float32))
            out[i : i + len(x)] = F.adaptive_avg_pool2d(model.backbone.run_stages(x, stage), 1).flatten(1)
        log(f"  pooled {n} rows (view {view}) in {time.perf_counter() - start:.0f}s")
        return out

    maps = task.label_maps[HEAD]
    index = {c: i for i, c in enumerate(maps)}

    def labels(frame: pd.DataFrame) -> np.ndarray:
        return np.array([index.get(str(v), -1) if pd.notna(v) else -1 for v in frame[HEAD]], np.int64)

    arrays = {
        "fit_x0": pool(fit_cache, 0),
        "fit_x1": pool(fit_cache, 1),
        "test_x": pool(test_cache, 0),
        "fit_y": labels(fit),
        "test_y": labels(test),
        "fit_id": fit["id"].to_numpy(np.int64),
        "test_id": test["id"].to_numpy(np.int64),
        "test_subset": test["subset"].astype(str).to_numpy().astype("U"),
        "n_classes": np.array(len(maps)),
        "data_version": np.array(task.data_version),
        "weights": np.array(source),
    }
    work.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(out_path)
    return arrays


class Head:
    """A linear softmax head on standardized frozen features, trained from scratch with a fixed seed."""

    def __init__(self, n_classes: int, mean: np.ndarray, std: np.ndarray, epochs: int, seed: int) -> None:
        self.n_classes, self.mean, self.std, self.epochs, self.seed = n_classes, mean, std, epochs, seed
        self.net = None

    def fit(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> Head:
        import torch

        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        xt = torch.from_numpy((x - self.mean) / self.std).float()
        yt = torch.from_numpy(y).long()
        wt = torch.ones(len(y)) if weight is None else torch.from_numpy(weight).float()
        net = torch.nn.Linear(x.shape[1], self.n_classes)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
        steps = self.epochs * ((len(y) + 255) // 256)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        for _ in range(self.epochs):
            perm = torch.randperm(len(y), generator=g)
            for i in range(0, len(y), 256):
                b = perm[i : i + 256]
                loss = torch.nn.functional.cross_entropy(
                    net(xt[b]), yt[b], reduction="none", label_smoothing=0.1
                )
                loss = (loss * wt[b]).sum() / wt[b].sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        self.net = net
        return self

    def probs(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            z = torch.from_numpy((x - self.mean) / self.std).float()
            return torch.softmax(self.net(z), dim=1).numpy()


def train_and_score(data: dict, labelled: np.ndarray, epochs: int, seed: int, norm) -> tuple[Head, dict]:
    """A head trained on both views of the `labelled` train positions; top-1 on the test rows."""
    x = np.concatenate([data["fit_x0"][labelled], data["fit_x1"][labelled]])
    y = np.concatenate([data["fit_y"][labelled], data["fit_y"][labelled]])
    keep = y >= 0
    head = Head(int(data["n_classes"]), *norm, epochs=epochs, seed=seed).fit(x[keep], y[keep])
    pred = head.probs(data["test_x"]).argmax(1)
    hit = pred == data["test_y"]
    subsets = data["test_subset"]
    scores = {"all": float(hit.mean())}
    for group in sorted(set(subsets.tolist())):
        scores[group] = float(hit[subsets == group].mean())
    return head, scores


def run_seed(data: dict, seed: int, args, norm) -> dict:
    n = len(data["fit_y"])
    rng = np.random.default_rng(seed)
    start = np.sort(rng.choice(n, size=round(args.start_fraction * n), replace=False))
    curves: dict[str, list[dict]] = {}
    for strategy in ("queue", "random"):
        pick_rng = np.random.default_rng(1000 + seed)
        labelled = start.copy()
        rows = []
        for rnd in range(args.rounds + 1):
            t0 = time.perf_counter()
            head, scores = train_and_score(data, labelled, args.epochs, seed, norm)
            rows.append({"round": rnd, "labels": int(len(labelled)), **scores})
            took, top1 = time.perf_counter() - t0, scores["all"]
            log(
                f"seed {seed} {strategy:<6} round {rnd}: {len(labelled):>6} labels, "
                f"top-1 {top1:.4f} ({took:.1f}s)"
            )
            if rnd == args.rounds:
                break
            pool = np.setdiff1d(np.arange(n), labelled)
            if strategy == "queue":
                _, p1, _, p2 = top2(head.probs(data["fit_x0"][pool]))
                chosen = pool[rank(uncertainty_score(p1, p2), args.per_round)]
            else:
                chosen = pick_rng.choice(pool, size=args.per_round, replace=False)
            labelled = np.sort(np.concatenate([labelled, chosen]))
        curves[strategy] = rows
    return curves


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for strategy, color in (("queue", "tab:blue"), ("random", "tab:orange")):
        mean = result["mean"][strategy]
        xs = [r["labels"] for r in mean]
        ax.plot(xs, [r["all"] for r in mean], "o-", color=color, label=f"{strategy} (mean of seeds)")
        for curves in result["per_seed"].values():
            ax.plot(xs, [r["all"] for r in curves[strategy]], "-", color=color, alpha=0.25, lw=1)
    ref = result["all_labels"]["all"]
    ax.axhline(ref, color="gray", ls="--", label=f"all {result['all_labels']['labels']} labels")
    ax.axhline(ref - 0.02, color="gray", ls=":", label="all labels - 2 points")
    ax.set_xlabel("labelled train rows")
    ax.set_ylabel("test top-1 (article_type, odd years)")
    ax.set_title("Review queue vs random labels, real fashion catalog")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits-dir", default=None, help="ingested catalog (default: --work-dir/catalog)")
    ap.add_argument("--work-dir", default="/tmp/product_attrs_bench_real")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--per-round", type=int, default=500)
    ap.add_argument("--start-fraction", type=float, default=0.10)
    ap.add_argument("--epochs", type=int, default=30)
    # One thread: two OpenMP threads on a busy 2-core machine stall each other (the head's steps ran >10x
    # slower with the default of 2 while other jobs ran).
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--features-only", action="store_true")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    work = Path(args.work_dir)
    splits_dir = Path(args.splits_dir) if args.splits_dir else work / "catalog"
    if not (splits_dir / "splits.parquet").exists():
        from probe import catalog_dir_for

        real = Path(os.environ.get("PRODUCT_ATTRS_REAL_DATA", REPO.parent / "shared" / "data"))
        splits_dir = catalog_dir_for("fashion", real, work, None, log)
    data = pooled_features(splits_dir, work / "review_loop", args.threads)
    features_s = time.perf_counter() - started
    if args.features_only:
        return 0
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    # Standardized with the train rows' statistics (no labels used, no test rows).
    allx = np.concatenate([data["fit_x0"], data["fit_x1"]])
    norm = (allx.mean(0), allx.std(0) + 1e-6)
    seeds = [int(s) for s in args.seeds.split(",")]
    n = len(data["fit_y"])
    log(f"{n} train rows, {len(data['test_y'])} test rows, {int(data['n_classes'])} {HEAD} classes")
    t0 = time.perf_counter()
    _, reference = train_and_score(data, np.arange(n), args.epochs, 0, norm)
    reference = {"labels": n, **reference, "seconds": round(time.perf_counter() - t0, 1)}
    log(f"all labels ({n}): top-1 {reference['all']:.4f}")
    per_seed = {str(s): run_seed(data, s, args, norm) for s in seeds}
    mean = {
        strategy: [
            {
                "round": r,
                "labels": per_seed[str(seeds[0])][strategy][r]["labels"],
                **{
                    k: float(np.mean([per_seed[str(s)][strategy][r][k] for s in seeds]))
                    for k in per_seed[str(seeds[0])][strategy][r]
                    if k not in ("round", "labels")
                },
            }
            for r in range(args.rounds + 1)
        ]
        for strategy in ("queue", "random")
    }
    print(
        f"\n{'round':>5}{'labels':>8}{'queue':>9}{'random':>9}{'gain':>8}"
        f"   (test top-1, mean of seeds {seeds})"
    )
    for q, r in zip(mean["queue"], mean["random"], strict=True):
        print(f"{q['round']:>5}{q['labels']:>8}{q['all']:>9.4f}{r['all']:>9.4f}{q['all'] - r['all']:>+8.4f}")
    final_q, final_r = mean["queue"][-1]["all"], mean["random"][-1]["all"]
    above = all(q["all"] > r["all"] for q, r in zip(mean["queue"][1:], mean["random"][1:], strict=True))
    above_every_seed = all(
        q["all"] > r["all"]
        for s in seeds
        for q, r in zip(per_seed[str(s)]["queue"][1:], per_seed[str(s)]["random"][1:], strict=True)
    )
    print(
        f"all labels: {reference['all']:.4f}; after {args.rounds} rounds queue is "
        f"{(reference['all'] - final_q) * 100:.2f} points below it, "
        f"random {(reference['all'] - final_r) * 100:.2f}; "
        f"queue/random error ratio {(1 - final_q) / (1 - final_r):.3f}; queue above random at every round: "
        f"{above} (mean), {above_every_seed} (every seed)"
    )
    result = {"per_seed": per_seed, "mean": mean, "all_labels": reference}
    smoke = args.rounds != 4 or args.per_round != 500 or args.start_fraction != 0.10
    results_dir = work / "results" if smoke else REPO / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    png = results_dir / "review_loop_fashion.png"
    plot(result, png)
    from bench_results import write_result

    figures = {
        **{f"queue_round{q['round']}_top1": round(q["all"], 4) for q in mean["queue"]},
        **{f"random_round{r['round']}_top1": round(r["all"], 4) for r in mean["random"]},
        "all_labels_top1": round(reference["all"], 4),
        "queue_gap_to_all_labels_points": round((reference["all"] - final_q) * 100, 2),
        "random_gap_to_all_labels_points": round((reference["all"] - final_r) * 100, 2),
        "queue_above_random_every_round": above,
        "queue_above_random_every_round_every_seed": above_every_seed,
        "features_seconds": round(features_s, 1),
    }
    command = "python bench/bench_review_loop.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = write_result(
        "review_loop_fashion",
        command.strip(),
        figures,
        {"random_final_top1": round(final_r, 4)},
        time.perf_counter() - started,
        notes=(
            f"{'SMOKE: ' if smoke else ''}{HEAD} head, linear softmax on frozen EfficientNet-Lite0 ImageNet "
            f"features (96x128, feature cache stages 0-5 + remaining ImageNet stages, pooled, both mirror "
            f"views), AdamW lr 1e-3 wd 1e-2, label smoothing 0.1, {args.epochs} epochs, retrained from "
            f"scratch each round; start {args.start_fraction:.0%} of {n} train rows "
            f"({mean['queue'][0]['labels']}), {args.rounds} rounds x {args.per_round}; queue = top-1/top-2 "
            f"margin of the current model on the unlabelled train rows; test = {len(data['test_y'])} rows "
            f"(odd years), never labelled; seeds {seeds} (start sample and random picks; mean reported, per "
            f"seed under curves); weights {data['weights']}"
        ),
        data_version=str(data["data_version"]),
        results_dir=results_dir,
    )
    # The curves per seed join the result file (bench_results writes figures only; every *.json in
    # bench/results is a result, so they cannot live in a file of their own there).
    written = json.loads(out.read_text())
    out.write_text(json.dumps(written | {"curves": result}, indent=2) + "\n")
    print(f"wrote {out}, {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
