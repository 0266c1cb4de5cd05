"""What a sweep will cost, before it runs: trials x epochs x images / throughput, in GPU-hours.

A researcher deciding whether to launch a 45-trial ConvNeXt-B study on a cluster needs the bill
first. Throughput comes from a measured benchmark when one matches the backbone and image size
(``benchmarks/results/*.json``, written by ``benchmarks/trainer_throughput.py --save``); else from the
configured model's FLOPs at an *assumed* utilisation, and the output says which it used. FLOPs are
counted, not tabulated: the sweep's base model (any backbone, its attention and heads) is built on
torch's meta device at the configured image size and one forward is counted by
``torch.utils.flop_counter.FlopCounterMode`` (model=mfer_paper at 224 px: 41.04 GFLOP).
Images per epoch come from the dataset's official train size (data is never read here).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from mfer.config import ModelConfig
from mfer.model import build_model
from mfer_platform.sweep import plan
from mfer_platform.sweep.spaces import SearchSpace

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
# Official train-split sizes (the datasets' releases as MFER/FAER report them; FERPlus: FER2013 Training).
TRAIN_IMAGES = {"rafdb": 12_271, "affectnet7": 283_901, "affectnet8": 287_651, "ferplus": 28_709}
OFFICIAL_VAL_IMAGES = {"ferplus": 3_589}  # PublicTest; the others carve val_fraction from train
# Training a step costs about 3x forward (backward ≈ 2x forward); evaluating an image costs 1x.
PAPER_BACKBONE, PAPER_SIZE = "convnext_base", 224
ASSUMED_MFU = 0.40  # an assumption, not a measurement
H100_BF16_FLOPS = 989e12  # dense bf16 peak of an H100 SXM


@dataclass(frozen=True)
class Throughput:
    images_per_s: float  # training images per second on one GPU
    source: str


@dataclass(frozen=True)
class Estimate:
    trials: int
    trial_epochs: int  # expected, with early stopping where the scheduler stops trials
    train_images: int  # per epoch (train split minus the carved validation part)
    val_images: int
    images_source: str
    throughput: Optional[Throughput]
    gpus_per_trial: float

    @property
    def gpu_hours(self) -> Optional[float]:
        if self.throughput is None or not self.gpus_per_trial or not self.train_images:
            return None
        # A validation image is a forward pass only: a third of a training image's cost.
        seconds = self.trial_epochs * (self.train_images + self.val_images / 3) / self.throughput.images_per_s
        return seconds * self.gpus_per_trial / 3600

    def lines(self) -> list[str]:
        tp = self.throughput
        hours = self.gpu_hours
        cost = (f"~{hours:,.1f} GPU-hours" if hours is not None else
                "n/a (trials request no GPU)" if not self.gpus_per_trial else
                "n/a (dataset size unknown without reading it)" if not self.train_images else
                "n/a (no throughput for this backbone/size: run benchmarks/trainer_throughput.py --save on a GPU)")
        return [
            f"  images/epoch   : {self.train_images:,} train + {self.val_images:,} val ({self.images_source})",
            "  throughput     : " + (f"{tp.images_per_s:,.0f} train img/s per GPU ({tp.source})" if tp else "unknown"),
            f"  cost estimate  : {cost} for {self.trials} trials, {self.trial_epochs:,} trial-epochs",
        ]


def measured(backbone: str, image_size: int, root: Path = BENCHMARKS) -> Optional[Throughput]:
    """The fastest saved benchmark of this backbone at this size (format: trainer_throughput.py --save)."""
    hits = []
    for path in sorted(root.glob("*.json")):
        r = json.loads(path.read_text())
        if r.get("backbone") == backbone and r.get("image_size") == image_size:
            hits.append(Throughput(float(r["images_per_s"]), f"measured: {path.name}, {r.get('device')}, "
                                   f"batch {r.get('batch')}"))
    return max(hits, key=lambda t: t.images_per_s, default=None)


def forward_flop(model: ModelConfig, image_size: int) -> float:
    """FLOPs of one image's forward pass through the configured model (module docstring)."""
    blank = dataclasses.replace(model, pretrained=None, pretrained_file=None)  # weights change no FLOP
    return _counted(json.dumps(dataclasses.asdict(blank), sort_keys=True), image_size)


@lru_cache(maxsize=16)
def _counted(model_json: str, image_size: int) -> float:
    with torch.device("meta"), torch.no_grad():  # shapes only: no memory, no arithmetic
        net = build_model(ModelConfig(**json.loads(model_json)), 7, image_size).eval()
        with FlopCounterMode(display=False) as counter:
            net(torch.empty(1, 3, image_size, image_size))
    return float(counter.get_total_flops())


def flops_based(model: ModelConfig, image_size: int) -> Throughput:
    flop = 3 * forward_flop(model, image_size)
    return Throughput(ASSUMED_MFU * H100_BF16_FLOPS / flop,
                      f"ASSUMED: {flop / 1e9:.1f} GFLOP/img at {image_size}px ({model.backbone}, counted), fwd+bwd, "
                      f"at {ASSUMED_MFU:.0%} MFU of an H100's 989 bf16 TFLOP/s; not measured")


def estimate(space: SearchSpace) -> Estimate:
    cfg = space.base_config
    data, backbone = cfg.data, cfg.model.backbone
    if data.name == "synthetic":
        total, where = data.synthetic_train, "synthetic_train"
    else:
        total = TRAIN_IMAGES.get(data.name, 0)  # 0: a folder dataset, whose size only its files know
        where = f"{data.name} official train size {total:,}; data not read"
    val = OFFICIAL_VAL_IMAGES.get(data.name, int(round(total * data.val_fraction)))
    train = total if data.name in OFFICIAL_VAL_IMAGES else total - val
    _, expected = plan.estimated_trial_epochs(space)
    return Estimate(space.trial_count(), expected, train, val, where,
                    measured(backbone, data.image_size) or flops_based(cfg.model, data.image_size),
                    space.resources.gpu)
