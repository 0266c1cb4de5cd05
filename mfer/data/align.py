"""MTCNN face detection + five-point similarity alignment, the preprocessing MFER's paper uses.

facenet-pytorch's MTCNN (weights ship in its wheel, so it runs offline) gives each face a box
and five landmarks (eyes, nose, mouth corners). The crop is the similarity transform (rotation,
scale, shift; least squares, Umeyama 1991) that puts those landmarks on a fixed template,
widened by ``margin`` — so every crop has level eyes at the same place, like RAF-DB's aligned
set. Images without a face fall back to a centre crop, and say so (``found=False``).

MTCNN's sharp edges are handled here, once: it batches only equal-sized images (images are
grouped by size); numpy input needs cv2, absent here (PIL images are passed); and its
``select_boxes`` turns a batch that mixes face and no-face images into a ragged array
(``ValueError ... inhomogeneous shape``), so ``detect`` is called directly and the face is
picked here (the largest, MTCNN's own default). Detection runs on a copy downscaled to
``detect_max_side`` (cost grows with pixels, not with faces this large); the crop is cut from
the full-resolution original.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageOps

# Five-point template of a 112x112 aligned face (insightface/ArcFace): left eye, right eye,
# nose tip, left and right mouth corner, in pixels.
TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]])


@dataclass
class AlignSettings:
    image_size: int = 224  # side of the square output crop
    margin: float = 0.25  # extra context around the template face, as a fraction of its size
    batch_size: int = 16  # images per MTCNN call (equal sizes only)
    detect_max_side: int = 640  # detection runs on a copy at most this long; 0 = full resolution
    min_face_size: int = 40  # smallest face MTCNN searches for, in detection-copy pixels
    thresholds: list[float] = field(default_factory=lambda: [0.6, 0.7, 0.7])  # P-, R-, O-net


@dataclass
class AlignedFace:
    image: Image.Image  # (image_size, image_size) RGB
    found: bool  # False: no face detected, ``image`` is the centre crop
    probability: float  # MTCNN's face probability; 0.0 when none was found


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the similarity transform mapping points ``src`` onto ``dst`` (least squares)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    flip = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])  # a rotation, never a reflection
    rot = u @ flip @ vt
    scale = np.trace(np.diag(sigma) @ flip) / s.var(0).sum()
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def template(size: int, margin: float) -> np.ndarray:
    """The landmark template in output pixels: the 112 px one, shrunk by ``1 + margin``, scaled."""
    return ((TEMPLATE_112 - 56.0) / (1.0 + margin) + 56.0) * (size / 112.0)


def warp(img: Image.Image, landmarks: np.ndarray, size: int, margin: float) -> Image.Image:
    """The aligned crop. Large images are first box-reduced by an integer factor, so the bicubic
    warp never skips input pixels (an unfiltered 10x downscale would alias)."""
    out_to_in = similarity(template(size, margin), landmarks)
    step = float(np.sqrt(abs(np.linalg.det(out_to_in[:, :2]))))  # input pixels per output pixel
    factor = max(1, int(step // 2))
    if factor > 1:
        img = img.reduce(factor)
        out_to_in = out_to_in / factor
    return img.transform((size, size), Image.Transform.AFFINE, out_to_in.flatten().tolist(),
                         resample=Image.Resampling.BICUBIC)


def centre_crop(img: Image.Image, size: int) -> Image.Image:
    return ImageOps.fit(img, (size, size), Image.Resampling.BICUBIC)


class FaceAligner:
    """Aligns lists of RGB PIL images of any sizes; the MTCNN nets load once per aligner."""

    def __init__(self, settings: AlignSettings, device: Optional[torch.device] = None) -> None:
        from facenet_pytorch import MTCNN  # installed --no-deps: imported only where alignment is used

        self.settings = settings
        self.mtcnn = MTCNN(keep_all=True, select_largest=True, min_face_size=settings.min_face_size,
                           thresholds=list(settings.thresholds), device=device or torch.device("cpu"))

    def _detection_copy(self, img: Image.Image) -> Image.Image:
        side = self.settings.detect_max_side
        if not side or max(img.size) <= side:
            return img
        scale = side / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        return img.resize(size, Image.Resampling.BILINEAR)

    def _align_batch(self, images: list[Image.Image], copies: list[Image.Image]) -> list[AlignedFace]:
        _, probs, points = self.mtcnn.detect(copies, landmarks=True)
        s, out = self.settings, []
        for img, copy, prob, pts in zip(images, copies, probs, points):
            if pts is None:
                out.append(AlignedFace(centre_crop(img, s.image_size), False, 0.0))
                continue
            to_full = np.array([img.width / copy.width, img.height / copy.height])
            landmarks = np.asarray(pts[0], dtype=np.float64) * to_full  # faces come largest first
            out.append(AlignedFace(warp(img, landmarks, s.image_size, s.margin), True, float(prob[0])))
        return out

    def __call__(self, images: list[Image.Image]) -> list[AlignedFace]:
        """One AlignedFace per input image, in order; images are batched by equal detection size."""
        copies = [self._detection_copy(img) for img in images]
        by_size: dict[tuple[int, int], list[int]] = {}
        results: list[Optional[AlignedFace]] = [None] * len(images)
        for i, copy in enumerate(copies):
            if min(copy.size) < self.mtcnn.min_face_size:  # MTCNN's pyramid is empty: no face can be found
                results[i] = AlignedFace(centre_crop(images[i], self.settings.image_size), False, 0.0)
            else:
                by_size.setdefault(copy.size, []).append(i)
        bs = self.settings.batch_size
        for idx in by_size.values():
            for lo in range(0, len(idx), bs):
                part = idx[lo : lo + bs]
                aligned = self._align_batch([images[i] for i in part], [copies[i] for i in part])
                for i, face in zip(part, aligned):
                    results[i] = face
        return results
