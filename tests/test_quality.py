"""Measurement quality: the probe sees a CPU-bound neighbour started by the test, agrees with the
per-process CPU accounting of /proc, and derives its flags at the documented thresholds."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from fixtures_results import as_result

from harness.measure import quality
from harness.measure.quality import QualityProbe, flag_reasons, flags

HZ = os.sysconf("SC_CLK_TCK")
SPIN = "import time\nt = time.time()\nwhile time.time() - t < 60: pass\n"


def process_cpu_s(pid: int) -> float:
    """utime + stime of one process from /proc/PID/stat (fields 14 and 15), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def all_other_cpu_s(me: int) -> dict[int, float]:
    """CPU seconds (utime + stime) of every process but ``me``, from /proc/*/stat.

    Reaped children's times (cutime, cstime) are left out: they arrive in a parent's counters in
    one jump when the child is waited for, not while it runs."""
    out = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == me:
            continue
        try:
            text = (p / "stat").read_text()
        except OSError:
            continue
        f = text[text.rindex(")") + 2:].split()
        out[int(p.name)] = (int(f[11]) + int(f[12])) / HZ
    return out


@pytest.fixture
def neighbours():
    """CPU-bound processes, each pinned to its own core where affinity can be set: enough of them to use
    a fifth of the machine (one on a 2-core box), stopped by their pids."""
    cores = sorted(os.sched_getaffinity(0))
    k = max(1, math.ceil(0.2 * (os.cpu_count() or 1)))
    procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(k)]
    for i, proc in enumerate(procs):
        try:
            os.sched_setaffinity(proc.pid, {cores[-1 - i % len(cores)]})
        except (AttributeError, OSError):
            pass
    time.sleep(0.3)
    yield procs
    for proc in procs:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc/stat")
def test_busy_neighbour_raises_busy_host(neighbours):
    before = sum(process_cpu_s(p.pid) for p in neighbours)
    probe = QualityProbe().start()
    time.sleep(1.0)  # the timed region: this process idles, the neighbours spin
    q = probe.stop(samples_ms=[10.0, 10.1, 9.9, 10.0])
    spent = sum(process_cpu_s(p.pid) for p in neighbours) - before
    assert spent > 0.3 * len(neighbours), f"the neighbours got only {spent:.2f} CPU s in 1 s"
    # the probe counts at least what the neighbour used (others may add to it), within two clock ticks
    assert q["other_cpu_s"] >= spent - 2 * q["resolution_s"]
    assert q["own_cpu_s"] < 0.2
    assert "busy-host" in flags(q)
    assert "other processes used" in flag_reasons(q)["busy-host"]
    assert "unstable" not in flags(q)


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc/stat")
def test_idle_probe_agrees_with_per_process_accounting_and_raises_no_busy_flag():
    me = os.getpid()
    before = all_other_cpu_s(me)
    probe = QualityProbe().start()
    time.sleep(0.8)
    q = probe.stop()
    after = all_other_cpu_s(me)
    # processes alive across the region; those that came or went are not in this reference
    reference = sum(after[p] - before[p] for p in before.keys() & after.keys())
    assert q["other_cpu_s"] >= reference - 2 * q["resolution_s"] - 0.05
    if reference >= 0.5 * quality.BUSY_HOST_OTHER_SHARE * q["cpu_count"] * q["wall_s"]:
        pytest.skip(f"other work on this machine used {reference:.2f} CPU s during the idle region; "
                    "the idle case cannot be observed now (the busy case is tested above)")
    came_or_went = before.keys() ^ after.keys()
    if "busy-host" in flags(q) and came_or_went:
        pytest.skip(f"{len(came_or_went)} process(es) started or ended during the idle region; their CPU time "
                    "is in /proc/stat but in no per-process reference, so the idle case cannot be observed now")
    assert "busy-host" not in flags(q), q


def test_own_cpu_time_is_counted_as_own_not_other():
    probe = QualityProbe().start()
    t = time.perf_counter()
    while time.perf_counter() - t < 0.4:
        pass
    q = probe.stop()
    assert q["own_cpu_s"] == pytest.approx(q["wall_s"], abs=0.25)
    # whatever else ran, this process's own spinning is not counted as another process's
    assert q["other_cpu_s"] <= q["cpu_count"] * q["wall_s"] - q["own_cpu_s"] + 2 * q["resolution_s"]


def test_sample_cv_matches_numpy_float64_reference():
    rng = np.random.default_rng(3)
    s = list(100 + rng.normal(0, 7, 40))
    a = np.asarray(s, dtype=np.float64)
    ref = np.sqrt(((a - a.mean()) ** 2).sum() / (a.size - 1)) / a.mean()
    assert quality.sample_stats(s)["cv"] == pytest.approx(ref, rel=1e-12)
    assert quality.sample_stats([1.0, 2.0])["cv"] is None  # too few samples for a CV
    assert quality.sample_stats(None) == {"n": 0, "mean_ms": None, "cv": None}


def _reading(**over) -> dict:
    q = {"wall_s": 1.0, "cpu_count": 4, "affinity_cores": 4, "own_cpu_s": 1.0, "other_cpu_s": 0.0,
         "other_cores": 0.0, "steal_s": 0.0, "resolution_s": 0.04, "cpu_throttle_events": None,
         "threads": {"torch_intra": 4, "omp_num_threads": None}, "gpu": None,
         "latency": {"n": 10, "cv": 0.01}}
    q.update(over)
    return q


def test_flags_at_their_thresholds():
    cap = 4 * 1.0  # cpu_count x wall
    at = quality.BUSY_HOST_OTHER_SHARE * cap + 0.04 + 1e-9  # the share plus the counter resolution
    assert flags(_reading(other_cpu_s=at, other_cores=at)) == ["busy-host"]
    assert flags(_reading(other_cpu_s=at - 0.01, other_cores=at - 0.01)) == []
    steal = quality.CPU_STEAL_SHARE * cap + 0.04 + 1e-9
    assert flags(_reading(steal_s=steal)) == ["cpu-steal"]
    assert flags(_reading(steal_s=steal - 0.01)) == []
    assert flags(_reading(latency={"n": 10, "cv": quality.UNSTABLE_CV + 1e-9})) == ["unstable"]
    assert flags(_reading(latency={"n": 10, "cv": quality.UNSTABLE_CV})) == []
    assert flags(_reading(cpu_throttle_events=3)) == ["throttled"]
    assert flags(_reading(gpu={"throttle_reasons": ["hw_thermal_slowdown"]})) == ["throttled"]
    assert flags(_reading(gpu={"throttle_reasons": []})) == []
    assert flags(_reading(threads={"torch_intra": 5})) == ["oversubscribed"]
    assert flags(_reading(threads={"torch_intra": 2, "omp_num_threads": "8"})) == ["oversubscribed"]
    assert "OMP_NUM_THREADS = 8 > 4" in flag_reasons(_reading(threads={"omp_num_threads": "8"}))["oversubscribed"]
    assert flags(_reading(other_cpu_s=None, steal_s=None, latency={}, threads={})) == []
    assert flags(None) == [] and flags({}) == []


def test_oversubscribed_from_the_real_torch_setting():
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores + 1)
    try:
        q = QualityProbe().start().stop()
    finally:
        torch.set_num_threads(old)
    assert q["threads"]["torch_intra"] == cores + 1 and "oversubscribed" in flags(q)


def test_proc_stat_parsing_and_unreadable_files(tmp_path):
    p = tmp_path / "stat"
    p.write_text(f"cpu  {HZ * 10} {HZ} {HZ * 2} 999 5 {HZ} 0 {HZ * 3} {HZ * 4} 0\ncpu0 1 2 3\n")
    busy, steal, total = quality.read_proc_stat(p)
    assert busy == pytest.approx(14.0)  # user + nice + system + irq + softirq; guest is inside user
    assert steal == pytest.approx(3.0)
    assert total == pytest.approx(14.0 + 3.0 + (999 + 5) / HZ)
    p.write_text("intr 1 2 3\n")
    assert quality.read_proc_stat(p) is None
    assert quality.read_proc_stat(tmp_path / "missing") is None
    assert quality.cpu_frequency([10_000]) is None and quality.cpu_throttle_count([10_000]) is None


def test_stop_before_start_is_an_error():
    with pytest.raises(RuntimeError, match="before start"):
        QualityProbe().stop()


def test_gpu_sampler_decodes_clock_event_reasons(monkeypatch):
    """NVML replaced by a module of the same API: the reasons are ORed over the samples and decoded."""
    reasons = iter([0x1, 0x20 | 0x1, 0x1, 0x1, 0x1, 0x1, 0x1, 0x1])
    fake = types.SimpleNamespace(
        NVML_CLOCK_SM=1, NVML_CLOCK_MEM=2, NVML_TEMPERATURE_GPU=0, nvmlInit=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: ("gpu", i),
        nvmlDeviceGetClockInfo=lambda h, kind: 1980 if kind == 1 else 2619,
        nvmlDeviceGetMaxClockInfo=lambda h, kind: 1980, nvmlDeviceGetTemperature=lambda h, k: 61,
        nvmlDeviceGetPowerUsage=lambda h: 350_000,
        nvmlDeviceGetCurrentClocksEventReasons=lambda h: next(reasons, 0x1))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    probe = QualityProbe(device="cuda:0", gpu_interval_s=0.01).start()
    time.sleep(0.1)
    q = probe.stop()
    g = q["gpu"]
    assert g["throttle_reasons"] == ["sw_thermal_slowdown"]
    assert set(g["clock_event_reasons"]) == {"gpu_idle", "sw_thermal_slowdown"}
    assert g["sm_clock_mhz"] == [1980.0, 1980.0] and g["power_w"] == [350.0, 350.0]
    assert g["samples"] >= 2 and "throttled" in flags(q)


def test_no_nvml_means_no_gpu_reading(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    q = QualityProbe(device="cuda").start().stop()
    assert q["gpu"] is None


def test_refusal_names_the_flagged_side_and_what_was_measured():
    busy = _reading(other_cpu_s=2.0, other_cores=2.0)
    quiet = _reading()
    def cell(q):
        return as_result({"schema_version": 1, "cell_id": "c", "status": "ok", "quality": q})

    base, cur = cell(quiet), cell(busy)
    reason = quality.refusal(base, cur)
    assert reason.startswith("timings not compared, current: busy-host (other processes used 2.00 core(s)")
    assert "baseline" not in reason
    assert quality.refusal(base, cur, allow_flagged=True) is None
    assert quality.refusal(base, cell(quiet)) is None and quality.refusal(cell(None), cell(None)) is None
    recorded = cell({"flags": ["throttled"]})  # flags as the cell recorded them
    assert quality.refusal(recorded, base) == "timings not compared, baseline: throttled"
    assert quality.cell_flags(cur) == ["busy-host"]
