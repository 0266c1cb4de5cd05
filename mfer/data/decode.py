"""Decode any image file a dataset may hold into 8-bit RGB, or say exactly why not.

Real datasets contain grey, palette, CMYK, 16-bit and alpha images, EXIF-rotated photos and
broken files (zero bytes, truncated downloads, an HTML page saved as ``.jpg``). The packed
cache and ``mfer-prepare`` both decode through here, so each case is handled once and the same
way: modes are converted to RGB properly (16-bit scaled to 8 bits rather than clipped, alpha
composited on white, EXIF orientation applied), and anything unreadable raises
``UnreadableImage`` with a short ``kind`` and a detail for the report — never a silent drop.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N"}


class UnreadableImage(Exception):
    """A file (or table row) that yields no image; ``kind`` is what the report counts by."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind, self.detail = kind, detail


def is_image_name(name: str) -> bool:
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS


def list_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given (a missing one is reported when read); folders searched recursively for images."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            out += sorted(p for p in item.rglob("*") if p.is_file() and is_image_name(p.name))
        else:
            out.append(item)
    return out


def display_name(path: str) -> str:
    """A path as text that JSON and Parquet accept, even for file names that are not valid UTF-8."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _grey16_to_rgb(img: Image.Image) -> Image.Image:
    """16-bit (or 32-bit integer) grey -> 8-bit: scaled by 1/257, as clipping would turn it white.

    Mode ``I`` does not say its bit depth; values above 255 are taken to be 16-bit."""
    a = np.asarray(img, dtype=np.float64)
    if img.mode in _SIXTEEN_BIT or a.max(initial=0) > 255:
        a = a / 257.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L").convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _SIXTEEN_BIT or mode == "I":
        return _grey16_to_rgb(img)
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        a = a * 255.0 if a.max(initial=0) <= 1.0 else a  # float images in [0, 1] or [0, 255]
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
        canvas.alpha_composite(img.convert("RGBA"))
        return canvas.convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK (Adobe-inverted JPEGs are undone by Pillow), YCbCr


def open_rgb(data: bytes, draft_size: int = 0) -> tuple[Image.Image, str]:
    """(RGB image, original mode) from encoded bytes. ``draft_size`` lets a large JPEG decode at a
    reduced DCT scale that is still at least that size (several times faster, same result after
    the later downscale)."""
    if not data:
        raise UnreadableImage("empty file", "0 bytes: re-download or remove it")
    try:
        img = Image.open(io.BytesIO(data))
        if draft_size and img.format == "JPEG":
            img.draft(img.mode, (draft_size, draft_size))
        img.load()
        mode = img.mode
        return to_rgb(ImageOps.exif_transpose(img)), mode
    except Image.UnidentifiedImageError:
        raise UnreadableImage("not an image",
                              "no image format Pillow reads (wrong extension? an HTML error page?)") from None
    except Exception as e:  # one bad file must never abort a build of 300k: name it in the report instead
        raise UnreadableImage("corrupt or truncated", f"{type(e).__name__}: {e}") from None


def read_image(path: Path, draft_size: int = 0) -> tuple[Image.Image, str, bytes]:
    """(RGB image, original mode, the file's bytes), or ``UnreadableImage`` saying why not."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UnreadableImage("missing file", "not on disk (listed by the label file?)") from None
    except OSError as e:
        raise UnreadableImage("cannot read file", str(e)) from None
    img, mode = open_rgb(data, draft_size)
    return img, mode, data


def square_pixels(img: Image.Image, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the whole image resized (antialiased), as MFER's Resize((s, s)) did."""
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.uint8)
