"""Experiment trackers for a sweep — ``tracking=[tensorboard, mlflow, wandb]``, any subset, off by default —
through Ray Tune's own logger callbacks: one run per trial, grouped per sweep (the MLflow experiment and
the W&B group are the sweep's name), with the trial's config and every epoch's metrics.

Off means off: Ray adds a TensorBoard logger by itself whenever tensorboardX is installed, so Ray's
automatic loggers are switched off (``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS``) and the JSON and CSV loggers
they included are passed explicitly — the results store reads the JSON logger's ``params.json`` and
``result.json``. No tracker package is imported unless it is asked for (they are the ``tracking`` extra).
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from mfer_platform.layout import experiment_path, is_uri
from mfer_platform.sweep.spaces import SpaceError

# tracker -> the module its Ray callback needs
PACKAGES = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}
WANDB_PROJECT = "mfer"  # unless WANDB_PROJECT is set


@dataclass
class TrackingSettings:
    trackers: list[str] = field(default_factory=list)  # a subset of PACKAGES' keys; [] = none
    uri: Optional[str] = None  # MLflow tracking URI; default: a SQLite file beside the experiment (local storage)


def check(settings: TrackingSettings, storage_path: str) -> None:
    """Refuse, before anything runs, trackers that are unknown, not installed, or have nowhere to write."""
    unknown = [t for t in settings.trackers if t not in PACKAGES]
    if unknown:
        raise SpaceError(f"tracking={settings.trackers}: unknown tracker {unknown[0]!r}; choose from "
                         f"{', '.join(PACKAGES)} (e.g. tracking=[tensorboard,mlflow])")
    missing = [PACKAGES[t] for t in settings.trackers if importlib.util.find_spec(PACKAGES[t]) is None]
    if missing:
        raise SpaceError(f"tracking={settings.trackers}: {', '.join(missing)} is not installed; "
                         f"pip install 'mfer-platform[tracking]'")
    if "mlflow" in settings.trackers and is_uri(storage_path) and not settings.uri:
        raise SpaceError(f"tracking=[mlflow] with remote storage_path={storage_path}: set tracking_uri=… "
                         "(an MLflow server or database URL); the default SQLite file needs local storage")


def mlflow_uri(settings: TrackingSettings, storage_path: str, name: str) -> str:
    """The given tracking URI, or ``sqlite:///{storage_path}/{name}/mlflow.db``."""
    if settings.uri:
        return settings.uri
    folder = experiment_path(storage_path, name)
    os.makedirs(folder, exist_ok=True)
    return f"sqlite:///{folder}/mlflow.db"


def callbacks(settings: TrackingSettings, storage_path: str, name: str) -> list[Any]:
    """The Tune logger callbacks of sweep ``name``: Ray's JSON and CSV loggers, then the trackers asked for."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # read when the Tuner's run starts
    out: list[Any] = [JsonLoggerCallback(), CSVLoggerCallback()]
    if "tensorboard" in settings.trackers:
        from ray.tune.logger import TBXLoggerCallback

        out.append(TBXLoggerCallback())
    if "mlflow" in settings.trackers:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        out.append(MLflowLoggerCallback(tracking_uri=mlflow_uri(settings, storage_path, name),
                                        experiment_name=name, tags={"sweep": name}))
    if "wandb" in settings.trackers:
        from ray.air.integrations.wandb import WandbLoggerCallback

        # The W&B run of each trial is written by a Ray actor: pass the mode on, so WANDB_MODE=offline
        # holds on whichever node hosts it.
        mode = {"mode": os.environ["WANDB_MODE"]} if os.environ.get("WANDB_MODE") else {}
        out.append(WandbLoggerCallback(project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT), group=name, **mode))
    return out
