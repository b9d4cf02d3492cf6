"""Before a run: are the weights and the data of every cell there? One message lists all that is
missing and how to provide each, instead of failing cell by cell hours into a run."""

from __future__ import annotations

from pathlib import Path

from harness.suite import Cell


def missing_weights(cell: Cell) -> str | None:
    """Why the cell's weights are not available locally (None when they are, or when random); the
    runtime's module asks the registry of the cell's task (depth: ``missing_depth_weights``)."""
    from harness.runtimes import runtime_for

    module = runtime_for(cell.model, cell.runtime).implementation()
    return module.missing_weights(cell.model, cell.weights, cell.task)


def missing_data(cell: Cell) -> str | None:
    """Why the cell's dataset root is not there (None when it is, or for generated data)."""
    from harness.data import DATASETS, default_root

    if cell.dataset not in DATASETS or not DATASETS[cell.dataset].extra.get("needs_root", cell.dataset != "synthetic"):
        return None
    root = Path(cell.dataset_root) if cell.dataset_root else default_root(cell.dataset)
    if root is None:
        return f"dataset {cell.dataset!r} needs `root:` in the suite"
    if not root.exists():
        info = DATASETS[cell.dataset]
        return (f"{cell.dataset} root {root} does not exist (expected layout: {info.layout}; set `root:` in the "
                "suite or SEGBENCH_DATA)")
    return None


def missing_corruptions(cell: Cell) -> str | None:
    """Why a corrupted cell cannot corrupt its inputs (the imagecorruptions package is not installed)."""
    import importlib.util

    from harness.robustness.corruptions import INSTALL_HINT

    if cell.corruption is None or importlib.util.find_spec("imagecorruptions") is not None:
        return None
    return f"corrupted cells need the imagecorruptions package ({INSTALL_HINT})"


def check(cells: list[Cell]) -> dict[str, list[str]]:
    """cell_id -> the reasons it cannot run (only cells with a problem)."""
    problems: dict[str, list[str]] = {}
    for c in cells:
        reasons = [r for r in (missing_weights(c), missing_data(c), missing_corruptions(c)) if r]
        if reasons:
            problems[c.cell_id] = reasons
    return problems


def summary(problems: dict[str, list[str]]) -> str:
    """One message: each distinct missing thing once, with the number of cells it blocks."""
    counts: dict[str, int] = {}
    for reasons in problems.values():
        for r in reasons:
            counts[r] = counts.get(r, 0) + 1
    lines = [f"  - {r} ({n} cell{'s' if n > 1 else ''})" for r, n in counts.items()]
    return (f"{len(problems)} cell(s) cannot run because weights, data or packages are missing:\n" + "\n".join(lines)
            + "\nProvide them, or run with --available-only to measure the cells that can run.")
