"""Batch augmentation on tensors, on whatever device the batch is on (the GPU when present).

Runs after the uint8 batch reaches the device, so no CPU worker decodes or augments images:
horizontal flip, RandomErasing (per-image rectangles, as torchvision's but vectorised over the
batch), and MAFER's multi-resolution augmentation. All randomness comes from torch's RNG, which
the trainer seeds per epoch, so a resumed run replays the same augmentations.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_model_input(batch_u8: torch.Tensor, size: int, channels_last: bool) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW at ``size`` (ImageNet mean/std, as MFER's train.py)."""
    x = batch_u8.permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def hflip(x: torch.Tensor) -> torch.Tensor:
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def random_erasing(x: torch.Tensor, p: float, scale: tuple[float, float], ratio=(0.3, 3.3)) -> torch.Tensor:
    """Erase one random rectangle per selected image with N(0, 1) noise (torchvision's value='random')."""
    b, _, h, w = x.shape
    dev = x.device
    area = torch.empty(b, device=dev).uniform_(*scale) * h * w
    log_r = torch.empty(b, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    eh = (area * log_r.exp()).sqrt().round().clamp(1, h)
    ew = (area / log_r.exp()).sqrt().round().clamp(1, w)
    top = (torch.rand(b, device=dev) * (h - eh + 1)).floor()
    left = (torch.rand(b, device=dev) * (w - ew + 1)).floor()
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    in_rows = (rows >= top.view(-1, 1, 1)) & (rows < (top + eh).view(-1, 1, 1))
    in_cols = (cols >= left.view(-1, 1, 1)) & (cols < (left + ew).view(-1, 1, 1))
    selected = torch.rand(b, device=dev) < p
    box = (in_rows & in_cols & selected.view(-1, 1, 1)).unsqueeze(1)
    if dev.type == "cuda":  # noise for the whole batch: indexing the selected images would sync the GPU
        return torch.where(box, torch.randn_like(x), x)
    # On the CPU, drawing normals dominates the cost: draw them for the selected images only.
    idx = selected.nonzero().flatten()
    out = x.clone()
    out[idx] = torch.where(box[idx], torch.randn(len(idx), *x.shape[1:], dtype=x.dtype), x[idx])
    return out


def down_up(x: torch.Tensor, res: int) -> torch.Tensor:
    """Bilinear down to ``res`` x ``res`` (antialiased, as PIL's BILINEAR when shrinking) and back to
    the batch's size: MAFER's ``__lower_resolution`` on square images (Massoli et al., arXiv 2105.02481,
    datasets/affwild2.py). Bilinear weights sum to one, so it commutes with the per-channel
    normalisation: applied to the normalised tensor it equals resampling the image, then normalising."""
    small = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(small, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)


def multires(x: torch.Tensor) -> torch.Tensor:
    """MAFER multi-resolution augmentation (Massoli et al., arXiv 2105.02481, ``__lower_resolution``):
    per image res = 2^⌊3 + 5U⌋ ∈ {8,…,128}; bilinear down to res and back; images already at or
    below res are unchanged."""
    b, _, h, w = x.shape
    res = 2 ** torch.floor(3 + 5 * torch.rand(b)).long()
    out = x.clone()
    for r in res.unique().tolist():
        if r >= min(h, w):
            continue
        idx = (res == r).nonzero().flatten().to(x.device)
        out[idx] = down_up(x[idx], r)
    return out


class BatchAugment:
    """The configured train-time augmentation chain."""

    def __init__(self, flip: bool, erasing_p: float, erasing_scale: tuple[float, float], use_multires: bool) -> None:
        self.flip, self.erasing_p, self.erasing_scale, self.use_multires = flip, erasing_p, erasing_scale, use_multires

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_multires:
            x = multires(x)
        if self.flip:
            x = hflip(x)
        if self.erasing_p > 0:
            x = random_erasing(x, self.erasing_p, self.erasing_scale)
        return x
