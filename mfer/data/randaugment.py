"""RandAugment on uint8 image batches, on the batch's device, every image its own random operations.

Why here and not in a data loader: the trainer keeps the training set as uint8 arrays and augments
on the device (``mfer.data.augment``); consistency-training schemes (DNFER's weak and strong views,
``mfer.schemes.dnfer``) need RandAugment there too, vectorised over the batch instead of a PIL call
per image. The operations, their argument ranges and the cutout that ends every strong view follow
DNFER's released ``algorithm/randaugument.py`` and ``algorithm/transform.py`` (github 1980x/DNFER, after
Cubuk et al., RandAugment, CVPR-W 2020): 14 operations, ``n_ops`` of them drawn per image with
replacement, each applied with probability 0.5 at level ``magnitude`` of 10, a random sign for the
geometric ones. All randomness comes from torch's RNG, which the trainer seeds per epoch, so a
resumed run replays the same views.

Batches are uint8 NHWC in and out (the trainer's layout); the operations themselves work on float
NCHW holding integer values 0..255, rounded back to integers after every operation (our reading:
the released code truncates with ``astype(np.uint8)``; rounding keeps an operation at its neutral
argument exactly the identity under float arithmetic). Pixel constants of the released transforms
are for 224 px images; here they scale with the stored image size (our reading).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

REF_SIZE = 224  # the released transforms resize to 224 px first; their pixel constants are for that size
CROP_BORDER = 4  # transform.py PadandRandomCrop(border=4)
TRANSLATE_PX = 10  # randaugument.py translate_const
CUTOUT_PX = 16  # randaugument.py cutout_func(img, 16, replace_value)
FILL = 128.0  # randaugument.py replace_value: what geometric operations and cutout fill with
MAX_LEVEL = 10  # randaugument.py MAX_LEVEL
# ITU-R 601 luma of RGB, as PIL's convert("L") (our reading: the released color/contrast use these
# weights in BGR order, cv2's, on images it has already turned to RGB).
LUMA = (0.299, 0.587, 0.114)

Op = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x float NCHW, per-image argument (B,)) -> x


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (x * x.new_tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL.ImageEnhance's interpolation: factor 0 gives ``degenerate``, 1 the image, >1 extrapolates."""
    return degenerate + _per_image(factor) * (x - degenerate)


def sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the 3x3 smoothed image [[1,1,1],[1,5,1],[1,1,1]]/13 inside the 1 px border, which
    stays as it was (read from the released code: randaugument.py sharpness_func)."""
    kernel = x.new_ones(3, 3)
    kernel[1, 1] = 5
    kernel = (kernel / 13).expand(x.shape[1], 1, 3, 3)
    smooth = F.conv2d(x, kernel, groups=x.shape[1])
    inner = x[..., 1:-1, 1:-1]
    return x + F.pad(_blend(smooth, inner, factor) - inner, (1, 1, 1, 1))


def autocontrast(x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    """Each channel stretched to 0..255 from its min..max; a flat channel unchanged (PIL's, cutoff 0)."""
    lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    stretched = (x - lo) * (255.0 / (hi - lo).clamp_min(1.0))
    return torch.where(hi > lo, stretched, x)


def equalize(x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    """PIL.ImageOps.equalize per channel: lut[i] = (step//2 + Σ_{j<i} hist[j]) // step with
    step = (pixels − count of the top value) // 255; unchanged where step is 0 (read from the released
    code: randaugument.py equalize_func), all channels of the batch at once by one scatter."""
    b, c, h, w = x.shape
    flat = x.reshape(b * c, h * w).long()
    hist = x.new_zeros(b * c, 256).scatter_add_(1, flat, x.new_ones(b * c, h * w))
    top_count = hist.gather(1, flat.amax(1, keepdim=True))
    step = torch.div(h * w - top_count, 255, rounding_mode="floor")
    cum = torch.cumsum(torch.cat([torch.div(step, 2, rounding_mode="floor"), hist[:, :-1]], 1), 1)
    lut = torch.div(cum, step.clamp_min(1), rounding_mode="floor").clamp(0, 255)
    return torch.where(step > 0, lut.gather(1, flat), flat.to(x.dtype)).view(b, c, h, w)


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top ``bits`` bits of every value (PIL's; randaugument.py posterize_func)."""
    q = _per_image(2.0 ** (8 - bits))
    return torch.floor(x / q) * q


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Values at or above ``threshold`` inverted, 255 − v (randaugument.py solarize_func)."""
    return torch.where(x < _per_image(threshold), x, 255.0 - x)


# The operations that act on pixel values, by the released names (randaugument.py func_dict).
POINT_OPS: dict[str, Op] = {
    "identity": lambda x, _: x,
    "autocontrast": autocontrast,
    "equalize": equalize,
    "solarize": solarize,
    "color": lambda x, f: _blend(_gray(x), x, f),
    "contrast": lambda x, f: _blend(_gray(x).mean((2, 3), keepdim=True), x, f),
    "brightness": lambda x, f: _blend(torch.zeros_like(x), x, f),
    "sharpness": sharpness,
    "posterize": posterize,
}
# The operations that move pixels: one affine warp per image (rotate about the centre, shear, translate).
GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
OP_NAMES = (*POINT_OPS, *GEOMETRIC_OPS)  # drawn uniformly, as np.random.choice over func_dict


def op_argument(name: str, level: float, sign: torch.Tensor, size: int) -> torch.Tensor:
    """The per-image argument of operation ``name`` at ``level`` (0..MAX_LEVEL), ``sign`` ±1 per image,
    on ``size`` px images (read from the released code: randaugument.py arg_dict; pixels scaled
    from 224 px, our reading). The enhance factor is (level/10)·1.8 + 0.1; at the released M = 10
    solarize's threshold is 256, so solarize leaves the image as it was, as there."""
    frac = level / MAX_LEVEL
    if name in ("color", "contrast", "brightness", "sharpness"):
        return torch.full_like(sign, frac * 1.8 + 0.1)
    values = {"solarize": float(int(frac * 256)), "posterize": float(int(frac * 4)), "rotate": frac * 30,
              "shear_x": frac * 0.3, "shear_y": frac * 0.3, "translate_x": frac * TRANSLATE_PX * size / REF_SIZE,
              "translate_y": frac * TRANSLATE_PX * size / REF_SIZE}
    value = values.get(name, 0.0)
    return sign * value if name in GEOMETRIC_OPS else torch.full_like(sign, value)


def warp(x: torch.Tensor, rotate: torch.Tensor, shear_x: torch.Tensor, shear_y: torch.Tensor,
         translate_x: torch.Tensor, translate_y: torch.Tensor) -> torch.Tensor:
    """One bilinear affine warp per image, areas from outside filled with FILL. Per image (B,):
    rotation in degrees about the centre, shears as factors, translations in pixels; all zero is
    the identity. Shears are about the centre (our reading: cv2.warpAffine in the released code
    shears about the top-left corner, which also shifts the image by up to 0.3 of its height)."""
    b, _, h, w = x.shape
    rad = torch.deg2rad(rotate)
    cos, sin = torch.cos(rad), torch.sin(rad)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    one, zero = torch.ones_like(rotate), torch.zeros_like(rotate)
    shx = torch.stack([torch.stack([one, shear_x], -1), torch.stack([zero, one], -1)], -2)
    shy = torch.stack([torch.stack([one, zero], -1), torch.stack([shear_y, one], -1)], -2)
    a = rot @ shx @ shy  # output pixel -> source pixel, in pixels about the centre
    half = x.new_tensor([w / 2, h / 2])
    theta = torch.cat([a * half.view(1, 1, 2) / half.view(1, 2, 1),
                       (torch.stack([translate_x, translate_y], -1) / half).unsqueeze(-1)], -1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - FILL, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + FILL


def augment_round(x: torch.Tensor, choice: torch.Tensor, sign: torch.Tensor, level: float) -> torch.Tensor:
    """Image i gets operation ``OP_NAMES[choice[i]]`` (none where choice is −1). Every point operation
    runs on the whole batch and is kept where chosen (no host sync, no per-image loop); the
    geometric ones share one warp."""
    h, w = x.shape[-2:]
    out, geometric = x, {}
    for k, name in enumerate(OP_NAMES):
        arg = op_argument(name, level, sign, w if name.endswith("_x") else h)
        chosen = choice == k
        if name in POINT_OPS:
            out = torch.where(_per_image(chosen), POINT_OPS[name](x, arg), out)
        else:
            geometric[name] = torch.where(chosen, arg, torch.zeros_like(arg))
    moved = _per_image(choice >= len(POINT_OPS))
    return torch.where(moved, warp(x, **geometric), out).round().clamp(0, 255)


def rand_augment(x_u8: torch.Tensor, n_ops: int = 2, magnitude: float = 10, prob: float = 0.5) -> torch.Tensor:
    """uint8 NHWC -> uint8 NHWC: ``n_ops`` rounds, in each every image draws one of the 14 operations
    and applies it with probability ``prob``, geometric ones with a random sign (read from the
    released code: randaugument.py RandomAugment(N=2, M=10), without its final cutout: ``cutout``)."""
    x = x_u8.permute(0, 3, 1, 2).float()
    b, dev = x.shape[0], x.device
    for _ in range(n_ops):
        choice = torch.randint(0, len(OP_NAMES), (b,), device=dev)
        choice = torch.where(torch.rand(b, device=dev) < prob, choice, torch.full_like(choice, -1))
        sign = torch.where(torch.rand(b, device=dev) < 0.5, -1.0, 1.0)
        x = augment_round(x, choice, sign, magnitude)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Indices past either edge mirrored back without repeating the edge (numpy's mode='reflect')."""
    i = i.abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def pad_crop(x_u8: torch.Tensor, border: int = CROP_BORDER) -> torch.Tensor:
    """Reflect-pad every image by ``border`` px at 224 (scaled to the stored size) and crop it back at
    a random offset per image (read from the released code: transform.py PadandRandomCrop, whose
    offsets are randint(0, 2·border), so shifts of −border..border−1)."""
    b, h, w, _ = x_u8.shape
    px = round(border * h / REF_SIZE)
    if px == 0:
        return x_u8
    dev = x_u8.device
    dy, dx = (torch.randint(0, 2 * px, (2, b), device=dev) - px).unbind(0)
    rows = _reflect(torch.arange(h, device=dev) + dy.unsqueeze(1), h)
    cols = _reflect(torch.arange(w, device=dev) + dx.unsqueeze(1), w)
    return x_u8[torch.arange(b, device=dev).view(b, 1, 1), rows.unsqueeze(2), cols.unsqueeze(1)]


def cutout(x_u8: torch.Tensor, size: int = CUTOUT_PX) -> torch.Tensor:
    """One FILL square of ``size`` px at 224 (scaled) per image, its centre uniform over the image and
    clipped at the edges (read from the released code: randaugument.py cutout_func, which ends every
    RandomAugment call)."""
    b, h, w, _ = x_u8.shape
    half = max(1, math.floor(size * h / REF_SIZE / 2))
    dev = x_u8.device
    cy = (torch.rand(b, device=dev) * h).floor().view(b, 1, 1)
    cx = (torch.rand(b, device=dev) * w).floor().view(b, 1, 1)
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    box = (rows >= cy - half) & (rows < cy + half) & (cols >= cx - half) & (cols < cx + half)
    return torch.where(box.unsqueeze(-1), torch.full_like(x_u8, int(FILL)), x_u8)
