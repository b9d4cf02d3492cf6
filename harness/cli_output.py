"""Terminal output of the ``segbench`` commands: aligned tables, truncation with an ellipsis, colour,
and the three output modes every command that prints results shares.

- **human** (default): a summary first, then short aligned tables, at most :data:`MAX_WIDTH`
  characters a line (the terminal's width when it is narrower); colour only when the stream is a
  terminal, ``NO_COLOR`` is unset (https://no-color.org) and ``TERM`` is not ``dumb``.
- ``--json``: the full machine-readable result on stdout.
- ``--quiet``: nothing on stdout; errors still go to stderr, files are still written and the exit
  code is unchanged (for CI).

Only the standard library is imported: the CLI is imported on the measuring path.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

MAX_WIDTH = 100
"""The widest line of any default (human) output, in characters."""

ELLIPSIS = "…"
GAP = "  "
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CODES = {"bold": "1", "dim": "2", "underline": "4", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


def colour_enabled(stream: IO | None = None) -> bool:
    """Whether to colour text written to ``stream`` (default stdout): a terminal, no ``NO_COLOR``, no dumb TERM."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def output_width(stream: IO | None = None) -> int:
    """Characters per line for ``stream``: :data:`MAX_WIDTH`, or the terminal's width when narrower (min 40)."""
    stream = stream or sys.stdout
    isatty = getattr(stream, "isatty", None)
    if isatty and isatty():
        return max(40, min(MAX_WIDTH, shutil.get_terminal_size((MAX_WIDTH, 24)).columns))
    return MAX_WIDTH


@dataclass(frozen=True)
class Style:
    """Colours text when ``enabled``; otherwise every method returns the text unchanged."""

    enabled: bool = False

    def paint(self, text: str, *names: str) -> str:
        if not self.enabled or not names or not text:
            return text
        return f"\x1b[{';'.join(_CODES[n] for n in names)}m{text}\x1b[0m"

    def bold(self, text: str) -> str:
        return self.paint(text, "bold")

    def dim(self, text: str) -> str:
        return self.paint(text, "dim")

    def verdict(self, text: str) -> str:
        """A verdict coloured by its meaning: green no regression/ok, red regression/failure, yellow otherwise."""
        low = text.lower()
        if low.startswith(("no regression", "no recent regression", "ok", "improvement")):
            return self.paint(text, "bold", "green")
        if low.startswith(("regression", "error", "oom", "timeout", "failed")):
            return self.paint(text, "bold", "red")
        return self.paint(text, "bold", "yellow")


def for_stream(stream: IO | None = None) -> Style:
    """The :class:`Style` for ``stream`` (default stdout)."""
    return Style(colour_enabled(stream))


def visible_len(text: str) -> int:
    """Length of ``text`` without its colour codes."""
    return len(_ANSI.sub("", text))


def truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the last one an ellipsis when anything was cut."""
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: width - 1] + ELLIPSIS


def split_header(header: str) -> tuple[str, str]:
    """``"latency p50 (ms)"`` -> ``("latency p50", "ms")``; a header without a unit -> ``(header, "")``."""
    m = re.match(r"^(.*\S) \(([^()]+)\)$", header)
    return (m.group(1), m.group(2)) if m else (header, "")


@dataclass(frozen=True)
class Column:
    """A table column: header, optional unit line, alignment, and how narrow it may be cut.

    ``min_width``: the narrowest the column is made when the table is too wide (values are then
    truncated with an ellipsis); columns are narrowed widest first. ``paint`` colours a cell's
    padded text (e.g. a status), given the raw value.
    """

    header: str
    unit: str = ""
    align: str = "left"  # "left" or "right"
    min_width: int = 6
    paint: Callable[[Style, str, str], str] | None = None


def _fit(widths: list[int], mins: list[int], width: int) -> list[int]:
    """Narrow the widest columns (never below their minimum) until the row fits ``width``."""
    widths = list(widths)
    total = lambda: sum(widths) + len(GAP) * (len(widths) - 1)  # noqa: E731
    while total() > width:
        candidates = [i for i, w in enumerate(widths) if w > mins[i]]
        if not candidates:
            break
        i = max(candidates, key=lambda j: widths[j])
        widths[i] -= 1
    return widths


def render_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int = MAX_WIDTH,
                 style: Style | None = None, indent: str = "",
                 marks: dict[tuple[int, int], tuple[str, ...]] | None = None) -> list[str]:
    """Aligned lines of ``rows`` (strings) under ``columns``' headers (and a unit line when a column has
    a unit), every line at most ``width`` characters: the widest columns are cut first, values
    truncated with an ellipsis; a table that still does not fit is cut at the right edge.
    ``marks``: styles (``bold``, ``underline``, ...) of single cells, by (row index, column index)."""
    style = style or Style()
    heads = [c.header for c in columns]
    units = [c.unit for c in columns]
    with_units = any(units)
    natural = [max([len(h), len(u)] + [len(r[i]) for r in rows])
               for i, (h, u) in enumerate(zip(heads, units, strict=True))]
    mins = [min(n, max(c.min_width, 1)) for n, c in zip(natural, columns, strict=True)]
    widths = _fit(natural, mins, width - len(indent))

    marks = marks or {}

    def line(values: Sequence[str], row: int | None = None) -> str:
        parts = []
        for i, (v, w, c) in enumerate(zip(values, widths, columns, strict=True)):
            text = truncate(v, w)
            padded = text.rjust(w) if c.align == "right" else text.ljust(w)
            if row is None:
                padded = style.bold(padded)
            elif c.paint is not None:
                padded = c.paint(style, padded, values[i])
            if row is not None and (row, i) in marks:
                padded = style.paint(padded, *marks[(row, i)])
            parts.append(padded)
        return _cut((indent + GAP.join(parts)).rstrip(), width)

    lines = [line(heads)]
    if with_units:
        lines.append(line(units))
    lines += [line(r, n) for n, r in enumerate(rows)]
    return lines


def grouped_table(columns: Sequence[Column], groups: Sequence[tuple[str, Sequence[Sequence[str]]]],
                  width: int = MAX_WIDTH, style: Style | None = None, indent: str = "  ",
                  marks: dict[tuple[int, int], tuple[str, ...]] | None = None) -> list[str]:
    """One table whose rows come in titled groups: the header once, then each group's title (whole,
    wrapped; none when empty) above its rows, indented; every column aligned across the groups.
    ``marks`` as :func:`render_table`'s, rows counted across the groups."""
    style = style or Style()
    rows = [r for _, group in groups for r in group]
    lines = render_table(columns, rows, width, style, indent, marks)
    n_head = len(lines) - len(rows)
    out, i = lines[:n_head], n_head
    for title, group in groups:
        out += [style.bold(t) for t in wrap(title, width)] if title else []
        out += lines[i:i + len(group)]
        i += len(group)
    return out


def _cut(line: str, width: int) -> str:
    """A rendered line cut to ``width`` visible characters (colour codes kept out of the count)."""
    if visible_len(line) <= width:
        return line
    plain = _ANSI.sub("", line)
    return truncate(plain, width)


def wrap(text: str, width: int = MAX_WIDTH, indent: str = "", subsequent: str | None = None) -> list[str]:
    """``text`` wrapped to ``width`` (long words such as paths are kept whole)."""
    return textwrap.wrap(text, width=width, initial_indent=indent,
                         subsequent_indent=indent if subsequent is None else subsequent,
                         break_long_words=False, break_on_hyphens=False) or [indent.rstrip()]


def bullet_list(title: str, items: Sequence[str], width: int = MAX_WIDTH, limit: int = 20,
                style: Style | None = None) -> list[str]:
    """``title (N):`` then up to ``limit`` wrapped ``- item`` lines (and how many more)."""
    if not items:
        return []
    style = style or Style()
    out = [style.bold(f"{title} ({len(items)}):")]
    for item in items[:limit]:
        out += wrap(str(item), width, indent="  - ", subsequent="    ")
    if len(items) > limit:
        out.append(f"  … and {len(items) - limit} more (--json lists them all)")
    return out


# --- output modes ------------------------------------------------------------------------------------

def progress_enabled() -> bool:
    """Whether progress bars are wanted: not under ``--quiet`` (``TQDM_DISABLE``, which tqdm also reads)."""
    return os.environ.get("TQDM_DISABLE", "").lower() in ("", "0", "false")


def silence_progress() -> None:
    """``--quiet``: no progress bars here or in the cell processes this one starts (they inherit the
    environment): tqdm's and the Hugging Face libraries' (weights loading, downloads)."""
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "huggingface_hub" in sys.modules:  # imported already: the environment is read at import
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


VERDICT_FORMATS = ("text", "markdown", "json")
"""``--format`` of the verdict commands (compare, ab, history check)."""


def add_output_options(parser: argparse.ArgumentParser, formats: Sequence[str] | None = None) -> None:
    """``--json`` and ``-q/--quiet`` (mutually exclusive), plus ``--format`` when ``formats`` is given
    (``--json`` is then the same as ``--format json``)."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="print the full machine-readable result as JSON")
    g.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing but errors (files are still written; the exit code is unchanged)")
    if formats:
        parser.add_argument("--format", choices=list(formats), default=None,
                            help=f"{', '.join(formats)} (default: text on stdout, markdown in --out)")


def mode(args: argparse.Namespace) -> str:
    """``quiet``, ``json`` or ``human`` from parsed ``args`` (absent options count as off)."""
    if getattr(args, "quiet", False):
        return "quiet"
    if getattr(args, "json", False) or getattr(args, "format", None) == "json":
        return "json"
    return "human"


def to_json(doc: Any) -> str:
    """``doc`` as strict, indented JSON: NaN and infinities as null (as in result files), other values
    JSON cannot hold (paths) as strings."""
    from harness.results import _clean

    return json.dumps(_clean(doc), indent=1, default=str, allow_nan=False)


def emit(args: argparse.Namespace, doc: Any, human: Callable[[Style, int], list[str]]) -> None:
    """Print the result: ``human(style, width)`` lines, ``doc`` as JSON, or nothing (``--quiet``)."""
    m = mode(args)
    if m == "quiet":
        return
    if m == "json":
        sys.stdout.write(to_json(doc) + "\n")
        return
    sys.stdout.write("\n".join(human(for_stream(sys.stdout), output_width(sys.stdout))) + "\n")


def write_file(text: str, out: str | os.PathLike) -> None:
    """Write ``text`` to ``out``, its parent folders created."""
    from pathlib import Path

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def emit_document(args: argparse.Namespace, name: str, doc: dict, human: Callable[[Style, int], list[str]],
                  markdown: Callable[[], str]) -> None:
    """For commands with ``--format text|markdown|json`` and ``--out FILE`` (compare, ab, history check).

    Without ``--out``, stdout gets the document in the chosen format (human text by default). With
    ``--out`` the file gets it (markdown unless ``--format``/``--json`` says otherwise, e.g. for
    ``$GITHUB_STEP_SUMMARY``) and stderr one line with the verdict (unless ``--quiet``). ``name``:
    the command, for that line.
    """
    fmt = "json" if getattr(args, "json", False) else (getattr(args, "format", None) or "")
    out = getattr(args, "out", None)
    if out:
        if fmt == "json":
            text = to_json(doc) + "\n"
        elif fmt == "text":
            text = "\n".join(human(Style(), MAX_WIDTH)) + "\n"
        else:
            text = markdown()
        write_file(text, out)
        if not getattr(args, "quiet", False):
            print(f"segbench {name}: {doc.get('verdict')} (summary written to {out})", file=sys.stderr)
        return
    if getattr(args, "quiet", False):
        return
    if fmt == "json":
        sys.stdout.write(to_json(doc) + "\n")
    elif fmt == "markdown":
        sys.stdout.write(markdown())
    else:
        sys.stdout.write("\n".join(human(for_stream(sys.stdout), output_width(sys.stdout))) + "\n")
