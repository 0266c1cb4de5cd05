"""Tensor-side augmentations: what they change and what they leave alone."""
import torch

from mfer.data.augment import hflip, multires, random_erasing, to_model_input


def test_random_erasing_touches_only_one_box_in_selected_images():
    torch.manual_seed(0)
    x = torch.zeros(16, 3, 20, 20)
    y = random_erasing(x, p=0.5, scale=(0.05, 0.1))
    changed = (y != 0).any(1)  # (B, H, W)
    touched = changed.flatten(1).any(1)
    assert 0 < touched.sum() < 16
    for img in changed[touched]:
        rows, cols = img.any(1).nonzero().flatten(), img.any(0).nonzero().flatten()
        assert img[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # one filled rectangle
        assert img.sum() <= 0.1 * 400 * 1.5


def test_hflip_flips_about_half_and_preserves_content():
    torch.manual_seed(0)
    x = torch.arange(64 * 3 * 4 * 4, dtype=torch.float32).view(64, 3, 4, 4)
    y = hflip(x)
    flipped = (y == x.flip(-1)).flatten(1).all(1)
    assert 16 < flipped.sum() < 48 and ((y == x).flatten(1).all(1) | flipped).all()


def test_multires_and_model_input_shapes():
    torch.manual_seed(0)
    u8 = torch.randint(0, 255, (4, 48, 48, 3), dtype=torch.uint8)
    x = to_model_input(u8, 64, channels_last=False)
    assert x.shape == (4, 3, 64, 64) and abs(float(x.mean())) < 3
    assert multires(x).shape == x.shape
