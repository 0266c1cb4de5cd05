"""Pretrained weights by timm name (``model.pretrained=convnext_base.fb_in22k_ft_in1k``), from the
Hugging Face hub cache that timm itself uses (``$HF_HOME``, ``$HF_HUB_CACHE``).

The cache is looked at first, so a node that has the file never touches the network, and a sweep's
trials on one node share one download (a file lock makes the first trial fetch it while the others
wait). A miss with no way to the hub stops at once — ``HF_HUB_OFFLINE=1``, or a 3-second connection
probe that fails — with the download command of the installed ``huggingface_hub`` and the
``model.pretrained_file`` alternative, instead of sitting through huggingface_hub's five retries
(about 25 s with no network). Loading itself is timm's own path (``mfer.model.backbone``).
"""
from __future__ import annotations

import fcntl
import os
import socket
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

import huggingface_hub
from huggingface_hub import constants as hub_constants
from timm.models import get_pretrained_cfg, split_model_name_tag

from mfer.model.backbone import WeightsError

# timm's own preference (timm/models/_hub.py): safetensors first, the pickle-free format.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PROBE_TIMEOUT_S = 3.0


class HubUnavailable(WeightsError):
    """Named weights that are not in the cache and cannot be downloaded now; the message says how."""


def hub_repo(name: str) -> str:
    """``timm/convnext_atto.d2_in1k`` for ``convnext_atto`` or ``convnext_atto.d2_in1k``."""
    cfg = get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        raise HubUnavailable(f"model.pretrained={name}: timm lists no Hugging Face hub copy of these weights; "
                             "download them yourself and give model.pretrained_file=PATH")
    if cfg.hf_hub_id.endswith("/"):  # older timm cfgs name only the organisation
        arch, tag = split_model_name_tag(name)
        return f"{cfg.hf_hub_id}{arch}.{cfg.tag or tag}"
    return cfg.hf_hub_id


def _download_command(repo: str) -> str:
    """The installed huggingface_hub's own CLI: ``hf`` since 0.34, ``huggingface-cli`` before."""
    scripts = {e.name for e in metadata.distribution("huggingface_hub").entry_points if e.group == "console_scripts"}
    cli = "hf" if "hf" in scripts else "huggingface-cli"
    return f"{cli} download {repo} {WEIGHT_FILES[0]}"


def _hint(name: str, repo: str, cache_dir: str, why: str) -> str:
    home = os.environ.get("HF_HOME")
    env = f"HF_HOME={home} " if home else ""
    return (f"model.pretrained={name}: not in the Hugging Face hub cache ({cache_dir}) and {why}. Fetch it once "
            f"where there is network, into the same cache:\n    {env}{_download_command(repo)}\n"
            "or give a local weights file instead: model.pretrained_file=PATH (and model.pretrained=null)")


def _cached(repo: str, cache_dir: str) -> Path | None:
    for filename in WEIGHT_FILES:
        hit = huggingface_hub.try_to_load_from_cache(repo, filename, cache_dir=cache_dir)
        if isinstance(hit, str):
            return Path(hit)
    return None


def _unreachable() -> str | None:
    """Why the hub cannot be reached now, or None: offline mode, or no TCP connection within 3 s
    to the endpoint (or to the HTTPS proxy, when one is set)."""
    if hub_constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE=1 forbids downloads"
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or os.environ.get("ALL_PROXY")
    url = urlparse(proxy or hub_constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        return f"{host}:{port} cannot be reached ({e.strerror or e})"
    return None


def _download(name: str, repo: str, cache_dir: str) -> Path:
    why = _unreachable()
    if why:
        raise HubUnavailable(_hint(name, repo, cache_dir, why))
    errors = huggingface_hub.errors
    for filename in WEIGHT_FILES:
        try:
            return Path(huggingface_hub.hf_hub_download(repo, filename, cache_dir=cache_dir, library_name="timm"))
        except errors.LocalEntryNotFoundError as e:  # the connection failed after the probe
            raise HubUnavailable(_hint(name, repo, cache_dir, f"the download failed ({e})")) from None
        except errors.EntryNotFoundError:  # this repository has only the other format
            continue
        except Exception as e:  # auth, disk or HTTP errors all end the same way: the hint
            raise HubUnavailable(_hint(name, repo, cache_dir, f"the download failed ({type(e).__name__}: {e})")) from None
    raise HubUnavailable(_hint(name, repo, cache_dir, f"{repo} holds none of {', '.join(WEIGHT_FILES)}"))


def weights_file(name: str) -> Path:
    """The local file of ``name``'s weights: from the cache, else downloaded once per node."""
    return _resolve(name, str(hub_constants.HF_HUB_CACHE))


@lru_cache(maxsize=8)
def _resolve(name: str, cache_dir: str) -> Path:
    repo = hub_repo(name)
    hit = _cached(repo, cache_dir)
    if hit is not None:
        return hit
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(cache_dir) / f".mfer-{repo.replace('/', '--')}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other trials of this node wait, then find the file cached
        return _cached(repo, cache_dir) or _download(name, repo, cache_dir)
