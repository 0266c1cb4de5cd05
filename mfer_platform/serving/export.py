"""Export the sweep's best model as files anyone can load safely, and load them back.

Best is the group with the best *mean validation* metric over seeds, and within it the seed
with the best validation value — never test (fer_pitfalls #2). The export folder holds:

- ``model.safetensors``: the selected epoch's model weights under their plain state-dict names;
- ``config.json``: the full TrainConfig, class names, input size, normalisation, the weights'
  SHA-256 and provenance — everything to rebuild the model without the sweep;
- ``metrics.json``: the group's mean ± std, 95 % CI and n per metric, and the chosen seed's values;
- ``MODEL_CARD.md``: data, selection rule, metrics with CIs and n, provenance.

Loading reads JSON and safetensors only, never a pickle (a pickle can run code). The weights
must match the SHA-256 in ``config.json`` and the model's shapes, or loading stops with an
error saying which. ``config.json`` is removed first and written last, so an interrupted export
never loads.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from mfer.config import TrainConfig, to_dict
from mfer.data.augment import IMAGENET_MEAN, IMAGENET_STD, to_model_input
from mfer.device import resolve_device
from mfer.model import build_model
from mfer.validation import to_train_config
from mfer_platform.keys import COMPARED_METRICS, PRETTY
from mfer_platform.results.checkpoints import CheckpointError, check_state_dict, read_checkpoint
from mfer_platform.results.stats import Comparison, ranked_trials
from mfer_platform.results.summary import whole_sweep
from mfer_platform.results.cells import fmt, metric_cell

log = logging.getLogger(__name__)
FORMAT = "mfer-export/1"
WEIGHTS, CONFIG, METRICS_FILE, CARD = "model.safetensors", "config.json", "metrics.json", "MODEL_CARD.md"


class ExportError(ValueError):
    """An export that cannot be written or loaded safely; the message names the file and why."""


@dataclass
class ExportedModel:
    model: torch.nn.Module  # in eval mode
    classes: list[str]
    image_size: int
    config: dict  # config.json
    device: torch.device

    @torch.no_grad()
    def probabilities(self, images_u8: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB -> (N, classes) softmax of the summed head logits, as training evaluates."""
        x = to_model_input(images_u8.to(self.device), self.image_size, channels_last=False)
        return torch.softmax(self.model(x).float(), dim=1).cpu()


# ---------------------------------------------------------------- loading
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _refuse_non_safetensors(data: bytes, path: Path) -> None:
    """safetensors = 8-byte little-endian header length, then a JSON header."""
    if data[:4] == b"PK\x03\x04" or data[:1] == b"\x80":
        raise ExportError(f"{path} is a pickle (torch.save) file, not safetensors: refusing to load it, "
                          "since unpickling can run arbitrary code. Re-export with mfer-export.")
    if len(data) < 9 or data[8:9] != b"{":
        raise ExportError(f"{path} is not a safetensors file ({len(data)} bytes, no JSON header)")


REQUIRED = {"weights_sha256": str, "train_config": dict, "classes": list, "image_size": int}


def _read_config(cfg_path: Path) -> dict:
    """config.json as a mapping holding every field loading needs, with the types it needs."""
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"{cfg_path} is not valid JSON: {e}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ExportError(f"{cfg_path}: format {config.get('format') if isinstance(config, dict) else None!r}, "
                          f"expected {FORMAT!r}")
    bad = [k for k, kind in REQUIRED.items() if not isinstance(config.get(k), kind)]
    if bad:
        raise ExportError(f"{cfg_path}: missing or mistyped {', '.join(bad)}; re-export with mfer-export")
    return config


def _offline_config(train_config: dict) -> TrainConfig:
    """The export's TrainConfig with its weight sources cleared: the weights are the export's own
    safetensors, and an export (a file anyone may hand over) must not make us open a path or a hub
    name written inside it."""
    model = {**train_config.get("model", {}), "pretrained": None, "pretrained_file": None}
    return to_train_config({**train_config, "model": model})


def load_exported(model_dir: str | Path, device: str = "auto") -> ExportedModel:
    """The exported model, ready to predict; JSON + safetensors only, verified against config.json."""
    d = Path(model_dir)
    cfg_path, w_path = d / CONFIG, d / WEIGHTS
    if not cfg_path.is_file() or not w_path.is_file():
        raise ExportError(f"{d}: not a complete mfer export (needs {CONFIG} and {WEIGHTS}; run mfer-export)")
    config = _read_config(cfg_path)
    data = w_path.read_bytes()
    _refuse_non_safetensors(data, w_path)
    if _sha256(data) != config["weights_sha256"]:
        raise ExportError(f"{w_path} was modified or replaced: its SHA-256 {_sha256(data)[:16]}… differs from "
                          f"{config['weights_sha256'][:16]}… recorded in {CONFIG}; refusing to load it")
    try:
        state = load_safetensors(data)
    except Exception as e:  # safetensors raises its own error type for every malformed header
        raise ExportError(f"{w_path} is a corrupt safetensors file: {e}") from None
    cfg = _offline_config(config["train_config"])
    model = build_model(cfg.model, len(config["classes"]), cfg.data.image_size)
    try:
        check_state_dict(model, state, str(w_path))
    except CheckpointError as e:
        raise ExportError(str(e)) from None
    dev = resolve_device(device, "device")
    return ExportedModel(model.to(dev).eval(), list(config["classes"]), int(config["image_size"]), config, dev)


# ---------------------------------------------------------------- exporting
def _group_metrics(cmp: Comparison) -> dict[str, dict[str, Any]]:
    keep = ("n", "mean", "std", "ci_low", "ci_high", "delta", "delta_ci_low", "delta_ci_high", "test", "p_value", "p_holm")
    out = {}
    for metric in cmp.spec.metrics:
        s = cmp.stat(cmp.best, metric)
        out[metric] = {k: (None if isinstance(s[k], float) and pd.isna(s[k]) else s[k]) for k in keep}
        out[metric]["n"] = int(s["n"])
    return out


def _selection_rule(cmp: Comparison) -> str:
    return (f"group with the best mean {cmp.spec.metric} ({cmp.spec.mode}) over its seeds on the validation split "
            f"carved from train; within it, the seed with the best {cmp.spec.metric}; that trial's "
            f"validation-selected epoch. Test metrics never take part in the selection.")


def _model_card(name: str, cfg: TrainConfig, meta: dict, config: dict, metrics: dict, cmp: Comparison) -> str:
    m, d, p = cfg.model, cfg.data, config["provenance"]
    counts = {k: sum(v) for k, v in meta.get("split_counts", {}).items()}
    trial = metrics["trial"]
    rows = "\n".join(f"| {PRETTY.get(k, k)} | {metric_cell(cmp.stat(cmp.best, k))} | "
                     f"{'–' if trial.get(k) is None else fmt(k, trial[k])} |" for k in cmp.spec.metrics)
    init = (f"`{p['pretrained_file']}` (SHA-256 `{p['pretrained_sha256']}`)" if p["pretrained_file"]
            else "random weights (no pretrained file)")
    synthetic = ("\n- Trained on the built-in **synthetic** FER set: a smoke-test model, not a facial-expression "
                 "recogniser for real faces.") if d.name == "synthetic" else ""
    return f"""# Model card: MFER ({m.backbone}) from sweep `{name}`

## Model
- MFER: timm `{m.backbone}` + DS attention `{m.attn_variant}` at stages {m.attn_stages} (kernel {m.attn_kernel},
  groups {m.attn_groups}, K gate `{m.attn_k_gate}`), Msc heads at fractions {m.msc_fractions}; {meta.get('params', 0):,} parameters.
- Classes ({len(config['classes'])}, in output order): {', '.join(config['classes'])}.
- Input: RGB resized to {config['image_size']}x{config['image_size']} (bicubic), scaled to [0, 1], normalised with
  mean {list(IMAGENET_MEAN)} and std {list(IMAGENET_STD)}; prediction = softmax of the summed head logits.

## Data
- Dataset `{d.name}`{f' at `{d.root}`' if d.root else ''}, {d.image_size}px; fingerprint `{p['dataset_fingerprint']}`.
- Images per split: {', '.join(f'{k} {v}' for k, v in counts.items()) or 'unknown'}; validation carved from train
  (fraction {d.val_fraction}, split seed {d.split_seed}) unless the release ships one.

## Selection
{_selection_rule(cmp)}
Chosen: group `{metrics['group']}` (n={metrics['group_stats'][cmp.spec.metric]['n']} seeds: {metrics['seeds']}),
trial `{trial['trial_id']}` (seed {trial['seed']}, epoch {trial['selected_epoch']}).

## Metrics
Group: mean ± sample std [95% CI, Student t] (n seeds), in % (compactness: a ratio, lower = tighter classes);
"this seed": the exported weights.

| metric | group | this seed (n=1) |
|---|---:|---:|
{rows}

## Provenance
- Experiment `{name}`, trial `{trial['trial_id']}`, checkpoint `{p['checkpoint']}`.
- git commit `{p['git_commit']}`; config hash `{p['config_hash']}`; dataset fingerprint `{p['dataset_fingerprint']}`.
- Weights `{WEIGHTS}` SHA-256 `{config['weights_sha256']}`; initialised from {init}.
- Environment: {json.dumps(p['environment'])}.

## Use
`mfer-predict model_dir=<this folder> inputs=<image or folder>` prints one JSON line per image;
in Python, `mfer_platform.serving.export.load_exported(<folder>)` (safetensors + JSON, never a pickle).

## Limitations
- Accuracy is measured on the splits above only; other datasets, alignments or demographics may differ
  (fer_pitfalls #4: preprocessing mismatches move accuracy by points).{synthetic}
"""


def export_trial(storage_path: str, trial: pd.Series, cmp: Comparison, output_dir: str | Path) -> Path:
    """Write the export of ``trial`` (a trials-table row) to ``output_dir``."""
    ckpt = read_checkpoint(storage_path, trial)
    meta, cfg, pretrained, state = ckpt.meta, ckpt.cfg, ckpt.pretrained_file, ckpt.state

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG).unlink(missing_ok=True)
    blob = save_safetensors(state, metadata={"format": "pt", "mfer_export": FORMAT})
    (out / WEIGHTS).write_bytes(blob)
    config = {
        "format": FORMAT, "classes": list(meta["classes"]), "image_size": cfg.data.image_size,
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "scale": 1 / 255,
                          "resize": "bicubic, whole image to image_size x image_size"},
        "weights_file": WEIGHTS, "weights_sha256": _sha256(blob), "train_config": to_dict(cfg),
        "provenance": {
            "experiment": trial["experiment"], "trial_id": trial["trial_id"], "checkpoint": trial["checkpoint"],
            "git_commit": meta.get("git_commit"), "config_hash": meta.get("config_hash"),
            "dataset_fingerprint": meta.get("dataset_fingerprint"), "pretrained_file": pretrained,
            "pretrained_sha256": meta.get("weights_sha256"), "environment": meta.get("environment"),
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    }
    metrics = {
        "selection": {"rule": _selection_rule(cmp), "metric": cmp.spec.metric, "mode": cmp.spec.mode},
        "group": cmp.best, "seeds": cmp.groups.loc[cmp.groups["is_best"], "seeds"].iloc[0],
        "group_stats": _group_metrics(cmp), "reference": cmp.reference,
        "trial": {"trial_id": trial["trial_id"], "seed": int(trial["seed"]), "selected_epoch": int(trial["selected_epoch"]),
                  **{k: (None if pd.isna(trial[k]) else float(trial[k])) for k in COMPARED_METRICS}},
    }
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=1, default=str))
    (out / CARD).write_text(_model_card(trial["experiment"], cfg, meta, config, metrics, cmp), encoding="utf-8")
    (out / CONFIG).write_text(json.dumps(config, indent=1))
    return out


def export_best(storage_path: str, name: str, output_dir: str | Path, baseline: Optional[dict] = None) -> Path:
    """Read sweep ``name`` (with its extensions) and export its best model (see the module
    docstring) to ``output_dir``."""
    res = whole_sweep(storage_path, name, baseline)
    errors = []
    for _, trial in ranked_trials(res.cmp, res.trials).iterrows():
        try:
            return export_trial(storage_path, trial, res.cmp, output_dir)
        except CheckpointError as e:  # one corrupt checkpoint: the group's next seed is exported instead
            log.warning(f"trial {trial['trial_id']} not exported: {e}")
            errors.append(str(e))
    raise ExportError(f"no checkpoint of group {res.cmp.best!r} could be read: {'; '.join(errors) or 'none completed'}")
