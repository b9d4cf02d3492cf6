"""Weights resolution: hub ids from the local cache (failing fast and clearly when absent),
local directories and files with their sha256 for provenance."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from harness.errors import WeightsError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".tflite")


def cache_dir() -> str:
    """The Hugging Face hub cache that ``from_pretrained`` searches."""
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:
        return os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout_s: float = 1.5) -> bool:
    """Whether the hub endpoint accepts a TCP connection within ``timeout_s`` seconds."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def missing_weights_message(model_id: str, reason: str) -> str:
    return (f"weights for {model_id!r} are not available: {reason}. Searched the Hugging Face cache at "
            f"{cache_dir()}. Provide them by (a) downloading on a connected machine "
            f"(`huggingface-cli download {model_id}`) and copying the cache, or (b) pointing the suite at a local "
            f"directory saved with save_pretrained: `weights: /path/to/dir`, or (c) `weights: random` to measure "
            f"speed and memory only.")


def cached_revision(model_id: str) -> str | None:
    """The commit hash of the cached snapshot of ``model_id`` (None when not cached)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(model_id, "config.json")
    except Exception:
        return None
    if isinstance(path, str):
        parts = Path(path).parts
        if "snapshots" in parts:
            return parts[parts.index("snapshots") + 1]
    return None


def load_pretrained(loader, model_id: str, **kwargs):
    """``loader.from_pretrained(model_id)`` from the local cache first; online only if the hub answers."""
    try:
        return loader.from_pretrained(model_id, local_files_only=True, **kwargs)
    except (OSError, ValueError) as first:
        if offline():
            raise WeightsError(missing_weights_message(model_id, "not in the local cache and HF_HUB_OFFLINE is set")) from None
        if not hub_reachable():
            raise WeightsError(missing_weights_message(model_id, "not in the local cache and the hub cannot be reached")) from None
        try:
            return loader.from_pretrained(model_id, **kwargs)
        except OSError as e:
            raise WeightsError(missing_weights_message(model_id, f"download failed ({e})")) from first


def hub_file(model_id: str, filename: str) -> str:
    """Local path of ``filename`` of hub repo ``model_id``: cache first, online only if the hub answers."""
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(model_id, filename, local_files_only=True)
    except Exception:
        if offline() or not hub_reachable():
            raise WeightsError(missing_weights_message(model_id, f"{filename} is not in the local cache and the "
                                                                 "hub cannot be used")) from None
        try:
            return hf_hub_download(model_id, filename)
        except Exception as e:
            raise WeightsError(missing_weights_message(model_id, f"download of {filename} failed ({e})")) from None


def sha256_of(paths: list[Path]) -> str:
    """sha256 over the contents of ``paths`` in sorted order."""
    h = hashlib.sha256()
    for p in sorted(paths):
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def local_provenance(path: Path) -> dict:
    """Provenance of a local directory or file: its resolved path and the sha256 of its weight files."""
    path = Path(path)
    if path.is_file():
        return {"source": "file", "path": str(path.resolve()), "sha256": sha256_of([path])}
    files = [p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file()]
    if not files:
        raise WeightsError(f"{path}: no weight files ({', '.join(WEIGHT_SUFFIXES)}) in this directory")
    return {"source": "local", "path": str(path.resolve()), "sha256": sha256_of(files),
            "files": sorted(p.name for p in files)}
