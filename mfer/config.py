"""Typed configuration of one MFER training run: the schema, and nothing that needs torch.

Every field is addressable by its dotted path (``model.attn_variant``, ``loss.weight``…):
the Hydra CLI (``mfer-train key=value``) and the sweep platform's search spaces use the same
paths, so a sweep can vary exactly what a user can set by hand and nothing else. ``TrainConfig``
is also the Hydra structured schema the YAML groups in ``mfer/conf`` start from
(``mfer/conf/__init__.py``), so its defaults are written once, here.

This module is a leaf: the registries of swappable parts (datasets, losses, schedules…) import
it for their config types, so it imports none of them. Checking values against those registries
is ``mfer.validation``'s job.
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
class SEConfig:
    """ViT+SE's squeeze-excitation gate on the final feature map (mfer/model/methods/se.py)."""

    reduction: int = 16  # hidden width = channels // reduction (Hu et al., CVPR 2018: r = 16)


@dataclass
class DANConfig:
    """DAN's cross-attention heads and its two losses' weights (mfer/model/methods/dan.py)."""

    num_heads: int = 4  # DAN's released default (yaoing/DAN rafdb.py --num_head 4)
    affinity_weight: float = 1.0  # released training: CE + 1·affinity + 1·partition
    partition_weight: float = 1.0


@dataclass
class SCANConfig:
    """SCAN-CCI's local-patch attention and complementary region branch (mfer/model/methods/scan_cci.py)."""

    patch: int = 2  # side of a local patch on the final map (SCAN-CCI: 6 on a 28x28 map)
    regions: int = 4  # CCI branch: non-overlapping regions, a square number (SCAN-CCI: 4 = 2x2)
    eca_kernel: int = 5  # ECA's 1-D conv kernel (SCAN-CCI: 5)


@dataclass
class FDRLConfig:
    """FDRL's decomposition into latent features and their three losses (mfer/model/methods/fdrl.py)."""

    num_latent: int = 9  # M latent features (our reading of Ruan et al., CVPR 2021)
    latent_dim: int = 128
    mu: float = 0.5  # weight of the intra-aware vs the inter-aware feature in the reconstruction
    compactness_weight: float = 1.0
    balance_weight: float = 1.0
    distribution_weight: float = 1.0


@dataclass
class ModelConfig:
    """Backbone, DS attention and classifier head (spec §1)."""

    # Any timm model with feature_info and forward_intermediates: convnext_*, resnet18/50, vit_* (built
    # at data.image_size), ... (mfer/model/backbone.py's feature contract).
    backbone: str = "convnext_atto"
    # ImageNet weights by timm name, ``arch`` or ``arch.tag`` (convnext_base.fb_in22k_ft_in1k), read from
    # the Hugging Face hub cache ($HF_HOME) and downloaded into it only on a miss (mfer/model/hub.py);
    # ``default``: timm's default weights of model.backbone (a sweep over backbones), recorded as arch.tag.
    pretrained: Optional[str] = None
    # Local pretrained weights (timm/Meta/MFER/FAER-style state dict, .pth/.safetensors); never downloaded.
    pretrained_file: Optional[str] = None
    drop_path_rate: float = 0.1
    # DS attention: none | global (dynamic K only) | local (static conv Q only) | ds (both).
    attn_variant: str = "ds"
    # Backbone stages (1-based, as in the paper) after whose last block one attention block sits;
    # None: the backbone's default, [3, 4] on a hierarchical one (ConvNeXt, ResNet), [] on a ViT
    # (resolved by mfer.validation.to_train_config, so a run's recorded config holds the list).
    attn_stages: Optional[list[int]] = None
    attn_kernel: int = 7
    # Groups of the static-local conv; 0 means depthwise (groups = channels).
    attn_groups: int = 1
    # Dynamic-K gate: "input" (MFER: MLP(X) * X) or "pooled" (FAER: MLP(X) * AvgPool(X)).
    attn_k_gate: str = "input"
    # Msc nested channel prefixes as fractions of the final width; [] = one plain linear head.
    msc_fractions: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0])
    # The head on the final feature map: mfer (Msc heads above) or a method plug-in of
    # mfer.model.methods.METHODS (baseline, se, dan, scan_cci, fdrl), each with its section below.
    method: str = "mfer"
    se: SEConfig = field(default_factory=SEConfig)
    dan: DANConfig = field(default_factory=DANConfig)
    scan_cci: SCANConfig = field(default_factory=SCANConfig)
    fdrl: FDRLConfig = field(default_factory=FDRLConfig)


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
    # A key of mfer.schedule.LR_SCHEDULES: exponential | cosine (linear warm-up, then cosine).
    scheduler: str = "exponential"
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
    # What the numbers of numeric class folders and per-split label lists mean, stated, never guessed:
    # a key of mfer.data.classes.CLASS_ORDERS naming the order and its first number (rafdb_1to7, ...).
    class_order: Optional[str] = None
    # AffectNet CSV release only: crop each image to the CSV's face_x/face_y/face_width/face_height box
    # while packing (the raw photos); off for the released face crops. Part of the cache key.
    crop_face_box: bool = False
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
    # Resumable checkpoints are written when either interval is due (0 disables that one), after
    # the last epoch, and at the epochs ``fit(checkpoint_epochs=...)`` names (PBT / HyperBand
    # boundaries); metrics are reported every epoch regardless.
    checkpoint_every: int = 0  # epochs
    checkpoint_every_s: float = 900.0  # wall-clock seconds since the last checkpoint (or the start)
    compile: bool = False  # torch.compile the training forward (evaluation stays eager)


@dataclass
class AdaDFConfig:
    """Ada-DF's settings (mfer/schemes/ada_df.py); defaults are the released code's RAF-DB command
    (taylor-xy0827/Ada-DF README: --threshold 0.7 --beta 3 --max_weight 1.0 --min_weight 0.2; AffectNet-7
    used threshold 0.5, beta 5)."""

    threshold: float = 0.7  # a class's mean own-class probability needed to replace its distribution
    beta: int = 3  # warm-up epochs of the CE/KL weights exp(-(1-e/beta)^2)
    min_weight: float = 0.2  # the fusion weights are min-max rescaled to [min_weight, max_weight]
    max_weight: float = 1.0
    tops: float = 0.7  # fraction of the batch in the high-attention group of the rank regularisation
    margin: float = 0.07  # the rank regularisation's margin between the two groups' mean attention
    label_smoothing: float = 0.0  # of the auxiliary branch's CE


@dataclass
class MAFERConfig:
    """MAFER's two steps as phases of one run (mfer/schemes/mafer.py; Massoli et al., arXiv 2105.02481)."""

    # Epochs of step 1, multi-resolution training; the rest of the run is step 2, the fixed-resolution
    # fine-tune. None: half the run (trainer.epochs // 2), so a study keeps its split at any length.
    multires_epochs: Optional[int] = None
    # LR multiplier from the switch on (our reading: the released fine-tune, main_fer_rafdb.py, trains the
    # backbone at lr 1e-4, a small step from the model step 1 made; here one factor on the LR schedule).
    finetune_lr_factor: float = 0.1
    # Low-resolution evaluation: accuracy with the images bilinearly down to r x r and back up, per r.
    eval_resolutions: list[int] = field(default_factory=lambda: [16, 32])


@dataclass
class DNFERConfig:
    """DNFER's settings (mfer/schemes/dnfer.py); defaults are the released code's (github 1980x/DNFER
    main_rafdb.py: --warmup_epochs 5, --alpha 0.5, RandomAugment(2, 10))."""

    warmup_epochs: int = 5  # epochs of plain supervised training on both views, before any selection
    alpha: float = 0.5  # loss = (1 - alpha)·supervised on the selected samples + alpha·consistency
    n_ops: int = 2  # RandAugment operations drawn per image of the strong view
    magnitude: float = 10.0  # their level, 0..10
    # Thresholds thr ← momentum·thr + (1 − momentum)·(the batch's mean posteriors). 0 is the released
    # rule, the current batch's means alone; > 0 smooths them over batches (our extension).
    momentum: float = 0.0


@dataclass
class SchemeConfig:
    """How the run trains (mfer/schemes/): ``name`` is a key of ``mfer.schemes.SCHEMES``
    (standard: plain supervised training), and each scheme reads its own section below."""

    name: str = "standard"
    mafer: MAFERConfig = field(default_factory=MAFERConfig)
    ada_df: AdaDFConfig = field(default_factory=AdaDFConfig)
    dnfer: DNFERConfig = field(default_factory=DNFERConfig)


@dataclass
class TrainConfig:
    """One training run: the six config groups of ``mfer/conf``, one dataclass each."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    scheme: SchemeConfig = field(default_factory=SchemeConfig)


def merge_config(mapping: DictConfig | dict) -> TrainConfig:
    """Merge a (Hydra) mapping onto the typed schema; unknown keys and wrong types fail here.

    Schema only: whether a name exists in a registry is ``mfer.validation``'s question.
    """
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), mapping)
    except Exception as e:  # omegaconf names the full key in its message
        raise ConfigError(f"invalid configuration: {e}") from None
    return OmegaConf.to_object(merged)


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
