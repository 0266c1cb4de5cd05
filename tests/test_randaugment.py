"""Device RandAugment on uint8 batches (mfer/data/randaugment.py): each operation does what its PIL
counterpart does, neutral arguments change nothing, every image draws its own operations, and a
seed replays them."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from mfer.data.randaugment import (FILL, OP_NAMES, POINT_OPS, cutout, pad_crop, posterize, rand_augment,
                                   solarize, warp)


def _batch(n=6, size=24, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8)


def _nchw(x_u8: torch.Tensor) -> torch.Tensor:
    return x_u8.permute(0, 3, 1, 2).float()


NEUTRAL = {"identity": 0.0, "solarize": 256.0, "posterize": 8.0, "color": 1.0, "contrast": 1.0,
           "brightness": 1.0, "sharpness": 1.0}


@pytest.mark.parametrize("name", sorted(NEUTRAL))
def test_a_point_operation_at_its_neutral_argument_is_the_identity(name):
    x = _nchw(_batch())
    out = POINT_OPS[name](x, torch.full((len(x),), NEUTRAL[name])).round()
    assert torch.equal(out, x)


def test_a_warp_with_all_arguments_zero_is_the_identity_and_moves_by_what_it_is_given():
    x = _nchw(_batch())
    zero, one = torch.zeros(len(x)), torch.ones(len(x))
    assert torch.equal(warp(x, zero, zero, zero, zero, zero).round(), x)
    shifted = warp(x, zero, zero, zero, one, zero).round()  # output pixel j reads source pixel j + 1
    assert torch.equal(shifted[..., :-1], x[..., 1:]) and (shifted[..., -1] == FILL).all()
    turned = warp(x, torch.full((len(x),), 90.0), zero, zero, zero, zero).round()
    assert torch.equal(turned, torch.rot90(x, 1, dims=(2, 3))) or torch.equal(turned, torch.rot90(x, -1, dims=(2, 3)))


def test_solarize_and_posterize_give_the_hand_computed_values():
    x = torch.tensor([0.0, 100, 127, 128, 200, 255]).view(1, 1, 1, 6)
    assert solarize(x, torch.tensor([128.0])).flatten().tolist() == [0, 100, 127, 127, 55, 0]
    assert posterize(x, torch.tensor([4.0])).flatten().tolist() == [0, 96, 112, 128, 192, 240]  # multiples of 16
    assert posterize(x, torch.tensor([0.0])).flatten().tolist() == [0] * 6  # the released level 0


@pytest.mark.parametrize("name, pil", [("equalize", ImageOps.equalize), ("autocontrast", ImageOps.autocontrast)])
def test_histogram_operations_match_pil(name, pil):
    x_u8 = _batch(n=3, size=20)
    x_u8[1] = x_u8[1] // 4 + 60  # a narrow range, where both operations act strongly
    out = POINT_OPS[name](_nchw(x_u8), torch.zeros(3)).round().permute(0, 2, 3, 1)
    for img, got in zip(x_u8, out):
        want = np.asarray(pil(Image.fromarray(img.numpy())), dtype=np.float32)
        assert np.abs(got.numpy() - want).max() <= 1  # PIL truncates where we round


def test_every_image_draws_its_own_operations():
    torch.manual_seed(0)
    same = _batch(n=1).expand(32, -1, -1, -1).contiguous()
    out = rand_augment(same, n_ops=2, magnitude=10)
    distinct = {bytes(img.numpy()) for img in out}
    assert len(distinct) >= 8 and any(torch.equal(img, same[0]) for img in out)  # some drew nothing (p 0.25)


def test_the_same_seed_replays_the_same_views_and_no_operation_means_none():
    x = _batch(n=8)
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        runs.append(cutout(rand_augment(pad_crop(x))))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert torch.equal(rand_augment(x, n_ops=0), x) and torch.equal(rand_augment(x, prob=0.0), x)
    assert len(OP_NAMES) == 14  # the released func_dict


def test_pad_crop_shifts_each_image_within_the_border_with_reflected_edges():
    torch.manual_seed(0)
    size = 224  # border 4 px at the released size
    cols = torch.arange(size, dtype=torch.uint8).view(1, 1, size, 1).expand(16, size, size, 1)
    rows = torch.arange(size, dtype=torch.uint8).view(1, size, 1, 1).expand(16, size, size, 1)
    x = torch.cat([cols, rows, torch.zeros_like(cols)], -1).contiguous()
    out = pad_crop(x).long()
    dx, dy = out[:, 100, 100, 0] - 100, out[:, 100, 100, 1] - 100
    assert dx.min() >= -4 and dx.max() <= 3 and dy.min() >= -4 and dy.max() <= 3 and len(set(dx.tolist())) > 2
    assert torch.equal(out[:, 100, 10:200, 0], 10 + dx.view(-1, 1) + torch.arange(190))  # a pure shift inside
    left = dx < 0  # past the left edge: mirrored, column -k reads column k
    assert torch.equal(out[left, 100, 0, 0], -dx[left])


def test_cutout_fills_one_clipped_square_per_image():
    torch.manual_seed(0)
    x = torch.zeros(16, 224, 224, 3, dtype=torch.uint8)
    filled = (cutout(x) == FILL).all(-1)  # (B, H, W)
    for img in filled:
        r, c = img.any(1).nonzero().flatten(), img.any(0).nonzero().flatten()
        assert img[r.min():r.max() + 1, c.min():c.max() + 1].all() and img.sum() == len(r) * len(c)
        assert len(r) <= 16 and len(c) <= 16
    assert (filled.sum((1, 2)) == 256).sum() > 8  # most squares are whole: 16 x 16 at 224 px
