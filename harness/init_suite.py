"""``segbench init``: a commented starter suite for the user's models and data folders.

Datasets are found with the registry's own adapters: each registered segmentation dataset is
opened (nothing decoded) at the folder, at its usual sub-folder (``ADEChallengeData2016``,
``VOCdevkit/VOC2012``, ...) and one level below, for each of its splits; the first that lists
samples is the one written. A folder matching none of them becomes a ``folder`` dataset (images
and masks paired by name, with the mask folder, mask suffix and class list found there), or, when
even that does not open, a ``folder`` entry whose comment says the layout it needs.

The written suite starts with the schema header (editor completion and checks), is validated
by the suite validator before it is written, and passes ``segbench run SUITE --dry-run``.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.errors import ConfigError, SegbenchError
from harness.suite_spec import MEASURE, TOP, Key

DEFAULT_OUT = "suites/my-suite.yaml"
IMAGE_DIRS = ("images", "JPEGImages", "img", "rgb")
MASK_DIRS = ("masks", "labels", "annotations", "SegmentationClass", "gt", "label")
_OPEN_ERRORS = (SegbenchError, ImportError, OSError, ValueError, KeyError, TypeError)


@dataclass
class Found:
    """A dataset found in a folder: registry name, root, split, options and what the comment says."""

    name: str
    root: str | None
    split: str | None = None
    options: dict = field(default_factory=dict)
    samples: int | None = None
    note: str = ""
    label_set: str | None = None
    classes: int | None = None


def _found(name: str, root: Path, split: str | None, options: dict, ds, note: str) -> Found:
    return Found(name, _shown(root), split, options, len(ds), note, getattr(ds, "label_set", None),
                 int(ds.num_classes) or None)


def _open(name: str, root: Path, split: str | None, **options):
    """The registry's adapter for ``name`` opened at ``root`` (it lists its files, decodes nothing),
    or None when it does not open or lists no sample."""
    from harness.data import load_dataset

    try:
        ds = load_dataset(name, root=str(root), **({"split": split} if split else {}), **options)
    except _OPEN_ERRORS:
        return None
    return ds if len(ds) else None


def _candidates(folder: Path, default_root: str) -> list[Path]:
    """Where a dataset may sit: the folder, its usual sub-folder, and the same one level down."""
    out = [folder, folder / default_root, folder / Path(default_root).name]
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out += [child, child / default_root, child / Path(default_root).name]
    seen, unique = set(), []
    for p in out:
        if p.is_dir() and p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


def registry_datasets(folder: Path) -> list[Found]:
    """The registered segmentation datasets whose layout is in ``folder`` (or just below it)."""
    from harness.data import DATASETS

    found: list[Found] = []
    for name, info in DATASETS.items():
        if info.extra.get("task", "segmentation") != "segmentation" or not info.default_root:
            continue
        for root in _candidates(folder, info.default_root):
            if any(Path(f.root).resolve() == root.resolve() for f in found):
                continue
            opened = next(((s, ds) for s in (*info.splits, "all") if (ds := _open(name, root, s))), None)
            if opened is not None:
                found.append(_found(name, root, opened[0], {}, opened[1], info.description))
                break
    return found


def _shown(path: Path) -> str:
    """``path`` as the user would type it: relative to the current folder when below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _first(folder: Path, names: tuple[str, ...], want_dir: bool) -> str | None:
    return next((n for n in names if (folder / n).is_dir() == want_dir and (folder / n).exists()), None)


def folder_dataset(folder: Path) -> Found:
    """``folder`` as a ``folder`` dataset: its image and mask folders, mask suffix and class list."""
    from harness.data.folder import LAYOUT

    images, masks = _first(folder, IMAGE_DIRS, True), _first(folder, MASK_DIRS, True)
    if images and masks:
        options = {"images_dir": images, "masks_dir": masks, "mask_suffix": _mask_suffix(folder / images,
                                                                                         folder / masks)}
        defaults = {"images_dir": "images", "masks_dir": "masks", "mask_suffix": ""}  # the adapter's own
        options = {k: v for k, v in options.items() if v != defaults[k]}
        ds = _open("folder", folder, None, **options)  # the class list: classes.txt or codes.txt
        if ds is not None:
            return _found("folder", folder, None, options, ds,
                          f"your own data: images and masks paired by name, {ds.num_classes} classes")
    needs = " ".join(line.strip() for line in LAYOUT.splitlines())
    return Found("folder", _shown(folder), None, {}, None,
                 f"no known layout found here; a folder dataset needs {needs} (docs/DATASETS.md)")


def _mask_suffix(images: Path, masks: Path) -> str:
    """What mask names add to their image's stem (``_P`` for CamVid's ``NAME_P.png``), or ""."""
    stems = sorted(p.stem for p in images.iterdir() if p.is_file())
    mask_stems = {p.stem for p in masks.iterdir() if p.suffix.lower() == ".png"}
    for stem in stems[:20]:
        if stem in mask_stems:
            return ""
        extra = sorted(m[len(stem):] for m in mask_stems if m.startswith(stem))
        if extra:
            return extra[0]
    return ""


def find_datasets(folder: str | os.PathLike) -> list[Found]:
    """Every dataset in ``folder``: the registry's layouts in it or one level down, then the folder and
    its other sub-folders that open as ``folder`` datasets; when nothing opens, ``folder`` itself as a
    ``folder`` entry whose comment says the layout it needs."""
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"init --data {folder}: not a folder")
    found = registry_datasets(path)
    taken = [Path(f.root).resolve() for f in found]
    for candidate in [path, *sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))]:
        c = candidate.resolve()
        if any(c == t or c in t.parents or t in c.parents for t in taken):
            continue
        own = folder_dataset(candidate)
        if own.samples:
            found.append(own)
            taken.append(c)
    return found or [folder_dataset(path)]


@dataclass
class ModelEntry:
    """A model of the starter suite: its entry and the comment beside it."""

    entry: dict
    note: str
    label_set: str | None = None

    @property
    def classes(self) -> int | None:
        """Classes of the model's label set (those of the registry's datasets of that set)."""
        from harness.data import DATASETS

        return next((i.num_classes for i in DATASETS.values() if self.label_set and
                     i.extra.get("label_set") == self.label_set and i.num_classes), None)


def model_entries(names: list[str] | None) -> list[ModelEntry]:
    """The given models (registry names, hub ids or paths); without any, the registry models whose
    weights are found locally, or SegFormer-B0 with random weights (speed and memory only)."""
    from harness.models import model_infos

    infos = {r["name"]: r for r in model_infos()}
    if not names:
        names = [n for n, r in infos.items() if r.get("present")]
        if not names:
            return [ModelEntry({"name": "segformer-b0", "weights": "random"},
                               "random weights: speed and memory only; drop `weights` for the pretrained ones",
                               infos.get("segformer-b0", {}).get("label_set"))]
    out = []
    for name in names:
        info = infos.get(name)
        if info is None:
            out.append(ModelEntry({"name": name}, "a hub id or a local path (loaded with its own processor)"))
            continue
        found = {True: "weights found", False: "weights not found locally", None: "weights: see segbench models"}
        note = f"{info.get('family')}, {info.get('runtime')}, labels {info.get('label_set')}, " \
               f"{found[info.get('present')]} ({info.get('weights_from')})"
        out.append(ModelEntry({"name": name}, note, info.get("label_set")))
    return out


def _flow(value) -> str:
    """``value`` in YAML flow style, keys in their order."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000, allow_unicode=True)
    return text.strip().removesuffix("...").strip()


def _allowed(spec: Key) -> str:
    item = spec.items or spec
    if item.choices:
        return ", ".join(map(str, item.choices))
    if item.lo is not None and item.hi is not None:
        return f"{item.lo:g}..{item.hi:g}"
    return ""


def _commented(key: str, value, spec: Key, indent: str = "") -> str:
    allowed = _allowed(spec)
    comment = spec.doc + (f" ({allowed})" if allowed and allowed not in spec.doc else "")
    return f"{indent}{key}: {_flow(value)}".ljust(30) + f"  # {comment}"


def _compatible(models: list[ModelEntry], datasets: list[Found]) -> tuple[list[dict], list[str]]:
    """``include`` entries pairing each model with the datasets of its label set, and the pairs left out.
    No entries when every pair is compatible (or none is: the comment says so)."""
    def differ(m: ModelEntry, d: Found) -> bool:
        if m.label_set and d.label_set:
            return m.label_set != d.label_set
        return bool(m.classes and d.classes and m.classes != d.classes)

    def label(x) -> str:
        return x.label_set or f"{x.classes} classes" if (x.label_set or x.classes) else "labels unknown"

    pairs = [(m, d) for m in models for d in datasets]
    ok = [(m, d) for m, d in pairs if not differ(m, d)]
    left_out = [f"{m.entry['name']} ({label(m)}) x {d.name} {d.root or ''} ({label(d)})".replace("  ", " ")
                for m, d in pairs if differ(m, d)]
    if not left_out or not ok:
        return [], left_out
    return [{"model": m.entry["name"], "dataset": d.name} for m, d in ok], left_out


def schema_reference(out: Path) -> str:
    """The schema path the header names: relative to the suite in a checkout, absolute otherwise."""
    from harness.suite_schema import SCHEMA_PATH

    checkout = SCHEMA_PATH.parents[2]
    try:
        out.resolve().parent.relative_to(checkout)
    except ValueError:
        return str(SCHEMA_PATH)
    return os.path.relpath(SCHEMA_PATH, out.resolve().parent)


def _dataset_entry(d: Found) -> str:
    entry = {"name": d.name, **({"root": d.root} if d.root else {})}
    if d.split:
        entry["split"] = d.split
    if d.options:
        entry["options"] = d.options
    found = f"{d.samples} sample(s) found" if d.samples else "not opened"
    return f"  - {_flow(entry)}  # {found}: {d.note}"


def _axes() -> list[str]:
    return [_commented(k, TOP[k].default_value(), TOP[k]) for k in ("devices", "precisions", "amp", "batch_sizes")]


def suite_text(name: str, models: list[ModelEntry], datasets: list[Found], out: Path) -> str:
    """The starter suite: schema header, how to run it, the models and datasets with what was found,
    the matrix axes and ``measure`` with their defaults and allowed values as comments."""
    schema = schema_reference(out)
    include, left_out = _compatible(models, datasets)
    lines = [f"# yaml-language-server: $schema={schema}", f"# $schema: {schema}",
             f"# Starter suite written by `segbench init` on {_dt.date.today().isoformat()}. Check it, then run it:",
             f"#   segbench run {out} --dry-run    # the cells it would measure",
             f"#   segbench run {out} --report     # measure them and write an HTML report",
             "# Keys and values: docs/CLI.md and the schema above (your editor completes and checks them).",
             f"name: {_flow(name)}",
             f"description: {_flow('starter suite for ' + ', '.join(d.name for d in datasets))}",
             "models:"]
    lines += [f"  - {_flow(m.entry)}  # {m.note}" for m in models]
    lines += ["datasets:  # root: relative to the folder segbench runs in"] + [_dataset_entry(d) for d in datasets]
    lines += _axes()
    lines += ["protocol: {mode: whole, upsample: bilinear}  # or slide / multiscale (docs/PROTOCOLS.md)", "measure:"]
    lines += [_commented(k, s.default_value(), s, "  ") for k, s in MEASURE.items()]
    if include:
        lines += ["include:  # each model only on the datasets of its label set"]
        lines += [f"  - {_flow(f)}" for f in include]
    lines += [f"# left out, the label spaces differ: {pair}" for pair in left_out]
    return "\n".join(lines) + "\n"


def _name_for(out: Path) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "-", out.stem).strip("-")[:64] or "my-suite"


def write_starter(out: str | os.PathLike, models: list[str] | None, data: list[str] | None,
                  force: bool = False) -> dict:
    """Find the datasets, write the starter suite to ``out`` (refused when it exists, unless ``force``)
    after validating it; returns what was written (path, models, datasets, cells)."""
    from harness.suite import Suite, validate

    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"{out}: already exists; pass --force to overwrite it (or --out another file)")
    datasets = [f for folder in data for f in find_datasets(folder)] if data else [
        Found("synthetic", None, None, {"num_samples": 4}, 4, "generated images (no files): give --data DIR")]
    entries = model_entries(models)
    text = suite_text(_name_for(out), entries, datasets, out)
    suite = Suite(path=out, data=validate(yaml.safe_load(text), out), sha256="")
    cells = suite.cells()
    if not cells:
        raise ConfigError(f"{out}: the models and datasets given make no cell")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return {"path": str(out), "models": [m.entry for m in entries],
            "datasets": [{"name": d.name, "root": d.root, "split": d.split, "options": d.options,
                          "samples": d.samples} for d in datasets], "cells": len(cells)}
