"""Validation of a TrainConfig against the registries of the swappable parts.

``validate`` checks values against the registries (datasets, attention variants, method
plug-ins, training schemes, feature losses, LR schedules, FERPlus vote rules, timm backbones), so a typo fails at
start-up with the key and the allowed values named, instead of after an hour of training. It sits above both the
schema (``mfer.config``, a leaf) and the registries, which import the schema for their config
types: imports point one way, from here down.
"""
from __future__ import annotations

import math
import dataclasses
from typing import Any

from omegaconf import DictConfig

from mfer.config import ConfigError, TrainConfig, merge_config
from mfer.data.classes import CLASS_ORDERS
from mfer.data.formats.ferplus import LABEL_RULES
from mfer.data.registry import CLASS_ORDER_DATASETS, DATASETS, FACE_BOX_DATASETS, VOTE_DATASETS
from mfer.losses import FEATURE_LOSSES
from mfer.model.attention import ATTENTION_VARIANTS
from mfer.model.backbone import (DEFAULT_WEIGHTS, attention_stages, default_weights, is_known_backbone,
                                 pretrained_architecture, pretrained_tags)
from mfer.model.methods import METHODS
from mfer.schedule import LR_SCHEDULES
from mfer.schemes import SCHEMES


def _allowed(key: str, value: Any, allowed: list) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of {sorted(map(str, allowed))}")


def _check(key: str, ok: bool, requirement: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: {requirement}")


def _validate_weights(cfg: TrainConfig) -> None:
    """Pretrained weights by timm name must exist and fit the backbone; a tag on model.backbone is
    pointed to model.pretrained, where timm's ``arch.tag`` names belong."""
    m = cfg.model
    arch = m.backbone.split(".")[0]
    _check("model.backbone", "." not in m.backbone or not is_known_backbone(arch),
           f"names the architecture only; put the weights tag in model.pretrained: model.backbone={arch} "
           f"model.pretrained={m.backbone}", m.backbone)
    _check("model.backbone", is_known_backbone(m.backbone), "not a timm model name (convnext_atto, resnet18, "
           "resnet50, vit_tiny_patch16_224, …: timm.list_models())", m.backbone)
    if not m.pretrained:
        return
    _check("model.pretrained", not m.pretrained_file, f"and model.pretrained_file={m.pretrained_file} are both set: "
           "keep one (model.pretrained=null for the local file)", m.pretrained)
    if m.pretrained == DEFAULT_WEIGHTS:
        _check("model.pretrained", default_weights(m.backbone) is not None, f"timm lists no pretrained weights "
               f"for model.backbone={m.backbone}: set model.pretrained=null (random init)", m.pretrained)
        return
    found = pretrained_architecture(m.pretrained)
    _check("model.pretrained", found is not None, f"timm has no such pretrained weights; for model.backbone="
           f"{m.backbone} it has {pretrained_tags(m.backbone)[:8]}", m.pretrained)
    _check("model.pretrained", found == m.backbone, f"holds weights for {found}, not model.backbone={m.backbone}: "
           f"set model.backbone={found}, or model.pretrained=null (or one of {pretrained_tags(m.backbone)[:4]})",
           m.pretrained)


def _validate_model(cfg: TrainConfig) -> None:
    m = cfg.model
    _validate_weights(cfg)
    _allowed("model.attn_variant", m.attn_variant, list(ATTENTION_VARIANTS))
    stages = attention_stages(m.backbone, m.attn_stages, m.attn_variant)  # stages the backbone has
    _check("model.attn_stages", len(set(stages)) == len(stages), "stages must not repeat", stages)
    _check("model.attn_kernel", m.attn_kernel >= 1 and m.attn_kernel % 2 == 1, "must be an odd integer >= 1", m.attn_kernel)
    _check("model.attn_groups", m.attn_groups >= 0, "must be >= 1, or 0 for depthwise", m.attn_groups)
    _allowed("model.attn_k_gate", m.attn_k_gate, ["input", "pooled"])
    for f in m.msc_fractions:
        _check("model.msc_fractions[]", 0.0 < f <= 1.0, "each prefix fraction must lie in (0, 1]", f)
    _check("model.msc_fractions", sorted(set(m.msc_fractions)) == list(m.msc_fractions),
           "fractions must be strictly increasing (nested prefixes)", m.msc_fractions)
    _check("model.drop_path_rate", 0.0 <= m.drop_path_rate < 1.0, "must lie in [0, 1)", m.drop_path_rate)


def _method_requirements(m: Any) -> dict[str, list[tuple[str, bool, str, Any]]]:
    """Per plug-in, its section's checks: (key, ok, requirement, value)."""
    nonneg = "must be >= 0 (0 turns the loss off)"
    sc, fd = m.scan_cci, m.fdrl
    return {
        "se": [("model.se.reduction", m.se.reduction >= 1, "must be >= 1", m.se.reduction)],
        "dan": [("model.dan.num_heads", m.dan.num_heads >= 1, "must be >= 1", m.dan.num_heads),
                ("model.dan.affinity_weight", m.dan.affinity_weight >= 0, nonneg, m.dan.affinity_weight),
                ("model.dan.partition_weight", m.dan.partition_weight >= 0, nonneg, m.dan.partition_weight)],
        "scan_cci": [("model.scan_cci.patch", sc.patch >= 1, "must be >= 1", sc.patch),
                     ("model.scan_cci.regions", sc.regions >= 1 and math.isqrt(sc.regions) ** 2 == sc.regions,
                      "must be a square number (4 = a 2x2 grid)", sc.regions),
                     ("model.scan_cci.eca_kernel", sc.eca_kernel >= 1 and sc.eca_kernel % 2 == 1,
                      "must be an odd integer >= 1", sc.eca_kernel)],
        "fdrl": [("model.fdrl.num_latent", fd.num_latent >= 1, "must be >= 1", fd.num_latent),
                 ("model.fdrl.latent_dim", fd.latent_dim >= 1, "must be >= 1", fd.latent_dim),
                 ("model.fdrl.mu", 0.0 <= fd.mu <= 1.0, "must lie in [0, 1]", fd.mu),
                 *((f"model.fdrl.{k}", getattr(fd, k) >= 0, nonneg, getattr(fd, k))
                   for k in ("compactness_weight", "balance_weight", "distribution_weight"))],
    }


def _validate_method(cfg: TrainConfig) -> None:
    """``model.method`` and the chosen plug-in's own section; a plug-in brings its own head, so
    Msc must be off."""
    m = cfg.model
    _allowed("model.method", m.method, ["mfer", *METHODS])
    if m.method == "mfer":
        return
    _check("model.msc_fractions", not m.msc_fractions, f"Msc heads are MFER's; model.method={m.method} brings its own "
           "head: set model.msc_fractions=[]", list(m.msc_fractions))
    for key, ok, requirement, value in _method_requirements(m).get(m.method, []):
        _check(key, ok, requirement, value)


def _validate_loss_and_optim(cfg: TrainConfig) -> None:
    lo, o = cfg.loss, cfg.optim
    _allowed("loss.feature", lo.feature, list(FEATURE_LOSSES))
    _check("loss.weight", lo.weight >= 0, "must be >= 0", lo.weight)
    _check("loss.label_smoothing", 0.0 <= lo.label_smoothing < 1.0, "must lie in [0, 1)", lo.label_smoothing)
    _check("optim.lr", o.lr > 0, "must be > 0", o.lr)
    _check("optim.weight_decay", o.weight_decay >= 0, "must be >= 0", o.weight_decay)
    _allowed("optim.scheduler", o.scheduler, list(LR_SCHEDULES))
    _check("optim.gamma", 0.0 < o.gamma <= 1.0, "must lie in (0, 1]", o.gamma)
    _check("optim.grad_clip", o.grad_clip >= 0, "must be >= 0 (0 disables)", o.grad_clip)
    _check("optim.betas", len(o.betas) == 2 and all(0.0 <= b < 1.0 for b in o.betas),
           "needs two AdamW coefficients in [0, 1), e.g. optim.betas=[0.9,0.999]", o.betas)
    _check("optim.warmup_epochs", 0 <= o.warmup_epochs, "must be >= 0 epochs (0 disables warm-up)", o.warmup_epochs)
    _check("optim.min_lr_ratio", 0.0 <= o.min_lr_ratio <= 1.0, "must lie in [0, 1]", o.min_lr_ratio)


def _validate_data(cfg: TrainConfig) -> None:
    d, lo = cfg.data, cfg.loss
    _allowed("data.name", d.name, list(DATASETS))
    _check("data.root", bool(d.root) or d.name == "synthetic",
           f"is required for data.name={d.name}: the dataset folder (layouts in the README, 'Datasets')", d.root)
    _allowed("data.rafdb_images", d.rafdb_images, ["aligned", "original"])
    _allowed("data.ferplus_labels", d.ferplus_labels, list(LABEL_RULES))
    _check("data.ferplus_labels", d.ferplus_labels == "majority" or d.name in VOTE_DATASETS,
           f"is a FERPlus vote rule; data.name={d.name} has one label per image: leave it at majority",
           d.ferplus_labels)
    _check("loss.label_smoothing", d.ferplus_labels != "multi_target" or lo.label_smoothing == 0.0,
           "has no meaning for data.ferplus_labels=multi_target (its loss takes the best of the voted "
           "classes): set loss.label_smoothing=0", lo.label_smoothing)
    _check("data.image_size", d.image_size >= 32, "must be >= 32 pixels (ConvNeXt downsamples 32x)", d.image_size)
    _check("data.val_fraction", 0.0 < d.val_fraction < 1.0, "must lie in (0, 1)", d.val_fraction)
    _check("data.batch_size", d.batch_size >= 1, "must be >= 1", d.batch_size)
    _check("data.eval_batch_size", d.eval_batch_size >= 1, "must be >= 1", d.eval_batch_size)
    for key in ("synthetic_train", "synthetic_test"):
        _check(f"data.{key}", d.name != "synthetic" or getattr(d, key) >= 1, "must be >= 1 images", getattr(d, key))
    _check("data.random_erasing", 0.0 <= d.random_erasing <= 1.0, "is a probability in [0, 1]", d.random_erasing)
    _validate_layout(cfg)


def _validate_layout(cfg: TrainConfig) -> None:
    """Options that only some on-disk layouts have, checked against data.name."""
    d = cfg.data
    if d.class_order is not None:
        _allowed("data.class_order", d.class_order, list(CLASS_ORDERS))
        _check("data.class_order", d.name in CLASS_ORDER_DATASETS, f"says what numeric labels mean, for "
               f"data.name in {list(CLASS_ORDER_DATASETS)}; data.name={d.name} has its own: leave it null", d.class_order)
    _check("data.class_order", d.name != "rafdb_lists" or d.class_order is not None,
           f"is required for data.name=rafdb_lists (label lists are numbered by whoever wrote them): one of "
           f"{list(CLASS_ORDERS)}; APViT's, SCAN-CCI's and DNFER's lists use rafdb_1to7", d.class_order)
    _check("data.crop_face_box", not d.crop_face_box or d.name in FACE_BOX_DATASETS,
           f"needs face boxes in the label file, which only {list(FACE_BOX_DATASETS)} have", d.crop_face_box)


def _validate_trainer(cfg: TrainConfig) -> None:
    t = cfg.trainer
    _check("trainer.epochs", t.epochs >= 1, "must be >= 1", t.epochs)
    _allowed("trainer.amp", t.amp, ["auto", "bf16", "fp16", "off"])
    _allowed("trainer.selection_metric", t.selection_metric, ["val_acc", "val_mean_class_acc", "val_macro_f1"])
    _check("trainer.device", t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:"),
           "use auto, cpu, cuda or cuda:N", t.device)
    _check("trainer.max_steps_per_epoch", t.max_steps_per_epoch >= 0, "must be >= 0 (0 runs whole epochs)",
           t.max_steps_per_epoch)
    _check("trainer.threads", t.threads >= 0, "must be >= 0 (0 keeps torch's default)", t.threads)
    _check("trainer.checkpoint_every", t.checkpoint_every >= 0, "must be >= 0 epochs (0 disables)", t.checkpoint_every)
    _check("trainer.checkpoint_every_s", t.checkpoint_every_s >= 0, "must be >= 0 seconds (0 disables)",
           t.checkpoint_every_s)


def _validate_scheme(cfg: TrainConfig) -> None:
    """``scheme.name`` and the chosen scheme's own section (each scheme states its checks)."""
    _allowed("scheme.name", cfg.scheme.name, list(SCHEMES))
    for key, ok, requirement, value in SCHEMES[cfg.scheme.name].requirements(cfg):
        _check(key, ok, requirement, value)


def validate(cfg: TrainConfig) -> TrainConfig:
    """Fail fast on values that can never work, naming the dotted key and what is allowed."""
    for check in (_validate_model, _validate_method, _validate_loss_and_optim, _validate_data, _validate_trainer,
                  _validate_scheme):
        check(cfg)
    return cfg


def to_train_config(cfg: DictConfig | dict | TrainConfig) -> TrainConfig:
    """A validated TrainConfig from a (Hydra) mapping or a TrainConfig: what every entry point
    (``mfer-train``, a sweep trial, export) turns its configuration into before using it. Backbone
    defaults are resolved (``model.attn_stages=None`` -> the list, ``model.pretrained=default`` -> timm's
    ``arch.tag``), so what a run records is explicit."""
    cfg = validate(cfg if isinstance(cfg, TrainConfig) else merge_config(cfg))
    m = cfg.model
    stages = attention_stages(m.backbone, m.attn_stages, m.attn_variant)
    weights = default_weights(m.backbone) if m.pretrained == DEFAULT_WEIGHTS else m.pretrained
    return dataclasses.replace(cfg, model=dataclasses.replace(m, attn_stages=stages, pretrained=weights))
