"""Fault injection: the runner is killed (SIGKILL) at random moments, during cells and during
writes; every result left on disk must parse and a resume must finish the run. Also a corrupt
image in the middle of a run under both policies, and run-to-run determinism of accuracy."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from layouts import write_ade20k
from tiny_models import save_tiny_segformer

from harness.results import load_run
from harness.runner import run_suite

ROOT = Path(__file__).resolve().parents[1]
FAULTS = Path(__file__).resolve().parent / "faults"


def _env(**extra) -> dict:
    env = dict(os.environ, SEGBENCH_TEST_FAULTS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(FAULTS), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _all_results_parse(run_dir: Path) -> int:
    n = 0
    for p in (run_dir / "cells").glob("*.json"):
        data = json.loads(p.read_text())  # raises on a half-written file
        assert data["status"] in ("ok", "error", "oom", "timeout", "skipped")
        n += 1
    return n


def test_sigkill_at_random_moments_loses_nothing_and_resume_finishes(tmp_path, capsys, monkeypatch,
                                                                     fault_names):
    models = [{"name": f"fault-ok{i}", "weights": "random"} for i in range(8)]
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "kill", "models": models, "datasets": ["tiny"],
                                     "measure": {"warmup": 0, "iters": 2, "stages": False, "flops": False}}))
    rng = random.Random(0)
    out = tmp_path / "results"
    kills, run_dir, deadline = 0, None, time.monotonic() + 120
    while kills < 6 and time.monotonic() < deadline:
        cmd = [sys.executable, "-m", "harness", "run", str(suite)]
        cmd += ["--resume", str(run_dir)] if run_dir else ["--out", str(out)]
        proc = subprocess.Popen(cmd, env=_env(), stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(rng.uniform(0.3, 4.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the runner and the cell it is running
            kills += 1
        proc.wait()
        if run_dir is None:
            found = list(out.glob("kill-*"))
            if not found:
                continue  # killed before run.json existed: start again
            run_dir = found[0]
        _all_results_parse(run_dir)
        if not load_run(run_dir).missing:
            break
    assert run_dir is not None
    for k, v in _env().items():
        if k in ("SEGBENCH_TEST_FAULTS", "PYTHONPATH"):
            monkeypatch.setenv(k, v)
    summary = run_suite(suite, resume=run_dir, echo=False) if load_run(run_dir).missing else None
    done = load_run(run_dir)
    assert not done.missing and _all_results_parse(run_dir) == 8
    assert {c.status for c in done.cells.values()} == {"ok"}
    assert summary is None or summary.exit_code == 0
    with capsys.disabled():
        print(f"\nrunner survived {kills} SIGKILL(s) at random moments; every result parsed; resume finished")


def test_sigkill_during_atomic_writes_never_leaves_half_a_file(tmp_path, capsys):
    script = (
        "import sys, itertools\n"
        "from harness.results import write_json_atomic\n"
        "big = {'schema_version': 1, 'x': list(range(200000))}\n"
        "for i in itertools.count():\n"
        "    write_json_atomic(f'{sys.argv[1]}/cells/c{i % 5}.json', {**big, 'i': i})\n"
    )
    rng = random.Random(1)
    kills = 0
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], env=_env())
        time.sleep(rng.uniform(0.5, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        for p in (tmp_path / "cells").glob("*.json"):
            assert len(json.loads(p.read_text())["x"]) == 200000
    with capsys.disabled():
        print(f"\n{kills} SIGKILLs during atomic writes: every visible JSON complete")


def _suite_with_corrupt_image(tmp_path: Path, policy: str) -> Path:
    model = save_tiny_segformer(tmp_path / "m")
    ade = write_ade20k(tmp_path / "data", n=5)
    victim = sorted((ade / "images" / "validation").glob("*.jpg"))[2]
    victim.write_bytes(victim.read_bytes()[:150])  # truncated mid-file
    data = {"name": f"corrupt-{policy}", "models": [{"name": str(model), "label": "tiny"}],
            "datasets": [{"name": "ade20k", "root": str(ade)},
                         {"name": "synthetic", "options": {"num_samples": 2, "image_size": [32, 32]}}],
            "measure": {"warmup": 0, "iters": 2, "stages": False, "flops": False, "on_bad_sample": policy}}
    p = tmp_path / f"{policy}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_corrupt_image_mid_run_error_policy(tmp_path):
    summary = run_suite(_suite_with_corrupt_image(tmp_path, "error"), out_dir=tmp_path / "r", echo=False)
    cells = {c.identity.dataset: c for c in load_run(summary.run_dir).cells.values()}
    assert cells["ade20k"].status == "error" and "ADE_val_00000003.jpg" in cells["ade20k"].error
    assert "unreadable or truncated image" in cells["ade20k"].error
    assert cells["ade20k"].compute.params > 0  # what was measured before the failure is kept
    assert cells["synthetic"].status == "ok" and summary.exit_code == 1


def test_corrupt_image_mid_run_skip_policy_and_determinism(tmp_path):
    suite = _suite_with_corrupt_image(tmp_path, "skip")
    a = run_suite(suite, out_dir=tmp_path / "a", echo=False)
    b = run_suite(suite, out_dir=tmp_path / "b", echo=False)
    ca = {c.identity.dataset: c for c in load_run(a.run_dir).cells.values()}
    cb = {c.identity.dataset: c for c in load_run(b.run_dir).cells.values()}
    cell = ca["ade20k"]
    assert cell.status == "ok" and cell.accuracy.metrics["num_images"] == 4
    assert [s["id"] for s in cell.provenance.data["skipped"]] == ["ADE_val_00000003"]
    assert a.exit_code == 0
    for ds in ("ade20k", "synthetic"):
        assert ca[ds].accuracy.metrics == cb[ds].accuracy.metrics
        assert ca[ds].provenance.data["digest"] == cb[ds].provenance.data["digest"]


@pytest.mark.parametrize("bad", ["{", "[]", '{"schema_version": 99}'])
def test_resume_with_a_damaged_result_file_remeasures_that_cell(tmp_path, bad, monkeypatch, fault_names):
    monkeypatch.setenv("SEGBENCH_TEST_FAULTS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH", "")]))
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({"name": "dmg", "models": [{"name": "fault-ok", "weights": "random"}],
                                     "datasets": ["tiny"], "measure": {"iters": 1, "stages": False, "flops": False}}))
    first = run_suite(suite, out_dir=tmp_path / "r", echo=False)
    victim = next((first.run_dir / "cells").glob("*.json"))
    victim.write_text(bad)
    again = run_suite(suite, resume=first.run_dir, echo=False)
    assert again.exit_code == 0 and json.loads(victim.read_text())["status"] == "ok"
