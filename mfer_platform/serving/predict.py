"""Predict with an exported model: image files in, one result per image out, in input order.

Each image goes through the same steps as a training image: decoded by ``mfer.data.decode``
(EXIF orientation, grey/palette/16-bit/alpha handled as the dataset cache handles them),
optionally MTCNN-aligned by ``mfer.data.align``, resized whole to the model's square input
size (bicubic, as the cache packs images), then ``to_model_input`` (the trainer's scaling and
ImageNet normalisation). A file that cannot be read yields an ``error`` record naming it, and
the other images are still predicted.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch

from mfer.data.decode import UnreadableImage, display_name, read_image, square_pixels
from mfer_platform.serving.export import ExportedModel


@dataclass
class PredictOptions:
    batch_size: int = 32
    align: bool = False  # MTCNN face alignment first (needs facenet-pytorch)


def _aligner(exported: ExportedModel):
    try:
        from mfer.data.align import AlignSettings, FaceAligner

        return FaceAligner(AlignSettings(image_size=exported.image_size), device=exported.device)
    except ImportError as e:
        raise RuntimeError(f"align=true needs facenet-pytorch ({e}); install it with "
                           "`pip install --no-deps facenet-pytorch==2.6.0`") from None


def _predict_batch(exported: ExportedModel, paths: list[Path], aligner) -> list[dict[str, Any]]:
    out: list[Optional[dict[str, Any]]] = [None] * len(paths)
    images, where = [], []
    for i, path in enumerate(paths):
        try:
            # Without alignment, large JPEGs decode at a reduced scale, as the dataset cache does.
            img, _, _ = read_image(path, draft_size=0 if aligner else exported.image_size)
        except UnreadableImage as e:
            out[i] = {"path": display_name(str(path)), "error": str(e)}
            continue
        images.append(img)
        where.append(i)
    extra: list[dict[str, Any]] = [{} for _ in images]
    if aligner is not None and images:
        faces = aligner(images)
        images = [f.image for f in faces]
        extra = [{"face_found": f.found, "face_probability": f.probability} for f in faces]
    if images:
        pixels = torch.from_numpy(np.stack([square_pixels(img, exported.image_size) for img in images]))
        probs = exported.probabilities(pixels)
        for i, p, e in zip(where, probs, extra):
            out[i] = {"path": display_name(str(paths[i])), "label": exported.classes[int(p.argmax())],
                      "probabilities": dict(zip(exported.classes, p.tolist())), **e}
    return out


def predict_files(exported: ExportedModel, paths: Sequence[Path], options: PredictOptions = PredictOptions()
                  ) -> Iterator[dict[str, Any]]:
    """One dict per path, in order: ``{path, label, probabilities}`` or ``{path, error}``."""
    aligner = _aligner(exported) if options.align else None
    for lo in range(0, len(paths), options.batch_size):
        yield from _predict_batch(exported, list(paths[lo : lo + options.batch_size]), aligner)
