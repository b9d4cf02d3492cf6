"""Escaping of untrusted strings (model, dataset and class names, error texts) per output format."""

from __future__ import annotations

import html

LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}", "\n": " ", "\r": " ", "\t": " ",
    # characters our own headers and captions use, written the LaTeX way
    "±": r"$\pm$", "Δ": r"$\Delta$", "–": "--", "·": r"$\cdot$", "×": r"$\times$",
}
MARKDOWN_SPECIAL = "\\`*_[]<>#|~"  # enough inside a table cell: no link, code, emphasis, tag or column break


def latex_escape(text: object) -> str:
    """``text`` with every LaTeX special character (``\\ & % $ # _ { } ~ ^ < > |``) written literally."""
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def markdown_escape(text: object) -> str:
    """``text`` safe inside a Markdown table cell: punctuation that Markdown interprets is
    backslash-escaped, ``&`` becomes ``&amp;`` (no entity or tag can form), newlines become spaces."""
    out = []
    for ch in str(text):
        if ch in "\r\n\t":
            out.append(" ")
        elif ch == "&":
            out.append("&amp;")
        elif ch in MARKDOWN_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def html_escape(text: object) -> str:
    """``text`` safe as HTML element content or a quoted attribute value."""
    return html.escape(str(text), quote=True)
