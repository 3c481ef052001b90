"""Training throughput (images/s) of the classifier as shipped vs a plain PyTorch loop, in one process.

    python bench/bench_classifier_throughput.py                      # CPU, EfficientNet-Lite0, 64 px
    python bench/bench_classifier_throughput.py --backbone resnet50 --image-size 224 --batch-size 128 \
        --device cuda

Both loops read the same JPEG files through the same Dataset and DataLoader settings and train the same
backbone, so the difference is what the shipped loop (the shared runner, modeling/runner.py, with the
classifier's step) adds: the 512-d neck, three heads and their weighted loss, the non-finite check agreed
across ranks, per-head accuracy bookkeeping, the LR schedule (and AMP/channels_last when enabled).
Each measurement runs `--warmup` steps first, then times `--steps` steps; the two loops alternate
`--repeats` times and the best of each is reported (the machine may be shared).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from product_attrs.classification.config import HeadSpec, parse_heads
from product_attrs.classification.data import ProductImageDataset, build_transform
from product_attrs.classification.model import Backbone, MultiTaskClassifier
from product_attrs.classification.task import multitask_step
from product_attrs.modeling.distributed import DistInfo
from product_attrs.modeling.runner import Phase, Runner, RunnerOptions


def make_images(folder: Path, n: int, seed: int = 0) -> list[str]:
    """n random 60x80 JPEGs (the catalog's size): decoding cost is part of what is measured."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)).save(p, quality=75)
        paths.append(str(p))
    return paths


class _OneEpoch:
    """The classifier's own step in the shared runner, over one loader, for `steps` steps."""

    def __init__(self, loader: DataLoader, heads: list[HeadSpec], steps: int, channels_last: bool) -> None:
        self.loader, self.heads, self.steps, self.channels_last = loader, heads, steps, channels_last

    def phases(self) -> list[Phase]:
        return [
            Phase(
                "bench",
                1,
                self.loader,
                lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4),
                lambda opt, steps: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10 * steps),
            )
        ]

    def step(self, model, batch, device):
        return multitask_step(model, batch, device, self.heads, None, self.channels_last)

    def epoch_metrics(self, sums, n):
        return {}

    def evaluate(self, model, device):
        return {}


def shipped_steps(
    model: MultiTaskClassifier,
    loader: DataLoader,
    heads: list[HeadSpec],
    device: torch.device,
    steps: int,
    amp: bool,
    channels_last: bool,
) -> float:
    options = RunnerOptions(amp=amp, channels_last=channels_last, max_steps=steps)
    runner = Runner(
        model,
        _OneEpoch(loader, heads, steps, channels_last),
        options,
        device,
        DistInfo(),
        None,
        lambda m: None,
    )
    _sync(device)
    state = runner.run()
    _sync(device)
    return state.history[-1]["images_per_s"]


def plain_steps(
    backbone: Backbone, fc: nn.Linear, loader: DataLoader, device: torch.device, steps: int
) -> float:
    """The textbook loop: forward, cross-entropy on one label, backward, step."""
    params = [p for p in [*backbone.parameters(), *fc.parameters()] if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    backbone.train()
    n = 0
    _sync(device)
    start = time.perf_counter()
    for step, (x, y, _) in enumerate(loader):
        if step >= steps:
            break
        x, y = x.to(device, non_blocking=True), y[:, 0].to(device, non_blocking=True)
        loss = nn.functional.cross_entropy(fc(backbone(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += x.shape[0]
    _sync(device)
    return n / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False)
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False)
    ap.add_argument("--heads", default="article_type:2.0,master_category:0.5,sub_category:0.5")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    heads = parse_heads(args.heads)
    sizes = [26, 5, 11][: len(heads)] + [8] * max(0, len(heads) - 3)
    n_images = args.batch_size * (args.steps + args.warmup)

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), n_images)
        labels = np.stack([np.arange(n_images) % s for s in sizes], axis=1)
        model = MultiTaskClassifier(args.backbone, {h.column: s for h, s in zip(heads, sizes)}).to(device)
        plain_backbone = Backbone(args.backbone).to(device)
        plain_fc = nn.Linear(plain_backbone.out_features, sizes[0]).to(device)
        if args.channels_last:
            model.to(memory_format=torch.channels_last)
        tf = build_transform(args.image_size, True, model.mean, model.std)
        ds = ProductImageDataset(paths, labels, tf)
        loader = DataLoader(
            ds,
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
            pin_memory=device.type == "cuda",
            drop_last=True,
            persistent_workers=args.workers > 0,
        )
        shipped, plain = [], []
        for _ in range(args.repeats):
            shipped_steps(model, loader, heads, device, args.warmup, args.amp, args.channels_last)
            shipped.append(
                shipped_steps(model, loader, heads, device, args.steps, args.amp, args.channels_last)
            )
            plain_steps(plain_backbone, plain_fc, loader, device, args.warmup)
            plain.append(plain_steps(plain_backbone, plain_fc, loader, device, args.steps))

    print(
        f"device={device} threads={args.threads} backbone={args.backbone} image={args.image_size}px "
        f"batch={args.batch_size} steps={args.steps} workers={args.workers} amp={args.amp} "
        f"channels_last={args.channels_last} heads={len(heads)}"
    )
    print(f"{'loop':<10}{'best img/s':>12}{'all runs':>30}")
    print(f"{'shipped':<10}{max(shipped):>12.1f}{[round(v, 1) for v in shipped]!s:>30}")
    print(f"{'plain':<10}{max(plain):>12.1f}{[round(v, 1) for v in plain]!s:>30}")
    print(f"shipped / plain = {max(shipped) / max(plain):.3f}")


if __name__ == "__main__":
    main()
