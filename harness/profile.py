"""Where a cell's time goes: model load, cold first inference, the accuracy loop's stages
(waiting for data, forward, postprocess, metric update) with their wall and CPU seconds, the layout
the loop ran under (harness.pipeline) and the per-batch stage latencies."""

from __future__ import annotations

from harness.cell_result import CellResult
from harness.pipeline import STAGES

# a stage whose CPU/wall falls below this share of the threads it was given lost cores to other work
BUSY_SHARE = 0.75


def _loop_lines(cell: CellResult) -> list[str]:
    """The accuracy loop's table: per stage wall s, share of the loop, CPU s, cores busy (CPU / wall)."""
    t = cell.timing
    wall, cpu, plan = t.accuracy_breakdown_s or {}, t.accuracy_cpu_s or {}, t.accuracy_pipeline or {}
    overlapped = plan.get("postprocess") == "overlapped"
    total = t.accuracy_s if overlapped and t.accuracy_s else sum(v for k, v in wall.items() if k in STAGES)
    if total <= 0:
        return []
    n = (cell.accuracy.metrics or {}).get("num_images") or 0
    lines = [f"  accuracy loop         {total:9.3f} s  over {n} images",
             f"    {'stage':18s}  {'wall':>9s}   {'share':>6s}  {'CPU s':>8s}  {'cores busy':>10s}"]
    want = plan.get("forward_threads")  # a forward below BUSY_SHARE of its threads' cores gets a hint line
    hints = []
    for stage in (*STAGES, "postprocess_wait"):
        if stage not in wall:
            continue
        c = cpu.get(stage)
        busy = c / wall[stage] if c is not None and wall[stage] > 0 else None
        lines.append(f"    {stage:18s}  {wall[stage]:9.3f} s {100 * wall[stage] / total:6.1f}%"
                     + (f"  {c:8.3f}  {busy:10.2f}" if busy is not None else ""))
        if stage == "forward" and busy is not None and want and busy < BUSY_SHARE * want and wall[stage] > 0.05:
            hints.append(f"    the forward kept {busy:.2f} of its {want} threads' cores busy: other work on this machine "
                         "(other processes, data workers) took CPU time from it")
    if "workers" in cpu:
        lines.append(f"    {'data workers (CPU)':18s}  {'':9s}   {'':6s}  {cpu['workers']:8.3f}  decode + preprocess, "
                     f"{plan.get('workers')} worker(s)")
    if overlapped:
        lines.append("    postprocess + metric ran in a background thread beside the next forward "
                     "(their wall time overlaps it)")
    else:
        harness_share = (wall.get("data_wait", 0) + wall.get("metric", 0)) / total
        lines.append(f"    harness share (data wait + metric): {100 * harness_share:.1f}%")
    if plan:
        lines.append(f"    layout: {plan.get('cores')} cores, forward {plan.get('forward_threads')} threads, "
                     f"{plan.get('workers')} workers" + (f" ({plan.get('worker_start')}, nice {plan.get('worker_nice')})"
                                                          if plan.get("workers") else "")
                     + f", postprocess {plan.get('postprocess')}")
    return lines + hints


def describe(cell: CellResult) -> str:
    """A short text breakdown of one cell result (seconds and shares of the accuracy loop)."""
    t = cell.timing
    lines = [f"{cell.cell_id}  [{cell.status}]"]
    if t.load_s is not None:
        lines.append(f"  model load            {t.load_s:9.3f} s")
    if t.first_inference_ms is not None:
        lines.append(f"  first inference       {t.first_inference_ms / 1000:9.3f} s  (cold)")
    lines += _loop_lines(cell)
    stages = cell.latency.stages_ms or {}
    if stages:
        lines.append("  per batch (p50, ms)   " + ", ".join(
            f"{k} {v['p50']:.2f}" for k, v in stages.items() if v and v.get("p50") is not None))
    if t.total_s is not None:
        lines.append(f"  cell total            {t.total_s:9.3f} s")
    return "\n".join(lines)
