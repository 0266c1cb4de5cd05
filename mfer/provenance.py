"""Where a result came from: code commit and environment, recorded in every artefact."""
from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the checkout this package runs from ($MFER_GIT_COMMIT overrides, e.g. in images)."""
    if os.environ.get("MFER_GIT_COMMIT"):
        return os.environ["MFER_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict[str, str]:
    import timm
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "cuda": torch.version.cuda or "none",
        "host": platform.node(),
    }
