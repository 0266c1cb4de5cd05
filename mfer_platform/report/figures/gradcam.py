"""Grad-CAM (Selvaraju et al., ICCV 2017) maps of an MFER model, overlaid on the faces it saw.

The maps come from the maintained ``grad-cam`` package (``pytorch_grad_cam``), not from
hand-written hooks. They are taken at the output of every DS attention block and of the last
backbone stage (its own output, before any attention after it), in forward order, so one can see
what each attention block changes. Which module is "the last stage" is the backbone's feature
contract's answer (``FeatureContract.cam_target``): on a ViT the last block's input tokens,
reshaped to the patch grid. The class explained is the model's *prediction* (the summed logits
of all Msc heads, what MFER predicts with), so a misclassified face shows the evidence for the
wrong class.

A map has the resolution of its layer (7x7 at stage 4 of a 224 px input; 1x1 for a 32 px
smoke-test model, whose last-stage maps are therefore flat) and is resized to the face it is
drawn on, whatever that face's size.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from tqdm import tqdm

from mfer.data.arrays import ArraySplit
from mfer.data.augment import to_model_input
from mfer.data.decode import UnreadableImage, display_name, read_image, square_pixels
from mfer_platform.report.figures.features import TrialModel

MIN_CELL = 112  # px: grid cells of small (smoke-test) faces are enlarged to this to stay readable
_LABEL_WIDTH = 90


class CamLayer(NamedTuple):
    title: str
    module: torch.nn.Module
    reshape: Optional[Callable[[torch.Tensor], torch.Tensor]] = None  # tokens -> (B, C, H, W), on a ViT


def cam_layers(model: torch.nn.Module) -> dict[str, CamLayer]:
    """{slug: layer} in forward order: ``attn3`` (the attention block after stage 3), ``stage4`` (the
    last stage), ``attn4``; a model without attention (``attn_variant=none``) has the last stage only."""
    stages = model.contract.stages
    arch = type(model.backbone).__name__
    layers = {}
    for i, stage in enumerate(stages, start=1):
        if i == len(stages):
            module, reshape = model.contract.cam_target()
            # The tap before the attention block: a hook on the stage itself would see the attended map.
            module = model.stage_out[str(i)] if str(i) in model.stage_out else module
            layers[stage.name] = CamLayer(f"last {arch} stage ({i})", module, reshape)
        if str(i) in model.attn:
            layers[f"attn{i}"] = CamLayer(f"attention block after stage {i}", model.attn[str(i)])
    return layers


@dataclass
class Cams:
    maps: dict[str, np.ndarray]  # layer slug -> (N, S, S) float32 in [0, 1] at the model's input size S
    predicted: np.ndarray  # (N,) class the maps explain


def grad_cams(tm: TrialModel, pixels: np.ndarray, batch_size: int = 32) -> Cams:
    """Grad-CAM of every target layer for (N, S, S, 3) uint8 faces at the model's input size."""
    x = to_model_input(torch.tensor(pixels, device=tm.device), tm.image_size, channels_last=False)
    with torch.no_grad():
        predicted = torch.cat([tm.model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    targets = [ClassifierOutputTarget(int(c)) for c in predicted]
    maps = {}
    for slug, layer in cam_layers(tm.model).items():
        with GradCAM(model=tm.model, target_layers=[layer.module], reshape_transform=layer.reshape) as cam:
            maps[slug] = np.concatenate([cam(input_tensor=x[i:i + batch_size], targets=targets[i:i + batch_size])
                                         for i in range(0, len(x), batch_size)])
    return Cams(maps, predicted.cpu().numpy())


def overlay(face: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """The map resized (bilinear) to the (H, W, 3) uint8 face and drawn over it, as uint8 RGB."""
    h, w = face.shape[:2]
    mask = np.asarray(Image.fromarray(cam.astype(np.float32)).resize((w, h), Image.Resampling.BILINEAR))
    return show_cam_on_image(face.astype(np.float32) / 255, np.clip(mask, 0, 1), use_rgb=True)


# ---------------------------------------------------------------- image files
@dataclass
class CamFiles:
    written: dict[str, dict[str, Path]] = field(default_factory=dict)  # input path -> {layer slug: PNG}
    predicted: dict[str, str] = field(default_factory=dict)  # input path -> predicted class
    skipped: dict[str, str] = field(default_factory=dict)  # input path -> why it was not read


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    """File stems, numbered where two inputs share one (``face``, ``face-2``)."""
    seen: Counter[str] = Counter()
    out = []
    for p in paths:
        seen[p.stem] += 1
        out.append(p.stem if seen[p.stem] == 1 else f"{p.stem}-{seen[p.stem]}")
    return out


def gradcam_files(tm: TrialModel, paths: Sequence[Path], out_dir: str | Path, batch_size: int = 32) -> CamFiles:
    """For every image file, one PNG per target layer, ``{stem}.{layer}.png``, at the image's own size.

    Images are decoded and resized to the model's input exactly as ``mfer-predict`` does; the map is
    drawn on the image as given (pass aligned faces: the model was trained on them)."""
    out, result = Path(out_dir), CamFiles()
    out.mkdir(parents=True, exist_ok=True)
    stems = _unique_stems(paths)
    for lo in tqdm(range(0, len(paths), batch_size), desc="Grad-CAM on images", unit="batch"):
        images, names = [], []
        for path, stem in zip(paths[lo:lo + batch_size], stems[lo:lo + batch_size]):
            try:
                images.append(read_image(path)[0])
                names.append((display_name(str(path)), stem))
            except UnreadableImage as e:
                result.skipped[display_name(str(path))] = str(e)
        if not images:
            continue
        cams = grad_cams(tm, np.stack([square_pixels(img, tm.image_size) for img in images]), batch_size)
        for i, (img, (name, stem)) in enumerate(zip(images, names)):
            result.predicted[name] = tm.classes[int(cams.predicted[i])]
            result.written[name] = {}
            for slug, maps in cams.maps.items():
                png = out / f"{stem}.{slug}.png"
                Image.fromarray(overlay(np.asarray(img), maps[i])).save(png)
                result.written[name][slug] = png
    return result


# ---------------------------------------------------------------- per-class grid
def examples_per_class(labels: np.ndarray, per_class: int, seed: int) -> list[np.ndarray]:
    """For each class present, up to ``per_class`` positions of its images, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        out.append(np.sort(rng.choice(idx, size=min(per_class, len(idx)), replace=False)))
    return out


def class_grids(tm: TrialModel, split: ArraySplit, per_class: int, seed: int, out_dir: str | Path,
                batch_size: int = 32) -> dict[str, Path]:
    """One PNG per target layer: a row per class (its name at the left), ``per_class`` faces of the
    split each, Grad-CAM of the predicted class overlaid; a red frame marks a misclassified face."""
    rows = examples_per_class(split.labels, per_class, seed)
    index = np.concatenate(rows)
    faces = split.take(index)
    cams = grad_cams(tm, faces, batch_size)
    size = faces.shape[1]
    cell = max(size, MIN_CELL)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for slug, maps in tqdm(cams.maps.items(), desc="Grad-CAM grids", unit="layer"):
        grid = Image.new("RGB", (_LABEL_WIDTH + cell * per_class, cell * len(rows)), "white")
        draw = ImageDraw.Draw(grid)
        pos = 0
        for r, members in enumerate(rows):
            label = int(split.labels[members[0]])
            draw.text((4, r * cell + cell // 2 - 6), tm.classes[label], fill="black")
            for c in range(len(members)):
                tile = Image.fromarray(overlay(faces[pos], maps[pos])).resize((cell, cell), Image.Resampling.BICUBIC)
                x, y = _LABEL_WIDTH + c * cell, r * cell
                grid.paste(tile, (x, y))
                if cams.predicted[pos] != label:
                    draw.rectangle((x, y, x + cell - 1, y + cell - 1), outline="red", width=3)
                pos += 1
        written[slug] = out / f"{slug}.png"
        grid.save(written[slug])
    return written
