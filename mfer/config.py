"""Typed configuration of one MFER training run.

Every field is addressable by its dotted path (``model.attn_variant``, ``loss.weight``…):
the Hydra CLI (``mfer-train key=value``) and the sweep platform's search spaces use the same
paths, so a sweep can vary exactly what a user can set by hand and nothing else.

``validate`` checks values against the registries of the swappable parts, so a typo fails at
start-up with the key and the allowed values named, instead of after an hour of training.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A configuration value that can never work; the message names the key and the fix."""


@dataclass
class ModelConfig:
    """Backbone, DS attention and classifier head (spec §1)."""

    backbone: str = "convnext_atto"
    # Local pretrained weights (timm/Meta/FAER-style state dict, .pth/.safetensors); never downloaded.
    pretrained_file: Optional[str] = None
    drop_path_rate: float = 0.1
    # DS attention: none | global (dynamic K only) | local (static conv Q only) | ds (both).
    attn_variant: str = "ds"
    # ConvNeXt stages (1-based, as in the paper) after whose last block one attention block sits.
    attn_stages: list[int] = field(default_factory=lambda: [3, 4])
    attn_kernel: int = 7
    # Groups of the static-local conv; 0 means depthwise (groups = channels).
    attn_groups: int = 1
    # Dynamic-K gate: "input" (MFER: MLP(X) * X) or "pooled" (FAER: MLP(X) * AvgPool(X)).
    attn_k_gate: str = "input"
    # Msc nested channel prefixes as fractions of the final width; [] = one plain linear head.
    msc_fractions: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0])


@dataclass
class LossConfig:
    """Classification loss per head plus an optional feature loss on the pooled feature."""

    label_smoothing: float = 0.1
    # none | center | lgm | dsf (dsf is a documented stand-in: the original was never published).
    feature: str = "dsf"
    weight: float = 1e-3  # lambda
    lgm_alpha: float = 0.1
    lgm_likelihood_weight: float = 0.1
    dsf_smoothing: float = 0.1


@dataclass
class OptimConfig:
    """AdamW plus an epoch-level schedule (paper: ExponentialLR(0.95))."""

    lr: float = 5e-4
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    scheduler: str = "exponential"  # exponential | cosine (linear warm-up, then cosine)
    gamma: float = 0.95
    warmup_epochs: int = 0
    min_lr_ratio: float = 0.01
    grad_clip: float = 5.0  # max global grad norm; 0 disables clipping


@dataclass
class DataConfig:
    """Which dataset, at which resolution, and how batches are drawn and augmented."""

    name: str = "synthetic"  # a key of mfer.data.registry.DATASETS
    root: Optional[str] = None  # dataset folder (real datasets; layouts in mfer/data/formats)
    # RAF-DB only: the official aligned 100x100 crops (Image/aligned) or the photos (Image/original),
    # a recorded choice because alignment mismatches move accuracy by points (fer_pitfalls #4).
    rafdb_images: str = "aligned"
    # FERPlus only: the rule that turns the train split's votes into targets (fer_pitfalls #8):
    # majority | crossentropy | probability | multi_target (mfer/data/formats/ferplus.py).
    ferplus_labels: str = "majority"
    image_size: int = 64
    val_fraction: float = 0.1  # carved, stratified and seeded, from train
    split_seed: int = 0
    # Synthetic generator sizes (ignored by real datasets).
    synthetic_train: int = 3000
    synthetic_test: int = 700
    synthetic_seed: int = 0
    synthetic_difficulty: float = 0.7
    batch_size: int = 32
    eval_batch_size: int = 256
    balanced_sampler: bool = False
    hflip: bool = True
    random_erasing: float = 0.25  # probability per image; 0 disables
    erasing_scale: list[float] = field(default_factory=lambda: [0.02, 0.1])
    multires: bool = False  # MAFER multi-resolution augmentation
    cache_dir: Optional[str] = None  # packed-array cache; default $MFER_CACHE or ~/.cache/mfer


@dataclass
class TrainerConfig:
    """Loop-level settings: length, device, precision, checkpoints, seeding."""

    epochs: int = 10
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 on CUDA when supported, else fp16; off on CPU) | bf16 | fp16 | off
    channels_last: bool = True  # applied on CUDA only
    deterministic: bool = False
    threads: int = 0  # torch intra-op threads on CPU; 0 keeps torch's default
    max_steps_per_epoch: int = 0  # >0 truncates epochs (smoke runs)
    selection_metric: str = "val_acc"
    evaluate_test: bool = True  # test split evaluated once, for the selected epoch, at the end
    checkpoint_every: int = 1  # epochs; the last epoch is always checkpointed


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def _allowed(key: str, value: Any, allowed: list) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of {sorted(map(str, allowed))}")


def _check(key: str, ok: bool, requirement: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: {requirement}")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Fail fast on values that can never work, naming the dotted key and what is allowed."""
    # Imported here: the registries import torch/timm, which the config module itself does not need.
    from mfer.data.formats.ferplus import LABEL_RULES
    from mfer.data.registry import DATASETS
    from mfer.losses import FEATURE_LOSSES
    from mfer.model.attention import ATTENTION_VARIANTS
    from mfer.model.backbone import is_known_backbone
    from mfer.train.schedule import SCHEDULERS

    m, lo, o, d, t = cfg.model, cfg.loss, cfg.optim, cfg.data, cfg.trainer
    _check("model.backbone", is_known_backbone(m.backbone), "not a timm ConvNeXt (convnext_atto … convnext_base…)", m.backbone)
    _allowed("model.attn_variant", m.attn_variant, list(ATTENTION_VARIANTS))
    for s in m.attn_stages:
        _allowed("model.attn_stages[]", s, [1, 2, 3, 4])
    _check("model.attn_stages", len(set(m.attn_stages)) == len(m.attn_stages), "stages must not repeat", m.attn_stages)
    _check("model.attn_kernel", m.attn_kernel >= 1 and m.attn_kernel % 2 == 1, "must be an odd integer >= 1", m.attn_kernel)
    _check("model.attn_groups", m.attn_groups >= 0, "must be >= 1, or 0 for depthwise", m.attn_groups)
    _allowed("model.attn_k_gate", m.attn_k_gate, ["input", "pooled"])
    for f in m.msc_fractions:
        _check("model.msc_fractions[]", 0.0 < f <= 1.0, "each prefix fraction must lie in (0, 1]", f)
    _check("model.msc_fractions", sorted(set(m.msc_fractions)) == list(m.msc_fractions),
           "fractions must be strictly increasing (nested prefixes)", m.msc_fractions)
    _check("model.drop_path_rate", 0.0 <= m.drop_path_rate < 1.0, "must lie in [0, 1)", m.drop_path_rate)
    _allowed("loss.feature", lo.feature, list(FEATURE_LOSSES))
    _check("loss.weight", lo.weight >= 0, "must be >= 0", lo.weight)
    _check("loss.label_smoothing", 0.0 <= lo.label_smoothing < 1.0, "must lie in [0, 1)", lo.label_smoothing)
    _check("optim.lr", o.lr > 0, "must be > 0", o.lr)
    _check("optim.weight_decay", o.weight_decay >= 0, "must be >= 0", o.weight_decay)
    _allowed("optim.scheduler", o.scheduler, list(SCHEDULERS))
    _check("optim.gamma", 0.0 < o.gamma <= 1.0, "must lie in (0, 1]", o.gamma)
    _check("optim.grad_clip", o.grad_clip >= 0, "must be >= 0 (0 disables)", o.grad_clip)
    _allowed("data.name", d.name, list(DATASETS))
    _check("data.root", bool(d.root) or d.name == "synthetic",
           f"is required for data.name={d.name}: the dataset folder (layouts in the README, 'Datasets')", d.root)
    _allowed("data.rafdb_images", d.rafdb_images, ["aligned", "original"])
    _allowed("data.ferplus_labels", d.ferplus_labels, list(LABEL_RULES))
    _check("data.ferplus_labels", d.ferplus_labels == "majority" or d.name == "ferplus",
           f"is a FERPlus vote rule; data.name={d.name} has one label per image: leave it at majority",
           d.ferplus_labels)
    _check("loss.label_smoothing", d.ferplus_labels != "multi_target" or lo.label_smoothing == 0.0,
           "has no meaning for data.ferplus_labels=multi_target (its loss takes the best of the voted "
           "classes): set loss.label_smoothing=0", lo.label_smoothing)
    _check("data.image_size", d.image_size >= 32, "must be >= 32 pixels (ConvNeXt downsamples 32x)", d.image_size)
    _check("data.val_fraction", 0.0 < d.val_fraction < 1.0, "must lie in (0, 1)", d.val_fraction)
    _check("data.batch_size", d.batch_size >= 1, "must be >= 1", d.batch_size)
    _check("data.random_erasing", 0.0 <= d.random_erasing <= 1.0, "is a probability in [0, 1]", d.random_erasing)
    _check("trainer.epochs", t.epochs >= 1, "must be >= 1", t.epochs)
    _allowed("trainer.amp", t.amp, ["auto", "bf16", "fp16", "off"])
    _allowed("trainer.selection_metric", t.selection_metric, ["val_acc", "val_mean_class_acc", "val_macro_f1"])
    _check("trainer.device", t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:"),
           "use auto, cpu, cuda or cuda:N", t.device)
    return cfg


def to_train_config(cfg: DictConfig | dict | TrainConfig) -> TrainConfig:
    """Merge a (Hydra) mapping onto the typed schema; unknown keys and wrong types fail here."""
    if isinstance(cfg, TrainConfig):
        return validate(cfg)
    schema = OmegaConf.structured(TrainConfig)
    try:
        merged = OmegaConf.merge(schema, cfg)
    except Exception as e:  # omegaconf names the full key in its message
        raise ConfigError(f"invalid configuration: {e}") from None
    return validate(OmegaConf.to_object(merged))


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: the dotted paths that search spaces and tables use."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_hash(cfg: TrainConfig) -> str:
    """Short stable hash of the full resolved config (provenance in every artefact)."""
    blob = json.dumps(to_dict(cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
