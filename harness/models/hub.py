"""Weights resolution: hub ids from the local cache (failing fast and clearly when absent),
local directories and files with their sha256 for provenance.

The Hugging Face client retries for tens of seconds when the hub cannot be reached. Here a
hub id is first looked up in the local cache only; when it is not there, ``HF_HUB_OFFLINE``
ends the search at once, and otherwise a TCP connect to the hub endpoint (or the HTTPS proxy),
bounded by :data:`PROBE_TIMEOUT_S` seconds including the name lookup, decides whether a
download is tried at all.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from harness.errors import WeightsError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".tflite")
PROBE_TIMEOUT_S = 1.0  # seconds allowed for name lookup + TCP connect to the hub


def cache_dir() -> str:
    """The Hugging Face hub cache directory that ``from_pretrained`` searches."""
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:
        return os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or the legacy ``TRANSFORMERS_OFFLINE``) forbids network access."""
    values = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(v.strip().lower() in ("1", "true", "yes", "on") for v in values)


def _probe_target() -> tuple[str, int] | None:
    """(host, port) a download would connect to first: the HTTPS proxy when set, else the hub endpoint."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    endpoint = proxy or os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
    if not url.hostname:
        return None
    return url.hostname, url.port or (443 if url.scheme == "https" else 80)


def hub_reachable(timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the hub (or the proxy) accepts a TCP connection within ``timeout_s`` seconds.

    The name lookup is included in the bound (it runs in a daemon thread), so a resolver that
    hangs cannot stall the caller.
    """
    target = _probe_target()
    if target is None:
        return False
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection(target, timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=attempt, name="segbench-hub-probe", daemon=True)
    t.start()
    t.join(timeout_s)
    return bool(result and result[0])


def missing_weights_message(model_id: str, reason: str) -> str:
    """The message of a :class:`WeightsError` for hub id ``model_id``: what failed, where we looked, what to do."""
    return (f"weights for {model_id!r} are not available: {reason}. Searched the Hugging Face cache at "
            f"{cache_dir()} (set HF_HOME or HF_HUB_CACHE to use another). Provide them by (a) downloading on a "
            f"connected machine (`hf download {model_id}`, or `huggingface-cli download {model_id}` with older "
            f"clients) and copying that cache here, or (b) pointing the suite at a local directory saved with "
            f"save_pretrained: `weights: /path/to/dir`, or (c) `weights: random` to measure speed and memory only.")


def cached_revision(model_id: str) -> str | None:
    """The commit hash of the cached snapshot of ``model_id`` (None when its config.json is not cached)."""
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


def cached_file(model_id: str, filename: str) -> Path | None:
    """Path of ``filename`` in the cached snapshot of ``model_id``, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(model_id, filename)
    except Exception:
        return None
    return Path(path) if isinstance(path, str) else None


def _unavailable_reason() -> str | None:
    """Why a download cannot even be tried (None when it can)."""
    if offline():
        return "not in the local cache and HF_HUB_OFFLINE is set"
    if not hub_reachable():
        host = (_probe_target() or ("?", 0))[0]
        return f"not in the local cache and the hub ({host}) cannot be reached within {PROBE_TIMEOUT_S:g} s"
    return None


def load_pretrained(loader, model_id: str, **kwargs):
    """``loader.from_pretrained(model_id)`` from the local cache first; online only when the hub answers.

    Raises :class:`WeightsError` (naming the id, the cache searched and how to supply weights)
    instead of the client's retries and tracebacks.
    """
    try:
        return loader.from_pretrained(model_id, local_files_only=True, **kwargs)
    except (OSError, ValueError) as first:
        if cached_revision(model_id) is not None:
            raise WeightsError(f"{model_id!r} is in the Hugging Face cache at {cache_dir()} but cannot be loaded "
                               f"from it: {first}") from None
        reason = _unavailable_reason()
        if reason:
            raise WeightsError(missing_weights_message(model_id, reason)) from None
        try:
            return loader.from_pretrained(model_id, **kwargs)
        except OSError as e:
            raise WeightsError(missing_weights_message(model_id, f"download failed ({e})")) from None


def hub_file(model_id: str, filename: str) -> Path:
    """Local path of ``filename`` of hub repo ``model_id``: cache first, online only when the hub answers."""
    path = cached_file(model_id, filename)
    if path is not None:
        return path
    reason = _unavailable_reason()
    if reason:
        raise WeightsError(missing_weights_message(model_id, f"{filename} is {reason}"))
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(model_id, filename))
    except Exception as e:
        raise WeightsError(missing_weights_message(model_id, f"download of {filename} failed ({e})")) from None


def sha256_of(paths: list[Path]) -> str:
    """sha256 (hex) over the contents of ``paths``, read in sorted path order."""
    h = hashlib.sha256()
    for p in sorted(paths):
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def local_provenance(path: str | os.PathLike) -> dict:
    """Provenance of a local directory or file: its resolved path and the sha256 of its weight files."""
    path = Path(path)
    if path.is_file():
        return {"source": "file", "path": str(path.resolve()), "sha256": sha256_of([path])}
    files = [p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file()]
    if not files:
        raise WeightsError(f"{path}: no weight files ({', '.join(WEIGHT_SUFFIXES)}) in this directory")
    return {"source": "local", "path": str(path.resolve()), "sha256": sha256_of(files),
            "files": sorted(p.name for p in files)}
