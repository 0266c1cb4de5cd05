"""Trainer throughput: images/s of the trainer's own training step vs a bare torch loop, same backbone/batch.

The bare loop is what a researcher would write by hand: timm ConvNeXt with its own linear head,
plain CE, AdamW, no AMP tricks beyond what the trainer also uses. The MFER rows time
``mfer.train.engine.train_step`` itself — the step ``train_one_epoch`` runs (uint8 batch ->
device-side normalise/augment -> forward_train -> Σ LSCE + λ·feature loss + auxiliary losses ->
clip -> step) on a run made by ``mfer.train.build.build_run``, so the figure is the trainer's,
not a copy's — with components switched on one at a time, so the README can report the cost of
each. The batch sits on the device already: the data path has its own benchmark
(``benchmarks/data_path.py``). On CUDA it also reports peak memory and MFU (model FLOPs from
torch.utils.flop_counter / step time / the GPU's dense bf16 peak).

    python benchmarks/trainer_throughput.py [--backbone convnext_atto] [--size 64] [--batch 64]
    python benchmarks/trainer_throughput.py --backbone convnext_base --size 224 --batch 128 --save

``--save`` writes ``benchmarks/results/<device>_<backbone>_<size>.json``; the sweep dry run
(``mfer_platform.sweep.cost``) turns its full-MFER images/s into the GPU-hour estimate of a study.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F

from mfer.config import DataConfig, LossConfig, ModelConfig, TrainConfig, TrainerConfig
from mfer.data.arrays import ArraySplit, DatasetBundle
from mfer.data.augment import to_model_input
from mfer.data.classes import BASIC7
from mfer.train.build import autocast_factory, build_run
from mfer.train.engine import train_step
from mfer.validation import validate

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
RESULTS = Path(__file__).parent / "results"


def save(args, device_name: str, rows: dict[str, float]) -> Path:
    """The measurement ``mfer_platform.sweep.cost.measured`` reads: the last row (full MFER) is the figure."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device_name).strip("-").lower()
    path = RESULTS / f"{slug}_{args.backbone}_{args.size}.json"
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps({
        "device": device_name, "backbone": args.backbone, "image_size": args.size, "batch": args.batch,
        "images_per_s": list(rows.values())[-1], "rows": rows,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}, indent=1))
    return path


def _timeit(step, warmup: int, iters: int, device) -> float:
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def bare_step(backbone: str, batch: torch.Tensor, labels: torch.Tensor, device, autocast):
    model = timm.create_model(backbone, num_classes=7).to(device)
    cl = device.type == "cuda"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = to_model_input(batch, batch.shape[1], cl)

    def step():
        with autocast():
            loss = F.cross_entropy(model(x), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, model


def mfer_step(mcfg: ModelConfig, lcfg: LossConfig, dcfg: DataConfig, batch, labels, device):
    """The trainer's ``train_step`` on a run built from this config, over the one batch."""
    images, y = batch.cpu().numpy(), labels.cpu().numpy()
    split = ArraySplit(images, y)
    data = DatasetBundle(split, split, split, BASIC7, "benchmark")
    cfg = validate(TrainConfig(model=mcfg, loss=lcfg, data=dcfg, trainer=TrainerConfig(device=str(device))))
    run = build_run(cfg, data)
    run.model.train()
    run.criterion.train()

    def step():
        train_step(run, batch, labels)

    return step, run.model


def flops_per_image(model, size: int, device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(2, 3, size, size, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / 2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="convnext_atto")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--save", action="store_true", help="write benchmarks/results/*.json for sweep cost estimates")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    autocast, dtype = autocast_factory("auto", device)
    torch.backends.cudnn.benchmark = True  # as the trainer's build_run sets it: the bare loop gets it too
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    batch = torch.from_numpy(rng.integers(0, 255, (args.batch, args.size, args.size, 3), dtype=np.uint8)).to(device)
    labels = torch.from_numpy(rng.integers(0, 7, args.batch)).to(device)
    no_aug = DataConfig(image_size=args.size, hflip=False, random_erasing=0.0)
    aug = DataConfig(image_size=args.size)
    base = dict(backbone=args.backbone, drop_path_rate=0.0)
    rows = [
        ("bare torch loop (timm head, CE)", None),
        ("MFER step, attention off, Msc off", (ModelConfig(**base, attn_variant="none", msc_fractions=[]),
                                               LossConfig(feature="none"), no_aug)),
        ("+ Msc heads (0.5/0.75/1.0)", (ModelConfig(**base, attn_variant="none"), LossConfig(feature="none"), no_aug)),
        ("+ DS attention (stages 3+4)", (ModelConfig(**base), LossConfig(feature="none"), no_aug)),
        ("+ DSF stand-in loss", (ModelConfig(**base), LossConfig(feature="dsf"), no_aug)),
        ("+ flip + random erasing (full MFER)", (ModelConfig(**base), LossConfig(feature="dsf"), aug)),
    ]
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"{args.backbone} @ {args.size}px, batch {args.batch}, amp {dtype}")
    ref, measured = None, {}
    for label, spec in rows:
        if spec is None:
            step, model = bare_step(args.backbone, batch, labels, device, autocast)
        else:
            step, model = mfer_step(*spec, batch, labels, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sec = _timeit(step, args.warmup, args.iters, device)
        ips = args.batch / sec
        ref = ref or ips
        measured[label] = ips
        extra = ""
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated() / 2**30
            name = torch.cuda.get_device_name()
            tflops = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
            mfu = flops_per_image(model, args.size, device) * ips / (tflops * 1e12) if tflops else float("nan")
            extra = f"  peak {peak:.2f} GiB  MFU {mfu:.1%}"
        print(f"{label:<40} {ips:9.1f} img/s  ratio {ips / ref:5.2f}{extra}")
        del step, model
    if args.save:
        print(f"saved {save(args, torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu', measured)}")
    with contextlib.suppress(Exception):
        import resource

        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
