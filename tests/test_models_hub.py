"""Weights from the Hugging Face hub: a missing checkpoint fails within a second with a clear message
(offline or with the hub unreachable), and a cached snapshot loads offline with its revision recorded."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_models import save_tiny_segformer

import harness
from harness.errors import WeightsError
from harness.models import hub

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache for this process, the hub client's constants pointed at it."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return cache


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens on it once the socket is closed


def test_offline_missing_weights_fail_within_a_second(empty_cache, monkeypatch):
    harness.load_model("deeplabv3-mobilenetv2", weights="random")  # imports done outside the timed region
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(WeightsError) as err:
        harness.load_model("segformer-b0")
    assert time.perf_counter() - t0 < 1.0
    msg = str(err.value)
    assert "nvidia/segformer-b0-finetuned-ade-512-512" in msg and "HF_HUB_OFFLINE is set" in msg
    assert str(empty_cache) in msg and "weights: /path/to/dir" in msg and "hf download" in msg


def test_unreachable_hub_fails_within_a_second(empty_cache, monkeypatch):
    harness.load_model("deeplabv3-mobilenetv2", weights="random")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(WeightsError, match="cannot be reached") as err:
        harness.load_model("upernet-convnext-tiny")
    assert time.perf_counter() - t0 < 1.0
    assert "openmmlab/upernet-convnext-tiny" in str(err.value) and str(empty_cache) in str(err.value)


def test_any_hub_id_fails_the_same_way(empty_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(WeightsError, match="'someone/some-segmenter'"):
        harness.load_model("someone/some-segmenter")
    assert time.perf_counter() - t0 < 1.0


def test_a_hanging_connect_is_cut_at_the_probe_timeout(monkeypatch):
    def hang(*args, **kwargs):
        time.sleep(5)
        raise OSError("never answered")

    monkeypatch.setattr(socket, "create_connection", hang)
    t0 = time.perf_counter()
    assert hub.hub_reachable(timeout_s=0.3) is False
    assert time.perf_counter() - t0 < 1.0


def test_probe_targets_the_proxy_when_one_is_set(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hub._probe_target() == ("proxy.example", 3128)
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example")
    assert hub._probe_target() == ("hub.example", 443)


def test_cli_prints_the_reason_without_a_traceback(tmp_path):
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
               PYTHONPATH=str(ROOT))
    for key in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        env.pop(key, None)
    out = subprocess.run([sys.executable, "-m", "harness", "eval", "upernet-convnext-tiny", "synthetic"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode != 0
    assert "WeightsError" in out.stderr and "openmmlab/upernet-convnext-tiny" in out.stderr
    assert str(tmp_path / "hf") in out.stderr and "Traceback" not in out.stderr


def _fake_snapshot(cache: Path, repo_id: str, revision: str, tmp: Path) -> Path:
    """A hub cache entry laid out as huggingface_hub writes it: refs/main -> snapshots/<revision>/."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    save_tiny_segformer(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def test_cached_snapshot_loads_offline_with_its_revision(tmp_path):
    cache = tmp_path / "hf" / "hub"
    revision = "0123456789abcdef0123456789abcdef01234567"
    _fake_snapshot(cache, "acme/tiny-segformer", revision, tmp_path)
    script = ("import json, harness\n"
              "m = harness.load_model('acme/tiny-segformer')\n"
              "print(json.dumps({'weights': m.weights, 'input_size': list(m.input_size), 'family': m.family}))\n")
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["weights"] == {"source": "hub", "id": "acme/tiny-segformer", "revision": revision}
    assert got["input_size"] == [64, 64] and got["family"] == "transformer"
