"""Where a cell's time goes: model load, cold first inference, the accuracy loop's stages
(waiting for data, forward, postprocess, metric update) and the per-batch stage latencies."""

from __future__ import annotations

from harness.cell_result import CellResult


def describe(cell: CellResult) -> str:
    """A short text breakdown of one cell result (seconds and shares of the accuracy loop)."""
    t = cell.timing
    lines = [f"{cell.cell_id}  [{cell.status}]"]
    if t.load_s is not None:
        lines.append(f"  model load            {t.load_s:9.3f} s")
    if t.first_inference_ms is not None:
        lines.append(f"  first inference       {t.first_inference_ms / 1000:9.3f} s  (cold)")
    br = t.accuracy_breakdown_s or {}
    total = sum(br.values())
    if total > 0:
        n = (cell.accuracy.metrics or {}).get("num_images") or 0
        lines.append(f"  accuracy loop         {total:9.3f} s  over {n} images")
        for stage in ("data_wait", "forward", "postprocess", "metric"):
            if stage in br:
                lines.append(f"    {stage:18s}  {br[stage]:9.3f} s  {100 * br[stage] / total:5.1f}%")
        harness_share = (br.get("data_wait", 0) + br.get("metric", 0)) / total
        lines.append(f"    harness share (data wait + metric): {100 * harness_share:.1f}%")
    stages = cell.latency.stages_ms or {}
    if stages:
        lines.append("  per batch (p50, ms)   " + ", ".join(
            f"{k} {v['p50']:.2f}" for k, v in stages.items() if v and v.get("p50") is not None))
    if t.total_s is not None:
        lines.append(f"  cell total            {t.total_s:9.3f} s")
    return "\n".join(lines)
