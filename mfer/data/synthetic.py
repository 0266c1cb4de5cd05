"""Synthetic FER data: face-like images of the 7 basic expressions, deterministic from a seed.

The label is carried only by facial *geometry* — mouth curvature, opening and width, brow
angle and height, eye opening, mouth asymmetry — drawn around a per-class prototype with
overlapping per-sample jitter, under nuisance variation that carries no label: position,
scale, in-plane rotation, skin and background colour, a lighting gradient, pixel noise and
random occluders. A model must therefore read shapes, not colours; the overlap between
classes keeps it from being trivial (a small ConvNeXt lands near 90 %, not 100 %).

Images are rendered analytically (signed distances + a one-pixel smoothstep) at any size,
vectorised over a chunk of images, and returned as uint8 NHWC arrays — the same packed form
the real-dataset cache uses. ``write_rafdb`` / ``write_imagefolder`` put them on disk in the
official RAF-DB layout or a class-per-folder tree, for demos and adapter tests; ``write_ferplus``
writes FERPlus's two CSVs with simulated crowd votes (``crowd_votes``), so FERPlus's vote rules
can be compared without FERPlus.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mfer.data.classes import BASIC7, FER2013_LABELS, FERPLUS_VOTE_COLUMNS, RAFDB_LABELS
from mfer.data.formats.ferplus import VOTE_COLUMNS

# Geometry per class: eye_open, brow_angle (+ = inner ends raised), brow_height, mouth_curve
# (+ = corners up), mouth_open, mouth_width, mouth_asymmetry. Rows follow BASIC7's order.
_PROTOTYPES = {
    "anger":     (0.40, -0.70, -0.35, -0.25, 0.05, 0.40, 0.0),
    "disgust":   (0.30, -0.35, -0.20, -0.40, 0.15, 0.50, 0.6),
    "fear":      (0.85, 0.55, 0.30, -0.20, 0.40, 0.65, 0.0),
    "happiness": (0.45, 0.00, 0.05, 0.70, 0.25, 0.75, 0.0),
    "neutral":   (0.50, 0.00, 0.00, 0.00, 0.00, 0.50, 0.0),
    "sadness":   (0.35, 0.60, 0.00, -0.55, 0.00, 0.50, 0.0),
    "surprise":  (0.90, 0.05, 0.50, 0.00, 0.85, 0.35, 0.0),
}
# Bump when the rendering changes: it is part of every cache key, so stale packed arrays are not reused.
GENERATOR_VERSION = 2
_JITTER = np.array([0.13, 0.22, 0.15, 0.20, 0.13, 0.12, 0.22])


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that determines the generated images; its repr is the dataset's identity."""

    n: int
    size: int
    seed: int
    difficulty: float = 1.0


def _smooth(signed_dist: np.ndarray, px: float) -> np.ndarray:
    """Coverage in [0, 1] of a shape whose signed distance (negative inside) is given."""
    return np.clip(0.5 - signed_dist / px, 0.0, 1.0)


def _segment_dist(x, y, x0, y0, x1, y1):
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy + 1e-9), 0.0, 1.0)
    return np.hypot(x - (x0 + t * dx), y - (y0 + t * dy))


def _render_chunk(geom: np.ndarray, nuis: dict[str, np.ndarray], size: int) -> np.ndarray:
    n = geom.shape[0]
    col = lambda a: a.reshape(n, 1, 1)  # noqa: E731 - broadcast a per-image scalar over pixels
    eye, b_ang, b_h, m_curve, m_open, m_w, m_asym = (col(geom[:, i]) for i in range(7))
    g = (np.arange(size) + 0.5) / size * 2.0 - 1.0  # pixel centres in [-1, 1]
    gy, gx = np.meshgrid(g, g, indexing="ij")
    # Canonical face coordinates: undo translation, scale and in-plane rotation.
    sx, sy = gx[None] - col(nuis["cx"]), gy[None] - col(nuis["cy"])
    c, s = np.cos(col(nuis["rot"])), np.sin(col(nuis["rot"]))
    scale = col(nuis["scale"])
    x, y = (c * sx + s * sy) / scale, (-s * sx + c * sy) / scale
    px = 2.0 / size / scale * 1.2  # one pixel in canonical units (soft edges)

    face = _smooth((np.hypot(x / 0.72, y / 0.92) - 1.0) * 0.8, px)
    eye_h = 0.04 + 0.16 * np.clip(eye, 0.05, 1.2)
    eyes = np.maximum(
        *(_smooth((np.hypot((x - ex) / 0.17, (y + 0.18) / eye_h) - 1.0) * np.minimum(0.17, eye_h), px) for ex in (-0.3, 0.3))
    )
    brow_y = -0.43 - 0.13 * b_h
    brows = np.maximum(
        *(
            _smooth(_segment_dist(x, y, side * 0.12, brow_y - 0.12 * b_ang, side * 0.48, brow_y + 0.04 * b_ang) - 0.06, px)
            for side in (-1.0, 1.0)
        )
    )
    nose = _smooth(_segment_dist(x, y, 0.0, -0.1, 0.0, 0.18) - 0.025, px) * 0.5
    half_w = 0.16 + 0.22 * np.clip(m_w, 0.0, 1.2)
    u = np.clip(x / half_w, -1.0, 1.0)
    centre_line = 0.5 - 0.28 * m_curve * u**2 + 0.1 * m_asym * u + 0.08 * m_curve
    thickness = 0.045 + 0.16 * np.clip(m_open, 0.0, 1.2) * np.sqrt(np.clip(1.0 - u**2, 0.0, 1.0))
    inside_w = np.abs(x) - half_w
    mouth = _smooth(np.maximum(np.abs(y - centre_line) - thickness, inside_w), px)

    def rgb(name):
        return nuis[name].reshape(n, 1, 1, 3)

    img = rgb("bg") * (1.0 + 0.25 * (gx[None] * col(nuis["bg_grad"])))[..., None]
    img = img * (1 - face[..., None]) + rgb("skin") * face[..., None]
    dark = rgb("ink")
    for part in (nose, brows, eyes, mouth):
        img = img * (1 - part[..., None]) + dark * part[..., None]
    light = 1.0 + col(nuis["light"]) * (c * gx[None] + s * gy[None])
    img = img * light[..., None]
    # Occluders: an axis-aligned box of random colour, present in a share of images.
    ox0, oy0, ow, oh = (col(nuis["occ"][:, i]) for i in range(4))
    occ = (gx[None] > ox0) & (gx[None] < ox0 + ow) & (gy[None] > oy0) & (gy[None] < oy0 + oh)
    occ &= col(nuis["occ_on"]).astype(bool)
    img = np.where(occ[..., None], rgb("occ_rgb"), img)
    img = img + nuis["noise"]
    return np.clip(img * 255.0, 0, 255).astype(np.uint8)


def _sample(spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(spec.seed)
    n, k = spec.n, len(BASIC7)
    labels = np.arange(n) % k  # exactly balanced, then shuffled
    rng.shuffle(labels)
    protos = np.array([_PROTOTYPES[c] for c in BASIC7])
    d = spec.difficulty
    geom = protos[labels] + rng.normal(size=(n, 7)) * _JITTER * d
    skin_base = rng.uniform(0.3, 0.95, size=(n, 1))
    nuis = {
        "cx": rng.uniform(-0.12, 0.12, n) * d, "cy": rng.uniform(-0.1, 0.1, n) * d,
        "rot": rng.normal(0, 0.18, n) * d, "scale": rng.uniform(0.78, 1.0, n),
        "bg": rng.uniform(0.0, 1.0, (n, 3)), "bg_grad": rng.normal(0, 1, n),
        "skin": np.clip(skin_base * np.array([1.0, 0.82, 0.68]) + rng.normal(0, 0.05, (n, 3)), 0, 1),
        "ink": rng.uniform(0.0, 0.1, (n, 3)),
        "light": rng.normal(0, 0.25, n) * d,
        "occ": np.column_stack([rng.uniform(-1, 0.7, n), rng.uniform(-1, 0.7, n), rng.uniform(0.1, 0.45, (n, 2))]),
        "occ_on": rng.random(n) < 0.25 * d, "occ_rgb": rng.uniform(0, 1, (n, 3)),
        "noise_seed": rng.integers(0, 2**31, n),
    }
    return geom, labels.astype(np.int64), nuis


def generate(spec: SyntheticSpec, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, size, size, 3), labels int64 in BASIC7 order), deterministic in ``spec``."""
    geom, labels, nuis = _sample(spec)
    images = np.empty((spec.n, spec.size, spec.size, 3), dtype=np.uint8)
    for lo in range(0, spec.n, chunk):
        sl = slice(lo, lo + chunk)
        part = {k: v[sl] for k, v in nuis.items() if k != "noise_seed"}
        noise_rng = np.random.default_rng(nuis["noise_seed"][sl])
        part["noise"] = noise_rng.normal(0, 0.03 * spec.difficulty, (len(geom[sl]), spec.size, spec.size, 3))
        images[sl] = _render_chunk(geom[sl], part, spec.size)
    return images, labels


def write_imagefolder(root: Path, images: np.ndarray, labels: np.ndarray, split: str) -> list[Path]:
    """``root/split/<class name>/<split>_<i>.png`` — the plain class-per-folder layout."""
    from PIL import Image

    paths = []
    for i, (img, y) in enumerate(zip(images, labels)):
        p = Path(root) / split / BASIC7[y] / f"{split}_{i:05d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths


def write_rafdb(root: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> Path:
    """The official RAF-DB basic layout: ``EmoLabel/list_patition_label.txt`` + ``Image/aligned``."""
    from PIL import Image

    to_raf = {name: code for code, name in RAFDB_LABELS.items()}
    root = Path(root)
    (root / "Image" / "aligned").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    lines = []
    for split, (imgs, ys), digits in (("train", train, 5), ("test", test, 4)):
        for i, (img, y) in enumerate(zip(imgs, ys), start=1):
            name = f"{split}_{i:0{digits}d}.jpg"
            Image.fromarray(img).save(root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg"), quality=95)
            lines.append(f"{name} {to_raf[BASIC7[y]]}")
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


def crowd_votes(spec: SyntheticSpec, annotators: int = 10, spread: float = 3.0, lapse: float = 0.02) -> np.ndarray:
    """(N, 8) vote counts per generated face: the 7 classes in BASIC7 order, then "unknown".

    Each annotator votes for class k with the posterior of k given the face's geometry under the
    generator's class Gaussians widened ``spread`` times (annotators judge less sharply than the
    generator draws), so a face drawn between two prototypes splits its votes as an ambiguous
    crowd-labelled face does. A vote goes to "unknown" with probability ``lapse``. At the default
    difficulty 0.7 and spread 3 (3,000 faces): the top class holds 78 % of the votes on average, no
    class holds more than half of them for 13 % of faces, and the top class is the one the face was
    drawn from for 97 %.
    """
    geom, _, _ = _sample(spec)
    protos = np.array([_PROTOTYPES[c] for c in BASIC7])
    z = (geom[:, None, :] - protos[None]) / (_JITTER * max(spec.difficulty, 1e-6) * spread)
    log_post = -0.5 * (z**2).sum(-1)
    post = np.exp(log_post - log_post.max(1, keepdims=True))
    post /= post.sum(1, keepdims=True)
    probs = np.concatenate([post * (1 - lapse), np.full((spec.n, 1), lapse)], axis=1)
    return np.random.default_rng([spec.seed, annotators]).multinomial(annotators, probs)


def write_ferplus_csvs(root: Path, usages: list[str], names: list[str], grey: np.ndarray,
                       emotions: list[int], votes: list[list[float]], pixels: list[str] | None = None) -> Path:
    """FERPlus's layout: ``fer2013.csv`` (emotion, 48x48 grey pixels, Usage) and ``fer2013new.csv``
    (Usage, Image name, ten vote counts in FERPlus's column order), one row per face."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "fer2013.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["emotion", "pixels", "Usage"])
        for i, usage in enumerate(usages):
            w.writerow([emotions[i], pixels[i] if pixels and pixels[i] is not None else
                        " ".join(map(str, grey[i].reshape(-1).tolist())), usage])
    with open(root / "fer2013new.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Usage", "Image name", *VOTE_COLUMNS])
        w.writerows([usage, name, *v] for usage, name, v in zip(usages, names, votes))
    return root


def write_ferplus(root: Path, specs: dict[str, SyntheticSpec], annotators: int = 10) -> Path:
    """Synthetic faces with ``crowd_votes`` in FERPlus's layout; ``specs`` maps a FERPlus Usage
    (Training, PublicTest, PrivateTest) to the faces of that split, rendered at 48 px and made grey."""
    fer2013_code = {name: code for code, name in FER2013_LABELS.items()}
    column = {name: i for i, name in enumerate(FERPLUS_VOTE_COLUMNS.values())}  # canonical -> vote column
    unknown = VOTE_COLUMNS.index("unknown")
    usages, names, greys, emotions, votes = [], [], [], [], []
    for usage, spec in specs.items():
        images, labels = generate(SyntheticSpec(spec.n, 48, spec.seed, spec.difficulty))
        crowd = crowd_votes(spec, annotators)
        for img, y, v in zip(images, labels, crowd):
            row = [0] * len(VOTE_COLUMNS)  # the synthetic set has no contempt and no not-a-face votes
            for k, count in enumerate(v[:-1]):
                row[column[BASIC7[k]]] = int(count)
            row[unknown] = int(v[-1])
            names.append(f"fer{len(names):07d}.png")
            usages.append(usage)
            greys.append(img.mean(-1).round().astype(np.uint8))
            emotions.append(fer2013_code[BASIC7[y]])
            votes.append(row)
    return write_ferplus_csvs(root, usages, names, np.stack(greys), emotions, votes)
