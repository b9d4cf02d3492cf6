"""Measurement quality: what disturbed a timed region, read around it, and the flags derived from it.

A latency figure taken on a machine where other processes took CPU time, where the hypervisor
stole cycles, where the threads outnumber the cores or where a GPU lowered its clocks is not
the figure of the model alone. :class:`QualityProbe` reads, around one timed region:

- the CPU time the whole machine spent (``/proc/stat``, all CPUs) minus the CPU time of this
  process (``getrusage(RUSAGE_SELF)``, every thread): the CPU seconds *other* processes used;
- steal time (``/proc/stat``), the 1/5/15-minute load averages (``/proc/loadavg``);
- CPU frequency, governor and thermal-throttle counters where ``/sys/devices/system/cpu`` has them;
- thread settings (torch intra-op / inter-op, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, the
  process's OS threads) against the cores this process may run on (``os.sched_getaffinity``);
- on CUDA, through NVML (``pynvml`` from ``nvidia-ml-py``, imported only then): SM and memory
  clocks, temperature, power and the clock-event (throttle) reasons, sampled every
  ``gpu_interval_s`` by a background thread while the region runs;
- the coefficient of variation of the latency samples handed to :meth:`QualityProbe.stop`.

Everything unreadable is ``None``. :func:`flags` turns a reading into short words
(``busy-host``, ``cpu-steal``, ``unstable``, ``throttled``, ``oversubscribed``) with the
thresholds below, declared once and documented in docs/REGRESSIONS.md; :func:`flag_reasons`
says for each flag what was measured. Units: seconds (``*_s``), cores (CPU seconds per wall
second), shares (fractions of the machine's capacity), MHz, degrees Celsius, watts.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# Other processes used at least this share of the machine's CPU capacity (all online CPUs)
# during the timed region. 0.10 is 0.2 cores of a 2-core box, 6.4 cores of a 64-core one; an idle
# Linux host spends well under 1%.
BUSY_HOST_OTHER_SHARE = 0.10
# The hypervisor took at least this share of the CPU capacity away from this virtual machine.
CPU_STEAL_SHARE = 0.02
# Coefficient of variation (std / mean) of the latency samples above which the result is
# called unstable; pyperf warns at the same 10%.
UNSTABLE_CV = 0.10
# Fewer latency samples than this give no CV, so no ``unstable`` verdict either way.
MIN_SAMPLES_FOR_CV = 3
# NVML clock-event reasons that mean the GPU ran below the clock it was asked for because of
# power or heat (idle, application-clock and sync-boost reasons are not throttling).
GPU_THROTTLE_REASONS = {
    0x4: "sw_power_cap", 0x8: "hw_slowdown", 0x20: "sw_thermal_slowdown", 0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
}
GPU_OTHER_REASONS = {0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x10: "sync_boost",
                     0x100: "display_clock_setting"}
FLAG_NAMES = ("busy-host", "cpu-steal", "unstable", "throttled", "oversubscribed")

PROC_STAT = Path("/proc/stat")
PROC_LOADAVG = Path("/proc/loadavg")
SYS_CPU = Path("/sys/devices/system/cpu")
# /proc/stat "cpu" line fields: user nice system idle iowait irq softirq steal guest guest_nice.
# guest time is already counted in user (and guest_nice in nice), so it is not added again.
_BUSY_FIELDS = (0, 1, 2, 5, 6)
_STEAL_FIELD = 7


def _clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100


def read_proc_stat(path: Path = PROC_STAT) -> tuple[float, float, float] | None:
    """(busy, steal, total) CPU seconds of all CPUs since boot from the ``cpu`` line, or None."""
    try:
        with open(path, encoding="ascii") as f:
            first = f.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    ticks = [int(x) for x in first[1:]]
    ticks += [0] * (10 - len(ticks))
    hz = _clock_ticks()
    busy = sum(ticks[i] for i in _BUSY_FIELDS) / hz
    return busy, ticks[_STEAL_FIELD] / hz, sum(ticks[:8]) / hz


def own_cpu_seconds(include_children: bool = False) -> float:
    """User + system CPU seconds of this process (all its threads) so far; with ``include_children``,
    plus those of its child processes that have ended and been waited for (and their descendants)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    total = r.ru_utime + r.ru_stime
    if include_children:
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += c.ru_utime + c.ru_stime
    return total


def loadavg() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages, or None where unreadable."""
    try:
        return [float(x) for x in PROC_LOADAVG.read_text(encoding="ascii").split()[:3]]
    except (OSError, ValueError):
        return None


def affinity_cores() -> list[int]:
    """The CPU numbers this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def cpu_frequency(cores: Sequence[int]) -> dict | None:
    """Mean current and max frequency (MHz) of ``cores`` and their governors, or None without cpufreq."""
    cur, top, governors = [], [], set()
    for c in cores:
        base = SYS_CPU / f"cpu{c}" / "cpufreq"
        khz = _read_int(base / "scaling_cur_freq")
        if khz is None:
            continue
        cur.append(khz / 1000.0)
        mx = _read_int(base / "cpuinfo_max_freq")
        if mx is not None:
            top.append(mx / 1000.0)
        try:
            governors.add((base / "scaling_governor").read_text(encoding="ascii").strip())
        except OSError:
            pass
    if not cur:
        return None
    return {"cur_mhz": float(np.mean(cur)), "max_mhz": float(np.mean(top)) if top else None,
            "governors": sorted(governors)}


def cpu_throttle_count(cores: Sequence[int]) -> int | None:
    """Sum of core and package thermal-throttle events of ``cores`` so far, or None where not exposed."""
    total, seen = 0, False
    for c in cores:
        for name in ("core_throttle_count", "package_throttle_count"):
            v = _read_int(SYS_CPU / f"cpu{c}" / "thermal_throttle" / name)
            if v is not None:
                total, seen = total + v, True
    return total if seen else None


def thread_settings() -> dict:
    """Thread counts that decide how many cores a timed region wants (torch read only if already imported)."""
    torch = sys.modules.get("torch")
    out = {"torch_intra": None, "torch_interop": None,
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "mkl_num_threads": os.environ.get("MKL_NUM_THREADS"),
           "os_threads": None}
    if torch is not None:
        try:
            out["torch_intra"] = int(torch.get_num_threads())
            out["torch_interop"] = int(torch.get_num_interop_threads())
        except Exception:
            pass
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Threads:"):
                out["os_threads"] = int(line.split()[1])
    except (OSError, ValueError):
        out["os_threads"] = threading.active_count()
    return out


def sample_stats(samples_ms: Sequence[float] | None) -> dict:
    """n, mean (ms) and coefficient of variation (std with ddof=1 / mean) of latency samples."""
    a = np.asarray([] if samples_ms is None else samples_ms, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size < MIN_SAMPLES_FOR_CV or a.mean() <= 0:
        return {"n": int(a.size), "mean_ms": float(a.mean()) if a.size else None, "cv": None}
    return {"n": int(a.size), "mean_ms": float(a.mean()), "cv": float(a.std(ddof=1) / a.mean())}


def _nvml_handle(device_index: int):
    """(pynvml, handle) of the CUDA device ``device_index`` as torch numbers it, or None without NVML."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        torch = sys.modules.get("torch")
        uuid = None
        if torch is not None:
            uuid = getattr(torch.cuda.get_device_properties(device_index), "uuid", None)
        if uuid is not None:
            try:
                return pynvml, pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
            except Exception:
                pass
        return pynvml, pynvml.nvmlDeviceGetHandleByIndex(device_index)
    except Exception:
        return None


def _clock_event_reasons(pynvml, handle) -> int | None:
    for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
        fn = getattr(pynvml, name, None)
        if fn is not None:
            try:
                return int(fn(handle))
            except Exception:
                return None
    return None


class GpuSampler:
    """Samples one GPU's clocks, temperature, power and clock-event reasons through NVML in a thread."""

    def __init__(self, device_index: int, interval_s: float = 0.1):
        self.device_index = device_index
        self.interval_s = interval_s
        self._nvml = _nvml_handle(device_index)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sm: list[float] = []
        self._mem: list[float] = []
        self._temp: list[float] = []
        self._power: list[float] = []
        self._reasons = 0
        self._reason_seen = False

    @property
    def available(self) -> bool:
        return self._nvml is not None

    def sample(self) -> None:
        """Read the device once (no-op without NVML)."""
        if self._nvml is None:
            return
        nv, h = self._nvml
        for target, call in ((self._sm, lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
                             (self._mem, lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)),
                             (self._temp, lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
                             (self._power, lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0)):
            try:
                target.append(float(call()))
            except Exception:
                pass
        reasons = _clock_event_reasons(nv, h)
        if reasons is not None:
            self._reasons |= reasons
            self._reason_seen = True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def start(self) -> None:
        if self._nvml is None:
            return
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="segbench-nvml", daemon=True)
        self._thread.start()

    def stop(self) -> dict | None:
        """The readings as a dict (clocks in MHz, temperature in C, power in W), or None without NVML."""
        if self._nvml is None:
            return None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()
        nv, h = self._nvml
        try:
            max_sm = float(nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM))
        except Exception:
            max_sm = None
        names = [n for bit, n in {**GPU_THROTTLE_REASONS, **GPU_OTHER_REASONS}.items() if self._reasons & bit]

        def span(values: list[float]) -> list[float] | None:
            return [min(values), max(values)] if values else None

        return {"device_index": self.device_index, "samples": len(self._sm), "sm_clock_mhz": span(self._sm),
                "max_sm_clock_mhz": max_sm, "mem_clock_mhz": span(self._mem), "temperature_c": span(self._temp),
                "power_w": span(self._power), "clock_event_reasons": names if self._reason_seen else None,
                "throttle_reasons": [n for bit, n in GPU_THROTTLE_REASONS.items() if self._reasons & bit]
                if self._reason_seen else None}


def _cuda_index(device: str | None) -> int | None:
    if not device or not str(device).startswith("cuda"):
        return None
    text = str(device)
    if ":" in text:
        return int(text.split(":", 1)[1])
    torch = sys.modules.get("torch")
    try:
        return int(torch.cuda.current_device()) if torch is not None else 0
    except Exception:
        return 0


class QualityProbe:
    """Reads what disturbs a timing around one region: ``probe.start(); ...; q = probe.stop(samples_ms)``.

    ``device`` ("cpu", "cuda", "cuda:1", ...) turns on the NVML sampler for a CUDA device.
    ``include_children`` counts child processes that ended (and were waited for) within the
    region as this process's own: for a parent that times a region run by its children.
    ``stop`` returns a plain JSON-ready dict (see the module docstring for its units); pass it to
    :func:`flags` or :func:`flag_reasons`.
    """

    def __init__(self, device: str | None = None, gpu_interval_s: float = 0.1, include_children: bool = False):
        self.device = device
        self.include_children = include_children
        self.gpu_interval_s = gpu_interval_s
        self._t0: float | None = None
        self._stat0 = None
        self._own0 = 0.0
        self._load0 = None
        self._throttle0 = None
        self._freq0 = None
        self._gpu: GpuSampler | None = None
        self.cores = affinity_cores()

    def start(self) -> QualityProbe:
        index = _cuda_index(self.device)
        if index is not None:
            self._gpu = GpuSampler(index, self.gpu_interval_s)
            self._gpu.start()
        self._load0 = loadavg()
        self._throttle0 = cpu_throttle_count(self.cores)
        self._freq0 = cpu_frequency(self.cores)
        self._stat0 = read_proc_stat()
        self._own0 = own_cpu_seconds(self.include_children)
        self._t0 = time.monotonic()
        return self

    def stop(self, samples_ms: Sequence[float] | None = None) -> dict:
        """End the region; the reading as a dict. ``samples_ms``: the region's latency samples (ms)."""
        if self._t0 is None:
            raise RuntimeError("QualityProbe.stop() called before start()")
        wall = time.monotonic() - self._t0
        own = own_cpu_seconds(self.include_children) - self._own0
        stat1 = read_proc_stat()
        cpu_count = os.cpu_count() or len(self.cores)
        q: dict = {"wall_s": wall, "cpu_count": cpu_count, "affinity_cores": len(self.cores), "own_cpu_s": own,
                   "own_cores": own / wall if wall > 0 else None, "other_cpu_s": None, "other_cores": None,
                   "other_share": None, "steal_s": None, "steal_share": None,
                   "resolution_s": cpu_count / _clock_ticks()}
        if self._stat0 is not None and stat1 is not None and wall > 0:
            busy = stat1[0] - self._stat0[0]
            other = max(0.0, busy - own)
            steal = max(0.0, stat1[1] - self._stat0[1])
            q.update(other_cpu_s=other, other_cores=other / wall, other_share=other / (wall * cpu_count),
                     steal_s=steal, steal_share=steal / (wall * cpu_count))
        throttle1 = cpu_throttle_count(self.cores)
        q["loadavg_start"], q["loadavg_end"] = self._load0, loadavg()
        q["cpu_freq_start"], q["cpu_freq_end"] = self._freq0, cpu_frequency(self.cores)
        q["cpu_throttle_events"] = (throttle1 - self._throttle0) if None not in (throttle1, self._throttle0) else None
        q["threads"] = thread_settings()
        q["gpu"] = self._gpu.stop() if self._gpu is not None else None
        q["latency"] = sample_stats(samples_ms)
        self._t0 = None
        return q


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _beyond_share(q: dict, seconds_key: str, share: float) -> tuple[bool, float | None]:
    """Whether ``q[seconds_key]`` less the counter resolution is at least ``share`` of the capacity."""
    secs, wall, cpus = _num(q.get(seconds_key)), _num(q.get("wall_s")), _num(q.get("cpu_count"))
    if secs is None or not wall or not cpus:
        return False, None
    measured = secs / (wall * cpus)
    return secs - (_num(q.get("resolution_s")) or 0.0) >= share * wall * cpus, measured


def _oversubscription(q: dict) -> str | None:
    t = q.get("threads") or {}
    cores = _num(q.get("affinity_cores"))
    if not cores:
        return None
    for key, what in (("torch_intra", "torch intra-op threads"), ("omp_num_threads", "OMP_NUM_THREADS"),
                      ("mkl_num_threads", "MKL_NUM_THREADS")):
        n = _num(t.get(key))
        if n is not None and n > cores:
            return f"{what} = {n:g} > {cores:g} core(s) this process may run on"
    return None


def flag_reasons(q: dict | None) -> dict[str, str]:
    """Each raised flag with what was measured, in the order of ``FLAG_NAMES``; {} for None."""
    if not q:
        return {}
    out: dict[str, str] = {}
    busy, share = _beyond_share(q, "other_cpu_s", BUSY_HOST_OTHER_SHARE)
    if busy:
        out["busy-host"] = (f"other processes used {q['other_cores']:.2f} core(s), {100 * share:.0f}% of "
                            f"{q['cpu_count']} CPU(s), during the timed region "
                            f"(flag at {100 * BUSY_HOST_OTHER_SHARE:.0f}%)")
    steal, share = _beyond_share(q, "steal_s", CPU_STEAL_SHARE)
    if steal:
        out["cpu-steal"] = (f"the hypervisor stole {100 * share:.1f}% of the CPU time "
                            f"(flag at {100 * CPU_STEAL_SHARE:.0f}%)")
    cv = _num((q.get("latency") or {}).get("cv"))
    if cv is not None and cv > UNSTABLE_CV:
        out["unstable"] = (f"latency CV {cv:.2f} over {q['latency'].get('n')} samples "
                           f"(flag above {UNSTABLE_CV:.2f})")
    throttle = []
    events = _num(q.get("cpu_throttle_events"))
    if events:
        throttle.append(f"{events:g} CPU thermal-throttle event(s)")
    gpu_reasons = (q.get("gpu") or {}).get("throttle_reasons") or []
    if gpu_reasons:
        throttle.append("GPU clock-event reasons " + ", ".join(gpu_reasons))
    if throttle:
        out["throttled"] = "; ".join(throttle) + " during the timed region"
    over = _oversubscription(q)
    if over:
        out["oversubscribed"] = over
    return out


def flags(q: dict | None) -> list[str]:
    """The flags a quality reading raises (subset of ``FLAG_NAMES``, in that order)."""
    return list(flag_reasons(q))


def cell_quality(cell) -> dict:
    """A cell result's quality reading (``environment.quality``), or {}."""
    q = cell.environment.quality
    return q if isinstance(q, dict) else {}


def cell_flags(cell) -> list[str]:
    """The flags of a cell result's quality reading: its ``flags`` list when present, else derived."""
    q = cell_quality(cell)
    if not q:
        return []
    if isinstance(q.get("flags"), list):
        return [str(f) for f in q["flags"]]
    return flags(q)


def refusal(baseline, current, allow_flagged: bool = False) -> str | None:
    """Why the timings of two cell results should not be compared (a side was flagged), or None.

    The text names each flagged side and its flags, with what was measured when the reading is
    there, e.g. "current: busy-host (other processes used 1.31 core(s), 66% of 2 CPU(s) ...)".
    ``allow_flagged`` (the user opted in) always gives None.
    """
    if allow_flagged:
        return None
    parts = []
    for side, cell in (("baseline", baseline), ("current", current)):
        names = cell_flags(cell)
        if not names:
            continue
        why = flag_reasons(cell_quality(cell))
        parts.append(f"{side}: " + "; ".join(f"{n} ({why[n]})" if n in why else n for n in names))
    return "timings not compared, " + "; ".join(parts) if parts else None
